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
use crate::schema::FLOOR;
use crate::store::Store;

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
    /// later local write gets a newer stamp. Returns true if the clock moved.
    pub(crate) async fn merge_clock_in(
        &self,
        conn: &mut SqliteConnection,
        seen: Hlc,
    ) -> Result<bool> {
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
