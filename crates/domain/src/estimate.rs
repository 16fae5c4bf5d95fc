//! What a run (or a study) will cost before it is queued: steps, wall time and peak memory,
//! predicted from the throughput the fleet's workers have measured on finished runs.
//!
//! The model is deliberately simple, so that its error can be measured and stated:
//! - **steps** are exact: the same [`TrainingConfig::total_steps`] the training loop uses.
//! - **training time** = steps × batch × tokens per example ÷ training tokens per second.
//!   Tokens per second is the median over finished runs of the same base model on the same
//!   device (the same method when there are any: ALoRA's ablation rounds make it slower),
//!   with the periodic held-out evaluations taken out. Tokens per example comes from earlier
//!   runs on the same dataset and model at the same `max_seq_len` when there are any, else
//!   from the dataset's text bytes at [`BYTES_PER_TOKEN`] plus the model's template tokens.
//! - **ablation time** (ALoRA only) = rounds × variants × batch examples × seconds per
//!   scored example. Rounds come from the method's schedule ([`ALoraConfig::round_steps`]),
//!   variants are two per live rank component (budget × adapted modules), the batch is
//!   `val_batch` held-out examples. Seconds per scored example is measured on earlier ALoRA
//!   runs of the model and device, else a forward pass over the layers a variant restarts
//!   through (on average (L + 1) / 2L of them) at the training throughput.
//! - **evaluation time** = held-out passes during training (step 0 and every `eval_every`
//!   steps; forward only, a third of a training step's cost per token) plus the final
//!   evaluation (the final weights' held-out pass, then validation and test), at the measured
//!   seconds per evaluated example (generation makes it the larger part for decoders).
//! - **peak memory** = the model's resident base + bytes per padded batch token × the padded
//!   batch (`batch × min(max_seq_len, 2 × tokens per example)`), the per-token bytes measured
//!   on the same model and device. A worker's peak RSS only grows over its life, so this is
//!   an upper bound after it has run larger batches.
//!
//! Without any measurement for the model on the device, the reference throughput of
//! [`reference`] (BENCHMARKS.md, a 2-vCPU machine) is used and the error band widens.
//! Every estimate states its basis (measured on n runs, or the reference) and its relative
//! error band; the band of a measured estimate is the spread of the runs it is based on,
//! never narrower than [`MIN_BAND`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::catalog::{Architecture, BaseModel};
use crate::run::{ALoraConfig, Method, MethodConfig, RunConfig};
use crate::summary::RunSummary;
use crate::task::TaskFamily;

/// UTF-8 bytes per token of English text for both shipped tokenizers (WordPiece and
/// SmolLM2's byte-level BPE), measured on the BIG-bench tasks: 4.1 and 4.3.
pub const BYTES_PER_TOKEN: f64 = 4.2;
/// The narrowest relative error band an estimate claims.
pub const MIN_BAND: f64 = 0.2;
/// The band of an estimate that rests on the reference throughput alone.
pub const REFERENCE_BAND: f64 = 0.6;
/// A held-out forward pass costs about this share of a training step per token.
const FORWARD_SHARE: f64 = 1.0 / 3.0;
/// Above this many seconds on a CPU worker, the estimate carries a warning.
pub const LONG_CPU_RUN_SECONDS: f64 = 3600.0;

/// One finished run's measured cost, read back from its config and summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub model: String,
    pub device: String,
    pub method: Method,
    pub dataset_id: Uuid,
    pub max_seq_len: u32,
    /// Training tokens per second, periodic held-out evaluations excluded.
    pub tokens_per_second: f64,
    /// Mean tokens per training example after truncation.
    pub tokens_per_example: f64,
    /// Final evaluation seconds per evaluated example.
    pub eval_seconds_per_example: Option<f64>,
    /// Peak memory beyond the model's base, per padded batch token.
    pub bytes_per_batch_token: Option<f64>,
    /// Wall time outside training and evaluation (loading the model, exporting).
    pub overhead_seconds: Option<f64>,
    /// ALoRA's ablation rounds: seconds per scored example (variant × batch example).
    #[serde(default)]
    pub ablation_seconds_per_example: Option<f64>,
}

impl Observation {
    /// Reads a succeeded run's summary (as `fit` writes it); None when it lacks the
    /// throughput fields (runs from before they were recorded, or that trained no step).
    pub fn from_summary(model: &BaseModel, method: Method, dataset_id: Uuid, config: &RunConfig, summary: &RunSummary) -> Option<Self> {
        let train_seconds = summary.train_seconds?;
        let tokens = summary.tokens_per_second? * train_seconds;
        let examples = summary.examples_per_second? * train_seconds;
        let ablation = summary.ablation_seconds.unwrap_or(0.0);
        let pure = train_seconds - summary.heldout_seconds.unwrap_or(0.0) - ablation;
        if !(tokens > 0.0 && examples > 0.0 && pure > 0.0) {
            return None;
        }
        let tokens_per_example = tokens / examples;
        let eval_seconds_per_example = match (summary.eval_seconds, summary.eval_examples) {
            (Some(s), Some(n)) if n > 0 => Some(s / n as f64),
            _ => None,
        };
        let overhead_seconds = summary.wall_seconds.map(|w| (w - train_seconds - summary.eval_seconds.unwrap_or(0.0)).max(0.0));
        let padded = padded_batch_tokens(config.training.batch_size, config.training.max_seq_len, tokens_per_example);
        let bytes_per_batch_token = summary.peak_memory_bytes.map(|p| ((p as f64 - reference(model).base_bytes) / padded).max(0.0));
        Some(Self {
            model: model.id.to_string(),
            device: summary.device.clone().unwrap_or_else(|| "cpu".into()),
            method,
            dataset_id,
            max_seq_len: config.training.max_seq_len,
            tokens_per_second: tokens / pure,
            tokens_per_example,
            eval_seconds_per_example,
            bytes_per_batch_token,
            overhead_seconds,
            ablation_seconds_per_example: summary.ablation_examples.filter(|n| *n > 0).map(|n| ablation / n as f64),
        })
    }
}

/// Built-in throughput of a model on the reference machine (2 vCPUs, BENCHMARKS.md,
/// 2026-12), used until the fleet has measured its own.
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    pub tokens_per_second: f64,
    /// Resident bytes before the first batch (weights, tokenizer, runtime).
    pub base_bytes: f64,
    pub bytes_per_batch_token: f64,
    /// Tokens a prompt template adds to each example.
    pub template_tokens: f64,
    /// Loading the model and writing the exports.
    pub overhead_seconds: f64,
}

pub fn reference(model: &BaseModel) -> Reference {
    const MIB: f64 = 1024.0 * 1024.0;
    match model.architecture {
        // MiniLM LoRA, batch 32 × seq 128: 5.9 s/step, ~950 MiB peak RSS.
        Architecture::Bert => Reference {
            tokens_per_second: 700.0,
            base_bytes: 250.0 * MIB,
            bytes_per_batch_token: 0.17 * MIB,
            template_tokens: 3.0,
            overhead_seconds: 5.0,
        },
        // SmolLM2 LoRA, batch 8 × seq 512: ~80 s/step, ~14 GB peak RSS.
        Architecture::Llama => Reference {
            tokens_per_second: 50.0,
            base_bytes: 1000.0 * MIB,
            bytes_per_batch_token: 3.2 * MIB,
            template_tokens: 24.0,
            overhead_seconds: 20.0,
        },
    }
}

/// A batch as the collator pads it: to its longest example, which for typical length
/// spreads is about twice the mean, never past `max_seq_len`.
pub fn padded_batch_tokens(batch_size: u32, max_seq_len: u32, tokens_per_example: f64) -> f64 {
    batch_size as f64 * (2.0 * tokens_per_example).min(max_seq_len as f64).max(1.0)
}

/// What the estimator needs to know about the dataset: rows and text bytes per split.
#[derive(Debug, Clone, Default)]
pub struct DatasetShape {
    pub id: Uuid,
    pub task_family: Option<TaskFamily>,
    pub rows_per_split: BTreeMap<String, usize>,
    /// Total UTF-8 bytes of each split's texts (inputs and text targets); empty for
    /// datasets uploaded before it was recorded.
    pub text_bytes_per_split: BTreeMap<String, u64>,
}

impl DatasetShape {
    /// From a dataset's stored task family and validation report (reports stored before
    /// text bytes were counted give an empty map: estimates then assume full-length examples).
    pub fn from_report(id: Uuid, task_family: &str, report: &Value) -> Self {
        fn field<T: serde::de::DeserializeOwned + Default>(report: &Value, k: &str) -> T {
            report.get(k).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
        }
        Self {
            id,
            task_family: TaskFamily::parse(task_family),
            rows_per_split: field(report, "rows_per_split"),
            text_bytes_per_split: field(report, "text_bytes_per_split"),
        }
    }

    fn rows(&self, split: &str) -> usize {
        self.rows_per_split.get(split).copied().unwrap_or(0)
    }
}

/// Where an estimate's throughput came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "source")]
pub enum Basis {
    /// Median of this many finished runs of the model on the device.
    Measured { runs: usize, same_method: bool },
    /// The built-in reference machine's throughput.
    Reference,
}

/// A run's predicted cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Estimate {
    pub device: String,
    pub steps: u64,
    pub train_examples: usize,
    /// Examples of the final evaluation (validation + test, generation capped by its setting).
    pub eval_examples: usize,
    pub tokens_per_example: f64,
    /// Whether tokens per example was measured on this dataset (else: from text bytes).
    pub tokens_measured: bool,
    pub tokens_per_second: f64,
    pub train_seconds: f64,
    /// ALoRA's ablation rounds (0 for the other methods).
    #[serde(default)]
    pub ablation_seconds: f64,
    pub eval_seconds: f64,
    /// Loading the model and writing the exports.
    pub overhead_seconds: f64,
    pub total_seconds: f64,
    pub peak_memory_bytes: f64,
    /// Relative error band: the actual time is expected within `total × (1 ± band)`.
    pub error_band: f64,
    pub basis: Basis,
    pub warnings: Vec<String>,
}

/// Estimates one run. `observations` may hold any runs of the fleet; the relevant ones are
/// picked here. `device` is where it is expected to run (see [`expected_device`]).
pub fn estimate(
    model: &BaseModel,
    method: Method,
    budget: u32,
    config: &RunConfig,
    dataset: &DatasetShape,
    observations: &[Observation],
    device: &str,
) -> Estimate {
    let t = &config.training;
    let train_examples = dataset.rows("train");
    let steps = t.total_steps(train_examples);
    let same_model: Vec<&Observation> = observations.iter().filter(|o| o.model == model.id && o.device == device).collect();
    let same_method: Vec<&Observation> = same_model.iter().copied().filter(|o| o.method == method).collect();
    let basis_runs = if same_method.is_empty() { &same_model } else { &same_method };
    let reference = reference(model);

    // Tokens per training example.
    let measured_tokens: Vec<f64> =
        same_model.iter().filter(|o| o.dataset_id == dataset.id && o.max_seq_len == t.max_seq_len).map(|o| o.tokens_per_example).collect();
    let tokens_measured = !measured_tokens.is_empty();
    let tokens_per_example = if tokens_measured {
        median(&measured_tokens)
    } else {
        let bytes = dataset.text_bytes_per_split.get("train").copied();
        match bytes {
            Some(b) if train_examples > 0 => {
                (b as f64 / train_examples as f64 / BYTES_PER_TOKEN + reference.template_tokens).min(t.max_seq_len as f64)
            }
            // Nothing known about the texts: assume full-length examples (an upper bound).
            _ => t.max_seq_len as f64,
        }
    };

    // Training throughput and its spread.
    let (tokens_per_second, mut band, basis) = if basis_runs.is_empty() {
        (reference.tokens_per_second, REFERENCE_BAND, Basis::Reference)
    } else {
        let rates: Vec<f64> = basis_runs.iter().map(|o| o.tokens_per_second).collect();
        let m = median(&rates);
        let spread = rates.iter().map(|r| (r / m - 1.0).abs()).fold(0.0, f64::max);
        (m, spread.max(MIN_BAND), Basis::Measured { runs: basis_runs.len(), same_method: !same_method.is_empty() })
    };
    if !tokens_measured {
        band += 0.15;
    }
    let per_example_train = tokens_per_example / tokens_per_second;
    let batch = t.batch_size as f64;
    let train_seconds = steps as f64 * batch.min(train_examples.max(1) as f64) * per_example_train;

    // Evaluation: held-out passes during training, then the final evaluation.
    let validation = dataset.rows("validation");
    let test = dataset.rows("test");
    // Inside training, with eval_every: step 0 and every eval_every steps before the last.
    let heldout_passes = if validation == 0 { 0 } else { steps.saturating_sub(1).checked_div(t.eval_every).map_or(0, |n| n + 1) };
    let forward = per_example_train * FORWARD_SHARE;
    let generative = dataset.task_family.is_some_and(|f| !f.is_encoder_task()) && t.generation.eval_examples > 0;
    let generated = |rows: usize| rows.min(t.generation.eval_examples as usize);
    let eval_examples = validation + test;
    let measured_eval: Vec<f64> = basis_runs.iter().filter_map(|o| o.eval_seconds_per_example).collect();
    // The final evaluation as measured includes the final weights' held-out pass.
    let final_seconds = if !measured_eval.is_empty() {
        eval_examples as f64 * median(&measured_eval)
    } else if generative {
        // Greedy decoding re-reads the prompt for each new token (no KV cache).
        let gen_share = (generated(validation) + generated(test)) as f64 / eval_examples.max(1) as f64;
        validation as f64 * forward + eval_examples as f64 * forward * (1.0 + gen_share * t.generation.max_new_tokens as f64)
    } else {
        (validation + eval_examples) as f64 * forward
    };
    let eval_seconds = heldout_passes as f64 * validation as f64 * forward + final_seconds;
    let ablation_seconds = match &config.method {
        MethodConfig::ALora(ac) => {
            let measured: Vec<f64> = same_model.iter().filter_map(|o| o.ablation_seconds_per_example).collect();
            let per_example = if measured.is_empty() { forward * restart_share(model.layers) } else { median(&measured) };
            let targets = if t.target_modules.is_empty() { model.default_targets.len() } else { t.target_modules.len() };
            ablation_rounds(
                ac,
                model,
                budget,
                targets,
                t.steps_per_epoch(train_examples),
                steps,
                if validation > 0 { validation } else { train_examples },
            ) * per_example
        }
        _ => 0.0,
    };

    // Memory.
    let per_token: Vec<f64> = same_model.iter().filter_map(|o| o.bytes_per_batch_token).collect();
    let bytes_per_token = if per_token.is_empty() { reference.bytes_per_batch_token } else { median(&per_token) };
    let padded = padded_batch_tokens(t.batch_size, t.max_seq_len, tokens_per_example);
    let peak_memory_bytes = reference.base_bytes + bytes_per_token * padded;

    let overheads: Vec<f64> = same_model.iter().filter_map(|o| o.overhead_seconds).collect();
    let overhead_seconds = if overheads.is_empty() { reference.overhead_seconds } else { median(&overheads) };
    let total_seconds = train_seconds + ablation_seconds + eval_seconds + overhead_seconds;
    let mut warnings = Vec::new();
    if device == "cpu" && total_seconds > LONG_CPU_RUN_SECONDS {
        warnings.push(format!(
            "about {} on a CPU worker: lower max_seq_len ({}), batch_size ({}) or the number of steps ({steps}), or run it on a cuda worker",
            human_duration(total_seconds),
            t.max_seq_len,
            t.batch_size
        ));
    }
    if matches!(basis, Basis::Reference) {
        warnings.push(format!(
            "no finished {} run on a {device} worker yet: the time is from the reference machine (2 vCPUs) and may be far off",
            model.id
        ));
    }
    Estimate {
        device: device.to_string(),
        steps,
        train_examples,
        eval_examples,
        tokens_per_example,
        tokens_measured,
        tokens_per_second,
        train_seconds,
        ablation_seconds,
        eval_seconds,
        overhead_seconds,
        total_seconds,
        peak_memory_bytes,
        error_band: band,
        basis,
        warnings,
    }
}

/// Examples ALoRA's ablation rounds score over a run: rounds × variants × batch, with two
/// variants per live rank component (`budget` × adapted modules) and a batch of `val_batch`
/// examples of the held-out pool (`pool` rows).
pub fn ablation_rounds(
    ac: &ALoraConfig,
    model: &BaseModel,
    budget: u32,
    targets: usize,
    steps_per_epoch: u64,
    steps: u64,
    pool: usize,
) -> f64 {
    let rounds = ac.round_steps(steps_per_epoch, steps).len() as f64;
    let variants = 2.0 * f64::from(budget) * f64::from(model.layers) * targets as f64;
    rounds * variants * (ac.val_batch as usize).min(pool) as f64
}

/// The share of a full forward pass an ablation variant costs: it restarts at the layer of
/// the component it changes, on average (L + 1) / 2 of L layers.
fn restart_share(layers: u32) -> f64 {
    let l = f64::from(layers.max(1));
    (l + 1.0) / (2.0 * l)
}

/// The device a new run is expected to train on: the one the fleet's most recent
/// observations (newest first) come from, else the CPU.
pub fn expected_device(newest_first: &[Observation]) -> &str {
    newest_first.first().map(|o| o.device.as_str()).unwrap_or("cpu")
}

/// A study's cost: its runs one after another on one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StudyEstimate {
    pub runs: usize,
    pub total_seconds: f64,
    /// The largest run's peak memory.
    pub peak_memory_bytes: f64,
    pub error_band: f64,
    pub warnings: Vec<String>,
}

pub fn study_estimate(runs: &[Estimate]) -> StudyEstimate {
    let total_seconds: f64 = runs.iter().map(|e| e.total_seconds).sum();
    let weighted_band = runs.iter().map(|e| e.total_seconds * e.error_band).sum::<f64>() / total_seconds.max(1e-9);
    let mut warnings: Vec<String> = Vec::new();
    for w in runs.iter().flat_map(|e| e.warnings.iter()) {
        if !warnings.contains(w) {
            warnings.push(w.clone());
        }
    }
    StudyEstimate {
        runs: runs.len(),
        total_seconds,
        peak_memory_bytes: runs.iter().map(|e| e.peak_memory_bytes).fold(0.0, f64::max),
        error_band: weighted_band,
        warnings,
    }
}

/// A finished run, as the estimator's accuracy is judged on it.
#[derive(Debug, Clone)]
pub struct FinishedRun {
    pub model: &'static BaseModel,
    pub method: Method,
    pub budget: u32,
    pub config: RunConfig,
    pub dataset: DatasetShape,
    pub observation: Option<Observation>,
    /// The estimate it was queued with, if any.
    pub estimate: Option<Estimate>,
    /// Its measured wall time (the summary's `wall_seconds`).
    pub actual_seconds: Option<f64>,
}

/// Each run re-estimated from every other run's measurement (leave one out): the error of
/// the estimator once the fleet has measured the model, without the run judging itself.
/// Entries follow `runs`; None where the run has no measured wall time.
pub fn leave_one_out(runs: &[FinishedRun], device: &str) -> Vec<Option<Estimate>> {
    runs.iter()
        .enumerate()
        .map(|(i, r)| {
            r.actual_seconds?;
            let others: Vec<Observation> =
                runs.iter().enumerate().filter(|(j, _)| *j != i).filter_map(|(_, o)| o.observation.clone()).collect();
            Some(estimate(r.model, r.method, r.budget, &r.config, &r.dataset, &others, device))
        })
        .collect()
}

/// How close past estimates came to the runs' measured wall time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accuracy {
    /// Runs with both an estimate and a measured wall time.
    pub runs: usize,
    /// Median of |actual / estimated − 1|.
    pub median_relative_error: f64,
    /// Share of runs whose actual time fell inside the estimate's band.
    pub within_band: f64,
}

/// `(estimate, actual wall seconds)` of finished runs; None without any.
pub fn accuracy(pairs: &[(Estimate, f64)]) -> Option<Accuracy> {
    if pairs.is_empty() {
        return None;
    }
    let errors: Vec<f64> = pairs.iter().map(|(e, actual)| (actual / e.total_seconds.max(1e-9) - 1.0).abs()).collect();
    let inside = pairs.iter().filter(|(e, actual)| (actual - e.total_seconds).abs() <= e.error_band * e.total_seconds).count();
    Some(Accuracy { runs: pairs.len(), median_relative_error: median(&errors), within_band: inside as f64 / pairs.len() as f64 })
}

/// `1h 05m`, `12m 30s`, `45s`.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::base_model;
    use crate::run::MethodConfig;
    use serde_json::json;

    fn minilm() -> &'static BaseModel {
        base_model("all-minilm-l6-v2").unwrap()
    }

    fn config(batch: u32, seq: u32, epochs: f64, eval_every: u64) -> RunConfig {
        let mut c = RunConfig { training: Default::default(), method: MethodConfig::default_for(Method::Lora) };
        c.training.batch_size = batch;
        c.training.max_seq_len = seq;
        c.training.epochs = epochs;
        c.training.eval_every = eval_every;
        c
    }

    fn shape(id: Uuid, train: usize, validation: usize, test: usize, train_bytes: Option<u64>) -> DatasetShape {
        let mut s = DatasetShape { id, task_family: Some(TaskFamily::Classification), ..Default::default() };
        for (k, v) in [("train", train), ("validation", validation), ("test", test)] {
            s.rows_per_split.insert(k.into(), v);
        }
        if let Some(b) = train_bytes {
            s.text_bytes_per_split.insert("train".into(), b);
        }
        s
    }

    fn observation(method: Method, dataset_id: Uuid, tps: f64, tpe: f64) -> Observation {
        Observation {
            model: "all-minilm-l6-v2".into(),
            device: "cpu".into(),
            method,
            dataset_id,
            max_seq_len: 128,
            tokens_per_second: tps,
            tokens_per_example: tpe,
            eval_seconds_per_example: Some(0.01),
            bytes_per_batch_token: Some(100_000.0),
            overhead_seconds: Some(2.0),
            ablation_seconds_per_example: None,
        }
    }

    #[test]
    fn summary_round_trip_recovers_the_throughput_without_heldout_time() {
        let id = Uuid::nil();
        // 100 s of training of which 20 s held-out passes; 4000 tokens over 100 examples.
        let summary = json!({
            "train_seconds": 100.0, "heldout_seconds": 20.0, "tokens_per_second": 40.0, "examples_per_second": 1.0,
            "eval_seconds": 5.0, "eval_examples": 50, "peak_memory_bytes": 250u64 * 1048576 + 32 * 80 * 1000,
            "device": "cpu", "wall_seconds": 110.0,
        });
        let o = Observation::from_summary(minilm(), Method::Lora, id, &config(32, 128, 1.0, 0), &RunSummary::from_value(&summary)).unwrap();
        assert!((o.tokens_per_second - 4000.0 / 80.0).abs() < 1e-9);
        assert!((o.tokens_per_example - 40.0).abs() < 1e-9);
        assert_eq!(o.eval_seconds_per_example, Some(0.1));
        // Padded batch: 32 × min(128, 2 × 40) = 2560 tokens.
        assert!((o.bytes_per_batch_token.unwrap() - 1000.0).abs() < 1e-6);
        assert_eq!(o.device, "cpu");
        assert_eq!(o.overhead_seconds, Some(5.0));
        assert!(Observation::from_summary(minilm(), Method::Lora, id, &config(32, 128, 1.0, 0), &RunSummary::default()).is_none());
    }

    #[test]
    fn measured_throughput_predicts_time_from_steps_and_tokens() {
        let ds = Uuid::from_u128(7);
        let obs = vec![
            observation(Method::Lora, ds, 900.0, 50.0),
            observation(Method::Lora, ds, 1000.0, 50.0),
            observation(Method::Lora, ds, 1100.0, 50.0),
            observation(Method::ALora, ds, 500.0, 50.0),
        ];
        let e = estimate(minilm(), Method::Lora, 4, &config(32, 128, 2.0, 0), &shape(ds, 320, 40, 40, None), &obs, "cpu");
        // 320 / 32 = 10 steps per epoch, 2 epochs.
        assert_eq!(e.steps, 20);
        assert!(e.tokens_measured);
        assert_eq!(e.basis, Basis::Measured { runs: 3, same_method: true });
        // 20 steps × 32 examples × 50 tokens / 1000 tokens/s.
        assert!((e.train_seconds - 32.0).abs() < 1e-9, "{}", e.train_seconds);
        // No held-out pass inside training (eval_every 0); the final evaluation of 80 examples
        // at the measured 0.01 s each (which includes the final weights' pass).
        assert!((e.eval_seconds - 80.0 * 0.01).abs() < 1e-9);
        // Spread ±10% is below the floor.
        assert_eq!(e.error_band, MIN_BAND);
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
        assert_eq!(e.total_seconds, e.train_seconds + e.eval_seconds + 2.0);
        // ALoRA uses its own (slower) runs.
        let a = estimate(minilm(), Method::ALora, 4, &config(32, 128, 2.0, 0), &shape(ds, 320, 40, 40, None), &obs, "cpu");
        assert!((a.train_seconds - 64.0).abs() < 1e-9);
    }

    #[test]
    fn alora_adds_its_ablation_rounds_modelled_then_measured() {
        let ds = Uuid::from_u128(7);
        let mut c = config(32, 128, 2.0, 0);
        c.method = MethodConfig::default_for(Method::ALora);
        let lora_only = vec![observation(Method::Lora, ds, 1000.0, 50.0)];
        let e = estimate(minilm(), Method::ALora, 4, &c, &shape(ds, 320, 40, 40, None), &lora_only, "cpu");
        // 10 steps per epoch, 20 steps: rounds after steps 10, 13, 16, 19 (k1 = 1, k2 = 0.25
        // epochs); 2 × budget 4 × 6 layers × 2 targets = 96 variants; a batch of 32.
        let scored = 4.0 * 96.0 * 32.0;
        assert_eq!(ablation_rounds(&ALoraConfig::default(), minilm(), 4, 2, 10, 20, 40), scored);
        // Unmeasured: a forward pass (a third of a training example's 50 / 1000 s) over
        // 7/12 of the layers.
        let modelled = scored * (50.0 / 1000.0 / 3.0) * (7.0 / 12.0);
        assert!((e.ablation_seconds - modelled).abs() < 1e-9, "{} vs {modelled}", e.ablation_seconds);
        assert!((e.total_seconds - (e.train_seconds + e.ablation_seconds + e.eval_seconds + e.overhead_seconds)).abs() < 1e-9);
        // Measured on an earlier ALoRA run of the model: 10 ms per scored example.
        let mut measured = lora_only.clone();
        measured.push(Observation { ablation_seconds_per_example: Some(0.01), ..observation(Method::ALora, ds, 1000.0, 50.0) });
        let m = estimate(minilm(), Method::ALora, 4, &c, &shape(ds, 320, 40, 40, None), &measured, "cpu");
        assert!((m.ablation_seconds - scored * 0.01).abs() < 1e-9);
        // The other methods have none.
        assert_eq!(
            estimate(minilm(), Method::Lora, 4, &config(32, 128, 2.0, 0), &shape(ds, 320, 40, 40, None), &measured, "cpu").ablation_seconds,
            0.0
        );
        // A summary's ablation time is kept out of the training throughput.
        let summary = json!({
            "train_seconds": 100.0, "heldout_seconds": 20.0, "ablation_seconds": 30.0, "ablation_examples": 3000,
            "tokens_per_second": 40.0, "examples_per_second": 1.0, "device": "cpu",
        });
        let o = Observation::from_summary(minilm(), Method::ALora, ds, &c, &RunSummary::from_value(&summary)).unwrap();
        assert!((o.tokens_per_second - 4000.0 / 50.0).abs() < 1e-9);
        assert_eq!(o.ablation_seconds_per_example, Some(0.01));
    }

    #[test]
    fn unmeasured_dataset_uses_text_bytes_and_widens_the_band() {
        let obs = vec![observation(Method::Lora, Uuid::from_u128(1), 1000.0, 50.0)];
        let other = Uuid::from_u128(2);
        // 100 train rows of 420 bytes: 100 tokens each + 3 special tokens.
        let e = estimate(minilm(), Method::Lora, 4, &config(10, 128, 1.0, 5), &shape(other, 100, 10, 0, Some(42_000)), &obs, "cpu");
        assert!(!e.tokens_measured);
        assert!((e.tokens_per_example - 103.0).abs() < 1e-9);
        assert!((e.error_band - (MIN_BAND + 0.15)).abs() < 1e-12);
        // eval_every 5 over 10 steps: passes at step 0 and step 5 inside training, then the
        // final evaluation of 10 examples at the measured 0.01 s.
        let forward = 103.0 / 1000.0 / 3.0;
        assert!((e.eval_seconds - (2.0 * 10.0 * forward + 10.0 * 0.01)).abs() < 1e-9);
        // Without byte counts: full-length examples.
        let e = estimate(minilm(), Method::Lora, 4, &config(10, 64, 1.0, 0), &shape(other, 100, 10, 0, None), &obs, "cpu");
        assert_eq!(e.tokens_per_example, 64.0);
    }

    #[test]
    fn no_measurement_falls_back_to_the_reference_and_says_so() {
        let smol = base_model("smollm2-135m-instruct").unwrap();
        let mut c = config(8, 512, 1.0, 0);
        c.training.max_steps = Some(100);
        let mut ds = shape(Uuid::nil(), 400, 0, 50, None);
        ds.task_family = Some(TaskFamily::Summarization);
        let e = estimate(smol, Method::Lora, 4, &c, &ds, &[observation(Method::Lora, Uuid::nil(), 1e6, 1.0)], "cpu");
        assert_eq!(e.basis, Basis::Reference);
        assert_eq!(e.steps, 100);
        // 100 × 8 × 512 / 50 tokens/s.
        assert!((e.train_seconds - 8192.0).abs() < 1e-6);
        assert_eq!(e.warnings.len(), 2, "{:?}", e.warnings);
        assert!(e.warnings[0].contains("on a CPU worker"), "{}", e.warnings[0]);
        // Peak memory: base + 8 × 512 padded tokens.
        let r = reference(smol);
        assert!((e.peak_memory_bytes - (r.base_bytes + r.bytes_per_batch_token * 4096.0)).abs() < 1.0);
        // The test split is generated (50 ≤ 64 examples) with up to 64 new tokens.
        let forward = 512.0 / 50.0 / 3.0;
        assert!((e.eval_seconds - 50.0 * forward * 65.0).abs() < 1e-6);
        // A classification run on the reference: the final weights' pass over validation,
        // then validation and test, each a forward pass.
        let k = estimate(minilm(), Method::Lora, 4, &config(10, 64, 1.0, 0), &shape(Uuid::nil(), 100, 10, 20, None), &[], "cpu");
        let forward = 64.0 / reference(minilm()).tokens_per_second / 3.0;
        assert!((k.eval_seconds - (10.0 + 30.0) * forward).abs() < 1e-9, "{}", k.eval_seconds);
        // On a device nobody has measured, the warning names it.
        let g = estimate(smol, Method::Lora, 4, &c, &ds, &[], "cuda:0");
        assert!(g.warnings.iter().any(|w| w.contains("cuda:0 worker")));
        assert!(!g.warnings.iter().any(|w| w.contains("CPU worker")));
    }

    #[test]
    fn study_sums_runs_and_keeps_distinct_warnings() {
        let obs = vec![observation(Method::Lora, Uuid::nil(), 1000.0, 50.0)];
        let e = estimate(minilm(), Method::Lora, 4, &config(32, 128, 1.0, 0), &shape(Uuid::nil(), 64, 8, 8, None), &obs, "cpu");
        let s = study_estimate(&[e.clone(), e.clone()]);
        assert_eq!(s.runs, 2);
        assert!((s.total_seconds - 2.0 * e.total_seconds).abs() < 1e-9);
        assert!((s.error_band - e.error_band).abs() < 1e-12);
        assert_eq!(s.peak_memory_bytes, e.peak_memory_bytes);
        assert_eq!(human_duration(3725.0), "1h 02m");
        // Estimator accuracy: 10% and 50% off, band 0.2 → one of two inside, median 0.3.
        let mut a = e.clone();
        a.total_seconds = 100.0;
        a.error_band = 0.2;
        let acc = accuracy(&[(a.clone(), 110.0), (a, 150.0)]).unwrap();
        assert_eq!(acc.runs, 2);
        assert!((acc.median_relative_error - 0.3).abs() < 1e-12);
        assert_eq!(acc.within_band, 0.5);
        assert!(accuracy(&[]).is_none());
        assert_eq!(human_duration(75.0), "1m 15s");
        assert_eq!(human_duration(5.4), "5s");
        // Rounds to whole seconds before splitting minutes.
        assert_eq!(human_duration(359.7), "6m 00s");
    }
}
