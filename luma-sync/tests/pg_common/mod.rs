//! A fresh database with the cloud schema, a `PostgresRemote` and a `PostgresAdmin` on it, as a
//! conformance harness.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../testdb/mod.rs"]
mod testdb;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use luma_model::UserId;
use luma_sync::conformance::{Capabilities, Harness};
use luma_sync::{AccessToken, PostgresAdmin, PostgresRemote, Watermark};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};

pub fn base_url() -> String {
    std::env::var("LUMA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub struct PgHarness {
    pub name: String,
    pub remote: PostgresRemote,
    pub admin: PostgresAdmin,
}

impl PgHarness {
    pub async fn new() -> Self {
        Self::with_connections(8).await
    }

    pub async fn with_connections(n: u32) -> Self {
        let name = testdb::create_database(&base_url()).await;
        let opts = PgConnectOptions::from_str(&base_url())
            .expect("url")
            .database(&name);
        let admin = PostgresAdmin::new(
            PgPoolOptions::new()
                .max_connections(2)
                .connect_with(opts.clone())
                .await
                .expect("connect"),
        );
        admin.migrate().await.expect("migrate");
        let remote = PostgresRemote::new(
            PgPoolOptions::new()
                .max_connections(n)
                .connect_with(opts)
                .await
                .expect("connect"),
        );
        Self {
            name,
            remote,
            admin,
        }
    }

    pub async fn drop(self) {
        self.remote.pool().close().await;
        self.admin.pool().close().await;
        let mut conn = PgConnection::connect(&base_url()).await.expect("connect");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .expect("drop database");
    }
}

#[async_trait]
impl Harness for PgHarness {
    type R = PostgresRemote;
    fn remote(&self) -> &PostgresRemote {
        &self.remote
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            purge: true,
            remove_member: true,
        }
    }
    async fn sign_in(&self, user: UserId) -> AccessToken {
        self.remote.sign_in(user)
    }
    async fn add_member(&self, venue: &str, user: UserId) {
        self.admin
            .add_member(venue, user)
            .await
            .expect("add member");
    }
    async fn remove_member(&self, venue: &str, user: UserId) {
        self.admin
            .remove_member(venue, user)
            .await
            .expect("remove member");
    }
    async fn purge_tombstones(&self) {
        self.admin
            .purge_tombstones(Duration::ZERO)
            .await
            .expect("purge");
    }
    async fn settled_watermark(&self, _token: &AccessToken) -> Watermark {
        self.admin
            .settled_watermark(Duration::from_secs(30))
            .await
            .expect("watermark")
    }
}

/// Transport faults queued by a test in front of a PostgresRemote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgFault {
    /// The next push reaches the server, its answer is lost.
    LosePushResponse,
    /// The next pull fails before reaching the server.
    FailPull,
    /// The next pull goes through (lets a test skip calls).
    PassPull,
}

/// A PostgresRemote with scripted transport faults.
#[derive(Clone)]
pub struct Scripted {
    pub inner: PostgresRemote,
    pub queue: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<PgFault>>>,
}

impl Scripted {
    pub fn new(inner: PostgresRemote) -> Self {
        Self {
            inner,
            queue: Default::default(),
        }
    }
    pub fn inject(&self, f: PgFault) {
        self.queue.lock().unwrap().push_back(f);
    }
    fn take(&self, push: bool) -> Option<PgFault> {
        let mut q = self.queue.lock().unwrap();
        let i = q
            .iter()
            .position(|f| (*f == PgFault::LosePushResponse) == push)?;
        q.remove(i)
    }
}

#[async_trait]
impl luma_sync::Remote for Scripted {
    async fn push(
        &self,
        token: &AccessToken,
        changes: &[luma_sync::Change],
    ) -> luma_sync::Result<Vec<luma_sync::ChangeOutcome>> {
        let f = self.take(true);
        let out = self.inner.push(token, changes).await?;
        if f.is_some() {
            return Err(luma_sync::SyncError::transient("response lost (injected)"));
        }
        Ok(out)
    }
    async fn pull(
        &self,
        token: &AccessToken,
        request: &luma_sync::PullRequest,
    ) -> luma_sync::Result<luma_sync::PullPage> {
        if self.take(false) == Some(PgFault::FailPull) {
            return Err(luma_sync::SyncError::transient(
                "connection reset (injected)",
            ));
        }
        self.inner.pull(token, request).await
    }
    async fn watermark(&self, token: &AccessToken) -> luma_sync::Result<Watermark> {
        self.inner.watermark(token).await
    }
    async fn memberships(
        &self,
        token: &AccessToken,
    ) -> luma_sync::Result<Vec<luma_sync::Membership>> {
        self.inner.memberships(token).await
    }
}

/// What `user` sees on the server: table -> key -> (hlc, row) of live rows.
pub async fn server_state(
    h: &PgHarness,
    token: &AccessToken,
    tables: &[&str],
) -> std::collections::BTreeMap<
    String,
    std::collections::BTreeMap<luma_model::RecordKey, (luma_model::Hlc, luma_model::Row)>,
> {
    use luma_sync::Remote;
    let wm = h
        .admin
        .settled_watermark(Duration::from_secs(60))
        .await
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for table in tables {
        let mut rows = std::collections::BTreeMap::new();
        let mut cursor = None;
        loop {
            let page = h
                .remote
                .pull(
                    token,
                    &luma_sync::PullRequest {
                        table: (*table).into(),
                        cursor: cursor.clone(),
                        limit: 1000,
                        watermark: wm.clone(),
                    },
                )
                .await
                .unwrap();
            for r in page.rows {
                match r.row {
                    Some(row) => rows.insert(r.key, (r.hlc, row)),
                    None => rows.remove(&r.key),
                };
            }
            if page.cursor.is_some() {
                cursor = page.cursor;
            }
            if !page.has_more {
                break;
            }
        }
        out.insert((*table).to_string(), rows);
    }
    out
}
