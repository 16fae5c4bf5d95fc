//! Base models: the catalog in `rankfit_domain::catalog`, mirrored into the table.

use rankfit_domain::catalog::BASE_MODELS;
use serde::Serialize;
use sqlx::PgPool;

use crate::Result;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct BaseModelRow {
    pub id: String,
    pub name: String,
    pub architecture: String,
    pub source: String,
    pub sha256: Option<String>,
}

/// Upserts every catalog model so runs can reference them.
pub async fn sync_catalog(pool: &PgPool) -> Result<()> {
    for m in BASE_MODELS {
        sqlx::query(
            "insert into base_model (id, name, architecture, source) values ($1, $2, $3, $4)
             on conflict (id) do update set name = excluded.name, architecture = excluded.architecture, source = excluded.source",
        )
        .bind(m.id)
        .bind(m.name)
        .bind(m.architecture.as_str())
        .bind(m.source)
        .execute(pool)
        .await?;
    }
    Ok(())
}

pub async fn list(pool: &PgPool) -> Result<Vec<BaseModelRow>> {
    Ok(sqlx::query_as("select id, name, architecture, source, sha256 from base_model order by id").fetch_all(pool).await?)
}
