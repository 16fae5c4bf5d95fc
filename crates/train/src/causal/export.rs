//! The base decoder as an HF checkpoint (what PEFT is loaded over to check an export).
//!
//! Decoder adapters are written by [`crate::export::AdapterExport`] with `task_type`
//! `CAUSAL_LM` and no `modules_to_save`: keys are
//! `base_model.model.model.layers.N.self_attn.q_proj.lora_A[.weight]` and so on for `k_proj`,
//! `v_proj`, `o_proj`, `mlp.gate_proj`, `mlp.up_proj`, `mlp.down_proj`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::model::llama::{LlamaWeights, RopeScaling};
use crate::model::weights::{write_safetensors, HostTensor};
use crate::TrainError;

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
    let cfg = serde_json::to_vec_pretty(&hf_config(weights))?;
    std::fs::write(dir.join("config.json"), cfg)?;
    Ok(dir.to_path_buf())
}
