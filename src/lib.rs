//! Luma storage and sync: local-first SQLite storage for a lighting-control app (venues,
//! fixtures, patterns, tracks, scores), designed to sync with Supabase or a plain PostgreSQL.
//!
//! This crate is a thin facade. It holds no code of its own; it re-exports the focused crates
//! of the workspace behind Cargo features, so an app depends on one crate and picks what it
//! needs:
//!
//! | module     | crate        | feature           | what it is                                       |
//! |------------|--------------|-------------------|--------------------------------------------------|
//! | [`model`]  | `luma-model` | always            | records, typed ids, `Record`/`Syncable`, the HLC |
//! | `store`    | `luma-store` | `store` (default) | `luma.db`: migrations, repositories, the outbox  |
//! | `sync`     | `luma-sync`  | `sync`            | the sync engine, remotes and the cloud SQL       |
//! | `files`    | `luma-files` | `files`           | blob stores, file transfer queue, album art      |
//!
//! More features: `supabase` (the Supabase remote and auth session, over HTTP), `testing`
//! (`MemoryRemote` with fault injection and the conformance suite), `full` (all of them).
//!
//! The [`prelude`] re-exports the types most code touches.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use luma::prelude::*;
//!
//! let store = Store::open_in_memory().await?;
//! let venue = Venue::new("Main stage");
//! store.venues().create(&venue).await?;
//! store.fixtures().create(&Fixture::new(venue.id, 1, 1, 16)).await?;
//!
//! // Each write recorded a pending op for the sync engine, in the same transaction.
//! let ops = store.outbox().all().await?;
//! assert_eq!(ops.len(), 2);
//! assert!(ops.iter().all(|op| op.kind == OpKind::Upsert));
//! # Ok::<(), StoreError>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]
// docs.rs builds with `--cfg docsrs` (see [package.metadata.docs.rs]): items behind a feature show it.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use luma_model as model;

#[cfg(feature = "store")]
pub use luma_store as store;

#[cfg(feature = "sync")]
pub use luma_sync as sync;

#[cfg(feature = "files")]
pub use luma_files as files;

/// The types most code needs: `use luma::prelude::*;`.
///
/// Records and their ids, the [`Record`](crate::model::Record) and
/// [`Syncable`](crate::model::Syncable) traits, clock and outbox types, and (with the `store`
/// feature) the store, its repositories and its error; with `sync` the engine, its config,
/// status and error, the `Remote` trait, `PostgresRemote` and the token types; with `supabase`
/// the Supabase remote and session; with `testing` `MemoryRemote` and `FaultConfig`.
pub mod prelude {
    pub use luma_model::{
        BlendMode, Category, Fixture, FixtureGroup, FixtureGroupId, FixtureGroupMember, FixtureId,
        Hlc, Implementation, ImplementationId, OpId, OpKind, Pattern, PatternId, PendingOp, Record,
        RecordKey, Score, ScoreId, Setting, SiteId, Syncable, Track, TrackBeats, TrackId,
        TrackRoots, TrackScore, TrackScoreId, TrackStem, TrackWaveform, UserId, ValidationError,
        Venue, VenueId,
    };

    #[cfg(feature = "store")]
    pub use luma_store::{Outbox, Repo, Settings, Store, StoreError, StoreOptions, StoreTx};

    #[cfg(feature = "sync")]
    pub use luma_sync::{
        AccessToken, PostgresRemote, Remote, StaticToken, SyncConfig, SyncEngine, SyncError,
        SyncStatus, TokenProvider,
    };

    #[cfg(feature = "supabase")]
    pub use luma_sync::{SupabaseConfig, SupabaseRemote, SupabaseSession};

    #[cfg(feature = "testing")]
    pub use luma_sync::{FaultConfig, MemoryRemote};
}

// The Rust code blocks of the READMEs compile and run as doctests of this crate (`cargo test
// --doc`): the workspace README and the crate READMEs. They use the store, so they need the
// `store` feature (on by default).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "store"))]
pub struct ReadmeDoctests;

#[cfg(all(doctest, feature = "store"))]
#[allow(missing_docs)]
pub mod crate_readme_doctests {
    #[doc = include_str!("../luma-model/README.md")]
    pub struct LumaModel;
    #[doc = include_str!("../luma-store/README.md")]
    pub struct LumaStore;
    #[doc = include_str!("../luma-files/README.md")]
    pub struct LumaFiles;
}
