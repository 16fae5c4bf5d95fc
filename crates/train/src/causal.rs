//! Causal-LM fine-tuning of a Llama decoder (summarization, instruction tuning).
//!
//! Trained by the shared loop of [`crate::fit`] (AdamW with linear warm-up/decay, gradient
//! clipping, the run's rank allocator after every optimizer step, resumable checkpoints,
//! cancellation, events, best-state keeping); what the decoder brings:
//!
//! - the loss is the mean next-token cross-entropy over the *answer* tokens only (prompt
//!   tokens are context, never targets), and the vocabulary projection is computed only at
//!   the positions that predict an answer token;
//! - adapters sit on the decoder's `q/k/v/o/gate/up/down_proj` ([`Adapters::build_llama`]);
//! - evaluation reports the held-out loss and perplexity on the whole split, and ROUGE-1/2/L/
//!   Lsum (rouge-score's definitions, Porter stemming by default) of greedy generations for
//!   the first `generation.eval_examples` examples; an optional external [`Judge`] grades them;
//! - the best state (with `eval_every`) is the one with the lowest validation loss;
//! - exports are PEFT `CAUSAL_LM` adapters ([`AdapterExport`]).
//!
//! All five methods run here: [`DecoderOracle`] gives ALoRA the answer-token loss of its
//! fixed batch under any variant of the adapters' gates.

pub mod data;
pub mod export;
pub mod judge;
pub mod tasks;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rankfit_domain::catalog::{self, Architecture};
use rankfit_domain::metrics::rouge::RougeScorer;
use rankfit_domain::prediction::{Output, Prediction};
use serde_json::{json, Map, Value};

use self::data::{prepare, CausalBatch, CausalSample};
use self::judge::{Judge, JudgeItem};
use crate::adapters::llama::{LlamaHook, LlamaVariantHook};
use crate::adapters::Adapters;
use crate::allocator::{AblationOracle, RestartPlan};
use crate::export::{AdapterExport, SavedModules, TaskType};
use crate::fit::{adapter_spec, fit, Selection, Splits, State, Workload};
use crate::model::fused::cross_entropy_rows;
use crate::model::llama::{load_smollm2, AdapterHook, DecoderInputs, Llama, LlamaSite};
use crate::model::llama_generate::{greedy, GenerateOptions};
use crate::model::llama_tokenizer::LlamaTokenizer;
use crate::params::ParamStore;
use crate::{ArtifactKind, TrainError, TrainEvent, TrainJob, TrainOutput};

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
    hook: &dyn AdapterHook<B, LlamaSite>,
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
    hook: &dyn AdapterHook<B, LlamaSite>,
    train: bool,
    device: &B::Device,
) -> Tensor<B, 1> {
    let inp = DecoderInputs::new(&batch.ids, None, batch.batch, batch.seq, device);
    nll_of_hidden(model, batch, model.forward_hidden(&inp, None, params, hook, train), device)
}

/// [`token_nll`] from the final hidden states `[batch, seq, hidden]` of `batch`.
fn nll_of_hidden<B: Backend>(model: &Llama<B>, batch: &CausalBatch, hidden: Tensor<B, 3>, device: &B::Device) -> Tensor<B, 1> {
    let hidden = hidden.reshape([batch.batch * batch.seq, model.config.hidden_size]);
    let n = batch.tokens();
    let pos = Tensor::<B, 1, Int>::from_data(TensorData::new(batch.positions.clone(), [n]), device);
    let logits = model.lm_head(hidden.select(0, pos));
    cross_entropy_rows(logits, &batch.targets)
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

/// Token rows per forward pass when scoring ablation variants (copies of the fixed batch
/// are stacked along the batch dimension up to this many tokens).
const ORACLE_TOKENS: usize = 4096;

/// ALoRA's ablation oracle on the decoder: the mean answer-token loss of a fixed batch (no
/// dropout) under each variant of the adapters' gates. Several variants share one forward
/// pass: the batch is repeated once per variant, each copy with its own gates. Each variant
/// restarts from the cached input of the first layer it changes ([`RestartPlan`]).
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
            return Err(TrainError::Internal("the ablation oracle needs trainable parameters".into()));
        };
        let one: Vec<&CausalSample> = self.samples.iter().collect();
        let single = CausalBatch::new(&one, PAD);
        let tokens = single.tokens();
        if tokens == 0 {
            return Err(TrainError::Data("the ablation batch has no answer tokens".into()));
        }
        let layers = self.model.config.num_hidden_layers;
        let inp = DecoderInputs::new(&single.ids, None, single.batch, single.seq, &device);
        let frame = self.model.frame(&inp, None);
        let plan = RestartPlan::new(adapters, variants, layers);
        let traces: Vec<Vec<Tensor<AD, 2>>> = plan
            .references
            .iter()
            .map(|gates| {
                let hook = LlamaVariantHook::new(adapters, layers, std::slice::from_ref(gates), &device);
                let mut xs = vec![self.model.embed(&inp)];
                for l in 0..layers {
                    let next = self.model.blocks(l..l + 1, xs[l].clone(), &frame, &params, &hook, false);
                    xs.push(next);
                }
                xs
            })
            .collect();
        let per_pass = self.variants_per_pass();
        let mut out = vec![0.0; variants.len()];
        for (&(start, r), members) in &plan.groups {
            for chunk in members.chunks(per_pass) {
                let gates: Vec<Vec<Vec<bool>>> = chunk.iter().map(|&v| variants[v].clone()).collect();
                let stacked: Vec<&CausalSample> = chunk.iter().flat_map(|_| one.iter().copied()).collect();
                let batch = CausalBatch::new(&stacked, PAD);
                let frame = frame.repeat(chunk.len());
                let hook = LlamaVariantHook::new(adapters, layers, &gates, &device);
                let x = traces[r][start].clone().repeat_dim(0, chunk.len());
                let hidden = self.model.final_norm(self.model.blocks(start..layers, x, &frame, &params, &hook, false), &frame);
                let nll = nll_of_hidden(self.model, &batch, hidden, &device);
                let data = nll.into_data().convert::<f32>().to_vec::<f32>().map_err(TrainError::tensor("ablation losses"))?;
                // Every copy has the same answer tokens, in the batch's row order.
                for (&v, c) in chunk.iter().zip(data.chunks(tokens)) {
                    out[v] = c.iter().map(|&x| x as f64).sum::<f64>() / tokens as f64;
                }
            }
        }
        Ok(out)
    }

    fn variants_per_pass(&self) -> usize {
        let longest = self.samples.iter().map(|s| s.ids.len()).max().unwrap_or(1);
        (ORACLE_TOKENS / (self.samples.len() * longest).max(1)).max(1)
    }
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

    let mut rng = StdRng::seed_from_u64(job.seed);
    let mut store = ParamStore::<B::InnerBackend>::new();
    let adapters = Adapters::build_llama(&model.config, &t.target_modules, adapter_spec(job), &mut store, &mut rng, &device)?;
    let workload = DecoderWorkload { job, model: &model, tok: &tok, hf_repo, judge: opts.judge };
    let splits = Splits { train: data.train, validation: data.validation, test: data.test };
    fit(job, &workload, &splits, store, adapters, device, on_event, cancel, started)
}

/// The decoder's part of a run.
struct DecoderWorkload<'a, B: AutodiffBackend> {
    job: &'a TrainJob,
    model: &'a Llama<B>,
    tok: &'a LlamaTokenizer,
    hf_repo: &'static str,
    judge: Option<Box<dyn Judge>>,
}

impl<B: AutodiffBackend> DecoderWorkload<'_, B> {
    fn hook<'s>(&self, state: &'s State<B>) -> LlamaHook<'s> {
        LlamaHook::new(&state.adapters, self.model.config.num_hidden_layers)
    }

    /// Mean answer-token loss of the current weights on `samples` (no dropout).
    fn heldout_loss(&self, state: &State<B>, samples: &[CausalSample]) -> Result<f64, TrainError> {
        let params = state.store.constants::<B>();
        let hook = self.hook(state);
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.sort_by_key(|&i| samples[i].ids.len());
        let (mut total, mut n) = (0f64, 0usize);
        for chunk in order.chunks(EVAL_BATCH) {
            let items: Vec<&CausalSample> = chunk.iter().map(|&i| &samples[i]).collect();
            let batch = CausalBatch::new(&items, PAD);
            total += scalar(answer_nll(self.model, &batch, &params, &hook, false, &state.device));
            n += batch.tokens();
        }
        if n == 0 {
            return Err(TrainError::Data("no answer tokens to evaluate".into()));
        }
        Ok(total / n as f64)
    }

    /// Greedy answers (decoded, special tokens dropped) to the prompts of `samples`.
    fn generate(&self, state: &State<B>, samples: &[CausalSample]) -> Result<Vec<String>, TrainError> {
        let params = state.store.constants::<B>();
        let hook = self.hook(state);
        let opts =
            GenerateOptions { max_new_tokens: self.job.config.training.generation.max_new_tokens as usize, stop_ids: self.tok.stop_ids() };
        samples
            .iter()
            .map(|s| {
                let g = greedy(self.model, s.prompt(), &opts, &params, &hook, &state.device)?;
                Ok(self.tok.decode(&g.tokens, true)?.trim().to_string())
            })
            .collect()
    }
}

impl<B: AutodiffBackend> Workload<B> for DecoderWorkload<'_, B> {
    type Sample = CausalSample;

    fn tokens(sample: &CausalSample) -> usize {
        sample.ids.len()
    }

    fn loss(&self, items: &[&CausalSample], live: &[Tensor<B, 2>], adapters: &Adapters, device: &B::Device) -> Tensor<B, 1> {
        let batch = CausalBatch::new(items, PAD);
        let hook = LlamaHook::new(adapters, self.model.config.num_hidden_layers);
        answer_nll(self.model, &batch, live, &hook, true, device) / batch.tokens() as f64
    }

    fn oracle<'a>(&'a self, samples: &'a [CausalSample]) -> Box<dyn AblationOracle<B::InnerBackend> + 'a> {
        Box::new(DecoderOracle::new(self.model, samples))
    }

    fn head_params(&self, _store: &ParamStore<B::InnerBackend>) -> usize {
        0
    }

    fn selection(&self) -> Selection {
        Selection { metric: "loss", higher_is_better: false }
    }

    /// `loss` and `perplexity`.
    fn heldout(&self, state: &State<B>, samples: &[CausalSample]) -> Result<Map<String, Value>, TrainError> {
        let loss = self.heldout_loss(state, samples)?;
        let mut m = Map::new();
        m.insert("loss".into(), json!(loss));
        m.insert("perplexity".into(), json!(loss.exp()));
        Ok(m)
    }

    /// Loss, perplexity, ROUGE of greedy generations (and the judge's score, when one is
    /// set), with the per-example generations, references and ROUGE F-measures.
    fn evaluate(
        &self,
        state: &State<B>,
        split: &str,
        samples: &[CausalSample],
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<(Map<String, Value>, Vec<Prediction>), TrainError> {
        let mut m = self.heldout(state, samples)?;
        let gcfg = &self.job.config.training.generation;
        let n = (gcfg.eval_examples as usize).min(samples.len());
        if n == 0 {
            return Ok((m, Vec::new()));
        }
        let started = Instant::now();
        let chosen = &samples[..n];
        let preds = self.generate(state, chosen)?;
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
                input: None,
                scores: names.iter().map(|n| n.to_string()).zip(f).collect(),
            });
        }
        for (name, sum) in names.iter().zip(sums) {
            m.insert((*name).into(), json!(sum / n as f64));
        }
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

    /// The ROUGE settings and how many answers of each evaluated split were generated.
    fn facts(&self, data: &Splits<CausalSample>) -> Map<String, Value> {
        let g = &self.job.config.training.generation;
        let mut m = Map::new();
        m.insert("rouge_stemmer".into(), json!(if g.rouge_stemmer { "porter" } else { "none" }));
        m.insert("max_new_tokens".into(), json!(g.max_new_tokens));
        for (split, samples) in [("validation", &data.validation), ("test", &data.test)] {
            m.insert(format!("generated_{split}_examples"), json!((g.eval_examples as usize).min(samples.len())));
        }
        m
    }

    fn export(&self, state: &State<B>, dir: &Path) -> Result<Vec<(ArtifactKind, PathBuf)>, TrainError> {
        let t = &self.job.config.training;
        AdapterExport {
            store: &state.store,
            adapters: &state.adapters,
            method: state.method.clone(),
            target_modules: &t.target_modules,
            lora_alpha: t.lora_alpha,
            lora_dropout: t.lora_dropout,
            base_model: self.hf_repo,
            task_type: TaskType::CausalLm,
            saved: SavedModules::default(),
        }
        .write_all(dir)
    }
}
