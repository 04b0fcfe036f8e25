//! The outbox: pending ops recorded by the triggers, read and settled by the sync engine.
//!
//! The store knows nothing about the network: it hands out ops in foreign-key order and
//! records what the engine says happened to them.

use luma_model::{OpId, PendingOp, RecordKey};
use sqlx::sqlite::SqliteRow;
use sqlx::Row as _;

use crate::bind::SqliteQuery;
use crate::error::{Result, StoreError};
use crate::order::depths;
use crate::store::Store;

pub(crate) const OP_COLUMNS: &str =
    "seq, tbl, pk, hlc, kind, user_id, attempts, last_error, rejected, next_retry_ms";

/// The outbox of a store. Get it with [`Store::outbox`].
pub struct Outbox<'s> {
    store: &'s Store,
}

impl Store {
    /// The outbox.
    pub fn outbox(&self) -> Outbox<'_> {
        Outbox { store: self }
    }
}

pub(crate) fn decode_op(row: &SqliteRow) -> Result<PendingOp> {
    let bad = |message: String| StoreError::Plugin {
        table: "sync_outbox".into(),
        message,
    };
    let hlc: String = row.get("hlc");
    let kind: String = row.get("kind");
    let user: Option<String> = row.get("user_id");
    Ok(PendingOp {
        id: OpId(row.get("seq")),
        table: row.get("tbl"),
        key: RecordKey::from_canonical(row.get::<String, _>("pk")),
        hlc: hlc
            .parse()
            .map_err(|e: luma_model::HlcParseError| bad(e.to_string()))?,
        kind: kind.parse().map_err(bad)?,
        user_id: user
            .map(|u| u.parse())
            .transpose()
            .map_err(|e: luma_model::ParseIdError| bad(e.to_string()))?,
        attempts: row.get::<i64, _>("attempts").try_into().unwrap_or(u32::MAX),
        last_error: row.get("last_error"),
        rejected: row.get::<i64, _>("rejected") != 0,
        next_retry_ms: row.get("next_retry_ms"),
    })
}

/// Runs one outbox statement after folding the op log, in one transaction (so it also sees
/// the ops of writes that have not been folded yet).
trait ExecuteFolded {
    async fn execute_folded(self, store: &Store, context: &'static str) -> Result<u64>;
}

impl ExecuteFolded for SqliteQuery<'_> {
    async fn execute_folded(self, store: &Store, context: &'static str) -> Result<u64> {
        let mut tx = store.begin_outbox_write().await?;
        let done = self
            .execute(&mut *tx)
            .await
            .map_err(StoreError::sql(context))?;
        tx.commit().await.map_err(StoreError::sql(context))?;
        Ok(done.rows_affected())
    }
}

impl Outbox<'_> {
    /// `CASE tbl WHEN ... END` giving each registered table its foreign-key depth.
    pub(crate) fn depth_case(&self) -> Result<String> {
        let specs = self.store.synced_tables()?;
        let mut case = String::from("CASE tbl");
        for (name, depth) in depths(&specs) {
            case.push_str(&format!(" WHEN '{name}' THEN {depth}"));
        }
        case.push_str(" ELSE 1000 END");
        Ok(case)
    }

    /// Ops that are due at `now_ms` and not rejected, at most `limit`, in foreign-key order:
    /// upserts parents first, then deletes children first; oldest first within a table.
    pub async fn next_batch(&self, limit: usize, now_ms: i64) -> Result<Vec<PendingOp>> {
        self.store.fold_oplog().await?;
        let depth = self.depth_case()?;
        let text = format!(
            "SELECT {OP_COLUMNS} FROM sync_outbox \
             WHERE rejected = 0 AND (next_retry_ms IS NULL OR next_retry_ms <= ?) \
             ORDER BY CASE kind WHEN 'upsert' THEN 0 ELSE 1 END, \
                      CASE kind WHEN 'upsert' THEN {depth} ELSE -({depth}) END, seq \
             LIMIT ?"
        );
        let rows = sqlx::query(&text)
            .bind(now_ms)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.store.reader_pool())
            .await
            .map_err(StoreError::sql("reading pending ops"))?;
        rows.iter().map(decode_op).collect()
    }

    /// Every op (pending, waiting for a retry, or rejected), oldest first.
    pub async fn all(&self) -> Result<Vec<PendingOp>> {
        self.store.fold_oplog().await?;
        let rows = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM sync_outbox ORDER BY seq"
        ))
        .fetch_all(self.store.reader_pool())
        .await
        .map_err(StoreError::sql("reading pending ops"))?;
        rows.iter().map(decode_op).collect()
    }

    /// Ops that have failed at least once (rejected or waiting for a retry).
    pub async fn errors(&self) -> Result<Vec<PendingOp>> {
        self.store.fold_oplog().await?;
        let rows = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM sync_outbox WHERE last_error IS NOT NULL ORDER BY seq"
        ))
        .fetch_all(self.store.reader_pool())
        .await
        .map_err(StoreError::sql("reading pending errors"))?;
        rows.iter().map(decode_op).collect()
    }

    /// The op of one record, if it has one.
    pub async fn for_record(&self, table: &str, key: &RecordKey) -> Result<Option<PendingOp>> {
        self.store.fold_oplog().await?;
        let row = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM sync_outbox WHERE tbl = ? AND pk = ?"
        ))
        .bind(table)
        .bind(key.as_str())
        .fetch_optional(self.store.reader_pool())
        .await
        .map_err(StoreError::sql("reading a pending op"))?;
        row.as_ref().map(decode_op).transpose()
    }

    /// One op by id. (Ops are keyed by record; a lookup by id scans the outbox, which is fine
    /// for the occasional user action it serves.)
    pub async fn get(&self, id: OpId) -> Result<Option<PendingOp>> {
        self.store.fold_oplog().await?;
        let row = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM sync_outbox WHERE seq = ?"
        ))
        .bind(id.0)
        .fetch_optional(self.store.reader_pool())
        .await
        .map_err(StoreError::sql("reading a pending op"))?;
        row.as_ref().map(decode_op).transpose()
    }

    /// Number of ops not rejected.
    pub async fn pending_count(&self) -> Result<i64> {
        self.store.fold_oplog().await?;
        sqlx::query_scalar("SELECT count(*) FROM sync_outbox WHERE rejected = 0")
            .fetch_one(self.store.reader_pool())
            .await
            .map_err(StoreError::sql("counting pending ops"))
    }

    /// Number of rejected ops.
    pub async fn rejected_count(&self) -> Result<i64> {
        self.store.fold_oplog().await?;
        sqlx::query_scalar("SELECT count(*) FROM sync_outbox WHERE rejected = 1")
            .fetch_one(self.store.reader_pool())
            .await
            .map_err(StoreError::sql("counting rejected ops"))
    }

    /// Marks ops done (pushed and applied, or superseded). An op whose record was edited again
    /// since it was read (its HLC changed) stays: the newer edit still has to be pushed.
    /// Returns how many were removed.
    pub async fn complete(&self, done: &[PendingOp]) -> Result<u64> {
        let mut tx = self.store.begin_outbox_write().await?;
        let mut n = 0;
        for op in done {
            n += sqlx::query("DELETE FROM sync_outbox WHERE tbl = ? AND pk = ? AND hlc = ?")
                .bind(&op.table)
                .bind(op.key.as_str())
                .bind(op.hlc.to_string())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::sql("completing ops"))?
                .rows_affected();
        }
        tx.commit()
            .await
            .map_err(StoreError::sql("completing ops"))?;
        Ok(n)
    }

    /// Records a failed attempt of `op`: `rejected` for a permanent refusal (kept until
    /// retried or discarded), else it becomes due again at `next_retry_ms`. Ignored (false) if
    /// the record was edited since `op` was read: the new edit resets the op.
    pub async fn record_failure(
        &self,
        op: &PendingOp,
        error: &str,
        rejected: bool,
        next_retry_ms: Option<i64>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE sync_outbox SET attempts = attempts + 1, last_error = ?, rejected = ?, \
             next_retry_ms = ? WHERE tbl = ? AND pk = ? AND hlc = ?",
        )
        .bind(error)
        .bind(rejected)
        .bind(next_retry_ms)
        .bind(&op.table)
        .bind(op.key.as_str())
        .bind(op.hlc.to_string())
        .execute_folded(self.store, "recording an op failure")
        .await?;
        Ok(done > 0)
    }

    /// Makes an op due now again (clears its rejection and retry time; keeps its history).
    pub async fn retry(&self, id: OpId) -> Result<bool> {
        let done =
            sqlx::query("UPDATE sync_outbox SET rejected = 0, next_retry_ms = NULL WHERE seq = ?")
                .bind(id.0)
                .execute_folded(self.store, "retrying an op")
                .await?;
        self.store.notify_change();
        Ok(done > 0)
    }

    /// Makes every failed op due now again. Returns how many.
    pub async fn retry_all(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE sync_outbox SET rejected = 0, next_retry_ms = NULL \
             WHERE rejected = 1 OR next_retry_ms IS NOT NULL",
        )
        .execute_folded(self.store, "retrying ops")
        .await?;
        self.store.notify_change();
        Ok(done)
    }

    /// Removes an op without pushing it (the engine's `discard`). The local row is left as it
    /// is; the engine restores the remote version.
    pub async fn remove(&self, id: OpId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sync_outbox WHERE seq = ?")
            .bind(id.0)
            .execute_folded(self.store, "removing an op")
            .await?;
        Ok(done > 0)
    }

    /// Attributes ops made while signed out (no user) to `user`. Returns how many.
    pub async fn adopt_anonymous(&self, user: luma_model::UserId) -> Result<u64> {
        let done = sqlx::query("UPDATE sync_outbox SET user_id = ? WHERE user_id IS NULL")
            .bind(user.to_string())
            .execute_folded(self.store, "adopting ops")
            .await?;
        Ok(done)
    }
}
