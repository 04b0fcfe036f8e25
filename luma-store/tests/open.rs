//! Opening, migrating, reopening, concurrent writers, state.db and plugin tables.

mod common;

use std::borrow::Cow;

use common::temp_store;
use luma_model::{Column, Fixture, Parent, Record, Scope, Syncable, TableSpec, Venue, VenueId};
use luma_store::{PluginMigration, StateStore, Store, StoreError, MIGRATOR};
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::ConnectOptions;

#[tokio::test]
async fn migrations_apply_to_an_empty_file_and_seed_categories() {
    let (_dir, store) = temp_store().await;
    let cats = store.categories().list().await.unwrap();
    assert_eq!(cats.len(), 6);
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(store.reader_pool())
        .await
        .unwrap();
    assert_eq!(applied as usize, MIGRATOR.iter().count());
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.writer_pool())
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(store.writer_pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
}

#[tokio::test]
async fn upgrade_from_the_previous_migration_set_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("luma.db");
    // A database made by the previous build: every migration but the newest.
    let all: Vec<_> = MIGRATOR.iter().cloned().collect();
    assert!(all.len() >= 2);
    let previous = Migrator {
        migrations: Cow::Owned(all[..all.len() - 1].to_vec()),
        ..Migrator::DEFAULT
    };
    {
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        previous.run(&mut conn).await.unwrap();
        sqlx::query(
            "INSERT INTO venues (id, uid, name, description, created_at, updated_at) \
             VALUES ('2f1c1a3e-0000-4000-8000-000000000001', NULL, 'Old hall', '', \
             '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let store = Store::open(&path).await.unwrap();
    let venues = store.venues().list().await.unwrap();
    assert_eq!(venues.len(), 1);
    assert_eq!(venues[0].name, "Old hall");
    assert_eq!(store.categories().count().await.unwrap(), 6);
}

#[tokio::test]
async fn upgrading_to_the_op_log_keeps_pending_ops_op_ids_and_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("luma.db");
    // A database of the build before the op log: pending ops lived in sync_outbox only and the
    // clock (with the op counter) in sync_clock.
    let before: Vec<_> = MIGRATOR
        .iter()
        .filter(|m| m.description != "oplog")
        .cloned()
        .collect();
    assert_eq!(before.len() + 1, MIGRATOR.iter().count());
    let previous = Migrator {
        migrations: Cow::Owned(before),
        ..Migrator::DEFAULT
    };
    let site: String;
    // A clock a minute ahead of the wall clock (within the bound on stamps, so it is kept).
    let ahead = luma_model::wall_clock_ms() + 60_000;
    {
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        previous.run(&mut conn).await.unwrap();
        site = sqlx::query_scalar("SELECT site FROM sync_clock")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        sqlx::query("UPDATE sync_clock SET physical = ?, counter = 41, next_op = 57")
            .bind(i64::try_from(ahead).unwrap())
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO venues (id, name, description, created_at, updated_at, hlc) \
             VALUES ('2f1c1a3e-0000-4000-8000-000000000001', 'Old hall', '', \
             '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', ?1)",
        )
        .bind(format!("{ahead:015}-000041-{site}"))
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO sync_outbox (tbl, pk, seq, hlc, kind, user_id) \
             VALUES ('venues', '2f1c1a3e-0000-4000-8000-000000000001', 57, ?1, 'upsert', NULL)",
        )
        .bind(format!("{ahead:015}-000041-{site}"))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let store = Store::open(&path).await.unwrap();
    let old_stamp: luma_model::Hlc = format!("{ahead:015}-000041-{site}").parse().unwrap();
    let ops = store.outbox().all().await.unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!((ops[0].id.0, ops[0].hlc), (57, old_stamp));
    assert_eq!(store.clock_stamp().await.unwrap(), old_stamp);
    // New writes continue after the old clock and the old op ids.
    let venue = luma_model::Venue::new("New hall");
    store.venues().create(&venue).await.unwrap();
    let op = store
        .outbox()
        .for_record("venues", &luma_model::RecordKey::from(venue.id))
        .await
        .unwrap()
        .unwrap();
    assert!(op.id.0 > 57, "{:?}", op.id);
    assert!(op.hlc > old_stamp);
    assert_eq!(store.outbox().all().await.unwrap().len(), 2);
    store.close().await;
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("luma.db");
    {
        let store = Store::open(&path).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (29991231000000, 'from the future', 1, x'00', 0)",
        )
        .execute(store.writer_pool())
        .await
        .unwrap();
        store.close().await;
    }
    let err = Store::open(&path).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnknownMigration {
                version: 29991231000000
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer version"));
}

#[tokio::test]
async fn reopening_keeps_data_ops_and_site() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("luma.db");
    let venue = Venue::new("Kept");
    let site = {
        let store = Store::open(&path).await.unwrap();
        store.venues().create(&venue).await.unwrap();
        let site = store.site_id();
        store.close().await;
        // Closing checkpoints: everything is in luma.db itself (safe to copy as one file).
        let wal = path.with_file_name("luma.db-wal");
        assert!(
            std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0,
            "the WAL still holds data after close"
        );
        site
    };
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.site_id(), site);
    assert_eq!(store.venues().get(venue.id).await.unwrap(), {
        let mut v = venue.clone();
        v.uid = None;
        v
    });
    let ops = store.outbox().all().await.unwrap();
    assert_eq!(ops.len(), 1);
    // The clock resumes after the persisted stamp.
    let mut v = venue.clone();
    v.name = "Kept 2".into();
    store.venues().update(&v).await.unwrap();
    assert!(store.outbox().all().await.unwrap()[0].hlc > ops[0].hlc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_fail_with_database_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("luma.db");
    // Two handles on one file (as two parts of an app might open it) and clones of each.
    let a = Store::open(&path).await.unwrap();
    let b = Store::open(&path).await.unwrap();
    let venue = Venue::new("Busy");
    a.venues().create(&venue).await.unwrap();
    let mut tasks = Vec::new();
    for (i, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let venue_id = venue.id;
        tasks.push(tokio::spawn(async move {
            for n in 0..100 {
                if n % 10 == 0 {
                    // A multi-statement transaction interleaved with single writes.
                    let mut tx = store.transaction().await?;
                    tx.create(&Fixture::new(venue_id, 2 + i as i64, 1 + n, 1))
                        .await?;
                    tx.create(&Fixture::new(venue_id, 2 + i as i64, 200 + n, 1))
                        .await?;
                    tx.commit().await?;
                } else {
                    store
                        .fixtures()
                        .create(&Fixture::new(venue_id, 2 + i as i64, 1 + n, 1))
                        .await?;
                }
                let _ = store.fixtures().list_by_venue(venue_id).await?;
            }
            Ok::<(), StoreError>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(a.fixtures().count().await.unwrap(), 4 * 110);
    assert_eq!(b.outbox().pending_count().await.unwrap(), 1 + 4 * 110);
    // Every write has its own stamp, carried by its row and its op, however the two handles'
    // writes interleaved (a stamp that is not newer than the database's newest is replaced,
    // never trusted).
    let ops = b.outbox().all().await.unwrap();
    let stamps: std::collections::HashSet<_> = ops.iter().map(|o| o.hlc).collect();
    assert_eq!(stamps.len(), ops.len());
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fixtures f JOIN sync_outbox o \
         ON o.tbl = 'fixtures' AND o.pk = f.id WHERE o.hlc IS NOT f.hlc",
    )
    .fetch_one(b.reader_pool())
    .await
    .unwrap();
    assert_eq!(mismatched, 0);
}

#[tokio::test]
async fn state_db_keeps_the_session_and_never_prints_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let session = luma_store::AuthSession {
        user_id: luma_model::UserId::new(),
        access_token: "eyJ-access-SECRET".to_string().into(),
        refresh_token: "refresh-SECRET".to_string().into(),
        expires_at: chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc),
    };
    {
        let state = StateStore::open(&path).await.unwrap();
        assert!(state.load().await.unwrap().is_none());
        state.save(&session).await.unwrap();
    }
    let state = StateStore::open(&path).await.unwrap();
    let loaded = state.load().await.unwrap().unwrap();
    use luma_store::ExposeSecret;
    assert_eq!(loaded.user_id, session.user_id);
    assert_eq!(loaded.refresh_token.expose_secret(), "refresh-SECRET");
    assert_eq!(loaded.expires_at, session.expires_at);
    let printed = format!("{loaded:?} {:?} {state:?}", loaded.clone());
    assert!(!printed.contains("SECRET"), "{printed}");
    state.clear().await.unwrap();
    assert!(state.load().await.unwrap().is_none());
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CueNote {
    id: uuid::Uuid,
    venue_id: VenueId,
    text: String,
    local_color: Option<String>,
}

impl Record for CueNote {
    const SPEC: TableSpec = TableSpec {
        name: "plugin_cue_notes",
        columns: &[
            Column::uuid("id"),
            Column::uuid("venue_id"),
            Column::text("text"),
            Column::text("local_color").local(),
        ],
        key: &["id"],
        parents: &[Parent::new("venue_id", "venues")],
        scope: Scope::InVenue { column: "venue_id" },
    };
}
impl Syncable for CueNote {}

const CUE_NOTES_V1: PluginMigration = PluginMigration {
    id: "plugin_cue_notes_0001",
    sql: "CREATE TABLE plugin_cue_notes (id TEXT PRIMARY KEY NOT NULL, \
          venue_id TEXT NOT NULL REFERENCES venues(id) ON DELETE CASCADE, \
          text TEXT NOT NULL, local_color TEXT, hlc TEXT)",
};

#[tokio::test]
async fn a_plugin_table_gets_the_outbox_without_store_changes() {
    let (dir, store) = temp_store().await;
    store.register::<CueNote>(&[CUE_NOTES_V1]).await.unwrap();
    let venue = Venue::new("Club");
    store.venues().create(&venue).await.unwrap();
    let note = CueNote {
        id: uuid::Uuid::new_v4(),
        venue_id: venue.id,
        text: "house lights".into(),
        local_color: None,
    };
    store.repo::<CueNote>().create(&note).await.unwrap();
    assert_eq!(
        store
            .repo::<CueNote>()
            .get(luma_model::RecordKey::single(note.id))
            .await
            .unwrap(),
        note
    );
    let ops = store.outbox().all().await.unwrap();
    assert!(ops.iter().any(|o| o.table == "plugin_cue_notes"));
    // Deleting the venue cascades to the plugin rows, with ops.
    store.venues().delete(venue.id).await.unwrap();
    let ops = store.outbox().all().await.unwrap();
    assert!(ops
        .iter()
        .any(|o| o.table == "plugin_cue_notes" && o.kind == luma_model::OpKind::Delete));
    assert!(store
        .synced_tables()
        .unwrap()
        .iter()
        .any(|s| s.name == "plugin_cue_notes"));
    drop(store);

    // Registering again on reopen applies nothing twice; an edited migration is refused.
    let store = Store::open(dir.path().join("luma.db")).await.unwrap();
    store.register::<CueNote>(&[CUE_NOTES_V1]).await.unwrap();
    let edited = PluginMigration {
        id: CUE_NOTES_V1.id,
        sql: "CREATE TABLE plugin_cue_notes (id TEXT)",
    };
    assert!(matches!(
        store.register::<CueNote>(&[edited]).await,
        Err(StoreError::Plugin { .. })
    ));
}

#[tokio::test]
async fn a_plugin_table_that_does_not_match_its_spec_is_refused() {
    let store = Store::open_in_memory().await.unwrap();
    let no_hlc = PluginMigration {
        id: "x1",
        sql: "CREATE TABLE plugin_cue_notes (id TEXT PRIMARY KEY, venue_id TEXT, text TEXT, local_color TEXT)",
    };
    let err = store.register::<CueNote>(&[no_hlc]).await.unwrap_err();
    assert!(err.to_string().contains("hlc"), "{err}");
    // And an unregistered type is a typed error, not a panic.
    let err = Store::open_in_memory()
        .await
        .unwrap()
        .repo::<CueNote>()
        .list()
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownTable { .. }));
}
