//! Helpers shared by the engine's tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use luma_model::{Hlc, RecordKey, Row, UserId};
use luma_store::schema::{key_expr, read_row};
use luma_store::Store;
use luma_sync::{Backoff, MemoryRemote, StaticToken, SyncConfig, SyncEngine};
use sqlx::Row as _;

pub type Engine = SyncEngine<Store, MemoryRemote>;

pub fn fast_config() -> SyncConfig {
    SyncConfig {
        batch_size: 50,
        page_size: 100,
        pull_interval: Duration::from_secs(3600),
        debounce: Duration::from_millis(5),
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            factor: 2.0,
            jitter: 0.5,
        },
        jitter_seed: Some(7),
    }
}

pub async fn device(remote: &MemoryRemote, user: UserId) -> Engine {
    let store = Store::open_in_memory().await.unwrap();
    engine_for(store, remote, user).await
}

pub async fn engine_for(store: Store, remote: &MemoryRemote, user: UserId) -> Engine {
    store.set_current_user(Some(user)).await.unwrap();
    let token = Arc::new(remote.issue_token(user));
    SyncEngine::new(
        store,
        remote.clone(),
        Arc::new(StaticToken(token)),
        fast_config(),
    )
}

/// Every synced row of a store: table -> key -> (hlc, synced columns).
pub async fn local_state(store: &Store) -> BTreeMap<String, BTreeMap<RecordKey, (Hlc, Row)>> {
    let mut out = BTreeMap::new();
    for spec in store.synced_tables().unwrap() {
        let sql = store.table(spec.name).unwrap();
        let text = format!(
            "SELECT {} AS pk, t.hlc AS hlc, {} FROM \"{}\" t",
            key_expr(&spec, "t"),
            spec.columns
                .iter()
                .map(|c| format!("t.\"{}\"", c.name))
                .collect::<Vec<_>>()
                .join(", "),
            spec.name
        );
        let _ = sql;
        let rows = sqlx::query(&text)
            .fetch_all(store.reader_pool())
            .await
            .unwrap();
        let mut table = BTreeMap::new();
        for r in &rows {
            let pk: String = r.get("pk");
            let hlc: String = r.get("hlc");
            let row = read_row(&spec, r, 2, true).unwrap();
            table.insert(RecordKey::from_canonical(pk), (hlc.parse().unwrap(), row));
        }
        out.insert(spec.name.to_string(), table);
    }
    out
}

/// The remote's live rows, in the same shape.
pub fn remote_state(
    remote: &MemoryRemote,
    store: &Store,
) -> BTreeMap<String, BTreeMap<RecordKey, (Hlc, Row)>> {
    let mut out = BTreeMap::new();
    for spec in store.synced_tables().unwrap() {
        let live = remote
            .snapshot(spec.name)
            .into_iter()
            .filter_map(|(k, (h, row))| row.map(|r| (k, (h, r))))
            .collect();
        out.insert(spec.name.to_string(), live);
    }
    out
}

/// Asserts a replica equals the remote (as the replica's user sees everything here).
pub async fn assert_same_as_remote(engine: &Engine) {
    let local = local_state(engine.local()).await;
    let remote = remote_state(engine.remote(), engine.local());
    for (table, rows) in &remote {
        let mine = &local[table];
        assert_eq!(mine, rows, "table {table} differs from the remote");
    }
}

/// Syncs until nothing is pending and a cycle changes nothing.
pub async fn settle(engines: &[&Engine]) {
    for _ in 0..4 {
        for e in engines {
            e.retry_all().await.unwrap();
            e.sync_now().await.unwrap();
        }
    }
}
