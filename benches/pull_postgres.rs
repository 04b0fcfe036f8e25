//! `pull_postgres`: pulling fixtures from PostgreSQL into SQLite through the engine
//! (`SyncEngine::pull`, `PostgresRemote`) vs the raw `json_each` page upsert of the same rows
//! into SQLite (rows fetched beforehand, so it measures only the local apply; same page size), in
//! the same run: `LUMA_BENCH_ROUNDS` (default 3) rounds alternate the two, and the ratio printed
//! is the median of the per-round ratios (the machine's load changes between phases). Also
//! printed, for information: the rates of fetching the pages alone and of
//! `Store::apply_pulled_page` of them alone (the engine overlaps the two). First, before anything
//! else is held in memory, it pulls `LUMA_BENCH_PEAK_ROWS` (default 1,000,000) rows and prints
//! the process's peak memory (VmHWM) before and after.
//!
//! `LUMA_BENCH_ROWS` (default 100,000) rows for the rate comparison; `LUMA_BENCH_PAGE` rows per
//! pulled page (default: the engine's default page size).
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
    PostgresAdmin, PostgresRemote, PullPage, PullRequest, Remote, StaticToken, SyncConfig,
    SyncEngine,
};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

mod common;

/// Rows per page written into PostgreSQL when seeding.
const PAGE: usize = 1000;

/// Rows per pulled page, for the engine and the raw baseline alike (`LUMA_BENCH_PAGE`, default
/// the engine's default page size).
fn pull_page() -> usize {
    env("LUMA_BENCH_PAGE", SyncConfig::default().page_size as usize)
}

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
        "SELECT set_config('role','luma_writer',true), set_config('request.jwt.claims',$1,true)";
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
        page_size: pull_page() as u32,
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

/// Fetches every fixture page through the remote (nothing applied); answers the time taken.
async fn fetch_all(db: &Db) -> (Duration, Vec<PullPage>) {
    let token = db.remote.sign_in(db.user);
    let wm = db.remote.watermark(&token).await.unwrap();
    let mut pages = Vec::new();
    let mut cursor = None;
    let start = Instant::now();
    loop {
        let page = db
            .remote
            .pull(
                &token,
                &PullRequest {
                    table: "fixtures".into(),
                    cursor: cursor.clone(),
                    limit: pull_page() as u32,
                    watermark: wm.clone(),
                },
            )
            .await
            .unwrap();
        cursor = page.cursor.clone();
        let more = page.has_more;
        pages.push(page);
        if !more {
            break;
        }
    }
    (start.elapsed(), pages)
}

/// A fresh SQLite file holding the bench venue (the fixtures' parent).
async fn fresh_store(db: &Db, dir: &tempfile::TempDir, file: &str) -> Store {
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
    store
}

/// The baseline: the raw json_each apply of the fetched pages (serialized beforehand, so only
/// the local apply is timed).
async fn raw_apply(db: &Db, dir: &tempfile::TempDir, file: &str, pages: &[PullPage]) -> Duration {
    let json: Vec<String> = pages
        .iter()
        .map(|p| serde_json::to_string(&common::raw_rows(&p.rows)).unwrap())
        .collect();
    let store = fresh_store(db, dir, file).await;
    let t = common::raw_apply(&store, json).await;
    store.close().await;
    t
}

/// Informational: `Store::apply_pulled_page` of the fetched pages alone (nothing fetched).
async fn store_apply(db: &Db, dir: &tempfile::TempDir, file: &str, pages: &[PullPage]) -> Duration {
    let store = fresh_store(db, dir, file).await;
    let start = Instant::now();
    for page in pages {
        store
            .apply_pulled_page(db.user, "fixtures", &page.rows, page.cursor.as_deref())
            .await
            .unwrap();
    }
    let t = start.elapsed();
    store.close().await;
    t
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
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
    let (fetch_t, pages) = rt.block_on(fetch_all(&db));
    // Rounds alternate the engine pull and the baseline (and the informational store apply), so
    // a change of machine load hits both sides; the ratio is the median of per-round ratios.
    let rounds = env("LUMA_BENCH_ROUNDS", 3).max(1);
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let (mut pulls, mut raws, mut applies, mut ratios) = (vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        let pull = rate(rt.block_on(engine_pull(&db, &dir, &format!("pull{r}.db"))));
        let raw = rate(rt.block_on(raw_apply(&db, &dir, &format!("raw{r}.db"), &pages)));
        let apply = rate(rt.block_on(store_apply(&db, &dir, &format!("apply{r}.db"), &pages)));
        println!(
            "pull_postgres: round {r}: engine pull {pull:.0} rows/s, raw json_each apply {raw:.0} rows/s, ratio {:.2}x",
            pull / raw
        );
        pulls.push(pull);
        raws.push(raw);
        applies.push(apply);
        ratios.push(pull / raw);
    }
    drop(pages);
    println!(
        "pull_postgres: {n} rows, pages of {}: engine pull from PostgreSQL into SQLite {:.0} rows/s, raw json_each apply {:.0} rows/s (medians of {rounds} rounds), ratio {:.2}x (median of the rounds; target >= 0.7x)",
        pull_page(),
        median(pulls),
        median(raws),
        median(ratios)
    );
    println!(
        "pull_postgres: parts: fetching the pages alone {:.0} rows/s, Store::apply_pulled_page of them alone {:.0} rows/s (the engine overlaps the two)",
        rate(fetch_t),
        median(applies)
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
