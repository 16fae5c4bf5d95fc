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
//! Each task keeps its first `max_examples` examples (file order), so the suite is the
//! same on every installation with the same cap; the cap is part of the suite's name.

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

fn bigbench(assets_dir: &Path, task: &str, family: TaskFamily) -> anyhow::Result<ParsedDataset> {
    let path = rankfit_train::assets::ensure_bigbench_task(assets_dir, task)?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    dataset::parse(&bytes, &ParseOptions::new(DataFormat::BigBench, family)).map_err(|e| anyhow::anyhow!("BIG-bench {task}: {e}"))
}

fn member(key: &str, benchmark: &str, ds: ParsedDataset, max_examples: usize) -> anyhow::Result<SuiteDataset> {
    let family = ds.task_family;
    let total = ds.examples.len();
    let kept = if max_examples == 0 { total } else { total.min(max_examples) };
    let (jsonl, options, parsed) = canonical(family, &ds.examples[..kept]).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    Ok(SuiteDataset {
        key: key.to_string(),
        task_family: family,
        primary_metric: family.primary_metric().to_string(),
        benchmark: benchmark.to_string(),
        sources: vec![format!("{benchmark}: {kept} of {total} examples, splits {:?}", parsed.report.rows_per_split)],
        jsonl,
        options,
        parsed,
    })
}

/// The suite from the assets (read and validated; nothing stored).
pub fn builtin_suite(assets_dir: &Path, max_examples: usize) -> anyhow::Result<ParsedSuite> {
    let mut datasets = Vec::new();
    for (task, key) in CLASSIFICATION {
        let ds = bigbench(assets_dir, task, TaskFamily::Classification)?;
        datasets.push(member(key, &format!("bigbench/{task}"), ds, max_examples)?);
    }
    datasets.push(member("xsum", "bigbench/gem/xsum", bigbench(assets_dir, "gem/xsum", TaskFamily::Summarization)?, max_examples)?);
    // The mix caps each subtask itself; hhh_alignment (the test split) is kept whole.
    let per_task = if max_examples == 0 { usize::MAX } else { max_examples };
    let mix = rankfit_train::causal::tasks::instruction_mix(assets_dir, per_task)?;
    datasets.push(member("instructions", "bigbench/natural_instructions+hhh_alignment", mix, 0)?);
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
        let new = NewSuite { id: Uuid::new_v4(), team_id: None, name: name.clone(), kind: "builtin".into(), report: suites::report(&suite) };
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
