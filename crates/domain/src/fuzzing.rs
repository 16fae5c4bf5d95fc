//! Entry points for fuzzing the parsers that read user input: `fuzz/` drives them with
//! cargo-fuzz (libFuzzer), `tests/fuzz_smoke.rs` with a fixed corpus of mutations on stable.
//! Each panics only when an invariant breaks; rejecting the input is a normal outcome.

use crate::dataset::{self, DataFormat, ParseOptions};
use crate::run::RunConfig;
use crate::task::TaskFamily;

const FORMATS: [DataFormat; 4] = [DataFormat::Jsonl, DataFormat::Csv, DataFormat::GlueTsv, DataFormat::BigBench];
const GLUE_TASKS: [&str; 10] = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli", "bogus"];

/// The parse options a fuzz input's first byte selects: format, task family, GLUE task.
pub fn upload_options(sel: u8) -> ParseOptions {
    let mut opts = ParseOptions::new(FORMATS[(sel & 3) as usize], TaskFamily::ALL[((sel >> 2) & 3) as usize]);
    if opts.format == DataFormat::GlueTsv {
        opts.glue_task = Some(GLUE_TASKS[(sel >> 4) as usize % GLUE_TASKS.len()].to_string());
    }
    opts
}

/// Parses `data` as an upload; the first byte picks the options ([`upload_options`]).
pub fn dataset_upload(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let opts = upload_options(sel);
    let lines = body.split(|b| *b == b'\n').count();
    match dataset::parse(body, &opts) {
        Ok(parsed) => {
            assert!(!parsed.examples.is_empty(), "an accepted dataset has examples");
            assert_eq!(parsed.report.rows, parsed.examples.len(), "the report counts every example");
            assert_eq!(parsed.report.rows_per_split.values().sum::<usize>(), parsed.examples.len());
            if parsed.task_family == TaskFamily::Classification {
                for e in &parsed.examples {
                    let dataset::Target::Class(c) = &e.target else { panic!("classification target {:?}", e.target) };
                    assert!(parsed.label_set.contains(c), "label {c:?} missing from the label set");
                }
            }
        }
        Err(invalid) => {
            assert!(!invalid.errors.is_empty(), "a rejection says why");
            for e in &invalid.errors {
                assert!(!e.message.is_empty(), "every problem has a message");
                // BIG-bench counts examples as lines, which a one-line file can hold many of.
                if opts.format != DataFormat::BigBench {
                    assert!(e.line <= lines + 1, "line {} of a {lines}-line file: {}", e.line, e.message);
                }
            }
        }
    }
}

/// Decodes `data` as a run config JSON and validates it; the first two bytes give the budget.
pub fn run_config(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let budget = u32::from(u16::from_le_bytes([data[0], data[1]]));
    if let Ok(config) = serde_json::from_slice::<RunConfig>(&data[2..]) {
        if config.validate(budget).is_ok() {
            // A config that validates is usable: training starts at a positive rank no lower
            // than the budget.
            let init = config.method.init_rank(budget);
            assert!(init >= 1 && init >= budget, "init rank {init} for budget {budget}");
            let round_trip: RunConfig = serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
            assert_eq!(serde_json::to_value(&round_trip).unwrap(), serde_json::to_value(&config).unwrap());
        }
    }
}
