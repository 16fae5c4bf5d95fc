//! The signed-in pages: dashboard, datasets, runs, launch form, run detail and run
//! comparison (studies and leaderboards are in `comparisons`). Every query is scoped to the session's team.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Redirect};
use axum::Form;
use chrono::{DateTime, Utc};
use rankfit_domain::catalog::BASE_MODELS;
use rankfit_domain::dataset::DataFormat;
use rankfit_domain::estimate::{Basis, Estimate};
use rankfit_domain::prediction::Output;
use rankfit_domain::progress::Progress;
use rankfit_domain::run::{Method, RunStatus, TrainingConfig};
use rankfit_domain::task::TaskFamily;
use rankfit_store::datasets::DatasetRow;
use rankfit_store::runs::{self, RunFilter, RunRow};
use rankfit_store::{artifacts, datasets, sessions, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::session::CsrfForm;
use super::{render, Nav, PageError, PageResult, WebSession};
use crate::AppState;

// ---------------------------------------------------------------- formatting

pub(super) fn fmt_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub(super) fn fmt_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "–".into();
    }
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        format!("{} min {} s", (secs / 60.0).floor(), (secs % 60.0).floor())
    } else {
        format!("{} h {} min", (secs / 3600.0).floor(), ((secs % 3600.0) / 60.0).floor())
    }
}

fn fmt_bytes(b: i64) -> String {
    let b = b as f64;
    if b < 1024.0 {
        format!("{b} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    }
}

pub(super) fn fmt_count(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn fmt_metric(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => fmt_count(i),
            (None, Some(f)) => fmt_metric(f),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn method_name(id: &str) -> String {
    Method::parse(id).map(|m| m.display_name().to_string()).unwrap_or_else(|| id.to_string())
}

fn model_name(id: &str) -> String {
    BASE_MODELS.iter().find(|m| m.id == id).map(|m| m.name.to_string()).unwrap_or_else(|| id.to_string())
}

pub(super) fn short(id: &Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

/// Empty query values (an unselected `<select>`) mean "no filter".
pub(super) fn opt(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub(super) fn parse_uuid(raw: &str, what: &str) -> Result<Uuid, PageError> {
    raw.parse().map_err(|_| PageError::not_found(what))
}

fn found(what: &'static str) -> impl Fn(StoreError) -> PageError {
    move |e| match e {
        StoreError::NotFound => PageError::not_found(what),
        other => other.into(),
    }
}

/// A JSON value for a `data-` attribute (askama escapes it for HTML).
fn to_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

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

fn progress_view(r: &RunRow) -> Option<ProgressView> {
    if r.status != "running" {
        return None;
    }
    let p: Progress = serde_json::from_value(r.progress.as_ref()?.0.clone()).ok()?;
    Some(ProgressView { step: p.step, total: p.total_steps, percent: format!("{:.0}", 100.0 * p.fraction()), line: p.line() })
}

/// The run's stored estimate, if it has one.
fn stored_estimate(r: &RunRow) -> Option<Estimate> {
    serde_json::from_value(r.estimate.as_ref()?.0.clone()).ok()
}

fn estimate_text(e: &Estimate) -> String {
    format!("~{} ± {:.0}%", fmt_duration(e.total_seconds), 100.0 * e.error_band)
}

fn wall_seconds(r: &RunRow) -> Option<f64> {
    if let Some(w) = r.summary.0.get("wall_seconds").and_then(Value::as_f64) {
        return Some(w);
    }
    let start = r.started_at?;
    let end = r.finished_at.unwrap_or_else(Utc::now);
    Some((end - start).num_milliseconds() as f64 / 1000.0)
}

fn run_view(r: &RunRow, dataset_names: &HashMap<Uuid, String>) -> RunView {
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

pub struct DatasetView {
    pub id: String,
    pub name: String,
    pub family: String,
    pub format: String,
    pub rows: String,
    pub splits: String,
    pub bytes: String,
    pub created: String,
    pub sha_short: String,
}

fn split_counts(splits: &Value) -> Vec<(String, String)> {
    ["train", "validation", "test"]
        .iter()
        .filter_map(|s| splits.get(*s).and_then(Value::as_i64).map(|n| (s.to_string(), fmt_count(n))))
        .collect()
}

fn dataset_view(d: &DatasetRow) -> DatasetView {
    DatasetView {
        id: d.id.to_string(),
        name: d.name.clone(),
        family: d.task_family.clone(),
        format: d.format.clone(),
        rows: fmt_count(d.row_count),
        splits: split_counts(&d.splits.0).iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(" · "),
        bytes: fmt_bytes(d.bytes),
        created: fmt_time(&d.created_at),
        sha_short: d.sha256.chars().take(12).collect(),
    }
}

async fn dataset_names(st: &AppState, team_id: Uuid) -> Result<(Vec<DatasetRow>, HashMap<Uuid, String>), PageError> {
    let rows = datasets::list(&st.pool, team_id).await?;
    let names = rows.iter().map(|d| (d.id, d.name.clone())).collect();
    Ok((rows, names))
}

fn all_statuses() -> Vec<&'static str> {
    RunStatus::ALL.iter().map(|s| s.as_str()).collect()
}

/// One `<option>` of a `<select>`.
pub struct SelectOpt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub(super) fn options<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>, current: &str) -> Vec<SelectOpt> {
    items.into_iter().map(|(v, l)| SelectOpt { value: v.to_string(), label: l.to_string(), selected: v == current }).collect()
}

pub(super) fn method_options(current: &str) -> Vec<SelectOpt> {
    options(Method::ALL.iter().map(|m| (m.as_str(), m.display_name())), current)
}

// ---------------------------------------------------------------- dashboard

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    title: String,
    nav: Nav,
    counts: Vec<(String, i64)>,
    runs: Vec<RunView>,
    datasets: Vec<DatasetView>,
}

pub async fn dashboard(State(st): State<AppState>, s: WebSession) -> PageResult {
    let (ds, names) = dataset_names(&st, s.team.id).await?;
    let recent = runs::list(&st.pool, s.team.id, &RunFilter { limit: 10, ..Default::default() }).await?;
    let found = sessions::run_status_counts(&st.pool, s.team.id).await?;
    let counts =
        all_statuses().into_iter().map(|st| (st.to_string(), found.iter().find(|(k, _)| k == st).map(|(_, n)| *n).unwrap_or(0))).collect();
    Ok(render(DashboardPage {
        title: "Dashboard".into(),
        nav: Nav::signed_in(&s, "dashboard"),
        counts,
        runs: recent.iter().map(|r| run_view(r, &names)).collect(),
        datasets: ds.iter().take(8).map(dataset_view).collect(),
    }))
}

// ---------------------------------------------------------------- datasets

#[derive(Template)]
#[template(path = "datasets.html")]
struct DatasetsPage {
    title: String,
    nav: Nav,
    datasets: Vec<DatasetView>,
    formats: Vec<&'static str>,
    families: Vec<&'static str>,
    max_upload: String,
    max_upload_bytes: usize,
}

pub async fn datasets(State(st): State<AppState>, s: WebSession) -> PageResult {
    let rows = datasets::list(&st.pool, s.team.id).await?;
    Ok(render(DatasetsPage {
        title: "Datasets".into(),
        nav: Nav::signed_in(&s, "datasets"),
        datasets: rows.iter().map(dataset_view).collect(),
        formats: DataFormat::ALL.iter().map(|f| f.as_str()).collect(),
        families: TaskFamily::ALL.iter().map(|f| f.as_str()).collect(),
        max_upload: fmt_bytes(st.config.max_upload_bytes as i64),
        max_upload_bytes: st.config.max_upload_bytes,
    }))
}

pub struct LabelView {
    pub label: String,
    pub count: String,
    pub percent: String,
    pub width: String,
}

pub struct PreviewRow {
    pub split: String,
    pub text_a: String,
    pub text_b: String,
    pub target: String,
}

#[derive(Template)]
#[template(path = "dataset.html")]
struct DatasetPage {
    title: String,
    nav: Nav,
    d: DatasetView,
    splits: Vec<(String, String)>,
    labels: Vec<LabelView>,
    preview: Vec<PreviewRow>,
    warnings: Vec<(String, String)>,
    options: Vec<(String, String)>,
    runs: Vec<RunView>,
}

fn target_text(t: &Value) -> String {
    match t {
        Value::Object(m) => m.values().next().map(value_text).unwrap_or_default(),
        other => value_text(other),
    }
}

pub async fn dataset(State(st): State<AppState>, s: WebSession, Path(id): Path<String>) -> PageResult {
    let id = parse_uuid(&id, "dataset")?;
    let d = datasets::get(&st.pool, s.team.id, id).await.map_err(found("dataset"))?;
    let report = &d.report.0;
    let dist: Vec<(String, i64)> = report
        .get("label_distribution")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0))).collect())
        .unwrap_or_default();
    let total: i64 = dist.iter().map(|(_, n)| n).sum::<i64>().max(1);
    let labels = dist
        .iter()
        .map(|(label, n)| {
            let pct = *n as f64 * 100.0 / total as f64;
            LabelView { label: label.clone(), count: fmt_count(*n), percent: format!("{pct:.1}%"), width: format!("{pct:.1}") }
        })
        .collect();
    let preview = report
        .get("preview")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|r| PreviewRow {
                    split: r.get("split").map(value_text).unwrap_or_default(),
                    text_a: r.get("text_a").map(value_text).unwrap_or_default(),
                    text_b: r.get("text_b").filter(|v| !v.is_null()).map(value_text).unwrap_or_default(),
                    target: r.get("target").map(target_text).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let warnings = report
        .get("warnings")
        .and_then(Value::as_array)
        .map(|w| {
            w.iter()
                .map(|e| (e.get("line").map(value_text).unwrap_or_default(), e.get("message").map(value_text).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let options = d
        .parse_options
        .0
        .as_object()
        .map(|m| m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), value_text(v))).collect())
        .unwrap_or_default();
    let names = HashMap::from([(d.id, d.name.clone())]);
    let runs = runs::list(&st.pool, s.team.id, &RunFilter { dataset_id: Some(d.id), limit: 100, ..Default::default() }).await?;
    Ok(render(DatasetPage {
        title: format!("Dataset {}", d.name),
        nav: Nav::signed_in(&s, "datasets"),
        splits: split_counts(&d.splits.0),
        d: dataset_view(&d),
        labels,
        preview,
        warnings,
        options,
        runs: runs.iter().map(|r| run_view(r, &names)).collect(),
    }))
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

pub struct DatasetOption {
    pub id: String,
    pub name: String,
    pub family: String,
    pub selected: bool,
}

impl DatasetOption {
    /// A `<select>`'s options for `rows`, with `selected` marking the chosen one.
    pub fn list(
        rows: &[rankfit_store::datasets::DatasetRow],
        selected: impl Fn(&rankfit_store::datasets::DatasetRow) -> bool,
    ) -> Vec<Self> {
        rows.iter()
            .map(|d| DatasetOption { id: d.id.to_string(), name: d.name.clone(), family: d.task_family.clone(), selected: selected(d) })
            .collect()
    }
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

fn sample_views(preds: &[rankfit_domain::prediction::Prediction]) -> Vec<SampleView> {
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
fn estimate_rows(e: &Estimate, r: &RunRow) -> Vec<(String, String)> {
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
    if let Some(actual) = r.summary.0.get("wall_seconds").and_then(Value::as_f64) {
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
}

fn summary_rows(summary: &Value) -> Vec<(String, String)> {
    let Some(m) = summary.as_object() else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(tp) = m.get("trainable_params").and_then(Value::as_object) {
        let g = |k: &str| tp.get(k).map(value_text).unwrap_or_else(|| "–".into());
        out.push(("Trainable parameters (start / peak / end)".to_string(), format!("{} / {} / {}", g("start"), g("peak"), g("end"))));
    }
    for (key, label) in [
        ("total_steps", "Total steps"),
        ("best_step", "Best step"),
        ("train_examples", "Training examples"),
        ("rank_budget", "Rank budget (total)"),
        ("examples_per_second", "Examples per second"),
        ("device", "Device"),
        ("rouge_stemmer", "ROUGE stemmer"),
        ("max_new_tokens", "Longest generated answer (tokens)"),
        ("generated_validation_examples", "Generated validation answers"),
        ("generated_test_examples", "Generated test answers"),
    ] {
        if let Some(v) = m.get(key).filter(|v| !v.is_null()) {
            out.push((label.to_string(), value_text(v)));
        }
    }
    for (key, label) in [("train_seconds", "Training time"), ("wall_seconds", "Wall time")] {
        if let Some(v) = m.get(key).and_then(Value::as_f64) {
            out.push((label.to_string(), fmt_duration(v)));
        }
    }
    for (key, label) in [("adapter_file_bytes", "Adapter file size"), ("peak_memory_bytes", "Peak memory")] {
        if let Some(v) = m.get(key).and_then(Value::as_i64) {
            out.push((label.to_string(), fmt_bytes(v)));
        }
    }
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
            let (label, format) = match a.kind.as_str() {
                "adapter_peft" => ("PEFT adapter (zip)", "peft"),
                "adapter_lora" => ("Plain-LoRA adapter (zip)", "lora"),
                "adapter_merged" => ("Merged weights (safetensors)", "merged"),
                _ => return None,
            };
            Some(ArtifactView {
                label: label.into(),
                format: format.into(),
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
        summary: summary_rows(&r.summary.0),
        evaluations,
        artifacts,
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

// ---------------------------------------------------------------- compare

pub struct CompareColumn {
    pub r: RunView,
    pub rows: Vec<String>,
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    title: String,
    nav: Nav,
    message: String,
    columns: Vec<CompareColumn>,
    table: Vec<(String, Vec<String>)>,
    choices: Vec<RunView>,
    series: String,
    ranks: String,
}

/// `?run=<id>&run=<id>...` (what a form of checkboxes named `run` submits), or `?runs=a,b`.
fn compare_ids(raw: Option<&str>) -> Result<Vec<Uuid>, PageError> {
    let mut ids = Vec::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "run" && k != "runs" {
            continue;
        }
        for part in v.split([',', ' ']).flat_map(|p| p.split("%2C")).filter(|p| !p.is_empty()) {
            let id: Uuid = part.parse().map_err(|_| PageError::bad_request(format!("{part:?} is not a run id.")))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

pub async fn compare(State(st): State<AppState>, s: WebSession, RawQuery(raw): RawQuery) -> PageResult {
    let ids = compare_ids(raw.as_deref())?;
    let (_, names) = dataset_names(&st, s.team.id).await?;
    let mut page = ComparePage {
        title: "Compare runs".into(),
        nav: Nav::signed_in(&s, "compare"),
        message: String::new(),
        columns: Vec::new(),
        table: Vec::new(),
        choices: Vec::new(),
        series: "[]".into(),
        ranks: "[]".into(),
    };
    if ids.len() < 2 || ids.len() > 5 {
        if !ids.is_empty() {
            page.message = format!("Pick between 2 and 5 runs to compare (you picked {}).", ids.len());
        }
        let recent = runs::list(&st.pool, s.team.id, &RunFilter { limit: 50, ..Default::default() }).await?;
        page.choices = recent.iter().map(|r| run_view(r, &names)).collect();
        return Ok(render(page));
    }
    let mut rows = Vec::new();
    for id in &ids {
        rows.push(runs::get(&st.pool, s.team.id, *id).await.map_err(found("run"))?);
    }
    let labels = [
        "Status",
        "Method",
        "Base model",
        "Budget (avg rank)",
        "Dataset",
        "Test metrics",
        "Validation metrics",
        "Trainable params (start / peak / end)",
        "Final total rank",
        "Adapter file size",
        "Training time",
        "Wall time",
    ];
    let mut series = Vec::new();
    let mut ranks = Vec::new();
    for r in &rows {
        let evals = runs::evaluations(&st.pool, r.id).await?;
        let eval_text = |split: &str| {
            evals
                .iter()
                .find(|e| e.split == split)
                .and_then(|e| e.metrics.0.as_object().map(|m| m.iter().map(|(k, v)| format!("{k} {}", value_text(v))).collect::<Vec<_>>()))
                .map(|v| v.join(" · "))
                .unwrap_or_else(|| "–".into())
        };
        let sm = &r.summary.0;
        let tp = sm.get("trainable_params");
        let tpv = |k: &str| tp.and_then(|t| t.get(k)).map(value_text).unwrap_or_else(|| "–".into());
        let snapshots = runs::rank_snapshots(&st.pool, r.id).await?;
        let latest = snapshots.last().map(|s| s.ranks.0.clone()).unwrap_or(Value::Null);
        let total_rank: Option<i64> = latest.as_object().map(|m| {
            m.values()
                .map(|v| {
                    v.as_i64()
                        .or_else(|| v.as_array().map(|a| a.iter().filter(|x| x.as_bool().unwrap_or(true)).count() as i64))
                        .unwrap_or(0)
                })
                .sum()
        });
        let view = run_view(r, &names);
        let cells = vec![
            r.status.clone(),
            view.method.clone(),
            model_name(&r.base_model_id),
            r.budget.to_string(),
            view.dataset.clone(),
            eval_text("test"),
            eval_text("validation"),
            format!("{} / {} / {}", tpv("start"), tpv("peak"), tpv("end")),
            total_rank.map(fmt_count).unwrap_or_else(|| "–".into()),
            sm.get("adapter_file_bytes").and_then(Value::as_i64).map(fmt_bytes).unwrap_or_else(|| "–".into()),
            sm.get("train_seconds").and_then(Value::as_f64).map(fmt_duration).unwrap_or_else(|| "–".into()),
            view.wall.clone(),
        ];
        series.push(json!({ "id": r.id, "label": view.label }));
        ranks.push(json!({ "id": r.id, "label": view.label, "ranks": latest }));
        page.columns.push(CompareColumn { r: view, rows: cells });
    }
    page.table = labels
        .iter()
        .enumerate()
        .map(|(i, label)| (label.to_string(), page.columns.iter().map(|c| c.rows.get(i).cloned().unwrap_or_default()).collect()))
        .collect();
    page.series = to_json(&series);
    page.ranks = to_json(&ranks);
    Ok(render(page))
}
