//! The training loop: AdamW with linear warm-up/decay, gradient clipping, rank allocation,
//! periodic evaluation with best-checkpoint keeping, resumable checkpoints, cancellation
//! and the final exports.
//!
//! One step t (1-based) of T: forward on a shuffled batch (per-epoch order and per-step
//! dropout both derived from the seed, so a resumed run replays the same stream), task loss
//! (+ orthogonal regularizer for the SVD triple), backward, then [`crate::step::after_backward`]
//! in PEFT's order: clipping, AdamW, and the allocator's importance update and masking on
//! the updated weights and clipped gradients.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rankfit_domain::metrics;
use rankfit_domain::prediction::{Output, Prediction};
use rankfit_domain::run::RunConfig;
use serde_json::{json, Map, Value};

use crate::adapters::adalora::orthogonal_regularizer;
use crate::adapters::{AdapterKind, AdapterSpec, Adapters, VariantHook, VariantMasks};
use crate::allocator::{for_method_with, oracle_batch, rank_map, AblationOracle, AllocatorSetup, RankAllocator};
use crate::assets::locate_minilm;
use crate::checkpoint::{self, Best, Checkpoint};
use crate::data::{prepare, HeadTask, Sample};
use crate::export::{ExportMethod, TrainedAdapter};
use crate::model::bert::{Bert, HeadParams, Inputs};
use crate::model::head::init_head;
use crate::model::load_minilm;
use crate::params::{collect_grads, AdamW, ParamStore};
use crate::step::{after_backward, Trainable};
use crate::tokenize::{collate, Batch};
use crate::{ArtifactKind, TrainError, TrainEvent, TrainJob, TrainOutput, CHECKPOINT_DIR};

/// Batch size used for evaluation.
const EVAL_BATCH: usize = 64;

/// Steps of a run: `max_steps`, else `ceil(epochs * ceil(n / batch))` (as HF's Trainer).
pub fn total_steps(cfg: &RunConfig, n_train: usize) -> u64 {
    let per_epoch = n_train.div_ceil(cfg.training.batch_size as usize).max(1) as u64;
    cfg.training.max_steps.unwrap_or_else(|| ((cfg.training.epochs * per_epoch as f64).ceil() as u64).max(1))
}

/// HF's `get_linear_schedule_with_warmup` at 0-based step `s`.
pub fn learning_rate(base: f64, s: u64, total: u64, warmup: u64) -> f64 {
    if s < warmup {
        base * s as f64 / warmup.max(1) as f64
    } else {
        base * ((total - s.min(total)) as f64 / (total - warmup).max(1) as f64).max(0.0)
    }
}

/// Everything that lives for one run.
struct Run<'a, B: AutodiffBackend> {
    job: &'a TrainJob,
    device: B::Device,
    bert: Bert<B>,
    task: HeadTask,
    store: ParamStore<B::InnerBackend>,
    adapters: Adapters,
    head: HeadParams,
    allocator: Box<dyn RankAllocator<B::InnerBackend>>,
    adam: AdamW<B::InnerBackend>,
    method: ExportMethod,
    /// The allocator's fixed scoring batch (ALoRA), empty otherwise.
    oracle_batch: Vec<Sample>,
}

pub fn run<B: AutodiffBackend>(
    job: &TrainJob,
    on_event: &mut dyn FnMut(TrainEvent),
    cancel: &AtomicBool,
    device: B::Device,
) -> Result<TrainOutput, TrainError> {
    let started = Instant::now();
    let cfg = &job.config;
    cfg.validate(job.budget).map_err(|e| TrainError::Config(e.to_string()))?;
    let base = rankfit_domain::catalog::base_model(&job.base_model)
        .ok_or_else(|| TrainError::Model(job.base_model.clone(), "unknown base model".into()))?;
    if base.architecture != rankfit_domain::catalog::Architecture::Bert {
        return Err(TrainError::Model(job.base_model.clone(), "the Llama decoder path is not available in this build".into()));
    }
    let files = locate_minilm(&job.assets_dir)?;
    let (bert, tok) = load_minilm::<B>(&files, &device)?;
    let t = &cfg.training;
    let data = prepare(&job.dataset, &tok, t.max_seq_len as usize)?;
    let total = total_steps(cfg, data.train.len());
    let warmup = (t.warmup_ratio * total as f64).ceil() as u64;

    // Initial state, seeded.
    let mut rng = StdRng::seed_from_u64(job.seed);
    let mut store = ParamStore::<B::InnerBackend>::new();
    let head = init_head(&mut store, &bert.pooler, data.task.outputs(), t.train_pooler, &mut rng, &device);
    let init_r = cfg.method.init_rank(job.budget) as usize;
    let spec = AdapterSpec { kind: AdapterKind::for_method(&cfg.method), rank: init_r, alpha: t.lora_alpha, dropout: t.lora_dropout };
    let mut adapters = Adapters::build_bert(&bert.config, &t.target_modules, spec, &mut store, &mut rng, &device)?;
    let setup = AllocatorSetup::for_run(total, init_r, job.budget, &adapters, data.train.len(), t.batch_size, job.seed);
    let (allocator, method) = for_method_with::<B::InnerBackend>(&cfg.method, &setup)?;
    adapters.set_masking(allocator.masking());
    let oracle_batch = oracle_batch(&cfg.method, allocator.as_ref(), job.seed, &data.train, &data.validation);
    let adam = AdamW::new(store.params.len(), t.weight_decay);
    let mut run = Run::<B> { job, device, bert, task: data.task.clone(), store, adapters, head, allocator, adam, method, oracle_batch };

    // Resume from the latest checkpoint of this run, if any.
    let ckpt_dir = job.work_dir.join(CHECKPOINT_DIR);
    let fingerprint = checkpoint::fingerprint(job, total);
    let mut step = 0u64;
    let mut best: Option<Best<B::InnerBackend>> = None;
    let mut peak_trainable = effective_trainable(&run);
    let start_trainable = peak_trainable;
    if let Some(ck) = checkpoint::load::<B::InnerBackend>(&ckpt_dir, &fingerprint, &run.device)? {
        step = ck.step;
        ck.apply(&mut run.store, &mut run.adapters, &mut run.adam, run.allocator.as_mut(), &run.device)?;
        best = ck.best;
        peak_trainable = ck.peak_trainable.max(peak_trainable);
        on_event(TrainEvent::Log { message: format!("resumed from the checkpoint at step {step} of {total}") });
    } else {
        on_event(TrainEvent::Log {
            message: format!(
                "training {} on {} examples ({} validation): {total} steps, {} adapters, {} trainable parameters",
                cfg.method.method().display_name(),
                data.train.len(),
                data.validation.len(),
                run.adapters.list.len(),
                run.store.trainable_count()
            ),
        });
    }
    on_event(TrainEvent::Ranks(rank_map(step, run.allocator.budget(), &run.adapters)));

    let bs = t.batch_size as usize;
    let per_epoch = data.train.len().div_ceil(bs) as u64;
    let log_every = (total / 100).max(1);
    let (mut loss_sum, mut loss_n) = (0f64, 0u64);
    let mut examples_seen = 0usize;
    let loop_started = Instant::now();
    let mut saved_at = step;
    while step < total {
        if cancel.load(Ordering::Relaxed) {
            // Stopped early (cancel, worker shutdown, lost lease): save the progress so that a
            // later attempt resumes from this step rather than from the last periodic checkpoint.
            if t.checkpoint_every > 0 && step > saved_at {
                let ck =
                    Checkpoint::capture(&run.store, &run.adapters, &run.adam, run.allocator.as_ref(), step, best.as_ref(), peak_trainable);
                checkpoint::save(&ckpt_dir, &fingerprint, &ck)?;
                on_event(TrainEvent::Checkpoint { step });
            }
            return Err(TrainError::Cancelled);
        }
        let s = step;
        step += 1;
        let epoch = s / per_epoch;
        let order = epoch_order(job.seed, epoch, data.train.len());
        let pos = (s % per_epoch) as usize * bs;
        let items: Vec<&Sample> = order[pos..(pos + bs).min(order.len())].iter().map(|&i| &data.train[i]).collect();
        examples_seen += items.len();
        B::seed(&run.device, job.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(step));

        let (loss_value, changed, grad_norm, logs) = run.train_step(&items, step, s, total, warmup)?;
        for message in logs {
            on_event(TrainEvent::Log { message });
        }
        if !loss_value.is_finite() {
            return Err(TrainError::Other(format!("the loss became {loss_value} at step {step}; lower the learning rate")));
        }
        loss_sum += loss_value;
        loss_n += 1;
        if changed {
            on_event(TrainEvent::Ranks(rank_map(step, run.allocator.budget(), &run.adapters)));
            peak_trainable = peak_trainable.max(effective_trainable(&run));
        }
        if step.is_multiple_of(log_every) || step == total {
            let lr = learning_rate(t.learning_rate, s, total, warmup);
            for (name, value) in [("loss", loss_sum / loss_n as f64), ("lr", lr), ("grad_norm", grad_norm)] {
                on_event(TrainEvent::Metric { step, split: "train".into(), name: name.into(), value });
            }
            (loss_sum, loss_n) = (0.0, 0);
        }
        let eval_now = t.eval_every > 0 && step.is_multiple_of(t.eval_every) && step < total;
        if eval_now && !data.validation.is_empty() {
            let metrics = run.evaluate(&data.validation)?;
            emit_metrics(on_event, step, "validation", &metrics);
            consider_best(&mut best, &run, step, &metrics);
        }
        if t.checkpoint_every > 0 && step.is_multiple_of(t.checkpoint_every) && step < total {
            let ck = Checkpoint::capture(&run.store, &run.adapters, &run.adam, run.allocator.as_ref(), step, best.as_ref(), peak_trainable);
            checkpoint::save(&ckpt_dir, &fingerprint, &ck)?;
            on_event(TrainEvent::Checkpoint { step });
            saved_at = step;
        }
    }
    let train_seconds = loop_started.elapsed().as_secs_f64();
    on_event(TrainEvent::Ranks(rank_map(step, run.allocator.budget(), &run.adapters)));

    // Final evaluation; the best eligible state (or the final one) is what gets exported.
    let mut evaluations = Vec::new();
    if !data.validation.is_empty() {
        let metrics = run.evaluate(&data.validation)?;
        emit_metrics(on_event, step, "validation", &metrics);
        consider_best(&mut best, &run, step, &metrics);
    } else {
        on_event(TrainEvent::Log { message: "no validation split: exporting the final weights without evaluation".into() });
    }
    let best_step = match best {
        Some(b) if b.step != step => {
            let (best_step, metric) = (b.step, b.metric);
            b.restore(&mut run.store, &mut run.adapters);
            on_event(TrainEvent::Log {
                message: format!("exporting the best checkpoint (step {best_step}, {} = {metric:.4})", run.task.family().primary_metric()),
            });
            best_step
        }
        _ => step,
    };
    let mut predictions = Vec::new();
    if !data.validation.is_empty() {
        evaluations.push(("validation".to_string(), run.evaluate(&data.validation)?));
    }
    if !data.test.is_empty() {
        let logits = run.logits(&data.test)?;
        evaluations.push(("test".to_string(), score(&run.task, &logits, &data.test)?));
        predictions = predictions_of(&run.task, &logits, &data.test);
    }

    let artifacts = run.export(&files)?;
    let end_trainable = effective_trainable(&run);
    let adapter_bytes = artifacts
        .iter()
        .find(|(k, _)| *k == ArtifactKind::AdapterPeft)
        .and_then(|(_, p)| std::fs::metadata(p.join(crate::export::ADAPTER_WEIGHTS)).ok())
        .map(|m| m.len());
    let summary = json!({
        "method": cfg.method.method().as_str(),
        "total_steps": total,
        "best_step": best_step,
        "train_examples": data.train.len(),
        "trainable_params": { "start": start_trainable, "peak": peak_trainable, "end": end_trainable },
        "final_ranks": run.adapters.list.iter().map(|a| json!([a.module, a.live_rank()])).collect::<Vec<_>>(),
        "rank_budget": run.allocator.budget(),
        "allocator": run.allocator.describe(),
        "train_seconds": train_seconds,
        "wall_seconds": started.elapsed().as_secs_f64(),
        "examples_per_second": examples_seen as f64 / train_seconds.max(1e-9),
        "adapter_file_bytes": adapter_bytes,
        "peak_memory_bytes": peak_memory_bytes(),
    });
    Ok(TrainOutput { evaluations, artifacts, summary, predictions })
}

impl<B: AutodiffBackend> Run<'_, B> {
    /// One optimisation step; returns (loss, whether the rank map changed, grad norm, log lines).
    #[allow(clippy::type_complexity)]
    fn train_step(
        &mut self,
        items: &[&Sample],
        step: u64,
        s: u64,
        total: u64,
        warmup: u64,
    ) -> Result<(f64, bool, f64, Vec<String>), TrainError> {
        let t = &self.job.config.training;
        let batch = collate(&items.iter().map(|x| &x.enc).collect::<Vec<_>>(), 0);
        let inputs = Inputs::<B>::new(&batch, &self.device);
        let live = self.store.live::<B>();
        let logits = self.bert.logits(&inputs, &live, &self.head, &self.adapters, true);
        let mut loss = task_loss(&self.task, logits, items, &self.device);
        let reg_w = self.allocator.orth_reg_weight();
        let mut orth_loss = None;
        if reg_w > 0.0 {
            if let Some(reg) = orthogonal_regularizer(&self.adapters, &live) {
                orth_loss = Some(reg.clone().into_scalar().elem_f64());
                loss = loss + reg * reg_w;
            }
        }
        let loss_value: f64 = loss.clone().into_scalar().elem_f64();
        let grads = loss.backward();
        let g = collect_grads(&live, &grads);
        drop(live);
        let mut oracle = BertOracle::<B> { bert: &self.bert, head: self.head, task: &self.task, samples: &self.oracle_batch };
        let oracle: Option<&mut dyn AblationOracle<B::InnerBackend>> = if self.oracle_batch.is_empty() { None } else { Some(&mut oracle) };
        let state =
            Trainable { adapters: &mut self.adapters, store: &mut self.store, adam: &mut self.adam, allocator: self.allocator.as_mut() };
        let lr = learning_rate(t.learning_rate, s, total, warmup);
        let out = after_backward(g, step, lr, t.grad_clip, orth_loss, state, oracle)?;
        Ok((loss_value, out.changed, out.grad_norm, out.log))
    }

    /// Metrics of the current weights on `samples` (no dropout).
    fn evaluate(&self, samples: &[Sample]) -> Result<Map<String, Value>, TrainError> {
        score(&self.task, &self.logits(samples)?, samples)
    }

    /// Head outputs of the current weights on `samples` (no dropout), row-major in sample order.
    fn logits(&self, samples: &[Sample]) -> Result<Vec<f32>, TrainError> {
        let params = self.store.constants::<B>();
        let outputs = self.task.outputs();
        let mut all_logits = Vec::with_capacity(samples.len() * outputs);
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.sort_by_key(|&i| samples[i].enc.ids.len());
        let mut sorted_logits = vec![0f32; samples.len() * outputs];
        for chunk in order.chunks(EVAL_BATCH) {
            let batch: Batch = collate(&chunk.iter().map(|&i| &samples[i].enc).collect::<Vec<_>>(), 0);
            let logits = self.bert.logits(&Inputs::<B>::new(&batch, &self.device), &params, &self.head, &self.adapters, false);
            let data = logits.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| TrainError::Other(format!("{e:?}")))?;
            for (row, &i) in chunk.iter().enumerate() {
                sorted_logits[i * outputs..(i + 1) * outputs].copy_from_slice(&data[row * outputs..(row + 1) * outputs]);
            }
        }
        all_logits.extend(sorted_logits);
        Ok(all_logits)
    }

    fn export(&self, files: &crate::assets::MiniLmFiles) -> Result<Vec<(ArtifactKind, std::path::PathBuf)>, TrainError> {
        let t = &self.job.config.training;
        let labels: Vec<String> = match &self.task {
            HeadTask::Classification { labels } => labels.clone(),
            HeadTask::Regression => Vec::new(),
        };
        let trained = TrainedAdapter {
            store: &self.store,
            adapters: &self.adapters,
            head: self.head,
            train_pooler: t.train_pooler,
            method: self.method.clone(),
            target_modules: &t.target_modules,
            lora_alpha: t.lora_alpha,
            lora_dropout: t.lora_dropout,
            base_model: rankfit_domain::catalog::base_model(&self.job.base_model).map_or(self.job.base_model.as_str(), |m| m.id),
            labels: &labels,
        };
        let out = self.job.work_dir.join("export");
        std::fs::create_dir_all(&out)?;
        let mut artifacts = vec![(ArtifactKind::AdapterPeft, trained.write_peft(&out.join("adapter_peft"))?)];
        // AdaLoRA-format exports (AdaLoRA, SalientLoRA) also come as plain LoRA; RoLoRA and
        // ALoRA are plain LoRA with per-module ranks already.
        if matches!(self.method, ExportMethod::AdaLora { .. }) {
            artifacts.push((ArtifactKind::AdapterLora, trained.write_plain_lora(&out.join("adapter_lora"))?));
        }
        artifacts.push((
            ArtifactKind::AdapterMerged,
            trained.write_merged(&out.join("merged"), &files.config, &files.weights, &files.tokenizer)?,
        ));
        Ok(artifacts)
    }
}

/// Token rows per forward pass when scoring ablation variants (variants of the fixed batch
/// are stacked along the batch dimension up to this many tokens).
const ORACLE_TOKENS: usize = 8192;

/// ALoRA's ablation oracle on the BERT encoder: the fixed batch repeated once per variant,
/// each copy with its own gates ([`VariantHook`]), several variants per forward pass.
pub struct BertOracle<'a, B: AutodiffBackend> {
    pub bert: &'a Bert<B>,
    pub head: HeadParams,
    pub task: &'a HeadTask,
    pub samples: &'a [Sample],
}

impl<B: AutodiffBackend> AblationOracle<B::InnerBackend> for BertOracle<'_, B> {
    fn losses(
        &mut self,
        adapters: &Adapters,
        store: &ParamStore<B::InnerBackend>,
        variants: &[Vec<Vec<bool>>],
    ) -> Result<Vec<f64>, TrainError> {
        let params = store.constants::<B>();
        let device = params[0].device();
        let encs: Vec<_> = self.samples.iter().map(|s| &s.enc).collect();
        let one = collate(&encs, 0);
        let rows = one.batch * one.seq;
        let per_pass = (ORACLE_TOKENS / rows.max(1)).max(1);
        let outputs = self.task.outputs();
        let n = self.samples.len();
        let mut out = Vec::with_capacity(variants.len());
        for chunk in variants.chunks(per_pass) {
            let mut stacked = Vec::with_capacity(chunk.len() * n);
            for _ in chunk {
                stacked.extend(encs.iter().copied());
            }
            let batch = collate(&stacked, 0);
            let hook = VariantHook { adapters, masks: VariantMasks::new(adapters, chunk, rows, &device) };
            let logits = self.bert.logits(&Inputs::<B>::new(&batch, &device), &params, &self.head, &hook, false);
            let data = logits.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| TrainError::Other(format!("{e:?}")))?;
            for v in 0..chunk.len() {
                let block = &data[v * n * outputs..(v + 1) * n * outputs];
                out.push(host_loss(self.task, block, self.samples));
            }
        }
        Ok(out)
    }
}

/// Mean task loss of host-side logits (cross-entropy or MSE).
fn host_loss(task: &HeadTask, logits: &[f32], samples: &[Sample]) -> f64 {
    match task {
        HeadTask::Classification { labels } => {
            let c = labels.len();
            let total: f64 = samples
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let row = &logits[i * c..(i + 1) * c];
                    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                    let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
                    lse - row[s.class] as f64
                })
                .sum();
            total / samples.len().max(1) as f64
        }
        HeadTask::Regression => {
            let total: f64 = samples.iter().zip(logits).map(|(s, &y)| (y as f64 - s.score as f64).powi(2)).sum();
            total / samples.len().max(1) as f64
        }
    }
}

trait ElemF64 {
    fn elem_f64(self) -> f64;
}

impl<E: burn::tensor::ElementConversion> ElemF64 for E {
    fn elem_f64(self) -> f64 {
        self.elem::<f64>()
    }
}

/// Cross-entropy (classification) or MSE (regression), averaged over the batch.
fn task_loss<B: Backend>(task: &HeadTask, logits: Tensor<B, 2>, items: &[&Sample], device: &B::Device) -> Tensor<B, 1> {
    let n = items.len();
    match task {
        HeadTask::Classification { labels } => {
            let c = labels.len();
            let mut onehot = vec![0f32; n * c];
            for (i, s) in items.iter().enumerate() {
                onehot[i * c + s.class] = 1.0;
            }
            let onehot = Tensor::<B, 2>::from_data(TensorData::new(onehot, [n, c]), device);
            (log_softmax(logits, 1) * onehot).sum().neg() / n as f64
        }
        HeadTask::Regression => {
            let y: Vec<f32> = items.iter().map(|s| s.score).collect();
            let y = Tensor::<B, 2>::from_data(TensorData::new(y, [n, 1]), device);
            (logits - y).square().mean()
        }
    }
}

/// Evaluation metrics for a task from host-side logits.
pub fn score(task: &HeadTask, logits: &[f32], samples: &[Sample]) -> Result<Map<String, Value>, TrainError> {
    let bad = |e: metrics::MetricError| TrainError::Other(format!("metric: {e}"));
    let mut out = Map::new();
    match task {
        HeadTask::Classification { labels } => {
            let c = labels.len();
            let mut loss = 0f64;
            let mut preds = Vec::with_capacity(samples.len());
            for (i, s) in samples.iter().enumerate() {
                let row = &logits[i * c..(i + 1) * c];
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
                loss += lse - row[s.class] as f64;
                preds.push(row.iter().enumerate().fold(0, |best, (j, &v)| if v > row[best] { j } else { best }));
            }
            let refs: Vec<usize> = samples.iter().map(|s| s.class).collect();
            out.insert("accuracy".into(), json!(metrics::accuracy(&refs, &preds).map_err(bad)?));
            let f1 = if c == 2 { metrics::f1_binary(&refs, &preds) } else { metrics::f1_macro(&refs, &preds) };
            out.insert("f1".into(), json!(f1.map_err(bad)?));
            out.insert("mcc".into(), json!(metrics::matthews_corrcoef(&refs, &preds).map_err(bad)?));
            out.insert("loss".into(), json!(loss / samples.len() as f64));
        }
        HeadTask::Regression => {
            let preds: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
            let refs: Vec<f64> = samples.iter().map(|s| s.score as f64).collect();
            out.insert("pearson".into(), json!(metrics::pearson(&refs, &preds).map_err(bad)?));
            out.insert("spearman".into(), json!(metrics::spearman(&refs, &preds).map_err(bad)?));
            out.insert("mse".into(), json!(metrics::mse(&refs, &preds).map_err(bad)?));
        }
    }
    Ok(out)
}

/// Per-example predictions from host-side logits: the predicted class (arg max) or score,
/// the reference, and the per-example `accuracy` (0/1) whose mean is the split's accuracy.
pub fn predictions_of(task: &HeadTask, logits: &[f32], samples: &[Sample]) -> Vec<Prediction> {
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| match task {
            HeadTask::Classification { labels } => {
                let c = labels.len();
                let row = &logits[i * c..(i + 1) * c];
                let p = row.iter().enumerate().fold(0, |best, (j, &v)| if v > row[best] { j } else { best });
                Prediction {
                    index: i as u32,
                    predicted: Output::Class { index: p, label: labels[p].clone() },
                    reference: Output::Class { index: s.class, label: labels[s.class].clone() },
                    scores: [("accuracy".to_string(), f64::from(u8::from(p == s.class)))].into_iter().collect(),
                }
            }
            HeadTask::Regression => Prediction {
                index: i as u32,
                predicted: Output::Value { value: f64::from(logits[i]) },
                reference: Output::Value { value: f64::from(s.score) },
                scores: Default::default(),
            },
        })
        .collect()
}

pub fn emit_metrics(on_event: &mut dyn FnMut(TrainEvent), step: u64, split: &str, metrics: &Map<String, Value>) {
    for (name, v) in metrics {
        if let Some(value) = v.as_f64() {
            on_event(TrainEvent::Metric { step, split: split.into(), name: name.clone(), value });
        }
    }
}

/// Keeps the state with the best primary validation metric, among states whose rank
/// pattern is final (so an adaptive run never exports more than its budget).
fn consider_best<B: AutodiffBackend>(best: &mut Option<Best<B::InnerBackend>>, run: &Run<'_, B>, step: u64, metrics: &Map<String, Value>) {
    if !run.allocator.is_final(step) {
        return;
    }
    let primary = run.task.family().primary_metric();
    let Some(value) = metrics.get(primary).and_then(Value::as_f64) else { return };
    if best.as_ref().is_none_or(|b| value > b.metric) {
        *best = Some(Best::capture(&run.store, &run.adapters, step, value));
    }
}

/// A permutation of the training set for `epoch`, from the seed alone.
pub fn epoch_order(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ epoch.wrapping_add(1).wrapping_mul(0xA076_1D64_78BD_642F));
    order.shuffle(&mut rng);
    order
}

/// Trainable parameters that matter: head + live adapter components.
fn effective_trainable<B: AutodiffBackend>(run: &Run<'_, B>) -> usize {
    let head: usize = [run.head.pooler_w, run.head.pooler_b, run.head.classifier_w, run.head.classifier_b]
        .iter()
        .filter(|&&i| run.store.params[i].trainable)
        .map(|&i| run.store.params[i].value.dims().iter().product::<usize>())
        .sum();
    head + run.adapters.live_params()
}

/// Peak resident memory of this process (Linux `VmHWM`), if known.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string(Path::new("/proc/self/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
