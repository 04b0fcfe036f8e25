//! The local SQLite store of Luma: `luma.db` with embedded migrations, typed repositories for
//! every table, the transactional outbox the sync engine drains, settings, and `state.db` for
//! the auth session. It knows nothing about HTTP.
//!
//! Every write to a synced table records a pending op in the same SQLite transaction (by
//! trigger, so a write costs one statement); repeated edits of a record collapse into one op
//! with the newest hybrid-logical-clock stamp; cascaded deletes get an op per deleted row.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use luma_model::{Fixture, Venue};
//! use luma_store::Store;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("luma.db")).await?;
//! let venue = Venue::new("Club");
//! store.venues().create(&venue).await?;
//! store.fixtures().create(&Fixture::new(venue.id, 1, 1, 8)).await?;
//! assert_eq!(store.fixtures().list_by_venue(venue.id).await?.len(), 1);
//! assert_eq!(store.outbox().pending_count().await?, 2);
//! # Ok::<(), luma_store::StoreError>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]
// docs.rs builds with `--cfg docsrs` (see [package.metadata.docs.rs]): items behind a feature show it.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Library code never panics on run-time failures and never prints (tests may).
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod bind;
mod error;
mod inspect;
mod oplog;
mod order;
mod outbox;
mod parked;
mod pulled_upsert;
mod record_bind;
mod repo;
mod repos;
pub mod schema;
mod settings;
mod state;
mod store;
mod sync_api;
mod tx;

pub use error::{Result, StoreError};
pub use inspect::CursorEntry;
pub use order::{depths, parents_first};
pub use outbox::Outbox;
pub use parked::{ParkReason, ParkedRow, DEFAULT_MAX_CLOCK_SKEW};
pub use repo::{ListReport, Repo, SkippedRow};
pub use secrecy::{ExposeSecret, SecretString};
pub use settings::Settings;
pub use state::{AuthSession, StateStore, STATE_MIGRATOR};
pub use store::{PluginMigration, Store, StoreOptions, MIGRATOR};
pub use sync_api::{
    ApplyReport, DiscardReport, DroppedOp, PulledRow, PushRow, SettleReport, Settlement,
};
pub use tx::StoreTx;
