//! Community patterns on a real PostgreSQL (cloud `0005_community.sql`), exercised as PostgREST
//! does (role `authenticated` + `request.jwt.claims`): search tabs and visibility, keyset
//! pagination, literal matching of hostile query text, the publishing rule, fetch for import,
//! and the same answers from `MemoryRemote` on the same data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod cloud_common;

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use cloud_common::*;
use luma_model::{PatternFilter, PatternId, PatternTab, Record, UserId};
use luma_store::Store;
use luma_sync::{Change, MemoryRemote, Outcome, PatternBundle, Remote, SearchPage, SearchRequest};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

fn prow(id: Uuid, owner: Uuid, name: &str, desc: &str, cat: Option<&str>, verified: bool) -> Value {
    json!({"id": id, "uid": owner, "name": name, "description": desc, "category": cat,
           "is_verified": verified, "author_name": null, "forked_from_id": null,
           "created_at": TS, "updated_at": TS})
}

/// Pushes pattern rows as their owner; every change must apply.
async fn push_patterns(pool: &PgPool, owner: Uuid, rows: &[Value], ms: u64) {
    let h = hlc(ms, 0);
    for chunk in rows.chunks(500) {
        let changes: Vec<Value> = chunk
            .iter()
            .map(|r| upsert("patterns", r["id"].as_str().unwrap(), &h, r.clone()))
            .collect();
        for o in push(pool, owner, json!(changes)).await {
            assert_eq!(outcome(&o), "applied", "{o}");
        }
    }
}

async fn search(
    pool: &PgPool,
    user: Uuid,
    tab: &str,
    query: Option<&str>,
    category: Option<&str>,
    limit: i32,
    cursor: Option<&str>,
) -> Value {
    let mut tx = user_tx(pool, user).await;
    let (v,): (Value,) = sqlx::query_as("SELECT luma_search_patterns($1, $2, $3, $4, $5)")
        .bind(tab)
        .bind(query)
        .bind(category)
        .bind(limit)
        .bind(cursor)
        .fetch_one(&mut *tx)
        .await
        .expect("luma_search_patterns");
    tx.commit().await.expect("commit");
    v
}

/// Every page of a search; the ids in order.
async fn search_ids(pool: &PgPool, user: Uuid, tab: &str, query: &str, limit: i32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = search(pool, user, tab, Some(query), None, limit, cursor.as_deref()).await;
        let results = page["results"].as_array().unwrap();
        assert!(results.len() <= limit as usize);
        ids.extend(results.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(results.len(), limit as usize, "a full page before a cursor");
                cursor = Some(c.to_owned());
            }
            None => return ids,
        }
    }
}

/// The same search through a `Remote` (MemoryRemote), every page.
async fn remote_ids(
    remote: &MemoryRemote,
    user: UserId,
    tab: PatternTab,
    query: &str,
    limit: u32,
) -> Vec<String> {
    let token = remote.issue_token(user);
    let mut req = SearchRequest::new(tab, PatternFilter::new(query));
    req.limit = limit;
    let mut ids = Vec::new();
    loop {
        let page = remote.search_patterns(&token, &req).await.unwrap();
        ids.extend(page.results.iter().map(|r| r.id.to_string()));
        match page.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => return ids,
        }
    }
}

/// Loads the same pattern rows into a MemoryRemote, as their owners.
async fn mirror(remote: &MemoryRemote, rows: &[(Uuid, Value)]) {
    for (owner, row) in rows {
        let token = remote.issue_token(UserId(*owner));
        let out = remote
            .push(
                &token,
                &[Change {
                    table: "patterns".into(),
                    key: luma_model::RecordKey::from_canonical(
                        row["id"].as_str().unwrap().to_owned(),
                    ),
                    hlc: hlc(1_000, 0).parse().unwrap(),
                    op: luma_model::OpKind::Upsert,
                    row: Some(row.as_object().unwrap().clone()),
                }],
            )
            .await
            .unwrap();
        assert_eq!(out[0].outcome, Outcome::Applied);
    }
}

fn ids_of(page: &Value) -> BTreeSet<String> {
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tabs_show_own_and_published_patterns_only() {
    let db = TestDb::new().await;
    let w = World::build(&db.pool).await; // A: `pattern` (unverified, placed on a score), `public_pattern`
    let a = w.a;
    let b = Uuid::new_v4();
    // B joins A's venue: A's unverified placed pattern becomes readable to B, but it is not
    // published, so no tab shows it.
    let mut tx = user_tx(&db.pool, b).await;
    sqlx::query("SELECT luma_join_venue($1)")
        .bind(w.share_code)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (a_hidden, b_pub, b_priv, a_dead) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    push_patterns(
        &db.pool,
        a,
        &[
            prow(a_hidden, a, "Chase private", "", None, false),
            prow(a_dead, a, "Chase deleted", "", None, true),
        ],
        2_000,
    )
    .await;
    let out = push(
        &db.pool,
        a,
        json!([delete("patterns", &a_dead.to_string(), &hlc(3_000, 0))]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");
    push_patterns(
        &db.pool,
        b,
        &[
            prow(b_pub, b, "Chase by B", "", Some("Movement"), true),
            prow(b_priv, b, "Chase B draft", "", None, false),
        ],
        2_000,
    )
    .await;
    // A's profile name is the author shown.
    let mut tx = user_tx(&db.pool, a).await;
    sqlx::query("INSERT INTO public.profiles (id, display_name) VALUES ($1, 'Alice')")
        .bind(a)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // The placed pattern really is readable to B (so the tabs, not RLS, leave it out).
    let mut tx = user_tx(&db.pool, b).await;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM public.patterns WHERE id = $1")
        .bind(w.pattern)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 1);
    tx.rollback().await.unwrap();

    let set = |ids: &[Uuid]| ids.iter().map(|u| u.to_string()).collect::<BTreeSet<_>>();
    for query in [None, Some(""), Some("chase")] {
        let verified = search(&db.pool, b, "verified", query, None, 50, None).await;
        let mine = search(&db.pool, b, "mine", query, None, 50, None).await;
        let all = search(&db.pool, b, "all", query, None, 50, None).await;
        assert_eq!(
            ids_of(&verified),
            set(&[w.public_pattern, b_pub]),
            "{query:?}"
        );
        assert_eq!(ids_of(&mine), set(&[b_pub, b_priv]), "{query:?}");
        assert_eq!(
            ids_of(&all),
            set(&[w.public_pattern, b_pub, b_priv]),
            "{query:?}"
        );
        for page in [&verified, &mine, &all] {
            for hidden in [a_hidden, w.pattern, a_dead] {
                assert!(!ids_of(page).contains(&hidden.to_string()));
            }
        }
    }
    // Result fields, author from the profile.
    let page = search(
        &db.pool,
        b,
        "verified",
        Some("by b"),
        Some("Movement"),
        50,
        None,
    )
    .await;
    let r = &page["results"][0];
    assert_eq!(r["id"], json!(b_pub.to_string()));
    assert_eq!(r["category"], json!("Movement"));
    assert_eq!(r["is_verified"], json!(true));
    assert_eq!(r["uid"], json!(b.to_string()));
    assert_eq!(r["updated_at"], json!(TS));
    assert_eq!(page["next_cursor"], Value::Null);
    // The answer is the wire form of `SearchPage` (what a PostgreSQL remote deserializes).
    let typed: SearchPage = serde_json::from_value(page.clone()).unwrap();
    assert_eq!(typed.results[0].id, PatternId(b_pub));
    assert_eq!(typed.results[0].uid, Some(UserId(b)));
    assert_eq!(
        typed.results[0].updated_at.to_rfc3339(),
        "2026-01-01T00:00:00+00:00"
    );
    let page = search(&db.pool, b, "verified", None, None, 50, None).await;
    let alice = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(w.public_pattern.to_string()))
        .unwrap();
    assert_eq!(alice["author_name"], json!("Alice"));
    // A category filter is exact.
    let page = search(&db.pool, b, "all", None, Some("Color"), 50, None).await;
    assert!(ids_of(&page).is_empty());

    // A sees their own unverified pattern in mine, B's draft nowhere.
    let mine_a = search(&db.pool, a, "mine", None, None, 50, None).await;
    assert!(ids_of(&mine_a).contains(&a_hidden.to_string()));
    let all_a = search(&db.pool, a, "all", None, None, 50, None).await;
    assert!(!ids_of(&all_a).contains(&b_priv.to_string()));
    assert!(ids_of(&all_a).contains(&b_pub.to_string()));

    // The SECURITY DEFINER candidate helper, called directly, reveals nothing more.
    for tab in ["verified", "mine", "all", "bogus"] {
        let mut tx = user_tx(&db.pool, b).await;
        let ids: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM luma.pattern_search_page($1, '', NULL, 100000, NULL, NULL, NULL)",
        )
        .bind(tab)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        tx.rollback().await.unwrap();
        assert!(ids.len() <= 201);
        for (id,) in &ids {
            assert!(![a_hidden, w.pattern, a_dead].contains(id), "{tab}: {id}");
        }
    }

    // Bad arguments are refused; anon has no access.
    let mut tx = user_tx(&db.pool, b).await;
    let err = sqlx::query("SELECT luma_search_patterns('everything', '', NULL, 10, NULL)")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("p_tab"), "{err}");
    tx.rollback().await.unwrap();
    let mut tx = user_tx(&db.pool, b).await;
    let err = sqlx::query("SELECT luma_search_patterns('all', '', NULL, 10, 'garbage')")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cursor"), "{err}");
    tx.rollback().await.unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL role anon")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert!(
        sqlx::query("SELECT luma_search_patterns('all', '', NULL, 10, NULL)")
            .execute(&mut *tx)
            .await
            .is_err()
    );
    tx.rollback().await.unwrap();
    db.drop().await;
}

#[tokio::test]
async fn pagination_returns_each_of_250_patterns_exactly_once_in_the_memory_remote_order() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let b = Uuid::new_v4();
    let mut rows = Vec::new();
    for i in 0..250 {
        // Many equal names (ties broken by id), mixed case, some description-only matches.
        let (name, desc) = match i % 5 {
            0 => (format!("Wave {}", i % 7), String::new()),
            1 => (format!("wave {}", i % 7), "slow".to_owned()),
            2 => ("Strobe".to_owned(), "a WAVE of light".to_owned()),
            3 => (format!("Ä WAVE {i}"), String::new()),
            _ => ("Pulse".to_owned(), String::new()),
        };
        let owner = if i % 2 == 0 { a } else { b };
        let verified = i % 3 != 0;
        rows.push((
            owner,
            prow(Uuid::new_v4(), owner, &name, &desc, None, verified),
        ));
    }
    for owner in [a, b] {
        let mine: Vec<Value> = rows
            .iter()
            .filter(|(o, _)| *o == owner)
            .map(|(_, r)| r.clone())
            .collect();
        push_patterns(&db.pool, owner, &mine, 1_000).await;
    }
    let remote = MemoryRemote::new();
    mirror(&remote, &rows).await;

    let visible_to_b: BTreeSet<String> = rows
        .iter()
        .filter(|(o, r)| *o == b || r["is_verified"] == json!(true))
        .map(|(_, r)| r["id"].as_str().unwrap().to_owned())
        .collect();
    for (query, limit) in [("", 7), ("wave", 7), ("WAVE", 13), ("", 200), ("", 1)] {
        let ids = search_ids(&db.pool, b, "all", query, limit).await;
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "a repeat across pages ({query:?}, {limit})"
        );
        let expected: BTreeSet<String> = rows
            .iter()
            .filter(|(o, r)| {
                (*o == b || r["is_verified"] == json!(true))
                    && PatternFilter::new(query)
                        .rank(
                            r["name"].as_str().unwrap(),
                            r["description"].as_str().unwrap(),
                            None,
                        )
                        .is_some()
            })
            .map(|(_, r)| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            ids.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{query:?}"
        );
        if query.is_empty() {
            assert_eq!(ids.len(), visible_to_b.len());
        }
        // Name matches first, then description-only ones.
        if query == "wave" {
            let first_desc = ids
                .iter()
                .position(|id| {
                    rows.iter()
                        .any(|(_, r)| r["id"] == json!(id) && r["name"] == json!("Strobe"))
                })
                .unwrap();
            assert!(ids[first_desc..].iter().all(|id| rows
                .iter()
                .any(|(_, r)| r["id"] == json!(id) && r["name"] == json!("Strobe"))));
        }
        // The MemoryRemote answers the same rows in the same order.
        let mem = remote_ids(&remote, UserId(b), PatternTab::All, query, limit as u32).await;
        assert_eq!(mem, ids, "MemoryRemote differs for {query:?}");
    }
    for tab in ["verified", "mine"] {
        let ids = search_ids(&db.pool, b, tab, "", 11).await;
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let t = if tab == "verified" {
            PatternTab::Verified
        } else {
            PatternTab::Mine
        };
        assert_eq!(
            remote_ids(&remote, UserId(b), t, "", 11).await,
            ids,
            "{tab}"
        );
    }
    db.drop().await;
}

#[tokio::test]
async fn hostile_query_text_matches_literally_and_nothing_else() {
    let db = TestDb::new().await;
    let a = Uuid::new_v4();
    let names = [
        "100% red",
        "100x red",
        "100 red",
        "a_b",
        "axb",
        "ab",
        "it's",
        "its",
        "say \"hi\"",
        "a,b",
        "a b",
        "(x)",
        "x",
        "back\\slash",
        "backslash",
        "Lichtström",
        "Lichtstrom",
        "Ström",
        "日本語パターン",
        "semi;colon --",
        "%",
        "_",
        "\\",
        "*star*",
        "dollar $1",
        "curly {a}",
        "brackets [a-z]",
        "tab\there",
        "or 1=1",
        "UPPER ÅNGSTRÖM",
    ];
    let rows: Vec<(Uuid, Value)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                a,
                prow(
                    Uuid::new_v4(),
                    a,
                    n,
                    if i % 4 == 0 { "desc with % and _" } else { "" },
                    None,
                    true,
                ),
            )
        })
        .collect();
    push_patterns(
        &db.pool,
        a,
        &rows.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        1_000,
    )
    .await;
    let remote = MemoryRemote::new();
    mirror(&remote, &rows).await;
    let b = Uuid::new_v4();
    let queries = [
        "%",
        "_",
        "\\",
        "%%",
        "a_b",
        "100%",
        "100% r",
        "'",
        "it's",
        "\"",
        "\"hi\"",
        ",",
        "a,b",
        "(",
        ")",
        "(x)",
        "\\slash",
        "ström",
        "STRÖM",
        "ö",
        "日本",
        "パターン",
        "--",
        "; DROP TABLE patterns; --",
        "' OR '1'='1",
        "*",
        "$1",
        "{a}",
        "[a-z]",
        "\t",
        "or 1=1",
        "å",
        "%_\\",
        ".*",
        "?",
    ];
    for q in queries {
        let got = search_ids(&db.pool, b, "verified", q, 200).await;
        let want: Vec<String> = {
            let f = PatternFilter::new(q);
            let mut hits: Vec<(luma_model::SearchKey, String)> = rows
                .iter()
                .filter_map(|(_, r)| {
                    let name = r["name"].as_str().unwrap();
                    let rank = f.rank(name, r["description"].as_str().unwrap(), None)?;
                    let id: PatternId = r["id"].as_str().unwrap().parse().unwrap();
                    Some((luma_model::SearchKey::new(rank, name, id), id.to_string()))
                })
                .collect();
            hits.sort();
            hits.into_iter().map(|(_, id)| id).collect()
        };
        assert_eq!(got, want, "query {q:?}");
        let mem = remote_ids(&remote, UserId(b), PatternTab::Verified, q, 200).await;
        assert_eq!(mem, want, "MemoryRemote, query {q:?}");
    }
    // Spot checks of the literal semantics (independent of PatternFilter).
    let name_of = |id: &String| {
        rows.iter().find(|(_, r)| r["id"] == json!(id)).unwrap().1["name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let by = |q: &'static str| {
        let pool = db.pool.clone();
        async move { search_ids(&pool, b, "verified", q, 200).await }
    };
    let hits: BTreeSet<String> = by("100%").await.iter().map(name_of).collect();
    assert_eq!(hits, BTreeSet::from(["100% red".to_owned()]));
    let hits: BTreeSet<String> = by("a_b").await.iter().map(name_of).collect();
    assert_eq!(hits, BTreeSet::from(["a_b".to_owned()]));
    let hits: BTreeSet<String> = by("ström").await.iter().map(name_of).collect();
    assert!(hits.contains("Lichtström") && hits.contains("Ström") && !hits.contains("Lichtstrom"));
    assert!(by("; DROP TABLE patterns; --").await.is_empty());
    assert_eq!(by("").await.len(), names.len(), "the table is intact");
    db.drop().await;
}

#[tokio::test]
async fn only_the_owner_publishes_or_unpublishes() {
    let db = TestDb::new().await;
    let w = World::build(&db.pool).await;
    let (a, b) = (w.a, Uuid::new_v4());

    // Direct SQL as B: updates of A's rows are refused (no write grants since 0011).
    for (sql, id) in [
        (
            "UPDATE public.patterns SET is_verified = true WHERE id = $1",
            w.pattern,
        ),
        (
            "UPDATE public.patterns SET is_verified = false WHERE id = $1",
            w.public_pattern,
        ),
    ] {
        let mut tx = user_tx(&db.pool, b).await;
        let err = sqlx::query(sql)
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert_eq!(
            err.as_database_error().and_then(|e| e.code()).as_deref(),
            Some("42501"),
            "{err}"
        );
        tx.rollback().await.unwrap();
    }
    // Inserting a verified pattern in A's name is refused.
    let mut tx = user_tx(&db.pool, b).await;
    let err = sqlx::query("INSERT INTO public.patterns (id, uid, name, is_verified, created_at, updated_at, hlc) VALUES ($1, $2, 'Forged', true, now(), now(), $3)")
        .bind(Uuid::new_v4())
        .bind(a)
        .bind(hlc(5_000, 0))
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501"),
        "{err}"
    );
    tx.rollback().await.unwrap();

    // Through push: forged flags on A's rows and a verified row claiming A as owner.
    let h = hlc(9_000, 0);
    let forged = Uuid::new_v4();
    let out = push(
        &db.pool,
        b,
        json!([
            upsert(
                "patterns",
                &w.pattern.to_string(),
                &h,
                pattern_row(w.pattern, a, true)
            ),
            upsert(
                "patterns",
                &w.public_pattern.to_string(),
                &h,
                pattern_row(w.public_pattern, a, false)
            ),
            upsert(
                "patterns",
                &forged.to_string(),
                &h,
                pattern_row(forged, a, true)
            ),
        ]),
    )
    .await;
    for o in &out {
        assert_eq!(outcome(o), "rejected", "{o}");
        assert_eq!(code(o), "forbidden", "{o}");
    }
    // The same set-based path with several B rows plus one forged row still refuses it.
    let (b1, b2) = (Uuid::new_v4(), Uuid::new_v4());
    let out = push(
        &db.pool,
        b,
        json!([
            upsert(
                "patterns",
                &b1.to_string(),
                &h,
                prow(b1, b, "B one", "", None, true)
            ),
            upsert(
                "patterns",
                &forged.to_string(),
                &h,
                pattern_row(forged, a, true)
            ),
            upsert(
                "patterns",
                &b2.to_string(),
                &h,
                prow(b2, b, "B two", "", None, false)
            ),
        ]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied");
    assert_eq!(outcome(&out[1]), "rejected");
    assert_eq!(outcome(&out[2]), "applied");

    let mut tx = service_tx(&db.pool).await;
    let (p, q, f): (bool, bool, i64) = sqlx::query_as(
        "SELECT (SELECT is_verified FROM public.patterns WHERE id = $1), (SELECT is_verified FROM public.patterns WHERE id = $2), (SELECT count(*) FROM public.patterns WHERE id = $3)",
    )
    .bind(w.pattern)
    .bind(w.public_pattern)
    .bind(forged)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!((p, q, f), (false, true, 0));
    tx.rollback().await.unwrap();

    // The owner publishes by pushing their own row with the flag, and unpublishing hides it.
    let row = pattern_row(w.pattern, a, true);
    let out = push(
        &db.pool,
        a,
        json!([upsert(
            "patterns",
            &w.pattern.to_string(),
            &hlc(10_000, 0),
            row
        )]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied", "{}", out[0]);
    let page = search(&db.pool, b, "verified", None, None, 50, None).await;
    assert!(ids_of(&page).contains(&w.pattern.to_string()));
    // Unpublishing goes through luma_push too (direct writes are not granted since 0011).
    let out = push(
        &db.pool,
        a,
        json!([upsert(
            "patterns",
            &w.pattern.to_string(),
            &hlc(11_000, 0),
            pattern_row(w.pattern, a, false)
        )]),
    )
    .await;
    assert_eq!(outcome(&out[0]), "applied", "{}", out[0]);
    let page = search(&db.pool, b, "all", None, None, 50, None).await;
    assert!(!ids_of(&page).contains(&w.pattern.to_string()));

    // MemoryRemote: the same refusals.
    let remote = MemoryRemote::new();
    let ub = UserId(b);
    let p = Uuid::new_v4();
    mirror(&remote, &[(a, prow(p, a, "Mine", "", None, false))]).await;
    let tb = remote.issue_token(ub);
    let forged_change = |id: Uuid, owner: Uuid| Change {
        table: "patterns".into(),
        key: luma_model::RecordKey::from_canonical(id.to_string()),
        hlc: hlc(9_000, 0).parse().unwrap(),
        op: luma_model::OpKind::Upsert,
        row: Some(
            prow(id, owner, "Mine", "", None, true)
                .as_object()
                .unwrap()
                .clone(),
        ),
    };
    let out = remote
        .push(
            &tb,
            &[forged_change(p, a), forged_change(Uuid::new_v4(), a)],
        )
        .await
        .unwrap();
    for o in out {
        assert!(matches!(o.outcome, Outcome::Rejected { .. }), "{o:?}");
    }
    let page = remote
        .search_patterns(
            &remote.issue_token(ub),
            &SearchRequest::new(PatternTab::All, PatternFilter::default()),
        )
        .await
        .unwrap();
    assert!(page.results.is_empty());
    db.drop().await;
}

#[tokio::test]
async fn fetch_and_import_through_the_server() {
    let db = TestDb::new().await;
    let w = World::build(&db.pool).await;
    let b = Uuid::new_v4();
    let fetch = |user: Uuid, id: Uuid| {
        let pool = db.pool.clone();
        async move {
            let mut tx = user_tx(&pool, user).await;
            let (v,): (Value,) = sqlx::query_as("SELECT luma_fetch_pattern($1)")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            v
        }
    };
    // Not readable: nothing.
    let none = fetch(b, w.pattern).await;
    assert_eq!(none["pattern"], Value::Null);
    assert_eq!(none["implementations"], json!([]));
    let got = fetch(b, w.public_pattern).await;
    assert_eq!(got["pattern"]["id"], json!(w.public_pattern.to_string()));
    assert_eq!(got["implementations"].as_array().unwrap().len(), 1);
    let bundle: PatternBundle = serde_json::from_value(got).unwrap();

    // B's device imports the bundle (never pulled before) into its store ...
    let store = Store::open_in_memory().await.unwrap();
    let ub = UserId(b);
    store.set_current_user(Some(ub)).await.unwrap();
    let copy = luma_sync::import_bundle(&store, ub, &bundle).await.unwrap();
    assert_eq!(copy.forked_from_id, Some(PatternId(w.public_pattern)));
    assert_eq!(copy.uid, Some(ub));
    assert!(!copy.is_verified);
    let impls = store
        .implementations()
        .list_by_pattern(copy.id)
        .await
        .unwrap();
    assert_eq!(impls.len(), 1);
    assert_ne!(impls[0].id.0, w.public_impl);

    // ... and the server accepts the copy from B (pushed as the engine would).
    let h = hlc(20_000, 0);
    let out = push(
        &db.pool,
        b,
        json!([
            upsert(
                "patterns",
                &copy.id.to_string(),
                &h,
                Value::Object(copy.to_row().unwrap())
            ),
            upsert(
                "implementations",
                &impls[0].id.to_string(),
                &h,
                Value::Object(impls[0].to_row().unwrap())
            ),
        ]),
    )
    .await;
    for o in &out {
        assert_eq!(outcome(o), "applied", "{o}");
    }
    let mine = search(&db.pool, b, "mine", None, None, 50, None).await;
    assert_eq!(ids_of(&mine), BTreeSet::from([copy.id.to_string()]));
    // B's second device pulls the copy and its implementation.
    assert!(visible_keys(&db.pool, b, "patterns")
        .await
        .contains(&copy.id.to_string()));
    assert!(visible_keys(&db.pool, b, "implementations")
        .await
        .contains(&impls[0].id.to_string()));
    db.drop().await;
}

/// Not an assertion of wall time: seeds 100,000 patterns, prints how long searches take and the
/// plan of the candidate query (which must use the indexes).
#[tokio::test]
async fn search_timing_on_100k_patterns() {
    let db = TestDb::new().await;
    let me = Uuid::new_v4();
    let words = [
        "chase", "strobe", "rainbow", "wave", "pulse", "sparkle", "fade", "sweep", "flicker",
        "breathe", "comet", "fire", "ocean", "aurora", "scanner", "twinkle", "bounce", "spiral",
        "lava", "meteor",
    ];
    let words_sql = format!(
        "ARRAY[{}]",
        words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let started = Instant::now();
    sqlx::query(&format!(
        "INSERT INTO public.patterns (id, uid, name, description, category, is_verified, created_at, updated_at, hlc)
         SELECT gen_random_uuid(),
                CASE WHEN g % 50 = 0 THEN $1 ELSE ('00000000-0000-4000-8000-' || lpad((g % 5000)::text, 12, '0'))::uuid END,
                initcap(w[1 + g % 20]) || ' ' || w[1 + (g / 20) % 20] || ' ' || g,
                'A ' || w[1 + (g / 400) % 20] || ' look for ' || w[1 + (g / 7) % 20] || ' scenes',
                (ARRAY['Movement','Color','Intensity','Strobe'])[1 + g % 4],
                g % 3 <> 0, now(), now(), '000000000001000-000000-0000000000000abc'
         FROM generate_series(1, 100000) g, (SELECT {words_sql} AS w) x"
    ))
    .bind(me)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE public.patterns")
        .execute(&db.pool)
        .await
        .unwrap();
    println!("seeded 100000 patterns in {:?}", started.elapsed());

    // The last two are the known slow shapes: a one-letter query (no trigram to use; the
    // description-only part scans) and a word whose matches all fall outside the category.
    let cases: [(&str, &str, Option<&str>); 9] = [
        ("verified", "", None),
        ("verified", "aurora", None),
        ("all", "comet fire 4", None),
        ("all", "lava", Some("Color")),
        ("mine", "", None),
        ("mine", "spiral", None),
        ("verified", "no such pattern", None),
        ("all", "e", None),
        ("all", "aurora", Some("Unused category")),
    ];
    for (tab, q, cat) in cases {
        // warm once, then the best of 5
        search(&db.pool, me, tab, Some(q), cat, 50, None).await;
        let mut best = f64::MAX;
        let mut n = 0;
        for _ in 0..5 {
            let mut tx = user_tx(&db.pool, me).await;
            let t = Instant::now();
            let (v,): (Value,) =
                sqlx::query_as("SELECT luma_search_patterns($1, $2, $3, 50, NULL)")
                    .bind(tab)
                    .bind(q)
                    .bind(cat)
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
            best = best.min(t.elapsed().as_secs_f64() * 1000.0);
            n = v["results"].as_array().unwrap().len();
            tx.rollback().await.unwrap();
        }
        println!("luma_search_patterns({tab:?}, {q:?}, {cat:?}, 50): {best:.2} ms (best of 5), {n} results");
    }
    // The plan of the candidate query for a text search (run as the function runs it).
    // As the connecting superuser: the SECURITY DEFINER candidate query runs without
    // row-level security and states the visibility itself.
    let mut tx = db.pool.begin().await.unwrap();
    let plan: Vec<(String,)> = sqlx::query_as(
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT p.id, 0 AS rank FROM public.patterns p
         WHERE p.deleted_at IS NULL AND p.is_verified AND p.name ILIKE '%aurora%'
         ORDER BY lower(p.name) COLLATE \"C\", p.id LIMIT 51",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    println!("EXPLAIN (as the SECURITY DEFINER candidate query runs, rank 0 of 'aurora'):");
    for (line,) in &plan {
        println!("  {line}");
    }
    let mut tx = db.pool.begin().await.unwrap();
    let plan: Vec<(String,)> = sqlx::query_as(
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT p.id FROM public.patterns p
         WHERE p.deleted_at IS NULL AND p.is_verified AND p.description ILIKE '%comet fire 4%'
           AND NOT p.name ILIKE '%comet fire 4%'
         ORDER BY lower(p.name) COLLATE \"C\", p.id LIMIT 51",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    println!("EXPLAIN (rank 1 of 'comet fire 4'):");
    for (line,) in &plan {
        println!("  {line}");
    }
    db.drop().await;
}
