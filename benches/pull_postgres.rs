//! `pull_postgres`: pulling fixtures from PostgreSQL into SQLite through the engine
//! (`SyncEngine::pull`, `PostgresRemote`, pages of 1,000) vs the raw `json_each` page upsert of
//! the same rows into SQLite (rows fetched beforehand, so it measures only the local apply), in
//! the same run; prints rows/s and the ratio. First, before anything else is held in memory, it
//! pulls `LUMA_BENCH_PEAK_ROWS` (default 1,000,000) rows and prints the process's peak memory
//! (VmHWM) before and after.
//!
//! `LUMA_BENCH_ROWS` (default 100,000) rows for the rate comparison.
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use luma_model::{Fixture, Hlc, Record, SiteId, UserId, Venue};
use luma_store::Store;
use luma_sync::{
    PostgresAdmin, PostgresRemote, PullRequest, Remote, StaticToken, SyncConfig, SyncEngine,
};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

mod common;

const PAGE: usize = 1000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn base() -> PgConnectOptions {
    let url = std::env::var("LUMA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    PgConnectOptions::from_str(&url).unwrap()
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Db {
    name: String,
    pool: PgPool,
    remote: PostgresRemote,
    user: UserId,
    venue: Venue,
}

/// A database with `n` fixtures of one venue of one user (written by raw batches as the user).
async fn db_with(n: usize) -> Db {
    let name = format!("luma_bench_{}", Uuid::new_v4().simple());
    let mut c = base().connect().await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(base().database(&name))
        .await
        .unwrap();
    PostgresAdmin::new(pool.clone()).migrate().await.unwrap();
    let user = UserId::new();
    let mut venue = Venue::new("Bench");
    venue.uid = Some(user);
    let claims = json!({"sub": user.to_string(), "role": "authenticated"}).to_string();
    let set =
        "SELECT set_config('role','authenticated',true), set_config('request.jwt.claims',$1,true)";
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(set)
        .bind(&claims)
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut vrow = venue.to_row().unwrap();
    vrow.insert("hlc".into(), Hlc::new(1, 0, SiteId(9)).to_string().into());
    sqlx::query(
        "INSERT INTO public.venues SELECT * FROM jsonb_populate_record(NULL::public.venues, $1)",
    )
    .bind(Value::Object(vrow))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut i = 0;
    while i < n {
        let m = PAGE.min(n - i);
        let rows: Vec<Value> = (i..i + m)
            .map(|k| {
                let mut f = Fixture::new(venue.id, 1 + (k as i64 % 100), 1 + (k as i64 % 500), 1);
                f.pos_x = k as f64 * 0.1;
                f.label = Some(format!("fixture {k}"));
                let mut row = f.to_row().unwrap();
                row.remove("fixture_path");
                row.insert(
                    "hlc".into(),
                    Hlc::new(1_700_000_000_000 + k as u64, 0, SiteId(9))
                        .to_string()
                        .into(),
                );
                Value::Object(row)
            })
            .collect();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(set)
            .bind(&claims)
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO public.fixtures (id, venue_id, universe, address, num_channels, manufacturer, model, \
             mode_name, label, pos_x, pos_y, pos_z, rot_x, rot_y, rot_z, hlc) \
             SELECT id, venue_id, universe, address, num_channels, manufacturer, model, mode_name, label, \
             pos_x, pos_y, pos_z, rot_x, rot_y, rot_z, hlc FROM jsonb_populate_recordset(NULL::public.fixtures, $1)",
        )
        .bind(Value::Array(rows))
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        i += m;
    }
    PostgresAdmin::new(pool.clone())
        .settled_watermark(Duration::from_secs(60))
        .await
        .unwrap();
    let remote = PostgresRemote::new(pool.clone());
    Db {
        name,
        pool,
        remote,
        user,
        venue,
    }
}

async fn drop_db(db: Db) {
    db.pool.close().await;
    let mut c = base().connect().await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name))
        .execute(&mut c)
        .await
        .unwrap();
}

/// Pulls everything into a fresh SQLite file through the engine; answers the time.
async fn engine_pull(db: &Db, dir: &tempfile::TempDir, file: &str) -> Duration {
    let store = Store::open(dir.path().join(file)).await.unwrap();
    store.set_current_user(Some(db.user)).await.unwrap();
    let cfg = SyncConfig {
        page_size: PAGE as u32,
        ..SyncConfig::default()
    };
    let engine = SyncEngine::new(
        store,
        db.remote.clone(),
        Arc::new(StaticToken(Arc::new(db.remote.sign_in(db.user)))),
        cfg,
    );
    let start = Instant::now();
    engine.pull().await.unwrap();
    let t = start.elapsed();
    engine.local().close().await;
    t
}

/// Fetches every fixture page through the remote, then times the raw json_each apply.
async fn raw_apply(db: &Db, dir: &tempfile::TempDir, file: &str) -> Duration {
    let token = db.remote.sign_in(db.user);
    let wm = db.remote.watermark(&token).await.unwrap();
    let mut pages: Vec<String> = Vec::new();
    let mut cursor = None;
    loop {
        let page = db
            .remote
            .pull(
                &token,
                &PullRequest {
                    table: "fixtures".into(),
                    cursor: cursor.clone(),
                    limit: PAGE as u32,
                    watermark: wm.clone(),
                },
            )
            .await
            .unwrap();
        pages.push(serde_json::to_string(&common::raw_rows(&page.rows)).unwrap());
        cursor = page.cursor;
        if !page.has_more {
            break;
        }
    }
    let store = Store::open(dir.path().join(file)).await.unwrap();
    store.set_current_user(Some(db.user)).await.unwrap();
    store
        .apply_remote_rows(
            "venues",
            &[luma_store::PulledRow {
                key: db.venue.key().unwrap(),
                hlc: Hlc::new(1, 0, SiteId(9)),
                deleted: false,
                row: Some(db.venue.to_row().unwrap()),
            }],
        )
        .await
        .unwrap();
    let t = common::raw_apply(&store, pages).await;
    store.close().await;
    t
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let peak_rows = env("LUMA_BENCH_PEAK_ROWS", 1_000_000);
    let db = rt.block_on(db_with(peak_rows));
    let before = vm_hwm_kib();
    let t = rt.block_on(engine_pull(&db, &dir, "peak.db"));
    let after = vm_hwm_kib();
    println!(
        "pull_postgres: pulled {peak_rows} rows into SQLite in {:.1} s ({:.0} rows/s); VmHWM {} MiB before, {} MiB after (target < 150 MB)",
        t.as_secs_f64(),
        peak_rows as f64 / t.as_secs_f64(),
        before / 1024,
        after / 1024
    );
    rt.block_on(drop_db(db));
    let _ = std::fs::remove_file(dir.path().join("peak.db"));

    let n = env("LUMA_BENCH_ROWS", 100_000);
    let db = rt.block_on(db_with(n));
    let pull = n as f64 / rt.block_on(engine_pull(&db, &dir, "pull.db")).as_secs_f64();
    let raw = n as f64 / rt.block_on(raw_apply(&db, &dir, "raw.db")).as_secs_f64();
    println!(
        "pull_postgres: {n} rows: engine pull from PostgreSQL into SQLite {pull:.0} rows/s, raw json_each apply {raw:.0} rows/s, ratio {:.2}x (target >= 0.7x)",
        pull / raw
    );
    let mut g = c.benchmark_group("pull_postgres");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(n as u64));
    let mut k = 0;
    g.bench_function("engine_pull", |b| {
        b.to_async(&rt).iter(|| {
            k += 1;
            engine_pull(&db, &dir, Box::leak(format!("p{k}.db").into_boxed_str()))
        })
    });
    g.finish();
    rt.block_on(drop_db(db));
}

criterion_group!(benches, bench);
criterion_main!(benches);
