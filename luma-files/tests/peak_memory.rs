//! A 200 MB file moves up and down with bounded memory. This test is alone in its binary so
//! the process's peak resident set (VmHWM) measures it and nothing else.

use std::io::Write;
use std::sync::Arc;

use luma_files::{
    download_verified, hash_file, upload_file, BlobStore, FsBlobStore, HashAlgo, PutOutcome,
    S3BlobStore, S3Config,
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
    let peak_fs = vm_hwm_kib().unwrap();
    println!(
        "peak memory (VmHWM) after the fs leg: {:.1} MB ({:.1} s)",
        peak_fs as f64 / 1024.0,
        elapsed.as_secs_f64()
    );

    // The same file through the S3 backend (multipart upload) when a test server is up.
    if let Ok(endpoint) = std::env::var("LUMA_TEST_S3_ENDPOINT") {
        let bucket = format!(
            "luma-mem-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let resp = reqwest::Client::new()
            .put(format!("{}/{bucket}", endpoint.trim_end_matches('/')))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
        let s3 = S3BlobStore::from_config(&S3Config {
            endpoint: Some(endpoint),
            bucket,
            region: "us-east-1".into(),
            access_key_id: "testing".into(),
            secret_access_key: "testing".to_string().into(),
            session_token: None,
            allow_http: true,
        })
        .unwrap();
        let t = std::time::Instant::now();
        upload_file(&s3, &key, &src, None, None).await.unwrap();
        let dest = dir.path().join("landed-s3.bin");
        download_verified(&s3, &key, &dest, None).await.unwrap();
        s3.delete(&key.to_string()).await.unwrap();
        println!(
            "peak memory (VmHWM) after the S3 leg: {:.1} MB ({:.1} s)",
            vm_hwm_kib().unwrap() as f64 / 1024.0,
            t.elapsed().as_secs_f64()
        );
    } else {
        println!("NOTICE: S3 leg skipped (LUMA_TEST_S3_ENDPOINT unset)");
    }

    let peak = vm_hwm_kib().unwrap();
    let peak_mb = peak as f64 / 1024.0;
    println!(
        "peak memory (VmHWM) moving a 200 MB file up and down: {peak_mb:.1} MB \
         (before the transfers: {:.1} MB; limit {LIMIT_MB} MB)",
        before as f64 / 1024.0,
    );
    assert!(
        peak_mb < LIMIT_MB,
        "peak memory {peak_mb:.1} MB is over {LIMIT_MB} MB"
    );
}
