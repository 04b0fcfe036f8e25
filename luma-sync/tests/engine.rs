//! The engine against the in-memory remote: convergence of two devices, faults, restarts,
//! rejections, conflicts, token refresh and plugin tables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use luma_model::{Fixture, OpKind, Pattern, RecordKey, UserId, Venue};
use luma_store::Store;
use luma_sync::{AccessToken, Call, Fault, Phase, SyncEngine, SyncError, TokenProvider};

#[tokio::test]
async fn two_devices_converge_through_the_remote() {
    let remote = luma_sync::MemoryRemote::new();
    let user = UserId::new();
    let a = device(&remote, user).await;
    let b = device(&remote, user).await;
    let venue = Venue::new("Club");
    a.local().venues().create(&venue).await.unwrap();
    let mut f = Fixture::new(venue.id, 1, 1, 4);
    f.fixture_path = Some("/only/on/a.json".into());
    a.local().fixtures().create(&f).await.unwrap();
    let r = a.sync_now().await.unwrap();
    assert_eq!(r.push.applied, 2);
    let mut changes = b.changes();
    let r = b.sync_now().await.unwrap();
    assert_eq!(r.pull.rows, 2);
    let got = b.local().fixtures().get(f.id).await.unwrap();
    assert_eq!(
        got.fixture_path, None,
        "local-only columns stay on their device"
    );
    assert_eq!(got.address, 1);
    assert_eq!(
        changes.recv().await.unwrap().tables,
        vec!["venues".to_string()]
    );
    assert_eq!(
        b.local().outbox().pending_count().await.unwrap(),
        0,
        "pulled rows make no ops"
    );
    assert_same_as_remote(&a).await;
    assert_same_as_remote(&b).await;
    let status = b.status().borrow().clone();
    assert!(status.online && status.last_pull.is_some() && status.pending == 0);
}

#[tokio::test]
async fn a_lost_response_is_resent_without_duplicate_or_regression() {
    let remote = luma_sync::MemoryRemote::new();
    let user = UserId::new();
    let a = device(&remote, user).await;
    let venue = Venue::new("v1");
    a.local().venues().create(&venue).await.unwrap();
    remote.inject(Call::Push, Fault::LoseResponse);
    let err = a.push().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(remote.stats().writes, 1, "the server applied it");
    let op = &a.pending_errors().await.unwrap()[0];
    assert_eq!(op.attempts, 1);
    assert!(op.next_retry_ms.is_some() && !op.rejected);
    // A newer edit from another device lands in between.
    let b = device(&remote, user).await;
    b.sync_now().await.unwrap();
    let mut venue = b.local().venues().get(venue.id).await.unwrap();
    venue.name = "v2 from b".into();
    b.local().venues().update(&venue).await.unwrap();
    b.sync_now().await.unwrap();
    assert_eq!(remote.stats().writes, 2);
    // The resend neither duplicates nor regresses.
    a.retry_all().await.unwrap();
    let r = a.sync_now().await.unwrap();
    assert_eq!(r.push.sent, 0, "the pull already settled the op");
    assert_eq!(remote.stats().writes, 2);
    assert_eq!(
        a.local().venues().get(venue.id).await.unwrap().name,
        "v2 from b"
    );
    assert_same_as_remote(&a).await;

    // Resending the very same change is answered `applied` and writes nothing.
    let mut v3 = venue.clone();
    v3.name = "v3".into();
    a.local().venues().update(&v3).await.unwrap();
    remote.inject(Call::Push, Fault::LoseResponse);
    assert!(a.push().await.is_err());
    let writes = remote.stats().writes;
    a.retry_all().await.unwrap();
    let r = a.push().await.unwrap();
    assert_eq!((r.sent, r.applied), (1, 1));
    assert_eq!(remote.stats().writes, writes, "idempotent resend");
    assert_same_as_remote(&a).await;
}

#[tokio::test]
async fn a_rejected_op_is_listed_and_does_not_block_others_then_discard_restores() {
    let remote = luma_sync::MemoryRemote::new();
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = device(&remote, alice).await;
    let b = device(&remote, bob).await;
    let mut pattern = Pattern::new("Community chase");
    pattern.is_verified = true;
    a.local().patterns().create(&pattern).await.unwrap();
    a.sync_now().await.unwrap();
    b.sync_now().await.unwrap();
    let mut theirs = b.local().patterns().get(pattern.id).await.unwrap();
    assert_eq!(theirs.uid, Some(alice));
    theirs.name = "Bob's edit".into();
    b.local().patterns().update(&theirs).await.unwrap();
    let own = Venue::new("Bob's venue");
    b.local().venues().create(&own).await.unwrap();
    let r = b.sync_now().await.unwrap();
    assert_eq!((r.push.applied, r.push.rejected), (1, 1));
    let errors = b.pending_errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].rejected);
    assert_eq!(errors[0].table, "patterns");
    assert!(
        errors[0]
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("forbidden"),
        "{errors:?}"
    );
    assert!(remote
        .snapshot("venues")
        .contains_key(&RecordKey::from(own.id)));
    assert_eq!(b.status().borrow().rejected, 1);
    // A rejected op is not pushed again on its own.
    let writes = remote.stats().writes;
    b.sync_now().await.unwrap();
    assert_eq!(remote.stats().writes, writes);
    // Discard drops the local change; the next pull restores the remote version.
    b.discard(errors[0].id).await.unwrap();
    b.sync_now().await.unwrap();
    assert_eq!(
        b.local().patterns().get(pattern.id).await.unwrap().name,
        "Community chase"
    );
    assert!(b.pending_errors().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_queue_drains_after_a_fault_clears_without_a_new_write() {
    let remote = luma_sync::MemoryRemote::new();
    let user = UserId::new();
    let a = device(&remote, user).await;
    a.local().venues().create(&Venue::new("v")).await.unwrap();
    for _ in 0..3 {
        remote.inject(Call::Push, Fault::ServerError);
    }
    let mut status = a.status();
    a.start();
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if a.local().outbox().pending_count().await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(drained.is_ok(), "the timer retried the push");
    assert!(remote.stats().pushes >= 4);
    status.mark_changed();
    a.shutdown().await;
    assert_eq!(a.status().borrow().phase, Phase::Stopped);
    assert_same_as_remote(&a).await;
}

#[tokio::test]
async fn a_local_write_wakes_the_background_push() {
    let remote = luma_sync::MemoryRemote::new();
    let user = UserId::new();
    let a = device(&remote, user).await;
    a.start();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let v = Venue::new("pushed in the background");
    a.local().venues().create(&v).await.unwrap();
    let ok = tokio::time::timeout(Duration::from_secs(10), async {
        while !remote
            .snapshot("venues")
            .contains_key(&RecordKey::from(v.id))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    a.shutdown().await;
    assert!(ok.is_ok());
}

#[tokio::test]
async fn restart_in_the_middle_of_a_push_and_of_a_pull_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let remote = luma_sync::MemoryRemote::new();
    let user = UserId::new();
    let path = dir.path().join("a.db");
    let venue = Venue::new("v");
    {
        let a = engine_for(Store::open(&path).await.unwrap(), &remote, user).await;
        a.local().venues().create(&venue).await.unwrap();
        for i in 0..5 {
            a.local()
                .fixtures()
                .create(&Fixture::new(venue.id, 1, i + 1, 1))
                .await
                .unwrap();
        }
        // The server applies the push but the device dies before it hears back.
        remote.inject(Call::Push, Fault::LoseResponse);
        assert!(a.push().await.is_err());
        a.local().close().await;
    }
    let writes = remote.stats().writes;
    {
        let a = engine_for(Store::open(&path).await.unwrap(), &remote, user).await;
        a.retry_all().await.unwrap();
        a.sync_now().await.unwrap();
        assert_eq!(remote.stats().writes, writes, "nothing written twice");
        assert_eq!(a.local().outbox().pending_count().await.unwrap(), 0);
        assert_same_as_remote(&a).await;
    }
    // A second device pulls page by page and dies half way.
    let path_b = dir.path().join("b.db");
    {
        let b = engine_for(Store::open(&path_b).await.unwrap(), &remote, user).await;
        let mut cfg = fast_config();
        cfg.page_size = 2;
        let b = SyncEngine::new(
            b.local().clone(),
            remote.clone(),
            Arc::new(luma_sync::StaticToken(Arc::new(remote.issue_token(user)))),
            cfg,
        );
        // Every table before fixtures takes one page, then fixtures' first page; the next
        // page fails.
        let order = b.local().synced_tables().unwrap();
        let before = order.iter().position(|t| t.name == "fixtures").unwrap();
        for _ in 0..=before {
            remote.inject(Call::Pull, Fault::Delay(Duration::ZERO));
        }
        remote.inject(Call::Pull, Fault::FailRequest);
        assert!(b.pull().await.is_err());
        let have = b.local().fixtures().count().await.unwrap();
        assert!(have > 0 && have < 5, "half way: {have}");
        b.local().close().await;
    }
    {
        let b = engine_for(Store::open(&path_b).await.unwrap(), &remote, user).await;
        let r = b.sync_now().await.unwrap();
        assert!(r.pull.rows < 6, "resumed from the cursor: {r:?}");
        assert_eq!(b.local().fixtures().count().await.unwrap(), 5);
        assert_eq!(b.local().outbox().pending_count().await.unwrap(), 0);
        assert_same_as_remote(&b).await;
    }
}

#[tokio::test]
async fn a_delete_racing_an_update_resolves_by_the_newer_stamp() {
    let remote = luma_sync::MemoryRemote::new();
    let user = UserId::new();
    let a = device(&remote, user).await;
    let b = device(&remote, user).await;
    let venue = Venue::new("v");
    a.local().venues().create(&venue).await.unwrap();
    let f = Fixture::new(venue.id, 1, 1, 1);
    a.local().fixtures().create(&f).await.unwrap();
    settle(&[&a, &b]).await;
    let mut venue = b.local().venues().get(venue.id).await.unwrap();

    // a deletes, then b updates later: the update is newer and wins for the venue; the
    // fixture stays deleted (its delete is its own newest write).
    a.local().venues().delete(venue.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    venue.name = "renamed later".into();
    b.local().venues().update(&venue).await.unwrap();
    settle(&[&a, &b]).await;
    for e in [&a, &b] {
        assert_eq!(
            e.local().venues().get(venue.id).await.unwrap().name,
            "renamed later"
        );
        assert_eq!(e.local().fixtures().count().await.unwrap(), 0);
        assert_same_as_remote(e).await;
    }

    // b updates, then a deletes later: the delete wins everywhere.
    venue.name = "again".into();
    b.local().venues().update(&venue).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    a.local().venues().delete(venue.id).await.unwrap();
    settle(&[&b, &a]).await;
    for e in [&a, &b] {
        assert!(e.local().venues().find(venue.id).await.unwrap().is_none());
        assert!(e.pending_errors().await.unwrap().is_empty());
        assert_same_as_remote(e).await;
    }
}

/// The defined outcome: a parent delete wins over a child created concurrently under it. The
/// server rejects the child (`missing_parent`); the creating device's next pull applies the
/// parent's tombstone, which removes the child locally and turns its op into a delete
/// (reported), so the child ends deleted on the server too.
#[tokio::test]
async fn a_child_created_under_a_concurrently_deleted_parent_is_removed_everywhere() {
    let remote = luma_sync::MemoryRemote::new();
    let user = UserId::new();
    let a = device(&remote, user).await;
    let b = device(&remote, user).await;
    let venue = Venue::new("v");
    a.local().venues().create(&venue).await.unwrap();
    settle(&[&a, &b]).await;
    a.local().venues().delete(venue.id).await.unwrap();
    a.sync_now().await.unwrap();
    let child = Fixture::new(venue.id, 1, 1, 1);
    b.local().fixtures().create(&child).await.unwrap();
    // Push first (as the background loop would right after the write).
    let r = b.push().await.unwrap();
    assert_eq!(r.rejected, 1);
    let err = &b.pending_errors().await.unwrap()[0];
    assert!(err
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("missing_parent"));
    let r = b.pull().await.unwrap();
    assert_eq!(
        r.apply.orphaned.len() + r.apply.superseded.len(),
        1,
        "{r:?}"
    );
    assert!(b.pending_errors().await.unwrap().is_empty());
    assert_eq!(b.local().fixtures().count().await.unwrap(), 0);
    assert!(b.local().venues().find(venue.id).await.unwrap().is_none());
    settle(&[&a, &b]).await;
    assert_same_as_remote(&a).await;
    assert_same_as_remote(&b).await;
}

mockall::mock! {
    Tokens {}
    #[async_trait::async_trait]
    impl TokenProvider for Tokens {
        async fn token(&self) -> luma_sync::Result<Arc<AccessToken>>;
        async fn refresh(&self) -> luma_sync::Result<Arc<AccessToken>>;
    }
}

#[tokio::test]
async fn a_401_leads_to_exactly_one_refresh() {
    let remote = luma_sync::MemoryRemote::new();
    let user = UserId::new();
    let stale = Arc::new(remote.issue_token(user));
    remote.expire_tokens(user);
    let fresh = Arc::new(remote.issue_token(user));
    let mut tokens = MockTokens::new();
    let s = stale.clone();
    tokens.expect_token().returning(move || Ok(s.clone()));
    let f = fresh.clone();
    tokens
        .expect_refresh()
        .times(1)
        .returning(move || Ok(f.clone()));
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    store.venues().create(&Venue::new("v")).await.unwrap();
    let engine = SyncEngine::new(store, remote.clone(), Arc::new(tokens), fast_config());
    let r = engine.sync_now().await.unwrap();
    assert_eq!(r.push.applied, 1);

    // A token refused again after the refresh is an error, still after one refresh.
    let remote2 = luma_sync::MemoryRemote::new();
    let mut tokens = MockTokens::new();
    let bad = Arc::new(AccessToken::new(user, "unknown"));
    let b1 = bad.clone();
    tokens.expect_token().returning(move || Ok(b1.clone()));
    let b2 = bad.clone();
    tokens
        .expect_refresh()
        .times(1)
        .returning(move || Ok(b2.clone()));
    let engine = SyncEngine::new(
        Store::open_in_memory().await.unwrap(),
        remote2,
        Arc::new(tokens),
        fast_config(),
    );
    let err = engine.pull().await.unwrap_err();
    assert!(matches!(err, SyncError::Unauthorized { .. }), "{err:?}");
}

#[tokio::test]
async fn ops_of_another_user_are_never_pushed_with_this_token() {
    let remote = luma_sync::MemoryRemote::new();
    let (alice, bob) = (UserId::new(), UserId::new());
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(alice)).await.unwrap();
    let va = Venue::new("alice's");
    store.venues().create(&va).await.unwrap();
    // Alice signs out with an unpushed op; Bob signs in on the same device.
    store.set_current_user(Some(bob)).await.unwrap();
    let vb = Venue::new("bob's");
    store.venues().create(&vb).await.unwrap();
    let engine = engine_for(store.clone(), &remote, bob).await;
    let r = engine.sync_now().await.unwrap();
    assert_eq!(r.push.applied, 1);
    assert!(!remote
        .snapshot("venues")
        .contains_key(&RecordKey::from(va.id)));
    let left = store.outbox().all().await.unwrap();
    assert_eq!(left.len(), 1, "alice's op is kept for her");
    assert_eq!(left[0].user_id, Some(alice));
    assert_eq!(left[0].kind, OpKind::Upsert);
}

#[tokio::test]
async fn a_cursor_older_than_the_tombstone_horizon_triggers_a_full_resync_that_keeps_pending_ops() {
    let remote = luma_sync::MemoryRemote::new();
    let user = UserId::new();
    let a = device(&remote, user).await;
    let b = device(&remote, user).await;
    let (gone, kept) = (Venue::new("gone"), Venue::new("kept"));
    a.local().venues().create(&gone).await.unwrap();
    a.local().venues().create(&kept).await.unwrap();
    a.local()
        .fixtures()
        .create(&Fixture::new(gone.id, 1, 1, 1))
        .await
        .unwrap();
    settle(&[&a, &b]).await;
    // b has an unpushed edit when the horizon passes it by.
    let mut edit = b.local().venues().get(kept.id).await.unwrap();
    edit.description = "pending on b".into();
    b.local().venues().update(&edit).await.unwrap();
    a.local().venues().delete(gone.id).await.unwrap();
    a.sync_now().await.unwrap();
    remote.purge_tombstones();
    let r = b.pull().await.unwrap();
    assert!(r.apply.deleted >= 1, "{r:?}");
    assert!(b.local().venues().find(gone.id).await.unwrap().is_none());
    assert_eq!(b.local().fixtures().count().await.unwrap(), 0);
    assert_eq!(
        b.local().venues().get(kept.id).await.unwrap().description,
        "pending on b"
    );
    assert_eq!(b.local().outbox().pending_count().await.unwrap(), 1);
    settle(&[&b, &a]).await;
    assert_same_as_remote(&a).await;
    assert_same_as_remote(&b).await;
}

#[tokio::test]
async fn venue_members_share_a_venue_and_a_forbidden_delete_is_restored_by_discard() {
    let remote = luma_sync::MemoryRemote::new();
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = device(&remote, alice).await;
    let b = device(&remote, bob).await;
    let venue = Venue::new("Alice's club");
    a.local().venues().create(&venue).await.unwrap();
    let f = Fixture::new(venue.id, 1, 1, 4);
    a.local().fixtures().create(&f).await.unwrap();
    a.sync_now().await.unwrap();
    // Not a member yet: Bob sees nothing.
    b.sync_now().await.unwrap();
    assert_eq!(b.local().venues().count().await.unwrap(), 0);
    remote.add_member(venue.id, bob);
    // Bob joins before his first pull of these tables (backfill of tables already pulled
    // needs the server's help: see PROTOCOL.md).
    let b = device(&remote, bob).await;
    b.sync_now().await.unwrap();
    assert_eq!(b.local().fixtures().count().await.unwrap(), 1);
    // Bob edits a fixture: allowed for members.
    let mut edited = b.local().fixtures().get(f.id).await.unwrap();
    edited.label = Some("from bob".into());
    b.local().fixtures().update(&edited).await.unwrap();
    b.sync_now().await.unwrap();
    a.sync_now().await.unwrap();
    assert_eq!(
        a.local()
            .fixtures()
            .get(f.id)
            .await
            .unwrap()
            .label
            .as_deref(),
        Some("from bob")
    );
    // Bob may not delete Alice's venue: rejected, listed, and discard brings it back with
    // its fixture.
    b.local().venues().delete(venue.id).await.unwrap();
    let r = b.sync_now().await.unwrap();
    assert!(r.push.rejected >= 1, "{r:?}");
    let errors = b.pending_errors().await.unwrap();
    let venue_op = errors.iter().find(|o| o.table == "venues").unwrap();
    assert!(venue_op
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("forbidden"));
    for op in b.pending_errors().await.unwrap() {
        b.discard(op.id).await.unwrap();
    }
    // The fixture's own delete op may have been applied or rejected; either way after the
    // next sync Bob matches the server.
    b.sync_now().await.unwrap();
    assert!(b.local().venues().find(venue.id).await.unwrap().is_some());
    assert!(b.pending_errors().await.unwrap().is_empty());
    settle(&[&a, &b]).await;
    assert_eq!(local_state(a.local()).await, local_state(b.local()).await);
    assert_same_as_remote(&a).await;
}

/// A device that pulled already (its cursors are past the venue's rows) receives a venue's
/// older rows when its user joins, and loses them when the user is removed, except a row with
/// an unpushed edit (and its parent), whose op is then reported as refused, not dropped.
#[tokio::test]
async fn joining_backfills_older_rows_and_removal_clears_them_keeping_unpushed_edits() {
    let remote = luma_sync::MemoryRemote::new();
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = device(&remote, alice).await;
    let b = device(&remote, bob).await;
    let own = Venue::new("Bob's bar");
    b.local().venues().create(&own).await.unwrap();
    let shared = Venue::new("Alice's club");
    a.local().venues().create(&shared).await.unwrap();
    let (f1, f2) = (
        Fixture::new(shared.id, 1, 1, 4),
        Fixture::new(shared.id, 1, 5, 4),
    );
    a.local().fixtures().create(&f1).await.unwrap();
    a.local().fixtures().create(&f2).await.unwrap();
    let group = luma_model::FixtureGroup::new(shared.id, "Front");
    a.local().fixture_groups().create(&group).await.unwrap();
    let member = luma_model::FixtureGroupMember {
        fixture_id: f1.id,
        group_id: group.id,
        display_order: 0,
    };
    a.local().group_members().create(&member).await.unwrap();
    a.sync_now().await.unwrap();
    b.sync_now().await.unwrap();
    b.sync_now().await.unwrap();
    assert_eq!(b.local().venues().count().await.unwrap(), 1, "only his own");

    remote.add_member(shared.id, bob);
    b.sync_now().await.unwrap();
    assert!(b.local().venues().find(shared.id).await.unwrap().is_some());
    assert_eq!(b.local().fixtures().count().await.unwrap(), 2);
    assert_eq!(b.local().fixture_groups().count().await.unwrap(), 1);
    assert_eq!(b.local().group_members().count().await.unwrap(), 1);
    assert_eq!(
        local_state(a.local()).await["fixtures"],
        local_state(b.local()).await["fixtures"]
    );

    // Bob edits f2 offline; meanwhile Alice removes him from the venue.
    let mut edited = b.local().fixtures().get(f2.id).await.unwrap();
    edited.label = Some("bob's unpushed edit".into());
    b.local().fixtures().update(&edited).await.unwrap();
    remote.remove_member(shared.id, bob);
    b.pull().await.unwrap();
    assert!(b.local().fixtures().find(f1.id).await.unwrap().is_none());
    assert_eq!(b.local().fixture_groups().count().await.unwrap(), 0);
    assert_eq!(b.local().group_members().count().await.unwrap(), 0);
    let kept = b.local().fixtures().get(f2.id).await.unwrap();
    assert_eq!(kept.label.as_deref(), Some("bob's unpushed edit"));
    assert!(
        b.local().venues().find(shared.id).await.unwrap().is_some(),
        "the parent of a kept row stays"
    );
    assert!(b.local().venues().find(own.id).await.unwrap().is_some());
    assert_eq!(
        b.local().outbox().all().await.unwrap().len(),
        1,
        "the edit's op is kept"
    );

    // Pushing it is refused: listed with the reason, and discarding it removes the rest.
    let r = b.sync_now().await.unwrap();
    assert_eq!(r.push.rejected, 1, "{r:?}");
    let errors = b.pending_errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].table, "fixtures");
    assert!(errors[0]
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("forbidden"));
    b.discard(errors[0].id).await.unwrap();
    b.sync_now().await.unwrap();
    b.sync_now().await.unwrap();
    assert!(b.local().fixtures().find(f2.id).await.unwrap().is_none());
    assert!(b.local().venues().find(shared.id).await.unwrap().is_none());
    assert!(b.local().venues().find(own.id).await.unwrap().is_some());
    let state = local_state(b.local()).await;
    let left: usize = state.values().map(|rows| rows.len()).sum();
    assert_eq!(left, 1, "only Bob's own venue is left: {state:?}");
    a.sync_now().await.unwrap();
    let server = remote_state(&remote, a.local());
    assert_eq!(local_state(a.local()).await["fixtures"], server["fixtures"]);
}

/// A device with the default configuration (pages of 1,000 rows).
async fn default_device(remote: &luma_sync::MemoryRemote, user: UserId) -> Engine {
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    SyncEngine::new(
        store,
        remote.clone(),
        Arc::new(luma_sync::StaticToken(Arc::new(remote.issue_token(user)))),
        luma_sync::SyncConfig::default(),
    )
}

/// `n` fixtures of `venue`, each at its own address.
fn many_fixtures(venue: &Venue, n: i64) -> Vec<Fixture> {
    (0..n)
        .map(|i| Fixture::new(venue.id, 1 + i / 500, 1 + i % 500, 1))
        .collect()
}

/// Issue 13 item 3: a device offline past a tombstone purge, default pages, 1,500 fixtures:
/// the resync from null is served to its end, so it keeps every live row (its own synced
/// rows too) and loses the deleted ones.
#[tokio::test]
async fn a_resync_after_a_purge_with_more_than_one_page_keeps_every_live_row() {
    let remote = luma_sync::MemoryRemote::new();
    let user = UserId::new();
    let a = default_device(&remote, user).await;
    let b = default_device(&remote, user).await;
    let venue = Venue::new("Big");
    a.local().venues().create(&venue).await.unwrap();
    let fixtures = many_fixtures(&venue, 1_500);
    a.local().fixtures().create_many(&fixtures).await.unwrap();
    a.sync_now().await.unwrap();
    // b's own rows, synced before it goes offline.
    let own = Venue::new("b's own");
    b.local().venues().create(&own).await.unwrap();
    b.local()
        .fixtures()
        .create_many(&many_fixtures(&own, 20))
        .await
        .unwrap();
    settle(&[&a, &b]).await;
    assert_eq!(b.local().fixtures().count().await.unwrap(), 1_520);
    // b is offline: a deletes three fixtures, the tombstones are purged.
    for f in &fixtures[..3] {
        a.local().fixtures().delete(f.id).await.unwrap();
    }
    a.sync_now().await.unwrap();
    remote.purge_tombstones();
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
    assert_same_as_remote(&b).await;
    // Later cycles keep it so (the stored cursor is accepted, no resync loop).
    let r = b.sync_now().await.unwrap();
    assert_eq!(r.pull.rows, 0, "{r:?}");
    assert_same_as_remote(&b).await;
}

/// A brand-new device after a purge gets every live row (its pull from null is not cut at
/// its first page).
#[tokio::test]
async fn a_new_device_after_a_purge_gets_every_live_row() {
    let remote = luma_sync::MemoryRemote::new();
    let user = UserId::new();
    let a = default_device(&remote, user).await;
    let venue = Venue::new("Big");
    a.local().venues().create(&venue).await.unwrap();
    let fixtures = many_fixtures(&venue, 1_500);
    a.local().fixtures().create_many(&fixtures).await.unwrap();
    a.sync_now().await.unwrap();
    a.local().fixtures().delete(fixtures[0].id).await.unwrap();
    a.sync_now().await.unwrap();
    remote.purge_tombstones();
    let c = default_device(&remote, user).await;
    c.sync_now().await.unwrap();
    assert_eq!(c.local().fixtures().count().await.unwrap(), 1_499);
    assert_same_as_remote(&c).await;
}

/// A join that backfills a venue after a purge gets every row of it (pages of 100).
#[tokio::test]
async fn a_join_backfill_after_a_purge_gets_every_row() {
    let remote = luma_sync::MemoryRemote::new();
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = device(&remote, alice).await;
    let b = device(&remote, bob).await;
    let own = Venue::new("Bob's bar");
    b.local().venues().create(&own).await.unwrap();
    b.sync_now().await.unwrap();
    let venue = Venue::new("Shared");
    a.local().venues().create(&venue).await.unwrap();
    let fixtures = many_fixtures(&venue, 501);
    a.local().fixtures().create_many(&fixtures).await.unwrap();
    a.sync_now().await.unwrap();
    a.local().fixtures().delete(fixtures[500].id).await.unwrap();
    a.sync_now().await.unwrap();
    remote.purge_tombstones();
    b.sync_now().await.unwrap();
    assert_eq!(b.local().fixtures().count().await.unwrap(), 0);
    remote.add_member(venue.id, bob);
    b.sync_now().await.unwrap();
    assert_eq!(b.local().fixtures().count().await.unwrap(), 500);
    assert!(b.local().venues().find(own.id).await.unwrap().is_some());
    assert_eq!(b.status().borrow().last_error, None);
}

/// A MemoryRemote on which, right after it serves the first page of a `fixtures` pass from
/// null, another device deletes a fixture and the server purges tombstones: a purge during
/// the pass, so its next page answers `resync_required`.
struct PurgeMidPass {
    inner: luma_sync::MemoryRemote,
    deleter: AccessToken,
    victims: std::sync::Mutex<Vec<luma_model::FixtureId>>,
}

#[async_trait::async_trait]
impl luma_sync::Remote for PurgeMidPass {
    async fn push(
        &self,
        token: &AccessToken,
        changes: &[luma_sync::Change],
    ) -> luma_sync::Result<Vec<luma_sync::ChangeOutcome>> {
        self.inner.push(token, changes).await
    }
    async fn pull(
        &self,
        token: &AccessToken,
        request: &luma_sync::PullRequest,
    ) -> luma_sync::Result<luma_sync::PullPage> {
        let page = self.inner.pull(token, request).await?;
        let victim = (request.table == "fixtures" && request.cursor.is_none() && page.has_more)
            .then(|| self.victims.lock().unwrap().pop())
            .flatten();
        if let Some(id) = victim {
            let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap();
            let change = luma_sync::Change {
                table: "fixtures".into(),
                key: RecordKey::from(id),
                hlc: luma_model::Hlc::new(now, 0, luma_model::SiteId::random()),
                op: OpKind::Delete,
                row: None,
            };
            self.inner.push(&self.deleter, &[change]).await?;
            self.inner.purge_tombstones();
        }
        Ok(page)
    }
    async fn watermark(&self, token: &AccessToken) -> luma_sync::Result<luma_sync::Watermark> {
        self.inner.watermark(token).await
    }
    async fn memberships(
        &self,
        token: &AccessToken,
    ) -> luma_sync::Result<Vec<luma_sync::Membership>> {
        self.inner.memberships(token).await
    }
}

/// A purge during a resync pass restarts the pass from null (a refused page is never read as
/// the last one); when purges keep coming, the pass gives up after a bounded number of
/// restarts with an error in the status and removes nothing; the next cycle completes it.
#[tokio::test]
async fn a_purge_during_a_resync_restarts_the_pass_and_too_many_fail_the_table_without_a_cut() {
    let remote = luma_sync::MemoryRemote::new();
    let user = UserId::new();
    let a = default_device(&remote, user).await;
    let venue = Venue::new("Big");
    a.local().venues().create(&venue).await.unwrap();
    let fixtures = many_fixtures(&venue, 1_500);
    a.local().fixtures().create_many(&fixtures).await.unwrap();
    a.sync_now().await.unwrap();
    a.local().fixtures().delete(fixtures[0].id).await.unwrap();
    a.sync_now().await.unwrap();
    remote.purge_tombstones();
    let token = Arc::new(remote.issue_token(user));
    let wrapped = Arc::new(PurgeMidPass {
        inner: remote.clone(),
        deleter: remote.issue_token(user),
        victims: std::sync::Mutex::new(vec![fixtures[1].id]),
    });
    let device = |store: Store| {
        SyncEngine::new(
            store,
            wrapped.clone(),
            Arc::new(luma_sync::StaticToken(token.clone())),
            luma_sync::SyncConfig::default(),
        )
    };
    // One purge during the pass: restarted, complete.
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    let c = device(store.clone());
    c.sync_now().await.unwrap();
    assert_eq!(c.local().fixtures().count().await.unwrap(), 1_498);
    assert!(c
        .local()
        .fixtures()
        .find(fixtures[1].id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(c.status().borrow().last_error, None);

    // c goes offline past a purge, then every pass is purged under it.
    a.local().fixtures().delete(fixtures[2].id).await.unwrap();
    a.sync_now().await.unwrap();
    remote.purge_tombstones();
    *wrapped.victims.lock().unwrap() = fixtures[3..7].iter().map(|f| f.id).collect();
    let r = c.sync_now().await.unwrap();
    assert_eq!(r.pull.failed_tables.len(), 1, "{r:?}");
    assert_eq!(r.pull.failed_tables[0].0, "fixtures");
    assert!(c
        .status()
        .borrow()
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("fixtures")));
    // Nothing was cut: the rows the server deleted are still there, the others too.
    assert_eq!(c.local().fixtures().count().await.unwrap(), 1_498);
    // The next cycle runs the whole pass again (the stored cursor was not advanced).
    let r = c.sync_now().await.unwrap();
    assert!(r.pull.failed_tables.is_empty(), "{r:?}");
    assert_eq!(c.local().fixtures().count().await.unwrap(), 1_493);
    assert_eq!(c.status().borrow().last_error, None);
    let live: Vec<RecordKey> = remote
        .snapshot("fixtures")
        .into_iter()
        .filter_map(|(k, (_, row))| row.map(|_| k))
        .collect();
    assert_eq!(live.len(), 1_493);
}
