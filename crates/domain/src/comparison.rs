//! Method comparisons with their uncertainty: runs grouped into cells (dataset, base model,
//! method, budget) with seeds as replicates, each metric summarised by n, mean, sample std
//! and a 95% interval, every method's paired difference against LoRA at the same budget,
//! and arena-style rank groups.
//!
//! - Interval of a cell: Student t over seeds when n ≥ 2; with n = 1, a percentile
//!   bootstrap over the run's test examples (from its stored predictions).
//! - Difference against LoRA: paired by seed (paired t) when two or more seeds pair up;
//!   with one pair, a paired bootstrap over test examples (the same resampled examples
//!   scored for both runs). `significant` only when the interval excludes 0.
//! - Rank groups within (dataset, model, budget): 1 + the number of methods whose interval
//!   lies entirely above; methods that overlap the leader share rank 1.
//!
//! The scores are test scores of each run's best-**validation** checkpoint. Nothing here
//! picks a run, a checkpoint or a setting by its test score: every succeeded run of a
//! cell is a replicate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::prediction::{metric_on, Prediction};
use crate::run::Method;
use crate::stats::{self, Interval, IntervalMethod, Summary};
use crate::summary::RunSummary;
use crate::table::{PaperTable, TableColumn};
use crate::task::{higher_is_better, TaskFamily};

/// What a run cost, read from its summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunCosts {
    pub trainable_params_end: Option<f64>,
    pub trainable_params_peak: Option<f64>,
    pub adapter_bytes: Option<f64>,
    pub train_seconds: Option<f64>,
    pub peak_memory_bytes: Option<f64>,
}

impl RunCosts {
    pub fn from_summary(s: &RunSummary) -> Self {
        RunCosts {
            trainable_params_end: s.trainable_params.map(|t| t.end as f64),
            trainable_params_peak: s.trainable_params.map(|t| t.peak as f64),
            adapter_bytes: s.adapter_file_bytes.map(|b| b as f64),
            train_seconds: s.train_seconds,
            peak_memory_bytes: s.peak_memory_bytes.map(|b| b as f64),
        }
    }
}

/// A succeeded run's test result.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub run_id: Uuid,
    pub dataset_id: Uuid,
    pub dataset_name: String,
    pub family: TaskFamily,
    /// The dataset's ranking metric (its family's primary metric unless the dataset says
    /// otherwise, e.g. MCC for CoLA).
    pub primary_metric: String,
    /// The team that ran it, on public leaderboards (cells are per team there); None on a
    /// team's own boards.
    pub team: Option<String>,
    /// Label-set size (classification), else 0.
    pub classes: usize,
    pub model: String,
    pub method: Method,
    pub budget: u32,
    pub seed: u64,
    /// Test metrics at the best-validation checkpoint.
    pub metrics: BTreeMap<String, f64>,
    pub costs: RunCosts,
    /// Final live rank per adapted module.
    pub final_ranks: Vec<(String, u32)>,
    /// Per-example test predictions (empty when not stored).
    pub predictions: Vec<Prediction>,
}

impl RunResult {
    /// Reads the numeric test metrics and the summary fields a comparison needs.
    pub fn parse_metrics(metrics: &serde_json::Value) -> BTreeMap<String, f64> {
        metrics.as_object().map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect()).unwrap_or_default()
    }
}

/// Settings of the statistics.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub level: f64,
    pub resamples: usize,
    pub bootstrap_seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { level: stats::DEFAULT_LEVEL, resamples: stats::DEFAULT_RESAMPLES, bootstrap_seed: 0x5EED }
    }
}

/// How a difference's interval was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PairedBy {
    /// Paired t over seeds that both cells ran.
    Seed,
    /// One pair of runs: paired bootstrap over the shared test examples.
    Example,
}

/// A method's difference from LoRA at the same (dataset, model, budget) on the primary metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Difference {
    pub baseline: String,
    pub metric: String,
    pub paired_by: PairedBy,
    /// mean difference (method - LoRA), its spread and interval; n = pairs.
    pub summary: Summary,
    /// The interval excludes 0.
    pub significant: bool,
}

/// Means of a cell's costs over its runs.
pub type CostSummary = RunCosts;

/// A cell: one (dataset, model, method, budget) with its seeds as replicates.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cell {
    pub dataset_id: Uuid,
    pub dataset_name: String,
    pub family: TaskFamily,
    /// The team whose runs these are (public leaderboards only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub model: String,
    pub method: Method,
    pub budget: u32,
    pub runs: Vec<Uuid>,
    pub seeds: Vec<u64>,
    /// The metric rank groups and tables use (the dataset's ranking metric).
    pub primary_metric: String,
    /// Every metric reported for the family that the runs have.
    pub metrics: BTreeMap<String, Summary>,
    /// Rank group within (dataset, model, budget) on the primary metric.
    pub rank: usize,
    /// Against LoRA at the same budget (None for LoRA itself or when LoRA has no run).
    pub vs_lora: Option<Difference>,
    pub costs: CostSummary,
    /// Final rank per module, averaged over the cell's runs, in model order.
    pub mean_ranks: Vec<(String, f64)>,
}

impl Cell {
    pub fn primary(&self) -> Option<&Summary> {
        self.metrics.get(&self.primary_metric)
    }
}

type Key = (Uuid, String, u32, Method, Option<String>);

/// Groups results into cells and computes every statistic. Cells come out ordered by
/// dataset (name), model, budget, method in [`Method::ALL`] order, then team.
///
/// With teams (public leaderboards) a cell is one team's runs: differences against LoRA
/// pair a team's method with the same team's LoRA runs, and rank groups span every
/// team's cells of a (dataset, model, budget).
pub fn aggregate(results: &[RunResult], opts: &Options) -> Vec<Cell> {
    let mut groups: BTreeMap<(String, Key), Vec<&RunResult>> = BTreeMap::new();
    for r in results {
        groups.entry((r.dataset_name.clone(), (r.dataset_id, r.model.clone(), r.budget, r.method, r.team.clone()))).or_default().push(r);
    }
    let mut cells: Vec<Cell> = groups.values().map(|runs| cell(runs, opts)).collect();
    // Differences against LoRA at the same (dataset, model, budget), within a team.
    type BaseKey = (Uuid, String, u32, Option<String>);
    let lora: BTreeMap<BaseKey, Vec<&RunResult>> = groups
        .iter()
        .filter(|((_, k), _)| k.3 == Method::Lora)
        .map(|((_, k), v)| ((k.0, k.1.clone(), k.2, k.4.clone()), v.clone()))
        .collect();
    for (c, runs) in cells.iter_mut().zip(groups.values()) {
        if c.method == Method::Lora {
            continue;
        }
        if let Some(base) = lora.get(&(c.dataset_id, c.model.clone(), c.budget, c.team.clone())) {
            c.vs_lora = difference(runs, base, &c.primary_metric, opts);
        }
    }
    // Rank groups within (dataset, model, budget).
    let mut by_group: BTreeMap<(Uuid, String, u32), Vec<usize>> = BTreeMap::new();
    for (i, c) in cells.iter().enumerate() {
        by_group.entry((c.dataset_id, c.model.clone(), c.budget)).or_default().push(i);
    }
    for idx in by_group.values() {
        let metric = cells[idx[0]].primary_metric.clone();
        // A cell without an interval (one run, no stored predictions) could be anywhere:
        // it shares every group and pushes no other cell down.
        let unknown = Interval { lo: f64::NEG_INFINITY, hi: f64::INFINITY, level: opts.level, method: IntervalMethod::StudentT };
        let entries: Vec<(f64, Option<Interval>)> = idx
            .iter()
            .map(|&i| cells[i].primary().map_or((f64::NAN, Some(unknown)), |s| (s.mean, Some(s.interval.unwrap_or(unknown)))))
            .collect();
        let ranks = stats::rank_groups(&entries, higher_is_better(&metric));
        for (&i, r) in idx.iter().zip(ranks) {
            cells[i].rank = r;
        }
    }
    cells.sort_by(|a, b| {
        (&a.dataset_name, a.dataset_id, &a.model, a.budget, method_order(a.method), &a.team).cmp(&(
            &b.dataset_name,
            b.dataset_id,
            &b.model,
            b.budget,
            method_order(b.method),
            &b.team,
        ))
    });
    cells
}

fn method_order(m: Method) -> usize {
    Method::ALL.iter().position(|x| *x == m).unwrap_or(usize::MAX)
}

fn cell(runs: &[&RunResult], opts: &Options) -> Cell {
    let first = runs[0];
    let primary = first.primary_metric.clone();
    let mut metrics = BTreeMap::new();
    for &name in first.family.metrics() {
        let values: Vec<f64> = runs.iter().filter_map(|r| r.metrics.get(name).copied()).filter(|v| v.is_finite()).collect();
        if values.len() != runs.len() {
            continue;
        }
        let Some(mut s) = stats::summarize(&values, opts.level) else { continue };
        if s.n == 1 {
            let r = first;
            s.interval = stats::bootstrap_interval(r.predictions.len(), opts.resamples, opts.bootstrap_seed, opts.level, |idx| {
                metric_on(r.family, name, r.classes, &r.predictions, idx).unwrap_or(f64::NAN)
            });
        }
        metrics.insert(name.to_string(), s);
    }
    let mean_of = |f: fn(&RunCosts) -> Option<f64>| {
        let v: Vec<f64> = runs.iter().filter_map(|r| f(&r.costs)).collect();
        (v.len() == runs.len()).then(|| stats::mean(&v)).flatten()
    };
    let costs = RunCosts {
        trainable_params_end: mean_of(|c| c.trainable_params_end),
        trainable_params_peak: mean_of(|c| c.trainable_params_peak),
        adapter_bytes: mean_of(|c| c.adapter_bytes),
        train_seconds: mean_of(|c| c.train_seconds),
        peak_memory_bytes: mean_of(|c| c.peak_memory_bytes),
    };
    let mut mean_ranks: Vec<(String, f64)> = first.final_ranks.iter().map(|(m, _)| (m.clone(), 0.0)).collect();
    for r in runs {
        for ((m, acc), (m2, rank)) in mean_ranks.iter_mut().zip(&r.final_ranks) {
            if m == m2 {
                *acc += f64::from(*rank) / runs.len() as f64;
            }
        }
    }
    Cell {
        dataset_id: first.dataset_id,
        dataset_name: first.dataset_name.clone(),
        family: first.family,
        team: first.team.clone(),
        model: first.model.clone(),
        method: first.method,
        budget: first.budget,
        runs: runs.iter().map(|r| r.run_id).collect(),
        seeds: runs.iter().map(|r| r.seed).collect(),
        primary_metric: primary,
        metrics,
        rank: 0,
        vs_lora: None,
        costs,
        mean_ranks,
    }
}

/// `runs` minus `base` on `metric`: paired by seed, or by example with a single pair.
fn difference(runs: &[&RunResult], base: &[&RunResult], metric: &str, opts: &Options) -> Option<Difference> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut pairs = Vec::new();
    for r in runs {
        if let Some(l) = base.iter().find(|l| l.seed == r.seed) {
            if let (Some(x), Some(y)) = (r.metrics.get(metric), l.metrics.get(metric)) {
                a.push(*x);
                b.push(*y);
                pairs.push((*r, *l));
            }
        }
    }
    let summary = match pairs.len() {
        0 => return None,
        1 => {
            let (r, l) = pairs[0];
            let mut s = stats::paired_difference(&a, &b, opts.level)?;
            let same_examples = r.predictions.len() == l.predictions.len()
                && r.predictions.iter().zip(&l.predictions).all(|(p, q)| p.index == q.index && p.reference == q.reference);
            if same_examples {
                s.interval = stats::bootstrap_interval(r.predictions.len(), opts.resamples, opts.bootstrap_seed, opts.level, |idx| {
                    let x = metric_on(r.family, metric, r.classes, &r.predictions, idx);
                    let y = metric_on(l.family, metric, l.classes, &l.predictions, idx);
                    match (x, y) {
                        (Some(x), Some(y)) => x - y,
                        _ => f64::NAN,
                    }
                });
            }
            s
        }
        _ => stats::paired_difference(&a, &b, opts.level)?,
    };
    let paired_by = if pairs.len() == 1 { PairedBy::Example } else { PairedBy::Seed };
    let significant = summary.interval.is_some_and(|i| i.excludes(0.0));
    Some(Difference { baseline: Method::Lora.as_str().into(), metric: metric.into(), paired_by, summary, significant })
}

/// The paper table of cells: rows method × budget, one column per dataset (its primary
/// metric), cells mean ± std over seeds, Avg, best group in bold.
pub fn paper_table(cells: &[Cell]) -> PaperTable {
    let mut columns: Vec<(Uuid, TableColumn)> = Vec::new();
    let mut rows: Vec<(Method, u32)> = Vec::new();
    for c in cells {
        if !columns.iter().any(|(id, _)| *id == c.dataset_id) {
            columns.push((
                c.dataset_id,
                TableColumn {
                    dataset: c.dataset_name.clone(),
                    metric: c.primary_metric.clone(),
                    higher_is_better: higher_is_better(&c.primary_metric),
                },
            ));
        }
        if !rows.contains(&(c.method, c.budget)) {
            rows.push((c.method, c.budget));
        }
    }
    rows.sort_by_key(|(m, b)| (*b, method_order(*m)));
    let grid: Vec<Vec<Option<Summary>>> = rows
        .iter()
        .map(|(m, b)| {
            columns
                .iter()
                .map(|(d, _)| {
                    cells.iter().find(|c| c.dataset_id == *d && c.method == *m && c.budget == *b).and_then(|c| c.primary().cloned())
                })
                .collect()
        })
        .collect();
    PaperTable::build(
        columns.into_iter().map(|(_, c)| c).collect(),
        rows.into_iter().map(|(m, b)| (m.display_name().to_string(), b)).collect(),
        grid,
    )
}

/// Whether an interval came from a bootstrap (n = 1) or over seeds.
pub fn interval_kind(s: &Summary) -> Option<IntervalMethod> {
    s.interval.map(|i| i.method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prediction::Output;

    fn result(method: Method, seed: u64, acc: f64, correct: &[bool]) -> RunResult {
        let predictions = correct
            .iter()
            .enumerate()
            .map(|(i, &ok)| Prediction {
                index: i as u32,
                predicted: Output::Class { index: usize::from(!ok), label: String::new() },
                reference: Output::Class { index: 0, label: String::new() },
                input: None,
                scores: BTreeMap::new(),
            })
            .collect();
        RunResult {
            run_id: Uuid::new_v4(),
            dataset_id: Uuid::from_u128(7),
            dataset_name: "d".into(),
            family: TaskFamily::Classification,
            primary_metric: "accuracy".into(),
            team: None,
            classes: 2,
            model: "m".into(),
            method,
            budget: 4,
            seed,
            metrics: BTreeMap::from([("accuracy".to_string(), acc)]),
            costs: RunCosts { train_seconds: Some(seed as f64), ..Default::default() },
            final_ranks: vec![("l0.q".into(), 4), ("l0.v".into(), seed as u32)],
            predictions,
        }
    }

    #[test]
    fn cells_summarise_seeds_and_pair_against_lora() {
        let rs = vec![
            result(Method::Lora, 1, 0.60, &[]),
            result(Method::Lora, 2, 0.62, &[]),
            result(Method::Lora, 3, 0.64, &[]),
            result(Method::AdaLora, 1, 0.70, &[]),
            result(Method::AdaLora, 2, 0.73, &[]),
            result(Method::AdaLora, 3, 0.73, &[]),
        ];
        let cells = aggregate(&rs, &Options::default());
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[0].method, Method::Lora);
        let ada = &cells[1];
        let s = ada.primary().unwrap();
        assert_eq!(s.n, 3);
        assert!((s.mean - 0.72).abs() < 1e-12);
        assert!((s.std.unwrap() - 0.017320508075688773).abs() < 1e-12);
        assert_eq!(s.interval.unwrap().method, IntervalMethod::StudentT);
        let d = ada.vs_lora.as_ref().unwrap();
        assert_eq!(d.paired_by, PairedBy::Seed);
        assert!((d.summary.mean - 0.1).abs() < 1e-12);
        assert!(d.significant);
        // mean of per-seed train seconds (1, 2, 3) and of the final ranks.
        assert_eq!(ada.costs.train_seconds, Some(2.0));
        assert_eq!(ada.mean_ranks, vec![("l0.q".to_string(), 4.0), ("l0.v".to_string(), 2.0)]);
        // AdaLoRA's interval lies above LoRA's: LoRA is rank 2.
        assert_eq!((cells[0].rank, cells[1].rank), (2, 1));
    }

    #[test]
    fn one_seed_uses_the_examples() {
        let a: Vec<bool> = (0..100).map(|i| i % 10 != 0).collect(); // 90% right
        let b: Vec<bool> = (0..100).map(|i| i % 10 > 1).collect(); // 80% right, a superset of errors
        let rs = vec![result(Method::Lora, 1, 0.8, &b), result(Method::AdaLora, 1, 0.9, &a)];
        let cells = aggregate(&rs, &Options::default());
        let ada = &cells[1];
        let i = ada.primary().unwrap().interval.unwrap();
        assert_eq!(i.method, IntervalMethod::Bootstrap);
        assert!(i.lo < 0.9 && 0.9 < i.hi && i.hi <= 1.0, "{i:?}");
        let d = ada.vs_lora.as_ref().unwrap();
        assert_eq!(d.paired_by, PairedBy::Example);
        // AdaLoRA is right wherever LoRA is, plus 10 more: every resample favours it.
        assert!(d.summary.interval.unwrap().lo > 0.0 && d.significant, "{d:?}");
        // Overlapping intervals: one rank group.
        assert_eq!((cells[0].rank, cells[1].rank), (1, 1));
    }

    #[test]
    fn the_paper_table_has_a_row_per_method_and_budget() {
        let mut rs = vec![result(Method::Lora, 1, 0.6, &[]), result(Method::Lora, 2, 0.7, &[])];
        let mut other = result(Method::RoLora, 1, 0.5, &[]);
        other.budget = 8;
        rs.push(other);
        let t = paper_table(&aggregate(&rs, &Options::default()));
        assert_eq!(t.columns.len(), 1);
        assert_eq!(t.rows.len(), 2);
        assert_eq!((t.rows[0].method.as_str(), t.rows[0].budget), ("LoRA", 4));
        assert_eq!((t.rows[1].method.as_str(), t.rows[1].budget), ("RoLoRA", 8));
        assert!((t.rows[0].cells[0].as_ref().unwrap().summary.mean - 0.65).abs() < 1e-12);
    }

    #[test]
    fn public_cells_are_per_team_paired_within_the_team_and_ranked_across_teams() {
        let team = |mut r: RunResult, t: &str| {
            r.team = Some(t.into());
            r
        };
        let rs = vec![
            team(result(Method::Lora, 1, 0.60, &[]), "red"),
            team(result(Method::Lora, 2, 0.62, &[]), "red"),
            team(result(Method::AdaLora, 1, 0.70, &[]), "red"),
            team(result(Method::AdaLora, 2, 0.72, &[]), "red"),
            team(result(Method::Lora, 1, 0.90, &[]), "blue"),
            team(result(Method::Lora, 2, 0.91, &[]), "blue"),
            team(result(Method::Lora, 3, 0.92, &[]), "blue"),
        ];
        let cells = aggregate(&rs, &Options::default());
        let key = |c: &Cell| (c.method, c.team.clone().unwrap());
        assert_eq!(
            cells.iter().map(key).collect::<Vec<_>>(),
            [(Method::Lora, "blue".into()), (Method::Lora, "red".into()), (Method::AdaLora, "red".into())]
        );
        // red's AdaLoRA is compared with red's LoRA (+0.10), not with blue's.
        let d = cells[2].vs_lora.as_ref().unwrap();
        assert!((d.summary.mean - 0.10).abs() < 1e-12, "{d:?}");
        assert_eq!(d.summary.n, 2);
        // One ranking over both teams: blue's LoRA leads.
        assert_eq!(cells[0].rank, 1);
        assert!(cells[1].rank > 1 && cells[2].rank > 1);
    }

    #[test]
    fn cells_rank_by_the_datasets_metric() {
        let mut rs = vec![result(Method::Lora, 1, 0.9, &[]), result(Method::Lora, 2, 0.9, &[])];
        for (r, mcc) in rs.iter_mut().zip([0.1, 0.3]) {
            r.primary_metric = "mcc".into();
            r.metrics.insert("mcc".into(), mcc);
        }
        let cells = aggregate(&rs, &Options::default());
        assert_eq!(cells[0].primary_metric, "mcc");
        assert!((cells[0].primary().unwrap().mean - 0.2).abs() < 1e-12);
    }
}
