//! File sync end to end: devices sharing a blob store, faults, restarts, local-only files.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use luma_files::{
    download_verified, AssetKind, BlobKey, BlobStore, BlobStoreExt, Direction, Fault, FaultyStore,
    FileEvent, FileSync, FileSyncConfig, FilesError, HashAlgo, MemoryBlobStore, Op, TransferState,
};
use luma_model::{Track, TrackWaveform};
use luma_store::Store;

struct Device {
    sync: FileSync,
    dir: tempfile::TempDir,
}

impl Device {
    async fn new(blobs: Arc<dyn BlobStore>) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("luma.db")).await.unwrap();
        let sync = FileSync::open(store, blobs, FileSyncConfig::new(dir.path().join("files")))
            .await
            .unwrap();
        Device { sync, dir }
    }

    async fn reopen(self, blobs: Arc<dyn BlobStore>) -> Device {
        let Device { sync, dir } = self;
        sync.store().close().await;
        drop(sync);
        let store = Store::open(dir.path().join("luma.db")).await.unwrap();
        let sync = FileSync::open(store, blobs, FileSyncConfig::new(dir.path().join("files")))
            .await
            .unwrap();
        Device { sync, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn store(&self) -> &Store {
        self.sync.store()
    }
}

/// A small valid-looking JPEG (magic bytes + payload).
fn jpeg(seed: u8, len: usize) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0];
    v.extend((0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)));
    v
}

/// What record sync would deliver to another device: the record without local-only columns.
async fn deliver_track(from: &Device, to: &Device, id: luma_model::TrackId) -> Track {
    let mut t = from.store().tracks().get(id).await.unwrap();
    t.file_path = None;
    t.album_art_path = None;
    to.store().tracks().upsert(&t).await.unwrap();
    t
}

async fn new_track(d: &Device, title: &str) -> Track {
    let t = Track::new(title);
    d.store().tracks().create(&t).await.unwrap();
    t
}

fn part_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for sub in ["art", "waveforms"] {
        if let Ok(rd) = std::fs::read_dir(dir.join("files").join(sub)) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".luma-part-") {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn two_devices_end_with_the_same_album_art() {
    let blobs = MemoryBlobStore::new();
    let shared: Arc<dyn BlobStore> = Arc::new(blobs.clone());
    let a = Device::new(shared.clone()).await;
    let b = Device::new(shared.clone()).await;
    let art = jpeg(1, 50_000);
    std::fs::write(a.path("cover.jpg"), &art).unwrap();
    let t = new_track(&a, "Song").await;
    let key = a
        .sync
        .set_album_art(t.id, &a.path("cover.jpg"))
        .await
        .unwrap();
    assert!(key.to_string().starts_with("blake3/"));

    // The record carries the ref at once (it syncs before the blob moved).
    let rec = a.store().tracks().get(t.id).await.unwrap();
    assert_eq!(rec.album_art_ref.as_deref(), Some(key.to_string().as_str()));
    assert_eq!(rec.album_art_mime.as_deref(), Some("image/jpeg"));
    assert_eq!(a.sync.progress().borrow().uploads_pending, 1);

    let mut a_events = a.sync.events();
    let s = a.sync.run_until_idle().await.unwrap();
    assert_eq!(s.uploaded, 1);
    assert!(matches!(
        a_events.try_recv().unwrap(),
        FileEvent::Uploaded {
            already_existed: false,
            ..
        }
    ));
    assert_eq!(blobs.len(), 1);

    deliver_track(&a, &b, t.id).await;
    let ops_before = b.store().outbox().pending_count().await.unwrap();
    let mut events = b.sync.events();
    let progress = b.sync.progress();
    assert_eq!(b.sync.scan().await.unwrap(), 1);
    assert_eq!(
        b.sync.scan().await.unwrap(),
        0,
        "a queued download is not queued twice"
    );
    assert_eq!(progress.borrow().downloads_pending, 1);
    let s = b.sync.run_until_idle().await.unwrap();
    assert_eq!(s.downloaded, 1);

    let landed = match events.try_recv().unwrap() {
        FileEvent::Landed {
            path, kind, key: k, ..
        } => {
            assert_eq!(kind, AssetKind::AlbumArt);
            assert_eq!(k, key.to_string());
            path
        }
        e => panic!("unexpected event {e:?}"),
    };
    assert_eq!(std::fs::read(&landed).unwrap(), art);
    let rec_b = b.store().tracks().get(t.id).await.unwrap();
    assert_eq!(
        rec_b.album_art_path.as_deref(),
        Some(landed.to_str().unwrap())
    );
    assert_eq!(
        b.store().outbox().pending_count().await.unwrap(),
        ops_before,
        "landing a file changes only local columns: no new op"
    );
    let p = *progress.borrow();
    assert_eq!(p.files_pending, 0);
    assert_eq!(b.sync.scan().await.unwrap(), 0, "nothing left to fetch");
}

#[tokio::test]
async fn identical_art_from_two_devices_is_stored_once() {
    let blobs = MemoryBlobStore::new();
    let shared: Arc<dyn BlobStore> = Arc::new(blobs.clone());
    let a = Device::new(shared.clone()).await;
    let c = Device::new(shared.clone()).await;
    let art = jpeg(9, 20_000);
    std::fs::write(a.path("x.jpg"), &art).unwrap();
    std::fs::write(c.path("y.jpg"), &art).unwrap();
    let ta = new_track(&a, "A").await;
    let tc = new_track(&c, "C").await;
    let ka = a.sync.set_album_art(ta.id, &a.path("x.jpg")).await.unwrap();
    let kc = c.sync.set_album_art(tc.id, &c.path("y.jpg")).await.unwrap();
    assert_eq!(ka, kc);
    a.sync.run_until_idle().await.unwrap();
    let mut ev = c.sync.events();
    c.sync.run_until_idle().await.unwrap();
    assert!(matches!(
        ev.try_recv().unwrap(),
        FileEvent::Uploaded {
            already_existed: true,
            ..
        }
    ));
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs.stored_count(), 1, "the second upload wrote nothing");
}

#[tokio::test]
async fn corrupt_download_is_rejected_and_the_old_file_kept() {
    let blobs = MemoryBlobStore::new();
    let faulty = FaultyStore::new(blobs.clone());
    let data = bytes::Bytes::from(vec![42u8; 200_000]);
    let (key, _) = blobs
        .put_content(HashAlgo::Blake3, data.clone(), None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("art.jpg");
    std::fs::write(&dest, b"the old file").unwrap();

    faulty.inject(Op::Get, Fault::Corrupt);
    let err = download_verified(&faulty, &key, &dest, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, luma_files::BlobError::HashMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"the old file");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );

    // A key of other content (the server holds wrong bytes under it) is rejected the same way.
    let wrong = BlobKey::of(HashAlgo::Blake3, b"something else");
    blobs
        .put_bytes(&wrong.to_string(), data.clone(), Default::default())
        .await
        .unwrap();
    assert!(download_verified(&blobs, &wrong, &dest, None)
        .await
        .is_err());
    assert_eq!(std::fs::read(&dest).unwrap(), b"the old file");

    download_verified(&faulty, &key, &dest, None).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[tokio::test]
async fn corrupt_download_through_the_queue_retries_then_lands() {
    let blobs = MemoryBlobStore::new();
    let faulty = FaultyStore::new(blobs.clone());
    let shared: Arc<dyn BlobStore> = Arc::new(faulty.clone());
    let a = Device::new(shared.clone()).await;
    let b = Device::new(shared.clone()).await;
    std::fs::write(a.path("c.jpg"), jpeg(3, 10_000)).unwrap();
    let t = new_track(&a, "T").await;
    a.sync.set_album_art(t.id, &a.path("c.jpg")).await.unwrap();
    a.sync.run_until_idle().await.unwrap();
    deliver_track(&a, &b, t.id).await;
    b.sync.scan().await.unwrap();
    faulty.inject(Op::Get, Fault::Corrupt);
    let s = b.sync.run_once().await.unwrap();
    assert_eq!(s.retrying, 1);
    let tr = &b.sync.transfers().await.unwrap()[0];
    assert_eq!(tr.state, TransferState::Pending);
    assert_eq!(tr.attempts, 1);
    assert!(
        tr.last_error.as_deref().unwrap().contains("hashes to"),
        "{tr:?}"
    );
    assert!(
        tr.next_retry_ms > luma_model::wall_clock_ms() as i64,
        "backoff"
    );
    assert!(b.sync.run_once().await.unwrap().is_idle(), "not due yet");
    assert!(b
        .store()
        .tracks()
        .get(t.id)
        .await
        .unwrap()
        .album_art_path
        .is_none());
    assert!(b.sync.retry(&tr.id).await.unwrap());
    assert_eq!(b.sync.run_once().await.unwrap().downloaded, 1);
}

#[tokio::test]
async fn missing_blob_is_terminal_listed_and_never_blocks_records() {
    let shared: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let b = Device::new(shared.clone()).await;
    // A record arrived whose blob was never uploaded.
    let mut t = Track::new("Orphan art");
    t.album_art_ref = Some(BlobKey::of(HashAlgo::Blake3, b"never uploaded").to_string());
    t.album_art_mime = Some("image/png".into());
    b.store().tracks().create(&t).await.unwrap();
    let ops = b.store().outbox().pending_count().await.unwrap();
    assert_eq!(b.sync.scan().await.unwrap(), 1);
    let mut ev = b.sync.events();
    let s = b.sync.run_until_idle().await.unwrap();
    assert_eq!(s.failed, 1);
    assert!(matches!(ev.try_recv().unwrap(), FileEvent::Failed { .. }));
    let failed = b.sync.failed_transfers().await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].state, TransferState::Missing);
    assert_eq!(failed[0].direction, Direction::Download);
    assert!(failed[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("not found"));
    assert_eq!(b.sync.progress().borrow().files_failed, 1);
    // Terminal: not retried on its own, not queued again by a scan.
    assert!(b.sync.run_until_idle().await.unwrap().is_idle());
    assert_eq!(b.sync.scan().await.unwrap(), 0);
    // Record sync is untouched: the record is readable and its ops are as before.
    assert_eq!(
        b.store().tracks().get(t.id).await.unwrap().title,
        "Orphan art"
    );
    assert_eq!(b.store().outbox().pending_count().await.unwrap(), ops);
    // Retry makes it due again (still missing); discard removes it.
    assert!(b.sync.retry(&failed[0].id).await.unwrap());
    assert_eq!(b.sync.run_until_idle().await.unwrap().failed, 1);
    assert!(b.sync.discard(&failed[0].id).await.unwrap());
    assert!(b.sync.failed_transfers().await.unwrap().is_empty());
}

#[tokio::test]
async fn upload_whose_source_vanished_is_terminal() {
    let shared: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let a = Device::new(shared).await;
    std::fs::write(a.path("gone.png"), b"\x89PNG\r\n\x1a\n12345678").unwrap();
    let t = new_track(&a, "T").await;
    a.sync
        .set_album_art(t.id, &a.path("gone.png"))
        .await
        .unwrap();
    std::fs::remove_file(a.path("gone.png")).unwrap();
    assert_eq!(a.sync.run_until_idle().await.unwrap().failed, 1);
    let f = a.sync.failed_transfers().await.unwrap();
    assert_eq!(f[0].state, TransferState::Missing);
    assert_eq!(f[0].direction, Direction::Upload);
}

#[tokio::test]
async fn transient_failures_back_off_and_are_rejected_after_max_attempts() {
    let faulty = FaultyStore::new(MemoryBlobStore::new());
    let shared: Arc<dyn BlobStore> = Arc::new(faulty.clone());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_memory().await.unwrap();
    let mut cfg = FileSyncConfig::new(dir.path().join("files"));
    cfg.max_attempts = 3;
    cfg.retry_base = Duration::ZERO;
    let sync = FileSync::open(store, shared, cfg).await.unwrap();
    std::fs::write(dir.path().join("a.gif"), b"GIF89a-----").unwrap();
    let t = Track::new("T");
    sync.store().tracks().create(&t).await.unwrap();
    sync.set_album_art(t.id, &dir.path().join("a.gif"))
        .await
        .unwrap();
    for _ in 0..3 {
        faulty.inject(Op::Put, Fault::Fail { retryable: true });
    }
    // Two transient failures retry; the third reaches max_attempts and is rejected.
    assert_eq!(sync.run_once().await.unwrap().retrying, 1);
    assert_eq!(sync.transfers().await.unwrap()[0].attempts, 1);
    assert_eq!(sync.run_once().await.unwrap().retrying, 1);
    assert_eq!(sync.run_once().await.unwrap().failed, 1);
    let f = sync.failed_transfers().await.unwrap();
    assert_eq!(f[0].state, TransferState::Rejected);
    assert_eq!(f[0].attempts, 3);
    assert!(
        sync.run_once().await.unwrap().is_idle(),
        "rejected is terminal"
    );
    // retry() makes it due again with attempts reset.
    assert!(sync.retry(&f[0].id).await.unwrap());
    assert_eq!(sync.transfers().await.unwrap()[0].attempts, 0);
    faulty.inject(Op::Put, Fault::Fail { retryable: false });
    assert_eq!(
        sync.run_once().await.unwrap().failed,
        1,
        "permanent errors are terminal at once"
    );
    sync.retry(&f[0].id).await.unwrap();
    assert_eq!(sync.run_once().await.unwrap().uploaded, 1);
    assert!(sync.transfers().await.unwrap().is_empty());
    assert_eq!(faulty.calls(Op::Put), 5);
}

#[tokio::test]
async fn download_interrupted_halfway_restarts_cleanly_after_a_restart() {
    let blobs = MemoryBlobStore::new();
    let faulty = FaultyStore::new(blobs.clone());
    let shared: Arc<dyn BlobStore> = Arc::new(faulty.clone());
    let a = Device::new(shared.clone()).await;
    let b = Device::new(shared.clone()).await;
    let art = jpeg(5, 2_000_000);
    std::fs::write(a.path("big.jpg"), &art).unwrap();
    let t = new_track(&a, "T").await;
    a.sync
        .set_album_art(t.id, &a.path("big.jpg"))
        .await
        .unwrap();
    a.sync.run_until_idle().await.unwrap();
    deliver_track(&a, &b, t.id).await;
    b.sync.scan().await.unwrap();

    // The connection hangs after half the bytes; then the app is killed.
    faulty.inject(Op::Get, Fault::StallAfter(art.len() as u64 / 2));
    let mut progress = b.sync.progress();
    let runner = {
        let s = b.sync.clone();
        tokio::spawn(async move { s.run_once().await })
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            progress.changed().await.unwrap();
            if progress.borrow().bytes_done >= art.len() as u64 / 2 {
                break;
            }
        }
    })
    .await
    .unwrap();
    let half = *progress.borrow();
    assert!(half.bytes_done < half.bytes_total || half.bytes_total == half.bytes_done);
    runner.abort();
    let _ = runner.await;
    assert_eq!(
        b.sync.transfers().await.unwrap()[0].state,
        TransferState::Active
    );
    let parts = part_files(b.dir.path());
    // The temp file's guard removes it on cancellation; a killed process would leave it.
    // Simulate the kill's leftovers so the restart has something to clean.
    let leftover = b.dir.path().join("files/art/.luma-part-crashed");
    std::fs::write(&leftover, &art[..art.len() / 2]).unwrap();
    assert!(parts.len() <= 1);

    let b = b.reopen(shared.clone()).await;
    assert!(
        part_files(b.dir.path()).is_empty(),
        "partial files removed on restart"
    );
    let tr = &b.sync.transfers().await.unwrap()[0];
    assert_eq!(
        tr.state,
        TransferState::Pending,
        "interrupted transfer restarts"
    );
    assert!(b
        .store()
        .tracks()
        .get(t.id)
        .await
        .unwrap()
        .album_art_path
        .is_none());
    let s = b.sync.run_until_idle().await.unwrap();
    assert_eq!(s.downloaded, 1);
    let p = b
        .store()
        .tracks()
        .get(t.id)
        .await
        .unwrap()
        .album_art_path
        .unwrap();
    assert_eq!(std::fs::read(p).unwrap(), art);
}

#[tokio::test]
async fn upload_interrupted_halfway_stores_nothing_and_restarts_after_a_restart() {
    let blobs = MemoryBlobStore::new();
    let faulty = FaultyStore::new(blobs.clone());
    let shared: Arc<dyn BlobStore> = Arc::new(faulty.clone());
    let a = Device::new(shared.clone()).await;
    let art = jpeg(6, 1_000_000);
    std::fs::write(a.path("big.jpg"), &art).unwrap();
    let t = new_track(&a, "T").await;
    let key = a
        .sync
        .set_album_art(t.id, &a.path("big.jpg"))
        .await
        .unwrap();
    faulty.inject(Op::Put, Fault::StallAfter(art.len() as u64 / 2));
    let runner = {
        let s = a.sync.clone();
        tokio::spawn(async move { s.run_once().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    runner.abort();
    let _ = runner.await;
    assert!(blobs.is_empty(), "a half upload is never visible");
    let a = a.reopen(shared.clone()).await;
    assert_eq!(
        a.sync.transfers().await.unwrap()[0].state,
        TransferState::Pending
    );
    assert_eq!(a.sync.run_until_idle().await.unwrap().uploaded, 1);
    assert_eq!(blobs.get_verified(&key).await.unwrap().as_ref(), &art[..]);
}

#[tokio::test]
async fn changed_source_file_never_lands_under_the_old_key() {
    let blobs = MemoryBlobStore::new();
    let shared: Arc<dyn BlobStore> = Arc::new(blobs.clone());
    let a = Device::new(shared).await;
    std::fs::write(a.path("c.jpg"), jpeg(1, 1000)).unwrap();
    let t = new_track(&a, "T").await;
    a.sync.set_album_art(t.id, &a.path("c.jpg")).await.unwrap();
    std::fs::write(a.path("c.jpg"), jpeg(2, 1000)).unwrap(); // edited after hashing
    let s = a.sync.run_once().await.unwrap();
    assert_eq!(s.retrying, 1);
    assert!(
        blobs.is_empty(),
        "bytes that do not match the key are not stored"
    );
}

#[tokio::test]
async fn audio_and_stems_are_never_uploaded() {
    let blobs = MemoryBlobStore::new();
    let shared: Arc<dyn BlobStore> = Arc::new(blobs.clone());
    let a = Device::new(shared).await;
    let t = new_track(&a, "T").await;
    // An audio file that even starts like a JPEG.
    let audio = jpeg(0, 300_000);
    std::fs::write(a.path("song.flac"), &audio).unwrap();
    std::fs::write(a.path("vocals.wav"), jpeg(1, 1000)).unwrap();
    let reg = a
        .sync
        .register_audio(t.id, &a.path("song.flac"))
        .await
        .unwrap();
    let rec = a.store().tracks().get(t.id).await.unwrap();
    assert_eq!(rec.track_hash.as_deref(), Some(reg.sha256.as_str()));
    assert_eq!(
        reg.sha256,
        BlobKey::of(HashAlgo::Sha256, &audio).hex(),
        "track_hash is the SHA-256 of the audio bytes"
    );
    a.sync
        .register_stem(t.id, "vocals", &a.path("vocals.wav"))
        .await
        .unwrap();
    assert_eq!(a.sync.local_files().await.unwrap().len(), 2);
    assert_eq!(
        a.store()
            .track_stems()
            .list_by_track(t.id)
            .await
            .unwrap()
            .len(),
        1
    );

    for (kind, name) in [
        (AssetKind::Audio, "song.flac"),
        (AssetKind::Stem, "vocals.wav"),
        (AssetKind::AlbumArt, "song.flac"),
        (AssetKind::WaveformFull, "vocals.wav"),
    ] {
        let err = a.sync.upload_now(kind, &a.path(name)).await.unwrap_err();
        assert!(
            matches!(err, FilesError::LocalOnly { .. }),
            "{kind}: {err:?}"
        );
    }
    let err = a
        .sync
        .set_album_art(t.id, &a.path("song.flac"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FilesError::LocalOnly {
                kind: AssetKind::Audio,
                ..
            }
        ),
        "{err:?}"
    );
    a.sync.run_until_idle().await.unwrap();
    assert!(blobs.is_empty(), "nothing left the device");
    assert!(a.sync.transfers().await.unwrap().is_empty());
    // The queue table itself refuses local-only kinds.
    let refused = sqlx::query(
        "INSERT INTO luma_file_transfers (id, direction, kind, blob_key, record_table, record_key, \
         local_path, created_ms, updated_ms) VALUES ('x', 'upload', 'audio', 'k', 't', 'r', 'p', 0, 0)",
    )
    .execute(a.store().writer_pool())
    .await;
    assert!(refused.is_err());
    // A file that is not registered uploads fine as album art.
    std::fs::write(a.path("ok.jpg"), jpeg(4, 100)).unwrap();
    a.sync
        .upload_now(AssetKind::AlbumArt, &a.path("ok.jpg"))
        .await
        .unwrap();
    assert_eq!(blobs.len(), 1);
}

#[tokio::test]
async fn album_art_size_limit_and_content_sniffing() {
    let shared: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let a = Device::new(shared).await;
    let t = new_track(&a, "T").await;
    // A 2 GB "jpeg" (sparse: costs no disk) is refused from its size alone.
    let f = std::fs::File::create(a.path("huge.jpg")).unwrap();
    f.set_len(2 * 1024 * 1024 * 1024).unwrap();
    let err = a
        .sync
        .set_album_art(t.id, &a.path("huge.jpg"))
        .await
        .unwrap_err();
    match &err {
        FilesError::TooLarge { size, limit, .. } => {
            assert_eq!(*size, 2 * 1024 * 1024 * 1024);
            assert_eq!(*limit, 10 * 1024 * 1024);
        }
        e => panic!("unexpected {e:?}"),
    }
    assert!(err.to_string().contains("more than the limit"), "{err}");
    std::fs::write(a.path("fake.jpg"), b"ID3\x03 this is an mp3").unwrap();
    let err = a
        .sync
        .set_album_art(t.id, &a.path("fake.jpg"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FilesError::UnsupportedContent { .. }),
        "{err:?}"
    );
    assert!(a.sync.transfers().await.unwrap().is_empty());
    let rec = a.store().tracks().get(t.id).await.unwrap();
    assert!(rec.album_art_ref.is_none());
    std::fs::write(a.path("real.webp"), b"RIFF\0\0\0\0WEBPVP8 data").unwrap();
    a.sync
        .set_album_art(t.id, &a.path("real.webp"))
        .await
        .unwrap();
    let rec = a.store().tracks().get(t.id).await.unwrap();
    assert_eq!(rec.album_art_mime.as_deref(), Some("image/webp"));
}

#[tokio::test]
async fn full_resolution_waveform_travels_as_a_blob() {
    let blobs = MemoryBlobStore::new();
    let shared: Arc<dyn BlobStore> = Arc::new(blobs.clone());
    let a = Device::new(shared.clone()).await;
    let b = Device::new(shared.clone()).await;
    let t = new_track(&a, "T").await;
    let w = TrackWaveform {
        track_id: t.id,
        preview_samples: vec![1, 2, 3],
        preview_colors: None,
        preview_bands: None,
        full_samples: Some((0..100_000u32).map(|i| (i % 256) as u8).collect()),
        full_colors: Some(vec![9; 1000]),
        full_bands: None,
        full_ref: None,
        sample_rate: 44_100,
        decoded_duration: 12.5,
    };
    a.store().track_waveforms().create(&w).await.unwrap();
    let key = a.sync.publish_waveform(t.id).await.unwrap();
    assert_eq!(
        a.store()
            .track_waveforms()
            .get(t.id)
            .await
            .unwrap()
            .full_ref,
        Some(key.to_string())
    );
    a.sync.run_until_idle().await.unwrap();
    assert!(blobs.exists(&key.to_string()).await.unwrap());

    deliver_track(&a, &b, t.id).await;
    let mut synced = a.store().track_waveforms().get(t.id).await.unwrap();
    synced.full_samples = None;
    synced.full_colors = None;
    synced.full_bands = None;
    b.store().track_waveforms().upsert(&synced).await.unwrap();
    assert_eq!(b.sync.scan().await.unwrap(), 1);
    assert_eq!(b.sync.run_until_idle().await.unwrap().downloaded, 1);
    let got = b.store().track_waveforms().get(t.id).await.unwrap();
    assert_eq!(got.full_samples, w.full_samples);
    assert_eq!(got.full_colors, w.full_colors);
    assert_eq!(got.full_bands, None);
    assert_eq!(got.preview_samples, w.preview_samples);
    assert_eq!(b.sync.scan().await.unwrap(), 0);
}

#[tokio::test]
async fn background_loop_fetches_after_a_record_arrives_and_stops_on_shutdown() {
    let blobs = MemoryBlobStore::new();
    let shared: Arc<dyn BlobStore> = Arc::new(blobs.clone());
    let a = Device::new(shared.clone()).await;
    let b = Device::new(shared.clone()).await;
    std::fs::write(a.path("c.png"), b"\x89PNG\r\n\x1a\nabcdefgh").unwrap();
    let t = new_track(&a, "T").await;
    a.sync.set_album_art(t.id, &a.path("c.png")).await.unwrap();
    a.sync.run_until_idle().await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut events = b.sync.events();
    let task = {
        let s = b.sync.clone();
        tokio::spawn(async move { s.run(stopped).await })
    };
    deliver_track(&a, &b, t.id).await;
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ev, FileEvent::Landed { .. }));
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn progress_counts_files_and_bytes() {
    let blobs = MemoryBlobStore::new();
    let faulty = FaultyStore::new(blobs.clone());
    let shared: Arc<dyn BlobStore> = Arc::new(faulty.clone());
    let a = Device::new(shared.clone()).await;
    let b = Device::new(shared.clone()).await;
    let mut total = 0u64;
    let mut ids = vec![];
    for i in 0..3u8 {
        let art = jpeg(i, 100_000 * (i as usize + 1));
        total += art.len() as u64;
        let name = format!("c{i}.jpg");
        std::fs::write(a.path(&name), &art).unwrap();
        let t = new_track(&a, &name).await;
        a.sync.set_album_art(t.id, &a.path(&name)).await.unwrap();
        ids.push(t.id);
    }
    let p = *a.sync.progress().borrow();
    assert_eq!((p.uploads_pending, p.files_pending), (3, 3));
    assert_eq!((p.bytes_done, p.bytes_total), (0, total));
    // A failed attempt's bytes are not counted twice.
    faulty.inject(Op::Put, Fault::BreakAfter(50_000));
    let mut snapshots = a.sync.progress();
    let collector = tokio::spawn(async move {
        let mut seen = vec![];
        while snapshots.changed().await.is_ok() {
            let p = *snapshots.borrow();
            seen.push(p);
            if p.files_pending == 0 {
                break;
            }
        }
        seen
    });
    let first = a.sync.run_once().await.unwrap();
    assert_eq!((first.retrying, first.uploaded), (1, 2));
    let id = a.sync.transfers().await.unwrap()[0].id.clone();
    a.sync.retry(&id).await.unwrap();
    assert_eq!(a.sync.run_until_idle().await.unwrap().uploaded, 1);
    let seen = collector.await.unwrap();
    let last = *seen.last().unwrap();
    assert_eq!(last.files_pending, 0);
    assert_eq!((last.bytes_done, last.bytes_total), (total, total));
    assert!(
        seen.iter().all(|p| p.bytes_done <= p.bytes_total),
        "{seen:?}"
    );
    assert!(seen
        .iter()
        .any(|p| p.bytes_done > 0 && p.bytes_done < total));

    for id in &ids {
        deliver_track(&a, &b, *id).await;
    }
    b.sync.scan().await.unwrap();
    assert_eq!(b.sync.progress().borrow().downloads_pending, 3);
    b.sync.run_until_idle().await.unwrap();
    let p = *b.sync.progress().borrow();
    assert_eq!(p.files_pending, 0);
    assert_eq!(
        (p.bytes_done, p.bytes_total),
        (total, total),
        "download sizes are learnt before the bytes move"
    );
}
