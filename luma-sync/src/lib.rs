//! The Luma sync engine and the cloud SQL: keeps a local-first `luma.db` ([`luma_store::Store`]) and a cloud copy
//! in step.
//!
//! - [`Local`] and [`Remote`] are the two seams, with their contracts in rustdoc; the store
//!   implements [`Local`]; remotes implement [`Remote`] (the wire protocol is in this crate's
//!   `PROTOCOL.md`).
//! - [`SyncEngine`] pulls (per table, parents first, one watermark per cycle, each page applied
//!   with its cursor in one transaction), then pushes (pending ops in foreign-key order, in
//!   batches, outcomes recorded in one transaction), with backoff, token refresh, a status
//!   [`tokio::sync::watch`] and change notifications.
//! - `MemoryRemote` (feature `testing`) is an in-memory server with the cloud's semantics and
//!   fault injection, for property tests.
//!
//! - [`PostgresRemote`] runs the cloud functions on a PostgreSQL pool as a signed-in user
//!   (as PostgREST does); [`PostgresAdmin`] is the separate service-role handle.
//! - `supabase` (feature `supabase`, on by default): `SupabaseRemote` calls the same
//!   functions through PostgREST over HTTP, and `SupabaseSession` is the Supabase Auth session
//!   (kept in `state.db`) that hands the engine its tokens.
//! - [`cloud`] embeds the server schema (`luma-sync/cloud/migrations`) that a plain PostgreSQL
//!   or a Supabase project runs: synced tables, row-level security and the `luma_*` functions.
//!
//! Conflicts resolve per row by last writer wins on the hybrid logical clock; deletes are
//! writes; a parent delete tombstones its children on the server, so "parent delete wins".
//!
//! ```
//! # #[cfg(feature = "testing")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use luma_model::{UserId, Venue};
//! use luma_store::Store;
//! use luma_sync::{MemoryRemote, StaticToken, SyncConfig, SyncEngine};
//!
//! let remote = MemoryRemote::new();
//! let user = UserId::new();
//! let mut devices = Vec::new();
//! for _ in 0..2 {
//!     let store = Store::open_in_memory().await?;
//!     store.set_current_user(Some(user)).await?;
//!     let token = Arc::new(StaticToken(Arc::new(remote.issue_token(user))));
//!     devices.push(SyncEngine::new(store, remote.clone(), token, SyncConfig::default()));
//! }
//! let venue = Venue::new("Main stage");
//! devices[0].local().venues().create(&venue).await?;
//! devices[0].sync_now().await?;
//! devices[1].sync_now().await?;
//! assert_eq!(devices[1].local().venues().get(venue.id).await?.name, "Main stage");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]
// docs.rs builds with `--cfg docsrs` (see [package.metadata.docs.rs]): items behind a feature show it.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod cloud;
mod community;
#[cfg(feature = "testing")]
pub mod conformance;
mod engine;
mod error;
mod local;
#[cfg(feature = "testing")]
pub mod memory;
pub mod postgres;
mod remote;
mod sqlstate;
mod status;
#[cfg(feature = "supabase")]
pub mod supabase;
mod token;

pub use community::import_bundle;
pub use engine::{Backoff, CycleReport, PullReport, PushReport, SyncConfig, SyncEngine};
pub use error::{Result, SyncError};
pub use local::Local;
/// Rows a pull could not apply yet (kept durably, listed by [`SyncEngine::parked_rows`]).
pub use luma_store::{ParkReason, ParkedRow};
#[cfg(feature = "testing")]
pub use memory::{Call, Fault, FaultConfig, MemoryRemote, RemoteStats, DEFAULT_MAX_CLOCK_SKEW};
pub use postgres::{AdminError, PostgresAdmin, PostgresRemote};
pub use remote::{
    Change, ChangeOutcome, Membership, Outcome, PatternBundle, PatternSummary, PullPage,
    PullRequest, RejectCode, Remote, RemoteRow, SearchPage, SearchRequest, Watermark,
};
pub use status::{FileStatusFeed, FileTransfers, Phase, Progress, SyncStatus, TablesChanged};
#[cfg(feature = "supabase")]
pub use supabase::{SupabaseConfig, SupabaseRemote, SupabaseSession};
pub use token::{AccessToken, StaticToken, TokenProvider};

/// Re-exported so an app can implement [`Remote`] (for example a wrapper) or [`TokenProvider`]
/// without depending on `async-trait` itself: `#[luma_sync::async_trait]`.
pub use async_trait::async_trait;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
