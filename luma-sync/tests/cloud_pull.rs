//! luma_pull on a real PostgreSQL: paging, one row per key with its newest state, and the
//! cursor that never skips a row written by a transaction that commits late (with the naive
//! cursors that do, as the control).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cloud_common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cloud_common::*;
use serde_json::{json, Value};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test]
async fn pages_follow_the_cursor_and_a_row_appears_once_with_its_newest_state() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let ids: Vec<Uuid> = (0..25).map(|_| Uuid::new_v4()).collect();
    let changes: Vec<Value> = ids
        .iter()
        .map(|t| {
            upsert(
                "tracks",
                &t.to_string(),
                &hlc(1_000, 0),
                track_row(*t, a, TS),
            )
        })
        .collect();
    push(&db.pool, a, json!(changes)).await;
    // The first track changes again: it moves to the end of the change order.
    let mut newer = track_row(ids[0], a, TS);
    newer["title"] = json!("Renamed");
    push(
        &db.pool,
        a,
        json!([upsert("tracks", &ids[0].to_string(), &hlc(2_000, 0), newer)]),
    )
    .await;

    let wm = settled_watermark(&db.pool, a).await;
    let mut cursor: Option<String> = None;
    let mut sizes = Vec::new();
    let mut keys = Vec::new();
    loop {
        let page = pull_page(&db.pool, a, "tracks", cursor.as_deref(), 10, Some(&wm)).await;
        let rows = page["rows"].as_array().unwrap();
        sizes.push((rows.len(), page["has_more"].as_bool().unwrap()));
        keys.extend(rows.iter().map(|r| r["key"].as_str().unwrap().to_owned()));
        cursor = page["cursor"].as_str().map(str::to_owned);
        if page["has_more"] == json!(false) {
            let last = rows.last().unwrap();
            assert_eq!(last["key"], json!(ids[0].to_string()));
            assert_eq!(last["row"]["title"], json!("Renamed"));
            break;
        }
    }
    assert_eq!(sizes, vec![(10, true), (10, true), (5, false)]);
    assert_eq!(
        keys.iter().collect::<BTreeSet<_>>().len(),
        25,
        "no duplicates"
    );
    // Nothing new: an empty page keeps the cursor.
    let page = pull_page(&db.pool, a, "tracks", cursor.as_deref(), 10, None).await;
    assert_eq!(page["rows"], json!([]));
    assert_eq!(page["cursor"].as_str(), cursor.as_deref());
    db.drop().await;
}

/// One full pull cycle of `tracks` under the current (unsettled) watermark.
async fn cycle(
    pool: &PgPool,
    user: Uuid,
    cursor: &mut Option<String>,
    seen: &mut BTreeSet<String>,
) {
    let wm = watermark(pool, user).await;
    loop {
        let page = pull_page(pool, user, "tracks", cursor.as_deref(), 3, Some(&wm)).await;
        assert_eq!(page["resync_required"], json!(false));
        for r in page["rows"].as_array().unwrap() {
            seen.insert(r["key"].as_str().unwrap().to_owned());
        }
        *cursor = page["cursor"].as_str().map(str::to_owned);
        if page["has_more"] == json!(false) {
            return;
        }
    }
}

/// The control: what a client that pages by a timestamp or a plain sequence would do.
struct Naive {
    updated_at: String,
    seq: i64,
    by_time: BTreeSet<String>,
    by_seq: BTreeSet<String>,
}

impl Naive {
    async fn cycle(&mut self, pool: &PgPool, user: Uuid) {
        let mut tx = user_tx(pool, user).await;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id::text, luma.ts_text(updated_at) FROM public.tracks WHERE updated_at > $1::timestamptz ORDER BY updated_at",
        )
        .bind(&self.updated_at)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        for (id, at) in rows {
            self.by_time.insert(id);
            self.updated_at = at;
        }
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT id::text, change_seq FROM public.tracks WHERE change_seq > $1 ORDER BY change_seq")
                .bind(self.seq)
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        for (id, seq) in rows {
            self.by_seq.insert(id);
            self.seq = seq;
        }
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn a_transaction_that_commits_late_is_never_skipped() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let mut all = BTreeSet::new();

    // A puller running throughout, with its own cursor.
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (pool, stop) = (db.pool.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (None, BTreeSet::new());
            let mut cycles = 0u32;
            while !stop.load(Ordering::SeqCst) {
                cycle(&pool, a, &mut cursor, &mut seen).await;
                cycles += 1;
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
            (cursor, seen, cycles)
        })
    };

    let mut fg_cursor = None;
    let mut fg_seen = BTreeSet::new();
    let mut naive = Naive {
        updated_at: "1970-01-01T00:00:00Z".into(),
        seq: 0,
        by_time: BTreeSet::new(),
        by_seq: BTreeSet::new(),
    };

    // Two writers open their transactions first and keep them open.
    let mut late = Vec::new();
    for _ in 0..2 {
        let mut conn = db.connection().await;
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sign_in(&mut conn, a).await;
        let t = Uuid::new_v4();
        let out = push_in(
            &mut conn,
            json!([upsert(
                "tracks",
                &t.to_string(),
                &hlc(1_000, 0),
                track_row(t, a, &now_text())
            )]),
        )
        .await;
        assert_eq!(outcome(&out[0]), "applied");
        all.insert(t.to_string());
        late.push(conn);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }

    let short = |pool: PgPool| async move {
        let t = Uuid::new_v4();
        let out = push(
            &pool,
            a,
            json!([upsert(
                "tracks",
                &t.to_string(),
                &hlc(1_000, 0),
                track_row(t, a, &now_text())
            )]),
        )
        .await;
        assert_eq!(outcome(&out[0]), "applied");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        t.to_string()
    };

    for _ in 0..5 {
        all.insert(short(db.pool.clone()).await);
    }
    naive.cycle(&db.pool, a).await;
    cycle(&db.pool, a, &mut fg_cursor, &mut fg_seen).await;

    // The second writer commits, more writes, then the first one commits.
    let second = late.pop().unwrap();
    let mut second = second;
    sqlx::query("COMMIT").execute(&mut second).await.unwrap();
    for _ in 0..3 {
        all.insert(short(db.pool.clone()).await);
    }
    naive.cycle(&db.pool, a).await;
    cycle(&db.pool, a, &mut fg_cursor, &mut fg_seen).await;

    let mut first = late.pop().unwrap();
    sqlx::query("COMMIT").execute(&mut first).await.unwrap();
    all.insert(short(db.pool.clone()).await);
    naive.cycle(&db.pool, a).await;
    cycle(&db.pool, a, &mut fg_cursor, &mut fg_seen).await;
    first.close().await.ok();
    second.close().await.ok();

    // Let every open transaction of the cluster finish, then one last cycle each.
    stop.store(true, Ordering::SeqCst);
    let (mut bg_cursor, mut bg_seen, cycles) = background.await.unwrap();
    settled_watermark(&db.pool, a).await;
    cycle(&db.pool, a, &mut bg_cursor, &mut bg_seen).await;
    cycle(&db.pool, a, &mut fg_cursor, &mut fg_seen).await;
    naive.cycle(&db.pool, a).await;

    assert_eq!(all.len(), 11);
    assert!(cycles > 0);
    assert_eq!(bg_seen, all, "the background puller skipped a row");
    assert_eq!(fg_seen, all, "the foreground puller skipped a row");
    // The control: both naive cursors moved past the late transactions' rows and lost them.
    let missed_by_time: Vec<_> = all.difference(&naive.by_time).collect();
    let missed_by_seq: Vec<_> = all.difference(&naive.by_seq).collect();
    assert_eq!(
        missed_by_time.len(),
        2,
        "updated_at > cursor should miss both late rows: {missed_by_time:?}"
    );
    assert_eq!(
        missed_by_seq.len(),
        2,
        "change_seq > cursor should miss both late rows: {missed_by_seq:?}"
    );
    db.drop().await;
}

#[tokio::test]
async fn a_child_waits_for_its_parent_when_the_parent_moved_above_the_watermark() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let (v, f) = (Uuid::new_v4(), Uuid::new_v4());
    push(
        &db.pool,
        a,
        json!([
            upsert(
                "venues",
                &v.to_string(),
                &hlc(1_000, 0),
                venue_row(v, a, "Club", None)
            ),
            upsert(
                "fixtures",
                &f.to_string(),
                &hlc(1_000, 0),
                fixture_row(f, v, 1)
            ),
        ]),
    )
    .await;
    settled_watermark(&db.pool, a).await;

    // An unrelated transaction stays open, holding the watermark back ...
    let mut open = db.connection().await;
    sqlx::query("BEGIN").execute(&mut open).await.unwrap();
    sign_in(&mut open, a).await;
    let t = Uuid::new_v4();
    push_in(
        &mut open,
        json!([upsert(
            "tracks",
            &t.to_string(),
            &hlc(1_000, 0),
            track_row(t, a, TS)
        )]),
    )
    .await;
    // ... while the venue changes and commits: its current version is now above the watermark.
    push(
        &db.pool,
        a,
        json!([upsert(
            "venues",
            &v.to_string(),
            &hlc(2_000, 0),
            venue_row(v, a, "Renamed", None)
        )]),
    )
    .await;

    // A fresh client pulls parents first: the venue is not served yet, so neither is the fixture.
    let wm = watermark(&db.pool, a).await;
    // The scenario is real: the fixture itself is below the watermark, the venue above it.
    let (fixture_below, venue_above): (bool, bool) = sqlx::query_as(
        "SELECT (SELECT change_xid < $1::xid8 FROM public.fixtures), (SELECT change_xid >= $1::xid8 FROM public.venues)",
    )
    .bind(&wm)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(fixture_below && venue_above);
    let venues = pull_page(&db.pool, a, "venues", None, 100, Some(&wm)).await;
    assert_eq!(venues["rows"], json!([]));
    let fixtures = pull_page(&db.pool, a, "fixtures", None, 100, Some(&wm)).await;
    assert_eq!(
        fixtures["rows"],
        json!([]),
        "a child without its parent: {fixtures}"
    );
    assert_eq!(fixtures["has_more"], json!(false));
    assert_eq!(fixtures["cursor"], json!(null));

    sqlx::query("COMMIT").execute(&mut open).await.unwrap();
    open.close().await.ok();
    let (venues, _) = pull_all(&db.pool, a, "venues", None).await;
    assert_eq!(venues[0]["row"]["name"], json!("Renamed"));
    let (fixtures, _) = pull_all(&db.pool, a, "fixtures", None).await;
    assert_eq!(fixtures.len(), 1);
    db.drop().await;
}
