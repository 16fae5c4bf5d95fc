//! Studies: named grids of runs (datasets × methods × budgets × seeds), created, extended
//! and cancelled as one thing; the per-run results their comparisons are computed from;
//! and the per-example test predictions every run stores.

use chrono::{DateTime, Utc};
use rankfit_domain::prediction::Prediction;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::runs::{insert_tx, NewRun, RunRow, RUN_COLS};
use crate::{conflict_on_unique, Result, StoreError};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StudyRow {
    pub id: Uuid,
    pub team_id: Uuid,
    pub name: String,
    #[schema(value_type = Object)]
    pub spec: Json<serde_json::Value>,
    pub visibility: String,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const STUDY_COLS: &str = "id, team_id, name, spec, visibility, cancelled_at, created_at";

/// Run counts of a study by state.
#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Progress {
    pub total: i64,
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Mean wall time of the study's finished runs (seconds), for an ETA.
    pub mean_run_seconds: Option<f64>,
}

impl Progress {
    pub fn done(&self) -> i64 {
        self.succeeded + self.failed + self.cancelled
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StudyListRow {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub study: StudyRow,
    #[sqlx(flatten)]
    pub progress: Progress,
}

const PROGRESS_COLS: &str = "count(r.id) as total,
    count(r.id) filter (where r.status = 'queued') as queued,
    count(r.id) filter (where r.status = 'running') as running,
    count(r.id) filter (where r.status = 'succeeded') as succeeded,
    count(r.id) filter (where r.status = 'failed') as failed,
    count(r.id) filter (where r.status = 'cancelled') as cancelled,
    avg(extract(epoch from (r.finished_at - r.started_at))::float8) filter (where r.status = 'succeeded') as mean_run_seconds";

/// Creates the study and queues every run of its grid in one transaction: all or nothing.
/// Every run's dataset must be the team's or public; a name already used by the team is a Conflict.
pub async fn create(pool: &PgPool, team_id: Uuid, name: &str, spec: &serde_json::Value, runs: &[NewRun]) -> Result<(StudyRow, usize)> {
    let mut tx = pool.begin().await?;
    let study: StudyRow =
        sqlx::query_as(&format!("insert into study (id, team_id, name, spec) values ($1, $2, $3, $4) returning {STUDY_COLS}"))
            .bind(Uuid::new_v4())
            .bind(team_id)
            .bind(name)
            .bind(Json(spec))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, &format!("your team already has a study named {name:?}")))?;
    let created = insert_runs(&mut tx, team_id, study.id, runs).await?;
    tx.commit().await?;
    Ok((study, created))
}

/// Replaces the study's spec with the extended one and queues the grid points that have no
/// run yet (existing cells are not rerun). Returns how many runs were queued.
pub async fn extend(pool: &PgPool, team_id: Uuid, id: Uuid, spec: &serde_json::Value, runs: &[NewRun]) -> Result<usize> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query("update study set spec = $3, cancelled_at = null where id = $1 and team_id = $2")
        .bind(id)
        .bind(team_id)
        .bind(Json(spec))
        .execute(&mut *tx)
        .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    let created = insert_runs(&mut tx, team_id, id, runs).await?;
    tx.commit().await?;
    Ok(created)
}

async fn insert_runs(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, team_id: Uuid, study_id: Uuid, runs: &[NewRun]) -> Result<usize> {
    let mut datasets: Vec<Uuid> = runs.iter().map(|r| r.dataset_id).collect();
    datasets.sort();
    datasets.dedup();
    let owned: i64 = sqlx::query_scalar("select count(*) from dataset where (team_id = $1 or team_id is null) and id = any($2)")
        .bind(team_id)
        .bind(&datasets)
        .fetch_one(&mut **tx)
        .await?;
    if owned != datasets.len() as i64 {
        return Err(StoreError::NotFound);
    }
    let mut created = 0;
    for r in runs {
        if r.team_id != team_id {
            return Err(StoreError::Corrupt("a study's runs belong to its team".into()));
        }
        if insert_tx(tx, r, Some(study_id)).await?.is_some() {
            created += 1;
        }
    }
    Ok(created)
}

pub async fn list(pool: &PgPool, team_id: Uuid) -> Result<Vec<StudyListRow>> {
    Ok(sqlx::query_as(&format!(
        "select s.id, s.team_id, s.name, s.spec, s.visibility, s.cancelled_at, s.created_at, {PROGRESS_COLS}
         from study s left join run r on r.study_id = s.id
         where s.team_id = $1 group by s.id order by s.created_at desc, s.id"
    ))
    .bind(team_id)
    .fetch_all(pool)
    .await?)
}

/// One of `team_id`'s studies; other teams' studies are NotFound.
pub async fn get(pool: &PgPool, team_id: Uuid, id: Uuid) -> Result<StudyRow> {
    sqlx::query_as(&format!("select {STUDY_COLS} from study where id = $1 and team_id = $2"))
        .bind(id)
        .bind(team_id)
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound)
}

pub async fn progress(pool: &PgPool, id: Uuid) -> Result<Progress> {
    Ok(sqlx::query_as(&format!("select {PROGRESS_COLS} from run r where r.study_id = $1")).bind(id).fetch_one(pool).await?)
}

/// The study's runs, in grid order.
pub async fn runs(pool: &PgPool, id: Uuid) -> Result<Vec<RunRow>> {
    Ok(sqlx::query_as(&format!("select {RUN_COLS} from run where study_id = $1 order by dataset_id, method, budget, seed, id"))
        .bind(id)
        .fetch_all(pool)
        .await?)
}

/// What cancelling a study did.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Cancelled {
    /// Queued runs cancelled at once.
    pub cancelled: u64,
    /// Running runs flagged; their workers stop at the next heartbeat.
    pub stopping: u64,
}

/// Cancels what has not finished: queued runs at once, running runs by flag (their
/// workers stop them at the next heartbeat). Finished runs stay as they are.
pub async fn cancel(pool: &PgPool, team_id: Uuid, id: Uuid) -> Result<Cancelled> {
    let mut tx = pool.begin().await?;
    let found = sqlx::query("update study set cancelled_at = coalesce(cancelled_at, now()) where id = $1 and team_id = $2")
        .bind(id)
        .bind(team_id)
        .execute(&mut *tx)
        .await?;
    if found.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    let queued: Vec<Uuid> = sqlx::query_scalar(
        "update run set status = 'cancelled', cancel_requested = true, finished_at = now(), error = 'study cancelled'
         where study_id = $1 and status = 'queued' returning id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    for run in &queued {
        crate::events::append_tx(&mut tx, *run, "status", &serde_json::json!({"status": "cancelled"})).await?;
    }
    let running: Vec<Uuid> = sqlx::query_scalar(
        "update run set cancel_requested = true where study_id = $1 and status = 'running' and not cancel_requested returning id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    for run in &running {
        crate::events::append_tx(&mut tx, *run, "log", &serde_json::json!({"message": "cancel requested (study cancelled)"})).await?;
    }
    tx.commit().await?;
    Ok(Cancelled { cancelled: queued.len() as u64, stopping: running.len() as u64 })
}

/// A succeeded run's test-split result, as comparisons read it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunResult {
    pub run_id: Uuid,
    pub dataset_id: Uuid,
    pub dataset_name: String,
    pub task_family: String,
    /// The dataset's ranking metric.
    pub primary_metric: String,
    /// The team's name (public leaderboards), else None.
    pub team_name: Option<String>,
    /// Size of the dataset's label set (0 for non-classification tasks).
    pub classes: i32,
    pub base_model_id: String,
    pub method: String,
    pub budget: i32,
    pub seed: i64,
    /// Test metrics at the run's best-validation checkpoint.
    pub metrics: Json<serde_json::Value>,
    pub summary: Json<serde_json::Value>,
}

/// Test results of the team's succeeded runs: of one study, or (no study) every run on
/// `dataset_id`. Only the test split's evaluation is read, and it is the evaluation of the
/// checkpoint that validation picked: nothing here chooses between runs by test score.
pub async fn results(pool: &PgPool, team_id: Uuid, study_id: Option<Uuid>, dataset_id: Option<Uuid>) -> Result<Vec<RunResult>> {
    Ok(sqlx::query_as(
        "select r.id as run_id, r.dataset_id, d.name as dataset_name, d.task_family, d.primary_metric, null::text as team_name,
                case when d.task_family = 'classification' then jsonb_array_length(d.label_set) else 0 end as classes,
                r.base_model_id, r.method, r.budget, r.seed, e.metrics, r.summary
         from run r
         join dataset d on d.id = r.dataset_id
         join evaluation e on e.run_id = r.id and e.split = 'test'
         where r.team_id = $1 and r.status = 'succeeded'
           and ($2::uuid is null or r.study_id = $2)
           and ($3::uuid is null or r.dataset_id = $3)
         order by d.name, r.dataset_id, r.base_model_id, r.method, r.budget, r.seed, r.id",
    )
    .bind(team_id)
    .bind(study_id)
    .bind(dataset_id)
    .fetch_all(pool)
    .await?)
}

/// Test results of every team's **published** succeeded runs on a public dataset (a run
/// is published by itself or through a public study), with the team's name. Unpublished
/// runs and private datasets never appear.
pub async fn public_results(pool: &PgPool, dataset_id: Uuid) -> Result<Vec<RunResult>> {
    Ok(sqlx::query_as(
        "select r.id as run_id, r.dataset_id, d.name as dataset_name, d.task_family, d.primary_metric, t.name as team_name,
                case when d.task_family = 'classification' then jsonb_array_length(d.label_set) else 0 end as classes,
                r.base_model_id, r.method, r.budget, r.seed, e.metrics, r.summary
         from run r
         join dataset d on d.id = r.dataset_id and d.team_id is null
         join team t on t.id = r.team_id
         join evaluation e on e.run_id = r.id and e.split = 'test'
         left join study s on s.id = r.study_id
         where r.dataset_id = $1 and r.status = 'succeeded'
           and (r.published_at is not null or s.visibility = 'public')
         order by t.name, r.base_model_id, r.method, r.budget, r.seed, r.id",
    )
    .bind(dataset_id)
    .fetch_all(pool)
    .await?)
}

/// Publishes one of the team's studies (`visibility = 'public'`: its runs on public
/// datasets go on those datasets' public leaderboards) or takes it back (`team`).
pub async fn set_visibility(pool: &PgPool, team_id: Uuid, id: Uuid, public: bool) -> Result<StudyRow> {
    sqlx::query_as(&format!("update study set visibility = $3 where id = $1 and team_id = $2 returning {STUDY_COLS}"))
        .bind(id)
        .bind(team_id)
        .bind(if public { "public" } else { "team" })
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound)
}

/// Published runs (directly or through a public study) per public dataset: what the
/// public leaderboards index shows.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PublicBoard {
    pub dataset_id: Uuid,
    pub dataset_name: String,
    pub task_family: String,
    pub primary_metric: String,
    pub benchmark: Option<String>,
    pub published_runs: i64,
    pub teams: i64,
}

pub async fn public_boards(pool: &PgPool) -> Result<Vec<PublicBoard>> {
    Ok(sqlx::query_as(
        "select d.id as dataset_id, d.name as dataset_name, d.task_family, d.primary_metric, d.benchmark,
                count(r.id) as published_runs, count(distinct r.team_id) as teams
         from dataset d
         left join (run r left join study s on s.id = r.study_id)
                on r.dataset_id = d.id and r.status = 'succeeded' and (r.published_at is not null or s.visibility = 'public')
         where d.team_id is null
         group by d.id order by d.name",
    )
    .fetch_all(pool)
    .await?)
}

/// Stores a run's predictions on `split` (replacing any from an earlier attempt), guarded
/// by the lease like every other write of a running run. False if the lease is lost.
pub async fn record_predictions(pool: &PgPool, run_id: Uuid, token: Uuid, split: &str, preds: &[Prediction]) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let held: Option<i32> = sqlx::query_scalar("select 1 from run where id = $1 and lease_token = $2 for update")
        .bind(run_id)
        .bind(token)
        .fetch_optional(&mut *tx)
        .await?;
    if held.is_none() {
        return Ok(false);
    }
    sqlx::query("delete from prediction where run_id = $1 and split = $2").bind(run_id).bind(split).execute(&mut *tx).await?;
    // One statement per chunk: unnest of parallel arrays.
    for chunk in preds.chunks(1000) {
        let idx: Vec<i32> = chunk.iter().map(|p| p.index as i32).collect();
        let predicted: Vec<Json<&rankfit_domain::prediction::Output>> = chunk.iter().map(|p| Json(&p.predicted)).collect();
        let reference: Vec<Json<&rankfit_domain::prediction::Output>> = chunk.iter().map(|p| Json(&p.reference)).collect();
        let scores: Vec<Json<&std::collections::BTreeMap<String, f64>>> = chunk.iter().map(|p| Json(&p.scores)).collect();
        let inputs: Vec<Option<&str>> = chunk.iter().map(|p| p.input.as_deref()).collect();
        sqlx::query(
            "insert into prediction (run_id, split, example_index, predicted, reference, scores, input)
             select $1, $2, i, p, r, s, x from unnest($3::int[], $4::jsonb[], $5::jsonb[], $6::jsonb[], $7::text[]) as t(i, p, r, s, x)",
        )
        .bind(run_id)
        .bind(split)
        .bind(&idx)
        .bind(&predicted)
        .bind(&reference)
        .bind(&scores)
        .bind(&inputs)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

#[derive(sqlx::FromRow)]
struct PredictionRow {
    run_id: Uuid,
    example_index: i32,
    predicted: Json<rankfit_domain::prediction::Output>,
    reference: Json<rankfit_domain::prediction::Output>,
    scores: Json<std::collections::BTreeMap<String, f64>>,
    input: Option<String>,
}

/// A run's stored predictions on `split`, by example index.
pub async fn predictions(pool: &PgPool, run_id: Uuid, split: &str) -> Result<Vec<Prediction>> {
    Ok(predictions_of_runs(pool, &[run_id], split).await?.remove(&run_id).unwrap_or_default())
}

/// The stored predictions on `split` of every run in `run_ids` (one query), by run and
/// example index; runs without any are absent.
pub async fn predictions_of_runs(pool: &PgPool, run_ids: &[Uuid], split: &str) -> Result<std::collections::HashMap<Uuid, Vec<Prediction>>> {
    let rows: Vec<PredictionRow> = sqlx::query_as(
        "select run_id, example_index, predicted, reference, scores, input from prediction
         where run_id = any($1) and split = $2 order by run_id, example_index",
    )
    .bind(run_ids)
    .bind(split)
    .fetch_all(pool)
    .await?;
    let mut out: std::collections::HashMap<Uuid, Vec<Prediction>> = std::collections::HashMap::new();
    for r in rows {
        out.entry(r.run_id).or_default().push(Prediction {
            index: r.example_index as u32,
            predicted: r.predicted.0,
            reference: r.reference.0,
            input: r.input,
            scores: r.scores.0,
        });
    }
    Ok(out)
}
