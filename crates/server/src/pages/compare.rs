//! Side-by-side comparison of runs.

use askama::Template;
use axum::extract::{RawQuery, State};
use rankfit_domain::summary::RunSummary;
use rankfit_store::runs::{self, RunFilter};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{render, Nav, PageError, PageResult, WebSession};
use crate::AppState;

use super::runs::*;
use super::shared::*;

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
pub(super) fn compare_ids(raw: Option<&str>) -> Result<Vec<Uuid>, PageError> {
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
        let sm = RunSummary::from_value(&r.summary.0);
        let dash = || "–".to_string();
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
            sm.trainable_params
                .map(|t| format!("{} / {} / {}", fmt_count(t.start as i64), fmt_count(t.peak as i64), fmt_count(t.end as i64)))
                .unwrap_or_else(|| "– / – / –".into()),
            total_rank.map(fmt_count).unwrap_or_else(|| "–".into()),
            sm.adapter_file_bytes.map(|b| fmt_bytes(b as i64)).unwrap_or_else(dash),
            sm.train_seconds.map(fmt_duration).unwrap_or_else(dash),
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
