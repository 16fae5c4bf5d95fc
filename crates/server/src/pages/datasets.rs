//! The datasets list with its upload form, and a dataset's validation report.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use rankfit_domain::dataset::DataFormat;
use rankfit_domain::task::TaskFamily;
use rankfit_store::datasets;
use rankfit_store::datasets::DatasetRow;
use rankfit_store::runs::{self, RunFilter};
use serde_json::Value;

use super::{render, Nav, PageResult, WebSession};
use crate::AppState;

use super::runs::{run_view, RunView};
use super::shared::*;

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
    /// A public benchmark dataset (read-only, shared by every team).
    pub public: bool,
    /// The metric its leaderboards rank by.
    pub metric: String,
}

pub(super) fn split_counts(splits: &Value) -> Vec<(String, String)> {
    ["train", "validation", "test"]
        .iter()
        .filter_map(|s| splits.get(*s).and_then(Value::as_i64).map(|n| (s.to_string(), fmt_count(n))))
        .collect()
}

pub(super) fn dataset_view(d: &DatasetRow) -> DatasetView {
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
        public: d.is_public(),
        metric: d.primary_metric.clone(),
    }
}

// ---------------------------------------------------------------- datasets

#[derive(Template)]
#[template(path = "datasets.html")]
struct DatasetsPage {
    title: String,
    nav: Nav,
    datasets: Vec<DatasetView>,
    public: Vec<DatasetView>,
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
        datasets: rows.iter().filter(|d| !d.is_public()).map(dataset_view).collect(),
        public: rows.iter().filter(|d| d.is_public()).map(dataset_view).collect(),
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

pub(super) fn target_text(t: &Value) -> String {
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
