//! Estimates before launch: the fleet's measured throughput (finished runs' summaries) fed
//! to [`rankfit_domain::estimate`]. Used by `POST /runs?dry_run=true`, `POST
//! /studies?dry_run=true`, and stored with every queued run for estimate-vs-actual.

use rankfit_domain::catalog;
use rankfit_domain::estimate::{self, Accuracy, DatasetShape, Estimate, FinishedRun, Observation};
use rankfit_domain::run::{Method, RunConfig};
use rankfit_store::datasets::DatasetRow;
use rankfit_store::runs::{self, NewRun};

use crate::{ApiResult, AppError, AppState};

/// Finished runs looked at: recent enough to describe today's workers.
const RECENT_RUNS: i64 = 500;

/// What the fleet has measured, loaded once per request.
pub(crate) struct Fleet {
    /// Newest first.
    observations: Vec<Observation>,
    accuracy: Option<Accuracy>,
}

impl Fleet {
    pub async fn load(st: &AppState) -> ApiResult<Self> {
        let runs: Vec<FinishedRun> = runs::recent_costs(&st.pool, RECENT_RUNS).await?.iter().filter_map(|r| r.finished_run()).collect();
        let observations = runs.iter().filter_map(|r| r.observation.clone()).collect();
        let pairs: Vec<(Estimate, f64)> = runs.iter().filter_map(|r| Some((r.estimate.clone()?, r.actual_seconds?))).collect();
        Ok(Self { observations, accuracy: estimate::accuracy(&pairs) })
    }

    /// The estimate of a validated run on `dataset`.
    pub fn estimate(&self, dataset: &DatasetRow, run: &NewRun) -> ApiResult<Estimate> {
        let model = catalog::base_model(&run.base_model_id).ok_or_else(|| AppError::internal("validated run has an unknown model"))?;
        let method = Method::parse(&run.method).ok_or_else(|| AppError::internal("validated run has an unknown method"))?;
        let config: RunConfig = serde_json::from_value(run.config.clone()).map_err(AppError::internal)?;
        let shape = DatasetShape::from_report(dataset.id, &dataset.task_family, &dataset.report.0);
        let device = estimate::expected_device(&self.observations);
        Ok(estimate::estimate(model, method, run.budget.max(1) as u32, &config, &shape, &self.observations, device))
    }

    /// How close the estimates of recent finished runs came (None before any).
    pub fn accuracy(&self) -> Option<&Accuracy> {
        self.accuracy.as_ref()
    }
}

/// `?dry_run=true` of the create endpoints.
#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CreateQuery {
    /// true: validate and return the estimate (steps, time, peak memory, basis, error band), creating nothing.
    #[serde(default)]
    pub dry_run: bool,
}
