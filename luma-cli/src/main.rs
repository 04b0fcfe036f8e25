//! `luma`: the command-line tool of Luma storage and sync, for app developers and operators.
//!
//! - `luma cloud export DIR` writes the cloud schema into a Supabase project's
//!   `supabase/migrations/` folder with timestamped names, for `supabase db push`.
//! - `luma cloud migrate --database-url URL` applies the cloud schema straight to a database.
//! - `luma cloud migrate-plugin --database-url URL --plugin NAME DIR` applies a plugin's own
//!   cloud migrations, tracked per plugin.
//! - `luma db status|ops|cursors|retry|discard DB` inspects a `luma.db` and retries or
//!   discards pending ops.
//!
//! `luma --help` and `luma <command> --help` describe every option.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use luma_model::{OpId, PendingOp};
use luma_store::{Store, StoreError};
use luma_sync::cloud::{self, CloudError};
use serde_json::json;
use thiserror::Error;

/// The first version of the exported files: `luma cloud export` names migration N
/// `<DEFAULT_FIRST_VERSION + N>_luma_<name>.sql`.
const DEFAULT_FIRST_VERSION: u64 = 20_260_101_000_000;

#[derive(Debug, Parser)]
#[command(
    name = "luma",
    version,
    about = "Luma storage and sync: cloud schema and luma.db tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The cloud schema (Supabase or a plain PostgreSQL).
    #[command(subcommand)]
    Cloud(CloudCommand),
    /// Inspect a local `luma.db`, retry or discard its pending ops.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Debug, Subcommand)]
enum CloudCommand {
    /// Write the cloud migrations into a Supabase project's migrations folder
    /// (`supabase/migrations`), named `<version>_luma_<name>.sql`, for `supabase db push`.
    Export {
        /// The folder to write into (created if missing), usually `<project>/supabase/migrations`.
        dir: PathBuf,
        /// Version of the first file; migration N gets this plus N. Keep it the same across
        /// exports so a new release only adds files.
        #[arg(long, default_value_t = DEFAULT_FIRST_VERSION)]
        first_version: u64,
        /// Overwrite a file of the same name whose content differs (a landed migration never
        /// changes, so a difference usually means a wrong folder or first version).
        #[arg(long)]
        force: bool,
    },
    /// Apply every pending cloud migration to a database (as its owner or a superuser).
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Apply a plugin's own cloud migrations (`<version>_<name>.sql` files), tracked per plugin
    /// in `luma.plugin_migrations`. Run it after `migrate`.
    MigratePlugin {
        #[command(flatten)]
        db: DatabaseArgs,
        /// The plugin's name (a-z, 0-9, '_', '-'): its migrations are tracked under it.
        #[arg(long)]
        plugin: String,
        /// The folder of the plugin's cloud migrations.
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct DatabaseArgs {
    /// PostgreSQL URL (`postgres://user@host:port/db`, `?sslmode=...` as the server needs).
    #[arg(long, env = "LUMA_DATABASE_URL")]
    database_url: String,
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Counts of ops waiting to be sent (`pending`) and rejected by the server (`rejected`), the
    /// device's site id and signed-in user.
    Status(DbArgs),
    /// Every op (oldest first), or with `--errors` only those that failed at least once
    /// (rejected, or waiting for a retry).
    Ops {
        #[command(flatten)]
        db: DbArgs,
        /// Only ops that failed at least once (what `pending_errors()` shows an app).
        #[arg(long)]
        errors: bool,
    },
    /// The pull cursors, per user and table.
    Cursors(DbArgs),
    /// Send rejected or waiting ops again at the next sync.
    Retry {
        #[command(flatten)]
        db: DbArgs,
        /// Op ids (as `ops` lists them).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ops: Vec<i64>,
        /// Every rejected op.
        #[arg(long)]
        all: bool,
    },
    /// Drop a pending op for good; the next pull restores the server's version of its record.
    Discard {
        #[command(flatten)]
        db: DbArgs,
        /// The op id (as `ops` lists it).
        op: i64,
    },
}

#[derive(Debug, Args)]
struct DbArgs {
    /// Path of the `luma.db` file (it must exist; it is upgraded to this build's schema).
    path: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Writes a line to standard output. A closed pipe (`luma db ops | head`) ends the command
/// quietly, where `println!` would panic; any other write error is the command's error.
macro_rules! say {
    ($($arg:tt)*) => {{
        if let Err(source) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if source.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            return Err(CliError::Output { source });
        }
    }};
}

/// Why a command failed.
#[derive(Debug, Error)]
enum CliError {
    #[error("{path}: no such database file")]
    NoDatabase { path: PathBuf },
    #[error("{path}: {reason}")]
    File {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("opening {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("the store refused the request")]
    StoreCall {
        #[source]
        source: StoreError,
    },
    #[error("the cloud schema")]
    Cloud {
        #[source]
        source: CloudError,
    },
    #[error("no pending op {op}")]
    NoSuchOp { op: i64 },
    #[error("writing the output")]
    Output {
        #[source]
        source: std::io::Error,
    },
    #[error("starting the async runtime")]
    Runtime {
        #[source]
        source: std::io::Error,
    },
}

impl From<StoreError> for CliError {
    fn from(source: StoreError) -> Self {
        CliError::StoreCall { source }
    }
}

impl From<CloudError> for CliError {
    fn from(source: CloudError) -> Self {
        CliError::Cloud { source }
    }
}

impl From<sqlx::Error> for CliError {
    fn from(source: sqlx::Error) -> Self {
        CliError::Cloud {
            source: CloudError::Database { source },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let run = || -> Result<(), CliError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| CliError::Runtime { source })?;
        runtime.block_on(run(cli.command))
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut text = format!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            // Nothing more to do if standard error is gone.
            let _ = writeln!(std::io::stderr(), "{text}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Cloud(CloudCommand::Export {
            dir,
            first_version,
            force,
        }) => export(&dir, first_version, force),
        Command::Cloud(CloudCommand::Migrate { db }) => {
            let pool = sqlx::PgPool::connect(&db.database_url).await?;
            cloud::migrate(&pool).await?;
            say!(
                "cloud schema up to date ({} migrations)",
                cloud::MIGRATOR.iter().count()
            );
            pool.close().await;
            Ok(())
        }
        Command::Cloud(CloudCommand::MigratePlugin { db, plugin, dir }) => {
            let pool = sqlx::PgPool::connect(&db.database_url).await?;
            let report = cloud::migrate_plugin(&pool, &plugin, &dir).await?;
            for v in &report.applied {
                say!("applied {plugin} {v}");
            }
            say!(
                "{plugin}: {} applied, {} already applied",
                report.applied.len(),
                report.already_applied.len()
            );
            pool.close().await;
            Ok(())
        }
        Command::Db(cmd) => db(cmd).await,
    }
}

fn export(dir: &Path, first_version: u64, force: bool) -> Result<(), CliError> {
    let file_err = |path: &Path, reason: &str, source: std::io::Error| CliError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
        source: Some(source),
    };
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, "creating the folder", e))?;
    let files = cloud::supabase_migration_files(first_version);
    // Check every file before writing any, so a refusal writes nothing.
    let mut plan = Vec::new();
    for f in &files {
        let path = dir.join(&f.file_name);
        let state = match std::fs::read_to_string(&path) {
            Ok(existing) if existing == f.sql => "unchanged",
            Ok(_) if force => "overwritten",
            Ok(_) => {
                return Err(CliError::File {
                    path,
                    reason: "exists with other content (a wrong folder or --first-version? \
                             --force overwrites)"
                        .into(),
                    source: None,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "written",
            Err(e) => return Err(file_err(&path, "reading", e)),
        };
        plan.push((path, f, state));
    }
    for (path, f, state) in plan {
        if state != "unchanged" {
            std::fs::write(&path, &f.sql).map_err(|e| file_err(&path, "writing", e))?;
        }
        say!("{state} {}", path.display());
    }
    say!(
        "{} files; apply them with `supabase db push`, then `NOTIFY pgrst, 'reload schema';`",
        files.len()
    );
    Ok(())
}

async fn open(path: &Path) -> Result<Store, CliError> {
    if !path.is_file() {
        return Err(CliError::NoDatabase {
            path: path.to_path_buf(),
        });
    }
    Store::open(path).await.map_err(|source| CliError::Store {
        path: path.to_path_buf(),
        source,
    })
}

fn op_json(op: &PendingOp) -> serde_json::Value {
    json!({
        "id": op.id.0,
        "table": op.table,
        "key": op.key.as_str(),
        "kind": op.kind.as_str(),
        "hlc": op.hlc.to_string(),
        "user": op.user_id.map(|u| u.to_string()),
        "attempts": op.attempts,
        "rejected": op.rejected,
        "last_error": op.last_error,
        "next_retry_ms": op.next_retry_ms,
    })
}

fn op_line(op: &PendingOp) -> String {
    let state = if op.rejected {
        "rejected"
    } else if op.attempts > 0 {
        "retrying"
    } else {
        "pending"
    };
    let mut line = format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        op.id.0,
        state,
        op.kind.as_str(),
        op.table,
        op.key.as_str(),
        op.hlc
    );
    if let Some(e) = &op.last_error {
        line.push('\t');
        line.push_str(e);
    }
    line
}

async fn db(cmd: DbCommand) -> Result<(), CliError> {
    match cmd {
        DbCommand::Status(args) => {
            let store = open(&args.path).await?;
            let pending = store.outbox().pending_count().await?;
            let rejected = store.outbox().rejected_count().await?;
            let user = store.current_user().await?.map(|u| u.to_string());
            if args.json {
                say!(
                    "{}",
                    json!({
                        "site_id": store.site_id().to_string(),
                        "current_user": user,
                        "pending": pending,
                        "rejected": rejected,
                    })
                );
            } else {
                say!("site id\t{}", store.site_id());
                say!("user\t{}", user.as_deref().unwrap_or("(signed out)"));
                say!("pending\t{pending}");
                say!("rejected\t{rejected}");
            }
            store.close().await;
        }
        DbCommand::Ops { db, errors } => {
            let store = open(&db.path).await?;
            let ops = if errors {
                store.outbox().errors().await?
            } else {
                store.outbox().all().await?
            };
            if db.json {
                say!(
                    "{}",
                    serde_json::Value::Array(ops.iter().map(op_json).collect())
                );
            } else {
                for op in &ops {
                    say!("{}", op_line(op));
                }
                say!("{} ops", ops.len());
            }
            store.close().await;
        }
        DbCommand::Cursors(args) => {
            let store = open(&args.path).await?;
            let cursors = store.sync_cursors().await?;
            if args.json {
                let list: Vec<_> = cursors
                    .iter()
                    .map(|c| json!({"user": c.user_id, "table": c.table, "cursor": c.cursor}))
                    .collect();
                say!("{}", serde_json::Value::Array(list));
            } else {
                for c in &cursors {
                    say!("{}\t{}\t{}", c.user_id, c.table, c.cursor);
                }
                say!("{} cursors", cursors.len());
            }
            store.close().await;
        }
        DbCommand::Retry { db, ops, all } => {
            let store = open(&db.path).await?;
            if all {
                let n = store.outbox().retry_all().await?;
                say!("{n} ops will be sent at the next sync");
            } else {
                for op in ops {
                    if !store.outbox().retry(OpId(op)).await? {
                        store.close().await;
                        return Err(CliError::NoSuchOp { op });
                    }
                    say!("op {op} will be sent at the next sync");
                }
            }
            store.close().await;
        }
        DbCommand::Discard { db, op } => {
            let store = open(&db.path).await?;
            let report = store.discard_op(OpId(op)).await?;
            let Some(removed) = report.removed else {
                store.close().await;
                return Err(CliError::NoSuchOp { op });
            };
            say!(
                "discarded op {} ({} {} {}); the next pull restores {}",
                removed.id.0,
                removed.kind.as_str(),
                removed.table,
                removed.key.as_str(),
                if report.reset_tables.is_empty() {
                    "nothing (the server never had it)".to_string()
                } else {
                    report.reset_tables.join(", ")
                }
            );
            store.close().await;
        }
    }
    Ok(())
}
