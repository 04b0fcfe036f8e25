//! A conformance suite of the [`Remote`] contract (feature `testing`): one set of checks that
//! every remote must pass (MemoryRemote, PostgresRemote, later the Supabase remote).
//!
//! A remote is driven through a [`Harness`], which also does what the contract leaves to the
//! server's administration (signing users in, adding venue members, purging tombstones) and
//! knows when a finished write is pullable ([`Harness::settled_watermark`]: on PostgreSQL a
//! row becomes pullable only once every older transaction of the cluster has finished).
//!
//! Every check uses fresh ids, so checks may share one server. A check answers
//! `Err(`[`Failure`]`)` with what differed.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use luma_sync::conformance::{check_all, MemoryHarness};
//! check_all(&MemoryHarness::default()).await?;
//! # Ok::<(), luma_sync::conformance::Failure>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use luma_model::{Hlc, OpKind, RecordKey, Row, SiteId, UserId};
use serde_json::{json, Value};
use thiserror::Error;

use crate::error::SyncError;
use crate::memory::MemoryRemote;
use crate::remote::{
    Change, ChangeOutcome, Outcome, PullRequest, RejectCode, Remote, RemoteRow, Watermark,
};
use crate::token::AccessToken;

/// A failed conformance check.
#[derive(Debug, Error)]
pub enum Failure {
    /// The remote broke the contract.
    #[error("contract broken: {0}")]
    Contract(String),
    /// A call failed where the contract expects an answer.
    #[error("remote call failed: {0}")]
    Remote(#[from] SyncError),
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(Failure::Contract(format!($($arg)+)));
        }
    };
}

/// What a remote supports beyond the core contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Tombstones can be purged ([`Harness::purge_tombstones`]) and an older cursor then answers
    /// `resync_required`.
    pub purge: bool,
    /// Members can be removed ([`Harness::remove_member`]).
    pub remove_member: bool,
}

/// Drives one remote for the checks.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The remote under test.
    type R: Remote;
    /// The remote.
    fn remote(&self) -> &Self::R;
    /// What the remote supports.
    fn capabilities(&self) -> Capabilities;
    /// A valid token for `user`.
    async fn sign_in(&self, user: UserId) -> AccessToken;
    /// Makes `user` a member of `venue` (as joining by share code does).
    async fn add_member(&self, venue: &str, user: UserId);
    /// Removes `user` from `venue` (only called when [`Capabilities::remove_member`]).
    async fn remove_member(&self, venue: &str, user: UserId);
    /// Purges every tombstone written so far (only called when [`Capabilities::purge`]).
    async fn purge_tombstones(&self);
    /// A watermark at or above every write that finished before this call.
    async fn settled_watermark(&self, token: &AccessToken) -> Watermark;
}

/// The harness of a [`MemoryRemote`].
#[derive(Debug, Clone, Default)]
pub struct MemoryHarness {
    /// The remote.
    pub remote: MemoryRemote,
}

#[async_trait]
impl Harness for MemoryHarness {
    type R = MemoryRemote;
    fn remote(&self) -> &MemoryRemote {
        &self.remote
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            purge: true,
            remove_member: true,
        }
    }
    async fn sign_in(&self, user: UserId) -> AccessToken {
        self.remote.issue_token(user)
    }
    async fn add_member(&self, venue: &str, user: UserId) {
        self.remote.add_member(venue, user);
    }
    async fn remove_member(&self, venue: &str, user: UserId) {
        self.remote.remove_member(venue, user);
    }
    async fn purge_tombstones(&self) {
        self.remote.purge_tombstones();
    }
    async fn settled_watermark(&self, token: &AccessToken) -> Watermark {
        match self.remote.watermark(token).await {
            Ok(w) => w,
            Err(_) => Watermark("0".into()),
        }
    }
}

/// Runs every check.
pub async fn check_all<H: Harness>(h: &H) -> Result<(), Failure> {
    check_unauthorized(h).await?;
    check_push_outcomes(h).await?;
    check_idempotent_resend(h).await?;
    check_equal_stamps(h).await?;
    check_delete_of_unknown_key(h).await?;
    check_rejections_do_not_stop_the_batch(h).await?;
    check_tombstones_and_cascade(h).await?;
    check_pull_paging(h).await?;
    check_visibility(h).await?;
    check_clock_skew(h).await?;
    check_via_score_visibility(h).await?;
    check_invalid_values(h).await?;
    check_malformed_watermark_and_cursor(h).await?;
    if h.capabilities().remove_member {
        check_removed_member_loses_access(h).await?;
    }
    if h.capabilities().purge {
        check_resync_after_purge(h).await?;
        check_resync_pass_served_to_its_end(h).await?;
    }
    Ok(())
}

// ---- rows --------------------------------------------------------------------------------

const TS: &str = "2026-01-01T00:00:00Z";

fn hlc(ms: u64) -> Hlc {
    Hlc::new(1_700_000_000_000 + ms, 0, SiteId(0xc0f))
}

fn obj(v: Value) -> Row {
    match v {
        Value::Object(m) => m,
        _ => Row::new(),
    }
}

fn new_id() -> String {
    UserId::new().to_string()
}

fn venue_row(id: &str, owner: UserId, name: &str) -> Row {
    obj(
        json!({"id": id, "uid": owner.to_string(), "name": name, "description": "",
               "share_code": null, "created_at": TS, "updated_at": TS}),
    )
}

fn fixture_row(id: &str, venue: &str, address: i64) -> Row {
    obj(
        json!({"id": id, "venue_id": venue, "universe": 1, "address": address, "num_channels": 4,
               "manufacturer": "Acme", "model": "Par", "mode_name": "4ch", "label": null,
               "pos_x": 0.5, "pos_y": 0.0, "pos_z": 2.0, "rot_x": 0.0, "rot_y": 0.0, "rot_z": 0.0}),
    )
}

fn pattern_row(id: &str, owner: UserId, verified: bool) -> Row {
    obj(
        json!({"id": id, "uid": owner.to_string(), "name": "Chase", "description": "",
               "category": null, "is_verified": verified, "author_name": null,
               "forked_from_id": null, "created_at": TS, "updated_at": TS}),
    )
}

fn track_row(id: &str, owner: UserId) -> Row {
    obj(
        json!({"id": id, "uid": owner.to_string(), "track_hash": null, "title": "Song",
               "artist": null, "album": null, "track_number": null, "disc_number": null,
               "duration_seconds": 180.0, "bpm": 120.0, "key": null, "album_art_mime": null,
               "album_art_ref": null, "created_at": TS, "updated_at": TS}),
    )
}

fn score_row(id: &str, owner: UserId, track: &str, venue: &str) -> Row {
    obj(
        json!({"id": id, "uid": owner.to_string(), "track_id": track, "venue_id": venue,
               "name": "Show", "created_at": TS, "updated_at": TS}),
    )
}

fn track_score_row(id: &str, score: &str, pattern: &str) -> Row {
    obj(
        json!({"id": id, "score_id": score, "pattern_id": pattern, "start_time": 0.0,
               "end_time": 4.0, "z_index": 0, "blend_mode": "replace", "args": {}}),
    )
}

fn group_row(id: &str, venue: &str, name: &str) -> Row {
    obj(
        json!({"id": id, "venue_id": venue, "name": name, "axis_lr": null, "axis_fb": null,
               "axis_ab": null, "display_order": 0, "tags": ["front"], "movement_config": null}),
    )
}

/// A stamp `ahead_ms` ahead of this machine's wall clock.
fn stamp_ahead(ahead_ms: u64, counter: u32) -> Hlc {
    Hlc::new(
        luma_model::wall_clock_ms().saturating_add(ahead_ms),
        counter,
        SiteId(0xc0f),
    )
}

fn code_of(o: &ChangeOutcome) -> Option<RejectCode> {
    match &o.outcome {
        Outcome::Rejected { code, .. } => Some(*code),
        _ => None,
    }
}

fn up(table: &str, key: &str, stamp: Hlc, row: Row) -> Change {
    Change {
        table: table.into(),
        key: RecordKey::from_canonical(key),
        hlc: stamp,
        op: OpKind::Upsert,
        row: Some(row),
    }
}

fn del(table: &str, key: &str, stamp: Hlc) -> Change {
    Change {
        table: table.into(),
        key: RecordKey::from_canonical(key),
        hlc: stamp,
        op: OpKind::Delete,
        row: None,
    }
}

async fn push<H: Harness>(
    h: &H,
    t: &AccessToken,
    changes: Vec<Change>,
) -> Result<Vec<ChangeOutcome>, Failure> {
    let out = h.remote().push(t, &changes).await?;
    ensure!(
        out.len() == changes.len(),
        "{} outcomes for {} changes",
        out.len(),
        changes.len()
    );
    for (o, c) in out.iter().zip(&changes) {
        ensure!(
            o.table == c.table && o.key == c.key,
            "outcome {o:?} out of order (expected {} {})",
            c.table,
            c.key
        );
    }
    Ok(out)
}

fn applied(out: &[ChangeOutcome]) -> Result<(), Failure> {
    for o in out {
        ensure!(o.outcome == Outcome::Applied, "expected applied: {o:?}");
    }
    Ok(())
}

/// Pulls a whole table for one settled watermark from `cursor`, `limit` rows a page; checks
/// that no row comes twice and that pages follow the contract.
async fn pull_all<H: Harness>(
    h: &H,
    t: &AccessToken,
    table: &str,
    mut cursor: Option<String>,
    limit: u32,
) -> Result<(Vec<RemoteRow>, Option<String>), Failure> {
    let watermark = h.settled_watermark(t).await;
    let mut rows: Vec<RemoteRow> = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..10_000 {
        let page = h
            .remote()
            .pull(
                t,
                &PullRequest {
                    table: table.into(),
                    cursor: cursor.clone(),
                    limit,
                    watermark: watermark.clone(),
                },
            )
            .await?;
        ensure!(!page.resync_required, "unexpected resync_required");
        ensure!(
            page.rows.len() <= usize::try_from(limit).unwrap_or(usize::MAX),
            "a page of {} rows for limit {limit}",
            page.rows.len()
        );
        for r in page.rows {
            ensure!(
                seen.insert(r.key.clone()),
                "{table} {} returned twice in one cycle",
                r.key
            );
            ensure!(
                r.deleted == r.row.is_none(),
                "{table} {}: deleted={} but row={:?}",
                r.key,
                r.deleted,
                r.row
            );
            rows.push(r);
        }
        if page.cursor.is_some() {
            cursor = page.cursor;
        }
        if !page.has_more {
            return Ok((rows, cursor));
        }
    }
    Err(Failure::Contract(format!("{table}: has_more never ended")))
}

fn by_key(rows: &[RemoteRow]) -> BTreeMap<String, RemoteRow> {
    rows.iter()
        .map(|r| (r.key.as_str().to_owned(), r.clone()))
        .collect()
}

async fn state_of<H: Harness>(
    h: &H,
    t: &AccessToken,
    table: &str,
    key: &str,
) -> Result<Option<RemoteRow>, Failure> {
    let (rows, _) = pull_all(h, t, table, None, 500).await?;
    Ok(by_key(&rows).remove(key))
}

// ---- checks ------------------------------------------------------------------------------

/// A token the remote never issued answers `Unauthorized`.
pub async fn check_unauthorized<H: Harness>(h: &H) -> Result<(), Failure> {
    let bogus = AccessToken::new(UserId::new(), "not-a-token");
    let err = h.remote().watermark(&bogus).await;
    ensure!(
        matches!(err, Err(SyncError::Unauthorized { .. })),
        "a bogus token answered {err:?}"
    );
    let err = h.remote().push(&bogus, &[]).await;
    ensure!(
        matches!(err, Err(SyncError::Unauthorized { .. })),
        "push with a bogus token answered {err:?}"
    );
    Ok(())
}

/// Applied, then a newer write applied, then an older write superseded with the server's
/// state; the pull shows the newest write.
pub async fn check_push_outcomes<H: Harness>(h: &H) -> Result<(), Failure> {
    let a = UserId::new();
    let t = h.sign_in(a).await;
    let (v, f) = (new_id(), new_id());
    applied(
        &push(
            h,
            &t,
            vec![
                up("venues", &v, hlc(1), venue_row(&v, a, "Club")),
                up("fixtures", &f, hlc(2), fixture_row(&f, &v, 10)),
            ],
        )
        .await?,
    )?;
    applied(
        &push(
            h,
            &t,
            vec![up("fixtures", &f, hlc(5), fixture_row(&f, &v, 20))],
        )
        .await?,
    )?;
    let out = push(
        h,
        &t,
        vec![up("fixtures", &f, hlc(3), fixture_row(&f, &v, 30))],
    )
    .await?;
    ensure!(
        out[0].outcome
            == Outcome::Superseded {
                hlc: hlc(5),
                deleted: false,
                row: Some(fixture_row(&f, &v, 20)),
            },
        "an older write answered {:?}",
        out[0].outcome
    );
    let state = state_of(h, &t, "fixtures", &f).await?;
    ensure!(
        state.as_ref().map(|r| (r.hlc, r.row.clone()))
            == Some((hlc(5), Some(fixture_row(&f, &v, 20)))),
        "the server state is {state:?}"
    );
    // A delete is a write: an older upsert after it is superseded by the tombstone.
    applied(&push(h, &t, vec![del("fixtures", &f, hlc(7))]).await?)?;
    let out = push(
        h,
        &t,
        vec![up("fixtures", &f, hlc(6), fixture_row(&f, &v, 40))],
    )
    .await?;
    ensure!(
        out[0].outcome
            == Outcome::Superseded {
                hlc: hlc(7),
                deleted: true,
                row: None
            },
        "an upsert older than a tombstone answered {:?}",
        out[0].outcome
    );
    // A delete of a key the server never had is applied.
    let ghost = new_id();
    applied(&push(h, &t, vec![del("fixtures", &ghost, hlc(8))]).await?)?;
    Ok(())
}

/// Re-sending a batch answers applied and changes nothing (no new pullable version).
pub async fn check_idempotent_resend<H: Harness>(h: &H) -> Result<(), Failure> {
    let a = UserId::new();
    let t = h.sign_in(a).await;
    let (v, f, g) = (new_id(), new_id(), new_id());
    let first = vec![
        up("venues", &v, hlc(1), venue_row(&v, a, "Club")),
        up("fixtures", &f, hlc(2), fixture_row(&f, &v, 10)),
        up("fixtures", &g, hlc(2), fixture_row(&g, &v, 11)),
    ];
    let second = vec![del("fixtures", &g, hlc(3))];
    applied(&push(h, &t, first.clone()).await?)?;
    applied(&push(h, &t, second.clone()).await?)?;
    let (_, cursor) = pull_all(h, &t, "fixtures", None, 100).await?;
    applied(&push(h, &t, second).await?)?;
    let out = push(h, &t, first).await?;
    applied(&out[..2])?;
    ensure!(
        out[2].outcome
            == Outcome::Superseded {
                hlc: hlc(3),
                deleted: true,
                row: None
            },
        "a resent upsert older than the tombstone answered {:?}",
        out[2].outcome
    );
    let (rows, _) = pull_all(h, &t, "fixtures", cursor, 100).await?;
    ensure!(rows.is_empty(), "a resend created new versions: {rows:?}");
    Ok(())
}

/// Stamps identify writes: a change with the stamp the server already holds is a resend and
/// answers applied without changing anything, whatever its op (PostgreSQL's behaviour).
pub async fn check_equal_stamps<H: Harness>(h: &H) -> Result<(), Failure> {
    let a = UserId::new();
    let t = h.sign_in(a).await;
    let v = new_id();
    applied(
        &push(
            h,
            &t,
            vec![up("venues", &v, hlc(1), venue_row(&v, a, "Club"))],
        )
        .await?,
    )?;
    let out = push(h, &t, vec![del("venues", &v, hlc(1))]).await?;
    ensure!(
        out[0].outcome == Outcome::Applied,
        "equal stamp: {:?}",
        out[0]
    );
    let state = state_of(h, &t, "venues", &v).await?;
    ensure!(
        state
            .as_ref()
            .is_some_and(|r| !r.deleted && r.hlc == hlc(1)),
        "a change with an equal stamp changed the server: {state:?}"
    );
    Ok(())
}

/// A delete of a key the server never had is kept: an older write of that key pushed later
/// (by another device of the same user) is answered superseded by the delete, a newer one
/// applies; a resend of the delete is applied. It does not affect another user's write of the
/// key. Checked for a single upsert and for a run of upserts (the batch path).
pub async fn check_delete_of_unknown_key<H: Harness>(h: &H) -> Result<(), Failure> {
    let a = UserId::new();
    let b = UserId::new();
    let ta = h.sign_in(a).await;
    let tb = h.sign_in(b).await;
    let (v, w, x) = (new_id(), new_id(), new_id());
    applied(
        &push(
            h,
            &ta,
            vec![del("venues", &v, hlc(5)), del("venues", &w, hlc(5))],
        )
        .await?,
    )?;
    applied(&push(h, &ta, vec![del("venues", &v, hlc(5))]).await?)?;
    let gone = Outcome::Superseded {
        hlc: hlc(5),
        deleted: true,
        row: None,
    };
    let out = push(
        h,
        &ta,
        vec![up("venues", &v, hlc(3), venue_row(&v, a, "Club"))],
    )
    .await?;
    ensure!(
        out[0].outcome == gone,
        "an upsert older than a kept delete answered {:?}",
        out[0].outcome
    );
    let out = push(
        h,
        &ta,
        vec![
            up("venues", &x, hlc(3), venue_row(&x, a, "Bar")),
            up("venues", &w, hlc(3), venue_row(&w, a, "Hall")),
        ],
    )
    .await?;
    ensure!(
        out[0].outcome == Outcome::Applied && out[1].outcome == gone,
        "a run of upserts with a kept delete answered {out:?}"
    );
    let state = state_of(h, &ta, "venues", &v).await?;
    ensure!(
        state.as_ref().is_none_or(|r| r.deleted),
        "the older upsert was written: {state:?}"
    );
    applied(
        &push(
            h,
            &ta,
            vec![up("venues", &v, hlc(7), venue_row(&v, a, "Club"))],
        )
        .await?,
    )?;
    let state = state_of(h, &ta, "venues", &v).await?;
    ensure!(
        state
            .as_ref()
            .is_some_and(|r| !r.deleted && r.hlc == hlc(7)),
        "a newer upsert after a kept delete: {state:?}"
    );
    // Another user's kept delete of a key is no concern of this user.
    let y = new_id();
    applied(&push(h, &tb, vec![del("venues", &y, hlc(9))]).await?)?;
    applied(
        &push(
            h,
            &ta,
            vec![up("venues", &y, hlc(3), venue_row(&y, a, "Club"))],
        )
        .await?,
    )?;
    Ok(())
}

/// A refused change is rejected with its code; the others of the batch still apply.
pub async fn check_rejections_do_not_stop_the_batch<H: Harness>(h: &H) -> Result<(), Failure> {
    let a = UserId::new();
    let b = UserId::new();
    let (ta, tb) = (h.sign_in(a).await, h.sign_in(b).await);
    let (v, f, orphan, vb) = (new_id(), new_id(), new_id(), new_id());
    applied(
        &push(
            h,
            &ta,
            vec![up("venues", &v, hlc(1), venue_row(&v, a, "A's"))],
        )
        .await?,
    )?;
    let out = push(
        h,
        &tb,
        vec![
            up(
                "fixtures",
                &orphan,
                hlc(2),
                fixture_row(&orphan, &new_id(), 1),
            ),
            up("venues", &v, hlc(3), venue_row(&v, b, "stolen")),
            up("venues", &vb, hlc(2), venue_row(&vb, a, "forged owner")),
            up(
                "venues",
                &new_id(),
                hlc(2),
                venue_row(&new_id(), b, "key mismatch"),
            ),
            up("fixtures", &f, hlc(2), fixture_row(&f, &v, 1)),
        ],
    )
    .await?;
    let codes: Vec<Option<RejectCode>> = out
        .iter()
        .map(|o| match &o.outcome {
            Outcome::Rejected { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    ensure!(
        codes
            == vec![
                Some(RejectCode::MissingParent),
                Some(RejectCode::Forbidden),
                Some(RejectCode::Forbidden),
                Some(RejectCode::Invalid),
                Some(RejectCode::MissingParent),
            ],
        "codes {codes:?} ({out:?})"
    );
    let vb_ok = Change {
        row: Some(venue_row(&vb, b, "B's")),
        ..up("venues", &vb, hlc(4), Row::new())
    };
    let out = push(
        h,
        &tb,
        vec![
            up(
                "fixtures",
                &orphan,
                hlc(4),
                fixture_row(&orphan, &new_id(), 1),
            ),
            vb_ok,
        ],
    )
    .await?;
    ensure!(
        matches!(out[0].outcome, Outcome::Rejected { .. }) && out[1].outcome == Outcome::Applied,
        "a rejected change stopped the batch: {out:?}"
    );
    let state = state_of(h, &ta, "venues", &v).await?;
    ensure!(
        state
            .and_then(|r| r.row)
            .and_then(|r| r.get("name").cloned())
            == Some(json!("A's")),
        "B changed A's venue"
    );
    Ok(())
}

/// A parent delete tombstones its children with the parent's stamp or their own, whichever is
/// newer; a child upsert under a tombstoned parent is `missing_parent`; a newer upsert revives
/// the parent only.
pub async fn check_tombstones_and_cascade<H: Harness>(h: &H) -> Result<(), Failure> {
    let a = UserId::new();
    let t = h.sign_in(a).await;
    let (v, f1, f2) = (new_id(), new_id(), new_id());
    applied(
        &push(
            h,
            &t,
            vec![
                up("venues", &v, hlc(1), venue_row(&v, a, "Club")),
                up("fixtures", &f1, hlc(2), fixture_row(&f1, &v, 1)),
                up("fixtures", &f2, hlc(9), fixture_row(&f2, &v, 2)),
            ],
        )
        .await?,
    )?;
    applied(&push(h, &t, vec![del("venues", &v, hlc(5))]).await?)?;
    let (rows, _) = pull_all(h, &t, "fixtures", None, 100).await?;
    let rows = by_key(&rows);
    // Each child's tombstone carries the parent's stamp or the child's own, whichever is
    // newer: a device holding f2 (written after the delete) must apply it.
    for (f, stamp) in [(&f1, hlc(5)), (&f2, hlc(9))] {
        let r = rows.get(f.as_str());
        ensure!(
            r.is_some_and(|r| r.deleted && r.hlc == stamp),
            "a child of a deleted parent is {r:?} (expected a tombstone stamped {stamp})"
        );
    }
    let out = push(h, &t, vec![up("fixtures", &new_id(), hlc(6), Row::new())]).await?;
    ensure!(
        matches!(out[0].outcome, Outcome::Rejected { .. }),
        "an empty row was accepted: {out:?}"
    );
    let f3 = new_id();
    let out = push(
        h,
        &t,
        vec![up("fixtures", &f3, hlc(6), fixture_row(&f3, &v, 3))],
    )
    .await?;
    ensure!(
        matches!(
            out[0].outcome,
            Outcome::Rejected {
                code: RejectCode::MissingParent,
                ..
            }
        ),
        "a child under a tombstoned parent answered {:?}",
        out[0].outcome
    );
    applied(
        &push(
            h,
            &t,
            vec![up("venues", &v, hlc(10), venue_row(&v, a, "Back"))],
        )
        .await?,
    )?;
    let venue = state_of(h, &t, "venues", &v).await?;
    ensure!(
        venue.is_some_and(|r| !r.deleted && r.hlc == hlc(10)),
        "a newer upsert did not revive the venue"
    );
    let fx = state_of(h, &t, "fixtures", &f1).await?;
    ensure!(
        fx.is_some_and(|r| r.deleted),
        "a child came back with its parent"
    );
    Ok(())
}

/// Paging: a small limit never skips or repeats a row; a cursor resumes exactly after the
/// rows already seen; a row changed twice comes once with its newest state.
pub async fn check_pull_paging<H: Harness>(h: &H) -> Result<(), Failure> {
    let a = UserId::new();
    let t = h.sign_in(a).await;
    let v = new_id();
    let ids: Vec<String> = (0..25).map(|_| new_id()).collect();
    applied(
        &push(
            h,
            &t,
            vec![up("venues", &v, hlc(1), venue_row(&v, a, "Club"))],
        )
        .await?,
    )?;
    for (n, chunk) in ids.chunks(6).enumerate() {
        let base = u64::try_from(n).unwrap_or(0) * 10;
        let batch = chunk
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let addr = i64::try_from(i).unwrap_or(0) + 1;
                up("fixtures", f, hlc(2 + base), fixture_row(f, &v, addr))
            })
            .collect();
        applied(&push(h, &t, batch).await?)?;
    }
    let (rows, cursor) = pull_all(h, &t, "fixtures", None, 7).await?;
    let got: BTreeSet<String> = rows.iter().map(|r| r.key.as_str().to_owned()).collect();
    let want: BTreeSet<String> = ids.iter().cloned().collect();
    ensure!(got == want, "paged pull returned {} of 25 rows", got.len());
    ensure!(cursor.is_some(), "no cursor after a non-empty pull");

    // Nothing new: the cursor answers nothing.
    let (rows, cursor) = pull_all(h, &t, "fixtures", cursor, 7).await?;
    ensure!(
        rows.is_empty(),
        "an idle cursor returned {} rows",
        rows.len()
    );

    // Five rows changed twice: each comes once, newest state.
    for round in [100u64, 200] {
        let batch = ids[..5]
            .iter()
            .map(|f| {
                let addr = i64::try_from(round).unwrap_or(0);
                up("fixtures", f, hlc(round), fixture_row(f, &v, addr))
            })
            .collect();
        applied(&push(h, &t, batch).await?)?;
    }
    let (rows, _) = pull_all(h, &t, "fixtures", cursor, 2).await?;
    ensure!(
        rows.len() == 5,
        "expected the 5 changed rows, got {}",
        rows.len()
    );
    for r in &rows {
        ensure!(
            r.hlc == hlc(200) && r.row.as_ref().and_then(|x| x.get("address")) == Some(&json!(200)),
            "a changed row came with an old state: {r:?}"
        );
    }
    Ok(())
}

/// Visibility per user: another user sees nothing of A's venue until a member; a member reads
/// and edits the venue's fixtures but cannot delete the venue; verified patterns are public.
pub async fn check_visibility<H: Harness>(h: &H) -> Result<(), Failure> {
    let (a, b) = (UserId::new(), UserId::new());
    let (ta, tb) = (h.sign_in(a).await, h.sign_in(b).await);
    let (v, f, p_priv, p_pub) = (new_id(), new_id(), new_id(), new_id());
    applied(
        &push(
            h,
            &ta,
            vec![
                up("venues", &v, hlc(1), venue_row(&v, a, "Club")),
                up("fixtures", &f, hlc(1), fixture_row(&f, &v, 1)),
                up("patterns", &p_priv, hlc(1), pattern_row(&p_priv, a, false)),
                up("patterns", &p_pub, hlc(1), pattern_row(&p_pub, a, true)),
            ],
        )
        .await?,
    )?;
    let venues = by_key(&pull_all(h, &tb, "venues", None, 100).await?.0);
    ensure!(!venues.contains_key(&v), "B sees A's venue");
    let fixtures = by_key(&pull_all(h, &tb, "fixtures", None, 100).await?.0);
    ensure!(!fixtures.contains_key(&f), "B sees A's fixture");
    let patterns = by_key(&pull_all(h, &tb, "patterns", None, 100).await?.0);
    ensure!(
        !patterns.contains_key(&p_priv),
        "B sees A's private pattern"
    );
    ensure!(
        patterns.contains_key(&p_pub),
        "B does not see a verified pattern"
    );
    let out = push(h, &tb, vec![del("fixtures", &f, hlc(2))]).await?;
    ensure!(
        matches!(
            out[0].outcome,
            Outcome::Rejected {
                code: RejectCode::Forbidden,
                ..
            }
        ),
        "B tombstoned A's fixture: {out:?}"
    );
    let out = push(
        h,
        &tb,
        vec![up("patterns", &p_pub, hlc(2), pattern_row(&p_pub, a, true))],
    )
    .await?;
    ensure!(
        matches!(
            out[0].outcome,
            Outcome::Rejected {
                code: RejectCode::Forbidden,
                ..
            }
        ),
        "B wrote A's verified pattern: {out:?}"
    );

    h.add_member(&v, b).await;
    let venues = by_key(&pull_all(h, &tb, "venues", None, 100).await?.0);
    ensure!(venues.contains_key(&v), "a member does not see the venue");
    let fixtures = by_key(&pull_all(h, &tb, "fixtures", None, 100).await?.0);
    ensure!(
        fixtures.contains_key(&f),
        "a member does not see the venue's fixtures"
    );
    applied(
        &push(
            h,
            &tb,
            vec![up("fixtures", &f, hlc(3), fixture_row(&f, &v, 42))],
        )
        .await?,
    )?;
    let out = push(h, &tb, vec![del("venues", &v, hlc(4))]).await?;
    ensure!(
        matches!(
            out[0].outcome,
            Outcome::Rejected {
                code: RejectCode::Forbidden,
                ..
            }
        ),
        "a member deleted the venue: {out:?}"
    );
    let state = state_of(h, &ta, "fixtures", &f).await?;
    ensure!(
        state
            .and_then(|r| r.row)
            .and_then(|r| r.get("address").cloned())
            == Some(json!(42)),
        "the owner does not see the member's edit"
    );
    Ok(())
}

/// A removed member no longer sees the venue's rows.
pub async fn check_removed_member_loses_access<H: Harness>(h: &H) -> Result<(), Failure> {
    let (a, b) = (UserId::new(), UserId::new());
    let (ta, tb) = (h.sign_in(a).await, h.sign_in(b).await);
    let (v, f) = (new_id(), new_id());
    applied(
        &push(
            h,
            &ta,
            vec![
                up("venues", &v, hlc(1), venue_row(&v, a, "Club")),
                up("fixtures", &f, hlc(1), fixture_row(&f, &v, 1)),
            ],
        )
        .await?,
    )?;
    h.add_member(&v, b).await;
    ensure!(
        by_key(&pull_all(h, &tb, "fixtures", None, 100).await?.0).contains_key(&f),
        "a member does not see the fixture"
    );
    h.remove_member(&v, b).await;
    ensure!(
        !by_key(&pull_all(h, &tb, "fixtures", None, 100).await?.0).contains_key(&f),
        "a removed member still sees the fixture"
    );
    let out = push(
        h,
        &tb,
        vec![up("fixtures", &f, hlc(2), fixture_row(&f, &v, 2))],
    )
    .await?;
    ensure!(
        matches!(
            out[0].outcome,
            Outcome::Rejected {
                code: RejectCode::Forbidden,
                ..
            }
        ),
        "a removed member wrote a fixture: {out:?}"
    );
    Ok(())
}

/// After a purge, a cursor older than the horizon answers `resync_required`; a pull from the
/// start no longer returns the purged tombstone and keeps the live rows.
pub async fn check_resync_after_purge<H: Harness>(h: &H) -> Result<(), Failure> {
    let a = UserId::new();
    let t = h.sign_in(a).await;
    let (v, f1, f2) = (new_id(), new_id(), new_id());
    applied(
        &push(
            h,
            &t,
            vec![
                up("venues", &v, hlc(1), venue_row(&v, a, "Club")),
                up("fixtures", &f1, hlc(1), fixture_row(&f1, &v, 1)),
                up("fixtures", &f2, hlc(1), fixture_row(&f2, &v, 2)),
            ],
        )
        .await?,
    )?;
    let (_, old_cursor) = pull_all(h, &t, "fixtures", None, 100).await?;
    applied(&push(h, &t, vec![del("fixtures", &f1, hlc(2))]).await?)?;
    // Let the tombstone age past "now" (PostgreSQL's horizon compares with the clock).
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    h.purge_tombstones().await;
    let watermark = h.settled_watermark(&t).await;
    let page = h
        .remote()
        .pull(
            &t,
            &PullRequest {
                table: "fixtures".into(),
                cursor: old_cursor,
                limit: 100,
                watermark,
            },
        )
        .await?;
    ensure!(
        page.resync_required && page.rows.is_empty(),
        "a cursor older than the purge answered {page:?}"
    );
    let rows = by_key(&pull_all(h, &t, "fixtures", None, 100).await?.0);
    ensure!(
        !rows.contains_key(&f1),
        "a purged tombstone is still served"
    );
    ensure!(rows.contains_key(&f2), "a live row was purged");
    Ok(())
}

/// A pass that starts from null after a purge is served to its end, page after page, even
/// though its cursors are below the purge position (PostgreSQL: cloud migration 0012), and
/// the cursor it ends with is accepted later; a purge during a pass that passes its cursor
/// refuses its next page with `resync_required` (never a page that looks like the last).
pub async fn check_resync_pass_served_to_its_end<H: Harness>(h: &H) -> Result<(), Failure> {
    let a = UserId::new();
    let t = h.sign_in(a).await;
    let v = new_id();
    let fixtures: Vec<String> = (0..10).map(|_| new_id()).collect();
    let mut changes = vec![up("venues", &v, hlc(1), venue_row(&v, a, "Club"))];
    for (i, f) in (1i64..).zip(&fixtures) {
        changes.push(up("fixtures", f, hlc(1), fixture_row(f, &v, i)));
    }
    applied(&push(h, &t, changes).await?)?;
    // The newest change of the table is a tombstone: the purge position is above every row.
    applied(&push(h, &t, vec![del("fixtures", &fixtures[9], hlc(2))]).await?)?;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    h.purge_tombstones().await;
    let (rows, end) = pull_all(h, &t, "fixtures", None, 3).await?;
    let rows = by_key(&rows);
    ensure!(
        fixtures[..9].iter().all(|f| rows.contains_key(f)) && !rows.contains_key(&fixtures[9]),
        "a pass from null after a purge returned {} rows",
        rows.len()
    );
    let (again, _) = pull_all(h, &t, "fixtures", end, 3).await?;
    ensure!(
        again.is_empty(),
        "the end cursor of a complete pass answered {} rows",
        again.len()
    );
    // A purge during a pass: its next page is refused.
    let watermark = h.settled_watermark(&t).await;
    let request = |cursor: Option<String>| PullRequest {
        table: "fixtures".into(),
        cursor,
        limit: 3,
        watermark: watermark.clone(),
    };
    let first = h.remote().pull(&t, &request(None)).await?;
    ensure!(
        !first.resync_required && first.has_more && first.cursor.is_some(),
        "the first page of a pass answered {first:?}"
    );
    applied(&push(h, &t, vec![del("fixtures", &fixtures[8], hlc(3))]).await?)?;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    h.purge_tombstones().await;
    let next = h.remote().pull(&t, &request(first.cursor.clone())).await?;
    ensure!(
        next.resync_required && next.rows.is_empty() && !next.has_more,
        "a page after a purge during its pass answered {next:?}"
    );
    let rows = by_key(&pull_all(h, &t, "fixtures", None, 3).await?.0);
    ensure!(
        rows.len() == 8 && !rows.contains_key(&fixtures[8]),
        "the pass after the second purge returned {} rows",
        rows.len()
    );
    Ok(())
}

/// A stamp ahead of the server clock by more than the allowed skew (default 5 minutes) is
/// rejected `clock_skew` (alone: in a batch, set-based or not, the others apply); one a minute
/// ahead is applied; nothing of the refused change is stored.
pub async fn check_clock_skew<H: Harness>(h: &H) -> Result<(), Failure> {
    let a = UserId::new();
    let t = h.sign_in(a).await;
    let (v, f1, f2, f3) = (new_id(), new_id(), new_id(), new_id());
    applied(
        &push(
            h,
            &t,
            vec![up("venues", &v, hlc(1), venue_row(&v, a, "Club"))],
        )
        .await?,
    )?;
    let hour = 3_600_000;
    let out = push(
        h,
        &t,
        vec![up(
            "fixtures",
            &f1,
            stamp_ahead(hour, 0),
            fixture_row(&f1, &v, 1),
        )],
    )
    .await?;
    ensure!(
        code_of(&out[0]) == Some(RejectCode::ClockSkew),
        "a stamp an hour ahead answered {out:?}"
    );
    if let Outcome::Rejected { reason, .. } = &out[0].outcome {
        ensure!(
            reason.contains(&stamp_ahead(hour, 0).to_string()[..9]),
            "the reason does not name the stamp: {reason}"
        );
    }
    // A run of upserts of one table (PostgreSQL's set-based path), the far one in the middle.
    let out = push(
        h,
        &t,
        vec![
            up(
                "fixtures",
                &f2,
                stamp_ahead(60_000, 0),
                fixture_row(&f2, &v, 5),
            ),
            up(
                "fixtures",
                &f1,
                Hlc::new(u64::pow(10, 15) - 1, 999_999, SiteId(1)),
                fixture_row(&f1, &v, 1),
            ),
            up("fixtures", &f3, hlc(2), fixture_row(&f3, &v, 9)),
        ],
    )
    .await?;
    let codes: Vec<Option<RejectCode>> = out.iter().map(code_of).collect();
    ensure!(
        codes == vec![None, Some(RejectCode::ClockSkew), None],
        "codes {codes:?} ({out:?})"
    );
    // A delete is a write: bounded too.
    let out = push(h, &t, vec![del("fixtures", &f3, stamp_ahead(hour, 0))]).await?;
    ensure!(
        code_of(&out[0]) == Some(RejectCode::ClockSkew),
        "a far-future delete answered {out:?}"
    );
    let rows = by_key(&pull_all(h, &t, "fixtures", None, 100).await?.0);
    ensure!(!rows.contains_key(&f1), "the refused fixture was stored");
    ensure!(
        rows.get(&f3).is_some_and(|r| !r.deleted) && rows.contains_key(&f2),
        "the accepted changes are missing: {rows:?}"
    );
    Ok(())
}

/// Who reads a private track or pattern through a venue's scores: the venue's owner and
/// members, while a live score of that venue made by the row's own owner uses it. A score by
/// anyone else (a member who can see the row, a stranger who guessed its id) shares nothing;
/// unpublishing a pattern hides it from everyone but its owner and such venues.
pub async fn check_via_score_visibility<H: Harness>(h: &H) -> Result<(), Failure> {
    let (a, b, c, d) = (UserId::new(), UserId::new(), UserId::new(), UserId::new());
    let (ta, tb, tc, td) = (
        h.sign_in(a).await,
        h.sign_in(b).await,
        h.sign_in(c).await,
        h.sign_in(d).await,
    );
    let (va, track, pat, pub_pat, sa, tsa) =
        (new_id(), new_id(), new_id(), new_id(), new_id(), new_id());
    applied(
        &push(
            h,
            &ta,
            vec![
                up("venues", &va, hlc(1), venue_row(&va, a, "A's club")),
                up("tracks", &track, hlc(1), track_row(&track, a)),
                up("patterns", &pat, hlc(1), pattern_row(&pat, a, false)),
                up("patterns", &pub_pat, hlc(1), pattern_row(&pub_pat, a, true)),
                up("scores", &sa, hlc(1), score_row(&sa, a, &track, &va)),
                up(
                    "track_scores",
                    &tsa,
                    hlc(1),
                    track_score_row(&tsa, &sa, &pat),
                ),
            ],
        )
        .await?,
    )?;
    h.add_member(&va, c).await;
    let sees =
        |rows: &BTreeMap<String, RemoteRow>, k: &str| rows.get(k).is_some_and(|r| !r.deleted);
    let tracks = by_key(&pull_all(h, &tc, "tracks", None, 100).await?.0);
    let patterns = by_key(&pull_all(h, &tc, "patterns", None, 100).await?.0);
    ensure!(
        sees(&tracks, &track),
        "a member does not see the owner's track of a score"
    );
    ensure!(
        sees(&patterns, &pat),
        "a member does not see the owner's placed pattern"
    );

    // B, a stranger who knows the ids, cannot place A's private rows in B's venue.
    let (vb, sb, tsb, track_b) = (new_id(), new_id(), new_id(), new_id());
    applied(
        &push(
            h,
            &tb,
            vec![
                up("venues", &vb, hlc(1), venue_row(&vb, b, "B's club")),
                up("tracks", &track_b, hlc(1), track_row(&track_b, b)),
            ],
        )
        .await?,
    )?;
    let out = push(
        h,
        &tb,
        vec![
            up("scores", &sb, hlc(2), score_row(&sb, b, &track, &vb)),
            up(
                "scores",
                &new_id(),
                hlc(2),
                score_row(&new_id(), b, &track_b, &vb),
            ),
        ],
    )
    .await?;
    ensure!(
        code_of(&out[0]) == Some(RejectCode::MissingParent),
        "B placed A's private track: {out:?}"
    );
    let sb2 = new_id();
    applied(
        &push(
            h,
            &tb,
            vec![up(
                "scores",
                &sb2,
                hlc(3),
                score_row(&sb2, b, &track_b, &vb),
            )],
        )
        .await?,
    )?;
    let out = push(
        h,
        &tb,
        vec![up(
            "track_scores",
            &tsb,
            hlc(3),
            track_score_row(&tsb, &sb2, &pat),
        )],
    )
    .await?;
    ensure!(
        code_of(&out[0]) == Some(RejectCode::MissingParent),
        "B placed A's private pattern: {out:?}"
    );
    let tracks = by_key(&pull_all(h, &tb, "tracks", None, 100).await?.0);
    ensure!(!tracks.contains_key(&track), "B reads A's private track");

    // C, a member of A's venue, places A's track and pattern in C's own venue: D, a member
    // there, sees neither (the score is not by their owner).
    let (vc, sc, tsc) = (new_id(), new_id(), new_id());
    let out = push(
        h,
        &tc,
        vec![
            up("venues", &vc, hlc(1), venue_row(&vc, c, "C's club")),
            up("scores", &sc, hlc(1), score_row(&sc, c, &track, &vc)),
            up(
                "track_scores",
                &tsc,
                hlc(1),
                track_score_row(&tsc, &sc, &pat),
            ),
        ],
    )
    .await?;
    applied(&out)?;
    h.add_member(&vc, d).await;
    let tracks = by_key(&pull_all(h, &td, "tracks", None, 100).await?.0);
    let patterns = by_key(&pull_all(h, &td, "patterns", None, 100).await?.0);
    ensure!(
        !tracks.contains_key(&track),
        "D reads A's track through C's score"
    );
    ensure!(
        !patterns.contains_key(&pat),
        "D reads A's pattern through C's score"
    );

    // B places A's published pattern on B's own score; a member of B's venue sees it while it
    // is published, and neither B nor that member once A unpublishes it.
    let tsp = new_id();
    applied(
        &push(
            h,
            &tb,
            vec![up(
                "track_scores",
                &tsp,
                hlc(4),
                track_score_row(&tsp, &sb2, &pub_pat),
            )],
        )
        .await?,
    )?;
    h.add_member(&vb, d).await;
    let patterns = by_key(&pull_all(h, &td, "patterns", None, 100).await?.0);
    ensure!(
        sees(&patterns, &pub_pat),
        "a published pattern is not readable"
    );
    applied(
        &push(
            h,
            &ta,
            vec![up(
                "patterns",
                &pub_pat,
                hlc(5),
                pattern_row(&pub_pat, a, false),
            )],
        )
        .await?,
    )?;
    for (who, t) in [("B", &tb), ("B's member", &td)] {
        let patterns = by_key(&pull_all(h, t, "patterns", None, 100).await?.0);
        ensure!(
            !patterns.contains_key(&pub_pat),
            "{who} still reads the unpublished pattern"
        );
    }
    let patterns = by_key(&pull_all(h, &tc, "patterns", None, 100).await?.0);
    ensure!(
        !patterns.contains_key(&pub_pat),
        "C reads the unpublished pattern"
    );

    // A deletes the private track: the tombstone reaches A's member.
    applied(&push(h, &ta, vec![del("tracks", &track, hlc(9))]).await?)?;
    let tracks = by_key(&pull_all(h, &tc, "tracks", None, 100).await?.0);
    ensure!(
        tracks.get(&track).is_some_and(|r| r.deleted),
        "the member does not get the track's tombstone: {:?}",
        tracks.get(&track)
    );
    Ok(())
}

/// A value the client refuses (non-finite or out-of-range number, unknown enum text, a JSON
/// shape the records cannot decode, an empty name) is rejected `invalid`; the same rows with
/// valid values are applied.
pub async fn check_invalid_values<H: Harness>(h: &H) -> Result<(), Failure> {
    let a = UserId::new();
    let t = h.sign_in(a).await;
    let (v, track, pat, sc) = (new_id(), new_id(), new_id(), new_id());
    applied(
        &push(
            h,
            &t,
            vec![
                up("venues", &v, hlc(1), venue_row(&v, a, "Club")),
                up("tracks", &track, hlc(1), track_row(&track, a)),
                up("patterns", &pat, hlc(1), pattern_row(&pat, a, false)),
                up("scores", &sc, hlc(1), score_row(&sc, a, &track, &v)),
            ],
        )
        .await?,
    )?;
    let with = |mut row: Row, col: &str, val: Value| {
        row.insert(col.into(), val);
        row
    };
    let bad: Vec<(&str, Row)> = vec![
        (
            "fixtures",
            with(fixture_row(&new_id(), &v, 1), "pos_x", json!("NaN")),
        ),
        (
            "fixtures",
            with(fixture_row(&new_id(), &v, 1), "rot_z", json!("Infinity")),
        ),
        (
            "fixtures",
            with(fixture_row(&new_id(), &v, 510), "num_channels", json!(8)),
        ),
        (
            "fixture_groups",
            with(group_row(&new_id(), &v, "Front"), "tags", json!({"a": 1})),
        ),
        (
            "fixture_groups",
            with(group_row(&new_id(), &v, "Back"), "tags", json!([1, 2])),
        ),
        (
            "fixture_groups",
            with(group_row(&new_id(), &v, "Up"), "axis_lr", json!(2.0)),
        ),
        ("fixture_groups", group_row(&new_id(), &v, "   ")),
        (
            "track_scores",
            with(
                track_score_row(&new_id(), &sc, &pat),
                "blend_mode",
                json!("bogus"),
            ),
        ),
        (
            "track_scores",
            with(track_score_row(&new_id(), &sc, &pat), "args", json!([1])),
        ),
        (
            "track_scores",
            with(
                track_score_row(&new_id(), &sc, &pat),
                "end_time",
                json!("Infinity"),
            ),
        ),
        (
            "tracks",
            with(track_row(&new_id(), a), "bpm", json!(5000.0)),
        ),
        (
            "tracks",
            with(track_row(&new_id(), a), "duration_seconds", json!("NaN")),
        ),
        (
            "venues",
            with(venue_row(&new_id(), a, "X"), "name", json!("")),
        ),
    ];
    let changes: Vec<Change> = bad
        .iter()
        .map(|(table, row)| {
            let key = RecordKey::from_canonical(
                row.get("id").and_then(Value::as_str).unwrap_or_default(),
            );
            up(table, key.as_str(), hlc(2), row.clone())
        })
        .collect();
    let out = push(h, &t, changes).await?;
    for (o, (table, row)) in out.iter().zip(&bad) {
        ensure!(
            code_of(o) == Some(RejectCode::Invalid),
            "{table} {row:?} answered {o:?}"
        );
    }
    let good = vec![
        up("fixtures", &new_id(), hlc(3), fixture_row("", &v, 509)),
        up("fixture_groups", "", hlc(3), group_row("", &v, "Front")),
        up(
            "track_scores",
            "",
            hlc(3),
            with(
                track_score_row("", &sc, &pat),
                "blend_mode",
                json!("screen"),
            ),
        ),
    ]
    .into_iter()
    .map(|mut c| {
        let id = new_id();
        if let Some(row) = c.row.as_mut() {
            row.insert("id".into(), json!(id));
        }
        c.key = RecordKey::from_canonical(id);
        c
    })
    .collect();
    applied(&push(h, &t, good).await?)?;
    Ok(())
}

/// A malformed watermark or cursor is refused with a permanent error (PostgreSQL: 22023),
/// never read as "from the start" or "nothing yet".
pub async fn check_malformed_watermark_and_cursor<H: Harness>(h: &H) -> Result<(), Failure> {
    let t = h.sign_in(UserId::new()).await;
    let good = h.settled_watermark(&t).await;
    for (cursor, watermark) in [
        (None, "abc"),
        (None, "12abc"),
        (None, ""),
        (None, "-1"),
        (Some("abc"), good.0.as_str()),
        (Some("x:1"), good.0.as_str()),
        (Some(""), good.0.as_str()),
    ] {
        let got = h
            .remote()
            .pull(
                &t,
                &PullRequest {
                    table: "venues".into(),
                    cursor: cursor.map(str::to_owned),
                    limit: 10,
                    watermark: Watermark(watermark.into()),
                },
            )
            .await;
        ensure!(
            matches!(got, Err(SyncError::Permanent { .. })),
            "cursor {cursor:?} watermark {watermark:?} answered {got:?}"
        );
    }
    Ok(())
}
