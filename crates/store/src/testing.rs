//! Test support: a real PostgreSQL for every test, with no set-up by hand.
//!
//! The first test of any test binary starts the managed cluster under
//! `$RANKFIT_TEST_PG_DIR` (default `<target>/rankfit-test-pg`); every test then gets a
//! database of its own, freshly migrated, dropped when the test's [`TestDb`] is dropped. Set
//! `RANKFIT_TEST_DATABASE_URL` to use an existing server instead (a database is still created
//! and dropped per test).
//!
//! The cluster outlives the test binaries that share it (cargo runs them one after another,
//! and starting PostgreSQL costs seconds each time): the next `cargo test` reuses it. Stop it
//! with `pg_ctl -D target/rankfit-test-pg/pgdata stop` (as the `postgres` user when running as
//! root). A killed test leaves its database behind: remove the directory of a stopped cluster
//! to start afresh.

use std::path::PathBuf;
use std::sync::OnceLock;

use sqlx::{Connection, PgConnection, PgPool};

use crate::cluster::ManagedCluster;

static CLUSTER: OnceLock<Result<String, String>> = OnceLock::new();

fn default_dir() -> PathBuf {
    if let Ok(d) = std::env::var("RANKFIT_TEST_PG_DIR") {
        return PathBuf::from(d);
    }
    // Tests run with the crate as cwd; the workspace target dir is two levels up.
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("rankfit-test-pg")
}

/// URL of the maintenance database of the test server (starting it if needed).
pub fn server_url() -> String {
    CLUSTER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("RANKFIT_TEST_DATABASE_URL") {
                return Ok(url);
            }
            ManagedCluster::ensure(&default_dir()).map(|c| c.url("postgres")).map_err(|e| e.to_string())
        })
        .clone()
        .unwrap_or_else(|e| panic!("test PostgreSQL unavailable: {e}"))
}

/// A freshly created and migrated database, with its URL.
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    pub name: String,
}

impl Drop for TestDb {
    /// Drops the test's database (closing the pool's connections first, by force): a test
    /// run leaves no databases behind. Runs on its own thread, as the test's runtime may be
    /// shutting down.
    fn drop(&mut self) {
        let (server, name) = (server_url(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&server).await.map_err(|e| e.to_string())?;
                sqlx::query(&format!("drop database if exists {name} with (force)"))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                admin.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("dropping test database {}: {e}", self.name);
        }
    }
}

impl TestDb {
    pub async fn new() -> TestDb {
        let server = server_url();
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server).await.expect("connect to the test server");
        sqlx::query(&format!("create database {name}")).execute(&mut admin).await.expect("create test database");
        admin.close().await.ok();
        let url = match server.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("unexpected server url {server}"),
        };
        let pool = crate::connect(&url, 20).await.expect("connect + migrate the test database");
        TestDb { pool, url, name }
    }
}

/// A dataset row with no file behind it, for queue tests and load checks that only need
/// something runs can point at.
pub fn placeholder_dataset(team_id: uuid::Uuid) -> crate::datasets::NewDataset {
    crate::datasets::NewDataset {
        id: uuid::Uuid::new_v4(),
        team_id: Some(team_id),
        name: "tiny".into(),
        task_family: "classification".into(),
        format: "jsonl".into(),
        parse_options: serde_json::json!({}),
        label_set: serde_json::json!(["a", "b"]),
        row_count: 2,
        splits: serde_json::json!({"train": 2}),
        bytes: 10,
        sha256: "00".into(),
        uri: format!("datasets/{team_id}/x.jsonl"),
        report: serde_json::json!({}),
        primary_metric: "accuracy".into(),
        benchmark: None,
        suite_id: None,
    }
}
