//! The op log and the device clock.
//!
//! Local writes append their pending op to `sync_oplog` (a rowid table, so an append writes
//! one page; see the migration `oplog`). Before anything reads or settles ops, the log is
//! folded into the keyed `sync_outbox`, where repeated edits of one record collapse into one
//! op. The log's last row is the device clock: the newest stamp handed out or merged.
//!
//! Each `Store` handle also keeps the clock in memory and stamps its writes itself, after it
//! holds the writer connection (so its stamps reach SQLite in the order they were made). The
//! outbox triggers take such a stamp only if it is newer than the log's last stamp and stamp
//! the write in SQL otherwise, so two handles on one file can never order writes wrongly.

use luma_model::Hlc;
use sqlx::{SqliteConnection, SqlitePool};

use crate::error::{Result, StoreError};
use crate::schema::{quote, FLOOR};
use crate::store::Store;

/// A GLOB pattern matching exactly the text form of a stamp.
fn stamp_glob() -> String {
    format!(
        "{}-{}-{}",
        "[0-9]".repeat(15),
        "[0-9]".repeat(6),
        "[0-9a-fA-F]".repeat(16)
    )
}

/// Whether the log holds ops that have not been folded into the outbox.
const HAS_UNFOLDED: &str = "SELECT EXISTS (SELECT 1 FROM sync_oplog WHERE kind <> 'floor')";

/// Folds the log into the outbox in `seq` order (a newer op of a record replaces the older one
/// and resets its failure state; the op keeps the id of its first write), then empties the
/// log except its last row, which stays as the clock's floor (and keeps op ids increasing).
const FOLD: [&str; 3] = [
    "INSERT INTO sync_outbox (tbl, pk, seq, hlc, kind, user_id) \
     SELECT tbl, pk, seq, hlc, kind, user_id FROM sync_oplog WHERE kind <> 'floor' ORDER BY seq \
     ON CONFLICT (tbl, pk) DO UPDATE SET hlc = excluded.hlc, kind = excluded.kind, \
     user_id = excluded.user_id, attempts = 0, last_error = NULL, rejected = 0, \
     next_retry_ms = NULL",
    "DELETE FROM sync_oplog WHERE seq < (SELECT max(seq) FROM sync_oplog)",
    "UPDATE sync_oplog SET tbl = '', pk = '', kind = 'floor', user_id = NULL \
     WHERE seq = (SELECT max(seq) FROM sync_oplog)",
];

fn bad_stamp(e: luma_model::HlcParseError) -> StoreError {
    StoreError::Plugin {
        table: "sync_oplog".into(),
        message: e.to_string(),
    }
}

/// The newest stamp the database has handed out or merged, read on `conn`.
pub(crate) async fn read_floor(conn: &mut SqliteConnection) -> Result<Hlc> {
    let text: String = sqlx::query_scalar(&format!("SELECT {FLOOR}"))
        .fetch_one(conn)
        .await
        .map_err(StoreError::sql("reading the clock"))?;
    text.parse().map_err(bad_stamp)
}

/// [`read_floor`] on a connection of `pool`.
pub(crate) async fn read_floor_from(pool: &SqlitePool) -> Result<Hlc> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(StoreError::sql("reading the clock"))?;
    read_floor(&mut conn).await
}

impl Store {
    /// A stamp for a write made with SQL of your own (a plugin table written through
    /// [`StoreTx::connection`](crate::StoreTx::connection)): bind its text form as the row's
    /// `hlc` and the outbox trigger records the op with it in one append. Take it inside the
    /// transaction, right before the statement. Without a stamp (or with one that is not newer
    /// than every stamp the database has seen, such as one taken before another handle
    /// wrote) the trigger stamps the write itself in SQL, which is correct but slower. The
    /// repositories do this for every write.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = luma_store::Store::open_in_memory().await?;
    /// let a = store.next_stamp();
    /// let b = store.next_stamp();
    /// assert!(b > a && a > store.clock_stamp().await?);
    /// # Ok::<(), luma_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn next_stamp(&self) -> Hlc {
        self.lock_clock().now()
    }

    /// `n` increasing stamps (one per row of a bulk write).
    pub(crate) fn next_stamps(&self, n: usize) -> Vec<Hlc> {
        let mut clock = self.lock_clock();
        let wall = luma_model::wall_clock_ms();
        (0..n).map(|_| clock.tick(wall)).collect()
    }

    /// Makes every later stamp of this handle newer than `seen`.
    pub(crate) fn absorb_stamp(&self, seen: Hlc) {
        self.lock_clock().merge(seen);
    }

    fn lock_clock(&self) -> std::sync::MutexGuard<'_, luma_model::Clock> {
        // The clock is a plain value that is never left half-updated: a panic elsewhere while
        // it was locked does not make it wrong, so a poisoned lock is simply taken over.
        self.inner
            .clock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Folds the op log into the outbox on `conn` (inside the caller's write transaction, so
    /// what it reads next includes every local write) and catches this handle's clock up with
    /// the log's floor (another handle on the same file may have stamped later writes).
    pub(crate) async fn fold_oplog_in(&self, conn: &mut SqliteConnection) -> Result<()> {
        let unfolded: bool = sqlx::query_scalar(HAS_UNFOLDED)
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::sql("reading the op log"))?;
        if unfolded {
            for statement in FOLD {
                sqlx::query(statement)
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::sql("folding the op log into the outbox"))?;
            }
        }
        let floor = read_floor(&mut *conn).await?;
        self.absorb_stamp(floor);
        Ok(())
    }

    /// Folds the op log into the outbox before a read of the outbox (in its own transaction;
    /// nothing is written when the log holds no op).
    pub(crate) async fn fold_oplog(&self) -> Result<()> {
        let unfolded: bool = sqlx::query_scalar(HAS_UNFOLDED)
            .fetch_one(self.reader_pool())
            .await
            .map_err(StoreError::sql("reading the op log"))?;
        if !unfolded {
            return Ok(());
        }
        let tx = self.begin_outbox_write().await?;
        tx.commit()
            .await
            .map_err(StoreError::sql("folding the op log into the outbox"))
    }

    /// Starts a write transaction that reads or settles ops: the op log is folded first.
    pub(crate) async fn begin_outbox_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        let mut tx = self.begin_write().await?;
        self.fold_oplog_in(&mut tx).await?;
        Ok(tx)
    }

    /// Records `seen` (a stamp from elsewhere) as the clock's floor if it is newer, so every
    /// later local write gets a newer stamp. Returns true if the clock moved; a stamp beyond
    /// the clock-skew bound ([`Store::max_clock_skew`]) is not merged (false).
    pub(crate) async fn merge_clock_in(
        &self,
        conn: &mut SqliteConnection,
        seen: Hlc,
    ) -> Result<bool> {
        // A stamp beyond the clock-skew bound is never absorbed: the device clock would be
        // dragged along (and, near the end of the text form's range, could not tick). Pulled
        // rows so stamped are parked before they get here; this guards every other path.
        if !seen.is_representable()
            || seen.is_beyond_skew(luma_model::wall_clock_ms(), self.max_skew_ms())
        {
            tracing::warn!(stamp = %seen, "a remote stamp beyond the clock-skew bound was not merged into the clock");
            return Ok(false);
        }
        // The floor carries this device's site: a local stamp at the same (time, counter) as
        // a remote one is not newer, the next tick is.
        let seen = Hlc::new(seen.physical_ms, seen.counter, self.inner.site);
        self.absorb_stamp(seen);
        let done = sqlx::query(&format!(
            "INSERT INTO sync_oplog (tbl, pk, hlc, kind) SELECT '', '', ?1, 'floor' \
             WHERE ?1 > {FLOOR}"
        ))
        .bind(seen.to_string())
        .execute(conn)
        .await
        .map_err(StoreError::sql("merging a remote clock stamp"))?;
        Ok(done.rows_affected() > 0)
    }
}

impl Store {
    /// Repairs a clock poisoned by an older build, which merged remote stamps without a
    /// bound: if the clock's floor, or the stamp of a pending op, is unparseable or beyond
    /// the clock-skew bound, then in one transaction
    ///
    /// - the op log is folded into the outbox;
    /// - every pending op so stamped gets a fresh stamp from a clock restarted at the newest
    ///   sane stamp the database holds (and the wall clock), and so does its row (the op keeps
    ///   its id; its failure state is cleared, so a rejection caused by the bad stamp is
    ///   retried);
    /// - rows of synced tables whose stamp does not parse at all (written by the overflowed
    ///   clock) get a fresh stamp too;
    /// - the floor is reset to the restarted clock.
    ///
    /// Rows stamped far ahead but parseable and without a pending op (remote writes applied
    /// by the older build) keep their stamp: the server holds the same version.
    /// Nothing happens (one statement) when the clock is sane.
    pub(crate) async fn repair_clock(&self) -> Result<()> {
        let glob = stamp_glob();
        let bound = format!(
            "{:015}",
            self.stamp_bound_ms().min(luma_model::MAX_PHYSICAL_MS)
        );
        let bad = |col: &str| format!("({col} NOT GLOB ?1 OR substr({col}, 1, 15) > ?2)");
        let poisoned: bool = sqlx::query_scalar(&format!(
            "SELECT NOT EXISTS (SELECT 1 FROM sync_oplog) \
             OR EXISTS (SELECT 1 FROM sync_oplog WHERE {}) \
             OR EXISTS (SELECT 1 FROM sync_outbox WHERE {})",
            bad("hlc"),
            bad("hlc")
        ))
        .bind(&glob)
        .bind(&bound)
        .fetch_one(self.writer_pool())
        .await
        .map_err(StoreError::sql("checking the clock"))?;
        if !poisoned {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        crate::sync_api::set_guard(&mut tx, true).await?;
        for statement in FOLD {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::sql("folding the op log into the outbox"))?;
        }
        // Restart the clock at the newest sane stamp of the outbox and the synced tables.
        let mut clock = luma_model::Clock::new(self.inner.site);
        let specs = self.synced_tables()?;
        let sane = |table: &str| {
            format!("SELECT max(hlc) FROM {table} WHERE hlc GLOB ?1 AND substr(hlc, 1, 15) <= ?2")
        };
        let mut sources = vec![sane("sync_outbox")];
        sources.extend(specs.iter().map(|s| sane(&quote(s.name))));
        for text in &sources {
            let newest: Option<String> = sqlx::query_scalar(text)
                .bind(&glob)
                .bind(&bound)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::sql("repairing the clock"))?;
            if let Some(h) = newest.and_then(|h| h.parse::<Hlc>().ok()) {
                clock.merge(h);
            }
        }
        let wall = luma_model::wall_clock_ms();
        let ops: Vec<(String, String, String)> = sqlx::query_as(&format!(
            "SELECT tbl, pk, kind FROM sync_outbox WHERE {} ORDER BY seq",
            bad("hlc")
        ))
        .bind(&glob)
        .bind(&bound)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::sql("repairing the clock"))?;
        for (table, pk, kind) in &ops {
            let stamp = clock.tick(wall).to_string();
            sqlx::query(
                "UPDATE sync_outbox SET hlc = ?, attempts = 0, last_error = NULL, rejected = 0, \
                 next_retry_ms = NULL WHERE tbl = ? AND pk = ?",
            )
            .bind(&stamp)
            .bind(table)
            .bind(pk)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::sql("re-stamping a pending op"))?;
            if kind == "upsert" {
                if let Ok(sql) = self.table(table) {
                    let t = quote(sql.spec.name);
                    sqlx::query(&format!(
                        "UPDATE {t} SET hlc = ?1 WHERE {}",
                        crate::sync_api::key_match(&sql.spec, &t, "?2")
                    ))
                    .bind(&stamp)
                    .bind(pk)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::sql("re-stamping a row"))?;
                }
            }
        }
        let stamp = clock.tick(wall).to_string();
        let mut rows = 0;
        for spec in &specs {
            rows += sqlx::query(&format!(
                "UPDATE {} SET hlc = ?1 WHERE hlc IS NOT NULL AND hlc <> '' AND hlc NOT GLOB ?2",
                quote(spec.name)
            ))
            .bind(&stamp)
            .bind(&glob)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::sql("re-stamping rows"))?
            .rows_affected();
        }
        sqlx::query("INSERT INTO sync_oplog (tbl, pk, hlc, kind) VALUES ('', '', ?, 'floor')")
            .bind(clock.last().to_string())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::sql("resetting the clock"))?;
        crate::sync_api::set_guard(&mut tx, false).await?;
        tx.commit()
            .await
            .map_err(StoreError::sql("repairing the clock"))?;
        tracing::warn!(
            ops = ops.len(),
            rows,
            floor = %clock.last(),
            "repaired a clock poisoned by a far-future stamp: pending ops re-stamped"
        );
        Ok(())
    }
}
