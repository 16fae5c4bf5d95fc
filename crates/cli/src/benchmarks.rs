//! `rankfit benchmarks install`: registers the built-in public benchmark suite from the
//! shipped BIG-bench assets, one dataset per task family member, owned by no team (every
//! team reads and runs on it; nobody changes it):
//!
//! | dataset | family | source |
//! | --- | --- | --- |
//! | epistemic_reasoning, movie_dialog_same_or_different, multiemo | classification | BIG-bench task.json, hashed 80/10/10 split |
//! | xsum | summarization | BIG-bench gem/xsum, hashed 80/10/10 split |
//! | instructions | instruction | natural_instructions subtasks (train), held-out subtasks (validation), hhh_alignment (test) |
//!
//! Each task keeps its first `max_examples` examples with a non-empty input (file order),
//! so the suite is the same on every installation with the same cap; the cap is part of
//! the suite's name.

use std::path::Path;

use anyhow::Context;
use rankfit_domain::dataset::suite::{canonical, ParsedSuite, SuiteDataset};
use rankfit_domain::dataset::{self, DataFormat, ParseOptions, ParsedDataset};
use rankfit_domain::task::TaskFamily;
use rankfit_store::suites::{self, NewSuite};
use uuid::Uuid;

use crate::{assets, db, Global};

/// BIG-bench classification tasks in the suite, with their dataset keys.
const CLASSIFICATION: &[(&str, &str)] = &[
    ("epistemic_reasoning", "epistemic_reasoning"),
    ("movie_dialog_same_or_different", "movie_dialog_same_or_different"),
    ("multiemo/all_sentence_en", "multiemo"),
];

/// The suite's name for a cap (0: every example).
pub fn suite_name(max_examples: usize) -> String {
    if max_examples == 0 {
        "BIG-bench".to_string()
    } else {
        format!("BIG-bench (≤{max_examples} per task)")
    }
}

/// A BIG-bench task: its first `max_examples` examples with a non-empty input (some
/// task files hold a few empty ones, e.g. multiemo), parsed; and how many were dropped.
fn bigbench(assets_dir: &Path, task: &str, family: TaskFamily, max_examples: usize) -> anyhow::Result<(ParsedDataset, usize)> {
    let path = rankfit_train::assets::ensure_bigbench_task(assets_dir, task)?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut raw: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))?;
    let examples = raw.get_mut("examples").and_then(|e| e.as_array_mut()).with_context(|| format!("{} has no examples", path.display()))?;
    let before = examples.len();
    examples.retain(|e| e.get("input").and_then(|i| i.as_str()).is_some_and(|i| !i.trim().is_empty()));
    let dropped = before - examples.len();
    if max_examples > 0 {
        examples.truncate(max_examples);
    }
    let parsed = dataset::parse(&serde_json::to_vec(&raw)?, &ParseOptions::new(DataFormat::BigBench, family))
        .map_err(|e| anyhow::anyhow!("BIG-bench {task}: {e}"))?;
    Ok((parsed, dropped))
}

fn member(key: &str, benchmark: &str, ds: ParsedDataset, note: String) -> anyhow::Result<SuiteDataset> {
    let family = ds.task_family;
    let (jsonl, options, parsed) = canonical(family, &ds.examples).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    Ok(SuiteDataset {
        key: key.to_string(),
        task_family: family,
        primary_metric: family.primary_metric().to_string(),
        benchmark: benchmark.to_string(),
        sources: vec![format!("{benchmark}: {} examples{note}, splits {:?}", parsed.examples.len(), parsed.report.rows_per_split)],
        jsonl,
        options,
        parsed,
    })
}

/// The suite from the assets (read and validated; nothing stored).
pub fn builtin_suite(assets_dir: &Path, max_examples: usize) -> anyhow::Result<ParsedSuite> {
    let note = |dropped: usize| {
        let cap = if max_examples == 0 { String::new() } else { format!(" (the first {max_examples})") };
        let empty = if dropped == 0 { String::new() } else { format!(", {dropped} with an empty input left out") };
        format!("{cap}{empty}")
    };
    let mut datasets = Vec::new();
    for (task, key) in CLASSIFICATION {
        let (ds, dropped) = bigbench(assets_dir, task, TaskFamily::Classification, max_examples)?;
        datasets.push(member(key, &format!("bigbench/{task}"), ds, note(dropped))?);
    }
    let (xsum, dropped) = bigbench(assets_dir, "gem/xsum", TaskFamily::Summarization, max_examples)?;
    datasets.push(member("xsum", "bigbench/gem/xsum", xsum, note(dropped))?);
    // The mix caps each subtask itself; hhh_alignment (the test split) is kept whole.
    let per_task = if max_examples == 0 { usize::MAX } else { max_examples };
    let mix = rankfit_train::causal::tasks::instruction_mix(assets_dir, per_task)?;
    let mix_note = format!(" (≤{per_task} per natural_instructions subtask; all of hhh_alignment)");
    datasets.push(member(
        "instructions",
        "bigbench/natural_instructions+hhh_alignment",
        mix,
        if max_examples == 0 { String::new() } else { mix_note },
    )?);
    Ok(ParsedSuite { datasets, ignored: Vec::new() })
}

/// Installs the suite unless a public suite of that name exists; prints what it did.
pub async fn install(g: &Global, max_examples: usize) -> anyhow::Result<()> {
    let name = suite_name(max_examples);
    let db = db::Database::open(g).await?;
    let result = async {
        if let Some(existing) = suites::find_public(&db.pool, &name).await? {
            println!("the public suite {name:?} is already installed ({})", existing.id);
            return Ok(());
        }
        let dir = g.assets_dir();
        assets::fetch_bigbench(&dir)?;
        let suite = tokio::task::spawn_blocking(move || builtin_suite(&dir, max_examples)).await??;
        let rows = suite.datasets.iter().map(|d| suites::new_dataset(None, &name, d)).collect::<Result<Vec<_>, _>>()?;
        let store = rankfit_store::ArtifactStore::open(&g.artifacts_location())?;
        let new =
            NewSuite { id: Uuid::new_v4(), team_id: None, name: name.clone(), kind: "builtin".into(), report: suites::report(&suite) };
        let (row, datasets) = suites::create(&db.pool, &store, &new, rows).await?;
        println!("installed the public suite {name:?} ({}):", row.id);
        for d in datasets {
            println!("  {} — {}, {} rows, splits {}, ranked by {}", d.name, d.task_family, d.row_count, d.splits.0, d.primary_metric);
        }
        anyhow::Ok(())
    }
    .await;
    db.close().await?;
    result
}
