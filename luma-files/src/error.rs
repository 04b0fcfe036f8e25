//! Error types: [`BlobError`] for blob-store operations and [`FilesError`], the umbrella error
//! of file sync.

use std::path::PathBuf;

use thiserror::Error;

/// A boxed error source (backend-specific causes).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a [`crate::BlobStore`] operation.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BlobError {
    /// No blob under this key. Never retryable: the store answered and does not have it.
    #[error("blob {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The key is not a valid blob key (empty, `..`, a leading `/`, characters outside
    /// `[A-Za-z0-9._-/]`).
    #[error("invalid blob key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The bytes read do not hash to the key they were stored or fetched under.
    #[error("content of {key} hashes to {actual}, not to its key")]
    HashMismatch {
        /// The expected key.
        key: String,
        /// The key the bytes actually hash to.
        actual: String,
    },
    /// A local IO error (file system backend, reading a source file, writing a download).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The remote answered with an HTTP error status.
    #[error("{backend} answered HTTP {status} for {key}: {message}")]
    Http {
        /// Backend name.
        backend: &'static str,
        /// The key concerned.
        key: String,
        /// The HTTP status.
        status: u16,
        /// The server's message (body excerpt).
        message: String,
    },
    /// The request did not complete (connection refused, reset, timeout, body stream error).
    #[error("{backend}: transport error for {key}: {source}")]
    Transport {
        /// Backend name.
        backend: &'static str,
        /// The key concerned.
        key: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// An error of the `object_store` crate (S3-compatible backend).
    #[error("object store error for {key}: {source}")]
    ObjectStore {
        /// The key concerned.
        key: String,
        /// The cause.
        #[source]
        source: object_store::Error,
    },
    /// A fault injected by [`crate::FaultyStore`] (tests).
    #[error("injected fault on {key}: {message}")]
    Injected {
        /// The key concerned.
        key: String,
        /// Description.
        message: String,
        /// Whether the fault pretends to be transient.
        retryable: bool,
    },
}

impl BlobError {
    /// True if the same operation may succeed later (network trouble, 5xx, 429, timeouts, IO
    /// errors). `NotFound`, invalid keys, hash mismatches and 4xx answers are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            BlobError::NotFound { .. }
            | BlobError::InvalidKey { .. }
            | BlobError::HashMismatch { .. } => false,
            BlobError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidInput
            ),
            BlobError::Http { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            BlobError::Transport { .. } => true,
            BlobError::ObjectStore { source, .. } => matches!(
                source,
                object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
            ),
            BlobError::Injected { retryable, .. } => *retryable,
        }
    }

    /// True if the store said it has no blob under the key.
    pub fn is_not_found(&self) -> bool {
        matches!(self, BlobError::NotFound { .. })
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BlobError {
        let context = context.into();
        move |source| BlobError::Io { context, source }
    }
}

/// The kind of a local file or synced asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AssetKind {
    /// A track's album art (synced as a blob).
    AlbumArt,
    /// The full-resolution waveform of a track (synced as a blob).
    WaveformFull,
    /// An audio file (local only: never uploaded).
    Audio,
    /// A stem file (local only: never uploaded).
    Stem,
}

impl AssetKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::AlbumArt => "album_art",
            AssetKind::WaveformFull => "waveform_full",
            AssetKind::Audio => "audio",
            AssetKind::Stem => "stem",
        }
    }

    /// Parses [`AssetKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "album_art" => AssetKind::AlbumArt,
            "waveform_full" => AssetKind::WaveformFull,
            "audio" => AssetKind::Audio,
            "stem" => AssetKind::Stem,
            _ => return None,
        })
    }

    /// True for kinds that never leave the device.
    pub fn is_local_only(self) -> bool {
        matches!(self, AssetKind::Audio | AssetKind::Stem)
    }

    /// The table whose records refer to assets of this kind (a landed file changes a
    /// local-only column there).
    pub fn record_table(self) -> &'static str {
        match self {
            AssetKind::AlbumArt | AssetKind::Audio => "tracks",
            AssetKind::WaveformFull => "track_waveforms",
            AssetKind::Stem => "track_stems",
        }
    }
}

impl std::fmt::Display for AssetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The umbrella error of file sync.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FilesError {
    /// A blob-store operation failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The local database failed.
    #[error(transparent)]
    Store(#[from] luma_store::StoreError),
    /// A database statement of the transfer queue failed.
    #[error("transfer queue: {context}: {source}")]
    Queue {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Audio and stem files never leave the device; an upload was asked for one.
    #[error("{kind} files are local only and are never uploaded ({path})")]
    LocalOnly {
        /// The kind of the file.
        kind: AssetKind,
        /// Its path.
        path: PathBuf,
    },
    /// The album art file is larger than the configured limit.
    #[error("album art {path} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file's bytes are not an image type accepted as album art.
    #[error("album art {path} is not a supported image ({detail})")]
    UnsupportedContent {
        /// The file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// A local file could not be read or written.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A record this operation needs does not exist locally.
    #[error("{what} not found")]
    NotFound {
        /// What is missing.
        what: String,
    },
    /// The stored waveform blob could not be decoded.
    #[error("malformed blob {key}: {message}")]
    Malformed {
        /// The blob's key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl FilesError {
    /// True if retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            FilesError::Blob(e) => e.is_retryable(),
            FilesError::Store(e) => e.is_retryable(),
            FilesError::Queue { source, .. } => {
                matches!(source, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
            }
            FilesError::Io { source, .. } => source.kind() != std::io::ErrorKind::NotFound,
            _ => false,
        }
    }

    pub(crate) fn queue(context: &'static str) -> impl FnOnce(sqlx::Error) -> FilesError {
        move |source| FilesError::Queue { context, source }
    }
}
