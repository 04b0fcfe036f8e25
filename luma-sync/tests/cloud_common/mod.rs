//! Shared helpers of the cloud SQL tests: a fresh database per test with the cloud schema, and
//! calls made exactly as PostgREST makes them (one transaction that first sets `role` and
//! `request.jwt.claims` transaction-locally).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../testdb/mod.rs"]
mod testdb;

use std::str::FromStr;

use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

pub fn base_url() -> String {
    std::env::var("LUMA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database created for one test; call [`TestDb::drop`] at the end.
pub struct TestDb {
    pub name: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = testdb::create_database(&base_url()).await;
        let opts = PgConnectOptions::from_str(&base_url())
            .expect("database url")
            .database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .expect("connect");
        luma_sync::cloud::migrate(&pool)
            .await
            .expect("cloud migrations");
        Self { name, pool }
    }

    /// A new connection outside the pool (to hold a transaction open).
    pub async fn connection(&self) -> PgConnection {
        let opts = PgConnectOptions::from_str(&base_url())
            .expect("database url")
            .database(&self.name);
        PgConnection::connect_with(&opts).await.expect("connect")
    }

    pub async fn drop(self) {
        self.pool.close().await;
        let mut admin = PgConnection::connect(&base_url()).await.expect("connect");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("drop database");
    }
}

/// Starts a transaction as PostgREST does for a signed-in user.
pub async fn user_tx(pool: &PgPool, user: Uuid) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.expect("begin");
    sign_in(&mut tx, user).await;
    tx
}

/// Sets role and claims transaction-locally on a connection inside a transaction.
pub async fn sign_in(conn: &mut PgConnection, user: Uuid) {
    let claims = json!({"sub": user, "role": "authenticated"}).to_string();
    sqlx::query("SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)")
        .bind(claims)
        .execute(conn)
        .await
        .expect("set role and claims");
}

/// A transaction as the service role (bypasses row-level security).
pub async fn service_tx(pool: &PgPool) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SELECT set_config('role', 'service_role', true), set_config('request.jwt.claims', '{\"role\":\"service_role\"}', true)")
        .execute(&mut *tx)
        .await
        .expect("set role");
    tx
}

pub async fn push(pool: &PgPool, user: Uuid, changes: Value) -> Vec<Value> {
    let mut tx = user_tx(pool, user).await;
    let out = push_in(&mut tx, changes).await;
    tx.commit().await.expect("commit");
    out
}

pub async fn push_in(conn: &mut PgConnection, changes: Value) -> Vec<Value> {
    let (out,): (Value,) = sqlx::query_as("SELECT luma_push($1)")
        .bind(changes)
        .fetch_one(conn)
        .await
        .expect("luma_push");
    out.as_array().expect("an array").clone()
}

pub async fn watermark(pool: &PgPool, user: Uuid) -> String {
    let mut tx = user_tx(pool, user).await;
    let (w,): (String,) = sqlx::query_as("SELECT luma_watermark()")
        .fetch_one(&mut *tx)
        .await
        .expect("watermark");
    tx.commit().await.expect("commit");
    w
}

pub async fn pull_page(
    pool: &PgPool,
    user: Uuid,
    table: &str,
    cursor: Option<&str>,
    limit: i32,
    wm: Option<&str>,
) -> Value {
    let mut tx = user_tx(pool, user).await;
    let (page,): (Value,) = sqlx::query_as("SELECT luma_pull($1, $2, $3, $4)")
        .bind(table)
        .bind(cursor)
        .bind(limit)
        .bind(wm)
        .fetch_one(&mut *tx)
        .await
        .expect("luma_pull");
    tx.commit().await.expect("commit");
    page
}

/// Waits until every transaction that started before this call has finished, as seen by the
/// watermark (snapshot xmin is cluster-wide: other databases' open transactions hold it back),
/// and returns that watermark.
pub async fn settled_watermark(pool: &PgPool, user: Uuid) -> String {
    let (now,): (String,) = sqlx::query_as("SELECT pg_current_xact_id()::text")
        .fetch_one(pool)
        .await
        .expect("xid");
    let now: u64 = now.parse().expect("xid");
    loop {
        let wm = watermark(pool, user).await;
        if wm.parse::<u64>().expect("watermark") > now {
            return wm;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Pulls a whole table for one (settled) watermark from `cursor`; returns the rows and the new
/// cursor.
pub async fn pull_all(
    pool: &PgPool,
    user: Uuid,
    table: &str,
    mut cursor: Option<String>,
) -> (Vec<Value>, Option<String>) {
    let wm = settled_watermark(pool, user).await;
    let mut rows = Vec::new();
    loop {
        let page = pull_page(pool, user, table, cursor.as_deref(), 100, Some(&wm)).await;
        assert_eq!(
            page["resync_required"],
            json!(false),
            "unexpected resync: {page}"
        );
        rows.extend(page["rows"].as_array().expect("rows").iter().cloned());
        cursor = page["cursor"].as_str().map(str::to_owned);
        if page["has_more"] == json!(false) {
            return (rows, cursor);
        }
    }
}

pub async fn visible_keys(pool: &PgPool, user: Uuid, table: &str) -> Vec<String> {
    let (rows, _) = pull_all(pool, user, table, None).await;
    rows.iter()
        .map(|r| r["key"].as_str().expect("key").to_owned())
        .collect()
}

/// An HLC stamp in the text form of `luma_model::Hlc`.
pub fn hlc(ms: u64, counter: u32) -> String {
    luma_model::Hlc::new(ms, counter, luma_model::SiteId(0xabc)).to_string()
}

pub fn upsert(table: &str, key: &str, hlc: &str, row: Value) -> Value {
    json!({"table": table, "key": key, "hlc": hlc, "op": "upsert", "row": row})
}

pub fn delete(table: &str, key: &str, hlc: &str) -> Value {
    json!({"table": table, "key": key, "hlc": hlc, "op": "delete", "row": null})
}

pub const TS: &str = "2026-01-01T00:00:00Z";

pub fn venue_row(id: Uuid, owner: Uuid, name: &str, share_code: Option<&str>) -> Value {
    json!({"id": id, "uid": owner, "name": name, "description": "", "share_code": share_code,
           "created_at": TS, "updated_at": TS})
}

pub fn fixture_row(id: Uuid, venue: Uuid, address: i64) -> Value {
    json!({"id": id, "venue_id": venue, "universe": 1, "address": address, "num_channels": 4,
           "manufacturer": "Acme", "model": "Par", "mode_name": "4ch", "label": null,
           "pos_x": 0.5, "pos_y": 0.0, "pos_z": 2.0, "rot_x": 0.0, "rot_y": 0.0, "rot_z": 0.0})
}

pub fn track_row(id: Uuid, owner: Uuid, updated_at: &str) -> Value {
    json!({"id": id, "uid": owner, "track_hash": null, "title": "Song", "artist": null, "album": null,
           "track_number": null, "disc_number": null, "duration_seconds": 180.5, "bpm": 128.0,
           "key": null, "album_art_mime": null, "album_art_ref": null,
           "created_at": TS, "updated_at": updated_at})
}

pub fn pattern_row(id: Uuid, owner: Uuid, verified: bool) -> Value {
    json!({"id": id, "uid": owner, "name": "Chase", "description": "", "category": null,
           "is_verified": verified, "author_name": null, "forked_from_id": null,
           "created_at": TS, "updated_at": TS})
}

pub fn implementation_row(id: Uuid, pattern: Uuid) -> Value {
    json!({"id": id, "pattern_id": pattern, "name": "main", "graph_json": {"nodes": [], "edges": []}})
}

pub fn score_row(id: Uuid, owner: Uuid, track: Uuid, venue: Uuid) -> Value {
    json!({"id": id, "uid": owner, "track_id": track, "venue_id": venue, "name": "Show",
           "created_at": TS, "updated_at": TS})
}

pub fn track_score_row(id: Uuid, score: Uuid, pattern: Uuid) -> Value {
    json!({"id": id, "score_id": score, "pattern_id": pattern, "start_time": 0.0, "end_time": 4.0,
           "z_index": 0, "blend_mode": "replace", "args": {}})
}

pub fn outcome(v: &Value) -> &str {
    v["outcome"].as_str().expect("outcome")
}

pub fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

/// A complete little world of user A: a venue with a fixture, a track, a score on it, an
/// unverified pattern placed on the score, and a verified pattern with an implementation.
pub struct World {
    pub a: Uuid,
    pub venue: Uuid,
    pub fixture: Uuid,
    pub track: Uuid,
    pub score: Uuid,
    pub pattern: Uuid,
    pub placed: Uuid,
    pub public_pattern: Uuid,
    pub public_impl: Uuid,
    pub share_code: &'static str,
}

impl World {
    pub async fn build(pool: &PgPool) -> Self {
        let w = World {
            a: Uuid::new_v4(),
            venue: Uuid::new_v4(),
            fixture: Uuid::new_v4(),
            track: Uuid::new_v4(),
            score: Uuid::new_v4(),
            pattern: Uuid::new_v4(),
            placed: Uuid::new_v4(),
            public_pattern: Uuid::new_v4(),
            public_impl: Uuid::new_v4(),
            share_code: "SHARE001",
        };
        let h = hlc(1_000, 0);
        let out = push(
            pool,
            w.a,
            json!([
                upsert(
                    "venues",
                    &w.venue.to_string(),
                    &h,
                    venue_row(w.venue, w.a, "Club", Some(w.share_code))
                ),
                upsert(
                    "fixtures",
                    &w.fixture.to_string(),
                    &h,
                    fixture_row(w.fixture, w.venue, 1)
                ),
                upsert(
                    "tracks",
                    &w.track.to_string(),
                    &h,
                    track_row(w.track, w.a, TS)
                ),
                upsert(
                    "patterns",
                    &w.pattern.to_string(),
                    &h,
                    pattern_row(w.pattern, w.a, false)
                ),
                upsert(
                    "patterns",
                    &w.public_pattern.to_string(),
                    &h,
                    pattern_row(w.public_pattern, w.a, true)
                ),
                upsert(
                    "implementations",
                    &w.public_impl.to_string(),
                    &h,
                    implementation_row(w.public_impl, w.public_pattern)
                ),
                upsert(
                    "scores",
                    &w.score.to_string(),
                    &h,
                    score_row(w.score, w.a, w.track, w.venue)
                ),
                upsert(
                    "track_scores",
                    &w.placed.to_string(),
                    &h,
                    track_score_row(w.placed, w.score, w.pattern)
                ),
            ]),
        )
        .await;
        for o in &out {
            assert_eq!(outcome(o), "applied", "{o}");
        }
        w
    }
}
