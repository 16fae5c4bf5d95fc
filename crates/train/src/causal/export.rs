//! PEFT export of decoder adapters (`task_type` `CAUSAL_LM`, no `modules_to_save`), the
//! plain-LoRA re-expression of an adaptive run, and the base model as an HF checkpoint
//! (what PEFT is loaded over to check an export).
//!
//! Keys are `base_model.model.model.layers.N.self_attn.q_proj.lora_A[.weight]` and so on for
//! `k_proj`, `v_proj`, `o_proj`, `mlp.gate_proj`, `mlp.up_proj`, `mlp.down_proj`; LoRA keys
//! end in `.weight`, AdaLoRA keys do not and are cut to the kept components (DESIGN.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde_json::{json, Value};

use crate::adapters::Adapters;
use crate::export::{write_adapter_dir, ExportMethod, PEFT_PREFIX};
use crate::model::llama::{LlamaWeights, RopeScaling};
use crate::model::weights::{write_safetensors, HostTensor};
use crate::params::ParamStore;
use crate::TrainError;

/// A trained decoder adapter, ready to be written.
pub struct DecoderAdapter<'a, B: Backend> {
    pub store: &'a ParamStore<B>,
    pub adapters: &'a Adapters,
    pub method: ExportMethod,
    pub target_modules: &'a [String],
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    /// `base_model_name_or_path` (the HF repository of the base model).
    pub base_model: &'a str,
}

/// `(kept component indices, A' [k, in], B' [out, k], E' [k])` of adapter `i`; A' is
/// multiplied by E when `fold_e` (plain-LoRA re-expression).
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

impl<B: Backend> DecoderAdapter<'_, B> {
    fn common_config(&self) -> serde_json::Map<String, Value> {
        let v = json!({
            "base_model_name_or_path": self.base_model,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "modules_to_save": null,
            "target_modules": self.target_modules,
            "task_type": "CAUSAL_LM",
            "use_dora": false,
            "use_rslora": false,
            "layers_to_transform": null,
            "layers_pattern": null,
            "revision": null,
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("json object literal"),
        }
    }

    /// Writes the run's own method in PEFT format into `dir` (replaced atomically).
    pub fn write_peft(&self, dir: &Path) -> Result<PathBuf, TrainError> {
        match &self.method {
            ExportMethod::Lora { r } => {
                let mut tensors = BTreeMap::new();
                for ad in &self.adapters.list {
                    tensors.insert(format!("{PEFT_PREFIX}{}.lora_A.weight", ad.module), self.store.host(ad.a));
                    tensors.insert(format!("{PEFT_PREFIX}{}.lora_B.weight", ad.module), self.store.host(ad.b));
                }
                let mut cfg = self.common_config();
                for (k, v) in [("peft_type", json!("LORA")), ("r", json!(r)), ("rank_pattern", json!({})), ("alpha_pattern", json!({}))] {
                    cfg.insert(k.into(), v);
                }
                write_adapter_dir(dir, &Value::Object(cfg), &tensors)
            }
            ExportMethod::AdaLora { init_r, target_r, schedule, beta1, beta2, orth_reg_weight } => {
                let mut tensors = BTreeMap::new();
                let mut rank_pattern = BTreeMap::new();
                for (i, ad) in self.adapters.list.iter().enumerate() {
                    let (_, a, b, e) = kept(self.store, self.adapters, i, false);
                    let e = e.ok_or_else(|| TrainError::Other(format!("{} has no lora_E", ad.module)))?;
                    let p = format!("{PEFT_PREFIX}{}", ad.module);
                    tensors.insert(format!("{p}.lora_A"), a);
                    tensors.insert(format!("{p}.lora_B"), b);
                    tensors.insert(format!("{p}.lora_E"), e);
                    rank_pattern.insert(format!("{}.lora_E", ad.module), ad.mask.clone());
                }
                let mut cfg = self.common_config();
                for (k, v) in [
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
                ] {
                    cfg.insert(k.into(), v);
                }
                write_adapter_dir(dir, &Value::Object(cfg), &tensors)
            }
            // RoLoRA and ALoRA: adapters of different sizes, already plain LoRA.
            ExportMethod::RankPattern { .. } => self.write_plain_lora(dir),
        }
    }

    /// The adapter as plain LoRA with per-module ranks (vLLM/LoRAX load it):
    /// `B' = B[:, keep]`, `A' = (A ⊙ E)[keep]`, `rank_pattern[module] = r_i`,
    /// `alpha_pattern[module] = scale * r_i`; modules with no live component are left out.
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
        let mut cfg = self.common_config();
        for (k, v) in [
            ("peft_type", json!("LORA")),
            ("r", json!(ranks.values().copied().max().unwrap_or(1))),
            ("target_modules", json!(targets)),
            ("rank_pattern", json!(ranks)),
            ("alpha_pattern", json!(alphas)),
        ] {
            cfg.insert(k.into(), v);
        }
        write_adapter_dir(dir, &Value::Object(cfg), &tensors)
    }
}

/// `config.json` of a `LlamaForCausalLM` with these hyper-parameters.
pub fn hf_config(w: &LlamaWeights) -> Value {
    let c = &w.config;
    let rope_scaling = match &c.rope_scaling {
        RopeScaling::Default => Value::Null,
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => json!({
            "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor, "original_max_position_embeddings": original_max_position_embeddings,
        }),
    };
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "head_dim": c.head_dim,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "rope_scaling": rope_scaling,
        "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": c.tie_word_embeddings,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_ids.first(),
        "torch_dtype": "float32",
    })
}

/// Writes `weights` as an HF checkpoint directory (`config.json` + `model.safetensors`,
/// f32), e.g. the dequantized GGUF for transformers + PEFT.
pub fn write_hf_checkpoint(weights: &LlamaWeights, dir: &Path) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(dir)?;
    let tensors: BTreeMap<String, HostTensor> = weights.tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&dir.join("model.safetensors"), &tensors, Some(meta))?;
    let cfg = serde_json::to_vec_pretty(&hf_config(weights)).map_err(|e| TrainError::Other(e.to_string()))?;
    std::fs::write(dir.join("config.json"), cfg)?;
    Ok(dir.to_path_buf())
}
