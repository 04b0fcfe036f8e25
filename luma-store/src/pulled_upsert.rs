//! The upsert of pulled rows: many rows per statement, every value bound as a typed parameter.
//!
//! Values are never parsed back out of JSON text inside SQLite (its JSON number parsing is not
//! exact for every float), and SQLite still does the per-row work: the rows arrive as one
//! multi-row `VALUES` list, named `v`, and the statement filters and upserts them:
//!
//! ```sql
//! WITH v("id", ..., "$h", "$k") AS (VALUES (?, ..., ?, ?), ...)
//! INSERT INTO t ("id", ..., hlc) SELECT v."id", ..., v."$h" FROM v WHERE <filter>
//! ON CONFLICT (<key>) DO UPDATE SET ... WHERE t.hlc IS NULL OR excluded.hlc > t.hlc
//! ```

use luma_model::{Column, TableSpec};

use crate::bind::{bind_value, SqliteQuery};
use crate::error::Result;
use crate::schema::quote;
use crate::sync_api::PulledRow;

/// Bound parameters per statement we allow ourselves (SQLite's limit is 32,766).
const MAX_PARAMS: usize = 32_000;

/// Rows per statement at most (a pulled page is usually 1,000 rows: one statement).
const MAX_ROWS: usize = 1_000;

/// Alias of the row's stamp in `v`.
pub(crate) const V_HLC: &str = "v.\"$h\"";

/// Alias of the row's record key (canonical text) in `v`.
pub(crate) const V_KEY: &str = "v.\"$k\"";

/// The value of `column` of the row in `v`.
pub(crate) fn v_col(column: &str) -> String {
    format!("v.{}", quote(column))
}

/// The generated upsert of one table for a given row filter.
#[derive(Debug)]
pub(crate) struct PulledUpsert {
    columns: Vec<&'static Column>,
    head: String,
    tail: String,
    one: String,
    per_statement: usize,
}

impl PulledUpsert {
    /// The upsert of `spec`'s synced columns and stamp; `filter` is a condition on `v` (see
    /// [`V_KEY`], [`v_col`]).
    pub(crate) fn new(spec: &TableSpec, filter: &str) -> Self {
        let columns: Vec<&'static Column> = spec.synced_columns().collect();
        let t = quote(spec.name);
        let names: Vec<String> = columns.iter().map(|c| quote(c.name)).collect();
        let head = format!("WITH v({}, \"$h\", \"$k\") AS (VALUES ", names.join(", "));
        let set: Vec<String> = columns
            .iter()
            .filter(|c| !spec.is_key(c.name))
            .map(|c| format!("{0} = excluded.{0}", quote(c.name)))
            .chain(std::iter::once("hlc = excluded.hlc".to_string()))
            .collect();
        let tail = format!(
            ") INSERT INTO {t} ({cols}, hlc) SELECT {vals}, {V_HLC} FROM v WHERE {filter} \
             ON CONFLICT ({keys}) DO UPDATE SET {set} \
             WHERE {t}.hlc IS NULL OR excluded.hlc > {t}.hlc",
            cols = names.join(", "),
            vals = columns
                .iter()
                .map(|c| v_col(c.name))
                .collect::<Vec<_>>()
                .join(", "),
            keys = spec
                .key
                .iter()
                .map(|k| quote(k))
                .collect::<Vec<_>>()
                .join(", "),
            set = set.join(", "),
        );
        let params = columns.len() + 2;
        let one = format!("({})", vec!["?"; params].join(", "));
        Self {
            columns,
            head,
            tail,
            one,
            per_statement: (MAX_PARAMS / params).clamp(1, MAX_ROWS),
        }
    }

    /// Most rows one statement takes.
    pub(crate) fn per_statement(&self) -> usize {
        self.per_statement
    }

    /// The statement for `n` rows.
    pub(crate) fn text(&self, n: usize) -> String {
        let mut s =
            String::with_capacity(self.head.len() + self.tail.len() + n * (self.one.len() + 2));
        s.push_str(&self.head);
        for i in 0..n {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&self.one);
        }
        s.push_str(&self.tail);
        s
    }

    /// Binds `rows` (live rows, at most [`PulledUpsert::per_statement`]) to the statement
    /// `text` (from [`PulledUpsert::text`] for `rows.len()`).
    pub(crate) fn bind<'q>(
        &self,
        spec: &TableSpec,
        text: &'q str,
        rows: &[&PulledRow],
    ) -> Result<SqliteQuery<'q>> {
        let mut q = sqlx::query(text);
        for r in rows {
            for c in &self.columns {
                let value = r.row.as_ref().and_then(|row| row.get(c.name));
                q = bind_value(q, spec, c.name, c.kind, value)?;
            }
            q = q.bind(r.hlc.to_string()).bind(r.key.as_str().to_owned());
        }
        Ok(q)
    }
}
