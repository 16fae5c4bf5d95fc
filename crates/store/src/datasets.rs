//! Datasets. The file itself lives in the artifact store; the row holds its parse
//! options, label set, split sizes and validation report.
//!
//! A dataset belongs to one team, or to none: a **public** benchmark dataset (installed by
//! an administrator, `rankfit benchmarks install`), which every team reads and runs on and
//! no team changes or deletes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{conflict_on_unique, Result, StoreError};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DatasetRow {
    pub id: Uuid,
    /// None for a public dataset.
    pub team_id: Option<Uuid>,
    /// `team` or `public`.
    pub visibility: String,
    pub name: String,
    pub task_family: String,
    pub format: String,
    #[schema(value_type = Object)]
    pub parse_options: Json<serde_json::Value>,
    #[schema(value_type = Vec<String>)]
    pub label_set: Json<serde_json::Value>,
    pub row_count: i64,
    #[schema(value_type = Object)]
    pub splits: Json<serde_json::Value>,
    pub bytes: i64,
    pub sha256: String,
    pub uri: String,
    #[schema(value_type = Object)]
    pub report: Json<serde_json::Value>,
    /// The metric leaderboards rank by and checkpoints are selected on.
    pub primary_metric: String,
    /// Source of a benchmark dataset, e.g. `glue/cola`.
    pub benchmark: Option<String>,
    /// The suite it was registered with.
    pub suite_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl DatasetRow {
    pub fn is_public(&self) -> bool {
        self.team_id.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct NewDataset {
    pub id: Uuid,
    /// None: a public dataset.
    pub team_id: Option<Uuid>,
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
    pub primary_metric: String,
    pub benchmark: Option<String>,
    pub suite_id: Option<Uuid>,
}

impl NewDataset {
    /// The row for a validated dataset whose file is (or will be) stored at `uri`.
    pub fn from_parsed(
        id: Uuid,
        team_id: Option<Uuid>,
        name: String,
        opts: &rankfit_domain::dataset::ParseOptions,
        parsed: &rankfit_domain::dataset::ParsedDataset,
        file: &[u8],
        uri: String,
    ) -> Result<Self> {
        let json = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| StoreError::Corrupt(e.to_string()));
        Ok(NewDataset {
            id,
            team_id,
            name,
            task_family: opts.task_family.as_str().to_string(),
            format: opts.format.as_str().to_string(),
            parse_options: json(serde_json::to_value(opts))?,
            label_set: json(serde_json::to_value(&parsed.label_set))?,
            row_count: parsed.examples.len() as i64,
            splits: json(serde_json::to_value(&parsed.report.rows_per_split))?,
            bytes: file.len() as i64,
            sha256: crate::sha256_hex(file),
            uri,
            report: json(serde_json::to_value(&parsed.report))?,
            primary_metric: opts.task_family.primary_metric().to_string(),
            benchmark: None,
            suite_id: None,
        })
    }
}

pub(crate) const COLS: &str = "id, team_id, case when team_id is null then 'public' else 'team' end as visibility, name, task_family, \
     format, parse_options, label_set, row_count, splits, bytes, sha256, uri, report, primary_metric, benchmark, suite_id, created_at";

pub async fn insert(pool: &PgPool, d: &NewDataset) -> Result<DatasetRow> {
    let mut tx = pool.begin().await?;
    let row = insert_tx(&mut tx, d).await?;
    tx.commit().await?;
    Ok(row)
}

pub(crate) async fn insert_tx(tx: &mut sqlx::PgConnection, d: &NewDataset) -> Result<DatasetRow> {
    sqlx::query_as(&format!(
        "insert into dataset (id, team_id, name, task_family, format, parse_options, label_set, row_count, splits, bytes, sha256, uri, report,
                              primary_metric, benchmark, suite_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) returning {COLS}"
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
    .bind(&d.primary_metric)
    .bind(&d.benchmark)
    .bind(d.suite_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        let owner = if d.team_id.is_some() { "your team already has" } else { "there already is" };
        conflict_on_unique(e, &format!("{owner} a dataset named {:?}", d.name))
    })
}

/// The team's datasets, newest first, then the public ones.
pub async fn list(pool: &PgPool, team_id: Uuid) -> Result<Vec<DatasetRow>> {
    Ok(sqlx::query_as(&format!(
        "select {COLS} from dataset where team_id = $1 or team_id is null order by team_id is null, created_at desc, name"
    ))
    .bind(team_id)
    .fetch_all(pool)
    .await?)
}

/// The public datasets, by name.
pub async fn list_public(pool: &PgPool) -> Result<Vec<DatasetRow>> {
    Ok(sqlx::query_as(&format!("select {COLS} from dataset where team_id is null order by name")).fetch_all(pool).await?)
}

/// One of `team_id`'s datasets or a public one; other teams' datasets are NotFound.
pub async fn get(pool: &PgPool, team_id: Uuid, id: Uuid) -> Result<DatasetRow> {
    sqlx::query_as(&format!("select {COLS} from dataset where id = $1 and (team_id = $2 or team_id is null)"))
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

/// Deletes one of the team's datasets that no run uses; returns its artifact uri so the
/// caller removes the file. A public dataset is ReadOnly.
pub async fn delete(pool: &PgPool, team_id: Uuid, id: Uuid) -> Result<String> {
    let public: Option<i32> =
        sqlx::query_scalar("select 1 from dataset where id = $1 and team_id is null").bind(id).fetch_optional(pool).await?;
    if public.is_some() {
        return Err(StoreError::ReadOnly("public benchmark datasets are read-only; nobody can change or delete them".into()));
    }
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
