//! The data model of Luma storage: one record type per table, typed ids, the [`Record`] and
//! [`Syncable`] traits that tell the store and the sync engine what they need to know about a
//! table, and the hybrid logical clock ([`Hlc`], [`Clock`]) that orders writes.
//!
//! This crate does no IO and needs no async runtime.
//!
//! ```
//! use luma_model::{Fixture, Record, Venue, ValidationError};
//!
//! let venue = Venue::new("Main stage");
//! let fixture = Fixture::new(venue.id, 1, 513, 1);
//! assert!(matches!(fixture.validate(), Err(ValidationError::OutOfRange { field: "address", .. })));
//! ```
#![warn(missing_docs)]
// docs.rs builds with `--cfg docsrs` (see [package.metadata.docs.rs]): items behind a feature show it.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Library code never panics on run-time failures and never prints (tests may).
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod community;
mod error;
pub mod hexbytes;
mod hlc;
mod ids;
mod op;
mod record;
mod records;
mod spec;
mod validate;

pub use community::{CursorError, PatternFilter, PatternTab, SearchKey};
pub use error::{ParseIdError, RowError, ValidationError, WireRowError};
pub use hlc::{
    wall_clock_ms, Clock, Hlc, HlcParseError, SiteId, DEFAULT_MAX_CLOCK_SKEW, MAX_COUNTER,
    MAX_PHYSICAL_MS,
};
pub use ids::{
    FixtureGroupId, FixtureId, ImplementationId, PatternId, ScoreId, TrackId, TrackScoreId, UserId,
    VenueId,
};
pub use op::{OpId, OpKind, PendingOp};
pub use record::{Record, Row, Syncable};
pub use records::*;
pub use spec::{Column, ColumnKind, Parent, RecordKey, Scope, TableSpec};
pub use validate::MAX_NAME_LEN;

/// The current time, truncated to milliseconds (what the store keeps).
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(3)
}

/// The specs of every built-in table, parents before children.
pub const BUILTIN_TABLES: &[TableSpec] = &[
    Venue::SPEC,
    Fixture::SPEC,
    FixtureGroup::SPEC,
    FixtureGroupMember::SPEC,
    Category::SPEC,
    Pattern::SPEC,
    Implementation::SPEC,
    Track::SPEC,
    TrackBeats::SPEC,
    TrackRoots::SPEC,
    TrackWaveform::SPEC,
    TrackStem::SPEC,
    Score::SPEC,
    TrackScore::SPEC,
    Setting::SPEC,
];
