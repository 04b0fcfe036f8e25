//! Test databases on the shared PostgreSQL: each test creates its own, named
//! `luma_test_<host>_<pid>_<random>`, and drops it at the end. A test that fails (or a run
//! that is killed) cannot drop its database, so creating one first drops the databases of this
//! host whose test process is gone (`/proc/<pid>` absent). Databases of other hosts (a shared
//! server) and of running processes are never touched.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use sqlx::{Connection, PgConnection};

/// An 8-hex-digit tag of this machine (from its hostname), so a shared server is safe.
fn host_tag() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    // FNV-1a: a stable tag, not a security measure.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.trim().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Creates an empty database for one test and returns its name; first drops leftovers of dead
/// test processes of this host.
pub async fn create_database(server_url: &str) -> String {
    let host = host_tag();
    let mut admin = PgConnection::connect(server_url)
        .await
        .expect("connect to the test server");
    let prefix = format!("luma_test_{host}_");
    let existing: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(&prefix)
            .fetch_all(&mut admin)
            .await
            .expect("list test databases");
    for name in existing {
        let pid = name[prefix.len()..].split('_').next().unwrap_or("");
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            // Another process may be dropping it at the same moment: errors are fine here.
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    }
    let name = format!(
        "{prefix}{}_{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    admin.close().await.ok();
    name
}
