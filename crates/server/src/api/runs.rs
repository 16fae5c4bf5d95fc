//! Runs: create (validated against the dataset and model), list, get, cancel, metrics,
//! rank maps, artifacts, adapter download and the SSE event stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};

use super::QueryParams;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use rankfit_domain::artifact::ArtifactKind;
use rankfit_domain::catalog;
use rankfit_domain::estimate::{Accuracy, Estimate};
use rankfit_domain::run::{ConfigError, Method, MethodConfig, RunConfig, RunStatus, TrainingConfig};
use rankfit_domain::task::TaskFamily;
use rankfit_store::artifacts::ArtifactRow;
use rankfit_store::runs::{self, NewRun, RunFilter};
use rankfit_store::runs::{EvaluationRow, MetricPoint, RankSnapshotRow, RunRow};
use rankfit_store::{artifacts, datasets, events, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::estimates::{CreateQuery, Fleet};
use super::{parse_id, JsonBody};
use crate::auth::Auth;
use crate::error::ErrorBody;
use crate::{ApiResult, AppError, AppState};

#[derive(Serialize, ToSchema)]
pub struct RunBody {
    pub run: RunRow,
}

/// `POST /runs?dry_run=true`: what the run would cost; nothing is created.
#[derive(Serialize, ToSchema)]
pub struct RunDryRun {
    pub dry_run: bool,
    pub estimate: Estimate,
    /// How close the fleet's estimates came on its finished runs (null before any).
    pub estimator_accuracy: Option<Accuracy>,
    /// The validated config the run would get (defaults filled in).
    #[schema(value_type = Object)]
    pub config: Value,
}

#[derive(Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunRow>,
}

#[derive(Serialize, ToSchema)]
pub struct RunDetail {
    pub run: RunRow,
    pub evaluations: Vec<EvaluationRow>,
    pub artifacts: Vec<ArtifactRow>,
}

#[derive(Serialize, ToSchema)]
pub struct RunMetrics {
    pub run_id: Uuid,
    pub metrics: Vec<MetricPoint>,
}

#[derive(Serialize, ToSchema)]
pub struct RankMap {
    pub run_id: Uuid,
    /// The adapted modules in layer order.
    pub modules: Vec<String>,
    pub latest: Option<RankSnapshotRow>,
    pub snapshots: Vec<RankSnapshotRow>,
}

#[derive(Serialize, ToSchema)]
pub struct ArtifactList {
    pub artifacts: Vec<ArtifactRow>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    pub(crate) dataset_id: Uuid,
    pub(crate) base_model: Option<String>,
    pub(crate) method: String,
    /// Target average rank per adapted module (equal-budget comparisons share it).
    pub(crate) budget: u32,
    pub(crate) seed: Option<u64>,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) priority: i32,
    pub(crate) max_attempts: Option<i32>,
    /// Training settings (epochs, max_steps, batch_size, learning_rate, max_seq_len, ...).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) training: Option<Value>,
    /// The method's own settings (schedules, budgets); defaults per method.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) method_config: Option<Value>,
    pub(crate) continue_from: Option<Uuid>,
}

pub(crate) fn field_error(field: &str, message: impl Into<String>) -> AppError {
    AppError::unprocessable("invalid_field", format!("{field}: {}", message.into())).with_details(json!({ "field": field }))
}

/// Builds and validates the run config from the request's parts.
fn build_config(body: &CreateRun) -> Result<(Method, RunConfig), ConfigError> {
    let invalid = |field: &str, message: String| ConfigError { field: field.into(), message };
    let method = Method::parse(&body.method).ok_or_else(|| {
        invalid("method", format!("unknown method {:?}; use one of lora, adalora, salientlora, alora, rolora", body.method))
    })?;
    let training: TrainingConfig = match &body.training {
        None => TrainingConfig::default(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| invalid("training", e.to_string()))?,
    };
    let method_config = match &body.method_config {
        None => MethodConfig::default_for(method),
        Some(Value::Object(m)) => {
            let mut m = m.clone();
            m.insert("method".into(), json!(method.as_str()));
            serde_json::from_value(Value::Object(m)).map_err(|e| invalid("method_config", e.to_string()))?
        }
        Some(_) => return Err(invalid("method_config", "must be a JSON object".into())),
    };
    let config = RunConfig { training, method: method_config };
    config.validate(body.budget)?;
    Ok((method, config))
}

/// Validates a run request against its (already fetched, team-owned) dataset: method,
/// configs, base model and its target modules, limits. `POST /runs` and every grid point
/// of a study go through this one function, so both report the same field errors.
pub(crate) fn new_run(team_id: Uuid, dataset: &datasets::DatasetRow, body: &CreateRun) -> Result<NewRun, ConfigError> {
    let invalid = |field: &str, message: String| ConfigError { field: field.into(), message };
    let (method, mut config) = build_config(body)?;
    let family = TaskFamily::parse(&dataset.task_family)
        .ok_or_else(|| invalid("dataset_id", format!("dataset has an unknown task family {:?}", dataset.task_family)))?;
    let model_id = body.base_model.clone().unwrap_or_else(|| {
        catalog::BASE_MODELS.iter().find(|m| m.architecture.serves(family)).map(|m| m.id.to_string()).unwrap_or_default()
    });
    let model = catalog::base_model(&model_id).ok_or_else(|| {
        let known: Vec<&str> = catalog::BASE_MODELS.iter().map(|m| m.id).collect();
        invalid("base_model", format!("unknown base model {model_id:?}; known: {known:?}"))
    })?;
    if !model.architecture.serves(family) {
        return Err(invalid(
            "base_model",
            format!("{} is a {} model and cannot train a {family} dataset ({})", model.id, model.architecture.as_str(), dataset.name),
        ));
    }
    if body.training.as_ref().and_then(|t| t.get("target_modules")).is_none() {
        config.training.target_modules = model.default_targets.iter().map(|s| s.to_string()).collect();
    }
    model.check_targets(&config.training.target_modules).map_err(|e| invalid("training.target_modules", e))?;
    let max_attempts = body.max_attempts.unwrap_or(3);
    if !(1..=20).contains(&max_attempts) {
        return Err(invalid("max_attempts", "must be in 1..=20".into()));
    }
    if !(-1000..=1000).contains(&body.priority) {
        return Err(invalid("priority", "must be in -1000..=1000".into()));
    }
    if body.name.len() > 200 {
        return Err(invalid("name", "at most 200 characters".into()));
    }
    Ok(NewRun {
        team_id,
        dataset_id: dataset.id,
        base_model_id: model.id.to_string(),
        method: method.as_str().to_string(),
        config: serde_json::to_value(&config).map_err(|e| invalid("config", e.to_string()))?,
        budget: body.budget as i32,
        seed: body.seed.unwrap_or(42) as i64,
        name: body.name.clone(),
        priority: body.priority,
        max_attempts,
        continue_from: body.continue_from,
        estimate: None,
    })
}

/// Queues a run, with its estimate stored; `?dry_run=true` validates the same way and
/// returns the estimate (steps, time, peak memory, basis, error band) without creating anything.
#[utoipa::path(post, path = "/runs", tag = "runs", params(CreateQuery), request_body = CreateRun,
    responses((status = 201, body = RunBody, description = "Queued"), (status = 200, body = RunDryRun, description = "Dry run: the estimate"),
              (status = 422, body = ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    Auth(team): Auth,
    QueryParams(q): QueryParams<CreateQuery>,
    JsonBody(body): JsonBody<CreateRun>,
) -> ApiResult<Response> {
    // The config is checked before the dataset is looked up, so a bad method or budget is
    // reported as such even with a wrong dataset id.
    build_config(&body).map_err(|e| field_error(&e.field, e.message))?;
    let dataset = datasets::get(&st.pool, team.id, body.dataset_id).await.map_err(|e| match e {
        StoreError::NotFound => field_error("dataset_id", "no dataset with this id in your team"),
        other => other.into(),
    })?;
    let mut new = new_run(team.id, &dataset, &body).map_err(|e| field_error(&e.field, e.message))?;
    let fleet = Fleet::load(&st).await?;
    let estimate = fleet.estimate(&dataset, &new)?;
    if q.dry_run {
        let body = RunDryRun { dry_run: true, estimate, estimator_accuracy: fleet.accuracy().cloned(), config: new.config.clone() };
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    new.estimate = Some(serde_json::to_value(&estimate).map_err(AppError::internal)?);
    let run = runs::create(&st.pool, &new).await.map_err(|e| match e {
        StoreError::NotFound => field_error("continue_from", "no run with this id in your team"),
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, Json(RunBody { run })).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    status: Option<String>,
    method: Option<String>,
    dataset_id: Option<Uuid>,
    base_model: Option<String>,
    budget: Option<i32>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The team's runs, newest first, filtered.
#[utoipa::path(get, path = "/runs", tag = "runs", params(ListQuery), responses((status = 200, body = RunList), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(State(st): State<AppState>, Auth(team): Auth, QueryParams(q): QueryParams<ListQuery>) -> ApiResult<Json<RunList>> {
    let status = q
        .status
        .as_deref()
        .map(|s| RunStatus::parse(s).ok_or_else(|| field_error("status", format!("unknown status {s:?}"))))
        .transpose()?;
    let method = q
        .method
        .as_deref()
        .map(|m| Method::parse(m).map(|m| m.as_str().to_string()).ok_or_else(|| field_error("method", format!("unknown method {m:?}"))))
        .transpose()?;
    let filter = RunFilter {
        status,
        method,
        dataset_id: q.dataset_id,
        base_model_id: q.base_model,
        budget: q.budget,
        limit: q.limit.unwrap_or(100),
        offset: q.offset.unwrap_or(0),
    };
    Ok(Json(RunList { runs: runs::list(&st.pool, team.id, &filter).await? }))
}

async fn owned_run(st: &AppState, team_id: Uuid, raw: &str) -> ApiResult<runs::RunRow> {
    let id = parse_id(raw, "run")?;
    runs::get(&st.pool, team_id, id).await.map_err(|e| match e {
        StoreError::NotFound => AppError::not_found("run"),
        other => other.into(),
    })
}

/// A run with its evaluations and artifacts.
#[utoipa::path(get, path = "/runs/{id}", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, body = RunDetail), (status = 404, body = ErrorBody)))]
pub async fn get(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<RunDetail>> {
    let run = owned_run(&st, team.id, &id).await?;
    let evaluations = runs::evaluations(&st.pool, run.id).await?;
    let artifacts = artifacts::list(&st.pool, run.id).await?;
    Ok(Json(RunDetail { run, evaluations, artifacts }))
}

/// Cancel a queued or running run (a running one stops at its worker's next heartbeat).
#[utoipa::path(post, path = "/runs/{id}/cancel", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, body = RunBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<RunBody>> {
    let run = owned_run(&st, team.id, &id).await?;
    let run = runs::cancel(&st.pool, team.id, run.id).await?;
    Ok(Json(RunBody { run }))
}

/// Put the run (on a public dataset) on its public leaderboard; 409 for a run on a private dataset.
#[utoipa::path(post, path = "/runs/{id}/publish", tag = "leaderboards", params(("id" = String, Path)),
    responses((status = 200, body = RunBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn publish(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<RunBody>> {
    set_published(&st, team.id, &id, true).await
}

/// Take the run off the public leaderboard.
#[utoipa::path(delete, path = "/runs/{id}/publish", tag = "leaderboards", params(("id" = String, Path)),
    responses((status = 200, body = RunBody), (status = 404, body = ErrorBody)))]
pub async fn unpublish(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<RunBody>> {
    set_published(&st, team.id, &id, false).await
}

async fn set_published(st: &AppState, team_id: Uuid, raw: &str, publish: bool) -> ApiResult<Json<RunBody>> {
    let id = parse_id(raw, "run")?;
    let run = runs::set_published(&st.pool, team_id, id, publish).await.map_err(|e| match e {
        StoreError::NotFound => AppError::not_found("run"),
        other => other.into(),
    })?;
    Ok(Json(RunBody { run }))
}

/// Every metric point the run recorded.
#[utoipa::path(get, path = "/runs/{id}/metrics", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, body = RunMetrics), (status = 404, body = ErrorBody)))]
pub async fn metrics(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<RunMetrics>> {
    let run = owned_run(&st, team.id, &id).await?;
    Ok(Json(RunMetrics { run_id: run.id, metrics: runs::metrics(&st.pool, run.id).await? }))
}

/// The rank allocation over time: a snapshot per allocation step.
#[utoipa::path(get, path = "/runs/{id}/rank-map", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, body = RankMap), (status = 404, body = ErrorBody)))]
pub async fn rank_map(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<RankMap>> {
    let run = owned_run(&st, team.id, &id).await?;
    let snapshots = runs::rank_snapshots(&st.pool, run.id).await?;
    let latest = snapshots.last().cloned();
    // JSON objects have no order: `modules` lists the adapted modules in layer order.
    let mut modules: Vec<String> =
        snapshots.iter().flat_map(|s| s.ranks.0.as_object().into_iter().flat_map(|m| m.keys().cloned())).collect();
    modules.sort_by(|a, b| rankfit_domain::rank::module_order(a, b));
    modules.dedup();
    Ok(Json(RankMap { run_id: run.id, modules, latest, snapshots }))
}

/// The run's artifacts (exports, checkpoints) with sizes and digests.
#[utoipa::path(get, path = "/runs/{id}/artifacts", tag = "adapters", params(("id" = String, Path)),
    responses((status = 200, body = ArtifactList), (status = 404, body = ErrorBody)))]
pub async fn artifacts(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<ArtifactList>> {
    let run = owned_run(&st, team.id, &id).await?;
    Ok(Json(ArtifactList { artifacts: artifacts::list(&st.pool, run.id).await? }))
}

/// `format`: `peft` (the run's own method, PEFT layout, zip), `lora` (plain-LoRA
/// re-expression, zip) or `merged` (base weights with the adapter merged, safetensors);
/// streamed, with ranges and an ETag ([`super::download`]).
#[utoipa::path(get, path = "/runs/{id}/adapter", tag = "adapters", params(("id" = String, Path), super::FormatQuery),
    responses((status = 200, description = "The file (zip or safetensors); Content-Length, a strong ETag (its sha256)", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 206, description = "The requested byte range (Range: bytes=a-b, a-, -n)"),
              (status = 304, description = "If-None-Match matched the ETag"),
              (status = 404, body = ErrorBody), (status = 416, description = "Unsatisfiable range")))]
pub async fn download_adapter(
    State(st): State<AppState>,
    Auth(team): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<super::FormatQuery>,
) -> ApiResult<Response> {
    let run = owned_run(&st, team.id, &id).await?;
    let format = q.format.as_deref().unwrap_or("peft");
    let kind = ArtifactKind::from_format(format)
        .ok_or_else(|| field_error("format", format!("unknown format {format:?}; use peft, lora or merged")))?
        .as_str();
    let art = artifacts::get(&st.pool, run.id, kind).await.map_err(|e| match e {
        StoreError::NotFound => AppError::not_found(&format!("{kind} artifact of this run (status: {})", run.status)),
        other => other.into(),
    })?;
    let ext = art.uri.rsplit_once('.').map(|(_, e)| e).unwrap_or("bin");
    let content_type = if ext == "zip" { "application/zip" } else { "application/octet-stream" };
    let filename = format!("rankfit-{}-{}.{ext}", run.id, kind);
    super::download::artifact(&st, &headers, &art.uri, &art.sha256, content_type, &filename).await
}

/// The run's per-example test predictions (of its best-validation state): `jsonl` (one
/// object per example: index, predicted, reference, per-example scores) or `csv`.
#[utoipa::path(get, path = "/runs/{id}/predictions", tag = "runs", params(("id" = String, Path), super::FormatQuery),
    responses((status = 200, description = "JSON lines (format=jsonl) or CSV (format=csv)", content_type = "application/x-ndjson", body = String),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn predictions(
    State(st): State<AppState>,
    Auth(team): Auth,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<super::FormatQuery>,
) -> ApiResult<Response> {
    let run = owned_run(&st, team.id, &id).await?;
    let format = q.format.as_deref().unwrap_or("jsonl");
    if !["jsonl", "csv"].contains(&format) {
        return Err(field_error("format", format!("unknown format {format:?}; use jsonl or csv")));
    }
    let preds = rankfit_store::studies::predictions(&st.pool, run.id, "test").await?;
    if preds.is_empty() {
        return Err(AppError::not_found(&format!("test predictions of this run (status: {})", run.status)));
    }
    let body = if format == "jsonl" {
        let mut out = String::new();
        for p in &preds {
            out.push_str(&serde_json::to_string(p).map_err(AppError::internal)?);
            out.push('\n');
        }
        out
    } else {
        predictions_csv(&preds).map_err(AppError::internal)?
    };
    let content_type = if format == "jsonl" { "application/x-ndjson" } else { "text/csv; charset=utf-8" };
    let filename = format!("rankfit-{}-predictions.{format}", run.id);
    Ok(super::file_response(content_type, "attachment", &filename, body))
}

/// index, predicted, reference, then one column per per-example score.
fn predictions_csv(preds: &[rankfit_domain::prediction::Prediction]) -> Result<String, csv::Error> {
    let names: Vec<&String> = preds.first().map(|p| p.scores.keys().collect()).unwrap_or_default();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["index".to_string(), "input".into(), "predicted".into(), "reference".into()];
    header.extend(names.iter().map(|n| n.to_string()));
    w.write_record(&header)?;
    for p in preds {
        let mut row = vec![p.index.to_string(), p.input.clone().unwrap_or_default(), p.predicted.as_text(), p.reference.as_text()];
        row.extend(names.iter().map(|n| p.scores.get(*n).map(|v| v.to_string()).unwrap_or_default()));
        w.write_record(&row)?;
    }
    let bytes = w.into_inner().map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay from after this event id (as `Last-Event-ID` does).
    after: Option<i64>,
}

/// Typed, replayable events (`status`, `metrics`, `ranks`, `eval`, `checkpoint`, `log`):
/// each SSE event's id is its position in the run's log, so a client that reconnects
/// with `Last-Event-ID` (or `?after=`) gets exactly what it missed. The stream ends
/// after the run's terminal status event.
#[utoipa::path(get, path = "/runs/{id}/events", tag = "runs", params(("id" = String, Path), EventsQuery),
    responses((status = 200, description = "Server-sent events: status, metrics, ranks, eval, checkpoint, log (with ids); progress (without an id) whenever the worker's report changes", content_type = "text/event-stream", body = String),
              (status = 404, body = ErrorBody)))]
pub async fn events(
    State(st): State<AppState>,
    Auth(team): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let run = owned_run(&st, team.id, &id).await?;
    let header_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
    let after = header_id.or(q.after).unwrap_or(0);
    struct Cursor {
        st: AppState,
        run_id: Uuid,
        after: i64,
        buf: VecDeque<events::EventRow>,
        rx: tokio::sync::broadcast::Receiver<Uuid>,
        finished: bool,
        /// The last progress report sent (reports are state, not log: sent without an id
        /// whenever the run's report changes, so a replay never floods with them).
        progress: Option<Value>,
    }
    let cursor = Cursor { rx: st.events.subscribe(), st, run_id: run.id, after, buf: VecDeque::new(), finished: false, progress: None };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(ev) = c.buf.pop_front() {
                c.after = ev.id;
                let terminal = ev.kind == "status"
                    && ev.data.0.get("status").and_then(Value::as_str).and_then(RunStatus::parse).is_some_and(RunStatus::is_terminal);
                if terminal {
                    c.finished = true;
                }
                let sse = Event::default().id(ev.id.to_string()).event(ev.kind.clone()).data(ev.data.0.to_string());
                return Some((Ok(sse), c));
            }
            if c.finished {
                return None;
            }
            match events::since(&c.st.pool, c.run_id, c.after, 500).await {
                Ok(rows) if !rows.is_empty() => {
                    c.buf.extend(rows);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("event stream of {}: {e}", c.run_id);
                }
            }
            if let Ok(Some(p)) = runs::progress(&c.st.pool, c.run_id).await {
                if c.progress.as_ref() != Some(&p) {
                    let sse = Event::default().event("progress").data(p.to_string());
                    c.progress = Some(p);
                    return Some((Ok(sse), c));
                }
            }
            // Wait for a notification about this run, or poll again after a while.
            let wait = async {
                loop {
                    match c.rx.recv().await {
                        Ok(id) if id == c.run_id => break,
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            break;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
