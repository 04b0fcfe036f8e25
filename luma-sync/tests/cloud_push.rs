//! luma_push semantics on a real PostgreSQL: last-writer-wins by HLC, idempotent resend,
//! per-change outcomes, parent/child rules, tombstones, purge and resync.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cloud_common;

use cloud_common::*;
use serde_json::json;
use uuid::Uuid;

async fn change_pos(db: &TestDb, table: &str, id: Uuid) -> (String, i64, String) {
    sqlx::query_as(&format!(
        "SELECT change_xid::text, change_seq, hlc FROM public.{table} WHERE id = $1"
    ))
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .expect("row")
}

#[tokio::test]
async fn last_writer_wins_by_hlc_and_resend_is_idempotent() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let (v, f) = (Uuid::new_v4(), Uuid::new_v4());
    let (vk, fk) = (v.to_string(), f.to_string());
    let out = push(
        &db.pool,
        a,
        json!([
            upsert("venues", &vk, &hlc(1_000, 0), venue_row(v, a, "Club", None)),
            upsert("fixtures", &fk, &hlc(2_000, 0), fixture_row(f, v, 10)),
        ]),
    )
    .await;
    assert!(out.iter().all(|o| outcome(o) == "applied"), "{out:?}");

    // Newer wins.
    let out = push(
        &db.pool,
        a,
        json!([upsert(
            "fixtures",
            &fk,
            &hlc(3_000, 0),
            fixture_row(f, v, 20)
        )]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");
    let before = change_pos(&db, "fixtures", f).await;

    // Resending the same change (same hlc) answers applied and changes nothing.
    let out = push(
        &db.pool,
        a,
        json!([upsert(
            "fixtures",
            &fk,
            &hlc(3_000, 0),
            fixture_row(f, v, 20)
        )]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");
    assert_eq!(
        change_pos(&db, "fixtures", f).await,
        before,
        "a resend must not restamp the row"
    );

    // Older loses and gets the server state back; the counter and the site id order stamps too.
    for older in [hlc(2_500, 0), hlc(2_999, 999_999)] {
        let out = push(
            &db.pool,
            a,
            json!([upsert("fixtures", &fk, &older, fixture_row(f, v, 30))]),
        )
        .await;
        assert_eq!(outcome(&out[0]), "superseded", "{}", out[0]);
        assert_eq!(out[0]["hlc"], json!(hlc(3_000, 0)));
        assert_eq!(out[0]["deleted"], json!(false));
        assert_eq!(out[0]["row"], fixture_row(f, v, 20));
    }
    let same_ms_higher_site = luma_model::Hlc::new(3_000, 0, luma_model::SiteId(0xfff)).to_string();
    let out = push(
        &db.pool,
        a,
        json!([upsert(
            "fixtures",
            &fk,
            &same_ms_higher_site,
            fixture_row(f, v, 40)
        )]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");

    // A delete is a write under the same rule: an older upsert after it is superseded by the tombstone.
    let out = push(
        &db.pool,
        a,
        json!([delete("fixtures", &fk, &hlc(5_000, 0))]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");
    let out = push(
        &db.pool,
        a,
        json!([upsert(
            "fixtures",
            &fk,
            &hlc(4_000, 0),
            fixture_row(f, v, 50)
        )]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "superseded");
    assert_eq!(out[0]["deleted"], json!(true));
    assert_eq!(out[0]["row"], json!(null));
    // A newer upsert brings it back.
    let out = push(
        &db.pool,
        a,
        json!([upsert(
            "fixtures",
            &fk,
            &hlc(6_000, 0),
            fixture_row(f, v, 60)
        )]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");
    let (rows, _) = pull_all(&db.pool, a, "fixtures", None).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["deleted"], json!(false));
    assert_eq!(rows[0]["row"], fixture_row(f, v, 60));
    db.drop().await;
}

#[tokio::test]
async fn a_bad_change_is_rejected_without_aborting_the_batch() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let (v, f1, f2, f3, g1, g2) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let h = hlc(1_000, 0);
    let mut bad_address = fixture_row(f2, v, 1);
    bad_address["address"] = json!(999);
    let group = |id: Uuid, name: &str| {
        json!({"id": id, "venue_id": v, "name": name, "axis_lr": null, "axis_fb": null,
                                             "axis_ab": null, "display_order": 0, "tags": ["front"], "movement_config": null})
    };
    let out = push(
        &db.pool,
        a,
        json!([
            upsert("venues", &v.to_string(), &h, venue_row(v, a, "Club", None)),
            upsert("fixtures", &f1.to_string(), &h, fixture_row(f1, v, 1)),
            upsert("fixtures", &f2.to_string(), &h, bad_address),
            upsert(
                "fixtures",
                &f3.to_string(),
                &h,
                fixture_row(f3, Uuid::new_v4(), 1)
            ),
            upsert("nonsense", "x", &h, json!({})),
            upsert(
                "fixtures",
                &f1.to_string(),
                "yesterday",
                fixture_row(f1, v, 1)
            ),
            upsert(
                "fixtures",
                &Uuid::new_v4().to_string(),
                &h,
                fixture_row(f1, v, 1)
            ),
            upsert("fixture_groups", &g1.to_string(), &h, group(g1, "Front")),
            upsert("fixture_groups", &g2.to_string(), &h, group(g2, "Front")),
            upsert(
                "fixture_group_members",
                &format!("[\"{f1}\",\"{g1}\"]"),
                &h,
                json!({"fixture_id": f1, "group_id": g1, "display_order": 3})
            ),
        ]),
    )
    .await;
    let got: Vec<(&str, &str)> = out.iter().map(|o| (outcome(o), code(o))).collect();
    assert_eq!(
        got,
        vec![
            ("applied", ""),
            ("applied", ""),
            ("rejected", "invalid"),
            ("rejected", "missing_parent"),
            ("rejected", "invalid"),
            ("rejected", "invalid"),
            ("rejected", "invalid"),
            ("applied", ""),
            ("rejected", "conflict"),
            ("applied", ""),
        ],
        "{out:#?}"
    );
    assert_eq!(out[9]["key"], json!(format!("[\"{f1}\",\"{g1}\"]")));
    let (members, _) = pull_all(&db.pool, a, "fixture_group_members", None).await;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["key"], json!(format!("[\"{f1}\",\"{g1}\"]")));
    assert_eq!(members[0]["row"]["display_order"], json!(3));
    db.drop().await;
}

#[tokio::test]
async fn deleting_a_parent_tombstones_its_children_and_rejects_late_children() {
    let db = TestDb::new().await;
    let w = World::build(&db.pool).await;
    let g = Uuid::new_v4();
    let h = hlc(2_000, 0);
    let out = push(&db.pool, w.a, json!([
        upsert("fixture_groups", &g.to_string(), &h, json!({"id": g, "venue_id": w.venue, "name": "All", "axis_lr": 0.5,
            "axis_fb": null, "axis_ab": null, "display_order": 0, "tags": [], "movement_config": {"speed": 1.5}})),
        upsert("fixture_group_members", &format!("[\"{}\",\"{g}\"]", w.fixture), &h,
               json!({"fixture_id": w.fixture, "group_id": g, "display_order": 0})),
    ])).await;
    assert!(out.iter().all(|o| outcome(o) == "applied"), "{out:?}");

    let del = hlc(3_000, 0);
    let out = push(
        &db.pool,
        w.a,
        json!([delete("venues", &w.venue.to_string(), &del)]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");
    for table in [
        "venues",
        "fixtures",
        "fixture_groups",
        "fixture_group_members",
        "scores",
        "track_scores",
    ] {
        let (rows, _) = pull_all(&db.pool, w.a, table, None).await;
        assert!(!rows.is_empty(), "{table}");
        for r in rows {
            assert_eq!(
                (r["deleted"].clone(), r["hlc"].clone(), r["row"].clone()),
                (json!(true), json!(del), json!(null)),
                "{table}"
            );
        }
    }
    // Not in the venue: untouched.
    let (tracks, _) = pull_all(&db.pool, w.a, "tracks", None).await;
    assert_eq!(tracks[0]["deleted"], json!(false));

    // A child written concurrently (newer stamp) under the deleted parent is refused.
    let f = Uuid::new_v4();
    let out = push(
        &db.pool,
        w.a,
        json!([
            upsert(
                "fixtures",
                &f.to_string(),
                &hlc(4_000, 0),
                fixture_row(f, w.venue, 5)
            ),
            upsert(
                "fixtures",
                &w.fixture.to_string(),
                &hlc(4_000, 0),
                fixture_row(w.fixture, w.venue, 5)
            ),
        ]),
    )
    .await;
    for o in &out {
        assert_eq!((outcome(o), code(o)), ("rejected", "missing_parent"), "{o}");
    }
    // Deleting something that never existed is a no-op.
    let out = push(
        &db.pool,
        w.a,
        json!([delete(
            "fixtures",
            &Uuid::new_v4().to_string(),
            &hlc(4_000, 0)
        )]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");
    db.drop().await;
}

#[tokio::test]
async fn values_round_trip_exactly() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let t = Uuid::new_v4();
    let mut track = track_row(t, a, "2026-03-04T05:06:07.123Z");
    track["created_at"] = json!("2026-03-04T05:06:07.123456Z");
    track["duration_seconds"] = json!(0.1 + 0.2);
    track["track_number"] = json!(7);
    let waveform = json!({"track_id": t, "preview_samples": "00ff10ab", "preview_colors": null,
                          "preview_bands": "", "full_ref": "blob/abc", "sample_rate": 44100, "decoded_duration": 1e-7});
    let beats = json!({"track_id": t, "beats": [0.5, 1.0, 1.5], "downbeats": [0.5], "bpm": 120.25,
                       "downbeat_offset": -0.01, "beats_per_bar": 4});
    let h = hlc(1_000, 0);
    let out = push(
        &db.pool,
        a,
        json!([
            upsert("tracks", &t.to_string(), &h, track.clone()),
            upsert("track_waveforms", &t.to_string(), &h, waveform.clone()),
            upsert("track_beats", &t.to_string(), &h, beats.clone()),
        ]),
    )
    .await;
    assert!(out.iter().all(|o| outcome(o) == "applied"), "{out:?}");
    for (table, row) in [
        ("tracks", track),
        ("track_waveforms", waveform),
        ("track_beats", beats),
    ] {
        let (rows, _) = pull_all(&db.pool, a, table, None).await;
        assert_eq!(rows[0]["row"], row, "{table}");
        assert_eq!(rows[0]["key"], json!(t.to_string()));
    }
    db.drop().await;
}

#[tokio::test]
async fn purged_tombstones_make_old_cursors_resync() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let v = Uuid::new_v4();
    let fs: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let mut changes = vec![upsert(
        "venues",
        &v.to_string(),
        &hlc(1_000, 0),
        venue_row(v, a, "Club", None),
    )];
    for (i, f) in fs.iter().enumerate() {
        changes.push(upsert(
            "fixtures",
            &f.to_string(),
            &hlc(1_000, 0),
            fixture_row(*f, v, i as i64 + 1),
        ));
    }
    push(&db.pool, a, json!(changes)).await;
    let (_, early_cursor) = pull_all(&db.pool, a, "fixtures", None).await;
    let out = push(
        &db.pool,
        a,
        json!([delete("fixtures", &fs[0].to_string(), &hlc(2_000, 0))]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");
    let (_, late_cursor) = pull_all(&db.pool, a, "fixtures", early_cursor.clone()).await;

    // Users cannot purge.
    let mut tx = user_tx(&db.pool, a).await;
    assert!(sqlx::query("SELECT luma_purge_tombstones('0 seconds')")
        .execute(&mut *tx)
        .await
        .is_err());
    tx.rollback().await.ok();

    // A young tombstone survives a one-day horizon; a zero horizon purges it.
    let mut tx = service_tx(&db.pool).await;
    let (counts,): (serde_json::Value,) = sqlx::query_as("SELECT luma_purge_tombstones('1 day')")
        .fetch_one(&mut *tx)
        .await
        .expect("purge");
    assert_eq!(counts["fixtures"], json!(0));
    let (counts,): (serde_json::Value,) =
        sqlx::query_as("SELECT luma_purge_tombstones('0 seconds')")
            .fetch_one(&mut *tx)
            .await
            .expect("purge");
    assert_eq!(counts["fixtures"], json!(1));
    tx.commit().await.expect("commit");

    // The cursor from before the delete missed the purged tombstone: resync.
    let page = pull_page(&db.pool, a, "fixtures", early_cursor.as_deref(), 100, None).await;
    assert_eq!(page["resync_required"], json!(true), "{page}");
    // The cursor that saw the tombstone is fine, and so is a full pull.
    let page = pull_page(&db.pool, a, "fixtures", late_cursor.as_deref(), 100, None).await;
    assert_eq!(page["resync_required"], json!(false), "{page}");
    let mut keys = visible_keys(&db.pool, a, "fixtures").await;
    keys.sort();
    let mut expected = vec![fs[1].to_string(), fs[2].to_string()];
    expected.sort();
    assert_eq!(keys, expected);
    db.drop().await;
}

#[tokio::test]
async fn large_runs_take_the_set_based_path_with_the_same_outcomes() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let v = Uuid::new_v4();
    push(
        &db.pool,
        a,
        json!([upsert(
            "venues",
            &v.to_string(),
            &hlc(1_000, 0),
            venue_row(v, a, "Club", None)
        )]),
    )
    .await;
    let ids: Vec<Uuid> = (0..300).map(|_| Uuid::new_v4()).collect();
    let batch = |ms: u64, address: i64| -> serde_json::Value {
        json!(ids
            .iter()
            .map(|f| upsert(
                "fixtures",
                &f.to_string(),
                &hlc(ms, 0),
                fixture_row(*f, v, address)
            ))
            .collect::<Vec<_>>())
    };
    let out = push(&db.pool, a, batch(2_000, 1)).await;
    assert_eq!(out.len(), 300);
    assert!(out.iter().all(|o| outcome(o) == "applied"));
    for (o, f) in out.iter().zip(&ids) {
        assert_eq!(o["key"], json!(f.to_string()), "outcomes in change order");
    }
    let before = change_pos(&db, "fixtures", ids[17]).await;
    // Resend: applied, nothing restamped.
    let out = push(&db.pool, a, batch(2_000, 1)).await;
    assert!(out.iter().all(|o| outcome(o) == "applied"));
    assert_eq!(change_pos(&db, "fixtures", ids[17]).await, before);
    // Older: all superseded with the server row.
    let out = push(&db.pool, a, batch(1_500, 9)).await;
    assert!(out
        .iter()
        .all(|o| outcome(o) == "superseded" && o["row"]["address"] == json!(1)));
    // Mixed: newer for even indexes, older for odd ones, in one run.
    let mixed: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, f)| {
            upsert(
                "fixtures",
                &f.to_string(),
                &hlc(if i % 2 == 0 { 3_000 } else { 1_000 }, 0),
                fixture_row(*f, v, 5),
            )
        })
        .collect();
    let out = push(&db.pool, a, json!(mixed)).await;
    for (i, o) in out.iter().enumerate() {
        assert_eq!(
            outcome(o),
            if i % 2 == 0 { "applied" } else { "superseded" },
            "{i}"
        );
    }
    // One bad row in a run: the run falls back to change-by-change, only that row is refused.
    let mut bad = batch(4_000, 6);
    bad[150]["row"]["num_channels"] = json!(0);
    let out = push(&db.pool, a, bad).await;
    for (i, o) in out.iter().enumerate() {
        if i == 150 {
            assert_eq!((outcome(o), code(o)), ("rejected", "invalid"));
        } else {
            assert_eq!(outcome(o), "applied", "{i}: {o}");
        }
    }
    // Another user's run is refused row by row.
    let b = Uuid::new_v4();
    let out = push(&db.pool, b, batch(9_000, 7)).await;
    assert!(out
        .iter()
        .all(|o| outcome(o) == "rejected" && code(o) == "forbidden"));
    let (rows, _) = pull_all(&db.pool, a, "fixtures", None).await;
    assert_eq!(rows.len(), 300);
    assert_eq!(
        rows.iter()
            .filter(|r| r["row"]["address"] == json!(6))
            .count(),
        299
    );
    db.drop().await;
}

/// A delete of a key the server has not got yet, pushed while another device's first insert of
/// that key is still uncommitted, waits for it and then tombstones the row (the newer delete
/// wins); and an older insert arriving after a kept delete is superseded. Upsert batches of
/// one user do not wait for each other.
#[tokio::test]
async fn a_kept_delete_and_a_concurrent_first_insert_do_not_pass_each_other() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let v = Uuid::new_v4();
    let vk = v.to_string();
    // Device 1 inserts the venue (older stamp) and does not commit yet.
    let mut t1 = user_tx(&db.pool, a).await;
    let out = push_in(
        &mut t1,
        json!([upsert(
            "venues",
            &vk,
            &hlc(1_000, 0),
            venue_row(v, a, "Club", None)
        )]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");
    // Another upsert batch of the same user is not held up by it.
    let w = Uuid::new_v4();
    let other = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        push(
            &db.pool,
            a,
            json!([upsert(
                "venues",
                &w.to_string(),
                &hlc(1_000, 0),
                venue_row(w, a, "Bar", None)
            )]),
        ),
    )
    .await
    .expect("upsert batches of one user run concurrently");
    assert_eq!(outcome(&other[0]), "applied");
    // Device 2 deletes the key (newer stamp): it must wait for device 1.
    let pool = db.pool.clone();
    let key = vk.clone();
    let deleter = tokio::spawn(async move {
        push(&pool, a, json!([delete("venues", &key, &hlc(2_000, 0))])).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !deleter.is_finished(),
        "the delete waited for the open insert"
    );
    t1.commit().await.unwrap();
    let out = deleter.await.unwrap();
    assert_eq!(outcome(&out[0]), "applied");
    let (hlc_now, deleted): (String, bool) =
        sqlx::query_as("SELECT hlc, deleted_at IS NOT NULL FROM public.venues WHERE id = $1")
            .bind(v)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((hlc_now.as_str(), deleted), (hlc(2_000, 0).as_str(), true));

    // Kept delete first, older insert later: superseded, nothing written.
    let x = Uuid::new_v4();
    let xk = x.to_string();
    let out = push(&db.pool, a, json!([delete("venues", &xk, &hlc(5_000, 0))])).await;
    assert_eq!(outcome(&out[0]), "applied");
    let out = push(
        &db.pool,
        a,
        json!([upsert(
            "venues",
            &xk,
            &hlc(4_000, 0),
            venue_row(x, a, "Late", None)
        )]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "superseded", "{}", out[0]);
    assert_eq!(out[0]["deleted"], json!(true));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM public.venues WHERE id = $1")
        .bind(x)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    db.drop().await;
}

#[tokio::test]
async fn floats_come_back_exact_and_with_a_fraction() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let v = Uuid::new_v4();
    let values = [
        0.0,
        2.0,
        -3.0,
        0.1 + 0.2,
        -1e-7,
        1e14,
        1e15,
        123_456_789_012_345.0,
        9_007_199_254_740_993.0,
        1e300,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        5e-324,
    ];
    let mut changes = vec![upsert(
        "venues",
        &v.to_string(),
        &hlc(1_000, 0),
        venue_row(v, a, "Club", None),
    )];
    let ids: Vec<Uuid> = values.iter().map(|_| Uuid::new_v4()).collect();
    for (f, x) in ids.iter().zip(values) {
        let mut row = fixture_row(*f, v, 1);
        row["pos_x"] = json!(x);
        row["rot_z"] = json!(-x);
        changes.push(upsert("fixtures", &f.to_string(), &hlc(1_000, 0), row));
    }
    let out = push(&db.pool, a, json!(changes)).await;
    assert!(out.iter().all(|o| outcome(o) == "applied"), "{out:?}");
    let (rows, _) = pull_all(&db.pool, a, "fixtures", None).await;
    assert_eq!(rows.len(), values.len());
    for (f, x) in ids.iter().zip(values) {
        let row = &rows
            .iter()
            .find(|r| r["key"] == json!(f.to_string()))
            .unwrap()["row"];
        for (col, want) in [("pos_x", x), ("rot_z", -x)] {
            // A JSON float (never an integer), the same f64.
            assert!(row[col].is_f64(), "{col} of {x}: {}", row[col]);
            assert_eq!(row[col].as_f64(), Some(want), "{col}: {}", row[col]);
        }
    }
    db.drop().await;
}

/// The skew bound is a per-database setting (`luma.config.max_clock_skew_ms`), as it is a
/// per-server setting of MemoryRemote (`set_max_clock_skew`): widened, an hour-ahead stamp is
/// applied; narrowed to zero, a minute-ahead stamp is refused `clock_skew`.
#[tokio::test]
async fn the_clock_skew_bound_is_configurable() {
    use luma_sync::{MemoryRemote, Remote};
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let ahead = |ms: u64| {
        luma_model::Hlc::new(luma_model::wall_clock_ms() + ms, 0, luma_model::SiteId(5)).to_string()
    };
    let v = Uuid::new_v4();
    let out = push(
        &db.pool,
        a,
        json!([upsert(
            "venues",
            &v.to_string(),
            &ahead(3_600_000),
            venue_row(v, a, "Club", None)
        )]),
    )
    .await;
    assert_eq!(
        (outcome(&out[0]), code(&out[0])),
        ("rejected", "clock_skew"),
        "{}",
        out[0]
    );
    let reason = out[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("300000"),
        "the reason names the bound: {reason}"
    );
    sqlx::query("UPDATE luma.config SET max_clock_skew_ms = 7200000")
        .execute(&db.pool)
        .await
        .unwrap();
    let out = push(
        &db.pool,
        a,
        json!([upsert(
            "venues",
            &v.to_string(),
            &ahead(3_600_000),
            venue_row(v, a, "Club", None)
        )]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied", "{}", out[0]);
    sqlx::query("UPDATE luma.config SET max_clock_skew_ms = 0")
        .execute(&db.pool)
        .await
        .unwrap();
    let w = Uuid::new_v4();
    let out = push(
        &db.pool,
        a,
        json!([upsert(
            "venues",
            &w.to_string(),
            &ahead(60_000),
            venue_row(w, a, "Club", None)
        )]),
    )
    .await;
    assert_eq!(
        (outcome(&out[0]), code(&out[0])),
        ("rejected", "clock_skew"),
        "{}",
        out[0]
    );
    db.drop().await;

    let remote = MemoryRemote::new();
    let user = luma_model::UserId::new();
    let token = remote.issue_token(user);
    let change = |stamp: &str| luma_sync::Change {
        table: "venues".into(),
        key: luma_model::RecordKey::from_canonical(v.to_string()),
        hlc: stamp.parse().unwrap(),
        op: luma_model::OpKind::Upsert,
        row: Some(match venue_row(v, user.0, "Club", None) {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        }),
    };
    let out = remote
        .push(&token, &[change(&ahead(3_600_000))])
        .await
        .unwrap();
    assert!(
        matches!(
            out[0].outcome,
            luma_sync::Outcome::Rejected {
                code: luma_sync::RejectCode::ClockSkew,
                ..
            }
        ),
        "{out:?}"
    );
    remote.set_max_clock_skew(std::time::Duration::from_secs(7200));
    let out = remote
        .push(&token, &[change(&ahead(3_600_000))])
        .await
        .unwrap();
    assert_eq!(out[0].outcome, luma_sync::Outcome::Applied);
}
