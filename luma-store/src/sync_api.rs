//! The SQL the sync engine needs, behind [`Store`] methods: push payloads, applying pulled
//! pages with their cursor in one transaction, settling push outcomes, cursors, the clock,
//! discarding ops and adopting anonymous ops.
//!
//! Per-row work runs inside SQLite (`json_each` over a page handed over as one JSON array), so
//! applying a page costs a handful of statements whatever its size.
//!
//! Every apply runs under the apply guard (a row in `sync_apply_guard` for the length of the
//! transaction), so the outbox triggers stay silent: pulled rows never become pending ops.

use std::collections::{HashMap, HashSet};

use luma_model::{Hlc, OpId, OpKind, PendingOp, RecordKey, Row, TableSpec, UserId};
use serde::{Deserialize, Serialize};
use sqlx::{Row as _, SqliteConnection};

use crate::error::{Result, StoreError};
use crate::outbox::{decode_op, OP_COLUMNS};
use crate::pulled_upsert::{v_col, PulledUpsert, V_KEY};
use crate::schema::{decode, quote, read_row, TableSql};
use crate::store::Store;

/// One row of a pulled page (or the server's state returned with a superseded push outcome):
/// the record's newest state as the server knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PulledRow {
    /// The record's key (canonical text).
    pub key: RecordKey,
    /// The stamp of the write that produced this state.
    pub hlc: Hlc,
    /// True for a tombstone (the record was deleted).
    pub deleted: bool,
    /// The row's synced columns (`None` for a tombstone).
    pub row: Option<Row>,
}

/// An op the store dropped while applying remote state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedOp {
    /// The op.
    pub id: OpId,
    /// Its table.
    pub table: String,
    /// Its record.
    pub key: RecordKey,
    /// Its stamp.
    pub hlc: Hlc,
    /// Upsert or delete.
    pub kind: OpKind,
}

/// What applying remote rows did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Rows inserted or overwritten.
    pub upserted: u64,
    /// Rows deleted by tombstones (not counting cascaded children).
    pub deleted: u64,
    /// Rows not applied because their parent row is missing locally.
    pub skipped_missing_parent: u64,
    /// Rows not applied because a unique value (other than the key) they carry is held by
    /// another local row that the page did not move away.
    pub skipped_conflict: u64,
    /// Local ops whose exact write the server already holds (same stamp): removed.
    pub confirmed: u64,
    /// Local ops a newer remote write won over: removed.
    pub superseded: Vec<DroppedOp>,
    /// Local upsert ops of child rows that vanished with a parent deleted by a tombstone:
    /// turned into deletes with the same stamp (the parent delete wins; the tombstone is
    /// pushed so an older live version elsewhere does not come back).
    pub orphaned: Vec<DroppedOp>,
    /// After a full re-pull ([`Store::remove_unreturned`]): rows the pull did not return that
    /// stay because of a pending op (their own or a child's).
    pub kept_unreturned: u64,
    /// Rows parked instead of applied (see [`Store::parked_rows`]): a stamp too far ahead of
    /// the device clock, or a value the store cannot store or decode.
    pub parked: u64,
    /// Parked rows that left the parked table because a version at least as new arrived (or
    /// they were re-tried and applied).
    pub unparked: u64,
    /// Tables whose local rows changed.
    pub changed_tables: Vec<String>,
}

impl ApplyReport {
    pub(crate) fn merge(&mut self, other: ApplyReport) {
        self.parked += other.parked;
        self.unparked += other.unparked;
        self.upserted += other.upserted;
        self.deleted += other.deleted;
        self.skipped_missing_parent += other.skipped_missing_parent;
        self.skipped_conflict += other.skipped_conflict;
        self.confirmed += other.confirmed;
        self.superseded.extend(other.superseded);
        self.orphaned.extend(other.orphaned);
        self.kept_unreturned += other.kept_unreturned;
        for t in other.changed_tables {
            self.note_changed(&t);
        }
    }

    fn note_changed(&mut self, table: &str) {
        if !self.changed_tables.iter().any(|t| t == table) {
            self.changed_tables.push(table.to_string());
        }
    }
}

/// One pending op with what to push for it.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRow {
    /// The op as read from the outbox.
    pub op: PendingOp,
    /// The stamp to push: the row's current stamp for an upsert (newer than `op.hlc` if the
    /// record was edited since the op was read), the op's stamp for a delete.
    pub hlc: Hlc,
    /// The row's synced columns for an upsert; `None` for a delete.
    pub row: Option<Row>,
}

/// What the server said about one pushed op, as the store records it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Settlement {
    /// The server holds this write: the op is removed (unless the record was edited since).
    Applied {
        /// The op.
        id: OpId,
        /// The op's table.
        table: String,
        /// The op's record.
        key: RecordKey,
        /// The stamp that was pushed.
        hlc: Hlc,
    },
    /// The server holds a newer write: it is applied locally and the op removed.
    Superseded {
        /// The op.
        id: OpId,
        /// The stamp that was pushed.
        hlc: Hlc,
        /// The op's table.
        table: String,
        /// The server's state of the record.
        remote: PulledRow,
    },
    /// The server refused the write permanently: the op is kept, marked rejected.
    Rejected {
        /// The op.
        id: OpId,
        /// The op's table.
        table: String,
        /// The op's record.
        key: RecordKey,
        /// The stamp that was pushed.
        hlc: Hlc,
        /// The server's reason.
        reason: String,
    },
    /// The push failed transiently: the op is due again at `next_retry_ms`.
    Retry {
        /// The op.
        id: OpId,
        /// The op's table.
        table: String,
        /// The op's record.
        key: RecordKey,
        /// The stamp that was pushed.
        hlc: Hlc,
        /// What went wrong.
        error: String,
        /// When to try again (ms since the epoch).
        next_retry_ms: i64,
    },
}

/// What settling push outcomes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettleReport {
    /// Ops removed as applied.
    pub completed: u64,
    /// Ops marked rejected.
    pub rejected: u64,
    /// Ops scheduled for a retry.
    pub retrying: u64,
    /// What applying the superseding remote rows did (their ops are in `superseded`).
    pub applied: ApplyReport,
}

/// What [`Store::discard_op`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiscardReport {
    /// The op removed (`None` if there was no such op).
    pub removed: Option<PendingOp>,
    /// Tables whose cursors were reset so the next pull restores the remote version.
    pub reset_tables: Vec<String>,
}

/// `alias.k = <pk>` for a single-column key; `alias.k1 = (<pk> ->> '$[0]') AND ...` for a
/// composite key whose canonical text (a JSON array) is `pk`.
pub(crate) fn key_match(spec: &TableSpec, alias: &str, pk: &str) -> String {
    match spec.key {
        [one] => format!("{alias}.{} = {pk}", quote(one)),
        many => many
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{alias}.{} = ({pk} ->> '$[{i}]')", quote(k)))
            .collect::<Vec<_>>()
            .join(" AND "),
    }
}

const J_KEY: &str = "(j.value ->> '$.\"$k\"')";
const J_HLC: &str = "(j.value ->> '$.\"$h\"')";
const J_DEL: &str = "(j.value ->> '$.\"$d\"')";

/// The page element handed to SQLite: the row's columns plus `$k`, `$h`, `$d`.
#[derive(Serialize)]
struct PageElem<'a> {
    #[serde(rename = "$k")]
    k: &'a str,
    #[serde(rename = "$h")]
    h: String,
    #[serde(rename = "$d")]
    d: u8,
    #[serde(flatten)]
    row: Option<&'a Row>,
}

/// The page as JSON for SQLite's `json_each`; `with_rows: false` leaves the columns out (only
/// `$k`, `$h`, `$d`: all the statements that match keys and stamps need).
fn page_json(rows: &[PulledRow], with_rows: bool) -> Result<String> {
    let elems: Vec<PageElem<'_>> = rows
        .iter()
        .map(|r| PageElem {
            k: r.key.as_str(),
            h: r.hlc.to_string(),
            d: u8::from(r.deleted),
            row: if r.deleted || !with_rows {
                None
            } else {
                r.row.as_ref()
            },
        })
        .collect();
    serde_json::to_string(&elems).map_err(|source| StoreError::Plugin {
        table: "sync".into(),
        message: format!("encoding a pulled page: {source}"),
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

fn bad_op_row(message: String) -> StoreError {
    StoreError::Plugin {
        table: "sync_outbox".into(),
        message,
    }
}

fn dropped(row: &sqlx::sqlite::SqliteRow) -> Result<DroppedOp> {
    let hlc: String = row.get("hlc");
    let kind: String = row.get("kind");
    Ok(DroppedOp {
        id: OpId(row.get("seq")),
        table: row.get("tbl"),
        key: RecordKey::from_canonical(row.get::<String, _>("pk")),
        hlc: hlc
            .parse()
            .map_err(|e: luma_model::HlcParseError| bad_op_row(e.to_string()))?,
        kind: kind.parse().map_err(bad_op_row)?,
    })
}

pub(crate) async fn set_guard(conn: &mut SqliteConnection, on: bool) -> Result<()> {
    let text = if on {
        "INSERT OR IGNORE INTO sync_apply_guard (id) VALUES (1)"
    } else {
        "DELETE FROM sync_apply_guard"
    };
    sqlx::query(text)
        .execute(conn)
        .await
        .map_err(StoreError::sql("setting the apply guard"))?;
    Ok(())
}

async fn set_cursor_in(
    conn: &mut SqliteConnection,
    user: UserId,
    table: &str,
    cursor: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sync_cursors (user_id, tbl, cursor) VALUES (?, ?, ?) \
         ON CONFLICT (user_id, tbl) DO UPDATE SET cursor = excluded.cursor",
    )
    .bind(user.to_string())
    .bind(table)
    .bind(cursor)
    .execute(conn)
    .await
    .map_err(StoreError::sql("advancing a pull cursor"))?;
    Ok(())
}

impl Store {
    fn registered_sql(&self, table: &str) -> Option<std::sync::Arc<TableSql>> {
        self.table(table).ok()
    }

    /// The synced tables that reference `table`, directly or through other tables, parents
    /// before children (not `table` itself).
    pub fn descendant_tables(&self, table: &str) -> Result<Vec<TableSpec>> {
        let specs = self.synced_tables()?;
        let mut found: HashSet<&'static str> = HashSet::new();
        let mut out = Vec::new();
        // `specs` is parents-first, so one pass sees every ancestor before its children.
        for s in &specs {
            if s.name == table {
                continue;
            }
            if s.parents
                .iter()
                .any(|p| p.table == table || found.contains(p.table))
            {
                found.insert(s.name);
                out.push(*s);
            }
        }
        Ok(out)
    }

    /// Ops of `user` due at `now_ms` and not rejected, at most `limit`, in foreign-key order
    /// (upserts parents first, then deletes children first). Ops of other users and anonymous
    /// ops are never returned: one user's ops are never pushed with another user's token.
    pub async fn next_push_batch(
        &self,
        user: UserId,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<PendingOp>> {
        let depth = self.outbox().depth_case()?;
        self.fold_oplog().await?;
        let text = format!(
            "SELECT {OP_COLUMNS} FROM sync_outbox \
             WHERE rejected = 0 AND user_id = ? AND (next_retry_ms IS NULL OR next_retry_ms <= ?) \
             ORDER BY CASE kind WHEN 'upsert' THEN 0 ELSE 1 END, \
                      CASE kind WHEN 'upsert' THEN {depth} ELSE -({depth}) END, seq \
             LIMIT ?"
        );
        let rows = sqlx::query(&text)
            .bind(user.to_string())
            .bind(now_ms)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.reader_pool())
            .await
            .map_err(StoreError::sql("reading pending ops"))?;
        rows.iter().map(decode_op).collect()
    }

    /// The earliest retry time (ms since the epoch) among `user`'s ops waiting for a retry
    /// (not rejected); `None` if none waits.
    pub async fn next_retry_ms(&self, user: UserId) -> Result<Option<i64>> {
        self.fold_oplog().await?;
        sqlx::query_scalar(
            "SELECT min(next_retry_ms) FROM sync_outbox \
             WHERE rejected = 0 AND user_id = ? AND next_retry_ms IS NOT NULL",
        )
        .bind(user.to_string())
        .fetch_one(self.reader_pool())
        .await
        .map_err(StoreError::sql("reading retry times"))
    }

    /// The payloads of `ops`, in the same order: for an upsert, the row's current synced
    /// columns and stamp (local-only columns are never included); for a delete, no row.
    /// Ops of upserts whose row no longer exists are left out (a newer delete op replaced
    /// them). One statement per table. An op whose row cannot be read (for example
    /// malformed JSON written by hand) is left out too and marked rejected (code `invalid`,
    /// visible in `pending_errors()`); the other ops are unaffected.
    pub async fn read_push_rows(&self, ops: &[PendingOp]) -> Result<Vec<PushRow>> {
        let mut by_table: HashMap<&str, Vec<&str>> = HashMap::new();
        for op in ops.iter().filter(|o| o.kind == OpKind::Upsert) {
            by_table
                .entry(op.table.as_str())
                .or_default()
                .push(op.key.as_str());
        }
        let mut rows: HashMap<(String, String), (Hlc, Row)> = HashMap::new();
        let mut unreadable: HashMap<(String, String), String> = HashMap::new();
        for (table, keys) in by_table {
            let sql = self.table(table)?;
            let spec = sql.spec;
            let cols = spec
                .columns
                .iter()
                .map(|c| format!("t.{}", quote(c.name)))
                .collect::<Vec<_>>()
                .join(", ");
            let text = format!(
                "SELECT j.value AS pk, t.hlc AS hlc, {cols} FROM json_each(?1) j JOIN {} t ON {}",
                quote(spec.name),
                key_match(&spec, "t", "j.value")
            );
            let keys_json = serde_json::to_string(&keys).map_err(|e| bad_op_row(e.to_string()))?;
            let found = sqlx::query(&text)
                .bind(keys_json)
                .fetch_all(self.reader_pool())
                .await
                .map_err(StoreError::sql("reading push payloads"))?;
            for r in &found {
                let pk: String = r.get("pk");
                let hlc: Option<String> = r.get("hlc");
                let Some(hlc) = hlc.and_then(|h| h.parse::<Hlc>().ok()) else {
                    // A row without a stamp was never written through the store: skip it.
                    continue;
                };
                match read_row(&spec, r, 2, true) {
                    Ok(row) => {
                        rows.insert((table.to_string(), pk), (hlc, row));
                    }
                    // One damaged row costs its own op only (see below).
                    Err(error) => {
                        unreadable.insert((table.to_string(), pk), error.to_string());
                    }
                }
            }
        }
        if !unreadable.is_empty() {
            let settle: Vec<Settlement> = ops
                .iter()
                .filter_map(|op| {
                    let reason =
                        unreadable.get(&(op.table.clone(), op.key.as_str().to_string()))?;
                    tracing::warn!(op = %op.id, table = %op.table, key = %op.key, %reason, "the row of a pending op cannot be read: op rejected");
                    Some(Settlement::Rejected {
                        id: op.id,
                        table: op.table.clone(),
                        key: op.key.clone(),
                        hlc: op.hlc,
                        reason: format!("invalid: the local row cannot be read: {reason}"),
                    })
                })
                .collect();
            self.settle_push(&settle).await?;
        }
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            match op.kind {
                OpKind::Delete => out.push(PushRow {
                    op: op.clone(),
                    hlc: op.hlc,
                    row: None,
                }),
                OpKind::Upsert => {
                    if let Some((hlc, row)) =
                        rows.remove(&(op.table.clone(), op.key.as_str().to_string()))
                    {
                        out.push(PushRow {
                            op: op.clone(),
                            hlc: hlc.max(op.hlc),
                            row: Some(row),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Applies one pulled page of `table` and advances `user`'s cursor of that table to
    /// `cursor` (if given), in one transaction: either both happen or neither.
    ///
    /// Rules (per row, last writer wins by stamp): a row is written only if it is newer than
    /// the local row; a local pending op with a newer stamp keeps its row; an older local op
    /// is dropped (reported as superseded); a tombstone deletes the local row and its children
    /// (child upsert ops that lose their row are dropped and reported); rows whose parent is
    /// missing locally are skipped and counted; local-only columns are never overwritten; the
    /// local clock absorbs the page's newest stamp. No pending op is created.
    pub async fn apply_pulled_page(
        &self,
        user: UserId,
        table: &str,
        rows: &[PulledRow],
        cursor: Option<&str>,
    ) -> Result<ApplyReport> {
        let sql = self.table(table)?;
        let mut tx = self.begin_outbox_write().await?;
        set_guard(&mut tx, true).await?;
        let (report, max) = self.apply_in(&mut tx, &sql, rows).await?;
        if let Some(c) = cursor {
            set_cursor_in(&mut tx, user, table, c).await?;
        }
        if let Some(max) = max {
            self.merge_clock_in(&mut tx, max).await?;
        }
        set_guard(&mut tx, false).await?;
        tx.commit()
            .await
            .map_err(StoreError::sql("committing a pulled page"))?;
        Ok(report)
    }

    /// [`Store::apply_pulled_page`] without a cursor (remote state learned another way, such
    /// as the server's row returned with a superseded push outcome).
    pub async fn apply_remote_rows(&self, table: &str, rows: &[PulledRow]) -> Result<ApplyReport> {
        let sql = self.table(table)?;
        let mut tx = self.begin_outbox_write().await?;
        set_guard(&mut tx, true).await?;
        let (report, max) = self.apply_in(&mut tx, &sql, rows).await?;
        if let Some(max) = max {
            self.merge_clock_in(&mut tx, max).await?;
        }
        set_guard(&mut tx, false).await?;
        tx.commit()
            .await
            .map_err(StoreError::sql("committing remote rows"))?;
        Ok(report)
    }

    /// Applies `rows` of one table on `conn` (under the apply guard). Rows that cannot be
    /// applied now are parked (see `parked.rs`) in the same transaction; the others follow the
    /// rules of [`Store::apply_pulled_page`]. Returns the report and the newest stamp among
    /// the rows not parked (what the clock may absorb).
    pub(crate) async fn apply_in(
        &self,
        conn: &mut SqliteConnection,
        sql: &TableSql,
        rows: &[PulledRow],
    ) -> Result<(ApplyReport, Option<Hlc>)> {
        if rows.is_empty() {
            return Ok((ApplyReport::default(), None));
        }
        let spec = sql.spec;
        let to_park = self.triage(&spec, rows);
        // The common case (nothing to park) borrows the page as it is.
        let accepted: std::borrow::Cow<'_, [PulledRow]> = if to_park.is_empty() {
            std::borrow::Cow::Borrowed(rows)
        } else {
            let skip: HashSet<usize> = to_park.iter().map(|p| p.index).collect();
            std::borrow::Cow::Owned(
                rows.iter()
                    .enumerate()
                    .filter(|(i, _)| !skip.contains(i))
                    .map(|(_, r)| r.clone())
                    .collect(),
            )
        };
        let page = page_json(&accepted, false)?;
        let (unparked, parked) = self.park_in(conn, spec.name, &page, rows, &to_park).await?;
        let max = accepted.iter().map(|r| r.hlc).max();
        let mut report = self.apply_accepted(conn, sql, &accepted, &page).await?;
        report.parked = parked;
        report.unparked = unparked;
        Ok((report, max))
    }

    async fn apply_accepted(
        &self,
        conn: &mut SqliteConnection,
        sql: &TableSql,
        rows: &[PulledRow],
        page: &str,
    ) -> Result<ApplyReport> {
        let mut report = ApplyReport::default();
        if rows.is_empty() {
            return Ok(report);
        }
        let spec = sql.spec;
        let t = quote(spec.name);
        let remote_hlc: HashMap<&str, Hlc> = rows.iter().map(|r| (r.key.as_str(), r.hlc)).collect();

        // 1. Local ops the remote state is at least as new as: drop them.
        let gone = sqlx::query(&format!(
            "DELETE FROM sync_outbox AS o WHERE o.tbl = ?1 AND EXISTS \
             (SELECT 1 FROM json_each(?2) j WHERE {J_KEY} = o.pk AND {J_HLC} >= o.hlc) \
             RETURNING seq, tbl, pk, hlc, kind"
        ))
        .bind(spec.name)
        .bind(page)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::sql("dropping superseded ops"))?;
        for r in &gone {
            let op = dropped(r)?;
            if remote_hlc.get(op.key.as_str()) == Some(&op.hlc) {
                report.confirmed += 1;
            } else {
                report.superseded.push(op);
            }
        }

        // The op checks below are left out when the table has no ops at all (the common case
        // of a large pull).
        let has_ops: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sync_outbox WHERE tbl = ?)")
                .bind(spec.name)
                .fetch_one(&mut *conn)
                .await
                .map_err(StoreError::sql("reading pending ops"))?;
        let no_op = |key: &str| {
            if has_ops {
                format!(
                    "NOT EXISTS (SELECT 1 FROM sync_outbox o WHERE o.tbl = '{}' AND o.pk = {key})",
                    spec.name
                )
            } else {
                "1".to_string()
            }
        };
        // 2. Tombstones (before upserts, so that a deleted row frees its unique values): delete
        // rows not newer than the tombstone and without a local op. At equal stamps the delete
        // wins (a server cascade can stamp a child with its own stamp).
        let has_tombstones = rows.iter().any(|r| r.deleted);
        if has_tombstones {
            let del = format!(
                "DELETE FROM {t} WHERE rowid IN (SELECT x.rowid FROM json_each(?1) j JOIN {t} x ON {m} \
                 WHERE {J_DEL} = 1 AND (x.hlc IS NULL OR {J_HLC} >= x.hlc) AND {no_op})",
                m = key_match(&spec, "x", J_KEY),
                no_op = no_op(J_KEY),
            );
            let done = sqlx::query(&del)
                .bind(page)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::write(spec.name))?;
            report.deleted = done.rows_affected();
            if report.deleted > 0 {
                report.orphaned = self.sweep_orphans(conn, spec.name).await?;
            }
        }
        // Parent checks, given how to read a column of the pulled row.
        let parents_ok = |value: &dyn Fn(&luma_model::Column) -> String| {
            let mut checks = Vec::new();
            for p in spec.parents {
                if p.table == spec.name {
                    continue;
                }
                let (Some(col), Some(parent)) =
                    (spec.column(p.column), self.registered_sql(p.table))
                else {
                    continue;
                };
                let Some(pkey) = parent.spec.key.first() else {
                    continue;
                };
                let v = value(col);
                checks.push(format!(
                    "({v} IS NULL OR EXISTS (SELECT 1 FROM {} pp WHERE pp.{} = {v}))",
                    quote(p.table),
                    quote(pkey)
                ));
            }
            if checks.is_empty() {
                None
            } else {
                Some(checks.join(" AND "))
            }
        };
        let v_parents = parents_ok(&|c| v_col(c.name));
        let has_parents = v_parents.is_some();
        let filter = format!(
            "{} AND {}",
            no_op(V_KEY),
            v_parents.unwrap_or_else(|| "1".to_string())
        );
        // 3. Upserts of rows without a (newer) local op whose parents exist, many rows per
        // statement with typed values.
        let upsert = PulledUpsert::new(&spec, &filter);
        let live_rows: Vec<&PulledRow> = rows.iter().filter(|r| !r.deleted).collect();
        let full = upsert.per_statement().min(live_rows.len());
        let full_text = upsert.text(full);
        let mut conflict_from = None;
        for (i, chunk) in live_rows.chunks(upsert.per_statement()).enumerate() {
            let text = if chunk.len() == full {
                std::borrow::Cow::Borrowed(&full_text)
            } else {
                std::borrow::Cow::Owned(upsert.text(chunk.len()))
            };
            match upsert.bind(&spec, &text, chunk)?.execute(&mut *conn).await {
                Ok(done) => report.upserted += done.rows_affected(),
                Err(e) if is_unique_violation(&e) => {
                    conflict_from = Some(i * upsert.per_statement());
                    break;
                }
                Err(e) => return Err(StoreError::write(spec.name)(e)),
            }
        }
        if let Some(from) = conflict_from {
            // A unique value other than the key is held by another row that a later row of
            // this page (or a later page) moves away: apply the rest row by row, in passes,
            // until nothing more goes in. (A failed statement leaves the transaction open.)
            let one = upsert.text(1);
            let mut left: Vec<&PulledRow> = live_rows[from..].to_vec();
            loop {
                let before = left.len();
                let mut still = Vec::new();
                for r in left {
                    match upsert
                        .bind(&spec, &one, std::slice::from_ref(&r))?
                        .execute(&mut *conn)
                        .await
                    {
                        Ok(done) => report.upserted += done.rows_affected(),
                        Err(e) if is_unique_violation(&e) => still.push(r),
                        Err(e) => return Err(StoreError::write(spec.name)(e)),
                    }
                }
                left = still;
                if left.is_empty() || left.len() == before {
                    break;
                }
            }
            report.skipped_conflict = left.len() as u64;
            for r in &left {
                tracing::warn!(table = spec.name, key = %r.key, "pulled row conflicts with a unique value held locally: skipped");
            }
        }
        let live = rows.iter().filter(|r| !r.deleted).count() as u64;
        // Rows can only have been skipped for a missing parent if fewer were written.
        if has_parents && report.upserted < live {
            // Only keys and parent references are read back from this JSON: text, exact.
            let skipped: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM json_each(?1) j WHERE {J_DEL} = 0 AND {no_op} AND NOT ({parents_ok})",
                no_op = no_op(J_KEY),
                parents_ok = parents_ok(&|c| decode("j.value", c.name, c.kind)).unwrap_or_else(|| "1".to_string()),
            ))
            .bind(page_json(rows, true)?)
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::sql("counting rows without a parent"))?;
            report.skipped_missing_parent = u64::try_from(skipped).unwrap_or(0);
        }

        if report.upserted > 0 || report.deleted > 0 {
            report.note_changed(spec.name);
        }
        if !report.orphaned.is_empty() {
            for d in self.descendant_tables(spec.name)? {
                report.note_changed(d.name);
            }
        }
        Ok(report)
    }

    /// Turns upsert ops of rows of `table`'s descendants that no longer exist (deleted by a
    /// cascade while applying a parent's tombstone) into deletes with the same stamp: the
    /// record's newest write was made under a parent that is gone, so by "parent delete wins"
    /// the record ends deleted everywhere, also where an older version of it is still alive.
    /// Without this an older write on another device would outlive the newest one.
    async fn sweep_orphans(
        &self,
        conn: &mut SqliteConnection,
        table: &str,
    ) -> Result<Vec<DroppedOp>> {
        let mut out = Vec::new();
        for d in self.descendant_tables(table)? {
            let gone = sqlx::query(&format!(
                "UPDATE sync_outbox AS o SET kind = 'delete', attempts = 0, last_error = NULL, \
                 rejected = 0, next_retry_ms = NULL \
                 WHERE o.tbl = ?1 AND o.kind = 'upsert' AND NOT EXISTS \
                 (SELECT 1 FROM {} c WHERE {}) RETURNING seq, tbl, pk, hlc, kind",
                quote(d.name),
                key_match(&d, "c", "o.pk")
            ))
            .bind(d.name)
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::sql("turning ops of vanished rows into deletes"))?;
            for r in &gone {
                out.push(dropped(r)?);
            }
        }
        Ok(out)
    }

    /// After a full re-pull of `table` (the server said the cursor was older than its
    /// tombstone horizon, or the user's venues changed): removes local rows whose key the full
    /// pull did not return (`keep`), in one transaction, without creating ops, with their
    /// children (orphaned child ops become deletes and are reported).
    ///
    /// Kept as well: rows with a pending op (an unpushed edit is never dropped here; the
    /// server's answer to it decides), and rows a remaining child row references, so that an
    /// unpushed edit of a child keeps its parents. A child row counts if it has a pending op,
    /// or if its table is among `repulled` (re-pulled in the same cycle and already cleaned,
    /// children first, so what remains there is either on the server or kept for an op).
    pub async fn remove_unreturned(
        &self,
        table: &str,
        keep: &[RecordKey],
        repulled: &[&str],
    ) -> Result<ApplyReport> {
        let sql = self.table(table)?;
        let spec = sql.spec;
        let keys: Vec<&str> = keep.iter().map(RecordKey::as_str).collect();
        let mut children_kept = String::new();
        if let [pkey] = spec.key {
            for child in self.synced_tables()? {
                for p in child.parents.iter().filter(|p| p.table == spec.name) {
                    let with_op = if repulled.contains(&child.name) {
                        String::new()
                    } else {
                        format!(
                            " AND EXISTS (SELECT 1 FROM sync_outbox co WHERE co.tbl = '{}' AND co.pk = {})",
                            child.name,
                            crate::schema::key_expr(&child, "c")
                        )
                    };
                    children_kept.push_str(&format!(
                        " AND NOT EXISTS (SELECT 1 FROM {} c WHERE c.{} = x.{}{with_op})",
                        quote(child.name),
                        quote(p.column),
                        quote(pkey)
                    ));
                }
            }
        }
        let json = serde_json::to_string(&keys).map_err(|e| bad_op_row(e.to_string()))?;
        let mut report = ApplyReport::default();
        let mut tx = self.begin_outbox_write().await?;
        set_guard(&mut tx, true).await?;
        let done = sqlx::query(&format!(
            "DELETE FROM {t} WHERE rowid IN (SELECT x.rowid FROM {t} x \
             WHERE {k} NOT IN (SELECT value FROM json_each(?1)) \
             AND NOT EXISTS (SELECT 1 FROM sync_outbox o WHERE o.tbl = ?2 AND o.pk = {k}){children_kept})",
            t = quote(spec.name),
            k = crate::schema::key_expr(&spec, "x"),
        ))
        .bind(&json)
        .bind(spec.name)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::write(spec.name))?;
        report.deleted = done.rows_affected();
        if report.deleted > 0 {
            report.note_changed(spec.name);
            report.orphaned = self.sweep_orphans(&mut tx, spec.name).await?;
            for d in self.descendant_tables(spec.name)? {
                report.note_changed(d.name);
            }
        }
        let kept: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {t} x WHERE {k} NOT IN (SELECT value FROM json_each(?1))",
            t = quote(spec.name),
            k = crate::schema::key_expr(&spec, "x"),
        ))
        .bind(&json)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::sql("counting rows kept for pending ops"))?;
        report.kept_unreturned = u64::try_from(kept).unwrap_or(0);
        set_guard(&mut tx, false).await?;
        tx.commit()
            .await
            .map_err(StoreError::sql("removing rows the server no longer has"))?;
        Ok(report)
    }

    /// Records the outcomes of one push in one transaction: applied ops are removed,
    /// superseded ones are removed and the server's state applied, rejected ones are kept
    /// and marked, transient failures get their retry time. An op whose record was edited
    /// since it was pushed (its stamp changed) is left alone: the newer edit still has to go.
    pub async fn settle_push(&self, outcomes: &[Settlement]) -> Result<SettleReport> {
        let mut report = SettleReport::default();
        let mut tx = self.begin_outbox_write().await?;
        set_guard(&mut tx, true).await?;
        let mut max_seen: Option<Hlc> = None;
        // Applied ops go in one statement (a push of N ops must not cost N statements).
        let applied: Vec<(String, String, String)> = outcomes
            .iter()
            .filter_map(|s| match s {
                Settlement::Applied {
                    table, key, hlc, ..
                } => Some((table.clone(), key.as_str().to_string(), hlc.to_string())),
                _ => None,
            })
            .collect();
        if !applied.is_empty() {
            let json = serde_json::to_string(&applied).map_err(|e| bad_op_row(e.to_string()))?;
            report.completed += sqlx::query(
                "DELETE FROM sync_outbox WHERE (tbl, pk) IN (SELECT o.tbl, o.pk FROM json_each(?1) j \
                 JOIN sync_outbox o ON o.tbl = (j.value ->> 0) AND o.pk = (j.value ->> 1) \
                 WHERE o.hlc <= (j.value ->> 2))",
            )
            .bind(json)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::sql("completing ops"))?
            .rows_affected();
        }
        for s in outcomes {
            match s {
                Settlement::Applied { .. } => {}
                Settlement::Superseded {
                    hlc, table, remote, ..
                } => {
                    let sql = self.table(table)?;
                    let (applied, max) = self
                        .apply_in(&mut tx, &sql, std::slice::from_ref(remote))
                        .await?;
                    report.applied.merge(applied);
                    // The apply dropped the op if the remote stamp is newer than the op's;
                    // make sure the pushed write's op is gone either way.
                    sqlx::query("DELETE FROM sync_outbox WHERE tbl = ? AND pk = ? AND hlc <= ?")
                        .bind(table)
                        .bind(remote.key.as_str())
                        .bind(hlc.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::sql("completing ops"))?;
                    max_seen = max_seen.max(max);
                }
                Settlement::Rejected {
                    table,
                    key,
                    hlc,
                    reason,
                    ..
                } => {
                    report.rejected += sqlx::query(
                        "UPDATE sync_outbox SET attempts = attempts + 1, last_error = ?, rejected = 1, \
                         next_retry_ms = NULL WHERE tbl = ? AND pk = ? AND hlc <= ?",
                    )
                    .bind(reason)
                    .bind(table)
                    .bind(key.as_str())
                    .bind(hlc.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::sql("recording a rejection"))?
                    .rows_affected();
                }
                Settlement::Retry {
                    table,
                    key,
                    hlc,
                    error,
                    next_retry_ms,
                    ..
                } => {
                    report.retrying += sqlx::query(
                        "UPDATE sync_outbox SET attempts = attempts + 1, last_error = ?, \
                         next_retry_ms = ? WHERE tbl = ? AND pk = ? AND hlc <= ?",
                    )
                    .bind(error)
                    .bind(next_retry_ms)
                    .bind(table)
                    .bind(key.as_str())
                    .bind(hlc.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::sql("recording a failure"))?
                    .rows_affected();
                }
            }
        }
        if let Some(max) = max_seen {
            self.merge_clock_in(&mut tx, max).await?;
        }
        set_guard(&mut tx, false).await?;
        tx.commit()
            .await
            .map_err(StoreError::sql("settling a push"))?;
        Ok(report)
    }

    /// `user`'s pull cursor of `table` (`None`: pull from the start).
    pub async fn sync_cursor(&self, user: UserId, table: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT cursor FROM sync_cursors WHERE user_id = ? AND tbl = ?")
            .bind(user.to_string())
            .bind(table)
            .fetch_optional(self.reader_pool())
            .await
            .map_err(StoreError::sql("reading a pull cursor"))
    }

    /// Sets `user`'s pull cursor of `table`.
    pub async fn set_sync_cursor(&self, user: UserId, table: &str, cursor: &str) -> Result<()> {
        let mut conn = self.write_conn().await?;
        set_cursor_in(&mut conn, user, table, cursor).await
    }

    /// Forgets pull cursors so the next pull starts from the beginning: of `user` (every user
    /// if `None`), of `tables` (every table if empty). Returns how many were removed.
    pub async fn reset_sync_cursors(&self, user: Option<UserId>, tables: &[&str]) -> Result<u64> {
        let tables_json = serde_json::to_string(tables).map_err(|e| bad_op_row(e.to_string()))?;
        let done = sqlx::query(
            "DELETE FROM sync_cursors WHERE (?1 IS NULL OR user_id = ?1) \
             AND (json_array_length(?2) = 0 OR tbl IN (SELECT value FROM json_each(?2)))",
        )
        .bind(user.map(|u| u.to_string()))
        .bind(tables_json)
        .execute(self.writer_pool())
        .await
        .map_err(StoreError::sql("resetting pull cursors"))?;
        Ok(done.rows_affected())
    }

    /// Absorbs a stamp seen from elsewhere into the device clock: every later local write gets
    /// a newer stamp. The clock only moves forward. Returns true if it moved.
    pub async fn merge_remote_clock(&self, seen: Hlc) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        self.merge_clock_in(&mut conn, seen).await
    }

    /// The device clock's newest stamp.
    pub async fn clock_stamp(&self) -> Result<Hlc> {
        crate::oplog::read_floor_from(self.reader_pool()).await
    }

    /// Drops an op without pushing it, so the next pull restores the remote version: for an
    /// upsert, the local row is marked stale (stamp `''`, older than any remote stamp; a stale
    /// row the next full pull does not restore is removed by [`Store::purge_discarded`]); the
    /// cursors of the op's table and its descendants are reset for every user.
    pub async fn discard_op(&self, id: OpId) -> Result<DiscardReport> {
        let mut report = DiscardReport::default();
        let mut tx = self.begin_outbox_write().await?;
        let row = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM sync_outbox WHERE seq = ?"
        ))
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::sql("reading a pending op"))?;
        let Some(row) = row else {
            return Ok(report);
        };
        let op = decode_op(&row)?;
        set_guard(&mut tx, true).await?;
        sqlx::query("DELETE FROM sync_outbox WHERE seq = ?")
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::sql("removing an op"))?;
        if let Some(sql) = self.registered_sql(&op.table) {
            if op.kind == OpKind::Upsert {
                sqlx::query(&format!(
                    "UPDATE {} SET hlc = '' WHERE {}",
                    quote(sql.spec.name),
                    key_match(&sql.spec, quote(sql.spec.name).as_str(), "?1")
                ))
                .bind(op.key.as_str())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::sql("marking a discarded row"))?;
            }
            let mut tables = vec![op.table.clone()];
            tables.extend(
                self.descendant_tables(&op.table)?
                    .iter()
                    .map(|s| s.name.to_string()),
            );
            let json = serde_json::to_string(&tables).map_err(|e| bad_op_row(e.to_string()))?;
            sqlx::query("DELETE FROM sync_cursors WHERE tbl IN (SELECT value FROM json_each(?))")
                .bind(json)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::sql("resetting pull cursors"))?;
            report.reset_tables = tables;
        }
        set_guard(&mut tx, false).await?;
        tx.commit()
            .await
            .map_err(StoreError::sql("discarding an op"))?;
        report.removed = Some(op);
        Ok(report)
    }

    /// Removes rows left stale by [`Store::discard_op`] that a full pull did not restore (the
    /// remote has no version of them), with their children. Call after a complete pull.
    pub async fn purge_discarded(&self) -> Result<ApplyReport> {
        let mut report = ApplyReport::default();
        let specs = self.synced_tables()?;
        let mut tx = self.begin_outbox_write().await?;
        set_guard(&mut tx, true).await?;
        for spec in specs.iter().rev() {
            let done = sqlx::query(&format!(
                "DELETE FROM {t} WHERE hlc = '' AND NOT EXISTS (SELECT 1 FROM sync_outbox o \
                 WHERE o.tbl = ?1 AND {m})",
                t = quote(spec.name),
                m = key_match(spec, quote(spec.name).as_str(), "o.pk")
            ))
            .bind(spec.name)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::write(spec.name))?;
            if done.rows_affected() > 0 {
                report.deleted += done.rows_affected();
                report.note_changed(spec.name);
                let orphans = self.sweep_orphans(&mut tx, spec.name).await?;
                report.orphaned.extend(orphans);
            }
        }
        set_guard(&mut tx, false).await?;
        tx.commit()
            .await
            .map_err(StoreError::sql("purging discarded rows"))?;
        Ok(report)
    }

    /// Attributes ops made while signed out to `user` (on sign in), and fills the owner
    /// column (`uid`) of rows written while signed out, in one transaction, without new ops
    /// or stamps (the adopted ops push the filled rows). Returns how many ops were adopted.
    pub async fn adopt_anonymous_ops(&self, user: UserId) -> Result<u64> {
        let specs = self.synced_tables()?;
        let mut tx = self.begin_outbox_write().await?;
        set_guard(&mut tx, true).await?;
        for spec in &specs {
            if spec.column("uid").is_none() {
                continue;
            }
            sqlx::query(&format!(
                "UPDATE {t} SET uid = ?1 WHERE uid IS NULL AND EXISTS (SELECT 1 FROM sync_outbox o \
                 WHERE o.tbl = ?2 AND o.user_id IS NULL AND {m})",
                t = quote(spec.name),
                m = key_match(spec, quote(spec.name).as_str(), "o.pk")
            ))
            .bind(user.to_string())
            .bind(spec.name)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::write(spec.name))?;
        }
        let done = sqlx::query("UPDATE sync_outbox SET user_id = ? WHERE user_id IS NULL")
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::sql("adopting ops"))?;
        set_guard(&mut tx, false).await?;
        tx.commit().await.map_err(StoreError::sql("adopting ops"))?;
        Ok(done.rows_affected())
    }
}
