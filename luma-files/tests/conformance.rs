//! The conformance suite against every backend.

mod common;

use std::sync::Arc;
use std::time::Duration;

use luma_files::conformance::check_all;
use luma_files::{
    BlobStore, FaultyStore, FsBlobStore, LatencyStore, MemoryBlobStore, S3BlobStore, S3Config,
    SupabaseBlobStore, SupabaseStorageConfig,
};

#[tokio::test]
async fn memory_backend_conforms() {
    let store = MemoryBlobStore::new();
    check_all(&store, &common::run_prefix("mem")).await.unwrap();
}

#[tokio::test]
async fn fs_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::new(dir.path()).await.unwrap();
    check_all(&store, &common::run_prefix("fs")).await.unwrap();
    // Nothing is left in the temp area after failed and successful puts.
    let leftovers = std::fs::read_dir(dir.path().join(".tmp")).unwrap().count();
    assert_eq!(leftovers, 0);
}

#[tokio::test]
async fn wrappers_without_faults_conform() {
    let faulty = FaultyStore::new(MemoryBlobStore::new());
    check_all(&faulty, &common::run_prefix("faulty"))
        .await
        .unwrap();
    let slow = LatencyStore::new(MemoryBlobStore::new(), Duration::from_millis(1))
        .with_chunk_delay(Duration::from_micros(10));
    check_all(&slow, &common::run_prefix("slow")).await.unwrap();
    let shared: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    check_all(&shared, &common::run_prefix("arc"))
        .await
        .unwrap();
}

#[tokio::test]
async fn supabase_backend_conforms_against_a_stateful_fake() {
    for legacy in [false, true] {
        let (server, _fake) = common::supabase_fake::start(legacy).await;
        let store = SupabaseBlobStore::new(SupabaseStorageConfig {
            url: server.uri(),
            bucket: common::supabase_fake::BUCKET.into(),
            api_key: common::supabase_fake::API_KEY.to_string().into(),
        })
        .unwrap();
        check_all(&store, &common::run_prefix("supa"))
            .await
            .unwrap();
    }
}

/// Creates a bucket on an S3-compatible test server (moto accepts unsigned requests).
async fn create_bucket(endpoint: &str, bucket: &str) {
    let resp = reqwest::Client::new()
        .put(format!("{}/{bucket}", endpoint.trim_end_matches('/')))
        .send()
        .await
        .unwrap_or_else(|e| panic!("S3 test server at {endpoint} does not answer: {e}"));
    assert!(
        resp.status().is_success(),
        "creating bucket {bucket}: HTTP {}",
        resp.status()
    );
}

#[tokio::test]
async fn s3_backend_conforms_against_a_real_server() {
    let Ok(endpoint) = std::env::var("LUMA_TEST_S3_ENDPOINT") else {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!(
                "LUMA_TEST_S3_ENDPOINT is not set in CI: .ci/run must start the S3 test server \
                 (bash .ci/start-s3.sh) and export LUMA_TEST_S3_ENDPOINT"
            );
        }
        println!(
            "NOTICE: s3_backend_conforms_against_a_real_server SKIPPED: set \
             LUMA_TEST_S3_ENDPOINT (e.g. `bash .ci/start-s3.sh` then \
             LUMA_TEST_S3_ENDPOINT=http://127.0.0.1:9000)"
        );
        return;
    };
    let bucket = format!(
        "luma-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    create_bucket(&endpoint, &bucket).await;
    let store = S3BlobStore::from_config(&S3Config {
        endpoint: Some(endpoint.clone()),
        bucket,
        region: "us-east-1".into(),
        access_key_id: "testing".into(),
        secret_access_key: "testing".to_string().into(),
        session_token: None,
        allow_http: true,
    })
    .unwrap()
    .with_part_size(5 * 1024 * 1024);
    check_all(&store, &common::run_prefix("s3")).await.unwrap();
}
