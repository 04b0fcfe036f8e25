//! The persistent transfer queue (`luma_file_transfers`) and the local-only file registry
//! (`luma_local_files`) in `luma.db`. All SQL of file sync lives here and in `sync.rs`.

use std::path::PathBuf;

use luma_model::{Column, Record, Scope, TableSpec};
use luma_store::{PluginMigration, Store};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use crate::error::{AssetKind, FilesError};

/// Upload or download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From this device to the blob store.
    Upload,
    /// From the blob store to this device.
    Download,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// Where a transfer stands. A finished transfer is removed from the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    /// Waiting (possibly until `next_retry_ms` after a transient failure).
    Pending,
    /// Being transferred now. After a restart such rows go back to `Pending` and restart from
    /// the beginning (partial temp files are removed).
    Active,
    /// Terminal: the blob is not on the server (404), or the local source file is gone. Listed
    /// by [`crate::FileSync::failed_transfers`] until retried or discarded.
    Missing,
    /// Terminal: a permanent error, or too many transient ones. Listed like `Missing`.
    Rejected,
}

/// One row of the transfer queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Id.
    pub id: String,
    /// Upload or download.
    pub direction: Direction,
    /// What is transferred.
    pub kind: AssetKind,
    /// The content-addressed blob key.
    pub blob_key: String,
    /// The record the asset belongs to (`tracks`, `track_waveforms`).
    pub record_table: String,
    /// That record's key.
    pub record_key: String,
    /// Source file (upload) or destination (download).
    pub local_path: String,
    /// MIME type.
    pub content_type: Option<String>,
    /// Size in bytes when known.
    pub size: Option<i64>,
    /// State.
    pub state: TransferState,
    /// Failed attempts so far.
    pub attempts: i64,
    /// The last error.
    pub last_error: Option<String>,
    /// Not before this time (ms since the epoch).
    pub next_retry_ms: i64,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Last change (ms).
    pub updated_ms: i64,
}

impl Record for Transfer {
    const SPEC: TableSpec = TableSpec {
        name: "luma_file_transfers",
        columns: &[
            Column::text("id"),
            Column::text("direction"),
            Column::text("kind"),
            Column::text("blob_key"),
            Column::text("record_table"),
            Column::text("record_key"),
            Column::text("local_path"),
            Column::text("content_type"),
            Column::integer("size"),
            Column::text("state"),
            Column::integer("attempts"),
            Column::text("last_error"),
            Column::integer("next_retry_ms"),
            Column::integer("created_ms"),
            Column::integer("updated_ms"),
        ],
        key: &["id"],
        parents: &[],
        scope: Scope::LocalOnly,
    };
}

/// An audio or stem file registered on this device. These never leave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalFile {
    /// Absolute path.
    pub path: String,
    /// [`AssetKind::Audio`] or [`AssetKind::Stem`].
    pub kind: AssetKind,
    /// The track.
    pub track_id: String,
    /// The stem's name (stems only).
    pub stem_name: Option<String>,
    /// SHA-256 of the bytes, 64 lower-case hex digits.
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// When it was registered (ms).
    pub registered_ms: i64,
}

impl Record for LocalFile {
    const SPEC: TableSpec = TableSpec {
        name: "luma_local_files",
        columns: &[
            Column::text("path"),
            Column::text("kind"),
            Column::text("track_id"),
            Column::text("stem_name"),
            Column::text("sha256"),
            Column::integer("size"),
            Column::integer("registered_ms"),
        ],
        key: &["path"],
        parents: &[],
        scope: Scope::LocalOnly,
    };
}

const TRANSFERS_0001: PluginMigration = PluginMigration {
    id: "luma_files_0001_transfers",
    sql: "CREATE TABLE luma_file_transfers (
    id            TEXT PRIMARY KEY NOT NULL,
    direction     TEXT NOT NULL CHECK (direction IN ('upload', 'download')),
    kind          TEXT NOT NULL CHECK (kind IN ('album_art', 'waveform_full')),
    blob_key      TEXT NOT NULL,
    record_table  TEXT NOT NULL,
    record_key    TEXT NOT NULL,
    local_path    TEXT NOT NULL,
    content_type  TEXT,
    size          INTEGER,
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'active', 'missing', 'rejected')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    next_retry_ms INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    UNIQUE (direction, kind, record_table, record_key)
);
CREATE INDEX luma_file_transfers_due ON luma_file_transfers (state, next_retry_ms);
",
};

const LOCAL_FILES_0001: PluginMigration = PluginMigration {
    id: "luma_files_0002_local_files",
    sql: "CREATE TABLE luma_local_files (
    path          TEXT PRIMARY KEY NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('audio', 'stem')),
    track_id      TEXT NOT NULL,
    stem_name     TEXT,
    sha256        TEXT NOT NULL,
    size          INTEGER NOT NULL,
    registered_ms INTEGER NOT NULL
);
CREATE INDEX luma_local_files_hash ON luma_local_files (sha256);
CREATE INDEX luma_local_files_track ON luma_local_files (track_id);
",
};

/// Creates (once) the tables of file sync.
pub(crate) async fn install(store: &Store) -> Result<(), FilesError> {
    store.register_local::<Transfer>(&[TRANSFERS_0001]).await?;
    store
        .register_local::<LocalFile>(&[LOCAL_FILES_0001])
        .await?;
    Ok(())
}

/// A new transfer to queue.
#[derive(Debug, Clone)]
pub(crate) struct NewTransfer {
    pub direction: Direction,
    pub kind: AssetKind,
    pub blob_key: String,
    pub record_table: &'static str,
    pub record_key: String,
    pub local_path: PathBuf,
    pub content_type: Option<String>,
    pub size: Option<u64>,
}

/// Typed access to the queue's rows.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    store: Store,
}

const COLUMNS: &str = "id, direction, kind, blob_key, record_table, record_key, local_path, \
     content_type, size, state, attempts, last_error, next_retry_ms, created_ms, updated_ms";

fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<Transfer, FilesError> {
    let text = |c: &str| -> Result<String, FilesError> {
        row.try_get::<String, _>(c)
            .map_err(FilesError::queue("decoding a transfer"))
    };
    let bad = |what: &str, v: &str| FilesError::Malformed {
        key: "luma_file_transfers".into(),
        message: format!("unknown {what} {v:?}"),
    };
    let direction = match text("direction")?.as_str() {
        "upload" => Direction::Upload,
        "download" => Direction::Download,
        v => return Err(bad("direction", v)),
    };
    let kind_s = text("kind")?;
    let kind = AssetKind::parse(&kind_s).ok_or_else(|| bad("kind", &kind_s))?;
    let state = match text("state")?.as_str() {
        "pending" => TransferState::Pending,
        "active" => TransferState::Active,
        "missing" => TransferState::Missing,
        "rejected" => TransferState::Rejected,
        v => return Err(bad("state", v)),
    };
    let get = |c: &str| -> Result<i64, FilesError> {
        row.try_get::<i64, _>(c)
            .map_err(FilesError::queue("decoding a transfer"))
    };
    let opt_text = |c: &str| -> Result<Option<String>, FilesError> {
        row.try_get::<Option<String>, _>(c)
            .map_err(FilesError::queue("decoding a transfer"))
    };
    Ok(Transfer {
        id: text("id")?,
        direction,
        kind,
        blob_key: text("blob_key")?,
        record_table: text("record_table")?,
        record_key: text("record_key")?,
        local_path: text("local_path")?,
        content_type: opt_text("content_type")?,
        size: row
            .try_get::<Option<i64>, _>("size")
            .map_err(FilesError::queue("decoding a transfer"))?,
        state,
        attempts: get("attempts")?,
        last_error: opt_text("last_error")?,
        next_retry_ms: get("next_retry_ms")?,
        created_ms: get("created_ms")?,
        updated_ms: get("updated_ms")?,
    })
}

/// Pending/active counts and byte totals of the non-terminal transfers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QueueCounts {
    pub uploads: u64,
    pub downloads: u64,
    pub failed: u64,
    pub bytes: u64,
}

impl Queue {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }

    /// Queues a transfer. A transfer of the same asset slot (direction, kind, record) that is
    /// already queued is replaced (a newer album art supersedes an older pending one).
    pub(crate) async fn enqueue(&self, t: NewTransfer, now: i64) -> Result<String, FilesError> {
        if t.kind.is_local_only() {
            return Err(FilesError::LocalOnly {
                kind: t.kind,
                path: t.local_path,
            });
        }
        let id = uuid::Uuid::new_v4().to_string();
        let size = t.size.and_then(|s| i64::try_from(s).ok());
        let id: String = sqlx::query_scalar(
            "INSERT INTO luma_file_transfers (id, direction, kind, blob_key, record_table, \
             record_key, local_path, content_type, size, state, attempts, next_retry_ms, \
             created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, 0, ?, ?) \
             ON CONFLICT (direction, kind, record_table, record_key) DO UPDATE SET \
             blob_key = excluded.blob_key, local_path = excluded.local_path, \
             content_type = excluded.content_type, size = excluded.size, state = 'pending', \
             attempts = 0, last_error = NULL, next_retry_ms = 0, updated_ms = excluded.updated_ms \
             RETURNING id",
        )
        .bind(&id)
        .bind(t.direction.as_str())
        .bind(t.kind.as_str())
        .bind(&t.blob_key)
        .bind(t.record_table)
        .bind(&t.record_key)
        .bind(t.local_path.to_string_lossy().as_ref())
        .bind(&t.content_type)
        .bind(size)
        .bind(now)
        .bind(now)
        .fetch_one(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("queueing a transfer"))?;
        Ok(id)
    }

    pub(crate) async fn get(&self, id: &str) -> Result<Option<Transfer>, FilesError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM luma_file_transfers WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("reading a transfer"))?;
        row.as_ref().map(decode).transpose()
    }

    pub(crate) async fn find(
        &self,
        direction: Direction,
        kind: AssetKind,
        record_table: &str,
        record_key: &str,
    ) -> Result<Option<Transfer>, FilesError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM luma_file_transfers WHERE direction = ? AND kind = ? \
             AND record_table = ? AND record_key = ?"
        ))
        .bind(direction.as_str())
        .bind(kind.as_str())
        .bind(record_table)
        .bind(record_key)
        .fetch_optional(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("reading a transfer"))?;
        row.as_ref().map(decode).transpose()
    }

    /// All rows, oldest first.
    pub(crate) async fn all(&self) -> Result<Vec<Transfer>, FilesError> {
        self.select("1 = 1 ORDER BY created_ms, id", None).await
    }

    /// Terminal rows (missing, rejected).
    pub(crate) async fn terminal(&self) -> Result<Vec<Transfer>, FilesError> {
        self.select(
            "state IN ('missing', 'rejected') ORDER BY created_ms, id",
            None,
        )
        .await
    }

    /// Pending rows due at `now`, oldest first.
    pub(crate) async fn due(&self, now: i64, limit: i64) -> Result<Vec<Transfer>, FilesError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM luma_file_transfers WHERE state = 'pending' \
             AND next_retry_ms <= ? ORDER BY created_ms, id LIMIT ?"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("reading due transfers"))?
        .iter()
        .map(decode)
        .collect()
    }

    /// The earliest `next_retry_ms` of pending rows.
    pub(crate) async fn next_due(&self) -> Result<Option<i64>, FilesError> {
        sqlx::query_scalar(
            "SELECT MIN(next_retry_ms) FROM luma_file_transfers WHERE state = 'pending'",
        )
        .fetch_one(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("reading the next retry"))
    }

    async fn select(&self, filter: &str, _: Option<()>) -> Result<Vec<Transfer>, FilesError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM luma_file_transfers WHERE {filter}"
        ))
        .fetch_all(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("listing transfers"))?
        .iter()
        .map(decode)
        .collect()
    }

    pub(crate) async fn counts(&self) -> Result<QueueCounts, FilesError> {
        let row = sqlx::query(
            "SELECT \
             COALESCE(SUM(direction = 'upload' AND state IN ('pending', 'active')), 0) AS up, \
             COALESCE(SUM(direction = 'download' AND state IN ('pending', 'active')), 0) AS down, \
             COALESCE(SUM(state IN ('missing', 'rejected')), 0) AS failed, \
             COALESCE(SUM(CASE WHEN state IN ('pending', 'active') THEN COALESCE(size, 0) \
             ELSE 0 END), 0) AS bytes FROM luma_file_transfers",
        )
        .fetch_one(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("counting transfers"))?;
        let n = |c: &str| -> Result<u64, FilesError> {
            let v: i64 = row
                .try_get(c)
                .map_err(FilesError::queue("counting transfers"))?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        Ok(QueueCounts {
            uploads: n("up")?,
            downloads: n("down")?,
            failed: n("failed")?,
            bytes: n("bytes")?,
        })
    }

    async fn set_state(
        &self,
        id: &str,
        set: &str,
        error: Option<&str>,
        now: i64,
        next_retry_ms: Option<i64>,
    ) -> Result<bool, FilesError> {
        let done = sqlx::query(&format!(
            "UPDATE luma_file_transfers SET {set}, last_error = COALESCE(?, last_error), \
             next_retry_ms = COALESCE(?, next_retry_ms), updated_ms = ? WHERE id = ?"
        ))
        .bind(error)
        .bind(next_retry_ms)
        .bind(now)
        .bind(id)
        .execute(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("updating a transfer"))?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn set_size(&self, id: &str, size: u64) -> Result<(), FilesError> {
        sqlx::query("UPDATE luma_file_transfers SET size = ? WHERE id = ?")
            .bind(i64::try_from(size).unwrap_or(i64::MAX))
            .bind(id)
            .execute(self.store.writer_pool())
            .await
            .map_err(FilesError::queue("recording a transfer's size"))?;
        Ok(())
    }

    pub(crate) async fn mark_active(&self, id: &str, now: i64) -> Result<bool, FilesError> {
        self.set_state(id, "state = 'active'", None, now, None)
            .await
    }

    /// Back to pending after a transient failure, or rejected when attempts run out.
    pub(crate) async fn fail_transient(
        &self,
        id: &str,
        error: &str,
        now: i64,
        max_attempts: i64,
        base_backoff_ms: i64,
    ) -> Result<TransferState, FilesError> {
        let attempts: i64 = sqlx::query_scalar(
            "UPDATE luma_file_transfers SET attempts = attempts + 1 WHERE id = ? \
             RETURNING attempts",
        )
        .bind(id)
        .fetch_optional(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("updating a transfer"))?
        .unwrap_or(0);
        if attempts >= max_attempts {
            self.set_state(id, "state = 'rejected'", Some(error), now, None)
                .await?;
            return Ok(TransferState::Rejected);
        }
        let exp = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
        let backoff = base_backoff_ms
            .saturating_mul(1i64 << exp)
            .min(10 * 60 * 1000);
        self.set_state(
            id,
            "state = 'pending'",
            Some(error),
            now,
            Some(now + backoff),
        )
        .await?;
        Ok(TransferState::Pending)
    }

    pub(crate) async fn fail_terminal(
        &self,
        id: &str,
        state: TransferState,
        error: &str,
        now: i64,
    ) -> Result<(), FilesError> {
        let set = match state {
            TransferState::Missing => "state = 'missing', attempts = attempts + 1",
            _ => "state = 'rejected', attempts = attempts + 1",
        };
        self.set_state(id, set, Some(error), now, None).await?;
        Ok(())
    }

    /// Removes a finished or discarded row.
    pub(crate) async fn remove(&self, id: &str) -> Result<bool, FilesError> {
        let done = sqlx::query("DELETE FROM luma_file_transfers WHERE id = ?")
            .bind(id)
            .execute(self.store.writer_pool())
            .await
            .map_err(FilesError::queue("removing a transfer"))?;
        Ok(done.rows_affected() > 0)
    }

    /// A terminal or waiting row becomes due now with its attempts reset.
    pub(crate) async fn retry(&self, id: &str, now: i64) -> Result<bool, FilesError> {
        self.set_state(id, "state = 'pending', attempts = 0", None, now, Some(0))
            .await
    }

    /// After a restart: transfers that were running are restarted from the beginning.
    pub(crate) async fn reset_active(&self, now: i64) -> Result<u64, FilesError> {
        let done = sqlx::query(
            "UPDATE luma_file_transfers SET state = 'pending', next_retry_ms = 0, updated_ms = ? \
             WHERE state = 'active'",
        )
        .bind(now)
        .execute(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("resetting interrupted transfers"))?;
        Ok(done.rows_affected())
    }

    // ----- local-only registry -----

    pub(crate) async fn register_local(&self, f: &LocalFile) -> Result<(), FilesError> {
        sqlx::query(
            "INSERT INTO luma_local_files (path, kind, track_id, stem_name, sha256, size, \
             registered_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET \
             kind = excluded.kind, track_id = excluded.track_id, stem_name = excluded.stem_name, \
             sha256 = excluded.sha256, size = excluded.size, registered_ms = excluded.registered_ms",
        )
        .bind(&f.path)
        .bind(f.kind.as_str())
        .bind(&f.track_id)
        .bind(&f.stem_name)
        .bind(&f.sha256)
        .bind(f.size)
        .bind(f.registered_ms)
        .execute(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("registering a local file"))?;
        Ok(())
    }

    pub(crate) async fn local_file(&self, path: &str) -> Result<Option<LocalFile>, FilesError> {
        let row = sqlx::query(
            "SELECT path, kind, track_id, stem_name, sha256, size, registered_ms \
             FROM luma_local_files WHERE path = ?",
        )
        .bind(path)
        .fetch_optional(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("reading the local file registry"))?;
        row.as_ref().map(decode_local).transpose()
    }

    pub(crate) async fn local_files(&self) -> Result<Vec<LocalFile>, FilesError> {
        sqlx::query(
            "SELECT path, kind, track_id, stem_name, sha256, size, registered_ms \
             FROM luma_local_files ORDER BY path",
        )
        .fetch_all(self.store.writer_pool())
        .await
        .map_err(FilesError::queue("reading the local file registry"))?
        .iter()
        .map(decode_local)
        .collect()
    }
}

fn decode_local(row: &sqlx::sqlite::SqliteRow) -> Result<LocalFile, FilesError> {
    let e = FilesError::queue("decoding a local file");
    let kind: String = row.try_get("kind").map_err(e)?;
    let kind = AssetKind::parse(&kind).ok_or_else(|| FilesError::Malformed {
        key: "luma_local_files".into(),
        message: format!("unknown kind {kind:?}"),
    })?;
    let r = || -> Result<LocalFile, sqlx::Error> {
        Ok(LocalFile {
            path: row.try_get("path")?,
            kind,
            track_id: row.try_get("track_id")?,
            stem_name: row.try_get("stem_name")?,
            sha256: row.try_get("sha256")?,
            size: row.try_get("size")?,
            registered_ms: row.try_get("registered_ms")?,
        })
    };
    r().map_err(FilesError::queue("decoding a local file"))
}
