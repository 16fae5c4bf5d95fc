//! Read-only catalog endpoints: base models, task families, leaderboards (cells with intervals).

use axum::extract::State;

use super::QueryParams;
use axum::Json;
use rankfit_domain::catalog::BASE_MODELS;
use rankfit_domain::dataset::DataFormat;
use rankfit_domain::run::Method;
use rankfit_domain::task::TaskFamily;
use rankfit_store::{datasets, models, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::runs::field_error;
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
    study_id: Option<Uuid>,
    budget: Option<u32>,
    method: Option<String>,
    base_model: Option<String>,
}

/// Every (method, base model, budget) cell of the team's succeeded runs on a dataset (or
/// of one study on it), aggregated over seeds: n, mean, sample std and 95% interval of
/// every metric, the paired difference against LoRA at the same budget, and rank groups
/// (methods whose intervals overlap the leader's share its rank). Scores are test scores
/// of each run's best-validation checkpoint; no run is picked by its test score.
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
    let method =
        p.method.as_deref().map(|m| Method::parse(m).ok_or_else(|| field_error("method", format!("unknown method {m:?}")))).transpose()?;
    let cells: Vec<_> = super::studies::cells(&st, team.id, p.study_id, Some(dataset.id))
        .await?
        .into_iter()
        .filter(|c| p.budget.is_none_or(|b| c.budget == b))
        .filter(|c| method.is_none_or(|m| c.method == m))
        .filter(|c| p.base_model.as_deref().is_none_or(|m| c.model == m))
        .collect();
    let primary = dataset.primary_metric.as_str();
    Ok(Json(json!({
        "dataset": { "id": dataset.id, "name": dataset.name, "task_family": dataset.task_family },
        "metric": primary, "higher_is_better": rankfit_domain::task::higher_is_better(primary),
        "split": "test", "selection": "best validation checkpoint of every run; seeds are replicates",
        "metrics": family.metrics(), "cells": cells,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicParams {
    dataset_id: Option<Uuid>,
}

/// The public leaderboards. Without `dataset_id`: every public dataset with its number of
/// published runs and teams. With it: that dataset's cells over every team's published
/// runs (published directly or through a public study), one cell per team × method ×
/// model × budget with the team's name, aggregated over seeds with intervals; differences
/// against LoRA pair a team's runs with the same team's LoRA runs, rank groups span teams.
pub async fn public_leaderboard(
    State(st): State<AppState>,
    Auth(_team): Auth,
    QueryParams(p): QueryParams<PublicParams>,
) -> ApiResult<Json<Value>> {
    let Some(dataset_id) = p.dataset_id else {
        return Ok(Json(json!({ "boards": rankfit_store::studies::public_boards(&st.pool).await? })));
    };
    let dataset = datasets::get_any(&st.pool, dataset_id)
        .await
        .ok()
        .filter(|d| d.is_public())
        .ok_or_else(|| AppError::not_found("public dataset"))?;
    let family = TaskFamily::parse(&dataset.task_family).ok_or_else(|| AppError::internal("unknown task family"))?;
    let rows = rankfit_store::studies::public_results(&st.pool, dataset.id).await?;
    let cells = super::studies::cells_of(&st, rows).await?;
    let primary = dataset.primary_metric.as_str();
    Ok(Json(json!({
        "dataset": { "id": dataset.id, "name": dataset.name, "task_family": dataset.task_family, "benchmark": dataset.benchmark },
        "metric": primary, "higher_is_better": rankfit_domain::task::higher_is_better(primary),
        "split": "test", "selection": "best validation checkpoint of every published run; seeds are replicates; cells are per team",
        "metrics": family.metrics(), "cells": cells,
    })))
}
