//! The fleet (admin teams only): every worker with its state and current run, and the
//! queue in claim order with each run's expected start and finish.

use axum::extract::State;
use axum::Json;
use rankfit_domain::fleet::{queue_etas, QueueEta, WorkerState};
use rankfit_store::workers::{self, QueuedRun, WorkerRow};
use rankfit_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Admin;
use crate::error::ErrorBody;
use crate::{ApiResult, AppState};

/// Workers heard from within this many hours are listed.
const LIST_HOURS: i64 = 24;
/// Queued runs shown with positions and ETAs.
const QUEUE_LIMIT: i64 = 500;
/// A queued run without an estimate, when no run has finished yet: 10 minutes.
const DEFAULT_RUN_SECONDS: f64 = 600.0;

#[derive(Serialize, ToSchema)]
pub struct WorkerView {
    pub state: WorkerState,
    #[serde(flatten)]
    pub worker: WorkerRow,
}

#[derive(Serialize, ToSchema)]
pub struct WorkerList {
    pub workers: Vec<WorkerView>,
    /// Alive workers by device.
    pub alive_by_device: std::collections::BTreeMap<String, usize>,
}

#[derive(Serialize, ToSchema)]
pub struct QueueEntry {
    /// 1 = claimed next.
    pub position: usize,
    #[serde(flatten)]
    pub run: QueuedRun,
    /// Expected start and finish from now, given the alive workers, the running runs'
    /// remaining time and the estimates of the runs ahead; null with no alive worker.
    pub eta: Option<QueueEta>,
}

#[derive(Serialize, ToSchema)]
pub struct QueueView {
    pub alive_workers: usize,
    pub running: usize,
    /// Seconds assumed for a queued run without an estimate (median of recent runs).
    pub fallback_run_seconds: f64,
    pub queue: Vec<QueueEntry>,
}

pub(crate) async fn worker_list(st: &AppState) -> Result<WorkerList, StoreError> {
    let rows = workers::list(&st.pool, LIST_HOURS).await?;
    let workers: Vec<WorkerView> = rows
        .into_iter()
        .map(|w| WorkerView { state: WorkerState::of(w.silent_seconds, w.lease_secs as f64, w.stopped_at.is_some()), worker: w })
        .collect();
    let mut alive_by_device = std::collections::BTreeMap::new();
    for w in workers.iter().filter(|w| w.state == WorkerState::Alive) {
        *alive_by_device.entry(w.worker.device.clone()).or_insert(0) += 1;
    }
    Ok(WorkerList { workers, alive_by_device })
}

pub(crate) async fn queue_view(st: &AppState, list: &WorkerList) -> Result<QueueView, StoreError> {
    let queued = workers::queue(&st.pool, QUEUE_LIMIT).await?;
    let alive: Vec<&WorkerView> = list.workers.iter().filter(|w| w.state == WorkerState::Alive).collect();
    // Remaining time of the runs the alive workers are on, from their progress reports.
    let running_left: Vec<f64> = alive
        .iter()
        .filter(|w| w.worker.current_run_id.is_some())
        .map(|w| w.worker.progress().and_then(|p| p.eta_seconds).unwrap_or(0.0))
        .collect();
    let fallback = workers::recent_run_seconds(&st.pool).await?.unwrap_or(DEFAULT_RUN_SECONDS);
    let plan: Vec<(Option<f64>, f64)> = queued.iter().map(|q| (q.estimated_seconds, q.wait_seconds)).collect();
    let etas = queue_etas(alive.len(), &running_left, &plan, fallback);
    Ok(QueueView {
        alive_workers: alive.len(),
        running: running_left.len(),
        fallback_run_seconds: fallback,
        queue: queued.into_iter().zip(etas).enumerate().map(|(i, (run, eta))| QueueEntry { position: i + 1, run, eta }).collect(),
    })
}

/// Every worker heard from in the last day: alive (heard from within its lease), stale
/// (silent longer: its run's lease expires and the run is requeued) or gone (exited, or
/// silent for 15 minutes); its current run, that run's lease expiry and progress, and its
/// counters (admin teams only).
#[utoipa::path(get, path = "/workers", tag = "fleet", responses((status = 200, body = WorkerList), (status = 403, body = ErrorBody)))]
pub async fn list(State(st): State<AppState>, Admin(_): Admin) -> ApiResult<Json<WorkerList>> {
    Ok(Json(worker_list(&st).await?))
}

/// Queued runs of every team in claim order (priority, then age), with their position and
/// expected start and finish (admin teams only).
#[utoipa::path(get, path = "/queue", tag = "fleet", responses((status = 200, body = QueueView), (status = 403, body = ErrorBody)))]
pub async fn queue(State(st): State<AppState>, Admin(_): Admin) -> ApiResult<Json<QueueView>> {
    let list = worker_list(&st).await?;
    Ok(Json(queue_view(&st, &list).await?))
}
