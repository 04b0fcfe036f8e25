//! Three stores of two users sync through PostgreSQL running the cloud schema: the owner
//! shares a venue by its code, the second user joins and edits a fixture, everything converges.
//!
//! Run with `cargo run --example postgres_sync [DATABASE_URL]`. The URL (argument, else
//! `LUMA_TEST_DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`) names a server
//! and a maintenance database; the example creates its own database there, applies the cloud
//! schema, and drops the database at the end.
//!
//! Tokens here come from `PostgresRemote::sign_in` (the example vouches for its users); an app
//! talks to Supabase instead, where PostgREST verifies real JWTs and sets the same claims.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use luma::model::{Fixture, UserId, Venue};
use luma::store::Store;
use luma::sync::{PostgresAdmin, PostgresRemote, Remote, StaticToken, SyncConfig, SyncEngine};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

async fn device(remote: &PostgresRemote, user: UserId) -> SyncEngine<Store, PostgresRemote> {
    let store = Store::open_in_memory().await.expect("open store");
    store.set_current_user(Some(user)).await.expect("sign in");
    let token = remote.sign_in(user);
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
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LUMA_TEST_DATABASE_URL").ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let base = PgConnectOptions::from_str(&url)?;
    let name = format!("luma_example_{}", std::process::id());
    let mut conn = base.connect().await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    println!("created database {name}");

    let result = run(base.clone().database(&name)).await;

    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    println!("dropped database {name}");
    result
}

async fn run(opts: PgConnectOptions) -> Result<(), Box<dyn std::error::Error>> {
    let admin = PostgresAdmin::new(
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(opts.clone())
            .await?,
    );
    admin.migrate().await?;
    println!("applied the cloud schema");
    let remote = PostgresRemote::new(
        PgPoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?,
    );

    let (ada, ben) = (UserId::new(), UserId::new());
    admin.create_user(ada, "Ada").await?;
    admin.create_user(ben, "Ben").await?;
    let ada_laptop = device(&remote, ada).await;
    let ada_desk = device(&remote, ada).await;
    let ben_laptop = device(&remote, ben).await;

    // Ada creates a venue with a share code and two fixtures.
    let mut venue = Venue::new("Main stage");
    venue.share_code = Some("STAGE001".into());
    ada_laptop.local().venues().create(&venue).await?;
    let par = Fixture::new(venue.id, 1, 1, 4);
    ada_laptop.local().fixtures().create(&par).await?;
    ada_laptop
        .local()
        .fixtures()
        .create(&Fixture::new(venue.id, 1, 5, 4))
        .await?;
    let r = ada_laptop.sync_now().await?;
    println!("ada's laptop pushed {} rows", r.push.applied);

    // Ben joins by the code and edits a fixture.
    let ben_token = remote.sign_in(ben);
    let joined = remote.join_venue(&ben_token, "STAGE001").await?;
    println!("ben joined venue {joined}");
    let settle = || async { admin.settled_watermark(Duration::from_secs(30)).await };
    settle().await?;
    ben_laptop.sync_now().await?;
    let mut f = ben_laptop.local().fixtures().get(par.id).await?;
    f.address = 100;
    ben_laptop.local().fixtures().update(&f).await?;
    ben_laptop.sync_now().await?;

    // Everyone syncs (twice: a push becomes pullable once older transactions finished).
    for _ in 0..2 {
        for e in [&ada_laptop, &ada_desk, &ben_laptop] {
            settle().await?;
            e.sync_now().await?;
        }
    }
    for (who, e) in [
        ("ada's laptop", &ada_laptop),
        ("ada's desk", &ada_desk),
        ("ben's laptop", &ben_laptop),
    ] {
        let venues = e.local().venues().list().await?;
        let mut addresses: Vec<i64> = e
            .local()
            .fixtures()
            .list()
            .await?
            .iter()
            .map(|f| f.address)
            .collect();
        addresses.sort_unstable();
        println!(
            "{who}: venues {:?}, fixture addresses {addresses:?}, pending {}",
            venues.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            e.local().outbox().pending_count().await?
        );
    }
    let memberships: Vec<String> = remote
        .memberships(&ben_token)
        .await?
        .into_iter()
        .map(|m| format!("{} ({})", m.venue_id, m.role))
        .collect();
    println!("ben's memberships: {memberships:?}");
    remote.pool().close().await;
    admin.pool().close().await;
    Ok(())
}
