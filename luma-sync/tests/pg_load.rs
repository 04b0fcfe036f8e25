//! Load: 20 simulated devices of 4 users push and pull concurrently against one PostgreSQL for
//! a bounded time (`LUMA_LOAD_SECS`, default 20); then every device converges to the server,
//! nothing lost (every device's last write of each of its fixtures is the server's state),
//! nothing duplicated (each fixture once, counts equal).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod pg_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fast_config, local_state};
use luma_model::{Fixture, FixtureId, UserId, Venue};
use luma_store::Store;
use luma_sync::{PostgresRemote, StaticToken, SyncEngine};
use pg_common::{server_state, PgHarness};
use rand::{Rng, SeedableRng};

type Engine = SyncEngine<Store, PostgresRemote>;

async fn device(h: &PgHarness, user: UserId) -> Engine {
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    SyncEngine::new(
        store,
        h.remote.clone(),
        Arc::new(StaticToken(Arc::new(h.remote.sign_in(user)))),
        fast_config(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_devices_of_four_users_converge_under_load() {
    let secs: u64 = std::env::var("LUMA_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let h = Arc::new(PgHarness::with_connections(24).await);
    let users: Vec<UserId> = (0..4).map(|_| UserId::new()).collect();
    let mut venues = Vec::new();
    let mut devices = Vec::new();
    for &u in &users {
        let first = device(&h, u).await;
        let venue = Venue::new("Venue");
        first.local().venues().create(&venue).await.unwrap();
        first.sync_now().await.unwrap();
        venues.push(venue.id);
        devices.push((u, venue.id, first));
        for _ in 0..4 {
            devices.push((u, venue.id, device(&h, u).await));
        }
    }
    h.admin
        .settled_watermark(Duration::from_secs(60))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let devices: Vec<_> = devices.into_iter().map(Arc::new).collect();
    let mut tasks = Vec::new();
    for (n, d) in devices.iter().enumerate() {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let (_, venue, e) = &*d;
            let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
            // This device's fixtures and the last address it wrote to each.
            let mut mine: BTreeMap<FixtureId, i64> = BTreeMap::new();
            let mut cycles = 0u64;
            let mut errors = 0u64;
            while Instant::now() < deadline {
                // Other devices' pushes may not be pullable yet: the venue can still be
                // missing locally on a fresh device.
                if e.local().venues().find(*venue).await.unwrap().is_some() {
                    for _ in 0..rng.gen_range(1..5) {
                        let addr = rng.gen_range(1..500);
                        if mine.is_empty() || rng.gen_bool(0.5) {
                            let f = Fixture::new(*venue, 1, addr, 1);
                            e.local().fixtures().create(&f).await.unwrap();
                            mine.insert(f.id, addr);
                        } else {
                            let i = rng.gen_range(0..mine.len());
                            let id = *mine.keys().nth(i).unwrap();
                            let mut f = e.local().fixtures().get(id).await.unwrap();
                            f.address = addr;
                            e.local().fixtures().update(&f).await.unwrap();
                            mine.insert(id, addr);
                        }
                    }
                    if rng.gen_bool(0.2) {
                        let mut v = e.local().venues().get(*venue).await.unwrap();
                        v.description = format!("device {n} cycle {cycles}");
                        e.local().venues().update(&v).await.unwrap();
                    }
                }
                if e.sync_now().await.is_err() {
                    errors += 1;
                }
                cycles += 1;
            }
            (mine, cycles, errors)
        }));
    }
    let mut written: Vec<BTreeMap<FixtureId, i64>> = Vec::new();
    let (mut cycles, mut errors) = (0, 0);
    for t in tasks {
        let (m, c, e) = t.await.unwrap();
        written.push(m);
        cycles += c;
        errors += e;
    }
    // Final rounds: every device syncs after the watermark settled, until quiet.
    for _ in 0..3 {
        for d in &devices {
            h.admin
                .settled_watermark(Duration::from_secs(60))
                .await
                .unwrap();
            d.2.retry_all().await.unwrap();
            d.2.sync_now().await.unwrap();
        }
    }
    let mut total = 0;
    for (n, d) in devices.iter().enumerate() {
        let (user, _, e) = &**d;
        assert_eq!(e.local().outbox().pending_count().await.unwrap(), 0);
        let token = h.remote.sign_in(*user);
        let server = server_state(&h, &token, &["venues", "fixtures"]).await;
        let local = local_state(e.local()).await;
        assert_eq!(local["venues"], server["venues"], "device {n}: venues");
        assert_eq!(
            local["fixtures"], server["fixtures"],
            "device {n}: fixtures"
        );
        for (id, addr) in &written[n] {
            let key = luma_model::RecordKey::from(*id);
            let row = &server["fixtures"][&key].1;
            assert_eq!(
                row["address"],
                serde_json::json!(addr),
                "device {n}: lost write"
            );
        }
        total += written[n].len();
    }
    // No fixture lost or duplicated: the servers' per-user counts add up to the writes.
    let mut server_total = 0;
    for &u in &users {
        let token = h.remote.sign_in(u);
        server_total += server_state(&h, &token, &["fixtures"]).await["fixtures"].len();
    }
    assert_eq!(server_total, total);
    eprintln!(
        "load: 20 devices, {secs} s, {cycles} sync cycles ({errors} failed and retried), {total} fixtures"
    );
    match Arc::try_unwrap(h) {
        Ok(h) => h.drop().await,
        Err(_) => panic!("harness still shared"),
    }
}
