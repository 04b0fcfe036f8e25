//! The engine's status (a plain struct published on a `tokio::sync::watch`) and change
//! notifications.

use chrono::{DateTime, Utc};
use luma_model::UserId;

/// What the engine is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Phase {
    /// Not started, or waiting for the next trigger.
    #[default]
    Idle,
    /// Pulling remote changes.
    Pulling,
    /// Pushing local changes.
    Pushing,
    /// Shut down.
    Stopped,
}

/// Progress of the current step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// The table being pulled (`None` while pushing).
    pub table: Option<String>,
    /// Rows pulled or changes pushed so far in this step.
    pub done: u64,
}

/// The engine's status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncStatus {
    /// What the engine is doing.
    pub phase: Phase,
    /// True if the last remote call succeeded (false after a transient failure).
    pub online: bool,
    /// The user syncing, if signed in.
    pub user: Option<UserId>,
    /// Pending ops not rejected.
    pub pending: u64,
    /// Rejected ops (see `pending_errors()`).
    pub rejected: u64,
    /// End of the last successful pull.
    pub last_pull: Option<DateTime<Utc>>,
    /// End of the last successful push.
    pub last_push: Option<DateTime<Utc>>,
    /// Progress of the current step.
    pub progress: Option<Progress>,
    /// The last error (cleared by the next successful cycle).
    pub last_error: Option<String>,
}

/// Records of these tables changed locally because of sync (pulled rows, superseded or
/// orphaned ops): a UI refreshes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablesChanged {
    /// Table names.
    pub tables: Vec<String>,
}
