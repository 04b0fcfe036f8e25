//! SQL generated from a [`TableSpec`]: the generic row reads and writes, and the outbox
//! triggers that record a pending op in the same transaction as every local write.
//!
//! Keeping the per-row outbox work inside SQLite (triggers) is what makes a store write cost
//! about one statement instead of two (sqlx hands every statement to a worker thread).

use luma_model::{ColumnKind, Row, TableSpec};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::Row as _;

use crate::error::{Result, StoreError};

/// The current time in milliseconds since the epoch, in SQLite.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

/// Advances the device clock by one tick (mirrors `luma_model::Clock::tick`).
fn advance_clock() -> String {
    format!(
        "UPDATE sync_clock SET \
         physical = CASE WHEN {NOW_MS} > physical THEN {NOW_MS} \
                         WHEN counter >= {max} THEN physical + 1 ELSE physical END, \
         counter = CASE WHEN {NOW_MS} > physical THEN 0 \
                        WHEN counter >= {max} THEN 0 ELSE counter + 1 END, \
         next_op = next_op + 1 \
         WHERE id = 1",
        max = luma_model::MAX_COUNTER
    )
}

/// The clock's current stamp in [`luma_model::Hlc`]'s text form.
pub(crate) const STAMP: &str =
    "(SELECT printf('%015d-%06d-%s', physical, counter, site) FROM sync_clock WHERE id = 1)";

const CURRENT_USER: &str = "(SELECT user_id FROM sync_identity WHERE id = 1)";

const NOT_APPLYING: &str = "NOT EXISTS (SELECT 1 FROM sync_apply_guard)";

pub(crate) fn quote(ident: &str) -> String {
    format!("\"{ident}\"")
}

fn valid_ident(ident: &str) -> bool {
    !ident.is_empty()
        && ident.len() <= 63
        && ident
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !ident.as_bytes()[0].is_ascii_digit()
}

/// Checks that every name in the spec is a plain identifier (they are spliced into SQL).
pub(crate) fn check_spec(spec: &TableSpec) -> Result<()> {
    let bad = |message: String| StoreError::Plugin {
        table: spec.name.to_string(),
        message,
    };
    if !valid_ident(spec.name) {
        return Err(bad("table names are lower-case identifiers".into()));
    }
    for c in spec.columns {
        if !valid_ident(c.name) || c.name == "hlc" {
            return Err(bad(format!("bad column name {:?}", c.name)));
        }
    }
    if spec.key.is_empty() {
        return Err(bad("a table needs at least one key column".into()));
    }
    for k in spec.key {
        if spec.column(k).is_none() {
            return Err(bad(format!("key column {k} is not among the columns")));
        }
    }
    for p in spec.parents {
        if spec.column(p.column).is_none() || !valid_ident(p.table) {
            return Err(bad(format!("bad parent {} -> {}", p.column, p.table)));
        }
    }
    Ok(())
}

/// SQL expression decoding column `col` out of the JSON object `src` (a row in its serde form).
pub fn decode(src: &str, col: &str, kind: ColumnKind) -> String {
    let path = format!("'$.\"{col}\"'");
    match kind {
        ColumnKind::Json => format!("NULLIF({src} -> {path}, 'null')"),
        ColumnKind::Blob => format!("unhex({src} ->> {path})"),
        _ => format!("{src} ->> {path}"),
    }
}

/// The generated SQL of one table.
#[derive(Debug, Clone)]
pub struct TableSql {
    /// The table's spec.
    pub spec: TableSpec,
    /// All columns, comma-separated, in spec order (decode with [`read_row`]).
    pub select_columns: String,
    /// `k1 = ? AND k2 = ?`.
    pub key_where: String,
    /// INSERT with one bound parameter per column in spec order.
    pub insert: String,
    /// INSERT OR REPLACE-like upsert with one bound parameter per column.
    pub upsert: String,
    /// UPDATE of all non-key columns; parameters ?1..?N are all columns in spec order.
    pub update: String,
    /// The record key of a row as SQL, given the row alias (`NEW`, `OLD`, or a table alias).
    pub key_expr_new: String,
}

impl TableSql {
    /// Generates the SQL of `spec`.
    pub fn new(spec: TableSpec) -> Result<Self> {
        check_spec(&spec)?;
        let t = quote(spec.name);
        let cols: Vec<String> = spec.columns.iter().map(|c| quote(c.name)).collect();
        let key_where = spec
            .key
            .iter()
            .map(|k| format!("{} = ?", quote(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let params = vec!["?"; cols.len()].join(", ");
        let insert = format!("INSERT INTO {t} ({}) VALUES ({params})", cols.join(", "));
        let non_key: Vec<&str> = spec
            .columns
            .iter()
            .filter(|c| !spec.is_key(c.name))
            .map(|c| c.name)
            .collect();
        let key_cols: Vec<String> = spec.key.iter().map(|k| quote(k)).collect();
        let upsert = if non_key.is_empty() {
            format!("{insert} ON CONFLICT ({}) DO NOTHING", key_cols.join(", "))
        } else {
            format!(
                "{insert} ON CONFLICT ({}) DO UPDATE SET {}",
                key_cols.join(", "),
                non_key
                    .iter()
                    .map(|c| format!("{0} = excluded.{0}", quote(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        // Parameters ?1..?N are the columns in spec order (numbered, so the key columns and
        // the new values can be used twice). `updated_at` only moves when a synced column
        // really changes, so an edit of local-only columns stays local (no op, no new stamp).
        let n = |name: &str| {
            spec.columns
                .iter()
                .position(|c| c.name == name)
                .map(|i| i + 1)
                .unwrap_or(0)
        };
        let changed: Vec<String> = spec
            .columns
            .iter()
            .filter(|c| !c.local_only && !spec.is_key(c.name) && c.name != "updated_at")
            .map(|c| format!("{} IS NOT ?{}", quote(c.name), n(c.name)))
            .collect();
        let changed = if changed.is_empty() {
            "0".to_string()
        } else {
            changed.join(" OR ")
        };
        let mut sets: Vec<String> = non_key
            .iter()
            .map(|c| {
                if *c == "updated_at" {
                    format!(
                        "\"updated_at\" = CASE WHEN {changed} THEN ?{} ELSE \"updated_at\" END",
                        n(c)
                    )
                } else if *c == "uid" {
                    // An update never clears the owner (a struct built with `new()` carries
                    // `uid: None`); owners are filled on insert and only the server changes them.
                    format!("\"uid\" = COALESCE(?{}, \"uid\")", n(c))
                } else {
                    format!("{} = ?{}", quote(c), n(c))
                }
            })
            .collect();
        if sets.is_empty() {
            // Nothing to change but the statement must still find the row.
            sets.push(format!("{0} = {0}", key_cols[0]));
        }
        let update = format!(
            "UPDATE {t} SET {} WHERE {}",
            sets.join(", "),
            spec.key
                .iter()
                .map(|k| format!("{} = ?{}", quote(k), n(k)))
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        Ok(Self {
            select_columns: cols.join(", "),
            key_where,
            insert,
            upsert,
            update,
            key_expr_new: key_expr(&spec, "NEW"),
            spec,
        })
    }

    /// INSERT of `n` rows in one statement (one bound parameter per column and row).
    pub fn insert_many_sql(&self, n: usize) -> String {
        let one = format!("({})", vec!["?"; self.spec.columns.len()].join(", "));
        let cols: Vec<String> = self.spec.columns.iter().map(|c| quote(c.name)).collect();
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            quote(self.spec.name),
            cols.join(", "),
            vec![one; n].join(", ")
        )
    }

    /// `DROP` + `CREATE` statements of this table's outbox triggers (empty for local-only
    /// tables, which only get the key guard).
    pub fn trigger_sql(&self) -> Vec<String> {
        let spec = &self.spec;
        let name = spec.name;
        let t = quote(name);
        let mut out: Vec<String> = ["ins", "upd", "del", "key"]
            .iter()
            .map(|k| format!("DROP TRIGGER IF EXISTS luma_{k}_{name}"))
            .collect();
        let key_changed = spec
            .key
            .iter()
            .map(|k| format!("NEW.{0} IS NOT OLD.{0}", quote(k)))
            .collect::<Vec<_>>()
            .join(" OR ");
        out.push(format!(
            "CREATE TRIGGER luma_key_{name} BEFORE UPDATE ON {t} WHEN {key_changed} \
             BEGIN SELECT RAISE(ABORT, 'luma: key columns of {name} are immutable'); END"
        ));
        if !spec.is_synced() {
            return out;
        }
        let outbox = |kind: &str, alias: &str| {
            format!(
                "INSERT INTO sync_outbox (tbl, pk, seq, hlc, kind, user_id) \
                 SELECT '{name}', {pk}, c.next_op, \
                 printf('%015d-%06d-%s', c.physical, c.counter, c.site), '{kind}', i.user_id \
                 FROM sync_clock AS c, sync_identity AS i WHERE c.id = 1 AND i.id = 1 \
                 ON CONFLICT (tbl, pk) DO UPDATE SET hlc = excluded.hlc, kind = excluded.kind, \
                 user_id = excluded.user_id, attempts = 0, last_error = NULL, rejected = 0, \
                 next_retry_ms = NULL",
                pk = key_expr(spec, alias)
            )
        };
        let fill_owner = if spec.column("uid").is_some() {
            format!(", uid = COALESCE(NEW.uid, {CURRENT_USER})")
        } else {
            String::new()
        };
        let advance = advance_clock();
        out.push(format!(
            "CREATE TRIGGER luma_ins_{name} AFTER INSERT ON {t} WHEN {NOT_APPLYING} BEGIN \
             {advance}; \
             UPDATE {t} SET hlc = {STAMP}{fill_owner} WHERE rowid = NEW.rowid; \
             {}; END",
            outbox("upsert", "NEW")
        ));
        let changed: Vec<String> = spec
            .synced_columns()
            .filter(|c| !spec.is_key(c.name))
            .map(|c| format!("NEW.{0} IS NOT OLD.{0}", quote(c.name)))
            .collect();
        let changed = if changed.is_empty() {
            "0".to_string()
        } else {
            changed.join(" OR ")
        };
        out.push(format!(
            "CREATE TRIGGER luma_upd_{name} AFTER UPDATE ON {t} \
             WHEN {NOT_APPLYING} AND NEW.hlc IS OLD.hlc AND ({changed}) BEGIN \
             {advance}; \
             UPDATE {t} SET hlc = {STAMP} WHERE rowid = NEW.rowid; \
             {}; END",
            outbox("upsert", "NEW")
        ));
        out.push(format!(
            "CREATE TRIGGER luma_del_{name} AFTER DELETE ON {t} WHEN {NOT_APPLYING} BEGIN \
             {advance}; {}; END",
            outbox("delete", "OLD")
        ));
        out
    }
}

/// The canonical record key of the row `alias` as SQL (see `luma_model::RecordKey`).
pub fn key_expr(spec: &TableSpec, alias: &str) -> String {
    match spec.key {
        [one] => format!("CAST({alias}.{} AS TEXT)", quote(one)),
        many => format!(
            "json_array({})",
            many.iter()
                .map(|k| format!("CAST({alias}.{} AS TEXT)", quote(k)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Decodes a row selected with [`TableSql::select_columns`] (columns in spec order, starting at
/// index `offset`) into its JSON form. With `synced_only`, local-only columns are left out
/// (what a push sends). Values are exact: floats keep every bit.
pub fn read_row(
    spec: &TableSpec,
    row: &SqliteRow,
    offset: usize,
    synced_only: bool,
) -> Result<Row> {
    let mut out = Row::new();
    for (i, c) in spec.columns.iter().enumerate() {
        if synced_only && c.local_only {
            continue;
        }
        let idx = offset + i;
        let err = |source| StoreError::Sql {
            context: "decoding a column",
            source,
        };
        let value = match c.kind {
            ColumnKind::Integer => row
                .try_get_unchecked::<Option<i64>, _>(idx)
                .map_err(err)?
                .map(Value::from),
            ColumnKind::Real => row
                .try_get_unchecked::<Option<f64>, _>(idx)
                .map_err(err)?
                .map(Value::from),
            ColumnKind::Bool => row
                .try_get_unchecked::<Option<i64>, _>(idx)
                .map_err(err)?
                .map(|b| Value::Bool(b != 0)),
            ColumnKind::Blob => row
                .try_get_unchecked::<Option<Vec<u8>>, _>(idx)
                .map_err(err)?
                .map(|b| Value::String(hex::encode(b))),
            ColumnKind::Json => match row
                .try_get_unchecked::<Option<String>, _>(idx)
                .map_err(err)?
            {
                None => None,
                Some(text) => {
                    Some(
                        serde_json::from_str(&text).map_err(|source| StoreError::Row {
                            source: luma_model::RowError::Decode {
                                table: spec.name,
                                source,
                            },
                        })?,
                    )
                }
            },
            // Uuid, Text, Timestamp and any kind added later are read as text.
            _ => row
                .try_get_unchecked::<Option<String>, _>(idx)
                .map_err(err)?
                .map(Value::String),
        };
        out.insert(c.name.to_string(), value.unwrap_or(Value::Null));
    }
    Ok(out)
}
