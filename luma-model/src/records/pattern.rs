//! Patterns, their implementations and categories.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{ImplementationId, PatternId, UserId};
use crate::record::{Record, Syncable};
use crate::spec::{Column, Parent, Scope, TableSpec};
use crate::validate;

/// A lighting pattern definition. With `is_verified` set it is a community pattern, readable by
/// every signed-in user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// Id.
    pub id: PatternId,
    /// Owner.
    pub uid: Option<UserId>,
    /// Name (required).
    pub name: String,
    /// Description.
    pub description: String,
    /// Category name (see [`Category`]).
    pub category: Option<String>,
    /// Shared with the community.
    pub is_verified: bool,
    /// Author's display name.
    pub author_name: Option<String>,
    /// The pattern this one was copied from.
    pub forked_from_id: Option<PatternId>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
}

impl Pattern {
    /// A new private pattern with this name.
    pub fn new(name: impl Into<String>) -> Self {
        let now = crate::now();
        Self {
            id: PatternId::new(),
            uid: None,
            name: name.into(),
            description: String::new(),
            category: None,
            is_verified: false,
            author_name: None,
            forked_from_id: None,
            created_at: now,
            updated_at: now,
        }
    }
}

impl Record for Pattern {
    const SPEC: TableSpec = TableSpec {
        name: "patterns",
        columns: &[
            Column::uuid("id"),
            Column::uuid("uid"),
            Column::text("name"),
            Column::text("description"),
            Column::text("category"),
            Column::bool("is_verified"),
            Column::text("author_name"),
            Column::uuid("forked_from_id"),
            Column::timestamp("created_at"),
            Column::timestamp("updated_at"),
        ],
        key: &["id"],
        parents: &[],
        scope: Scope::OwnerOrPublic {
            owner: "uid",
            flag: "is_verified",
        },
    };

    fn validate(&self) -> Result<(), ValidationError> {
        validate::name("patterns", "name", &self.name)?;
        validate::no_nul_all(
            "patterns",
            &[
                ("name", Some(&self.name)),
                ("description", Some(&self.description)),
                ("category", self.category.as_deref()),
                ("author_name", self.author_name.as_deref()),
            ],
        )
    }
}
impl Syncable for Pattern {}

/// The default node graph of a new implementation.
pub fn empty_graph() -> serde_json::Value {
    serde_json::json!({"nodes": [], "edges": []})
}

/// The node graph of a pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Implementation {
    /// Id (the UID used across devices).
    pub id: ImplementationId,
    /// The pattern.
    pub pattern_id: PatternId,
    /// Name.
    pub name: String,
    /// Node graph JSON (an object, by default `{"nodes":[],"edges":[]}`).
    pub graph_json: serde_json::Value,
}

impl Implementation {
    /// A new implementation with an empty graph.
    pub fn new(pattern_id: PatternId, name: impl Into<String>) -> Self {
        Self {
            id: ImplementationId::new(),
            pattern_id,
            name: name.into(),
            graph_json: empty_graph(),
        }
    }
}

impl Record for Implementation {
    const SPEC: TableSpec = TableSpec {
        name: "implementations",
        columns: &[
            Column::uuid("id"),
            Column::uuid("pattern_id"),
            Column::text("name"),
            Column::json("graph_json"),
        ],
        key: &["id"],
        parents: &[Parent::new("pattern_id", "patterns")],
        scope: Scope::Parent {
            column: "pattern_id",
            table: "patterns",
        },
    };

    fn validate(&self) -> Result<(), ValidationError> {
        validate::name("implementations", "name", &self.name)?;
        validate::no_nul("implementations", "name", &self.name)?;
        validate::json_object("implementations", "graph_json", &self.graph_json)?;
        validate::json_value("implementations", "graph_json", &self.graph_json)
    }
}
impl Syncable for Implementation {}

/// A pattern category: local reference data seeded by a migration, never synced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
}

impl Record for Category {
    const SPEC: TableSpec = TableSpec {
        name: "categories",
        columns: &[Column::integer("id"), Column::text("name")],
        key: &["id"],
        parents: &[],
        scope: Scope::LocalOnly,
    };

    fn validate(&self) -> Result<(), ValidationError> {
        validate::name("categories", "name", &self.name)?;
        validate::no_nul("categories", "name", &self.name)
    }
}
