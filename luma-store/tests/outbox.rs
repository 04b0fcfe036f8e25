//! The transactional outbox: every committed write of a synced table has its op, failed writes
//! leave nothing, repeated edits collapse, cascades get an op per deleted row.

mod common;

use common::{temp_store, venue_with_fixtures};
use luma_model::{
    Fixture, FixtureGroup, OpKind, Pattern, RecordKey, Setting, TrackScore, Venue, VenueId,
};
use luma_store::{Store, StoreError};

async fn ops(store: &Store) -> Vec<luma_model::PendingOp> {
    store.outbox().all().await.unwrap()
}

#[tokio::test]
async fn a_committed_write_has_its_op_with_user_and_stamp() {
    let store = Store::open_in_memory().await.unwrap();
    let user = luma_model::UserId::new();
    store.set_current_user(Some(user)).await.unwrap();
    let venue = Venue::new("Club");
    store.venues().create(&venue).await.unwrap();
    let all = ops(&store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].table, "venues");
    assert_eq!(all[0].key, RecordKey::from(venue.id));
    assert_eq!(all[0].kind, OpKind::Upsert);
    assert_eq!(all[0].user_id, Some(user));
    assert_eq!(all[0].hlc.site, store.site_id());
    // The owner is filled from the signed-in user.
    assert_eq!(store.venues().get(venue.id).await.unwrap().uid, Some(user));
    // Updating from a struct that never had the owner (built with `new`) keeps it.
    let mut edited = venue.clone();
    edited.name = "Club 2".into();
    assert_eq!(edited.uid, None);
    store.venues().update(&edited).await.unwrap();
    assert_eq!(store.venues().get(venue.id).await.unwrap().uid, Some(user));
}

#[tokio::test]
async fn invalid_record_writes_neither_row_nor_op() {
    let store = Store::open_in_memory().await.unwrap();
    let venue = Venue::new("Club");
    store.venues().create(&venue).await.unwrap();
    let before = ops(&store).await;

    let bad = Fixture::new(venue.id, 1, 600, 1);
    let err = store.fixtures().create(&bad).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(!err.is_retryable());

    let empty = Venue::new("   ");
    assert!(matches!(
        store.venues().create(&empty).await.unwrap_err(),
        StoreError::Invalid { .. }
    ));
    assert_eq!(store.fixtures().count().await.unwrap(), 0);
    assert_eq!(store.venues().count().await.unwrap(), 1);
    assert_eq!(ops(&store).await, before);
}

#[tokio::test]
async fn constraint_violations_write_neither_row_nor_op() {
    let store = Store::open_in_memory().await.unwrap();
    // Missing parent: FK enforcement.
    let orphan = Fixture::new(VenueId::new(), 1, 1, 1);
    let err = store.fixtures().create(&orphan).await.unwrap_err();
    assert!(matches!(err, StoreError::Constraint { .. }), "{err:?}");
    assert!(ops(&store).await.is_empty());

    // Duplicate group name within a venue.
    let venue = Venue::new("Club");
    store.venues().create(&venue).await.unwrap();
    store
        .fixture_groups()
        .create(&FixtureGroup::new(venue.id, "wash"))
        .await
        .unwrap();
    let n = ops(&store).await.len();
    let err = store
        .fixture_groups()
        .create(&FixtureGroup::new(venue.id, "wash"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint { .. }), "{err:?}");
    assert_eq!(ops(&store).await.len(), n);
    assert_eq!(store.fixture_groups().count().await.unwrap(), 1);
}

#[tokio::test]
async fn a_failed_bulk_import_writes_nothing() {
    let store = Store::open_in_memory().await.unwrap();
    let venue = Venue::new("Club");
    store.venues().create(&venue).await.unwrap();
    let mut fixtures: Vec<Fixture> = (0..10)
        .map(|i| Fixture::new(venue.id, 1, i + 1, 1))
        .collect();
    // A duplicate id makes the database refuse the batch half way.
    fixtures[7].id = fixtures[2].id;
    let err = store
        .import_fixtures(venue.id, &fixtures)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint { .. }), "{err:?}");
    assert_eq!(store.fixtures().count().await.unwrap(), 0);
    assert_eq!(ops(&store).await.len(), 1);
}

#[tokio::test]
async fn a_rolled_back_transaction_leaves_no_op() {
    let store = Store::open_in_memory().await.unwrap();
    let mut tx = store.transaction().await.unwrap();
    tx.create(&Venue::new("A")).await.unwrap();
    tx.create(&Pattern::new("P")).await.unwrap();
    drop(tx);
    assert!(ops(&store).await.is_empty());
    assert_eq!(store.venues().count().await.unwrap(), 0);

    let mut tx = store.transaction().await.unwrap();
    tx.create(&Venue::new("A")).await.unwrap();
    tx.create(&Pattern::new("P")).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ops(&store).await.len(), 2);
}

#[tokio::test]
async fn repeated_edits_collapse_into_one_op_with_the_newest_stamp() {
    let store = Store::open_in_memory().await.unwrap();
    let mut venue = Venue::new("v0");
    store.venues().create(&venue).await.unwrap();
    let first = ops(&store).await[0].clone();
    let mut last_hlc = first.hlc;
    for i in 1..=5 {
        venue.name = format!("v{i}");
        store.venues().update(&venue).await.unwrap();
        let all = ops(&store).await;
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].id, first.id, "the op keeps its id");
        assert!(all[0].hlc > last_hlc, "each edit gets a newer stamp");
        last_hlc = all[0].hlc;
    }
    let stored = store.venues().get(venue.id).await.unwrap();
    assert_eq!(stored.name, "v5");

    // Delete collapses to a delete op; re-creating the same id collapses back to an upsert.
    store.venues().delete(venue.id).await.unwrap();
    let all = ops(&store).await;
    assert_eq!((all.len(), all[0].kind), (1, OpKind::Delete));
    assert!(all[0].hlc > last_hlc);
    store.venues().create(&venue).await.unwrap();
    let all = ops(&store).await;
    assert_eq!((all.len(), all[0].kind), (1, OpKind::Upsert));
}

#[tokio::test]
async fn local_only_changes_and_settings_make_no_ops() {
    let store = Store::open_in_memory().await.unwrap();
    let venue = Venue::new("Club");
    store.venues().create(&venue).await.unwrap();
    let mut fixture = Fixture::new(venue.id, 1, 1, 4);
    store.fixtures().create(&fixture).await.unwrap();
    store.outbox().complete(&ops(&store).await).await.unwrap();
    assert!(ops(&store).await.is_empty());

    fixture.fixture_path = Some("/defs/par.json".into());
    store.fixtures().update(&fixture).await.unwrap();
    assert!(
        ops(&store).await.is_empty(),
        "a local-only column never syncs"
    );

    store.settings().set("theme", &"dark").await.unwrap();
    assert_eq!(
        store
            .settings()
            .get::<String>("theme")
            .await
            .unwrap()
            .as_deref(),
        Some("dark")
    );
    store.settings().remove("theme").await.unwrap();
    assert!(store
        .settings()
        .get::<String>("theme")
        .await
        .unwrap()
        .is_none());
    assert!(ops(&store).await.is_empty(), "settings are local");
    assert!(store.repo::<Setting>().list().await.unwrap().is_empty());
}

#[tokio::test]
async fn cascading_delete_gives_every_deleted_row_its_op() {
    let (_dir, store) = temp_store().await;
    let (venue, fixtures, group) = venue_with_fixtures(&store, 3).await;
    store.outbox().complete(&ops(&store).await).await.unwrap();

    assert!(store.venues().delete(venue.id).await.unwrap());
    assert_eq!(store.fixtures().count().await.unwrap(), 0);
    assert_eq!(store.fixture_groups().count().await.unwrap(), 0);
    assert_eq!(store.group_members().count().await.unwrap(), 0);
    let all = ops(&store).await;
    // venue + 3 fixtures + 1 group + 3 memberships
    assert_eq!(all.len(), 8, "{all:#?}");
    assert!(all.iter().all(|o| o.kind == OpKind::Delete));
    let members = all
        .iter()
        .filter(|o| o.table == "fixture_group_members")
        .count();
    assert_eq!(members, 3);
    let key = RecordKey::composite([fixtures[0].id.to_string(), group.id.to_string()]);
    assert!(all.iter().any(|o| o.key == key));

    // Deletes come children first in the push order.
    let batch = store.outbox().next_batch(100, i64::MAX).await.unwrap();
    let pos = |t: &str| batch.iter().position(|o| o.table == t).unwrap();
    assert!(pos("fixture_group_members") < pos("fixtures"));
    assert!(pos("fixtures") < pos("venues"));
}

#[tokio::test]
async fn upserts_come_parents_first() {
    let store = Store::open_in_memory().await.unwrap();
    let venue = Venue::new("Club");
    // Create children in a transaction after the parent, then edit the parent again so its
    // op is the newest.
    let mut tx = store.transaction().await.unwrap();
    tx.create(&venue).await.unwrap();
    tx.create(&Fixture::new(venue.id, 1, 1, 1)).await.unwrap();
    tx.commit().await.unwrap();
    let mut v = store.venues().get(venue.id).await.unwrap();
    v.name = "Renamed".into();
    store.venues().update(&v).await.unwrap();
    let batch = store.outbox().next_batch(10, i64::MAX).await.unwrap();
    assert_eq!(batch[0].table, "venues");
    assert_eq!(batch[1].table, "fixtures");
}

#[tokio::test]
async fn replace_track_scores_is_one_transaction_and_collapses_ops() {
    let store = Store::open_in_memory().await.unwrap();
    let venue = Venue::new("Club");
    store.venues().create(&venue).await.unwrap();
    let track = luma_model::Track::new("Song");
    store.tracks().create(&track).await.unwrap();
    let pattern = Pattern::new("Chase");
    store.patterns().create(&pattern).await.unwrap();
    let score = luma_model::Score::new(track.id, venue.id, "Show");
    store.scores().create(&score).await.unwrap();
    let a = TrackScore::new(score.id, pattern.id, 0.0, 4.0);
    let b = TrackScore::new(score.id, pattern.id, 4.0, 8.0);
    store
        .replace_track_scores(score.id, &[a.clone(), b.clone()])
        .await
        .unwrap();
    store.outbox().complete(&ops(&store).await).await.unwrap();

    // Undo: back to just `a`, moved.
    let mut a2 = a.clone();
    a2.end_time = 6.0;
    store
        .replace_track_scores(score.id, &[a2.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.track_scores().list_by_score(score.id).await.unwrap(),
        vec![a2]
    );
    let all = ops(&store).await;
    assert_eq!(all.len(), 2);
    let kind_of = |id: luma_model::TrackScoreId| {
        all.iter()
            .find(|o| o.key == RecordKey::from(id))
            .unwrap()
            .kind
    };
    assert_eq!(kind_of(a.id), OpKind::Upsert);
    assert_eq!(kind_of(b.id), OpKind::Delete);

    // A bad placement in the set writes nothing.
    let bad = TrackScore::new(score.id, pattern.id, 5.0, 1.0);
    assert!(matches!(
        store
            .replace_track_scores(score.id, &[a.clone(), bad])
            .await,
        Err(StoreError::Invalid { .. })
    ));
    assert_eq!(
        store
            .track_scores()
            .list_by_score(score.id)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn writes_while_applying_pulled_rows_make_no_ops() {
    let store = Store::open_in_memory().await.unwrap();
    let mut tx = store.transaction().await.unwrap();
    sqlx::query("INSERT INTO sync_apply_guard (id) VALUES (1)")
        .execute(tx.connection())
        .await
        .unwrap();
    tx.create(&Venue::new("Pulled")).await.unwrap();
    sqlx::query("DELETE FROM sync_apply_guard")
        .execute(tx.connection())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(ops(&store).await.is_empty());
}

#[tokio::test]
async fn failures_retry_and_rejection_are_recorded() {
    let store = Store::open_in_memory().await.unwrap();
    store.venues().create(&Venue::new("A")).await.unwrap();
    store.venues().create(&Venue::new("B")).await.unwrap();
    let all = ops(&store).await;
    let (a, b) = (&all[0], &all[1]);
    assert!(store
        .outbox()
        .record_failure(a, "forbidden", true, None)
        .await
        .unwrap());
    assert!(store
        .outbox()
        .record_failure(b, "503", false, Some(1_000))
        .await
        .unwrap());
    assert_eq!(store.outbox().rejected_count().await.unwrap(), 1);
    assert_eq!(store.outbox().errors().await.unwrap().len(), 2);
    // Not due: rejected, or waiting for its retry time.
    assert!(store.outbox().next_batch(10, 999).await.unwrap().is_empty());
    assert_eq!(store.outbox().next_batch(10, 1_000).await.unwrap().len(), 1);
    store.outbox().retry(a.id).await.unwrap();
    let again = store.outbox().get(a.id).await.unwrap().unwrap();
    assert!(!again.rejected);
    assert_eq!(again.attempts, 1);
    // Completing with a stale stamp keeps the op (the record was edited meanwhile).
    let stale = luma_model::PendingOp {
        hlc: luma_model::Hlc::ZERO,
        ..a.clone()
    };
    assert_eq!(store.outbox().complete(&[stale]).await.unwrap(), 0);
    assert_eq!(
        store
            .outbox()
            .complete(std::slice::from_ref(a))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn keys_are_immutable() {
    let store = Store::open_in_memory().await.unwrap();
    let venue = Venue::new("A");
    store.venues().create(&venue).await.unwrap();
    let err = sqlx::query("UPDATE venues SET id = 'x'")
        .execute(store.writer_pool())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
}

#[tokio::test]
async fn the_sql_clock_matches_the_model_clock() {
    let store = Store::open_in_memory().await.unwrap();
    // A clock far ahead of the wall clock with a full counter carries into the next ms, the
    // same rule as `luma_model::Clock::tick`, both for writes through the repositories (the
    // store's own clock stamps them) and for plain SQL writes (stamped by the trigger in SQL).
    // (Ahead, but within the store's bound on remote stamps: a minute, then two.)
    let ahead = luma_model::Hlc::new(
        luma_model::wall_clock_ms() + 60_000,
        999_999,
        store.site_id(),
    );
    assert!(store.merge_remote_clock(ahead).await.unwrap());
    let mut model = luma_model::Clock::resume(store.site_id(), ahead);
    store.venues().create(&Venue::new("A")).await.unwrap();
    let op = &ops(&store).await[0];
    assert_eq!(op.hlc, model.tick(luma_model::wall_clock_ms()));
    assert_eq!(op.hlc.counter, 0);

    let far = luma_model::Hlc::new(
        luma_model::wall_clock_ms() + 120_000,
        999_999,
        store.site_id(),
    );
    assert!(store.merge_remote_clock(far).await.unwrap());
    let mut model = luma_model::Clock::resume(store.site_id(), far);
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO venues (id, name, description, created_at, updated_at) \
         VALUES (?, 'B', '', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
    )
    .bind(&id)
    .execute(store.writer_pool())
    .await
    .unwrap();
    let op = store
        .outbox()
        .for_record("venues", &luma_model::RecordKey::from_canonical(id.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(op.hlc, model.tick(luma_model::wall_clock_ms()));
    assert_eq!(op.hlc.counter, 0);
    // The rows carry the same stamps as their ops.
    for op in ops(&store).await {
        let hlc: String = sqlx::query_scalar("SELECT hlc FROM venues WHERE id = ?")
            .bind(op.key.as_str())
            .fetch_one(store.reader_pool())
            .await
            .unwrap();
        assert_eq!(hlc, op.hlc.to_string());
    }
}
