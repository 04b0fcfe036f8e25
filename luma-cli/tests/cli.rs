//! The `luma` binary run as a process, as an app developer or operator runs it: export the
//! cloud schema into a Supabase-style folder and apply it from there with `psql`; apply the
//! schema and a plugin's migrations straight to a database; inspect a `luma.db` with pending
//! and rejected ops, retry and discard through the tool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../luma-sync/tests/testdb/mod.rs"]
mod testdb;

use std::path::Path;
use std::process::{Command, Output};

use luma_model::{Fixture, Venue};
use luma_store::Store;
use sqlx::{Connection, PgConnection};

fn luma(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_luma"))
        .args(args)
        .env_remove("LUMA_DATABASE_URL")
        .output()
        .expect("run luma")
}

fn ok(args: &[&str]) -> String {
    let out = luma(args);
    assert!(
        out.status.success(),
        "luma {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = luma(args);
    assert!(!out.status.success(), "luma {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn server_url() -> String {
    std::env::var("LUMA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh database: its URL and name.
async fn fresh_database() -> (String, String) {
    let name = testdb::create_database(&server_url()).await;
    let mut url = url::Url::parse(&server_url()).unwrap();
    url.set_path(&name);
    (url.to_string(), name)
}

async fn drop_database(name: &str) {
    let mut conn = PgConnection::connect(&server_url()).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn registered_tables(url: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let tables = sqlx::query_scalar("SELECT table_name FROM luma.sync_tables ORDER BY ord")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    tables
}

#[tokio::test]
async fn export_to_a_supabase_folder_then_psql_applies_it() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path().join("supabase/migrations");
    let dir_s = dir.to_str().unwrap();
    let out = ok(&["cloud", "export", dir_s]);
    assert!(out.contains("supabase db push"), "{out}");

    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let embedded = luma_sync::cloud::MIGRATOR.iter().count();
    assert_eq!(files.len(), embedded);
    assert_eq!(files[0], "20260101000001_luma_supabase_compat.sql");
    for f in &files {
        let (version, rest) = f.split_once('_').unwrap();
        assert_eq!(version.len(), 14, "{f}: a timestamp version");
        assert!(rest.starts_with("luma_") && rest.ends_with(".sql"), "{f}");
    }

    // A second export changes nothing; a file that differs is refused (nothing written) unless
    // --force.
    let again = ok(&["cloud", "export", dir_s]);
    assert_eq!(again.matches("unchanged").count(), embedded, "{again}");
    let first = dir.join(&files[0]);
    std::fs::write(&first, "-- edited\n").unwrap();
    let err = fails(&["cloud", "export", dir_s]);
    assert!(err.contains("exists with other content"), "{err}");
    assert_eq!(std::fs::read_to_string(&first).unwrap(), "-- edited\n");
    ok(&["cloud", "export", dir_s, "--force"]);
    assert_ne!(std::fs::read_to_string(&first).unwrap(), "-- edited\n");

    // psql applies the folder in version order, as `supabase db push` does.
    let (url, name) = fresh_database().await;
    for f in &files {
        let out = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-f"])
            .arg(dir.join(f))
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tables = registered_tables(&url).await;
    assert_eq!(tables, luma_sync::cloud::SYNCED_TABLES);
    drop_database(&name).await;
}

#[tokio::test]
async fn migrate_and_plugin_migrations_are_tracked() {
    let (url, name) = fresh_database().await;
    let out = ok(&["cloud", "migrate", "--database-url", &url]);
    assert!(out.contains("cloud schema up to date"), "{out}");
    // Twice is fine.
    ok(&["cloud", "migrate", "--database-url", &url]);

    let plugin = tempfile::tempdir().unwrap();
    let sql = "CREATE TABLE public.cue_lists (\n\
               id uuid PRIMARY KEY,\n\
               venue_id uuid NOT NULL REFERENCES public.venues (id) ON DELETE CASCADE,\n\
               name text NOT NULL);\n\
               SELECT luma.enable_sync('public.cue_lists', 'in_venue', 'venue_id');\n";
    std::fs::write(plugin.path().join("0001_cue_lists.sql"), sql).unwrap();
    let dir = plugin.path().to_str().unwrap();
    let out = ok(&[
        "cloud",
        "migrate-plugin",
        "--database-url",
        &url,
        "--plugin",
        "cues",
        dir,
    ]);
    assert!(out.contains("applied cues 1"), "{out}");
    assert!(registered_tables(&url)
        .await
        .contains(&"cue_lists".to_string()));

    // Again: nothing to do. A second file: only it runs.
    let out = ok(&[
        "cloud",
        "migrate-plugin",
        "--database-url",
        &url,
        "--plugin",
        "cues",
        dir,
    ]);
    assert!(out.contains("0 applied, 1 already applied"), "{out}");
    std::fs::write(
        plugin.path().join("0002_cue_notes.sql"),
        "ALTER TABLE public.cue_lists ADD COLUMN notes text NOT NULL DEFAULT '';\n\
         SELECT luma.enable_sync('public.cue_lists', 'in_venue', 'venue_id');\n",
    )
    .unwrap();
    let out = ok(&[
        "cloud",
        "migrate-plugin",
        "--database-url",
        &url,
        "--plugin",
        "cues",
        dir,
    ]);
    assert!(out.contains("1 applied, 1 already applied"), "{out}");

    // An applied migration that changed is refused, and nothing runs.
    std::fs::write(
        plugin.path().join("0001_cue_lists.sql"),
        format!("{sql}-- edited\n"),
    )
    .unwrap();
    std::fs::write(
        plugin.path().join("0003_more.sql"),
        "CREATE TABLE public.never_created (id int);\n",
    )
    .unwrap();
    let err = fails(&[
        "cloud",
        "migrate-plugin",
        "--database-url",
        &url,
        "--plugin",
        "cues",
        dir,
    ]);
    assert!(err.contains("changed after it was applied"), "{err}");
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let created: bool =
        sqlx::query_scalar("SELECT to_regclass('public.never_created') IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!created);
    let tracked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM luma.plugin_migrations WHERE plugin = 'cues'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(tracked, 2);
    conn.close().await.unwrap();

    let err = fails(&[
        "cloud",
        "migrate-plugin",
        "--database-url",
        &url,
        "--plugin",
        "Bad Name",
        dir,
    ]);
    assert!(err.contains("a plugin name is"), "{err}");
    drop_database(&name).await;
}

/// A luma.db with three ops, one of them rejected by the server.
async fn db_with_ops(path: &Path) -> (i64, i64) {
    let store = Store::open(path).await.unwrap();
    let venue = Venue::new("Club");
    store.venues().create(&venue).await.unwrap();
    store
        .fixtures()
        .create(&Fixture::new(venue.id, 1, 1, 8))
        .await
        .unwrap();
    store
        .fixtures()
        .create(&Fixture::new(venue.id, 1, 9, 8))
        .await
        .unwrap();
    let ops = store.outbox().all().await.unwrap();
    assert_eq!(ops.len(), 3);
    let rejected = &ops[1];
    assert!(store
        .outbox()
        .record_failure(rejected, "invalid: address out of range", true, None)
        .await
        .unwrap());
    store.close().await;
    (rejected.id.0, ops[2].id.0)
}

#[tokio::test]
async fn inspect_retry_and_discard_a_luma_db() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("luma.db");
    let db = path.to_str().unwrap();
    let (rejected, other) = db_with_ops(&path).await;

    let status: serde_json::Value =
        serde_json::from_str(&ok(&["db", "status", db, "--json"])).unwrap();
    assert_eq!(status["pending"], 2, "{status}");
    assert_eq!(status["rejected"], 1, "{status}");

    let text = ok(&["db", "ops", db]);
    assert!(text.contains("3 ops"), "{text}");
    let errors: serde_json::Value =
        serde_json::from_str(&ok(&["db", "ops", db, "--errors", "--json"])).unwrap();
    let errors = errors.as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["id"], rejected);
    assert_eq!(errors[0]["last_error"], "invalid: address out of range");
    let text = ok(&["db", "ops", db, "--errors"]);
    assert!(
        text.contains("rejected") && text.contains("address out of range"),
        "{text}"
    );

    let out = ok(&["db", "cursors", db]);
    assert!(out.contains("0 cursors"), "{out}");

    // Retry through the tool: nothing rejected any more (the op keeps its failure history).
    ok(&["db", "retry", db, &rejected.to_string()]);
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["db", "status", db, "--json"])).unwrap();
    assert_eq!(
        (&status["pending"], &status["rejected"]),
        (&3.into(), &0.into())
    );
    let errors: serde_json::Value =
        serde_json::from_str(&ok(&["db", "ops", db, "--errors", "--json"])).unwrap();
    assert_eq!(errors[0]["id"], rejected);
    assert_eq!(errors[0]["rejected"], false);
    let err = fails(&["db", "retry", db, "999999"]);
    assert!(err.contains("no pending op 999999"), "{err}");

    // Discard: the op is gone, the others stay.
    let out = ok(&["db", "discard", db, &other.to_string()]);
    assert!(out.contains(&format!("discarded op {other}")), "{out}");
    let store = Store::open(&path).await.unwrap();
    let left: Vec<i64> = store
        .outbox()
        .all()
        .await
        .unwrap()
        .iter()
        .map(|o| o.id.0)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&other));
    store.close().await;
    let err = fails(&["db", "discard", db, &other.to_string()]);
    assert!(err.contains("no pending op"), "{err}");

    // A path that is not a database is refused, and no file is created.
    let missing = dir.path().join("nope.db");
    let err = fails(&["db", "status", missing.to_str().unwrap()]);
    assert!(err.contains("no such database file"), "{err}");
    assert!(!missing.exists());
}
