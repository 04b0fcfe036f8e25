//! Contract tests of `SupabaseRemote` against wiremock: the exact request of every call
//! (method, path, headers, body), the mapping of realistic PostgREST error answers, bounded
//! retries of 5xx / 429 (with `Retry-After`), no retry of 4xx, timeouts, malformed answers.
#![cfg(feature = "supabase")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use luma_model::{
    Hlc, OpKind, PatternFilter, PatternId, PatternTab, Record, RecordKey, UserId, Venue,
};
use luma_store::Store;
use luma_sync::supabase::{ErrorClass, HttpError, RetryPolicy, SupabaseConfig, SupabaseRemote};
use luma_sync::{
    AccessToken, Change, Outcome, PullRequest, Remote, SearchRequest, StaticToken, SyncConfig,
    SyncEngine, SyncError, Watermark,
};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "anon-key-0123456789";
const TOKEN: &str = "access-token-abcdef";

fn config(url: &str) -> SupabaseConfig {
    let mut c = SupabaseConfig::new(url, KEY);
    c.retry = RetryPolicy {
        max_retries: 2,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    };
    c.request_timeout = Duration::from_secs(5);
    c
}

fn remote(server: &MockServer) -> SupabaseRemote {
    SupabaseRemote::new(config(&server.uri())).unwrap()
}

fn token() -> AccessToken {
    AccessToken::new(UserId::new(), TOKEN)
}

/// A mock of `POST /rest/v1/rpc/<function>` that checks every header the remote must send
/// and the exact body.
fn rpc(function: &str, body: Value) -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path(format!("/rest/v1/rpc/{function}")))
        .and(header("apikey", KEY))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header(
            "x-client-info",
            concat!("luma/", env!("CARGO_PKG_VERSION")),
        ))
        .and(header("content-type", "application/json"))
        .and(header("accept", "application/json"))
        .and(header("accept-encoding", "gzip"))
        .and(body_json(body))
}

fn hlc(s: &str) -> Hlc {
    s.parse().unwrap()
}

#[tokio::test]
async fn push_sends_changes_and_parses_outcomes() {
    let server = MockServer::start().await;
    let user = UserId::new();
    let mut venue = Venue::new("Stage");
    venue.uid = Some(user);
    let row = venue.to_row().unwrap();
    let stamp = "000001700000000-000000-0000000000000001";
    let changes = vec![
        Change {
            table: "venues".into(),
            key: RecordKey::from_canonical(venue.id.to_string()),
            hlc: hlc(stamp),
            op: OpKind::Upsert,
            row: Some(row.clone()),
        },
        Change {
            table: "fixtures".into(),
            key: RecordKey::from_canonical("f1"),
            hlc: hlc(stamp),
            op: OpKind::Delete,
            row: None,
        },
    ];
    let wire = json!({"changes": serde_json::to_value(&changes).unwrap()});
    // The wire form of PROTOCOL.md.
    assert_eq!(wire["changes"][0]["op"], "upsert");
    assert_eq!(wire["changes"][1]["row"], Value::Null);
    rpc("luma_push", wire)
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"table": "venues", "key": venue.id.to_string(), "outcome": "applied"},
            {"table": "fixtures", "key": "f1", "outcome": "rejected", "code": "forbidden", "reason": "row-level security"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let out = remote(&server).push(&token(), &changes).await.unwrap();
    assert_eq!(out[0].outcome, Outcome::Applied);
    assert!(matches!(
        out[1].outcome,
        Outcome::Rejected {
            code: luma_sync::RejectCode::Forbidden,
            ..
        }
    ));
}

#[tokio::test]
async fn pull_and_watermark_send_named_arguments() {
    let server = MockServer::start().await;
    rpc("luma_watermark", json!({}))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!("1234")))
        .expect(1)
        .mount(&server)
        .await;
    rpc(
        "luma_pull",
        json!({"p_table": "venues", "p_cursor": "12:3", "p_limit": 500, "p_watermark": "1234"}),
    )
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({
        "rows": [{"key": "k1", "hlc": "000001700000000-000000-0000000000000001", "deleted": true, "row": null}],
        "cursor": "20:1", "has_more": true, "resync_required": false
    })))
    .expect(1)
    .mount(&server)
    .await;
    let r = remote(&server);
    let t = token();
    let wm = r.watermark(&t).await.unwrap();
    assert_eq!(wm, Watermark("1234".into()));
    let page = r
        .pull(
            &t,
            &PullRequest {
                table: "venues".into(),
                cursor: Some("12:3".into()),
                limit: 500,
                watermark: wm,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.rows.len(), 1);
    assert!(page.rows[0].deleted);
    assert_eq!(page.cursor.as_deref(), Some("20:1"));
    assert!(page.has_more);
}

#[tokio::test]
async fn community_and_membership_calls_send_named_arguments() {
    let server = MockServer::start().await;
    let pattern = PatternId::new();
    let venue = uuid::Uuid::new_v4().to_string();
    rpc(
        "luma_search_patterns",
        json!({"p_tab": "verified", "p_query": "strobe", "p_category": "fx", "p_limit": 50, "p_cursor": null}),
    )
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [], "next_cursor": null})))
    .expect(1)
    .mount(&server)
    .await;
    rpc(
        "luma_fetch_pattern",
        json!({"p_pattern": pattern.to_string()}),
    )
    .respond_with(
        ResponseTemplate::new(200).set_body_json(json!({"pattern": null, "implementations": []})),
    )
    .expect(1)
    .mount(&server)
    .await;
    rpc("luma_join_venue", json!({"p_code": "ABCD1234"}))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"venue_id": venue})))
        .expect(1)
        .mount(&server)
        .await;
    rpc("luma_leave_venue", json!({"p_venue": venue}))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"left": true})))
        .expect(1)
        .mount(&server)
        .await;
    rpc("luma_memberships", json!({}))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"venue_id": venue, "role": "member", "joined_at": "2026-11-26T10:00:00Z"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let r = remote(&server);
    let t = token();
    let mut req = SearchRequest::new(
        PatternTab::Verified,
        PatternFilter {
            query: "strobe".into(),
            category: Some("fx".into()),
        },
    );
    req.limit = 50;
    let page = r.search_patterns(&t, &req).await.unwrap();
    assert!(page.results.is_empty() && page.next_cursor.is_none());
    assert!(r.fetch_pattern(&t, pattern).await.unwrap().is_none());
    assert_eq!(r.join_venue(&t, "ABCD1234").await.unwrap(), venue);
    assert!(r.leave_venue(&t, &venue).await.unwrap());
    assert_eq!(r.memberships(&t).await.unwrap()[0].role, "member");
}

/// What a call ended with, for the mapping table.
#[derive(Debug, PartialEq)]
enum Kind {
    Unauthorized,
    Permanent(&'static str),
    Transient,
    Protocol,
}

fn kind(e: &SyncError, class: &'static str) -> Kind {
    match e {
        SyncError::Unauthorized { .. } => Kind::Unauthorized,
        SyncError::Transient { .. } => Kind::Transient,
        SyncError::Protocol { .. } => Kind::Protocol,
        SyncError::Permanent { message, .. } if message.starts_with(class) => {
            Kind::Permanent(class)
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn postgrest(code: &str, message: &str) -> Value {
    json!({"code": code, "details": null, "hint": null, "message": message})
}

#[tokio::test]
async fn error_answers_map_to_their_class_and_only_transient_ones_are_retried() {
    // (status, body, expected, requests made: 1 + max_retries (2) for transient ones)
    let cases: Vec<(u16, Value, Kind, u64)> = vec![
        (
            401,
            postgrest("PGRST301", "JWT expired"),
            Kind::Unauthorized,
            1,
        ),
        (
            401,
            postgrest("PGRST303", "JWT expired"),
            Kind::Unauthorized,
            1,
        ),
        (
            403,
            postgrest("42501", "permission denied for function luma_push"),
            Kind::Permanent("forbidden"),
            1,
        ),
        (
            403,
            postgrest(
                "42501",
                "new row violates row-level security policy for table \"venues\"",
            ),
            Kind::Permanent("forbidden"),
            1,
        ),
        (
            409,
            postgrest(
                "23505",
                "duplicate key value violates unique constraint \"venues_share_code_key\"",
            ),
            Kind::Permanent("conflict"),
            1,
        ),
        (
            409,
            postgrest(
                "23503",
                "insert or update on table \"fixtures\" violates foreign key constraint",
            ),
            Kind::Permanent("conflict"),
            1,
        ),
        (
            400,
            postgrest("22023", "unknown table nope"),
            Kind::Permanent("bad request"),
            1,
        ),
        (
            400,
            postgrest("P0001", "raised by the function"),
            Kind::Permanent("bad request"),
            1,
        ),
        (
            406,
            json!({"code": "PGRST116", "details": "The result contains 0 rows", "hint": null, "message": "JSON object requested, multiple (or no) rows returned"}),
            Kind::Permanent("bad request"),
            1,
        ),
        (
            404,
            json!({"code": "PGRST202", "details": "Searched for the function public.luma_watermark without parameters", "hint": null, "message": "Could not find the function public.luma_watermark without parameters in the schema cache"}),
            Kind::Permanent("not found"),
            1,
        ),
        (
            404,
            postgrest("42883", "function public.luma_watermark() does not exist"),
            Kind::Permanent("not found"),
            1,
        ),
        (
            500,
            postgrest(
                "40001",
                "could not serialize access due to concurrent update",
            ),
            Kind::Transient,
            3,
        ),
        (
            500,
            postgrest("40P01", "deadlock detected"),
            Kind::Transient,
            3,
        ),
        (
            503,
            json!({"code": "PGRST001", "details": "connection refused", "hint": null, "message": "Database client error. Retrying the connection."}),
            Kind::Transient,
            3,
        ),
        (
            504,
            json!({"code": "PGRST003", "details": null, "hint": null, "message": "Timed out acquiring connection from connection pool."}),
            Kind::Transient,
            3,
        ),
        (
            502,
            json!("<html><body>502 Bad Gateway</body></html>"),
            Kind::Transient,
            3,
        ),
        (
            429,
            json!({"message": "Too Many Requests"}),
            Kind::Transient,
            3,
        ),
        // PostgREST answers 500 for P0002 (no_data_found) raised by a function: a refusal (what
        // `luma_join_venue` raised for an unknown share code before cloud migration 0009).
        (
            500,
            postgrest("P0002", "no venue has this share code"),
            Kind::Permanent("bad request"),
            1,
        ),
        (
            500,
            postgrest("XX000", "internal error"),
            Kind::Transient,
            3,
        ),
        (
            400,
            json!({"message": "a gateway body without code"}),
            Kind::Permanent("bad request"),
            1,
        ),
    ];
    for (status, body, expected, requests) in cases {
        let server = MockServer::start().await;
        let response = match &body {
            Value::String(html) => {
                ResponseTemplate::new(status).set_body_raw(html.clone(), "text/html")
            }
            _ => ResponseTemplate::new(status).set_body_json(body.clone()),
        };
        rpc("luma_watermark", json!({}))
            .respond_with(response)
            .expect(requests)
            .named(format!("{status} {body}"))
            .mount(&server)
            .await;
        let e = remote(&server).watermark(&token()).await.unwrap_err();
        let class = match &expected {
            Kind::Permanent(c) => c,
            _ => "",
        };
        assert_eq!(kind(&e, class), expected, "{status} {body}: {e}");
        assert_eq!(e.is_retryable(), expected == Kind::Transient, "{e}");
        server.verify().await;
    }
}

/// An unknown share code: since cloud migration 0009 `luma_join_venue` raises SQLSTATE
/// `PT404`, which PostgREST answers with HTTP 404 and its error body ("RAISE errors with HTTP
/// Status Codes" in its Errors docs). That is a permanent "not found": one request, no retry.
#[tokio::test]
async fn join_venue_with_an_unknown_share_code_is_a_permanent_not_found_after_one_request() {
    let server = MockServer::start().await;
    rpc("luma_join_venue", json!({"p_code": "NOSUCH01"}))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "code": "PT404",
            "message": "no venue has this share code",
            "details": null,
            "hint": null
        })))
        .expect(1)
        .mount(&server)
        .await;
    let e = remote(&server)
        .join_venue(&token(), "NOSUCH01")
        .await
        .unwrap_err();
    assert_eq!(kind(&e, "not found"), Kind::Permanent("not found"), "{e}");
    assert!(!e.is_retryable() && !e.is_unauthorized(), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the remote refused the request: not found (HTTP 404, PT404): no venue has this share code"
    );
    let http = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<HttpError>())
        .expect("the HTTP error as the source");
    assert_eq!(http.class(), ErrorClass::NotFound);
    assert_eq!(http.status(), Some(404));
    assert_eq!(http.code(), Some("PT404"));
    assert!(!http.is_retryable());
    server.verify().await;
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_5xx_is_retried_and_then_succeeds() {
    let server = MockServer::start().await;
    rpc("luma_watermark", json!({}))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(postgrest("PGRST000", "Could not connect")),
        )
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    rpc("luma_watermark", json!({}))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!("77")))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        remote(&server).watermark(&token()).await.unwrap(),
        Watermark("77".into())
    );
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let server = MockServer::start().await;
    rpc("luma_watermark", json!({}))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"message": "rate limited"})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    rpc("luma_watermark", json!({}))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!("5")))
        .expect(1)
        .mount(&server)
        .await;
    let start = Instant::now();
    assert_eq!(
        remote(&server).watermark(&token()).await.unwrap(),
        Watermark("5".into())
    );
    let waited = start.elapsed();
    // The backoff alone is at most 50 ms: the wait is the server's Retry-After.
    assert!(waited >= Duration::from_secs(1), "waited {waited:?}");
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_limit_ends_the_request_as_transient() {
    let server = MockServer::start().await;
    rpc("luma_watermark", json!({}))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("retry-after", "3600")
                .set_body_json(json!({"message": "maintenance"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let start = Instant::now();
    let e = remote(&server).watermark(&token()).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3600)), "{e:?}");
}

/// The engine waits at least as long as the server's `Retry-After` before resending an op.
#[tokio::test]
async fn the_engine_schedules_a_resend_no_sooner_than_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/v1/rpc/luma_watermark"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!("1")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/v1/rpc/luma_pull"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"rows": [], "cursor": null, "has_more": false, "resync_required": false}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/v1/rpc/luma_push"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "600")
                .set_body_json(json!({"message": "slow down"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let t = token();
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(t.user())).await.unwrap();
    let engine = SyncEngine::new(
        store,
        remote(&server),
        Arc::new(StaticToken(Arc::new(t))),
        SyncConfig::default(),
    );
    engine
        .local()
        .venues()
        .create(&Venue::new("Stage"))
        .await
        .unwrap();
    let before = chrono::Utc::now().timestamp_millis();
    let e = engine.sync_now().await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(600)), "{e:?}");
    let ops = engine.local().outbox().all().await.unwrap();
    assert_eq!(ops.len(), 1);
    let due = ops[0].next_retry_ms.expect("a retry time");
    assert!(
        due >= before + 600_000,
        "resend scheduled {} ms after the 429, not after Retry-After",
        due - before
    );
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let server = MockServer::start().await;
    rpc("luma_watermark", json!({}))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!("1"))
                .set_delay(Duration::from_secs(3)),
        )
        .expect(3)
        .mount(&server)
        .await;
    let mut c = config(&server.uri());
    c.request_timeout = Duration::from_millis(200);
    let start = Instant::now();
    let e = SupabaseRemote::new(c)
        .unwrap()
        .watermark(&token())
        .await
        .unwrap_err();
    assert!(matches!(e, SyncError::Transient { .. }), "{e:?}");
    assert!(e.to_string().contains("timeout"), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let r = SupabaseRemote::new(config(&format!("http://127.0.0.1:{port}"))).unwrap();
    let e = r.watermark(&token()).await.unwrap_err();
    assert!(matches!(e, SyncError::Transient { .. }), "{e:?}");
}

#[tokio::test]
async fn malformed_or_truncated_answers_are_protocol_errors() {
    let server = MockServer::start().await;
    let raw =
        |body: &str| ResponseTemplate::new(200).set_body_raw(body.to_owned(), "application/json");
    rpc("luma_watermark", json!({}))
        .respond_with(raw("<html>oops</html>"))
        .expect(1)
        .mount(&server)
        .await;
    let wm = Watermark("9".into());
    rpc(
        "luma_pull",
        json!({"p_table": "venues", "p_cursor": null, "p_limit": 10, "p_watermark": "9"}),
    )
    .respond_with(raw(r#"{"rows": [{"key": "k1", "hlc": "0000017"#))
    .expect(1)
    .mount(&server)
    .await;
    rpc("luma_memberships", json!({}))
        .respond_with(raw("42"))
        .expect(1)
        .mount(&server)
        .await;
    let r = remote(&server);
    let t = token();
    let e = r.watermark(&t).await.unwrap_err();
    assert!(matches!(e, SyncError::Protocol { .. }), "{e:?}");
    let e = r
        .pull(
            &t,
            &PullRequest {
                table: "venues".into(),
                cursor: None,
                limit: 10,
                watermark: wm,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SyncError::Protocol { .. }), "{e:?}");
    // The decoder's error travels as the source.
    assert!(std::error::Error::source(&e).is_some(), "{e:?}");
    let e = r.memberships(&t).await.unwrap_err();
    assert!(matches!(e, SyncError::Protocol { .. }), "{e:?}");
}

/// A truncated push answer through the engine: nothing is settled, the op stays pending.
#[tokio::test]
async fn a_truncated_push_answer_applies_nothing() {
    let server = MockServer::start().await;
    let user = UserId::new();
    Mock::given(method("POST"))
        .and(path("/rest/v1/rpc/luma_watermark"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!("1")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/v1/rpc/luma_pull"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"rows": [], "cursor": null, "has_more": false, "resync_required": false}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/v1/rpc/luma_push"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(r#"[{"table": "venues", "key": "#, "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    let engine = SyncEngine::new(
        store,
        remote(&server),
        Arc::new(StaticToken(Arc::new(AccessToken::new(user, TOKEN)))),
        SyncConfig::default(),
    );
    engine
        .local()
        .venues()
        .create(&Venue::new("Stage"))
        .await
        .unwrap();
    let e = engine.sync_now().await.unwrap_err();
    assert!(matches!(e, SyncError::Protocol { .. }), "{e:?}");
    assert_eq!(engine.local().outbox().pending_count().await.unwrap(), 1);
    assert!(engine
        .local()
        .outbox()
        .all()
        .await
        .unwrap()
        .iter()
        .all(|op| !op.rejected));
}

#[tokio::test]
async fn a_trailing_slash_in_the_url_is_tolerated_and_a_bad_url_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/v1/rpc/luma_watermark"))
        .and(query_param("x", "never"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    rpc("luma_watermark", json!({}))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!("3")))
        .expect(1)
        .mount(&server)
        .await;
    let r = SupabaseRemote::new(config(&format!("{}/", server.uri()))).unwrap();
    assert_eq!(r.watermark(&token()).await.unwrap(), Watermark("3".into()));
    assert!(SupabaseRemote::new(config("not a url")).is_err());
}
