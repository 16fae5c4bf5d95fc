//! The comparison pages: studies (launch form, list, the study page with its live grid,
//! paper table, paired differences and plots) and the leaderboard. Every number shown
//! comes with its n and interval; nothing is picked by a test score.

use askama::Template;
use axum::extract::{Path, Query, State};
use rankfit_domain::comparison::{self, Cell, PairedBy};
use rankfit_domain::run::Method;
use rankfit_domain::stats::{IntervalMethod, Summary};
use rankfit_domain::table::{format_value, PaperTable};
use rankfit_store::{datasets, studies};
use serde::Deserialize;
use uuid::Uuid;

use super::plots::{self, Series};
use super::shared::{fmt_count, fmt_duration, fmt_time, method_options, opt, options, parse_uuid, short, DatasetOption, SelectOpt};
use super::{render, Nav, PageError, PageResult, WebSession};
use crate::api::studies::{cells, grid_cells, owned_study, progress_json};
use crate::AppState;

fn api_error(e: crate::AppError) -> PageError {
    PageError::new(e.status, "Could not load the comparison", e.message)
}

/// A cell as the tables show it.
pub struct CellView {
    pub dataset: String,
    pub method: String,
    pub model: String,
    pub budget: u32,
    pub n: usize,
    pub mean_std: String,
    pub mean_sort: String,
    pub interval: String,
    pub rank: usize,
    pub delta: String,
    pub delta_interval: String,
    pub significant: bool,
    pub params: String,
    pub train_time: String,
    pub runs: Vec<(String, String)>,
}

fn interval_text(metric: &str, s: &Summary) -> String {
    match s.interval {
        Some(i) => format!(
            "[{}, {}]{}",
            format_value(metric, i.lo),
            format_value(metric, i.hi),
            if i.method == IntervalMethod::Bootstrap { " (bootstrap over test examples)" } else { "" }
        ),
        None => "–".into(),
    }
}

fn mean_std(metric: &str, s: &Summary) -> String {
    match s.std {
        Some(sd) => format!("{} ± {}", format_value(metric, s.mean), format_value(metric, sd)),
        None => format_value(metric, s.mean),
    }
}

fn cell_view(c: &Cell) -> CellView {
    let m = c.primary_metric.as_str();
    let p = c.primary();
    let (delta, delta_interval, significant) = match &c.vs_lora {
        Some(d) => (
            format!("{:+.2}", d.summary.mean * 100.0),
            match d.summary.interval {
                Some(i) => format!(
                    "[{:+.2}, {:+.2}] {}",
                    i.lo * 100.0,
                    i.hi * 100.0,
                    match d.paired_by {
                        PairedBy::Seed => format!("paired by seed, n={}", d.summary.n),
                        PairedBy::Example => "paired bootstrap over test examples".to_string(),
                    }
                ),
                None => "–".into(),
            },
            d.significant,
        ),
        None => ("–".into(), String::new(), false),
    };
    CellView {
        dataset: c.dataset_name.clone(),
        method: c.method.display_name().to_string(),
        model: c.model.clone(),
        budget: c.budget,
        n: c.runs.len(),
        mean_std: p.map(|s| mean_std(m, s)).unwrap_or_else(|| "–".into()),
        mean_sort: p.map(|s| s.mean.to_string()).unwrap_or_default(),
        interval: p.map(|s| interval_text(m, s)).unwrap_or_else(|| "–".into()),
        rank: c.rank,
        delta,
        delta_interval,
        significant,
        params: c.costs.trainable_params_end.map(|v| fmt_count(v.round() as i64)).unwrap_or_else(|| "–".into()),
        train_time: c.costs.train_seconds.map(fmt_duration).unwrap_or_else(|| "–".into()),
        runs: c.runs.iter().map(|r| (r.to_string(), short(r))).collect(),
    }
}

/// The plots of a set of cells: per dataset, score vs budget (one line per method, interval
/// bars), the Pareto fronts of score vs trainable parameters and vs train time.
fn plots_of(cells: &[Cell]) -> Vec<String> {
    let mut out = Vec::new();
    let mut datasets: Vec<(Uuid, String, String)> = Vec::new();
    for c in cells {
        if !datasets.iter().any(|d| d.0 == c.dataset_id) {
            datasets.push((c.dataset_id, c.dataset_name.clone(), c.primary_metric.clone()));
        }
    }
    for (id, name, metric) in datasets {
        let of: Vec<&Cell> = cells.iter().filter(|c| c.dataset_id == id).collect();
        let series = |x: &dyn Fn(&Cell) -> Option<f64>| -> Vec<Series> {
            Method::ALL
                .iter()
                .filter_map(|m| {
                    let points: Vec<plots::Point> = of
                        .iter()
                        .filter(|c| c.method == *m)
                        .filter_map(|c| {
                            let s = c.primary()?;
                            Some((x(c)?, s.mean, s.interval.map(|i| (i.lo, i.hi))))
                        })
                        .collect();
                    (!points.is_empty()).then(|| Series { label: m.display_name().to_string(), points })
                })
                .collect()
        };
        out.push(plots::lines(
            &format!("{name}: {metric} vs budget"),
            "budget (average rank)",
            &metric,
            &series(&|c| Some(f64::from(c.budget))),
            true,
        ));
        out.push(plots::pareto(
            &format!("{name}: {metric} vs trainable parameters"),
            "trainable parameters (end of training)",
            &metric,
            &series(&|c| c.costs.trainable_params_end),
            true,
        ));
        out.push(plots::pareto(
            &format!("{name}: {metric} vs train time"),
            "train time (s)",
            &metric,
            &series(&|c| c.costs.train_seconds),
            false,
        ));
    }
    out
}

/// Final rank per module averaged over seeds, one row per (method, budget) cell.
pub struct RankMapView {
    pub label: String,
    pub modules: Vec<(String, String, u32)>,
}

fn rank_maps(cells: &[Cell]) -> Vec<RankMapView> {
    cells
        .iter()
        .filter(|c| !c.mean_ranks.is_empty())
        .map(|c| {
            let max = c.mean_ranks.iter().map(|m| m.1).fold(1.0f64, f64::max);
            RankMapView {
                label: format!("{} · {} · budget {} (n={})", c.dataset_name, c.method.display_name(), c.budget, c.runs.len()),
                modules: c.mean_ranks.iter().map(|(m, r)| (m.clone(), format!("{r:.1}"), (r / max * 100.0).round() as u32)).collect(),
            }
        })
        .collect()
}

/// The paper table as HTML rows.
pub struct TableView {
    pub columns: Vec<String>,
    pub rows: Vec<TableRowView>,
}

pub struct TableRowView {
    pub method: String,
    pub budget: u32,
    pub cells: Vec<(String, bool)>,
    pub avg: String,
}

fn table_view(t: &PaperTable) -> TableView {
    TableView {
        columns: t.columns.iter().map(|c| format!("{} ({})", c.dataset, c.metric)).collect(),
        rows: t
            .rows
            .iter()
            .map(|r| TableRowView {
                method: r.method.clone(),
                budget: r.budget,
                cells: r
                    .cells
                    .iter()
                    .zip(&t.columns)
                    .map(|(c, col)| match c {
                        Some(c) => (format!("{} (n={})", mean_std(&col.metric, &c.summary), c.summary.n), c.best),
                        None => ("–".into(), false),
                    })
                    .collect(),
                avg: r.avg.map(|v| format!("{:.2}", v * 100.0)).unwrap_or_else(|| "–".into()),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------- studies list + launch

pub struct StudyItem {
    pub id: String,
    pub name: String,
    pub done: i64,
    pub total: i64,
    pub percent: i64,
    pub failed: i64,
    pub created: String,
    pub cancelled: bool,
}

#[derive(Template)]
#[template(path = "studies.html")]
struct StudiesPage {
    title: String,
    nav: Nav,
    studies: Vec<StudyItem>,
    datasets: Vec<DatasetOption>,
    methods: Vec<SelectOpt>,
    /// Budget choices of the launch form, and whether each is preselected.
    budgets: Vec<(u32, bool)>,
}

pub async fn studies_page(State(st): State<AppState>, s: WebSession) -> PageResult {
    let list = studies::list(&st.pool, s.team.id).await?;
    let ds = datasets::list(&st.pool, s.team.id).await?;
    let page = StudiesPage {
        title: "Studies".into(),
        nav: Nav::signed_in(&s, "studies"),
        studies: list
            .iter()
            .map(|r| StudyItem {
                id: r.study.id.to_string(),
                name: r.study.name.clone(),
                done: r.progress.done(),
                total: r.progress.total,
                percent: (r.progress.done() * 100).checked_div(r.progress.total).unwrap_or(0),
                failed: r.progress.failed,
                created: fmt_time(&r.study.created_at),
                cancelled: r.study.cancelled_at.is_some(),
            })
            .collect(),
        datasets: DatasetOption::list(&ds, |_| false),
        methods: method_options(""),
        budgets: [1, 2, 4, 8, 16, 32].into_iter().map(|b| (b, b == 2 || b == 8)).collect(),
    };
    Ok(render(page))
}

// ---------------------------------------------------------------- one study

pub struct GridRow {
    pub dataset_id: String,
    pub dataset: String,
    pub method: String,
    pub method_id: String,
    pub budget: i32,
    pub runs: Vec<(String, String, i64)>,
}

#[derive(Template)]
#[template(path = "study.html")]
struct StudyPage {
    title: String,
    nav: Nav,
    id: String,
    name: String,
    spec: String,
    done: i64,
    total: i64,
    percent: i64,
    eta: String,
    cancelled: bool,
    finished: bool,
    /// Published on the public leaderboards of its public datasets.
    published: bool,
    /// How many of its datasets are public (publishing shows only those).
    public_datasets: usize,
    grid: Vec<GridRow>,
    table: TableView,
    rows: Vec<CellView>,
    plots: Vec<String>,
    rank_maps: Vec<RankMapView>,
}

pub async fn study_page(State(st): State<AppState>, s: WebSession, Path(id): Path<String>) -> PageResult {
    parse_uuid(&id, "study")?;
    let study = owned_study(&st, s.team.id, &id).await.map_err(|e| match e.status.as_u16() {
        404 => PageError::not_found("study"),
        _ => api_error(e),
    })?;
    let progress = studies::progress(&st.pool, study.id).await?;
    let runs = studies::runs(&st.pool, study.id).await?;
    let visible = datasets::list(&st.pool, s.team.id).await?;
    let public_ids: std::collections::HashSet<Uuid> = visible.iter().filter(|d| d.is_public()).map(|d| d.id).collect();
    let public_datasets =
        runs.iter().map(|r| r.dataset_id).filter(|d| public_ids.contains(d)).collect::<std::collections::HashSet<_>>().len();
    let names: std::collections::HashMap<Uuid, String> = visible.into_iter().map(|d| (d.id, d.name)).collect();
    let cells = cells(&st, s.team.id, Some(study.id), None).await.map_err(api_error)?;
    let p = progress_json(&progress);
    let page = StudyPage {
        title: format!("Study {}", study.name),
        nav: Nav::signed_in(&s, "studies"),
        id: study.id.to_string(),
        name: study.name.clone(),
        spec: serde_json::to_string_pretty(&study.spec.0).unwrap_or_default(),
        done: progress.done(),
        total: progress.total,
        percent: (progress.done() * 100).checked_div(progress.total).unwrap_or(0),
        eta: p.eta_seconds.map(fmt_duration).unwrap_or_else(|| "–".into()),
        cancelled: study.cancelled_at.is_some(),
        finished: progress.queued + progress.running == 0,
        published: study.visibility == "public",
        public_datasets,
        grid: grid_cells(&runs)
            .into_iter()
            .map(|g| GridRow {
                dataset_id: g.dataset_id.to_string(),
                dataset: names.get(&g.dataset_id).cloned().unwrap_or_else(|| g.dataset_id.to_string()),
                method: Method::parse(&g.method).map(|m| m.display_name().to_string()).unwrap_or(g.method.clone()),
                method_id: g.method.clone(),
                budget: g.budget,
                runs: g.runs.iter().map(|r| (r.id.to_string(), r.status.clone(), r.seed)).collect(),
            })
            .collect(),
        table: table_view(&comparison::paper_table(&cells)),
        rows: cells.iter().map(cell_view).collect(),
        plots: plots_of(&cells),
        rank_maps: rank_maps(&cells),
    };
    Ok(render(page))
}

// ---------------------------------------------------------------- leaderboard

#[derive(Template)]
#[template(path = "leaderboard.html")]
struct LeaderboardPage {
    title: String,
    nav: Nav,
    datasets: Vec<DatasetOption>,
    dataset: Option<(String, String, String)>,
    metric: String,
    budgets: Vec<SelectOpt>,
    methods: Vec<SelectOpt>,
    rows: Vec<CellView>,
    plots: Vec<String>,
}

#[derive(Deserialize)]
pub struct LeaderboardParams {
    dataset_id: Option<String>,
    budget: Option<String>,
    method: Option<String>,
}

pub async fn leaderboard(State(st): State<AppState>, s: WebSession, Query(p): Query<LeaderboardParams>) -> PageResult {
    let rows = datasets::list(&st.pool, s.team.id).await?;
    let chosen = match opt(&p.dataset_id) {
        Some(raw) => {
            let id = parse_uuid(raw, "dataset")?;
            Some(rows.iter().find(|d| d.id == id).ok_or_else(|| PageError::not_found("dataset"))?)
        }
        None => rows.first(),
    };
    let budget = opt(&p.budget)
        .map(|b| b.parse::<u32>().map_err(|_| PageError::bad_request(format!("Budget {b:?} is not a number."))))
        .transpose()?;
    let method =
        opt(&p.method).map(|v| Method::parse(v).ok_or_else(|| PageError::bad_request(format!("Unknown method {v:?}.")))).transpose()?;
    let mut page = LeaderboardPage {
        title: "Leaderboard".into(),
        nav: Nav::signed_in(&s, "leaderboard"),
        datasets: DatasetOption::list(&rows, |d| chosen.is_some_and(|c| c.id == d.id)),
        dataset: chosen.map(|d| (d.id.to_string(), d.name.clone(), d.task_family.clone())),
        metric: String::new(),
        budgets: Vec::new(),
        methods: method_options(method.map(|m| m.as_str()).unwrap_or("")),
        rows: Vec::new(),
        plots: Vec::new(),
    };
    if let Some(d) = chosen {
        page.metric = d.primary_metric.clone();
        let all = cells(&st, s.team.id, None, Some(d.id)).await.map_err(api_error)?;
        let mut budgets: Vec<u32> = all.iter().map(|c| c.budget).collect();
        budgets.sort_unstable();
        budgets.dedup();
        let current = budget.map(|b| b.to_string()).unwrap_or_default();
        let strings: Vec<String> = budgets.iter().map(|b| b.to_string()).collect();
        page.budgets = options(strings.iter().map(|b| (b.as_str(), b.as_str())), &current);
        let shown: Vec<Cell> =
            all.into_iter().filter(|c| budget.is_none_or(|b| c.budget == b) && method.is_none_or(|m| c.method == m)).collect();
        let mut views: Vec<CellView> = shown.iter().map(cell_view).collect();
        // By budget, then rank group, then mean (an order within a group is not a claim:
        // the rank column says which cells the data can tell apart).
        views.sort_by(|a, b| {
            let mean = |v: &CellView| v.mean_sort.parse::<f64>().unwrap_or(f64::NEG_INFINITY);
            (a.budget, a.rank).cmp(&(b.budget, b.rank)).then(mean(b).total_cmp(&mean(a)))
        });
        page.rows = views;
        page.plots = plots_of(&shown).into_iter().take(1).collect();
    }
    Ok(render(page))
}

// ---------------------------------------------------------------- public leaderboards

/// A public cell: one team's runs of a method on a public dataset.
pub struct PublicCellView {
    pub team: String,
    pub own: bool,
    pub cell: CellView,
}

/// A public dataset with its published runs, for the board index.
pub struct BoardView {
    pub id: String,
    pub name: String,
    pub family: String,
    pub metric: String,
    pub benchmark: String,
    pub runs: i64,
    pub teams: i64,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "public_leaderboard.html")]
struct PublicLeaderboardPage {
    title: String,
    nav: Nav,
    boards: Vec<BoardView>,
    dataset: Option<BoardView>,
    rows: Vec<PublicCellView>,
}

#[derive(Deserialize)]
pub struct PublicParams {
    dataset_id: Option<String>,
}

/// Every team's published cells on a public dataset (runs published directly or through
/// a public study), with the team's name; the same aggregation as the team leaderboard,
/// one cell per team × method × model × budget.
pub async fn public_leaderboard(State(st): State<AppState>, s: WebSession, Query(p): Query<PublicParams>) -> PageResult {
    let boards = studies::public_boards(&st.pool).await?;
    let chosen = match opt(&p.dataset_id) {
        Some(raw) => {
            let id = parse_uuid(raw, "dataset")?;
            Some(boards.iter().find(|b| b.dataset_id == id).ok_or_else(|| PageError::not_found("public dataset"))?)
        }
        None => boards.iter().find(|b| b.published_runs > 0).or(boards.first()),
    };
    let view = |b: &studies::PublicBoard| BoardView {
        id: b.dataset_id.to_string(),
        name: b.dataset_name.clone(),
        family: b.task_family.clone(),
        metric: b.primary_metric.clone(),
        benchmark: b.benchmark.clone().unwrap_or_default(),
        runs: b.published_runs,
        teams: b.teams,
        selected: chosen.is_some_and(|c| c.dataset_id == b.dataset_id),
    };
    let mut rows = Vec::new();
    if let Some(b) = chosen {
        let results = studies::public_results(&st.pool, b.dataset_id).await?;
        let cells = crate::api::studies::cells_of(&st, results).await.map_err(api_error)?;
        rows = cells
            .iter()
            .map(|c| {
                let team = c.team.clone().unwrap_or_default();
                let own = team == s.team.name;
                let mut cell = cell_view(c);
                if !own {
                    // Another team's runs cannot be opened: no links.
                    cell.runs.clear();
                }
                PublicCellView { team, own, cell }
            })
            .collect();
        rows.sort_by(|a, b| {
            let mean = |v: &CellView| v.mean_sort.parse::<f64>().unwrap_or(f64::NEG_INFINITY);
            (a.cell.budget, a.cell.rank).cmp(&(b.cell.budget, b.cell.rank)).then(mean(&b.cell).total_cmp(&mean(&a.cell)))
        });
    }
    let page = PublicLeaderboardPage {
        title: "Public leaderboards".into(),
        nav: Nav::signed_in(&s, "public"),
        dataset: chosen.map(view),
        boards: boards.iter().map(view).collect(),
        rows,
    };
    Ok(render(page))
}
