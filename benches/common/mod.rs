//! The raw baseline the pull benches (`pull_apply`, `pull_postgres`, `sync_roundtrip`) measure
//! against, in one place: a hand-written `json_each` page upsert of fixture rows into SQLite,
//! one transaction per page, outbox triggers silenced the same way the store does it (a row in
//! `sync_apply_guard` for the length of the transaction).

// Each bench includes this module and uses part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use luma_model::{Fixture, Record, Row};
use luma_store::schema::decode;
use luma_store::{PulledRow, Store};

/// The raw upsert of one page: a JSON array of fixture rows, each with its `hlc`.
pub fn raw_sql() -> String {
    let spec = Fixture::SPEC;
    let cols: Vec<_> = spec.synced_columns().collect();
    format!(
        "INSERT INTO fixtures ({}, hlc) SELECT {}, value ->> '$.hlc' FROM json_each(?1) WHERE true \
         ON CONFLICT (id) DO UPDATE SET {}, hlc = excluded.hlc WHERE excluded.hlc > fixtures.hlc",
        cols.iter().map(|c| format!("\"{}\"", c.name)).collect::<Vec<_>>().join(", "),
        cols.iter().map(|c| decode("value", c.name, c.kind)).collect::<Vec<_>>().join(", "),
        cols.iter()
            .filter(|c| c.name != "id")
            .map(|c| format!("\"{0}\" = excluded.\"{0}\"", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The raw page form of pulled rows: each row with its `hlc`.
pub fn raw_rows(rows: &[PulledRow]) -> Vec<Row> {
    rows.iter()
        .map(|r| {
            let mut row = r.row.clone().unwrap();
            row.insert("hlc".into(), r.hlc.to_string().into());
            row
        })
        .collect()
}

/// Applies `pages` (JSON arrays of [`raw_rows`]) with [`raw_sql`], one transaction per page;
/// answers the time taken, including producing the pages (an iterator that serializes as it
/// goes counts that work; pass ready strings to leave it out).
pub async fn raw_apply(store: &Store, pages: impl IntoIterator<Item = String>) -> Duration {
    let sql = raw_sql();
    let start = Instant::now();
    for json in pages {
        let mut tx = store.writer_pool().begin().await.unwrap();
        sqlx::query("INSERT INTO sync_apply_guard (id) VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query(&sql)
            .bind(json)
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("DELETE FROM sync_apply_guard")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    start.elapsed()
}
