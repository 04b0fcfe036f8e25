//! A conformance suite for [`Remote`] implementations (feature `testing`), in the style of
//! object_store's `integration.rs`: plain async functions that exercise a remote through the
//! trait and panic (with a message) when it breaks the protocol of `PROTOCOL.md`. Run them
//! against `MemoryRemote` and against the PostgreSQL and Supabase remotes.
//!
//! Every check uses fresh random ids, so the suite can run against a shared database. The
//! tokens must belong to two different users with no venue in common.

use luma_model::{Fixture, Hlc, OpKind, Record, RecordKey, SiteId, UserId, Venue};

use crate::error::Result;
use crate::remote::{Change, Outcome, PullRequest, RejectCode, Remote, RemoteRow};
use crate::token::AccessToken;

/// A stamp far in the future of any real clock, unique per check (`n` orders stamps).
fn stamp(base: u64, n: u64) -> Hlc {
    Hlc::new(base + n, 0, SiteId(0x5eed))
}

fn base() -> u64 {
    // Distinct per call so checks against a shared database never see each other's stamps
    // as newer; far from wall-clock stamps.
    800_000_000_000_000 + (uuid::Uuid::new_v4().as_u64_pair().0 % 1_000_000_000) * 1_000
}

fn upsert<T: Record>(rec: &T, hlc: Hlc) -> Change {
    let mut row = rec.to_row().unwrap_or_default();
    for c in T::SPEC.local_only_columns() {
        row.remove(c);
    }
    Change {
        table: T::SPEC.name.into(),
        key: rec.key().unwrap_or_else(|_| RecordKey::single("")),
        hlc,
        op: OpKind::Upsert,
        row: Some(row),
    }
}

fn delete<T: Record>(rec: &T, hlc: Hlc) -> Change {
    Change {
        table: T::SPEC.name.into(),
        key: rec.key().unwrap_or_else(|_| RecordKey::single("")),
        hlc,
        op: OpKind::Delete,
        row: None,
    }
}

fn owned_venue(user: UserId) -> Venue {
    let mut v = Venue::new("conformance");
    v.uid = Some(user);
    v
}

/// Pulls a whole table (pages of `limit`) for one watermark; returns the rows.
pub async fn pull_table<R: Remote + ?Sized>(
    remote: &R,
    token: &AccessToken,
    table: &str,
    limit: u32,
) -> Result<Vec<RemoteRow>> {
    let watermark = remote.watermark(token).await?;
    let mut cursor = None;
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let page = remote
            .pull(
                token,
                &PullRequest {
                    table: table.into(),
                    cursor: cursor.clone(),
                    limit,
                    watermark: watermark.clone(),
                },
            )
            .await?;
        assert!(
            page.rows.len() <= limit as usize,
            "a page holds at most `limit` rows"
        );
        out.extend(page.rows);
        if page.cursor.is_some() {
            cursor = page.cursor;
        }
        if !page.has_more {
            break;
        }
    }
    Ok(out)
}

/// Applied writes, idempotent resends, last writer wins, and a tombstone winning a tie.
pub async fn check_lww_and_idempotency<R: Remote + ?Sized>(
    remote: &R,
    alice: &AccessToken,
) -> Result<()> {
    let b = base();
    let mut venue = owned_venue(alice.user());
    let out = remote.push(alice, &[upsert(&venue, stamp(b, 10))]).await?;
    assert_eq!(out.len(), 1, "one outcome per change");
    assert_eq!(out[0].outcome, Outcome::Applied, "a new row is applied");
    assert_eq!(
        out[0].key,
        venue.key().unwrap_or_else(|_| RecordKey::single(""))
    );
    let out = remote.push(alice, &[upsert(&venue, stamp(b, 10))]).await?;
    assert_eq!(
        out[0].outcome,
        Outcome::Applied,
        "a resend of the same stamp answers applied"
    );
    venue.name = "older".into();
    let out = remote.push(alice, &[upsert(&venue, stamp(b, 5))]).await?;
    match &out[0].outcome {
        Outcome::Superseded { hlc, deleted, row } => {
            assert_eq!(*hlc, stamp(b, 10), "superseded carries the server's stamp");
            assert!(!deleted);
            let name = row
                .as_ref()
                .and_then(|r| r.get("name"))
                .and_then(|v| v.as_str());
            assert_eq!(
                name,
                Some("conformance"),
                "superseded carries the server's row"
            );
        }
        other => panic!("an older write must be superseded, got {other:?}"),
    }
    remote.push(alice, &[delete(&venue, stamp(b, 20))]).await?;
    let out = remote.push(alice, &[upsert(&venue, stamp(b, 20))]).await?;
    assert!(
        matches!(out[0].outcome, Outcome::Superseded { deleted: true, .. }),
        "at equal stamps the tombstone wins: {:?}",
        out[0].outcome
    );
    let out = remote.push(alice, &[upsert(&venue, stamp(b, 30))]).await?;
    assert_eq!(
        out[0].outcome,
        Outcome::Applied,
        "a newer upsert revives a tombstone"
    );
    Ok(())
}

/// A parent delete tombstones its children; a child under a tombstoned parent is rejected
/// `missing_parent`; other changes of the same batch still apply.
pub async fn check_cascade_and_missing_parent<R: Remote + ?Sized>(
    remote: &R,
    alice: &AccessToken,
) -> Result<()> {
    let b = base();
    let venue = owned_venue(alice.user());
    let f = Fixture::new(venue.id, 1, 1, 1);
    let out = remote
        .push(
            alice,
            &[upsert(&venue, stamp(b, 1)), upsert(&f, stamp(b, 2))],
        )
        .await?;
    assert!(out.iter().all(|o| o.outcome == Outcome::Applied), "{out:?}");
    remote.push(alice, &[delete(&venue, stamp(b, 3))]).await?;
    let rows = pull_table(remote, alice, "fixtures", 100).await?;
    let child = rows.iter().find(|r| Some(&r.key) == f.key().ok().as_ref());
    match child {
        Some(r) => {
            assert!(r.deleted, "the child of a deleted parent is a tombstone");
            assert!(
                r.hlc >= stamp(b, 3),
                "its stamp is at least the parent delete's"
            );
        }
        None => panic!("the child's tombstone must be served to the owner"),
    }
    let late = Fixture::new(venue.id, 1, 2, 1);
    let other = owned_venue(alice.user());
    let out = remote
        .push(
            alice,
            &[upsert(&other, stamp(b, 4)), upsert(&late, stamp(b, 5))],
        )
        .await?;
    assert_eq!(
        out[0].outcome,
        Outcome::Applied,
        "a refused change does not stop the batch"
    );
    assert!(
        matches!(
            out[1].outcome,
            Outcome::Rejected {
                code: RejectCode::MissingParent,
                ..
            }
        ),
        "a child under a tombstoned parent is rejected missing_parent: {:?}",
        out[1].outcome
    );
    Ok(())
}

/// Pages come in change order, each row once with its newest state as of the watermark, and
/// a cursor resumes where the previous page ended; a row changed after the watermark is served
/// in its earlier version (consistent cut) and in its new version in the next cycle.
pub async fn check_pull_pages<R: Remote + ?Sized>(remote: &R, alice: &AccessToken) -> Result<()> {
    let b = base();
    let venues: Vec<Venue> = (0..5).map(|_| owned_venue(alice.user())).collect();
    for (i, v) in venues.iter().enumerate() {
        remote.push(alice, &[upsert(v, stamp(b, i as u64))]).await?;
    }
    // Change the first one again: it must come once, with its newest state.
    let mut first = venues[0].clone();
    first.name = "changed".into();
    remote.push(alice, &[upsert(&first, stamp(b, 100))]).await?;
    let rows = pull_table(remote, alice, "venues", 2).await?;
    let mine: Vec<&RemoteRow> = rows
        .iter()
        .filter(|r| venues.iter().any(|v| v.key().ok().as_ref() == Some(&r.key)))
        .collect();
    assert_eq!(mine.len(), 5, "every row once");
    let last = mine.last().map(|r| r.key.clone());
    assert_eq!(last, first.key().ok(), "rows come in change order");
    assert_eq!(
        mine.last().map(|r| r.hlc),
        Some(stamp(b, 100)),
        "with the newest state"
    );

    // Consistent cut.
    let v = owned_venue(alice.user());
    remote.push(alice, &[upsert(&v, stamp(b, 200))]).await?;
    let w1 = remote.watermark(alice).await?;
    let mut v2 = v.clone();
    v2.name = "after the watermark".into();
    remote.push(alice, &[upsert(&v2, stamp(b, 201))]).await?;
    let rows = pull_all_pages(remote, alice, "venues", &w1).await?;
    let served: Vec<&RemoteRow> = rows
        .iter()
        .filter(|r| v.key().ok().as_ref() == Some(&r.key))
        .collect();
    assert_eq!(
        served.len(),
        1,
        "a row created before the watermark is served"
    );
    assert_eq!(
        served[0].hlc,
        stamp(b, 200),
        "in its version as of the watermark"
    );
    Ok(())
}

async fn pull_all_pages<R: Remote + ?Sized>(
    remote: &R,
    token: &AccessToken,
    table: &str,
    watermark: &crate::remote::Watermark,
) -> Result<Vec<RemoteRow>> {
    let mut cursor = None;
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let page = remote
            .pull(
                token,
                &PullRequest {
                    table: table.into(),
                    cursor: cursor.clone(),
                    limit: 500,
                    watermark: watermark.clone(),
                },
            )
            .await?;
        out.extend(page.rows);
        if page.cursor.is_some() {
            cursor = page.cursor;
        }
        if !page.has_more {
            break;
        }
    }
    Ok(out)
}

/// One user neither sees nor writes another user's venue.
pub async fn check_visibility<R: Remote + ?Sized>(
    remote: &R,
    alice: &AccessToken,
    bob: &AccessToken,
) -> Result<()> {
    let b = base();
    let venue = owned_venue(alice.user());
    let f = Fixture::new(venue.id, 1, 1, 1);
    remote
        .push(
            alice,
            &[upsert(&venue, stamp(b, 1)), upsert(&f, stamp(b, 2))],
        )
        .await?;
    for table in ["venues", "fixtures"] {
        let rows = pull_table(remote, bob, table, 500).await?;
        assert!(
            !rows.iter().any(
                |r| r.key == venue.key().unwrap_or_else(|_| RecordKey::single(""))
                    || r.key == f.key().unwrap_or_else(|_| RecordKey::single(""))
            ),
            "{table}: another user's rows are not served"
        );
    }
    let mut taken = venue.clone();
    taken.uid = Some(bob.user());
    let out = remote
        .push(bob, &[upsert(&taken, stamp(b, 3)), delete(&f, stamp(b, 4))])
        .await?;
    for o in &out {
        assert!(
            matches!(
                o.outcome,
                Outcome::Rejected {
                    code: RejectCode::Forbidden,
                    ..
                }
            ),
            "another user's rows are not writable: {o:?}"
        );
    }
    Ok(())
}

/// Runs every check.
pub async fn check_all<R: Remote + ?Sized>(
    remote: &R,
    alice: &AccessToken,
    bob: &AccessToken,
) -> Result<()> {
    check_lww_and_idempotency(remote, alice).await?;
    check_cascade_and_missing_parent(remote, alice).await?;
    check_pull_pages(remote, alice).await?;
    check_visibility(remote, alice, bob).await?;
    Ok(())
}
