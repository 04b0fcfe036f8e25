//! [`SupabaseSession`]: the Supabase Auth (GoTrue) session, kept in `state.db`, and the
//! engine's [`TokenProvider`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use luma_model::UserId;
use luma_store::{AuthSession, StateStore, StoreError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use thiserror::Error;
use tokio::sync::Mutex;

use super::config::SupabaseConfig;
use super::errors::{ErrorClass, HttpError};
use super::http::{Answer, Api};
use super::remote::SupabaseRemote;
use crate::error::{Result, SyncError};
use crate::token::{AccessToken, TokenProvider};

/// What can go wrong with the auth session. Never carries a token, key or password.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The email and password were refused (`invalid_credentials`, older `invalid_grant`).
    #[error("invalid login credentials: {source}")]
    InvalidCredentials {
        /// The auth server's answer.
        source: HttpError,
    },
    /// The auth server refused the sign-in for another reason (email not confirmed, ...).
    #[error("sign-in refused: {source}")]
    Rejected {
        /// The auth server's answer.
        source: HttpError,
    },
    /// The server refused the refresh token (revoked, reused, expired): the session is
    /// forgotten and the user must sign in again.
    #[error("signed out by the server: {source}")]
    SignedOut {
        /// The auth server's answer.
        source: HttpError,
    },
    /// No user is signed in.
    #[error("no user is signed in")]
    NotSignedIn,
    /// The auth server could not be reached (network, timeout, 5xx, 429): the session is
    /// kept and the call may be retried later.
    #[error("the auth server is unreachable, the session is kept: {source}")]
    Offline {
        /// The failure.
        source: HttpError,
    },
    /// The auth server answered something unexpected (not JSON, missing fields).
    #[error("unexpected answer from the auth server: {source}")]
    Protocol {
        /// The failure.
        source: HttpError,
    },
    /// The configuration is unusable (a project URL that does not parse).
    #[error("invalid Supabase configuration: {source}")]
    Config {
        /// What was wrong.
        source: HttpError,
    },
    /// `state.db` failed.
    #[error("state.db: {source}")]
    Store {
        /// The store's error.
        #[from]
        source: StoreError,
    },
}

impl AuthError {
    /// True if the same call may succeed later (offline, busy `state.db`).
    pub fn is_retryable(&self) -> bool {
        match self {
            AuthError::Offline { .. } => true,
            AuthError::Store { source } => source.is_retryable(),
            _ => false,
        }
    }
}

impl From<AuthError> for SyncError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::NotSignedIn => SyncError::NotSignedIn,
            // The variant already says "signed out by the server": its message is the
            // server's answer alone (not this error's text, which says it too).
            AuthError::SignedOut { source } => SyncError::SignedOut {
                message: source.to_string(),
            },
            AuthError::Offline { .. } => SyncError::transient(e.to_string()),
            AuthError::Protocol { .. } => SyncError::protocol(e.to_string()),
            AuthError::Store { source } => SyncError::Store { source },
            AuthError::InvalidCredentials { .. }
            | AuthError::Rejected { .. }
            | AuthError::Config { .. } => SyncError::permanent(e.to_string()),
        }
    }
}

/// GoTrue's token answer. No `Debug`: it holds the tokens.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    refresh_token: String,
    expires_in: Option<i64>,
    expires_at: Option<i64>,
    user: UserAnswer,
}

#[derive(Deserialize)]
struct UserAnswer {
    id: UserId,
}

impl TokenAnswer {
    fn into_session(self) -> AuthSession {
        let now = Utc::now();
        let expires_at: DateTime<Utc> = self
            .expires_at
            .and_then(|s| Utc.timestamp_opt(s, 0).single())
            .or_else(|| {
                self.expires_in
                    .map(|s| now + chrono::Duration::seconds(s.clamp(0, 10 * 365 * 86_400)))
            })
            // No expiry given: treat the token as short-lived so it is refreshed soon.
            .unwrap_or(now);
        AuthSession {
            user_id: self.user.id,
            access_token: SecretString::from(self.access_token),
            refresh_token: SecretString::from(self.refresh_token),
            expires_at,
        }
    }
}

fn token_of(session: &AuthSession) -> Arc<AccessToken> {
    Arc::new(AccessToken::new(
        session.user_id,
        session.access_token.expose_secret(),
    ))
}

struct Inner {
    session: Option<AuthSession>,
    token: Option<Arc<AccessToken>>,
    /// The session in memory is newer than the one in `state.db` (saving it failed).
    unsaved: bool,
}

impl Inner {
    fn set(&mut self, session: Option<AuthSession>) {
        self.token = session.as_ref().map(token_of);
        self.session = session;
    }
}

/// A Supabase Auth session: sign in with email and password, refresh, sign out, current
/// user; the session (tokens and expiry) lives in `state.db` ([`StateStore`]) so it
/// survives restarts. It is the engine's [`TokenProvider`].
///
/// - **Refresh ahead of expiry**: [`TokenProvider::token`] refreshes when the access token
///   expires within [`SupabaseConfig::refresh_margin`].
/// - **Single flight**: one lock guards the session; callers queue behind a refresh in
///   progress and get its result. After a 401, [`TokenProvider::refresh_after`] refreshes only
///   if the refused token is still the current one, so many callers refused at once cause one
///   refresh request.
/// - **Rotation**: refresh tokens are single use; the new pair is saved to `state.db`
///   (durable when `save` returns) *before* the new access token is handed out. If saving
///   fails, the new pair is kept in memory, the call fails, and the next call saves it first.
/// - **Offline**: a network error, timeout, 5xx or 429 while refreshing keeps the session
///   ([`AuthError::Offline`], transient for the engine, which backs off and retries); a token
///   that has not expired yet is still handed out meanwhile.
/// - **Signed out by the server**: a refresh token refused with a 4xx (`invalid_grant`,
///   `refresh_token_not_found`, ...) forgets the session and answers
///   [`SyncError::SignedOut`]; there is nothing to retry until the user signs in again.
/// - **Sign out** ([`SupabaseSession::sign_out`]) forgets the session (and tells the server,
///   best effort). It does **not** touch the store: pending ops stay in the outbox under the
///   user who made them and are pushed when that user signs in again.
///
/// `Debug` shows only the user.
pub struct SupabaseSession {
    api: Api,
    state: StateStore,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SupabaseSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self
            .inner
            .try_lock()
            .ok()
            .and_then(|i| i.session.as_ref().map(|s| s.user_id));
        f.debug_struct("SupabaseSession")
            .field("user", &user)
            .finish_non_exhaustive()
    }
}

impl SupabaseSession {
    /// The session of the project in `config`, loaded from `state` (signed out if it holds
    /// none).
    pub async fn open(config: SupabaseConfig, state: StateStore) -> Result<Self, AuthError> {
        let api = Api::new(config).map_err(|source| AuthError::Config { source })?;
        Self::with_api(api, state).await
    }

    /// Like [`SupabaseSession::open`], sharing the HTTP client and configuration of `remote`.
    pub async fn for_remote(remote: &SupabaseRemote, state: StateStore) -> Result<Self, AuthError> {
        Self::with_api(remote.api().clone(), state).await
    }

    async fn with_api(api: Api, state: StateStore) -> Result<Self, AuthError> {
        let session = state.load().await?;
        let mut inner = Inner {
            session: None,
            token: None,
            unsaved: false,
        };
        inner.set(session);
        Ok(Self {
            api,
            state,
            inner: Mutex::new(inner),
        })
    }

    /// The signed-in user, if any.
    pub async fn current_user(&self) -> Option<UserId> {
        self.inner.lock().await.session.as_ref().map(|s| s.user_id)
    }

    /// When the current access token expires, if signed in.
    pub async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.inner
            .lock()
            .await
            .session
            .as_ref()
            .map(|s| s.expires_at)
    }

    /// Signs in with email and password (`POST /auth/v1/token?grant_type=password`) and saves
    /// the session; answers the user.
    pub async fn sign_in(&self, email: &str, password: &SecretString) -> Result<UserId, AuthError> {
        let mut inner = self.inner.lock().await;
        let body = json!({ "email": email, "password": password.expose_secret() });
        let answer = self
            .api
            .post(
                "auth.sign_in",
                "/auth/v1/token",
                &[("grant_type", "password")],
                None,
                &body,
            )
            .await
            .map_err(|source| match source.class() {
                ErrorClass::Transient => AuthError::Offline { source },
                ErrorClass::Protocol => AuthError::Protocol { source },
                _ if matches!(source.code(), Some("invalid_credentials" | "invalid_grant")) => {
                    AuthError::InvalidCredentials { source }
                }
                _ => AuthError::Rejected { source },
            })?;
        let session = parse_session(&answer)?;
        self.state.save(&session).await?;
        let user = session.user_id;
        inner.set(Some(session));
        inner.unsaved = false;
        tracing::info!(%user, "signed in");
        Ok(user)
    }

    /// Signs out: forgets the session here (`state.db` and memory), then tells the server
    /// (`POST /auth/v1/logout?scope=local`, this device only; best effort: offline, the
    /// refresh token simply expires on the server). Pending ops are kept (see the type docs).
    pub async fn sign_out(&self) -> Result<(), AuthError> {
        let mut inner = self.inner.lock().await;
        let Some(session) = inner.session.take() else {
            return Ok(());
        };
        self.state.clear().await.inspect_err(|_| {
            inner.session = Some(session.clone());
        })?;
        inner.set(None);
        inner.unsaved = false;
        let sent = self
            .api
            .post(
                "auth.sign_out",
                "/auth/v1/logout",
                &[("scope", "local")],
                Some(session.access_token.expose_secret()),
                &json!({}),
            )
            .await;
        if let Err(e) = sent {
            tracing::info!(error = %e, "the server was not told about the sign-out");
        }
        tracing::info!(user = %session.user_id, "signed out");
        Ok(())
    }

    /// The current access token, refreshed first if it expires within the margin.
    pub async fn access_token(&self) -> Result<Arc<AccessToken>, AuthError> {
        let mut inner = self.inner.lock().await;
        self.save_pending(&mut inner).await?;
        let (expiring, expired) = {
            let s = inner.session.as_ref().ok_or(AuthError::NotSignedIn)?;
            let now = Utc::now();
            (
                s.expires_within(now, self.api.config().refresh_margin),
                s.expires_within(now, std::time::Duration::ZERO),
            )
        };
        if !expiring {
            return inner.token.clone().ok_or(AuthError::NotSignedIn);
        }
        match self.refresh_locked(&mut inner).await {
            Err(AuthError::Offline { source }) if !expired => {
                tracing::info!(error = %source, "early refresh failed, the current token is still valid");
                inner.token.clone().ok_or(AuthError::NotSignedIn)
            }
            other => other,
        }
    }

    /// Refreshes now, whatever the expiry.
    pub async fn refresh_now(&self) -> Result<Arc<AccessToken>, AuthError> {
        let mut inner = self.inner.lock().await;
        self.save_pending(&mut inner).await?;
        self.refresh_locked(&mut inner).await
    }

    /// Refreshes unless `refused` is no longer the current token (someone refreshed
    /// meanwhile: answer the current one).
    pub async fn refresh_after_refusal(
        &self,
        refused: &AccessToken,
    ) -> Result<Arc<AccessToken>, AuthError> {
        let mut inner = self.inner.lock().await;
        self.save_pending(&mut inner).await?;
        match &inner.token {
            None => Err(AuthError::NotSignedIn),
            Some(t) if t.secret() != refused.secret() => Ok(t.clone()),
            Some(_) => self.refresh_locked(&mut inner).await,
        }
    }

    /// Saves a rotated session whose save failed earlier.
    async fn save_pending(&self, inner: &mut Inner) -> Result<(), AuthError> {
        if inner.unsaved {
            if let Some(s) = &inner.session {
                self.state.save(s).await?;
            }
            inner.unsaved = false;
        }
        Ok(())
    }

    /// `POST /auth/v1/token?grant_type=refresh_token`, under the lock.
    async fn refresh_locked(&self, inner: &mut Inner) -> Result<Arc<AccessToken>, AuthError> {
        let (user, body) = {
            let s = inner.session.as_ref().ok_or(AuthError::NotSignedIn)?;
            (
                s.user_id,
                json!({ "refresh_token": s.refresh_token.expose_secret() }),
            )
        };
        let answer = self
            .api
            .post(
                "auth.refresh",
                "/auth/v1/token",
                &[("grant_type", "refresh_token")],
                None,
                &body,
            )
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(source) => {
                return Err(match source.class() {
                    ErrorClass::Transient => {
                        tracing::warn!(%user, error = %source, "refresh failed, offline: session kept");
                        AuthError::Offline { source }
                    }
                    ErrorClass::Protocol => AuthError::Protocol { source },
                    _ => {
                        tracing::warn!(%user, error = %source, "refresh token refused: signed out");
                        self.state.clear().await?;
                        inner.set(None);
                        inner.unsaved = false;
                        AuthError::SignedOut { source }
                    }
                });
            }
        };
        let session = parse_session(&answer)?;
        // Persist the rotated pair before anyone uses the new access token: the server has
        // consumed the old refresh token.
        let saved = self.state.save(&session).await;
        let expires_at = session.expires_at;
        inner.set(Some(session));
        inner.unsaved = saved.is_err();
        saved?;
        tracing::info!(%user, %expires_at, "session refreshed");
        inner.token.clone().ok_or(AuthError::NotSignedIn)
    }
}

fn parse_session(answer: &Answer) -> Result<AuthSession, AuthError> {
    answer
        .json::<TokenAnswer>("a GoTrue session")
        .map(TokenAnswer::into_session)
        .map_err(|source| AuthError::Protocol { source })
}

#[async_trait]
impl TokenProvider for SupabaseSession {
    async fn token(&self) -> Result<Arc<AccessToken>> {
        Ok(self.access_token().await?)
    }

    async fn refresh(&self) -> Result<Arc<AccessToken>> {
        Ok(self.refresh_now().await?)
    }

    async fn refresh_after(&self, refused: &AccessToken) -> Result<Arc<AccessToken>> {
        Ok(self.refresh_after_refusal(refused).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supabase::errors::{ErrorClass, HttpError};

    #[test]
    fn the_signed_out_error_says_signed_out_once() {
        let auth = AuthError::SignedOut {
            source: HttpError::Api {
                class: ErrorClass::BadRequest,
                status: 400,
                code: Some("refresh_token_already_used".into()),
                message: "Invalid Refresh Token: Already Used".into(),
                retry_after: None,
            },
        };
        let text = SyncError::from(auth).to_string();
        assert_eq!(
            text.matches("signed out by the server").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("Invalid Refresh Token: Already Used"),
            "{text}"
        );
    }
}
