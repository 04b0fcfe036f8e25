//! A plugin table becomes a synced table with one `luma.enable_sync` call: the generic push,
//! pull and policies apply to it without new functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cloud_common;

use cloud_common::*;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn one_call_makes_a_plugin_table_sync_with_venue_visibility() {
    let db = TestDb::new().await;
    let w = World::build(&db.pool).await;
    sqlx::raw_sql(
        "CREATE TABLE public.cue_lists (
             id uuid PRIMARY KEY,
             venue_id uuid NOT NULL REFERENCES public.venues (id) ON DELETE CASCADE,
             name text NOT NULL,
             fade double precision NOT NULL DEFAULT 0,
             steps jsonb NOT NULL DEFAULT '[]'
         );
         SELECT luma.enable_sync('public.cue_lists', 'in_venue', 'venue_id');",
    )
    .execute(&db.pool)
    .await
    .expect("plugin migration");

    let c = Uuid::new_v4();
    let row =
        json!({"id": c, "venue_id": w.venue, "name": "Intro", "fade": 1.5, "steps": [{"go": 1}]});
    let out = push(
        &db.pool,
        w.a,
        json!([upsert(
            "cue_lists",
            &c.to_string(),
            &hlc(2_000, 0),
            row.clone()
        )]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied", "{}", out[0]);

    let (rows, _) = pull_all(&db.pool, w.a, "cue_lists", None).await;
    assert_eq!(rows[0]["row"], row);

    // A stranger neither sees nor writes it; a member does both.
    let b = Uuid::new_v4();
    assert!(visible_keys(&db.pool, b, "cue_lists").await.is_empty());
    let out = push(
        &db.pool,
        b,
        json!([delete("cue_lists", &c.to_string(), &hlc(3_000, 0))]),
    )
    .await;
    assert_eq!((outcome(&out[0]), code(&out[0])), ("rejected", "forbidden"));
    let mut tx = user_tx(&db.pool, b).await;
    sqlx::query("SELECT luma_join_venue($1)")
        .bind(w.share_code)
        .execute(&mut *tx)
        .await
        .expect("join");
    tx.commit().await.expect("commit");
    assert_eq!(
        visible_keys(&db.pool, b, "cue_lists").await,
        vec![c.to_string()]
    );

    // Deleting the venue tombstones the plugin rows too (the FK was discovered).
    let out = push(
        &db.pool,
        w.a,
        json!([delete("venues", &w.venue.to_string(), &hlc(4_000, 0))]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");
    let (rows, _) = pull_all(&db.pool, b, "cue_lists", None).await;
    assert_eq!(rows[0]["deleted"], json!(true));
    db.drop().await;
}
