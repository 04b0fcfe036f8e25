//! The [`Record`] and [`Syncable`] traits.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{RowError, ValidationError};
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
