//! Read-only catalog endpoints: base models, task families, leaderboards (cells with
//! intervals) and the public leaderboards of public datasets.

use axum::extract::{Path, State};
use axum::Json;
use rankfit_domain::catalog::BASE_MODELS;
use rankfit_domain::comparison::Cell;
use rankfit_domain::dataset::{DataFormat, GlueTask};
use rankfit_domain::run::Method;
use rankfit_domain::task::{higher_is_better, TaskFamily};
use rankfit_store::datasets::DatasetRow;
use rankfit_store::studies::PublicBoard;
use rankfit_store::{datasets, models, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::runs::field_error;
use super::QueryParams;
use crate::auth::Auth;
use crate::error::ErrorBody;
use crate::{ApiResult, AppError, AppState};

#[derive(Serialize, ToSchema)]
pub struct ModelInfo {
    pub id: String,
    pub name: String,
    /// bert or llama.
    pub architecture: String,
    /// The registry package the weights come from.
    pub source: String,
    pub sha256: Option<String>,
    pub task_families: Vec<TaskFamily>,
    pub default_target_modules: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelInfo>,
}

/// Base models with the task families they serve.
#[utoipa::path(get, path = "/models", tag = "catalog", responses((status = 200, body = ModelList)))]
pub async fn models(State(st): State<AppState>, Auth(_): Auth) -> ApiResult<Json<ModelList>> {
    let rows = models::list(&st.pool).await?;
    let models = rows
        .into_iter()
        .map(|r| {
            let cat = BASE_MODELS.iter().find(|m| m.id == r.id);
            ModelInfo {
                task_families: TaskFamily::ALL.into_iter().filter(|f| cat.is_some_and(|m| m.architecture.serves(*f))).collect(),
                default_target_modules: cat.map(|m| m.default_targets.iter().map(|t| t.to_string()).collect()).unwrap_or_default(),
                id: r.id,
                name: r.name,
                architecture: r.architecture,
                source: r.source,
                sha256: r.sha256,
            }
        })
        .collect();
    Ok(Json(ModelList { models }))
}

#[derive(Serialize, ToSchema)]
pub struct FamilyInfo {
    pub family: TaskFamily,
    pub metrics: Vec<String>,
    pub primary_metric: String,
}

#[derive(Serialize, ToSchema)]
pub struct MethodInfo {
    pub id: Method,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct TaskCatalog {
    pub task_families: Vec<FamilyInfo>,
    pub methods: Vec<MethodInfo>,
    pub upload_formats: Vec<String>,
    pub glue_tasks: Vec<String>,
}

/// Task families with their metrics, the methods, the upload formats and GLUE tasks.
#[utoipa::path(get, path = "/tasks", tag = "catalog", responses((status = 200, body = TaskCatalog)))]
pub async fn tasks(Auth(_): Auth) -> Json<TaskCatalog> {
    Json(TaskCatalog {
        task_families: TaskFamily::ALL
            .into_iter()
            .map(|f| FamilyInfo {
                family: f,
                metrics: f.metrics().iter().map(|m| m.to_string()).collect(),
                primary_metric: f.primary_metric().into(),
            })
            .collect(),
        methods: Method::ALL.into_iter().map(|m| MethodInfo { id: m, name: m.display_name().into() }).collect(),
        upload_formats: DataFormat::ALL.iter().map(|f| f.as_str().to_string()).collect(),
        glue_tasks: GlueTask::ALL.iter().map(|t| t.as_str().to_string()).collect(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct DatasetRef {
    pub id: Uuid,
    pub name: String,
    pub task_family: String,
    pub benchmark: Option<String>,
}

/// Cells of a dataset aggregated over seeds.
#[derive(Serialize, ToSchema)]
pub struct Leaderboard {
    pub dataset: DatasetRef,
    /// The dataset's ranking metric.
    pub metric: String,
    pub higher_is_better: bool,
    /// Always `test`: scores are test scores at each run's best-validation checkpoint.
    pub split: String,
    pub selection: String,
    /// Every metric the cells summarise.
    pub metrics: Vec<String>,
    pub cells: Vec<Cell>,
}

impl Leaderboard {
    fn new(dataset: &DatasetRow, selection: &str, cells: Vec<Cell>) -> ApiResult<Self> {
        let family = TaskFamily::parse(&dataset.task_family).ok_or_else(|| AppError::internal("unknown task family"))?;
        Ok(Leaderboard {
            dataset: DatasetRef {
                id: dataset.id,
                name: dataset.name.clone(),
                task_family: dataset.task_family.clone(),
                benchmark: dataset.benchmark.clone(),
            },
            metric: dataset.primary_metric.clone(),
            higher_is_better: higher_is_better(&dataset.primary_metric),
            split: "test".into(),
            selection: selection.into(),
            metrics: family.metrics().iter().map(|m| m.to_string()).collect(),
            cells,
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LeaderboardParams {
    dataset_id: Uuid,
    /// Only this study's runs.
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
#[utoipa::path(get, path = "/leaderboards", tag = "leaderboards", params(LeaderboardParams),
    responses((status = 200, body = Leaderboard), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn leaderboard(
    State(st): State<AppState>,
    Auth(team): Auth,
    QueryParams(p): QueryParams<LeaderboardParams>,
) -> ApiResult<Json<Leaderboard>> {
    let dataset = datasets::get(&st.pool, team.id, p.dataset_id).await.map_err(|e| match e {
        StoreError::NotFound => AppError::not_found("dataset"),
        other => other.into(),
    })?;
    let method =
        p.method.as_deref().map(|m| Method::parse(m).ok_or_else(|| field_error("method", format!("unknown method {m:?}")))).transpose()?;
    let cells: Vec<_> = super::studies::cells(&st, team.id, p.study_id, Some(dataset.id))
        .await?
        .into_iter()
        .filter(|c| p.budget.is_none_or(|b| c.budget == b))
        .filter(|c| method.is_none_or(|m| c.method == m))
        .filter(|c| p.base_model.as_deref().is_none_or(|m| c.model == m))
        .collect();
    Ok(Json(Leaderboard::new(&dataset, "best validation checkpoint of every run; seeds are replicates", cells)?))
}

#[derive(Serialize, ToSchema)]
pub struct PublicBoards {
    /// Every public dataset with its published runs and teams.
    pub boards: Vec<PublicBoard>,
}

/// The public leaderboards: every public dataset with its number of published runs and teams.
#[utoipa::path(get, path = "/public/leaderboards", tag = "leaderboards", responses((status = 200, body = PublicBoards)))]
pub async fn public_boards(State(st): State<AppState>, Auth(_team): Auth) -> ApiResult<Json<PublicBoards>> {
    Ok(Json(PublicBoards { boards: rankfit_store::studies::public_boards(&st.pool).await? }))
}

/// A public dataset's leaderboard: every team's published runs (published directly or
/// through a public study), one cell per team × method × model × budget with the team's
/// name, aggregated over seeds with intervals; differences against LoRA pair a team's
/// runs with the same team's LoRA runs, rank groups span teams.
#[utoipa::path(get, path = "/public/leaderboards/{dataset_id}", tag = "leaderboards", params(("dataset_id" = String, Path)),
    responses((status = 200, body = Leaderboard), (status = 404, body = ErrorBody)))]
pub async fn public_leaderboard(
    State(st): State<AppState>,
    Auth(_team): Auth,
    Path(dataset_id): Path<String>,
) -> ApiResult<Json<Leaderboard>> {
    let dataset_id = super::parse_id(&dataset_id, "dataset")?;
    let dataset = datasets::get_any(&st.pool, dataset_id)
        .await
        .ok()
        .filter(|d| d.is_public())
        .ok_or_else(|| AppError::not_found("public dataset"))?;
    let rows = rankfit_store::studies::public_results(&st.pool, dataset.id).await?;
    let cells = super::studies::cells_of(&st, rows).await?;
    Ok(Json(Leaderboard::new(
        &dataset,
        "best validation checkpoint of every published run; seeds are replicates; cells are per team",
        cells,
    )?))
}
