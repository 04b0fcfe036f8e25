//! Binding a row's JSON values as typed SQLite parameters.

use luma_model::{ColumnKind, Row, TableSpec};
use serde_json::Value;
use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments};

use crate::error::{Result, StoreError};

pub(crate) type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;

fn mismatch(spec: &TableSpec, column: &str, kind: ColumnKind, value: &Value) -> StoreError {
    StoreError::Plugin {
        table: spec.name.to_string(),
        message: format!("column {column} is {kind:?} but the record holds {value}"),
    }
}

/// True if [`bind_value`] binds `value` for a column of `kind` (it fails otherwise): the
/// check run on pulled rows before a page is applied, so one row that cannot be stored is
/// parked instead of failing its page.
pub(crate) fn value_fits(kind: ColumnKind, value: Option<&Value>) -> bool {
    match (kind, value.unwrap_or(&Value::Null)) {
        (_, Value::Null) | (ColumnKind::Json, _) | (ColumnKind::Bool, Value::Bool(_)) => true,
        (ColumnKind::Integer, Value::Number(n)) => n.as_i64().is_some(),
        (ColumnKind::Real, Value::Number(n)) => n.as_f64().is_some_and(f64::is_finite),
        (ColumnKind::Blob, Value::String(s)) => {
            s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit())
        }
        (ColumnKind::Uuid | ColumnKind::Text | ColumnKind::Timestamp, Value::String(_)) => true,
        (ColumnKind::Integer, Value::Bool(_)) => true,
        _ => false,
    }
}

/// Binds `value` for a column of `kind`.
pub(crate) fn bind_value<'q>(
    q: SqliteQuery<'q>,
    spec: &TableSpec,
    column: &str,
    kind: ColumnKind,
    value: Option<&Value>,
) -> Result<SqliteQuery<'q>> {
    let value = value.unwrap_or(&Value::Null);
    Ok(match (kind, value) {
        (_, Value::Null) => q.bind(None::<String>),
        (ColumnKind::Json, v) => q.bind(v.to_string()),
        (ColumnKind::Bool, Value::Bool(b)) => q.bind(*b),
        (ColumnKind::Integer, Value::Number(n)) => match n.as_i64() {
            Some(i) => q.bind(i),
            None => return Err(mismatch(spec, column, kind, value)),
        },
        (ColumnKind::Real, Value::Number(n)) => match n.as_f64() {
            Some(f) => q.bind(f),
            None => return Err(mismatch(spec, column, kind, value)),
        },
        (ColumnKind::Blob, Value::String(s)) => match hex::decode(s) {
            Ok(bytes) => q.bind(bytes),
            Err(_) => return Err(mismatch(spec, column, kind, value)),
        },
        (ColumnKind::Uuid | ColumnKind::Text | ColumnKind::Timestamp, Value::String(s)) => {
            q.bind(s.clone())
        }
        (ColumnKind::Integer, Value::Bool(b)) => q.bind(i64::from(*b)),
        _ => return Err(mismatch(spec, column, kind, value)),
    })
}

/// Binds every column of `row` in spec order.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn bind_all<'q>(
    mut q: SqliteQuery<'q>,
    spec: &TableSpec,
    row: &Row,
) -> Result<SqliteQuery<'q>> {
    for c in spec.columns {
        q = bind_value(q, spec, c.name, c.kind, row.get(c.name))?;
    }
    Ok(q)
}

/// Binds the parts of a record key (as text, which is how keys are stored).
pub(crate) fn bind_key_parts<'q>(
    mut q: SqliteQuery<'q>,
    spec: &TableSpec,
    parts: Vec<String>,
) -> Result<SqliteQuery<'q>> {
    if parts.len() != spec.key.len() {
        return Err(StoreError::NotFound {
            table: spec.name,
            key: format!("{parts:?}"),
        });
    }
    for (k, part) in spec.key.iter().zip(parts) {
        match spec.column(k).map(|c| c.kind) {
            Some(ColumnKind::Integer) => match part.parse::<i64>() {
                Ok(i) => q = q.bind(i),
                Err(_) => {
                    return Err(StoreError::NotFound {
                        table: spec.name,
                        key: part,
                    })
                }
            },
            _ => q = q.bind(part),
        }
    }
    Ok(q)
}
