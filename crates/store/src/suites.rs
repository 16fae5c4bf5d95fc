//! Suites: datasets registered together (a GLUE folder upload, the built-in benchmark
//! suite), all or nothing. Like datasets, a suite belongs to a team or, public, to none.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::artifacts::ArtifactStore;
use crate::datasets::{self, DatasetRow, NewDataset};
use crate::{conflict_on_unique, Result, StoreError};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SuiteRow {
    pub id: Uuid,
    pub team_id: Option<Uuid>,
    /// `team` or `public`.
    pub visibility: String,
    pub name: String,
    /// `glue` or `builtin`.
    pub kind: String,
    #[schema(value_type = Object)]
    pub report: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

const COLS: &str = "id, team_id, case when team_id is null then 'public' else 'team' end as visibility, name, kind, report, created_at";

#[derive(Debug, Clone)]
pub struct NewSuite {
    pub id: Uuid,
    /// None: a public suite.
    pub team_id: Option<Uuid>,
    pub name: String,
    pub kind: String,
    pub report: serde_json::Value,
}

/// Registers a suite and its datasets: every file is written to the artifact store, then
/// the suite and every dataset row in one transaction. If anything fails, the rows are
/// rolled back and the files removed, so a rejected suite leaves nothing behind.
/// Each dataset's `suite_id` and `team_id` are set from the suite.
pub async fn create(
    pool: &PgPool,
    store: &ArtifactStore,
    suite: &NewSuite,
    datasets: Vec<(NewDataset, bytes::Bytes)>,
) -> Result<(SuiteRow, Vec<DatasetRow>)> {
    let mut written: Vec<String> = Vec::new();
    let result = async {
        for (d, file) in &datasets {
            store.put(&d.uri, file.clone()).await?;
            written.push(d.uri.clone());
        }
        let mut tx = pool.begin().await?;
        let row: SuiteRow =
            sqlx::query_as(&format!("insert into suite (id, team_id, name, kind, report) values ($1, $2, $3, $4, $5) returning {COLS}"))
                .bind(suite.id)
                .bind(suite.team_id)
                .bind(&suite.name)
                .bind(&suite.kind)
                .bind(Json(&suite.report))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, &format!("a suite named {:?} already exists", suite.name)))?;
        let mut rows = Vec::with_capacity(datasets.len());
        for (d, _) in &datasets {
            let d = NewDataset { team_id: suite.team_id, suite_id: Some(suite.id), ..d.clone() };
            rows.push(datasets::insert_tx(&mut tx, &d).await?);
        }
        tx.commit().await?;
        Ok::<_, StoreError>((row, rows))
    }
    .await;
    if result.is_err() {
        for uri in &written {
            if let Err(e) = store.delete(uri).await {
                tracing::error!("could not remove {uri} after a failed suite registration: {e}");
            }
        }
    }
    result
}

/// The team's suites, then the public ones.
pub async fn list(pool: &PgPool, team_id: Uuid) -> Result<Vec<SuiteRow>> {
    Ok(sqlx::query_as(&format!(
        "select {COLS} from suite where team_id = $1 or team_id is null order by team_id is null, created_at desc, name"
    ))
    .bind(team_id)
    .fetch_all(pool)
    .await?)
}

/// A suite the team may read (its own or a public one) and its datasets.
pub async fn get(pool: &PgPool, team_id: Uuid, id: Uuid) -> Result<(SuiteRow, Vec<DatasetRow>)> {
    let suite: SuiteRow = sqlx::query_as(&format!("select {COLS} from suite where id = $1 and (team_id = $2 or team_id is null)"))
        .bind(id)
        .bind(team_id)
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    let rows = sqlx::query_as(&format!("select {} from dataset where suite_id = $1 order by created_at, name", datasets::COLS))
        .bind(id)
        .fetch_all(pool)
        .await?;
    Ok((suite, rows))
}

/// The public suite named `name`, if installed.
pub async fn find_public(pool: &PgPool, name: &str) -> Result<Option<SuiteRow>> {
    Ok(sqlx::query_as(&format!("select {COLS} from suite where team_id is null and name = $1")).bind(name).fetch_optional(pool).await?)
}

/// The row and file of one dataset of a parsed suite, named `<suite> / <key>`.
pub fn new_dataset(
    team_id: Option<Uuid>,
    suite_name: &str,
    d: &rankfit_domain::dataset::suite::SuiteDataset,
) -> Result<(NewDataset, bytes::Bytes)> {
    let id = Uuid::new_v4();
    let owner = team_id.map_or_else(|| "public".to_string(), |t| t.to_string());
    let uri = format!("datasets/{owner}/{id}.jsonl");
    let file = bytes::Bytes::from(d.jsonl.clone());
    let mut row = NewDataset::from_parsed(id, team_id, format!("{suite_name} / {}", d.key), &d.options, &d.parsed, &file, uri)?;
    row.primary_metric = d.primary_metric.clone();
    row.benchmark = Some(d.benchmark.clone());
    Ok((row, file))
}

/// What a suite's report records: per dataset its source files, metric and split sizes,
/// and the files that were not read.
pub fn report(suite: &rankfit_domain::dataset::suite::ParsedSuite) -> serde_json::Value {
    serde_json::json!({
        "datasets": suite.datasets.iter().map(|d| serde_json::json!({
            "key": d.key, "benchmark": d.benchmark, "task_family": d.task_family, "primary_metric": d.primary_metric,
            "rows_per_split": d.parsed.report.rows_per_split, "sources": d.sources,
        })).collect::<Vec<_>>(),
        "ignored": suite.ignored,
    })
}
