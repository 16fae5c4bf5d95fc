//! The dashboard: recent runs and datasets.

use askama::Template;
use axum::extract::State;
use rankfit_store::runs::{self, RunFilter};
use rankfit_store::sessions;

use super::{render, Nav, PageResult, WebSession};
use crate::AppState;

use super::datasets::*;
use super::runs::*;
use super::shared::*;

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
