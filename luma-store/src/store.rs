//! Opening `luma.db`: connection pools, pragmas, migrations and the table registry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use luma_model::{Clock, Record, SiteId, Syncable, TableSpec, UserId, BUILTIN_TABLES};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row as _, SqlitePool};
use tokio::sync::watch;

use crate::error::{Result, StoreError};
use crate::parked::{decode_check, RowCheck};
use crate::schema::TableSql;

/// The embedded migrations of `luma.db`, applied by [`Store::open`]. Tests and tools reuse
/// this one static migrator.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long a write waits for another process's lock before failing.
    pub busy_timeout: Duration,
    /// Connections used for reads (file databases only).
    pub max_readers: u32,
    /// How far ahead of the wall clock a remote stamp may be (see [`Store::max_clock_skew`]).
    pub max_clock_skew: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(10),
            max_readers: 4,
            max_clock_skew: luma_model::DEFAULT_MAX_CLOCK_SKEW,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    pub(crate) tables: RwLock<HashMap<&'static str, Arc<TableSql>>>,
    pub(crate) changes: watch::Sender<u64>,
    pub(crate) site: SiteId,
    pub(crate) path: Option<PathBuf>,
    /// Hands out the stamps of this handle's writes (see `oplog.rs`).
    pub(crate) clock: Mutex<Clock>,
    /// [`Store::max_clock_skew`] in milliseconds.
    pub(crate) max_skew_ms: AtomicU64,
    /// How to check that a pulled row of a table decodes (tables registered with a type).
    pub(crate) checks: RwLock<HashMap<&'static str, RowCheck>>,
}

/// The local database `luma.db`: the source of truth of the app's data.
///
/// A `Store` is cheap to clone (all clones share one set of connections). All writes go
/// through one writer connection, so writers of one process queue instead of failing with
/// "database is locked"; reads use a separate pool and see every committed write (WAL).
///
/// ```
/// # tokio_test_block_on(async {
/// use luma_store::Store;
/// use luma_model::Venue;
///
/// let store = Store::open_in_memory().await?;
/// let venue = Venue::new("Main stage");
/// store.venues().create(&venue).await?;
/// assert_eq!(store.venues().get(venue.id).await?.name, "Main stage");
/// assert_eq!(store.outbox().pending_count().await?, 1);
/// # Ok::<(), luma_store::StoreError>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("site", &self.inner.site)
            .finish()
    }
}

impl Store {
    /// Opens or creates the database at `path` and brings its schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreOptions::default()).await
    }

    /// [`Store::open`] with options.
    pub async fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let connect = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(options.busy_timeout);
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        // No ping before each use (`test_before_acquire`): an embedded SQLite connection cannot
        // go stale like a network one, and the ping is a round trip to sqlx's worker thread
        // that costs as much as the statement it precedes.
        let writer = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(600))
            .connect_with(connect.clone())
            .await
            .map_err(open_err)?;
        migrate(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(options.max_readers.max(1))
            .connect_with(connect.read_only(true))
            .await
            .map_err(open_err)?;
        Self::finish(writer, reader, Some(path), options.max_clock_skew).await
    }

    /// Opens a private in-memory database (for tests and examples). It lives as long as the
    /// store and its clones.
    pub async fn open_in_memory() -> Result<Self> {
        let connect = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|source| StoreError::Open {
                path: ":memory:".into(),
                source,
            })?
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(600))
            .connect_with(connect)
            .await
            .map_err(|source| StoreError::Open {
                path: ":memory:".into(),
                source,
            })?;
        migrate(&pool).await?;
        Self::finish(pool.clone(), pool, None, luma_model::DEFAULT_MAX_CLOCK_SKEW).await
    }

    async fn finish(
        writer: SqlitePool,
        reader: SqlitePool,
        path: Option<PathBuf>,
        max_clock_skew: Duration,
    ) -> Result<Self> {
        let site_text: String = sqlx::query_scalar("SELECT site FROM sync_clock WHERE id = 1")
            .fetch_one(&writer)
            .await
            .map_err(StoreError::sql("reading the site id"))?;
        let site = SiteId::from_str(&site_text).map_err(|e| StoreError::Plugin {
            table: "sync_clock".into(),
            message: e.to_string(),
        })?;
        let (changes, _) = watch::channel(0);
        let store = Store {
            inner: Arc::new(Inner {
                writer,
                reader,
                tables: RwLock::new(HashMap::new()),
                changes,
                site,
                path,
                clock: Mutex::new(Clock::new(site)),
                max_skew_ms: AtomicU64::new(
                    u64::try_from(max_clock_skew.as_millis()).unwrap_or(u64::MAX),
                ),
                checks: RwLock::new(HashMap::new()),
            }),
        };
        let mut tx = store.begin_write().await?;
        for spec in BUILTIN_TABLES {
            store
                .install(&mut tx, *spec, builtin_check(spec.name))
                .await?;
        }
        tx.commit()
            .await
            .map_err(StoreError::sql("installing triggers"))?;
        // A clock poisoned by an older build (a far-future or unparseable stamp) is repaired
        // before anything reads it.
        store.repair_clock().await?;
        let floor = crate::oplog::read_floor_from(store.writer_pool()).await?;
        store.absorb_stamp(floor);
        tracing::debug!(site = %site, "store opened");
        Ok(store)
    }

    /// Registers a plugin table: applies its migrations (each once, tracked by id; an applied
    /// migration whose text changed is refused), checks that the table matches the spec, and
    /// installs its outbox triggers. From then on its writes produce pending ops and the sync
    /// engine syncs it like a built-in table.
    pub async fn register<T: Syncable>(&self, migrations: &[PluginMigration]) -> Result<()> {
        let spec = T::SPEC;
        if !spec.is_synced() {
            return Err(StoreError::Plugin {
                table: spec.name.into(),
                message: "a Syncable table needs a scope other than LocalOnly".into(),
            });
        }
        self.register_spec(spec, migrations, Some(decode_check::<T>))
            .await
    }

    /// Registers a local-only plugin table (no pending ops): migrations and key guard only.
    pub async fn register_local<T: Record>(&self, migrations: &[PluginMigration]) -> Result<()> {
        self.register_spec(T::SPEC, migrations, None).await
    }

    async fn register_spec(
        &self,
        spec: TableSpec,
        migrations: &[PluginMigration],
        check: Option<RowCheck>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for m in migrations {
            let checksum = m.checksum();
            let applied: Option<String> =
                sqlx::query_scalar("SELECT checksum FROM luma_plugin_migrations WHERE id = ?")
                    .bind(m.id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::sql("reading plugin migrations"))?;
            match applied {
                Some(c) if c == checksum => continue,
                Some(_) => {
                    return Err(StoreError::Plugin {
                        table: spec.name.into(),
                        message: format!("migration {} was edited after it was applied", m.id),
                    })
                }
                None => {
                    sqlx::raw_sql(m.sql)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::sql("applying a plugin migration"))?;
                    sqlx::query(
                        "INSERT INTO luma_plugin_migrations (id, checksum, applied_at) \
                         VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                    )
                    .bind(m.id)
                    .bind(checksum)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::sql("recording a plugin migration"))?;
                }
            }
        }
        self.install(&mut tx, spec, check).await?;
        tx.commit()
            .await
            .map_err(StoreError::sql("registering a table"))?;
        Ok(())
    }

    /// Checks the table against its spec, installs its triggers and adds it to the registry.
    async fn install(
        &self,
        tx: &mut sqlx::SqliteConnection,
        spec: TableSpec,
        check: Option<RowCheck>,
    ) -> Result<()> {
        let sql = TableSql::new(spec)?;
        let columns: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info(?)")
            .bind(spec.name)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::sql("reading a table's columns"))?
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        if columns.is_empty() {
            return Err(StoreError::Plugin {
                table: spec.name.into(),
                message: "the table does not exist (did its migration run?)".into(),
            });
        }
        let mut needed: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
        if spec.is_synced() {
            needed.push("hlc");
        }
        for c in needed {
            if !columns.iter().any(|have| have == c) {
                return Err(StoreError::Plugin {
                    table: spec.name.into(),
                    message: format!("the table has no column {c}"),
                });
            }
        }
        for stmt in sql.trigger_sql() {
            sqlx::query(&stmt)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::sql("installing outbox triggers"))?;
        }
        self.inner
            .tables
            .write()
            .map_err(|_| poisoned())?
            .insert(spec.name, Arc::new(sql));
        if let Some(check) = check {
            self.inner
                .checks
                .write()
                .map_err(|_| poisoned())?
                .insert(spec.name, check);
        }
        Ok(())
    }

    /// How to check that a pulled row of `table` decodes (`None`: no record type known).
    pub(crate) fn row_check(&self, table: &str) -> Option<RowCheck> {
        self.inner
            .checks
            .read()
            .ok()
            .and_then(|c| c.get(table).copied())
    }

    /// The generated SQL of a registered table.
    pub fn table(&self, name: &str) -> Result<Arc<TableSql>> {
        self.inner
            .tables
            .read()
            .map_err(|_| poisoned())?
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownTable { table: name.into() })
    }

    /// Specs of every registered synced table, parents before children.
    pub fn synced_tables(&self) -> Result<Vec<TableSpec>> {
        let tables = self.inner.tables.read().map_err(|_| poisoned())?;
        let specs: Vec<TableSpec> = tables
            .values()
            .map(|t| t.spec)
            .filter(|s| s.is_synced())
            .collect();
        Ok(crate::order::parents_first(specs))
    }

    /// This device's site id (the tie-break of its clock stamps).
    pub fn site_id(&self) -> SiteId {
        self.inner.site
    }

    /// The database file, `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The user local writes are attributed to (`None`: signed out).
    pub async fn current_user(&self) -> Result<Option<UserId>> {
        let user: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM sync_identity WHERE id = 1")
                .fetch_one(&self.inner.reader)
                .await
                .map_err(StoreError::sql("reading the current user"))?;
        Ok(user.and_then(|u| u.parse().ok()))
    }

    /// Sets the user local writes are attributed to (on sign in; `None` on sign out). Pending
    /// ops keep the user they were made by.
    pub async fn set_current_user(&self, user: Option<UserId>) -> Result<()> {
        sqlx::query("UPDATE sync_identity SET user_id = ? WHERE id = 1")
            .bind(user.map(|u| u.to_string()))
            .execute(&self.inner.writer)
            .await
            .map_err(StoreError::sql("setting the current user"))?;
        Ok(())
    }

    /// A receiver that changes after every committed write through the store's API (the sync
    /// engine waits on it to push soon after a local change).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    pub(crate) fn notify_change(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`: it takes the write lock at once, so it
    /// never fails half-way with "database is locked").
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.inner
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::sql("starting a write transaction"))
    }

    /// The writer pool (for crates building on the store, such as the sync engine's `Local`).
    pub fn writer_pool(&self) -> &SqlitePool {
        &self.inner.writer
    }

    /// The reader pool.
    pub fn reader_pool(&self) -> &SqlitePool {
        &self.inner.reader
    }

    /// Checkpoints the write-ahead log into `luma.db` and closes all connections (waits for
    /// in-flight statements). Afterwards the database is the single file `luma.db`.
    pub async fn close(&self) {
        // Readers first: the last connection to close must be the writer, which can
        // checkpoint and remove the WAL.
        self.inner.reader.close().await;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.inner.writer)
            .await
        {
            tracing::warn!(%error, "checkpoint on close failed; the WAL is replayed on next open");
        }
        self.inner.writer.close().await;
    }
}

/// The decode check of a built-in table.
fn builtin_check(table: &str) -> Option<RowCheck> {
    use luma_model::*;
    fn of<T: Record>(table: &str) -> Option<RowCheck> {
        (T::SPEC.name == table).then_some(decode_check::<T> as RowCheck)
    }
    of::<Venue>(table)
        .or_else(|| of::<Fixture>(table))
        .or_else(|| of::<FixtureGroup>(table))
        .or_else(|| of::<FixtureGroupMember>(table))
        .or_else(|| of::<Category>(table))
        .or_else(|| of::<Pattern>(table))
        .or_else(|| of::<Implementation>(table))
        .or_else(|| of::<Track>(table))
        .or_else(|| of::<TrackBeats>(table))
        .or_else(|| of::<TrackRoots>(table))
        .or_else(|| of::<TrackWaveform>(table))
        .or_else(|| of::<TrackStem>(table))
        .or_else(|| of::<Score>(table))
        .or_else(|| of::<TrackScore>(table))
        .or_else(|| of::<Setting>(table))
}

fn poisoned() -> StoreError {
    StoreError::Plugin {
        table: "registry".into(),
        message: "the table registry lock was poisoned by a panic".into(),
    }
}

async fn migrate(pool: &SqlitePool) -> Result<()> {
    MIGRATOR.run(pool).await.map_err(|source| match source {
        MigrateError::VersionMissing(version) => StoreError::UnknownMigration { version },
        source => StoreError::Migrate { source },
    })
}

/// One migration of a plugin table, applied once by [`Store::register`].
#[derive(Debug, Clone, Copy)]
pub struct PluginMigration {
    /// Unique, stable id (for example `"cue_notes_0001_create"`). Never reuse or edit one.
    pub id: &'static str,
    /// The SQL (may hold several statements).
    pub sql: &'static str,
}

impl PluginMigration {
    fn checksum(&self) -> String {
        // FNV-1a: a stable fingerprint to detect edited migrations, not a security measure.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.sql.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}
