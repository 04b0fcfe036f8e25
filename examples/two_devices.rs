//! Two devices of one user sync through an in-memory remote: edits, a conflict, a delete.
//!
//! Run with `cargo run --example two_devices`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use luma::model::{Fixture, UserId, Venue};
use luma::store::Store;
use luma::sync::{MemoryRemote, StaticToken, SyncConfig, SyncEngine};

async fn device(remote: &MemoryRemote, user: UserId) -> SyncEngine<Store, MemoryRemote> {
    let store = Store::open_in_memory().await.expect("open store");
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
    let user = UserId::new();
    let laptop = device(&remote, user).await;
    let desktop = device(&remote, user).await;

    println!("1. The laptop creates a venue with two fixtures and syncs.");
    let venue = Venue::new("Warehouse");
    laptop.local().venues().create(&venue).await?;
    let f1 = Fixture::new(venue.id, 1, 1, 8);
    let f2 = Fixture::new(venue.id, 1, 9, 8);
    laptop.local().fixtures().create(&f1).await?;
    laptop.local().fixtures().create(&f2).await?;
    let r = laptop.sync_now().await?;
    println!(
        "   pushed {} changes, {} applied",
        r.push.sent, r.push.applied
    );

    println!("2. The desktop syncs and sees them.");
    let r = desktop.sync_now().await?;
    println!(
        "   pulled {} rows; desktop has {} fixtures",
        r.pull.rows,
        desktop.local().fixtures().count().await?
    );

    println!("3. Conflict: both rename the venue while offline; the later write wins.");
    let mut on_laptop = laptop.local().venues().get(venue.id).await?;
    on_laptop.name = "Warehouse (laptop)".into();
    laptop.local().venues().update(&on_laptop).await?;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mut on_desktop = desktop.local().venues().get(venue.id).await?;
    on_desktop.name = "Warehouse (desktop)".into();
    desktop.local().venues().update(&on_desktop).await?;
    laptop.sync_now().await?;
    let r = desktop.sync_now().await?;
    println!(
        "   desktop pushed {}, applied {}",
        r.push.sent, r.push.applied
    );
    let r = laptop.sync_now().await?;
    println!("   laptop pulled {} rows", r.pull.rows);
    for (name, e) in [("laptop", &laptop), ("desktop", &desktop)] {
        println!(
            "   {name}: {:?}",
            e.local().venues().get(venue.id).await?.name
        );
    }

    println!("4. The desktop deletes a fixture; the laptop pulls the tombstone.");
    desktop.local().fixtures().delete(f2.id).await?;
    desktop.sync_now().await?;
    let r = laptop.sync_now().await?;
    println!(
        "   laptop deleted {} row(s); it has {} fixture(s)",
        r.pull.apply.deleted,
        laptop.local().fixtures().count().await?
    );

    let status = laptop.status().borrow().clone();
    println!(
        "5. Laptop status: online={} pending={} rejected={}",
        status.online, status.pending, status.rejected
    );
    Ok(())
}
