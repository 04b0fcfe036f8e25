//! MemoryRemote semantics on their own: visibility per user, last writer wins, idempotent
//! resend, parent-delete cascades, consistent cut per watermark; and the backoff formula.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use luma_model::{Fixture, Hlc, OpKind, Pattern, Record, SiteId, UserId, Venue};
use luma_sync::{Backoff, Change, MemoryRemote, Outcome, PullRequest, RejectCode, Remote};
use rand::SeedableRng;

fn upsert<T: Record>(rec: &T, hlc: Hlc) -> Change {
    let mut row = rec.to_row().unwrap();
    for c in T::SPEC.local_only_columns() {
        row.remove(c);
    }
    Change {
        table: T::SPEC.name.into(),
        key: rec.key().unwrap(),
        hlc,
        op: OpKind::Upsert,
        row: Some(row),
    }
}

fn delete<T: Record>(rec: &T, hlc: Hlc) -> Change {
    Change {
        table: T::SPEC.name.into(),
        key: rec.key().unwrap(),
        hlc,
        op: OpKind::Delete,
        row: None,
    }
}

fn h(ms: u64) -> Hlc {
    Hlc::new(ms, 0, SiteId(1))
}

async fn pull_all(
    remote: &MemoryRemote,
    token: &luma_sync::AccessToken,
    table: &str,
) -> Vec<luma_sync::RemoteRow> {
    let watermark = remote.watermark(token).await.unwrap();
    let mut cursor = None;
    let mut out = Vec::new();
    loop {
        let page = remote
            .pull(
                token,
                &PullRequest {
                    table: table.into(),
                    cursor: cursor.clone(),
                    limit: 2,
                    watermark: watermark.clone(),
                },
            )
            .await
            .unwrap();
        out.extend(page.rows);
        if page.cursor.is_some() {
            cursor = page.cursor;
        }
        if !page.has_more {
            return out;
        }
    }
}

#[tokio::test]
async fn visibility_follows_owner_membership_and_publication() {
    let remote = MemoryRemote::new();
    let (alice, bob) = (UserId::new(), UserId::new());
    let (ta, tb) = (remote.issue_token(alice), remote.issue_token(bob));
    let mut venue = Venue::new("alice's");
    venue.uid = Some(alice);
    let fixture = Fixture::new(venue.id, 1, 1, 1);
    let mut private = Pattern::new("private");
    private.uid = Some(alice);
    let mut public = Pattern::new("public");
    public.uid = Some(alice);
    public.is_verified = true;
    let out = remote
        .push(
            &ta,
            &[
                upsert(&venue, h(1)),
                upsert(&fixture, h(2)),
                upsert(&private, h(3)),
                upsert(&public, h(4)),
            ],
        )
        .await
        .unwrap();
    assert!(out.iter().all(|o| o.outcome == Outcome::Applied), "{out:?}");
    assert!(pull_all(&remote, &tb, "venues").await.is_empty());
    assert!(pull_all(&remote, &tb, "fixtures").await.is_empty());
    let patterns = pull_all(&remote, &tb, "patterns").await;
    assert_eq!(patterns.len(), 1);
    assert_eq!(patterns[0].key, public.key().unwrap());
    // Bob may not write Alice's venue, nor her public pattern.
    let mut v2 = venue.clone();
    v2.name = "bob was here".into();
    let out = remote
        .push(&tb, &[upsert(&v2, h(5)), upsert(&public, h(6))])
        .await
        .unwrap();
    for o in &out {
        assert!(
            matches!(
                o.outcome,
                Outcome::Rejected {
                    code: RejectCode::Forbidden,
                    ..
                }
            ),
            "{o:?}"
        );
    }
    // As a member he sees and edits the venue and its fixtures, but may not delete it.
    remote.add_member(venue.id, bob);
    assert_eq!(pull_all(&remote, &tb, "fixtures").await.len(), 1);
    let out = remote
        .push(&tb, &[upsert(&v2, h(7)), delete(&venue, h(8))])
        .await
        .unwrap();
    assert_eq!(out[0].outcome, Outcome::Applied);
    assert!(matches!(
        out[1].outcome,
        Outcome::Rejected {
            code: RejectCode::Forbidden,
            ..
        }
    ));
}

#[tokio::test]
async fn lww_resend_and_cascade() {
    let remote = MemoryRemote::new();
    let user = UserId::new();
    let t = remote.issue_token(user);
    let mut venue = Venue::new("v");
    venue.uid = Some(user);
    let f = Fixture::new(venue.id, 1, 1, 1);
    remote
        .push(&t, &[upsert(&venue, h(10)), upsert(&f, h(11))])
        .await
        .unwrap();
    let writes = remote.stats().writes;
    // Resend: applied, nothing written.
    let out = remote.push(&t, &[upsert(&venue, h(10))]).await.unwrap();
    assert_eq!(out[0].outcome, Outcome::Applied);
    assert_eq!(remote.stats().writes, writes);
    // Older write: superseded with the server state.
    let out = remote.push(&t, &[upsert(&venue, h(5))]).await.unwrap();
    assert!(
        matches!(&out[0].outcome, Outcome::Superseded { hlc, deleted: false, .. } if *hlc == h(10))
    );
    // Deleting the venue tombstones the fixture; a later child under it is refused.
    remote.push(&t, &[delete(&venue, h(20))]).await.unwrap();
    let (hlc, row) = remote.snapshot("fixtures").into_values().next().unwrap();
    assert_eq!((hlc, row), (h(20), None));
    let late = Fixture::new(venue.id, 1, 2, 1);
    let out = remote.push(&t, &[upsert(&late, h(30))]).await.unwrap();
    assert!(matches!(
        out[0].outcome,
        Outcome::Rejected {
            code: RejectCode::MissingParent,
            ..
        }
    ));
    // A stamp identifies one write: an equal stamp is a resend, answered applied, and
    // changes nothing (as the cloud SQL does).
    let out = remote.push(&t, &[upsert(&venue, h(20))]).await.unwrap();
    assert_eq!(out[0].outcome, Outcome::Applied);
    assert_eq!(
        remote.snapshot("venues").into_values().next().unwrap().1,
        None
    );
}

#[tokio::test]
async fn a_pull_serves_each_row_once_as_of_the_watermark() {
    let remote = MemoryRemote::new();
    let user = UserId::new();
    let t = remote.issue_token(user);
    let mut venue = Venue::new("v1");
    venue.uid = Some(user);
    remote.push(&t, &[upsert(&venue, h(1))]).await.unwrap();
    let f = Fixture::new(venue.id, 1, 1, 1);
    remote.push(&t, &[upsert(&f, h(2))]).await.unwrap();
    let watermark = remote.watermark(&t).await.unwrap();
    // The parent changes after the watermark: this cycle still gets its earlier version.
    venue.name = "v2".into();
    remote.push(&t, &[upsert(&venue, h(3))]).await.unwrap();
    let page = remote
        .pull(
            &t,
            &PullRequest {
                table: "venues".into(),
                cursor: None,
                limit: 10,
                watermark: watermark.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(page.rows.len(), 1);
    assert_eq!(page.rows[0].hlc, h(1));
    // The next cycle gets the newest version once.
    let page = remote
        .pull(
            &t,
            &PullRequest {
                table: "venues".into(),
                cursor: page.cursor,
                limit: 10,
                watermark: remote.watermark(&t).await.unwrap(),
            },
        )
        .await
        .unwrap();
    assert_eq!(page.rows.len(), 1);
    assert_eq!(page.rows[0].hlc, h(3));
    assert!(!page.has_more);
}

#[test]
fn backoff_grows_exponentially_with_jitter_and_a_cap() {
    let b = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
        factor: 2.0,
        jitter: 0.5,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for failures in 1..12u32 {
        let full = (100.0 * 2f64.powi(failures as i32 - 1)).min(2000.0);
        for _ in 0..20 {
            let d = b.delay(failures, &mut rng).as_secs_f64() * 1000.0;
            assert!(
                d <= full + 1e-6 && d >= full * 0.5 - 1e-6,
                "{failures}: {d} vs {full}"
            );
        }
    }
}

/// `Arc<dyn Remote>` and `Box<dyn Remote>` are remotes, and every method forwards (the
/// optional ones too: a wrapper that dropped `memberships` would silently turn off join/leave
/// handling).
#[tokio::test]
async fn shared_and_boxed_remotes_forward_every_method() {
    use std::sync::Arc;
    fn is_remote<R: Remote>(_: &R) {}
    let inner = luma_sync::MemoryRemote::new();
    let user = luma_model::UserId::new();
    let token = inner.issue_token(user);
    let shared: Arc<dyn Remote> = Arc::new(inner.clone());
    let boxed: Box<dyn Remote> = Box::new(inner.clone());
    is_remote(&shared);
    is_remote(&boxed);
    assert_eq!(shared.memberships(&token).await.unwrap(), vec![]);
    assert_eq!(boxed.memberships(&token).await.unwrap(), vec![]);
    assert!(shared.watermark(&token).await.is_ok());
    // And an engine runs over one, with the token helper.
    let store = luma_store::Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    let engine = luma_sync::SyncEngine::new(
        store,
        shared,
        Arc::new(luma_sync::StaticToken::new(token)),
        luma_sync::SyncConfig::default(),
    );
    engine.sync_now().await.unwrap();
}
