//! Formatting and small lookups shared by the signed-in pages.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rankfit_domain::catalog::BASE_MODELS;
use rankfit_domain::run::{Method, RunStatus};
use rankfit_store::datasets::DatasetRow;
use rankfit_store::{datasets, StoreError};
use serde_json::Value;
use uuid::Uuid;

use super::PageError;
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

pub(super) fn fmt_bytes(b: i64) -> String {
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

pub(super) fn fmt_metric(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

pub(super) fn value_text(v: &Value) -> String {
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

pub(super) fn method_name(id: &str) -> String {
    Method::parse(id).map(|m| m.display_name().to_string()).unwrap_or_else(|| id.to_string())
}

pub(super) fn model_name(id: &str) -> String {
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

pub(super) fn found(what: &'static str) -> impl Fn(StoreError) -> PageError {
    move |e| match e {
        StoreError::NotFound => PageError::not_found(what),
        other => other.into(),
    }
}

/// A JSON value for a `data-` attribute (askama escapes it for HTML).
pub(super) fn to_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

pub(super) async fn dataset_names(st: &AppState, team_id: Uuid) -> Result<(Vec<DatasetRow>, HashMap<Uuid, String>), PageError> {
    let rows = datasets::list(&st.pool, team_id).await?;
    let names = rows.iter().map(|d| (d.id, d.name.clone())).collect();
    Ok((rows, names))
}

pub(super) fn all_statuses() -> Vec<&'static str> {
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
