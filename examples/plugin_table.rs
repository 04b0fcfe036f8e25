//! A plugin author adds a syncable table: one struct, one `impl Record` with its spec, the
//! `Syncable` marker, one local migration; the cloud side registers the same spec (on a real
//! server: its cloud migration). The engine syncs it like a built-in table.
//!
//! Run with `cargo run --example plugin_table`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use luma::model::{
    Column, Parent, Record, RecordKey, Scope, Syncable, TableSpec, UserId, Venue, VenueId,
};
use luma::store::{PluginMigration, Store};
use luma::sync::{MemoryRemote, StaticToken, SyncConfig, SyncEngine};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A note attached to a venue's cue list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CueNote {
    id: Uuid,
    venue_id: VenueId,
    text: String,
    /// Where the draft lives on this machine: never synced.
    draft_path: Option<String>,
}

impl Record for CueNote {
    const SPEC: TableSpec = TableSpec {
        name: "plugin_cue_notes",
        columns: &[
            Column::uuid("id"),
            Column::uuid("venue_id"),
            Column::text("text"),
            Column::text("draft_path").local(),
        ],
        key: &["id"],
        parents: &[Parent::new("venue_id", "venues")],
        scope: Scope::InVenue { column: "venue_id" },
    };
}
impl Syncable for CueNote {}

const CREATE: PluginMigration = PluginMigration {
    id: "cue_notes_0001_create",
    sql: "CREATE TABLE plugin_cue_notes (
        id TEXT PRIMARY KEY NOT NULL,
        venue_id TEXT NOT NULL REFERENCES venues (id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        draft_path TEXT,
        hlc TEXT
    )",
};

async fn device(remote: &MemoryRemote, user: UserId) -> SyncEngine<Store, MemoryRemote> {
    let store = Store::open_in_memory().await.expect("open store");
    store
        .register::<CueNote>(&[CREATE])
        .await
        .expect("register the plugin table");
    store.set_current_user(Some(user)).await.expect("sign in");
    let token = remote.issue_token(user);
    SyncEngine::new(
        store,
        remote.clone(),
        Arc::new(StaticToken::new(token)),
        SyncConfig::default(),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Log lines of the library as RUST_LOG asks (for example RUST_LOG=luma_sync=debug).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let remote = MemoryRemote::new();
    remote.register_table(CueNote::SPEC);
    let user = UserId::new();
    let a = device(&remote, user).await;
    let b = device(&remote, user).await;

    let venue = Venue::new("Club");
    a.local().venues().create(&venue).await?;
    let note = CueNote {
        id: Uuid::new_v4(),
        venue_id: venue.id,
        text: "Blackout on the drop".into(),
        draft_path: Some("/home/me/drafts/drop.txt".into()),
    };
    a.local().repo::<CueNote>().create(&note).await?;
    let r = a.sync_now().await?;
    println!(
        "device A pushed {} changes (the venue and the note)",
        r.push.applied
    );
    let r = b.sync_now().await?;
    println!("device B pulled {} rows", r.pull.rows);
    let got = b
        .local()
        .repo::<CueNote>()
        .get(RecordKey::single(note.id))
        .await?;
    println!(
        "device B sees the note {:?}; its draft path stays on A: {:?}",
        got.text, got.draft_path
    );
    Ok(())
}
