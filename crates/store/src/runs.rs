//! Runs as a team sees them: create, list, get, cancel, leaderboards.
//! The worker-side state machine (claim, heartbeat, finish, reap) is in [`crate::queue`].

use chrono::{DateTime, Utc};
use rankfit_domain::run::RunStatus;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::{Result, StoreError};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub id: Uuid,
    pub team_id: Uuid,
    pub dataset_id: Uuid,
    pub base_model_id: String,
    pub method: String,
    pub config: Json<serde_json::Value>,
    pub budget: i32,
    pub seed: i64,
    pub name: String,
    pub status: String,
    pub priority: i32,
    pub attempts: i32,
    pub max_attempts: i32,
    pub not_before: DateTime<Utc>,
    pub lease_owner: Option<String>,
    #[serde(skip)]
    pub lease_token: Option<Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub continue_from: Option<Uuid>,
    pub error: Option<String>,
    pub summary: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl RunRow {
    pub fn status(&self) -> Result<RunStatus> {
        RunStatus::parse(&self.status).ok_or_else(|| StoreError::Corrupt(format!("run status {:?}", self.status)))
    }
}

pub(crate) const RUN_COLS: &str = "id, team_id, dataset_id, base_model_id, method, config, budget, seed, name, status, priority, \
    attempts, max_attempts, not_before, lease_owner, lease_token, lease_expires_at, cancel_requested, continue_from, error, \
    summary, created_at, started_at, finished_at";

#[derive(Debug, Clone)]
pub struct NewRun {
    pub team_id: Uuid,
    pub dataset_id: Uuid,
    pub base_model_id: String,
    pub method: String,
    pub config: serde_json::Value,
    pub budget: i32,
    pub seed: i64,
    pub name: String,
    pub priority: i32,
    pub max_attempts: i32,
    pub continue_from: Option<Uuid>,
}

/// Queues a run. The dataset (and the run to continue from) must belong to the team.
pub async fn create(pool: &PgPool, r: &NewRun) -> Result<RunRow> {
    let mut tx = pool.begin().await?;
    let owned: Option<i32> = sqlx::query_scalar("select 1 from dataset where id = $1 and team_id = $2")
        .bind(r.dataset_id)
        .bind(r.team_id)
        .fetch_optional(&mut *tx)
        .await?;
    if owned.is_none() {
        return Err(StoreError::NotFound);
    }
    if let Some(prev) = r.continue_from {
        let ok: Option<i32> = sqlx::query_scalar("select 1 from run where id = $1 and team_id = $2")
            .bind(prev)
            .bind(r.team_id)
            .fetch_optional(&mut *tx)
            .await?;
        if ok.is_none() {
            return Err(StoreError::NotFound);
        }
    }
    let row: RunRow = sqlx::query_as(&format!(
        "insert into run (id, team_id, dataset_id, base_model_id, method, config, budget, seed, name, priority, max_attempts, continue_from)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) returning {RUN_COLS}"
    ))
    .bind(Uuid::new_v4())
    .bind(r.team_id)
    .bind(r.dataset_id)
    .bind(&r.base_model_id)
    .bind(&r.method)
    .bind(Json(&r.config))
    .bind(r.budget)
    .bind(r.seed)
    .bind(&r.name)
    .bind(r.priority)
    .bind(r.max_attempts)
    .bind(r.continue_from)
    .fetch_one(&mut *tx)
    .await?;
    crate::events::append_tx(&mut tx, row.id, "status", &serde_json::json!({"status": "queued"})).await?;
    tx.commit().await?;
    Ok(row)
}

/// Filters for listing runs; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub method: Option<String>,
    pub dataset_id: Option<Uuid>,
    pub base_model_id: Option<String>,
    pub budget: Option<i32>,
    pub limit: i64,
    pub offset: i64,
}

pub async fn list(pool: &PgPool, team_id: Uuid, f: &RunFilter) -> Result<Vec<RunRow>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("select {RUN_COLS} from run where team_id = "));
    q.push_bind(team_id);
    if let Some(s) = f.status {
        q.push(" and status = ").push_bind(s.as_str());
    }
    if let Some(m) = &f.method {
        q.push(" and method = ").push_bind(m.clone());
    }
    if let Some(d) = f.dataset_id {
        q.push(" and dataset_id = ").push_bind(d);
    }
    if let Some(b) = &f.base_model_id {
        q.push(" and base_model_id = ").push_bind(b.clone());
    }
    if let Some(b) = f.budget {
        q.push(" and budget = ").push_bind(b);
    }
    q.push(" order by created_at desc, id limit ").push_bind(f.limit.clamp(1, 1000));
    q.push(" offset ").push_bind(f.offset.max(0));
    Ok(q.build_query_as().fetch_all(pool).await?)
}

/// One of `team_id`'s runs; other teams' runs are NotFound.
pub async fn get(pool: &PgPool, team_id: Uuid, id: Uuid) -> Result<RunRow> {
    sqlx::query_as(&format!("select {RUN_COLS} from run where id = $1 and team_id = $2"))
        .bind(id)
        .bind(team_id)
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound)
}

/// Any run by id (workers, internal use).
pub async fn get_any(pool: &PgPool, id: Uuid) -> Result<RunRow> {
    sqlx::query_as(&format!("select {RUN_COLS} from run where id = $1")).bind(id).fetch_optional(pool).await?.ok_or(StoreError::NotFound)
}

/// Cancels a run: a queued run is cancelled at once; a running one is flagged and its
/// worker stops at its next heartbeat. Terminal runs are a Conflict.
pub async fn cancel(pool: &PgPool, team_id: Uuid, id: Uuid) -> Result<RunRow> {
    let mut tx = pool.begin().await?;
    let row: RunRow = sqlx::query_as(&format!("select {RUN_COLS} from run where id = $1 and team_id = $2 for update"))
        .bind(id)
        .bind(team_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    let updated: RunRow = match row.status()? {
        RunStatus::Queued => {
            let r = sqlx::query_as(&format!(
                "update run set status = 'cancelled', cancel_requested = true, finished_at = now(), error = 'cancelled by user'
                 where id = $1 returning {RUN_COLS}"
            ))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            crate::events::append_tx(&mut tx, id, "status", &serde_json::json!({"status": "cancelled"})).await?;
            r
        }
        RunStatus::Running => {
            let r = sqlx::query_as(&format!("update run set cancel_requested = true where id = $1 returning {RUN_COLS}"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            crate::events::append_tx(&mut tx, id, "log", &serde_json::json!({"message": "cancel requested"})).await?;
            r
        }
        s => return Err(StoreError::Conflict(format!("run is already {s}"))),
    };
    tx.commit().await?;
    Ok(updated)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MetricPoint {
    pub step: i64,
    pub split: String,
    pub name: String,
    pub value: f64,
}

pub async fn metrics(pool: &PgPool, run_id: Uuid) -> Result<Vec<MetricPoint>> {
    Ok(sqlx::query_as("select step, split, name, value from run_metric where run_id = $1 order by split, name, step")
        .bind(run_id)
        .fetch_all(pool)
        .await?)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RankSnapshotRow {
    pub step: i64,
    pub budget: i64,
    pub ranks: Json<serde_json::Value>,
}

pub async fn rank_snapshots(pool: &PgPool, run_id: Uuid) -> Result<Vec<RankSnapshotRow>> {
    Ok(sqlx::query_as("select step, budget, ranks from rank_snapshot where run_id = $1 order by step").bind(run_id).fetch_all(pool).await?)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EvaluationRow {
    pub split: String,
    pub metrics: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

pub async fn evaluations(pool: &PgPool, run_id: Uuid) -> Result<Vec<EvaluationRow>> {
    Ok(sqlx::query_as("select split, metrics, created_at from evaluation where run_id = $1 order by split")
        .bind(run_id)
        .fetch_all(pool)
        .await?)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LeaderboardEntry {
    pub run_id: Uuid,
    pub method: String,
    pub base_model_id: String,
    pub budget: i32,
    pub team_name: String,
    pub score: Option<f64>,
    pub metrics: Json<serde_json::Value>,
    pub summary: Json<serde_json::Value>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct LeaderboardQuery {
    pub dataset_id: Uuid,
    pub split: String,
    pub metric: String,
    pub budget: Option<i32>,
    pub method: Option<String>,
    pub base_model_id: Option<String>,
}

/// Best succeeded run per (method, base model, budget) on one of the team's datasets,
/// ranked by `metric` on `split`: descending, or ascending for metrics where lower is
/// better (`loss`, `perplexity`, `mse`: [`rankfit_domain::task::higher_is_better`]).
/// Runs without the metric come last.
pub async fn leaderboard(pool: &PgPool, team_id: Uuid, q: &LeaderboardQuery) -> Result<Vec<LeaderboardEntry>> {
    let higher = rankfit_domain::task::higher_is_better(&q.metric);
    let mut rows: Vec<LeaderboardEntry> = sqlx::query_as(
        "select distinct on (r.method, r.base_model_id, r.budget)
                r.id as run_id, r.method, r.base_model_id, r.budget, t.name as team_name,
                (e.metrics ->> $3)::float8 as score, e.metrics, r.summary, r.finished_at
         from run r
         join evaluation e on e.run_id = r.id and e.split = $2
         join team t on t.id = r.team_id
         where r.team_id = $1 and r.dataset_id = $4 and r.status = 'succeeded'
           and ($5::int is null or r.budget = $5)
           and ($6::text is null or r.method = $6)
           and ($7::text is null or r.base_model_id = $7)
         order by r.method, r.base_model_id, r.budget,
                  case when $8 then (e.metrics ->> $3)::float8 else -((e.metrics ->> $3)::float8) end desc nulls last,
                  r.finished_at",
    )
    .bind(team_id)
    .bind(&q.split)
    .bind(&q.metric)
    .bind(q.dataset_id)
    .bind(q.budget)
    .bind(&q.method)
    .bind(&q.base_model_id)
    .bind(higher)
    .fetch_all(pool)
    .await?;
    // Oriented so that larger is better; missing scores last.
    let key = |s: Option<f64>| s.map_or(f64::NEG_INFINITY, |v| if higher { v } else { -v });
    rows.sort_by(|a, b| key(b.score).total_cmp(&key(a.score)));
    Ok(rows)
}
