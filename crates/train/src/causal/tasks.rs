//! Built-in decoder tasks from the BIG-bench files under the assets dir:
//!
//! - summarization: `gem/xsum` (document -> one-sentence summary), split 80/10/10 by the
//!   domain's deterministic content hash;
//! - instruction tuning: natural_instructions subtasks for training ([`NI_TRAIN`]), other
//!   subtasks whose instructions the model never saw for validation ([`NI_HELDOUT`]), and
//!   hhh_alignment (the preferred answer as reference) for test.
//!
//! Both are ordinary [`ParsedDataset`]s; [`to_jsonl`] writes one as an uploadable JSONL
//! file with explicit splits.

use std::path::Path;

use rankfit_domain::dataset::{parse, DataFormat, Example, ParseOptions, ParsedDataset, Split, Target, ValidationReport};
use rankfit_domain::task::TaskFamily;
use serde_json::json;

use crate::assets::ensure_bigbench_task;
use crate::TrainError;

/// natural_instructions subtasks trained on.
pub const NI_TRAIN: &[&str] = &[
    "natural_instructions/subtask007_mctaco_answer_generation_transient_stationary",
    "natural_instructions/subtask036_qasc_topic_word_to_generate_related_fact",
    "natural_instructions/subtask045_miscellaneous_sentence_paraphrasing",
    "natural_instructions/subtask047_misc_answering_science_questions",
];
/// natural_instructions subtasks held out (unseen instructions) for validation.
pub const NI_HELDOUT: &[&str] = &[
    "natural_instructions/subtask013_mctaco_answer_generation_absolute_timepoint",
    "natural_instructions/subtask059_ropes_story_generation",
];
/// hhh_alignment subsets used as the test split.
pub const HHH: &[&str] = &["hhh_alignment/harmless", "hhh_alignment/helpful", "hhh_alignment/honest", "hhh_alignment/other"];

fn load(assets_dir: &Path, task: &str, family: TaskFamily) -> Result<ParsedDataset, TrainError> {
    let path = ensure_bigbench_task(assets_dir, task)?;
    let bytes = std::fs::read(&path)?;
    parse(&bytes, &ParseOptions::new(DataFormat::BigBench, family)).map_err(|e| TrainError::Data(format!("BIG-bench {task}: {e}")))
}

/// `gem/xsum` as a summarization dataset.
pub fn xsum(assets_dir: &Path) -> Result<ParsedDataset, TrainError> {
    load(assets_dir, "gem/xsum", TaskFamily::Summarization)
}

/// The instruction-tuning mix: at most `per_task` examples of every training subtask
/// (train), of every held-out subtask (validation) and all of hhh_alignment (test).
pub fn instruction_mix(assets_dir: &Path, per_task: usize) -> Result<ParsedDataset, TrainError> {
    let mut examples: Vec<Example> = Vec::new();
    for (tasks, split, limit) in
        [(NI_TRAIN, Split::Train, per_task), (NI_HELDOUT, Split::Validation, per_task), (HHH, Split::Test, usize::MAX)]
    {
        for task in tasks {
            let ds = load(assets_dir, task, TaskFamily::Instruction)?;
            examples.extend(ds.examples.into_iter().take(limit).map(|e| Example { split, ..e }));
        }
    }
    let mut report = ValidationReport { rows: examples.len(), ..Default::default() };
    report.count_splits(&examples);
    Ok(ParsedDataset { task_family: TaskFamily::Instruction, examples, label_set: Vec::new(), report })
}

/// A summarization or instruction dataset as JSONL with explicit splits: `{document,
/// summary, split}` or Alpaca's `{instruction, input, output, split}`.
pub fn to_jsonl(ds: &ParsedDataset) -> Result<String, TrainError> {
    let mut out = String::new();
    for e in &ds.examples {
        let Target::Text(t) = &e.target else {
            return Err(TrainError::Data("only text targets can be written as JSONL here".into()));
        };
        let row = match ds.task_family {
            TaskFamily::Summarization => json!({"document": e.text_a, "summary": t, "split": e.split.as_str()}),
            TaskFamily::Instruction => {
                json!({"instruction": e.text_a, "input": e.text_b.clone().unwrap_or_default(), "output": t, "split": e.split.as_str()})
            }
            other => return Err(TrainError::Data(format!("{other} datasets are not written as JSONL here"))),
        };
        out.push_str(&row.to_string());
        out.push('\n');
    }
    Ok(out)
}
