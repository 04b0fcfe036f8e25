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

use std::collections::BTreeMap;
use std::path::Path;

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
    /// A plugin's cloud migrations cannot be applied as they are.
    #[error("plugin {plugin:?}: {reason}")]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// What is wrong (a bad name, an applied migration that changed or disappeared).
        reason: String,
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

/// One cloud migration as a file of a Supabase project's `supabase/migrations/` folder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SupabaseMigrationFile {
    /// `<version>_luma_<name>.sql`, the version being `first_version` plus the migration's own
    /// number, so the files keep their order after any project migration older than
    /// `first_version`.
    pub file_name: String,
    /// The migration's SQL, unchanged.
    pub sql: String,
}

/// The embedded cloud migrations named for `supabase db push`: the Supabase CLI applies
/// `supabase/migrations/<version>_<name>.sql` in version order and records each version.
/// `first_version` is a timestamp such as `20260101000000` (the default of `luma cloud
/// export`); keep it the same across exports so a new release only adds files.
pub fn supabase_migration_files(first_version: u64) -> Vec<SupabaseMigrationFile> {
    MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| SupabaseMigrationFile {
            file_name: format!(
                "{}_luma_{}.sql",
                first_version.saturating_add(u64::try_from(m.version).unwrap_or(0)),
                m.description.replace(' ', "_")
            ),
            sql: m.sql.to_string(),
        })
        .collect()
}

/// What [`migrate_plugin`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PluginMigrationReport {
    /// Versions applied by this call, in order.
    pub applied: Vec<i64>,
    /// Versions that were already applied (and unchanged).
    pub already_applied: Vec<i64>,
}

/// Applies a plugin's own cloud migrations (the `<version>_<name>.sql` files in `dir`, as
/// `sqlx migrate` names them) that are not applied yet, tracking them per plugin in
/// `luma.plugin_migrations` with their SHA-384 checksums. All pending files run in one
/// transaction under a per-plugin advisory lock: either all apply or none. An applied
/// migration whose file changed or disappeared is an error and nothing runs. Run it with the
/// role that ran [`migrate`], after it (a plugin table's `luma.enable_sync` needs the core
/// schema).
///
/// Hand-written rather than a second `sqlx::migrate::Migrator`: sqlx 0.8 records every
/// migrator in the same `_sqlx_migrations` table, where the plugin's versions would collide
/// with the core schema's (and each migrator would refuse the other's versions). The files are
/// still read and checksummed by sqlx.
pub async fn migrate_plugin(
    pool: &PgPool,
    plugin: &str,
    dir: &Path,
) -> Result<PluginMigrationReport, CloudError> {
    let bad = |reason: String| CloudError::Plugin {
        plugin: plugin.to_string(),
        reason,
    };
    if plugin.is_empty()
        || plugin.len() > 64
        || !plugin
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(bad(
            "a plugin name is 1-64 characters of a-z, 0-9, '_' and '-'".into(),
        ));
    }
    let source = Migrator::new(dir).await?;
    let files: BTreeMap<i64, &sqlx::migrate::Migration> = source
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| (m.version, m))
        .collect();

    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('luma_plugin_migrations:' || $1, 0))",
    )
    .bind(plugin)
    .execute(&mut *tx)
    .await?;
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS luma; \
         CREATE TABLE IF NOT EXISTS luma.plugin_migrations ( \
             plugin      text NOT NULL, \
             version     bigint NOT NULL, \
             description text NOT NULL, \
             checksum    bytea NOT NULL, \
             applied_at  timestamptz NOT NULL DEFAULT now(), \
             PRIMARY KEY (plugin, version)); \
         REVOKE ALL ON luma.plugin_migrations FROM PUBLIC;",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT version, checksum FROM luma.plugin_migrations WHERE plugin = $1 ORDER BY version",
    )
    .bind(plugin)
    .fetch_all(&mut *tx)
    .await?;
    let mut report = PluginMigrationReport::default();
    for (version, checksum) in &applied {
        match files.get(version) {
            None => {
                return Err(bad(format!(
                    "migration {version} was applied but its file is not in {}",
                    dir.display()
                )))
            }
            Some(m) if m.checksum.as_ref() != checksum.as_slice() => {
                return Err(bad(format!(
                    "migration {version} ({}) changed after it was applied: add a new migration instead",
                    m.description
                )))
            }
            Some(_) => report.already_applied.push(*version),
        }
    }
    for (version, m) in &files {
        if report.already_applied.contains(version) {
            continue;
        }
        tracing::info!(plugin, version, description = %m.description, "applying a plugin cloud migration");
        sqlx::raw_sql(&m.sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO luma.plugin_migrations (plugin, version, description, checksum) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(plugin)
        .bind(version)
        .bind(m.description.as_ref())
        .bind(m.checksum.as_ref())
        .execute(&mut *tx)
        .await?;
        report.applied.push(*version);
    }
    tx.commit().await?;
    Ok(report)
}
