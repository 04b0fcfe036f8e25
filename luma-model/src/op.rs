//! Pending operations: the outbox entries the store records and the sync engine drains.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;
use crate::ids::UserId;
use crate::spec::RecordKey;

/// Identifies one pending op (stable while edits of the same record collapse into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpId(pub i64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op#{}", self.0)
    }
}

/// What a pending op does to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// The record was created or changed: push its current row.
    Upsert,
    /// The record was deleted: push a tombstone.
    Delete,
}

impl OpKind {
    /// The stored text.
    pub fn as_str(&self) -> &'static str {
        match self {
            OpKind::Upsert => "upsert",
            OpKind::Delete => "delete",
        }
    }
}

impl FromStr for OpKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "upsert" => Ok(OpKind::Upsert),
            "delete" => Ok(OpKind::Delete),
            other => Err(format!("unknown op kind {other:?}")),
        }
    }
}

/// One pending op: the newest unpushed change of one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOp {
    /// Op id.
    pub id: OpId,
    /// Table of the record.
    pub table: String,
    /// Key of the record.
    pub key: RecordKey,
    /// Stamp of the newest change (repeated edits collapse and keep the newest).
    pub hlc: Hlc,
    /// Upsert or delete.
    pub kind: OpKind,
    /// The user signed in when the change was made (`None`: made while signed out).
    pub user_id: Option<UserId>,
    /// Failed push attempts so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// True if the server rejected the op permanently (kept until retried or discarded).
    pub rejected: bool,
    /// Earliest time (ms since epoch) of the next attempt.
    pub next_retry_ms: Option<i64>,
}
