//! The database: `DATABASE_URL` when given, else the managed cluster under the data dir.

use anyhow::Context;
use rankfit_store::cluster::ManagedCluster;
use rankfit_store::Pool;
use sqlx::{Connection, PgConnection};

use crate::Global;

pub struct Database {
    pub pool: Pool,
    cluster: Option<ManagedCluster>,
    url: String,
}

const DB_NAME: &str = "rankfit";

impl Database {
    pub async fn open(g: &Global) -> anyhow::Result<Self> {
        let (url, cluster) = match &g.database_url {
            Some(url) => (url.clone(), None),
            None => {
                let dir = std::path::absolute(g.data_dir.join("pg"))?;
                let cluster = tokio::task::spawn_blocking(move || ManagedCluster::ensure(&dir)).await??;
                let mut admin = PgConnection::connect(&cluster.url("postgres")).await.context("connecting to the managed PostgreSQL")?;
                let exists: Option<i32> =
                    sqlx::query_scalar("select 1 from pg_database where datname = $1").bind(DB_NAME).fetch_optional(&mut admin).await?;
                if exists.is_none() {
                    sqlx::query(&format!("create database {DB_NAME}")).execute(&mut admin).await?;
                }
                admin.close().await?;
                tracing::info!("managed PostgreSQL on 127.0.0.1:{} ({})", cluster.port(), cluster.dir().display());
                (cluster.url(DB_NAME), Some(cluster))
            }
        };
        let pool = rankfit_store::connect(&url, 20).await.with_context(|| format!("connecting to {}", redact(&url)))?;
        Ok(Self { pool, cluster, url })
    }

    pub fn describe(&self) -> String {
        redact(&self.url)
    }

    /// Closes the pool and stops the managed cluster if this process started it.
    pub async fn close(self) -> anyhow::Result<()> {
        self.pool.close().await;
        if let Some(c) = self.cluster {
            tokio::task::spawn_blocking(move || c.stop_if_owned()).await??;
        }
        Ok(())
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..s + 3], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
