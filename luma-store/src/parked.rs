//! Parked rows: pulled rows the store could not apply when they arrived, kept durably in
//! `sync_parked` (migration `parked`) and re-tried later.
//!
//! A pulled row is parked instead of applied when its stamp is further ahead of the device's
//! wall clock than the store's clock-skew bound ([`ParkReason::ClockSkew`]: applying it would
//! drag the device clock along), or when one of its values cannot be stored or the row
//! cannot be decoded into its record type ([`ParkReason::Invalid`]: a float that is not
//! finite, a JSON column of the wrong shape, an unknown enum value). The row is parked in the
//! same transaction as the rest of its page and the cursor advance, so the page is never
//! aborted and the cursor never moves past a row that is neither applied nor parked.
//!
//! A parked row is replaced (or dropped) when a version of the same key at least as new
//! arrives, and re-tried by [`Store::retry_parked`] (the engine calls it at the end of every
//! pull): a clock-skew row applies once the wall clock has caught up with it.

use std::collections::HashMap;
use std::time::Duration;

use luma_model::{Hlc, Record, RecordKey, Row, TableSpec};
use serde::Serialize;
use sqlx::{Row as _, SqliteConnection};

use crate::bind::value_fits;
use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::sync_api::{ApplyReport, PulledRow};

/// The default bound on how far a remote stamp may be ahead of the device's wall clock (the
/// rule and its default live in luma-model, shared with the server side).
pub use luma_model::DEFAULT_MAX_CLOCK_SKEW;

/// Why a pulled row is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ParkReason {
    /// The row's stamp is further ahead of the device's wall clock than the store's bound
    /// ([`Store::max_clock_skew`]). It applies once the wall clock catches up. Code
    /// `clock_skew`.
    ClockSkew,
    /// A value of the row cannot be stored in its column, or the row does not decode into
    /// its record type. It applies when a newer valid version replaces it (or a newer build
    /// can read it). Code `invalid`.
    Invalid,
}

impl ParkReason {
    /// The stable code stored in `sync_parked.reason_code`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ParkReason::ClockSkew => "clock_skew",
            ParkReason::Invalid => "invalid",
        }
    }

    /// The reason with this code (`None` for a code this build does not know).
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "clock_skew" => Some(ParkReason::ClockSkew),
            "invalid" => Some(ParkReason::Invalid),
            _ => None,
        }
    }
}

impl std::fmt::Display for ParkReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parked row, as [`Store::parked_rows`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedRow {
    /// The row's table.
    pub table: String,
    /// The row's key.
    pub key: RecordKey,
    /// The pulled row's stamp (`None` if it had no text form).
    pub hlc: Option<Hlc>,
    /// True for a tombstone.
    pub deleted: bool,
    /// Why it is parked.
    pub reason: ParkReason,
    /// What exactly is wrong (for people).
    pub message: String,
    /// When it was parked (ms since the epoch).
    pub parked_at_ms: i64,
}

/// Checks that a pulled row decodes into its record type.
pub(crate) type RowCheck = fn(&Row) -> std::result::Result<(), String>;

/// The [`RowCheck`] of record type `T`: the client's one rule for a row as it travels
/// ([`Record::check_wire_row`], which the server side applies too).
pub(crate) fn decode_check<T: Record>(row: &Row) -> std::result::Result<(), String> {
    T::check_wire_row(row).map_err(|e| e.to_string())
}

/// A row of a page to park, with its reason.
pub(crate) struct ToPark {
    pub(crate) index: usize,
    pub(crate) reason: ParkReason,
    pub(crate) message: String,
}

#[derive(Serialize)]
struct ParkElem<'a> {
    k: &'a str,
    h: String,
    d: u8,
    r: Option<String>,
    c: &'static str,
    m: &'a str,
}

fn now_ms() -> i64 {
    i64::try_from(luma_model::wall_clock_ms()).unwrap_or(i64::MAX)
}

fn encode_err(e: serde_json::Error) -> StoreError {
    StoreError::Plugin {
        table: "sync_parked".into(),
        message: format!("encoding parked rows: {e}"),
    }
}

impl Store {
    /// How far ahead of the device's wall clock a remote stamp may be: a pulled row stamped
    /// further ahead is parked ([`ParkReason::ClockSkew`]) and the device clock never absorbs
    /// such a stamp. Default [`DEFAULT_MAX_CLOCK_SKEW`].
    pub fn max_clock_skew(&self) -> Duration {
        Duration::from_millis(
            self.inner
                .max_skew_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Sets [`Store::max_clock_skew`] (for every clone of this handle).
    pub fn set_max_clock_skew(&self, skew: Duration) {
        let ms = u64::try_from(skew.as_millis()).unwrap_or(u64::MAX);
        self.inner
            .max_skew_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The bound of [`Store::max_clock_skew`] in ms.
    pub(crate) fn max_skew_ms(&self) -> u64 {
        self.inner
            .max_skew_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The newest physical time (ms) a remote stamp may carry now.
    pub(crate) fn stamp_bound_ms(&self) -> u64 {
        luma_model::wall_clock_ms().saturating_add(self.max_skew_ms())
    }

    /// The rows of a page that cannot be applied now, with their reasons (cheap checks in
    /// memory, no statement).
    pub(crate) fn triage(&self, spec: &TableSpec, rows: &[PulledRow]) -> Vec<ToPark> {
        let now_ms = luma_model::wall_clock_ms();
        let skew_ms = self.max_skew_ms();
        let check = self.row_check(spec.name);
        let mut out = Vec::new();
        for (index, r) in rows.iter().enumerate() {
            if !r.hlc.is_representable() {
                // Cannot come from a remote (stamps travel as text); a caller's mistake.
                out.push(ToPark {
                    index,
                    reason: ParkReason::Invalid,
                    message: format!(
                        "the stamp ({}, {}) has no text form",
                        r.hlc.physical_ms, r.hlc.counter
                    ),
                });
                continue;
            }
            if r.hlc.is_beyond_skew(now_ms, skew_ms) {
                out.push(ToPark {
                    index,
                    reason: ParkReason::ClockSkew,
                    message: format!(
                        "stamp {} is more than {} s ahead of this device's clock",
                        r.hlc,
                        self.max_clock_skew().as_secs()
                    ),
                });
                continue;
            }
            if r.deleted {
                continue;
            }
            let Some(row) = r.row.as_ref() else {
                out.push(ToPark {
                    index,
                    reason: ParkReason::Invalid,
                    message: "a live row without columns".into(),
                });
                continue;
            };
            if let Some(c) = spec
                .synced_columns()
                .find(|c| !value_fits(c.kind, row.get(c.name)))
            {
                let value: String = row
                    .get(c.name)
                    .map(|v| v.to_string())
                    .unwrap_or_default()
                    .chars()
                    .take(64)
                    .collect();
                out.push(ToPark {
                    index,
                    reason: ParkReason::Invalid,
                    message: format!("column {} is {:?} but holds {value}", c.name, c.kind),
                });
                continue;
            }
            if let Some(check) = check {
                if let Err(message) = check(row) {
                    out.push(ToPark {
                        index,
                        reason: ParkReason::Invalid,
                        message,
                    });
                }
            }
        }
        for p in &out {
            if let Some(r) = rows.get(p.index) {
                tracing::warn!(table = spec.name, key = %r.key, hlc = %r.hlc, code = p.reason.as_str(), reason = %p.message, "pulled row parked");
            }
        }
        out
    }

    /// Drops parked rows of `table` that a row of `accepted_json` (the keys and stamps of the
    /// page's rows that are not parked, see `sync_api::page_json`) at least as new replaces,
    /// then parks `parked` (rows of `rows`); a parked row is only replaced by one at least as
    /// new. Returns (parked rows dropped, rows parked).
    pub(crate) async fn park_in(
        &self,
        conn: &mut SqliteConnection,
        table: &str,
        accepted_json: &str,
        rows: &[PulledRow],
        parked: &[ToPark],
    ) -> Result<(u64, u64)> {
        let dropped = sqlx::query(
            "DELETE FROM sync_parked WHERE tbl = ?1 AND EXISTS (SELECT 1 FROM json_each(?2) j \
             WHERE (j.value ->> '$.\"$k\"') = sync_parked.pk \
             AND (j.value ->> '$.\"$h\"') >= sync_parked.hlc)",
        )
        .bind(table)
        .bind(accepted_json)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::sql("replacing parked rows"))?
        .rows_affected();
        if parked.is_empty() {
            return Ok((dropped, 0));
        }
        let mut elems = Vec::with_capacity(parked.len());
        for p in parked {
            let Some(r) = rows.get(p.index) else { continue };
            let row = match (&r.row, r.deleted) {
                (Some(row), false) => Some(serde_json::to_string(row).map_err(encode_err)?),
                _ => None,
            };
            elems.push(ParkElem {
                k: r.key.as_str(),
                // A stamp without a text form is kept as '' (older than every stamp, so any
                // version of the key replaces it); it is never re-tried.
                h: if r.hlc.is_representable() {
                    r.hlc.to_string()
                } else {
                    String::new()
                },
                d: u8::from(r.deleted),
                r: row,
                c: p.reason.as_str(),
                m: &p.message,
            });
        }
        let json = serde_json::to_string(&elems).map_err(encode_err)?;
        let done = sqlx::query(
            "INSERT INTO sync_parked (tbl, pk, hlc, deleted, row, reason_code, reason, parked_at) \
             SELECT ?1, j.value ->> '$.k', j.value ->> '$.h', j.value ->> '$.d', j.value ->> '$.r', \
                    j.value ->> '$.c', j.value ->> '$.m', ?3 FROM json_each(?2) j WHERE true \
             ON CONFLICT (tbl, pk) DO UPDATE SET hlc = excluded.hlc, deleted = excluded.deleted, \
             row = excluded.row, reason_code = excluded.reason_code, reason = excluded.reason \
             WHERE excluded.hlc >= sync_parked.hlc",
        )
        .bind(table)
        .bind(json)
        .bind(now_ms())
        .execute(&mut *conn)
        .await
        .map_err(StoreError::sql("parking pulled rows"))?;
        Ok((dropped, done.rows_affected()))
    }

    /// Every parked row, by table and key.
    pub async fn parked_rows(&self) -> Result<Vec<ParkedRow>> {
        let rows = sqlx::query(
            "SELECT tbl, pk, hlc, deleted, reason_code, reason, parked_at FROM sync_parked \
             ORDER BY tbl, pk",
        )
        .fetch_all(self.reader_pool())
        .await
        .map_err(StoreError::sql("reading parked rows"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let table: String = r.get("tbl");
            let pk: String = r.get("pk");
            let code: String = r.get("reason_code");
            let hlc: String = r.get("hlc");
            let Some(reason) = ParkReason::from_code(&code) else {
                tracing::warn!(
                    table,
                    key = pk,
                    code,
                    "a parked row of a reason this build does not know"
                );
                continue;
            };
            let hlc = hlc.parse::<Hlc>().ok();
            out.push(ParkedRow {
                table,
                key: RecordKey::from_canonical(pk),
                hlc,
                deleted: r.get::<i64, _>("deleted") != 0,
                reason,
                message: r.get("reason"),
                parked_at_ms: r.get("parked_at"),
            });
        }
        Ok(out)
    }

    /// How many rows are parked, per reason code (codes this build does not know included).
    pub async fn parked_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT reason_code, count(*) FROM sync_parked GROUP BY reason_code ORDER BY reason_code",
        )
        .fetch_all(self.reader_pool())
        .await
        .map_err(StoreError::sql("counting parked rows"))?;
        Ok(rows
            .into_iter()
            .map(|(c, n)| (c, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    /// Re-tries every parked row (parents' tables first): rows that can be applied now are
    /// applied under the usual rules (last writer wins against the local row and pending ops)
    /// and leave the table; the others stay parked with their (possibly new) reason. One
    /// transaction.
    pub async fn retry_parked(&self) -> Result<ApplyReport> {
        let mut report = ApplyReport::default();
        let rows = sqlx::query("SELECT tbl, pk, hlc, deleted, row FROM sync_parked")
            .fetch_all(self.reader_pool())
            .await
            .map_err(StoreError::sql("reading parked rows"))?;
        if rows.is_empty() {
            return Ok(report);
        }
        let mut by_table: HashMap<String, Vec<PulledRow>> = HashMap::new();
        for r in &rows {
            let table: String = r.get("tbl");
            let pk: String = r.get("pk");
            let hlc: String = r.get("hlc");
            let row: Option<String> = r.get("row");
            let Ok(hlc) = hlc.parse::<Hlc>() else {
                continue;
            };
            let row: Option<Row> = match row.map(|t| serde_json::from_str(&t)).transpose() {
                Ok(row) => row,
                Err(_) => continue,
            };
            by_table.entry(table).or_default().push(PulledRow {
                key: RecordKey::from_canonical(pk),
                hlc,
                deleted: r.get::<i64, _>("deleted") != 0,
                row,
            });
        }
        let specs = self.synced_tables()?;
        let mut tx = self.begin_outbox_write().await?;
        crate::sync_api::set_guard(&mut tx, true).await?;
        let mut max_seen: Option<Hlc> = None;
        for spec in &specs {
            let Some(rows) = by_table.remove(spec.name) else {
                continue;
            };
            let sql = self.table(spec.name)?;
            let (mut applied, max) = self.apply_in(&mut tx, &sql, &rows).await?;
            // Rows that stay parked are not newly parked.
            applied.parked = 0;
            report.merge(applied);
            max_seen = max_seen.max(max);
        }
        if let Some(max) = max_seen {
            self.merge_clock_in(&mut tx, max).await?;
        }
        crate::sync_api::set_guard(&mut tx, false).await?;
        tx.commit()
            .await
            .map_err(StoreError::sql("re-trying parked rows"))?;
        if report.unparked > 0 {
            tracing::info!(applied = report.unparked, "parked rows applied");
        }
        Ok(report)
    }
}
