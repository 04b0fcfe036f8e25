//! Contract tests of `SupabaseSession` against wiremock (GoTrue's `/auth/v1/token` and
//! `/auth/v1/logout`): sign in, refresh ahead of expiry, single-flight refresh, rotation
//! persisted before use, invalid grant -> signed out, offline -> waiting, sign out keeps ops.
#![cfg(feature = "supabase")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use luma_model::{UserId, Venue};
use luma_store::{AuthSession, ExposeSecret, SecretString, StateStore, Store};
use luma_sync::supabase::{
    AuthError, RetryPolicy, SupabaseConfig, SupabaseRemote, SupabaseSession,
};
use luma_sync::{Remote, SyncConfig, SyncEngine, SyncError, TokenProvider};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "anon-key-session-test";

fn config(url: &str) -> SupabaseConfig {
    let mut c = SupabaseConfig::new(url, KEY);
    c.retry = RetryPolicy {
        max_retries: 2,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    };
    c
}

/// GoTrue's answer to a token grant.
fn gotrue_session(user: UserId, access: &str, refresh: &str, expires_in: i64) -> Value {
    json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": expires_in,
        "expires_at": Utc::now().timestamp() + expires_in,
        "refresh_token": refresh,
        "user": {"id": user.to_string(), "aud": "authenticated", "role": "authenticated", "email": "a@example.com"}
    })
}

fn saved(user: UserId, access: &str, refresh: &str, expires_in: i64) -> AuthSession {
    AuthSession {
        user_id: user,
        access_token: SecretString::from(access.to_owned()),
        refresh_token: SecretString::from(refresh.to_owned()),
        expires_at: Utc::now() + chrono::Duration::seconds(expires_in),
    }
}

fn no_authorization(r: &Request) -> bool {
    !r.headers.contains_key("authorization")
}

fn token_grant(grant: &str) -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/auth/v1/token"))
        .and(query_param("grant_type", grant))
        .and(header("apikey", KEY))
        .and(header(
            "x-client-info",
            concat!("luma/", env!("CARGO_PKG_VERSION")),
        ))
        .and(header("content-type", "application/json"))
        .and(no_authorization)
}

async fn state_file() -> (tempfile::TempDir, PathBuf, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.db");
    let state = StateStore::open(&file).await.unwrap();
    (dir, file, state)
}

#[tokio::test]
async fn sign_in_sends_the_password_grant_and_saves_the_session() {
    let server = MockServer::start().await;
    let user = UserId::new();
    token_grant("password")
        .and(body_json(
            json!({"email": "a@example.com", "password": "pw-secret"}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(gotrue_session(user, "at-1", "rt-1", 3600)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let state = StateStore::open_in_memory().await.unwrap();
    let session = SupabaseSession::open(config(&server.uri()), state.clone())
        .await
        .unwrap();
    assert_eq!(session.current_user().await, None);
    let signed = session
        .sign_in("a@example.com", &SecretString::from("pw-secret"))
        .await
        .unwrap();
    assert_eq!(signed, user);
    assert_eq!(session.current_user().await, Some(user));
    let s = state.load().await.unwrap().unwrap();
    assert_eq!(s.user_id, user);
    assert_eq!(s.refresh_token.expose_secret(), "rt-1");
    assert_eq!(s.access_token.expose_secret(), "at-1");
    let t = session.token().await.unwrap();
    assert_eq!((t.user(), t.secret()), (user, "at-1"));
    // A session reopened from state.db is signed in.
    let again = SupabaseSession::open(config(&server.uri()), state)
        .await
        .unwrap();
    assert_eq!(again.current_user().await, Some(user));
}

#[tokio::test]
async fn refused_sign_ins_are_typed_and_not_retried() {
    let cases = [
        (
            json!({"code": 400, "error_code": "invalid_credentials", "msg": "Invalid login credentials"}),
            "invalid",
        ),
        (
            json!({"error": "invalid_grant", "error_description": "Invalid login credentials"}),
            "invalid",
        ),
        (
            json!({"code": 400, "error_code": "email_not_confirmed", "msg": "Email not confirmed"}),
            "rejected",
        ),
    ];
    for (body, expected) in cases {
        let server = MockServer::start().await;
        token_grant("password")
            .respond_with(ResponseTemplate::new(400).set_body_json(body.clone()))
            .expect(1)
            .mount(&server)
            .await;
        let state = StateStore::open_in_memory().await.unwrap();
        let session = SupabaseSession::open(config(&server.uri()), state.clone())
            .await
            .unwrap();
        let e = session
            .sign_in("a@example.com", &SecretString::from("nope"))
            .await
            .unwrap_err();
        match expected {
            "invalid" => assert!(
                matches!(e, AuthError::InvalidCredentials { .. }),
                "{body}: {e:?}"
            ),
            _ => assert!(matches!(e, AuthError::Rejected { .. }), "{body}: {e:?}"),
        }
        assert!(!e.is_retryable());
        assert!(state.load().await.unwrap().is_none());
        assert!(matches!(
            session.token().await.unwrap_err(),
            SyncError::NotSignedIn
        ));
        server.verify().await;
    }
}

#[tokio::test]
async fn the_token_is_refreshed_ahead_of_expiry_and_the_rotated_pair_saved() {
    let server = MockServer::start().await;
    let user = UserId::new();
    token_grant("refresh_token")
        .and(body_json(json!({"refresh_token": "rt-old"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(gotrue_session(user, "at-new", "rt-new", 3600)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let state = StateStore::open_in_memory().await.unwrap();
    // Expires in 30 s: within the 90 s margin.
    state
        .save(&saved(user, "at-old", "rt-old", 30))
        .await
        .unwrap();
    let session = SupabaseSession::open(config(&server.uri()), state.clone())
        .await
        .unwrap();
    let t = session.token().await.unwrap();
    assert_eq!(t.secret(), "at-new");
    assert_eq!(
        state
            .load()
            .await
            .unwrap()
            .unwrap()
            .refresh_token
            .expose_secret(),
        "rt-new"
    );
    // Now valid for an hour: no further request (expect(1) above).
    for _ in 0..5 {
        assert_eq!(session.token().await.unwrap().secret(), "at-new");
    }
    assert!(session.expires_at().await.unwrap() > Utc::now() + chrono::Duration::seconds(3000));
}

/// The PostgREST side: the old token is refused (401 PGRST301), the new one accepted; the
/// first time the new token arrives, state.db (read through a second connection, from
/// another thread) must already hold the rotated refresh token.
struct Rpc {
    state_file: PathBuf,
    checked: AtomicBool,
    persisted_first: Arc<Mutex<Option<bool>>>,
}

impl Respond for Rpc {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth == "Bearer at-new" {
            if !self.checked.swap(true, Ordering::SeqCst) {
                let file = self.state_file.clone();
                let held = std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(async {
                            let state = StateStore::open(&file).await.unwrap();
                            state
                                .load()
                                .await
                                .unwrap()
                                .map(|s| s.refresh_token.expose_secret().to_owned())
                        })
                })
                .join()
                .unwrap();
                *self.persisted_first.lock().unwrap() = Some(held.as_deref() == Some("rt-new"));
            }
            ResponseTemplate::new(200).set_body_json(json!("100"))
        } else {
            ResponseTemplate::new(401).set_body_json(
                json!({"code": "PGRST301", "details": null, "hint": null, "message": "JWT expired"}),
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_401s_cause_one_refresh_and_the_new_token_is_saved_before_use() {
    let server = MockServer::start().await;
    let user = UserId::new();
    let (_dir, file, state) = state_file().await;
    state
        .save(&saved(user, "at-old", "rt-old", 3600))
        .await
        .unwrap();
    token_grant("refresh_token")
        .and(body_json(json!({"refresh_token": "rt-old"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(gotrue_session(user, "at-new", "rt-new", 3600))
                .set_delay(Duration::from_millis(100)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let persisted_first = Arc::new(Mutex::new(None));
    Mock::given(method("POST"))
        .and(path("/rest/v1/rpc/luma_watermark"))
        .respond_with(Rpc {
            state_file: file,
            checked: AtomicBool::new(false),
            persisted_first: persisted_first.clone(),
        })
        .expect(100)
        .mount(&server)
        .await;
    let remote = SupabaseRemote::new(config(&server.uri())).unwrap();
    let session = Arc::new(
        SupabaseSession::for_remote(&remote, state.clone())
            .await
            .unwrap(),
    );
    // Every caller holds the old token before any request is sent: all 50 see a 401. (Taking
    // the tokens while spawning let an early caller's refresh finish first on a slow machine.)
    let mut held = Vec::new();
    for _ in 0..50 {
        let t = session.token().await.unwrap();
        assert_eq!(t.secret(), "at-old");
        held.push(t);
    }
    let mut tasks = Vec::new();
    for t in held {
        let (remote, session) = (remote.clone(), session.clone());
        tasks.push(tokio::spawn(async move {
            let e = remote.watermark(&t).await.unwrap_err();
            assert!(e.is_unauthorized(), "{e:?}");
            let fresh = session.refresh_after(&t).await.unwrap();
            remote.watermark(&fresh).await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().0, "100");
    }
    server.verify().await;
    assert_eq!(
        *persisted_first.lock().unwrap(),
        Some(true),
        "state.db held the new refresh token when the new access token was first sent"
    );
}

#[tokio::test]
async fn a_refused_refresh_token_signs_out_without_a_retry_loop() {
    let bodies = [
        json!({"error": "invalid_grant", "error_description": "Invalid Refresh Token: Already Used"}),
        json!({"code": 400, "error_code": "refresh_token_not_found", "msg": "Invalid Refresh Token: Refresh Token Not Found"}),
    ];
    for body in bodies {
        let server = MockServer::start().await;
        let user = UserId::new();
        token_grant("refresh_token")
            .respond_with(ResponseTemplate::new(400).set_body_json(body.clone()))
            .expect(1)
            .mount(&server)
            .await;
        // The remote always refuses the token.
        Mock::given(method("POST"))
            .and(path("/rest/v1/rpc/luma_watermark"))
            .respond_with(ResponseTemplate::new(401).set_body_json(
                json!({"code": "PGRST301", "details": null, "hint": null, "message": "JWT expired"}),
            ))
            .expect(1)
            .mount(&server)
            .await;
        let state = StateStore::open_in_memory().await.unwrap();
        state
            .save(&saved(user, "at-old", "rt-old", 3600))
            .await
            .unwrap();
        let remote = SupabaseRemote::new(config(&server.uri())).unwrap();
        let session = Arc::new(
            SupabaseSession::for_remote(&remote, state.clone())
                .await
                .unwrap(),
        );
        let store = Store::open_in_memory().await.unwrap();
        store.set_current_user(Some(user)).await.unwrap();
        let engine = SyncEngine::new(store, remote, session.clone(), SyncConfig::default());
        let e = engine.sync_now().await.unwrap_err();
        assert!(matches!(e, SyncError::SignedOut { .. }), "{body}: {e:?}");
        assert!(!e.is_retryable());
        assert!(
            state.load().await.unwrap().is_none(),
            "the dead session is forgotten"
        );
        assert_eq!(session.current_user().await, None);
        // Later cycles fail at once, without requests.
        for _ in 0..3 {
            assert!(matches!(
                engine.sync_now().await.unwrap_err(),
                SyncError::NotSignedIn
            ));
        }
        server.verify().await;
    }
}

#[tokio::test]
async fn an_expired_session_while_offline_waits_and_recovers() {
    let server = MockServer::start().await;
    let user = UserId::new();
    // Down for the first call (1 attempt + 2 retries), then back.
    token_grant("refresh_token")
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"message": "upstream unavailable"})),
        )
        .up_to_n_times(3)
        .expect(3)
        .mount(&server)
        .await;
    token_grant("refresh_token")
        .and(body_json(json!({"refresh_token": "rt-old"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(gotrue_session(user, "at-new", "rt-new", 3600)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let state = StateStore::open_in_memory().await.unwrap();
    state
        .save(&saved(user, "at-old", "rt-old", -60))
        .await
        .unwrap();
    let session = SupabaseSession::open(config(&server.uri()), state.clone())
        .await
        .unwrap();
    let e = session.token().await.unwrap_err();
    assert!(matches!(e, SyncError::Transient { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert_eq!(
        session.current_user().await,
        Some(user),
        "the session is kept"
    );
    assert_eq!(
        state
            .load()
            .await
            .unwrap()
            .unwrap()
            .refresh_token
            .expose_secret(),
        "rt-old"
    );
    // Back online.
    assert_eq!(session.token().await.unwrap().secret(), "at-new");
    server.verify().await;
}

#[tokio::test]
async fn offline_without_any_server_keeps_the_session_and_the_engine_waits() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let user = UserId::new();
    let state = StateStore::open_in_memory().await.unwrap();
    state
        .save(&saved(user, "at-old", "rt-old", -60))
        .await
        .unwrap();
    let remote = SupabaseRemote::new(config(&url)).unwrap();
    let session = Arc::new(
        SupabaseSession::for_remote(&remote, state.clone())
            .await
            .unwrap(),
    );
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    let engine = SyncEngine::new(store, remote, session.clone(), SyncConfig::default());
    engine
        .local()
        .venues()
        .create(&Venue::new("Stage"))
        .await
        .unwrap();
    let e = engine.sync_now().await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(!engine.status().borrow().online);
    assert_eq!(session.current_user().await, Some(user));
    assert!(state.load().await.unwrap().is_some());
    assert_eq!(engine.local().outbox().pending_count().await.unwrap(), 1);
}

#[tokio::test]
async fn a_token_still_valid_is_used_when_the_early_refresh_fails() {
    let server = MockServer::start().await;
    let user = UserId::new();
    token_grant("refresh_token")
        .respond_with(ResponseTemplate::new(502))
        .expect(3)
        .mount(&server)
        .await;
    let state = StateStore::open_in_memory().await.unwrap();
    state
        .save(&saved(user, "at-old", "rt-old", 30))
        .await
        .unwrap();
    let session = SupabaseSession::open(config(&server.uri()), state)
        .await
        .unwrap();
    assert_eq!(session.token().await.unwrap().secret(), "at-old");
}

#[tokio::test]
async fn sign_out_tells_the_server_forgets_the_session_and_keeps_pending_ops() {
    let server = MockServer::start().await;
    let user = UserId::new();
    Mock::given(method("POST"))
        .and(path("/auth/v1/logout"))
        .and(query_param("scope", "local"))
        .and(header("apikey", KEY))
        .and(header("authorization", "Bearer at-1"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let state = StateStore::open_in_memory().await.unwrap();
    state
        .save(&saved(user, "at-1", "rt-1", 3600))
        .await
        .unwrap();
    let session = SupabaseSession::open(config(&server.uri()), state.clone())
        .await
        .unwrap();
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    store
        .venues()
        .create(&Venue::new("Unpushed"))
        .await
        .unwrap();
    store
        .venues()
        .create(&Venue::new("Unpushed too"))
        .await
        .unwrap();
    let before = store.outbox().all().await.unwrap();
    assert_eq!(before.len(), 2);

    session.sign_out().await.unwrap();
    assert_eq!(session.current_user().await, None);
    assert!(state.load().await.unwrap().is_none());
    assert!(matches!(
        session.token().await.unwrap_err(),
        SyncError::NotSignedIn
    ));
    // The ops are still there, for that user.
    let after = store.outbox().all().await.unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(
        before.iter().map(|o| o.id).collect::<Vec<_>>(),
        after.iter().map(|o| o.id).collect::<Vec<_>>()
    );
    // Signing out twice is fine and sends nothing more (expect(1)).
    session.sign_out().await.unwrap();
    server.verify().await;
}

#[tokio::test]
async fn sign_out_while_offline_still_signs_out_here() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let user = UserId::new();
    let state = StateStore::open_in_memory().await.unwrap();
    state
        .save(&saved(user, "at-1", "rt-1", 3600))
        .await
        .unwrap();
    let session = SupabaseSession::open(config(&url), state.clone())
        .await
        .unwrap();
    session.sign_out().await.unwrap();
    assert!(state.load().await.unwrap().is_none());
}

#[tokio::test]
async fn a_malformed_token_answer_is_a_protocol_error_and_keeps_the_session() {
    let server = MockServer::start().await;
    let user = UserId::new();
    token_grant("refresh_token")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(r#"{"access_token": "at-n"#, "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let state = StateStore::open_in_memory().await.unwrap();
    state
        .save(&saved(user, "at-old", "rt-old", -1))
        .await
        .unwrap();
    let session = SupabaseSession::open(config(&server.uri()), state.clone())
        .await
        .unwrap();
    let e = session.token().await.unwrap_err();
    assert!(matches!(e, SyncError::Protocol { .. }), "{e:?}");
    assert_eq!(
        state
            .load()
            .await
            .unwrap()
            .unwrap()
            .refresh_token
            .expose_secret(),
        "rt-old"
    );
}

/// `Remote` is used through the trait object the engine holds; keep it object safe.
#[allow(dead_code)]
fn remote_is_a_remote(r: SupabaseRemote) -> impl Remote {
    r
}
