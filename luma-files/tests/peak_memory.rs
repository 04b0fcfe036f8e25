//! A 200 MB file moves up and down with bounded memory. This test is alone in its binary so
//! the process's peak resident set (VmHWM) measures it and nothing else.

use std::io::Write;
use std::sync::Arc;

use luma_files::{
    download_verified, hash_file, upload_file, BlobStore, FsBlobStore, HashAlgo, PutOutcome,
};

const SIZE: usize = 200 * 1024 * 1024;
const LIMIT_MB: f64 = 64.0;

/// Peak resident set size of this process in KiB, from /proc/self/status.
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_file_moves_with_peak_memory_under_64_mb() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let mut block = vec![0u8; 1024 * 1024];
        for i in 0..(SIZE / block.len()) {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(31) ^ (j as u8);
            }
            f.write_all(&block).unwrap();
        }
        f.flush().unwrap();
    }
    let before = vm_hwm_kib().expect("this test needs /proc/self/status (Linux)");

    let store: Arc<dyn BlobStore> =
        Arc::new(FsBlobStore::new(dir.path().join("blobs")).await.unwrap());
    let started = std::time::Instant::now();
    let (key, size) = hash_file(HashAlgo::Blake3, &src).await.unwrap();
    assert_eq!(size, SIZE as u64);
    let out = upload_file(&*store, &key, &src, None, None).await.unwrap();
    assert_eq!(out, PutOutcome::Stored { size: SIZE as u64 });
    let dest = dir.path().join("landed.bin");
    let n = download_verified(&*store, &key, &dest, None).await.unwrap();
    assert_eq!(n, SIZE as u64);
    let (back, _) = hash_file(HashAlgo::Blake3, &dest).await.unwrap();
    assert_eq!(back, key);
    let elapsed = started.elapsed();

    let peak = vm_hwm_kib().unwrap();
    let peak_mb = peak as f64 / 1024.0;
    println!(
        "peak memory (VmHWM) moving a 200 MB file up and down through the fs backend: \
         {peak_mb:.1} MB (before the transfer: {:.1} MB; limit {LIMIT_MB} MB; {:.1} s)",
        before as f64 / 1024.0,
        elapsed.as_secs_f64()
    );
    assert!(
        peak_mb < LIMIT_MB,
        "peak memory {peak_mb:.1} MB is over {LIMIT_MB} MB"
    );
}
