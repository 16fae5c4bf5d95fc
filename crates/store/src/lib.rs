//! All of rankfit's SQL, the run queue, the managed PostgreSQL cluster and the artifact store.
//!
//! One module per table family; every function takes the pool it needs and returns
//! [`StoreError`]. Queries are checked at run time (no compile-time database needed);
//! the integration tests run every one of them against a real PostgreSQL.

pub mod artifacts;
pub mod cluster;
pub mod datasets;
pub mod events;
pub mod models;
pub mod queue;
pub mod runs;
pub mod sessions;
pub mod studies;
pub mod suites;
pub mod teams;
pub mod testing;
pub mod workers;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub use artifacts::ArtifactStore;
pub use sqlx::PgPool as Pool;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    /// The caller may read it but not change it (public benchmark datasets).
    #[error("read-only: {0}")]
    ReadOnly(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("artifact store: {0}")]
    Object(#[from] object_store::Error),
    #[error("invalid artifact uri {0:?}")]
    BadUri(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("managed PostgreSQL: {0}")]
    Cluster(#[from] cluster::ClusterError),
}

impl StoreError {
    /// Whether trying again later may succeed: the database was unreachable, restarting or
    /// shutting down (connection errors, SQLSTATE classes 08 and 57P).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_)) => true,
            StoreError::Db(sqlx::Error::Database(db)) => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The schema, embedded at build time from the workspace's `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Connects to `url` with a pool of `max_connections` and applies pending migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    let opts: PgConnectOptions = url.parse()?;
    let pool = PgPoolOptions::new().max_connections(max_connections).acquire_timeout(Duration::from_secs(30)).connect_with(opts).await?;
    MIGRATOR.run(&pool).await?;
    models::sync_catalog(&pool).await?;
    Ok(pool)
}

/// A uniformly random 32-byte secret, hex encoded.
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// sha256 of `data`, hex encoded.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Maps a unique-violation to [`StoreError::Conflict`] with `what`.
pub(crate) fn conflict_on_unique(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what.to_string()),
        _ => StoreError::Db(e),
    }
}
