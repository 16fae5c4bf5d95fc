//! The paper-style results table, laid out like Table 1 of the AdaLoRA paper: one row per
//! method × budget, one column per dataset, cells "mean ± std" over seeds, a final Avg
//! column, and the best group of each column in bold. Rendered as Markdown, CSV (every raw
//! number, for machines) and LaTeX.
//!
//! "Best" is a rank group ([`rank_groups`](crate::stats::rank_groups)), not a maximum: a
//! cell is bold when no other row's interval lies entirely above it (below, for
//! lower-is-better metrics), so ties the data cannot separate are all bold.

use serde::{Deserialize, Serialize};

use crate::stats::{rank_groups, Interval, IntervalMethod, Summary, DEFAULT_LEVEL};

/// One dataset column and the metric its cells report.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TableColumn {
    pub dataset: String,
    pub metric: String,
    pub higher_is_better: bool,
}

/// One cell: the per-seed summary, its rank group within the column, and whether it is in
/// the best group (`rank == 1`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TableCell {
    pub summary: Summary,
    pub rank: usize,
    pub best: bool,
}

/// One method at one budget, with a cell per column (`None`: no result) and the average
/// over columns (see [`PaperTable::build`]).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TableRow {
    pub method: String,
    pub budget: u32,
    pub cells: Vec<Option<TableCell>>,
    pub avg: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaperTable {
    pub columns: Vec<TableColumn>,
    pub rows: Vec<TableRow>,
}

/// Shown for a missing cell or average.
const MISSING: &str = "–";

impl PaperTable {
    /// `rows`: (method, budget) in display order; `cells[r][c]`: that cell's per-seed
    /// summary, if any (a missing row of `cells`, or a short one, means missing cells;
    /// extra entries are ignored).
    ///
    /// Computes each cell's rank group within its column over the rows that have a cell,
    /// `best = rank == 1`, and each row's `avg`: the mean over columns of the row's cell
    /// means, when every column has a cell and every column's metric is higher-is-better
    /// (else `None`; averaging a loss with an accuracy means nothing).
    pub fn build(columns: Vec<TableColumn>, rows: Vec<(String, u32)>, cells: Vec<Vec<Option<Summary>>>) -> PaperTable {
        let mut grid: Vec<Vec<Option<Summary>>> = cells;
        grid.resize(rows.len(), Vec::new());
        grid.truncate(rows.len());
        for r in grid.iter_mut() {
            r.resize(columns.len(), None);
        }
        let mut ranks: Vec<Vec<Option<usize>>> = vec![vec![None; columns.len()]; rows.len()];
        for (c, col) in columns.iter().enumerate() {
            let present: Vec<usize> = (0..rows.len()).filter(|&r| grid[r][c].is_some()).collect();
            let entries: Vec<(f64, Option<Interval>)> = present
                .iter()
                .map(|&r| {
                    let s = grid[r][c].as_ref().expect("present");
                    (s.mean, s.interval)
                })
                .collect();
            for (&r, rank) in present.iter().zip(rank_groups(&entries, col.higher_is_better)) {
                ranks[r][c] = Some(rank);
            }
        }
        let averageable = !columns.is_empty() && columns.iter().all(|c| c.higher_is_better);
        let rows = rows
            .into_iter()
            .zip(grid)
            .zip(ranks)
            .map(|(((method, budget), summaries), ranks)| {
                let avg = if averageable && summaries.iter().all(Option::is_some) {
                    let means: Vec<f64> = summaries.iter().flatten().map(|s| s.mean).collect();
                    crate::stats::mean(&means)
                } else {
                    None
                };
                let cells = summaries
                    .into_iter()
                    .zip(ranks)
                    .map(|(s, rank)| {
                        let (summary, rank) = (s?, rank?);
                        Some(TableCell { summary, rank, best: rank == 1 })
                    })
                    .collect();
                TableRow { method, budget, cells, avg }
            })
            .collect();
        PaperTable { columns, rows }
    }

    /// A GitHub-flavoured Markdown table ("Method | Budget | datasets… | Avg"), best
    /// groups in `**bold**`, missing cells "–", followed by the notes that say what the
    /// numbers are.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let mut header = vec!["Method".to_string(), "Budget".to_string()];
        header.extend(self.columns.iter().map(|c| md_escape(&c.dataset)));
        header.push("Avg".into());
        out.push_str(&md_row(&header));
        let mut rule = vec![":---".to_string(), "---:".to_string()];
        rule.extend(std::iter::repeat_n("---:".to_string(), self.columns.len() + 1));
        out.push_str(&md_row(&rule));
        for row in &self.rows {
            let mut cells = vec![md_escape(&row.method), row.budget.to_string()];
            for (c, cell) in row.cells.iter().enumerate() {
                let metric = self.columns.get(c).map_or("", |c| c.metric.as_str());
                cells.push(match cell {
                    Some(cell) if cell.best => format!("**{}**", format_mean_std(metric, &cell.summary)),
                    Some(cell) => format_mean_std(metric, &cell.summary),
                    None => MISSING.into(),
                });
            }
            cells.push(self.format_avg(row.avg));
            out.push_str(&md_row(&cells));
        }
        out.push('\n');
        for note in self.notes("**Bold**") {
            out.push_str(&note);
            out.push('\n');
        }
        out
    }

    /// Every number, raw and at full precision: `method,budget`, then per column
    /// `<ds>_n,<ds>_mean,<ds>_std,<ds>_lo,<ds>_hi,<ds>_rank`, then `avg`. Missing values
    /// are empty fields. `<ds>` is the dataset name, or `<dataset>_<metric>` when a dataset
    /// has more than one column.
    pub fn to_csv(&self) -> String {
        let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
        let mut header = vec!["method".to_string(), "budget".to_string()];
        for c in &self.columns {
            let repeated = self.columns.iter().filter(|o| o.dataset == c.dataset).count() > 1;
            let prefix = if repeated { format!("{}_{}", c.dataset, c.metric) } else { c.dataset.clone() };
            for field in ["n", "mean", "std", "lo", "hi", "rank"] {
                header.push(format!("{prefix}_{field}"));
            }
        }
        header.push("avg".into());
        w.write_record(&header).expect("writing to memory");
        let num = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        for row in &self.rows {
            let mut rec = vec![row.method.clone(), row.budget.to_string()];
            for c in 0..self.columns.len() {
                match row.cells.get(c).and_then(Option::as_ref) {
                    Some(cell) => {
                        let s = &cell.summary;
                        rec.push(s.n.to_string());
                        rec.push(num(Some(s.mean)));
                        rec.push(num(s.std));
                        rec.push(num(s.interval.map(|i| i.lo)));
                        rec.push(num(s.interval.map(|i| i.hi)));
                        rec.push(cell.rank.to_string());
                    }
                    None => rec.extend(std::iter::repeat_n(String::new(), 6)),
                }
            }
            rec.push(num(row.avg));
            w.write_record(&rec).expect("writing to memory");
        }
        String::from_utf8(w.into_inner().expect("writing to memory")).expect("CSV of UTF-8 strings is UTF-8")
    }

    /// A LaTeX `tabular` (plain `\hline` rules, no packages needed), best groups in
    /// `\textbf{}`, `$\pm$`, missing cells `--`, special characters escaped, followed by the
    /// notes.
    pub fn to_latex(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("\\begin{{tabular}}{{lr{}r}}\n\\hline\n", "r".repeat(self.columns.len())));
        let mut header = vec!["Method".to_string(), "Budget".to_string()];
        header.extend(self.columns.iter().map(|c| tex_escape(&c.dataset)));
        header.push("Avg".into());
        out.push_str(&header.join(" & "));
        out.push_str(" \\\\\n\\hline\n");
        for row in &self.rows {
            let mut cells = vec![tex_escape(&row.method), row.budget.to_string()];
            for (c, cell) in row.cells.iter().enumerate() {
                let metric = self.columns.get(c).map_or("", |c| c.metric.as_str());
                cells.push(match cell {
                    Some(cell) => {
                        let text = tex_escape(&format_mean_std(metric, &cell.summary)).replace(" ± ", " $\\pm$ ");
                        if cell.best {
                            format!("\\textbf{{{text}}}")
                        } else {
                            text
                        }
                    }
                    None => "--".into(),
                });
            }
            cells.push(match row.avg {
                Some(_) => tex_escape(&self.format_avg(row.avg)),
                None => "--".into(),
            });
            out.push_str(&cells.join(" & "));
            out.push_str(" \\\\\n");
        }
        out.push_str("\\hline\n\\end{tabular}\n");
        for note in self.notes("Bold") {
            out.push_str("\n{\\footnotesize ");
            out.push_str(&tex_escape(&note).replace(" ± ", " $\\pm$ "));
            out.push_str("}\n");
        }
        out
    }

    /// The notes under the table. `bold` is how the word "Bold" is written.
    fn notes(&self, bold: &str) -> Vec<String> {
        let cells: Vec<&TableCell> = self.rows.iter().flat_map(|r| r.cells.iter().flatten()).collect();
        let level = cells.iter().find_map(|c| c.summary.interval.map(|i| i.level)).unwrap_or(DEFAULT_LEVEL);
        let level = format!("{}%", trim_number(level * 100.0));
        let bootstrap = cells.iter().any(|c| c.summary.interval.is_some_and(|i| i.method == IntervalMethod::Bootstrap));
        let intervals = if bootstrap {
            "Student-t intervals over seeds, or percentile-bootstrap intervals over test examples for cells with one seed"
        } else {
            "Student-t intervals over seeds"
        };
        let mut notes = vec![format!(
            "Values are mean ± sample std over seeds (n per cell is in the CSV/JSON export). {bold} = best group: \
             no other row's {level} interval ({intervals}) lies entirely above the cell's (below, for lower-is-better \
             metrics), i.e. its interval overlaps the leader's. Scores are test scores at each run's best-validation \
             checkpoint."
        )];
        if cells.iter().any(|c| c.summary.std.is_none()) {
            notes.push("Cells without ± have a single seed (n=1): no std.".into());
        }
        if !self.columns.is_empty() {
            let metrics: Vec<String> = self.columns.iter().map(|c| format!("{}: {}", c.dataset, c.metric)).collect();
            let avg = if self.columns.iter().all(|c| c.higher_is_better) {
                "Avg = mean over the columns, for rows with every column."
            } else {
                "No Avg: some metrics are lower-is-better."
            };
            notes.push(format!("Metrics: {}{}. {avg}", metrics.join("; "), if self.percent_columns() { " (×100)" } else { "" }));
        }
        notes
    }

    /// Whether every column is shown as a percentage.
    fn percent_columns(&self) -> bool {
        !self.columns.is_empty() && self.columns.iter().all(|c| is_percent_metric(&c.metric))
    }

    fn format_avg(&self, avg: Option<f64>) -> String {
        match avg {
            None => MISSING.into(),
            Some(v) if self.percent_columns() => format_value("accuracy", v),
            Some(v) => format_value("", v),
        }
    }
}

/// Metrics in [-1, 1] where higher is better, shown as percentages.
fn is_percent_metric(metric: &str) -> bool {
    matches!(metric, "accuracy" | "f1" | "mcc" | "pearson" | "spearman") || metric.starts_with("f1_") || metric.starts_with("rouge")
}

/// Display formatting used by the Markdown and LaTeX tables and the HTML pages. Metrics
/// bounded in [-1, 1] where higher is better (accuracy, f1, mcc, pearson, spearman,
/// rouge*) are shown as percentages with 2 decimals (`0.852 -> "85.20"`); the rest (loss,
/// perplexity, mse, anything unknown) with 4 decimals, or 4 significant digits when the
/// value is below 0.01 in magnitude (`0.000123456 -> "0.0001235"`). Non-finite values are
/// Rust's `NaN`/`inf`.
pub fn format_value(metric: &str, v: f64) -> String {
    format_with(metric, v, decimals_for(v))
}

/// `"85.20 ± 1.31"`, or `"85.20"` when the std is unknown (n = 1). The std is shown with
/// the mean's number of decimals (`"0.0123 ± 0.0004"`).
pub fn format_mean_std(metric: &str, s: &Summary) -> String {
    let decimals = decimals_for(s.mean);
    match s.std {
        Some(std) => format!("{} ± {}", format_with(metric, s.mean, decimals), format_with(metric, std, decimals)),
        None => format_with(metric, s.mean, decimals),
    }
}

/// Decimals for a non-percentage value: 4, or 4 significant digits below 0.01.
fn decimals_for(v: f64) -> usize {
    if v == 0.0 || !v.is_finite() || v.abs() >= 0.01 {
        4
    } else {
        (3 - v.abs().log10().floor() as i64).clamp(4, 15) as usize
    }
}

fn format_with(metric: &str, v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if is_percent_metric(metric) {
        return fix_negative_zero(format!("{:.2}", v * 100.0));
    }
    fix_negative_zero(format!("{v:.decimals$}"))
}

/// `"-0.00"` reads as a sign that means nothing: drop it.
fn fix_negative_zero(s: String) -> String {
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}

/// `95.0 -> "95"`, `99.9 -> "99.9"`.
fn trim_number(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn md_row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// Keeps a table cell a single cell: `|` escaped, line breaks as spaces.
fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Escapes LaTeX's special characters in text.
fn tex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\textbackslash{}"),
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::summarize;

    fn col(dataset: &str, metric: &str, higher_is_better: bool) -> TableColumn {
        TableColumn { dataset: dataset.into(), metric: metric.into(), higher_is_better }
    }

    fn s(xs: &[f64]) -> Option<Summary> {
        summarize(xs, 0.95)
    }

    /// LoRA and AdaLoRA on two datasets; AdaLoRA clearly better on mrpc, tied on sst2;
    /// RoLoRA has no mrpc result and a single seed on sst2.
    fn table() -> PaperTable {
        PaperTable::build(
            vec![col("sst2", "accuracy", true), col("mrpc", "accuracy", true)],
            vec![("LoRA".into(), 8), ("AdaLoRA".into(), 8), ("RoLoRA".into(), 8)],
            vec![
                vec![s(&[0.94, 0.95, 0.945]), s(&[0.80, 0.81, 0.805])],
                vec![s(&[0.95, 0.94, 0.948]), s(&[0.90, 0.91, 0.905])],
                vec![s(&[0.93]), None],
            ],
        )
    }

    #[test]
    fn build_ranks_best_and_avg() {
        let t = table();
        let r = &t.rows;
        let rank = |row: usize, c: usize| r[row].cells[c].as_ref().map(|c| (c.rank, c.best));
        assert_eq!(rank(0, 0), Some((1, true)));
        assert_eq!(rank(1, 0), Some((1, true)));
        // A single seed (no interval) at 0.93 sits below LoRA's and AdaLoRA's intervals.
        assert_eq!(rank(2, 0), Some((3, false)));
        assert_eq!(rank(0, 1), Some((2, false)));
        assert_eq!(rank(1, 1), Some((1, true)));
        assert_eq!(rank(2, 1), None);
        assert!((r[0].avg.unwrap() - (0.945 + 0.805) / 2.0).abs() < 1e-12);
        assert!(r[2].avg.is_none());
    }

    #[test]
    fn lower_is_better_column_and_no_avg() {
        let t = PaperTable::build(
            vec![col("sst2", "accuracy", true), col("xsum", "loss", false)],
            vec![("A".into(), 4), ("B".into(), 4)],
            vec![vec![s(&[0.9, 0.91]), s(&[2.0, 2.01, 2.02])], vec![s(&[0.9, 0.91]), s(&[1.5, 1.51, 1.52])]],
        );
        // The lower loss wins: inverted orientation would make A best.
        assert!(!t.rows[0].cells[1].as_ref().unwrap().best);
        assert!(t.rows[1].cells[1].as_ref().unwrap().best);
        assert!(t.rows.iter().all(|r| r.avg.is_none()));
        assert!(t.to_markdown().contains("**1.5100 ± 0.0100**"));
    }

    #[test]
    fn build_tolerates_ragged_cells() {
        let t = PaperTable::build(
            vec![col("a", "accuracy", true), col("b", "accuracy", true)],
            vec![("X".into(), 1), ("Y".into(), 2)],
            vec![vec![s(&[0.5])]],
        );
        assert_eq!(t.rows.len(), 2);
        assert!(t.rows.iter().all(|r| r.cells.len() == 2));
        assert!(t.rows[0].cells[0].as_ref().unwrap().best);
        assert!(t.rows[0].cells[1].is_none() && t.rows[1].cells.iter().all(Option::is_none));
        let empty = PaperTable::build(vec![], vec![], vec![]);
        assert!(empty.rows.is_empty());
        assert!(empty.to_markdown().starts_with("| Method | Budget | Avg |\n"));
    }

    #[test]
    fn markdown_shape_with_missing_cell() {
        let md = table().to_markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| Method | Budget | sst2 | mrpc | Avg |");
        assert_eq!(lines[1], "| :--- | ---: | ---: | ---: | ---: |");
        assert_eq!(lines[2], "| LoRA | 8 | **94.50 ± 0.50** | 80.50 ± 0.50 | 87.50 |");
        assert_eq!(lines[3], "| AdaLoRA | 8 | **94.60 ± 0.53** | **90.50 ± 0.50** | 92.55 |");
        assert_eq!(lines[4], "| RoLoRA | 8 | 93.00 | – | – |");
        assert_eq!(lines[5], "");
        // Every table line has the same number of cells.
        assert!(lines[..5].iter().all(|l| l.matches(" | ").count() == 4));
        let notes = &lines[6..].join("\n");
        assert!(notes.contains("mean ± sample std over seeds"));
        assert!(notes.contains("95% interval"));
        assert!(notes.contains("best-validation checkpoint"));
        assert!(notes.contains("n=1"));
    }

    #[test]
    fn markdown_escapes_pipes() {
        let t = PaperTable::build(vec![col("a|b", "accuracy", true)], vec![("M|N".into(), 1)], vec![vec![s(&[0.5, 0.6])]]);
        assert!(t.to_markdown().lines().next().unwrap().contains("a\\|b"));
        assert!(t.to_markdown().contains("| M\\|N | 1 |"));
    }

    #[test]
    fn csv_has_raw_values() {
        let csv = table().to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "method,budget,sst2_n,sst2_mean,sst2_std,sst2_lo,sst2_hi,sst2_rank,mrpc_n,mrpc_mean,mrpc_std,mrpc_lo,mrpc_hi,mrpc_rank,avg"
        );
        assert_eq!(lines.len(), 4);
        let fields: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(fields.len(), 15);
        assert_eq!((fields[0], fields[1], fields[2], fields[7]), ("LoRA", "8", "3", "1"));
        let mean: f64 = fields[3].parse().unwrap();
        assert_eq!(mean, table().rows[0].cells[0].as_ref().unwrap().summary.mean);
        assert_eq!(lines[3], "RoLoRA,8,1,0.93,,,,3,,,,,,,");
        // Repeated datasets get the metric in their prefix.
        let t = PaperTable::build(vec![col("d", "accuracy", true), col("d", "f1", true)], vec![], vec![]);
        assert!(t.to_csv().starts_with("method,budget,d_accuracy_n,"));
    }

    #[test]
    fn latex_escapes_and_bolds() {
        let t = PaperTable::build(
            vec![col("cola_sub", "mcc", true), col("100%", "accuracy", true)],
            vec![("LoRA & co #1".into(), 8), ("x".into(), 8)],
            vec![vec![s(&[0.6, 0.62]), None], vec![s(&[0.1, 0.12]), s(&[0.5, 0.52])]],
        );
        let tex = t.to_latex();
        assert!(tex.starts_with("\\begin{tabular}{lrrrr}\n\\hline\nMethod & Budget & cola\\_sub & 100\\% & Avg \\\\\n"), "{tex}");
        assert!(tex.contains("LoRA \\& co \\#1 & 8 & \\textbf{61.00 $\\pm$ 1.41} & -- & -- \\\\\n"), "{tex}");
        assert!(tex.contains("x & 8 & 11.00 $\\pm$ 1.41 & \\textbf{51.00 $\\pm$ 1.41} & 31.00 \\\\\n"), "{tex}");
        assert!(tex.contains("\\end{tabular}"));
        assert!(!tex.contains('±'), "{tex}");
        assert_eq!(tex_escape("a_b~c^d\\e{f}$"), "a\\_b\\textasciitilde{}c\\textasciicircum{}d\\textbackslash{}e\\{f\\}\\$");
    }

    #[test]
    fn value_formats() {
        assert_eq!(format_value("accuracy", 0.852), "85.20");
        assert_eq!(format_value("rougeLsum", 0.41234), "41.23");
        assert_eq!(format_value("mcc", -0.00001), "0.00");
        assert_eq!(format_value("loss", 2.345678), "2.3457");
        assert_eq!(format_value("perplexity", 12.0), "12.0000");
        assert_eq!(format_value("mse", 0.000123456), "0.0001235");
        assert_eq!(format_value("mse", 0.0), "0.0000");
        assert_eq!(format_value("loss", f64::INFINITY), "inf");
        let one = summarize(&[0.852], 0.95).unwrap();
        assert_eq!(format_mean_std("accuracy", &one), "85.20");
        let many = summarize(&[0.84, 0.86], 0.95).unwrap();
        assert_eq!(format_mean_std("accuracy", &many), "85.00 ± 1.41");
        assert_eq!(format_value("mse", 0.0123), "0.0123");
        assert_eq!(format_value("mse", 0.00999), "0.009990");
        let small = Summary { n: 2, mean: 0.0123, std: Some(0.00042), interval: None };
        assert_eq!(format_mean_std("mse", &small), "0.0123 ± 0.0004");
        let tiny = Summary { n: 2, mean: 0.000123456, std: Some(0.0000042), interval: None };
        assert_eq!(format_mean_std("mse", &tiny), "0.0001235 ± 0.0000042");
    }

    #[test]
    fn serde_round_trip() {
        let t = table();
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["rows"][0]["cells"][0]["best"], true);
        assert!(v["rows"][2]["cells"][1].is_null());
        let back: PaperTable = serde_json::from_value(v).unwrap();
        assert_eq!(back.to_markdown(), t.to_markdown());
    }
}
