//! Typed errors of the data model.

use thiserror::Error;

/// A string that should have been an id was not a UUID.
#[derive(Debug, Error)]
#[error("invalid {kind} {input:?}: {source}")]
pub struct ParseIdError {
    /// What kind of id was expected, for example `"venue id"`.
    pub kind: &'static str,
    /// The rejected input (at most 64 characters of it).
    pub input: String,
    /// Why the UUID parser refused it.
    #[source]
    pub source: uuid::Error,
}

/// A record failed validation. Nothing is written when this is returned.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A required text field is empty or only white space.
    #[error("{table}.{field} must not be empty")]
    Empty {
        /// Table of the record.
        table: &'static str,
        /// Field that is empty.
        field: &'static str,
    },
    /// A text field is longer than allowed.
    #[error("{table}.{field} is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// Table of the record.
        table: &'static str,
        /// Field that is too long.
        field: &'static str,
        /// Its length in characters.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A number lies outside its allowed range.
    #[error("{table}.{field} = {value} is outside {min}..={max}")]
    OutOfRange {
        /// Table of the record.
        table: &'static str,
        /// Field that is out of range.
        field: &'static str,
        /// The rejected value.
        value: f64,
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value.
        max: f64,
    },
    /// A floating point field is NaN or infinite.
    #[error("{table}.{field} must be a finite number")]
    NotFinite {
        /// Table of the record.
        table: &'static str,
        /// Field that is not finite.
        field: &'static str,
    },
    /// Two fields contradict each other (for example `end_time < start_time`).
    #[error("{table}: {message}")]
    Inconsistent {
        /// Table of the record.
        table: &'static str,
        /// What is inconsistent.
        message: String,
    },
    /// A field does not have the required format.
    #[error("{table}.{field}: {message}")]
    Format {
        /// Table of the record.
        table: &'static str,
        /// Field with the wrong format.
        field: &'static str,
        /// What format was expected.
        message: String,
    },
}

/// Converting a record to or from its row (JSON object) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RowError {
    /// The row could not be decoded into the record type: a missing column, a wrong type, or
    /// text that is not one of an enum's values.
    #[error("cannot decode a {table} row: {source}")]
    Decode {
        /// Table of the row.
        table: &'static str,
        /// The decoder's reason.
        #[source]
        source: serde_json::Error,
    },
    /// The record could not be encoded as a row.
    #[error("cannot encode a {table} record: {source}")]
    Encode {
        /// Table of the record.
        table: &'static str,
        /// The encoder's reason.
        #[source]
        source: serde_json::Error,
    },
    /// The record encoded to something other than a JSON object.
    #[error("a {table} record did not encode to a JSON object")]
    NotAnObject {
        /// Table of the record.
        table: &'static str,
    },
    /// A key column is missing from the row or is not a string or number.
    #[error("{table} row has no usable key column {column}")]
    MissingKey {
        /// Table of the row.
        table: &'static str,
        /// The key column.
        column: &'static str,
    },
}

/// Why a row as it travels (synced columns only) is refused: the device parks such a pulled
/// row, the server refuses such a pushed one. See [`Record::check_wire_row`](crate::Record::check_wire_row).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WireRowError {
    /// The row does not decode into its record type.
    #[error("the row does not decode: {source}")]
    Decode {
        /// The decoding error.
        #[source]
        source: RowError,
    },
    /// The record breaks its own rules.
    #[error("{source}")]
    Invalid {
        /// The broken rule.
        #[source]
        source: ValidationError,
    },
}
