//! Adapter export in PEFT's on-disk format, the plain-LoRA re-expression of an adaptive
//! run, a merged-weights model, and loading a PEFT adapter directory back.
//!
//! PEFT layout (DESIGN.md "PEFT export, exactly"): `adapter_config.json` +
//! `adapter_model.safetensors` (metadata `{"format":"pt"}`), keys
//! `base_model.model.<module path>.lora_A|lora_B[.weight]|lora_E`. LoRA keys end in `.weight`;
//! AdaLoRA keys do not and are cut to the kept components, with `rank_pattern` mapping each
//! `<module>.lora_E` to its init_r booleans. The head goes in `modules_to_save`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde_json::{json, Value};

use crate::adapters::{matches_target, Adapter, AdapterKind, Adapters};
use crate::allocator::AdaLoraSchedule;
use crate::model::bert::{module_path, Bert, BertConfig, HeadParams, Site};
use crate::model::head::{CLASSIFIER_BIAS, CLASSIFIER_WEIGHT, POOLER_BIAS, POOLER_WEIGHT};
use crate::model::weights::{read_safetensors, write_safetensors, HostTensor};
use crate::params::ParamStore;
use crate::TrainError;

pub const PEFT_PREFIX: &str = "base_model.model.";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// The method-specific part of an export.
#[derive(Debug, Clone)]
pub enum ExportMethod {
    Lora {
        r: usize,
    },
    AdaLora {
        init_r: usize,
        target_r: usize,
        schedule: AdaLoraSchedule,
        beta1: f64,
        beta2: f64,
        orth_reg_weight: f64,
    },
    /// Methods whose adapters change size during training (RoLoRA, ALoRA): exported as plain
    /// LoRA with per-module ranks (`rank_pattern`, `alpha_pattern`).
    RankPattern {
        method: &'static str,
    },
}

/// PEFT's `task_type` of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskType {
    /// Sequence classification/regression over the BERT encoder (a trained head).
    SeqCls,
    /// Next-token prediction with the Llama decoder.
    CausalLm,
}

impl TaskType {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::SeqCls => "SEQ_CLS",
            TaskType::CausalLm => "CAUSAL_LM",
        }
    }
}

/// Whole modules trained next to the adapters (PEFT's `modules_to_save`): their names and
/// their tensors under the PEFT names they are saved with.
#[derive(Debug, Clone, Default)]
pub struct SavedModules {
    pub modules: Vec<&'static str>,
    pub tensors: BTreeMap<String, HostTensor>,
}

/// A trained adapter of either model family, ready to be written in PEFT's format.
pub struct AdapterExport<'a, B: Backend> {
    pub store: &'a ParamStore<B>,
    pub adapters: &'a Adapters,
    pub method: ExportMethod,
    pub target_modules: &'a [String],
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    /// `base_model_name_or_path` (the HF repository of the base model).
    pub base_model: &'a str,
    pub task_type: TaskType,
    pub saved: SavedModules,
}

fn metadata() -> Option<HashMap<String, String>> {
    Some(HashMap::from([("format".to_string(), "pt".to_string())]))
}

fn bias_1d(t: HostTensor) -> HostTensor {
    let n = t.data.len();
    HostTensor::new(vec![n], t.data)
}

/// `(kept component indices, A' [k, in], B' [out, k], E' [k, 1])` of adapter `i`; A' is
/// multiplied by E when `fold_e` (the plain-LoRA re-expression).
fn kept<B: Backend>(
    store: &ParamStore<B>,
    adapters: &Adapters,
    i: usize,
    fold_e: bool,
) -> (Vec<usize>, HostTensor, HostTensor, Option<HostTensor>) {
    let ad = &adapters.list[i];
    let keep: Vec<usize> = (0..ad.rank).filter(|&c| ad.mask[c]).collect();
    let (a, b) = (store.host(ad.a), store.host(ad.b));
    let e = ad.e.map(|e| store.host(e));
    let (in_f, out_f, k) = (ad.in_features, ad.out_features, keep.len());
    let mut a2 = Vec::with_capacity(k * in_f);
    for &c in &keep {
        let f = if fold_e { e.as_ref().map_or(1.0, |e| e.data[c]) } else { 1.0 };
        a2.extend(a.data[c * in_f..(c + 1) * in_f].iter().map(|v| v * f));
    }
    let (bd, rank) = (&b.data, ad.rank);
    let b2: Vec<f32> = (0..out_f).flat_map(|row| keep.iter().map(move |&c| bd[row * rank + c])).collect();
    let e2 = e.map(|e| HostTensor::new(vec![k, 1], keep.iter().map(|&c| e.data[c]).collect()));
    (keep, HostTensor::new(vec![k, in_f], a2), HostTensor::new(vec![out_f, k], b2), e2)
}

impl<B: Backend> AdapterExport<'_, B> {
    fn config(&self, entries: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
        let modules_to_save = if self.saved.modules.is_empty() { Value::Null } else { json!(self.saved.modules) };
        let mut cfg = json!({
            "base_model_name_or_path": self.base_model,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "modules_to_save": modules_to_save,
            "target_modules": self.target_modules,
            "task_type": self.task_type.as_str(),
            "use_dora": false,
            "use_rslora": false,
            "layers_to_transform": null,
            "layers_pattern": null,
            "revision": null,
        });
        if let Value::Object(m) = &mut cfg {
            m.extend(entries.into_iter().map(|(k, v)| (k.to_string(), v)));
        }
        cfg
    }

    /// Writes the adapter tensors plus the saved modules' into `dir` (replaced atomically).
    fn write(&self, dir: &Path, cfg: Value, mut tensors: BTreeMap<String, HostTensor>) -> Result<PathBuf, TrainError> {
        tensors.extend(self.saved.tensors.iter().map(|(k, v)| (k.clone(), v.clone())));
        write_adapter_dir(dir, &cfg, &tensors)
    }

    /// Writes the run's own method in PEFT format into `dir`.
    pub fn write_peft(&self, dir: &Path) -> Result<PathBuf, TrainError> {
        match &self.method {
            ExportMethod::Lora { r } => {
                let mut tensors = BTreeMap::new();
                for ad in &self.adapters.list {
                    tensors.insert(format!("{PEFT_PREFIX}{}.lora_A.weight", ad.module), self.store.host(ad.a));
                    tensors.insert(format!("{PEFT_PREFIX}{}.lora_B.weight", ad.module), self.store.host(ad.b));
                }
                let cfg =
                    self.config([("peft_type", json!("LORA")), ("r", json!(r)), ("rank_pattern", json!({})), ("alpha_pattern", json!({}))]);
                self.write(dir, cfg, tensors)
            }
            ExportMethod::AdaLora { init_r, target_r, schedule, beta1, beta2, orth_reg_weight } => {
                let mut tensors = BTreeMap::new();
                let mut rank_pattern = BTreeMap::new();
                for (i, ad) in self.adapters.list.iter().enumerate() {
                    let (_, a, b, e) = kept(self.store, self.adapters, i, false);
                    let e = e.ok_or_else(|| TrainError::Internal(format!("{} has no lora_E", ad.module)))?;
                    let p = format!("{PEFT_PREFIX}{}", ad.module);
                    tensors.insert(format!("{p}.lora_A"), a);
                    tensors.insert(format!("{p}.lora_B"), b);
                    tensors.insert(format!("{p}.lora_E"), e);
                    rank_pattern.insert(format!("{}.lora_E", ad.module), ad.mask.clone());
                }
                let cfg = self.config([
                    ("peft_type", json!("ADALORA")),
                    ("r", json!(init_r)),
                    ("init_r", json!(init_r)),
                    ("target_r", json!(target_r)),
                    ("tinit", json!(schedule.tinit)),
                    ("tfinal", json!(schedule.tfinal)),
                    ("deltaT", json!(schedule.delta_t)),
                    ("total_step", json!(schedule.total_step)),
                    ("beta1", json!(beta1)),
                    ("beta2", json!(beta2)),
                    ("orth_reg_weight", json!(orth_reg_weight)),
                    ("rank_pattern", json!(rank_pattern)),
                    ("alpha_pattern", json!({})),
                ]);
                self.write(dir, cfg, tensors)
            }
            // RoLoRA and ALoRA: adapters of different sizes, already plain LoRA.
            ExportMethod::RankPattern { .. } => self.write_plain_lora(dir),
        }
    }

    /// The adapter as plain LoRA with per-module ranks (vLLM/LoRAX can serve it):
    /// `B' = B[:, keep]`, `A' = (A ⊙ E)[keep]`, `rank_pattern[module] = r_i`,
    /// `alpha_pattern[module] = scale * r_i` (so `alpha_i / r_i` keeps the run's effective
    /// scale); modules with no live component are left out.
    pub fn write_plain_lora(&self, dir: &Path) -> Result<PathBuf, TrainError> {
        let mut tensors = BTreeMap::new();
        let (mut ranks, mut alphas, mut targets) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
        for (i, ad) in self.adapters.list.iter().enumerate() {
            let (keep, a, b, _) = kept(self.store, self.adapters, i, true);
            if keep.is_empty() {
                continue;
            }
            tensors.insert(format!("{PEFT_PREFIX}{}.lora_A.weight", ad.module), a);
            tensors.insert(format!("{PEFT_PREFIX}{}.lora_B.weight", ad.module), b);
            ranks.insert(ad.module.clone(), keep.len());
            alphas.insert(ad.module.clone(), ad.scale * keep.len() as f64);
            targets.push(ad.module.clone());
        }
        let cfg = self.config([
            ("peft_type", json!("LORA")),
            ("r", json!(ranks.values().copied().max().unwrap_or(1))),
            ("target_modules", json!(targets)),
            ("rank_pattern", json!(ranks)),
            ("alpha_pattern", json!(alphas)),
        ]);
        self.write(dir, cfg, tensors)
    }

    /// The adapter exports of a run under `dir`: the run's own method in PEFT format, and
    /// for AdaLoRA-format methods (AdaLoRA, SalientLoRA) the plain-LoRA re-expression too
    /// (RoLoRA and ALoRA are plain LoRA with per-module ranks already).
    pub fn write_all(&self, dir: &Path) -> Result<Vec<(crate::ArtifactKind, PathBuf)>, TrainError> {
        std::fs::create_dir_all(dir)?;
        let mut artifacts = vec![(crate::ArtifactKind::AdapterPeft, self.write_peft(&dir.join("adapter_peft"))?)];
        if matches!(self.method, ExportMethod::AdaLora { .. }) {
            artifacts.push((crate::ArtifactKind::AdapterLora, self.write_plain_lora(&dir.join("adapter_lora"))?));
        }
        Ok(artifacts)
    }
}

/// A trained BERT classification/regression adapter: the adapters plus the head.
pub struct TrainedAdapter<'a, B: Backend> {
    pub store: &'a ParamStore<B>,
    pub adapters: &'a Adapters,
    pub head: HeadParams,
    pub train_pooler: bool,
    pub method: ExportMethod,
    pub target_modules: &'a [String],
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub base_model: &'a str,
    /// Class names (classification) or empty (regression: one output).
    pub labels: &'a [String],
}

impl<B: Backend> TrainedAdapter<'_, B> {
    /// The PEFT export: the adapters, with the classifier (and the pooler when trained)
    /// in `modules_to_save`.
    pub fn adapter(&self) -> AdapterExport<'_, B> {
        let h = &self.head;
        let mut saved = SavedModules { modules: vec!["classifier"], tensors: BTreeMap::new() };
        saved.tensors.insert(format!("{PEFT_PREFIX}{CLASSIFIER_WEIGHT}"), self.store.host(h.classifier_w));
        saved.tensors.insert(format!("{PEFT_PREFIX}{CLASSIFIER_BIAS}"), bias_1d(self.store.host(h.classifier_b)));
        if self.train_pooler {
            saved.modules.push("pooler");
            saved.tensors.insert(format!("{PEFT_PREFIX}{POOLER_WEIGHT}"), self.store.host(h.pooler_w));
            saved.tensors.insert(format!("{PEFT_PREFIX}{POOLER_BIAS}"), bias_1d(self.store.host(h.pooler_b)));
        }
        AdapterExport {
            store: self.store,
            adapters: self.adapters,
            method: self.method.clone(),
            target_modules: self.target_modules,
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            base_model: self.base_model,
            task_type: TaskType::SeqCls,
            saved,
        }
    }

    /// The base model with every adapter merged in, as a `BertForSequenceClassification`
    /// directory (`model.safetensors`, `config.json`, `tokenizer.json`).
    pub fn write_merged(&self, dir: &Path, base_config: &Path, base_weights: &Path, tokenizer: &Path) -> Result<PathBuf, TrainError> {
        let (raw, _) = read_safetensors(base_weights)?;
        let mut tensors: BTreeMap<String, HostTensor> =
            raw.into_iter().map(|(k, v)| (if k.starts_with("bert.") { k } else { format!("bert.{k}") }, v)).collect();
        for (i, ad) in self.adapters.list.iter().enumerate() {
            let key = format!("{}.weight", ad.module);
            let w = tensors.get_mut(&key).ok_or_else(|| TrainError::Model(base_weights.display().to_string(), format!("{key} missing")))?;
            let delta = HostTensor::from_tensor(&self.adapters.delta_weight(i, self.store));
            for (x, d) in w.data.iter_mut().zip(delta.data) {
                *x += d;
            }
        }
        let h = &self.head;
        tensors.insert(POOLER_WEIGHT.into(), self.store.host(h.pooler_w));
        tensors.insert(POOLER_BIAS.into(), bias_1d(self.store.host(h.pooler_b)));
        tensors.insert(CLASSIFIER_WEIGHT.into(), self.store.host(h.classifier_w));
        tensors.insert(CLASSIFIER_BIAS.into(), bias_1d(self.store.host(h.classifier_b)));
        let staging = staging_dir(dir)?;
        write_safetensors(&staging.join("model.safetensors"), &tensors, metadata())?;
        let mut cfg: serde_json::Map<String, Value> = serde_json::from_str(&std::fs::read_to_string(base_config)?)
            .map_err(|e| TrainError::Model(base_config.display().to_string(), e.to_string()))?;
        cfg.insert("architectures".into(), json!(["BertForSequenceClassification"]));
        if self.labels.is_empty() {
            cfg.insert("num_labels".into(), json!(1));
            cfg.insert("problem_type".into(), json!("regression"));
            cfg.insert("id2label".into(), json!({"0": "LABEL_0"}));
            cfg.insert("label2id".into(), json!({"LABEL_0": 0}));
        } else {
            let id2label: BTreeMap<String, &String> = self.labels.iter().enumerate().map(|(i, l)| (i.to_string(), l)).collect();
            let label2id: BTreeMap<&String, usize> = self.labels.iter().enumerate().map(|(i, l)| (l, i)).collect();
            cfg.insert("problem_type".into(), json!("single_label_classification"));
            cfg.insert("id2label".into(), json!(id2label));
            cfg.insert("label2id".into(), json!(label2id));
        }
        std::fs::write(staging.join("config.json"), serde_json::to_vec_pretty(&cfg)?)?;
        std::fs::copy(tokenizer, staging.join("tokenizer.json"))?;
        finish_dir(&staging, dir)
    }
}

fn staging_dir(dir: &Path) -> Result<PathBuf, TrainError> {
    let staging = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    Ok(staging)
}

/// Moves a completely written staging dir into place.
fn finish_dir(staging: &Path, dir: &Path) -> Result<PathBuf, TrainError> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(staging, dir)?;
    Ok(dir.to_path_buf())
}

pub(crate) fn write_adapter_dir(dir: &Path, cfg: &Value, tensors: &BTreeMap<String, HostTensor>) -> Result<PathBuf, TrainError> {
    let staging = staging_dir(dir)?;
    write_safetensors(&staging.join(ADAPTER_WEIGHTS), tensors, metadata())?;
    std::fs::write(staging.join(ADAPTER_CONFIG), serde_json::to_vec_pretty(cfg)?)?;
    finish_dir(&staging, dir)
}

/// A PEFT adapter directory loaded onto a BERT backbone.
pub struct LoadedAdapter<B: Backend> {
    pub store: ParamStore<B>,
    pub adapters: Adapters,
    pub head: HeadParams,
    pub config: Value,
}

fn pattern_value<'a>(pattern: Option<&'a Value>, module: &str) -> Option<&'a Value> {
    let map = pattern?.as_object()?;
    map.get(module).or_else(|| map.iter().find(|(k, _)| module.ends_with(&format!(".{k}"))).map(|(_, v)| v))
}

/// Loads a LoRA or AdaLoRA adapter written by PEFT (or by this module) onto `bert`.
pub fn load_peft<B: Backend>(dir: &Path, bert: &Bert<B>, device: &B::Device) -> Result<LoadedAdapter<B>, TrainError> {
    let cfg_path = dir.join(ADAPTER_CONFIG);
    let bad = |m: String| TrainError::Model(dir.display().to_string(), m);
    let config: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path)?).map_err(|e| bad(format!("{ADAPTER_CONFIG}: {e}")))?;
    let (mut tensors, _) = read_safetensors(&dir.join(ADAPTER_WEIGHTS))?;
    let peft_type = config["peft_type"].as_str().unwrap_or("");
    let targets: Vec<String> = match &config["target_modules"] {
        Value::Array(v) => v.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
        Value::String(s) => vec![s.clone()],
        _ => return Err(bad("target_modules missing".into())),
    };
    let alpha = config["lora_alpha"].as_f64().ok_or_else(|| bad("lora_alpha missing".into()))?;
    let dropout = config["lora_dropout"].as_f64().unwrap_or(0.0);
    let cfg: &BertConfig = &bert.config;
    let mut store = ParamStore::new();
    let mut list = Vec::new();
    let mut take = |name: &str| tensors.remove(name).ok_or_else(|| bad(format!("tensor {name} missing")));
    for layer in 0..cfg.num_hidden_layers {
        for site in Site::ALL {
            let module = module_path(layer, site);
            if !matches_target(&module, &targets) {
                continue;
            }
            let (in_f, out_f) = site.dims(cfg);
            let p = format!("{PEFT_PREFIX}{module}");
            let adapter = match peft_type {
                "LORA" => {
                    let a = take(&format!("{p}.lora_A.weight"))?;
                    let b = take(&format!("{p}.lora_B.weight"))?;
                    let r = a.shape[0];
                    let alpha_i = pattern_value(config.get("alpha_pattern"), &module).and_then(Value::as_f64).unwrap_or(alpha);
                    let (ai, bi) = (
                        store.push(format!("{module}.lora_A"), a.to_tensor(device), true, true),
                        store.push(format!("{module}.lora_B"), b.to_tensor(device), true, true),
                    );
                    Adapter {
                        module,
                        layer,
                        site,
                        in_features: in_f,
                        out_features: out_f,
                        rank: r,
                        kind: AdapterKind::Lora,
                        a: ai,
                        b: bi,
                        e: None,
                        scale: alpha_i / r as f64,
                        mask: vec![true; r],
                        masking: Default::default(),
                    }
                }
                "ADALORA" => {
                    let init_r = config["init_r"].as_f64().ok_or_else(|| bad("init_r missing".into()))?;
                    let a = take(&format!("{p}.lora_A"))?;
                    let e = take(&format!("{p}.lora_E"))?;
                    let b = take(&format!("{p}.lora_B"))?;
                    let r = a.shape[0];
                    if r == 0 {
                        continue;
                    }
                    let ai = store.push(format!("{module}.lora_A"), a.to_tensor(device), true, true);
                    let ei = store.push(format!("{module}.lora_E"), e.to_tensor(device), true, true);
                    let bi = store.push(format!("{module}.lora_B"), b.to_tensor(device), true, true);
                    Adapter {
                        module,
                        layer,
                        site,
                        in_features: in_f,
                        out_features: out_f,
                        rank: r,
                        kind: AdapterKind::Svd,
                        a: ai,
                        b: bi,
                        e: Some(ei),
                        scale: alpha / (init_r + 1e-5),
                        mask: vec![true; r],
                        masking: Default::default(),
                    }
                }
                other => return Err(bad(format!("peft_type {other:?} is not supported (LORA, ADALORA)"))),
            };
            list.push(adapter);
        }
    }
    let h = cfg.hidden_size;
    let cls_w = take(&format!("{PEFT_PREFIX}{CLASSIFIER_WEIGHT}"))?;
    let cls_b = take(&format!("{PEFT_PREFIX}{CLASSIFIER_BIAS}"))?;
    let pooler_w = tensors.remove(&format!("{PEFT_PREFIX}{POOLER_WEIGHT}")).unwrap_or_else(|| bert.pooler.0.clone());
    let pooler_b = tensors.remove(&format!("{PEFT_PREFIX}{POOLER_BIAS}")).unwrap_or_else(|| bert.pooler.1.clone());
    let labels = cls_w.shape[0];
    let head = HeadParams {
        pooler_w: store.push(POOLER_WEIGHT, pooler_w.to_tensor(device), false, true),
        pooler_b: store.push(POOLER_BIAS, HostTensor::new(vec![1, h], pooler_b.data).to_tensor(device), false, false),
        classifier_w: store.push(CLASSIFIER_WEIGHT, cls_w.to_tensor(device), false, true),
        classifier_b: store.push(CLASSIFIER_BIAS, HostTensor::new(vec![1, labels], cls_b.data).to_tensor(device), false, false),
    };
    let adapters = Adapters::from_list(list, cfg.num_hidden_layers, dropout);
    Ok(LoadedAdapter { store, adapters, head, config })
}
