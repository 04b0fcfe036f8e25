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
    /// Pulled rows parked because they cannot be applied now (see
    /// [`SyncEngine::parked_rows`](crate::SyncEngine::parked_rows)).
    pub parked: u64,
    /// [`SyncStatus::parked`] per reason code (`clock_skew`, `invalid`, ...), by code.
    pub parked_by_reason: Vec<(String, u64)>,
    /// File transfers (album art, full-resolution waveforms), as last reported through
    /// [`FileStatusFeed`]; all zero if nothing feeds it. The engine never moves files itself.
    pub files: FileTransfers,
}

/// Progress of file transfers, shown in [`SyncStatus::files`].
///
/// Plain numbers, so this crate needs no file-sync crate: whoever runs file sync (the app, with
/// `luma_files::FileSync::forward`) copies its progress here through a [`FileStatusFeed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileTransfers {
    /// Uploads waiting or running.
    pub uploads_pending: u64,
    /// Downloads waiting or running.
    pub downloads_pending: u64,
    /// Files waiting or running (`uploads_pending + downloads_pending`).
    pub files_pending: u64,
    /// Transfers in a terminal failed state (missing on the server, rejected).
    pub files_failed: u64,
    /// Bytes moved in the current round of transfers.
    pub bytes_done: u64,
    /// `bytes_done` plus the bytes still to move (as far as sizes are known).
    pub bytes_total: u64,
}

/// A handle that reports file transfers into an engine's status and change notifications
/// (from [`SyncEngine::file_status`](crate::SyncEngine::file_status)). Cheap to clone, `Send`
/// and `'static`, so a task forwarding file-sync progress can own it.
#[derive(Debug, Clone)]
pub struct FileStatusFeed {
    pub(crate) status: tokio::sync::watch::Sender<SyncStatus>,
    pub(crate) changes: tokio::sync::broadcast::Sender<TablesChanged>,
}

impl FileStatusFeed {
    /// Replaces [`SyncStatus::files`] (subscribers of the status see the change).
    pub fn set(&self, files: FileTransfers) {
        self.status.send_if_modified(|s| {
            let changed = s.files != files;
            s.files = files;
            changed
        });
    }

    /// A file landed and a local-only column of a record in `table` changed (for example
    /// `tracks.album_art_path`): sends [`TablesChanged`] for it, so a UI refreshes like after
    /// pulled rows.
    pub fn landed(&self, table: &str) {
        let _ = self.changes.send(TablesChanged {
            tables: vec![table.to_string()],
        });
    }
}

/// Records of these tables changed locally because of sync (pulled rows, superseded or
/// orphaned ops): a UI refreshes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablesChanged {
    /// Table names.
    pub tables: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_status_feed_sets_files_and_reports_landed_tables() {
        let (status, mut rx) = tokio::sync::watch::channel(SyncStatus::default());
        let (changes, mut changed) = tokio::sync::broadcast::channel(4);
        let feed = FileStatusFeed { status, changes };
        rx.mark_unchanged();
        feed.set(FileTransfers::default());
        assert!(!rx.has_changed().unwrap(), "no change, no wake-up");
        let files = FileTransfers {
            downloads_pending: 1,
            files_pending: 1,
            bytes_done: 10,
            bytes_total: 40,
            ..FileTransfers::default()
        };
        feed.set(files);
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().files, files);
        feed.landed("tracks");
        assert_eq!(
            changed.try_recv().unwrap().tables,
            vec!["tracks".to_string()]
        );
    }
}
