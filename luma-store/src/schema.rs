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

/// The device clock's newest stamp (handed out or merged): the `hlc` of the op log's last row.
pub(crate) const FLOOR: &str = "(SELECT hlc FROM sync_oplog ORDER BY seq DESC LIMIT 1)";

/// A new stamp after [`FLOOR`] at the current time, computed in SQL: mirrors
/// `luma_model::Clock::tick` (used when a write does not bring a fresh stamp of its own).
fn ticked_stamp() -> String {
    format!(
        "(SELECT CASE WHEN f.now > f.ph THEN printf('%015d-000000-%s', f.now, c.site) \
                      WHEN f.ct >= {max} AND f.ph >= {max_ph} \
                           THEN printf('%015d-%06d-%s', {max_ph}, {max}, c.site) \
                      WHEN f.ct >= {max} THEN printf('%015d-000000-%s', f.ph + 1, c.site) \
                      ELSE printf('%015d-%06d-%s', f.ph, f.ct + 1, c.site) END \
          FROM (SELECT CAST(substr(hlc, 1, 15) AS INTEGER) AS ph, \
                       CAST(substr(hlc, 17, 6) AS INTEGER) AS ct, {NOW_MS} AS now \
                FROM sync_oplog ORDER BY seq DESC LIMIT 1) AS f, sync_clock AS c \
          WHERE c.id = 1)",
        max = luma_model::MAX_COUNTER,
        max_ph = luma_model::MAX_PHYSICAL_MS
    )
}

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
///
/// The write statements bind one parameter per column in spec order and then the write's
/// stamp (the row's `hlc`, in [`luma_model::Hlc`]'s text form): the outbox trigger appends the
/// pending op with that stamp when it is newer than every stamp the database has seen, and
/// stamps the write itself otherwise (so a stale or missing stamp costs time, never order). An
/// owner column `uid` left empty is filled with the signed-in user.
#[derive(Debug, Clone)]
pub struct TableSql {
    /// The table's spec.
    pub spec: TableSpec,
    /// All columns, comma-separated, in spec order (decode with [`read_row`]).
    pub select_columns: String,
    /// `k1 = ? AND k2 = ?`.
    pub key_where: String,
    /// INSERT; parameters ?1..?N are the columns in spec order, ?N+1 the stamp (synced tables
    /// only: local-only tables have no stamp).
    pub insert: String,
    /// INSERT, or on a key conflict an update of the non-key columns (a synced column that
    /// changes moves the stamp; an empty `uid` keeps the stored owner); parameters as
    /// [`TableSql::insert`].
    pub upsert: String,
    /// UPDATE of all non-key columns; parameters ?1..?N are all columns in spec order, ?N+1 the
    /// stamp (taken only if a synced column changes).
    pub update: String,
    /// The record key of a row as SQL, given the row alias (`NEW`, `OLD`, or a table alias).
    pub key_expr_new: String,
}

/// The SQL value of column `c` bound as `param`: an empty owner is the signed-in user.
fn insert_value(c: &str, param: &str) -> String {
    if c == "uid" {
        format!("COALESCE({param}, {CURRENT_USER})")
    } else {
        param.to_string()
    }
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
        // Parameters ?1..?N are the columns in spec order, ?N+1 the stamp (numbered, so the
        // key columns and the new values can be used twice).
        // Local-only tables have no stamp column.
        let synced = spec.is_synced();
        let stamp = format!("?{}", spec.columns.len() + 1);
        let (hlc_col, hlc_val) = if synced {
            (", \"hlc\"".to_string(), format!(", {stamp}"))
        } else {
            (String::new(), String::new())
        };
        let n = |name: &str| {
            spec.columns
                .iter()
                .position(|c| c.name == name)
                .map(|i| i + 1)
                .unwrap_or(0)
        };
        let values: Vec<String> = spec
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| insert_value(c.name, &format!("?{}", i + 1)))
            .collect();
        let insert = format!(
            "INSERT INTO {t} ({}{hlc_col}) VALUES ({}{hlc_val})",
            cols.join(", "),
            values.join(", ")
        );
        let non_key: Vec<&str> = spec
            .columns
            .iter()
            .filter(|c| !spec.is_key(c.name))
            .map(|c| c.name)
            .collect();
        let key_cols: Vec<String> = spec.key.iter().map(|k| quote(k)).collect();
        // The new value of a non-key column in an update (`updated_at` aside): an update never
        // clears the owner (a struct built with `new()` carries `uid: None`); owners are filled
        // on insert and only the server changes them.
        let new_value = |c: &str, param: String| {
            if c == "uid" {
                format!("COALESCE({param}, \"uid\")")
            } else {
                param
            }
        };
        // SQL that is true when the bound values change a synced non-key column of the stored
        // row (`with_updated_at`: counting `updated_at` too).
        let changed_sql = |with_updated_at: bool| {
            let terms: Vec<String> = spec
                .columns
                .iter()
                .filter(|c| !c.local_only && !spec.is_key(c.name))
                .filter(|c| with_updated_at || c.name != "updated_at")
                .map(|c| {
                    format!(
                        "{} IS NOT {}",
                        quote(c.name),
                        new_value(c.name, format!("?{}", n(c.name)))
                    )
                })
                .collect();
            if terms.is_empty() {
                "0".to_string()
            } else {
                terms.join(" OR ")
            }
        };
        let upsert = if non_key.is_empty() {
            format!("{insert} ON CONFLICT ({}) DO NOTHING", key_cols.join(", "))
        } else {
            let changed = changed_sql(true);
            let mut sets: Vec<String> = non_key
                .iter()
                .map(|c| format!("{} = {}", quote(c), new_value(c, format!("?{}", n(c)))))
                .collect();
            if synced {
                sets.push(format!(
                    "\"hlc\" = CASE WHEN {changed} THEN {stamp} ELSE \"hlc\" END"
                ));
            }
            format!(
                "{insert} ON CONFLICT ({}) DO UPDATE SET {}",
                key_cols.join(", "),
                sets.join(", ")
            )
        };
        // `updated_at` only moves when a synced column really changes, so an edit of
        // local-only columns stays local (no op, no new stamp).
        let changed = changed_sql(false);
        let mut sets: Vec<String> = non_key
            .iter()
            .map(|c| {
                if *c == "updated_at" {
                    format!(
                        "\"updated_at\" = CASE WHEN {changed} THEN ?{} ELSE \"updated_at\" END",
                        n(c)
                    )
                } else {
                    format!("{} = {}", quote(c), new_value(c, format!("?{}", n(c))))
                }
            })
            .collect();
        if synced {
            sets.push(format!(
                "\"hlc\" = CASE WHEN {changed} THEN {stamp} ELSE \"hlc\" END"
            ));
        }
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

    /// INSERT of `n` rows in one statement: per row, one bound parameter per column in spec
    /// order and then (synced tables) the row's stamp.
    pub fn insert_many_sql(&self, n: usize) -> String {
        let mut values: Vec<String> = self
            .spec
            .columns
            .iter()
            .map(|c| insert_value(c.name, "?"))
            .collect();
        let mut cols: Vec<String> = self.spec.columns.iter().map(|c| quote(c.name)).collect();
        if self.spec.is_synced() {
            values.push("?".into());
            cols.push("\"hlc\"".into());
        }
        let one = format!("({})", values.join(", "));
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            quote(self.spec.name),
            cols.join(", "),
            vec![one; n].join(", ")
        )
    }

    /// `DROP` + `CREATE` statements of this table's outbox triggers (empty for local-only
    /// tables, which only get the key guard).
    ///
    /// A write that brings a fresh stamp (newer than `FLOOR`, the newest stamp the database
    /// has seen) costs one append to `sync_oplog` (the `luma_ins_`/`luma_upd_` triggers). Any
    /// other write (plain SQL without a stamp, a stale stamp from a second `Store` on the same
    /// file, every delete) is stamped in SQL after the floor and the row is given that stamp
    /// (the `luma_ins2_`/`luma_upd2_`/`luma_del_` triggers). The two insert (update) triggers
    /// exclude each other whichever SQLite fires first: once the fresh-stamp trigger has
    /// appended the op, the last log row is that op.
    pub fn trigger_sql(&self) -> Vec<String> {
        let spec = &self.spec;
        let name = spec.name;
        let t = quote(name);
        let mut out: Vec<String> = ["ins", "ins2", "upd", "upd2", "del", "key"]
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
        let pk_new = key_expr(spec, "NEW");
        let append_fresh = format!(
            "INSERT INTO sync_oplog (tbl, pk, hlc, kind, user_id) \
             VALUES ('{name}', {pk_new}, NEW.hlc, 'upsert', {CURRENT_USER})"
        );
        let append_ticked = |kind: &str, alias: &str| {
            format!(
                "INSERT INTO sync_oplog (tbl, pk, hlc, kind, user_id) \
                 VALUES ('{name}', {}, {}, '{kind}', {CURRENT_USER})",
                key_expr(spec, alias),
                ticked_stamp()
            )
        };
        // NEW.hlc is newer than every stamp seen: the write brought a fresh stamp.
        let fresh = format!("NEW.hlc > {FLOOR}");
        // The write needs stamping: no fresh stamp, and not already logged by the fresh-stamp
        // trigger (which makes this record's op the last log row).
        let stale = format!(
            "(NEW.hlc IS NULL OR NOT EXISTS (SELECT 1 FROM \
             (SELECT tbl, pk, hlc, kind FROM sync_oplog ORDER BY seq DESC LIMIT 1) AS l \
             WHERE l.hlc < NEW.hlc OR (l.hlc = NEW.hlc AND l.tbl = '{name}' \
             AND l.pk = {pk_new} AND l.kind = 'upsert')))"
        );
        let fill_owner = if spec.column("uid").is_some() {
            format!(", uid = COALESCE(NEW.uid, {CURRENT_USER})")
        } else {
            String::new()
        };
        let restamp = format!("UPDATE {t} SET hlc = {FLOOR}{fill_owner} WHERE rowid = NEW.rowid");
        out.push(format!(
            "CREATE TRIGGER luma_ins_{name} AFTER INSERT ON {t} \
             WHEN {fresh} AND {NOT_APPLYING} BEGIN {append_fresh}; END"
        ));
        out.push(format!(
            "CREATE TRIGGER luma_ins2_{name} AFTER INSERT ON {t} \
             WHEN {stale} AND {NOT_APPLYING} BEGIN {}; {restamp}; END",
            append_ticked("upsert", "NEW")
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
        // An update that leaves the stamp alone (plain SQL) is stamped here; one that sets a
        // stamp (the repositories) is logged with it when it is fresh and stamped here when
        // it is stale. Writes that apply remote rows run with the apply guard and log nothing.
        out.push(format!(
            "CREATE TRIGGER luma_upd_{name} AFTER UPDATE ON {t} \
             WHEN NEW.hlc IS NOT OLD.hlc AND {fresh} AND {NOT_APPLYING} AND ({changed}) \
             BEGIN {append_fresh}; END"
        ));
        out.push(format!(
            "CREATE TRIGGER luma_upd2_{name} AFTER UPDATE ON {t} \
             WHEN (NEW.hlc IS OLD.hlc OR {stale}) AND {NOT_APPLYING} AND ({changed}) \
             BEGIN {}; UPDATE {t} SET hlc = {FLOOR} WHERE rowid = NEW.rowid; END",
            append_ticked("upsert", "NEW")
        ));
        out.push(format!(
            "CREATE TRIGGER luma_del_{name} AFTER DELETE ON {t} WHEN {NOT_APPLYING} BEGIN \
             {}; END",
            append_ticked("delete", "OLD")
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
