//! Read-only catalog endpoints: base models, task families, leaderboards.

use axum::extract::State;

use super::QueryParams;
use axum::Json;
use rankfit_domain::catalog::BASE_MODELS;
use rankfit_domain::dataset::DataFormat;
use rankfit_domain::run::Method;
use rankfit_domain::task::TaskFamily;
use rankfit_store::runs::{self, LeaderboardQuery};
use rankfit_store::{datasets, models, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::Auth;
use crate::{ApiResult, AppError, AppState};

pub async fn models(State(st): State<AppState>, Auth(_): Auth) -> ApiResult<Json<Value>> {
    let rows = models::list(&st.pool).await?;
    let models: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let cat = BASE_MODELS.iter().find(|m| m.id == r.id);
            let families: Vec<&str> =
                TaskFamily::ALL.iter().filter(|f| cat.is_some_and(|m| m.architecture.serves(**f))).map(|f| f.as_str()).collect();
            json!({
                "id": r.id, "name": r.name, "architecture": r.architecture, "source": r.source, "sha256": r.sha256,
                "task_families": families,
                "default_target_modules": cat.map(|m| m.default_targets).unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(json!({ "models": models })))
}

pub async fn tasks(Auth(_): Auth) -> Json<Value> {
    let families: Vec<Value> = TaskFamily::ALL
        .iter()
        .map(|f| json!({ "family": f.as_str(), "metrics": f.metrics(), "primary_metric": f.primary_metric() }))
        .collect();
    let methods: Vec<Value> = Method::ALL.iter().map(|m| json!({ "id": m.as_str(), "name": m.display_name() })).collect();
    let formats: Vec<&str> = DataFormat::ALL.iter().map(|f| f.as_str()).collect();
    Json(json!({
        "task_families": families,
        "methods": methods,
        "upload_formats": formats,
        "glue_tasks": ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"],
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardParams {
    dataset_id: Uuid,
    budget: Option<i32>,
    split: Option<String>,
    metric: Option<String>,
    method: Option<String>,
    base_model: Option<String>,
}

/// Best run per (method, base model, budget) on a dataset, ranked by the family's
/// primary metric (or `metric`) on the test split (or `split`); ascending for losses.
pub async fn leaderboard(
    State(st): State<AppState>,
    Auth(team): Auth,
    QueryParams(p): QueryParams<LeaderboardParams>,
) -> ApiResult<Json<Value>> {
    let dataset = datasets::get(&st.pool, team.id, p.dataset_id).await.map_err(|e| match e {
        StoreError::NotFound => AppError::not_found("dataset"),
        other => other.into(),
    })?;
    let family = TaskFamily::parse(&dataset.task_family).ok_or_else(|| AppError::internal("unknown task family"))?;
    let metric = p.metric.unwrap_or_else(|| family.primary_metric().to_string());
    if !family.metrics().contains(&metric.as_str()) {
        return Err(AppError::unprocessable(
            "invalid_field",
            format!("metric: {metric:?} is not reported for {family} tasks; use one of {:?}", family.metrics()),
        ));
    }
    let split = p.split.unwrap_or_else(|| "test".into());
    if !["train", "validation", "test"].contains(&split.as_str()) {
        return Err(AppError::unprocessable("invalid_field", "split: use train, validation or test"));
    }
    let q = LeaderboardQuery {
        dataset_id: dataset.id,
        split: split.clone(),
        metric: metric.clone(),
        budget: p.budget,
        method: p.method,
        base_model_id: p.base_model,
    };
    let entries = runs::leaderboard(&st.pool, team.id, &q).await?;
    Ok(Json(json!({
        "dataset": { "id": dataset.id, "name": dataset.name, "task_family": dataset.task_family },
        "metric": metric, "higher_is_better": rankfit_domain::task::higher_is_better(&metric),
        "split": split, "metrics": family.metrics(), "entries": entries,
    })))
}
