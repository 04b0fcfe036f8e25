//! Another user's data (or a damaged local row) never bricks a device: a far-future stamp is
//! parked and never absorbed into the clock, a row the store cannot store or decode is parked
//! without failing its page or the cycle, a device poisoned by the old build recovers on open,
//! and a local row that cannot be read rejects its own op only.
//!
//! The hostile rows are served by a wrapper remote (an ordinary [`Remote`] impl around
//! [`MemoryRemote`]) that appends them to the last page of their table, as a server holding
//! them from before its checks would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use luma_model::{FixtureGroup, Hlc, OpKind, Record, RecordKey, SiteId, UserId, Venue};
use luma_store::{ParkReason, PulledRow, Store};
use luma_sync::{
    AccessToken, Change, ChangeOutcome, Membership, MemoryRemote, PullPage, PullRequest, Remote,
    StaticToken, SyncEngine, Watermark,
};
use proptest::prelude::*;
use serde_json::json;

/// A remote that also serves rows it was handed, once, at the end of their table's pull.
#[derive(Clone)]
struct Hostile {
    inner: MemoryRemote,
    extra: Arc<Mutex<Vec<(String, PulledRow)>>>,
    /// A table whose pull answers something the client cannot read.
    garbled: Arc<Mutex<Option<String>>>,
}

impl Hostile {
    fn new(inner: MemoryRemote) -> Self {
        Self {
            inner,
            extra: Arc::default(),
            garbled: Arc::default(),
        }
    }

    fn serve(&self, table: &str, row: PulledRow) {
        self.extra.lock().unwrap().push((table.to_string(), row));
    }
}

#[async_trait]
impl Remote for Hostile {
    async fn push(
        &self,
        token: &AccessToken,
        changes: &[Change],
    ) -> luma_sync::Result<Vec<ChangeOutcome>> {
        self.inner.push(token, changes).await
    }
    async fn pull(
        &self,
        token: &AccessToken,
        request: &PullRequest,
    ) -> luma_sync::Result<PullPage> {
        if self.garbled.lock().unwrap().as_deref() == Some(request.table.as_str()) {
            return Err(luma_sync::SyncError::protocol(
                "the page is not the expected JSON",
            ));
        }
        let mut page = self.inner.pull(token, request).await?;
        if !page.has_more {
            let mut extra = self.extra.lock().unwrap();
            let (mine, rest): (Vec<_>, Vec<_>) =
                extra.drain(..).partition(|(t, _)| *t == request.table);
            *extra = rest;
            page.rows.extend(mine.into_iter().map(|(_, r)| r));
        }
        Ok(page)
    }
    async fn watermark(&self, token: &AccessToken) -> luma_sync::Result<Watermark> {
        self.inner.watermark(token).await
    }
    async fn memberships(&self, token: &AccessToken) -> luma_sync::Result<Vec<Membership>> {
        self.inner.memberships(token).await
    }
}

type HostileEngine = SyncEngine<Store, Hostile>;

async fn engine(store: Store, remote: &Hostile, user: UserId) -> HostileEngine {
    store.set_current_user(Some(user)).await.unwrap();
    let token = Arc::new(remote.inner.issue_token(user));
    SyncEngine::new(
        store,
        remote.clone(),
        Arc::new(StaticToken(token)),
        common::fast_config(),
    )
}

fn pulled<T: Record>(rec: &T, hlc: Hlc) -> PulledRow {
    let mut row = rec.to_row().unwrap();
    for c in T::SPEC.local_only_columns() {
        row.remove(c);
    }
    PulledRow {
        key: rec.key().unwrap(),
        hlc,
        deleted: false,
        row: Some(row),
    }
}

fn far_future() -> Hlc {
    "999999999999999-999999-ffffffffffffffff".parse().unwrap()
}

fn now_stamp(ms_ahead: u64) -> Hlc {
    Hlc::new(luma_model::wall_clock_ms() + ms_ahead, 0, SiteId(0xbad))
}

fn near_wall(h: Hlc) -> bool {
    h.physical_ms <= luma_model::wall_clock_ms() + 1_000
}

/// Within the default bound on remote stamps (five minutes ahead of the wall clock).
fn within_bound(h: Hlc) -> bool {
    h.physical_ms <= luma_model::wall_clock_ms() + 301_000
}

/// The remote's stamp of one record, if it has it.
fn remote_stamp(remote: &MemoryRemote, table: &str, key: &RecordKey) -> Option<Hlc> {
    remote.snapshot(table).get(key).map(|(h, _)| *h)
}

#[tokio::test]
async fn a_far_future_row_is_parked_and_the_device_keeps_writing_syncing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("luma.db");
    let remote = Hostile::new(MemoryRemote::new());
    let user = UserId::new();
    let evil = Venue::new("evil");
    remote.serve("venues", pulled(&evil, far_future()));
    let e = engine(Store::open(&path).await.unwrap(), &remote, user).await;
    let r = e.sync_now().await.unwrap();
    assert_eq!(r.pull.apply.parked, 1);
    let status = e.status().borrow().clone();
    assert_eq!(status.parked, 1);
    assert_eq!(status.parked_by_reason, vec![("clock_skew".to_string(), 1)]);
    let parked = e.parked_rows().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].reason, ParkReason::ClockSkew);
    assert_eq!(parked[0].key, RecordKey::from(evil.id));
    assert!(near_wall(e.local().clock_stamp().await.unwrap()));

    // The device still writes, and its writes sync with sane stamps.
    let mine = Venue::new("mine");
    e.local().venues().create(&mine).await.unwrap();
    let r = e.sync_now().await.unwrap();
    assert_eq!(r.push.applied, 1);
    assert!(e.pending_errors().await.unwrap().is_empty());
    let stamp = remote_stamp(&remote.inner, "venues", &RecordKey::from(mine.id)).unwrap();
    assert!(near_wall(stamp), "{stamp}");

    // ... and reopens, still parked, still writing.
    e.local().close().await;
    drop(e);
    let e = engine(Store::open(&path).await.unwrap(), &remote, user).await;
    let mut again = e.local().venues().get(mine.id).await.unwrap();
    again.name = "mine, renamed".into();
    e.local().venues().update(&again).await.unwrap();
    let r = e.sync_now().await.unwrap();
    assert_eq!(r.push.applied, 1);
    assert_eq!(e.status().borrow().parked, 1);
    assert!(e.local().venues().find(evil.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_hostile_member_row_costs_one_row_and_the_owner_keeps_syncing() {
    let remote = Hostile::new(MemoryRemote::new());
    let user = UserId::new();
    let e = engine(Store::open_in_memory().await.unwrap(), &remote, user).await;
    let venue = Venue::new("club");
    e.local().venues().create(&venue).await.unwrap();
    let own = FixtureGroup::new(venue.id, "own");
    e.local().fixture_groups().create(&own).await.unwrap();
    e.sync_now().await.unwrap();

    // Rows a member pushed before the server checked values: a NaN, tags of the wrong
    // shape, an unknown blend mode is the same case for scores.
    let nan = FixtureGroup::new(venue.id, "nan");
    let mut nan_row = pulled(&nan, now_stamp(0));
    nan_row
        .row
        .as_mut()
        .unwrap()
        .insert("axis_fb".into(), json!("NaN"));
    remote.serve("fixture_groups", nan_row);
    let tags = FixtureGroup::new(venue.id, "tags");
    let mut tags_row = pulled(&tags, now_stamp(1));
    tags_row
        .row
        .as_mut()
        .unwrap()
        .insert("tags".into(), json!("not a list"));
    remote.serve("fixture_groups", tags_row);
    // The owner edits meanwhile.
    let mut renamed = own.clone();
    renamed.name = "own, renamed".into();
    e.local().fixture_groups().update(&renamed).await.unwrap();

    let r = e.sync_now().await.unwrap();
    assert_eq!(r.pull.apply.parked, 2);
    assert_eq!(r.push.applied, 1, "the owner's edit still goes out");
    let server = remote.inner.snapshot("fixture_groups");
    let (_, row) = &server[&RecordKey::from(own.id)];
    assert_eq!(row.as_ref().unwrap()["name"], json!("own, renamed"));
    let listed = e.local().fixture_groups().list().await.unwrap();
    assert_eq!(listed, vec![renamed.clone()]);
    let status = e.status().borrow().clone();
    assert_eq!(status.parked, 2);
    assert_eq!(status.parked_by_reason, vec![("invalid".to_string(), 2)]);
    assert!(status.last_error.is_none(), "{:?}", status.last_error);

    // A newer valid version of a parked row applies and unparks it.
    let mut fixed = nan.clone();
    fixed.name = "nan, fixed".into();
    remote.serve("fixture_groups", pulled(&fixed, now_stamp(10)));
    let r = e.sync_now().await.unwrap();
    assert_eq!(r.pull.apply.unparked, 1);
    assert_eq!(e.status().borrow().parked, 1);
    assert_eq!(
        e.local().fixture_groups().get(nan.id).await.unwrap().name,
        "nan, fixed"
    );
}

#[tokio::test]
async fn a_damaged_local_row_rejects_its_own_op_and_the_rest_is_pushed() {
    let remote = Hostile::new(MemoryRemote::new());
    let user = UserId::new();
    let e = engine(Store::open_in_memory().await.unwrap(), &remote, user).await;
    let venue = Venue::new("club");
    e.local().venues().create(&venue).await.unwrap();
    let group = FixtureGroup::new(venue.id, "g");
    e.local().fixture_groups().create(&group).await.unwrap();
    e.sync_now().await.unwrap();
    sqlx::query("UPDATE fixture_groups SET tags = '[\"a\"' WHERE id = ?")
        .bind(group.id.to_string())
        .execute(e.local().writer_pool())
        .await
        .unwrap();
    let other = Venue::new("other");
    e.local().venues().create(&other).await.unwrap();
    let r = e.sync_now().await.unwrap();
    assert_eq!(r.push.applied, 1);
    assert!(remote_stamp(&remote.inner, "venues", &RecordKey::from(other.id)).is_some());
    let errors = e.pending_errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].table, "fixture_groups");
    assert_eq!(errors[0].kind, OpKind::Upsert);
    assert!(errors[0].rejected);
    assert!(
        errors[0]
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("invalid:"),
        "{:?}",
        errors[0].last_error
    );
    assert_eq!(e.status().borrow().rejected, 1);
    // Listing the venue's groups still works; the damaged one is reported.
    let report = e.local().fixture_groups().list_report().await.unwrap();
    assert!(report.records.is_empty());
    assert_eq!(report.skipped[0].key, RecordKey::from(group.id));
}

/// Builds a database the way the old build left it after pulling a far-future stamp: the
/// clock's floor at the largest stamp, a local write after it stamped with a 16-digit
/// physical part (which the parser refuses), and a pulled row stamped in the far future.
async fn poison(path: &std::path::Path, user: UserId) -> (Venue, Venue) {
    let store = Store::open(path).await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    let written = Venue::new("written after the poison");
    store.venues().create(&written).await.unwrap();
    let pulled_evil = Venue::new("pulled evil");
    store.close().await;
    drop(store);
    use sqlx::ConnectOptions as _;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    let site: String = sqlx::query_scalar("SELECT site FROM sync_clock")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let overflowed = format!("1000000000000000-000000-{site}");
    for statement in [
        "INSERT INTO sync_apply_guard (id) VALUES (1)".to_string(),
        "DELETE FROM sync_outbox".to_string(),
        "DELETE FROM sync_oplog".to_string(),
        format!(
            "INSERT INTO sync_oplog (seq, tbl, pk, hlc, kind, user_id) VALUES \
             (10, '', '', '999999999999999-999999-{site}', 'floor', NULL), \
             (11, 'venues', '{}', '{overflowed}', 'upsert', '{user}')",
            written.id
        ),
        format!(
            "UPDATE venues SET hlc = '{overflowed}' WHERE id = '{}'",
            written.id
        ),
        format!(
            "INSERT INTO venues (id, name, description, created_at, updated_at, hlc) VALUES \
             ('{}', 'pulled evil', '', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', \
             '999999999999999-999999-ffffffffffffffff')",
            pulled_evil.id
        ),
        "DELETE FROM sync_apply_guard".to_string(),
    ] {
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
    }
    drop(conn);
    (written, pulled_evil)
}

#[tokio::test]
async fn a_device_poisoned_by_the_old_build_recovers_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("luma.db");
    let user = UserId::new();
    let (written, _evil) = poison(&path, user).await;

    let store = Store::open(&path).await.unwrap();
    let clock = store.clock_stamp().await.unwrap();
    assert!(near_wall(clock), "{clock}");
    // The pending op survived with a fresh stamp, carried by its row too.
    let ops = store.outbox().all().await.unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].id.0, 11);
    assert!(near_wall(ops[0].hlc));
    let row_hlc: String = sqlx::query_scalar("SELECT hlc FROM venues WHERE id = ?")
        .bind(written.id.to_string())
        .fetch_one(store.reader_pool())
        .await
        .unwrap();
    assert_eq!(row_hlc, ops[0].hlc.to_string());

    // It writes, syncs and reopens.
    let remote = Hostile::new(MemoryRemote::new());
    let e = engine(store, &remote, user).await;
    let later = Venue::new("later");
    e.local().venues().create(&later).await.unwrap();
    let r = e.sync_now().await.unwrap();
    assert_eq!(r.push.applied, 2);
    assert!(e.pending_errors().await.unwrap().is_empty());
    for v in [&written, &later] {
        let h = remote_stamp(&remote.inner, "venues", &RecordKey::from(v.id)).unwrap();
        assert!(near_wall(h), "{h}");
    }
    e.local().close().await;
    drop(e);
    let store = Store::open(&path).await.unwrap();
    store
        .venues()
        .create(&Venue::new("after reopen"))
        .await
        .unwrap();
    assert!(near_wall(store.outbox().all().await.unwrap()[0].hlc));
}

#[tokio::test]
async fn a_pull_that_fails_on_an_unreadable_answer_still_pushes() {
    let remote = Hostile::new(MemoryRemote::new());
    let user = UserId::new();
    let e = engine(Store::open_in_memory().await.unwrap(), &remote, user).await;
    let venue = Venue::new("club");
    e.local().venues().create(&venue).await.unwrap();
    *remote.garbled.lock().unwrap() = Some("fixtures".into());
    let err = e.sync_now().await.unwrap_err();
    assert!(
        matches!(err, luma_sync::SyncError::Protocol { .. }),
        "{err:?}"
    );
    assert!(
        remote_stamp(&remote.inner, "venues", &RecordKey::from(venue.id)).is_some(),
        "the local edit went out although the pull failed"
    );
    assert!(e.status().borrow().last_error.is_some());
    *remote.garbled.lock().unwrap() = None;
    e.sync_now().await.unwrap();
    assert_eq!(e.local().outbox().pending_count().await.unwrap(), 0);
}

fn hostile_stamp() -> impl Strategy<Value = Hlc> {
    let wall = luma_model::wall_clock_ms();
    let bound = 300_000u64;
    let physical = prop_oneof![
        Just(0u64),
        Just(luma_model::MAX_PHYSICAL_MS),
        Just(luma_model::MAX_PHYSICAL_MS + 1),
        Just(wall),
        Just(wall + bound - 30_000),
        Just(wall + bound + 30_000),
        0..=luma_model::MAX_PHYSICAL_MS,
        any::<u64>(),
    ];
    let counter = prop_oneof![
        Just(0u32),
        Just(luma_model::MAX_COUNTER),
        Just(luma_model::MAX_COUNTER + 1),
        Just(u32::MAX),
        0..=luma_model::MAX_COUNTER,
    ];
    (physical, counter, any::<u64>()).prop_map(|(p, c, s)| Hlc::new(p, c, SiteId(s)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random stamps, extremes included, pulled into a store never stop it from writing
    /// (with parseable stamps near the wall clock), syncing and reopening.
    #[test]
    fn pulled_stamps_never_brick_a_device(stamps in prop::collection::vec(hostile_stamp(), 1..8)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("luma.db");
            let user = UserId::new();
            let remote = Hostile::new(MemoryRemote::new());
            let store = Store::open(&path).await.unwrap();
            let rows: Vec<PulledRow> = stamps
                .iter()
                .map(|h| pulled(&Venue::new("pulled"), *h))
                .collect();
            store.apply_pulled_page(user, "venues", &rows, Some("c")).await.unwrap();
            for h in &stamps {
                remote.serve("venues", pulled(&Venue::new("served"), *h));
            }
            let e = engine(store, &remote, user).await;
            let mine = Venue::new("mine");
            e.local().venues().create(&mine).await.unwrap();
            let op = &e.local().outbox().all().await.unwrap()[0];
            assert!(within_bound(op.hlc), "{}", op.hlc);
            assert!(op.hlc.to_string().parse::<Hlc>().is_ok());
            let r = e.sync_now().await.unwrap();
            assert_eq!(r.push.applied, 1);
            assert!(e.pending_errors().await.unwrap().is_empty());
            assert!(within_bound(e.local().clock_stamp().await.unwrap()));
            e.local().close().await;
            drop(e);
            let store = Store::open(&path).await.unwrap();
            assert!(within_bound(store.clock_stamp().await.unwrap()));
            store.venues().create(&Venue::new("again")).await.unwrap();
        });
    }
}

/// A device whose clock runs ahead of the server's bound: its op is refused `clock_skew`, stays
/// pending (not rejected: no manual retry), shows its error, and goes through on its own once
/// the server accepts the stamp.
#[tokio::test]
async fn a_clock_skew_refusal_stays_pending_and_goes_through_later() {
    let remote = MemoryRemote::new();
    remote.set_max_clock_skew(std::time::Duration::from_secs(10));
    let user = UserId::new();
    let e = common::device(&remote, user).await;
    // The device's clock absorbs a stamp one minute ahead (within its own 5-minute bound).
    let ahead = Hlc::new(luma_model::wall_clock_ms() + 60_000, 0, SiteId(9));
    assert!(e.local().merge_remote_clock(ahead).await.unwrap());
    let venue = Venue::new("Ahead");
    e.local().venues().create(&venue).await.unwrap();

    let report = e.sync_now().await.unwrap();
    let skew = report.push.clock_skew_error.expect("a clock_skew refusal");
    assert!(skew.starts_with("clock_skew"), "{skew}");
    let errors = e.local().outbox().errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        !errors[0].rejected,
        "clock skew is not a permanent rejection"
    );
    assert!(errors[0]
        .last_error
        .as_deref()
        .is_some_and(|m| m.starts_with("clock_skew")));
    assert!(e
        .status()
        .borrow()
        .last_error
        .as_deref()
        .is_some_and(|m| m.contains("clock_skew")));
    assert!(remote_stamp(&remote, "venues", &venue.key().unwrap()).is_none());

    // The server's bound widens (or its clock catches up): the op goes through with no
    // manual call once its retry time has come.
    remote.set_max_clock_skew(luma_model::DEFAULT_MAX_CLOCK_SKEW);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while remote_stamp(&remote, "venues", &venue.key().unwrap()).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the op never went through"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        e.sync_now().await.unwrap();
    }
    assert!(e.local().outbox().all().await.unwrap().is_empty());
}
