//! [`SupabaseRemote`]: the [`Remote`] over PostgREST (`POST {url}/rest/v1/rpc/<fn>`).

use async_trait::async_trait;
use luma_model::PatternId;
use serde_json::{json, Value};

use super::config::SupabaseConfig;
use super::errors::HttpError;
use super::http::Api;
use crate::error::{Result, SyncError};
use crate::remote::{
    Change, ChangeOutcome, Membership, PatternBundle, PullPage, PullRequest, Remote, SearchPage,
    SearchRequest, Watermark,
};
use crate::token::AccessToken;

/// A [`Remote`] that calls the cloud functions (`luma_push`, `luma_pull`, `luma_watermark`,
/// ...) of a Supabase project through PostgREST, as the signed-in user: each call is
/// `POST {url}/rest/v1/rpc/<function>` with the named arguments as a JSON object, `apikey`,
/// `Authorization: Bearer <access token>` and `X-Client-Info`. PostgREST verifies the token
/// and runs the function in one transaction with the user's claims, so row-level security
/// decides what the user sees and writes.
///
/// Errors map by status, PostgREST code and SQLSTATE (see [`super::errors`]): a refused
/// token is [`SyncError::Unauthorized`] (the engine refreshes once and retries), network
/// errors, timeouts, 5xx, 429, `40001` and `40P01` are [`SyncError::Transient`] (retried
/// in the request, bounded, then by the engine), refusals are [`SyncError::Permanent`] and an
/// answer that is not the expected JSON is [`SyncError::Protocol`] (nothing is applied).
///
/// Clones share one HTTP client (connection pool). `Debug` shows no key.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use luma_sync::supabase::{SupabaseConfig, SupabaseRemote};
/// let remote = SupabaseRemote::new(SupabaseConfig::new("https://abcd.supabase.co", "anon-key"))?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SupabaseRemote {
    pub(super) api: Api,
}

impl std::fmt::Debug for SupabaseRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupabaseRemote")
            .field("config", self.api.config())
            .finish_non_exhaustive()
    }
}

impl SupabaseRemote {
    /// A remote for the project of `config` (fails on a URL that does not parse).
    pub fn new(config: SupabaseConfig) -> Result<Self, HttpError> {
        Ok(Self {
            api: Api::new(config)?,
        })
    }

    /// Calls `function` with named `args` as the token's user; answers the JSON result.
    async fn rpc(&self, token: &AccessToken, function: &'static str, args: Value) -> Result<Value> {
        let path = format!("/rest/v1/rpc/{function}");
        let answer = self
            .api
            .post(function, &path, &[], Some(token.secret()), &args)
            .await?;
        Ok(answer.json::<Value>(function)?)
    }

    /// Joins the venue with this share code (`luma_join_venue`); answers its id. An unknown
    /// share code (HTTP 404, `PT404`) is a [`SyncError::Permanent`] "not found", not retried.
    pub async fn join_venue(&self, token: &AccessToken, share_code: &str) -> Result<String> {
        let out = self
            .rpc(token, "luma_join_venue", json!({ "p_code": share_code }))
            .await?;
        out.get("venue_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SyncError::protocol(format!("luma_join_venue answered {out}")))
    }

    /// Leaves a venue (`luma_leave_venue`); answers whether the user was a member.
    pub async fn leave_venue(&self, token: &AccessToken, venue: &str) -> Result<bool> {
        let out = self
            .rpc(token, "luma_leave_venue", json!({ "p_venue": venue }))
            .await?;
        out.get("left")
            .and_then(Value::as_bool)
            .ok_or_else(|| SyncError::protocol(format!("luma_leave_venue answered {out}")))
    }
}

use crate::remote::parse_answer as parse;

#[async_trait]
impl Remote for SupabaseRemote {
    async fn push(&self, token: &AccessToken, changes: &[Change]) -> Result<Vec<ChangeOutcome>> {
        let body = json!({ "changes": changes });
        let out = self.rpc(token, "luma_push", body).await?;
        let outcomes: Vec<ChangeOutcome> = parse("luma_push", out)?;
        if outcomes.len() != changes.len() {
            return Err(SyncError::protocol(format!(
                "luma_push answered {} outcomes for {} changes",
                outcomes.len(),
                changes.len()
            )));
        }
        tracing::debug!(changes = changes.len(), "pushed a batch to Supabase");
        Ok(outcomes)
    }

    async fn pull(&self, token: &AccessToken, request: &PullRequest) -> Result<PullPage> {
        let body = json!({
            "p_table": request.table,
            "p_cursor": request.cursor,
            "p_limit": request.limit,
            "p_watermark": request.watermark.0,
        });
        parse("luma_pull", self.rpc(token, "luma_pull", body).await?)
    }

    async fn watermark(&self, token: &AccessToken) -> Result<Watermark> {
        match self.rpc(token, "luma_watermark", json!({})).await? {
            Value::String(w) => Ok(Watermark(w)),
            other => Err(SyncError::protocol(format!(
                "luma_watermark answered {other}"
            ))),
        }
    }

    async fn search_patterns(
        &self,
        token: &AccessToken,
        request: &SearchRequest,
    ) -> Result<SearchPage> {
        let body = json!({
            "p_tab": request.tab.as_str(),
            "p_query": request.filter.query,
            "p_category": request.filter.category,
            "p_limit": request.limit,
            "p_cursor": request.cursor,
        });
        parse(
            "luma_search_patterns",
            self.rpc(token, "luma_search_patterns", body).await?,
        )
    }

    async fn fetch_pattern(
        &self,
        token: &AccessToken,
        pattern: PatternId,
    ) -> Result<Option<PatternBundle>> {
        let body = json!({ "p_pattern": pattern.as_uuid() });
        let out = self.rpc(token, "luma_fetch_pattern", body).await?;
        if !out.is_object() {
            return Err(SyncError::protocol(format!(
                "luma_fetch_pattern answered {out}"
            )));
        }
        // `{"pattern": null, ...}` means there is no such pattern the caller may read.
        if out.get("pattern").is_none_or(Value::is_null) {
            return Ok(None);
        }
        parse("luma_fetch_pattern", out).map(Some)
    }

    async fn memberships(&self, token: &AccessToken) -> Result<Vec<Membership>> {
        let out = self.rpc(token, "luma_memberships", json!({})).await?;
        if !out.is_array() {
            return Err(SyncError::protocol(format!(
                "luma_memberships answered {out}"
            )));
        }
        parse("luma_memberships", out)
    }
}
