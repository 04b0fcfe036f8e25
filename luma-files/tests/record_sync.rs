//! File sync together with record sync: two devices whose records travel through luma-sync's
//! `MemoryRemote` and whose blobs travel through one in-memory `BlobStore`, and file progress
//! in the engine's status.

use std::sync::Arc;
use std::time::Duration;

use luma_files::{
    AssetKind, BlobStore, FileEvent, FileProgress, FileSync, FileSyncConfig, LatencyStore,
    MemoryBlobStore,
};
use luma_model::{Track, TrackWaveform, UserId};
use luma_store::Store;
use luma_sync::{FileTransfers, MemoryRemote, StaticToken, SyncConfig, SyncEngine, SyncStatus};

struct Device {
    engine: SyncEngine<Store, MemoryRemote>,
    files: FileSync,
    dir: tempfile::TempDir,
}

impl Device {
    async fn new(remote: &MemoryRemote, user: UserId, blobs: Arc<dyn BlobStore>) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("luma.db")).await.unwrap();
        store.set_current_user(Some(user)).await.unwrap();
        let token = Arc::new(StaticToken(Arc::new(remote.issue_token(user))));
        let engine = SyncEngine::new(store.clone(), remote.clone(), token, SyncConfig::default());
        let files = FileSync::open(store, blobs, FileSyncConfig::new(dir.path().join("files")))
            .await
            .unwrap();
        Device { engine, files, dir }
    }

    fn store(&self) -> &Store {
        self.engine.local()
    }

    /// What an app does: file progress into the engine's status, landed files into its
    /// change notifications.
    fn wire_status(&self) -> tokio::task::JoinHandle<()> {
        let feed = self.engine.file_status();
        let landed = feed.clone();
        self.files.forward(
            move |p: FileProgress| {
                feed.set(FileTransfers {
                    uploads_pending: p.uploads_pending,
                    downloads_pending: p.downloads_pending,
                    files_pending: p.files_pending,
                    files_failed: p.files_failed,
                    bytes_done: p.bytes_done,
                    bytes_total: p.bytes_total,
                })
            },
            move |e| {
                if let FileEvent::Landed { kind, .. } = e {
                    landed.landed(kind.record_table());
                }
            },
        )
    }
}

/// A small valid-looking JPEG (magic bytes + payload).
fn jpeg(seed: u8, len: usize) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0];
    v.extend((0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)));
    v
}

/// Waits until the engine's status satisfies `f` (or fails after 10 s).
async fn wait_status(
    rx: &mut tokio::sync::watch::Receiver<SyncStatus>,
    what: &str,
    f: impl Fn(&SyncStatus) -> bool,
) -> SyncStatus {
    let got = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| f(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match got {
        Ok(s) => s.unwrap(),
        Err(_) => panic!("timed out waiting for {what}: {:?}", *rx.borrow()),
    }
}

#[tokio::test]
async fn two_devices_end_with_the_same_album_art_and_waveform_through_memory_remote() {
    let remote = MemoryRemote::new();
    let user = UserId::new();
    let blobs = MemoryBlobStore::new();
    let shared: Arc<dyn BlobStore> = Arc::new(blobs.clone());
    let a = Device::new(&remote, user, shared.clone()).await;
    let b = Device::new(&remote, user, shared.clone()).await;

    // Device A imports a track with album art and a full-resolution waveform.
    let t = Track::new("Song");
    a.store().tracks().create(&t).await.unwrap();
    let cover = a.dir.path().join("cover.jpg");
    let art = jpeg(3, 200_000);
    std::fs::write(&cover, &art).unwrap();
    let art_key = a.files.set_album_art(t.id, &cover).await.unwrap();
    let w = TrackWaveform {
        track_id: t.id,
        preview_samples: vec![1, 2, 3],
        preview_colors: None,
        preview_bands: None,
        full_samples: Some((0..100_000u32).map(|i| (i % 251) as u8).collect()),
        full_colors: Some(vec![9; 1000]),
        full_bands: None,
        full_ref: None,
        sample_rate: 44_100,
        decoded_duration: 12.5,
    };
    a.store().track_waveforms().create(&w).await.unwrap();
    let wave_key = a.files.publish_waveform(t.id).await.unwrap();

    // Records first: they never wait for blobs.
    let pushed = a.engine.sync_now().await.unwrap();
    assert!(pushed.push.applied >= 2, "{pushed:?}");
    let up = a.files.run_until_idle().await.unwrap();
    assert_eq!(up.uploaded, 2);
    assert_eq!(blobs.len(), 2);

    // Device B pulls the records: refs arrive, local-only columns do not.
    b.engine.sync_now().await.unwrap();
    let rec = b.store().tracks().get(t.id).await.unwrap();
    assert_eq!(rec.album_art_ref, Some(art_key.to_string()));
    assert_eq!(rec.album_art_mime.as_deref(), Some("image/jpeg"));
    assert_eq!(rec.album_art_path, None);
    let wave = b.store().track_waveforms().get(t.id).await.unwrap();
    assert_eq!(wave.full_ref, Some(wave_key.to_string()));
    assert_eq!(wave.full_samples, None);

    // B's file sync sees the refs and downloads.
    let mut events = b.files.events();
    assert_eq!(b.files.scan().await.unwrap(), 2);
    let down = b.files.run_until_idle().await.unwrap();
    assert_eq!(down.downloaded, 2);
    let mut landed = vec![];
    while let Ok(e) = events.try_recv() {
        if let FileEvent::Landed { kind, .. } = e {
            landed.push(kind);
        }
    }
    landed.sort_by_key(|k| k.as_str());
    assert_eq!(landed, vec![AssetKind::AlbumArt, AssetKind::WaveformFull]);

    // Byte-identical art on both devices.
    let rec_a = a.store().tracks().get(t.id).await.unwrap();
    let rec_b = b.store().tracks().get(t.id).await.unwrap();
    let path_a = rec_a.album_art_path.unwrap();
    let path_b = rec_b.album_art_path.unwrap();
    assert_ne!(path_a, path_b);
    assert!(path_b.starts_with(&*b.dir.path().to_string_lossy()));
    let bytes_a = std::fs::read(&path_a).unwrap();
    let bytes_b = std::fs::read(&path_b).unwrap();
    assert_eq!(bytes_a, art);
    assert_eq!(bytes_b, bytes_a);
    // And the same full-resolution waveform.
    let wave_b = b.store().track_waveforms().get(t.id).await.unwrap();
    assert_eq!(wave_b.full_samples, w.full_samples);
    assert_eq!(wave_b.full_colors, w.full_colors);
    assert_eq!(wave_b.full_bands, None);

    // Landing wrote only local-only columns: nothing for B to push, nothing new on A.
    assert_eq!(b.store().outbox().pending_count().await.unwrap(), 0);
    let again = b.engine.sync_now().await.unwrap();
    assert_eq!(again.push.applied, 0, "{again:?}");
    assert_eq!(b.files.scan().await.unwrap(), 0);
    a.engine.sync_now().await.unwrap();
    assert_eq!(
        a.store().tracks().get(t.id).await.unwrap().album_art_path,
        Some(path_a)
    );
}

#[tokio::test]
async fn sync_status_shows_file_progress_and_a_landed_file() {
    let remote = MemoryRemote::new();
    let user = UserId::new();
    let blobs = MemoryBlobStore::new();
    // Slow reads on B: 100 ms per 64 KiB chunk, so the download is visibly in flight.
    let slow: Arc<dyn BlobStore> = Arc::new(
        LatencyStore::new(blobs.clone(), Duration::ZERO)
            .with_chunk_delay(Duration::from_millis(100)),
    );
    let a = Device::new(&remote, user, Arc::new(blobs.clone())).await;
    let b = Device::new(&remote, user, slow).await;
    let _a_wire = a.wire_status();
    let _b_wire = b.wire_status();

    let t = Track::new("Song");
    a.store().tracks().create(&t).await.unwrap();
    let cover = a.dir.path().join("cover.jpg");
    let art = jpeg(5, 400_000);
    let size = art.len() as u64;
    std::fs::write(&cover, &art).unwrap();

    // A: the queued upload shows in A's engine status, then clears.
    let mut a_status = a.engine.status();
    a.files.set_album_art(t.id, &cover).await.unwrap();
    let s = wait_status(&mut a_status, "A's upload pending", |s| {
        s.files.uploads_pending == 1
    })
    .await;
    assert_eq!(s.files.files_pending, 1);
    assert_eq!(s.files.bytes_total, size);
    a.engine.sync_now().await.unwrap();
    a.files.run_until_idle().await.unwrap();
    wait_status(&mut a_status, "A's upload done", |s| {
        s.files.files_pending == 0 && s.files.bytes_done == size
    })
    .await;

    // B: pull the record, then download while watching the engine's status.
    b.engine.sync_now().await.unwrap();
    let mut b_status = b.engine.status();
    let mut changes = b.engine.changes();
    assert_eq!(b.engine.status().borrow().files, FileTransfers::default());
    assert_eq!(b.files.scan().await.unwrap(), 1);
    wait_status(&mut b_status, "B's download pending", |s| {
        s.files.downloads_pending == 1 && s.files.files_pending == 1
    })
    .await;
    let run = {
        let files = b.files.clone();
        tokio::spawn(async move { files.run_until_idle().await })
    };
    let mid = wait_status(&mut b_status, "B's download in flight", |s| {
        s.files.files_pending == 1 && s.files.bytes_done > 0 && s.files.bytes_done < size
    })
    .await;
    assert_eq!(mid.files.bytes_total, size, "{mid:?}");
    println!(
        "mid-transfer status: {} of {} bytes, {} file(s) pending",
        mid.files.bytes_done, mid.files.bytes_total, mid.files.files_pending
    );
    assert_eq!(run.await.unwrap().unwrap().downloaded, 1);
    let end = wait_status(&mut b_status, "B's download done", |s| {
        s.files.files_pending == 0
    })
    .await;
    assert_eq!(end.files.bytes_done, size);
    assert_eq!(end.files.bytes_total, size);
    assert_eq!(end.files.files_failed, 0);

    // The landed file arrives as a change of `tracks` (its local album_art_path moved).
    let changed = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.tables, vec!["tracks".to_string()]);
    let path_b = b
        .store()
        .tracks()
        .get(t.id)
        .await
        .unwrap()
        .album_art_path
        .unwrap();
    assert_eq!(std::fs::read(path_b).unwrap(), art);
}
