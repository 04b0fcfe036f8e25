//! Scores and pattern placements on their timelines.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{PatternId, ScoreId, TrackId, TrackScoreId, UserId, VenueId};
use crate::record::{Record, Syncable};
use crate::spec::{Column, Parent, Scope, TableSpec};
use crate::validate;

/// A score: a track annotated with patterns for a venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Id.
    pub id: ScoreId,
    /// Author.
    pub uid: Option<UserId>,
    /// The track.
    pub track_id: TrackId,
    /// The venue.
    pub venue_id: VenueId,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
}

impl Score {
    /// A new score of `track_id` for `venue_id`.
    pub fn new(track_id: TrackId, venue_id: VenueId, name: impl Into<String>) -> Self {
        let now = crate::now();
        Self {
            id: ScoreId::new(),
            uid: None,
            track_id,
            venue_id,
            name: name.into(),
            created_at: now,
            updated_at: now,
        }
    }
}

impl Record for Score {
    const SPEC: TableSpec = TableSpec {
        name: "scores",
        columns: &[
            Column::uuid("id"),
            Column::uuid("uid"),
            Column::uuid("track_id"),
            Column::uuid("venue_id"),
            Column::text("name"),
            Column::timestamp("created_at"),
            Column::timestamp("updated_at"),
        ],
        key: &["id"],
        parents: &[
            Parent::new("track_id", "tracks"),
            Parent::new("venue_id", "venues"),
        ],
        scope: Scope::InVenue { column: "venue_id" },
    };

    fn validate(&self) -> Result<(), ValidationError> {
        validate::name("scores", "name", &self.name)?;
        validate::no_nul("scores", "name", &self.name)
    }
}
impl Syncable for Score {}

/// How a placed pattern combines with the layers below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BlendMode {
    /// The layer replaces what is below (the default).
    #[default]
    Replace,
    /// Values are added.
    Add,
    /// Values are multiplied.
    Multiply,
    /// Screen blend.
    Screen,
    /// Per-channel maximum.
    Max,
    /// Per-channel minimum.
    Min,
    /// Values are subtracted.
    Subtract,
}

impl BlendMode {
    /// Every blend mode.
    pub const ALL: [BlendMode; 7] = [
        BlendMode::Replace,
        BlendMode::Add,
        BlendMode::Multiply,
        BlendMode::Screen,
        BlendMode::Max,
        BlendMode::Min,
        BlendMode::Subtract,
    ];

    /// The stored text.
    pub fn as_str(&self) -> &'static str {
        match self {
            BlendMode::Replace => "replace",
            BlendMode::Add => "add",
            BlendMode::Multiply => "multiply",
            BlendMode::Screen => "screen",
            BlendMode::Max => "max",
            BlendMode::Min => "min",
            BlendMode::Subtract => "subtract",
        }
    }
}

impl fmt::Display for BlendMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not a blend mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown blend mode {0:?}")]
pub struct UnknownBlendMode(pub String);

impl FromStr for BlendMode {
    type Err = UnknownBlendMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownBlendMode(s.chars().take(64).collect()))
    }
}

/// A pattern placed on a score's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackScore {
    /// Id.
    pub id: TrackScoreId,
    /// The score.
    pub score_id: ScoreId,
    /// The placed pattern.
    pub pattern_id: PatternId,
    /// Start in seconds (>= 0).
    pub start_time: f64,
    /// End in seconds (>= start).
    pub end_time: f64,
    /// Layer order (higher is on top).
    pub z_index: i64,
    /// How it combines with lower layers.
    pub blend_mode: BlendMode,
    /// Pattern arguments (a JSON object).
    pub args: serde_json::Value,
}

impl TrackScore {
    /// A placement of `pattern_id` from `start_time` to `end_time`.
    pub fn new(score_id: ScoreId, pattern_id: PatternId, start_time: f64, end_time: f64) -> Self {
        Self {
            id: TrackScoreId::new(),
            score_id,
            pattern_id,
            start_time,
            end_time,
            z_index: 0,
            blend_mode: BlendMode::Replace,
            args: serde_json::json!({}),
        }
    }
}

impl Record for TrackScore {
    const SPEC: TableSpec = TableSpec {
        name: "track_scores",
        columns: &[
            Column::uuid("id"),
            Column::uuid("score_id"),
            Column::uuid("pattern_id"),
            Column::real("start_time"),
            Column::real("end_time"),
            Column::integer("z_index"),
            Column::text("blend_mode"),
            Column::json("args"),
        ],
        key: &["id"],
        parents: &[
            Parent::new("score_id", "scores"),
            Parent::new("pattern_id", "patterns"),
        ],
        scope: Scope::Parent {
            column: "score_id",
            table: "scores",
        },
    };

    fn validate(&self) -> Result<(), ValidationError> {
        const T: &str = "track_scores";
        validate::real_range(T, "start_time", self.start_time, 0.0, f64::MAX)?;
        validate::finite(T, "end_time", self.end_time)?;
        if self.end_time < self.start_time {
            return Err(ValidationError::Inconsistent {
                table: T,
                message: format!(
                    "end_time {} is before start_time {}",
                    self.end_time, self.start_time
                ),
            });
        }
        validate::json_object(T, "args", &self.args)?;
        validate::json_value(T, "args", &self.args)
    }
}
impl Syncable for TrackScore {}

/// A key-value app setting: device-specific, never synced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// Key.
    pub key: String,
    /// Value (JSON).
    pub value: serde_json::Value,
}

impl Record for Setting {
    const SPEC: TableSpec = TableSpec {
        name: "settings",
        columns: &[Column::text("key"), Column::json("value")],
        key: &["key"],
        parents: &[],
        scope: Scope::LocalOnly,
    };

    fn validate(&self) -> Result<(), ValidationError> {
        validate::name("settings", "key", &self.key)?;
        validate::no_nul("settings", "key", &self.key)?;
        validate::json_value("settings", "value", &self.value)
    }
}
