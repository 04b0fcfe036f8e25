//! Hostile or damaged pulled rows: a stamp beyond the clock-skew bound and values the store
//! cannot store or decode are parked (durably, in the page's transaction), never absorbed
//! into the clock, never failing the page; a newer version replaces them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use luma_model::{Column, Parent, Scope, Syncable, TableSpec};
use luma_model::{FixtureGroup, Hlc, Record, RecordKey, SiteId, UserId, Venue};
use luma_store::PluginMigration;
use luma_store::{ParkReason, PulledRow, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

fn remote_site() -> SiteId {
    SiteId(0xabc)
}

fn soon(ms_ahead: u64) -> Hlc {
    Hlc::new(luma_model::wall_clock_ms() + ms_ahead, 0, remote_site())
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

#[tokio::test]
async fn a_far_future_row_is_parked_not_merged_and_the_page_and_cursor_go_on() {
    let store = Store::open_in_memory().await.unwrap();
    let user = UserId::new();
    let evil = Venue::new("evil");
    let good = Venue::new("good");
    let report = store
        .apply_pulled_page(
            user,
            "venues",
            &[pulled(&evil, far_future()), pulled(&good, soon(0))],
            Some("c1"),
        )
        .await
        .unwrap();
    assert_eq!((report.upserted, report.parked), (1, 1));
    assert_eq!(
        store.sync_cursor(user, "venues").await.unwrap().as_deref(),
        Some("c1")
    );
    assert!(store.venues().find(evil.id).await.unwrap().is_none());
    assert_eq!(store.venues().get(good.id).await.unwrap().name, "good");
    // The clock did not move to the far future; local stamps stay near the wall clock.
    let clock = store.clock_stamp().await.unwrap();
    assert!(
        clock.physical_ms <= luma_model::wall_clock_ms() + 1_000,
        "{clock}"
    );
    let stamp = store.next_stamp();
    assert!(stamp.to_string().parse::<Hlc>().is_ok());
    assert!(stamp.physical_ms <= luma_model::wall_clock_ms() + 1_000);
    let parked = store.parked_rows().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].table, "venues");
    assert_eq!(parked[0].key, RecordKey::from(evil.id));
    assert_eq!(parked[0].hlc, Some(far_future()));
    assert_eq!(parked[0].reason, ParkReason::ClockSkew);
    assert_eq!(
        store.parked_counts().await.unwrap(),
        vec![("clock_skew".to_string(), 1)]
    );
    // Re-trying changes nothing while the stamp is still too far ahead.
    let retried = store.retry_parked().await.unwrap();
    assert_eq!((retried.upserted, retried.unparked), (0, 0));
    assert_eq!(store.parked_rows().await.unwrap().len(), 1);
    // Merging such a stamp directly is refused too.
    assert!(!store.merge_remote_clock(far_future()).await.unwrap());
    assert!(store.clock_stamp().await.unwrap().physical_ms < 900_000_000_000_000);
}

#[tokio::test]
async fn a_skewed_row_applies_once_the_clock_catches_up() {
    let store = Store::open_in_memory().await.unwrap();
    assert_eq!(store.max_clock_skew(), Duration::from_secs(300));
    let user = UserId::new();
    let venue = Venue::new("ahead");
    // Ten minutes ahead: outside the default bound of five.
    let ahead = soon(600_000);
    let r = store
        .apply_pulled_page(user, "venues", &[pulled(&venue, ahead)], Some("c"))
        .await
        .unwrap();
    assert_eq!(r.parked, 1);
    // Just inside the bound is applied at once.
    let inside = Venue::new("inside");
    let r = store
        .apply_pulled_page(user, "venues", &[pulled(&inside, soon(240_000))], None)
        .await
        .unwrap();
    assert_eq!((r.upserted, r.parked), (1, 0));
    // "The clock catches up": a wider bound stands in for ten minutes passing.
    store.set_max_clock_skew(Duration::from_secs(900));
    let r = store.retry_parked().await.unwrap();
    assert_eq!((r.upserted, r.unparked), (1, 1));
    assert!(store.parked_rows().await.unwrap().is_empty());
    assert_eq!(store.venues().get(venue.id).await.unwrap().name, "ahead");
    assert_eq!(store.outbox().pending_count().await.unwrap(), 0);
    let clock = store.clock_stamp().await.unwrap();
    assert_eq!(clock.physical_ms, ahead.physical_ms);
}

#[tokio::test]
async fn values_the_store_cannot_store_or_decode_are_parked_and_a_newer_version_replaces_them() {
    let store = Store::open_in_memory().await.unwrap();
    let user = UserId::new();
    let venue = Venue::new("club");
    store
        .apply_pulled_page(user, "venues", &[pulled(&venue, soon(0))], None)
        .await
        .unwrap();
    let nan = FixtureGroup::new(venue.id, "nan");
    let mut nan_row = pulled(&nan, soon(1));
    nan_row
        .row
        .as_mut()
        .unwrap()
        .insert("axis_lr".into(), json!("NaN"));
    let tags = FixtureGroup::new(venue.id, "tags");
    let mut tags_row = pulled(&tags, soon(2));
    tags_row
        .row
        .as_mut()
        .unwrap()
        .insert("tags".into(), json!({"not": "a list"}));
    let fine = FixtureGroup::new(venue.id, "fine");
    let r = store
        .apply_pulled_page(
            user,
            "fixture_groups",
            &[nan_row, tags_row, pulled(&fine, soon(3))],
            Some("g1"),
        )
        .await
        .unwrap();
    assert_eq!((r.upserted, r.parked), (1, 2));
    assert_eq!(
        store
            .sync_cursor(user, "fixture_groups")
            .await
            .unwrap()
            .as_deref(),
        Some("g1")
    );
    let listed = store.fixture_groups().list().await.unwrap();
    assert_eq!(listed.len(), 1);
    let parked = store.parked_rows().await.unwrap();
    assert_eq!(parked.len(), 2);
    assert!(parked.iter().all(|p| p.reason == ParkReason::Invalid));
    let nan_parked = parked
        .iter()
        .find(|p| p.key == RecordKey::from(nan.id))
        .unwrap();
    assert!(
        nan_parked.message.contains("axis_lr"),
        "{}",
        nan_parked.message
    );
    assert!(nan_parked.message.contains("NaN"), "{}", nan_parked.message);
    // An older version of a parked key does not replace it.
    let r = store
        .apply_pulled_page(
            user,
            "fixture_groups",
            &[pulled(&nan, Hlc::new(5, 0, remote_site()))],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.unparked, 0);
    assert_eq!(store.parked_rows().await.unwrap().len(), 2);
    // A newer valid version applies and unparks; a newer tombstone unparks too.
    let mut nan_fixed = nan.clone();
    nan_fixed.name = "fixed".into();
    let r = store
        .apply_pulled_page(
            user,
            "fixture_groups",
            &[
                pulled(&nan_fixed, soon(10)),
                PulledRow {
                    key: RecordKey::from(tags.id),
                    hlc: soon(11),
                    deleted: true,
                    row: None,
                },
            ],
            Some("g2"),
        )
        .await
        .unwrap();
    assert_eq!((r.upserted, r.unparked, r.parked), (1, 2, 0));
    assert!(store.parked_rows().await.unwrap().is_empty());
    assert_eq!(
        store.fixture_groups().get(nan.id).await.unwrap().name,
        "fixed"
    );
}

#[tokio::test]
async fn parked_rows_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("luma.db");
    let user = UserId::new();
    let venue = Venue::new("evil");
    {
        let store = Store::open(&path).await.unwrap();
        store
            .apply_pulled_page(user, "venues", &[pulled(&venue, far_future())], Some("c"))
            .await
            .unwrap();
        store.close().await;
    }
    let store = Store::open(&path).await.unwrap();
    let parked = store.parked_rows().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].key, RecordKey::from(venue.id));
    store.venues().create(&Venue::new("mine")).await.unwrap();
    let op = &store.outbox().all().await.unwrap()[0];
    assert!(op.hlc.physical_ms <= luma_model::wall_clock_ms() + 1_000);
}

#[tokio::test]
async fn a_list_skips_and_reports_a_row_that_does_not_decode_and_get_names_the_problem() {
    let store = Store::open_in_memory().await.unwrap();
    let venue = Venue::new("club");
    store.venues().create(&venue).await.unwrap();
    let good = FixtureGroup::new(venue.id, "good");
    let bad = FixtureGroup::new(venue.id, "bad");
    store.fixture_groups().create(&good).await.unwrap();
    store.fixture_groups().create(&bad).await.unwrap();
    sqlx::query("UPDATE fixture_groups SET tags = '{\"x\": 1}' WHERE id = ?")
        .bind(bad.id.to_string())
        .execute(store.writer_pool())
        .await
        .unwrap();
    let listed = store.fixture_groups().list().await.unwrap();
    assert_eq!(listed, vec![good.clone()]);
    let by_venue = store
        .fixture_groups()
        .list_by("venue_id", venue.id)
        .await
        .unwrap();
    assert_eq!(by_venue.len(), 1);
    let report = store.fixture_groups().list_report().await.unwrap();
    assert_eq!(report.records.len(), 1);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].key, RecordKey::from(bad.id));
    let err = store.fixture_groups().get(bad.id).await.unwrap_err();
    assert!(err.to_string().contains("fixture_groups"), "{err}");
}

#[tokio::test]
async fn an_op_whose_row_cannot_be_read_is_rejected_alone() {
    let store = Store::open_in_memory().await.unwrap();
    let user = UserId::new();
    store.set_current_user(Some(user)).await.unwrap();
    let venue = Venue::new("club");
    store.venues().create(&venue).await.unwrap();
    let group = FixtureGroup::new(venue.id, "g");
    store.fixture_groups().create(&group).await.unwrap();
    sqlx::query("UPDATE fixture_groups SET tags = '{not json' WHERE id = ?")
        .bind(group.id.to_string())
        .execute(store.writer_pool())
        .await
        .unwrap();
    let batch = store.next_push_batch(user, 100, i64::MAX).await.unwrap();
    assert_eq!(batch.len(), 2);
    let rows = store.read_push_rows(&batch).await.unwrap();
    assert_eq!(rows.len(), 1, "the venue still goes");
    assert_eq!(rows[0].op.table, "venues");
    let errors = store.outbox().errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].rejected);
    assert_eq!(errors[0].table, "fixture_groups");
    assert!(
        errors[0]
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("invalid:"),
        "{:?}",
        errors[0].last_error
    );
    // The rejected op is no longer due.
    let batch = store.next_push_batch(user, 100, i64::MAX).await.unwrap();
    assert_eq!(batch.len(), 1);
}

#[test]
fn reason_codes_round_trip() {
    for r in [ParkReason::ClockSkew, ParkReason::Invalid] {
        assert_eq!(ParkReason::from_code(r.as_str()), Some(r));
    }
    assert_eq!(ParkReason::from_code("nope"), None);
}

/// A plugin record whose local-only field is not optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Marker {
    id: uuid::Uuid,
    venue_id: luma_model::VenueId,
    label: String,
    pinned: bool,
}

impl Record for Marker {
    const SPEC: TableSpec = TableSpec {
        name: "plugin_markers",
        columns: &[
            Column::uuid("id"),
            Column::uuid("venue_id"),
            Column::text("label"),
            Column::bool("pinned").local(),
        ],
        key: &["id"],
        parents: &[Parent::new("venue_id", "venues")],
        scope: Scope::InVenue { column: "venue_id" },
    };
}
impl Syncable for Marker {}

#[tokio::test]
async fn a_plugin_row_without_its_local_only_columns_is_not_parked_but_a_bad_one_is() {
    let store = Store::open_in_memory().await.unwrap();
    store
        .register::<Marker>(&[PluginMigration {
            id: "plugin_markers_0001",
            sql: "CREATE TABLE plugin_markers (id TEXT PRIMARY KEY NOT NULL, \
                  venue_id TEXT NOT NULL REFERENCES venues(id) ON DELETE CASCADE, \
                  label TEXT NOT NULL, pinned INTEGER NOT NULL DEFAULT 0, hlc TEXT)",
        }])
        .await
        .unwrap();
    let user = UserId::new();
    let venue = Venue::new("club");
    store
        .apply_pulled_page(user, "venues", &[pulled(&venue, soon(0))], None)
        .await
        .unwrap();
    let ok = Marker {
        id: uuid::Uuid::new_v4(),
        venue_id: venue.id,
        label: "ok".into(),
        pinned: true,
    };
    let mut bad = ok.clone();
    bad.id = uuid::Uuid::new_v4();
    let mut bad_row = pulled(&bad, soon(2));
    bad_row
        .row
        .as_mut()
        .unwrap()
        .insert("label".into(), json!(7));
    let r = store
        .apply_pulled_page(
            user,
            "plugin_markers",
            &[pulled(&ok, soon(1)), bad_row],
            None,
        )
        .await
        .unwrap();
    assert_eq!((r.upserted, r.parked), (1, 1));
    let got = store
        .repo::<Marker>()
        .get(RecordKey::from_canonical(ok.id.to_string()))
        .await
        .unwrap();
    assert_eq!((got.label.as_str(), got.pinned), ("ok", false));
}
