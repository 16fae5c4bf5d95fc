//! Fine-tuning of the BERT encoder (classification and regression) through the shared
//! loop of [`crate::fit`]: a pooler + classifier head on the `[CLS]` token, trained with the
//! adapters; cross-entropy (classification) or MSE (regression); the best state is the one
//! with the best primary validation metric; exports are PEFT `SEQ_CLS` adapters with the head
//! in `modules_to_save`, plus the base model with the adapters merged in.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rankfit_domain::metrics;
use rankfit_domain::prediction::{Output, Prediction};
use rankfit_domain::task::higher_is_better;
use serde_json::{json, Map, Value};

use crate::adapters::{Adapters, VariantHook, VariantMasks};
use crate::allocator::{length_buckets, AblationOracle, RestartPlan};
use crate::assets::{locate_minilm, MiniLmFiles};
use crate::data::{prepare, HeadTask, Sample};
use crate::export::TrainedAdapter;
use crate::fit::{adapter_spec, fit, Selection, Splits, State, Workload};
use crate::model::bert::{Bert, HeadParams, Inputs};
use crate::model::head::init_head;
use crate::model::load_minilm;
use crate::params::ParamStore;
use crate::tokenize::{collate, Batch};
use crate::{ArtifactKind, TrainError, TrainEvent, TrainJob, TrainOutput};

/// Batch size used for evaluation.
const EVAL_BATCH: usize = 64;

/// Trains an encoder run (see the module docs).
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
        return Err(TrainError::Model(job.base_model.clone(), "not an encoder; the decoder loop trains it".into()));
    }
    let files = locate_minilm(&job.assets_dir)?;
    let (bert, tok) = load_minilm::<B>(&files, &device)?;
    let t = &cfg.training;
    let data = prepare(&job.dataset, &tok, t.max_seq_len as usize)?;

    // Initial state, seeded: the head, then the adapters.
    let mut rng = StdRng::seed_from_u64(job.seed);
    let mut store = ParamStore::<B::InnerBackend>::new();
    let head = init_head(&mut store, &bert.pooler, data.task.outputs(), t.train_pooler, &mut rng, &device);
    let adapters = Adapters::build_bert(&bert.config, &t.target_modules, adapter_spec(job), &mut store, &mut rng, &device)?;
    let workload = EncoderWorkload { job, bert: &bert, head, task: data.task, files };
    let splits = Splits { train: data.train, validation: data.validation, test: data.test };
    fit(job, &workload, &splits, store, adapters, device, on_event, cancel, started)
}

/// The encoder's part of a run.
struct EncoderWorkload<'a, B: AutodiffBackend> {
    job: &'a TrainJob,
    bert: &'a Bert<B>,
    head: HeadParams,
    task: HeadTask,
    files: MiniLmFiles,
}

impl<B: AutodiffBackend> EncoderWorkload<'_, B> {
    /// Head outputs of the current weights on `samples` (no dropout), row-major in sample order.
    fn logits(&self, state: &State<B>, samples: &[Sample]) -> Result<Vec<f32>, TrainError> {
        let params = state.store.constants::<B>();
        let outputs = self.task.outputs();
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.sort_by_key(|&i| samples[i].enc.ids.len());
        let mut logits = vec![0f32; samples.len() * outputs];
        for chunk in order.chunks(EVAL_BATCH) {
            let batch: Batch = collate(&chunk.iter().map(|&i| &samples[i].enc).collect::<Vec<_>>(), 0);
            let out = self.bert.logits(&Inputs::<B>::new(&batch, &state.device), &params, &self.head, &state.adapters, false);
            let data = out.into_data().convert::<f32>().to_vec::<f32>().map_err(TrainError::tensor("logits"))?;
            for (row, &i) in chunk.iter().enumerate() {
                logits[i * outputs..(i + 1) * outputs].copy_from_slice(&data[row * outputs..(row + 1) * outputs]);
            }
        }
        Ok(logits)
    }
}

impl<B: AutodiffBackend> Workload<B> for EncoderWorkload<'_, B> {
    type Sample = Sample;

    fn tokens(sample: &Sample) -> usize {
        sample.enc.ids.len()
    }

    fn loss(&self, items: &[&Sample], live: &[Tensor<B, 2>], adapters: &Adapters, device: &B::Device) -> Tensor<B, 1> {
        let batch = collate(&items.iter().map(|x| &x.enc).collect::<Vec<_>>(), 0);
        let logits = self.bert.logits(&Inputs::<B>::new(&batch, device), live, &self.head, adapters, true);
        task_loss(&self.task, logits, items, device)
    }

    fn oracle<'a>(&'a self, samples: &'a [Sample]) -> Box<dyn AblationOracle<B::InnerBackend> + 'a> {
        Box::new(BertOracle::<B>::new(self.bert, self.head, &self.task, samples))
    }

    fn head_params(&self, store: &ParamStore<B::InnerBackend>) -> usize {
        let h = &self.head;
        [h.pooler_w, h.pooler_b, h.classifier_w, h.classifier_b]
            .iter()
            .filter(|&&i| store.params[i].trainable)
            .map(|&i| store.params[i].value.dims().iter().product::<usize>())
            .sum()
    }

    fn selection(&self) -> Selection {
        let family = self.task.family();
        let metric = family
            .metrics()
            .iter()
            .copied()
            .find(|m| Some(*m) == self.job.selection_metric.as_deref() && higher_is_better(m))
            .unwrap_or(family.primary_metric());
        Selection { metric, higher_is_better: true }
    }

    fn heldout(&self, state: &State<B>, samples: &[Sample]) -> Result<Map<String, Value>, TrainError> {
        score(&self.task, &self.logits(state, samples)?, samples)
    }

    fn evaluate(
        &self,
        state: &State<B>,
        _split: &str,
        samples: &[Sample],
        _on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<(Map<String, Value>, Vec<Prediction>), TrainError> {
        let logits = self.logits(state, samples)?;
        Ok((score(&self.task, &logits, samples)?, predictions_of(&self.task, &logits, samples)))
    }

    fn export(&self, state: &State<B>, dir: &Path) -> Result<Vec<(ArtifactKind, PathBuf)>, TrainError> {
        let t = &self.job.config.training;
        let labels: Vec<String> = match &self.task {
            HeadTask::Classification { labels } => labels.clone(),
            HeadTask::Regression => Vec::new(),
        };
        let trained = TrainedAdapter {
            store: &state.store,
            adapters: &state.adapters,
            head: self.head,
            train_pooler: t.train_pooler,
            method: state.method.clone(),
            target_modules: &t.target_modules,
            lora_alpha: t.lora_alpha,
            lora_dropout: t.lora_dropout,
            base_model: rankfit_domain::catalog::base_model(&self.job.base_model).map_or(self.job.base_model.as_str(), |m| m.id),
            labels: &labels,
        };
        let mut artifacts = trained.adapter().write_all(dir)?;
        let f = &self.files;
        artifacts.push((ArtifactKind::AdapterMerged, trained.write_merged(&dir.join("merged"), &f.config, &f.weights, &f.tokenizer)?));
        Ok(artifacts)
    }
}

/// Token rows per forward pass when scoring ablation variants (variants of the fixed batch
/// are stacked along the batch dimension up to this many tokens).
const ORACLE_TOKENS: usize = 8192;

/// Examples per length bucket of the ablation batch.
const ORACLE_BUCKET: usize = 8;

/// ALoRA's ablation oracle on the BERT encoder: the fixed batch repeated once per variant,
/// each copy with its own gates ([`VariantHook`]), several variants per forward pass.
///
/// Two exact savings: each variant restarts from the cached input of the first layer it
/// changes ([`RestartPlan`]; ALoRA's variants change one adapter each, so a variant runs
/// about half the layers), and the batch is scored in buckets of similar length
/// ([`length_buckets`]) so that short examples are not padded to the longest. The cached
/// layer inputs serve every call of one round (one oracle lives for one step, during which
/// the parameters do not change; a change of the adapters' gates recomputes them).
pub struct BertOracle<'a, B: AutodiffBackend> {
    bert: &'a Bert<B>,
    head: HeadParams,
    task: &'a HeadTask,
    samples: &'a [Sample],
    /// The gates the layer inputs were traced under, and the traces per length bucket.
    traces: Option<(Gates, Vec<Traced<B>>)>,
}

/// Per adapter, one gate per allocated component.
type Gates = Vec<Vec<bool>>;

/// One length bucket of the oracle's batch and its references' layer inputs
/// (`layers[r][l]`: reference r's input of layer l; index `layers` is the last hidden state).
struct Traced<B: AutodiffBackend> {
    samples: Vec<Sample>,
    inp: Inputs<B>,
    rows: usize,
    layers: Vec<Vec<Tensor<B, 2>>>,
}

impl<'a, B: AutodiffBackend> BertOracle<'a, B> {
    pub fn new(bert: &'a Bert<B>, head: HeadParams, task: &'a HeadTask, samples: &'a [Sample]) -> Self {
        Self { bert, head, task, samples, traces: None }
    }

    fn trace(&self, adapters: &Adapters, params: &[Tensor<B, 2>], plan: &RestartPlan, device: &B::Device) -> Vec<Traced<B>> {
        let lengths: Vec<usize> = self.samples.iter().map(|s| s.enc.ids.len()).collect();
        let layers = self.bert.config.num_hidden_layers;
        length_buckets(&lengths, ORACLE_BUCKET)
            .into_iter()
            .map(|idx| {
                let samples: Vec<Sample> = idx.iter().map(|&i| self.samples[i].clone()).collect();
                let one = collate(&samples.iter().map(|s| &s.enc).collect::<Vec<_>>(), 0);
                let inp = Inputs::<B>::new(&one, device);
                let rows = one.batch * one.seq;
                let traced = plan
                    .references
                    .iter()
                    .map(|gates| {
                        let hook = VariantHook { adapters, masks: VariantMasks::new(adapters, std::slice::from_ref(gates), device) };
                        let mut xs = vec![self.bert.embed(&inp, false)];
                        for l in 0..layers {
                            let next = self.bert.layers(l..l + 1, xs[l].clone(), &inp, params, &hook, false);
                            xs.push(next);
                        }
                        xs
                    })
                    .collect();
                Traced { samples, inp, rows, layers: traced }
            })
            .collect()
    }
}

impl<B: AutodiffBackend> AblationOracle<B::InnerBackend> for BertOracle<'_, B> {
    fn losses(
        &mut self,
        adapters: &Adapters,
        store: &ParamStore<B::InnerBackend>,
        variants: &[Vec<Vec<bool>>],
    ) -> Result<Vec<f64>, TrainError> {
        let params = store.constants::<B>();
        let Some(device) = params.first().map(|p| p.device()) else {
            return Err(TrainError::Internal("the ablation oracle needs trainable parameters".into()));
        };
        let layers = self.bert.config.num_hidden_layers;
        let plan = RestartPlan::new(adapters, variants, layers);
        if self.traces.as_ref().is_none_or(|(key, _)| *key != plan.references[0]) {
            self.traces = Some((plan.references[0].clone(), self.trace(adapters, &params, &plan, &device)));
        }
        let Some((_, buckets)) = &self.traces else { unreachable!("traced above") };
        let outputs = self.task.outputs();
        let mut sums = vec![0.0; variants.len()];
        for bucket in buckets {
            let n = bucket.samples.len();
            let per_pass = (ORACLE_TOKENS / (bucket.rows).max(1)).max(1);
            for (&(start, r), members) in &plan.groups {
                for chunk in members.chunks(per_pass) {
                    let gates: Vec<Vec<Vec<bool>>> = chunk.iter().map(|&v| variants[v].clone()).collect();
                    let stacked = bucket.inp.repeat(chunk.len());
                    let hook = VariantHook { adapters, masks: VariantMasks::new(adapters, &gates, &device) };
                    let cls = self.bert.cls_from(start, bucket.layers[r][start].clone(), chunk.len(), &stacked, &params, &hook);
                    let logits = self.bert.classify(cls, &params, &self.head, false);
                    let data = logits.into_data().convert::<f32>().to_vec::<f32>().map_err(TrainError::tensor("ablation logits"))?;
                    for (j, &v) in chunk.iter().enumerate() {
                        sums[v] += n as f64 * host_loss(self.task, &data[j * n * outputs..(j + 1) * n * outputs], &bucket.samples);
                    }
                }
            }
        }
        let total = self.samples.len().max(1) as f64;
        Ok(sums.into_iter().map(|s| s / total).collect())
    }

    fn variants_per_pass(&self) -> usize {
        let longest = self.samples.iter().map(|s| s.enc.ids.len()).max().unwrap_or(1);
        (ORACLE_TOKENS / (self.samples.len().min(ORACLE_BUCKET) * longest).max(1)).max(1)
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
    let bad = TrainError::Metric;
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
                    input: None,
                    scores: [("accuracy".to_string(), f64::from(u8::from(p == s.class)))].into_iter().collect(),
                }
            }
            HeadTask::Regression => Prediction {
                index: i as u32,
                predicted: Output::Value { value: f64::from(logits[i]) },
                reference: Output::Value { value: f64::from(s.score) },
                input: None,
                scores: Default::default(),
            },
        })
        .collect()
}
