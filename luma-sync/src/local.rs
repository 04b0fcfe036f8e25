//! The [`Local`] trait: what the engine asks of a local replica, and its implementation for
//! [`luma_store::Store`].

use async_trait::async_trait;
use luma_model::{OpId, PendingOp, RecordKey, TableSpec, UserId};
use luma_store::{ApplyReport, DiscardReport, ParkedRow, PushRow, SettleReport, Settlement, Store};
use tokio::sync::watch;

use crate::error::Result;
use crate::remote::RemoteRow;

/// The name under which the store keeps the venue-membership snapshot among its pull cursors
/// (no table is named so: table names are SQL identifiers).
const MEMBERSHIPS_CURSOR: &str = "~memberships";

/// What the engine asks of a local replica.
///
/// Contract:
///
/// - **Atomicity.** [`Local::apply_page`] applies a page and advances the cursor in one
///   transaction; [`Local::settle_push`] records all outcomes of one push in one
///   transaction. A crash leaves either all or none of each.
/// - **No echo.** Applying remote state never creates pending ops.
/// - **Last writer wins.** Remote rows never overwrite a newer local write or a pending op with
///   a newer stamp; a newer remote write drops an older op (reported as superseded);
///   tombstones delete the row and its children (children's upsert ops are dropped and
///   reported); rows whose parent is missing locally are skipped and counted; rows that cannot
///   be applied now (a stamp beyond the clock-skew bound, a value that cannot be stored or
///   decoded) are parked in the same transaction, never dropped and never failing the page.
/// - **Ordering.** [`Local::synced_tables`] is parents-first; [`Local::next_push_batch`] is in
///   foreign-key order (upserts parents first, deletes children first) and returns only ops
///   of the given user that are due and not rejected.
/// - **Idempotency.** Applying the same page twice changes nothing the second time.
#[async_trait]
pub trait Local: Send + Sync + 'static {
    /// The synced tables, parents first.
    fn synced_tables(&self) -> Result<Vec<TableSpec>>;
    /// A receiver that changes after local writes (the engine pushes soon after).
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// Attributes ops made while signed out to `user`.
    async fn adopt_anonymous(&self, user: UserId) -> Result<u64>;
    /// `user`'s due, non-rejected ops, at most `limit`, in foreign-key order.
    async fn next_push_batch(
        &self,
        user: UserId,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<PendingOp>>;
    /// The payloads of `ops` (ops whose row vanished are left out).
    async fn read_push_rows(&self, ops: &[PendingOp]) -> Result<Vec<PushRow>>;
    /// Records the outcomes of one push in one transaction.
    async fn settle_push(&self, outcomes: &[Settlement]) -> Result<SettleReport>;
    /// The earliest retry time among `user`'s waiting ops.
    async fn next_retry_ms(&self, user: UserId) -> Result<Option<i64>>;
    /// `user`'s cursor of `table`.
    async fn cursor(&self, user: UserId, table: &str) -> Result<Option<String>>;
    /// Forgets `user`'s cursors of `tables`.
    async fn reset_cursors(&self, user: UserId, tables: &[&str]) -> Result<()>;
    /// The user's venue set recorded after the last complete pull (opaque text; `None`:
    /// never recorded).
    async fn membership_snapshot(&self, user: UserId) -> Result<Option<String>>;
    /// Records the user's venue set after a complete pull.
    async fn set_membership_snapshot(&self, user: UserId, snapshot: &str) -> Result<()>;
    /// Applies one pulled page and advances the cursor, in one transaction.
    async fn apply_page(
        &self,
        user: UserId,
        table: &str,
        rows: &[RemoteRow],
        cursor: Option<&str>,
    ) -> Result<ApplyReport>;
    /// Removes discarded rows a complete pull did not restore.
    async fn purge_discarded(&self) -> Result<ApplyReport>;
    /// After a full re-pull of `table`: removes rows whose key the pull did not return, with
    /// their children, in one transaction; rows with pending ops stay, and so do rows a
    /// remaining child references (a child with a pending op, or any child in a table of
    /// `repulled`, the tables re-pulled in the same cycle, cleaned children first).
    async fn remove_unreturned(
        &self,
        table: &str,
        keep: &[RecordKey],
        repulled: &[&str],
    ) -> Result<ApplyReport>;
    /// Ops that failed at least once (rejected or waiting for a retry).
    async fn pending_errors(&self) -> Result<Vec<PendingOp>>;
    /// Makes an op due now again.
    async fn retry(&self, op: OpId) -> Result<bool>;
    /// Makes every failed op due now again.
    async fn retry_all(&self) -> Result<u64>;
    /// Drops an op; the next pull restores the remote version.
    async fn discard(&self, op: OpId) -> Result<DiscardReport>;
    /// (pending, rejected) op counts.
    async fn counts(&self) -> Result<(u64, u64)>;
    /// Re-tries the parked rows (pulled rows that could not be applied when they arrived):
    /// those that can be applied now are, the others stay parked. One transaction.
    async fn retry_parked(&self) -> Result<ApplyReport>;
    /// Every parked row, with its table, key, stamp and reason.
    async fn parked_rows(&self) -> Result<Vec<ParkedRow>>;
    /// How many rows are parked, per reason code.
    async fn parked_counts(&self) -> Result<Vec<(String, u64)>>;
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl Local for Store {
    fn synced_tables(&self) -> Result<Vec<TableSpec>> {
        Ok(Store::synced_tables(self)?)
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        Store::subscribe(self)
    }
    async fn adopt_anonymous(&self, user: UserId) -> Result<u64> {
        Ok(self.adopt_anonymous_ops(user).await?)
    }
    async fn next_push_batch(
        &self,
        user: UserId,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<PendingOp>> {
        Ok(Store::next_push_batch(self, user, limit, now_ms).await?)
    }
    async fn read_push_rows(&self, ops: &[PendingOp]) -> Result<Vec<PushRow>> {
        Ok(Store::read_push_rows(self, ops).await?)
    }
    async fn settle_push(&self, outcomes: &[Settlement]) -> Result<SettleReport> {
        Ok(Store::settle_push(self, outcomes).await?)
    }
    async fn next_retry_ms(&self, user: UserId) -> Result<Option<i64>> {
        Ok(Store::next_retry_ms(self, user).await?)
    }
    async fn cursor(&self, user: UserId, table: &str) -> Result<Option<String>> {
        Ok(self.sync_cursor(user, table).await?)
    }
    async fn reset_cursors(&self, user: UserId, tables: &[&str]) -> Result<()> {
        self.reset_sync_cursors(Some(user), tables).await?;
        Ok(())
    }
    async fn membership_snapshot(&self, user: UserId) -> Result<Option<String>> {
        Ok(self.sync_cursor(user, MEMBERSHIPS_CURSOR).await?)
    }
    async fn set_membership_snapshot(&self, user: UserId, snapshot: &str) -> Result<()> {
        Ok(self
            .set_sync_cursor(user, MEMBERSHIPS_CURSOR, snapshot)
            .await?)
    }
    async fn apply_page(
        &self,
        user: UserId,
        table: &str,
        rows: &[RemoteRow],
        cursor: Option<&str>,
    ) -> Result<ApplyReport> {
        Ok(self.apply_pulled_page(user, table, rows, cursor).await?)
    }
    async fn purge_discarded(&self) -> Result<ApplyReport> {
        Ok(Store::purge_discarded(self).await?)
    }
    async fn remove_unreturned(
        &self,
        table: &str,
        keep: &[RecordKey],
        repulled: &[&str],
    ) -> Result<ApplyReport> {
        Ok(Store::remove_unreturned(self, table, keep, repulled).await?)
    }
    async fn pending_errors(&self) -> Result<Vec<PendingOp>> {
        Ok(self.outbox().errors().await?)
    }
    async fn retry(&self, op: OpId) -> Result<bool> {
        Ok(self.outbox().retry(op).await?)
    }
    async fn retry_all(&self) -> Result<u64> {
        Ok(self.outbox().retry_all().await?)
    }
    async fn discard(&self, op: OpId) -> Result<DiscardReport> {
        Ok(self.discard_op(op).await?)
    }
    async fn counts(&self) -> Result<(u64, u64)> {
        let outbox = self.outbox();
        Ok((
            count(outbox.pending_count().await?),
            count(outbox.rejected_count().await?),
        ))
    }
    async fn retry_parked(&self) -> Result<ApplyReport> {
        Ok(Store::retry_parked(self).await?)
    }
    async fn parked_rows(&self) -> Result<Vec<ParkedRow>> {
        Ok(Store::parked_rows(self).await?)
    }
    async fn parked_counts(&self) -> Result<Vec<(String, u64)>> {
        Ok(Store::parked_counts(self).await?)
    }
}
