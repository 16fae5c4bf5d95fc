//! The runs list, the launch form, the run page (progress, estimate, results, generated
//! answers, rank map, events) and cancelling from it. Every query is scoped to the session's team.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::Form;
use chrono::Utc;
use rankfit_domain::artifact::ArtifactKind;
use rankfit_domain::catalog::BASE_MODELS;
use rankfit_domain::estimate::{Basis, Estimate};
use rankfit_domain::prediction::Output;
use rankfit_domain::progress::Progress;
use rankfit_domain::run::{Method, RunStatus, TrainingConfig};
use rankfit_domain::summary::RunSummary;
use rankfit_domain::task::TaskFamily;
use rankfit_store::runs::{self, RunFilter, RunRow};
use rankfit_store::{artifacts, datasets, StoreError};
use serde::Deserialize;
use uuid::Uuid;

use super::session::CsrfForm;
use super::{render, Nav, PageError, PageResult, WebSession};
use crate::AppState;

use super::shared::*;

// ---------------------------------------------------------------- view models

pub struct RunView {
    pub id: String,
    pub label: String,
    pub method: String,
    pub model: String,
    pub budget: i32,
    pub status: String,
    pub dataset: String,
    pub dataset_id: String,
    pub created: String,
    pub wall: String,
    pub error: String,
    /// The worker's latest report, while the run is running.
    pub progress: Option<ProgressView>,
    /// `~12 min 30 s ± 20%` as estimated when it was queued, or empty.
    pub estimate: String,
}

pub struct ProgressView {
    pub step: u64,
    pub total: u64,
    pub percent: String,
    pub line: String,
}

pub(super) fn progress_view(r: &RunRow) -> Option<ProgressView> {
    if r.status != "running" {
        return None;
    }
    let p: Progress = serde_json::from_value(r.progress.as_ref()?.0.clone()).ok()?;
    Some(ProgressView { step: p.step, total: p.total_steps, percent: format!("{:.0}", 100.0 * p.fraction()), line: p.line() })
}

/// The run's stored estimate, if it has one.
pub(super) fn stored_estimate(r: &RunRow) -> Option<Estimate> {
    serde_json::from_value(r.estimate.as_ref()?.0.clone()).ok()
}

pub(super) fn estimate_text(e: &Estimate) -> String {
    format!("~{} ± {:.0}%", fmt_duration(e.total_seconds), 100.0 * e.error_band)
}

pub(super) fn wall_seconds(r: &RunRow) -> Option<f64> {
    if let Some(w) = RunSummary::from_value(&r.summary.0).wall_seconds {
        return Some(w);
    }
    let start = r.started_at?;
    let end = r.finished_at.unwrap_or_else(Utc::now);
    Some((end - start).num_milliseconds() as f64 / 1000.0)
}

pub(super) fn run_view(r: &RunRow, dataset_names: &HashMap<Uuid, String>) -> RunView {
    let short_id = short(&r.id);
    RunView {
        id: r.id.to_string(),
        label: if r.name.is_empty() { format!("{} · {}", method_name(&r.method), short_id) } else { r.name.clone() },
        method: method_name(&r.method),
        model: r.base_model_id.clone(),
        budget: r.budget,
        status: r.status.clone(),
        dataset: dataset_names.get(&r.dataset_id).cloned().unwrap_or_else(|| short(&r.dataset_id)),
        dataset_id: r.dataset_id.to_string(),
        created: fmt_time(&r.created_at),
        wall: wall_seconds(r).map(fmt_duration).unwrap_or_else(|| "–".into()),
        error: r.error.clone().unwrap_or_default(),
        progress: progress_view(r),
        estimate: stored_estimate(r).map(|e| estimate_text(&e)).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------- runs

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    title: String,
    nav: Nav,
    runs: Vec<RunView>,
    statuses: Vec<SelectOpt>,
    methods: Vec<SelectOpt>,
    filtered: bool,
}

#[derive(Deserialize)]
pub struct RunsQuery {
    status: Option<String>,
    method: Option<String>,
}

pub async fn runs(State(st): State<AppState>, s: WebSession, Query(q): Query<RunsQuery>) -> PageResult {
    let status = opt(&q.status)
        .map(|v| RunStatus::parse(v).ok_or_else(|| PageError::bad_request(format!("Unknown run status {v:?}."))))
        .transpose()?;
    let method =
        opt(&q.method).map(|v| Method::parse(v).ok_or_else(|| PageError::bad_request(format!("Unknown method {v:?}.")))).transpose()?;
    let (_, names) = dataset_names(&st, s.team.id).await?;
    let filter = RunFilter { status, method: method.map(|m| m.as_str().to_string()), limit: 200, ..Default::default() };
    let rows = runs::list(&st.pool, s.team.id, &filter).await?;
    Ok(render(RunsPage {
        title: "Runs".into(),
        nav: Nav::signed_in(&s, "runs"),
        runs: rows.iter().map(|r| run_view(r, &names)).collect(),
        statuses: options(all_statuses().into_iter().map(|s| (s, s)), status.map(|s| s.as_str()).unwrap_or("")),
        methods: method_options(method.map(|m| m.as_str()).unwrap_or("")),
        filtered: status.is_some() || method.is_some(),
    }))
}

pub struct ModelOption {
    pub id: String,
    pub name: String,
    pub families: String,
    pub targets: String,
}

#[derive(Template)]
#[template(path = "launch.html")]
struct LaunchPage {
    title: String,
    nav: Nav,
    datasets: Vec<DatasetOption>,
    models: Vec<ModelOption>,
    methods: Vec<SelectOpt>,
    t: TrainingConfig,
    max_steps: String,
}

#[derive(Deserialize)]
pub struct LaunchQuery {
    dataset_id: Option<String>,
}

pub async fn launch(State(st): State<AppState>, s: WebSession, Query(q): Query<LaunchQuery>) -> PageResult {
    let rows = datasets::list(&st.pool, s.team.id).await?;
    let chosen = opt(&q.dataset_id).and_then(|v| v.parse::<Uuid>().ok());
    let models = BASE_MODELS
        .iter()
        .map(|m| ModelOption {
            id: m.id.to_string(),
            name: m.name.to_string(),
            families: TaskFamily::ALL.iter().filter(|f| m.architecture.serves(**f)).map(|f| f.as_str()).collect::<Vec<_>>().join(" "),
            targets: m.default_targets.join(", "),
        })
        .collect();
    let t = TrainingConfig::default();
    Ok(render(LaunchPage {
        title: "Launch a run".into(),
        nav: Nav::signed_in(&s, "launch"),
        datasets: DatasetOption::list(&rows, |d| Some(d.id) == chosen),
        models,
        methods: method_options("adalora"),
        max_steps: t.max_steps.map(|v| v.to_string()).unwrap_or_default(),
        t,
    }))
}

pub struct ArtifactView {
    pub label: String,
    pub format: String,
    pub bytes: String,
    pub sha_short: String,
}

pub struct EvalView {
    pub split: String,
    pub metrics: Vec<(String, String)>,
}

/// One generated test answer next to its prompt and reference.
pub struct SampleView {
    pub index: u32,
    pub input: String,
    pub reference: String,
    pub generated: String,
    pub rouge1: String,
    pub rouge_l: String,
}

/// Generation samples shown on the run page (all of them are in the predictions download).
const SAMPLE_ROWS: usize = 50;

pub(super) fn sample_views(preds: &[rankfit_domain::prediction::Prediction]) -> Vec<SampleView> {
    let score =
        |p: &rankfit_domain::prediction::Prediction, k: &str| p.scores.get(k).map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into());
    preds
        .iter()
        .filter(|p| matches!(p.predicted, Output::Text { .. }))
        .take(SAMPLE_ROWS)
        .map(|p| SampleView {
            index: p.index,
            input: p.input.clone().unwrap_or_default(),
            reference: p.reference.as_text(),
            generated: p.predicted.as_text(),
            rouge1: score(p, "rouge1"),
            rouge_l: score(p, "rougeL"),
        })
        .collect()
}

/// What the run was estimated to cost, next to what it took.
pub(super) fn estimate_rows(e: &Estimate, r: &RunRow) -> Vec<(String, String)> {
    let runs_text = |n: usize| if n == 1 { "1 finished run".to_string() } else { format!("the median of {n} finished runs") };
    let basis = match &e.basis {
        Basis::Measured { runs, same_method: true } => format!("{} of this model and method on {}", runs_text(*runs), e.device),
        Basis::Measured { runs, same_method: false } => format!("{} of this model on {}", runs_text(*runs), e.device),
        Basis::Reference => "the reference machine (2 vCPUs); no run of this model measured yet".into(),
    };
    let mut rows = vec![
        ("Estimated time".to_string(), estimate_text(e)),
        ("Estimated steps".to_string(), fmt_count(e.steps as i64)),
        ("Estimated peak memory".to_string(), fmt_bytes(e.peak_memory_bytes as i64)),
        ("Estimate based on".to_string(), basis),
    ];
    if let Some(actual) = RunSummary::from_value(&r.summary.0).wall_seconds {
        let off = 100.0 * (actual / e.total_seconds.max(1e-9) - 1.0);
        let verdict = if (actual - e.total_seconds).abs() <= e.error_band * e.total_seconds { "inside" } else { "outside" };
        rows.push(("Actual time".to_string(), format!("{} ({off:+.0}% vs the estimate, {verdict} its band)", fmt_duration(actual))));
    }
    rows
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    title: String,
    nav: Nav,
    r: RunView,
    terminal: bool,
    cancellable: bool,
    cancel_requested: bool,
    seed: i64,
    attempts: String,
    started: String,
    finished: String,
    config: String,
    summary: Vec<(String, String)>,
    evaluations: Vec<EvalView>,
    artifacts: Vec<ArtifactView>,
    family: String,
    estimate: Vec<(String, String)>,
    warnings: Vec<String>,
    samples: Vec<SampleView>,
    samples_total: usize,
    /// On a public dataset: can go on its public leaderboard.
    publishable: bool,
    published: bool,
}

pub(super) fn summary_rows(s: &RunSummary) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut row = |label: &str, value: Option<String>| {
        if let Some(v) = value {
            out.push((label.to_string(), v));
        }
    };
    row(
        "Trainable parameters (start / peak / end)",
        s.trainable_params.map(|t| format!("{} / {} / {}", fmt_count(t.start as i64), fmt_count(t.peak as i64), fmt_count(t.end as i64))),
    );
    row("Total steps", s.total_steps.map(|n| fmt_count(n as i64)));
    row("Best step", s.best_step.map(|n| n.to_string()));
    row("Training examples", s.train_examples.map(|n| fmt_count(n as i64)));
    row("Rank budget (total)", s.rank_budget.map(|n| n.to_string()));
    row("Examples per second", s.examples_per_second.map(fmt_metric));
    row("Device", s.device.clone());
    for (key, label) in [
        ("rouge_stemmer", "ROUGE stemmer"),
        ("max_new_tokens", "Longest generated answer (tokens)"),
        ("generated_validation_examples", "Generated validation answers"),
        ("generated_test_examples", "Generated test answers"),
    ] {
        row(label, s.facts.get(key).filter(|v| !v.is_null()).map(value_text));
    }
    row("Training time", s.train_seconds.map(fmt_duration));
    row("Wall time", s.wall_seconds.map(fmt_duration));
    row("Adapter file size", s.adapter_file_bytes.map(|b| fmt_bytes(b as i64)));
    row("Peak memory", s.peak_memory_bytes.map(|b| fmt_bytes(b as i64)));
    out
}

pub async fn run(State(st): State<AppState>, s: WebSession, Path(id): Path<String>) -> PageResult {
    let id = parse_uuid(&id, "run")?;
    let r = runs::get(&st.pool, s.team.id, id).await.map_err(found("run"))?;
    let d = datasets::get(&st.pool, s.team.id, r.dataset_id).await.ok();
    let names: HashMap<Uuid, String> = d.iter().map(|d| (d.id, d.name.clone())).collect();
    let status = r.status().map_err(PageError::from)?;
    let evaluations = runs::evaluations(&st.pool, r.id)
        .await?
        .into_iter()
        .map(|e| EvalView {
            split: e.split,
            metrics: e.metrics.0.as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), value_text(v))).collect()).unwrap_or_default(),
        })
        .collect();
    let artifacts = artifacts::list(&st.pool, r.id)
        .await?
        .into_iter()
        .filter_map(|a| {
            let kind = ArtifactKind::parse(&a.kind)?;
            Some(ArtifactView {
                label: kind.label().into(),
                format: kind.format()?.into(),
                bytes: fmt_bytes(a.bytes),
                sha_short: a.sha256.chars().take(12).collect(),
            })
        })
        .collect();
    let view = run_view(&r, &names);
    let generative = d.as_ref().and_then(|d| TaskFamily::parse(&d.task_family)).is_some_and(|f| !f.is_encoder_task());
    let preds = if generative && status == RunStatus::Succeeded {
        rankfit_store::studies::predictions(&st.pool, r.id, "test").await?
    } else {
        Vec::new()
    };
    let est = stored_estimate(&r);
    Ok(render(RunPage {
        estimate: est.as_ref().map(|e| estimate_rows(e, &r)).unwrap_or_default(),
        warnings: if status == RunStatus::Queued { est.map(|e| e.warnings).unwrap_or_default() } else { Vec::new() },
        samples: sample_views(&preds),
        samples_total: preds.len(),
        title: format!("Run {}", view.label),
        nav: Nav::signed_in(&s, "runs"),
        terminal: status.is_terminal(),
        cancellable: matches!(status, RunStatus::Queued | RunStatus::Running) && !r.cancel_requested,
        cancel_requested: r.cancel_requested && !status.is_terminal(),
        seed: r.seed,
        attempts: format!("{} of {}", r.attempts, r.max_attempts),
        started: r.started_at.as_ref().map(fmt_time).unwrap_or_else(|| "–".into()),
        finished: r.finished_at.as_ref().map(fmt_time).unwrap_or_else(|| "–".into()),
        config: serde_json::to_string_pretty(&r.config.0).unwrap_or_default(),
        summary: summary_rows(&RunSummary::from_value(&r.summary.0)),
        evaluations,
        artifacts,
        publishable: d.as_ref().is_some_and(|d| d.is_public()),
        published: r.published_at.is_some(),
        family: d.map(|d| d.task_family).unwrap_or_default(),
        r: view,
    }))
}

pub async fn cancel(State(st): State<AppState>, s: WebSession, Path(id): Path<String>, Form(f): Form<CsrfForm>) -> PageResult {
    s.check_csrf(&f.csrf)?;
    let id = parse_uuid(&id, "run")?;
    match runs::cancel(&st.pool, s.team.id, id).await {
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(Redirect::to(&format!("/runs/{id}")).into_response()),
        Err(e) => Err(found("run")(e)),
    }
}
