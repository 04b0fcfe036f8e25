//! `state.db`: a separate small SQLite file holding the auth session.
//!
//! Tokens are held in [`SecretString`]s: their `Debug` prints `[REDACTED]`, nothing here logs
//! them, and they are only readable through `expose_secret()`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use luma_model::UserId;
use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row as _, SqlitePool};

use crate::error::{Result, StoreError};

/// The embedded migrations of `state.db`.
pub static STATE_MIGRATOR: Migrator = sqlx::migrate!("./state_migrations");

/// A signed-in session. `Debug` never shows the tokens.
#[derive(Debug, Clone)]
pub struct AuthSession {
    /// The signed-in user.
    pub user_id: UserId,
    /// The access token (a JWT), sent as `Authorization: Bearer`.
    pub access_token: SecretString,
    /// The single-use refresh token.
    pub refresh_token: SecretString,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
}

impl AuthSession {
    /// True if the access token expires within `margin` of `now`.
    pub fn expires_within(&self, now: DateTime<Utc>, margin: Duration) -> bool {
        let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::zero());
        self.expires_at <= now + margin
    }
}

/// The state database. Cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    pool: SqlitePool,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").finish_non_exhaustive()
    }
}

impl StateStore {
    /// Opens or creates `state.db` at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // Deleted and overwritten content is zeroed, so a token that is replaced or
            // signed out does not linger in free space of the file.
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(10));
        Self::connect(options, &path.display().to_string()).await
    }

    /// A private in-memory state database (tests).
    pub async fn open_in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(|source| {
            StoreError::Open {
                path: ":memory:".into(),
                source,
            }
        })?;
        Self::connect(options, ":memory:").await
    }

    async fn connect(options: SqliteConnectOptions, path: &str) -> Result<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.to_string(),
                source,
            })?;
        STATE_MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| match source {
                MigrateError::VersionMissing(version) => StoreError::UnknownMigration { version },
                source => StoreError::Migrate { source },
            })?;
        Ok(Self { pool })
    }

    /// The saved session, if any.
    pub async fn load(&self) -> Result<Option<AuthSession>> {
        let row = sqlx::query(
            "SELECT user_id, access_token, refresh_token, expires_at FROM auth_session WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::sql("reading the auth session"))?;
        let Some(row) = row else { return Ok(None) };
        let bad = |message: String| StoreError::Plugin {
            table: "auth_session".into(),
            message,
        };
        let user: String = row.get("user_id");
        let expires: String = row.get("expires_at");
        Ok(Some(AuthSession {
            user_id: user
                .parse()
                .map_err(|e: luma_model::ParseIdError| bad(e.to_string()))?,
            access_token: SecretString::from(row.get::<String, _>("access_token")),
            refresh_token: SecretString::from(row.get::<String, _>("refresh_token")),
            expires_at: DateTime::parse_from_rfc3339(&expires)
                .map_err(|e| bad(format!("bad expiry: {e}")))?
                .with_timezone(&Utc),
        }))
    }

    /// Saves (replaces) the session. Durable when this returns (`synchronous=FULL`), so a
    /// rotated refresh token is never lost after the server has consumed the old one.
    pub async fn save(&self, session: &AuthSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO auth_session (id, user_id, access_token, refresh_token, expires_at, updated_at) \
             VALUES (1, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) \
             ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, \
             access_token = excluded.access_token, refresh_token = excluded.refresh_token, \
             expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(session.user_id.to_string())
        .bind(session.access_token.expose_secret())
        .bind(session.refresh_token.expose_secret())
        .bind(session.expires_at.to_rfc3339())
        .execute(&self.pool)
        .await
        .map_err(StoreError::sql("saving the auth session"))?;
        tracing::debug!(user = %session.user_id, "auth session saved");
        Ok(())
    }

    /// Forgets the session (sign out) and overwrites it on disk: with `secure_delete` the
    /// deleted row's bytes are zeroed in its page, and a `wal_checkpoint(TRUNCATE)` copies
    /// that page into `state.db` and empties the write-ahead log, where older versions of the
    /// page (with the tokens) were still readable.
    pub async fn clear(&self) -> Result<()> {
        sqlx::query("DELETE FROM auth_session")
            .execute(&self.pool)
            .await
            .map_err(StoreError::sql("clearing the auth session"))?;
        // (An in-memory database has no log; the pragma answers and does nothing.)
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::sql("checkpointing the auth state"))?;
        if busy != 0 {
            tracing::warn!("state.db is busy: the signed-out session stays in its log until the next checkpoint");
        }
        Ok(())
    }
}
