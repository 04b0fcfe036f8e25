//! `sync_roundtrip`: 100,000 fixtures created on one store are pushed through a
//! `MemoryRemote` and pulled into another store. Prints rows/s and the ratio to a raw
//! `json_each` page upsert of the same rows measured in the same run.
//!
//! `LUMA_BENCH_ROWS` changes the row count.
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use luma_model::{Fixture, Record, Row, UserId, Venue};
use luma_store::Store;
use luma_sync::{MemoryRemote, StaticToken, SyncConfig, SyncEngine};

mod common;

fn rows_count() -> usize {
    std::env::var("LUMA_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn config() -> SyncConfig {
    SyncConfig {
        batch_size: 1000,
        page_size: 1000,
        ..SyncConfig::default()
    }
}

async fn engine(
    dir: &tempfile::TempDir,
    name: &str,
    remote: &MemoryRemote,
    user: UserId,
) -> SyncEngine<Store, MemoryRemote> {
    let store = Store::open(dir.path().join(name)).await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    let token = Arc::new(remote.issue_token(user));
    SyncEngine::new(
        store,
        remote.clone(),
        Arc::new(StaticToken(token)),
        config(),
    )
}

/// Pushes `n` fixtures from a new store and pulls them into another: the time of push + pull.
async fn roundtrip(dir: &tempfile::TempDir, round: usize, n: usize) -> Duration {
    let remote = MemoryRemote::new();
    let user = UserId::new();
    let a = engine(dir, &format!("a-{round}.db"), &remote, user).await;
    let b = engine(dir, &format!("b-{round}.db"), &remote, user).await;
    let venue = Venue::new("bench");
    a.local().venues().create(&venue).await.unwrap();
    let fixtures: Vec<Fixture> = (0..n)
        .map(|i| Fixture::new(venue.id, 1, 1 + (i as i64 % 500), 1))
        .collect();
    a.local()
        .import_fixtures(venue.id, &fixtures)
        .await
        .unwrap();
    let start = Instant::now();
    let pushed = a.push().await.unwrap();
    let push_took = start.elapsed();
    let pulled = b.pull().await.unwrap();
    let took = start.elapsed();
    if round == 1 {
        println!(
            "sync_roundtrip: push {:?}, pull {:?}",
            push_took,
            took - push_took
        );
    }
    assert_eq!(pushed.applied as usize, n + 1);
    assert_eq!(pulled.rows as usize, n + 1);
    took
}

async fn raw(dir: &tempfile::TempDir, round: usize, n: usize) -> Duration {
    let store = Store::open(dir.path().join(format!("raw-{round}.db")))
        .await
        .unwrap();
    let venue = Venue::new("bench");
    let mut tx = store.writer_pool().begin().await.unwrap();
    sqlx::query("INSERT INTO sync_apply_guard (id) VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO venues (id, name, description, created_at, updated_at) VALUES (?, 'b', '', '', '')")
        .bind(venue.id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("DELETE FROM sync_apply_guard")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let rows: Vec<Row> = (0..n)
        .map(|i| {
            let mut row = Fixture::new(venue.id, 1, 1 + (i as i64 % 500), 1)
                .to_row()
                .unwrap();
            row.insert(
                "hlc".into(),
                format!("{:015}-000000-0000000000000009", i).into(),
            );
            row
        })
        .collect();
    common::raw_apply(
        &store,
        rows.chunks(1000)
            .map(|page| serde_json::to_string(page).unwrap()),
    )
    .await
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n = rows_count();
    let dir = tempfile::tempdir().unwrap();
    let mut round = 0usize;
    let t_raw = rt.block_on(raw(&dir, round, n));
    round += 1;
    let t_trip = rt.block_on(roundtrip(&dir, round, n));
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "sync_roundtrip: {n} rows pushed and pulled at {:.0} rows/s; raw json_each upsert {:.0} rows/s; ratio {:.2}x",
        rate(t_trip),
        rate(t_raw),
        rate(t_trip) / rate(t_raw)
    );
    let mut group = c.benchmark_group("sync_roundtrip");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("push_then_pull", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                total += rt.block_on(roundtrip(&dir, round, n));
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
