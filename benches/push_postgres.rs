//! Pushing fixtures into PostgreSQL: through `PostgresRemote` (batches of 1,000 changes via
//! `luma_push`, as the engine sends them) vs a raw 1,000-row `jsonb_populate_recordset` upsert
//! vs one `INSERT` per row in its own transaction (a push of one row per request, as PostgREST
//! would run it), all as the signed-in user (row-level security applies to
//! all three) into a fresh database on the same server. Prints rows/s and ratios.
//!
//! `LUMA_BENCH_ROWS` (default 100,000) rows for the remote and the raw batch; the per-row
//! variant runs a tenth of them (its rate is what matters). The server URL is
//! `LUMA_TEST_DATABASE_URL` or `postgres://postgres@127.0.0.1:5432/postgres`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use luma_model::{Hlc, OpKind, RecordKey, SiteId, UserId};
use luma_sync::{Change, PostgresAdmin, PostgresRemote, Remote};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

const BATCH: usize = 1000;

fn base() -> PgConnectOptions {
    let url = std::env::var("LUMA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    PgConnectOptions::from_str(&url).unwrap()
}

fn fixture(id: Uuid, venue: Uuid, i: usize) -> Value {
    json!({"id": id, "venue_id": venue, "universe": 1, "address": (i % 509) + 1, "num_channels": 4,
           "manufacturer": "Acme", "model": "Par", "mode_name": "4ch", "label": null,
           "pos_x": 0.5, "pos_y": 0.0, "pos_z": 2.0, "rot_x": 0.0, "rot_y": 0.0, "rot_z": 0.0})
}

fn stamp(i: usize) -> Hlc {
    Hlc::new(1_700_000_000_000 + i as u64, 0, SiteId(7))
}

async fn as_user(tx: &mut sqlx::PgConnection, user: UserId) {
    let claims = json!({"sub": user.to_string(), "role": "authenticated"}).to_string();
    sqlx::query(
        "SELECT set_config('role','luma_writer',true), set_config('request.jwt.claims',$1,true)",
    )
    .bind(claims)
    .execute(tx)
    .await
    .unwrap();
}

struct Setup {
    name: String,
    remote: PostgresRemote,
    pool: PgPool,
    user: UserId,
    venue: Uuid,
}

async fn setup() -> Setup {
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
    let remote = PostgresRemote::new(pool.clone());
    let user = UserId::new();
    let venue = Uuid::new_v4();
    let token = remote.sign_in(user);
    let row = json!({"id": venue, "uid": user.to_string(), "name": "Bench", "description": "",
                     "share_code": null, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"});
    remote
        .push(
            &token,
            &[Change {
                table: "venues".into(),
                key: RecordKey::from_canonical(venue.to_string()),
                hlc: stamp(0),
                op: OpKind::Upsert,
                row: row.as_object().cloned(),
            }],
        )
        .await
        .unwrap();
    Setup {
        name,
        remote,
        pool,
        user,
        venue,
    }
}

async fn teardown(s: Setup) {
    s.pool.close().await;
    let mut c = base().connect().await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", s.name))
        .execute(&mut c)
        .await
        .unwrap();
}

async fn via_remote(s: &Setup, n: usize) -> Duration {
    let token = s.remote.sign_in(s.user);
    let changes: Vec<Change> = (0..n)
        .map(|i| {
            let id = Uuid::new_v4();
            Change {
                table: "fixtures".into(),
                key: RecordKey::from_canonical(id.to_string()),
                hlc: stamp(i + 1),
                op: OpKind::Upsert,
                row: fixture(id, s.venue, i).as_object().cloned(),
            }
        })
        .collect();
    let t = Instant::now();
    for chunk in changes.chunks(BATCH) {
        s.remote.push(&token, chunk).await.unwrap();
    }
    t.elapsed()
}

async fn raw_batch(s: &Setup, n: usize) -> Duration {
    let batches: Vec<Value> = (0..n)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|c| {
            Value::Array(
                c.iter()
                    .map(|&i| {
                        let mut r = fixture(Uuid::new_v4(), s.venue, i);
                        r["hlc"] = json!(stamp(i + 1).to_string());
                        r
                    })
                    .collect(),
            )
        })
        .collect();
    let t = Instant::now();
    for b in batches {
        let mut tx = s.pool.begin().await.unwrap();
        as_user(&mut tx, s.user).await;
        sqlx::query(
            "INSERT INTO public.fixtures (id, venue_id, universe, address, num_channels, manufacturer, model, \
             mode_name, label, pos_x, pos_y, pos_z, rot_x, rot_y, rot_z, hlc) \
             SELECT id, venue_id, universe, address, num_channels, manufacturer, model, mode_name, label, \
             pos_x, pos_y, pos_z, rot_x, rot_y, rot_z, hlc FROM jsonb_populate_recordset(NULL::public.fixtures, $1) \
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, hlc = excluded.hlc",
        )
        .bind(b)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    t.elapsed()
}

/// What a client that pushes each row as its own request does: PostgREST runs every request
/// in its own transaction with the caller's claims, so each row costs a begin, the claims, one
/// statement and a commit.
async fn per_row(s: &Setup, n: usize) -> Duration {
    let t = Instant::now();
    for i in 0..n {
        let mut tx = s.pool.begin().await.unwrap();
        as_user(&mut tx, s.user).await;
        sqlx::query(
            "INSERT INTO public.fixtures (id, venue_id, universe, address, num_channels, manufacturer, model, \
             mode_name, label, pos_x, pos_y, pos_z, rot_x, rot_y, rot_z, hlc) \
             VALUES ($1, $2, 1, $3, 4, 'Acme', 'Par', '4ch', NULL, 0.5, 0, 2, 0, 0, 0, $4) \
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, hlc = excluded.hlc",
        )
        .bind(Uuid::new_v4())
        .bind(s.venue)
        .bind((i % 509) as i64 + 1)
        .bind(stamp(i + 1).to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    t.elapsed()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n: usize = std::env::var("LUMA_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let s = rt.block_on(setup());
    let remote = rate(n, rt.block_on(via_remote(&s, n)));
    let raw = rate(n, rt.block_on(raw_batch(&s, n)));
    let slow_n = (n / 10).max(1000);
    let slow = rate(slow_n, rt.block_on(per_row(&s, slow_n)));
    println!(
        "push_postgres: {n} fixtures: PostgresRemote {remote:.0} rows/s, raw 1,000-row jsonb upsert {raw:.0} rows/s, \
         one statement per row {slow:.0} rows/s ({slow_n} rows); remote/raw = {:.2}x (target >= 0.5x), \
         remote/per-row = {:.1}x (target >= 10x)",
        remote / raw,
        remote / slow
    );
    let mut g = c.benchmark_group("push_postgres");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(BATCH as u64));
    g.bench_function("remote_1000", |b| {
        b.to_async(&rt).iter(|| via_remote(&s, BATCH))
    });
    g.bench_function("raw_jsonb_1000", |b| {
        b.to_async(&rt).iter(|| raw_batch(&s, BATCH))
    });
    g.finish();
    rt.block_on(teardown(s));
}

criterion_group!(benches, bench);
criterion_main!(benches);
