//! Dataset upload formats, parsing and validation.
//!
//! Uploads are parsed and fully validated *before* anything is stored, so a run can
//! never start on a file that would fail half-way (line-numbered errors, like OpenAI's
//! and Together's fine-tuning APIs). Parsing is pure: bytes in, examples or errors out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::task::TaskFamily;

mod bigbench;
mod csv;
mod glue;
mod jsonl;
mod problems;
mod record;
pub mod split;
pub mod suite;
mod validate;

pub use glue::GlueTask;
pub use record::{parse_chat_prompt, render_chat_prompt, CHAT_PROMPT_FORMAT};

/// Largest upload accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 1 << 30;
/// Most examples one dataset may hold.
pub const MAX_ROWS: usize = 1_000_000;
/// Longest single text field, in bytes.
pub const MAX_FIELD_BYTES: usize = 1 << 20;
/// Most distinct class labels a classification dataset may have.
pub const MAX_LABELS: usize = 1_000;
/// Most errors listed in an [`InvalidDataset`] (one more entry says how many were left out).
pub const MAX_ERRORS: usize = 50;
/// Most warnings listed in a [`ValidationReport`] (one more entry says how many were left out).
pub const MAX_WARNINGS: usize = 50;
/// Examples shown in [`ValidationReport::preview`].
pub const PREVIEW_ROWS: usize = 5;
/// Texts longer than this (in characters) get a warning: they will be truncated to the
/// model's maximum sequence length.
pub const LONG_TEXT_CHARS: usize = 20_000;

/// Parses and fully validates an upload.
///
/// Bytes in, examples or every problem found (capped at [`MAX_ERRORS`], each with its
/// 1-based line; line 0 means the whole file) out. See the format modules for the field
/// names each family expects:
///
/// - `jsonl` / `csv`: one record per line (row). Default fields per task family:
///   classification `text` (or `sentence`, `sentence1`), optional `text_pair` (or
///   `sentence2`), `label`; regression the same texts and `score` (or `label`), numeric;
///   summarization `document` (or `article`), `summary`; instruction either Alpaca
///   (`instruction`, optional `input`, `output`) or chat (`messages`: `[{"role", "content"}]`,
///   JSONL only; see [`render_chat_prompt`]). `text_column`, `text_pair_column` and
///   `label_column` override the first text, the second text and the target field.
///   An optional `split` field (`train`, `validation`/`dev`/`val`, `test`) places a row.
/// - `glue_tsv`: the GLUE distribution's tab-separated files, per [`GlueTask`].
/// - `bigbench`: a BIG-bench `task.json`; errors count examples (from 1) as lines.
///
/// Rows the file does not place go to `opts.default_split`, or else to a deterministic
/// 80/10/10 train/validation/test split from a hash of their text (see [`split`]).
pub fn parse(bytes: &[u8], opts: &ParseOptions) -> Result<ParsedDataset, InvalidDataset> {
    let mut problems = problems::Problems::new();
    if bytes.len() > MAX_INPUT_BYTES {
        problems.error(
            0,
            format!("the file is {} bytes, more than the limit of {MAX_INPUT_BYTES} bytes; split it into several datasets", bytes.len()),
        );
        return Err(problems.into_invalid());
    }
    let text = match decode_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            problems.push_error(e);
            return Err(problems.into_invalid());
        }
    };
    let drafts = match opts.format {
        DataFormat::Jsonl => jsonl::parse(text, opts, &mut problems),
        DataFormat::Csv => csv::parse(text, opts, &mut problems),
        DataFormat::GlueTsv => glue::parse(text, opts, &mut problems),
        DataFormat::BigBench => bigbench::parse(text, opts, &mut problems),
    };
    validate::finish(drafts, opts, problems)
}

/// Checks that the upload is UTF-8 and strips a leading byte-order mark.
fn decode_utf8(bytes: &[u8]) -> Result<&str, LineError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = good.len() - good.iter().rposition(|&b| b == b'\n').map(|p| p + 1).unwrap_or(0) + 1;
        LineError {
            line,
            message: format!(
                "the file is not valid UTF-8 (bad byte 0x{:02X} at byte {} of the line); save it as UTF-8 and upload it again",
                bytes[e.valid_up_to()],
                column
            ),
        }
    })
}

/// The file layouts rankfit accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated with a header row.
    Csv,
    /// GLUE's tab-separated layout (columns per GLUE task, see `glue_task`).
    GlueTsv,
    /// A BIG-bench `task.json` file.
    BigBench,
}

impl DataFormat {
    pub const ALL: [DataFormat; 4] = [DataFormat::Jsonl, DataFormat::Csv, DataFormat::GlueTsv, DataFormat::BigBench];

    pub fn as_str(self) -> &'static str {
        match self {
            DataFormat::Jsonl => "jsonl",
            DataFormat::Csv => "csv",
            DataFormat::GlueTsv => "glue_tsv",
            DataFormat::BigBench => "bigbench",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Which part of the data an example belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// Reads a split name as files write it: `train`/`training`, `validation`/`valid`/`val`/`dev`,
    /// `test`/`testing` (case-insensitive, surrounding spaces ignored).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "validation" | "valid" | "val" | "dev" | "development" => Some(Split::Validation),
            "test" | "testing" => Some(Split::Test),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// The supervision of one example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A class label, as written in the file (mapped to an index through `label_set`).
    Class(String),
    /// A real-valued score (regression).
    Score(f64),
    /// A reference text (summary, instruction response).
    Text(String),
}

/// One training/evaluation example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// First text (sentence, premise, document, instruction or rendered chat prompt).
    pub text_a: String,
    /// Optional second text (sentence pair tasks, instruction input).
    pub text_b: Option<String>,
    pub target: Target,
    pub split: Split,
}

/// How to read an upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParseOptions {
    pub format: DataFormat,
    pub task_family: TaskFamily,
    /// For `glue_tsv`: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli.
    pub glue_task: Option<String>,
    /// Column/field holding the first text (defaults per format/family).
    pub text_column: Option<String>,
    /// Column/field holding the second text, if any.
    pub text_pair_column: Option<String>,
    /// Column/field holding the label/target.
    pub label_column: Option<String>,
    /// The split every row belongs to when the file does not say (None: derive a
    /// deterministic 80/10/10 train/validation/test split from each row's content).
    pub default_split: Option<Split>,
}

impl ParseOptions {
    pub fn new(format: DataFormat, task_family: TaskFamily) -> Self {
        Self { format, task_family, glue_task: None, text_column: None, text_pair_column: None, label_column: None, default_split: None }
    }
}

/// An error tied to a place in the file. `line` is 1-based; 0 means the whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// Why an upload was rejected: every problem found (capped), each with its line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{} problem(s), first: line {}: {}", errors.len(), errors.first().map(|e| e.line).unwrap_or(0), errors.first().map(|e| e.message.as_str()).unwrap_or(""))]
pub struct InvalidDataset {
    pub errors: Vec<LineError>,
}

impl Example {
    /// UTF-8 bytes of the example's texts: inputs and, for text targets, the reference.
    pub fn text_bytes(&self) -> u64 {
        let target = match &self.target {
            Target::Text(t) => t.len(),
            _ => 0,
        };
        (self.text_a.len() + self.text_b.as_ref().map_or(0, String::len) + target) as u64
    }
}

impl ValidationReport {
    /// Rows and text bytes per split of `examples` (every split listed, empty ones as 0).
    pub fn count_splits(&mut self, examples: &[Example]) {
        for s in Split::ALL {
            let of_split = examples.iter().filter(|e| e.split == s);
            self.rows_per_split.insert(s.as_str().to_string(), of_split.clone().count());
            self.text_bytes_per_split.insert(s.as_str().to_string(), of_split.map(Example::text_bytes).sum());
        }
    }
}

/// Summary shown to the person who uploaded the file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ValidationReport {
    pub rows: usize,
    pub rows_per_split: BTreeMap<String, usize>,
    /// Class label -> count (classification only).
    pub label_distribution: BTreeMap<String, usize>,
    /// Split -> total UTF-8 bytes of its texts (inputs and text targets): what run
    /// estimates derive token counts from. Empty in reports stored before it existed.
    #[serde(default)]
    pub text_bytes_per_split: BTreeMap<String, u64>,
    /// The first few examples, for a visual check.
    pub preview: Vec<Example>,
    pub warnings: Vec<LineError>,
}

/// A fully validated dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedDataset {
    pub task_family: TaskFamily,
    pub examples: Vec<Example>,
    /// Sorted class labels (classification only); a label's index is its class id.
    pub label_set: Vec<String>,
    pub report: ValidationReport,
}

impl ParsedDataset {
    pub fn split(&self, split: Split) -> impl Iterator<Item = &Example> {
        self.examples.iter().filter(move |e| e.split == split)
    }
}
