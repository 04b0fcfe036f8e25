//! The [`Remote`] trait: what the engine asks of a cloud, and the wire types of
//! `PROTOCOL.md`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use luma_model::{Hlc, OpKind, PatternFilter, PatternId, PatternTab, RecordKey, Row, UserId};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SyncError};
use crate::token::AccessToken;

pub use luma_store::PulledRow as RemoteRow;

/// One change of a push batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Table.
    pub table: String,
    /// Record key (canonical text).
    pub key: RecordKey,
    /// Stamp of the write.
    pub hlc: Hlc,
    /// Upsert or delete.
    pub op: OpKind,
    /// The row's synced columns for an upsert; `None` for a delete.
    pub row: Option<Row>,
}

/// Why the server refused a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectCode {
    /// The user may not write this record.
    Forbidden,
    /// The row is malformed or breaks a server rule.
    Invalid,
    /// A constraint other than the key conflicts (for example a unique name).
    Conflict,
    /// The parent row does not exist or is deleted on the server.
    MissingParent,
    /// The change's stamp is ahead of the server clock by more than the server's allowed skew
    /// (default 5 minutes; `luma.config.max_clock_skew_ms`, or
    /// `MemoryRemote::set_max_clock_skew`): a device clock far in the future.
    ClockSkew,
}

impl RejectCode {
    /// The wire text.
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectCode::Forbidden => "forbidden",
            RejectCode::Invalid => "invalid",
            RejectCode::Conflict => "conflict",
            RejectCode::MissingParent => "missing_parent",
            RejectCode::ClockSkew => "clock_skew",
        }
    }
}

/// What the server did with one change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The change is now the server state (or the identical write already was: a resend).
    Applied,
    /// The server holds a newer write of the record; its state is returned.
    Superseded {
        /// The server's stamp.
        hlc: Hlc,
        /// True if the server state is a tombstone.
        deleted: bool,
        /// The server's row (`None` for a tombstone).
        row: Option<Row>,
    },
    /// The server refused this change permanently (other changes of the batch still apply).
    Rejected {
        /// Human-readable reason.
        reason: String,
        /// Machine-readable code.
        code: RejectCode,
    },
}

/// The outcome of one change, in the order of the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeOutcome {
    /// Table of the change.
    pub table: String,
    /// Key of the change.
    pub key: RecordKey,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// One venue the signed-in user can see: owned or joined (`luma_memberships()`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Membership {
    /// The venue's id.
    pub venue_id: String,
    /// The user's role as the server names it (`"owner"`, `"member"`, `"editor"`).
    pub role: String,
}

/// The upper bound of one pull cycle (opaque text from [`Remote::watermark`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Watermark(pub String);

/// A request for one page of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Table.
    pub table: String,
    /// Where the previous page ended (`None`: from the start).
    pub cursor: Option<String>,
    /// Most rows to return.
    pub limit: u32,
    /// The cycle's watermark.
    pub watermark: Watermark,
}

/// One page of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullPage {
    /// Rows in server change order, each once, with its newest state as of the watermark.
    pub rows: Vec<RemoteRow>,
    /// The cursor to store with this page (`None`: keep the previous one).
    pub cursor: Option<String>,
    /// More rows below the watermark follow.
    pub has_more: bool,
    /// The cursor is older than the server's tombstone horizon: pull the table from the start.
    pub resync_required: bool,
}

/// A community pattern search: one page of one tab (`luma_search_patterns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// The tab.
    pub tab: PatternTab,
    /// Text and category filter.
    pub filter: PatternFilter,
    /// Page size (the server clamps it to 1..=200).
    pub limit: u32,
    /// `None` for the first page, else the previous page's [`SearchPage::next_cursor`].
    pub cursor: Option<String>,
}

impl SearchRequest {
    /// The first page of `tab` with `filter`, 50 rows.
    pub fn new(tab: PatternTab, filter: PatternFilter) -> Self {
        Self {
            tab,
            filter,
            limit: 50,
            cursor: None,
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternSummary {
    /// The pattern.
    pub id: PatternId,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Category.
    pub category: Option<String>,
    /// The owner's profile display name (else the row's `author_name`).
    pub author_name: Option<String>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
    /// Published to the community.
    pub is_verified: bool,
    /// Owner.
    pub uid: Option<UserId>,
}

/// One page of search results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    /// Results in search order.
    pub results: Vec<PatternSummary>,
    /// The cursor of the next page (`None`: this was the last page).
    pub next_cursor: Option<String>,
}

/// A pattern and its live implementations as the server holds them, in the wire form of pulled
/// rows (`luma_fetch_pattern`): what an import copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternBundle {
    /// The pattern row.
    pub pattern: Row,
    /// Its implementation rows, by id.
    pub implementations: Vec<Row>,
}

/// What the engine asks of a cloud.
///
/// Contract (see `PROTOCOL.md` in this crate for the wire form):
///
/// - **Identity.** Every call carries the caller's [`AccessToken`]; the remote decides what the
///   token's user may see and write (row-level security). A refused token is
///   [`SyncError::Unauthorized`](crate::SyncError::Unauthorized); the engine refreshes the
///   token once and retries.
/// - **push** applies one batch atomically, in one server transaction, in the given order
///   (the engine sends upserts parents first, then deletes children first), and answers one
///   [`ChangeOutcome`] per change in the same order. Conflicts resolve per row by last writer
///   wins on [`Hlc`]; a delete is a write (a tombstone). A stamp identifies one write (it
///   carries the writer's site id): a change whose stamp equals the server's is a resend,
///   answered [`Outcome::Applied`] whatever its op, and changes nothing. A parent delete
///   tombstones the live children with the parent's stamp; an upsert under a tombstoned,
///   missing or invisible parent is rejected `missing_parent`.
///   **Idempotent**: re-sending a change already applied (same stamp) answers
///   [`Outcome::Applied`] and changes nothing, so a push whose response was lost can be
///   re-sent. A refused change is [`Outcome::Rejected`] and does not stop the others. An
///   error return means nothing of the batch may be assumed (it may or may not have been
///   applied; re-sending is safe).
/// - **pull** returns rows of one table changed after `cursor` and at or before the
///   watermark, in server change order, each once with its newest state as of the
///   watermark, only rows the user may see. Pages never skip a row (even one committed late)
///   and, for one watermark, all tables form a consistent cut: a child row returned has its
///   parent returned in the same cycle or earlier. Stop on `has_more == false`.
/// - **watermark** fixes the upper bound of one pull cycle.
///
/// Every method may fail with [`SyncError::Transient`](crate::SyncError::Transient) (the
/// engine backs off and retries).
#[async_trait]
pub trait Remote: Send + Sync + 'static {
    /// Applies a batch of changes; one outcome per change, in order.
    async fn push(&self, token: &AccessToken, changes: &[Change]) -> Result<Vec<ChangeOutcome>>;
    /// One page of one table.
    async fn pull(&self, token: &AccessToken, request: &PullRequest) -> Result<PullPage>;
    /// The upper bound for one pull cycle.
    async fn watermark(&self, token: &AccessToken) -> Result<Watermark>;

    /// One page of a community pattern search, with the semantics of `luma_search_patterns`
    /// (cloud `0005_community.sql`, [`luma_model::community`]): only live patterns the user may
    /// read in the tab, query text matched literally and case-insensitively in name or
    /// description, name matches first, keyset pages that never repeat or skip a row.
    ///
    /// The default answers [`SyncError::Unsupported`]: it exists only so remotes written
    /// before this method compile.
    async fn search_patterns(
        &self,
        token: &AccessToken,
        request: &SearchRequest,
    ) -> Result<SearchPage> {
        let _ = (token, request);
        Err(SyncError::Unsupported {
            operation: "search_patterns",
        })
    }

    /// A live pattern the user may read, with its live implementations
    /// (`luma_fetch_pattern`); `None` if there is no such pattern.
    ///
    /// The default answers [`SyncError::Unsupported`] (see [`Remote::search_patterns`]).
    async fn fetch_pattern(
        &self,
        token: &AccessToken,
        pattern: PatternId,
    ) -> Result<Option<PatternBundle>> {
        let _ = (token, pattern);
        Err(SyncError::Unsupported {
            operation: "fetch_pattern",
        })
    }

    /// The venues the user owns or belongs to (`luma_memberships()`), ordered by venue id.
    ///
    /// The engine compares the set between pull cycles: when it changes (the user joined or
    /// left a venue, or was removed from one), the venue-scoped tables are pulled again from
    /// the start, so the rows of a joined venue arrive even though they are older than the
    /// device's cursors, and the rows of a venue the user can no longer see are removed
    /// locally (rows with unpushed edits stay, and those edits are reported when the server
    /// refuses them).
    ///
    /// The default answers [`SyncError::Unsupported`]; the engine then does not track
    /// memberships (a new device still receives everything it may see).
    async fn memberships(&self, token: &AccessToken) -> Result<Vec<Membership>> {
        let _ = token;
        Err(SyncError::Unsupported {
            operation: "memberships",
        })
    }
}

// A shared or boxed remote (also `Arc<dyn Remote>` / `Box<dyn Remote>`) is a remote: every
// method forwards, the optional ones included, so a wrapper never loses a capability.
#[async_trait]
impl<R: Remote + ?Sized> Remote for std::sync::Arc<R> {
    async fn push(&self, token: &AccessToken, changes: &[Change]) -> Result<Vec<ChangeOutcome>> {
        (**self).push(token, changes).await
    }
    async fn pull(&self, token: &AccessToken, request: &PullRequest) -> Result<PullPage> {
        (**self).pull(token, request).await
    }
    async fn watermark(&self, token: &AccessToken) -> Result<Watermark> {
        (**self).watermark(token).await
    }
    async fn search_patterns(
        &self,
        token: &AccessToken,
        request: &SearchRequest,
    ) -> Result<SearchPage> {
        (**self).search_patterns(token, request).await
    }
    async fn fetch_pattern(
        &self,
        token: &AccessToken,
        pattern: PatternId,
    ) -> Result<Option<PatternBundle>> {
        (**self).fetch_pattern(token, pattern).await
    }
    async fn memberships(&self, token: &AccessToken) -> Result<Vec<Membership>> {
        (**self).memberships(token).await
    }
}

#[async_trait]
impl<R: Remote + ?Sized> Remote for Box<R> {
    async fn push(&self, token: &AccessToken, changes: &[Change]) -> Result<Vec<ChangeOutcome>> {
        (**self).push(token, changes).await
    }
    async fn pull(&self, token: &AccessToken, request: &PullRequest) -> Result<PullPage> {
        (**self).pull(token, request).await
    }
    async fn watermark(&self, token: &AccessToken) -> Result<Watermark> {
        (**self).watermark(token).await
    }
    async fn search_patterns(
        &self,
        token: &AccessToken,
        request: &SearchRequest,
    ) -> Result<SearchPage> {
        (**self).search_patterns(token, request).await
    }
    async fn fetch_pattern(
        &self,
        token: &AccessToken,
        pattern: PatternId,
    ) -> Result<Option<PatternBundle>> {
        (**self).fetch_pattern(token, pattern).await
    }
    async fn memberships(&self, token: &AccessToken) -> Result<Vec<Membership>> {
        (**self).memberships(token).await
    }
}

/// Decodes a remote function's JSON answer; anything unexpected is a [`SyncError::Protocol`]
/// naming the function, with the decoder's error as its source.
pub(crate) fn parse_answer<T: serde::de::DeserializeOwned>(
    what: &str,
    v: serde_json::Value,
) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        SyncError::protocol(format!("{what} answered something unexpected: {e}")).with_source(e)
    })
}
