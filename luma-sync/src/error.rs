//! The engine's error type.

use luma_store::StoreError;
use thiserror::Error;

/// What can go wrong while syncing. Remote failures fall in three families the engine treats
/// differently: [`SyncError::Transient`] (retried with backoff), [`SyncError::Unauthorized`]
/// (the token is refreshed once, then the call retried) and [`SyncError::Permanent`] (not
/// retried).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The remote could not be reached or failed in a way that may pass: network error,
    /// timeout, 5xx. Retrying later may succeed.
    #[error("transient remote failure: {message}")]
    Transient {
        /// What happened.
        message: String,
        /// The underlying error, if there is one.
        #[source]
        source: Option<BoxError>,
        /// How long the server asked the client to wait (HTTP `Retry-After`), if it did: the
        /// engine waits at least this long before the next attempt.
        retry_after: Option<std::time::Duration>,
    },
    /// The remote refused the credentials (HTTP 401: expired or revoked token).
    #[error("the remote refused the credentials: {message}")]
    Unauthorized {
        /// The remote's message.
        message: String,
        /// The underlying error, if there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The remote refused the whole request permanently (malformed, forbidden, unknown
    /// table). Retrying the same request fails the same way.
    #[error("the remote refused the request: {message}")]
    Permanent {
        /// The remote's message.
        message: String,
        /// The underlying error, if there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The remote answered something the protocol does not allow (for example fewer outcomes
    /// than changes).
    #[error("protocol violation by the remote: {message}")]
    Protocol {
        /// What was wrong.
        message: String,
        /// The underlying error (for example the JSON decoder's), if there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The local store failed.
    #[error("local store: {source}")]
    Store {
        /// The store's error.
        #[from]
        source: StoreError,
    },
    /// No user is signed in: nothing can be pushed or pulled.
    #[error("no user is signed in")]
    NotSignedIn,
    /// The auth server ended the session (its refresh token was refused: revoked, reused or
    /// expired). The session is forgotten; the user must sign in again. Not retried.
    #[error("signed out by the server: {message}")]
    SignedOut {
        /// The auth server's answer.
        message: String,
    },
    /// The engine was shut down.
    #[error("the sync engine is shut down")]
    ShutDown,
    /// This remote does not implement the operation (the default of an optional
    /// [`Remote`](crate::Remote) method).
    #[error("the remote does not support {operation}")]
    Unsupported {
        /// The operation asked for.
        operation: &'static str,
    },
    /// The requested record does not exist or the user may not read it.
    #[error("{table} {key} not found or not readable")]
    NotFound {
        /// Table.
        table: &'static str,
        /// Key.
        key: String,
    },
}

impl SyncError {
    /// True if the same call may succeed later without anything changing (network errors,
    /// 5xx, a busy local database).
    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::Transient { .. } => true,
            SyncError::Store { source } => source.is_retryable(),
            _ => false,
        }
    }

    /// True for a refused token (the engine refreshes it once).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, SyncError::Unauthorized { .. })
    }

    /// A transient error with this message.
    pub fn transient(message: impl Into<String>) -> Self {
        SyncError::Transient {
            message: message.into(),
            source: None,
            retry_after: None,
        }
    }

    /// A refused-credentials error with this message.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        SyncError::Unauthorized {
            message: message.into(),
            source: None,
        }
    }

    /// A permanent refusal with this message.
    pub fn permanent(message: impl Into<String>) -> Self {
        SyncError::Permanent {
            message: message.into(),
            source: None,
        }
    }

    /// A protocol violation with this message.
    pub fn protocol(message: impl Into<String>) -> Self {
        SyncError::Protocol {
            message: message.into(),
            source: None,
        }
    }

    /// The same error with `cause` as its source (for the variants that carry one; others are
    /// returned unchanged).
    pub fn with_source(mut self, cause: impl Into<BoxError>) -> Self {
        match &mut self {
            SyncError::Transient { source, .. }
            | SyncError::Unauthorized { source, .. }
            | SyncError::Permanent { source, .. }
            | SyncError::Protocol { source, .. } => *source = Some(cause.into()),
            _ => {}
        }
        self
    }

    /// The wait the server asked for (`Retry-After` of a transient failure), if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            SyncError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A boxed underlying error, as the remote variants of [`SyncError`] carry it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias of the engine.
pub type Result<T, E = SyncError> = std::result::Result<T, E>;
