//! The engine's key scenarios against PostgresRemote on a real server (a database per test).
//! A row pushed on PostgreSQL becomes pullable only once every older transaction of the
//! cluster has finished, so `settle` waits for a settled watermark before each sync.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod pg_common;

use std::sync::Arc;
use std::time::Duration;

use common::{fast_config, local_state};
use luma_model::{Fixture, Pattern, UserId, Venue};
use luma_store::Store;
use luma_sync::{AccessToken, StaticToken, SyncEngine, SyncError, TokenProvider};
use pg_common::{server_state, PgFault, PgHarness, Scripted};

type Engine = SyncEngine<Store, Scripted>;

async fn device(h: &PgHarness, remote: &Scripted, user: UserId) -> Engine {
    device_on(Store::open_in_memory().await.unwrap(), h, remote, user).await
}

async fn device_on(store: Store, h: &PgHarness, remote: &Scripted, user: UserId) -> Engine {
    store.set_current_user(Some(user)).await.unwrap();
    let token = Arc::new(h.remote.sign_in(user));
    SyncEngine::new(
        store,
        remote.clone(),
        Arc::new(StaticToken(token)),
        fast_config(),
    )
}

async fn wait(h: &PgHarness) {
    h.admin
        .settled_watermark(Duration::from_secs(60))
        .await
        .unwrap();
}

async fn settle(h: &PgHarness, engines: &[&Engine]) {
    for _ in 0..3 {
        for e in engines {
            wait(h).await;
            e.retry_all().await.unwrap();
            e.sync_now().await.unwrap();
        }
    }
}

async fn assert_same_as_server(h: &PgHarness, e: &Engine, user: UserId) {
    let tables: Vec<&str> = e
        .local()
        .synced_tables()
        .unwrap()
        .iter()
        .map(|s| s.name)
        .collect();
    let token = h.remote.sign_in(user);
    let server = server_state(h, &token, &tables).await;
    let local = local_state(e.local()).await;
    for t in tables {
        assert_eq!(local[t], server[t], "table {t} differs from the server");
    }
}

#[tokio::test]
async fn two_devices_converge_lost_responses_and_restarts() {
    let h = PgHarness::new().await;
    let remote = Scripted::new(h.remote.clone());
    let user = UserId::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let venue = Venue::new("Club");
    {
        let a = device_on(Store::open(&path).await.unwrap(), &h, &remote, user).await;
        a.local().venues().create(&venue).await.unwrap();
        for i in 0..5 {
            let mut f = Fixture::new(venue.id, 1, i + 1, 4);
            f.fixture_path = Some("/only/on/a.json".into());
            a.local().fixtures().create(&f).await.unwrap();
        }
        // The server applies the push; the device dies before hearing back.
        remote.inject(PgFault::LosePushResponse);
        assert!(a.push().await.unwrap_err().is_retryable());
        a.local().close().await;
    }
    let a = device_on(Store::open(&path).await.unwrap(), &h, &remote, user).await;
    a.retry_all().await.unwrap();
    wait(&h).await;
    a.sync_now().await.unwrap();
    assert_eq!(a.local().outbox().pending_count().await.unwrap(), 0);

    // b pulls page by page and fails half way, then resumes from its cursor.
    let b_store = Store::open_in_memory().await.unwrap();
    b_store.set_current_user(Some(user)).await.unwrap();
    let mut cfg = fast_config();
    cfg.page_size = 2;
    let b = SyncEngine::new(
        b_store,
        remote.clone(),
        Arc::new(StaticToken(Arc::new(h.remote.sign_in(user)))),
        cfg,
    );
    let order = b.local().synced_tables().unwrap();
    let before = order.iter().position(|t| t.name == "fixtures").unwrap();
    for _ in 0..=before {
        remote.inject(PgFault::PassPull);
    }
    remote.inject(PgFault::FailPull);
    wait(&h).await;
    assert!(b.pull().await.is_err());
    let have = b.local().fixtures().count().await.unwrap();
    assert!(have > 0 && have < 5, "half way: {have}");
    let r = b.sync_now().await.unwrap();
    assert!(r.pull.rows < 6, "resumed from the cursor: {r:?}");
    let got = b.local().fixtures().list().await.unwrap();
    assert_eq!(got.len(), 5);
    assert!(
        got.iter().all(|f| f.fixture_path.is_none()),
        "local-only stays local"
    );
    assert_eq!(b.local().outbox().pending_count().await.unwrap(), 0);

    // An edit on b reaches a.
    let mut v = b.local().venues().get(venue.id).await.unwrap();
    v.name = "renamed on b".into();
    b.local().venues().update(&v).await.unwrap();
    settle(&h, &[&b, &a]).await;
    assert_eq!(
        a.local().venues().get(venue.id).await.unwrap().name,
        "renamed on b"
    );
    assert_same_as_server(&h, &a, user).await;
    assert_same_as_server(&h, &b, user).await;
    h.drop().await;
}

#[tokio::test]
async fn a_rejected_op_is_listed_then_discard_restores() {
    let h = PgHarness::new().await;
    let remote = Scripted::new(h.remote.clone());
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = device(&h, &remote, alice).await;
    let b = device(&h, &remote, bob).await;
    let mut pattern = Pattern::new("Community chase");
    pattern.is_verified = true;
    a.local().patterns().create(&pattern).await.unwrap();
    a.sync_now().await.unwrap();
    wait(&h).await;
    b.sync_now().await.unwrap();
    let mut theirs = b.local().patterns().get(pattern.id).await.unwrap();
    theirs.name = "Bob's edit".into();
    b.local().patterns().update(&theirs).await.unwrap();
    b.local()
        .venues()
        .create(&Venue::new("Bob's"))
        .await
        .unwrap();
    let r = b.sync_now().await.unwrap();
    assert_eq!((r.push.applied, r.push.rejected), (1, 1));
    let errors = b.pending_errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0]
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("forbidden"));
    b.discard(errors[0].id).await.unwrap();
    wait(&h).await;
    b.sync_now().await.unwrap();
    assert_eq!(
        b.local().patterns().get(pattern.id).await.unwrap().name,
        "Community chase"
    );
    h.drop().await;
}

#[tokio::test]
async fn deletes_racing_updates_and_children_under_deleted_parents() {
    let h = PgHarness::new().await;
    let remote = Scripted::new(h.remote.clone());
    let user = UserId::new();
    let a = device(&h, &remote, user).await;
    let b = device(&h, &remote, user).await;
    let venue = Venue::new("v");
    a.local().venues().create(&venue).await.unwrap();
    a.local()
        .fixtures()
        .create(&Fixture::new(venue.id, 1, 1, 1))
        .await
        .unwrap();
    settle(&h, &[&a, &b]).await;
    let mut v = b.local().venues().get(venue.id).await.unwrap();
    a.local().venues().delete(venue.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    v.name = "renamed later".into();
    b.local().venues().update(&v).await.unwrap();
    settle(&h, &[&a, &b]).await;
    for e in [&a, &b] {
        assert_eq!(
            e.local().venues().get(venue.id).await.unwrap().name,
            "renamed later"
        );
        assert_eq!(e.local().fixtures().count().await.unwrap(), 0);
        assert_same_as_server(&h, e, user).await;
    }
    // A child created under a concurrently deleted parent is removed everywhere.
    a.local().venues().delete(venue.id).await.unwrap();
    a.sync_now().await.unwrap();
    b.local()
        .fixtures()
        .create(&Fixture::new(venue.id, 1, 2, 1))
        .await
        .unwrap();
    let r = b.push().await.unwrap();
    assert_eq!(r.rejected, 1);
    settle(&h, &[&a, &b]).await;
    for e in [&a, &b] {
        assert!(e.local().venues().find(venue.id).await.unwrap().is_none());
        assert_eq!(e.local().fixtures().count().await.unwrap(), 0);
        assert!(e.pending_errors().await.unwrap().is_empty());
        assert_same_as_server(&h, e, user).await;
    }
    h.drop().await;
}

#[tokio::test]
async fn a_purge_past_the_cursor_triggers_a_full_resync_keeping_pending_ops() {
    let h = PgHarness::new().await;
    let remote = Scripted::new(h.remote.clone());
    let user = UserId::new();
    let a = device(&h, &remote, user).await;
    let b = device(&h, &remote, user).await;
    let (gone, kept) = (Venue::new("gone"), Venue::new("kept"));
    a.local().venues().create(&gone).await.unwrap();
    a.local().venues().create(&kept).await.unwrap();
    a.local()
        .fixtures()
        .create(&Fixture::new(gone.id, 1, 1, 1))
        .await
        .unwrap();
    settle(&h, &[&a, &b]).await;
    let mut edit = b.local().venues().get(kept.id).await.unwrap();
    edit.description = "pending on b".into();
    b.local().venues().update(&edit).await.unwrap();
    a.local().venues().delete(gone.id).await.unwrap();
    a.sync_now().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let purged = h.admin.purge_tombstones(Duration::ZERO).await.unwrap();
    assert_eq!(purged["venues"], 1);
    wait(&h).await;
    b.pull().await.unwrap();
    assert!(b.local().venues().find(gone.id).await.unwrap().is_none());
    assert_eq!(b.local().fixtures().count().await.unwrap(), 0);
    assert_eq!(
        b.local().venues().get(kept.id).await.unwrap().description,
        "pending on b"
    );
    assert_eq!(b.local().outbox().pending_count().await.unwrap(), 1);
    settle(&h, &[&b, &a]).await;
    assert_same_as_server(&h, &a, user).await;
    assert_same_as_server(&h, &b, user).await;
    h.drop().await;
}

struct Refreshing {
    h: PgRemoteRef,
    user: UserId,
    current: std::sync::Mutex<Arc<AccessToken>>,
    refreshes: std::sync::atomic::AtomicU32,
}
type PgRemoteRef = luma_sync::PostgresRemote;

#[async_trait::async_trait]
impl TokenProvider for Refreshing {
    async fn token(&self) -> luma_sync::Result<Arc<AccessToken>> {
        Ok(self.current.lock().unwrap().clone())
    }
    async fn refresh(&self) -> luma_sync::Result<Arc<AccessToken>> {
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let t = Arc::new(self.h.sign_in(self.user));
        *self.current.lock().unwrap() = t.clone();
        Ok(t)
    }
}

#[tokio::test]
async fn a_signed_out_session_leads_to_one_refresh_and_joining_a_venue_shows_its_rows() {
    let h = PgHarness::new().await;
    let remote = Scripted::new(h.remote.clone());
    let (alice, bob) = (UserId::new(), UserId::new());
    let stale = Arc::new(h.remote.sign_in(alice));
    h.remote.sign_out(alice);
    let tokens = Arc::new(Refreshing {
        h: h.remote.clone(),
        user: alice,
        current: std::sync::Mutex::new(stale),
        refreshes: Default::default(),
    });
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(alice)).await.unwrap();
    let mut venue = Venue::new("Shared");
    venue.share_code = Some("JOINME01".into());
    store.venues().create(&venue).await.unwrap();
    store
        .fixtures()
        .create(&Fixture::new(venue.id, 1, 1, 1))
        .await
        .unwrap();
    let a = SyncEngine::new(store, remote.clone(), tokens.clone(), fast_config());
    let r = a.sync_now().await.unwrap();
    assert_eq!(r.push.applied, 2);
    assert_eq!(
        tokens.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // A token nobody issued stays refused after the one refresh.
    let err = h
        .remote
        .join_venue(&AccessToken::new(bob, "forged"), "JOINME01")
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Unauthorized { .. }), "{err:?}");

    let tb = h.remote.sign_in(bob);
    assert_eq!(
        h.remote.join_venue(&tb, "JOINME01").await.unwrap(),
        venue.id.to_string()
    );
    let b = device(&h, &remote, bob).await;
    wait(&h).await;
    b.sync_now().await.unwrap();
    assert_eq!(b.local().fixtures().count().await.unwrap(), 1);
    assert!(h
        .remote
        .leave_venue(&tb, &venue.id.to_string())
        .await
        .unwrap());
    let server = server_state(&h, &tb, &["venues", "fixtures"]).await;
    assert!(
        server["fixtures"].is_empty(),
        "a member who left sees nothing"
    );
    h.drop().await;
}

/// An unknown share code: `luma_join_venue` raises SQLSTATE `PT404` (cloud migration 0009;
/// PostgREST answers it with HTTP 404, where `P0002` was a 500), and `PostgresRemote` answers a
/// permanent, non-retryable "not found".
#[tokio::test]
async fn joining_with_an_unknown_share_code_is_a_permanent_not_found() {
    let h = PgHarness::new().await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let ta = h.remote.sign_in(alice);
    let mut venue = Venue::new("Coded");
    venue.share_code = Some("KNOWN001".into());
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(alice)).await.unwrap();
    store.venues().create(&venue).await.unwrap();
    let a = SyncEngine::new(
        store,
        h.remote.clone(),
        Arc::new(StaticToken(Arc::new(ta))),
        fast_config(),
    );
    assert_eq!(a.sync_now().await.unwrap().push.applied, 1);

    // The SQL, called as PostgREST calls it (role and claims set in the transaction).
    let mut tx = h.remote.pool().begin().await.unwrap();
    sqlx::query(
        "SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)",
    )
    .bind(serde_json::json!({"sub": bob.to_string(), "role": "authenticated"}).to_string())
    .execute(&mut *tx)
    .await
    .unwrap();
    let err = sqlx::query("SELECT luma_join_venue($1)")
        .bind("NOSUCH01")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    let db = err.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("PT404"), "{err}");
    assert_eq!(db.message(), "no venue has this share code");
    tx.rollback().await.unwrap();

    // PostgresRemote: a permanent "not found", not retryable; a known code still joins.
    let tb = h.remote.sign_in(bob);
    let e = h.remote.join_venue(&tb, "NOSUCH01").await.unwrap_err();
    assert!(matches!(e, SyncError::Permanent { .. }), "{e:?}");
    assert!(!e.is_retryable() && !e.is_unauthorized(), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the remote refused the request: not found: no venue has this share code (SQLSTATE PT404)"
    );
    // The venue's real code still joins.
    assert_eq!(
        h.remote.join_venue(&tb, "KNOWN001").await.unwrap(),
        venue.id.to_string()
    );
    h.drop().await;
}

/// On the real server: a device that already pulled receives a venue's older rows after its
/// user joins by share code, and loses them after leaving, except a row with an unpushed
/// edit, whose op is then refused and listed (not dropped).
#[tokio::test]
async fn joining_backfills_an_existing_device_and_leaving_clears_it_keeping_unpushed_edits() {
    let h = PgHarness::new().await;
    let remote = Scripted::new(h.remote.clone());
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = device(&h, &remote, alice).await;
    let b = device(&h, &remote, bob).await;
    let mut venue = Venue::new("Shared");
    venue.share_code = Some("BACKFIL1".into());
    a.local().venues().create(&venue).await.unwrap();
    let (f1, f2) = (
        Fixture::new(venue.id, 1, 1, 4),
        Fixture::new(venue.id, 1, 9, 4),
    );
    a.local().fixtures().create(&f1).await.unwrap();
    a.local().fixtures().create(&f2).await.unwrap();
    a.sync_now().await.unwrap();
    // Bob's device pulls after Alice's rows exist: its cursors move past them.
    let own = Venue::new("Bob's bar");
    b.local().venues().create(&own).await.unwrap();
    wait(&h).await;
    b.sync_now().await.unwrap();
    wait(&h).await;
    b.sync_now().await.unwrap();
    assert_eq!(b.local().fixtures().count().await.unwrap(), 0);

    let tb = h.remote.sign_in(bob);
    h.remote.join_venue(&tb, "BACKFIL1").await.unwrap();
    wait(&h).await;
    b.sync_now().await.unwrap();
    assert_eq!(b.local().fixtures().count().await.unwrap(), 2, "backfilled");
    assert!(b.local().venues().find(venue.id).await.unwrap().is_some());

    let mut edited = b.local().fixtures().get(f2.id).await.unwrap();
    edited.label = Some("unpushed".into());
    b.local().fixtures().update(&edited).await.unwrap();
    assert!(h
        .remote
        .leave_venue(&tb, &venue.id.to_string())
        .await
        .unwrap());
    wait(&h).await;
    b.pull().await.unwrap();
    assert!(b.local().fixtures().find(f1.id).await.unwrap().is_none());
    assert_eq!(
        b.local()
            .fixtures()
            .get(f2.id)
            .await
            .unwrap()
            .label
            .as_deref(),
        Some("unpushed")
    );
    let r = b.sync_now().await.unwrap();
    assert_eq!(r.push.rejected, 1, "{r:?}");
    let errors = b.pending_errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0]
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("forbidden"));
    b.discard(errors[0].id).await.unwrap();
    wait(&h).await;
    b.sync_now().await.unwrap();
    wait(&h).await;
    b.sync_now().await.unwrap();
    assert_eq!(b.local().fixtures().count().await.unwrap(), 0);
    assert!(b.local().venues().find(venue.id).await.unwrap().is_none());
    assert!(b.local().venues().find(own.id).await.unwrap().is_some());
    assert_same_as_server(&h, &b, bob).await;
    h.drop().await;
}

/// A far-future stamp already stored on the server (written as superuser, as a server before
/// the stamp checks accepted from anyone), and a tags value the client cannot decode, are
/// harmless to a puller: parked with their reasons, while it writes, syncs and reopens.
#[tokio::test]
async fn hostile_rows_stored_on_the_server_are_parked_and_the_puller_keeps_syncing() {
    let h = PgHarness::new().await;
    let remote = Scripted::new(h.remote.clone());
    let user = UserId::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let venue = Venue::new("Club");
    let evil = luma_model::FixtureGroup::new(venue.id, "evil");
    let tags = luma_model::FixtureGroup::new(venue.id, "tags");
    let good = luma_model::FixtureGroup::new(venue.id, "good");
    let a = device_on(Store::open(&path).await.unwrap(), &h, &remote, user).await;
    a.local().venues().create(&venue).await.unwrap();
    for g in [&evil, &tags, &good] {
        a.local().fixture_groups().create(g).await.unwrap();
    }
    settle(&h, &[&a]).await;

    sqlx::query(
        "UPDATE public.fixture_groups SET name = 'evil, far future', \
         hlc = '999999999999999-999999-ffffffffffffffff' WHERE id = $1::uuid",
    )
    .bind(evil.id.to_string())
    .execute(h.admin.pool())
    .await
    .unwrap();
    let fresh = luma_model::Hlc::new(
        luma_model::wall_clock_ms() + 1_000,
        0,
        luma_model::SiteId(u64::MAX),
    );
    // (A server with a CHECK on the tags shape refuses this even for a superuser: then only
    // the far-future row is served.)
    let tags_stored = sqlx::query(
        "UPDATE public.fixture_groups SET tags = '{\"not\": \"a list\"}'::jsonb, hlc = $2 \
         WHERE id = $1::uuid",
    )
    .bind(tags.id.to_string())
    .bind(fresh.to_string())
    .execute(h.admin.pool())
    .await
    .is_ok();
    wait(&h).await;
    let r = a.sync_now().await.unwrap();
    let expected_parked = 1 + u64::from(tags_stored);
    assert_eq!(r.pull.apply.parked, expected_parked);
    let parked = a.parked_rows().await.unwrap();
    let skewed = parked
        .iter()
        .find(|p| p.key == luma_model::RecordKey::from(evil.id))
        .unwrap();
    assert_eq!(skewed.reason, luma_store::ParkReason::ClockSkew);
    if tags_stored {
        let bad = parked
            .iter()
            .find(|p| p.key == luma_model::RecordKey::from(tags.id))
            .unwrap();
        assert_eq!(bad.reason, luma_store::ParkReason::Invalid);
    }
    assert_eq!(a.status().borrow().parked, expected_parked);
    let clock = a.local().clock_stamp().await.unwrap();
    assert!(
        clock.physical_ms <= luma_model::wall_clock_ms() + 1_000,
        "{clock}"
    );
    assert_eq!(
        a.local().fixture_groups().get(evil.id).await.unwrap().name,
        "evil"
    );

    // The device writes and syncs with sane stamps, and reopens.
    let mut renamed = good.clone();
    renamed.name = "good, renamed".into();
    a.local().fixture_groups().update(&renamed).await.unwrap();
    let r = a.sync_now().await.unwrap();
    assert_eq!(r.push.applied, 1);
    assert!(a.pending_errors().await.unwrap().is_empty());
    a.local().close().await;
    drop(a);
    let a = device_on(Store::open(&path).await.unwrap(), &h, &remote, user).await;
    a.local()
        .venues()
        .create(&Venue::new("after reopen"))
        .await
        .unwrap();
    wait(&h).await;
    let r = a.sync_now().await.unwrap();
    assert_eq!(r.push.applied, 1);
    assert_eq!(a.status().borrow().parked, expected_parked);
    let listed = a.local().fixture_groups().list().await.unwrap();
    assert_eq!(listed.len(), 3);
    h.drop().await;
}

/// A device with the default configuration (pages of 1,000 rows).
async fn default_device(h: &PgHarness, remote: &Scripted, user: UserId) -> Engine {
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    SyncEngine::new(
        store,
        remote.clone(),
        Arc::new(StaticToken(Arc::new(h.remote.sign_in(user)))),
        luma_sync::SyncConfig::default(),
    )
}

/// `n` fixtures of `venue`, each at its own address.
fn many_fixtures(venue: &Venue, n: i64) -> Vec<Fixture> {
    (0..n)
        .map(|i| Fixture::new(venue.id, 1 + i / 500, 1 + i % 500, 1))
        .collect()
}

/// Purges every tombstone (a zero horizon, once they are older than the clock).
async fn purge(h: &PgHarness) {
    tokio::time::sleep(Duration::from_millis(20)).await;
    h.admin.purge_tombstones(Duration::ZERO).await.unwrap();
}

/// Issue 13 item 3 on PostgreSQL: a device offline past a purge, default pages, 1,500
/// fixtures: the resync is served to its end (every live row, none of its own synced rows
/// deleted), and the next cycle does not resync again.
#[tokio::test]
async fn a_resync_after_a_purge_with_more_than_one_page_keeps_every_live_row() {
    let h = PgHarness::new().await;
    let remote = Scripted::new(h.remote.clone());
    let user = UserId::new();
    let a = default_device(&h, &remote, user).await;
    let b = default_device(&h, &remote, user).await;
    let venue = Venue::new("Big");
    a.local().venues().create(&venue).await.unwrap();
    let fixtures = many_fixtures(&venue, 1_500);
    a.local().fixtures().create_many(&fixtures).await.unwrap();
    a.sync_now().await.unwrap();
    let own = Venue::new("b's own");
    b.local().venues().create(&own).await.unwrap();
    b.local()
        .fixtures()
        .create_many(&many_fixtures(&own, 20))
        .await
        .unwrap();
    settle(&h, &[&a, &b]).await;
    assert_eq!(b.local().fixtures().count().await.unwrap(), 1_520);
    for f in &fixtures[..3] {
        a.local().fixtures().delete(f.id).await.unwrap();
    }
    a.sync_now().await.unwrap();
    purge(&h).await;
    wait(&h).await;
    b.sync_now().await.unwrap();
    assert_eq!(b.local().fixtures().count().await.unwrap(), 1_517);
    assert!(b
        .local()
        .fixtures()
        .find(fixtures[0].id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(b.status().borrow().last_error, None);
    assert_same_as_server(&h, &b, user).await;
    wait(&h).await;
    let r = b.pull().await.unwrap();
    assert_eq!(r.rows, 0, "the stored cursor is accepted: {r:?}");
    assert_same_as_server(&h, &b, user).await;
    h.drop().await;
}

/// A brand-new device after a purge gets every live row.
#[tokio::test]
async fn a_new_device_after_a_purge_gets_every_live_row() {
    let h = PgHarness::new().await;
    let remote = Scripted::new(h.remote.clone());
    let user = UserId::new();
    let a = default_device(&h, &remote, user).await;
    let venue = Venue::new("Big");
    a.local().venues().create(&venue).await.unwrap();
    let fixtures = many_fixtures(&venue, 1_500);
    a.local().fixtures().create_many(&fixtures).await.unwrap();
    a.sync_now().await.unwrap();
    a.local().fixtures().delete(fixtures[0].id).await.unwrap();
    a.sync_now().await.unwrap();
    purge(&h).await;
    let c = default_device(&h, &remote, user).await;
    wait(&h).await;
    c.sync_now().await.unwrap();
    assert_eq!(c.local().fixtures().count().await.unwrap(), 1_499);
    assert_same_as_server(&h, &c, user).await;
    h.drop().await;
}

/// A join that backfills a venue after a purge gets every row of it (pages of 100).
#[tokio::test]
async fn a_join_backfill_after_a_purge_gets_every_row() {
    let h = PgHarness::new().await;
    let remote = Scripted::new(h.remote.clone());
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = device(&h, &remote, alice).await;
    let b = device(&h, &remote, bob).await;
    let own = Venue::new("Bob's bar");
    b.local().venues().create(&own).await.unwrap();
    wait(&h).await;
    b.sync_now().await.unwrap();
    let mut venue = Venue::new("Shared");
    venue.share_code = Some("PURGED01".into());
    a.local().venues().create(&venue).await.unwrap();
    let fixtures = many_fixtures(&venue, 501);
    a.local().fixtures().create_many(&fixtures).await.unwrap();
    a.sync_now().await.unwrap();
    a.local().fixtures().delete(fixtures[500].id).await.unwrap();
    a.sync_now().await.unwrap();
    purge(&h).await;
    wait(&h).await;
    b.sync_now().await.unwrap();
    assert_eq!(b.local().fixtures().count().await.unwrap(), 0);
    let tb = h.remote.sign_in(bob);
    h.remote.join_venue(&tb, "PURGED01").await.unwrap();
    wait(&h).await;
    b.sync_now().await.unwrap();
    assert_eq!(b.local().fixtures().count().await.unwrap(), 500);
    assert!(b.local().venues().find(own.id).await.unwrap().is_some());
    assert_eq!(b.status().borrow().last_error, None);
    h.drop().await;
}
