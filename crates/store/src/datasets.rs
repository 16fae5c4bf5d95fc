//! Uploaded datasets. The file itself lives in the artifact store; the row holds its
//! parse options, label set, split sizes and validation report.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{conflict_on_unique, Result, StoreError};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DatasetRow {
    pub id: Uuid,
    pub team_id: Uuid,
    pub name: String,
    pub task_family: String,
    pub format: String,
    pub parse_options: Json<serde_json::Value>,
    pub label_set: Json<serde_json::Value>,
    pub row_count: i64,
    pub splits: Json<serde_json::Value>,
    pub bytes: i64,
    pub sha256: String,
    pub uri: String,
    pub report: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewDataset {
    pub id: Uuid,
    pub team_id: Uuid,
    pub name: String,
    pub task_family: String,
    pub format: String,
    pub parse_options: serde_json::Value,
    pub label_set: serde_json::Value,
    pub row_count: i64,
    pub splits: serde_json::Value,
    pub bytes: i64,
    pub sha256: String,
    pub uri: String,
    pub report: serde_json::Value,
}

const COLS: &str =
    "id, team_id, name, task_family, format, parse_options, label_set, row_count, splits, bytes, sha256, uri, report, created_at";

pub async fn insert(pool: &PgPool, d: &NewDataset) -> Result<DatasetRow> {
    sqlx::query_as(&format!(
        "insert into dataset (id, team_id, name, task_family, format, parse_options, label_set, row_count, splits, bytes, sha256, uri, report)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) returning {COLS}"
    ))
    .bind(d.id)
    .bind(d.team_id)
    .bind(&d.name)
    .bind(&d.task_family)
    .bind(&d.format)
    .bind(Json(&d.parse_options))
    .bind(Json(&d.label_set))
    .bind(d.row_count)
    .bind(Json(&d.splits))
    .bind(d.bytes)
    .bind(&d.sha256)
    .bind(&d.uri)
    .bind(Json(&d.report))
    .fetch_one(pool)
    .await
    .map_err(|e| conflict_on_unique(e, &format!("your team already has a dataset named {:?}", d.name)))
}

pub async fn list(pool: &PgPool, team_id: Uuid) -> Result<Vec<DatasetRow>> {
    Ok(sqlx::query_as(&format!("select {COLS} from dataset where team_id = $1 order by created_at desc"))
        .bind(team_id)
        .fetch_all(pool)
        .await?)
}

/// One of `team_id`'s datasets; other teams' datasets are NotFound.
pub async fn get(pool: &PgPool, team_id: Uuid, id: Uuid) -> Result<DatasetRow> {
    sqlx::query_as(&format!("select {COLS} from dataset where id = $1 and team_id = $2"))
        .bind(id)
        .bind(team_id)
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound)
}

/// Any dataset by id (workers, which act for every team).
pub async fn get_any(pool: &PgPool, id: Uuid) -> Result<DatasetRow> {
    sqlx::query_as(&format!("select {COLS} from dataset where id = $1")).bind(id).fetch_optional(pool).await?.ok_or(StoreError::NotFound)
}

/// Deletes a dataset no run uses; returns its artifact uri so the caller removes the file.
pub async fn delete(pool: &PgPool, team_id: Uuid, id: Uuid) -> Result<String> {
    // Counted only when the dataset is the team's own: another team learns nothing, not even
    // whether the id exists.
    let used: Option<i64> = sqlx::query_scalar(
        "select (select count(*) from run r where r.dataset_id = d.id) from dataset d where d.id = $1 and d.team_id = $2",
    )
    .bind(id)
    .bind(team_id)
    .fetch_optional(pool)
    .await?;
    let used = used.ok_or(StoreError::NotFound)?;
    if used > 0 {
        return Err(StoreError::Conflict(format!("{used} run(s) use this dataset; delete or keep them first")));
    }
    let uri: Option<String> = sqlx::query_scalar("delete from dataset where id = $1 and team_id = $2 returning uri")
        .bind(id)
        .bind(team_id)
        .fetch_optional(pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::Conflict("runs use this dataset; delete or keep them first".into())
            }
            _ => StoreError::Db(e),
        })?;
    uri.ok_or(StoreError::NotFound)
}
