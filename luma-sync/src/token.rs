//! Access tokens and the provider the engine asks for them.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use luma_model::UserId;
use secrecy::{ExposeSecret, SecretString};

use crate::error::Result;

/// A bearer token and the user it signs in. Its `Debug` form never shows the secret.
pub struct AccessToken {
    user: UserId,
    secret: SecretString,
}

impl AccessToken {
    /// A token for `user`.
    pub fn new(user: UserId, secret: impl Into<String>) -> Self {
        Self {
            user,
            secret: SecretString::from(secret.into()),
        }
    }

    /// The signed-in user.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The secret, for a remote to put in its request. Never log it.
    pub fn secret(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("user", &self.user)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Where the engine gets tokens. An app implements it over its auth session (for example
/// Supabase's `/auth/v1/token`).
///
/// Contract: [`TokenProvider::token`] returns the current token cheaply (no network call if
/// it is believed valid); [`TokenProvider::refresh`] obtains a new one (the engine calls it
/// once after the remote answers 401, then retries the call once). Either fails with
/// [`SyncError::NotSignedIn`](crate::SyncError::NotSignedIn) when no user is signed in.
#[async_trait]
pub trait TokenProvider: Send + Sync + 'static {
    /// The current token.
    async fn token(&self) -> Result<Arc<AccessToken>>;
    /// A fresh token (after the remote refused the current one).
    async fn refresh(&self) -> Result<Arc<AccessToken>>;

    /// A fresh token after the remote refused `refused`. A provider that already replaced
    /// `refused` (another caller refreshed meanwhile) answers the current token without a new
    /// refresh: many callers refused at once cause one refresh. The engine calls this; the
    /// default calls [`TokenProvider::refresh`].
    async fn refresh_after(&self, refused: &AccessToken) -> Result<Arc<AccessToken>> {
        let _ = refused;
        self.refresh().await
    }
}

/// A provider that always hands out the same token (tests, service accounts).
#[derive(Debug, Clone)]
pub struct StaticToken(pub Arc<AccessToken>);

impl StaticToken {
    /// A provider of `token`, ready to hand to [`SyncEngine::new`](crate::SyncEngine::new)
    /// (which takes an `Arc<dyn TokenProvider>`): `Arc::new(StaticToken::new(token))`.
    pub fn new(token: AccessToken) -> Self {
        Self(Arc::new(token))
    }
}

#[async_trait]
impl TokenProvider for StaticToken {
    async fn token(&self) -> Result<Arc<AccessToken>> {
        Ok(self.0.clone())
    }
    async fn refresh(&self) -> Result<Arc<AccessToken>> {
        Ok(self.0.clone())
    }
}
