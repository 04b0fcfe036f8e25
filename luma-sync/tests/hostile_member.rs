//! A hostile venue member pushes, with crafted requests, each kind of value the client refuses
//! (non-finite floats, DMX values out of range, malformed JSON shapes, an unknown enum value, an
//! empty name, a stamp far ahead of the server clock). The server refuses every one of them,
//! and the owner's and the other members' devices keep syncing their own edits: nothing of the
//! hostile member's reaches them, nothing is parked, nothing is left pending. On MemoryRemote
//! and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod pg_common;

use std::sync::Arc;

use luma_model::{
    Fixture, FixtureGroup, Hlc, OpKind, Pattern, Record, RecordKey, Row, Score, SiteId, Track,
    TrackScore, UserId, Venue,
};
use luma_store::Store;
use luma_sync::conformance::{Harness, MemoryHarness};
use luma_sync::{Change, Outcome, RejectCode, Remote, StaticToken, SyncEngine};
use serde_json::{json, Value};

async fn device<H: Harness>(h: &H, user: UserId) -> SyncEngine<Store, H::R>
where
    H::R: Clone,
{
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    SyncEngine::new(
        store,
        h.remote().clone(),
        Arc::new(StaticToken(Arc::new(h.sign_in(user).await))),
        common::fast_config(),
    )
}

/// A few rounds of what an app does: `sync_now` (each after the server's writes are pullable).
async fn rounds<H: Harness>(h: &H, engines: &[&SyncEngine<Store, H::R>], token_user: UserId) {
    let token = h.sign_in(token_user).await;
    for _ in 0..3 {
        for e in engines {
            h.settled_watermark(&token).await;
            e.sync_now().await.unwrap();
        }
    }
}

fn row_of<T: Record>(rec: &T) -> Row {
    rec.to_row().unwrap()
}

fn with(mut row: Row, col: &str, v: Value) -> Row {
    row.insert(col.to_string(), v);
    row
}

fn upsert(table: &str, key: RecordKey, hlc: Hlc, row: Row) -> Change {
    Change {
        table: table.to_string(),
        key,
        hlc,
        op: OpKind::Upsert,
        row: Some(row),
    }
}

fn stamp(ms_ahead: u64) -> Hlc {
    Hlc::new(luma_model::wall_clock_ms() + ms_ahead, 0, SiteId(0xbad))
}

async fn a_hostile_member_is_refused_and_the_others_keep_syncing<H: Harness>(h: &H)
where
    H::R: Clone,
{
    let (owner, hostile, other) = (UserId::new(), UserId::new(), UserId::new());
    let a = device(h, owner).await;
    let venue = Venue::new("Shared stage");
    a.local().venues().create(&venue).await.unwrap();
    let fixture = Fixture::new(venue.id, 1, 1, 8);
    a.local().fixtures().create(&fixture).await.unwrap();
    let group = FixtureGroup::new(venue.id, "Front");
    a.local().fixture_groups().create(&group).await.unwrap();
    let track = Track::new("Song");
    a.local().tracks().create(&track).await.unwrap();
    let pattern = Pattern::new("Chase");
    a.local().patterns().create(&pattern).await.unwrap();
    let score = Score::new(track.id, venue.id, "Show");
    a.local().scores().create(&score).await.unwrap();
    let placement = TrackScore::new(score.id, pattern.id, 0.0, 4.0);
    a.local().track_scores().create(&placement).await.unwrap();
    a.sync_now().await.unwrap();
    h.add_member(&venue.id.to_string(), hostile).await;
    h.add_member(&venue.id.to_string(), other).await;
    let d = device(h, other).await;
    rounds(h, &[&a, &d], owner).await;
    assert_eq!(
        d.local().fixtures().list_by_venue(venue.id).await.unwrap(),
        vec![fixture.clone()]
    );

    // The hostile member's crafted pushes, one value kind each.
    let t = h.sign_in(hostile).await;
    let fkey = fixture.key().unwrap();
    let gkey = group.key().unwrap();
    let skey = placement.key().unwrap();
    let fresh = Fixture::new(venue.id, 1, 100, 8);
    let attempts: Vec<(&str, Change, RejectCode)> = vec![
        (
            "NaN float",
            upsert(
                "fixtures",
                fkey.clone(),
                stamp(0),
                with(row_of(&fixture), "pos_x", json!("NaN")),
            ),
            RejectCode::Invalid,
        ),
        (
            "infinite float",
            upsert(
                "fixtures",
                fkey.clone(),
                stamp(0),
                with(row_of(&fixture), "rot_y", json!("-Infinity")),
            ),
            RejectCode::Invalid,
        ),
        (
            "DMX address out of range",
            upsert(
                "fixtures",
                fkey.clone(),
                stamp(0),
                with(row_of(&fixture), "address", json!(600)),
            ),
            RejectCode::Invalid,
        ),
        (
            "universe out of range",
            upsert(
                "fixtures",
                fresh.key().unwrap(),
                stamp(0),
                with(row_of(&fresh), "universe", json!(0)),
            ),
            RejectCode::Invalid,
        ),
        (
            "tags not a list of strings",
            upsert(
                "fixture_groups",
                gkey.clone(),
                stamp(0),
                with(row_of(&group), "tags", json!({"evil": [1, 2]})),
            ),
            RejectCode::Invalid,
        ),
        (
            "axis out of range",
            upsert(
                "fixture_groups",
                gkey.clone(),
                stamp(0),
                with(row_of(&group), "axis_fb", json!(7.5)),
            ),
            RejectCode::Invalid,
        ),
        (
            "empty name",
            upsert(
                "fixture_groups",
                gkey.clone(),
                stamp(0),
                with(row_of(&group), "name", json!("  ")),
            ),
            RejectCode::Invalid,
        ),
        (
            "unknown blend mode",
            upsert(
                "track_scores",
                skey.clone(),
                stamp(0),
                with(row_of(&placement), "blend_mode", json!("explode")),
            ),
            RejectCode::Invalid,
        ),
        (
            "args not an object",
            upsert(
                "track_scores",
                skey.clone(),
                stamp(0),
                with(row_of(&placement), "args", json!("x")),
            ),
            RejectCode::Invalid,
        ),
        (
            "stamp far ahead of the server clock",
            upsert(
                "fixtures",
                fkey.clone(),
                Hlc::new(999_999_999_999_999, 999_999, SiteId(u64::MAX)),
                with(row_of(&fixture), "label", json!("owned")),
            ),
            RejectCode::ClockSkew,
        ),
        (
            "stamp an hour ahead",
            upsert(
                "fixture_groups",
                gkey.clone(),
                stamp(3_600_000),
                with(row_of(&group), "display_order", json!(99)),
            ),
            RejectCode::ClockSkew,
        ),
    ];
    for (what, change, code) in &attempts {
        let out = h
            .remote()
            .push(&t, std::slice::from_ref(change))
            .await
            .unwrap();
        assert_eq!(out.len(), 1, "{what}");
        match &out[0].outcome {
            Outcome::Rejected { code: got, reason } => {
                assert_eq!(got, code, "{what}: {reason}")
            }
            other => panic!("{what}: the server accepted it: {other:?}"),
        }
    }
    // All in one batch too: every change refused, none applied.
    let batch: Vec<Change> = attempts.iter().map(|(_, c, _)| c.clone()).collect();
    let out = h.remote().push(&t, &batch).await.unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o.outcome, Outcome::Rejected { .. })),
        "{out:?}"
    );

    // The owner and the other member keep syncing their own edits.
    let mut moved = fixture.clone();
    moved.pos_x = 2.5;
    moved.label = Some("Spot left".into());
    a.local().fixtures().update(&moved).await.unwrap();
    let mut renamed = group.clone();
    renamed.name = "Front truss".into();
    d.local().fixture_groups().update(&renamed).await.unwrap();
    rounds(h, &[&a, &d], owner).await;
    for e in [&a, &d] {
        assert_eq!(e.local().fixtures().get(fixture.id).await.unwrap(), moved);
        assert_eq!(
            e.local().fixture_groups().get(group.id).await.unwrap(),
            renamed
        );
        assert_eq!(
            e.local().track_scores().get(placement.id).await.unwrap(),
            placement
        );
        assert!(e.local().outbox().all().await.unwrap().is_empty());
        assert!(e.parked_rows().await.unwrap().is_empty());
        assert_eq!(e.status().borrow().parked, 0);
    }
}

#[tokio::test]
async fn a_hostile_member_is_refused_and_the_others_keep_syncing_on_memory() {
    a_hostile_member_is_refused_and_the_others_keep_syncing(&MemoryHarness::default()).await;
}

#[tokio::test]
async fn a_hostile_member_is_refused_and_the_others_keep_syncing_on_postgres() {
    let h = pg_common::PgHarness::new().await;
    a_hostile_member_is_refused_and_the_others_keep_syncing(&h).await;
    h.drop().await;
}
