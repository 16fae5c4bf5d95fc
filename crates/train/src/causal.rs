//! Causal-LM fine-tuning of a Llama decoder (summarization, instruction tuning).
//!
//! Same shape as the encoder loop ([`crate::trainer`]): AdamW with linear warm-up/decay,
//! gradient clipping, the run's rank allocator from [`for_method_with`] called after every
//! optimizer step (the shared [`crate::step::after_backward`]), resumable checkpoints, the cancel flag, [`TrainEvent`]s for loss/lr/ranks.
//! What differs:
//!
//! - the loss is the mean next-token cross-entropy over the *answer* tokens only (prompt
//!   tokens are context, never targets), and the vocabulary projection is computed only at
//!   the positions that predict an answer token;
//! - adapters sit on the decoder's `q/k/v/o/gate/up/down_proj` ([`Adapters::build_llama`]);
//! - evaluation reports the held-out loss and perplexity on the whole split, and ROUGE-1/2/L/
//!   Lsum (rouge-score's definitions, Porter stemming by default) of greedy generations for
//!   the first `generation.eval_examples` examples; an optional external [`Judge`] grades them;
//! - the best state (with `eval_every`) is the one with the lowest validation loss;
//! - exports are PEFT `CAUSAL_LM` adapters ([`export`]).
//!
//! All five methods run here: [`DecoderOracle`] gives ALoRA the answer-token loss of its
//! fixed batch under any variant of the adapters' gates.

pub mod data;
pub mod export;
pub mod judge;
pub mod tasks;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rankfit_domain::catalog::{self, Architecture};
use rankfit_domain::metrics::rouge::RougeScorer;
use rankfit_domain::prediction::{Output, Prediction};
use serde_json::{json, Map, Value};

use self::data::{prepare, CausalBatch, CausalSample};
use self::export::DecoderAdapter;
use self::judge::{Judge, JudgeItem};
use crate::adapters::adalora::orthogonal_regularizer;
use crate::adapters::llama::{LlamaHook, LlamaVariantHook};
use crate::adapters::{AdapterKind, AdapterSpec, Adapters};
use crate::allocator::{for_method_with, oracle_batch, rank_map, AblationOracle, AllocatorSetup, RankAllocator};
use crate::checkpoint::{self, Best, Checkpoint};
use crate::export::{ExportMethod, ADAPTER_WEIGHTS};
use crate::model::llama::{load_smollm2, DecoderHook, DecoderInputs, Llama};
use crate::model::llama_generate::{greedy, GenerateOptions};
use crate::model::llama_tokenizer::LlamaTokenizer;
use crate::params::{collect_grads, AdamW, ParamStore};
use crate::step::{after_backward, Trainable};
use crate::trainer::{emit_metrics, epoch_order, learning_rate, peak_memory_bytes, total_steps};
use crate::{ArtifactKind, TrainError, TrainEvent, TrainJob, TrainOutput, CHECKPOINT_DIR};

/// Sequences per forward pass when evaluating the loss.
pub const EVAL_BATCH: usize = 8;
/// Token id written into padding (never attended to by real tokens, never a target).
const PAD: u32 = 0;

/// Hooks a deployment can add to a decoder run.
#[derive(Default)]
pub struct CausalOptions {
    /// Grades generated answers (off when None).
    pub judge: Option<Box<dyn Judge>>,
}

/// A catalog decoder: the model, its tokenizer and the HF repository it corresponds to
/// (`base_model_name_or_path` of the exports).
pub fn load_decoder<B: Backend>(
    base_model: &str,
    assets_dir: &Path,
    device: &B::Device,
) -> Result<(Llama<B>, LlamaTokenizer, &'static str), TrainError> {
    match base_model {
        "smollm2-135m-instruct" => {
            let (model, tok) = load_smollm2::<B>(assets_dir, device)?;
            Ok((model, tok, "HuggingFaceTB/SmolLM2-135M-Instruct"))
        }
        other => Err(TrainError::Model(other.into(), "no decoder weights are known for this base model".into())),
    }
}

/// Summed next-token cross-entropy over the answer tokens of `batch` (a `[1]` tensor).
pub fn answer_nll<B: Backend>(
    model: &Llama<B>,
    batch: &CausalBatch,
    params: &[Tensor<B, 2>],
    hook: &dyn DecoderHook<B>,
    train: bool,
    device: &B::Device,
) -> Tensor<B, 1> {
    token_nll(model, batch, params, hook, train, device).sum()
}

/// Next-token cross-entropy of every answer token of `batch`, in `batch.positions` order.
fn token_nll<B: Backend>(
    model: &Llama<B>,
    batch: &CausalBatch,
    params: &[Tensor<B, 2>],
    hook: &dyn DecoderHook<B>,
    train: bool,
    device: &B::Device,
) -> Tensor<B, 1> {
    let inp = DecoderInputs::new(&batch.ids, None, batch.batch, batch.seq, device);
    let hidden = model.forward_hidden(&inp, None, params, hook, train);
    let hidden = hidden.reshape([batch.batch * batch.seq, model.config.hidden_size]);
    let n = batch.tokens();
    let pos = Tensor::<B, 1, Int>::from_data(TensorData::new(batch.positions.clone(), [n]), device);
    let logits = model.lm_head(hidden.select(0, pos));
    let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(batch.targets.clone(), [n, 1]), device);
    log_softmax(logits, 1).gather(1, targets).reshape([n]).neg()
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

/// Token rows per forward pass when scoring ablation variants (copies of the fixed batch
/// are stacked along the batch dimension up to this many tokens).
const ORACLE_TOKENS: usize = 4096;

/// ALoRA's ablation oracle on the decoder: the mean answer-token loss of a fixed batch (no
/// dropout) under each variant of the adapters' gates. Several variants share one forward
/// pass: the batch is repeated once per variant, each copy with its own gates.
pub struct DecoderOracle<'a, AD: AutodiffBackend> {
    model: &'a Llama<AD>,
    samples: &'a [CausalSample],
}

impl<'a, AD: AutodiffBackend> DecoderOracle<'a, AD> {
    pub fn new(model: &'a Llama<AD>, samples: &'a [CausalSample]) -> Self {
        Self { model, samples }
    }
}

impl<AD: AutodiffBackend> AblationOracle<AD::InnerBackend> for DecoderOracle<'_, AD> {
    fn losses(
        &mut self,
        adapters: &Adapters,
        store: &ParamStore<AD::InnerBackend>,
        variants: &[Vec<Vec<bool>>],
    ) -> Result<Vec<f64>, TrainError> {
        let params = store.constants::<AD>();
        let Some(device) = params.first().map(|p| p.device()) else {
            return Err(TrainError::Other("the ablation oracle needs trainable parameters".into()));
        };
        let one: Vec<&CausalSample> = self.samples.iter().collect();
        let single = CausalBatch::new(&one, PAD);
        let (rows, tokens) = (single.batch * single.seq, single.tokens());
        if tokens == 0 {
            return Err(TrainError::Data("the ablation batch has no answer tokens".into()));
        }
        let per_pass = (ORACLE_TOKENS / rows.max(1)).max(1);
        let mut out = Vec::with_capacity(variants.len());
        for chunk in variants.chunks(per_pass) {
            let stacked: Vec<&CausalSample> = chunk.iter().flat_map(|_| one.iter().copied()).collect();
            let batch = CausalBatch::new(&stacked, PAD);
            let hook = LlamaVariantHook::new(adapters, self.model.config.num_hidden_layers, chunk, rows, &device);
            let nll = token_nll(self.model, &batch, &params, &hook, false, &device);
            let data = nll.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| TrainError::Other(format!("{e:?}")))?;
            // Every copy has the same answer tokens, in the batch's row order.
            out.extend(data.chunks(tokens).map(|c| c.iter().map(|&v| v as f64).sum::<f64>() / tokens as f64));
        }
        Ok(out)
    }
}

/// Everything that lives for one decoder run.
pub struct CausalRun<'a, B: AutodiffBackend> {
    job: &'a TrainJob,
    device: B::Device,
    pub model: Llama<B>,
    pub tok: LlamaTokenizer,
    pub store: ParamStore<B::InnerBackend>,
    pub adapters: Adapters,
    allocator: Box<dyn RankAllocator<B::InnerBackend>>,
    adam: AdamW<B::InnerBackend>,
    method: ExportMethod,
    /// ALoRA's fixed ablation batch (empty for the other methods).
    oracle_batch: Vec<CausalSample>,
    hf_repo: &'static str,
    judge: Option<Box<dyn Judge>>,
}

/// Trains a decoder run (see the module docs); resumes from `work_dir/checkpoint`.
pub fn run<B: AutodiffBackend>(
    job: &TrainJob,
    on_event: &mut dyn FnMut(TrainEvent),
    cancel: &AtomicBool,
    device: B::Device,
    opts: CausalOptions,
) -> Result<TrainOutput, TrainError> {
    let started = Instant::now();
    let cfg = &job.config;
    cfg.validate(job.budget).map_err(|e| TrainError::Config(e.to_string()))?;
    let base =
        catalog::base_model(&job.base_model).ok_or_else(|| TrainError::Model(job.base_model.clone(), "unknown base model".into()))?;
    if base.architecture != Architecture::Llama {
        return Err(TrainError::Model(job.base_model.clone(), "not a decoder; the encoder loop trains it".into()));
    }
    let (model, tok, hf_repo) = load_decoder::<B>(&job.base_model, &job.assets_dir, &device)?;
    let t = &cfg.training;
    let data = prepare(&job.dataset, &tok, t.max_seq_len as usize)?;
    let total = total_steps(cfg, data.train.len());
    let warmup = (t.warmup_ratio * total as f64).ceil() as u64;

    let mut rng = StdRng::seed_from_u64(job.seed);
    let mut store = ParamStore::<B::InnerBackend>::new();
    let init_r = cfg.method.init_rank(job.budget) as usize;
    let spec = AdapterSpec { kind: AdapterKind::for_method(&cfg.method), rank: init_r, alpha: t.lora_alpha, dropout: t.lora_dropout };
    let mut adapters = Adapters::build_llama(&model.config, &t.target_modules, spec, &mut store, &mut rng, &device)?;
    let setup = AllocatorSetup::for_run(total, init_r, job.budget, &adapters, data.train.len(), t.batch_size, job.seed);
    let (allocator, method) = for_method_with::<B::InnerBackend>(&cfg.method, &setup)?;
    adapters.set_masking(allocator.masking());
    let oracle_batch = oracle_batch(&cfg.method, allocator.as_ref(), job.seed, &data.train, &data.validation);
    let adam = AdamW::new(store.params.len(), t.weight_decay);
    let mut run =
        CausalRun::<B> { job, device, model, tok, store, adapters, allocator, adam, method, oracle_batch, hf_repo, judge: opts.judge };

    let ckpt_dir = job.work_dir.join(CHECKPOINT_DIR);
    let fingerprint = checkpoint::fingerprint(job, total);
    let mut step = 0u64;
    let mut best: Option<Best<B::InnerBackend>> = None;
    let mut peak_trainable = run.effective_trainable();
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
                "training {} on {} ({} task) over {} examples ({} validation, {} test): {total} steps, {} adapters, {} trainable parameters",
                cfg.method.method().display_name(),
                job.base_model,
                data.family,
                data.train.len(),
                data.validation.len(),
                data.test.len(),
                run.adapters.list.len(),
                run.store.trainable_count()
            ),
        });
    }
    on_event(TrainEvent::Ranks(rank_map(step, run.allocator.budget(), &run.adapters)));
    if step == 0 && t.eval_every > 0 && !data.validation.is_empty() {
        // The base model's held-out loss: the baseline every later evaluation compares with.
        emit_metrics(on_event, 0, "validation", &run.loss_metrics(&data.validation)?);
    }

    let bs = t.batch_size as usize;
    let per_epoch = data.train.len().div_ceil(bs) as u64;
    let log_every = (total / 100).max(1);
    let (mut loss_sum, mut loss_n) = (0f64, 0u64);
    let (mut examples_seen, mut tokens_seen) = (0usize, 0usize);
    let loop_started = Instant::now();
    let mut saved_at = step;
    while step < total {
        if cancel.load(Ordering::Relaxed) {
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
        let order = epoch_order(job.seed, s / per_epoch, data.train.len());
        let pos = (s % per_epoch) as usize * bs;
        let items: Vec<&CausalSample> = order[pos..(pos + bs).min(order.len())].iter().map(|&i| &data.train[i]).collect();
        examples_seen += items.len();
        tokens_seen += items.iter().map(|x| x.ids.len()).sum::<usize>();
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
            peak_trainable = peak_trainable.max(run.effective_trainable());
        }
        if step.is_multiple_of(log_every) || step == total {
            let lr = learning_rate(t.learning_rate, s, total, warmup);
            for (name, value) in [("loss", loss_sum / loss_n as f64), ("lr", lr), ("grad_norm", grad_norm)] {
                on_event(TrainEvent::Metric { step, split: "train".into(), name: name.into(), value });
            }
            (loss_sum, loss_n) = (0.0, 0);
        }
        if t.eval_every > 0 && step.is_multiple_of(t.eval_every) && step < total && !data.validation.is_empty() {
            let metrics = run.loss_metrics(&data.validation)?;
            emit_metrics(on_event, step, "validation", &metrics);
            run.consider_best(&mut best, step, &metrics);
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

    // The best eligible state (lowest validation loss) or the final one is evaluated and exported.
    if !data.validation.is_empty() {
        let metrics = run.loss_metrics(&data.validation)?;
        run.consider_best(&mut best, step, &metrics);
    }
    let best_step = match best {
        Some(b) if b.step != step => {
            let (best_step, loss) = (b.step, b.metric);
            b.restore(&mut run.store, &mut run.adapters);
            on_event(TrainEvent::Log { message: format!("exporting the best checkpoint (step {best_step}, validation loss {loss:.4})") });
            best_step
        }
        _ => step,
    };
    let eval_started = Instant::now();
    let mut evaluations = Vec::new();
    let mut predictions = Vec::new();
    for (split, samples) in [("validation", &data.validation), ("test", &data.test)] {
        if samples.is_empty() {
            continue;
        }
        let (metrics, preds) = run.evaluate(split, samples, on_event)?;
        emit_metrics(on_event, step, split, &metrics);
        evaluations.push((split.to_string(), metrics));
        if split == "test" {
            predictions = preds;
        }
    }
    if evaluations.is_empty() {
        on_event(TrainEvent::Log { message: "no validation or test split: exporting the final weights without evaluation".into() });
    }
    let eval_seconds = eval_started.elapsed().as_secs_f64();

    let artifacts = run.export()?;
    let end_trainable = run.effective_trainable();
    let adapter_bytes = artifacts
        .iter()
        .find(|(k, _)| *k == ArtifactKind::AdapterPeft)
        .and_then(|(_, p)| std::fs::metadata(p.join(ADAPTER_WEIGHTS)).ok())
        .map(|m| m.len());
    let summary = json!({
        "method": cfg.method.method().as_str(),
        "architecture": "llama",
        "task_family": data.family.as_str(),
        "total_steps": total,
        "best_step": best_step,
        "train_examples": data.train.len(),
        "trainable_params": { "start": start_trainable, "peak": peak_trainable, "end": end_trainable },
        "final_ranks": run.adapters.list.iter().map(|a| json!([a.module, a.live_rank()])).collect::<Vec<_>>(),
        "rank_budget": run.allocator.budget(),
        "allocator": run.allocator.describe(),
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "wall_seconds": started.elapsed().as_secs_f64(),
        "examples_per_second": examples_seen as f64 / train_seconds.max(1e-9),
        "tokens_per_second": tokens_seen as f64 / train_seconds.max(1e-9),
        "adapter_file_bytes": adapter_bytes,
        "peak_memory_bytes": peak_memory_bytes(),
    });
    Ok(TrainOutput { evaluations, artifacts, summary, predictions })
}

impl<B: AutodiffBackend> CausalRun<'_, B> {
    fn hook(&self) -> LlamaHook<'_> {
        LlamaHook::new(&self.adapters, self.model.config.num_hidden_layers)
    }

    /// One optimisation step; returns (loss, whether the rank map changed, grad norm, log lines).
    #[allow(clippy::type_complexity)]
    fn train_step(
        &mut self,
        items: &[&CausalSample],
        step: u64,
        s: u64,
        total: u64,
        warmup: u64,
    ) -> Result<(f64, bool, f64, Vec<String>), TrainError> {
        let t = &self.job.config.training;
        let batch = CausalBatch::new(items, PAD);
        let live = self.store.live::<B>();
        let hook = LlamaHook::new(&self.adapters, self.model.config.num_hidden_layers);
        let mut loss = answer_nll(&self.model, &batch, &live, &hook, true, &self.device) / batch.tokens() as f64;
        let reg_w = self.allocator.orth_reg_weight();
        let mut orth_loss = None;
        if reg_w > 0.0 {
            if let Some(reg) = orthogonal_regularizer(&self.adapters, &live) {
                orth_loss = Some(scalar(reg.clone()));
                loss = loss + reg * reg_w;
            }
        }
        let loss_value = scalar(loss.clone());
        let grads = loss.backward();
        let g = collect_grads(&live, &grads);
        drop(live);
        let mut oracle = DecoderOracle::new(&self.model, &self.oracle_batch);
        let oracle: Option<&mut dyn AblationOracle<B::InnerBackend>> = if oracle.samples.is_empty() { None } else { Some(&mut oracle) };
        let state =
            Trainable { adapters: &mut self.adapters, store: &mut self.store, adam: &mut self.adam, allocator: self.allocator.as_mut() };
        let lr = learning_rate(t.learning_rate, s, total, warmup);
        let out = after_backward(g, step, lr, t.grad_clip, orth_loss, state, oracle)?;
        Ok((loss_value, out.changed, out.grad_norm, out.log))
    }

    /// Mean answer-token loss of the current weights on `samples` (no dropout).
    pub fn heldout_loss(&self, samples: &[CausalSample]) -> Result<f64, TrainError> {
        let params = self.store.constants::<B>();
        let hook = self.hook();
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.sort_by_key(|&i| samples[i].ids.len());
        let (mut total, mut n) = (0f64, 0usize);
        for chunk in order.chunks(EVAL_BATCH) {
            let items: Vec<&CausalSample> = chunk.iter().map(|&i| &samples[i]).collect();
            let batch = CausalBatch::new(&items, PAD);
            total += scalar(answer_nll(&self.model, &batch, &params, &hook, false, &self.device));
            n += batch.tokens();
        }
        if n == 0 {
            return Err(TrainError::Data("no answer tokens to evaluate".into()));
        }
        Ok(total / n as f64)
    }

    /// `loss` and `perplexity` on `samples`.
    fn loss_metrics(&self, samples: &[CausalSample]) -> Result<Map<String, Value>, TrainError> {
        let loss = self.heldout_loss(samples)?;
        let mut m = Map::new();
        m.insert("loss".into(), json!(loss));
        m.insert("perplexity".into(), json!(loss.exp()));
        Ok(m)
    }

    /// Greedy answers (decoded, special tokens dropped) to the prompts of `samples`.
    pub fn generate(&self, samples: &[CausalSample]) -> Result<Vec<String>, TrainError> {
        let params = self.store.constants::<B>();
        let hook = self.hook();
        let opts =
            GenerateOptions { max_new_tokens: self.job.config.training.generation.max_new_tokens as usize, stop_ids: self.tok.stop_ids() };
        samples
            .iter()
            .map(|s| {
                let g = greedy(&self.model, s.prompt(), &opts, &params, &hook, &self.device)?;
                Ok(self.tok.decode(&g.tokens, true)?.trim().to_string())
            })
            .collect()
    }

    /// Loss, perplexity, ROUGE of greedy generations (and the judge's score, when one is
    /// set), with the per-example generations, references and ROUGE F-measures.
    fn evaluate(
        &self,
        split: &str,
        samples: &[CausalSample],
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<(Map<String, Value>, Vec<Prediction>), TrainError> {
        let mut m = self.loss_metrics(samples)?;
        let gcfg = &self.job.config.training.generation;
        let n = (gcfg.eval_examples as usize).min(samples.len());
        if n == 0 {
            return Ok((m, Vec::new()));
        }
        let started = Instant::now();
        let chosen = &samples[..n];
        let preds = self.generate(chosen)?;
        let mut scorer = RougeScorer::new(gcfg.rouge_stemmer);
        let mut sums = [0f64; 4];
        let names = ["rouge1", "rouge2", "rougeL", "rougeLsum"];
        let mut examples = Vec::with_capacity(n);
        for (i, (s, p)) in chosen.iter().zip(&preds).enumerate() {
            let r = scorer.score(&s.reference, p);
            let f = [r.rouge1, r.rouge2, r.rouge_l, r.rouge_lsum].map(|v| v.fmeasure);
            for (acc, v) in sums.iter_mut().zip(f) {
                *acc += v;
            }
            examples.push(Prediction {
                index: i as u32,
                predicted: Output::Text { text: p.clone() },
                reference: Output::Text { text: s.reference.clone() },
                scores: names.iter().map(|n| n.to_string()).zip(f).collect(),
            });
        }
        for (name, sum) in names.iter().zip(sums) {
            m.insert((*name).into(), json!(sum / n as f64));
        }
        m.insert("rouge_stemmer".into(), json!(if gcfg.rouge_stemmer { "porter" } else { "none" }));
        m.insert("generated_examples".into(), json!(n));
        for (i, (s, p)) in chosen.iter().zip(&preds).take(2).enumerate() {
            on_event(TrainEvent::Log { message: format!("{split} example {}: generated {p:?}; reference {:?}", i + 1, s.reference) });
        }
        on_event(TrainEvent::Log {
            message: format!(
                "{split}: generated {n} answers in {:.1}s (greedy, at most {} tokens)",
                started.elapsed().as_secs_f64(),
                gcfg.max_new_tokens
            ),
        });
        if let Some(judge) = &self.judge {
            let prompts: Vec<String> = chosen.iter().map(|s| self.tok.decode(s.prompt(), false)).collect::<Result<_, _>>()?;
            let items: Vec<JudgeItem<'_>> = chosen
                .iter()
                .zip(&preds)
                .zip(&prompts)
                .map(|((s, p), prompt)| JudgeItem { prompt, reference: &s.reference, answer: p })
                .collect();
            let scores = judge.grade(&items)?;
            m.insert("judge_score".into(), json!(scores.iter().sum::<f64>() / scores.len().max(1) as f64));
            m.insert("judge".into(), json!(judge.name()));
        }
        Ok((m, examples))
    }

    /// Keeps the state with the lowest validation loss among states whose rank pattern is final.
    fn consider_best(&self, best: &mut Option<Best<B::InnerBackend>>, step: u64, metrics: &Map<String, Value>) {
        if !self.allocator.is_final(step) {
            return;
        }
        let Some(loss) = metrics.get("loss").and_then(Value::as_f64) else { return };
        if best.as_ref().is_none_or(|b| loss < b.metric) {
            *best = Some(Best::capture(&self.store, &self.adapters, step, loss));
        }
    }

    /// Live adapter parameters.
    fn effective_trainable(&self) -> usize {
        self.adapters.live_params()
    }

    fn export(&self) -> Result<Vec<(ArtifactKind, std::path::PathBuf)>, TrainError> {
        let t = &self.job.config.training;
        let adapter = DecoderAdapter {
            store: &self.store,
            adapters: &self.adapters,
            method: self.method.clone(),
            target_modules: &t.target_modules,
            lora_alpha: t.lora_alpha,
            lora_dropout: t.lora_dropout,
            base_model: self.hf_repo,
        };
        let out = self.job.work_dir.join("export");
        std::fs::create_dir_all(&out)?;
        let mut artifacts = vec![(ArtifactKind::AdapterPeft, adapter.write_peft(&out.join("adapter_peft"))?)];
        if matches!(self.method, ExportMethod::AdaLora { .. }) {
            artifacts.push((ArtifactKind::AdapterLora, adapter.write_plain_lora(&out.join("adapter_lora"))?));
        }
        Ok(artifacts)
    }
}
