//! A plugin table syncs like a built-in one, without engine changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use luma_model::{Column, Parent, Record, Scope, Syncable, TableSpec, UserId, Venue, VenueId};
use luma_store::{PluginMigration, Store};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CueNote {
    id: Uuid,
    venue_id: VenueId,
    text: String,
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

const MIGRATION: PluginMigration = PluginMigration {
    id: "cue_notes_0001_create",
    sql: "CREATE TABLE plugin_cue_notes (
        id TEXT PRIMARY KEY NOT NULL,
        venue_id TEXT NOT NULL REFERENCES venues (id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        draft_path TEXT,
        hlc TEXT
    )",
};

async fn plugin_device(remote: &luma_sync::MemoryRemote, user: UserId) -> Engine {
    let store = Store::open_in_memory().await.unwrap();
    store.register::<CueNote>(&[MIGRATION]).await.unwrap();
    engine_for(store, remote, user).await
}

#[tokio::test]
async fn a_plugin_table_syncs_without_engine_changes() {
    let remote = luma_sync::MemoryRemote::new();
    remote.register_table(CueNote::SPEC);
    let user = UserId::new();
    let a = plugin_device(&remote, user).await;
    let b = plugin_device(&remote, user).await;
    let venue = Venue::new("Club");
    a.local().venues().create(&venue).await.unwrap();
    let note = CueNote {
        id: Uuid::new_v4(),
        venue_id: venue.id,
        text: "blackout on the drop".into(),
        draft_path: Some("/tmp/draft.txt".into()),
    };
    a.local().repo::<CueNote>().create(&note).await.unwrap();
    a.sync_now().await.unwrap();
    b.sync_now().await.unwrap();
    let got = b
        .local()
        .repo::<CueNote>()
        .get(luma_model::RecordKey::single(note.id))
        .await
        .unwrap();
    assert_eq!(got.text, note.text);
    assert_eq!(got.draft_path, None, "its local-only column stays local");

    // Deleting the venue on b removes the note everywhere (cascade on the server too).
    b.local().venues().delete(venue.id).await.unwrap();
    settle(&[&b, &a]).await;
    assert_eq!(a.local().repo::<CueNote>().count().await.unwrap(), 0);
    assert!(remote
        .snapshot("plugin_cue_notes")
        .values()
        .all(|(_, row)| row.is_none()));
    assert_same_as_remote(&a).await;
    assert_same_as_remote(&b).await;
}

#[tokio::test]
async fn a_plugin_table_the_remote_does_not_know_does_not_block_the_others() {
    let remote = luma_sync::MemoryRemote::new(); // no register_table: its cloud migration did not run
    let user = UserId::new();
    let a = plugin_device(&remote, user).await;
    let venue = Venue::new("Club");
    a.local().venues().create(&venue).await.unwrap();
    let note = CueNote {
        id: Uuid::new_v4(),
        venue_id: venue.id,
        text: "x".into(),
        draft_path: None,
    };
    a.local().repo::<CueNote>().create(&note).await.unwrap();
    let r = a.sync_now().await.unwrap();
    assert_eq!(r.pull.failed_tables.len(), 1);
    assert_eq!((r.push.applied, r.push.rejected), (1, 1));
    assert!(remote
        .snapshot("venues")
        .contains_key(&venue.key().unwrap()));
    let errors = a.pending_errors().await.unwrap();
    assert_eq!(errors[0].table, "plugin_cue_notes");
    assert!(a.status().borrow().last_error.is_some());
}
