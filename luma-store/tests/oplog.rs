//! The op log and the clock: local writes append their op with the stamp the store handed out,
//! stamps stay in commit order across two `Store` handles on one file, op ids are never
//! reused, and plain SQL writes (no stamp) are stamped by the trigger.

mod common;

use common::temp_store;
use luma_model::{Hlc, OpKind, PendingOp, RecordKey, Venue};
use luma_store::Store;

async fn ops(store: &Store) -> Vec<PendingOp> {
    store.outbox().all().await.unwrap()
}

async fn log_len(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sync_oplog")
        .fetch_one(store.reader_pool())
        .await
        .unwrap()
}

async fn row_stamp(store: &Store, id: &str) -> String {
    sqlx::query_scalar("SELECT hlc FROM venues WHERE id = ?")
        .bind(id)
        .fetch_one(store.reader_pool())
        .await
        .unwrap()
}

const INSERT_VENUE: &str =
    "INSERT INTO venues (id, name, description, created_at, updated_at, hlc) \
     VALUES (?, 'Raw', '', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', ?)";

#[tokio::test]
async fn a_write_with_a_fresh_stamp_is_logged_with_that_stamp_in_one_append() {
    let store = Store::open_in_memory().await.unwrap();
    let before = log_len(&store).await;
    let id = uuid::Uuid::new_v4().to_string();
    let stamp = store.next_stamp();
    sqlx::query(INSERT_VENUE)
        .bind(&id)
        .bind(stamp.to_string())
        .execute(store.writer_pool())
        .await
        .unwrap();
    assert_eq!(log_len(&store).await, before + 1, "one append, no restamp");
    assert_eq!(row_stamp(&store, &id).await, stamp.to_string());
    let all = ops(&store).await;
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].hlc, all[0].kind), (stamp, OpKind::Upsert));
    assert_eq!(store.clock_stamp().await.unwrap(), stamp);
}

#[tokio::test]
async fn a_stale_or_missing_stamp_is_replaced_by_a_newer_one() {
    let store = Store::open_in_memory().await.unwrap();
    let old = store.next_stamp();
    store.venues().create(&Venue::new("A")).await.unwrap();
    let newest = store.clock_stamp().await.unwrap();
    assert!(newest > old);
    // A stamp older than the newest one, and the newest one itself (equal stamps from two
    // handles), and no stamp at all: each write gets a stamp newer than every earlier one.
    let mut last = newest;
    for stamp in [Some(old.to_string()), Some(newest.to_string()), None] {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(INSERT_VENUE)
            .bind(&id)
            .bind(stamp)
            .execute(store.writer_pool())
            .await
            .unwrap();
        let op = store
            .outbox()
            .for_record("venues", &RecordKey::from_canonical(id.clone()))
            .await
            .unwrap()
            .expect("the write has its op");
        assert!(op.hlc > last, "{:?} is not newer than {last:?}", op.hlc);
        assert_eq!(row_stamp(&store, &id).await, op.hlc.to_string());
        last = op.hlc;
    }
    // A plain SQL update that leaves the stamp alone is stamped too; so is a delete.
    let id = ops(&store).await[0].key.clone();
    sqlx::query("UPDATE venues SET name = 'Renamed' WHERE id = ?")
        .bind(id.as_str())
        .execute(store.writer_pool())
        .await
        .unwrap();
    let op = store
        .outbox()
        .for_record("venues", &id)
        .await
        .unwrap()
        .unwrap();
    assert!(op.hlc > last);
    assert_eq!(row_stamp(&store, id.as_str()).await, op.hlc.to_string());
    last = op.hlc;
    sqlx::query("DELETE FROM venues WHERE id = ?")
        .bind(id.as_str())
        .execute(store.writer_pool())
        .await
        .unwrap();
    let op = store
        .outbox()
        .for_record("venues", &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(op.kind, OpKind::Delete);
    assert!(op.hlc > last);
}

#[tokio::test]
async fn two_handles_on_one_file_stamp_writes_in_commit_order() {
    let (dir, a) = temp_store().await;
    let b = Store::open(dir.path().join("luma.db")).await.unwrap();
    // Handle A's clock jumps four minutes ahead (a stamp merged from a device whose clock
    // runs fast, within the store's bound on remote stamps); handle B does not know.
    let ahead = luma_model::wall_clock_ms() + 240_000;
    a.merge_remote_clock(Hlc::new(ahead, 7, a.site_id()))
        .await
        .unwrap();
    let venue = Venue::new("Hall");
    a.venues().create(&venue).await.unwrap();
    a.venues().delete(venue.id).await.unwrap();
    let deleted = ops(&a).await[0].clone();
    assert_eq!(deleted.kind, OpKind::Delete);
    assert!(deleted.hlc.physical_ms >= ahead);

    // B re-creates the record: its write must be newer than A's delete, or the delete would
    // win on the server (a lost write).
    b.venues().create(&venue).await.unwrap();
    let all = ops(&b).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].kind, OpKind::Upsert);
    assert!(
        all[0].hlc > deleted.hlc,
        "{:?} <= {:?}",
        all[0].hlc,
        deleted.hlc
    );
    assert_eq!(
        row_stamp(&b, &venue.id.to_string()).await,
        all[0].hlc.to_string()
    );

    // Writes alternating between the handles get strictly increasing stamps, and each row
    // carries its op's stamp.
    let mut last = all[0].hlc;
    for i in 0..20 {
        let store = if i % 2 == 0 { &a } else { &b };
        let v = Venue::new(format!("V{i}"));
        store.venues().create(&v).await.unwrap();
        let op = store
            .outbox()
            .for_record("venues", &RecordKey::from(v.id))
            .await
            .unwrap()
            .unwrap();
        assert!(op.hlc > last, "write {i}: {:?} <= {last:?}", op.hlc);
        assert_eq!(
            row_stamp(store, &v.id.to_string()).await,
            op.hlc.to_string()
        );
        last = op.hlc;
    }
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn op_ids_are_never_reused_and_the_clock_survives_settling_and_reopening() {
    let (dir, store) = temp_store().await;
    let mut seen = Vec::new();
    let mut newest = store.clock_stamp().await.unwrap();
    for round in 0..3 {
        for i in 0..3 {
            store
                .venues()
                .create(&Venue::new(format!("R{round} V{i}")))
                .await
                .unwrap();
        }
        let all = ops(&store).await;
        assert_eq!(all.len(), 3);
        for op in &all {
            assert!(!seen.contains(&op.id), "op id {:?} reused", op.id);
            seen.push(op.id);
            assert!(op.hlc > newest);
        }
        newest = all.iter().map(|o| o.hlc).max().unwrap();
        // Settling empties the outbox and the log (but for the clock's floor).
        assert_eq!(store.outbox().complete(&all).await.unwrap(), 3);
        assert!(ops(&store).await.is_empty());
        assert_eq!(log_len(&store).await, 1);
        assert_eq!(store.clock_stamp().await.unwrap(), newest);
    }
    store.close().await;
    let store = Store::open(dir.path().join("luma.db")).await.unwrap();
    assert_eq!(store.clock_stamp().await.unwrap(), newest);
    store.venues().create(&Venue::new("After")).await.unwrap();
    let op = ops(&store).await[0].clone();
    assert!(op.hlc > newest);
    assert!(seen.iter().all(|id| id.0 < op.id.0));
    store.close().await;
}

#[tokio::test]
async fn repeated_edits_in_the_log_and_in_the_outbox_collapse_into_one_op() {
    let store = Store::open_in_memory().await.unwrap();
    let mut venue = Venue::new("A");
    store.venues().create(&venue).await.unwrap();
    // Fold (by reading), then fail the op: a newer edit still in the log resets it.
    let first = ops(&store).await[0].clone();
    assert!(store
        .outbox()
        .record_failure(&first, "refused", true, None)
        .await
        .unwrap());
    venue.name = "B".into();
    store.venues().update(&venue).await.unwrap();
    venue.name = "C".into();
    store.venues().update(&venue).await.unwrap();
    let all = ops(&store).await;
    assert_eq!(all.len(), 1);
    let op = &all[0];
    assert_eq!(op.id, first.id, "the op keeps the id of its first write");
    assert!(op.hlc > first.hlc);
    assert!(!op.rejected && op.attempts == 0 && op.last_error.is_none());
    assert_eq!(
        row_stamp(&store, &venue.id.to_string()).await,
        op.hlc.to_string()
    );
    // Completing the op read before the edits leaves the newer one.
    assert_eq!(store.outbox().complete(&[first]).await.unwrap(), 0);
    assert_eq!(ops(&store).await.len(), 1);
}
