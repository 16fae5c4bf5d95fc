//! Estimates before launch: the fleet's measured throughput (finished runs' summaries) fed
//! to [`rankfit_domain::estimate`]. Used by `POST /runs?dry_run=true`, `POST
//! /studies?dry_run=true`, and stored with every queued run for estimate-vs-actual.

use rankfit_domain::catalog;
use rankfit_domain::estimate::{self, Accuracy, DatasetShape, Estimate, Observation};
use rankfit_domain::run::{Method, RunConfig};
use rankfit_domain::task::TaskFamily;
use rankfit_store::datasets::DatasetRow;
use rankfit_store::runs::{self, NewRun};
use serde_json::Value;

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
        let rows = runs::recent_costs(&st.pool, RECENT_RUNS).await?;
        let mut observations = Vec::with_capacity(rows.len());
        let mut pairs = Vec::new();
        for r in &rows {
            let (Some(model), Some(method)) = (catalog::base_model(&r.base_model_id), Method::parse(&r.method)) else { continue };
            let Ok(config) = serde_json::from_value::<RunConfig>(r.config.0.clone()) else { continue };
            if let Some(o) = Observation::from_summary(model, method, r.dataset_id, &config, &r.summary.0) {
                observations.push(o);
            }
            let estimated = r.estimate.as_ref().and_then(|e| serde_json::from_value::<Estimate>(e.0.clone()).ok());
            if let (Some(e), Some(actual)) = (estimated, r.summary.0.get("wall_seconds").and_then(Value::as_f64)) {
                pairs.push((e, actual));
            }
        }
        Ok(Self { observations, accuracy: estimate::accuracy(&pairs) })
    }

    /// The estimate of a validated run on `dataset`.
    pub fn estimate(&self, dataset: &DatasetRow, run: &NewRun) -> ApiResult<Estimate> {
        let model = catalog::base_model(&run.base_model_id).ok_or_else(|| AppError::internal("validated run has an unknown model"))?;
        let method = Method::parse(&run.method).ok_or_else(|| AppError::internal("validated run has an unknown method"))?;
        let config: RunConfig = serde_json::from_value(run.config.clone()).map_err(AppError::internal)?;
        let report = &dataset.report.0;
        fn map<T: serde::de::DeserializeOwned + Default>(report: &Value, k: &str) -> T {
            report.get(k).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
        }
        let shape = DatasetShape {
            id: dataset.id,
            task_family: TaskFamily::parse(&dataset.task_family),
            rows_per_split: map(report, "rows_per_split"),
            text_bytes_per_split: map(report, "text_bytes_per_split"),
        };
        let device = estimate::expected_device(&self.observations);
        Ok(estimate::estimate(model, method, &config, &shape, &self.observations, device))
    }

    /// How close the estimates of recent finished runs came (None before any).
    pub fn accuracy(&self) -> Option<&Accuracy> {
        self.accuracy.as_ref()
    }
}

/// `?dry_run=true` of the create endpoints.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    #[serde(default)]
    pub dry_run: bool,
}
