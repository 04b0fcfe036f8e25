//! Signs in to a Supabase project, syncs a local store with it and prints the sync status as
//! it changes.
//!
//! Needs a project with the cloud SQL applied (see `luma-sync/README.md`, "Supabase") and a
//! user created in its Auth settings:
//!
//! ```text
//! SUPABASE_URL=https://<ref>.supabase.co SUPABASE_ANON_KEY=<anon key> \
//! LUMA_EMAIL=me@example.com LUMA_PASSWORD=... cargo run --example supabase
//! ```
//!
//! `LUMA_DATA_DIR` (optional) keeps `luma.db` and `state.db` between runs (the session then
//! survives restarts); without it they live in a temporary folder. Without the variables above
//! the example says what is missing and exits successfully. Only the anon key belongs here:
//! never put the `service_role` key in an app.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;

use luma::model::Venue;
use luma::store::{SecretString, StateStore, Store};
use luma::sync::supabase::{SupabaseConfig, SupabaseRemote, SupabaseSession};
use luma::sync::{SyncConfig, SyncEngine};

const VARS: [&str; 4] = [
    "SUPABASE_URL",
    "SUPABASE_ANON_KEY",
    "LUMA_EMAIL",
    "LUMA_PASSWORD",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Log lines of the library as RUST_LOG asks (for example RUST_LOG=luma_sync=debug).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let missing: Vec<&str> = VARS
        .iter()
        .copied()
        .filter(|v| std::env::var(v).map_or(true, |s| s.is_empty()))
        .collect();
    if !missing.is_empty() {
        println!(
            "This example syncs with a Supabase project. Set {} (missing: {}).\n\
             See luma-sync/README.md, section \"Supabase\", to set a project up. Nothing to do.",
            VARS.join(", "),
            missing.join(", ")
        );
        return Ok(());
    }
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let (url, anon_key, email) = (
        var("SUPABASE_URL"),
        var("SUPABASE_ANON_KEY"),
        var("LUMA_EMAIL"),
    );
    let password = SecretString::from(var("LUMA_PASSWORD"));

    let temp = tempfile::tempdir()?;
    let dir = match std::env::var("LUMA_DATA_DIR") {
        Ok(d) if !d.is_empty() => std::path::PathBuf::from(d),
        _ => temp.path().to_path_buf(),
    };
    std::fs::create_dir_all(&dir)?;

    let remote = SupabaseRemote::new(SupabaseConfig::new(url, anon_key))?;
    let session = Arc::new(
        SupabaseSession::for_remote(&remote, StateStore::open(dir.join("state.db")).await?).await?,
    );
    let user = match session.current_user().await {
        Some(user) => {
            println!("session restored for user {user}");
            user
        }
        None => {
            let user = session.sign_in(&email, &password).await?;
            println!("signed in as {email} (user {user})");
            user
        }
    };

    let store = Store::open(dir.join("luma.db")).await?;
    store.set_current_user(Some(user)).await?;
    let venue = Venue::new(format!(
        "Example venue {}",
        chrono::Utc::now().format("%H:%M:%S")
    ));
    store.venues().create(&venue).await?;
    println!("created venue {:?} locally", venue.name);

    let engine = SyncEngine::new(store, remote, session.clone(), SyncConfig::default());
    let mut status = engine.status();
    let printer = tokio::spawn(async move {
        while status.changed().await.is_ok() {
            let s = status.borrow_and_update().clone();
            println!(
                "status: phase={:?} online={} pending={} rejected={} error={}",
                s.phase,
                s.online,
                s.pending,
                s.rejected,
                s.last_error.as_deref().unwrap_or("-")
            );
        }
    });
    let result = engine.sync_now().await;
    drop(engine);
    printer.await.ok();
    match result {
        Ok(report) => println!(
            "synced: pulled {} rows in {} pages, pushed {} changes ({} applied, {} rejected)",
            report.pull.rows,
            report.pull.pages,
            report.push.sent,
            report.push.applied,
            report.push.rejected
        ),
        Err(e) => println!("sync failed: {e} (retryable: {})", e.is_retryable()),
    }
    if std::env::var("LUMA_SIGN_OUT").is_ok_and(|v| v == "1") {
        session.sign_out().await?;
        println!("signed out (unpushed ops stay in luma.db for this user)");
    }
    Ok(())
}
