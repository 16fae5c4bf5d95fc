//! GLUE's tab-separated files, as distributed by the GLUE benchmark (`train.tsv`,
//! `dev.tsv`; the `test.tsv` files carry no labels and are rejected).
//!
//! Layouts (columns by position for CoLA, by header name for the rest):
//!
//! | task | header | text | pair | target |
//! | --- | --- | --- | --- | --- |
//! | cola | none: `source, label, original label ('*' or empty), sentence` | 4th | - | 2nd (0/1) |
//! | sst2 | `sentence label` | sentence | - | label (0/1) |
//! | mrpc | `Quality #1 ID #2 ID #1 String #2 String` | #1 String | #2 String | Quality (0/1) |
//! | qqp | `id qid1 qid2 question1 question2 is_duplicate` | question1 | question2 | is_duplicate (0/1) |
//! | stsb | `index genre filename year old_index source1 source2 sentence1 sentence2 score` | sentence1 | sentence2 | score (0..5, regression) |
//! | mnli | `index promptID pairID genre ... sentence1 sentence2 label1 [label2..label5] gold_label` | sentence1 | sentence2 | gold_label |
//! | qnli | `index question sentence label` | question | sentence | label (entailment/not_entailment) |
//! | rte | `index sentence1 sentence2 label` | sentence1 | sentence2 | label (entailment/not_entailment) |
//! | wnli | `index sentence1 sentence2 label` | sentence1 | sentence2 | label (0/1) |
//!
//! Quoting is disabled, as GLUE's own loaders do: sentences contain unbalanced `"`
//! (MNLI, QQP, MRPC), so a quote is an ordinary character and every line is one row.
//! MRPC's header starts with a UTF-8 byte-order mark in the original files; it is
//! stripped. A handful of rows in the original QQP training file have a missing
//! field; like every row with the wrong number of columns they are reported with their
//! line (remove them, or fix them, and upload again).

use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::record::{check_text, parse_score, Draft, DraftTarget, LabelKind, Parsed, Place};
use super::{ParseOptions, MAX_ROWS};
use crate::task::TaskFamily;

/// The GLUE tasks whose TSV layout rankfit reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlueTask {
    Cola,
    Sst2,
    Mrpc,
    Qqp,
    Stsb,
    Mnli,
    Qnli,
    Rte,
    Wnli,
}

impl GlueTask {
    pub const ALL: [GlueTask; 9] = [
        GlueTask::Cola,
        GlueTask::Sst2,
        GlueTask::Mrpc,
        GlueTask::Qqp,
        GlueTask::Stsb,
        GlueTask::Mnli,
        GlueTask::Qnli,
        GlueTask::Rte,
        GlueTask::Wnli,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GlueTask::Cola => "cola",
            GlueTask::Sst2 => "sst2",
            GlueTask::Mrpc => "mrpc",
            GlueTask::Qqp => "qqp",
            GlueTask::Stsb => "stsb",
            GlueTask::Mnli => "mnli",
            GlueTask::Qnli => "qnli",
            GlueTask::Rte => "rte",
            GlueTask::Wnli => "wnli",
        }
    }

    /// Accepts the names in any case, with or without a dash (`SST-2`, `sts-b`).
    pub fn parse(s: &str) -> Option<Self> {
        let norm: String = s.trim().to_ascii_lowercase().chars().filter(|c| *c != '-' && *c != '_').collect();
        Self::ALL.into_iter().find(|t| t.as_str() == norm)
    }

    /// STS-B is a regression task; the rest are classification.
    pub fn task_family(self) -> TaskFamily {
        match self {
            GlueTask::Stsb => TaskFamily::Regression,
            _ => TaskFamily::Classification,
        }
    }

    /// The valid labels (empty for STS-B, whose target is a score).
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            GlueTask::Cola | GlueTask::Sst2 | GlueTask::Mrpc | GlueTask::Qqp | GlueTask::Wnli => &["0", "1"],
            GlueTask::Stsb => &[],
            GlueTask::Mnli => &["contradiction", "entailment", "neutral"],
            GlueTask::Qnli | GlueTask::Rte => &["entailment", "not_entailment"],
        }
    }

    /// Header columns (None for CoLA, whose files have no header), text column, pair
    /// column, target column.
    fn layout(self) -> (Option<&'static [&'static str]>, &'static str, Option<&'static str>, &'static str) {
        match self {
            GlueTask::Cola => (None, "sentence", None, "label"),
            GlueTask::Sst2 => (Some(&["sentence", "label"]), "sentence", None, "label"),
            GlueTask::Mrpc => (Some(&["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]), "#1 String", Some("#2 String"), "Quality"),
            GlueTask::Qqp => {
                (Some(&["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]), "question1", Some("question2"), "is_duplicate")
            }
            GlueTask::Stsb => (
                Some(&["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]),
                "sentence1",
                Some("sentence2"),
                "score",
            ),
            GlueTask::Mnli => (Some(&["index", "sentence1", "sentence2", "gold_label"]), "sentence1", Some("sentence2"), "gold_label"),
            GlueTask::Qnli => (Some(&["index", "question", "sentence", "label"]), "question", Some("sentence"), "label"),
            GlueTask::Rte | GlueTask::Wnli => {
                (Some(&["index", "sentence1", "sentence2", "label"]), "sentence1", Some("sentence2"), "label")
            }
        }
    }
}

/// CoLA's fixed columns (its files have no header).
const COLA_COLUMNS: [&str; 4] = ["source", "label", "original label", "sentence"];

pub(crate) fn parse(text: &str, opts: &ParseOptions, problems: &mut Problems) -> Parsed {
    let task = match opts.glue_task.as_deref() {
        None => {
            problems.error(0, "the glue_tsv format needs the GLUE task: one of cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli");
            return Parsed::lines(Vec::new());
        }
        Some(name) => match GlueTask::parse(name) {
            Some(t) => t,
            None => {
                problems
                    .error(0, format!("unknown GLUE task {name:?}; expected one of cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli"));
                return Parsed::lines(Vec::new());
            }
        },
    };
    if task.task_family() != opts.task_family {
        problems.error(
            0,
            format!(
                "GLUE {} is a {} task, but the dataset was declared as {}; choose task family {}",
                task.as_str(),
                task.task_family(),
                opts.task_family,
                task.task_family()
            ),
        );
        return Parsed::lines(Vec::new());
    }

    let mut reader =
        ::csv::ReaderBuilder::new().delimiter(b'\t').quoting(false).has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut records = reader.records().peekable();
    let (header_cols, text_default, pair_default, target_default) = task.layout();

    // Column indices: (text, pair, target) and the expected number of columns.
    let (columns, text_i, pair_i, target_i) = match header_cols {
        None => {
            if let Some(Ok(first)) = records.peek() {
                if first.get(0).map(str::trim) == Some("index") {
                    problems.error(
                        1,
                        "this is the layout of CoLA's test.tsv (index, sentence), which has no labels; upload train.tsv or dev.tsv (4 columns, no header: source, label, original label, sentence)",
                    );
                    return Parsed::lines(Vec::new());
                }
            }
            if opts.text_column.is_some() || opts.text_pair_column.is_some() || opts.label_column.is_some() {
                problems.warn(0, "CoLA files have no header, so the column options are ignored");
            }
            (COLA_COLUMNS.iter().map(|s| s.to_string()).collect::<Vec<_>>(), 3, None, 1)
        }
        Some(required) => {
            let header: Vec<String> = match records.next() {
                None => {
                    problems
                        .error(0, format!("the file is empty; expected the GLUE {} header row: {}", task.as_str(), required.join("<TAB>")));
                    return Parsed::lines(Vec::new());
                }
                Some(Err(e)) => {
                    problems.error(1, format!("could not read the header row: {e}"));
                    return Parsed::lines(Vec::new());
                }
                Some(Ok(h)) => h.iter().map(|c| c.trim().trim_start_matches('\u{feff}').to_string()).collect(),
            };
            let missing: Vec<&str> = required.iter().copied().filter(|c| !header.iter().any(|h| h == c)).collect();
            if !missing.is_empty() {
                let hint = if header.first().map(String::as_str) == Some("index") && !header.iter().any(|h| h == target_default) {
                    " (GLUE test.tsv files have no labels; upload train.tsv or dev.tsv)"
                } else {
                    ""
                };
                problems.error(
                    1,
                    format!(
                        "the header row lacks the GLUE {} column(s) {}; expected a header like: {}{hint}",
                        task.as_str(),
                        missing.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", "),
                        required.join("<TAB>")
                    ),
                );
                return Parsed::lines(Vec::new());
            }
            let mut find = |over: &Option<String>, default: &str, role: &str| -> Option<usize> {
                let name = over.as_deref().unwrap_or(default);
                let found = header.iter().position(|h| h == name);
                if found.is_none() {
                    problems.error(1, format!("the {role} column \"{name}\" is not in the header row [{}]", header.join(", ")));
                }
                found
            };
            let text_i = find(&opts.text_column, text_default, "text");
            let pair_i = match (&opts.text_pair_column, pair_default) {
                (None, None) => Some(None),
                (over, default) => find(over, default.unwrap_or(""), "text pair").map(Some),
            };
            let target_i = find(&opts.label_column, target_default, "label");
            match (text_i, pair_i, target_i) {
                (Some(t), Some(p), Some(l)) => (header, t, p, l),
                _ => return Parsed::lines(Vec::new()),
            }
        }
    };

    let labels = task.labels();
    let mut drafts = Vec::new();
    let mut rows = 0usize;
    for rec in records {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                problems.error(line, format!("could not read the row: {e}"));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        rows += 1;
        if rows > MAX_ROWS {
            problems.error(line, format!("the file has more than {MAX_ROWS} rows, the limit; split it into several datasets"));
            break;
        }
        if rec.len() != columns.len() {
            problems
                .error(line, format!("expected {} tab-separated columns ({}), found {}", columns.len(), abbreviate(&columns), rec.len()));
            continue;
        }
        let mut ok = true;
        let text_a = &rec[text_i];
        if text_a.trim().is_empty() {
            problems.error(line, format!("column \"{}\" is empty; expected a non-empty text", columns[text_i]));
            ok = false;
        } else {
            ok &= check_text(&columns[text_i], text_a, line, Place::Line, problems);
        }
        let text_b = match pair_i {
            None => None,
            Some(i) if rec[i].trim().is_empty() => {
                problems.error(line, format!("column \"{}\" is empty; this GLUE task pairs two texts", columns[i]));
                ok = false;
                None
            }
            Some(i) => {
                ok &= check_text(&columns[i], &rec[i], line, Place::Line, problems);
                Some(rec[i].to_string())
            }
        };
        let raw_target = rec[target_i].trim();
        let target = if task == GlueTask::Stsb {
            match parse_score(raw_target) {
                Ok(v) => Some(DraftTarget::Score(v)),
                Err(msg) => {
                    problems.error(line, format!("column \"{}\" {msg}", columns[target_i]));
                    None
                }
            }
        } else if raw_target.is_empty() {
            Some(DraftTarget::MissingClass { field: columns[target_i].clone(), empty: true })
        } else if opts.label_column.is_none() && !labels.contains(&raw_target) {
            problems.error(
                line,
                format!(
                    "column \"{}\" is {raw_target:?}, which is not a GLUE {} label; expected one of [{}]",
                    columns[target_i],
                    task.as_str(),
                    labels.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", ")
                ),
            );
            None
        } else {
            Some(DraftTarget::Class { label: raw_target.to_string(), kind: LabelKind::Text })
        };
        if let (true, Some(target)) = (ok, target) {
            drafts.push(Draft { line, text_a: text_a.to_string(), text_b, target, split: None });
        }
    }
    let known_labels = if opts.label_column.is_none() { labels.iter().map(|l| l.to_string()).collect() } else { Vec::new() };
    Parsed { drafts, known_labels, place: Place::Line }
}

fn abbreviate(columns: &[String]) -> String {
    if columns.len() <= 6 {
        columns.join(", ")
    } else {
        format!("{}, ..., {}", columns[..3].join(", "), columns[columns.len() - 2..].join(", "))
    }
}
