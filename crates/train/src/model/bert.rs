//! BERT-family encoder (all-MiniLM-L6-v2) with a sequence-classification/regression head,
//! numerically matching `transformers`' `BertForSequenceClassification`.
//!
//! The backbone's weights are frozen constants (never `require_grad`); the head (pooler,
//! classifier) and the adapters live in the trainable parameter list that every forward
//! receives, so only they get gradients and optimizer state.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::activation::{gelu_approximate, relu};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::fused::{gelu, softmax};
use super::weights::{read_safetensors, take, HostTensor};
use super::{affine, dropout, layer_norm};
use crate::params::ParamId;
use crate::tokenize::Batch;
use crate::TrainError;

/// The fields of a BERT `config.json` the model uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

impl BertConfig {
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::Model(path.display().to_string(), e.to_string()))?;
        let cfg: BertConfig =
            serde_json::from_str(&text).map_err(|e| TrainError::Model(path.display().to_string(), format!("config.json: {e}")))?;
        if !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(TrainError::Model(path.display().to_string(), "hidden_size is not a multiple of num_attention_heads".into()));
        }
        Activation::parse(&cfg.hidden_act)
            .ok_or_else(|| TrainError::Model(path.display().to_string(), format!("unsupported hidden_act {:?}", cfg.hidden_act)))?;
        Ok(cfg)
    }
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    Gelu,
    GeluTanh,
    Relu,
}

impl Activation {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }

    fn apply<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Gelu => gelu(x),
            Self::GeluTanh => gelu_approximate(x),
            Self::Relu => relu(x),
        }
    }
}

/// The six linear layers of a BERT block that can carry an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    Query,
    Key,
    Value,
    AttentionOutput,
    Intermediate,
    Output,
}

impl Site {
    pub const ALL: [Site; 6] = [Site::Query, Site::Key, Site::Value, Site::AttentionOutput, Site::Intermediate, Site::Output];

    /// Path of the module inside a layer, as `named_modules()` writes it.
    pub fn suffix(self) -> &'static str {
        match self {
            Site::Query => "attention.self.query",
            Site::Key => "attention.self.key",
            Site::Value => "attention.self.value",
            Site::AttentionOutput => "attention.output.dense",
            Site::Intermediate => "intermediate.dense",
            Site::Output => "output.dense",
        }
    }

    pub fn index(self) -> usize {
        Site::ALL.iter().position(|s| *s == self).expect("site listed in ALL")
    }

    /// `(in_features, out_features)` for a config.
    pub fn dims(self, cfg: &BertConfig) -> (usize, usize) {
        let h = cfg.hidden_size;
        match self {
            Site::Intermediate => (h, cfg.intermediate_size),
            Site::Output => (cfg.intermediate_size, h),
            _ => (h, h),
        }
    }
}

/// `named_modules()` path of a site in `BertForSequenceClassification`.
pub fn module_path(layer: usize, site: Site) -> String {
    format!("bert.encoder.layer.{layer}.{}", site.suffix())
}

pub use super::{AdapterHook, NoHook};

struct Dense<B: Backend> {
    /// `W^T`, `[in, out]`.
    wt: Tensor<B, 2>,
    b: Tensor<B, 1>,
}

struct Norm<B: Backend> {
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
}

struct Layer<B: Backend> {
    dense: [Dense<B>; 6],
    attn_ln: Norm<B>,
    out_ln: Norm<B>,
}

/// The head's tensors in the parameter store.
#[derive(Debug, Clone, Copy)]
pub struct HeadParams {
    /// `bert.pooler.dense.weight` `[h, h]` and `.bias` `[1, h]`.
    pub pooler_w: ParamId,
    pub pooler_b: ParamId,
    /// `classifier.weight` `[labels, h]` and `.bias` `[1, labels]`.
    pub classifier_w: ParamId,
    pub classifier_b: ParamId,
}

/// The frozen encoder.
pub struct Bert<B: Backend> {
    pub config: BertConfig,
    act: Activation,
    word: Tensor<B, 2>,
    position: Tensor<B, 2>,
    token_type: Tensor<B, 2>,
    emb_ln: Norm<B>,
    layers: Vec<Layer<B>>,
    /// The pretrained pooler `(weight [h, h], bias [h])`, to seed the head.
    pub pooler: (HostTensor, HostTensor),
}

/// A batch on the device.
pub struct Inputs<B: Backend> {
    pub batch: usize,
    pub seq: usize,
    ids: Tensor<B, 1, Int>,
    type_ids: Tensor<B, 1, Int>,
    /// Additive attention bias `[batch, 1, 1, seq]`: 0 for tokens, -1e9 for padding.
    mask_bias: Tensor<B, 4>,
}

impl<B: Backend> Inputs<B> {
    pub fn new(batch: &Batch, device: &B::Device) -> Self {
        let (b, s) = (batch.batch, batch.seq);
        let ids = Tensor::from_data(TensorData::new(batch.ids.clone(), [b * s]), device);
        let type_ids = Tensor::from_data(TensorData::new(batch.type_ids.clone(), [b * s]), device);
        let bias: Vec<f32> = batch.mask.iter().map(|m| (1.0 - m) * -1e9).collect();
        let mask_bias = Tensor::from_data(TensorData::new(bias, [b, 1, 1, s]), device);
        Self { batch: b, seq: s, ids, type_ids, mask_bias }
    }

    /// The batch `times` times over, one copy after another along the batch dimension.
    pub fn repeat(&self, times: usize) -> Self {
        Self {
            batch: self.batch * times,
            seq: self.seq,
            ids: self.ids.clone().repeat_dim(0, times),
            type_ids: self.type_ids.clone().repeat_dim(0, times),
            mask_bias: self.mask_bias.clone().repeat_dim(0, times),
        }
    }
}

impl<B: Backend> Bert<B> {
    /// Loads a `BertModel` safetensors file (keys with or without a `bert.` prefix).
    pub fn load(config: BertConfig, weights: &Path, device: &B::Device) -> Result<Self, TrainError> {
        let (raw, _) = read_safetensors(weights)?;
        let mut map: HashMap<String, HostTensor> =
            raw.into_iter().map(|(k, v)| (k.strip_prefix("bert.").map(str::to_string).unwrap_or(k), v)).collect();
        let cfg = &config;
        let h = cfg.hidden_size;
        let mut t2 = |name: &str, shape: &[usize]| -> Result<Tensor<B, 2>, TrainError> {
            Ok(take(&mut map, name, shape, weights)?.to_tensor(device))
        };
        let word = t2("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?;
        let position = t2("embeddings.position_embeddings.weight", &[cfg.max_position_embeddings, h])?;
        let token_type = t2("embeddings.token_type_embeddings.weight", &[cfg.type_vocab_size, h])?;
        let vec1 = |map: &mut HashMap<String, HostTensor>, name: &str, n: usize| -> Result<Tensor<B, 1>, TrainError> {
            Ok(take(map, name, &[n], weights)?.to_tensor(device))
        };
        let emb_ln =
            Norm { gamma: vec1(&mut map, "embeddings.LayerNorm.weight", h)?, beta: vec1(&mut map, "embeddings.LayerNorm.bias", h)? };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{l}.");
            let mut dense = Vec::with_capacity(6);
            for site in Site::ALL {
                let (i, o) = site.dims(cfg);
                let w = take(&mut map, &format!("{p}{}.weight", site.suffix()), &[o, i], weights)?;
                let b = vec1(&mut map, &format!("{p}{}.bias", site.suffix()), o)?;
                dense.push(Dense { wt: w.transposed().to_tensor(device), b });
            }
            let attn_ln = Norm {
                gamma: vec1(&mut map, &format!("{p}attention.output.LayerNorm.weight"), h)?,
                beta: vec1(&mut map, &format!("{p}attention.output.LayerNorm.bias"), h)?,
            };
            let out_ln = Norm {
                gamma: vec1(&mut map, &format!("{p}output.LayerNorm.weight"), h)?,
                beta: vec1(&mut map, &format!("{p}output.LayerNorm.bias"), h)?,
            };
            let dense: [Dense<B>; 6] = dense.try_into().unwrap_or_else(|_| unreachable!("six sites"));
            layers.push(Layer { dense, attn_ln, out_ln });
        }
        let pooler = (take(&mut map, "pooler.dense.weight", &[h, h], weights)?, take(&mut map, "pooler.dense.bias", &[h], weights)?);
        let act =
            Activation::parse(&cfg.hidden_act).ok_or_else(|| TrainError::Model(weights.display().to_string(), "bad hidden_act".into()))?;
        Ok(Self { config, act, word, position, token_type, emb_ln, layers, pooler })
    }

    /// Last hidden states `[batch, seq, hidden]`.
    pub fn encode(&self, inp: &Inputs<B>, params: &[Tensor<B, 2>], hook: &dyn AdapterHook<B, Site>, train: bool) -> Tensor<B, 3> {
        let x = self.embed(inp, train);
        let x = self.layers(0..self.layers.len(), x, inp, params, hook, train);
        x.reshape([inp.batch, inp.seq, self.config.hidden_size])
    }

    /// The input of layer 0, `[batch * seq, hidden]`: word + token type + position
    /// embeddings, layer norm, dropout.
    pub fn embed(&self, inp: &Inputs<B>, train: bool) -> Tensor<B, 2> {
        let (b, s, h) = (inp.batch, inp.seq, self.config.hidden_size);
        let words = self.word.clone().select(0, inp.ids.clone());
        let types = self.token_type.clone().select(0, inp.type_ids.clone());
        let pos = self.position.clone().narrow(0, 0, s).reshape([1, s, h]);
        let emb = (words + types).reshape([b, s, h]) + pos;
        let ln = layer_norm(emb, &self.emb_ln.gamma, &self.emb_ln.beta, self.config.layer_norm_eps);
        dropout(ln, self.config.hidden_dropout_prob, train).reshape([b * s, h])
    }

    /// Runs the layers in `range` on `x`, the input of the range's first layer
    /// (`[batch * seq, hidden]`), and returns the input of the layer after it: with
    /// `embed`, an encoder forward pass that can stop and restart at any layer (ALoRA's
    /// oracle restarts ablation variants at the first layer whose gates they change).
    pub fn layers(
        &self,
        range: std::ops::Range<usize>,
        mut x: Tensor<B, 2>,
        inp: &Inputs<B>,
        params: &[Tensor<B, 2>],
        hook: &dyn AdapterHook<B, Site>,
        train: bool,
    ) -> Tensor<B, 2> {
        for l in range {
            x = self.block(l, x, 1, inp, params, hook, train, false);
        }
        x
    }

    /// The [CLS] rows of the last hidden state, `[copies * batch, hidden]` (no dropout), of
    /// `copies` copies of a batch that all enter layer `start` with the same rows `x`
    /// (`[batch * seq, hidden]`); `inp` is the batch stacked `copies` times and `hook` tells
    /// the copies apart. Equal to the [CLS] rows of full forward passes whose layers below
    /// `start` produced `x`, at a fraction of the work: the frozen projections of the shared
    /// rows run once, and the last layer computes past its keys and values only the [CLS]
    /// rows the classification head reads (ALoRA's ablation variants restart from a
    /// reference's layer input this way).
    pub fn cls_from(
        &self,
        start: usize,
        x: Tensor<B, 2>,
        copies: usize,
        inp: &Inputs<B>,
        params: &[Tensor<B, 2>],
        hook: &dyn AdapterHook<B, Site>,
    ) -> Tensor<B, 2> {
        let last = self.layers.len();
        if start >= last {
            let batch = inp.batch / copies.max(1);
            return cls_rows(x, batch, inp.seq).repeat_dim(0, copies);
        }
        let (mut x, mut copies) = (x, copies);
        for l in start..last {
            x = self.block(l, x, copies, inp, params, hook, false, l + 1 == last);
            copies = 1;
        }
        x
    }

    /// One encoder block: self-attention, residual + layer norm, feed-forward, residual +
    /// layer norm.
    ///
    /// `x` holds the rows that `copies` copies of the batch share (`[batch * seq / copies,
    /// hidden]`; `inp` is the stacked batch): the frozen projections of shared rows run once
    /// and only the adapters see every copy. With `cls_only` the block returns only the
    /// [CLS] rows (`[batch, hidden]`): their queries attend to every key and value, and
    /// nothing else past the keys and values is computed.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        l: usize,
        x: Tensor<B, 2>,
        copies: usize,
        inp: &Inputs<B>,
        params: &[Tensor<B, 2>],
        hook: &dyn AdapterHook<B, Site>,
        train: bool,
        cls_only: bool,
    ) -> Tensor<B, 2> {
        let cfg = &self.config;
        let (b, s, h) = (inp.batch, inp.seq, cfg.hidden_size);
        let heads = cfg.num_attention_heads;
        let dh = h / heads;
        let (p_hidden, eps) = (cfg.hidden_dropout_prob, cfg.layer_norm_eps);
        let layer = &self.layers[l];
        // The frozen layer on `shared` (repeated `copies` times) plus the adapter on `all`, the
        // same rows once per copy.
        let lin = |site: Site, shared: Tensor<B, 2>, all: &Tensor<B, 2>, copies: usize| -> Tensor<B, 2> {
            let d = &layer.dense[site.index()];
            let base = affine(shared, &d.wt, &d.b);
            let base = if copies == 1 { base } else { base.repeat_dim(0, copies) };
            match hook.delta(l, site, all, params, train) {
                Some(delta) => base + delta,
                None => base,
            }
        };
        let own = |site: Site, input: Tensor<B, 2>| lin(site, input.clone(), &input, 1);
        let x_all = if copies == 1 { x.clone() } else { x.clone().repeat_dim(0, copies) };
        let (q_shared, q_all, q_len) =
            if cls_only { (cls_rows(x.clone(), b / copies, s), cls_rows(x_all.clone(), b, s), 1) } else { (x.clone(), x_all.clone(), s) };
        let split = |t: Tensor<B, 2>, len: usize| t.reshape([b, len, heads, dh]).swap_dims(1, 2);
        let q = split(lin(Site::Query, q_shared, &q_all, copies), q_len);
        let k = split(lin(Site::Key, x.clone(), &x_all, copies), s);
        let v = split(lin(Site::Value, x, &x_all, copies), s);
        let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (dh as f64).sqrt()) + inp.mask_bias.clone();
        let probs = dropout(softmax(scores, 3), cfg.attention_probs_dropout_prob, train);
        let ctx = probs.matmul(v).swap_dims(1, 2).reshape([b * q_len, h]);
        let attn = dropout(own(Site::AttentionOutput, ctx), p_hidden, train);
        let x1 = layer_norm(attn + q_all, &layer.attn_ln.gamma, &layer.attn_ln.beta, eps);
        let inter = self.act.apply(own(Site::Intermediate, x1.clone()));
        let out = dropout(own(Site::Output, inter), p_hidden, train);
        layer_norm(out + x1, &layer.out_ln.gamma, &layer.out_ln.beta, eps)
    }

    /// Head logits `[batch, labels]`: pooler (dense + tanh on [CLS]), dropout, classifier.
    pub fn logits(
        &self,
        inp: &Inputs<B>,
        params: &[Tensor<B, 2>],
        head: &HeadParams,
        hook: &dyn AdapterHook<B, Site>,
        train: bool,
    ) -> Tensor<B, 2> {
        let hidden = self.encode(inp, params, hook, train);
        self.head(hidden, params, head, train)
    }

    /// The head on last hidden states `[batch, seq, hidden]`.
    pub fn head(&self, hidden: Tensor<B, 3>, params: &[Tensor<B, 2>], head: &HeadParams, train: bool) -> Tensor<B, 2> {
        let [batch, seq, h] = hidden.dims();
        self.classify(cls_rows(hidden.reshape([batch * seq, h]), batch, seq), params, head, train)
    }

    /// The head on the [CLS] rows of the last hidden state, `[batch, hidden]`.
    pub fn classify(&self, cls: Tensor<B, 2>, params: &[Tensor<B, 2>], head: &HeadParams, train: bool) -> Tensor<B, 2> {
        let pooled = (cls.matmul(params[head.pooler_w].clone().transpose()) + params[head.pooler_b].clone()).tanh();
        let pooled = dropout(pooled, self.config.hidden_dropout_prob, train);
        pooled.matmul(params[head.classifier_w].clone().transpose()) + params[head.classifier_b].clone()
    }
}

/// The first token's row of every sequence of `x [batch * seq, width]`: `[batch, width]`.
fn cls_rows<B: Backend>(x: Tensor<B, 2>, batch: usize, seq: usize) -> Tensor<B, 2> {
    let width = x.dims()[1];
    x.reshape([batch, seq, width]).narrow(1, 0, 1).reshape([batch, width])
}
