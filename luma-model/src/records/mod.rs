//! One record type per table.

mod pattern;
mod score;
mod track;
mod venue;

pub use pattern::{empty_graph, Category, Implementation, Pattern};
pub use score::{BlendMode, Score, Setting, TrackScore, UnknownBlendMode};
pub use track::{Track, TrackBeats, TrackRoots, TrackStem, TrackWaveform};
pub use venue::{Fixture, FixtureGroup, FixtureGroupMember, Venue, DMX_CHANNELS, MAX_UNIVERSE};
