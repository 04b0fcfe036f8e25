//! The convergence property: three replicas make random creates, updates and deletes over
//! FK-related tables (venues -> fixtures -> group members, patterns -> implementations,
//! tracks -> scores -> track scores) and run random pull / push / full-sync steps while the
//! remote injects faults. After a final fault-free sync of every replica:
//!
//! - every replica equals the remote (same live rows, same stamps, same synced columns);
//! - nothing is left pending or rejected;
//! - the remote equals last-writer-wins over the set of all writes made anywhere: for every
//!   record, the newest write wins, unless it is an upsert under a parent some replica deleted
//!   (the documented "parent delete wins" rule).
//!
//! Cases: `LUMA_CONVERGENCE_CASES` (default 1000). A failing case shrinks to a short script of
//! steps, printed with its `Debug` form.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod pg_common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use luma_sync::{
    AccessToken, PostgresAdmin, PostgresRemote, Remote, StaticToken, SyncEngine, SyncError,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::*;
use luma_model::{
    Fixture, FixtureGroup, FixtureGroupMember, Hlc, Implementation, OpKind, Pattern, Record,
    RecordKey, Row, Score, Track, TrackScore, UserId, Venue,
};
use luma_store::Store;
use luma_sync::{FaultConfig, MemoryRemote};
use proptest::prelude::*;
use uuid::Uuid;

const N: usize = 2; // ids per table

#[derive(Debug, Clone, Copy)]
enum Write {
    Venue(usize),
    Fixture(usize, usize),
    Group(usize, usize),
    Member(usize, usize),
    Pattern(usize),
    Impl(usize, usize),
    Track(usize),
    Score(usize, usize, usize),
    TrackScore(usize, usize, usize),
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Create the record, or update it if the replica has it.
    Upsert(usize, Write, u8),
    /// Delete the record if the replica has it.
    Delete(usize, Write),
    Pull(usize),
    Push(usize),
    Sync(usize),
    /// Fault probability (percent) from now on, and the seed.
    Faults(u8, u64),
}

fn write() -> impl Strategy<Value = Write> {
    let i = || 0..N;
    prop_oneof![
        i().prop_map(Write::Venue),
        (i(), i()).prop_map(|(a, b)| Write::Fixture(a, b)),
        (i(), i()).prop_map(|(a, b)| Write::Group(a, b)),
        (i(), i()).prop_map(|(a, b)| Write::Member(a, b)),
        i().prop_map(Write::Pattern),
        (i(), i()).prop_map(|(a, b)| Write::Impl(a, b)),
        i().prop_map(Write::Track),
        (i(), i(), i()).prop_map(|(a, b, c)| Write::Score(a, b, c)),
        (i(), i(), i()).prop_map(|(a, b, c)| Write::TrackScore(a, b, c)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let r = || 0..3usize;
    prop_oneof![
        6 => (r(), write(), any::<u8>()).prop_map(|(r, w, v)| Step::Upsert(r, w, v)),
        2 => (r(), write()).prop_map(|(r, w)| Step::Delete(r, w)),
        1 => r().prop_map(Step::Pull),
        1 => r().prop_map(Step::Push),
        2 => r().prop_map(Step::Sync),
        1 => (prop_oneof![Just(0u8), Just(10), Just(30)], any::<u64>()).prop_map(|(p, s)| Step::Faults(p, s)),
    ]
}

/// Stable ids per table and index, so scripts read as "venue 0", "fixture 1"...
struct Ids {
    ids: HashMap<(&'static str, usize), Uuid>,
}

impl Ids {
    fn new() -> Self {
        let mut ids = HashMap::new();
        for t in [
            "venues",
            "fixtures",
            "groups",
            "patterns",
            "impls",
            "tracks",
            "scores",
            "track_scores",
        ] {
            for i in 0..N {
                ids.insert((t, i), Uuid::new_v4());
            }
        }
        Self { ids }
    }
    fn get(&self, t: &'static str, i: usize) -> Uuid {
        self.ids[&(t, i)]
    }
}

async fn upsert<T: Record + Clone>(
    store: &Store,
    fresh: T,
    key: RecordKey,
    edit: impl FnOnce(&mut T),
) {
    match store.repo::<T>().find(key).await.unwrap() {
        Some(mut existing) => {
            edit(&mut existing);
            let _ = store.repo::<T>().update(&existing).await;
        }
        None => {
            // Fails (and writes nothing) when the parent is missing here: fine.
            let _ = store.repo::<T>().create(&fresh).await;
        }
    }
}

async fn apply_write(store: &Store, ids: &Ids, w: Write, v: u8, delete: bool) {
    let name = format!("n{v}");
    match w {
        Write::Venue(i) => {
            let id = ids.get("venues", i).into();
            if delete {
                let _ = store.venues().delete(RecordKey::single(id)).await;
                return;
            }
            let mut rec = Venue::new(&name);
            rec.id = id;
            upsert(store, rec, RecordKey::single(id), |r| {
                r.description = name.clone()
            })
            .await;
        }
        Write::Fixture(i, venue) => {
            let id: luma_model::FixtureId = ids.get("fixtures", i).into();
            if delete {
                let _ = store.fixtures().delete(RecordKey::single(id)).await;
                return;
            }
            let mut rec = Fixture::new(
                ids.get("venues", venue).into(),
                1,
                1 + i64::from(v % 100),
                1,
            );
            rec.id = id;
            rec.fixture_path = Some(format!("/local/{v}"));
            upsert(store, rec, RecordKey::single(id), |r| {
                r.address = 1 + i64::from(v % 100);
                r.pos_x = f64::from(v) / 3.0;
            })
            .await;
        }
        Write::Group(i, venue) => {
            let id: luma_model::FixtureGroupId = ids.get("groups", i).into();
            if delete {
                let _ = store.fixture_groups().delete(RecordKey::single(id)).await;
                return;
            }
            let mut rec = FixtureGroup::new(ids.get("venues", venue).into(), format!("g{i}"));
            rec.id = id;
            upsert(store, rec, RecordKey::single(id), |r| {
                r.display_order = i64::from(v)
            })
            .await;
        }
        Write::Member(f, g) => {
            let rec = FixtureGroupMember {
                fixture_id: ids.get("fixtures", f).into(),
                group_id: ids.get("groups", g).into(),
                display_order: i64::from(v),
            };
            let key = rec.key().unwrap();
            if delete {
                let _ = store.group_members().delete(key).await;
                return;
            }
            upsert(store, rec, key, |r| r.display_order = i64::from(v)).await;
        }
        Write::Pattern(i) => {
            let id: luma_model::PatternId = ids.get("patterns", i).into();
            if delete {
                let _ = store.patterns().delete(RecordKey::single(id)).await;
                return;
            }
            let mut rec = Pattern::new(&name);
            rec.id = id;
            upsert(store, rec, RecordKey::single(id), |r| r.name = name.clone()).await;
        }
        Write::Impl(i, p) => {
            let id: luma_model::ImplementationId = ids.get("impls", i).into();
            if delete {
                let _ = store.implementations().delete(RecordKey::single(id)).await;
                return;
            }
            let mut rec = Implementation::new(ids.get("patterns", p).into(), &name);
            rec.id = id;
            upsert(store, rec, RecordKey::single(id), |r| r.name = name.clone()).await;
        }
        Write::Track(i) => {
            let id: luma_model::TrackId = ids.get("tracks", i).into();
            if delete {
                let _ = store.tracks().delete(RecordKey::single(id)).await;
                return;
            }
            let mut rec = Track::new(&name);
            rec.id = id;
            rec.file_path = Some("/music/local.flac".into());
            upsert(store, rec, RecordKey::single(id), |r| {
                r.bpm = Some(f64::from(v) + 0.5)
            })
            .await;
        }
        Write::Score(i, t, venue) => {
            let id: luma_model::ScoreId = ids.get("scores", i).into();
            if delete {
                let _ = store.scores().delete(RecordKey::single(id)).await;
                return;
            }
            let mut rec = Score::new(
                ids.get("tracks", t).into(),
                ids.get("venues", venue).into(),
                &name,
            );
            rec.id = id;
            upsert(store, rec, RecordKey::single(id), |r| r.name = name.clone()).await;
        }
        Write::TrackScore(i, s, p) => {
            let id: luma_model::TrackScoreId = ids.get("track_scores", i).into();
            if delete {
                let _ = store.track_scores().delete(RecordKey::single(id)).await;
                return;
            }
            let start = f64::from(v) / 7.0;
            let mut rec = TrackScore::new(
                ids.get("scores", s).into(),
                ids.get("patterns", p).into(),
                start,
                start + 1.0,
            );
            rec.id = id;
            upsert(store, rec, RecordKey::single(id), |r| {
                r.z_index = i64::from(v)
            })
            .await;
        }
    }
}

/// Every write ever made: (table, key) -> stamp -> row (`None` for a delete).
type Writes = BTreeMap<(String, RecordKey), BTreeMap<Hlc, Option<Row>>>;

async fn record_writes(store: &Store, writes: &mut Writes) {
    let ops = store.outbox().all().await.unwrap();
    let rows = store.read_push_rows(&ops).await.unwrap();
    for r in rows {
        let row = if r.op.kind == OpKind::Delete {
            None
        } else {
            r.row
        };
        writes
            .entry((r.op.table.clone(), r.op.key.clone()))
            .or_default()
            .insert(r.hlc, row);
    }
}

/// Keys of the parents of `row` in `table`.
fn parents_of(store: &Store, table: &str, row: &Row) -> Vec<(String, RecordKey)> {
    let spec = store.table(table).unwrap().spec;
    spec.parents
        .iter()
        .filter_map(|p| {
            row.get(p.column)
                .and_then(|v| v.as_str())
                .map(|k| (p.table.to_string(), RecordKey::from_canonical(k)))
        })
        .collect()
}

/// True if some ancestor of the record has a delete among the writes.
fn ancestor_deleted(store: &Store, writes: &Writes, table: &str, row: &Row, depth: u8) -> bool {
    if depth > 6 {
        return false;
    }
    parents_of(store, table, row).into_iter().any(|(pt, pk)| {
        let Some(versions) = writes.get(&(pt.clone(), pk)) else {
            return false;
        };
        versions.values().any(|v| v.is_none())
            || versions
                .values()
                .flatten()
                .any(|prow| ancestor_deleted(store, writes, &pt, prow, depth + 1))
    })
}

/// A server the convergence property runs against.
#[async_trait]
trait Server: Send + Sync {
    type R: Remote + Clone;
    fn remote(&self) -> Self::R;
    fn sign_in(&self, user: UserId) -> AccessToken;
    fn set_faults(&self, faults: FaultConfig);
    /// Waits until every finished write is pullable.
    async fn settle(&self);
    /// The newest state of every record of `table` the user can see (tombstones as `None`).
    async fn snapshot(
        &self,
        token: &AccessToken,
        table: &str,
    ) -> BTreeMap<RecordKey, (Hlc, Option<Row>)>;
}

struct Memory(MemoryRemote);

#[async_trait]
impl Server for Memory {
    type R = MemoryRemote;
    fn remote(&self) -> MemoryRemote {
        self.0.clone()
    }
    fn sign_in(&self, user: UserId) -> AccessToken {
        self.0.issue_token(user)
    }
    fn set_faults(&self, faults: FaultConfig) {
        self.0.set_faults(faults)
    }
    async fn settle(&self) {}
    async fn snapshot(
        &self,
        _token: &AccessToken,
        table: &str,
    ) -> BTreeMap<RecordKey, (Hlc, Option<Row>)> {
        self.0.snapshot(table)
    }
}

/// PostgresRemote behind seeded transport faults (request failed, response lost, 5xx, 401).
#[derive(Clone)]
struct Faulty {
    inner: PostgresRemote,
    faults: Arc<Mutex<(StdRng, FaultConfig)>>,
}

enum Injected {
    Before(SyncError),
    After,
}

impl Faulty {
    fn draw(&self) -> Option<Injected> {
        let mut g = self.faults.lock().unwrap();
        let f = g.1;
        let roll: f64 = g.0.gen();
        let mut acc = f.fail_request;
        if roll < acc {
            return Some(Injected::Before(SyncError::transient(
                "connection reset (injected)",
            )));
        }
        acc += f.lose_response;
        if roll < acc {
            return Some(Injected::After);
        }
        acc += f.server_error;
        if roll < acc {
            return Some(Injected::Before(SyncError::transient("503 (injected)")));
        }
        acc += f.unauthorized;
        if roll < acc {
            return Some(Injected::Before(SyncError::unauthorized(
                "JWT expired (injected)",
            )));
        }
        None
    }
}

#[async_trait]
impl Remote for Faulty {
    async fn push(
        &self,
        token: &AccessToken,
        changes: &[luma_sync::Change],
    ) -> luma_sync::Result<Vec<luma_sync::ChangeOutcome>> {
        let fault = self.draw();
        if let Some(Injected::Before(e)) = fault {
            return Err(e);
        }
        let out = self.inner.push(token, changes).await?;
        if fault.is_some() {
            return Err(SyncError::transient("response lost (injected)"));
        }
        Ok(out)
    }
    async fn pull(
        &self,
        token: &AccessToken,
        request: &luma_sync::PullRequest,
    ) -> luma_sync::Result<luma_sync::PullPage> {
        let fault = self.draw();
        if let Some(Injected::Before(e)) = fault {
            return Err(e);
        }
        let out = self.inner.pull(token, request).await?;
        if fault.is_some() {
            return Err(SyncError::transient("response lost (injected)"));
        }
        Ok(out)
    }
    async fn watermark(&self, token: &AccessToken) -> luma_sync::Result<luma_sync::Watermark> {
        if let Some(Injected::Before(e)) = self.draw() {
            return Err(e);
        }
        self.inner.watermark(token).await
    }
}

struct Postgres {
    remote: Faulty,
    admin: PostgresAdmin,
}

#[async_trait]
impl Server for Postgres {
    type R = Faulty;
    fn remote(&self) -> Faulty {
        self.remote.clone()
    }
    fn sign_in(&self, user: UserId) -> AccessToken {
        self.remote.inner.sign_in(user)
    }
    fn set_faults(&self, faults: FaultConfig) {
        // LUMA_PG_CONVERGENCE_FAULTS=0 runs the property without network faults (to tell a
        // fault-handling bug from another one).
        if std::env::var("LUMA_PG_CONVERGENCE_FAULTS").as_deref() == Ok("0") {
            return;
        }
        *self.remote.faults.lock().unwrap() = (StdRng::seed_from_u64(faults.seed), faults);
    }
    async fn settle(&self) {
        self.admin
            .settled_watermark(std::time::Duration::from_secs(60))
            .await
            .unwrap();
    }
    async fn snapshot(
        &self,
        token: &AccessToken,
        table: &str,
    ) -> BTreeMap<RecordKey, (Hlc, Option<Row>)> {
        let wm = self
            .admin
            .settled_watermark(std::time::Duration::from_secs(60))
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        let mut cursor = None;
        loop {
            let page = self
                .remote
                .inner
                .pull(
                    token,
                    &luma_sync::PullRequest {
                        table: table.into(),
                        cursor: cursor.clone(),
                        limit: 1000,
                        watermark: wm.clone(),
                    },
                )
                .await
                .unwrap();
            for r in page.rows {
                out.insert(r.key, (r.hlc, r.row));
            }
            if page.cursor.is_some() {
                cursor = page.cursor;
            }
            if !page.has_more {
                return out;
            }
        }
    }
}

async fn assert_same_as_server<S: Server>(
    server: &S,
    token: &AccessToken,
    engine: &SyncEngine<Store, S::R>,
) {
    let local = local_state(engine.local()).await;
    for spec in engine.local().synced_tables().unwrap() {
        let live: BTreeMap<RecordKey, (Hlc, Row)> = server
            .snapshot(token, spec.name)
            .await
            .into_iter()
            .filter_map(|(k, (h, row))| row.map(|r| (k, (h, r))))
            .collect();
        assert_eq!(
            local[spec.name], live,
            "table {} differs from the remote",
            spec.name
        );
    }
}

async fn run_case<S: Server>(server: &S, steps: Vec<Step>) {
    server.set_faults(FaultConfig::none());
    let user = UserId::new();
    let token = Arc::new(server.sign_in(user));
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let store = Store::open_in_memory().await.unwrap();
        store.set_current_user(Some(user)).await.unwrap();
        replicas.push(SyncEngine::new(
            store,
            server.remote(),
            Arc::new(StaticToken(token.clone())),
            fast_config(),
        ));
    }
    let ids = Ids::new();
    let mut writes = Writes::new();
    for s in &steps {
        match *s {
            Step::Upsert(r, w, v) => {
                apply_write(replicas[r].local(), &ids, w, v, false).await;
                record_writes(replicas[r].local(), &mut writes).await;
            }
            Step::Delete(r, w) => {
                apply_write(replicas[r].local(), &ids, w, 0, true).await;
                record_writes(replicas[r].local(), &mut writes).await;
            }
            Step::Pull(r) => {
                let _ = replicas[r].pull().await;
            }
            Step::Push(r) => {
                let _ = replicas[r].push().await;
            }
            Step::Sync(r) => {
                let _ = replicas[r].sync_now().await;
            }
            Step::Faults(p, seed) => {
                server.set_faults(FaultConfig::all(seed, f64::from(p) / 600.0))
            }
        }
    }
    let t_steps = std::time::Instant::now();
    // The final fault-free sync: rounds until a round moves nothing (each round first waits
    // until every finished write is pullable).
    server.set_faults(FaultConfig::none());
    let mut quiet = false;
    for _ in 0..8 {
        let mut moved = 0;
        for e in &replicas {
            server.settle().await;
            e.retry_all().await.unwrap();
            let r = e.sync_now().await.unwrap();
            moved += r.pull.rows + r.push.sent;
        }
        if moved == 0 {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "the replicas kept exchanging changes");
    if std::env::var("LUMA_TIMING").is_ok() {
        eprintln!("steps+final sync {:?}", t_steps.elapsed());
    }
    for e in &replicas {
        assert_eq!(e.local().outbox().all().await.unwrap(), vec![], "ops left");
        assert_same_as_server(server, &token, e).await;
    }
    // The remote is last-writer-wins over all writes (with "parent delete wins").
    let store = replicas[0].local();
    for spec in store.synced_tables().unwrap() {
        let snapshot = server.snapshot(&token, spec.name).await;
        for (key, (hlc, row)) in &snapshot {
            let versions = writes.get(&(spec.name.to_string(), key.clone()));
            if let Some(row) = row {
                let versions = versions.expect("a live remote row comes from a write");
                let (newest, wrow) = versions.iter().next_back().unwrap();
                assert_eq!(hlc, newest, "{} {key}: the newest write wins", spec.name);
                assert_eq!(
                    wrow.as_ref(),
                    Some(row),
                    "{} {key}: with its content",
                    spec.name
                );
            }
        }
        for ((table, key), versions) in writes.iter().filter(|((t, _), _)| t == spec.name) {
            let (newest, wrow) = versions.iter().next_back().unwrap();
            let server = snapshot.get(key);
            match wrow {
                None => assert!(
                    server.is_none_or(|(_, r)| r.is_none()),
                    "{table} {key}: deleted last"
                ),
                Some(row) => {
                    let live = server.is_some_and(|(h, r)| h == newest && r.as_ref() == Some(row));
                    assert!(
                        live || ancestor_deleted(store, &writes, table, row, 0),
                        "{table} {key}: the newest write {newest} was lost (server: {server:?})"
                    );
                }
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("LUMA_CONVERGENCE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_to_last_writer_wins(steps in prop::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_case(&Memory(MemoryRemote::new()), steps));
    }
}

/// The same property against PostgresRemote on a real server (one database, a fresh user and
/// fresh ids per case), with injected network faults (lost responses, failed requests, 5xx,
/// 401). Cases: `LUMA_PG_CONVERGENCE_CASES` (default 50); seed: `LUMA_PG_CONVERGENCE_SEED`
/// (default 1, or `random`); `LUMA_PG_CONVERGENCE_FAULTS=0` turns the faults off;
/// `LUMA_PG_CONVERGENCE_SHRINK=<n>` shrinks a failing case (off by default: slow on a server).
#[test]
fn replicas_converge_on_postgres() {
    let cases = std::env::var("LUMA_PG_CONVERGENCE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(pg_common::PgHarness::new());
    let server = Postgres {
        remote: Faulty {
            inner: db.remote.clone(),
            faults: Arc::new(Mutex::new((StdRng::seed_from_u64(0), FaultConfig::none()))),
        },
        admin: db.admin.clone(),
    };
    // A fixed seed by default, so a CI run is reproducible; LUMA_PG_CONVERGENCE_SEED=random (or
    // a number) explores other cases. With faults, seed 1 once found a lost delete: a delete of
    // a key the server never had stored nothing, so an older upsert of it pushed later won
    // (fixed by cloud migration 0006, checked by conformance `check_delete_of_unknown_key`).
    let rng_seed = match std::env::var("LUMA_PG_CONVERGENCE_SEED").ok().as_deref() {
        Some("random") => proptest::test_runner::RngSeed::Random,
        Some(n) => proptest::test_runner::RngSeed::Fixed(n.parse().unwrap_or(1)),
        None => proptest::test_runner::RngSeed::Fixed(1),
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        // Shrinking re-runs cases against the server: off unless asked for.
        max_shrink_iters: std::env::var("LUMA_PG_CONVERGENCE_SHRINK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        rng_seed,
        ..ProptestConfig::default()
    });
    let result = runner.run(&prop::collection::vec(step(), 1..40), |steps| {
        rt.block_on(run_case(&server, steps));
        Ok(())
    });
    rt.block_on(db.drop());
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Found by `replicas_converge_to_last_writer_wins` (shrunk): replica 1 deletes venue 1, replica
/// 2 then adds fixture 0 to it and pushes it before the delete arrives, replica 0 pulls the
/// fixture, the delete cascades on the server, and replica 2 revives the venue before replica
/// 0 pulls again. With the cascade stamping the fixture's tombstone with the (older) venue
/// delete stamp, replica 0 kept its newer fixture and differed from the server for good. The
/// outcome depends on which writes share a millisecond, so the script runs several times.
#[tokio::test]
async fn a_child_written_after_its_parents_delete_goes_when_the_parent_is_revived() {
    use Step::*;
    use Write::*;
    for _ in 0..20 {
        run_case(
            &Memory(MemoryRemote::new()),
            vec![
                Upsert(0, Venue(1), 0),
                Upsert(2, Venue(1), 0),
                Sync(0),
                Pull(1),
                Delete(1, Venue(1)),
                Upsert(2, Fixture(0, 1), 0),
                Push(2),
                Upsert(2, Venue(1), 0),
            ],
        )
        .await;
    }
}

/// The last case of `convergence.proptest-regressions`, replayed on every run (proptest does
/// not find that file for an integration test, so the saved case is never re-run by itself).
#[tokio::test]
async fn saved_case_group_under_a_deleted_venue() {
    use Step::*;
    use Write::*;
    for _ in 0..20 {
        run_case(
            &Memory(MemoryRemote::new()),
            vec![
                Upsert(2, Venue(0), 0),
                Sync(2),
                Upsert(2, Venue(1), 0),
                Upsert(2, Group(1, 1), 0),
                Sync(0),
                Sync(1),
                Delete(0, Venue(0)),
                Upsert(1, Group(1, 0), 0),
            ],
        )
        .await;
    }
}
