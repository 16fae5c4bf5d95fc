//! Studies: create a grid of runs in one request (all or nothing), follow its progress,
//! extend it, cancel it, and read its comparison: cells with n / mean / std / 95% interval,
//! paired differences against LoRA, rank groups and the paper table.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rankfit_domain::comparison::{self, Cell, Options, RunCosts, RunResult};
use rankfit_domain::estimate::{self, Estimate, StudyEstimate};
use rankfit_domain::run::Method;
use rankfit_domain::study::{StudyExtension, StudySpec};
use rankfit_domain::summary::RunSummary;
use rankfit_domain::table::PaperTable;
use rankfit_domain::task::TaskFamily;
use rankfit_store::runs::{NewRun, RunRow};
use rankfit_store::studies::{self, Progress, StudyRow};
use rankfit_store::{datasets, StoreError};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::estimates::{CreateQuery, Fleet};
use super::runs::{field_error, new_run, CreateRun};
use super::{parse_id, JsonBody, QueryParams};
use crate::auth::Auth;
use crate::error::ErrorBody;
use crate::{ApiResult, AppError, AppState};

#[derive(Serialize, ToSchema)]
pub struct StudyCreated {
    pub study: StudyRow,
    pub runs_created: usize,
    pub grid_size: usize,
}

/// One grid point's estimate in a dry run.
#[derive(Serialize, ToSchema)]
pub struct GridPointEstimate {
    pub dataset_id: Uuid,
    pub method: String,
    pub budget: i32,
    pub seed: i64,
    pub estimate: Estimate,
}

/// `POST /studies?dry_run=true`: the study's cost (its runs one after another on one
/// worker) and each run's; nothing is created.
#[derive(Serialize, ToSchema)]
pub struct StudyDryRun {
    pub dry_run: bool,
    pub grid_size: usize,
    pub estimate: StudyEstimate,
    pub runs: Vec<GridPointEstimate>,
}

/// Run counts by state, with an ETA.
#[derive(Serialize, ToSchema)]
pub struct StudyProgress {
    pub done: i64,
    pub total: i64,
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Mean wall time of the study's succeeded runs.
    pub mean_run_seconds: Option<f64>,
    /// From the mean run time, assuming as many runs at once as are running now.
    pub eta_seconds: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct StudyListEntry {
    pub study: StudyRow,
    pub progress: StudyProgress,
}

#[derive(Serialize, ToSchema)]
pub struct StudyList {
    pub studies: Vec<StudyListEntry>,
}

#[derive(Serialize, ToSchema)]
pub struct StudyDetail {
    pub study: StudyRow,
    pub progress: StudyProgress,
    pub grid: Vec<GridCell>,
    /// Comparison cells: n, mean, std, 95% interval of every metric, difference vs LoRA, rank group.
    pub cells: Vec<Cell>,
}

#[derive(Serialize, ToSchema)]
pub struct StudyCancelled {
    pub study_id: Uuid,
    /// Queued runs cancelled at once.
    pub cancelled: u64,
    /// Running runs told to stop at their next heartbeat.
    pub stopping: u64,
    pub progress: StudyProgress,
}

#[derive(Serialize, ToSchema)]
pub struct StudyExtended {
    pub study_id: Uuid,
    pub runs_created: usize,
    pub grid_size: usize,
    pub spec: StudySpec,
}

#[derive(Serialize, ToSchema)]
pub struct StudyBody {
    pub study: StudyRow,
}

#[derive(Serialize, ToSchema)]
pub struct StudyTable {
    pub study_id: Uuid,
    pub table: PaperTable,
}

/// Every grid point of `spec` as a validated run, with the same field errors as
/// `POST /runs` (prefixed with the grid point that failed).
async fn grid_runs(st: &AppState, team_id: Uuid, spec: &StudySpec) -> ApiResult<Vec<NewRun>> {
    spec.validate().map_err(|e| field_error(&e.field, e.message))?;
    let mut dsets = BTreeMap::new();
    for (i, id) in spec.dataset_ids.iter().enumerate() {
        let d = datasets::get(&st.pool, team_id, *id).await.map_err(|e| match e {
            StoreError::NotFound => field_error(&format!("dataset_ids[{i}]"), format!("no dataset {id} in your team")),
            other => other.into(),
        })?;
        dsets.insert(*id, d);
    }
    let grid = spec.grid().map_err(|e| field_error(&e.field, e.message))?;
    let fleet = Fleet::load(st).await?;
    let mut out = Vec::with_capacity(grid.len());
    for p in grid {
        let d = &dsets[&p.dataset_id];
        let body = CreateRun {
            dataset_id: p.dataset_id,
            base_model: spec.base_model.clone(),
            method: p.method.as_str().to_string(),
            budget: p.budget,
            seed: Some(p.seed),
            name: format!("{} · {} · {} · b{} · s{}", spec.name, d.name, p.method.as_str(), p.budget, p.seed),
            priority: spec.priority,
            max_attempts: None,
            training: spec.training.clone(),
            method_config: spec.method_config.get(p.method.as_str()).cloned(),
            continue_from: None,
        };
        let mut run = new_run(team_id, d, &body).map_err(|e| {
            field_error(
                &e.field,
                format!("{} (dataset {}, method {}, budget {}, seed {})", e.message, d.name, p.method.as_str(), p.budget, p.seed),
            )
        })?;
        run.estimate = Some(serde_json::to_value(fleet.estimate(d, &run)?).map_err(AppError::internal)?);
        out.push(run);
    }
    Ok(out)
}

/// Queues every grid point (all or nothing); `?dry_run=true` validates the grid and returns
/// the study's estimate (its runs one after another on one worker) and each run's,
/// creating nothing.
#[utoipa::path(post, path = "/studies", tag = "studies", params(CreateQuery), request_body = StudySpec,
    responses((status = 201, body = StudyCreated, description = "Queued"), (status = 200, body = StudyDryRun, description = "Dry run: the estimate"),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    Auth(team): Auth,
    QueryParams(q): QueryParams<CreateQuery>,
    JsonBody(spec): JsonBody<StudySpec>,
) -> ApiResult<Response> {
    let runs = grid_runs(&st, team.id, &spec).await?;
    if q.dry_run {
        let estimates: Vec<Estimate> =
            runs.iter().filter_map(|r| r.estimate.clone()).filter_map(|e| serde_json::from_value(e).ok()).collect();
        let per_run: Vec<GridPointEstimate> = runs
            .iter()
            .zip(&estimates)
            .map(|(r, e)| GridPointEstimate {
                dataset_id: r.dataset_id,
                method: r.method.clone(),
                budget: r.budget,
                seed: r.seed,
                estimate: e.clone(),
            })
            .collect();
        let body = StudyDryRun { dry_run: true, grid_size: runs.len(), estimate: estimate::study_estimate(&estimates), runs: per_run };
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    let spec_json = serde_json::to_value(&spec).map_err(AppError::internal)?;
    let (study, created) = studies::create(&st.pool, team.id, spec.name.trim(), &spec_json, &runs).await?;
    Ok((StatusCode::CREATED, Json(StudyCreated { study, runs_created: created, grid_size: runs.len() })).into_response())
}

/// The team's studies with their progress.
#[utoipa::path(get, path = "/studies", tag = "studies", responses((status = 200, body = StudyList)))]
pub async fn list(State(st): State<AppState>, Auth(team): Auth) -> ApiResult<Json<StudyList>> {
    let rows = studies::list(&st.pool, team.id).await?;
    let studies = rows.into_iter().map(|r| StudyListEntry { progress: progress_json(&r.progress), study: r.study }).collect();
    Ok(Json(StudyList { studies }))
}

pub(crate) async fn owned_study(st: &AppState, team_id: Uuid, raw: &str) -> ApiResult<StudyRow> {
    let id = parse_id(raw, "study")?;
    studies::get(&st.pool, team_id, id).await.map_err(|e| match e {
        StoreError::NotFound => AppError::not_found("study"),
        other => other.into(),
    })
}

/// done/total, and an ETA from the mean wall time of the study's finished runs, assuming
/// as many runs proceed at once as are running now.
pub(crate) fn progress_json(p: &Progress) -> StudyProgress {
    let left = p.queued + p.running;
    let eta = p.mean_run_seconds.filter(|_| left > 0).map(|s| s * left as f64 / p.running.max(1) as f64);
    StudyProgress {
        done: p.done(),
        total: p.total,
        queued: p.queued,
        running: p.running,
        succeeded: p.succeeded,
        failed: p.failed,
        cancelled: p.cancelled,
        mean_run_seconds: p.mean_run_seconds,
        eta_seconds: eta,
    }
}

/// A grid cell's runs, as the study page and API list them.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GridCell {
    pub dataset_id: Uuid,
    pub model: String,
    pub method: String,
    pub budget: i32,
    pub runs: Vec<GridRun>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GridRun {
    pub id: Uuid,
    pub seed: i64,
    pub status: String,
}

pub(crate) fn grid_cells(runs: &[RunRow]) -> Vec<GridCell> {
    let mut cells: Vec<GridCell> = Vec::new();
    for r in runs {
        let run = GridRun { id: r.id, seed: r.seed, status: r.status.clone() };
        match cells
            .iter_mut()
            .find(|c| c.dataset_id == r.dataset_id && c.model == r.base_model_id && c.method == r.method && c.budget == r.budget)
        {
            Some(c) => c.runs.push(run),
            None => cells.push(GridCell {
                dataset_id: r.dataset_id,
                model: r.base_model_id.clone(),
                method: r.method.clone(),
                budget: r.budget,
                runs: vec![run],
            }),
        }
    }
    let order = |m: &str| Method::ALL.iter().position(|x| x.as_str() == m).unwrap_or(usize::MAX);
    cells.sort_by_key(|a| (a.dataset_id, a.budget, order(&a.method)));
    cells
}

/// A study: progress with ETA, its grid of runs, and its comparison cells.
#[utoipa::path(get, path = "/studies/{id}", tag = "studies", params(("id" = String, Path)),
    responses((status = 200, body = StudyDetail), (status = 404, body = ErrorBody)))]
pub async fn get(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<StudyDetail>> {
    let study = owned_study(&st, team.id, &id).await?;
    let progress = studies::progress(&st.pool, study.id).await?;
    let runs = studies::runs(&st.pool, study.id).await?;
    let cells = cells(&st, team.id, Some(study.id), None).await?;
    Ok(Json(StudyDetail { study, progress: progress_json(&progress), grid: grid_cells(&runs), cells }))
}

/// Publish the study: its runs on public datasets go on those datasets' public
/// leaderboards (runs on the team's own datasets stay private).
#[utoipa::path(post, path = "/studies/{id}/publish", tag = "leaderboards", params(("id" = String, Path)),
    responses((status = 200, body = StudyBody), (status = 404, body = ErrorBody)))]
pub async fn publish(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<StudyBody>> {
    let study = owned_study(&st, team.id, &id).await?;
    Ok(Json(StudyBody { study: studies::set_visibility(&st.pool, team.id, study.id, true).await? }))
}

/// Make the study private to the team again.
#[utoipa::path(delete, path = "/studies/{id}/publish", tag = "leaderboards", params(("id" = String, Path)),
    responses((status = 200, body = StudyBody), (status = 404, body = ErrorBody)))]
pub async fn unpublish(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<StudyBody>> {
    let study = owned_study(&st, team.id, &id).await?;
    Ok(Json(StudyBody { study: studies::set_visibility(&st.pool, team.id, study.id, false).await? }))
}

/// Cancel every run of the study that has not finished (finished runs stay).
#[utoipa::path(post, path = "/studies/{id}/cancel", tag = "studies", params(("id" = String, Path)),
    responses((status = 200, body = StudyCancelled), (status = 404, body = ErrorBody)))]
pub async fn cancel(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<StudyCancelled>> {
    let study = owned_study(&st, team.id, &id).await?;
    let done = studies::cancel(&st.pool, team.id, study.id).await?;
    let progress = studies::progress(&st.pool, study.id).await?;
    Ok(Json(StudyCancelled { study_id: study.id, cancelled: done.cancelled, stopping: done.stopping, progress: progress_json(&progress) }))
}

/// Add budgets, seeds, methods or datasets; existing grid points are not rerun.
#[utoipa::path(post, path = "/studies/{id}/extend", tag = "studies", params(("id" = String, Path)), request_body = StudyExtension,
    responses((status = 200, body = StudyExtended), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn extend(
    State(st): State<AppState>,
    Auth(team): Auth,
    Path(id): Path<String>,
    JsonBody(ext): JsonBody<StudyExtension>,
) -> ApiResult<Json<StudyExtended>> {
    let study = owned_study(&st, team.id, &id).await?;
    if ext.is_empty() {
        return Err(field_error("budgets", "add budgets, seeds, methods or dataset_ids"));
    }
    let spec: StudySpec = serde_json::from_value(study.spec.0.clone()).map_err(AppError::internal)?;
    let spec = spec.extended(&ext);
    let runs = grid_runs(&st, team.id, &spec).await?;
    let spec_json = serde_json::to_value(&spec).map_err(AppError::internal)?;
    let created = studies::extend(&st.pool, team.id, study.id, &spec_json, &runs).await?;
    Ok(Json(StudyExtended { study_id: study.id, runs_created: created, grid_size: runs.len(), spec }))
}

/// The comparison cells of a study's (or, with no study, a dataset's) succeeded runs.
pub(crate) async fn cells(st: &AppState, team_id: Uuid, study_id: Option<Uuid>, dataset_id: Option<Uuid>) -> ApiResult<Vec<Cell>> {
    cells_of(st, studies::results(&st.pool, team_id, study_id, dataset_id).await?).await
}

/// The cells of stored results: predictions loaded, then aggregated (per team when the
/// rows carry team names, as on public leaderboards).
pub(crate) async fn cells_of(st: &AppState, rows: Vec<studies::RunResult>) -> ApiResult<Vec<Cell>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.run_id).collect();
    let mut predictions = studies::predictions_of_runs(&st.pool, &ids, "test").await?;
    let mut results = Vec::with_capacity(rows.len());
    for r in rows {
        let (Some(family), Some(method)) = (TaskFamily::parse(&r.task_family), Method::parse(&r.method)) else {
            return Err(AppError::internal(format!("run {} has an unknown task family or method", r.run_id)));
        };
        let summary = RunSummary::from_value(&r.summary.0);
        results.push(RunResult {
            run_id: r.run_id,
            dataset_id: r.dataset_id,
            dataset_name: r.dataset_name,
            family,
            primary_metric: r.primary_metric,
            team: r.team_name,
            classes: r.classes.max(0) as usize,
            model: r.base_model_id,
            method,
            budget: r.budget.max(0) as u32,
            seed: r.seed as u64,
            metrics: RunResult::parse_metrics(&r.metrics.0),
            costs: RunCosts::from_summary(&summary),
            final_ranks: summary.final_ranks,
            predictions: predictions.remove(&r.run_id).unwrap_or_default(),
        });
    }
    // Bootstraps are CPU work: keep them off the async workers.
    tokio::task::spawn_blocking(move || comparison::aggregate(&results, &Options::default())).await.map_err(AppError::internal)
}

/// The paper table (rows method × budget, columns datasets, mean ± std over seeds, Avg,
/// best group in bold) as JSON, CSV, Markdown or LaTeX.
#[utoipa::path(get, path = "/studies/{id}/table", tag = "studies", params(("id" = String, Path), super::FormatQuery),
    responses((status = 200, body = StudyTable, description = "format=json; csv, md and tex return the table as text"),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn table(
    State(st): State<AppState>,
    Auth(team): Auth,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<super::FormatQuery>,
) -> ApiResult<Response> {
    let study = owned_study(&st, team.id, &id).await?;
    let table = comparison::paper_table(&cells(&st, team.id, Some(study.id), None).await?);
    let (body, content_type, ext) = match q.format.as_deref().unwrap_or("json") {
        "json" => return Ok(Json(StudyTable { study_id: study.id, table }).into_response()),
        "csv" => (table.to_csv(), "text/csv; charset=utf-8", "csv"),
        "md" => (table.to_markdown(), "text/markdown; charset=utf-8", "md"),
        "tex" => (table.to_latex(), "application/x-tex; charset=utf-8", "tex"),
        other => return Err(field_error("format", format!("unknown format {other:?}; use json, csv, md or tex"))),
    };
    let filename = format!("rankfit-study-{}.{ext}", study.id);
    Ok(super::file_response(content_type, "inline", &filename, body))
}

/// The study's progress and grid as SSE `grid` events: one at once, then one whenever a
/// run of the study records an event (at most every second), until every run is finished.
/// The study page fills its grid from this stream.
#[utoipa::path(get, path = "/studies/{id}/events", tag = "studies", params(("id" = String, Path)),
    responses((status = 200, description = "Server-sent `grid` events: {progress, grid, finished}", content_type = "text/event-stream", body = String),
              (status = 404, body = ErrorBody)))]
pub async fn events(
    State(st): State<AppState>,
    Auth(team): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::response::sse::Sse<impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>>> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use std::time::Duration;
    let study = owned_study(&st, team.id, &id).await?;
    struct Cursor {
        st: AppState,
        study_id: Uuid,
        rx: tokio::sync::broadcast::Receiver<Uuid>,
        first: bool,
        finished: bool,
    }
    let cursor = Cursor { rx: st.events.subscribe(), st, study_id: study.id, first: true, finished: false };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        if c.finished {
            return None;
        }
        if !c.first {
            // Wait for news about any of this study's runs (or poll after a while).
            let runs: Vec<Uuid> = studies::runs(&c.st.pool, c.study_id).await.map(|r| r.iter().map(|r| r.id).collect()).unwrap_or_default();
            let wait = async {
                loop {
                    match c.rx.recv().await {
                        Ok(id) if runs.contains(&id) => break,
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            break;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        c.first = false;
        let snapshot = async {
            let progress = studies::progress(&c.st.pool, c.study_id).await?;
            let runs = studies::runs(&c.st.pool, c.study_id).await?;
            Ok::<_, StoreError>((progress, runs))
        };
        let data = match snapshot.await {
            Ok((progress, runs)) => {
                c.finished = progress.queued + progress.running == 0;
                json!({ "progress": progress_json(&progress), "grid": grid_cells(&runs), "finished": c.finished })
            }
            Err(e) => {
                tracing::warn!("study stream of {}: {e}", c.study_id);
                json!({ "error": "the database is unreachable; retrying" })
            }
        };
        Some((Ok(Event::default().event("grid").data(data.to_string())), c))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
