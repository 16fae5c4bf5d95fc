//! Several files registered as one suite of datasets: the GLUE benchmark uploaded as its
//! official folder (or a zip of it), and the canonical JSON Lines form every multi-file
//! dataset is stored in.
//!
//! # GLUE
//! The folder as GLUE's `download_glue_data.py` writes it: one directory per task
//! (`CoLA`, `SST-2`, `MRPC`, `QQP`, `STS-B`, `MNLI`, `QNLI`, `RTE`, `WNLI`; any case, any
//! parent directories) holding `train.tsv` and `dev.tsv` (MNLI: `dev_matched.tsv` and
//! `dev_mismatched.tsv`). GLUE's `test.tsv` files have no labels, so, as in the papers
//! rankfit compares against (AdaLoRA's Table 1), the **dev** file is the reported test
//! split, and the validation split that picks checkpoints is carved from `train.tsv`:
//! the rows whose content hash falls in the validation decile (see [`super::split`]), at
//! least one. Nothing selects on the dev file.
//!
//! MNLI is scored on `dev_matched.tsv` (matched accuracy); `dev_mismatched.tsv` is
//! validated like the rest (a malformed file rejects the upload) and reported, not stored.
//! Other files (test files, `diagnostic/`, STS-B's `original/`, MRPC's raw `.txt`) are
//! listed as ignored. Every problem names its file and line; one bad file rejects the
//! whole suite.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::split::example_hash;
use super::{parse, DataFormat, Example, ParseOptions, ParsedDataset, Split, Target};
use crate::dataset::GlueTask;
use crate::task::TaskFamily;

/// One uploaded file of a suite: its path inside the folder or zip, and its bytes.
#[derive(Debug, Clone)]
pub struct SuiteFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// A problem in one file of a suite. `line` is 1-based; 0 means the whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{} line {}: {}", self.file, self.line, self.message)
        }
    }
}

/// One dataset of a suite, ready to store: the canonical JSON Lines file, the options
/// that read it, and the result of reading it (what every run will see).
#[derive(Debug, Clone)]
pub struct SuiteDataset {
    /// Short name within the suite (`cola`, `mnli`, ...).
    pub key: String,
    pub task_family: TaskFamily,
    /// The metric its leaderboards rank by (MCC for CoLA, F1 for MRPC and QQP, ...).
    pub primary_metric: String,
    /// Where it came from, e.g. `glue/cola`.
    pub benchmark: String,
    pub jsonl: String,
    pub options: ParseOptions,
    pub parsed: ParsedDataset,
    /// The source files and what became of them.
    pub sources: Vec<String>,
}

/// A parsed suite: its datasets and what the upload held besides.
#[derive(Debug, Clone)]
pub struct ParsedSuite {
    pub datasets: Vec<SuiteDataset>,
    /// Files that were not read, with the reason.
    pub ignored: Vec<String>,
}

impl GlueTask {
    /// The metric GLUE reports first for the task: Matthews correlation for CoLA, F1 for
    /// MRPC and QQP (accuracy is reported too), Pearson for STS-B (and Spearman), matched
    /// accuracy for MNLI, accuracy for the rest.
    pub fn primary_metric(self) -> &'static str {
        match self {
            GlueTask::Cola => "mcc",
            GlueTask::Mrpc | GlueTask::Qqp => "f1",
            GlueTask::Stsb => "pearson",
            _ => "accuracy",
        }
    }

    /// The task's directory name in the official GLUE folder.
    pub fn folder(self) -> &'static str {
        match self {
            GlueTask::Cola => "CoLA",
            GlueTask::Sst2 => "SST-2",
            GlueTask::Mrpc => "MRPC",
            GlueTask::Qqp => "QQP",
            GlueTask::Stsb => "STS-B",
            GlueTask::Mnli => "MNLI",
            GlueTask::Qnli => "QNLI",
            GlueTask::Rte => "RTE",
            GlueTask::Wnli => "WNLI",
        }
    }

    /// The dev file(s) scored as the test split, then files validated but not stored.
    fn dev_files(self) -> (&'static str, &'static [&'static str]) {
        match self {
            GlueTask::Mnli => ("dev_matched.tsv", &["dev_mismatched.tsv"]),
            _ => ("dev.tsv", &[]),
        }
    }
}

/// The JSON Lines options that read [`to_jsonl`]'s output for `family`.
pub fn canonical_options(family: TaskFamily) -> ParseOptions {
    ParseOptions::new(DataFormat::Jsonl, family)
}

/// Writes examples as JSON Lines with explicit splits, in the default field names of the
/// family (`text`, `text_pair`, `label` | `score`; `document`, `summary`; `instruction`,
/// `input`, `output`), so that [`parse`] with [`canonical_options`] reads back the same
/// examples in the same order.
pub fn to_jsonl(family: TaskFamily, examples: &[Example]) -> String {
    let mut out = String::new();
    for e in examples {
        let split = e.split.as_str();
        let row = match (family, &e.target) {
            (TaskFamily::Classification, Target::Class(label)) => {
                json!({"text": e.text_a, "text_pair": e.text_b, "label": label, "split": split})
            }
            (TaskFamily::Regression, Target::Score(score)) => {
                json!({"text": e.text_a, "text_pair": e.text_b, "score": score, "split": split})
            }
            (TaskFamily::Summarization, Target::Text(t)) => json!({"document": e.text_a, "summary": t, "split": split}),
            (TaskFamily::Instruction, Target::Text(t)) => {
                json!({"instruction": e.text_a, "input": e.text_b.clone().unwrap_or_default(), "output": t, "split": split})
            }
            // A parsed dataset's targets always match its family.
            (_, Target::Class(label)) => json!({"text": e.text_a, "label": label, "split": split}),
            (_, Target::Score(score)) => json!({"text": e.text_a, "score": score, "split": split}),
            (_, Target::Text(t)) => json!({"document": e.text_a, "summary": t, "split": split}),
        };
        out.push_str(&row.to_string());
        out.push('\n');
    }
    out
}

/// Stores `examples` canonically: the JSON Lines text and the dataset read back from it.
pub fn canonical(family: TaskFamily, examples: &[Example]) -> Result<(String, ParseOptions, ParsedDataset), super::InvalidDataset> {
    let jsonl = to_jsonl(family, examples);
    let options = canonical_options(family);
    let parsed = parse(jsonl.as_bytes(), &options)?;
    Ok((jsonl, options, parsed))
}

/// The task a path belongs to (by its parent directory) and the file's name.
fn locate(path: &str) -> Option<(GlueTask, &str)> {
    let mut parts = path.rsplit(['/', '\\']);
    let file = parts.next()?;
    let dir = parts.next()?;
    Some((GlueTask::parse(dir)?, file))
}

/// Parses a GLUE folder (see the module docs) into one dataset per task present.
pub fn parse_glue(files: &[SuiteFile]) -> Result<ParsedSuite, Vec<FileError>> {
    let mut by_task: BTreeMap<usize, BTreeMap<String, &SuiteFile>> = BTreeMap::new();
    let mut ignored = Vec::new();
    for f in files {
        match locate(&f.path) {
            Some((task, name)) if name.ends_with(".tsv") && !name.starts_with("test") => {
                let i = GlueTask::ALL.iter().position(|t| *t == task).unwrap_or(0);
                by_task.entry(i).or_default().insert(name.to_string(), f);
            }
            Some((_, name)) if name.starts_with("test") => ignored.push(format!("{}: GLUE test files have no labels", f.path)),
            _ => ignored.push(format!("{}: not a GLUE task file (<Task>/train.tsv, <Task>/dev.tsv)", f.path)),
        }
    }
    let mut errors = Vec::new();
    if by_task.is_empty() {
        errors.push(FileError {
            file: "(upload)".into(),
            line: 0,
            message: "no GLUE task files found; expected the official layout, e.g. CoLA/train.tsv and CoLA/dev.tsv, MNLI/dev_matched.tsv"
                .into(),
        });
        return Err(errors);
    }
    let mut datasets = Vec::new();
    for (i, named) in by_task {
        let task = GlueTask::ALL[i];
        match glue_task(task, &named, &mut ignored) {
            Ok(d) => datasets.push(d),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(ParsedSuite { datasets, ignored })
    } else {
        Err(errors)
    }
}

fn glue_task(task: GlueTask, named: &BTreeMap<String, &SuiteFile>, ignored: &mut Vec<String>) -> Result<SuiteDataset, Vec<FileError>> {
    let (dev_name, extra_dev) = task.dev_files();
    let mut errors = Vec::new();
    let mut read = |name: &str, split: Split| -> Option<(String, ParsedDataset)> {
        let Some(f) = named.get(name) else {
            errors.push(FileError {
                file: format!("{}/{name}", task.folder()),
                line: 0,
                message: format!("missing: GLUE {} needs {}/train.tsv and {}/{dev_name}", task.folder(), task.folder(), task.folder()),
            });
            return None;
        };
        let mut opts = ParseOptions::new(DataFormat::GlueTsv, task.task_family());
        opts.glue_task = Some(task.as_str().to_string());
        // Every file is read as training rows (a file holding only test rows would be
        // refused on its own), then placed.
        opts.default_split = Some(Split::Train);
        match parse(&f.bytes, &opts) {
            Ok(mut p) => {
                p.examples.iter_mut().for_each(|e| e.split = split);
                Some((f.path.clone(), p))
            }
            Err(invalid) => {
                errors.extend(invalid.errors.into_iter().map(|e| FileError { file: f.path.clone(), line: e.line, message: e.message }));
                None
            }
        }
    };
    let train = read("train.tsv", Split::Train);
    let dev = read(dev_name, Split::Test);
    let extras: Vec<_> = extra_dev.iter().map(|name| (name, named.contains_key(*name), read(name, Split::Test))).collect();
    let (Some((train_path, train)), Some((dev_path, dev))) = (train, dev) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    for (name, present, parsed) in extras {
        match (present, parsed) {
            (true, Some((path, p))) => {
                ignored.push(format!("{path}: {} rows validated, not stored ({} is scored on {dev_name})", p.examples.len(), task.folder()))
            }
            _ => ignored.push(format!("{}/{name}: not in the upload", task.folder())),
        }
    }
    for (name, f) in named {
        if name != "train.tsv" && name != dev_name && !extra_dev.contains(&name.as_str()) {
            ignored.push(format!("{}: not a file of GLUE {}", f.path, task.folder()));
        }
    }

    let mut examples = carve_validation(train.examples);
    let train_rows = examples.len();
    examples.extend(dev.examples);
    let (jsonl, options, parsed) = canonical(task.task_family(), &examples).map_err(|e| {
        e.errors
            .into_iter()
            .map(|e| FileError { file: format!("{} (combined)", task.folder()), line: e.line, message: e.message })
            .collect::<Vec<_>>()
    })?;
    let val = parsed.split(Split::Validation).count();
    Ok(SuiteDataset {
        key: task.as_str().to_string(),
        task_family: task.task_family(),
        primary_metric: task.primary_metric().to_string(),
        benchmark: format!("glue/{}", task.as_str()),
        jsonl,
        options,
        sources: vec![
            format!("{train_path}: {} rows → train ({}) and validation ({val}, by content hash)", train_rows, train_rows - val),
            format!("{dev_path}: {} rows → test", parsed.examples.len() - train_rows),
        ],
        parsed,
    })
}

/// Moves the training rows whose content hash falls in the validation decile to
/// validation (at least one when there are two or more rows).
fn carve_validation(mut examples: Vec<Example>) -> Vec<Example> {
    let hashes: Vec<u64> = examples.iter().map(|e| example_hash(&e.text_a, e.text_b.as_deref())).collect();
    let mut moved = 0;
    for (e, h) in examples.iter_mut().zip(&hashes) {
        if super::split::split_for_hash(*h) == Split::Validation {
            e.split = Split::Validation;
            moved += 1;
        }
    }
    if moved == 0 && examples.len() >= 2 {
        if let Some(i) = (0..examples.len()).min_by_key(|&i| hashes[i]) {
            examples[i].split = Split::Validation;
        }
    }
    examples
}

/// A small synthetic GLUE folder in the official layout (paths under `glue_data/`), for
/// tests and examples: every task with its official header (CoLA's none), 20 training
/// rows (MNLI 21) and 6 dev rows each, MNLI's matched and mismatched dev files, STS-B's
/// float scores, MRPC's byte-order mark and unbalanced quotes, test files without labels
/// and the diagnostic set (both ignored).
pub fn sample_glue_folder() -> Vec<SuiteFile> {
    let file = |path: &str, text: &str| SuiteFile { path: path.into(), bytes: text.as_bytes().to_vec() };
    let mut files = Vec::new();
    let rows = |f: &dyn Fn(usize) -> String, n: usize| (0..n).map(f).collect::<Vec<_>>().join("\n");
    let cola = |i: usize| format!("gj04\t{}\t\tThe sentence number {i} is {}.", i % 2, if i.is_multiple_of(2) { "bad" } else { "good" });
    files.push(file("glue_data/CoLA/train.tsv", &rows(&cola, 20)));
    files.push(file("glue_data/CoLA/dev.tsv", &rows(&|i| cola(i + 100), 6)));
    files.push(file("glue_data/CoLA/test.tsv", "index\tsentence\n0\tNo label here."));
    let sst = |i: usize| format!("a {} film number {i} \t{}", if i.is_multiple_of(2) { "dull" } else { "great" }, i % 2);
    files.push(file("glue_data/SST-2/train.tsv", &format!("sentence\tlabel\n{}", rows(&sst, 20))));
    files.push(file("glue_data/SST-2/dev.tsv", &format!("sentence\tlabel\n{}", rows(&|i| sst(i + 100), 6))));
    let mrpc = |i: usize| format!("{}\t{i}\t{}\tThe firm said {i} \"things.\tThe company said {i} things.", i % 2, i + 1000);
    files.push(file("glue_data/MRPC/train.tsv", &format!("\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n{}", rows(&mrpc, 20))));
    files.push(file("glue_data/MRPC/dev.tsv", &format!("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n{}", rows(&|i| mrpc(i + 100), 6))));
    let qqp = |i: usize| format!("{i}\t{}\t{}\tHow do I learn {i}?\tWhat is the way to learn {i}?\t{}", 2 * i, 2 * i + 1, i % 2);
    let qqp_h = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate";
    files.push(file("glue_data/QQP/train.tsv", &format!("{qqp_h}\n{}", rows(&qqp, 20))));
    files.push(file("glue_data/QQP/dev.tsv", &format!("{qqp_h}\n{}", rows(&|i| qqp(i + 100), 6))));
    let sts = |i: usize| {
        format!(
            "{i}\tmain-captions\tMSRvid\t2012test\t{i:04}\tnone\tnone\tA man plays guitar {i}.\tA person plays music {i}.\t{:.3}",
            (i % 11) as f64 * 0.457
        )
    };
    let sts_h = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore";
    files.push(file("glue_data/STS-B/train.tsv", &format!("{sts_h}\n{}", rows(&sts, 20))));
    files.push(file("glue_data/STS-B/dev.tsv", &format!("{sts_h}\n{}", rows(&|i| sts(i + 100), 6))));
    files.push(file("glue_data/STS-B/original/sts-train.tsv", "raw"));
    let labels = ["contradiction", "entailment", "neutral"];
    let mnli_train_h = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label";
    let mnli_train = |i: usize| {
        format!("{i}\t{i}\t{i}e\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tPremise {i}.\tHypothesis {i}.\t{l}\t{l}", l = labels[i % 3])
    };
    let mnli_dev_h = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label";
    let mnli_dev = |i: usize| {
        format!(
            "{i}\t{i}\t{i}e\tslate\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tPremise {i}.\tHypothesis {i}.\t{l}\t{l}\t{l}\t{l}\t{l}\t{l}",
            l = labels[i % 3]
        )
    };
    files.push(file("glue_data/MNLI/train.tsv", &format!("{mnli_train_h}\n{}", rows(&mnli_train, 21))));
    files.push(file("glue_data/MNLI/dev_matched.tsv", &format!("{mnli_dev_h}\n{}", rows(&|i| mnli_dev(i + 100), 6))));
    files.push(file("glue_data/MNLI/dev_mismatched.tsv", &format!("{mnli_dev_h}\n{}", rows(&|i| mnli_dev(i + 200), 9))));
    files.push(file("glue_data/MNLI/test_matched.tsv", "index\tsentence1\tsentence2"));
    let ent = ["entailment", "not_entailment"];
    let qnli = |i: usize| format!("{i}\tWhat is {i}?\tIt is the number {i}.\t{}", ent[i % 2]);
    files.push(file("glue_data/QNLI/train.tsv", &format!("index\tquestion\tsentence\tlabel\n{}", rows(&qnli, 20))));
    files.push(file("glue_data/QNLI/dev.tsv", &format!("index\tquestion\tsentence\tlabel\n{}", rows(&|i| qnli(i + 100), 6))));
    let rte = |i: usize| format!("{i}\tThe cat {i} sat.\tA cat {i} sat.\t{}", ent[i % 2]);
    files.push(file("glue_data/RTE/train.tsv", &format!("index\tsentence1\tsentence2\tlabel\n{}", rows(&rte, 20))));
    files.push(file("glue_data/RTE/dev.tsv", &format!("index\tsentence1\tsentence2\tlabel\n{}", rows(&|i| rte(i + 100), 6))));
    let wnli = |i: usize| format!("{i}\tJohn {i} saw Bill; he waved.\tJohn {i} waved.\t{}", i % 2);
    files.push(file("glue_data/WNLI/train.tsv", &format!("index\tsentence1\tsentence2\tlabel\n{}", rows(&wnli, 20))));
    files.push(file("glue_data/WNLI/dev.tsv", &format!("index\tsentence1\tsentence2\tlabel\n{}", rows(&|i| wnli(i + 100), 6))));
    files.push(file("glue_data/diagnostic/diagnostic.tsv", "index\tsentence1\tsentence2"));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> SuiteFile {
        SuiteFile { path: path.into(), bytes: text.as_bytes().to_vec() }
    }

    #[test]
    fn a_glue_folder_becomes_nine_datasets_with_their_metrics() {
        let suite = parse_glue(&sample_glue_folder()).unwrap();
        let keys: Vec<_> = suite.datasets.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]);
        let metric = |k: &str| suite.datasets.iter().find(|d| d.key == k).unwrap().primary_metric.clone();
        assert_eq!(metric("cola"), "mcc");
        assert_eq!(metric("mrpc"), "f1");
        assert_eq!(metric("qqp"), "f1");
        assert_eq!(metric("stsb"), "pearson");
        assert_eq!(metric("mnli"), "accuracy");
        for d in &suite.datasets {
            let count = |s| d.parsed.split(s).count();
            assert_eq!(count(Split::Test), 6, "{}: dev rows are the test split", d.key);
            assert!(count(Split::Validation) >= 1, "{}: validation carved from train", d.key);
            assert_eq!(count(Split::Train) + count(Split::Validation), if d.key == "mnli" { 21 } else { 20 }, "{}", d.key);
            // The stored JSON Lines read back to exactly these examples.
            assert_eq!(parse(d.jsonl.as_bytes(), &d.options).unwrap(), d.parsed, "{}", d.key);
        }
        let stsb = suite.datasets.iter().find(|d| d.key == "stsb").unwrap();
        assert_eq!(stsb.task_family, TaskFamily::Regression);
        assert!(stsb.parsed.examples.iter().any(|e| e.target == Target::Score(0.457)));
        let mnli = suite.datasets.iter().find(|d| d.key == "mnli").unwrap();
        assert_eq!(mnli.parsed.label_set, ["contradiction", "entailment", "neutral"]);
        assert!(mnli.parsed.examples.iter().any(|e| e.text_a == "Premise 100." && e.split == Split::Test));
        assert!(!mnli.parsed.examples.iter().any(|e| e.text_a == "Premise 200."), "mismatched dev is not stored");
        assert!(suite.ignored.iter().any(|s| s.contains("dev_mismatched.tsv: 9 rows validated")), "{:?}", suite.ignored);
        assert!(suite.ignored.iter().any(|s| s.contains("diagnostic")));
        assert!(suite.ignored.iter().any(|s| s.contains("CoLA/test.tsv")));
        let mrpc = suite.datasets.iter().find(|d| d.key == "mrpc").unwrap();
        assert!(mrpc.parsed.examples.iter().any(|e| e.text_a.contains("\"things.")), "quotes are ordinary characters");
    }

    #[test]
    fn a_malformed_file_is_reported_by_file_and_line_and_rejects_the_suite() {
        let mut files = sample_glue_folder();
        let rte = files.iter_mut().find(|f| f.path.ends_with("RTE/dev.tsv")).unwrap();
        rte.bytes = b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n".to_vec();
        let stsb = files.iter_mut().find(|f| f.path.ends_with("STS-B/train.tsv")).unwrap();
        let mut text = String::from_utf8(stsb.bytes.clone()).unwrap();
        text = text.replacen("\t0.457\n", "\tfive\n", 1);
        stsb.bytes = text.into_bytes();
        let errors = parse_glue(&files).unwrap_err();
        assert!(errors.iter().any(|e| e.file == "glue_data/RTE/dev.tsv" && e.line == 3), "{errors:?}");
        assert!(errors.iter().any(|e| e.file == "glue_data/STS-B/train.tsv" && e.line == 3), "{errors:?}");
    }

    #[test]
    fn a_task_without_its_dev_file_is_an_error_and_an_empty_upload_says_what_to_send() {
        let files: Vec<SuiteFile> = sample_glue_folder().into_iter().filter(|f| !f.path.ends_with("MNLI/dev_matched.tsv")).collect();
        let errors = parse_glue(&files).unwrap_err();
        assert!(errors.iter().any(|e| e.file == "MNLI/dev_matched.tsv" && e.message.contains("missing")), "{errors:?}");
        let errors = parse_glue(&[file("notes/readme.txt", "hi")]).unwrap_err();
        assert!(errors[0].message.contains("CoLA/train.tsv"));
    }

    #[test]
    fn canonical_jsonl_round_trips_every_family() {
        let ex = |text_b: Option<&str>, target: Target, split| Example {
            text_a: "a \"q\" text".into(),
            text_b: text_b.map(Into::into),
            target,
            split,
        };
        for (family, examples) in [
            (
                TaskFamily::Classification,
                vec![ex(Some("pair"), Target::Class("x".into()), Split::Train), ex(None, Target::Class("y".into()), Split::Test)],
            ),
            (
                TaskFamily::Regression,
                vec![ex(Some("pair"), Target::Score(1.25), Split::Validation), ex(None, Target::Score(-3.0), Split::Train)],
            ),
            (
                TaskFamily::Summarization,
                vec![ex(None, Target::Text("sum".into()), Split::Train), ex(None, Target::Text("s2".into()), Split::Test)],
            ),
            (
                TaskFamily::Instruction,
                vec![ex(Some("input"), Target::Text("out".into()), Split::Train), ex(None, Target::Text("o".into()), Split::Test)],
            ),
        ] {
            let (_, _, parsed) = canonical(family, &examples).unwrap();
            assert_eq!(parsed.examples, examples, "{family}");
        }
    }
}
