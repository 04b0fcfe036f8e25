//! The `Remote` conformance suite against MemoryRemote and PostgresRemote (a fresh database
//! per test on the server at `LUMA_TEST_DATABASE_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pg_common;

use luma_sync::conformance::{check_all, MemoryHarness};

#[tokio::test]
async fn memory_remote_conforms() {
    check_all(&MemoryHarness::default()).await.unwrap();
}

#[tokio::test]
async fn postgres_remote_conforms() {
    let db = pg_common::PgHarness::new().await;
    let result = check_all(&db).await;
    db.drop().await;
    result.unwrap();
}
