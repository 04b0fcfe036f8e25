//! Table descriptions: what the store and the sync engine need to know about a table without
//! knowing its Rust type.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a column's value is stored in SQLite and carried in a [`Row`](crate::Row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ColumnKind {
    /// A UUID, stored as hyphenated lower-case text.
    Uuid,
    /// Plain text.
    Text,
    /// A 64-bit integer.
    Integer,
    /// A 64-bit float.
    Real,
    /// A boolean, stored as 0 / 1, carried as JSON `true` / `false`.
    Bool,
    /// A JSON document, stored as text, carried as JSON.
    Json,
    /// Bytes, stored as a BLOB, carried as a hexadecimal string.
    Blob,
    /// A UTC timestamp, stored and carried as RFC 3339 text.
    Timestamp,
}

impl ColumnKind {
    /// The zero value of the kind in a row's JSON form (false, 0, 0.0, "", an empty blob, null
    /// JSON, the nil uuid, the epoch).
    pub fn zero_value(self) -> serde_json::Value {
        match self {
            ColumnKind::Uuid => serde_json::Value::String(uuid::Uuid::nil().to_string()),
            ColumnKind::Text | ColumnKind::Blob => serde_json::Value::String(String::new()),
            ColumnKind::Integer => serde_json::Value::from(0),
            ColumnKind::Real => serde_json::Value::from(0.0),
            ColumnKind::Bool => serde_json::Value::Bool(false),
            ColumnKind::Json => serde_json::Value::Null,
            ColumnKind::Timestamp => serde_json::Value::String("1970-01-01T00:00:00Z".into()),
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Column name (the same in SQLite, in the cloud and in the record's serde form).
    pub name: &'static str,
    /// How the value is stored and carried.
    pub kind: ColumnKind,
    /// A local-only column never leaves the device (file paths): it is stripped from pushed
    /// rows and never overwritten by pulled ones.
    pub local_only: bool,
}

impl Column {
    /// A synced column of the given kind.
    pub const fn new(name: &'static str, kind: ColumnKind) -> Self {
        Self {
            name,
            kind,
            local_only: false,
        }
    }
    /// A UUID column.
    pub const fn uuid(name: &'static str) -> Self {
        Self::new(name, ColumnKind::Uuid)
    }
    /// A text column.
    pub const fn text(name: &'static str) -> Self {
        Self::new(name, ColumnKind::Text)
    }
    /// An integer column.
    pub const fn integer(name: &'static str) -> Self {
        Self::new(name, ColumnKind::Integer)
    }
    /// A float column.
    pub const fn real(name: &'static str) -> Self {
        Self::new(name, ColumnKind::Real)
    }
    /// A boolean column.
    pub const fn bool(name: &'static str) -> Self {
        Self::new(name, ColumnKind::Bool)
    }
    /// A JSON column.
    pub const fn json(name: &'static str) -> Self {
        Self::new(name, ColumnKind::Json)
    }
    /// A bytes column.
    pub const fn blob(name: &'static str) -> Self {
        Self::new(name, ColumnKind::Blob)
    }
    /// A timestamp column.
    pub const fn timestamp(name: &'static str) -> Self {
        Self::new(name, ColumnKind::Timestamp)
    }
    /// The same column, marked local-only.
    pub const fn local(self) -> Self {
        Self {
            local_only: true,
            ..self
        }
    }
}

/// A foreign key to a parent table. Children are pushed and pulled after their parents and are
/// deleted with them (`ON DELETE CASCADE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The referencing column in this table.
    pub column: &'static str,
    /// The parent table (its key is a single `id` column, or the referenced column below).
    pub table: &'static str,
}

impl Parent {
    /// A foreign key `column -> table`.
    pub const fn new(column: &'static str, table: &'static str) -> Self {
        Self { column, table }
    }
}

/// Who may see and write a synced table's rows. The server enforces it (row-level security);
/// the client only uses it to describe the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// Never synced: device-specific data (settings, local registries).
    LocalOnly,
    /// Only the user in the owner column (`uid`) sees and writes the row.
    Owner {
        /// The owner column.
        column: &'static str,
    },
    /// The venue itself: its owner and its members see it; only the owner deletes it or
    /// changes its share code.
    Venue,
    /// A row of a venue (`venue_id`): the venue's owner and members see and write it.
    InVenue {
        /// The column holding the venue id.
        column: &'static str,
    },
    /// Visible to the owner, and to every signed-in user when `flag` is true (community
    /// patterns).
    OwnerOrPublic {
        /// The owner column.
        owner: &'static str,
        /// The publication flag column.
        flag: &'static str,
    },
    /// Inherits the visibility of its parent row.
    Parent {
        /// The column referencing the parent.
        column: &'static str,
        /// The parent table.
        table: &'static str,
    },
}

/// Everything the engine needs to know about a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    /// Table name (the same locally and in the cloud).
    pub name: &'static str,
    /// All columns the record carries (the sync bookkeeping column `hlc` is not listed).
    pub columns: &'static [Column],
    /// The primary key columns (usually `["id"]`).
    pub key: &'static [&'static str],
    /// Foreign keys to parent tables.
    pub parents: &'static [Parent],
    /// Visibility scope; [`Scope::LocalOnly`] tables never sync.
    pub scope: Scope,
}

impl TableSpec {
    /// True if the table syncs with the cloud.
    pub const fn is_synced(&self) -> bool {
        !matches!(self.scope, Scope::LocalOnly)
    }

    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Columns that sync (all but the local-only ones).
    pub fn synced_columns(&self) -> impl Iterator<Item = &'static Column> {
        self.columns.iter().filter(|c| !c.local_only)
    }

    /// Names of the local-only columns.
    pub fn local_only_columns(&self) -> impl Iterator<Item = &'static str> {
        self.columns.iter().filter(|c| c.local_only).map(|c| c.name)
    }

    /// True if `column` is part of the key.
    pub fn is_key(&self, column: &str) -> bool {
        self.key.contains(&column)
    }
}

/// The key of one record, in a canonical text form: the value itself for a single-column key,
/// a JSON array of the values for a composite key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordKey(String);

impl RecordKey {
    /// The key of a record with a single key column.
    pub fn single(value: impl fmt::Display) -> Self {
        Self(value.to_string())
    }

    /// The key of a record with several key columns, in key order.
    pub fn composite<I, V>(values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: fmt::Display,
    {
        let parts: Vec<serde_json::Value> = values
            .into_iter()
            .map(|v| serde_json::Value::String(v.to_string()))
            .collect();
        Self(serde_json::Value::Array(parts).to_string())
    }

    /// The key of `row` under `spec` (`None` if a key column is missing or not a scalar).
    pub fn from_row(spec: &TableSpec, row: &crate::Row) -> Option<Self> {
        let scalar = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        match spec.key {
            [one] => row.get(*one).and_then(scalar).map(Self),
            many => {
                let parts = many
                    .iter()
                    .map(|k| row.get(*k).and_then(scalar))
                    .collect::<Option<Vec<_>>>()?;
                Some(Self::composite(parts))
            }
        }
    }

    /// Wraps a key already in canonical text form (as stored in the outbox).
    pub fn from_canonical(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's values in key order.
    pub fn parts(&self) -> Vec<String> {
        if self.0.starts_with('[') {
            if let Ok(values) = serde_json::from_str::<Vec<String>>(&self.0) {
                return values;
            }
        }
        vec![self.0.clone()]
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordKey({})", self.0)
    }
}
