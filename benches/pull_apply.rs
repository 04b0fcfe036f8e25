//! `pull_apply`: applying 100,000 pulled fixture rows (pages of 1,000, each page and its
//! cursor in one transaction) through `Store::apply_pulled_page`, against a raw baseline
//! measured in the same run: a hand-written `json_each` page upsert of the same rows (one
//! transaction per page, outbox triggers silenced the same way). Prints the ratio.
//!
//! `LUMA_BENCH_ROWS` changes the row count.
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use luma_model::{Fixture, Hlc, Record, SiteId, UserId, Venue};
use luma_store::{PulledRow, Store};

mod common;

const PAGE: usize = 1000;

fn rows_count() -> usize {
    std::env::var("LUMA_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn pulled_rows(venue: &Venue, n: usize) -> Vec<PulledRow> {
    (0..n)
        .map(|i| {
            let mut f = Fixture::new(venue.id, 1 + (i as i64 % 100), 1 + (i as i64 % 500), 1);
            f.pos_x = i as f64 * 0.1;
            f.label = Some(format!("fixture {i}"));
            let mut row = f.to_row().unwrap();
            row.remove("fixture_path");
            PulledRow {
                key: f.key().unwrap(),
                hlc: Hlc::new(1_700_000_000_000 + i as u64, 0, SiteId(9)),
                deleted: false,
                row: Some(row),
            }
        })
        .collect()
}

async fn fresh_store(dir: &tempfile::TempDir, name: &str, venue: &Venue) -> Store {
    let store = Store::open(dir.path().join(name)).await.unwrap();
    store
        .apply_remote_rows(
            "venues",
            &[PulledRow {
                key: venue.key().unwrap(),
                hlc: Hlc::new(1, 0, SiteId(9)),
                deleted: false,
                row: Some(venue.to_row().unwrap()),
            }],
        )
        .await
        .unwrap();
    store
}

async fn apply(store: &Store, rows: &[PulledRow]) -> Duration {
    let user = UserId::new();
    let start = Instant::now();
    for (i, page) in rows.chunks(PAGE).enumerate() {
        store
            .apply_pulled_page(user, "fixtures", page, Some(&i.to_string()))
            .await
            .unwrap();
    }
    start.elapsed()
}

async fn raw(store: &Store, rows: &[PulledRow]) -> Duration {
    common::raw_apply(
        store,
        rows.chunks(PAGE)
            .map(|page| serde_json::to_string(&common::raw_rows(page)).unwrap()),
    )
    .await
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n = rows_count();
    let venue = Venue::new("bench");
    let rows = pulled_rows(&venue, n);
    let dir = tempfile::tempdir().unwrap();
    let mut round = 0usize;
    let mut next = |prefix: &str| {
        round += 1;
        format!("{prefix}-{round}.db")
    };

    // The ratio, from three alternating runs each (medians).
    let (mut t_raw, mut t_apply) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let s = rt.block_on(fresh_store(&dir, &next("raw"), &venue));
        t_raw.push(rt.block_on(raw(&s, &rows)));
        let s = rt.block_on(fresh_store(&dir, &next("apply"), &venue));
        t_apply.push(rt.block_on(apply(&s, &rows)));
    }
    t_raw.sort();
    t_apply.sort();
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "pull_apply: {n} rows: raw json_each upsert {:.0} rows/s, apply_pulled_page {:.0} rows/s, ratio {:.2}x",
        rate(t_raw[1]),
        rate(t_apply[1]),
        rate(t_apply[1]) / rate(t_raw[1])
    );

    let mut group = c.benchmark_group("pull_apply");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("raw_json_each_upsert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let s = rt.block_on(fresh_store(&dir, &next("raw"), &venue));
                total += rt.block_on(raw(&s, &rows));
            }
            total
        })
    });
    group.bench_function("apply_pulled_page", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let s = rt.block_on(fresh_store(&dir, &next("apply"), &venue));
                total += rt.block_on(apply(&s, &rows));
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
