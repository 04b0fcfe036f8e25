//! Community pattern search: the tabs, the text filter and the order shared by the cloud SQL
//! (`luma_search_patterns` in `luma-sync/cloud/migrations/0005_community.sql`), the in-memory
//! remote and the local store, so the three answer the same rows in the same order.
//!
//! - A query matches a pattern whose name or description contains it, case-insensitively and
//!   literally (no wildcard or filter syntax; `%`, `_`, quotes, commas, parentheses,
//!   backslashes and non-ASCII text are plain characters). An empty query matches everything.
//! - Order: name matches first (rank 0), then description-only matches (rank 1); within a rank
//!   the lowercased name in byte order, then the id ([`SearchKey`]).
//! - A cursor is the [`SearchKey`] of the last row of a page, as JSON text
//!   (`[rank, "lowercased name", "id"]`); the next page starts after it, so pages never repeat
//!   or skip a row.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::PatternId;

/// Which patterns a search covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternTab {
    /// Community patterns: `is_verified`, whoever owns them (the caller's own included).
    Verified,
    /// The caller's own patterns, verified or not.
    Mine,
    /// The union of [`PatternTab::Verified`] and [`PatternTab::Mine`].
    All,
}

impl PatternTab {
    /// The wire text (`verified`, `mine`, `all`).
    pub fn as_str(&self) -> &'static str {
        match self {
            PatternTab::Verified => "verified",
            PatternTab::Mine => "mine",
            PatternTab::All => "all",
        }
    }

    /// Does the tab hold a pattern with this flag, owned (or not) by the caller?
    pub fn includes(&self, is_verified: bool, owned_by_caller: bool) -> bool {
        match self {
            PatternTab::Verified => is_verified,
            PatternTab::Mine => owned_by_caller,
            PatternTab::All => is_verified || owned_by_caller,
        }
    }
}

/// The case folding of the search (Unicode lowercase).
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// The text and category filter of a search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatternFilter {
    /// Text searched literally in name and description (empty: everything).
    pub query: String,
    /// Exact category, or any.
    pub category: Option<String>,
}

impl PatternFilter {
    /// A filter on this text, any category.
    pub fn new(query: impl Into<String>) -> Self {
        Self {
            query: query.into(),
            category: None,
        }
    }

    /// The same filter restricted to one category.
    pub fn with_category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// The rank of a pattern under this filter: `None` if it does not match, `Some(0)` for a
    /// name match (or an empty query), `Some(1)` for a description-only match.
    pub fn rank(&self, name: &str, description: &str, category: Option<&str>) -> Option<u8> {
        if let Some(wanted) = &self.category {
            if category != Some(wanted.as_str()) {
                return None;
            }
        }
        if self.query.is_empty() {
            return Some(0);
        }
        let q = fold(&self.query);
        if fold(name).contains(&q) {
            Some(0)
        } else if fold(description).contains(&q) {
            Some(1)
        } else {
            None
        }
    }
}

/// A search cursor that is not one this crate (or the cloud SQL) wrote.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("malformed search cursor: {0}")]
pub struct CursorError(pub String);

/// The position of a pattern in search order: rank, then lowercased name (byte order), then id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SearchKey {
    /// 0 for a name match, 1 for a description-only match.
    pub rank: u8,
    /// The lowercased name.
    pub sort_name: String,
    /// The pattern.
    pub id: PatternId,
}

impl SearchKey {
    /// The key of a pattern with this rank and name.
    pub fn new(rank: u8, name: &str, id: PatternId) -> Self {
        Self {
            rank,
            sort_name: fold(name),
            id,
        }
    }

    /// The cursor text of this key (`[rank, "sort name", "id"]`).
    pub fn to_cursor(&self) -> String {
        serde_json::json!([self.rank, self.sort_name, self.id]).to_string()
    }

    /// Parses a cursor written by [`SearchKey::to_cursor`] or the cloud SQL.
    pub fn from_cursor(cursor: &str) -> Result<Self, CursorError> {
        let bad = || CursorError(cursor.chars().take(80).collect());
        let (rank, sort_name, id): (u8, String, PatternId) =
            serde_json::from_str(cursor).map_err(|_| bad())?;
        if rank > 1 {
            return Err(bad());
        }
        Ok(Self {
            rank,
            sort_name,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_name_matches_first_and_treats_the_query_literally() {
        let f = PatternFilter::new("50%_(a,b)");
        assert_eq!(f.rank("Strobe 50%_(A,B)", "", None), Some(0));
        assert_eq!(f.rank("Strobe", "at 50%_(a,b)", None), Some(1));
        assert_eq!(f.rank("Strobe 50xx(a,b)", "", None), None);
        let f = PatternFilter::new("Ström").with_category("Movement");
        assert_eq!(f.rank("Lichtström", "", Some("Movement")), Some(0));
        assert_eq!(f.rank("Lichtström", "", Some("Color")), None);
        assert_eq!(PatternFilter::default().rank("x", "", None), Some(0));
    }

    #[test]
    fn cursors_round_trip_and_order_like_the_sql() {
        let id = PatternId::new();
        let k = SearchKey::new(1, "Chase \"quoted\"", id);
        assert_eq!(SearchKey::from_cursor(&k.to_cursor()), Ok(k.clone()));
        assert!(SearchKey::from_cursor("[2, \"a\", \"x\"]").is_err());
        assert!(SearchKey::from_cursor("nope").is_err());
        assert!(SearchKey::new(0, "zz", id) < SearchKey::new(1, "aa", id));
        assert!(SearchKey::new(0, "a_", id) < SearchKey::new(0, "B", id));
    }
}
