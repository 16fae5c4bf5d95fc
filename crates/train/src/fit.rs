//! The one training loop, shared by every model family.
//!
//! A model family (the BERT encoder in [`crate::trainer`], the Llama decoder in
//! [`crate::causal`]) loads its model and data, creates its trainable parameters and hands
//! them to [`fit`] through a [`Workload`]: the batch loss, the held-out metrics, the final
//! evaluation, the exports and ALoRA's ablation oracle. Everything else happens here, once:
//!
//! - AdamW with HF's linear warm-up/decay, gradient clipping, and the run's rank allocator
//!   after every optimizer step, in PEFT's order ([`crate::step::after_backward`]);
//! - a per-epoch order and per-step dropout derived from the seed alone, so a resumed run
//!   replays the same stream; resumable checkpoints every `checkpoint_every` steps and on
//!   cancel;
//! - the held-out metrics of the base model (step 0), every `eval_every` steps and at the
//!   end; the best state by the workload's [`Selection`] among states whose rank pattern is
//!   final (so an adaptive run never exports more than its budget) is what gets evaluated
//!   and exported;
//! - events for loss/lr/grad norm/ranks/metrics, progress reports (phase, step/total, ETA,
//!   loss, live rank; at most one a second, and per part of an ALoRA ablation round), and
//!   the run summary.
//!
//! Metric events at step s always describe the weights at step s: the final evaluations are
//! reported at the step of the exported state.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rankfit_domain::dataset::Split;
use rankfit_domain::prediction::Prediction;
use rankfit_domain::progress::{self, Phase, Progress};
use rankfit_domain::summary::{RunSummary, TrainableParams};
use serde_json::{Map, Value};

use crate::adapters::adalora::orthogonal_regularizer;
use crate::adapters::{AdapterKind, AdapterSpec, Adapters};
use crate::allocator::{for_method_with, oracle_batch, rank_map, AblationOracle, AllocatorSetup, RankAllocator};
use crate::checkpoint::{self, Best, Checkpoint};
use crate::export::{ExportMethod, ADAPTER_WEIGHTS};
use crate::params::{collect_grads, AdamW, ParamStore};
use crate::step::{after_backward, Trainable};
use crate::{ArtifactKind, TrainError, TrainEvent, TrainJob, TrainOutput, CHECKPOINT_DIR};

/// HF's `get_linear_schedule_with_warmup` at 0-based step `s`.
pub fn learning_rate(base: f64, s: u64, total: u64, warmup: u64) -> f64 {
    if s < warmup {
        base * s as f64 / warmup.max(1) as f64
    } else {
        base * ((total - s.min(total)) as f64 / (total - warmup).max(1) as f64).max(0.0)
    }
}

/// A permutation of the training set for `epoch`, from the seed alone.
pub fn epoch_order(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ epoch.wrapping_add(1).wrapping_mul(0xA076_1D64_78BD_642F));
    order.shuffle(&mut rng);
    order
}

/// Peak resident memory of this process (Linux `VmHWM`), if known.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string(Path::new("/proc/self/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn emit_metrics(on_event: &mut dyn FnMut(TrainEvent), step: u64, split: &str, metrics: &Map<String, Value>) {
    for (name, v) in metrics {
        if let Some(value) = v.as_f64() {
            on_event(TrainEvent::Metric { step, split: split.into(), name: name.clone(), value });
        }
    }
}

/// The adapters a run starts with: its method's kind at the method's initial rank.
pub fn adapter_spec(job: &TrainJob) -> AdapterSpec {
    let (cfg, t) = (&job.config, &job.config.training);
    AdapterSpec {
        kind: AdapterKind::for_method(&cfg.method),
        rank: cfg.method.init_rank(job.budget) as usize,
        alpha: t.lora_alpha,
        dropout: t.lora_dropout,
    }
}

/// A run's examples by split.
pub struct Splits<S> {
    pub train: Vec<S>,
    pub validation: Vec<S>,
    pub test: Vec<S>,
}

/// How the best state is chosen on the validation split.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    /// A key of [`Workload::heldout`]'s metrics.
    pub metric: &'static str,
    pub higher_is_better: bool,
}

impl Selection {
    fn improves(self, value: f64, best: f64) -> bool {
        if self.higher_is_better {
            value > best
        } else {
            value < best
        }
    }
}

/// The trainable state of a run.
pub struct State<B: AutodiffBackend> {
    pub device: B::Device,
    pub store: ParamStore<B::InnerBackend>,
    pub adapters: Adapters,
    pub adam: AdamW<B::InnerBackend>,
    pub allocator: Box<dyn RankAllocator<B::InnerBackend>>,
    /// How the run's adapters are written (from the method).
    pub method: ExportMethod,
}

/// What differs between model families; [`fit`] does the rest.
pub trait Workload<B: AutodiffBackend> {
    type Sample: Clone;

    /// Tokens of one example (for throughput).
    fn tokens(sample: &Self::Sample) -> usize;

    /// The mean training loss of a batch, with dropout, on the live parameters.
    fn loss(&self, items: &[&Self::Sample], live: &[Tensor<B, 2>], adapters: &Adapters, device: &B::Device) -> Tensor<B, 1>;

    /// ALoRA's ablation oracle on a fixed batch of examples.
    fn oracle<'a>(&'a self, samples: &'a [Self::Sample]) -> Box<dyn AblationOracle<B::InnerBackend> + 'a>;

    /// Trainable parameters outside the adapters (a classification head).
    fn head_params(&self, store: &ParamStore<B::InnerBackend>) -> usize;

    fn selection(&self) -> Selection;

    /// Metrics of the current weights on a held-out split, cheap enough for every
    /// `eval_every` steps; holds [`Selection::metric`].
    fn heldout(&self, state: &State<B>, samples: &[Self::Sample]) -> Result<Map<String, Value>, TrainError>;

    /// The final evaluation of the exported weights on `split`, with per-example predictions.
    fn evaluate(
        &self,
        state: &State<B>,
        split: &str,
        samples: &[Self::Sample],
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<(Map<String, Value>, Vec<Prediction>), TrainError>;

    /// Settings of the run worth showing next to its results (not metrics: no curve or
    /// comparison is drawn from them), merged into the summary.
    fn facts(&self, _data: &Splits<Self::Sample>) -> Map<String, Value> {
        Map::new()
    }

    /// Writes the run's exports under `dir`, the PEFT adapter first.
    fn export(&self, state: &State<B>, dir: &Path) -> Result<Vec<(ArtifactKind, PathBuf)>, TrainError>;
}

/// Trains `store`/`adapters` (just initialised by the workload) on `data`; resumes from
/// `work_dir/checkpoint` when it holds a checkpoint of the same run.
#[allow(clippy::too_many_arguments)]
pub fn fit<B: AutodiffBackend, W: Workload<B>>(
    job: &TrainJob,
    workload: &W,
    data: &Splits<W::Sample>,
    store: ParamStore<B::InnerBackend>,
    mut adapters: Adapters,
    device: B::Device,
    on_event: &mut dyn FnMut(TrainEvent),
    cancel: &AtomicBool,
    started: Instant,
) -> Result<TrainOutput, TrainError> {
    let cfg = &job.config;
    let t = &cfg.training;
    let total = t.total_steps(data.train.len());
    let warmup = (t.warmup_ratio * total as f64).ceil() as u64;
    let init_r = cfg.method.init_rank(job.budget) as usize;
    let setup = AllocatorSetup::for_run(total, init_r, job.budget, &adapters, data.train.len(), t.batch_size, job.seed);
    let (allocator, method) = for_method_with::<B::InnerBackend>(&cfg.method, &setup)?;
    adapters.set_masking(allocator.masking());
    let oracle_samples = oracle_batch(&cfg.method, allocator.as_ref(), job.seed, &data.train, &data.validation);
    let adam = AdamW::new(store.params.len(), t.weight_decay);
    let mut state = State::<B> { device, store, adapters, adam, allocator, method };
    let selection = workload.selection();
    let effective_trainable = |s: &State<B>| workload.head_params(&s.store) + s.adapters.live_params();

    let ckpt_dir = job.work_dir.join(CHECKPOINT_DIR);
    let fingerprint = checkpoint::fingerprint(job, total);
    let mut step = 0u64;
    let mut best: Option<Best<B::InnerBackend>> = None;
    let start_trainable = effective_trainable(&state);
    let mut peak_trainable = start_trainable;
    if let Some(ck) = checkpoint::load::<B::InnerBackend>(&ckpt_dir, &fingerprint, &state.device)? {
        step = ck.step;
        ck.apply(&mut state.store, &mut state.adapters, &mut state.adam, state.allocator.as_mut(), &state.device)?;
        best = ck.best;
        peak_trainable = ck.peak_trainable.max(peak_trainable);
        on_event(TrainEvent::Log { message: format!("resumed from the checkpoint at step {step} of {total}") });
    } else {
        on_event(TrainEvent::Log {
            message: format!(
                "training {} on {} ({} task) over {} examples ({} validation, {} test): {total} steps, {} adapters, {} trainable parameters",
                cfg.method.method().display_name(),
                job.base_model,
                job.dataset.task_family,
                data.train.len(),
                data.validation.len(),
                data.test.len(),
                state.adapters.list.len(),
                state.store.trainable_count()
            ),
        });
    }
    let ranks = |s: &State<B>, step: u64| TrainEvent::Ranks(rank_map(step, s.allocator.budget(), &s.adapters));
    on_event(ranks(&state, step));
    // The training window (`train_seconds`) holds the held-out passes at step 0 and every
    // `eval_every` steps, timed apart in `heldout_seconds`; the pass over the final weights
    // belongs to the final evaluation (`eval_seconds`).
    let loop_started = Instant::now();
    let mut heldout_seconds = 0f64;
    let validate = |state: &State<B>, seconds: &mut f64| {
        let started = Instant::now();
        let metrics = workload.heldout(state, &data.validation);
        *seconds += started.elapsed().as_secs_f64();
        metrics
    };
    if step == 0 && t.eval_every > 0 && !data.validation.is_empty() {
        // The starting point every later evaluation compares with.
        emit_metrics(on_event, 0, "validation", &validate(&state, &mut heldout_seconds)?);
    }

    let consider_best = |best: &mut Option<Best<B::InnerBackend>>, s: &State<B>, step: u64, metrics: &Map<String, Value>| {
        if !s.allocator.is_final(step) {
            return;
        }
        let Some(value) = metrics.get(selection.metric).and_then(Value::as_f64) else { return };
        if best.as_ref().is_none_or(|b| selection.improves(value, b.metric)) {
            *best = Some(Best::capture(&s.store, &s.adapters, step, value));
        }
    };
    let save = |s: &State<B>, step: u64, best: Option<&Best<B::InnerBackend>>, peak: usize| {
        let ck = Checkpoint::capture(&s.store, &s.adapters, &s.adam, s.allocator.as_ref(), step, best, peak);
        checkpoint::save(&ckpt_dir, &fingerprint, &ck)
    };

    let bs = t.batch_size as usize;
    let per_epoch = data.train.len().div_ceil(bs) as u64;
    let log_every = (total / 100).max(1);
    let (mut loss_sum, mut loss_n) = (0f64, 0u64);
    let (mut examples_seen, mut tokens_seen) = (0usize, 0usize);
    let mut ablation_spent = AblationSpent::default();
    let mut saved_at = step;
    let mut reporter = Reporter::new(step, total);
    while step < total {
        if cancel.load(Ordering::Relaxed) {
            // Stopped early (cancel, worker shutdown, lost lease): save the progress so that a
            // later attempt resumes from this step rather than from the last periodic checkpoint.
            if t.checkpoint_every > 0 && step > saved_at {
                save(&state, step, best.as_ref(), peak_trainable)?;
                on_event(TrainEvent::Checkpoint { step });
            }
            return Err(TrainError::Cancelled);
        }
        let s = step;
        step += 1;
        let order = epoch_order(job.seed, s / per_epoch, data.train.len());
        let pos = (s % per_epoch) as usize * bs;
        let items: Vec<&W::Sample> = order[pos..(pos + bs).min(order.len())].iter().map(|&i| &data.train[i]).collect();
        examples_seen += items.len();
        tokens_seen += items.iter().map(|x| W::tokens(x)).sum::<usize>();
        B::seed(&state.device, job.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(step));

        let lr = learning_rate(t.learning_rate, s, total, warmup);
        let rank_total = live_rank_total(&state.adapters);
        let mut report = |done: u64, of: u64| reporter.part(on_event, Phase::AblationRound, s, done, of, rank_total);
        let ablation = Ablation { samples: &oracle_samples, report: &mut report, spent: &mut ablation_spent };
        let (loss_value, outcome) = train_step(workload, &mut state, &items, ablation, step, lr, t.grad_clip)?;
        for message in outcome.log {
            on_event(TrainEvent::Log { message });
        }
        if !loss_value.is_finite() {
            return Err(TrainError::NonFiniteLoss { step, value: loss_value });
        }
        loss_sum += loss_value;
        loss_n += 1;
        if outcome.changed {
            on_event(ranks(&state, step));
            peak_trainable = peak_trainable.max(effective_trainable(&state));
        }
        reporter.step(on_event, step, loss_value, live_rank_total(&state.adapters));
        if step.is_multiple_of(log_every) || step == total {
            for (name, value) in [("loss", loss_sum / loss_n as f64), ("lr", lr), ("grad_norm", outcome.grad_norm)] {
                on_event(TrainEvent::Metric { step, split: "train".into(), name: name.into(), value });
            }
            (loss_sum, loss_n) = (0.0, 0);
        }
        if t.eval_every > 0 && step.is_multiple_of(t.eval_every) && step < total && !data.validation.is_empty() {
            reporter.phase(on_event, Phase::Validating, step, live_rank_total(&state.adapters));
            let metrics = validate(&state, &mut heldout_seconds)?;
            emit_metrics(on_event, step, "validation", &metrics);
            consider_best(&mut best, &state, step, &metrics);
        }
        if t.checkpoint_every > 0 && step.is_multiple_of(t.checkpoint_every) && step < total {
            save(&state, step, best.as_ref(), peak_trainable)?;
            on_event(TrainEvent::Checkpoint { step });
            saved_at = step;
        }
    }
    let train_seconds = loop_started.elapsed().as_secs_f64();
    on_event(ranks(&state, step));

    // The final weights' held-out metrics, then the best eligible state (or the final one) is
    // evaluated and exported.
    let eval_started = Instant::now();
    if !data.validation.is_empty() {
        reporter.phase(on_event, Phase::Validating, step, live_rank_total(&state.adapters));
        let metrics = workload.heldout(&state, &data.validation)?;
        emit_metrics(on_event, step, "validation", &metrics);
        consider_best(&mut best, &state, step, &metrics);
    }
    let best_step = match best {
        Some(b) if b.step != step => {
            let (best_step, value) = (b.step, b.metric);
            b.restore(&mut state.store, &mut state.adapters);
            on_event(TrainEvent::Log {
                message: format!("exporting the best checkpoint (step {best_step}, validation {} = {value:.4})", selection.metric),
            });
            best_step
        }
        _ => step,
    };
    let (mut evaluations, mut predictions) = (Vec::new(), Vec::new());
    let splits = [("validation", &data.validation), ("test", &data.test)];
    let eval_examples: usize = splits.iter().map(|(_, s)| s.len()).sum();
    let mut evaluated = 0usize;
    for (split, samples) in splits {
        if samples.is_empty() {
            continue;
        }
        reporter.part(on_event, Phase::Evaluating, step, evaluated as u64, eval_examples as u64, live_rank_total(&state.adapters));
        evaluated += samples.len();
        let (metrics, mut preds) = workload.evaluate(&state, split, samples, on_event)?;
        let inputs: Vec<&str> = job.dataset.split(split_of(split)).map(|e| e.text_a.as_str()).collect();
        for p in &mut preds {
            p.input = inputs.get(p.index as usize).map(|s| s.to_string());
        }
        emit_metrics(on_event, best_step, split, &metrics);
        evaluations.push((split.to_string(), metrics));
        if split == "test" {
            predictions = preds;
        }
    }
    if evaluations.is_empty() {
        on_event(TrainEvent::Log { message: "no validation or test split: exporting the final weights without evaluation".into() });
    }
    let eval_seconds = eval_started.elapsed().as_secs_f64();

    let artifacts = workload.export(&state, &job.work_dir.join("export"))?;
    let adapter_bytes = artifacts
        .iter()
        .find(|(k, _)| *k == ArtifactKind::AdapterPeft)
        .and_then(|(_, p)| std::fs::metadata(p.join(ADAPTER_WEIGHTS)).ok())
        .map(|m| m.len());
    let architecture = rankfit_domain::catalog::base_model(&job.base_model).map(|m| m.architecture.as_str().to_string());
    let summary = RunSummary {
        method: Some(cfg.method.method().as_str().to_string()),
        architecture,
        task_family: Some(job.dataset.task_family.as_str().to_string()),
        device: None, // set by the caller, which chose it
        total_steps: Some(total),
        best_step: Some(best_step),
        train_examples: Some(data.train.len() as u64),
        trainable_params: Some(TrainableParams {
            start: start_trainable as u64,
            peak: peak_trainable as u64,
            end: effective_trainable(&state) as u64,
        }),
        final_ranks: state.adapters.list.iter().map(|a| (a.module.clone(), a.live_rank() as u32)).collect(),
        rank_budget: Some(state.allocator.budget()),
        allocator: Some(state.allocator.describe()),
        train_seconds: Some(train_seconds),
        heldout_seconds: Some(heldout_seconds),
        ablation_seconds: (ablation_spent.examples > 0).then_some(ablation_spent.seconds),
        ablation_examples: (ablation_spent.examples > 0).then_some(ablation_spent.examples),
        eval_seconds: Some(eval_seconds),
        eval_examples: Some(eval_examples as u64),
        wall_seconds: Some(started.elapsed().as_secs_f64()),
        examples_per_second: Some(examples_seen as f64 / train_seconds.max(1e-9)),
        tokens_per_second: Some(tokens_seen as f64 / train_seconds.max(1e-9)),
        adapter_file_bytes: adapter_bytes,
        peak_memory_bytes: peak_memory_bytes(),
        facts: workload.facts(data),
    };
    Ok(TrainOutput { evaluations, artifacts, summary, predictions })
}

fn split_of(name: &str) -> Split {
    Split::ALL.into_iter().find(|s| s.as_str() == name).unwrap_or(Split::Test)
}

/// Live rank summed over the adapted modules.
fn live_rank_total(adapters: &Adapters) -> u32 {
    adapters.list.iter().map(|a| a.live_rank() as u32).sum()
}

/// Progress reports: one per second at most while training, and at every change of phase
/// or part. The ETA is this attempt's training pace times the steps left.
struct Reporter {
    started: Instant,
    first_step: u64,
    total: u64,
    last: Option<Instant>,
    loss: (f64, u64),
}

impl Reporter {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    fn new(first_step: u64, total: u64) -> Self {
        Self { started: Instant::now(), first_step, total, last: None, loss: (0.0, 0) }
    }

    fn report(&mut self, on_event: &mut dyn FnMut(TrainEvent), phase: Phase, step: u64, rank_total: u32, part: Option<(u64, u64)>) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let (sum, n) = std::mem::take(&mut self.loss);
        on_event(TrainEvent::Progress(Progress {
            phase,
            step,
            total_steps: self.total,
            elapsed_seconds: elapsed,
            eta_seconds: progress::eta(elapsed, step.saturating_sub(self.first_step), self.total.saturating_sub(step)),
            loss: (n > 0).then(|| sum / n as f64),
            rank_total: Some(rank_total),
            done: part.map(|p| p.0),
            of: part.map(|p| p.1),
        }));
        self.last = Some(Instant::now());
    }

    /// After an optimisation step: reports when a second has passed, and at the last step.
    fn step(&mut self, on_event: &mut dyn FnMut(TrainEvent), step: u64, loss: f64, rank_total: u32) {
        self.loss.0 += loss;
        self.loss.1 += 1;
        if self.last.is_none_or(|t| t.elapsed() >= Self::EVERY) || step == self.total {
            self.report(on_event, Phase::Training, step, rank_total, None);
        }
    }

    fn phase(&mut self, on_event: &mut dyn FnMut(TrainEvent), phase: Phase, step: u64, rank_total: u32) {
        self.report(on_event, phase, step, rank_total, None);
    }

    /// `done` of `of` parts of a phase; reported at its start and end and once a second.
    fn part(&mut self, on_event: &mut dyn FnMut(TrainEvent), phase: Phase, step: u64, done: u64, of: u64, rank_total: u32) {
        if done == 0 || done == of || self.last.is_none_or(|t| t.elapsed() >= Self::EVERY) {
            self.report(on_event, phase, step, rank_total, Some((done, of)));
        }
    }
}

/// One optimisation step: the workload's loss (+ the orthogonal regulariser of SVD-form
/// adapters), backward, then [`after_backward`]. Returns the loss and what the step did.
fn train_step<B: AutodiffBackend, W: Workload<B>>(
    workload: &W,
    state: &mut State<B>,
    items: &[&W::Sample],
    ablation: Ablation<'_, W::Sample>,
    step: u64,
    lr: f64,
    grad_clip: f64,
) -> Result<(f64, crate::step::StepOutcome), TrainError> {
    let live = state.store.live::<B>();
    let mut loss = workload.loss(items, &live, &state.adapters, &state.device);
    let reg_w = state.allocator.orth_reg_weight();
    let mut orth_loss = None;
    if reg_w > 0.0 {
        if let Some(reg) = orthogonal_regularizer(&state.adapters, &live) {
            orth_loss = Some(reg.clone().into_scalar().elem::<f64>());
            loss = loss + reg * reg_w;
        }
    }
    let loss_value = loss.clone().into_scalar().elem::<f64>();
    let grads = collect_grads(&live, &loss.backward());
    drop(live);
    let mut oracle = (!ablation.samples.is_empty()).then(|| workload.oracle(ablation.samples));
    let trainable =
        Trainable { adapters: &mut state.adapters, store: &mut state.store, adam: &mut state.adam, allocator: state.allocator.as_mut() };
    let batch = ablation.samples.len() as u64;
    let mut reporting = oracle.as_mut().map(|o| Reporting { inner: &mut **o, report: ablation.report, spent: ablation.spent, batch });
    let oracle = reporting.as_mut().map(|o| o as &mut dyn AblationOracle<B::InnerBackend>);
    let outcome = after_backward(grads, step, lr, grad_clip, orth_loss, trainable, oracle)?;
    Ok((loss_value, outcome))
}

/// ALoRA's fixed ablation batch (empty for the other methods), where a round reports its
/// progress, and what the rounds have cost so far.
struct Ablation<'a, S> {
    samples: &'a [S],
    report: &'a mut dyn FnMut(u64, u64),
    spent: &'a mut AblationSpent,
}

/// Time in ablation rounds and the examples they scored (variants × batch), for the run
/// summary: estimates of later ALoRA runs scale from them.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct AblationSpent {
    seconds: f64,
    examples: u64,
}

/// An ablation oracle that hands its variants to the workload's oracle in about ten parts,
/// whole forward passes each, and reports after every part: an ALoRA round takes minutes
/// on a CPU and would otherwise show nothing while it runs.
struct Reporting<'a, B: burn::tensor::backend::Backend> {
    inner: &'a mut dyn AblationOracle<B>,
    report: &'a mut dyn FnMut(u64, u64),
    spent: &'a mut AblationSpent,
    /// Examples in the fixed batch.
    batch: u64,
}

impl<B: burn::tensor::backend::Backend> AblationOracle<B> for Reporting<'_, B> {
    fn losses(&mut self, adapters: &Adapters, store: &ParamStore<B>, variants: &[Vec<Vec<bool>>]) -> Result<Vec<f64>, TrainError> {
        let per_pass = self.inner.variants_per_pass().max(1);
        let chunk = per_pass * variants.len().div_ceil(per_pass).div_ceil(10).max(1);
        let of = variants.len() as u64;
        let started = Instant::now();
        (self.report)(0, of);
        let mut out = Vec::with_capacity(variants.len());
        for part in variants.chunks(chunk) {
            out.extend(self.inner.losses(adapters, store, part)?);
            (self.report)(out.len() as u64, of);
        }
        self.spent.seconds += started.elapsed().as_secs_f64();
        self.spent.examples += of * self.batch;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::AdapterKind;
    use crate::allocator::testing::{toy, T};

    /// Scores variant v as v (by its first gate pattern's index), `per_pass` per pass, and
    /// records the size of every call.
    struct Counting {
        per_pass: usize,
        calls: Vec<usize>,
    }

    impl AblationOracle<T> for Counting {
        fn losses(&mut self, _: &Adapters, _: &ParamStore<T>, variants: &[Vec<Vec<bool>>]) -> Result<Vec<f64>, TrainError> {
            self.calls.push(variants.len());
            Ok(variants.iter().map(|v| v[0].iter().filter(|&&g| g).count() as f64).collect())
        }

        fn variants_per_pass(&self) -> usize {
            self.per_pass
        }
    }

    #[test]
    fn an_ablation_round_is_split_at_whole_passes_and_reported_per_part() {
        let (adapters, store, _) = toy(1, 2, AdapterKind::Lora, 1);
        for (n, per_pass, want_calls) in [(25usize, 4usize, vec![4, 4, 4, 4, 4, 4, 1]), (100, 4, [vec![12; 8], vec![4]].concat())] {
            let variants: Vec<Vec<Vec<bool>>> = (0..n).map(|i| vec![vec![i % 2 == 0, i % 3 == 0]]).collect();
            let mut inner = Counting { per_pass, calls: Vec::new() };
            let mut reports = Vec::new();
            let mut report = |done: u64, of: u64| reports.push((done, of));
            let mut spent = AblationSpent::default();
            let got = Reporting { inner: &mut inner, report: &mut report, spent: &mut spent, batch: 4 }
                .losses(&adapters, &store, &variants)
                .unwrap();
            assert_eq!(spent.examples, 4 * variants.len() as u64, "every variant scores the batch");
            let direct: Vec<f64> = variants.iter().map(|v| v[0].iter().filter(|&&g| g).count() as f64).collect();
            assert_eq!(got, direct, "losses in variant order");
            assert_eq!(inner.calls, want_calls, "parts of whole passes (n = {n})");
            let mut done = vec![0u64];
            done.extend(want_calls.iter().scan(0u64, |acc, &c| {
                *acc += c as u64;
                Some(*acc)
            }));
            assert_eq!(reports, done.iter().map(|&d| (d, n as u64)).collect::<Vec<_>>());
        }
    }

    #[test]
    fn reporter_throttles_steps_but_not_phase_changes_or_the_last_step() {
        let mut events = Vec::new();
        let mut on_event = |e: TrainEvent| events.push(e);
        let mut r = Reporter::new(10, 100);
        for step in 11..=20 {
            r.step(&mut on_event, step, 0.5, 16);
        }
        r.phase(&mut on_event, Phase::Validating, 20, 16);
        r.step(&mut on_event, 100, 0.25, 12);
        let reports: Vec<Progress> = events
            .into_iter()
            .filter_map(|e| match e {
                TrainEvent::Progress(p) => Some(p),
                _ => None,
            })
            .collect();
        // The first step reports; the next nine fall within the same second.
        assert_eq!(
            reports.iter().map(|p| (p.phase, p.step)).collect::<Vec<_>>(),
            vec![(Phase::Training, 11), (Phase::Validating, 20), (Phase::Training, 100)]
        );
        assert_eq!(reports[0].loss, Some(0.5));
        assert_eq!(reports[2].loss, Some(0.25), "the loss is the mean since the previous report");
        assert_eq!(reports[2].rank_total, Some(12));
        assert_eq!(reports[2].eta_seconds, Some(0.0));
        assert!(reports[0].eta_seconds.is_some_and(|e| e >= 0.0), "ETA from this attempt's steps (resumed at 10)");
        assert!(reports.iter().all(|p| p.total_steps == 100));
    }
}
