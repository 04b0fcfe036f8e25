//! Row-level security of the cloud schema on a real PostgreSQL, exercised as PostgREST does
//! (role `authenticated` + `request.jwt.claims`, transaction-locally).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cloud_common;

use cloud_common::*;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

const ALL_TABLES: &[&str] = luma_sync::cloud::SYNCED_TABLES;

async fn count(conn: &mut PgConnection, table: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM public.{table}"))
        .fetch_one(conn)
        .await
        .expect("count");
    n
}

#[tokio::test]
async fn the_role_switch_is_what_hides_rows() {
    let db = TestDb::new().await;
    let w = World::build(&db.pool).await;
    let b = Uuid::new_v4();

    // As the connecting superuser (no role switch) every row is visible: policies do not apply.
    let mut conn = db.pool.acquire().await.expect("acquire");
    assert_eq!(count(&mut conn, "fixtures").await, 1);
    assert_eq!(count(&mut conn, "tracks").await, 1);
    drop(conn);

    // The same reads as user B under `authenticated` see nothing.
    let mut tx = user_tx(&db.pool, b).await;
    for table in ALL_TABLES {
        let n = count(&mut tx, table).await;
        if *table == "patterns" || *table == "implementations" {
            assert_eq!(
                n, 1,
                "{table}: only the verified pattern and its implementation"
            );
        } else {
            assert_eq!(n, 0, "{table} leaks to another user");
        }
    }
    tx.rollback().await.ok();

    // And user A sees their own rows under the same role.
    let mut tx = user_tx(&db.pool, w.a).await;
    assert_eq!(count(&mut tx, "fixtures").await, 1);
    assert_eq!(count(&mut tx, "patterns").await, 2);
    tx.rollback().await.ok();
    db.drop().await;
}

#[tokio::test]
async fn another_user_cannot_read_or_write_through_the_functions() {
    let db = TestDb::new().await;
    let w = World::build(&db.pool).await;
    let b = Uuid::new_v4();

    for table in ALL_TABLES {
        let keys = visible_keys(&db.pool, b, table).await;
        match *table {
            "patterns" => assert_eq!(keys, vec![w.public_pattern.to_string()]),
            "implementations" => assert_eq!(keys, vec![w.public_impl.to_string()]),
            _ => assert!(keys.is_empty(), "{table} leaks to B: {keys:?}"),
        }
    }

    let h = hlc(9_000, 0);
    let attacks = json!([
        upsert(
            "venues",
            &w.venue.to_string(),
            &h,
            venue_row(w.venue, w.a, "Hacked", Some("HACKED01"))
        ),
        delete("venues", &w.venue.to_string(), &h),
        upsert(
            "fixtures",
            &w.fixture.to_string(),
            &h,
            fixture_row(w.fixture, w.venue, 99)
        ),
        delete("fixtures", &w.fixture.to_string(), &h),
        upsert(
            "tracks",
            &w.track.to_string(),
            &h,
            track_row(w.track, w.a, TS)
        ),
        delete("tracks", &w.track.to_string(), &h),
        upsert(
            "scores",
            &w.score.to_string(),
            &h,
            score_row(w.score, w.a, w.track, w.venue)
        ),
        delete("scores", &w.score.to_string(), &h),
        upsert(
            "patterns",
            &w.pattern.to_string(),
            &h,
            pattern_row(w.pattern, w.a, true)
        ),
        delete("patterns", &w.pattern.to_string(), &h),
        // verified patterns are readable, not writable
        upsert(
            "patterns",
            &w.public_pattern.to_string(),
            &h,
            pattern_row(w.public_pattern, w.a, true)
        ),
        delete("implementations", &w.public_impl.to_string(), &h),
    ]);
    let out = push(&db.pool, b, attacks).await;
    for o in &out {
        assert_eq!(outcome(o), "rejected", "{o}");
        assert_eq!(code(o), "forbidden", "{o}");
    }

    // A's data is untouched (checked as A).
    let (venues, _) = pull_all(&db.pool, w.a, "venues", None).await;
    assert_eq!(venues.len(), 1);
    assert_eq!(venues[0]["row"]["name"], json!("Club"));
    assert_eq!(venues[0]["deleted"], json!(false));
    for table in [
        "fixtures",
        "tracks",
        "scores",
        "patterns",
        "implementations",
    ] {
        let (rows, _) = pull_all(&db.pool, w.a, table, None).await;
        assert!(
            rows.iter()
                .all(|r| r["deleted"] == json!(false) && r["hlc"] == json!(hlc(1_000, 0))),
            "{table}: {rows:?}"
        );
    }
    db.drop().await;
}

#[tokio::test]
async fn another_user_cannot_read_or_write_through_direct_sql() {
    let db = TestDb::new().await;
    let w = World::build(&db.pool).await;
    let b = Uuid::new_v4();
    let targets = [
        ("venues", w.venue),
        ("fixtures", w.fixture),
        ("tracks", w.track),
        ("scores", w.score),
        ("patterns", w.pattern),
    ];
    for (table, id) in targets {
        let mut tx = user_tx(&db.pool, b).await;
        let (seen,): (i64,) = sqlx::query_as(&format!(
            "SELECT count(*) FROM public.{table} WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .expect("select");
        assert_eq!(seen, 0, "{table} readable by B");
        tx.commit().await.expect("commit");
        // Writes by direct SQL are not granted at all (0011): only luma_push writes.
        for sql in [
            format!("UPDATE public.{table} SET deleted_at = now(), hlc = '999999999999999-000000-0000000000000fff' WHERE id = $1"),
            format!("DELETE FROM public.{table} WHERE id = $1"),
        ] {
            let mut tx = user_tx(&db.pool, b).await;
            let err = sqlx::query(&sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .expect_err("a direct write was accepted");
            assert_eq!(
                err.as_database_error().and_then(|e| e.code()).as_deref(),
                Some("42501"),
                "{table}: {err}"
            );
            tx.rollback().await.expect("rollback");
        }
    }

    // Still all there, unchanged (as the superuser).
    let mut conn = db.pool.acquire().await.expect("acquire");
    for (table, id) in targets {
        let (live,): (bool,) = sqlx::query_as(&format!(
            "SELECT deleted_at IS NULL AND hlc = $2 FROM public.{table} WHERE id = $1"
        ))
        .bind(id)
        .bind(hlc(1_000, 0))
        .fetch_one(&mut *conn)
        .await
        .expect("row still exists");
        assert!(live, "{table} changed");
    }
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn a_forged_owner_is_rejected() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let b = Uuid::new_v4();
    let (v, t, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let h = hlc(1_000, 0);
    let out = push(
        &db.pool,
        b,
        json!([
            upsert(
                "venues",
                &v.to_string(),
                &h,
                venue_row(v, a, "Not mine", None)
            ),
            upsert("tracks", &t.to_string(), &h, track_row(t, a, TS)),
            upsert("patterns", &p.to_string(), &h, pattern_row(p, a, true)),
        ]),
    )
    .await;
    for o in &out {
        assert_eq!((outcome(o), code(o)), ("rejected", "forbidden"), "{o}");
    }

    // Direct SQL as B with A as the owner fails too.
    let mut tx = user_tx(&db.pool, b).await;
    let err = sqlx::query("INSERT INTO public.tracks (id, uid, title, created_at, updated_at, hlc) VALUES ($1, $2, 'x', now(), now(), $3)")
        .bind(t)
        .bind(a)
        .bind(&h)
        .execute(&mut *tx)
        .await
        .expect_err("forged owner accepted");
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501"),
        "{err}"
    );
    tx.rollback().await.ok();

    // The owner cannot be changed afterwards either: A's own track handed to B.
    let out = push(
        &db.pool,
        a,
        json!([upsert("tracks", &t.to_string(), &h, track_row(t, a, TS))]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");
    let out = push(
        &db.pool,
        a,
        json!([upsert(
            "tracks",
            &t.to_string(),
            &hlc(2_000, 0),
            track_row(t, b, TS)
        )]),
    )
    .await;
    assert_eq!(
        (outcome(&out[0]), code(&out[0])),
        ("rejected", "forbidden"),
        "{}",
        out[0]
    );
    db.drop().await;
}

#[tokio::test]
async fn a_member_edits_the_venue_rows_but_not_its_existence_or_share_code() {
    let db = TestDb::new().await;
    let w = World::build(&db.pool).await;
    let b = Uuid::new_v4();

    let mut tx = user_tx(&db.pool, b).await;
    let (joined,): (serde_json::Value,) = sqlx::query_as("SELECT luma_join_venue($1)")
        .bind(w.share_code)
        .fetch_one(&mut *tx)
        .await
        .expect("join");
    tx.commit().await.expect("commit");
    assert_eq!(joined["venue_id"], json!(w.venue));

    // B now sees the venue, its fixtures and scores, and the track and pattern the score uses.
    assert_eq!(
        visible_keys(&db.pool, b, "venues").await,
        vec![w.venue.to_string()]
    );
    assert_eq!(
        visible_keys(&db.pool, b, "fixtures").await,
        vec![w.fixture.to_string()]
    );
    assert_eq!(
        visible_keys(&db.pool, b, "scores").await,
        vec![w.score.to_string()]
    );
    assert_eq!(
        visible_keys(&db.pool, b, "track_scores").await,
        vec![w.placed.to_string()]
    );
    assert_eq!(
        visible_keys(&db.pool, b, "tracks").await,
        vec![w.track.to_string()]
    );
    let mut patterns = visible_keys(&db.pool, b, "patterns").await;
    patterns.sort();
    let mut expected = vec![w.pattern.to_string(), w.public_pattern.to_string()];
    expected.sort();
    assert_eq!(patterns, expected);

    let h = hlc(5_000, 0);
    let new_fixture = Uuid::new_v4();
    let out = push(
        &db.pool,
        b,
        json!([
            upsert(
                "fixtures",
                &w.fixture.to_string(),
                &h,
                fixture_row(w.fixture, w.venue, 42)
            ),
            upsert(
                "fixtures",
                &new_fixture.to_string(),
                &h,
                fixture_row(new_fixture, w.venue, 100)
            ),
            upsert(
                "venues",
                &w.venue.to_string(),
                &h,
                venue_row(w.venue, w.a, "Renamed by member", Some(w.share_code))
            ),
        ]),
    )
    .await;
    for o in &out {
        assert_eq!(outcome(o), "applied", "{o}");
    }
    let h2 = hlc(6_000, 0);
    let out = push(
        &db.pool,
        b,
        json!([
            delete("venues", &w.venue.to_string(), &h2),
            upsert(
                "venues",
                &w.venue.to_string(),
                &h2,
                venue_row(w.venue, w.a, "Renamed by member", Some("STOLEN01"))
            ),
            // B's track is B's: B cannot edit A's track even though B may read it
            upsert(
                "tracks",
                &w.track.to_string(),
                &h2,
                track_row(w.track, w.a, TS)
            ),
        ]),
    )
    .await;
    for o in &out {
        assert_eq!((outcome(o), code(o)), ("rejected", "forbidden"), "{o}");
    }

    // Direct SQL: deleting the venue and changing its share code are refused (no write grants).
    let mut tx = user_tx(&db.pool, b).await;
    let err = sqlx::query("DELETE FROM public.venues WHERE id = $1")
        .bind(w.venue)
        .execute(&mut *tx)
        .await
        .expect_err("member deleted the venue by direct SQL");
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501"),
        "{err}"
    );
    tx.rollback().await.ok();
    let mut tx = user_tx(&db.pool, b).await;
    let err = sqlx::query("UPDATE public.venues SET share_code = 'STOLEN02' WHERE id = $1")
        .bind(w.venue)
        .execute(&mut *tx)
        .await
        .expect_err("member changed the share code");
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501"),
        "{err}"
    );
    tx.rollback().await.ok();

    let (venues, _) = pull_all(&db.pool, w.a, "venues", None).await;
    assert_eq!(venues[0]["row"]["share_code"], json!(w.share_code));
    assert_eq!(venues[0]["row"]["name"], json!("Renamed by member"));
    assert_eq!(venues[0]["deleted"], json!(false));
    let (fixtures, _) = pull_all(&db.pool, w.a, "fixtures", None).await;
    assert_eq!(fixtures.len(), 2);

    // The owner may change the share code and tombstone the venue.
    let out = push(
        &db.pool,
        w.a,
        json!([
            upsert(
                "venues",
                &w.venue.to_string(),
                &hlc(7_000, 0),
                venue_row(w.venue, w.a, "Club", Some("NEWCODE1"))
            ),
            delete("venues", &w.venue.to_string(), &hlc(8_000, 0)),
        ]),
    )
    .await;
    for o in &out {
        assert_eq!(outcome(o), "applied", "{o}");
    }
    // The member receives the tombstones of the venue and of its fixtures.
    let (venues, _) = pull_all(&db.pool, b, "venues", None).await;
    assert_eq!(venues[0]["deleted"], json!(true));
    let (fixtures, _) = pull_all(&db.pool, b, "fixtures", None).await;
    assert!(fixtures
        .iter()
        .all(|f| f["deleted"] == json!(true) && f["hlc"] == json!(hlc(8_000, 0))));
    db.drop().await;
}

#[tokio::test]
async fn a_removed_or_leaving_member_loses_access() {
    let db = TestDb::new().await;
    let w = World::build(&db.pool).await;
    let (b, c) = (Uuid::new_v4(), Uuid::new_v4());
    for user in [b, c] {
        let mut tx = user_tx(&db.pool, user).await;
        sqlx::query("SELECT luma_join_venue($1)")
            .bind(w.share_code)
            .execute(&mut *tx)
            .await
            .expect("join");
        tx.commit().await.expect("commit");
        assert_eq!(visible_keys(&db.pool, user, "fixtures").await.len(), 1);
    }

    // B cannot remove C (only the owner removes others).
    let mut tx = user_tx(&db.pool, b).await;
    let n = sqlx::query("DELETE FROM public.venue_members WHERE user_id = $1")
        .bind(c)
        .execute(&mut *tx)
        .await
        .expect("delete")
        .rows_affected();
    assert_eq!(n, 0);
    tx.commit().await.expect("commit");

    // The owner removes B.
    let mut tx = user_tx(&db.pool, w.a).await;
    let n = sqlx::query("DELETE FROM public.venue_members WHERE venue_id = $1 AND user_id = $2")
        .bind(w.venue)
        .bind(b)
        .execute(&mut *tx)
        .await
        .expect("remove member")
        .rows_affected();
    assert_eq!(n, 1);
    tx.commit().await.expect("commit");

    // B's memberships no longer list the venue; C's still do.
    let memberships = |user: Uuid| {
        let pool = db.pool.clone();
        async move {
            let mut tx = user_tx(&pool, user).await;
            let (m,): (serde_json::Value,) = sqlx::query_as("SELECT luma_memberships()")
                .fetch_one(&mut *tx)
                .await
                .expect("memberships");
            tx.commit().await.expect("commit");
            m
        }
    };
    assert_eq!(memberships(b).await, json!([]));
    assert_eq!(memberships(c).await[0]["venue_id"], json!(w.venue));
    assert_eq!(memberships(c).await[0]["role"], json!("member"));
    assert_eq!(memberships(w.a).await[0]["role"], json!("owner"));

    // C leaves.
    let mut tx = user_tx(&db.pool, c).await;
    let (left,): (serde_json::Value,) = sqlx::query_as("SELECT luma_leave_venue($1)")
        .bind(w.venue)
        .fetch_one(&mut *tx)
        .await
        .expect("leave");
    tx.commit().await.expect("commit");
    assert_eq!(left, json!({"left": true}));

    for user in [b, c] {
        for table in ["venues", "fixtures", "scores", "track_scores", "tracks"] {
            assert!(
                visible_keys(&db.pool, user, table).await.is_empty(),
                "{table} still visible"
            );
        }
        let out = push(
            &db.pool,
            user,
            json!([upsert(
                "fixtures",
                &w.fixture.to_string(),
                &hlc(9_000, 0),
                fixture_row(w.fixture, w.venue, 7)
            ),]),
        )
        .await;
        assert_eq!(
            (outcome(&out[0]), code(&out[0])),
            ("rejected", "forbidden"),
            "{}",
            out[0]
        );
    }
    db.drop().await;
}

#[tokio::test]
async fn anonymous_calls_are_refused() {
    let db = TestDb::new().await;
    let _w = World::build(&db.pool).await;
    let mut tx = db.pool.begin().await.expect("begin");
    sqlx::query("SELECT set_config('role', 'anon', true)")
        .execute(&mut *tx)
        .await
        .expect("role");
    let err = sqlx::query("SELECT luma_pull('fixtures', NULL, 10, NULL)")
        .execute(&mut *tx)
        .await
        .expect_err("anon pulled");
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501"),
        "{err}"
    );
    tx.rollback().await.ok();
    let mut tx = db.pool.begin().await.expect("begin");
    sqlx::query("SELECT set_config('role', 'anon', true)")
        .execute(&mut *tx)
        .await
        .expect("role");
    let err = sqlx::query("SELECT count(*) FROM public.fixtures")
        .execute(&mut *tx)
        .await
        .expect_err("anon read a table");
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501"),
        "{err}"
    );
    tx.rollback().await.ok();
    db.drop().await;
}
