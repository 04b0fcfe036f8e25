//! The cloud schema: the SQL files under `luma-sync/cloud/migrations`, embedded.
//!
//! The same files are what a Supabase project applies (see `luma-sync/cloud/README.md`); on a
//! plain PostgreSQL they also create the Supabase roles and the `auth` helpers. The wire
//! protocol of the functions is in `luma-sync/cloud/PROTOCOL.md`.
//!
//! ```no_run
//! # async fn run() -> Result<(), luma_sync::cloud::CloudError> {
//! let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/luma").await?;
//! luma_sync::cloud::migrate(&pool).await?;
//! # Ok(()) }
//! ```

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::PgPool;
use thiserror::Error;

/// The embedded cloud migrations, in order. Apply them with a role that may create roles,
/// schemas and tables (the database owner or a superuser; on Supabase the `postgres` role).
pub static MIGRATOR: Migrator = sqlx::migrate!("./cloud/migrations");

/// The synced tables the cloud schema registers, parents before children.
pub const SYNCED_TABLES: &[&str] = &[
    "venues",
    "fixtures",
    "fixture_groups",
    "fixture_group_members",
    "patterns",
    "implementations",
    "tracks",
    "track_beats",
    "track_roots",
    "track_waveforms",
    "scores",
    "track_scores",
];

/// Errors of the cloud schema administration.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CloudError {
    /// Applying the migrations failed.
    #[error("applying the cloud migrations failed")]
    Migrate {
        /// The migrator's error.
        #[from]
        source: MigrateError,
    },
    /// A database call failed.
    #[error("database error")]
    Database {
        /// The driver's error.
        #[from]
        source: sqlx::Error,
    },
}

/// Applies every pending cloud migration to the database behind `pool`.
pub async fn migrate(pool: &PgPool) -> Result<(), CloudError> {
    tracing::info!(
        migrations = MIGRATOR.iter().count(),
        "applying the cloud schema"
    );
    MIGRATOR.run(pool).await?;
    Ok(())
}
