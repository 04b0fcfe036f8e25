//! The attack suite (issue 12): a hostile signed-in user (B, a stranger; C, a member of the
//! victim's venue) and `anon`, as anyone holding the anon key can act through PostgREST,
//! attack user A's data on the real PostgreSQL by direct SQL on every synced table, by calling
//! every `luma_*` function and internal helper, with forged claims, and with crafted pushes.
//! Every attempt must be denied (an error, an empty answer, or a rejected outcome) and leave
//! every table exactly as it was (a superuser snapshot of all of them before and after each
//! attempt that committed). Also: for each column kind, a value the client refuses is refused
//! by the server (`invalid`) and a value the client accepts is accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cloud_common;

use cloud_common::*;
use serde_json::{json, Value};
use std::str::FromStr;

use sqlx::{PgPool, Row};
use uuid::Uuid;

const SYNCED: [&str; 12] = [
    "venues",
    "fixtures",
    "fixture_groups",
    "fixture_group_members",
    "patterns",
    "implementations",
    "tracks",
    "track_beats",
    "track_roots",
    "track_waveforms",
    "scores",
    "track_scores",
];

/// Who attacks.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// Signed in as this user.
    User(Uuid),
    /// The anon key: role anon, no user.
    Anon,
    /// Role authenticated with these raw claims.
    Claims(&'static str),
}

struct World {
    a: Uuid,
    b: Uuid,
    c: Uuid,
    venue: Uuid,
    fixture: Uuid,
    group: Uuid,
    track: Uuid,
    secret_track: Uuid,
    pattern: Uuid,
    secret_pattern: Uuid,
    unpublished: Uuid,
    implementation: Uuid,
    secret_implementation: Uuid,
    score: Uuid,
    track_score: Uuid,
    b_venue: Uuid,
    b_track: Uuid,
    b_score: Uuid,
    c_venue: Uuid,
}

fn now_ms() -> u64 {
    luma_model::wall_clock_ms()
}

fn group_row(id: Uuid, venue: Uuid, name: &str) -> Value {
    json!({"id": id, "venue_id": venue, "name": name, "axis_lr": null, "axis_fb": null,
           "axis_ab": null, "display_order": 0, "tags": ["front"], "movement_config": null})
}

fn beats_row(track: Uuid) -> Value {
    json!({"track_id": track, "beats": [0.5, 1.0, 1.5], "downbeats": [0.5], "bpm": 120.0,
           "downbeat_offset": 0.0, "beats_per_bar": 4})
}

fn roots_row(track: Uuid) -> Value {
    json!({"track_id": track, "sections": [{"root": "A"}], "logits_ref": null})
}

fn waveform_row(track: Uuid) -> Value {
    json!({"track_id": track, "preview_samples": "0102", "preview_colors": null,
           "preview_bands": null, "full_ref": null, "sample_rate": 44100, "decoded_duration": 180.0})
}

fn applied_all(out: &[Value]) {
    for o in out {
        assert_eq!(outcome(o), "applied", "{o}");
    }
}

async fn build(pool: &PgPool) -> World {
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let w = World {
        a,
        b,
        c,
        venue: Uuid::new_v4(),
        fixture: Uuid::new_v4(),
        group: Uuid::new_v4(),
        track: Uuid::new_v4(),
        secret_track: Uuid::new_v4(),
        pattern: Uuid::new_v4(),
        secret_pattern: Uuid::new_v4(),
        unpublished: Uuid::new_v4(),
        implementation: Uuid::new_v4(),
        secret_implementation: Uuid::new_v4(),
        score: Uuid::new_v4(),
        track_score: Uuid::new_v4(),
        b_venue: Uuid::new_v4(),
        b_track: Uuid::new_v4(),
        b_score: Uuid::new_v4(),
        c_venue: Uuid::new_v4(),
    };
    let h = hlc(1_000, 0);
    let s = |u: Uuid| u.to_string();
    let fgm_key = json!([w.fixture.to_string(), w.group.to_string()]).to_string();
    let out = push(
        pool,
        a,
        json!([
            upsert(
                "venues",
                &s(w.venue),
                &h,
                venue_row(w.venue, a, "A's club", Some("SHARE001"))
            ),
            upsert(
                "fixtures",
                &s(w.fixture),
                &h,
                fixture_row(w.fixture, w.venue, 1)
            ),
            upsert(
                "fixture_groups",
                &s(w.group),
                &h,
                group_row(w.group, w.venue, "Front")
            ),
            upsert(
                "fixture_group_members",
                &fgm_key,
                &h,
                json!({"fixture_id": w.fixture, "group_id": w.group, "display_order": 0})
            ),
            upsert(
                "patterns",
                &s(w.pattern),
                &h,
                pattern_row(w.pattern, a, false)
            ),
            upsert(
                "patterns",
                &s(w.secret_pattern),
                &h,
                pattern_row(w.secret_pattern, a, false)
            ),
            upsert(
                "patterns",
                &s(w.unpublished),
                &h,
                pattern_row(w.unpublished, a, true)
            ),
            upsert(
                "implementations",
                &s(w.implementation),
                &h,
                implementation_row(w.implementation, w.pattern)
            ),
            upsert(
                "implementations",
                &s(w.secret_implementation),
                &h,
                implementation_row(w.secret_implementation, w.secret_pattern)
            ),
            upsert("tracks", &s(w.track), &h, track_row(w.track, a, TS)),
            upsert(
                "tracks",
                &s(w.secret_track),
                &h,
                track_row(w.secret_track, a, TS)
            ),
            upsert("track_beats", &s(w.track), &h, beats_row(w.track)),
            upsert(
                "track_beats",
                &s(w.secret_track),
                &h,
                beats_row(w.secret_track)
            ),
            upsert(
                "track_roots",
                &s(w.secret_track),
                &h,
                roots_row(w.secret_track)
            ),
            upsert(
                "track_waveforms",
                &s(w.secret_track),
                &h,
                waveform_row(w.secret_track)
            ),
            upsert(
                "scores",
                &s(w.score),
                &h,
                score_row(w.score, a, w.track, w.venue)
            ),
            upsert(
                "track_scores",
                &s(w.track_score),
                &h,
                track_score_row(w.track_score, w.score, w.pattern)
            ),
        ]),
    )
    .await;
    applied_all(&out);
    // Published, then unpublished.
    let out = push(
        pool,
        a,
        json!([upsert(
            "patterns",
            &s(w.unpublished),
            &hlc(2_000, 0),
            pattern_row(w.unpublished, a, false)
        )]),
    )
    .await;
    applied_all(&out);
    let out = push(
        pool,
        b,
        json!([
            upsert(
                "venues",
                &s(w.b_venue),
                &h,
                venue_row(w.b_venue, b, "B's club", None)
            ),
            upsert("tracks", &s(w.b_track), &h, track_row(w.b_track, b, TS)),
            upsert(
                "scores",
                &s(w.b_score),
                &h,
                score_row(w.b_score, b, w.b_track, w.b_venue)
            ),
        ]),
    )
    .await;
    applied_all(&out);
    let out = push(
        pool,
        c,
        json!([upsert(
            "venues",
            &s(w.c_venue),
            &h,
            venue_row(w.c_venue, c, "C's club", None)
        )]),
    )
    .await;
    applied_all(&out);
    let mut tx = user_tx(pool, c).await;
    sqlx::query("SELECT luma_join_venue('SHARE001')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    w
}

/// Every table's content (as the superuser), to compare before and after an attempt.
async fn snapshot(pool: &PgPool) -> String {
    let mut parts = Vec::new();
    let tables: Vec<String> = SYNCED
        .iter()
        .map(|t| format!("public.{t}"))
        .chain(
            [
                "public.venue_members",
                "public.profiles",
                "luma.key_tombstones",
                "luma.config",
                "luma.sync_tables",
            ]
            .map(String::from),
        )
        .collect();
    for t in tables {
        // (every table exists since 0011; skipping a missing one lets the suite run, and count
        // its failures, against an older schema)
        let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL")
            .bind(&t)
            .fetch_one(pool)
            .await
            .unwrap();
        if !exists {
            parts.push(format!("{t}=missing"));
            continue;
        }
        let (h,): (Option<String>,) = sqlx::query_as(&format!(
            "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {t} t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        parts.push(format!("{t}={}", h.unwrap_or_default()));
    }
    parts.join(";")
}

struct Suite {
    pool: PgPool,
    before: String,
    attempts: usize,
    denied: usize,
    failures: Vec<String>,
}

impl Suite {
    async fn begin(&self, who: Who) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut tx = self.pool.begin().await.unwrap();
        match who {
            Who::User(u) => sign_in(&mut tx, u).await,
            Who::Anon => {
                sqlx::query("SELECT set_config('role', 'anon', true)")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            Who::Claims(claims) => {
                sqlx::query("SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)")
                    .bind(claims)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
        }
        tx
    }

    fn record(&mut self, label: String, denied: bool) {
        self.attempts += 1;
        if denied {
            self.denied += 1;
        } else {
            self.failures.push(label);
        }
    }

    /// A statement that must fail with one of `codes` (privilege errors by default).
    async fn refused(
        &mut self,
        label: &str,
        who: Who,
        sql: &str,
        bind: Option<Value>,
        codes: &[&str],
    ) {
        let mut tx = self.begin(who).await;
        let mut q = sqlx::query(sql);
        if let Some(b) = bind {
            q = q.bind(b);
        }
        let res = q.execute(&mut *tx).await;
        tx.rollback().await.ok();
        let denied = match &res {
            Err(e) => e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| codes.contains(&c.as_ref())),
            Ok(_) => false,
        };
        let label = format!("{label} as {who:?}: {sql} -> {res:?}");
        self.record(label, denied);
    }

    /// A statement answering one JSON value; `denied` judges the answer. The transaction
    /// commits, then every table must be unchanged.
    async fn answered(
        &mut self,
        label: &str,
        who: Who,
        sql: &str,
        bind: Option<Value>,
        denied: impl Fn(&Value) -> bool,
    ) {
        let mut tx = self.begin(who).await;
        let mut q = sqlx::query(sql);
        if let Some(b) = bind {
            q = q.bind(b);
        }
        let res = q.fetch_one(&mut *tx).await;
        let (ok, text) = match &res {
            Ok(row) => {
                let v: Value = row.try_get::<Value, _>(0).unwrap_or(Value::Null);
                (denied(&v), v.to_string())
            }
            // An error is a denial too (nothing was answered).
            Err(e) => (e.as_database_error().is_some(), format!("{e}")),
        };
        if res.is_ok() {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.ok();
        }
        let after = snapshot(&self.pool).await;
        let unchanged = after == self.before;
        if !unchanged {
            self.before = after;
        }
        self.record(
            format!("{label} as {who:?}: {sql} -> {text} (unchanged: {unchanged})"),
            ok && unchanged,
        );
    }

    /// A push that must be refused change by change (every outcome rejected, `code` if given).
    async fn push_refused(
        &mut self,
        label: &str,
        who: Who,
        changes: Value,
        code: Option<&'static str>,
    ) {
        self.answered(
            label,
            who,
            "SELECT luma_push($1)",
            Some(changes),
            move |out| {
                out.as_array().is_some_and(|a| {
                    !a.is_empty()
                        && a.iter().all(|o| {
                            o["outcome"] == "rejected"
                                && code.is_none_or(|c| o["code"] == c)
                                && !o["reason"].as_str().unwrap_or("").contains("exist")
                        })
                })
            },
        )
        .await;
    }
}

fn contains_any(v: &Value, ids: &[Uuid]) -> bool {
    let text = v.to_string();
    ids.iter().any(|id| text.contains(&id.to_string()))
}

#[tokio::test]
async fn hostile_users_are_denied_everything() {
    let db = TestDb::new().await;
    let w = build(&db.pool).await;
    let mut s = Suite {
        pool: db.pool.clone(),
        before: snapshot(&db.pool).await,
        attempts: 0,
        denied: 0,
        failures: Vec::new(),
    };
    let (b, c) = (Who::User(w.b), Who::User(w.c));
    let all_of_a = [
        w.venue,
        w.fixture,
        w.group,
        w.track,
        w.secret_track,
        w.pattern,
        w.secret_pattern,
        w.unpublished,
        w.implementation,
        w.secret_implementation,
        w.score,
        w.track_score,
    ];
    // What C (a member of A's venue) must not read: A's rows not placed in the venue by A.
    let hidden_from_c = [
        w.secret_track,
        w.secret_pattern,
        w.unpublished,
        w.secret_implementation,
    ];

    // ---- direct SQL on every synced table, as B, C and anon --------------------------------
    for table in SYNCED {
        // The victim's row as JSON (a copy with a fresh id where the key is `id`).
        let (row,): (Value,) = sqlx::query_as(&format!(
            "SELECT to_jsonb(t) FROM public.{table} t ORDER BY t.hlc LIMIT 1"
        ))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let mut copy = row.clone();
        if copy.get("id").is_some() {
            copy["id"] = json!(Uuid::new_v4());
        }
        for (who, secret) in [
            (b, &all_of_a[..]),
            (c, &hidden_from_c[..]),
            (Who::Anon, &all_of_a[..]),
        ] {
            let secret: Vec<Uuid> = secret.to_vec();
            s.answered(
                &format!("select {table}"),
                who,
                &format!("SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]') FROM public.{table} t"),
                None,
                move |v| !contains_any(v, &secret),
            )
            .await;
            s.refused(
                &format!("insert {table}"),
                who,
                &format!("INSERT INTO public.{table} SELECT * FROM jsonb_populate_record(NULL::public.{table}, $1)"),
                Some(copy.clone()),
                &["42501"],
            )
            .await;
            s.refused(
                &format!("update {table}"),
                who,
                &format!("UPDATE public.{table} SET hlc = '999999999999999-999999-ffffffffffffffff', deleted_at = now()"),
                None,
                &["42501"],
            )
            .await;
            s.refused(
                &format!("delete {table}"),
                who,
                &format!("DELETE FROM public.{table}"),
                None,
                &["42501"],
            )
            .await;
        }
    }

    // ---- the other tables ------------------------------------------------------------------
    for who in [b, c, Who::Anon] {
        s.refused(
            "kept deletes",
            who,
            "SELECT count(*) FROM luma.key_tombstones",
            None,
            &["42501"],
        )
        .await;
        s.refused(
            "forge a kept delete",
            who,
            "INSERT INTO luma.key_tombstones (uid, table_name, key, hlc) VALUES (auth.uid(), 'venues', 'x', '999999999999999-999999-ffffffffffffffff')",
            None,
            &["42501"],
        )
        .await;
        s.refused(
            "raise the skew",
            who,
            "UPDATE luma.config SET max_clock_skew_ms = 999999999999",
            None,
            &["42501"],
        )
        .await;
        s.refused(
            "read the skew",
            who,
            "SELECT * FROM luma.config",
            None,
            &["42501"],
        )
        .await;
        s.refused(
            "registry",
            who,
            "UPDATE luma.sync_tables SET purged_xid = '0'",
            None,
            &["42501"],
        )
        .await;
    }
    // Role switches, from a login role like PostgREST's authenticator (member of anon and
    // authenticated only): the test's own connection is a superuser, which may switch to any role.
    sqlx::query(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'luma_test_authenticator') THEN \
         CREATE ROLE luma_test_authenticator LOGIN NOINHERIT; END IF; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("GRANT anon, authenticated TO luma_test_authenticator")
        .execute(&db.pool)
        .await
        .unwrap();
    let opts = sqlx::postgres::PgConnectOptions::from_str(&base_url())
        .unwrap()
        .database(&db.name)
        .username("luma_test_authenticator");
    let auth_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap();
    for first in ["anon", "authenticated"] {
        for target in ["luma_writer", "postgres", "luma_test_none"] {
            for sql in [
                format!("SELECT set_config('role', '{target}', true)"),
                format!("SET LOCAL ROLE {target}"),
            ] {
                let mut tx = auth_pool.begin().await.unwrap();
                sqlx::query("SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)")
                    .bind(first)
                    .bind(json!({"sub": w.b, "role": first}).to_string())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                let res = sqlx::query(&sql).execute(&mut *tx).await;
                tx.rollback().await.ok();
                let denied = res
                    .as_ref()
                    .err()
                    .and_then(|e| e.as_database_error())
                    .and_then(|d| d.code())
                    .is_some_and(|c| c == "42501" || c == "22023");
                s.record(
                    format!("become {target} from {first}: {sql} -> {res:?}"),
                    denied,
                );
            }
        }
    }
    auth_pool.close().await;
    s.refused(
        "join A's venue directly",
        b,
        "INSERT INTO public.venue_members (venue_id, user_id) SELECT ($1 ->> 'v')::uuid, auth.uid()",
        Some(json!({"v": w.venue})),
        &["42501"],
    )
    .await;
    s.answered(
        "promote oneself",
        c,
        "WITH u AS (UPDATE public.venue_members SET role = 'editor' WHERE user_id = auth.uid() RETURNING 1) SELECT to_jsonb(count(*)) FROM u",
        None,
        |v| v == &json!(0),
    )
    .await;
    s.answered(
        "remove A's other members",
        b,
        "WITH d AS (DELETE FROM public.venue_members RETURNING 1) SELECT to_jsonb(count(*)) FROM d",
        None,
        |v| v == &json!(0),
    )
    .await;
    s.answered(
        "A's profile",
        b,
        "WITH u AS (UPDATE public.profiles SET display_name = 'pwned' WHERE id <> auth.uid() RETURNING 1) SELECT to_jsonb(count(*)) FROM u",
        None,
        |v| v == &json!(0),
    )
    .await;

    // ---- every internal helper, called directly --------------------------------------------
    let helpers: Vec<(String, String)> = sqlx::query_as(
        "SELECT p.proname::text, format('SELECT %s(%s)', p.oid::regproc, \
                coalesce((SELECT string_agg(format('NULL::%s', format_type(t, NULL)), ', ') FROM unnest(p.proargtypes) t), '')) \
         FROM pg_proc p WHERE p.pronamespace = 'luma'::regnamespace ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    // What policies and the invoker functions evaluate stays callable; it reveals nothing the
    // caller could not read (checked below).
    let callable = [
        "my_venues",
        "is_member",
        "ts_text",
        "f8_json",
        "f8_wire",
        "row_json_cols",
        "pattern_search_page",
    ];
    for (name, sql) in &helpers {
        for who in [b, c, Who::Anon] {
            if callable.contains(&name.as_str()) && !matches!(who, Who::Anon) {
                continue;
            }
            s.refused(&format!("helper {name}"), who, sql, None, &["42501"])
                .await;
        }
    }
    s.answered(
        "is_member",
        b,
        "SELECT to_jsonb(luma.is_member(($1 ->> 'v')::uuid))",
        Some(json!({"v": w.venue})),
        |v| v == &json!(false),
    )
    .await;
    s.answered(
        "my_venues",
        b,
        "SELECT coalesce(jsonb_agg(v), '[]') FROM luma.my_venues() v",
        None,
        {
            let v = w.venue;
            move |out| !contains_any(out, &[v])
        },
    )
    .await;
    s.answered(
        "search page helper",
        b,
        "SELECT coalesce(jsonb_agg(x.id), '[]') FROM luma.pattern_search_page('all', '', NULL, 200, NULL, NULL, NULL) x",
        None,
        move |out| !contains_any(out, &all_of_a),
    )
    .await;

    // ---- every public function ---------------------------------------------------------------
    let public_calls = [
        "SELECT luma_push('[]'::jsonb)",
        "SELECT luma_pull('venues', NULL, 100, NULL)",
        "SELECT luma_watermark()",
        "SELECT luma_join_venue('SHARE001')",
        "SELECT luma_leave_venue(gen_random_uuid())",
        "SELECT luma_memberships()",
        "SELECT luma_purge_tombstones('0 seconds')",
        "SELECT luma_search_patterns('all', '', NULL, 50, NULL)",
        "SELECT luma_fetch_pattern(gen_random_uuid())",
    ];
    for sql in public_calls {
        s.refused("public function", Who::Anon, sql, None, &["42501"])
            .await;
    }
    s.refused(
        "purge",
        b,
        "SELECT luma_purge_tombstones('0 seconds')",
        None,
        &["42501"],
    )
    .await;
    s.refused(
        "purge",
        c,
        "SELECT luma_purge_tombstones('0 seconds')",
        None,
        &["42501"],
    )
    .await;
    for table in SYNCED {
        for (who, secret) in [(b, all_of_a.to_vec()), (c, hidden_from_c.to_vec())] {
            s.answered(
                &format!("pull {table}"),
                who,
                "SELECT to_jsonb(luma_pull($1 ->> 't', NULL, 10000, NULL))",
                Some(json!({"t": table})),
                move |v| !contains_any(v, &secret),
            )
            .await;
        }
    }
    for (who, ids) in [
        (b, vec![w.pattern, w.secret_pattern, w.unpublished]),
        (c, vec![w.secret_pattern, w.unpublished]),
    ] {
        for id in ids {
            s.answered(
                "fetch a private pattern",
                who,
                "SELECT luma_fetch_pattern(($1 ->> 'p')::uuid)",
                Some(json!({"p": id})),
                |v| v["pattern"].is_null() && v["implementations"] == json!([]),
            )
            .await;
        }
        for tab in ["all", "verified", "mine"] {
            let secret = all_of_a.to_vec();
            s.answered(
                "search",
                who,
                "SELECT luma_search_patterns($1 ->> 'tab', '', NULL, 200, NULL)",
                Some(json!({"tab": tab})),
                move |v| !contains_any(v, &secret),
            )
            .await;
        }
    }
    s.answered("memberships", b, "SELECT luma_memberships()", None, {
        let v = w.venue;
        move |out| !contains_any(out, &[v])
    })
    .await;
    s.answered(
        "leave another's venue",
        b,
        "SELECT luma_leave_venue(($1 ->> 'v')::uuid)",
        Some(json!({"v": w.venue})),
        |v| v == &json!({"left": false}),
    )
    .await;
    s.refused(
        "guess a share code",
        b,
        "SELECT luma_join_venue('GUESS001')",
        None,
        &["PT404"],
    )
    .await;
    s.refused(
        "malformed watermark",
        b,
        "SELECT luma_pull('venues', NULL, 10, 'abc')",
        None,
        &["22023"],
    )
    .await;
    s.refused(
        "malformed cursor",
        b,
        "SELECT luma_pull('venues', 'abc', 10, NULL)",
        None,
        &["22023"],
    )
    .await;

    // ---- forged claims -------------------------------------------------------------------------
    let forged_role = Box::leak(
        json!({"sub": w.b, "role": "service_role"})
            .to_string()
            .into_boxed_str(),
    );
    let no_sub: &'static str = r#"{"role": "authenticated"}"#;
    let h = hlc(50_000, 0);
    let steal = json!([upsert(
        "venues",
        &w.venue.to_string(),
        &h,
        venue_row(w.venue, w.b, "stolen", None)
    )]);
    s.push_refused(
        "service_role claim",
        Who::Claims(forged_role),
        steal.clone(),
        Some("forbidden"),
    )
    .await;
    s.refused(
        "push without a sub",
        Who::Claims(no_sub),
        "SELECT luma_push($1)",
        Some(steal.clone()),
        &["42501"],
    )
    .await;
    s.refused(
        "pull without a sub",
        Who::Claims(no_sub),
        "SELECT luma_pull('venues', NULL, 10, NULL)",
        None,
        &["42501"],
    )
    .await;
    s.refused(
        "push as anon",
        Who::Anon,
        "SELECT luma_push($1)",
        Some(steal.clone()),
        &["42501"],
    )
    .await;

    // ---- crafted pushes ------------------------------------------------------------------------
    let k = |u: Uuid| u.to_string();
    let pushes: Vec<(&str, Who, Value, Option<&'static str>)> = vec![
        ("take A's venue", b, steal.clone(), Some("forbidden")),
        (
            "delete A's venue",
            b,
            json!([delete("venues", &k(w.venue), &h)]),
            Some("forbidden"),
        ),
        (
            "member deletes A's venue",
            c,
            json!([delete("venues", &k(w.venue), &h)]),
            Some("forbidden"),
        ),
        (
            "member changes the share code",
            c,
            json!([upsert(
                "venues",
                &k(w.venue),
                &h,
                venue_row(w.venue, w.a, "A's club", Some("STOLEN01"))
            )]),
            Some("forbidden"),
        ),
        (
            "delete A's fixture",
            b,
            json!([delete("fixtures", &k(w.fixture), &h)]),
            Some("forbidden"),
        ),
        (
            "fixture into A's venue",
            b,
            json!([upsert(
                "fixtures",
                &k(Uuid::new_v4()),
                &h,
                fixture_row(Uuid::new_v4(), w.venue, 1)
            )]),
            None,
        ),
        (
            "score on A's private track",
            b,
            json!([upsert(
                "scores",
                &k(Uuid::nil()),
                &h,
                score_row(Uuid::nil(), w.b, w.track, w.b_venue)
            )]),
            None,
        ),
        (
            "member places A's secret track",
            c,
            json!([upsert(
                "scores",
                &k(Uuid::nil()),
                &h,
                score_row(Uuid::nil(), w.c, w.secret_track, w.c_venue)
            )]),
            Some("missing_parent"),
        ),
        (
            "place A's private pattern",
            b,
            json!([upsert(
                "track_scores",
                &k(Uuid::nil()),
                &h,
                track_score_row(Uuid::nil(), w.b_score, w.pattern)
            )]),
            Some("missing_parent"),
        ),
        (
            "place A's unpublished pattern",
            b,
            json!([upsert(
                "track_scores",
                &k(Uuid::nil()),
                &h,
                track_score_row(Uuid::nil(), w.b_score, w.unpublished)
            )]),
            Some("missing_parent"),
        ),
        (
            "member places A's secret pattern",
            c,
            json!([upsert(
                "track_scores",
                &k(Uuid::nil()),
                &h,
                track_score_row(Uuid::nil(), w.score, w.secret_pattern)
            )]),
            Some("missing_parent"),
        ),
        (
            "A's track's beats",
            b,
            json!([upsert(
                "track_beats",
                &k(w.secret_track),
                &h,
                beats_row(w.secret_track)
            )]),
            None,
        ),
        (
            "A's implementation",
            b,
            json!([upsert(
                "implementations",
                &k(w.secret_implementation),
                &h,
                implementation_row(w.secret_implementation, w.secret_pattern)
            )]),
            None,
        ),
        (
            "delete A's implementation",
            b,
            json!([delete("implementations", &k(w.secret_implementation), &h)]),
            Some("forbidden"),
        ),
        (
            "track in A's name",
            b,
            json!([upsert(
                "tracks",
                &k(Uuid::nil()),
                &h,
                track_row(Uuid::nil(), w.a, TS)
            )]),
            Some("forbidden"),
        ),
        (
            "venue in A's name",
            b,
            json!([upsert(
                "venues",
                &k(Uuid::nil()),
                &h,
                venue_row(Uuid::nil(), w.a, "x", None)
            )]),
            Some("forbidden"),
        ),
        (
            "publish in A's name",
            b,
            json!([upsert(
                "patterns",
                &k(Uuid::nil()),
                &h,
                pattern_row(Uuid::nil(), w.a, true)
            )]),
            Some("forbidden"),
        ),
        (
            "publish A's pattern",
            c,
            json!([upsert(
                "patterns",
                &k(w.pattern),
                &h,
                pattern_row(w.pattern, w.a, true)
            )]),
            Some("forbidden"),
        ),
        (
            "overwrite A's secret pattern",
            b,
            json!([upsert(
                "patterns",
                &k(w.secret_pattern),
                &h,
                pattern_row(w.secret_pattern, w.b, false)
            )]),
            Some("forbidden"),
        ),
        (
            "member edits A's track",
            c,
            json!([upsert(
                "tracks",
                &k(w.track),
                &h,
                track_row(w.track, w.a, TS)
            )]),
            Some("forbidden"),
        ),
        (
            "member hands A's score to itself",
            c,
            json!([upsert(
                "scores",
                &k(w.score),
                &h,
                score_row(w.score, w.c, w.track, w.venue)
            )]),
            Some("forbidden"),
        ),
        (
            "far-future stamp on an own row",
            b,
            json!([upsert(
                "venues",
                &k(w.b_venue),
                "999999999999999-999999-ffffffffffffffff",
                venue_row(w.b_venue, w.b, "B's club", None)
            )]),
            Some("clock_skew"),
        ),
        (
            "far-future stamp, set-based run",
            b,
            json!([
                upsert(
                    "tracks",
                    &k(w.b_track),
                    &luma_model::Hlc::new(now_ms() + 3_600_000, 0, luma_model::SiteId(1))
                        .to_string(),
                    track_row(w.b_track, w.b, TS)
                ),
                upsert(
                    "tracks",
                    &k(Uuid::nil()),
                    &luma_model::Hlc::new(now_ms() + 3_600_000, 1, luma_model::SiteId(1))
                        .to_string(),
                    track_row(Uuid::nil(), w.b, TS)
                )
            ]),
            Some("clock_skew"),
        ),
        (
            "member's far-future stamp on A's fixture",
            c,
            json!([upsert(
                "fixtures",
                &k(w.fixture),
                &luma_model::Hlc::new(now_ms() + 86_400_000, 0, luma_model::SiteId(1)).to_string(),
                fixture_row(w.fixture, w.venue, 1)
            )]),
            Some("clock_skew"),
        ),
        (
            "member's NaN on A's fixture",
            c,
            json!([upsert("fixtures", &k(w.fixture), &h, {
                let mut r = fixture_row(w.fixture, w.venue, 1);
                r["pos_x"] = json!("NaN");
                r
            })]),
            Some("invalid"),
        ),
        (
            "member's bad tags on A's group",
            c,
            json!([upsert("fixture_groups", &k(w.group), &h, {
                let mut r = group_row(w.group, w.venue, "Front");
                r["tags"] = json!({"x": 1});
                r
            })]),
            Some("invalid"),
        ),
        (
            "member's bad blend mode",
            c,
            json!([upsert("track_scores", &k(w.track_score), &h, {
                let mut r = track_score_row(w.track_score, w.score, w.pattern);
                r["blend_mode"] = json!("xor");
                r
            })]),
            Some("invalid"),
        ),
        (
            "member's bad beats",
            c,
            json!([upsert("track_beats", &k(w.track), &h, {
                let mut r = beats_row(w.track);
                r["beats"] = json!([2.0, 1.0]);
                r
            })]),
            None,
        ),
    ];
    for (label, who, changes, code) in pushes {
        s.push_refused(label, who, changes, code).await;
    }
    // Existence: the same neutral reason whether or not the key exists.
    let mut reasons = Vec::new();
    for id in [w.secret_track, Uuid::new_v4()] {
        let out = push(
            &db.pool,
            w.b,
            json!([
                delete("tracks", &k(id), &h),
                upsert("track_roots", &k(id), &h, roots_row(id))
            ]),
        )
        .await;
        reasons.push(out.iter().map(|o| o["reason"].clone()).collect::<Vec<_>>());
    }
    s.record(
        format!("existence leak through reasons: {reasons:?}"),
        !reasons[0]
            .iter()
            .any(|r| r.as_str().is_some_and(|r| r.contains("exist"))),
    );
    // (the unknown key's delete is kept as B's own key tombstone: refresh the baseline)
    s.before = snapshot(&db.pool).await;

    println!(
        "attack suite: {} attempts, {} denied, {} not denied",
        s.attempts,
        s.denied,
        s.failures.len()
    );
    for f in &s.failures {
        println!("NOT DENIED: {f}");
    }
    assert!(s.attempts >= 150, "only {} attempts", s.attempts);
    assert!(
        s.failures.is_empty(),
        "{} attempts were not denied:\n{}",
        s.failures.len(),
        s.failures.join("\n")
    );
    db.drop().await;
}

/// For each column kind: a value the client refuses (it cannot decode the row, or the record's
/// `validate()` fails) is refused by the server (`invalid`), and a value the client accepts is
/// applied. Both sides are asked, so a drift between the Rust rules and the CHECKs fails here.
#[tokio::test]
async fn the_server_refuses_what_the_client_refuses() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let (v, t, p, sc) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let h = hlc(1_000, 0);
    applied_all(
        &push(
            &db.pool,
            a,
            json!([
                upsert("venues", &v.to_string(), &h, venue_row(v, a, "Club", None)),
                upsert("tracks", &t.to_string(), &h, track_row(t, a, TS)),
                upsert("patterns", &p.to_string(), &h, pattern_row(p, a, false)),
                upsert("scores", &sc.to_string(), &h, score_row(sc, a, t, v)),
            ]),
        )
        .await,
    );
    let deep = (0..70).fold(json!(1), |acc, _| json!([acc]));
    let long_name = "x".repeat(201);
    // (table, base row of a fresh key, column, refused value, accepted value)
    type Case = (
        &'static str,
        fn(Uuid, Uuid, Uuid, Uuid, Uuid) -> Value,
        &'static str,
        Value,
        Value,
    );
    let fx: fn(Uuid, Uuid, Uuid, Uuid, Uuid) -> Value = |id, v, _, _, _| fixture_row(id, v, 1);
    let gr: fn(Uuid, Uuid, Uuid, Uuid, Uuid) -> Value =
        |id, v, _, _, _| group_row(id, v, &format!("G {id}"));
    let tr: fn(Uuid, Uuid, Uuid, Uuid, Uuid) -> Value = |id, _, _, _, a| track_row(id, a, TS);
    let ts: fn(Uuid, Uuid, Uuid, Uuid, Uuid) -> Value =
        |id, _, p, sc, _| track_score_row(id, sc, p);
    let im: fn(Uuid, Uuid, Uuid, Uuid, Uuid) -> Value = |id, _, p, _, _| implementation_row(id, p);
    let ve: fn(Uuid, Uuid, Uuid, Uuid, Uuid) -> Value =
        |id, _, _, _, a| venue_row(id, a, "V", None);
    let pa: fn(Uuid, Uuid, Uuid, Uuid, Uuid) -> Value = |id, _, _, _, a| pattern_row(id, a, false);
    let sco: fn(Uuid, Uuid, Uuid, Uuid, Uuid) -> Value = |id, v, _, _, a| json!({"id": id, "uid": a, "track_id": null, "venue_id": v, "name": "S", "created_at": TS, "updated_at": TS});
    let cases: Vec<Case> = vec![
        ("fixtures", fx, "pos_x", json!("NaN"), json!(1.5)),
        ("fixtures", fx, "pos_y", json!("Infinity"), json!(-3.0)),
        ("fixtures", fx, "rot_x", json!("-Infinity"), json!(90.0)),
        ("fixtures", fx, "address", json!(0), json!(509)),
        ("fixtures", fx, "universe", json!(64000), json!(63999)),
        ("fixtures", fx, "num_channels", json!(600), json!(1)),
        ("fixture_groups", gr, "axis_lr", json!(1.5), json!(-1.0)),
        ("fixture_groups", gr, "axis_fb", json!("NaN"), json!(0.25)),
        (
            "fixture_groups",
            gr,
            "tags",
            json!({"a": 1}),
            json!(["a", "b"]),
        ),
        ("fixture_groups", gr, "tags", json!([1]), json!([])),
        (
            "fixture_groups",
            gr,
            "movement_config",
            deep.clone(),
            json!({"speed": 1}),
        ),
        ("fixture_groups", gr, "name", json!("   "), json!("Back")),
        (
            "fixture_groups",
            gr,
            "name",
            json!("\u{a0}\u{3000}"),
            json!("Über"),
        ),
        (
            "fixture_groups",
            gr,
            "name",
            json!(long_name),
            json!("x".repeat(200)),
        ),
        (
            "venues",
            ve,
            "share_code",
            json!("abcdefgh"),
            json!("ABCD1234"),
        ),
        ("venues", ve, "name", json!(""), json!("Club 2")),
        ("patterns", pa, "name", json!(" "), json!("Strobe")),
        (
            "implementations",
            im,
            "graph_json",
            json!([]),
            json!({"nodes": [1]}),
        ),
        ("implementations", im, "graph_json", deep.clone(), json!({})),
        ("implementations", im, "name", json!(""), json!("alt")),
        ("tracks", tr, "bpm", json!(0.5), json!(1000.0)),
        ("tracks", tr, "bpm", json!("NaN"), json!(1.0)),
        ("tracks", tr, "duration_seconds", json!(-1.0), json!(0.0)),
        (
            "tracks",
            tr,
            "duration_seconds",
            json!("Infinity"),
            json!(12.5),
        ),
        (
            "tracks",
            tr,
            "track_hash",
            json!("ABC"),
            json!("a".repeat(64)),
        ),
        (
            "tracks",
            tr,
            "track_number",
            json!(-1),
            json!(4294967295_i64),
        ),
        (
            "track_scores",
            ts,
            "blend_mode",
            json!("xor"),
            json!("subtract"),
        ),
        ("track_scores", ts, "args", json!("x"), json!({"speed": 2})),
        ("track_scores", ts, "start_time", json!(-0.5), json!(0.0)),
        (
            "track_scores",
            ts,
            "end_time",
            json!("Infinity"),
            json!(8.0),
        ),
        ("scores", sco, "name", json!(""), json!("Show 2")),
    ];
    let mut n = 0;
    for (table, base, column, bad, good) in cases {
        for (value, accept) in [(bad, false), (good, true)] {
            let id = Uuid::new_v4();
            let mut row = base(id, v, p, sc, a);
            if table == "scores" {
                row["track_id"] = json!(t);
            }
            row[column] = value.clone();
            let client = client_accepts(table, &row);
            assert_eq!(
                client, accept,
                "the client on {table}.{column} = {value}: {client}"
            );
            let out = push(
                &db.pool,
                a,
                json!([upsert(table, &id.to_string(), &hlc(2_000, 0), row)]),
            )
            .await;
            let want = if accept {
                ("applied", "")
            } else {
                ("rejected", "invalid")
            };
            assert_eq!(
                (outcome(&out[0]), code(&out[0])),
                want,
                "the server on {table}.{column} = {value}: {}",
                out[0]
            );
            n += 1;
        }
    }
    // Beat grids and the rows of one track each.
    for (beats, accept) in [
        (json!([2.0, 1.0]), false),
        (json!([-1.0]), false),
        (json!(["a"]), false),
        (json!({"0": 1}), false),
        (json!([0.0, 0.5, 0.5, 1.0]), true),
    ] {
        let track = Uuid::new_v4();
        applied_all(
            &push(
                &db.pool,
                a,
                json!([upsert(
                    "tracks",
                    &track.to_string(),
                    &h,
                    track_row(track, a, TS)
                )]),
            )
            .await,
        );
        let mut row = beats_row(track);
        row["downbeats"] = beats.clone();
        assert_eq!(
            client_accepts("track_beats", &row),
            accept,
            "the client on downbeats {beats}"
        );
        let out = push(
            &db.pool,
            a,
            json!([upsert("track_beats", &track.to_string(), &h, row)]),
        )
        .await;
        let want = if accept {
            ("applied", "")
        } else {
            ("rejected", "invalid")
        };
        assert_eq!(
            (outcome(&out[0]), code(&out[0])),
            want,
            "the server on downbeats {beats}: {}",
            out[0]
        );
        n += 1;
    }
    // NUL: the client refuses it in every text field; PostgreSQL cannot even parse the request
    // (jsonb refuses \u0000), so the whole call fails and nothing is stored.
    let id = Uuid::new_v4();
    let mut row = venue_row(id, a, "Club", None);
    row["description"] = json!("a\u{0}b");
    assert!(!client_accepts("venues", &row));
    let mut tx = user_tx(&db.pool, a).await;
    let err = sqlx::query("SELECT luma_push($1::text::jsonb)")
        .bind(json!([upsert("venues", &id.to_string(), &h, row)]).to_string())
        .execute(&mut *tx)
        .await
        .expect_err("NUL accepted");
    tx.rollback().await.unwrap();
    assert!(err.as_database_error().is_some(), "{err}");
    println!("column rules: {n} values checked on client and server");
    db.drop().await;
}

/// Does the client accept this row of a built-in table (decode, then validate)?
fn client_accepts(table: &str, row: &Value) -> bool {
    fn ok<R: luma_model::Record>(row: &Value) -> bool {
        let Value::Object(m) = row.clone() else {
            return false;
        };
        R::from_row(m).is_ok_and(|r| r.validate().is_ok())
    }
    use luma_model::*;
    match table {
        "venues" => ok::<Venue>(row),
        "fixtures" => ok::<Fixture>(row),
        "fixture_groups" => ok::<FixtureGroup>(row),
        "patterns" => ok::<Pattern>(row),
        "implementations" => ok::<Implementation>(row),
        "tracks" => ok::<Track>(row),
        "track_beats" => ok::<TrackBeats>(row),
        "scores" => ok::<Score>(row),
        "track_scores" => ok::<TrackScore>(row),
        other => panic!("no client rule for {other}"),
    }
}
