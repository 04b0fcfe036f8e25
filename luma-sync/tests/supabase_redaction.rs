//! No token, key or password appears in any log line or `Debug` output of the Supabase remote
//! and session: every log line of sign-in, refresh, pushes, errors and sign-out is captured
//! (TRACE) and searched.
#![cfg(feature = "supabase")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use luma_model::{UserId, Venue};
use luma_store::{SecretString, StateStore, Store};
use luma_sync::supabase::{RetryPolicy, SupabaseConfig, SupabaseRemote, SupabaseSession};
use luma_sync::{SyncConfig, SyncEngine, TokenProvider};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ANON_KEY: &str = "ANONKEY-zz91-secret";
const PASSWORD: &str = "PASSWORD-hunter2-secret";
const ACCESS_1: &str = "ACCESS1-eyJhbGciOi-secret";
const REFRESH_1: &str = "REFRESH1-v1a2b3-secret";
const ACCESS_2: &str = "ACCESS2-eyJzdWIiOi-secret";
const REFRESH_2: &str = "REFRESH2-q9w8e7-secret";
const SECRETS: [&str; 6] = [ANON_KEY, PASSWORD, ACCESS_1, REFRESH_1, ACCESS_2, REFRESH_2];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows a secret ({s}):\n{text}");
    }
}

fn gotrue(user: UserId, access: &str, refresh: &str, expires_in: i64) -> serde_json::Value {
    json!({
        "access_token": access, "token_type": "bearer", "expires_in": expires_in,
        "expires_at": Utc::now().timestamp() + expires_in, "refresh_token": refresh,
        "user": {"id": user.to_string()}
    })
}

#[tokio::test]
async fn no_secret_in_logs_or_debug() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    let user = UserId::new();
    // A failed sign-in, then a good one with a token about to expire.
    Mock::given(method("POST"))
        .and(path("/auth/v1/token"))
        .and(query_param("grant_type", "password"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"code": 400, "error_code": "invalid_credentials", "msg": "Invalid login credentials"}),
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/v1/token"))
        .and(query_param("grant_type", "password"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(gotrue(user, ACCESS_1, REFRESH_1, 10)),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/v1/token"))
        .and(query_param("grant_type", "refresh_token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(gotrue(user, ACCESS_2, REFRESH_2, 3600)),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/v1/logout"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    // The old token is refused, the new one works; pushes meet a 500 once, then a 403.
    Mock::given(method("POST"))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_1}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"code": "PGRST301", "details": null, "hint": null, "message": "JWT expired"}),
        ))
        .mount(&server)
        .await;
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
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"code": "40001", "details": null, "hint": null, "message": "could not serialize access"}),
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/v1/rpc/luma_push"))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!({"code": "42501", "details": null, "hint": null, "message": "permission denied for function luma_push"}),
        ))
        .mount(&server)
        .await;

    let mut config = SupabaseConfig::new(server.uri(), ANON_KEY);
    config.retry = RetryPolicy {
        max_retries: 1,
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(1),
    };
    let remote = SupabaseRemote::new(config.clone()).unwrap();
    let state = StateStore::open_in_memory().await.unwrap();
    let session = Arc::new(
        SupabaseSession::for_remote(&remote, state.clone())
            .await
            .unwrap(),
    );
    let password = SecretString::from(PASSWORD);
    let refused = session
        .sign_in("a@example.com", &password)
        .await
        .unwrap_err();
    session.sign_in("a@example.com", &password).await.unwrap();
    // Sign in left a token valid 10 s (< margin): token() refreshes; and a 401 path too.
    let token = session.token().await.unwrap();
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    store.venues().create(&Venue::new("Stage")).await.unwrap();
    let engine = SyncEngine::new(
        store,
        remote.clone(),
        session.clone(),
        SyncConfig::default(),
    );
    let push_error = engine.sync_now().await; // 500 retried, then 403: rejected
    let session_debug = format!("{session:?}");
    session.sign_out().await.unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // The capture works and saw the flows.
    for needle in [
        "signed in",
        "session refreshed",
        "retrying",
        "signed out",
        "luma_push",
    ] {
        assert!(text.contains(needle), "no {needle:?} in the logs:\n{text}");
    }
    assert_clean("the logs", &text);
    assert_clean("Debug of the config", &format!("{config:?}"));
    assert_clean("Debug of the remote", &format!("{remote:?}"));
    assert_clean("Debug of the session", &session_debug);
    assert_clean("Debug of the token", &format!("{token:?}"));
    assert_clean(
        "Debug of a refused sign-in",
        &format!("{refused:?} {refused}"),
    );
    assert_clean("the sync result", &format!("{push_error:?}"));
    assert_clean(
        "Debug of the state",
        &format!("{:?}", state.load().await.unwrap()),
    );
    assert_eq!(token.secret(), ACCESS_2);
    let _ = session.token().await;
}
