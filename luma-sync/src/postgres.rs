//! [`PostgresRemote`]: the [`Remote`] over a PostgreSQL connection pool that runs the cloud
//! functions (`luma_push`, `luma_pull`, `luma_watermark`, ...) exactly as PostgREST runs them for
//! a Supabase client: one transaction per call that first sets `role` to `authenticated` and
//! `request.jwt.claims` to `{"sub": <user>, "role": "authenticated"}`, transaction-locally, so
//! row-level security decides what the user sees and writes.
//!
//! **Tokens.** A direct database connection has no JWT verification in front of it, so this
//! remote keeps its own small session table: [`PostgresRemote::sign_in`] issues an
//! [`AccessToken`] whose secret is a random value bound to the user in this process, and every
//! call maps the secret back to the user (an unknown or expired secret answers
//! [`SyncError::Unauthorized`]). This is for tests, examples and trusted back-ends that already
//! authenticated their users; in production the app talks to Supabase, where PostgREST verifies
//! the real JWT and sets the same claims.
//!
//! **Administration** (migrations, tombstone purges, test users) goes through
//! [`PostgresAdmin`], a separate handle that never serves app calls.
//!
//! **Errors.** Connection failures, pool timeouts, serialization failures (`40001`), deadlocks
//! (`40P01`) and server shutdowns are [`SyncError::Transient`]; privilege errors (`42501`) and
//! other refusals are [`SyncError::Permanent`] (a "not found", `42883`, `42P01` or a function's
//! `PT404` such as an unknown share code, says `not found: ...`); an answer that does not parse
//! is [`SyncError::Protocol`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use luma_model::{PatternId, UserId};
use rand::Rng;
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use thiserror::Error;

use crate::cloud::CloudError;
use crate::error::{Result, SyncError};
use crate::remote::{
    Change, ChangeOutcome, Membership, PatternBundle, PullPage, PullRequest, Remote, SearchPage,
    SearchRequest, Watermark,
};
use crate::sqlstate::classify_sqlstate;
use crate::token::AccessToken;

/// Maps a driver error to the engine's error families.
pub fn map_sqlx_error(e: sqlx::Error) -> SyncError {
    let mapped = match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = format!("{} (SQLSTATE {code})", db.message());
            classify_sqlstate(&code).into_error(message)
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => SyncError::transient(e.to_string()),
        sqlx::Error::Protocol(_)
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::RowNotFound => SyncError::protocol(e.to_string()),
        _ => SyncError::permanent(e.to_string()),
    };
    mapped.with_source(e)
}

/// The claims PostgREST would set for a signed-in user.
fn claims(user: UserId) -> String {
    json!({"sub": user.to_string(), "role": "authenticated"}).to_string()
}

/// Sets `role` and `request.jwt.claims` transaction-locally for `user` (as PostgREST does).
async fn act_as(conn: &mut PgConnection, user: UserId) -> Result<()> {
    sqlx::query(
        "SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)",
    )
    .bind(claims(user))
    .execute(conn)
    .await
    .map_err(map_sqlx_error)?;
    Ok(())
}

/// A [`Remote`] over a PostgreSQL pool running the cloud schema ([`crate::cloud`]). Clones
/// share the pool and the session table.
#[derive(Clone)]
pub struct PostgresRemote {
    pool: PgPool,
    sessions: Arc<Mutex<HashMap<String, UserId>>>,
}

impl std::fmt::Debug for PostgresRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRemote").finish_non_exhaustive()
    }
}

impl PostgresRemote {
    /// A remote over `pool`. The pool's login role needs only the right to `SET ROLE
    /// authenticated` (on a plain PostgreSQL the migrations grant `authenticated` to the
    /// migrating role; on Supabase use the `authenticator` role).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            sessions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A remote over a new pool connected to `url` (`postgres://user@host:port/db`), so an app
    /// needs no sqlx of its own. Connection errors are classified as for every call
    /// ([`map_sqlx_error`]: a refused connection is transient).
    pub async fn connect(url: &str) -> crate::Result<Self> {
        let pool = PgPool::connect(url).await.map_err(map_sqlx_error)?;
        Ok(Self::new(pool))
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, UserId>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signs `user` in: a token for this remote (see the module docs: the caller vouches for
    /// the user; Supabase verifies real JWTs instead).
    pub fn sign_in(&self, user: UserId) -> AccessToken {
        let nonce: u128 = rand::thread_rng().gen();
        let secret = format!("pg-{user}-{nonce:032x}");
        self.sessions().insert(secret.clone(), user);
        AccessToken::new(user, secret)
    }

    /// Ends every session of `user`: their tokens answer [`SyncError::Unauthorized`].
    pub fn sign_out(&self, user: UserId) {
        self.sessions().retain(|_, u| *u != user);
    }

    fn user_of(&self, token: &AccessToken) -> Result<UserId> {
        match self.sessions().get(token.secret()) {
            Some(u) if *u == token.user() => Ok(*u),
            _ => Err(SyncError::unauthorized("unknown or expired session")),
        }
    }

    async fn begin_as(&self, token: &AccessToken) -> Result<Transaction<'static, Postgres>> {
        let user = self.user_of(token)?;
        let mut tx = self.pool.begin().await.map_err(map_sqlx_error)?;
        act_as(&mut tx, user).await?;
        Ok(tx)
    }

    /// Runs `sql` (one function call answering one JSON value) as the token's user.
    async fn call_json<'q>(
        &self,
        token: &AccessToken,
        sql: &'q str,
        bind: impl FnOnce(
                sqlx::query::QueryAs<'q, Postgres, (Value,), sqlx::postgres::PgArguments>,
            )
                -> sqlx::query::QueryAs<'q, Postgres, (Value,), sqlx::postgres::PgArguments>
            + Send,
    ) -> Result<Value> {
        let mut tx = self.begin_as(token).await?;
        let (out,): (Value,) = bind(sqlx::query_as(sql))
            .fetch_one(&mut *tx)
            .await
            .map_err(map_sqlx_error)?;
        tx.commit().await.map_err(map_sqlx_error)?;
        Ok(out)
    }

    /// Joins the venue with this share code; answers its id. An unknown share code is a
    /// [`SyncError::Permanent`] "not found" (SQLSTATE `PT404`).
    pub async fn join_venue(&self, token: &AccessToken, share_code: &str) -> Result<String> {
        let out = self
            .call_json(token, "SELECT luma_join_venue($1)", |q| q.bind(share_code))
            .await?;
        out.get("venue_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SyncError::protocol(format!("luma_join_venue answered {out}")))
    }

    /// Leaves a venue; answers whether the user was a member.
    pub async fn leave_venue(&self, token: &AccessToken, venue: &str) -> Result<bool> {
        let id: sqlx::types::Uuid = venue
            .parse()
            .map_err(|_| SyncError::permanent(format!("{venue:?} is not a venue id")))?;
        let out = self
            .call_json(token, "SELECT luma_leave_venue($1)", |q| q.bind(id))
            .await?;
        Ok(out.get("left").and_then(Value::as_bool).unwrap_or(false))
    }
}

use crate::remote::parse_answer as parse;

#[async_trait]
impl Remote for PostgresRemote {
    async fn push(&self, token: &AccessToken, changes: &[Change]) -> Result<Vec<ChangeOutcome>> {
        // The batch is serialized straight into the request and the outcomes are decoded
        // straight from the answer (no intermediate `Value` tree of either).
        let mut tx = self.begin_as(token).await?;
        let (outcomes,): (sqlx::types::Json<Vec<ChangeOutcome>>,) =
            sqlx::query_as("SELECT luma_push($1)")
                .bind(sqlx::types::Json(changes))
                .fetch_one(&mut *tx)
                .await
                .map_err(map_sqlx_error)?;
        tx.commit().await.map_err(map_sqlx_error)?;
        let outcomes = outcomes.0;
        if outcomes.len() != changes.len() {
            return Err(SyncError::protocol(format!(
                "luma_push answered {} outcomes for {} changes",
                outcomes.len(),
                changes.len()
            )));
        }
        tracing::debug!(changes = changes.len(), "pushed a batch to PostgreSQL");
        Ok(outcomes)
    }

    async fn pull(&self, token: &AccessToken, request: &PullRequest) -> Result<PullPage> {
        let limit = i32::try_from(request.limit).unwrap_or(i32::MAX);
        let mut tx = self.begin_as(token).await?;
        // The page is decoded straight from the answer's JSON text into the wire types (no
        // intermediate `Value` tree of the whole page).
        let (page,): (sqlx::types::Json<PullPage>,) =
            sqlx::query_as("SELECT luma_pull($1, $2, $3, $4)")
                .bind(request.table.as_str())
                .bind(request.cursor.as_deref())
                .bind(limit)
                .bind(request.watermark.0.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(map_sqlx_error)?;
        tx.commit().await.map_err(map_sqlx_error)?;
        Ok(page.0)
    }

    async fn search_patterns(
        &self,
        token: &AccessToken,
        request: &SearchRequest,
    ) -> Result<SearchPage> {
        let limit = i32::try_from(request.limit).unwrap_or(i32::MAX);
        let out = self
            .call_json(
                token,
                "SELECT luma_search_patterns($1, $2, $3, $4, $5)",
                |q| {
                    q.bind(request.tab.as_str())
                        .bind(request.filter.query.as_str())
                        .bind(request.filter.category.as_deref())
                        .bind(limit)
                        .bind(request.cursor.as_deref())
                },
            )
            .await?;
        parse("luma_search_patterns", out)
    }

    async fn fetch_pattern(
        &self,
        token: &AccessToken,
        pattern: PatternId,
    ) -> Result<Option<PatternBundle>> {
        let id = pattern.as_uuid();
        let out = self
            .call_json(token, "SELECT luma_fetch_pattern($1)", |q| q.bind(id))
            .await?;
        // `{"pattern": null, ...}` means there is no such pattern the caller may read.
        if out.get("pattern").is_none_or(Value::is_null) {
            return Ok(None);
        }
        parse("luma_fetch_pattern", out).map(Some)
    }

    async fn memberships(&self, token: &AccessToken) -> Result<Vec<Membership>> {
        let out = self
            .call_json(token, "SELECT luma_memberships()", |q| q)
            .await?;
        parse("luma_memberships", out)
    }

    async fn watermark(&self, token: &AccessToken) -> Result<Watermark> {
        let mut tx = self.begin_as(token).await?;
        let (w,): (String,) = sqlx::query_as("SELECT luma_watermark()")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_sqlx_error)?;
        tx.commit().await.map_err(map_sqlx_error)?;
        Ok(Watermark(w))
    }
}

/// Errors of [`PostgresAdmin`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AdminError {
    /// Applying the schema failed.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// A database call failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// The service-role handle: migrations, tombstone purges and test fixtures (users, profiles,
/// memberships). It runs as the pool's login role or as `service_role` (which bypasses
/// row-level security) and never serves app calls: keep it out of the app's reach.
#[derive(Clone)]
pub struct PostgresAdmin {
    pool: PgPool,
}

impl std::fmt::Debug for PostgresAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresAdmin").finish_non_exhaustive()
    }
}

impl PostgresAdmin {
    /// An admin handle over `pool` (a role that may apply migrations).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// An admin handle over a new pool connected to `url`.
    pub async fn connect(url: &str) -> Result<Self, AdminError> {
        Ok(Self::new(PgPool::connect(url).await?))
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies every pending cloud migration.
    pub async fn migrate(&self) -> Result<(), AdminError> {
        crate::cloud::migrate(&self.pool).await?;
        Ok(())
    }

    async fn service_tx(&self) -> Result<Transaction<'static, Postgres>, AdminError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "SELECT set_config('role', 'service_role', true), \
             set_config('request.jwt.claims', '{\"role\":\"service_role\"}', true)",
        )
        .execute(&mut *tx)
        .await?;
        Ok(tx)
    }

    /// Hard-deletes tombstones older than `horizon` (as the service role); answers the count
    /// purged per table. Clients whose cursor is older, from a pass that started before this
    /// purge, are told `resync_required` (cloud migration 0012: a pass from null started
    /// after it is served to its end).
    pub async fn purge_tombstones(
        &self,
        horizon: std::time::Duration,
    ) -> Result<HashMap<String, i64>, AdminError> {
        let mut tx = self.service_tx().await?;
        let secs = horizon.as_secs_f64();
        let (out,): (Value,) =
            sqlx::query_as("SELECT luma_purge_tombstones(make_interval(secs => $1))")
                .bind(secs)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        let counts = out
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        tracing::info!(?counts, "purged tombstones");
        Ok(counts)
    }

    /// Creates (or renames) the profile of `user` (tests and examples: Supabase creates users
    /// through its auth service).
    pub async fn create_user(&self, user: UserId, display_name: &str) -> Result<(), AdminError> {
        let id: sqlx::types::Uuid = user.into();
        sqlx::query(
            "INSERT INTO public.profiles (id, display_name) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name",
        )
        .bind(id)
        .bind(display_name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes `user` a member of `venue` (as joining by share code would).
    pub async fn add_member(&self, venue: &str, user: UserId) -> Result<(), AdminError> {
        let mut tx = self.service_tx().await?;
        sqlx::query(
            "INSERT INTO public.venue_members (venue_id, user_id) VALUES ($1::uuid, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(venue)
        .bind(sqlx::types::Uuid::from(user))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes `user` from `venue` (as the owner would).
    pub async fn remove_member(&self, venue: &str, user: UserId) -> Result<(), AdminError> {
        let mut tx = self.service_tx().await?;
        sqlx::query("DELETE FROM public.venue_members WHERE venue_id = $1::uuid AND user_id = $2")
            .bind(venue)
            .bind(sqlx::types::Uuid::from(user))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A watermark above every transaction that started before this call (waits for them to
    /// finish). The watermark is the cluster-wide snapshot xmin, so a transaction open in any
    /// database of the server holds it back; this waits at most `timeout`.
    pub async fn settled_watermark(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Watermark, AdminError> {
        let (now,): (String,) = sqlx::query_as("SELECT pg_current_xact_id()::text")
            .fetch_one(&self.pool)
            .await?;
        let now: u64 = now.parse().unwrap_or(0);
        let start = std::time::Instant::now();
        loop {
            let (wm,): (String,) =
                sqlx::query_as("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
                    .fetch_one(&self.pool)
                    .await?;
            if wm.parse::<u64>().unwrap_or(0) > now || start.elapsed() > timeout {
                return Ok(Watermark(wm));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
