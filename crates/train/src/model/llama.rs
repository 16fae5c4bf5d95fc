//! Llama-family decoder (SmolLM2, Llama 2/3, TinyLlama, ...) numerically matching
//! `transformers`' `LlamaForCausalLM`: token embedding, RMSNorm, rotary embeddings
//! (`rotate_half` convention, optional Llama-3 frequency scaling), grouped-query causal
//! attention with a KV cache, SwiGLU MLP, final RMSNorm and an lm_head (tied to the
//! embedding when the checkpoint has none).
//!
//! Weights come from a GGUF file (dequantized to f32; llama.cpp's q/k row permutation is
//! undone so the tensors are exactly the HF ones) or from an HF checkpoint directory
//! (`config.json` + `model.safetensors` or a sharded `model.safetensors.index.json`; f32,
//! f16 and bf16 tensors). Either way the host weights use HF names
//! (`model.layers.0.self_attn.q_proj.weight`, ...), which adapters and merged exports use too.
//!
//! As in [`super::bert`], the backbone is frozen constants; adapters add their update through
//! a [`AdapterHook`] reading the trainable tensors passed to every forward.

use std::collections::{BTreeSet, HashMap};
use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use super::fused::{rms_norm, silu_mul, softmax};
use super::gguf::GgufFile;
use super::weights::{take, HostTensor};
use crate::TrainError;

/// Rotary frequency scaling (`rope_scaling` / `rope_parameters` in `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    Default,
    /// Llama 3.1's piecewise frequency scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

/// The architecture hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

/// `config.json` as transformers 4.x/5.x write it for `LlamaForCausalLM`.
#[derive(Debug, Deserialize)]
struct HfConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    bos_token_id: Option<u32>,
    eos_token_id: Option<serde_json::Value>,
    model_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    2048
}
fn default_act() -> String {
    "silu".into()
}

fn model_err(path: &Path, msg: impl Into<String>) -> TrainError {
    TrainError::Model(path.display().to_string(), msg.into())
}

impl LlamaConfig {
    /// Reads an HF `config.json`.
    pub fn from_hf_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| model_err(path, format!("reading: {e}")))?;
        let hf: HfConfig = serde_json::from_str(&text).map_err(|e| model_err(path, format!("config.json: {e}")))?;
        if let Some(t) = hf.model_type.as_deref() {
            if t != "llama" {
                return Err(model_err(path, format!("model_type {t:?} is not a Llama-architecture decoder")));
            }
        }
        if hf.hidden_act != "silu" {
            return Err(model_err(path, format!("hidden_act {:?} is not supported (silu only)", hf.hidden_act)));
        }
        if hf.attention_bias || hf.mlp_bias {
            return Err(model_err(path, "attention_bias/mlp_bias checkpoints are not supported"));
        }
        // transformers 5 nests rope settings in `rope_parameters`; 4.x has `rope_theta` + `rope_scaling`.
        let params = hf.rope_parameters.as_ref();
        let rope_theta = params.and_then(|p| p.get("rope_theta")).and_then(|v| v.as_f64()).or(hf.rope_theta).unwrap_or(10_000.0);
        let scaling = params.or(hf.rope_scaling.as_ref()).filter(|v| !v.is_null());
        let rope_scaling = match scaling {
            None => RopeScaling::Default,
            Some(v) => parse_rope_scaling(v).map_err(|m| model_err(path, m))?,
        };
        let eos_token_ids = match &hf.eos_token_id {
            None | Some(serde_json::Value::Null) => vec![],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)).collect(),
            Some(v) => v.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        };
        let cfg = LlamaConfig {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim: hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1)),
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: hf.max_position_embeddings,
            tie_word_embeddings: hf.tie_word_embeddings,
            bos_token_id: hf.bos_token_id,
            eos_token_ids,
        };
        cfg.validate().map_err(|m| model_err(path, m))?;
        Ok(cfg)
    }

    /// Reads the `llama.*` (or `<general.architecture>.*`) hyper-parameters of a GGUF file.
    pub fn from_gguf(g: &GgufFile) -> Result<Self, TrainError> {
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(model_err(&g.path, format!("general.architecture is {arch:?}, expected \"llama\"")));
        }
        let k = |s: &str| format!("{arch}.{s}");
        let hidden = g.get_usize(&k("embedding_length"))?;
        let heads = g.get_usize(&k("attention.head_count"))?;
        let kv_heads = match g.get(&k("attention.head_count_kv")) {
            Some(_) => g.get_usize(&k("attention.head_count_kv"))?,
            None => heads,
        };
        let head_dim = match g.get(&k("attention.key_length")) {
            Some(_) => g.get_usize(&k("attention.key_length"))?,
            None => hidden / heads.max(1),
        };
        if let Some(n) = g.get(&k("rope.dimension_count")).and_then(|v| v.as_int()) {
            if n as usize != head_dim {
                return Err(model_err(
                    &g.path,
                    format!("partial rotary embeddings (rope.dimension_count {n} < head_dim {head_dim}) are not supported"),
                ));
            }
        }
        let scaling = g.get(&k("rope.scaling.type")).and_then(|v| v.as_str()).unwrap_or("none");
        if scaling != "none" || g.tensor_info("rope_freqs.weight").is_some() {
            return Err(model_err(&g.path, "GGUF rope scaling (rope.scaling.* / rope_freqs) is not supported"));
        }
        let vocab = match g.get(&k("vocab_size")) {
            Some(_) => g.get_usize(&k("vocab_size"))?,
            None => g.get_strings("tokenizer.ggml.tokens")?.len(),
        };
        let opt_id = |key: &str| g.get(key).and_then(|v| v.as_int()).map(|v| v as u32);
        let cfg = LlamaConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: g.get_usize(&k("feed_forward_length"))?,
            num_hidden_layers: g.get_usize(&k("block_count"))?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: g.get_f64(&k("attention.layer_norm_rms_epsilon"))?,
            rope_theta: g.get(&k("rope.freq_base")).and_then(|v| v.as_f64()).unwrap_or(10_000.0),
            rope_scaling: RopeScaling::Default,
            max_position_embeddings: g.get_usize(&k("context_length"))?,
            tie_word_embeddings: g.tensor_info("output.weight").is_none(),
            bos_token_id: opt_id("tokenizer.ggml.bos_token_id"),
            eos_token_ids: opt_id("tokenizer.ggml.eos_token_id").into_iter().collect(),
        };
        cfg.validate().map_err(|m| model_err(&g.path, m))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.num_attention_heads == 0
            || self.num_key_value_heads == 0
            || !self.num_attention_heads.is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "{} attention heads do not split into {} key/value groups",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {} must be even", self.head_dim));
        }
        Ok(())
    }

    /// `(in_features, out_features)` of a site.
    pub fn site_dims(&self, site: LlamaSite) -> (usize, usize) {
        let (h, q, kv, ff) =
            (self.hidden_size, self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim, self.intermediate_size);
        match site {
            LlamaSite::Query => (h, q),
            LlamaSite::Key | LlamaSite::Value => (h, kv),
            LlamaSite::Output => (q, h),
            LlamaSite::Gate | LlamaSite::Up => (h, ff),
            LlamaSite::Down => (ff, h),
        }
    }

    /// Inverse rotary frequencies (`inv_freq` of transformers' rotary embedding).
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim;
        let base: Vec<f64> = (0..d / 2).map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / d as f64)).collect();
        match &self.rope_scaling {
            RopeScaling::Default => base,
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let old = *original_max_position_embeddings as f64;
                let (low_wl, high_wl) = (old / low_freq_factor, old / high_freq_factor);
                base.into_iter()
                    .map(|f| {
                        let wl = 2.0 * PI / f;
                        if wl < high_wl {
                            f
                        } else if wl > low_wl {
                            f / factor
                        } else {
                            let smooth = (old / wl - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }
}

fn parse_rope_scaling(v: &serde_json::Value) -> Result<RopeScaling, String> {
    let ty = v.get("rope_type").or_else(|| v.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).ok_or_else(|| format!("rope scaling {ty}: {k} is missing"));
    match ty {
        "default" => Ok(RopeScaling::Default),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        }),
        other => Err(format!("rope scaling type {other:?} is not supported (default, llama3)")),
    }
}

/// The seven linear layers of a decoder block that can carry an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LlamaSite {
    Query,
    Key,
    Value,
    Output,
    Gate,
    Up,
    Down,
}

impl LlamaSite {
    pub const ALL: [LlamaSite; 7] =
        [LlamaSite::Query, LlamaSite::Key, LlamaSite::Value, LlamaSite::Output, LlamaSite::Gate, LlamaSite::Up, LlamaSite::Down];

    /// Path of the module inside a layer, as `named_modules()` writes it.
    pub fn suffix(self) -> &'static str {
        match self {
            LlamaSite::Query => "self_attn.q_proj",
            LlamaSite::Key => "self_attn.k_proj",
            LlamaSite::Value => "self_attn.v_proj",
            LlamaSite::Output => "self_attn.o_proj",
            LlamaSite::Gate => "mlp.gate_proj",
            LlamaSite::Up => "mlp.up_proj",
            LlamaSite::Down => "mlp.down_proj",
        }
    }

    /// PEFT `target_modules` name (`q_proj`, ...).
    pub fn module_name(self) -> &'static str {
        self.suffix().rsplit('.').next().unwrap_or(self.suffix())
    }

    pub fn index(self) -> usize {
        LlamaSite::ALL.iter().position(|s| *s == self).expect("site listed in ALL")
    }

    /// The llama.cpp tensor name inside `blk.N.`.
    fn gguf_name(self) -> &'static str {
        match self {
            LlamaSite::Query => "attn_q",
            LlamaSite::Key => "attn_k",
            LlamaSite::Value => "attn_v",
            LlamaSite::Output => "attn_output",
            LlamaSite::Gate => "ffn_gate",
            LlamaSite::Up => "ffn_up",
            LlamaSite::Down => "ffn_down",
        }
    }
}

/// `named_modules()` path of a site in `LlamaForCausalLM`.
pub fn module_path(layer: usize, site: LlamaSite) -> String {
    format!("model.layers.{layer}.{}", site.suffix())
}

pub use super::{AdapterHook, NoHook};

/// Host-side weights with HF names, plus the config; what both loaders produce.
#[derive(Debug, Clone)]
pub struct LlamaWeights {
    pub config: LlamaConfig,
    pub tensors: HashMap<String, HostTensor>,
    /// Where they came from (for error messages).
    pub source: PathBuf,
}

/// Undoes llama.cpp's q/k row permutation (`convert_hf_to_gguf.py` `LlamaModel.permute`):
/// inside each head of `hd` rows, GGUF row `2i + j` is HF row `j * hd/2 + i`. This is
/// transformers' `reverse_permute_weights` (`n_head` = kv heads for k_proj).
pub fn unpermute_qk(t: &HostTensor, n_head: usize) -> HostTensor {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0f32; rows * cols];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * hd + 2 * i + j) * cols;
                let dst = (h * hd + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&t.data[src..src + cols]);
            }
        }
    }
    HostTensor::new(t.shape.clone(), out)
}

impl LlamaWeights {
    /// Dequantizes every tensor of a llama GGUF to f32 under its HF name.
    pub fn from_gguf(path: &Path) -> Result<Self, TrainError> {
        let g = GgufFile::open(path)?;
        let config = LlamaConfig::from_gguf(&g)?;
        let mut names: Vec<(String, String)> = vec![
            ("token_embd.weight".into(), "model.embed_tokens.weight".into()),
            ("output_norm.weight".into(), "model.norm.weight".into()),
        ];
        if !config.tie_word_embeddings {
            names.push(("output.weight".into(), "lm_head.weight".into()));
        }
        for l in 0..config.num_hidden_layers {
            names.push((format!("blk.{l}.attn_norm.weight"), format!("model.layers.{l}.input_layernorm.weight")));
            names.push((format!("blk.{l}.ffn_norm.weight"), format!("model.layers.{l}.post_attention_layernorm.weight")));
            for site in LlamaSite::ALL {
                names.push((format!("blk.{l}.{}.weight", site.gguf_name()), format!("{}.weight", module_path(l, site))));
            }
        }
        let known: BTreeSet<&str> = names.iter().map(|(g, _)| g.as_str()).collect();
        if let Some(extra) = g.tensors.iter().find(|t| !known.contains(t.name.as_str())) {
            return Err(model_err(path, format!("unexpected tensor {} (not a plain Llama GGUF)", extra.name)));
        }
        // Dequantize on all cores; tensors are independent.
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
        let results: Vec<Result<(String, HostTensor), TrainError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|w| {
                    let (g, names, cfg) = (&g, &names, &config);
                    s.spawn(move || {
                        names
                            .iter()
                            .skip(w)
                            .step_by(threads)
                            .map(|(gname, hf)| {
                                let t = g.tensor_f32(gname)?;
                                let t = if hf.ends_with("q_proj.weight") {
                                    unpermute_qk(&t, cfg.num_attention_heads)
                                } else if hf.ends_with("k_proj.weight") {
                                    unpermute_qk(&t, cfg.num_key_value_heads)
                                } else {
                                    t
                                };
                                Ok((hf.clone(), t))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("dequantization thread panicked")).collect()
        });
        let tensors = results.into_iter().collect::<Result<HashMap<_, _>, _>>()?;
        Ok(Self { config, tensors, source: path.to_path_buf() })
    }

    /// Reads an HF checkpoint directory: `config.json` and `model.safetensors` (or the shards
    /// listed in `model.safetensors.index.json`).
    pub fn from_hf_dir(dir: &Path) -> Result<Self, TrainError> {
        let config = LlamaConfig::from_hf_file(&dir.join("config.json"))?;
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            let text = std::fs::read_to_string(&index)?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| model_err(&index, e.to_string()))?;
            let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| model_err(&index, "no weight_map"))?;
            let shards: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
            shards.into_iter().map(|f| dir.join(f)).collect()
        } else {
            return Err(TrainError::AssetMissing(format!("{}: no model.safetensors or model.safetensors.index.json", dir.display())));
        };
        let mut tensors = HashMap::new();
        for f in &files {
            read_safetensors_as_f32(f, &mut tensors)?;
        }
        Ok(Self { config, tensors, source: dir.to_path_buf() })
    }
}

/// Every F32/F16/BF16 tensor of a safetensors file, converted to f32 (exactly).
pub fn read_safetensors_as_f32(path: &Path, out: &mut HashMap<String, HostTensor>) -> Result<(), TrainError> {
    let bytes = std::fs::read(path).map_err(|e| model_err(path, format!("reading: {e}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| model_err(path, format!("not a safetensors file: {e}")))?;
    for (name, view) in st.tensors() {
        let d = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => d.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => d.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => return Err(model_err(path, format!("tensor {name} has dtype {other:?} (f32/f16/bf16 only)"))),
        };
        out.insert(name, HostTensor::new(view.shape().to_vec(), data));
    }
    Ok(())
}

struct Layer<B: Backend> {
    /// `W^T` `[in, out]` for each [`LlamaSite`], in [`LlamaSite::ALL`] order.
    wt: [Tensor<B, 2>; 7],
    input_norm: Tensor<B, 1>,
    post_attn_norm: Tensor<B, 1>,
}

/// The frozen decoder.
pub struct Llama<B: Backend> {
    pub config: LlamaConfig,
    embed: Tensor<B, 2>,
    layers: Vec<Layer<B>>,
    norm: Tensor<B, 1>,
    /// `lm_head.weight^T` `[hidden, vocab]` (the embedding's transpose when tied).
    lm_head_t: Tensor<B, 2>,
    inv_freq: Vec<f64>,
}

/// Keys and values of earlier positions, per layer: `[batch, kv_heads, len, head_dim]`.
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    /// Additive key bias `[batch, 1, 1, len]` when inputs carried a padding mask.
    key_bias: Option<Tensor<B, 4>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(layers: usize) -> Self {
        Self { layers: (0..layers).map(|_| None).collect(), key_bias: None, len: 0 }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps batch rows `rows` (in that order, repeats allowed): beam-search reordering.
    pub fn select_rows(&mut self, rows: &[usize], device: &B::Device) {
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(rows.iter().map(|&r| r as i64).collect::<Vec<_>>(), [rows.len()]), device);
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.clone().select(0, idx.clone());
            *v = v.clone().select(0, idx.clone());
        }
        if let Some(b) = &mut self.key_bias {
            *b = b.clone().select(0, idx);
        }
    }
}

/// The per-forward constants every layer shares ([`Llama::frame`]).
pub struct Frame<B: Backend> {
    pub batch: usize,
    pub seq: usize,
    /// Cached positions before this pass's first token.
    pub offset: usize,
    /// Rotary tables `[1, 1, seq, head_dim]`.
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    /// Additive attention bias, `[1 or batch, 1, rep * seq, offset + seq]`.
    bias: Tensor<B, 4>,
}

impl<B: Backend> Frame<B> {
    /// The same frame for the batch `times` times over (the bias is shared by every row
    /// unless it carries padding, which is repeated).
    pub fn repeat(&self, times: usize) -> Self {
        let bias = if self.bias.dims()[0] == 1 { self.bias.clone() } else { self.bias.clone().repeat_dim(0, times) };
        Self { batch: self.batch * times, seq: self.seq, offset: self.offset, cos: self.cos.clone(), sin: self.sin.clone(), bias }
    }
}

/// A batch of token ids on the device.
pub struct DecoderInputs<B: Backend> {
    pub batch: usize,
    pub seq: usize,
    ids: Tensor<B, 1, Int>,
    /// Additive key bias `[batch, 1, 1, seq]`: 0 for tokens, -1e9 for padding.
    pad_bias: Option<Tensor<B, 4>>,
}

impl<B: Backend> DecoderInputs<B> {
    /// Row-major `[batch, seq]` ids; `mask` (1 token / 0 padding, same layout) is needed only
    /// for padded batches (right padding: positions count from 0 in every row).
    pub fn new(ids: &[u32], mask: Option<&[f32]>, batch: usize, seq: usize, device: &B::Device) -> Self {
        assert_eq!(ids.len(), batch * seq, "ids must be [batch, seq]");
        let ids = Tensor::from_data(TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [batch * seq]), device);
        let pad_bias = mask.map(|m| {
            assert_eq!(m.len(), batch * seq, "mask must be [batch, seq]");
            let bias: Vec<f32> = m.iter().map(|m| (1.0 - m) * -1e9).collect();
            Tensor::from_data(TensorData::new(bias, [batch, 1, 1, seq]), device)
        });
        Self { batch, seq, ids, pad_bias }
    }

    /// One unpadded sequence.
    pub fn single(ids: &[u32], device: &B::Device) -> Self {
        Self::new(ids, None, 1, ids.len(), device)
    }

    /// From the trainer's padded [`crate::tokenize::Batch`] (its `ids` and `mask`).
    pub fn from_batch(batch: &crate::tokenize::Batch, device: &B::Device) -> Self {
        let ids: Vec<u32> = batch.ids.iter().map(|&i| i as u32).collect();
        Self::new(&ids, Some(&batch.mask), batch.batch, batch.seq, device)
    }
}

impl<B: Backend> Llama<B> {
    /// Builds the model from host weights (consumed), checking every shape.
    pub fn from_weights(weights: LlamaWeights, device: &B::Device) -> Result<Self, TrainError> {
        let LlamaWeights { config, mut tensors, source } = weights;
        let cfg = &config;
        let h = cfg.hidden_size;
        let embed_host = take(&mut tensors, "model.embed_tokens.weight", &[cfg.vocab_size, h], &source)?;
        // Tied checkpoints (SmolLM2) have no lm_head; an untied one must have it.
        let lm_head_t = if tensors.contains_key("lm_head.weight") {
            take(&mut tensors, "lm_head.weight", &[cfg.vocab_size, h], &source)?.transposed()
        } else if cfg.tie_word_embeddings {
            embed_host.transposed()
        } else {
            return Err(model_err(&source, "lm_head.weight is missing and tie_word_embeddings is false"));
        };
        let vec1 = |map: &mut HashMap<String, HostTensor>, name: &str| -> Result<Tensor<B, 1>, TrainError> {
            Ok(take(map, name, &[h], &source)?.to_tensor(device))
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let mut wt = Vec::with_capacity(7);
            for site in LlamaSite::ALL {
                let (i, o) = cfg.site_dims(site);
                let w = take(&mut tensors, &format!("{}.weight", module_path(l, site)), &[o, i], &source)?;
                wt.push(w.transposed().to_tensor(device));
            }
            let wt: [Tensor<B, 2>; 7] = wt.try_into().unwrap_or_else(|_| unreachable!("seven sites"));
            layers.push(Layer {
                wt,
                input_norm: vec1(&mut tensors, &format!("model.layers.{l}.input_layernorm.weight"))?,
                post_attn_norm: vec1(&mut tensors, &format!("model.layers.{l}.post_attention_layernorm.weight"))?,
            });
        }
        let norm = vec1(&mut tensors, "model.norm.weight")?;
        let inv_freq = cfg.inv_freq();
        Ok(Self { embed: embed_host.to_tensor(device), lm_head_t: lm_head_t.to_tensor(device), layers, norm, inv_freq, config })
    }

    /// Loads a llama GGUF (dequantized to f32).
    pub fn load_gguf(path: &Path, device: &B::Device) -> Result<Self, TrainError> {
        Self::from_weights(LlamaWeights::from_gguf(path)?, device)
    }

    /// Loads an HF checkpoint directory (`config.json` + safetensors).
    pub fn load_hf(dir: &Path, device: &B::Device) -> Result<Self, TrainError> {
        Self::from_weights(LlamaWeights::from_hf_dir(dir)?, device)
    }

    /// A fresh, empty KV cache for this model.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.config.num_hidden_layers)
    }

    /// `cos`, `sin` tables `[1, 1, seq, head_dim]` for positions `offset..offset + seq`.
    fn rope_tables(&self, offset: usize, seq: usize, device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let d = self.config.head_dim;
        let half = d / 2;
        let mut cos = vec![0f32; seq * d];
        let mut sin = vec![0f32; seq * d];
        for p in 0..seq {
            // transformers computes the angle in f32 (`inv_freq @ position_ids`), then cos/sin.
            let pos = (offset + p) as f32;
            for (i, f) in self.inv_freq.iter().enumerate() {
                let angle = (*f as f32 * pos) as f64;
                let (s, c) = angle.sin_cos();
                for k in [i, i + half] {
                    cos[p * d + k] = c as f32;
                    sin[p * d + k] = s as f32;
                }
            }
        }
        let t = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [1, 1, seq, d]), device);
        (t(cos), t(sin))
    }

    /// Final hidden states `[batch, seq, hidden]` (after the last RMSNorm). With a cache, the
    /// inputs continue the cached positions and their keys/values are appended to it.
    pub fn forward_hidden(
        &self,
        inp: &DecoderInputs<B>,
        cache: Option<&mut KvCache<B>>,
        params: &[Tensor<B, 2>],
        hook: &dyn AdapterHook<B, LlamaSite>,
        train: bool,
    ) -> Tensor<B, 3> {
        let mut cache = cache;
        let frame = self.frame(inp, cache.as_deref_mut());
        let mut x = self.embed(inp);
        for l in 0..self.layers.len() {
            x = self.block(l, x, &frame, cache.as_deref_mut(), params, hook, train);
        }
        if let Some(c) = cache {
            c.len = frame.offset + frame.seq;
        }
        self.final_norm(x, &frame)
    }

    /// Token embeddings `[batch * seq, hidden]`: the input of layer 0.
    pub fn embed(&self, inp: &DecoderInputs<B>) -> Tensor<B, 2> {
        self.embed.clone().select(0, inp.ids.clone())
    }

    /// The final RMSNorm of the last layer's output, `[batch, seq, hidden]`.
    pub fn final_norm(&self, x: Tensor<B, 2>, frame: &Frame<B>) -> Tensor<B, 3> {
        rms_norm(x, &self.norm, self.config.rms_norm_eps).reshape([frame.batch, frame.seq, self.config.hidden_size])
    }

    /// What every layer of one forward pass shares: the rotary tables of its positions and the
    /// attention bias (causal, plus padding; with a cache, over the cached keys too, and the
    /// cache's padding bias is extended).
    pub fn frame(&self, inp: &DecoderInputs<B>, cache: Option<&mut KvCache<B>>) -> Frame<B> {
        let (b, s) = (inp.batch, inp.seq);
        let rep = self.config.num_attention_heads / self.config.num_key_value_heads;
        let device = inp.ids.device();
        let mut cache = cache;
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let total = offset + s;
        let (cos, sin) = self.rope_tables(offset, s, &device);
        // Causal mask for the grouped query layout [rep * s, total]: query i (position
        // offset + i) sees keys 0..=offset + i.
        let mut mask = vec![0f32; rep * s * total];
        for r in 0..rep {
            for i in 0..s {
                for j in (offset + i + 1)..total {
                    mask[(r * s + i) * total + j] = -1e9;
                }
            }
        }
        let mut bias = Tensor::<B, 4>::from_data(TensorData::new(mask, [1, 1, rep * s, total]), &device);
        // Padding bias over all keys (cached ones included); kept in the cache once present.
        let key_bias = match cache.as_mut() {
            Some(c) => {
                let kb = match (c.key_bias.take(), &inp.pad_bias) {
                    (None, None) => None,
                    (Some(old), None) => Some(Tensor::cat(vec![old, Tensor::zeros([b, 1, 1, s], &device)], 3)),
                    (None, Some(new)) if offset > 0 => Some(Tensor::cat(vec![Tensor::zeros([b, 1, 1, offset], &device), new.clone()], 3)),
                    (None, Some(new)) => Some(new.clone()),
                    (Some(old), Some(new)) => Some(Tensor::cat(vec![old, new.clone()], 3)),
                };
                c.key_bias = kb.clone();
                kb
            }
            None => inp.pad_bias.clone(),
        };
        if let Some(kb) = key_bias {
            bias = bias + kb;
        }
        Frame { batch: b, seq: s, offset, cos, sin, bias }
    }

    /// Runs layers `range` on `x`, the input of the range's first layer (`[batch * seq,
    /// hidden]`, no cache), and returns the input of the layer after it. ALoRA's oracle
    /// restarts ablation variants at the first layer whose gates they change.
    pub fn blocks(
        &self,
        range: std::ops::Range<usize>,
        mut x: Tensor<B, 2>,
        frame: &Frame<B>,
        params: &[Tensor<B, 2>],
        hook: &dyn AdapterHook<B, LlamaSite>,
        train: bool,
    ) -> Tensor<B, 2> {
        for l in range {
            x = self.block(l, x, frame, None, params, hook, train);
        }
        x
    }

    /// One decoder layer: RMSNorm, grouped-query self-attention with rotary positions,
    /// residual, RMSNorm, SwiGLU MLP, residual.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        l: usize,
        x: Tensor<B, 2>,
        frame: &Frame<B>,
        cache: Option<&mut KvCache<B>>,
        params: &[Tensor<B, 2>],
        hook: &dyn AdapterHook<B, LlamaSite>,
        train: bool,
    ) -> Tensor<B, 2> {
        let cfg = &self.config;
        let (b, s, hd) = (frame.batch, frame.seq, cfg.head_dim);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let rep = nh / nkv;
        let layer = &self.layers[l];
        let rope = |x: Tensor<B, 4>| -> Tensor<B, 4> {
            let half = hd / 2;
            let x1 = x.clone().narrow(3, 0, half);
            let x2 = x.clone().narrow(3, half, half);
            let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
            x * frame.cos.clone() + rotated * frame.sin.clone()
        };
        let lin = |site: LlamaSite, input: Tensor<B, 2>| -> Tensor<B, 2> {
            let base = input.clone().matmul(layer.wt[site.index()].clone());
            match hook.delta(l, site, &input, params, train) {
                Some(delta) => base + delta,
                None => base,
            }
        };
        let normed = rms_norm(x.clone(), &layer.input_norm, cfg.rms_norm_eps);
        let q = rope(lin(LlamaSite::Query, normed.clone()).reshape([b, s, nh, hd]).swap_dims(1, 2));
        let k = rope(lin(LlamaSite::Key, normed.clone()).reshape([b, s, nkv, hd]).swap_dims(1, 2));
        let v = lin(LlamaSite::Value, normed).reshape([b, s, nkv, hd]).swap_dims(1, 2);
        let (k, v) = match cache {
            Some(c) => {
                let (k, v) = match c.layers[l].take() {
                    Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
                    None => (k, v),
                };
                c.layers[l] = Some((k.clone(), v.clone()));
                (k, v)
            }
            None => (k, v),
        };
        // Group the query heads sharing a key/value head: [b, nkv, rep * s, hd].
        let qg = q.reshape([b, nkv, rep * s, hd]);
        let scores = qg.matmul(k.swap_dims(2, 3)) * (1.0 / (hd as f64).sqrt()) + frame.bias.clone();
        let probs = softmax(scores, 3);
        let ctx = probs.matmul(v).reshape([b, nh, s, hd]).swap_dims(1, 2).reshape([b * s, nh * hd]);
        let x1 = x + lin(LlamaSite::Output, ctx);
        let normed = rms_norm(x1.clone(), &layer.post_attn_norm, cfg.rms_norm_eps);
        let gated = silu_mul(lin(LlamaSite::Gate, normed.clone()), lin(LlamaSite::Up, normed));
        x1 + lin(LlamaSite::Down, gated)
    }

    /// Vocabulary logits `[n, vocab]` of hidden states `[n, hidden]`.
    pub fn lm_head(&self, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        hidden.matmul(self.lm_head_t.clone())
    }

    /// Logits of every position, `[batch, seq, vocab]`.
    pub fn logits(
        &self,
        inp: &DecoderInputs<B>,
        params: &[Tensor<B, 2>],
        hook: &dyn AdapterHook<B, LlamaSite>,
        train: bool,
    ) -> Tensor<B, 3> {
        let hidden = self.forward_hidden(inp, None, params, hook, train);
        let [b, s, h] = hidden.dims();
        self.lm_head(hidden.reshape([b * s, h])).reshape([b, s, self.config.vocab_size])
    }

    /// Logits of the last position of each row `[batch, vocab]`, extending `cache`.
    pub fn next_token_logits(
        &self,
        inp: &DecoderInputs<B>,
        cache: &mut KvCache<B>,
        params: &[Tensor<B, 2>],
        hook: &dyn AdapterHook<B, LlamaSite>,
    ) -> Tensor<B, 2> {
        let hidden = self.forward_hidden(inp, Some(cache), params, hook, false);
        let [b, s, h] = hidden.dims();
        self.lm_head(hidden.narrow(1, s - 1, 1).reshape([b, h]))
    }
}

/// Loads SmolLM2-135M-Instruct (the GGUF under `assets_dir`, see
/// [`super::llama_assets`]) and its tokenizer.
pub fn load_smollm2<B: Backend>(
    assets_dir: &Path,
    device: &B::Device,
) -> Result<(Llama<B>, super::llama_tokenizer::LlamaTokenizer), TrainError> {
    let path = super::llama_assets::locate_smollm2(assets_dir)?;
    let tok = super::llama_tokenizer::LlamaTokenizer::from_gguf(&GgufFile::open(&path)?)?;
    Ok((Llama::load_gguf(&path, device)?, tok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols).
        let (n_head, hd, cols) = (3usize, 8usize, 2usize);
        let rows = n_head * hd;
        let hf: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        let mut permuted = vec![0f32; rows * cols];
        for h in 0..n_head {
            for j in 0..2 {
                for i in 0..hd / 2 {
                    for c in 0..cols {
                        // source index (h, j, i) -> destination (h, i, j)
                        permuted[((h * hd) + i * 2 + j) * cols + c] = hf[((h * hd) + j * (hd / 2) + i) * cols + c];
                    }
                }
            }
        }
        let back = unpermute_qk(&HostTensor::new(vec![rows, cols], permuted), n_head);
        assert_eq!(back.data, hf);
    }

    #[test]
    fn llama3_rope_scaling_keeps_high_frequencies() {
        let cfg = LlamaConfig {
            vocab_size: 8,
            hidden_size: 128,
            intermediate_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 1,
            num_key_value_heads: 1,
            head_dim: 128,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            },
            max_position_embeddings: 131072,
            tie_word_embeddings: true,
            bos_token_id: None,
            eos_token_ids: vec![],
        };
        let f = cfg.inv_freq();
        assert_eq!(f[0], 1.0);
        let plain = LlamaConfig { rope_scaling: RopeScaling::Default, ..cfg.clone() }.inv_freq();
        assert!((f[63] - plain[63] / 8.0).abs() < 1e-15);
    }
}
