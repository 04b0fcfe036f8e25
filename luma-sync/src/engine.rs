//! [`SyncEngine`]: pull, push, the background loop, status and the pending-errors API.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use luma_model::{Hlc, OpId, PendingOp};
use luma_store::{ApplyReport, DiscardReport, ParkedRow, PulledRow, Settlement};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error::{Result, SyncError};
use crate::local::Local;
use crate::remote::{Change, Outcome, PullPage, PullRequest, RejectCode, Remote, Watermark};
use crate::status::{FileStatusFeed, Phase, Progress, SyncStatus, TablesChanged};
use crate::token::{AccessToken, TokenProvider};

/// How many times one table's pass restarts from null on `resync_required` within one cycle
/// before the table is reported failed for that cycle (its rows are left as they are and the
/// next cycle runs the whole pass again).
const MAX_RESYNC_RESTARTS: u32 = 3;

/// Exponential backoff with jitter and a cap, for transient failures.
///
/// The delay before attempt `n + 1` (after `n` failures, `n >= 1`) is
/// `min(max, initial * factor^(n-1))`, minus a random share of up to `jitter` of it.
///
/// Not the `backon` crate: backon drives a retry loop around one future, while here the
/// attempt count and next retry time live in the outbox per op (they survive restarts and
/// one failing op must not hold the others), so only the delay formula is needed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Growth per failure.
    pub factor: f64,
    /// Share of the delay randomly taken off (0 = none, 1 = "full jitter").
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(300),
            factor: 2.0,
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (at least 1).
    pub fn delay(&self, failures: u32, rng: &mut impl Rng) -> Duration {
        let exp = failures.saturating_sub(1).min(64);
        let base = self.initial.as_secs_f64() * self.factor.max(1.0).powi(exp as i32);
        let capped = base.min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * rng.gen::<f64>();
        Duration::from_secs_f64((capped * (1.0 - jitter)).max(0.0))
    }
}

/// How the engine runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    /// Ops per push batch.
    pub batch_size: usize,
    /// Rows per pull page.
    pub page_size: u32,
    /// Time between periodic pulls of the background loop.
    pub pull_interval: Duration,
    /// Wait after a local change before pushing (more changes within it join the push).
    pub debounce: Duration,
    /// Backoff of transient failures.
    pub backoff: Backoff,
    /// Seed of the jitter generator (`None`: random).
    pub jitter_seed: Option<u64>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            batch_size: 200,
            page_size: 1000,
            pull_interval: Duration::from_secs(60),
            debounce: Duration::from_millis(250),
            backoff: Backoff::default(),
            jitter_seed: None,
        }
    }
}

/// What one pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Pages applied.
    pub pages: u64,
    /// Rows received.
    pub rows: u64,
    /// What applying them did.
    pub apply: ApplyReport,
    /// Tables the remote refused to serve (permanent error), with its message; the other
    /// tables were pulled.
    pub failed_tables: Vec<(String, String)>,
}

/// What one push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Batches sent.
    pub batches: u64,
    /// Changes sent.
    pub sent: u64,
    /// Ops removed as applied.
    pub applied: u64,
    /// Ops a newer server write won over (removed, server state applied).
    pub superseded: u64,
    /// Ops the server rejected (kept; see `pending_errors()`).
    pub rejected: u64,
    /// Set if the server refused a stamp as too far ahead of its clock (`clock_skew`): those
    /// ops stay pending and are retried on the backoff; the text is the server's reason.
    pub clock_skew_error: Option<String>,
}

/// What one full cycle (pull then push) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleReport {
    /// The pull.
    pub pull: PullReport,
    /// The push.
    pub push: PushReport,
}

fn now_ms() -> i64 {
    i64::try_from(luma_model::wall_clock_ms()).unwrap_or(i64::MAX)
}

struct Core<L, R> {
    local: L,
    remote: R,
    tokens: Arc<dyn TokenProvider>,
    config: SyncConfig,
    status: watch::Sender<SyncStatus>,
    changes: broadcast::Sender<TablesChanged>,
    step: tokio::sync::Mutex<()>,
    rng: Mutex<StdRng>,
}

/// The sync engine: pulls remote changes into a [`Local`] replica and pushes its pending ops
/// to a [`Remote`].
///
/// Use it step by step ([`SyncEngine::pull`], [`SyncEngine::push`],
/// [`SyncEngine::sync_now`]) or start the background loop ([`SyncEngine::start`]): it pulls on
/// start, pushes soon after local writes (debounced), pulls every
/// [`SyncConfig::pull_interval`], retries failed ops when their backoff ends, and stops on
/// [`SyncEngine::shutdown`]. Steps never overlap. Every step is crash-safe: a page and its
/// cursor, and the outcomes of a push, each commit in one local transaction.
pub struct SyncEngine<L, R> {
    core: Arc<Core<L, R>>,
    task: Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
}

impl<L, R> std::fmt::Debug for SyncEngine<L, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine")
            .field("status", &*self.core.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<L: Local, R: Remote> SyncEngine<L, R> {
    /// An engine over `local` and `remote`, signed in through `tokens`.
    pub fn new(local: L, remote: R, tokens: Arc<dyn TokenProvider>, config: SyncConfig) -> Self {
        let rng = match config.jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let (status, _) = watch::channel(SyncStatus::default());
        let (changes, _) = broadcast::channel(64);
        Self {
            core: Arc::new(Core {
                local,
                remote,
                tokens,
                config,
                status,
                changes,
                step: tokio::sync::Mutex::new(()),
                rng: Mutex::new(rng),
            }),
            task: Mutex::new(None),
        }
    }

    /// The local replica.
    pub fn local(&self) -> &L {
        &self.core.local
    }

    /// The remote.
    pub fn remote(&self) -> &R {
        &self.core.remote
    }

    /// The token provider.
    pub(crate) fn tokens(&self) -> &Arc<dyn TokenProvider> {
        &self.core.tokens
    }

    /// The status, updated as the engine works.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.core.status.subscribe()
    }

    /// Notifications of tables whose records changed because of sync.
    pub fn changes(&self) -> broadcast::Receiver<TablesChanged> {
        self.core.changes.subscribe()
    }

    /// A handle through which file sync reports its transfers into this engine's status
    /// ([`SyncStatus::files`]) and its landed files into [`SyncEngine::changes`]. The engine
    /// itself never moves files.
    pub fn file_status(&self) -> FileStatusFeed {
        FileStatusFeed {
            status: self.core.status.clone(),
            changes: self.core.changes.clone(),
        }
    }

    /// Pulls every synced table (parents first, one watermark), then pushes.
    pub async fn sync_now(&self) -> Result<CycleReport> {
        let _step = self.core.step.lock().await;
        self.core.cycle().await
    }

    /// Pulls every synced table once (parents first, one watermark for the cycle).
    pub async fn pull(&self) -> Result<PullReport> {
        let _step = self.core.step.lock().await;
        let mut token = self.core.tokens.token().await?;
        self.core.pull(&mut token).await
    }

    /// Pushes the signed-in user's due ops.
    pub async fn push(&self) -> Result<PushReport> {
        let _step = self.core.step.lock().await;
        let mut token = self.core.tokens.token().await?;
        self.core.push(&mut token).await
    }

    /// Ops that failed at least once: rejected ones (with the server's reason, kept until
    /// [`SyncEngine::retry`] or [`SyncEngine::discard`]) and ones waiting for a retry.
    pub async fn pending_errors(&self) -> Result<Vec<PendingOp>> {
        self.core.local.pending_errors().await
    }

    /// Pulled rows parked because they could not be applied when they arrived (a stamp too
    /// far ahead of this device's clock, a value the store cannot store or decode), with
    /// their table, key and reason. They are re-tried at the end of every pull and replaced
    /// by newer versions of the same records; [`SyncStatus::parked`] counts them.
    pub async fn parked_rows(&self) -> Result<Vec<ParkedRow>> {
        self.core.local.parked_rows().await
    }

    /// Makes an op due now (clears a rejection).
    pub async fn retry(&self, op: OpId) -> Result<bool> {
        let done = self.core.local.retry(op).await?;
        self.core.refresh_counts().await;
        Ok(done)
    }

    /// Makes every failed op due now.
    pub async fn retry_all(&self) -> Result<u64> {
        let done = self.core.local.retry_all().await?;
        self.core.refresh_counts().await;
        Ok(done)
    }

    /// Drops the local change of an op; the next pull restores the remote version.
    pub async fn discard(&self, op: OpId) -> Result<DiscardReport> {
        let report = self.core.local.discard(op).await?;
        self.core.refresh_counts().await;
        Ok(report)
    }

    /// Starts the background loop (no-op if it runs). Needs a Tokio runtime.
    pub fn start(&self) {
        let Ok(mut task) = self.task.lock() else {
            return;
        };
        if task.is_some() {
            return;
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let core = self.core.clone();
        let handle = tokio::spawn(async move { core.run(stop_rx).await });
        *task = Some((stop_tx, handle));
    }

    /// Stops the background loop: the step in flight finishes (each step is transactional, so
    /// stopping between steps loses nothing), then the loop ends.
    pub async fn shutdown(&self) {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some((stop, handle)) = task {
            let _ = stop.send(true);
            if let Err(e) = handle.await {
                tracing::warn!(error = %e, "sync loop ended abnormally");
            }
        }
        self.core.status.send_modify(|s| {
            s.phase = Phase::Stopped;
            s.progress = None;
        });
    }
}

impl<L: Local, R: Remote> Core<L, R> {
    fn backoff(&self, failures: u32) -> Duration {
        match self.rng.lock() {
            Ok(mut rng) => self.config.backoff.delay(failures, &mut *rng),
            Err(_) => self.config.backoff.initial,
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.status.send_modify(|s| {
            s.phase = phase;
            s.progress = None;
        });
    }

    fn notify(&self, tables: &[String]) {
        if !tables.is_empty() {
            let _ = self.changes.send(TablesChanged {
                tables: tables.to_vec(),
            });
        }
    }

    async fn refresh_counts(&self) {
        if let Ok((pending, rejected)) = self.local.counts().await {
            self.status.send_modify(|s| {
                s.pending = pending;
                s.rejected = rejected;
            });
        }
        if let Ok(by_reason) = self.local.parked_counts().await {
            self.status.send_modify(|s| {
                s.parked = by_reason.iter().map(|(_, n)| n).sum();
                s.parked_by_reason = by_reason;
            });
        }
    }

    fn note_result<T>(&self, result: &Result<T>) {
        self.status.send_modify(|s| match result {
            Ok(_) => {
                s.online = true;
                s.last_error = None;
            }
            Err(e) => {
                if e.is_retryable() || e.is_unauthorized() {
                    s.online = false;
                }
                s.last_error = Some(e.to_string());
            }
        });
    }

    /// Runs `call` with the token; after a 401, refreshes the token once and runs it again.
    async fn authed<T, F, Fut>(&self, token: &mut Arc<AccessToken>, call: F) -> Result<T>
    where
        F: Fn(Arc<AccessToken>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match call(token.clone()).await {
            Err(e) if e.is_unauthorized() => {
                tracing::info!("token refused, refreshing once");
                let fresh = self.tokens.refresh_after(token).await?;
                *token = fresh;
                call(token.clone()).await
            }
            other => other,
        }
    }

    async fn cycle(&self) -> Result<CycleReport> {
        let span = tracing::info_span!("sync_cycle");
        async {
            let result = async {
                let mut token = self.tokens.token().await?;
                self.status.send_modify(|s| s.user = Some(token.user()));
                let pull = match self.pull(&mut token).await {
                    Ok(pull) => pull,
                    // A pull that failed on the local side (or on an answer it could not
                    // read) must not hold back the push: local edits still go out, and the
                    // pull's error is the cycle's.
                    Err(e @ (SyncError::Store { .. } | SyncError::Protocol { .. })) => {
                        tracing::warn!(error = %e, "pull failed: pushing anyway");
                        if let Err(push) = self.push(&mut token).await {
                            tracing::warn!(error = %push, "push after a failed pull failed");
                        }
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                let push = self.push(&mut token).await?;
                Ok(CycleReport { pull, push })
            }
            .await;
            self.note_result(&result);
            if let Ok(r) = &result {
                if let Some((table, message)) = r.pull.failed_tables.first() {
                    let text = format!("pulling {table} failed: {message}");
                    self.status.send_modify(|s| s.last_error = Some(text));
                }
                if let Some(text) = &r.push.clock_skew_error {
                    let text = format!("this device's clock is ahead of the server: {text}");
                    self.status.send_modify(|s| s.last_error = Some(text));
                }
            }
            self.set_phase(Phase::Idle);
            self.refresh_counts().await;
            result
        }
        .instrument(span)
        .await
    }

    async fn pull(&self, token: &mut Arc<AccessToken>) -> Result<PullReport> {
        let span = tracing::info_span!("pull", user = %token.user());
        let result = self.pull_inner(token).instrument(span).await;
        if result.is_ok() {
            self.status
                .send_modify(|s| s.last_pull = Some(chrono::Utc::now()));
        }
        result
    }

    async fn pull_inner(&self, token: &mut Arc<AccessToken>) -> Result<PullReport> {
        self.set_phase(Phase::Pulling);
        let user = token.user();
        let remote = &self.remote;
        let watermark = self
            .authed(token, move |t| async move { remote.watermark(&t).await })
            .await?;
        let mut report = PullReport::default();
        let specs = self.local.synced_tables()?;
        let venue_tables = venue_scoped_tables(&specs);
        let memberships = self.membership_change(token).await?;
        let mut memberships_complete = true;
        // Tables pulled again from the start this cycle: the keys the pass returned and the
        // cursor it ended at (stored only once the unreturned rows are removed).
        let mut repulled: Vec<(&'static str, Vec<luma_model::RecordKey>, Option<String>)> =
            Vec::new();
        for spec in specs {
            let table = spec.name;
            let mut cursor = self.local.cursor(user, table).await?;
            // How often `resync_required` restarted this table's pass.
            let mut restarts = 0u32;
            // Keys returned by a full re-pull (after `resync_required`, or after the user's
            // venues changed). While it runs, pages are applied without advancing the stored
            // cursor: a pass cut short (an error, a crash) leaves the old cursor, so the next
            // cycle runs the whole pass again instead of resuming it without the removal.
            let mut returned: Option<Vec<luma_model::RecordKey>> = None;
            if memberships.as_ref().is_some_and(|m| m.changed)
                && venue_tables.iter().any(|t| t == table)
            {
                tracing::info!(table, "venue memberships changed: pulling the table again");
                self.local.reset_cursors(user, &[table]).await?;
                cursor = None;
                returned = Some(Vec::new());
            }
            // The next page, fetched while the current one was being applied.
            let mut prefetched: Option<Result<PullPage>> = None;
            loop {
                let fetched = match prefetched.take() {
                    Some(page) => page,
                    None => {
                        self.fetch_page(token, table, cursor.clone(), &watermark)
                            .await
                    }
                };
                let page = match fetched {
                    Ok(page) => page,
                    // One table the remote refuses (for example a plugin table whose cloud
                    // migration has not run) must not stop the others, nor the push.
                    Err(SyncError::Permanent { message, .. }) => {
                        tracing::warn!(table, %message, "the remote refused to pull this table");
                        report.failed_tables.push((table.to_string(), message));
                        // A re-pull that did not finish must not remove what it did not see.
                        if returned.take().is_some() && venue_tables.iter().any(|t| t == table) {
                            memberships_complete = false;
                        }
                        break;
                    }
                    Err(e) => return Err(e),
                };
                // A refused cursor (older than the server's tombstone purge) ends nothing: the
                // pass starts again from null, whatever page it was at (a purge during the pass
                // refuses its next page). Never read as a last page.
                if page.resync_required {
                    if restarts >= MAX_RESYNC_RESTARTS {
                        let message = format!(
                            "the server refused the cursor {} times in one cycle \
                             (tombstone purges during the full re-pull)",
                            restarts + 1
                        );
                        tracing::warn!(table, %message, "giving up the full re-pull this cycle");
                        report.failed_tables.push((table.to_string(), message));
                        if returned.take().is_some() && venue_tables.iter().any(|t| t == table) {
                            memberships_complete = false;
                        }
                        break;
                    }
                    restarts += 1;
                    tracing::warn!(
                        table,
                        restarts,
                        "cursor older than the tombstone horizon: pulling the table again"
                    );
                    cursor = None;
                    returned = Some(Vec::new());
                    continue;
                }
                if let Some(keys) = returned.as_mut() {
                    keys.extend(
                        page.rows
                            .iter()
                            .filter(|r| !r.deleted)
                            .map(|r| r.key.clone()),
                    );
                }
                if page.cursor.is_some() {
                    cursor = page.cursor.clone();
                }
                let store_cursor = if returned.is_some() {
                    None
                } else {
                    page.cursor.as_deref()
                };
                let apply = self.local.apply_page(user, table, &page.rows, store_cursor);
                // Pipelining: the remote serves the next page while this one is applied (the
                // next request depends only on this page's cursor). An apply error ends the pull
                // and drops the fetched page; a fetch error surfaces when that page is due.
                let applied = if page.has_more {
                    let (applied, next) = tokio::join!(
                        apply,
                        self.fetch_page(token, table, cursor.clone(), &watermark)
                    );
                    prefetched = Some(next);
                    applied?
                } else {
                    apply.await?
                };
                tracing::debug!(
                    table,
                    rows = page.rows.len(),
                    upserted = applied.upserted,
                    deleted = applied.deleted,
                    skipped = applied.skipped_missing_parent,
                    "applied a page"
                );
                for op in applied.superseded.iter().chain(applied.orphaned.iter()) {
                    tracing::info!(op = %op.id, table = %op.table, key = %op.key, "local op superseded by a remote write");
                }
                self.notify(&applied.changed_tables);
                report.pages += 1;
                report.rows += page.rows.len() as u64;
                let done = report.rows;
                self.status.send_modify(|s| {
                    s.progress = Some(Progress {
                        table: Some(table.to_string()),
                        done,
                    })
                });
                report.apply = merge_apply(std::mem::take(&mut report.apply), applied);
                if !page.has_more {
                    break;
                }
            }
            if let Some(keys) = returned {
                repulled.push((table, keys, cursor));
            }
        }
        // Parked rows get another chance: a stamp the wall clock has caught up with, or a
        // row whose parent arrived.
        let retried = self.local.retry_parked().await?;
        self.notify(&retried.changed_tables);
        report.apply = merge_apply(std::mem::take(&mut report.apply), retried);
        // Rows the full re-pulls did not return go, children first (a parent stays while a
        // child kept for its pending op references it).
        let names: Vec<&str> = repulled.iter().map(|(t, _, _)| *t).collect();
        let mut kept = 0;
        for (table, keys, end) in repulled.iter().rev() {
            let removed = self.local.remove_unreturned(table, keys, &names).await?;
            // Only now does the pass's cursor replace the old one.
            match end {
                Some(c) => {
                    self.local
                        .apply_page(user, table, &[], Some(c.as_str()))
                        .await?;
                }
                None => self.local.reset_cursors(user, &[table]).await?,
            }
            kept += removed.kept_unreturned;
            tracing::info!(table, removed = removed.deleted, "full re-pull done");
            self.notify(&removed.changed_tables);
            report.apply = merge_apply(std::mem::take(&mut report.apply), removed);
        }
        if let Some(m) = memberships.filter(|_| memberships_complete) {
            // Rows kept for pending ops are cleaned by one more re-pull once the outbox is
            // empty (see `membership_change`).
            let snapshot = if (m.changed && kept > 0) || (!m.changed && m.kept_before) {
                format!("{}{KEPT_MARK}", m.snapshot)
            } else {
                m.snapshot
            };
            self.local.set_membership_snapshot(user, &snapshot).await?;
        }
        let purged = self.local.purge_discarded().await?;
        self.notify(&purged.changed_tables);
        report.apply = merge_apply(std::mem::take(&mut report.apply), purged);
        Ok(report)
    }

    /// Reads the user's venues from the remote and compares them with the set stored after
    /// the last complete pull. `None` when the remote does not report memberships.
    async fn membership_change(
        &self,
        token: &mut Arc<AccessToken>,
    ) -> Result<Option<MembershipChange>> {
        let user = token.user();
        let remote = &self.remote;
        let list = match self
            .authed(token, move |t| async move { remote.memberships(&t).await })
            .await
        {
            Ok(list) => list,
            Err(SyncError::Unsupported { .. }) => return Ok(None),
            // A server without the function (an older cloud schema) must not stop the pull.
            Err(SyncError::Permanent { message, .. }) => {
                tracing::warn!(%message, "the remote refused memberships: not tracking them");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut venues: Vec<&str> = list.iter().map(|m| m.venue_id.as_str()).collect();
        venues.sort_unstable();
        venues.dedup();
        let snapshot = serde_json::to_string(&venues)
            .map_err(|e| SyncError::protocol(format!("memberships: {e}")))?;
        let before = self.local.membership_snapshot(user).await?;
        let kept_before = before
            .as_deref()
            .and_then(|b| b.strip_suffix(KEPT_MARK))
            .is_some_and(|b| b == snapshot);
        let changed = match before {
            // The last re-pull kept rows for pending ops: once no op is left, re-pull again
            // so rows of venues the user left that were kept go too.
            Some(before) if before.strip_suffix(KEPT_MARK) == Some(snapshot.as_str()) => {
                self.local.counts().await? == (0, 0)
            }
            Some(before) => before != snapshot,
            // Never recorded (a device's first pull): every pull of this cycle happens
            // under at least this set, so it is recorded now.
            None => {
                self.local.set_membership_snapshot(user, &snapshot).await?;
                false
            }
        };
        Ok(Some(MembershipChange {
            snapshot,
            changed,
            kept_before,
        }))
    }

    /// One page of `table` after `cursor` (refreshing the token once after a 401).
    async fn fetch_page(
        &self,
        token: &mut Arc<AccessToken>,
        table: &str,
        cursor: Option<String>,
        watermark: &Watermark,
    ) -> Result<PullPage> {
        let request = PullRequest {
            table: table.to_string(),
            cursor,
            limit: self.config.page_size,
            watermark: watermark.clone(),
        };
        let remote = &self.remote;
        let req = &request;
        self.authed(token, move |t| async move { remote.pull(&t, req).await })
            .await
    }

    async fn push(&self, token: &mut Arc<AccessToken>) -> Result<PushReport> {
        let span = tracing::info_span!("push", user = %token.user());
        let result = self.push_inner(token).instrument(span).await;
        if result.is_ok() {
            self.status
                .send_modify(|s| s.last_push = Some(chrono::Utc::now()));
        }
        result
    }

    async fn push_inner(&self, token: &mut Arc<AccessToken>) -> Result<PushReport> {
        self.set_phase(Phase::Pushing);
        let user = token.user();
        self.local.adopt_anonymous(user).await?;
        let mut report = PushReport::default();
        let mut seen: HashSet<(OpId, Hlc)> = HashSet::new();
        let remote = &self.remote;
        // Ops are read several batches at a time (ordering the outbox costs a sort of all
        // of it), then pushed batch by batch in that order.
        let batch_size = self.config.batch_size.max(1);
        let mut queue: std::collections::VecDeque<PendingOp> = std::collections::VecDeque::new();
        loop {
            if queue.is_empty() {
                queue = self
                    .local
                    .next_push_batch(user, batch_size.saturating_mul(20), now_ms())
                    .await?
                    .into_iter()
                    .filter(|o| !seen.contains(&(o.id, o.hlc)))
                    .collect();
            }
            let ops: Vec<PendingOp> = queue.drain(..queue.len().min(batch_size)).collect();
            if ops.is_empty() {
                break;
            }
            seen.extend(ops.iter().map(|o| (o.id, o.hlc)));
            let rows = self.local.read_push_rows(&ops).await?;
            if rows.is_empty() {
                continue;
            }
            let changes: Vec<Change> = rows
                .iter()
                .map(|r| Change {
                    table: r.op.table.clone(),
                    key: r.op.key.clone(),
                    hlc: r.hlc,
                    op: r.op.kind,
                    row: r.row.clone(),
                })
                .collect();
            report.batches += 1;
            report.sent += changes.len() as u64;
            let batch = &changes;
            let answer = self
                .authed(token, move |t| async move { remote.push(&t, batch).await })
                .await;
            let outcomes = match answer {
                Ok(outcomes) if outcomes.len() == changes.len() => outcomes,
                Ok(outcomes) => {
                    let e = SyncError::protocol(format!(
                        "{} outcomes for {} changes",
                        outcomes.len(),
                        changes.len()
                    ));
                    self.schedule_retry(&rows, &e).await?;
                    return Err(e);
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, ops = rows.len(), "push failed, backing off");
                    self.schedule_retry(&rows, &e).await?;
                    return Err(e);
                }
                Err(SyncError::Permanent { message, .. }) => {
                    let settle: Vec<Settlement> = rows
                        .iter()
                        .map(|r| Settlement::Rejected {
                            id: r.op.id,
                            table: r.op.table.clone(),
                            key: r.op.key.clone(),
                            hlc: r.hlc,
                            reason: format!("request refused: {message}"),
                        })
                        .collect();
                    let settled = self.local.settle_push(&settle).await?;
                    report.rejected += settled.rejected;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut settle = Vec::with_capacity(rows.len());
            let mut skewed: Option<String> = None;
            for (r, o) in rows.iter().zip(outcomes) {
                settle.push(match o.outcome {
                    Outcome::Applied => Settlement::Applied {
                        id: r.op.id,
                        table: r.op.table.clone(),
                        key: r.op.key.clone(),
                        hlc: r.hlc,
                    },
                    Outcome::Superseded { hlc, deleted, row } => Settlement::Superseded {
                        id: r.op.id,
                        hlc: r.hlc,
                        table: r.op.table.clone(),
                        remote: PulledRow {
                            key: r.op.key.clone(),
                            hlc,
                            deleted,
                            row,
                        },
                    },
                    // The server found the stamp too far ahead of its clock: this device's
                    // clock is ahead. Not a permanent refusal: the op stays pending and is
                    // retried on the backoff (shown in `pending_errors()` and the status
                    // meanwhile); it goes through once the server's clock is within its skew
                    // of the stamp.
                    Outcome::Rejected {
                        reason,
                        code: RejectCode::ClockSkew,
                    } => {
                        tracing::warn!(op = %r.op.id, table = %r.op.table, key = %r.op.key, %reason, "stamp ahead of the server clock: retrying later");
                        let delay = self.backoff(r.op.attempts.saturating_add(1));
                        skewed = Some(format!("clock_skew: {reason}"));
                        Settlement::Retry {
                            id: r.op.id,
                            table: r.op.table.clone(),
                            key: r.op.key.clone(),
                            hlc: r.hlc,
                            error: format!("clock_skew: {reason}"),
                            next_retry_ms: now_ms().saturating_add(
                                i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                            ),
                        }
                    }
                    Outcome::Rejected { reason, code } => {
                        tracing::warn!(op = %r.op.id, table = %r.op.table, key = %r.op.key, code = code.as_str(), %reason, "op rejected");
                        Settlement::Rejected {
                            id: r.op.id,
                            table: r.op.table.clone(),
                            key: r.op.key.clone(),
                            hlc: r.hlc,
                            reason: format!("{}: {reason}", code.as_str()),
                        }
                    }
                });
            }
            // A delete of ours lost to a newer upsert: the record is back, and children of it
            // that earlier pulls skipped (their parent was missing here) must be pulled again.
            let mut revived: Vec<String> = Vec::new();
            for (r, s) in rows.iter().zip(&settle) {
                if let Settlement::Superseded { remote, .. } = s {
                    if r.op.kind == luma_model::OpKind::Delete
                        && !remote.deleted
                        && !revived.contains(&r.op.table)
                    {
                        revived.push(r.op.table.clone());
                    }
                }
            }
            let settled = self.local.settle_push(&settle).await?;
            if !revived.is_empty() {
                let specs = self.local.synced_tables()?;
                let stale = descendants(&specs, &revived);
                let names: Vec<&str> = stale.iter().map(String::as_str).collect();
                self.local.reset_cursors(user, &names).await?;
            }
            if let Some(text) = skewed {
                report.clock_skew_error = Some(text);
            }
            report.applied += settled.completed;
            report.superseded += settled.applied.superseded.len() as u64;
            report.rejected += settled.rejected;
            self.notify(&settled.applied.changed_tables);
            let done = report.sent;
            self.status
                .send_modify(|s| s.progress = Some(Progress { table: None, done }));
        }
        Ok(report)
    }

    async fn schedule_retry(&self, rows: &[luma_store::PushRow], error: &SyncError) -> Result<()> {
        let now = now_ms();
        let settle: Vec<Settlement> = rows
            .iter()
            .map(|r| {
                // At least as long as the server asked for (`Retry-After`).
                let delay = self
                    .backoff(r.op.attempts.saturating_add(1))
                    .max(error.retry_after().unwrap_or_default());
                Settlement::Retry {
                    id: r.op.id,
                    table: r.op.table.clone(),
                    key: r.op.key.clone(),
                    hlc: r.hlc,
                    error: error.to_string(),
                    next_retry_ms: now
                        .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
                }
            })
            .collect();
        self.local.settle_push(&settle).await?;
        Ok(())
    }

    /// The background loop.
    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut local_changes = self.local.subscribe();
        local_changes.borrow_and_update();
        let mut next_pull = tokio::time::Instant::now();
        let mut pull_failures: u32 = 0;
        loop {
            if *stop.borrow() {
                break;
            }
            let now = tokio::time::Instant::now();
            if now >= next_pull {
                let result = {
                    let _step = self.step.lock().await;
                    self.cycle().await
                };
                match result {
                    Ok(_) => {
                        pull_failures = 0;
                        next_pull = now + self.config.pull_interval;
                    }
                    Err(e) => {
                        pull_failures = pull_failures.saturating_add(1);
                        let wait = if e.is_retryable() {
                            self.backoff(pull_failures)
                                .max(e.retry_after().unwrap_or_default())
                        } else {
                            self.config.pull_interval
                        };
                        tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "sync cycle failed");
                        next_pull = tokio::time::Instant::now() + wait;
                    }
                }
            } else {
                let result = {
                    let _step = self.step.lock().await;
                    let r = async {
                        let mut token = self.tokens.token().await?;
                        self.push(&mut token).await
                    }
                    .await;
                    self.note_result(&r);
                    self.set_phase(Phase::Idle);
                    self.refresh_counts().await;
                    r
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "push failed");
                }
            }
            // Sleep until the next pull, the next op retry, a local change or shutdown.
            let mut wake = next_pull;
            let retry_user = self.status.borrow().user;
            if let Some(user) = retry_user {
                if let Ok(Some(ms)) = self.local.next_retry_ms(user).await {
                    let in_ms = u64::try_from(ms.saturating_sub(now_ms())).unwrap_or(0);
                    let at = tokio::time::Instant::now() + Duration::from_millis(in_ms);
                    if at < wake {
                        wake = at;
                    }
                }
            }
            tokio::select! {
                _ = stop.changed() => break,
                changed = local_changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    tokio::time::sleep(self.config.debounce).await;
                    local_changes.borrow_and_update();
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        self.set_phase(Phase::Stopped);
    }
}

/// Tables below any of `roots` (not the roots themselves), from parents-first `specs`.
/// Appended to a stored membership snapshot whose re-pull kept rows for pending ops.
const KEPT_MARK: &str = "|kept";

/// The user's venues as the remote reported them, and whether they changed since the last
/// complete pull.
struct MembershipChange {
    /// Sorted venue ids as JSON text (what the store keeps).
    snapshot: String,
    changed: bool,
    /// The stored snapshot carries [`KEPT_MARK`] for this same set.
    kept_before: bool,
}

/// Tables whose rows a user sees through venue membership: the venues, rows in a venue, and
/// their descendants.
fn venue_scoped_tables(specs: &[luma_model::TableSpec]) -> Vec<String> {
    let roots: Vec<String> = specs
        .iter()
        .filter(|s| {
            matches!(
                s.scope,
                luma_model::Scope::Venue | luma_model::Scope::InVenue { .. }
            )
        })
        .map(|s| s.name.to_string())
        .collect();
    let mut out = roots.clone();
    out.extend(descendants(specs, &roots));
    out
}

fn descendants(specs: &[luma_model::TableSpec], roots: &[String]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for s in specs {
        if roots.iter().any(|r| r == s.name) {
            continue;
        }
        if s.parents
            .iter()
            .any(|p| roots.iter().any(|r| r == p.table) || found.iter().any(|f| f == p.table))
        {
            found.push(s.name.to_string());
        }
    }
    found
}

fn merge_apply(mut a: ApplyReport, b: ApplyReport) -> ApplyReport {
    a.parked += b.parked;
    a.unparked += b.unparked;
    a.upserted += b.upserted;
    a.deleted += b.deleted;
    a.skipped_missing_parent += b.skipped_missing_parent;
    a.skipped_conflict += b.skipped_conflict;
    a.confirmed += b.confirmed;
    a.superseded.extend(b.superseded);
    a.orphaned.extend(b.orphaned);
    for t in b.changed_tables {
        if !a.changed_tables.contains(&t) {
            a.changed_tables.push(t);
        }
    }
    a
}
