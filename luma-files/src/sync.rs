//! [`FileSync`]: which assets move, the transfer loop, progress and events.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use luma_model::{Track, TrackId, TrackStem, TrackWaveform};
use luma_store::Store;
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, watch};

use crate::blob::{BlobStore, PutOutcome};
use crate::error::{AssetKind, BlobError, FilesError};
use crate::hash::{hash_file, BlobKey, HashAlgo};
use crate::queue::{Direction, NewTransfer, Queue, Transfer, TransferState};
use crate::sniff::{sniff_image, ImageType};
use crate::transfer::{download_verified, upload_file, ProgressFn, PART_PREFIX};
use crate::waveform::{decode_waveform, encode_waveform};

pub use crate::queue::LocalFile;

/// Settings of file sync.
#[derive(Debug, Clone)]
pub struct FileSyncConfig {
    /// Where downloaded assets land (`art/`, `waveforms/`) and where encoded waveforms wait
    /// for upload.
    pub files_dir: PathBuf,
    /// Hash algorithm of new blob keys.
    pub algo: HashAlgo,
    /// Largest album art accepted, in bytes (default 10 MiB).
    pub max_art_bytes: u64,
    /// Attempts before a transiently failing transfer is rejected (default 8).
    pub max_attempts: i64,
    /// Transfers taken per [`FileSync::run_once`] (default 16).
    pub batch: i64,
    /// Backoff after the first transient failure; doubles per attempt up to 10 minutes
    /// (default 1 s).
    pub retry_base: Duration,
}

impl FileSyncConfig {
    /// Defaults with this files directory.
    pub fn new(files_dir: impl Into<PathBuf>) -> Self {
        Self {
            files_dir: files_dir.into(),
            algo: HashAlgo::Blake3,
            max_art_bytes: 10 * 1024 * 1024,
            max_attempts: 8,
            batch: 16,
            retry_base: Duration::from_secs(1),
        }
    }
}

/// Progress of file sync, published on every change through a `tokio::sync::watch`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileProgress {
    /// Uploads waiting or running.
    pub uploads_pending: u64,
    /// Downloads waiting or running.
    pub downloads_pending: u64,
    /// `uploads_pending + downloads_pending`.
    pub files_pending: u64,
    /// Transfers in a terminal failed state (missing, rejected).
    pub files_failed: u64,
    /// Bytes moved since the queue was last empty.
    pub bytes_done: u64,
    /// `bytes_done` plus the bytes still to move (sizes known so far).
    pub bytes_total: u64,
}

/// Something that happened to a file, broadcast to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileEvent {
    /// A download was verified and renamed into place.
    Landed {
        /// What landed.
        kind: AssetKind,
        /// Its key.
        key: String,
        /// Where it is now.
        path: PathBuf,
        /// The record's key.
        record_key: String,
    },
    /// An upload finished (or the blob was already there).
    Uploaded {
        /// What.
        kind: AssetKind,
        /// Its key.
        key: String,
        /// True if the store already had it (nothing was sent).
        already_existed: bool,
    },
    /// A transfer reached a terminal failed state.
    Failed {
        /// The transfer.
        transfer: Transfer,
    },
}

/// What one [`FileSync::run_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Uploads finished.
    pub uploaded: u64,
    /// Downloads landed.
    pub downloaded: u64,
    /// Transient failures (will retry).
    pub retrying: u64,
    /// Transfers that became terminal (missing or rejected).
    pub failed: u64,
}

impl RunSummary {
    /// True if nothing was attempted.
    pub fn is_idle(&self) -> bool {
        *self == RunSummary::default()
    }
}

struct Inner {
    store: Store,
    blobs: Arc<dyn BlobStore>,
    config: FileSyncConfig,
    queue: Queue,
    progress: watch::Sender<FileProgress>,
    events: broadcast::Sender<FileEvent>,
    /// Bytes moved since the queue was last empty (finished and in flight).
    moved: Arc<AtomicU64>,
}

/// File sync for one `luma.db`: album art and full-resolution waveforms up and down through a
/// [`BlobStore`]; a local-only registry of audio and stem files, which never upload.
///
/// Records sync on their own (through `luma-sync`) and carry only the blob's key
/// (`Track::album_art_ref`, `TrackWaveform::full_ref`); a missing or failing blob never blocks
/// them. Cheap to clone.
#[derive(Clone)]
pub struct FileSync {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FileSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSync")
            .field("blobs", &self.inner.blobs)
            .field("files_dir", &self.inner.config.files_dir)
            .finish()
    }
}

fn now_ms() -> i64 {
    i64::try_from(luma_model::wall_clock_ms()).unwrap_or(i64::MAX)
}

async fn remove_parts(dir: &Path) {
    let Ok(mut rd) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(e)) = rd.next_entry().await {
        if e.file_name().to_string_lossy().starts_with(PART_PREFIX) {
            tracing::debug!(path = %e.path().display(), "removing an interrupted download");
            let _ = tokio::fs::remove_file(e.path()).await;
        }
    }
}

impl FileSync {
    /// Creates the queue tables (once), restarts transfers a crash interrupted and removes
    /// their partial files.
    pub async fn open(
        store: Store,
        blobs: Arc<dyn BlobStore>,
        config: FileSyncConfig,
    ) -> Result<Self, FilesError> {
        crate::queue::install(&store).await?;
        let queue = Queue::new(store.clone());
        let restarted = queue.reset_active(now_ms()).await?;
        if restarted > 0 {
            tracing::info!(restarted, "restarting interrupted file transfers");
        }
        for sub in ["art", "waveforms"] {
            let dir = config.files_dir.join(sub);
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|source| FilesError::Io {
                    context: "creating",
                    path: dir.clone(),
                    source,
                })?;
            remove_parts(&dir).await;
        }
        let (progress, _) = watch::channel(FileProgress::default());
        let (events, _) = broadcast::channel(256);
        let fs = FileSync {
            inner: Arc::new(Inner {
                store,
                blobs,
                config,
                queue,
                progress,
                events,
                moved: Arc::new(AtomicU64::new(0)),
            }),
        };
        fs.publish().await?;
        Ok(fs)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The blob store.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.inner.blobs
    }

    /// Progress, updated on every change (files pending, bytes done / total).
    pub fn progress(&self) -> watch::Receiver<FileProgress> {
        self.inner.progress.subscribe()
    }

    /// Events (a file landed, an upload finished, a transfer failed for good).
    pub fn events(&self) -> broadcast::Receiver<FileEvent> {
        self.inner.events.subscribe()
    }

    /// Forwards progress (the current value at once, then every change) and events to
    /// callbacks, from a spawned task that ends when the last clone of this `FileSync` is
    /// dropped (or when the returned handle is aborted). Needs a Tokio runtime.
    ///
    /// This is how file transfers show up in the record sync engine's status without either
    /// crate depending on the other; with `luma_sync::SyncEngine`:
    ///
    /// ```text
    /// let feed = engine.file_status();
    /// let landed = feed.clone();
    /// files.forward(
    ///     move |p| feed.set(luma_sync::FileTransfers {
    ///         uploads_pending: p.uploads_pending, downloads_pending: p.downloads_pending,
    ///         files_pending: p.files_pending, files_failed: p.files_failed,
    ///         bytes_done: p.bytes_done, bytes_total: p.bytes_total,
    ///     }),
    ///     move |e| if let FileEvent::Landed { kind, .. } = e { landed.landed(kind.record_table()) },
    /// );
    /// ```
    pub fn forward<P, E>(&self, mut on_progress: P, mut on_event: E) -> tokio::task::JoinHandle<()>
    where
        P: FnMut(FileProgress) + Send + 'static,
        E: FnMut(FileEvent) + Send + 'static,
    {
        let mut progress = self.progress();
        let mut events = self.events();
        tokio::spawn(async move {
            let now = *progress.borrow_and_update();
            on_progress(now);
            loop {
                tokio::select! {
                    changed = progress.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let now = *progress.borrow_and_update();
                        on_progress(now);
                    }
                    event = events.recv() => match event {
                        Ok(e) => on_event(e),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "file event forwarder lagged");
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        })
    }

    async fn publish(&self) -> Result<(), FilesError> {
        let c = self.inner.queue.counts().await?;
        let pending = c.uploads + c.downloads;
        let done = self.inner.moved.load(Ordering::Relaxed);
        self.inner.progress.send_replace(FileProgress {
            uploads_pending: c.uploads,
            downloads_pending: c.downloads,
            files_pending: pending,
            files_failed: c.failed,
            bytes_done: done,
            bytes_total: done + c.bytes,
        });
        Ok(())
    }

    /// Queues a transfer; when the queue was idle, byte counters start a new round.
    async fn enqueue(&self, t: NewTransfer) -> Result<String, FilesError> {
        let c = self.inner.queue.counts().await?;
        if c.uploads + c.downloads == 0 {
            self.inner.moved.store(0, Ordering::Relaxed);
        }
        self.inner.queue.enqueue(t, now_ms()).await
    }

    fn progress_fn(&self) -> ProgressFn {
        let moved = self.inner.moved.clone();
        let tx = self.inner.progress.clone();
        Arc::new(move |n| {
            let done = moved.fetch_add(n, Ordering::Relaxed) + n;
            tx.send_modify(|p| {
                p.bytes_done = done;
                p.bytes_total = p.bytes_total.max(done);
            });
        })
    }

    // ----- which assets -----

    /// Refuses any upload of an audio or stem file: by kind, and by path for files in the
    /// local registry.
    async fn guard_upload(&self, kind: AssetKind, path: &Path) -> Result<(), FilesError> {
        if kind.is_local_only() {
            return Err(FilesError::LocalOnly {
                kind,
                path: path.to_path_buf(),
            });
        }
        let canonical = canonical(path).await;
        for p in [path.to_path_buf(), canonical] {
            if let Some(f) = self.inner.queue.local_file(&p.to_string_lossy()).await? {
                return Err(FilesError::LocalOnly {
                    kind: f.kind,
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(())
    }

    /// Uploads a file of `kind` now and returns its key. Only syncable kinds are accepted:
    /// audio and stem files (by kind, or registered as such) fail with
    /// [`FilesError::LocalOnly`] and nothing is sent.
    pub async fn upload_now(&self, kind: AssetKind, path: &Path) -> Result<BlobKey, FilesError> {
        self.guard_upload(kind, path).await?;
        let (key, _) = hash_file(self.inner.config.algo, path).await?;
        let ct = match kind {
            AssetKind::AlbumArt => Some(self.check_art(path).await?.mime()),
            _ => None,
        };
        upload_file(&*self.inner.blobs, &key, path, ct, Some(self.progress_fn())).await?;
        Ok(key)
    }

    /// Checks album art before anything is hashed or sent: the size limit (from metadata, so a
    /// 2 GB file is refused at once), then the content type from the file's first bytes.
    async fn check_art(&self, path: &Path) -> Result<ImageType, FilesError> {
        let io = |context| {
            move |source| FilesError::Io {
                context,
                path: path.to_path_buf(),
                source,
            }
        };
        let md = tokio::fs::metadata(path).await.map_err(io("reading"))?;
        let limit = self.inner.config.max_art_bytes;
        if md.len() > limit {
            return Err(FilesError::TooLarge {
                path: path.to_path_buf(),
                size: md.len(),
                limit,
            });
        }
        let mut head = [0u8; 16];
        let mut f = tokio::fs::File::open(path).await.map_err(io("opening"))?;
        let mut n = 0;
        while n < head.len() {
            let got = f.read(&mut head[n..]).await.map_err(io("reading"))?;
            if got == 0 {
                break;
            }
            n += got;
        }
        sniff_image(&head[..n]).ok_or_else(|| FilesError::UnsupportedContent {
            path: path.to_path_buf(),
            detail: "the first bytes are not JPEG, PNG, GIF or WebP".into(),
        })
    }

    /// Sets a track's album art on the owner's device: checks size and content type, hashes
    /// the file, records `album_art_path` (local), `album_art_mime` and `album_art_ref` (the
    /// blob key) on the track (so the record syncs at once) and queues the upload.
    pub async fn set_album_art(&self, track: TrackId, path: &Path) -> Result<BlobKey, FilesError> {
        self.guard_upload(AssetKind::AlbumArt, path).await?;
        let image = self.check_art(path).await?;
        let (key, size) = hash_file(self.inner.config.algo, path).await?;
        let path = canonical(path).await;
        let mut t: Track = self.inner.store.tracks().get(track).await?;
        t.album_art_path = Some(path.to_string_lossy().into_owned());
        t.album_art_mime = Some(image.mime().to_string());
        t.album_art_ref = Some(key.to_string());
        self.inner.store.tracks().update(&t).await?;
        self.enqueue(NewTransfer {
            direction: Direction::Upload,
            kind: AssetKind::AlbumArt,
            blob_key: key.to_string(),
            record_table: "tracks",
            record_key: track.to_string(),
            local_path: path,
            content_type: Some(image.mime().into()),
            size: Some(size),
        })
        .await?;
        self.publish().await?;
        Ok(key)
    }

    /// Publishes a track's full-resolution waveform: encodes `full_samples`, `full_colors` and
    /// `full_bands` into one blob (cached under `files_dir/waveforms`), sets `full_ref` on the
    /// record (which syncs at once; the preview stays in the record) and queues the upload.
    pub async fn publish_waveform(&self, track: TrackId) -> Result<BlobKey, FilesError> {
        let mut w: TrackWaveform = self.inner.store.track_waveforms().get(track).await?;
        let blob = encode_waveform(
            w.full_samples.as_deref(),
            w.full_colors.as_deref(),
            w.full_bands.as_deref(),
        );
        let key = BlobKey::of(self.inner.config.algo, &blob);
        let path = self.waveform_path(&key);
        write_atomic(&path, &blob).await?;
        if w.full_ref.as_deref() != Some(&key.to_string()) {
            w.full_ref = Some(key.to_string());
            self.inner.store.track_waveforms().update(&w).await?;
        }
        self.enqueue(NewTransfer {
            direction: Direction::Upload,
            kind: AssetKind::WaveformFull,
            blob_key: key.to_string(),
            record_table: "track_waveforms",
            record_key: track.to_string(),
            local_path: path,
            content_type: Some("application/octet-stream".into()),
            size: Some(blob.len() as u64),
        })
        .await?;
        self.publish().await?;
        Ok(key)
    }

    fn art_path(&self, key: &BlobKey, mime: Option<&str>) -> PathBuf {
        let ext = mime
            .and_then(ImageType::from_mime)
            .map_or("bin", ImageType::extension);
        self.inner.config.files_dir.join("art").join(format!(
            "{}-{}.{ext}",
            key.algo().as_str(),
            key.hex()
        ))
    }

    fn waveform_path(&self, key: &BlobKey) -> PathBuf {
        self.inner.config.files_dir.join("waveforms").join(format!(
            "{}-{}.lwf",
            key.algo().as_str(),
            key.hex()
        ))
    }

    /// Registers an audio file of a track in the local-only registry, computes its SHA-256
    /// streaming and records `track_hash` (synced) and `file_path` (local) on the track.
    /// The file itself never leaves the device.
    pub async fn register_audio(
        &self,
        track: TrackId,
        path: &Path,
    ) -> Result<LocalFile, FilesError> {
        let path = canonical(path).await;
        let (key, size) = hash_file(HashAlgo::Sha256, &path).await?;
        let mut t: Track = self.inner.store.tracks().get(track).await?;
        t.track_hash = Some(key.hex().to_string());
        t.file_path = Some(path.to_string_lossy().into_owned());
        self.inner.store.tracks().update(&t).await?;
        let f = LocalFile {
            path: path.to_string_lossy().into_owned(),
            kind: AssetKind::Audio,
            track_id: track.to_string(),
            stem_name: None,
            sha256: key.hex().to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            registered_ms: now_ms(),
        };
        self.inner.queue.register_local(&f).await?;
        Ok(f)
    }

    /// Registers a stem file (local only) and its `track_stems` row.
    pub async fn register_stem(
        &self,
        track: TrackId,
        stem_name: &str,
        path: &Path,
    ) -> Result<LocalFile, FilesError> {
        let path = canonical(path).await;
        let (key, size) = hash_file(HashAlgo::Sha256, &path).await?;
        let stem = TrackStem {
            track_id: track,
            stem_name: stem_name.to_string(),
            file_path: path.to_string_lossy().into_owned(),
        };
        self.inner.store.track_stems().upsert(&stem).await?;
        let f = LocalFile {
            path: path.to_string_lossy().into_owned(),
            kind: AssetKind::Stem,
            track_id: track.to_string(),
            stem_name: Some(stem_name.to_string()),
            sha256: key.hex().to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            registered_ms: now_ms(),
        };
        self.inner.queue.register_local(&f).await?;
        Ok(f)
    }

    /// The local-only registry (audio and stems).
    pub async fn local_files(&self) -> Result<Vec<LocalFile>, FilesError> {
        self.inner.queue.local_files().await
    }

    /// Looks at the synced records and queues downloads of assets this device lacks: album
    /// art whose `album_art_ref` has no local file (or an older downloaded one), and waveforms
    /// whose `full_ref` has no local full-resolution data. Returns how many were queued.
    pub async fn scan(&self) -> Result<usize, FilesError> {
        let mut queued = 0;
        // Only the columns needed (never the full-resolution waveform blobs).
        let arts: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT id, album_art_ref, album_art_mime, album_art_path FROM tracks \
             WHERE album_art_ref IS NOT NULL",
        )
        .fetch_all(self.inner.store.reader_pool())
        .await
        .map_err(FilesError::queue("listing album art references"))?;
        for (id, r, mime, art_path) in arts {
            let Ok(key) = r.parse::<BlobKey>() else {
                tracing::warn!(track = %id, r, "ignoring a malformed album_art_ref");
                continue;
            };
            let want = self.art_path(&key, mime.as_deref());
            let have = match art_path.as_deref() {
                None => false,
                Some(p) => {
                    let p = Path::new(p);
                    let ours = p.starts_with(self.inner.config.files_dir.join("art"));
                    tokio::fs::try_exists(p).await.unwrap_or(false) && (!ours || p == want)
                }
            };
            if have
                || self
                    .upload_pending(AssetKind::AlbumArt, "tracks", &id)
                    .await?
            {
                continue;
            }
            if self
                .already_queued(AssetKind::AlbumArt, "tracks", &id, &key)
                .await?
            {
                continue;
            }
            self.enqueue(NewTransfer {
                direction: Direction::Download,
                kind: AssetKind::AlbumArt,
                blob_key: key.to_string(),
                record_table: "tracks",
                record_key: id,
                local_path: want,
                content_type: mime,
                size: None,
            })
            .await?;
            queued += 1;
        }
        let waves: Vec<(String, String)> = sqlx::query_as(
            "SELECT track_id, full_ref FROM track_waveforms WHERE full_ref IS NOT NULL \
             AND full_samples IS NULL AND full_colors IS NULL AND full_bands IS NULL",
        )
        .fetch_all(self.inner.store.reader_pool())
        .await
        .map_err(FilesError::queue("listing waveform references"))?;
        for (rk, r) in waves {
            let Ok(key) = r.parse::<BlobKey>() else {
                continue;
            };
            if self
                .upload_pending(AssetKind::WaveformFull, "track_waveforms", &rk)
                .await?
                || self
                    .already_queued(AssetKind::WaveformFull, "track_waveforms", &rk, &key)
                    .await?
            {
                continue;
            }
            self.enqueue(NewTransfer {
                direction: Direction::Download,
                kind: AssetKind::WaveformFull,
                blob_key: key.to_string(),
                record_table: "track_waveforms",
                record_key: rk,
                local_path: self.waveform_path(&key),
                content_type: None,
                size: None,
            })
            .await?;
            queued += 1;
        }
        if queued > 0 {
            self.publish().await?;
        }
        Ok(queued)
    }

    async fn upload_pending(
        &self,
        kind: AssetKind,
        table: &str,
        record: &str,
    ) -> Result<bool, FilesError> {
        Ok(self
            .inner
            .queue
            .find(Direction::Upload, kind, table, record)
            .await?
            .is_some())
    }

    /// True if a download of this very key is queued (in any state: a terminal one stays
    /// listed until retried or discarded instead of being queued again and again).
    async fn already_queued(
        &self,
        kind: AssetKind,
        table: &str,
        record: &str,
        key: &BlobKey,
    ) -> Result<bool, FilesError> {
        Ok(self
            .inner
            .queue
            .find(Direction::Download, kind, table, record)
            .await?
            .is_some_and(|t| t.blob_key == key.to_string()))
    }

    // ----- the queue -----

    /// Every queued transfer.
    pub async fn transfers(&self) -> Result<Vec<Transfer>, FilesError> {
        self.inner.queue.all().await
    }

    /// Transfers in a terminal failed state: missing (404, or the local file is gone) and
    /// rejected. They stay until [`FileSync::retry`] or [`FileSync::discard`].
    pub async fn failed_transfers(&self) -> Result<Vec<Transfer>, FilesError> {
        self.inner.queue.terminal().await
    }

    /// Makes a transfer due now with its attempts reset. Returns false if there is none.
    pub async fn retry(&self, id: &str) -> Result<bool, FilesError> {
        let ok = self.inner.queue.retry(id, now_ms()).await?;
        self.publish().await?;
        Ok(ok)
    }

    /// Drops a transfer from the queue. Returns false if there was none.
    pub async fn discard(&self, id: &str) -> Result<bool, FilesError> {
        let ok = self.inner.queue.remove(id).await?;
        self.publish().await?;
        Ok(ok)
    }

    /// Runs the transfers that are due now (one batch) and returns what happened.
    pub async fn run_once(&self) -> Result<RunSummary, FilesError> {
        let mut summary = RunSummary::default();
        let due = self
            .inner
            .queue
            .due(now_ms(), self.inner.config.batch)
            .await?;
        for t in due {
            self.inner.queue.mark_active(&t.id, now_ms()).await?;
            let moved_before = self.inner.moved.load(Ordering::Relaxed);
            let result = match t.direction {
                Direction::Upload => self.do_upload(&t).await,
                Direction::Download => self.do_download(&t).await,
            };
            match result {
                Ok(event) => {
                    self.inner.queue.remove(&t.id).await?;
                    match &event {
                        FileEvent::Landed { .. } => summary.downloaded += 1,
                        _ => summary.uploaded += 1,
                    }
                    self.publish().await?;
                    let _ = self.inner.events.send(event);
                }
                Err(e) => {
                    // The bytes of a failed attempt will move again: do not count them twice.
                    self.inner.moved.store(moved_before, Ordering::Relaxed);
                    let terminal = self.record_failure(&t, &e).await?;
                    if terminal {
                        summary.failed += 1;
                    } else {
                        summary.retrying += 1;
                    }
                    self.publish().await?;
                }
            }
        }
        Ok(summary)
    }

    /// Runs batches until nothing is due now (transfers waiting for a retry time are left).
    pub async fn run_until_idle(&self) -> Result<RunSummary, FilesError> {
        let mut total = RunSummary::default();
        loop {
            let s = self.run_once().await?;
            if s.is_idle() {
                return Ok(total);
            }
            total.uploaded += s.uploaded;
            total.downloaded += s.downloaded;
            total.retrying += s.retrying;
            total.failed += s.failed;
        }
    }

    /// The background loop: scans for missing assets after every store change, runs due
    /// transfers, sleeps until the next retry or change. Returns when `shutdown` becomes true.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), FilesError> {
        let mut changes = self.inner.store.subscribe();
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            self.scan().await?;
            if let Err(e) = self.run_until_idle().await {
                if !e.is_retryable() {
                    return Err(e);
                }
                tracing::warn!(error = %e, "file sync round failed; will retry");
            }
            let wait = match self.inner.queue.next_due().await? {
                Some(at) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
                None => Duration::from_secs(3600),
            }
            .max(Duration::from_millis(50));
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = changes.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Decides a failed transfer's next state. Returns true if it became terminal.
    async fn record_failure(&self, t: &Transfer, e: &FilesError) -> Result<bool, FilesError> {
        let now = now_ms();
        let msg = e.to_string();
        let terminal_state = match e {
            FilesError::Blob(b) if b.is_not_found() => Some(TransferState::Missing),
            FilesError::Blob(BlobError::Io { source, .. })
                if t.direction == Direction::Upload
                    && source.kind() == std::io::ErrorKind::NotFound =>
            {
                Some(TransferState::Missing)
            }
            // A corrupt download may be a transient network fault: retry with backoff.
            FilesError::Blob(BlobError::HashMismatch { .. }) => None,
            e if e.is_retryable() => None,
            _ => Some(TransferState::Rejected),
        };
        let state = match terminal_state {
            Some(s) => {
                self.inner.queue.fail_terminal(&t.id, s, &msg, now).await?;
                s
            }
            None => {
                self.inner
                    .queue
                    .fail_transient(
                        &t.id,
                        &msg,
                        now,
                        self.inner.config.max_attempts,
                        i64::try_from(self.inner.config.retry_base.as_millis()).unwrap_or(i64::MAX),
                    )
                    .await?
            }
        };
        let terminal = state != TransferState::Pending;
        if terminal {
            tracing::warn!(key = %t.blob_key, state = ?state, error = %msg, "file transfer failed");
            if let Some(t) = self.inner.queue.get(&t.id).await? {
                let _ = self.inner.events.send(FileEvent::Failed { transfer: t });
            }
        } else {
            tracing::debug!(key = %t.blob_key, error = %msg, "file transfer will be retried");
        }
        Ok(terminal)
    }

    async fn do_upload(&self, t: &Transfer) -> Result<FileEvent, FilesError> {
        let path = PathBuf::from(&t.local_path);
        self.guard_upload(t.kind, &path).await?;
        let key: BlobKey = t.blob_key.parse()?;
        let outcome = upload_file(
            &*self.inner.blobs,
            &key,
            &path,
            t.content_type.as_deref(),
            Some(self.progress_fn()),
        )
        .await?;
        tracing::debug!(key = %key, ?outcome, "uploaded");
        Ok(FileEvent::Uploaded {
            kind: t.kind,
            key: t.blob_key.clone(),
            already_existed: outcome == PutOutcome::AlreadyExists,
        })
    }

    async fn do_download(&self, t: &Transfer) -> Result<FileEvent, FilesError> {
        let key: BlobKey = t.blob_key.parse()?;
        let dest = PathBuf::from(&t.local_path);
        if t.size.is_none() {
            // Learn the size first so progress has a total (and a 404 costs no body).
            let meta = self.inner.blobs.head(&t.blob_key).await?;
            self.inner.queue.set_size(&t.id, meta.size).await?;
            self.publish().await?;
        }
        download_verified(&*self.inner.blobs, &key, &dest, Some(self.progress_fn())).await?;
        match t.kind {
            AssetKind::AlbumArt => {
                // Only the local-only column changes: no pending op, nothing to sync. Raw SQL
                // on purpose: the `album_art_ref = ?` guard makes it a no-op if a pull changed
                // the ref meanwhile, which a get-then-`Repo::update` could not promise (it
                // would write the stale synced columns back as a local change).
                sqlx::query(
                    "UPDATE tracks SET album_art_path = ? WHERE id = ? AND album_art_ref = ?",
                )
                .bind(&t.local_path)
                .bind(&t.record_key)
                .bind(&t.blob_key)
                .execute(self.inner.store.writer_pool())
                .await
                .map_err(FilesError::queue("recording downloaded album art"))?;
            }
            AssetKind::WaveformFull => {
                let bytes = tokio::fs::read(&dest)
                    .await
                    .map_err(|source| FilesError::Io {
                        context: "reading",
                        path: dest.clone(),
                        source,
                    })?;
                let (s, c, b) = decode_waveform(&t.blob_key, &bytes)?;
                // Local-only columns, guarded by the ref (as for album art above).
                sqlx::query(
                    "UPDATE track_waveforms SET full_samples = ?, full_colors = ?, full_bands = ? \
                     WHERE track_id = ? AND full_ref = ?",
                )
                .bind(s)
                .bind(c)
                .bind(b)
                .bind(&t.record_key)
                .bind(&t.blob_key)
                .execute(self.inner.store.writer_pool())
                .await
                .map_err(FilesError::queue("storing a downloaded waveform"))?;
            }
            kind => {
                return Err(FilesError::LocalOnly { kind, path: dest });
            }
        }
        tracing::debug!(key = %key, path = %dest.display(), "file landed");
        Ok(FileEvent::Landed {
            kind: t.kind,
            key: t.blob_key.clone(),
            path: dest,
            record_key: t.record_key.clone(),
        })
    }
}

async fn canonical(path: &Path) -> PathBuf {
    tokio::fs::canonicalize(path)
        .await
        .unwrap_or_else(|_| path.to_path_buf())
}

async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
    let io = |source| FilesError::Io {
        context: "writing",
        path: path.to_path_buf(),
        source,
    };
    if tokio::fs::try_exists(path).await.unwrap_or(false) {
        return Ok(()); // content addressed: same name, same bytes
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let tmp = dir.join(format!("{PART_PREFIX}{}", uuid::Uuid::new_v4()));
    tokio::fs::write(&tmp, bytes).await.map_err(io)?;
    let f = tokio::fs::File::open(&tmp).await.map_err(io)?;
    f.sync_all().await.map_err(io)?;
    tokio::fs::rename(&tmp, path).await.map_err(io)
}
