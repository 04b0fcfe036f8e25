//! The store's error type.

use luma_model::{RowError, ValidationError};
use thiserror::Error;

/// Everything that can go wrong in the store. Whenever an error is returned from a write,
/// nothing of that write was committed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open the database {path}: {source}")]
    Open {
        /// The path that was opened.
        path: String,
        /// The driver's reason.
        #[source]
        source: sqlx::Error,
    },
    /// The database has a migration this build does not know: it was written by a newer
    /// version of the app. Nothing was changed.
    #[error(
        "the database has migration {version} which this build does not know; \
         it was created by a newer version of Luma"
    )]
    UnknownMigration {
        /// The unknown migration's version.
        version: i64,
    },
    /// A migration failed or an applied migration was edited.
    #[error("migrating the database failed: {source}")]
    Migrate {
        /// The migrator's reason.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A record failed validation; nothing was written.
    #[error("invalid record: {source}")]
    Invalid {
        /// Which rule it broke.
        #[source]
        source: ValidationError,
    },
    /// A row could not be converted to or from its record type (for example text in the
    /// database that is not one of an enum's values).
    #[error("bad row: {source}")]
    Row {
        /// The conversion's reason.
        #[source]
        source: RowError,
    },
    /// No record with this key.
    #[error("no {table} record with key {key}")]
    NotFound {
        /// Table.
        table: &'static str,
        /// Key that was looked up.
        key: String,
    },
    /// A constraint of the database refused the write (a missing parent, a duplicate unique
    /// value, a check); nothing was written.
    #[error("{table}: constraint violated: {message}")]
    Constraint {
        /// Table written to.
        table: &'static str,
        /// The database's message.
        message: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The table is not registered with this store.
    #[error("table {table} is not registered with this store")]
    UnknownTable {
        /// Table name.
        table: String,
    },
    /// A plugin table is not usable as declared.
    #[error("plugin table {table}: {message}")]
    Plugin {
        /// Table name.
        table: String,
        /// What is wrong.
        message: String,
    },
    /// Any other database error.
    #[error("{context}: {source}")]
    Sql {
        /// What the store was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

impl StoreError {
    /// True if retrying the same call later may succeed (the database was busy or an IO
    /// error occurred), false for errors that will repeat (validation, constraints, ...).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Sql { source, .. } | StoreError::Open { source, .. } => match source {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
                sqlx::Error::Database(db) => {
                    let code = db.code().unwrap_or_default();
                    // SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes.
                    code == "5" || code == "6" || code.ends_with("05") || code.ends_with("06")
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// True if the error says a record was not found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    pub(crate) fn sql(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Sql { context, source }
    }

    /// Maps a driver error of a write to `table` into a typed error.
    pub(crate) fn write(table: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| match &source {
            sqlx::Error::Database(db)
                if matches!(
                    db.kind(),
                    sqlx::error::ErrorKind::UniqueViolation
                        | sqlx::error::ErrorKind::ForeignKeyViolation
                        | sqlx::error::ErrorKind::NotNullViolation
                        | sqlx::error::ErrorKind::CheckViolation
                ) || db.message().contains("luma:") =>
            {
                StoreError::Constraint {
                    table,
                    message: db.message().to_string(),
                    source,
                }
            }
            _ => StoreError::Sql {
                context: "writing a record",
                source,
            },
        }
    }
}

impl From<ValidationError> for StoreError {
    fn from(source: ValidationError) -> Self {
        StoreError::Invalid { source }
    }
}

impl From<RowError> for StoreError {
    fn from(source: RowError) -> Self {
        StoreError::Row { source }
    }
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
