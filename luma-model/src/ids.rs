//! Typed identifiers: one UUID newtype per table, so a fixture id cannot be passed where a
//! venue id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ParseIdError;

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random (v4) id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// The id as a plain UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }

        impl From<$name> for Uuid {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|source| ParseIdError {
                    kind: $what,
                    input: s.chars().take(64).collect(),
                    source,
                })
            }
        }
    };
}

uuid_id!(
    /// Identifies a venue (a project container: one stage or room).
    VenueId,
    "venue id"
);
uuid_id!(
    /// Identifies a patched fixture.
    FixtureId,
    "fixture id"
);
uuid_id!(
    /// Identifies a fixture group.
    FixtureGroupId,
    "fixture group id"
);
uuid_id!(
    /// Identifies a pattern.
    PatternId,
    "pattern id"
);
uuid_id!(
    /// Identifies a pattern implementation (node graph).
    ImplementationId,
    "implementation id"
);
uuid_id!(
    /// Identifies a track (audio metadata).
    TrackId,
    "track id"
);
uuid_id!(
    /// Identifies a score (a track annotated for a venue).
    ScoreId,
    "score id"
);
uuid_id!(
    /// Identifies a pattern placement on a score's timeline.
    TrackScoreId,
    "track score id"
);
uuid_id!(
    /// Identifies a user of the cloud (Supabase `auth.users.id`).
    UserId,
    "user id"
);

macro_rules! key_from_id {
    ($($name:ident),*) => {$(
        impl From<$name> for crate::spec::RecordKey {
            fn from(value: $name) -> Self {
                crate::spec::RecordKey::single(value)
            }
        }
    )*};
}
key_from_id!(
    VenueId,
    FixtureId,
    FixtureGroupId,
    PatternId,
    ImplementationId,
    TrackId,
    ScoreId,
    TrackScoreId
);
