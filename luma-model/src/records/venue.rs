//! Venues, fixtures and fixture groups.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{FixtureGroupId, FixtureId, UserId, VenueId};
use crate::record::{Record, Syncable};
use crate::spec::{Column, Parent, Scope, TableSpec};
use crate::validate;

/// Highest DMX universe accepted: sACN (E1.31) numbers universes 1..=63999.
pub const MAX_UNIVERSE: i64 = 63_999;
/// Channels in one DMX universe.
pub const DMX_CHANNELS: i64 = 512;

/// A project container: one stage or room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Venue {
    /// Id (the same locally and in the cloud).
    pub id: VenueId,
    /// Owner; `None` until the first signed-in write fills it.
    pub uid: Option<UserId>,
    /// Name (required).
    pub name: String,
    /// Free text.
    pub description: String,
    /// 8-character code another user enters to join the venue.
    pub share_code: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time (set by the store on update).
    pub updated_at: DateTime<Utc>,
}

impl Venue {
    /// A new venue with this name.
    pub fn new(name: impl Into<String>) -> Self {
        let now = crate::now();
        Self {
            id: VenueId::new(),
            uid: None,
            name: name.into(),
            description: String::new(),
            share_code: None,
            created_at: now,
            updated_at: now,
        }
    }
}

impl Record for Venue {
    const SPEC: TableSpec = TableSpec {
        name: "venues",
        columns: &[
            Column::uuid("id"),
            Column::uuid("uid"),
            Column::text("name"),
            Column::text("description"),
            Column::text("share_code"),
            Column::timestamp("created_at"),
            Column::timestamp("updated_at"),
        ],
        key: &["id"],
        parents: &[],
        scope: Scope::Venue,
    };

    fn validate(&self) -> Result<(), ValidationError> {
        validate::name("venues", "name", &self.name)?;
        validate::no_nul_all(
            "venues",
            &[
                ("name", Some(&self.name)),
                ("description", Some(&self.description)),
                ("share_code", self.share_code.as_deref()),
            ],
        )?;
        if let Some(code) = &self.share_code {
            if code.len() != 8
                || !code
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                return Err(ValidationError::Format {
                    table: "venues",
                    field: "share_code",
                    message: "a share code is 8 characters A-Z or 0-9".into(),
                });
            }
        }
        Ok(())
    }
}
impl Syncable for Venue {}

/// A patched lighting fixture of a venue.
///
/// Rules: `universe` in 1..=63999 (sACN), `address` in 1..=512, `num_channels` in 1..=512 and
/// the footprint `address + num_channels - 1` fits in the universe; positions and rotations are
/// finite (Z-up coordinates, rotations in degrees).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fixture {
    /// Id.
    pub id: FixtureId,
    /// The venue it is patched in.
    pub venue_id: VenueId,
    /// DMX universe (1..=63999).
    pub universe: i64,
    /// DMX start address (1..=512).
    pub address: i64,
    /// Channels the fixture uses in its mode.
    pub num_channels: i64,
    /// Manufacturer name.
    pub manufacturer: String,
    /// Model name.
    pub model: String,
    /// Mode name.
    pub mode_name: String,
    /// Path of the fixture definition file on this device (local only).
    pub fixture_path: Option<String>,
    /// User label.
    pub label: Option<String>,
    /// Position X.
    pub pos_x: f64,
    /// Position Y.
    pub pos_y: f64,
    /// Position Z (up).
    pub pos_z: f64,
    /// Rotation about X.
    pub rot_x: f64,
    /// Rotation about Y.
    pub rot_y: f64,
    /// Rotation about Z.
    pub rot_z: f64,
}

impl Fixture {
    /// A fixture at `universe`/`address` using `num_channels`, at the origin.
    pub fn new(venue_id: VenueId, universe: i64, address: i64, num_channels: i64) -> Self {
        Self {
            id: FixtureId::new(),
            venue_id,
            universe,
            address,
            num_channels,
            manufacturer: String::new(),
            model: String::new(),
            mode_name: String::new(),
            fixture_path: None,
            label: None,
            pos_x: 0.0,
            pos_y: 0.0,
            pos_z: 0.0,
            rot_x: 0.0,
            rot_y: 0.0,
            rot_z: 0.0,
        }
    }
}

impl Record for Fixture {
    const SPEC: TableSpec = TableSpec {
        name: "fixtures",
        columns: &[
            Column::uuid("id"),
            Column::uuid("venue_id"),
            Column::integer("universe"),
            Column::integer("address"),
            Column::integer("num_channels"),
            Column::text("manufacturer"),
            Column::text("model"),
            Column::text("mode_name"),
            Column::text("fixture_path").local(),
            Column::text("label"),
            Column::real("pos_x"),
            Column::real("pos_y"),
            Column::real("pos_z"),
            Column::real("rot_x"),
            Column::real("rot_y"),
            Column::real("rot_z"),
        ],
        key: &["id"],
        parents: &[Parent::new("venue_id", "venues")],
        scope: Scope::InVenue { column: "venue_id" },
    };

    fn validate(&self) -> Result<(), ValidationError> {
        const T: &str = "fixtures";
        validate::int_range(T, "universe", self.universe, 1, MAX_UNIVERSE)?;
        validate::no_nul_all(
            T,
            &[
                ("manufacturer", Some(&self.manufacturer)),
                ("model", Some(&self.model)),
                ("mode_name", Some(&self.mode_name)),
                ("fixture_path", self.fixture_path.as_deref()),
                ("label", self.label.as_deref()),
            ],
        )?;
        validate::int_range(T, "address", self.address, 1, DMX_CHANNELS)?;
        validate::int_range(T, "num_channels", self.num_channels, 1, DMX_CHANNELS)?;
        if self.address + self.num_channels - 1 > DMX_CHANNELS {
            return Err(ValidationError::Inconsistent {
                table: T,
                message: format!(
                    "address {} with {} channels runs past channel 512",
                    self.address, self.num_channels
                ),
            });
        }
        for (field, v) in [
            ("pos_x", self.pos_x),
            ("pos_y", self.pos_y),
            ("pos_z", self.pos_z),
            ("rot_x", self.rot_x),
            ("rot_y", self.rot_y),
            ("rot_z", self.rot_z),
        ] {
            validate::finite(T, field, v)?;
        }
        Ok(())
    }
}
impl Syncable for Fixture {}

/// A spatial group of fixtures; its name is used in selection expressions, so it is unique
/// within the venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixtureGroup {
    /// Id.
    pub id: FixtureGroupId,
    /// The venue.
    pub venue_id: VenueId,
    /// Name, unique within the venue.
    pub name: String,
    /// Left/right axis assignment (-1..=1).
    pub axis_lr: Option<f64>,
    /// Front/back axis assignment (-1..=1).
    pub axis_fb: Option<f64>,
    /// Above/below axis assignment (-1..=1).
    pub axis_ab: Option<f64>,
    /// Order in lists.
    pub display_order: i64,
    /// Tags.
    pub tags: Vec<String>,
    /// Movement configuration (free JSON).
    pub movement_config: Option<serde_json::Value>,
}

impl FixtureGroup {
    /// A new group with this name.
    pub fn new(venue_id: VenueId, name: impl Into<String>) -> Self {
        Self {
            id: FixtureGroupId::new(),
            venue_id,
            name: name.into(),
            axis_lr: None,
            axis_fb: None,
            axis_ab: None,
            display_order: 0,
            tags: Vec::new(),
            movement_config: None,
        }
    }
}

impl Record for FixtureGroup {
    const SPEC: TableSpec = TableSpec {
        name: "fixture_groups",
        columns: &[
            Column::uuid("id"),
            Column::uuid("venue_id"),
            Column::text("name"),
            Column::real("axis_lr"),
            Column::real("axis_fb"),
            Column::real("axis_ab"),
            Column::integer("display_order"),
            Column::json("tags"),
            Column::json("movement_config"),
        ],
        key: &["id"],
        parents: &[Parent::new("venue_id", "venues")],
        scope: Scope::InVenue { column: "venue_id" },
    };

    fn validate(&self) -> Result<(), ValidationError> {
        const T: &str = "fixture_groups";
        validate::name(T, "name", &self.name)?;
        validate::no_nul(T, "name", &self.name)?;
        for tag in &self.tags {
            validate::no_nul(T, "tags", tag)?;
        }
        if let Some(config) = &self.movement_config {
            validate::json_value(T, "movement_config", config)?;
        }
        for (field, v) in [
            ("axis_lr", self.axis_lr),
            ("axis_fb", self.axis_fb),
            ("axis_ab", self.axis_ab),
        ] {
            if let Some(v) = v {
                validate::real_range(T, field, v, -1.0, 1.0)?;
            }
        }
        Ok(())
    }
}
impl Syncable for FixtureGroup {}

/// Membership of a fixture in a group (unique per fixture and group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixtureGroupMember {
    /// The fixture.
    pub fixture_id: FixtureId,
    /// The group.
    pub group_id: FixtureGroupId,
    /// Order within the group.
    pub display_order: i64,
}

impl Record for FixtureGroupMember {
    const SPEC: TableSpec = TableSpec {
        name: "fixture_group_members",
        columns: &[
            Column::uuid("fixture_id"),
            Column::uuid("group_id"),
            Column::integer("display_order"),
        ],
        key: &["fixture_id", "group_id"],
        parents: &[
            Parent::new("fixture_id", "fixtures"),
            Parent::new("group_id", "fixture_groups"),
        ],
        scope: Scope::Parent {
            column: "group_id",
            table: "fixture_groups",
        },
    };
}
impl Syncable for FixtureGroupMember {}
