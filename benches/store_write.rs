//! What a store write costs, as ratios to raw baselines measured in the same run.
//!
//! 1. `store_vs_plain`: one `store.fixtures().create(&fixture)` (row + pending op through the
//!    outbox trigger) on a file database versus a plain `INSERT` of the same row, same columns
//!    and same bound values, into an identical `fixtures` table without triggers or outbox, in a
//!    second SQLite file opened with the same pragmas (WAL, `synchronous=NORMAL`, foreign keys
//!    on) and one connection. Every iteration inserts a new fixture (new id).
//! 2. `bulk_vs_single`: `store.import_fixtures` of 10,000 fixtures versus 10,000 single
//!    `create` calls, each round on a fresh store.
//!
//! Each routine records its own timings (`iter_custom`); after criterion's report the bench
//! prints the ratios (store/plain, single/bulk) with rows per second, from the median of the
//! measured samples. Then it measures store vs plain once more with the paths interleaved round
//! by round (robust to changes of machine load), adding the same `INSERT` sent to the store's
//! own database with the row's stamp bound (the outbox trigger's one-append path, without the
//! repository's Rust work) and without it (the trigger stamps the write in SQL, as for any
//! plain SQL write), and counts the WAL pages one write appends in each database (a measure of
//! the work per write that does not depend on machine load). Targets: store/plain <= 1.3, bulk
//! >= 5x faster. They are reported, not asserted.
//!
//! The process pins itself to one CPU first (see [`pin_to_one_cpu`]; `LUMA_BENCH_PIN=0` runs
//! unpinned).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark binary: failures abort it and its output is the report"
)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use luma::prelude::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use tokio::runtime::Runtime;

/// Fixtures per round of the bulk comparison.
const BULK_ROWS: usize = 10_000;

/// The same definition as the store's `fixtures` table (migration `core_tables`), with the
/// `venues` table its foreign key points to, and no triggers.
const PLAIN_SCHEMA: &str = r#"
CREATE TABLE venues (
    id          TEXT PRIMARY KEY NOT NULL,
    uid         TEXT,
    name        TEXT NOT NULL CHECK (length(trim(name)) > 0),
    description TEXT NOT NULL DEFAULT '',
    share_code  TEXT UNIQUE CHECK (share_code IS NULL OR length(share_code) = 8),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    hlc         TEXT
);
CREATE TABLE fixtures (
    id           TEXT PRIMARY KEY NOT NULL,
    venue_id     TEXT NOT NULL REFERENCES venues (id) ON DELETE CASCADE,
    universe     INTEGER NOT NULL DEFAULT 1 CHECK (universe BETWEEN 1 AND 63999),
    address      INTEGER NOT NULL CHECK (address BETWEEN 1 AND 512),
    num_channels INTEGER NOT NULL CHECK (num_channels BETWEEN 1 AND 512),
    manufacturer TEXT NOT NULL DEFAULT '',
    model        TEXT NOT NULL DEFAULT '',
    mode_name    TEXT NOT NULL DEFAULT '',
    fixture_path TEXT,
    label        TEXT,
    pos_x REAL NOT NULL DEFAULT 0, pos_y REAL NOT NULL DEFAULT 0, pos_z REAL NOT NULL DEFAULT 0,
    rot_x REAL NOT NULL DEFAULT 0, rot_y REAL NOT NULL DEFAULT 0, rot_z REAL NOT NULL DEFAULT 0,
    hlc          TEXT
);
CREATE INDEX fixtures_venue ON fixtures (venue_id);
"#;

const PLAIN_INSERT: &str = "INSERT INTO fixtures (id, venue_id, universe, address, num_channels, \
     manufacturer, model, mode_name, fixture_path, label, pos_x, pos_y, pos_z, rot_x, rot_y, rot_z) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const STAMPED_INSERT: &str = "INSERT INTO fixtures (id, venue_id, universe, address, num_channels, \
     manufacturer, model, mode_name, fixture_path, label, pos_x, pos_y, pos_z, rot_x, rot_y, rot_z, \
     hlc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// A realistic fixture: 16-channel heads packed 32 to a universe, with a label and a position.
fn fixture(venue: VenueId, i: usize) -> Fixture {
    let i = i64::try_from(i).unwrap_or(i64::MAX);
    let mut f = Fixture::new(venue, 1 + (i / 32) % 63_999, 1 + (i % 32) * 16, 16);
    f.manufacturer = "Robe".into();
    f.model = "Spiider".into();
    f.mode_name = "Mode 1".into();
    f.label = Some(format!("Head {i}"));
    f.pos_x = (i % 10) as f64 * 0.5;
    f.pos_y = 2.0;
    f.pos_z = 6.0;
    f.rot_z = 90.0;
    f
}

/// Opens a separate SQLite file the way `Store::open` opens its writer: WAL,
/// `synchronous=NORMAL`, foreign keys on, same busy timeout, one connection, no ping before use.
async fn open_plain(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(StoreOptions::default().busy_timeout);
    let pool = SqlitePoolOptions::new()
        .test_before_acquire(false)
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("open the plain database");
    sqlx::raw_sql(PLAIN_SCHEMA)
        .execute(&pool)
        .await
        .expect("create the plain schema");
    pool
}

async fn plain_insert_venue(pool: &SqlitePool, venue: &Venue) {
    sqlx::query(
        "INSERT INTO venues (id, name, description, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(venue.id.to_string())
    .bind(&venue.name)
    .bind(&venue.description)
    .bind(venue.created_at.to_rfc3339())
    .bind(venue.updated_at.to_rfc3339())
    .execute(pool)
    .await
    .expect("insert the plain venue");
}

/// The plain baseline: the fixture's 16 columns bound as the store binds them (ids and text as
/// text, integers, reals, NULL for absent options), one statement, no trigger.
async fn plain_insert(pool: &SqlitePool, f: &Fixture) {
    bind_fixture(sqlx::query(PLAIN_INSERT), f)
        .execute(pool)
        .await
        .expect("plain insert");
}

/// The same INSERT with the row's stamp bound too (as the repositories bind it), so the outbox
/// trigger takes its one-append path; sent to the store's database.
async fn stamped_insert(store: &Store, f: &Fixture) {
    let mut conn = store.writer_pool().acquire().await.expect("writer");
    bind_fixture(sqlx::query(STAMPED_INSERT), f)
        .bind(store.next_stamp().to_string())
        .execute(&mut *conn)
        .await
        .expect("stamped insert");
}

fn bind_fixture<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    f: &'q Fixture,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    q.bind(f.id.to_string())
        .bind(f.venue_id.to_string())
        .bind(f.universe)
        .bind(f.address)
        .bind(f.num_channels)
        .bind(&f.manufacturer)
        .bind(&f.model)
        .bind(&f.mode_name)
        .bind(f.fixture_path.as_deref())
        .bind(f.label.as_deref())
        .bind(f.pos_x)
        .bind(f.pos_y)
        .bind(f.pos_z)
        .bind(f.rot_x)
        .bind(f.rot_y)
        .bind(f.rot_z)
}

/// Opens a fresh store in `dir` with one venue.
async fn store_with_venue(dir: &Path) -> (Store, Venue) {
    let store = Store::open(dir.join("luma.db"))
        .await
        .expect("open the store");
    let venue = Venue::new("Bench venue");
    store
        .venues()
        .create(&venue)
        .await
        .expect("create the venue");
    (store, venue)
}

/// Timings a routine recorded: one `(iterations, elapsed)` per call criterion made.
#[derive(Clone, Default)]
struct Samples(Arc<Mutex<Vec<(u64, Duration)>>>);

impl Samples {
    fn record(&self, iters: u64, elapsed: Duration) {
        self.0.lock().expect("samples lock").push((iters, elapsed));
    }

    /// Median time per iteration over the last `n` calls (criterion's measured samples; the
    /// calls before them are its warm-up). `None` if the routine did not run.
    fn median_per_iter(&self, n: usize) -> Option<Duration> {
        let all = self.0.lock().expect("samples lock");
        let per_iter: Vec<f64> = all
            .iter()
            .rev()
            .take(n)
            .filter(|(iters, _)| *iters > 0)
            .map(|(iters, d)| d.as_secs_f64() / *iters as f64)
            .collect();
        if per_iter.is_empty() {
            return None;
        }
        Some(Duration::from_secs_f64(median(per_iter)))
    }
}

struct Recorded {
    store_create: Samples,
    plain_insert: Samples,
    bulk_import: Samples,
    single_creates: Samples,
}

const SINGLE_SAMPLES: usize = 30;
const BULK_SAMPLES: usize = 10;

fn bench_store_vs_plain(c: &mut Criterion, rt: &Runtime, rec: &Recorded) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, venue) = rt.block_on(store_with_venue(dir.path()));
    let plain = rt.block_on(async {
        let pool = open_plain(&dir.path().join("plain.db")).await;
        plain_insert_venue(&pool, &venue).await;
        pool
    });

    let mut group = c.benchmark_group("store_vs_plain");
    group
        .sample_size(SINGLE_SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    group.bench_function("store_create", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let store = store.clone();
            let samples = rec.store_create.clone();
            async move {
                let batch: Vec<Fixture> =
                    (0..iters as usize).map(|i| fixture(venue.id, i)).collect();
                let start = Instant::now();
                for f in &batch {
                    store.fixtures().create(f).await.expect("store create");
                }
                let elapsed = start.elapsed();
                samples.record(iters, elapsed);
                elapsed
            }
        });
    });

    group.bench_function("plain_insert", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let pool = plain.clone();
            let samples = rec.plain_insert.clone();
            async move {
                let batch: Vec<Fixture> =
                    (0..iters as usize).map(|i| fixture(venue.id, i)).collect();
                let start = Instant::now();
                for f in &batch {
                    plain_insert(&pool, f).await;
                }
                let elapsed = start.elapsed();
                samples.record(iters, elapsed);
                elapsed
            }
        });
    });
    group.finish();

    rt.block_on(async {
        store.close().await;
        plain.close().await;
    });
}

fn bench_bulk_vs_single(c: &mut Criterion, rt: &Runtime, rec: &Recorded) {
    let mut group = c.benchmark_group("bulk_vs_single");
    group
        .sample_size(BULK_SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .throughput(criterion::Throughput::Elements(BULK_ROWS as u64));

    // Every round gets a fresh store (opening it is not timed), so both paths write into an
    // empty database of the same shape.
    group.bench_function("import_fixtures_10k", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let samples = rec.bulk_import.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let (store, venue) = store_with_venue(dir.path()).await;
                    let batch: Vec<Fixture> =
                        (0..BULK_ROWS).map(|i| fixture(venue.id, i)).collect();
                    let start = Instant::now();
                    let n = store
                        .import_fixtures(venue.id, &batch)
                        .await
                        .expect("import");
                    total += start.elapsed();
                    assert_eq!(n, BULK_ROWS);
                    store.close().await;
                }
                samples.record(iters, total);
                total
            }
        });
    });

    group.bench_function("create_10k_single", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let samples = rec.single_creates.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let (store, venue) = store_with_venue(dir.path()).await;
                    let batch: Vec<Fixture> =
                        (0..BULK_ROWS).map(|i| fixture(venue.id, i)).collect();
                    let start = Instant::now();
                    for f in &batch {
                        store.fixtures().create(f).await.expect("create");
                    }
                    total += start.elapsed();
                    store.close().await;
                }
                samples.record(iters, total);
                total
            }
        });
    });
    group.finish();
}

fn rows_per_sec(per_row: Duration) -> f64 {
    1.0 / per_row.as_secs_f64()
}

fn report(rec: &Recorded) {
    println!();
    println!("== store_write summary (medians of the measured samples) ==");
    match (
        rec.store_create.median_per_iter(SINGLE_SAMPLES),
        rec.plain_insert.median_per_iter(SINGLE_SAMPLES),
    ) {
        (Some(store), Some(plain)) => {
            let ratio = store.as_secs_f64() / plain.as_secs_f64();
            println!(
                "store create : {:>8.1} us/row  {:>9.0} rows/s",
                store.as_secs_f64() * 1e6,
                rows_per_sec(store)
            );
            println!(
                "plain insert : {:>8.1} us/row  {:>9.0} rows/s",
                plain.as_secs_f64() * 1e6,
                rows_per_sec(plain)
            );
            println!(
                "ratio store/plain = {ratio:.2}  (target <= 1.3: {})",
                if ratio <= 1.3 { "met" } else { "NOT met" }
            );
        }
        _ => println!("store vs plain: not measured in this run (filtered out?)"),
    }
    match (
        rec.bulk_import.median_per_iter(BULK_SAMPLES),
        rec.single_creates.median_per_iter(BULK_SAMPLES),
    ) {
        (Some(bulk), Some(single)) => {
            let rows = BULK_ROWS as f64;
            let speedup = single.as_secs_f64() / bulk.as_secs_f64();
            println!(
                "import_fixtures {BULK_ROWS}: {:>8.1} ms  {:>9.0} rows/s",
                bulk.as_secs_f64() * 1e3,
                rows / bulk.as_secs_f64()
            );
            println!(
                "{BULK_ROWS} single creates: {:>8.1} ms  {:>9.0} rows/s",
                single.as_secs_f64() * 1e3,
                rows / single.as_secs_f64()
            );
            println!(
                "speedup single/bulk = {speedup:.1}x  (target >= 5x: {})",
                if speedup >= 5.0 { "met" } else { "NOT met" }
            );
        }
        _ => println!("bulk vs single: not measured in this run (filtered out?)"),
    }
}

/// The paths of the interleaved comparison, in report order.
const PATHS: [&str; 4] = [
    "store create (repository)       ",
    "INSERT + stamp, store's db      ",
    "INSERT without stamp, store's db",
    "plain INSERT, plain db          ",
];
const STORE: usize = 0;
const PLAIN: usize = 3;

/// Per-row medians of the paired rounds.
struct Paired {
    /// Median time per row of each of [`PATHS`].
    per_row: [Duration; 4],
    /// Median over rounds of each path's time divided by the plain path's.
    ratio: [f64; 4],
    /// WAL pages one single-row write appends: (store's database, plain database).
    wal_pages: (f64, f64),
}

const PAIRED_ROUNDS: usize = 60;
const PAIRED_ROWS: usize = 100;
/// Rows written to count WAL pages per write.
const WAL_ROWS: usize = 200;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// The store-vs-plain comparison again, with the paths interleaved round by round so a change
/// of machine load hits all alike (criterion measures them one after the other). Two more paths
/// split the overhead: the same INSERT sent to the store's own database through its writer
/// pool with the row's stamp bound (the outbox trigger's one-append path, no repository code),
/// and without a stamp (the trigger stamps the write in SQL, as for any plain SQL write).
fn paired_store_vs_plain(rt: &Runtime) -> Paired {
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, venue) = store_with_venue(dir.path()).await;
        let plain = open_plain(&dir.path().join("plain.db")).await;
        plain_insert_venue(&plain, &venue).await;

        let mut per_row: [Vec<f64>; 4] = Default::default();
        let mut ratios: [Vec<f64>; 4] = Default::default();
        // Round 0 is a warm-up and is not counted.
        for round in 0..=PAIRED_ROUNDS {
            let mut times = [Duration::ZERO; 4];
            // Rotate the order of the paths from round to round.
            for k in 0..PATHS.len() {
                let which = (k + round) % PATHS.len();
                let rows: Vec<Fixture> = (0..PAIRED_ROWS).map(|i| fixture(venue.id, i)).collect();
                let start = Instant::now();
                for f in &rows {
                    match which {
                        0 => store.fixtures().create(f).await.expect("store create"),
                        1 => stamped_insert(&store, f).await,
                        2 => plain_insert(store.writer_pool(), f).await,
                        _ => plain_insert(&plain, f).await,
                    }
                }
                times[which] = start.elapsed();
            }
            if round == 0 {
                continue;
            }
            for (i, t) in times.iter().enumerate() {
                per_row[i].push(t.as_secs_f64() / PAIRED_ROWS as f64);
                ratios[i].push(t.as_secs_f64() / times[PLAIN].as_secs_f64());
            }
        }
        store.close().await;
        plain.close().await;
        let wal_pages = (
            wal_pages_per_insert(&dir.path().join("luma.db"), venue.id, true).await,
            wal_pages_per_insert(&dir.path().join("plain.db"), venue.id, false).await,
        );
        Paired {
            per_row: per_row.map(|v| Duration::from_secs_f64(median(v))),
            ratio: ratios.map(median),
            wal_pages,
        }
    })
}

/// How many WAL pages one autocommitted plain `INSERT` of a fixture appends to the database at
/// `path` (the store's `luma.db`, where the outbox triggers fire, or the plain one): a
/// load-independent measure of the work per write. Automatic checkpoints are off on this
/// connection so the WAL only grows while counting.
async fn wal_pages_per_insert(path: &Path, venue: VenueId, stamped: bool) -> f64 {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .pragma("wal_autocheckpoint", "0");
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("open for counting WAL pages");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .expect("checkpoint");
    // The store's database gets what a repository write sends: the row with a fresh stamp
    // (a clock resumed from the database's newest stamp hands them out).
    let mut clock = if stamped {
        let last: String =
            sqlx::query_scalar("SELECT hlc FROM sync_oplog ORDER BY seq DESC LIMIT 1")
                .fetch_one(&pool)
                .await
                .expect("read the clock");
        let last: luma::model::Hlc = last.parse().expect("a stamp");
        Some(luma::model::Clock::resume(last.site, last))
    } else {
        None
    };
    for i in 0..WAL_ROWS {
        match clock.as_mut() {
            Some(clock) => {
                bind_fixture(sqlx::query(STAMPED_INSERT), &fixture(venue, i))
                    .bind(clock.now().to_string())
                    .execute(&pool)
                    .await
                    .expect("stamped insert");
            }
            None => plain_insert(&pool, &fixture(venue, i)).await,
        }
    }
    // The second column is the number of frames (pages) in the WAL.
    let (_, frames, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&pool)
        .await
        .expect("count WAL frames");
    pool.close().await;
    frames as f64 / WAL_ROWS as f64
}

fn report_paired(p: &Paired) {
    println!();
    println!(
        "== store vs plain, interleaved: {PAIRED_ROUNDS} rounds of {PAIRED_ROWS} rows each (medians) =="
    );
    for (i, name) in PATHS.iter().enumerate() {
        let d = p.per_row[i];
        println!(
            "{name}: {:>8.1} us/row  {:>9.0} rows/s  ratio to plain {:.2}",
            d.as_secs_f64() * 1e6,
            rows_per_sec(d),
            p.ratio[i]
        );
    }
    println!(
        "ratio store/plain = {:.2}  (target <= 1.3: {})",
        p.ratio[STORE],
        if p.ratio[STORE] <= 1.3 {
            "met"
        } else {
            "NOT met"
        }
    );
    let (store_pages, plain_pages) = p.wal_pages;
    println!(
        "WAL pages per single-row write: store's db {store_pages:.2}, plain db {plain_pages:.2} \
         (ratio {:.2}; each write is one commit)",
        store_pages / plain_pages
    );
}

/// Pins the bench (and every thread it starts later: the runtime, sqlx's SQLite worker
/// threads) to one CPU, unless `LUMA_BENCH_PIN=0`. Each sqlx statement is a hand-off between
/// two threads; on this kind of virtual machine waking a thread on an idle second CPU costs
/// 50-150 us and varies with where the scheduler happens to place the threads, which swamps
/// the per-write work being compared. On one CPU the hand-off is a plain context switch and
/// both paths pay it alike, so the ratio reflects the work (and is the higher, conservative
/// one: unpinned, the shared wake-up cost pulls every ratio towards 1).
fn pin_to_one_cpu() -> Option<usize> {
    if std::env::var("LUMA_BENCH_PIN").is_ok_and(|v| v == "0") {
        return None;
    }
    let core = core_affinity::get_core_ids()?.pop()?;
    core_affinity::set_for_current(core).then_some(core.id)
}

fn main() {
    match pin_to_one_cpu() {
        Some(cpu) => println!("pinned to CPU {cpu} (LUMA_BENCH_PIN=0 to run unpinned)"),
        None => println!("not pinned to one CPU"),
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rec = Recorded {
        store_create: Samples::default(),
        plain_insert: Samples::default(),
        bulk_import: Samples::default(),
        single_creates: Samples::default(),
    };
    let mut c = Criterion::default().configure_from_args();
    bench_store_vs_plain(&mut c, &rt, &rec);
    bench_bulk_vs_single(&mut c, &rt, &rec);
    c.final_summary();
    // `--test` (one untimed pass per routine) and `--list` measure nothing worth a ratio.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    report(&rec);
    // The interleaved check runs only if criterion measured store_vs_plain (a filter may skip
    // it).
    if rec.store_create.median_per_iter(1).is_some() {
        report_paired(&paired_store_vs_plain(&rt));
    }
}
