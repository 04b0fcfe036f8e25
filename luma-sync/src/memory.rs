//! [`MemoryRemote`]: an in-memory server with the semantics of the cloud SQL, and fault
//! injection, for property tests of the engine and of apps (feature `testing`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use luma_model::{
    Hlc, OpKind, Pattern, PatternId, Record, RecordKey, Row, Scope, SearchKey, TableSpec, UserId,
    BUILTIN_TABLES,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::error::{Result, SyncError};
use crate::remote::{
    Change, ChangeOutcome, Membership, Outcome, PatternBundle, PatternSummary, PullPage,
    PullRequest, RejectCode, Remote, RemoteRow, SearchPage, SearchRequest, Watermark,
};
use crate::token::AccessToken;

/// Which call a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// [`Remote::push`].
    Push,
    /// [`Remote::pull`].
    Pull,
    /// [`Remote::watermark`].
    Watermark,
    /// [`Remote::search_patterns`].
    Search,
    /// [`Remote::fetch_pattern`].
    Fetch,
    /// [`Remote::memberships`].
    Memberships,
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail before doing anything (network error).
    FailRequest,
    /// Do the work, then fail (the response is lost).
    LoseResponse,
    /// Answer after a delay.
    Delay(Duration),
    /// Answer 401 (expired token).
    Unauthorized,
    /// Answer 5xx.
    ServerError,
    /// Reject one change of a push permanently (code `invalid`); the others apply.
    RejectRow,
}

/// Random faults drawn from a seed, per call. Probabilities are in 0..=1; the default is no
/// faults.
///
/// Which knobs converge without any manual action: `fail_request`, `lose_response`, `delay`,
/// `unauthorized` and `server_error` are transport faults the engine retries by itself (after a
/// lost response the resend is idempotent), so a property that ends with a few fault-free
/// `sync_now()` rounds converges with them on. `reject_row` answers a change `rejected` (as a
/// server refusing it would): the op stays in `pending_errors()` until the app calls
/// `retry`/`retry_all` or `discard`, so a property using it must take that step itself.
///
/// ```
/// use luma_sync::FaultConfig;
/// let faults = FaultConfig { seed: 7, fail_request: 0.1, lose_response: 0.1, ..FaultConfig::default() };
/// assert_eq!(faults.reject_row, 0.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultConfig {
    /// Seed of the fault generator.
    pub seed: u64,
    /// Probability of [`Fault::FailRequest`].
    pub fail_request: f64,
    /// Probability of [`Fault::LoseResponse`].
    pub lose_response: f64,
    /// Probability of [`Fault::Delay`].
    pub delay: f64,
    /// Longest injected delay.
    pub max_delay: Duration,
    /// Probability of [`Fault::Unauthorized`].
    pub unauthorized: f64,
    /// Probability of [`Fault::ServerError`].
    pub server_error: f64,
    /// Probability of [`Fault::RejectRow`] (push only).
    pub reject_row: f64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self::none()
    }
}

impl FaultConfig {
    /// No faults.
    pub fn none() -> Self {
        Self {
            seed: 0,
            fail_request: 0.0,
            lose_response: 0.0,
            delay: 0.0,
            max_delay: Duration::ZERO,
            unauthorized: 0.0,
            server_error: 0.0,
            reject_row: 0.0,
        }
    }

    /// Every fault with probability `p` (delays up to 2 ms), from `seed`, row rejections
    /// included: see the type's docs for what that means for convergence.
    pub fn all(seed: u64, p: f64) -> Self {
        Self {
            seed,
            fail_request: p,
            lose_response: p,
            delay: p,
            max_delay: Duration::from_millis(2),
            unauthorized: p,
            server_error: p,
            reject_row: p,
        }
    }
}

/// Counters of what the remote saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Push calls received.
    pub pushes: u64,
    /// Pull calls received.
    pub pulls: u64,
    /// Changes that changed server state.
    pub writes: u64,
    /// Faults injected.
    pub faults: u64,
}

#[derive(Debug, Clone)]
struct Version {
    seq: u64,
    hlc: Hlc,
    deleted: bool,
    /// The row (for a tombstone: the last live row, kept to decide who sees the tombstone).
    row: Row,
    /// For a delete of a key that never had a row here: the user who deleted it. Such a
    /// tombstone counts for that user only (as the cloud SQL's `luma.key_tombstones`).
    phantom_of: Option<UserId>,
}

#[derive(Debug, Default)]
struct Table {
    /// Versions of each record, oldest first.
    entries: HashMap<String, Vec<Version>>,
    /// Every version's change sequence number, to its record key.
    changes: BTreeMap<u64, String>,
}

impl Table {
    fn latest(&self, key: &str) -> Option<&Version> {
        self.entries.get(key).and_then(|v| v.last())
    }
}

struct State {
    specs: Vec<TableSpec>,
    tables: HashMap<String, Table>,
    seq: u64,
    tokens: HashMap<String, UserId>,
    members: HashMap<String, HashSet<UserId>>,
    profiles: HashMap<UserId, String>,
    faults: FaultConfig,
    rng: StdRng,
    scripted: VecDeque<(Call, Fault)>,
    stats: RemoteStats,
    issued: u64,
    horizon: u64,
    /// Largest lead of a stamp's physical part over this server's clock, in ms.
    max_skew_ms: u64,
}

/// The default allowed clock skew of a pushed stamp (the rule and its default live in
/// luma-model, shared with the device side and the cloud SQL's `luma.config`).
pub use luma_model::DEFAULT_MAX_CLOCK_SKEW;

/// An in-memory remote with the semantics of the cloud SQL (`PROTOCOL.md`): per-row last
/// writer wins by HLC (a tombstone wins a tie), tombstones, a server change sequence for
/// cursors with a consistent cut per watermark, per-user visibility from the tables'
/// [`Scope`]s (owner, venue owner and members, verified patterns, parent rows), parent
/// deletes that tombstone children, and fault injection (random from a seed, or scripted).
///
/// Clones share one server.
#[derive(Clone)]
pub struct MemoryRemote {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemoryRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRemote").finish_non_exhaustive()
    }
}

impl Default for MemoryRemote {
    fn default() -> Self {
        Self::new()
    }
}

/// The neutral reason of a refused write (whether or not the row exists), as the cloud SQL's.
const NOT_WRITABLE: &str = "not writable by this user";

/// The client's own rules for a row of a built-in table (`Record::from_row` then `validate`):
/// what a device cannot decode or store, the server refuses (as the cloud SQL's CHECK rules of
/// migration 0011). Plugin tables are not checked here.
fn validate_row(table: &str, row: &Row) -> std::result::Result<(), String> {
    fn check<R: Record>(row: &Row) -> std::result::Result<(), String> {
        R::check_wire_row(row).map_err(|e| e.to_string())
    }
    use luma_model::{
        Fixture, FixtureGroup, FixtureGroupMember, Implementation, Score, Track, TrackBeats,
        TrackRoots, TrackScore, TrackWaveform, Venue,
    };
    let name = |spec: &TableSpec| spec.name == table;
    if name(&Venue::SPEC) {
        check::<Venue>(row)
    } else if name(&Fixture::SPEC) {
        check::<Fixture>(row)
    } else if name(&FixtureGroup::SPEC) {
        check::<FixtureGroup>(row)
    } else if name(&FixtureGroupMember::SPEC) {
        check::<FixtureGroupMember>(row)
    } else if name(&Pattern::SPEC) {
        check::<Pattern>(row)
    } else if name(&Implementation::SPEC) {
        check::<Implementation>(row)
    } else if name(&Track::SPEC) {
        check::<Track>(row)
    } else if name(&TrackBeats::SPEC) {
        check::<TrackBeats>(row)
    } else if name(&TrackRoots::SPEC) {
        check::<TrackRoots>(row)
    } else if name(&TrackWaveform::SPEC) {
        check::<TrackWaveform>(row)
    } else if name(&Score::SPEC) {
        check::<Score>(row)
    } else if name(&TrackScore::SPEC) {
        check::<TrackScore>(row)
    } else {
        Ok(())
    }
}

fn uuid_of(s: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(s).ok()
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl MemoryRemote {
    /// A server with the built-in synced tables.
    pub fn new() -> Self {
        let specs = BUILTIN_TABLES
            .iter()
            .copied()
            .filter(|s| s.is_synced())
            .collect();
        Self {
            state: Arc::new(Mutex::new(State {
                specs,
                tables: HashMap::new(),
                seq: 0,
                tokens: HashMap::new(),
                members: HashMap::new(),
                profiles: HashMap::new(),
                faults: FaultConfig::none(),
                rng: StdRng::seed_from_u64(0),
                scripted: VecDeque::new(),
                stats: RemoteStats::default(),
                issued: 0,
                horizon: 0,
                max_skew_ms: DEFAULT_MAX_CLOCK_SKEW.as_millis() as u64,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every change is one insert).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a (plugin) table, as its cloud migration would.
    pub fn register_table(&self, spec: TableSpec) {
        let mut s = self.lock();
        if !s.specs.iter().any(|t| t.name == spec.name) {
            s.specs.push(spec);
        }
    }

    /// Issues a token for `user` (as signing in would).
    pub fn issue_token(&self, user: UserId) -> AccessToken {
        let mut s = self.lock();
        s.issued += 1;
        let secret = format!("tok-{}-{}", user, s.issued);
        s.tokens.insert(secret.clone(), user);
        AccessToken::new(user, secret)
    }

    /// Makes every token of `user` invalid (they expire): calls answer 401 until a new one is
    /// issued.
    pub fn expire_tokens(&self, user: UserId) {
        self.lock().tokens.retain(|_, u| *u != user);
    }

    /// Makes `user` a member of `venue` (as joining by share code would).
    pub fn add_member(&self, venue: impl ToString, user: UserId) {
        self.lock()
            .members
            .entry(venue.to_string())
            .or_default()
            .insert(user);
    }

    /// Sets `user`'s profile display name (the server's `profiles` table): search results
    /// show it as the author of the user's patterns.
    pub fn set_profile(&self, user: UserId, display_name: impl Into<String>) {
        self.lock().profiles.insert(user, display_name.into());
    }

    /// Removes `user` from `venue` (as the owner removing a member, or leaving, would).
    pub fn remove_member(&self, venue: impl ToString, user: UserId) {
        if let Some(m) = self.lock().members.get_mut(&venue.to_string()) {
            m.remove(&user);
        }
    }

    /// Sets how far ahead of this server's clock a pushed stamp may be (default
    /// [`DEFAULT_MAX_CLOCK_SKEW`], as `luma.config.max_clock_skew_ms` on PostgreSQL); a change
    /// beyond it is rejected with [`RejectCode::ClockSkew`].
    pub fn set_max_clock_skew(&self, skew: Duration) {
        self.lock().max_skew_ms = u64::try_from(skew.as_millis()).unwrap_or(u64::MAX);
    }

    /// Sets the random faults.
    pub fn set_faults(&self, faults: FaultConfig) {
        let mut s = self.lock();
        s.rng = StdRng::seed_from_u64(faults.seed);
        s.faults = faults;
    }

    /// Queues one fault for the next call of kind `call` (before any random fault).
    pub fn inject(&self, call: Call, fault: Fault) {
        self.lock().scripted.push_back((call, fault));
    }

    /// Purges every tombstone written so far (as the server's horizon job would): clients
    /// whose cursor is older than now, from a pass that started before this purge, are told
    /// `resync_required` on their next pull (a pass from null started after it is served to
    /// its end, as `luma_pull` does since cloud migration 0012).
    pub fn purge_tombstones(&self) {
        let mut s = self.lock();
        let horizon = s.seq;
        s.horizon = horizon;
        for t in s.tables.values_mut() {
            let dead: Vec<String> = t
                .entries
                .iter()
                .filter(|(_, v)| v.last().is_some_and(|v| v.deleted && v.seq <= horizon))
                .map(|(k, _)| k.clone())
                .collect();
            for k in dead {
                if let Some(versions) = t.entries.remove(&k) {
                    for v in versions {
                        t.changes.remove(&v.seq);
                    }
                }
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> RemoteStats {
        self.lock().stats
    }

    /// The newest state of every record of `table` (tombstones as `None`), whoever may see it.
    pub fn snapshot(&self, table: &str) -> BTreeMap<RecordKey, (Hlc, Option<Row>)> {
        let s = self.lock();
        let mut out = BTreeMap::new();
        if let Some(t) = s.tables.get(table) {
            for (k, versions) in &t.entries {
                if let Some(v) = versions.last() {
                    let row = if v.deleted { None } else { Some(v.row.clone()) };
                    out.insert(RecordKey::from_canonical(k.clone()), (v.hlc, row));
                }
            }
        }
        out
    }

    fn draw_fault(&self, call: Call) -> Option<Fault> {
        let mut s = self.lock();
        let fault = if let Some(i) = s.scripted.iter().position(|(c, _)| *c == call) {
            s.scripted.remove(i).map(|(_, f)| f)
        } else {
            let f = s.faults;
            let roll: f64 = s.rng.gen();
            let mut acc = 0.0;
            let mut pick = None;
            let choices = [
                (f.fail_request, Fault::FailRequest),
                (f.lose_response, Fault::LoseResponse),
                (f.delay, Fault::Delay(Duration::ZERO)),
                (f.unauthorized, Fault::Unauthorized),
                (f.server_error, Fault::ServerError),
                (
                    if call == Call::Push {
                        f.reject_row
                    } else {
                        0.0
                    },
                    Fault::RejectRow,
                ),
            ];
            for (p, fault) in choices {
                acc += p;
                if roll < acc {
                    pick = Some(fault);
                    break;
                }
            }
            match pick {
                Some(Fault::Delay(_)) => {
                    let max = u64::try_from(f.max_delay.as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    Some(Fault::Delay(Duration::from_micros(s.rng.gen_range(0..max))))
                }
                other => other,
            }
        };
        if fault.is_some() {
            s.stats.faults += 1;
        }
        fault
    }

    fn user_of(&self, token: &AccessToken) -> Result<UserId> {
        self.lock()
            .tokens
            .get(token.secret())
            .copied()
            .ok_or_else(|| SyncError::unauthorized("JWT expired"))
    }

    /// Runs the fault protocol around `work`.
    async fn call<T>(
        &self,
        call: Call,
        token: &AccessToken,
        work: impl FnOnce(&mut State, UserId, bool) -> Result<T>,
    ) -> Result<T> {
        let fault = self.draw_fault(call);
        match fault {
            Some(Fault::FailRequest) => {
                return Err(SyncError::transient("connection reset (injected)"))
            }
            Some(Fault::ServerError) => {
                return Err(SyncError::transient("503 service unavailable (injected)"))
            }
            Some(Fault::Unauthorized) => {
                return Err(SyncError::unauthorized("JWT expired (injected)"))
            }
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            _ => {}
        }
        let user = self.user_of(token)?;
        let out = {
            let mut s = self.lock();
            work(&mut s, user, fault == Some(Fault::RejectRow))?
        };
        if fault == Some(Fault::LoseResponse) {
            return Err(SyncError::transient("response lost (injected)"));
        }
        Ok(out)
    }
}

/// Longest search text the cloud SQL accepts.
const MAX_QUERY_CHARS: usize = 200;

impl State {
    /// `luma_search_patterns`, over the newest live versions.
    fn search(&self, user: UserId, request: &SearchRequest) -> Result<SearchPage> {
        if request.filter.query.chars().count() > MAX_QUERY_CHARS {
            return Err(SyncError::permanent(
                "the query is longer than 200 characters",
            ));
        }
        let after = request
            .cursor
            .as_deref()
            .map(SearchKey::from_cursor)
            .transpose()
            .map_err(|e| SyncError::permanent(e.to_string()))?;
        let limit = usize::try_from(request.limit.clamp(1, 200)).unwrap_or(200);
        let mut hits: Vec<(SearchKey, Pattern)> = Vec::new();
        if let Some(t) = self.tables.get(Pattern::SPEC.name) {
            for (key, versions) in &t.entries {
                let Some(v) = versions.last().filter(|v| !v.deleted) else {
                    continue;
                };
                let pattern = match Pattern::from_row(v.row.clone()) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "undecodable pattern row skipped by search");
                        continue;
                    }
                };
                if !request
                    .tab
                    .includes(pattern.is_verified, pattern.uid == Some(user))
                {
                    continue;
                }
                let Some(rank) = request.filter.rank(
                    &pattern.name,
                    &pattern.description,
                    pattern.category.as_deref(),
                ) else {
                    continue;
                };
                let k = SearchKey::new(rank, &pattern.name, pattern.id);
                if after.as_ref().is_some_and(|a| &k <= a) {
                    continue;
                }
                hits.push((k, pattern));
            }
        }
        hits.sort_by(|a, b| a.0.cmp(&b.0));
        let next_cursor = (hits.len() > limit).then(|| hits[limit - 1].0.to_cursor());
        hits.truncate(limit);
        let results = hits
            .into_iter()
            .map(|(_, p)| PatternSummary {
                author_name: p
                    .uid
                    .and_then(|u| self.profiles.get(&u))
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .or(p.author_name),
                id: p.id,
                name: p.name,
                description: p.description,
                category: p.category,
                updated_at: p.updated_at,
                is_verified: p.is_verified,
                uid: p.uid,
            })
            .collect();
        Ok(SearchPage {
            results,
            next_cursor,
        })
    }

    /// `luma_fetch_pattern`.
    fn fetch_pattern(&self, user: UserId, id: PatternId) -> Option<PatternBundle> {
        let key = id.to_string();
        let pattern = self
            .latest(Pattern::SPEC.name, &key)
            .filter(|v| !v.deleted && self.allowed(&Pattern::SPEC, &v.row, user, false, 0))?
            .row
            .clone();
        let mut implementations: Vec<(String, Row)> = self
            .tables
            .get(luma_model::Implementation::SPEC.name)
            .map(|t| {
                t.entries
                    .iter()
                    .filter_map(|(k, versions)| {
                        let v = versions.last()?;
                        (!v.deleted && text(v.row.get("pattern_id")).as_deref() == Some(&key))
                            .then(|| (k.clone(), v.row.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        implementations.sort_by(|a, b| a.0.cmp(&b.0));
        Some(PatternBundle {
            pattern,
            implementations: implementations.into_iter().map(|(_, r)| r).collect(),
        })
    }

    fn spec(&self, table: &str) -> Option<TableSpec> {
        self.specs.iter().find(|s| s.name == table).copied()
    }

    /// The venues `user` owns (live) or is a member of, ordered by venue id.
    fn memberships(&self, user: UserId) -> Vec<Membership> {
        let me = user.to_string();
        let mut out: Vec<Membership> = Vec::new();
        if let Some(t) = self.tables.get("venues") {
            for (key, versions) in &t.entries {
                if versions
                    .last()
                    .is_some_and(|v| !v.deleted && text(v.row.get("uid")).as_deref() == Some(&me))
                {
                    out.push(Membership {
                        venue_id: key.clone(),
                        role: "owner".into(),
                    });
                }
            }
        }
        for (venue, users) in &self.members {
            if users.contains(&user) && !out.iter().any(|m| &m.venue_id == venue) {
                out.push(Membership {
                    venue_id: venue.clone(),
                    role: "member".into(),
                });
            }
        }
        out.sort();
        out
    }

    fn latest(&self, table: &str, key: &str) -> Option<&Version> {
        self.tables.get(table).and_then(|t| t.latest(key))
    }

    /// May `user` see `row` of `spec`? (`write`: may they write it.)
    fn allowed(&self, spec: &TableSpec, row: &Row, user: UserId, write: bool, depth: u8) -> bool {
        if depth > 8 {
            return false;
        }
        let is_me = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .and_then(uuid_of)
                .is_some_and(|u| u == user.0)
        };
        let key = |column: &str| row.get(column).and_then(Value::as_str);
        match spec.scope {
            Scope::Owner { column } => {
                is_me(row.get(column)) || (!write && self.via_score(spec.name, row, false, user))
            }
            Scope::Venue => {
                is_me(row.get("uid"))
                    || key("id")
                        .and_then(|id| self.members.get(id))
                        .is_some_and(|m| m.contains(&user))
            }
            Scope::InVenue { column } => {
                self.parent_allowed("venues", key(column), user, write, depth)
            }
            Scope::OwnerOrPublic { owner, flag } => {
                is_me(row.get(owner))
                    || (!write
                        && (row.get(flag) == Some(&Value::Bool(true))
                            || self.via_score(spec.name, row, false, user)))
            }
            Scope::Parent { column, table } => {
                self.parent_allowed(table, key(column), user, write, depth)
            }
            _ => false,
        }
    }

    /// The via-score read rule (cloud SQL 0011): a track (pattern) is readable by `user`
    /// through a venue `user` owns or belongs to while a live score of that venue (for a
    /// pattern: a live track_score of a live score of it) made by the row's own owner references
    /// it. `dead`: also through tombstoned scores / track_scores (for a tombstoned row, so its
    /// tombstone reaches the members).
    fn via_score(&self, table: &str, row: &Row, dead: bool, user: UserId) -> bool {
        let (Some(id), Some(owner)) = (text(row.get("id")), text(row.get("uid"))) else {
            return false;
        };
        let live = |v: &Version| dead || !v.deleted;
        let my_venue = |venue: Option<String>| {
            venue.is_some_and(|venue| {
                self.members.get(&venue).is_some_and(|m| m.contains(&user))
                    || self
                        .latest("venues", &venue)
                        .is_some_and(|v| text(v.row.get("uid")) == Some(user.to_string()))
            })
        };
        // Scores of a venue of `user`, by `owner`, live (unless `dead`).
        let score_ok = |v: &Version| {
            live(v)
                && text(v.row.get("uid")).as_deref() == Some(owner.as_str())
                && my_venue(text(v.row.get("venue_id")))
        };
        let Some(scores) = self.tables.get("scores") else {
            return false;
        };
        match table {
            "tracks" => scores.entries.values().filter_map(|v| v.last()).any(|v| {
                text(v.row.get("track_id")).as_deref() == Some(id.as_str()) && score_ok(v)
            }),
            "patterns" => self.tables.get("track_scores").is_some_and(|ts| {
                ts.entries.values().filter_map(|v| v.last()).any(|v| {
                    live(v)
                        && text(v.row.get("pattern_id")).as_deref() == Some(id.as_str())
                        && text(v.row.get("score_id"))
                            .and_then(|sid| scores.latest(&sid))
                            .is_some_and(score_ok)
                })
            }),
            _ => false,
        }
    }

    fn parent_allowed(
        &self,
        table: &str,
        key: Option<&str>,
        user: UserId,
        write: bool,
        depth: u8,
    ) -> bool {
        let (Some(key), Some(spec)) = (key, self.spec(table)) else {
            return false;
        };
        match self.latest(table, key) {
            Some(v) => self.allowed(&spec, &v.row, user, write, depth + 1),
            None => false,
        }
    }

    fn record(&mut self, table: &str, key: &str, hlc: Hlc, deleted: bool, row: Row) {
        self.seq += 1;
        let seq = self.seq;
        let t = self.tables.entry(table.to_string()).or_default();
        t.entries.entry(key.to_string()).or_default().push(Version {
            seq,
            hlc,
            deleted,
            row,
            phantom_of: None,
        });
        t.changes.insert(seq, key.to_string());
        self.stats.writes += 1;
    }

    /// Tombstones the live children of `table`/`key` (recursively) with the parent's stamp
    /// `hlc` or their own, whichever is newer.
    fn cascade(&mut self, table: &str, key: &str, hlc: Hlc, depth: u8) {
        if depth > 8 {
            return;
        }
        let children: Vec<(String, &'static str)> = self
            .specs
            .iter()
            .flat_map(|s| {
                s.parents
                    .iter()
                    .filter(|p| p.table == table)
                    .map(move |p| (s.name.to_string(), p.column))
            })
            .collect();
        for (child, column) in children {
            let victims: Vec<(String, Hlc, Row)> = self
                .tables
                .get(&child)
                .map(|t| {
                    t.entries
                        .iter()
                        .filter_map(|(k, versions)| {
                            let v = versions.last()?;
                            (!v.deleted && text(v.row.get(column)).as_deref() == Some(key))
                                .then(|| (k.clone(), v.hlc, v.row.clone()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            // Each child gets the parent's stamp or its own, whichever is newer, as the cloud SQL
            // gives them (migration 0010): a device that holds a child written after the
            // parent's delete then applies the tombstone, even if the parent is revived before
            // it pulls. A newer upsert of the child under the deleted parent is refused as
            // missing_parent.
            for (k, own, row) in victims {
                let stamp = own.max(hlc);
                self.record(&child, &k, stamp, true, row);
                self.cascade(&child, &k, stamp, depth + 1);
            }
        }
    }

    fn current(&self, table: &str, key: &RecordKey) -> Option<Outcome> {
        self.latest(table, key.as_str())
            .map(|v| Outcome::Superseded {
                hlc: v.hlc,
                deleted: v.deleted,
                row: (!v.deleted).then(|| v.row.clone()),
            })
    }

    fn apply(&mut self, c: &Change, user: UserId) -> Outcome {
        let reject = |code: RejectCode, reason: &str| Outcome::Rejected {
            reason: reason.to_string(),
            code,
        };
        let Some(spec) = self.spec(&c.table).filter(|s| s.is_synced()) else {
            return reject(RejectCode::Invalid, "unknown table");
        };
        if c.hlc
            .is_beyond_skew(luma_model::wall_clock_ms(), self.max_skew_ms)
        {
            return reject(
                RejectCode::ClockSkew,
                &format!(
                    "stamp {} is {} ms ahead of the server clock; at most {} ms are allowed",
                    c.hlc,
                    c.hlc
                        .physical_ms
                        .saturating_sub(luma_model::wall_clock_ms()),
                    self.max_skew_ms
                ),
            );
        }
        let existing = self
            .latest(&c.table, c.key.as_str())
            .filter(|e| e.phantom_of.is_none_or(|u| u == user))
            .cloned();
        let is_delete = c.op == OpKind::Delete;
        if let Some(e) = &existing {
            // A stamp identifies one write: the same stamp is a resend, whatever its op (as
            // the cloud SQL answers it).
            if e.hlc == c.hlc {
                if e.deleted || self.allowed(&spec, &e.row, user, false, 0) {
                    return Outcome::Applied;
                }
                return reject(RejectCode::Forbidden, NOT_WRITABLE);
            }
            // Newer on the server.
            if e.hlc > c.hlc {
                if e.deleted || self.allowed(&spec, &e.row, user, false, 0) {
                    return self.current(&c.table, &c.key).unwrap_or(Outcome::Applied);
                }
                return reject(RejectCode::Forbidden, NOT_WRITABLE);
            }
            if !e.deleted && !self.allowed(&spec, &e.row, user, true, 0) {
                return reject(RejectCode::Forbidden, NOT_WRITABLE);
            }
            if is_delete && spec.scope == Scope::Venue && !e.deleted {
                let owner = text(e.row.get("uid"));
                if owner.as_deref() != Some(user.to_string().as_str()) {
                    return reject(RejectCode::Forbidden, "only the owner deletes a venue");
                }
            }
        }
        if is_delete {
            let phantom = match &existing {
                None => Some(user),
                Some(e) => e.phantom_of,
            };
            let row = existing.map(|e| e.row).unwrap_or_default();
            self.record(&c.table, c.key.as_str(), c.hlc, true, row);
            if let Some(v) = self
                .tables
                .get_mut(&c.table)
                .and_then(|t| t.entries.get_mut(c.key.as_str()))
                .and_then(|v| v.last_mut())
            {
                v.phantom_of = phantom;
            }
            self.cascade(&c.table, c.key.as_str(), c.hlc, 0);
            return Outcome::Applied;
        }
        let Some(mut row) = c.row.clone() else {
            return reject(RejectCode::Invalid, "an upsert needs a row");
        };
        for local in spec.local_only_columns() {
            row.remove(local);
        }
        if RecordKey::from_row(&spec, &row).as_ref() != Some(&c.key) {
            return reject(
                RejectCode::Invalid,
                "the row's key does not match the change's key",
            );
        }
        for p in spec.parents {
            let Some(pk) = text(row.get(p.column)) else {
                continue;
            };
            // A parent the user cannot see is missing to them (as under row-level security).
            let visible = |v: &Version| {
                self.spec(p.table)
                    .is_some_and(|ps| self.allowed(&ps, &v.row, user, false, 0))
            };
            match self.latest(p.table, &pk) {
                Some(v) if !v.deleted && visible(v) => {}
                _ => {
                    return reject(
                        RejectCode::MissingParent,
                        "the parent row is missing, deleted or not visible",
                    )
                }
            }
        }
        if !self.allowed(&spec, &row, user, true, 0) {
            return reject(RejectCode::Forbidden, NOT_WRITABLE);
        }
        // The value rules come last, as PostgreSQL checks CHECK constraints after the guards
        // and the row-level security of the write.
        if let Err(reason) = validate_row(spec.name, &row) {
            return reject(RejectCode::Invalid, &reason);
        }
        self.record(&c.table, c.key.as_str(), c.hlc, false, row);
        Outcome::Applied
    }
}

#[async_trait]
impl Remote for MemoryRemote {
    async fn push(&self, token: &AccessToken, changes: &[Change]) -> Result<Vec<ChangeOutcome>> {
        self.lock().stats.pushes += 1;
        self.call(Call::Push, token, |s, user, reject_one| {
            let victim = if reject_one && !changes.is_empty() {
                Some(s.rng.gen_range(0..changes.len()))
            } else {
                None
            };
            Ok(changes
                .iter()
                .enumerate()
                .map(|(i, c)| ChangeOutcome {
                    table: c.table.clone(),
                    key: c.key.clone(),
                    outcome: if Some(i) == victim {
                        Outcome::Rejected {
                            reason: "rejected (injected)".into(),
                            code: RejectCode::Invalid,
                        }
                    } else {
                        s.apply(c, user)
                    },
                })
                .collect())
        })
        .await
    }

    async fn pull(&self, token: &AccessToken, request: &PullRequest) -> Result<PullPage> {
        self.lock().stats.pulls += 1;
        self.call(Call::Pull, token, |s, user, _| {
            let Some(spec) = s.spec(&request.table).filter(|t| t.is_synced()) else {
                return Err(SyncError::permanent(format!(
                    "unknown table {}",
                    request.table
                )));
            };
            let parse = |t: &str| {
                t.parse::<u64>()
                    .map_err(|_| SyncError::permanent(format!("bad cursor or watermark {t:?}")))
            };
            // A cursor is `<seq>` (an older form: it knows of no purge) or `<seq>:<mark>`,
            // where mark is the purge horizon the pass that made it was consistent with (the
            // horizon when it started from null, carried on by every later page).
            let (after, mark) = match request.cursor.as_deref() {
                None => (0, s.horizon),
                Some(c) => match c.split_once(':') {
                    Some((seq, mark)) => (parse(seq)?, parse(mark)?),
                    None => (parse(c)?, 0),
                },
            };
            let upto = parse(&request.watermark.0)?;
            // Tombstones the client may not have seen were purged only when both its position
            // and its pass's horizon are older than the current one: a pass started from null
            // after the purge is served to its end; a purge during the pass stops it.
            if request.cursor.is_some() && after < s.horizon && mark < s.horizon {
                return Ok(PullPage {
                    rows: Vec::new(),
                    cursor: None,
                    has_more: false,
                    resync_required: true,
                });
            }
            let mark = mark.max(s.horizon);
            let mut rows = Vec::new();
            let mut last = None;
            let mut has_more = false;
            let limit = usize::try_from(request.limit.max(1)).unwrap_or(usize::MAX);
            if let Some(t) = s.tables.get(&request.table) {
                let start = after.saturating_add(1);
                if start <= upto {
                    for (&seq, key) in t.changes.range(start..=upto) {
                        if rows.len() >= limit {
                            has_more = true;
                            break;
                        }
                        last = Some(seq);
                        let Some(versions) = t.entries.get(key) else {
                            continue;
                        };
                        // The record's newest version as of the watermark; served at its seq.
                        let Some(v) = versions.iter().rev().find(|v| v.seq <= upto) else {
                            continue;
                        };
                        if v.seq != seq
                            || !(s.allowed(&spec, &v.row, user, false, 0)
                                || (v.deleted && s.via_score(spec.name, &v.row, true, user)))
                        {
                            continue;
                        }
                        rows.push(RemoteRow {
                            key: RecordKey::from_canonical(key.clone()),
                            hlc: v.hlc,
                            deleted: v.deleted,
                            row: (!v.deleted).then(|| v.row.clone()),
                        });
                    }
                }
            }
            Ok(PullPage {
                rows,
                cursor: last.map(|l| format!("{l}:{mark}")),
                has_more,
                resync_required: false,
            })
        })
        .await
    }

    async fn watermark(&self, token: &AccessToken) -> Result<Watermark> {
        self.call(Call::Watermark, token, |s, _, _| {
            Ok(Watermark(s.seq.to_string()))
        })
        .await
    }

    async fn memberships(&self, token: &AccessToken) -> Result<Vec<Membership>> {
        self.call(Call::Memberships, token, |s, user, _| {
            Ok(s.memberships(user))
        })
        .await
    }

    async fn search_patterns(
        &self,
        token: &AccessToken,
        request: &SearchRequest,
    ) -> Result<SearchPage> {
        self.call(Call::Search, token, |s, user, _| s.search(user, request))
            .await
    }

    async fn fetch_pattern(
        &self,
        token: &AccessToken,
        pattern: PatternId,
    ) -> Result<Option<PatternBundle>> {
        self.call(Call::Fetch, token, |s, user, _| {
            Ok(s.fetch_pattern(user, pattern))
        })
        .await
    }
}
