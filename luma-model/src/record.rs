//! The [`Record`] and [`Syncable`] traits.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{RowError, ValidationError, WireRowError};
use crate::spec::{RecordKey, TableSpec};

/// A row as the store and the sync engine carry it: a JSON object keyed by column name.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// A record type stored in a table of the local database.
///
/// The record's serde form is its row: field names are column names (see
/// [`ColumnKind`](crate::ColumnKind) for how each kind is carried). Conversion, key extraction
/// and validation are provided; a type only names its [`TableSpec`] and, if it has rules,
/// overrides [`Record::validate`].
pub trait Record: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The table this record lives in.
    const SPEC: TableSpec;

    /// Checks the record's own rules (ranges, non-empty names, ...). Called by the store
    /// before anything is written.
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    /// The record's key.
    fn key(&self) -> Result<RecordKey, RowError> {
        let row = self.to_row()?;
        let missing = Self::SPEC.key.first().copied().unwrap_or("id");
        RecordKey::from_row(&Self::SPEC, &row).ok_or(RowError::MissingKey {
            table: Self::SPEC.name,
            column: missing,
        })
    }

    /// The record as a row.
    fn to_row(&self) -> Result<Row, RowError> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            Ok(_) => Err(RowError::NotAnObject {
                table: Self::SPEC.name,
            }),
            Err(source) => Err(RowError::Encode {
                table: Self::SPEC.name,
                source,
            }),
        }
    }

    /// The record from a row.
    fn from_row(row: Row) -> Result<Self, RowError> {
        serde_json::from_value(serde_json::Value::Object(row)).map_err(|source| RowError::Decode {
            table: Self::SPEC.name,
            source,
        })
    }

    /// The client's rules for a row as it travels between a device and the server (synced
    /// columns only; a missing local-only column counts as null): it decodes into the record
    /// type and the record [validates](Record::validate). One rule for both sides: a device
    /// parks a pulled row that fails it, and the server refuses a pushed one (`MemoryRemote`
    /// calls this; the cloud SQL's CHECK rules of migration 0011 state the same rules).
    fn check_wire_row(row: &Row) -> Result<(), WireRowError> {
        let decode = |source| WireRowError::Decode {
            source: RowError::Decode {
                table: Self::SPEC.name,
                source,
            },
        };
        let complete = Self::SPEC.local_only_columns().all(|c| row.contains_key(c));
        let record = if complete {
            // Decodes from the borrowed row (no copy on the common path).
            Self::deserialize(row).map_err(decode)?
        } else {
            // A missing local-only column is null (an optional field); a field that is not
            // optional gets its kind's zero value instead (what the device's own default
            // fills in when the row is stored).
            let fill = |zero: bool| {
                let mut full = row.clone();
                for c in Self::SPEC.columns.iter().filter(|c| c.local_only) {
                    let value = if zero {
                        c.kind.zero_value()
                    } else {
                        serde_json::Value::Null
                    };
                    full.entry(c.name).or_insert(value);
                }
                full
            };
            match Self::deserialize(&fill(false)) {
                Ok(record) => record,
                Err(first) => Self::deserialize(&fill(true)).map_err(|_| decode(first))?,
            }
        };
        record
            .validate()
            .map_err(|source| WireRowError::Invalid { source })
    }
}

/// A record type whose table syncs with the cloud.
///
/// Implementing it is a promise that [`Record::SPEC`] has a scope other than
/// [`Scope::LocalOnly`](crate::Scope::LocalOnly); the store checks it when the table is
/// registered. A plugin table is one struct, one `impl Record` with its spec, this marker, and a
/// migration that creates the table with an `hlc TEXT` column:
///
/// ```
/// use luma_model::{Column, Parent, Record, Scope, Syncable, TableSpec, VenueId};
/// use serde::{Deserialize, Serialize};
/// use uuid::Uuid;
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// struct CueNote {
///     id: Uuid,
///     venue_id: VenueId,
///     text: String,
/// }
///
/// impl Record for CueNote {
///     const SPEC: TableSpec = TableSpec {
///         name: "plugin_cue_notes",
///         columns: &[Column::uuid("id"), Column::uuid("venue_id"), Column::text("text")],
///         key: &["id"],
///         parents: &[Parent::new("venue_id", "venues")],
///         scope: Scope::InVenue { column: "venue_id" },
///     };
/// }
/// impl Syncable for CueNote {}
///
/// let note = CueNote { id: Uuid::nil(), venue_id: VenueId(Uuid::nil()), text: "go".into() };
/// let row = note.to_row().unwrap();
/// assert_eq!(CueNote::from_row(row).unwrap(), note);
/// ```
pub trait Syncable: Record {}
