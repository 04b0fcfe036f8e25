//! The `Remote` conformance suite against `SupabaseRemote`, over HTTP, through the PostgREST
//! stand-in (`tests/postgrest`) that runs the cloud SQL on the real PostgreSQL at
//! `LUMA_TEST_DATABASE_URL` (a fresh database per test, dropped at the end).
#![cfg(feature = "supabase")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pg_common;
mod postgrest;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use luma_model::{UserId, Venue};
use luma_store::{ExposeSecret, Store};
use luma_sync::conformance::{check_all, Capabilities, Harness};
use luma_sync::supabase::{SupabaseConfig, SupabaseRemote};
use luma_sync::{
    AccessToken, PullRequest, Remote, StaticToken, SyncConfig, SyncEngine, SyncError, Watermark,
};
use pg_common::PgHarness;
use postgrest::{token_for, PostgrestStandIn, ANON_KEY};

struct SupabaseHarness {
    pg: PgHarness,
    server: PostgrestStandIn,
    remote: SupabaseRemote,
}

impl SupabaseHarness {
    async fn new() -> Self {
        let pg = PgHarness::new().await;
        let server = PostgrestStandIn::start(pg.remote.pool().clone()).await;
        let remote = SupabaseRemote::new(SupabaseConfig::new(server.url(), ANON_KEY)).unwrap();
        Self { pg, server, remote }
    }

    async fn drop(self) {
        self.server.stop();
        self.pg.drop().await;
    }
}

#[async_trait]
impl Harness for SupabaseHarness {
    type R = SupabaseRemote;
    fn remote(&self) -> &SupabaseRemote {
        &self.remote
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            purge: true,
            remove_member: true,
        }
    }
    async fn sign_in(&self, user: UserId) -> AccessToken {
        AccessToken::new(user, token_for(user))
    }
    async fn add_member(&self, venue: &str, user: UserId) {
        self.pg
            .admin
            .add_member(venue, user)
            .await
            .expect("add member");
    }
    async fn remove_member(&self, venue: &str, user: UserId) {
        self.pg
            .admin
            .remove_member(venue, user)
            .await
            .expect("remove member");
    }
    async fn purge_tombstones(&self) {
        self.pg
            .admin
            .purge_tombstones(Duration::ZERO)
            .await
            .expect("purge");
    }
    async fn settled_watermark(&self, _token: &AccessToken) -> Watermark {
        self.pg
            .admin
            .settled_watermark(Duration::from_secs(30))
            .await
            .expect("watermark")
    }
}

#[tokio::test]
async fn supabase_remote_conforms() {
    let h = SupabaseHarness::new().await;
    let result = check_all(&h).await;
    let requests = h.server.requests();
    h.drop().await;
    result.unwrap();
    assert!(
        requests > 10,
        "the checks went over HTTP ({requests} requests)"
    );
}

/// Two devices of one user sync a venue through HTTP and the cloud SQL; errors of the real
/// SQL arrive in their classes.
#[tokio::test]
async fn engine_syncs_through_http_and_errors_keep_their_class() {
    let h = SupabaseHarness::new().await;
    let result = async {
        let user = UserId::new();
        let token = Arc::new(AccessToken::new(user, token_for(user)));
        let mut devices = Vec::new();
        for _ in 0..2 {
            let store = Store::open_in_memory().await.unwrap();
            store.set_current_user(Some(user)).await.unwrap();
            devices.push(SyncEngine::new(
                store,
                h.remote.clone(),
                Arc::new(StaticToken(token.clone())),
                SyncConfig::default(),
            ));
        }
        let mut venue = Venue::new("Main stage");
        let code = uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase();
        venue.share_code = Some(code.clone());
        devices[0].local().venues().create(&venue).await.unwrap();
        let report = devices[0].sync_now().await.unwrap();
        assert_eq!(report.push.applied, 1, "{report:?}");
        // The row becomes pullable once older transactions of the cluster finish.
        h.pg.admin
            .settled_watermark(Duration::from_secs(30))
            .await
            .unwrap();
        devices[1].sync_now().await.unwrap();
        assert_eq!(
            devices[1]
                .local()
                .venues()
                .get(venue.id)
                .await
                .unwrap()
                .name,
            "Main stage"
        );

        // Memberships through HTTP: the owner sees the venue.
        let m = h.remote.memberships(&token).await.unwrap();
        assert_eq!(m[0].venue_id, venue.id.to_string(), "{m:?}");
        assert_eq!(m[0].role, "owner");
        // A member joins by share code and leaves.
        let other = UserId::new();
        let other_token = AccessToken::new(other, token_for(other));
        let joined = h.remote.join_venue(&other_token, &code).await.unwrap();
        assert_eq!(joined, venue.id.to_string());
        assert!(h.remote.leave_venue(&other_token, &joined).await.unwrap());
        assert!(!h.remote.leave_venue(&other_token, &joined).await.unwrap());

        // SQLSTATE 22023 (unknown table) -> 400 -> permanent.
        let wm = h.remote.watermark(&token).await.unwrap();
        let e = h
            .remote
            .pull(
                &token,
                &PullRequest {
                    table: "nope".into(),
                    cursor: None,
                    limit: 10,
                    watermark: wm,
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, SyncError::Permanent { .. }), "{e:?}");
        // PT404 (no venue has this share code, cloud migration 0009) -> 404 -> a permanent
        // "not found", asked once (P0002 before 0009 was a 500).
        let before = h.server.requests();
        let e = h
            .remote
            .join_venue(&other_token, "no-such-code")
            .await
            .unwrap_err();
        assert!(matches!(e, SyncError::Permanent { .. }), "{e:?}");
        assert!(!e.is_retryable(), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the remote refused the request: not found (HTTP 404, PT404): no venue has this share code"
        );
        assert_eq!(h.server.requests(), before + 1);
        // A token the server does not accept -> 401 PGRST301 -> unauthorized.
        let forged = AccessToken::new(user, "forged");
        let e = h.remote.watermark(&forged).await.unwrap_err();
        assert!(e.is_unauthorized(), "{e:?}");
    }
    .await;
    h.drop().await;
    result
}

/// The whole chain an app runs: sign in through GoTrue (wiremock), the engine syncs through
/// the PostgREST stand-in on PostgreSQL; the first access token is refused (401 PGRST301), so
/// the engine refreshes once through the session and carries on with the new token.
#[tokio::test]
async fn session_and_engine_sync_through_gotrue_and_postgrest_stand_ins() {
    use luma_store::{SecretString, StateStore};
    use luma_sync::supabase::SupabaseSession;
    use wiremock::matchers::{body_json, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let h = SupabaseHarness::new().await;
    let result = async {
        let gotrue = MockServer::start().await;
        let user = UserId::new();
        let answer = |access: &str, refresh: &str| {
            serde_json::json!({
                "access_token": access, "token_type": "bearer", "expires_in": 3600,
                "expires_at": chrono::Utc::now().timestamp() + 3600, "refresh_token": refresh,
                "user": {"id": user.to_string(), "aud": "authenticated"}
            })
        };
        Mock::given(method("POST"))
            .and(path("/auth/v1/token"))
            .and(query_param("grant_type", "password"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(answer("not-a-valid-jwt", "rt-1")),
            )
            .expect(1)
            .mount(&gotrue)
            .await;
        Mock::given(method("POST"))
            .and(path("/auth/v1/token"))
            .and(query_param("grant_type", "refresh_token"))
            .and(body_json(serde_json::json!({"refresh_token": "rt-1"})))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(answer(&token_for(user), "rt-2")),
            )
            .expect(1)
            .mount(&gotrue)
            .await;
        // GoTrue and PostgREST live on one origin on Supabase; here two servers, so the
        // session gets its own config.
        let state = StateStore::open_in_memory().await.unwrap();
        let session = Arc::new(
            SupabaseSession::open(SupabaseConfig::new(gotrue.uri(), ANON_KEY), state.clone())
                .await
                .unwrap(),
        );
        session
            .sign_in("a@example.com", &SecretString::from("pw"))
            .await
            .unwrap();
        let store = Store::open_in_memory().await.unwrap();
        store.set_current_user(Some(user)).await.unwrap();
        let engine = SyncEngine::new(
            store,
            h.remote.clone(),
            session.clone(),
            SyncConfig::default(),
        );
        let venue = Venue::new("Through the session");
        engine.local().venues().create(&venue).await.unwrap();
        let report = engine.sync_now().await.unwrap();
        assert_eq!(report.push.applied, 1, "{report:?}");
        assert_eq!(engine.local().outbox().pending_count().await.unwrap(), 0);
        assert_eq!(
            state
                .load()
                .await
                .unwrap()
                .unwrap()
                .refresh_token
                .expose_secret(),
            "rt-2"
        );
        // The venue is on the server for this user.
        let m = h
            .remote
            .memberships(&AccessToken::new(user, token_for(user)))
            .await
            .unwrap();
        assert_eq!(m[0].venue_id, venue.id.to_string(), "{m:?}");
        gotrue.verify().await;
    }
    .await;
    h.drop().await;
    result
}
