//! Runs as a team sees them: create, list, get, cancel, leaderboards.
//! The worker-side state machine (claim, heartbeat, finish, reap) is in [`crate::queue`].

use chrono::{DateTime, Utc};
use rankfit_domain::run::RunStatus;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::{Result, StoreError};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RunRow {
    pub id: Uuid,
    pub team_id: Uuid,
    pub dataset_id: Uuid,
    pub base_model_id: String,
    pub method: String,
    #[schema(value_type = Object)]
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
    /// The study this run is a grid point of, if any.
    pub study_id: Option<Uuid>,
    pub error: Option<String>,
    #[schema(value_type = Object)]
    pub summary: Json<serde_json::Value>,
    /// What the run was estimated to cost when it was queued ([`rankfit_domain::estimate::Estimate`]).
    #[schema(value_type = Option<Object>)]
    pub estimate: Option<Json<serde_json::Value>>,
    /// Its worker's latest report ([`rankfit_domain::progress::Progress`]).
    #[schema(value_type = Option<Object>)]
    pub progress: Option<Json<serde_json::Value>>,
    /// When the team put it on its (public) dataset's public leaderboard.
    pub published_at: Option<DateTime<Utc>>,
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
    attempts, max_attempts, not_before, lease_owner, lease_token, lease_expires_at, cancel_requested, continue_from, study_id, error, \
    summary, estimate, progress, published_at, created_at, started_at, finished_at";

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
    pub estimate: Option<serde_json::Value>,
}

/// Inserts a queued run (and its first status event) inside `tx`, as a grid point of
/// `study_id` when given. With a study, a grid point that already has a run is skipped
/// (None): extending a study never reruns an existing cell.
pub(crate) async fn insert_tx(tx: &mut sqlx::Transaction<'_, Postgres>, r: &NewRun, study_id: Option<Uuid>) -> Result<Option<RunRow>> {
    let row: Option<RunRow> = sqlx::query_as(&format!(
        "insert into run (id, team_id, dataset_id, base_model_id, method, config, budget, seed, name, priority, max_attempts, continue_from, study_id, estimate)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         on conflict (study_id, dataset_id, base_model_id, method, budget, seed) where study_id is not null do nothing
         returning {RUN_COLS}"
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
    .bind(study_id)
    .bind(r.estimate.as_ref().map(Json))
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = &row {
        crate::events::append_tx(tx, row.id, "status", &serde_json::json!({"status": "queued"})).await?;
    }
    Ok(row)
}

/// Queues a run. The dataset must be the team's or public; the run to continue from must
/// be the team's.
pub async fn create(pool: &PgPool, r: &NewRun) -> Result<RunRow> {
    let mut tx = pool.begin().await?;
    let owned: Option<i32> = sqlx::query_scalar("select 1 from dataset where id = $1 and (team_id = $2 or team_id is null)")
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
    let row = insert_tx(&mut tx, r, None).await?.ok_or_else(|| StoreError::Corrupt("run insert returned no row".into()))?;
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

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RankSnapshotRow {
    pub step: i64,
    pub budget: i64,
    #[schema(value_type = Object)]
    pub ranks: Json<serde_json::Value>,
}

pub async fn rank_snapshots(pool: &PgPool, run_id: Uuid) -> Result<Vec<RankSnapshotRow>> {
    Ok(sqlx::query_as("select step, budget, ranks from rank_snapshot where run_id = $1 order by step").bind(run_id).fetch_all(pool).await?)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EvaluationRow {
    pub split: String,
    #[schema(value_type = Object)]
    pub metrics: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

pub async fn evaluations(pool: &PgPool, run_id: Uuid) -> Result<Vec<EvaluationRow>> {
    Ok(sqlx::query_as("select split, metrics, created_at from evaluation where run_id = $1 order by split")
        .bind(run_id)
        .fetch_all(pool)
        .await?)
}

/// A finished run's cost as the estimator reads it: model, method, dataset (family and
/// validation report), config, summary and the estimate it was queued with.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CostRow {
    pub id: Uuid,
    pub task_family: String,
    pub report: Json<serde_json::Value>,
    pub base_model_id: String,
    pub method: String,
    pub budget: i32,
    pub dataset_id: Uuid,
    pub config: Json<serde_json::Value>,
    pub summary: Json<serde_json::Value>,
    pub estimate: Option<Json<serde_json::Value>>,
}

impl CostRow {
    /// The run as the estimator reads it; None for a model, method or config this build
    /// does not know (rows written by another version).
    pub fn finished_run(&self) -> Option<rankfit_domain::estimate::FinishedRun> {
        use rankfit_domain::estimate::{DatasetShape, FinishedRun, Observation};
        let model = rankfit_domain::catalog::base_model(&self.base_model_id)?;
        let method = rankfit_domain::run::Method::parse(&self.method)?;
        let config: rankfit_domain::run::RunConfig = serde_json::from_value(self.config.0.clone()).ok()?;
        let summary = rankfit_domain::summary::RunSummary::from_value(&self.summary.0);
        Some(FinishedRun {
            model,
            method,
            budget: self.budget.max(1) as u32,
            observation: Observation::from_summary(model, method, self.dataset_id, &config, &summary),
            dataset: DatasetShape::from_report(self.dataset_id, &self.task_family, &self.report.0),
            estimate: self.estimate.as_ref().and_then(|e| serde_json::from_value(e.0.clone()).ok()),
            actual_seconds: summary.wall_seconds,
            config,
        })
    }
}

/// The newest `limit` succeeded runs of the whole fleet (every team: throughput is a
/// property of the workers, not of anyone's data), newest first.
pub async fn recent_costs(pool: &PgPool, limit: i64) -> Result<Vec<CostRow>> {
    Ok(sqlx::query_as(
        "select r.id, d.task_family, d.report, r.base_model_id, r.method, r.budget, r.dataset_id, r.config, r.summary, r.estimate
         from run r join dataset d on d.id = r.dataset_id
         where r.status = 'succeeded' and r.summary ? 'tokens_per_second'
         order by r.finished_at desc limit $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// A run's latest progress report, if its worker has sent one.
pub async fn progress(pool: &PgPool, run_id: Uuid) -> Result<Option<serde_json::Value>> {
    let p: Option<Option<Json<serde_json::Value>>> =
        sqlx::query_scalar("select progress from run where id = $1").bind(run_id).fetch_optional(pool).await?;
    Ok(p.flatten().map(|j| j.0))
}

/// Puts one of the team's runs on the public leaderboard of its dataset (`publish`), or
/// takes it off. Only runs on public datasets can be published: a team's own datasets have
/// no public leaderboard.
pub async fn set_published(pool: &PgPool, team_id: Uuid, id: Uuid, publish: bool) -> Result<RunRow> {
    let public: Option<bool> =
        sqlx::query_scalar("select d.team_id is null from run r join dataset d on d.id = r.dataset_id where r.id = $1 and r.team_id = $2")
            .bind(id)
            .bind(team_id)
            .fetch_optional(pool)
            .await?;
    match public {
        None => return Err(StoreError::NotFound),
        Some(false) if publish => {
            return Err(StoreError::Conflict(
                "only runs on public benchmark datasets can be published; this run's dataset is private to your team".into(),
            ))
        }
        _ => {}
    }
    sqlx::query_as(&format!(
        "update run set published_at = case when $3 then coalesce(published_at, now()) end
         where id = $1 and team_id = $2 returning {RUN_COLS}"
    ))
    .bind(id)
    .bind(team_id)
    .bind(publish)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound)
}
