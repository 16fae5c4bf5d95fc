//! Low-rank adapters on the frozen backbone's linear layers.
//!
//! - [`lora`]: `h = W0 x + (alpha/r) B A x` (METHODS.md section 1).
//! - [`adalora`]: the SVD-like triple `h = W0 x + alpha/(r_init + 1e-5) P diag(e ⊙ m) Q x`
//!   shared by the adaptive methods (section 2).
//!
//! Parameter names are PEFT's without the `base_model.model.` prefix and adapter name,
//! e.g. `bert.encoder.layer.0.attention.self.query.lora_A`.

pub mod adalora;
pub mod llama;
pub mod lora;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;

use crate::model::bert::{module_path, BertConfig, LinearHook, Site};
use crate::model::dropout;
use crate::params::ParamStore;
use crate::TrainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    Lora,
    /// The SVD triple with a 0/1 component mask.
    Svd,
}

/// One adapted linear layer.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// `named_modules()` path, e.g. `bert.encoder.layer.0.attention.self.query`.
    pub module: String,
    pub layer: usize,
    pub site: Site,
    pub in_features: usize,
    pub out_features: usize,
    /// Allocated components (r for LoRA, r_init for the triple).
    pub rank: usize,
    pub kind: AdapterKind,
    /// Parameter indices: A/Q `[r, in]`, B/P `[out, r]`, E `[r, 1]` (triple only).
    pub a: usize,
    pub b: usize,
    pub e: Option<usize>,
    /// Output multiplier: alpha/r (LoRA) or alpha/(r_init + 1e-5) (triple, as PEFT).
    pub scale: f64,
    /// Live components (all true for LoRA).
    pub mask: Vec<bool>,
}

impl Adapter {
    pub fn live_rank(&self) -> usize {
        self.mask.iter().filter(|m| **m).count()
    }

    /// `m` as a `[r, 1]` 0/1 tensor.
    pub fn mask_column<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        let m: Vec<f32> = self.mask.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
        Tensor::from_data(TensorData::new(m, [self.rank, 1]), device)
    }
}

/// Every adapter of a model, with a `(layer, site)` index for the forward pass.
#[derive(Debug, Clone)]
pub struct Adapters {
    pub list: Vec<Adapter>,
    by_site: Vec<Option<usize>>,
    pub dropout: f64,
}

/// PEFT's target matching: a module matches a target when its path equals it or ends
/// with `"." + target` (so `output.dense` also matches `attention.output.dense`).
pub fn matches_target(path: &str, targets: &[String]) -> bool {
    targets.iter().any(|t| path == t || path.ends_with(&format!(".{t}")))
}

/// How to initialise new adapters.
#[derive(Debug, Clone, Copy)]
pub struct AdapterSpec {
    pub kind: AdapterKind,
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
}

impl Adapters {
    /// Adds one adapter per matching BERT linear layer to `store`, layer by layer in
    /// `Site::ALL` order (the order of `named_modules()`).
    pub fn build_bert<B: Backend>(
        cfg: &BertConfig,
        targets: &[String],
        spec: AdapterSpec,
        store: &mut ParamStore<B>,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let mut list = Vec::new();
        let mut by_site = vec![None; cfg.num_hidden_layers * Site::ALL.len()];
        for layer in 0..cfg.num_hidden_layers {
            for site in Site::ALL {
                let module = module_path(layer, site);
                if !matches_target(&module, targets) {
                    continue;
                }
                let (in_f, out_f) = site.dims(cfg);
                let adapter = match spec.kind {
                    AdapterKind::Lora => lora::init(store, &module, layer, site, in_f, out_f, spec, rng, device),
                    AdapterKind::Svd => adalora::init(store, &module, layer, site, in_f, out_f, spec, rng, device),
                };
                by_site[layer * Site::ALL.len() + site.index()] = Some(list.len());
                list.push(adapter);
            }
        }
        if list.is_empty() {
            return Err(TrainError::Model(
                "bert".into(),
                format!(
                    "target_modules {targets:?} match no layer; BERT has query, key, value, attention.output.dense, intermediate.dense, output.dense"
                ),
            ));
        }
        Ok(Self { list, by_site, dropout: spec.dropout })
    }

    /// Wraps explicitly built adapters (e.g. loaded from a PEFT directory).
    pub fn from_list(list: Vec<Adapter>, num_layers: usize, dropout: f64) -> Self {
        let mut by_site = vec![None; num_layers * Site::ALL.len()];
        for (i, a) in list.iter().enumerate() {
            by_site[a.layer * Site::ALL.len() + a.site.index()] = Some(i);
        }
        Self { list, by_site, dropout }
    }

    /// Per parameter, a 0/1 tensor freezing pruned components in the optimizer (None when
    /// nothing is pruned): Q rows and e entries `[r, 1]`, P columns `[1, r]`.
    pub fn keep_masks<B: Backend>(&self, n_params: usize, device: &B::Device) -> Vec<Option<Tensor<B, 2>>> {
        let mut keep = vec![None; n_params];
        for ad in &self.list {
            if ad.mask.iter().all(|m| *m) {
                continue;
            }
            let col = ad.mask_column::<B>(device);
            keep[ad.b] = Some(col.clone().reshape([1, ad.rank]));
            if let Some(e) = ad.e {
                keep[e] = Some(col.clone());
            }
            keep[ad.a] = Some(col);
        }
        keep
    }

    /// The low-rank update `ΔW [out, in]` of adapter `i` (pruned components excluded).
    pub fn delta_weight<B: Backend>(&self, i: usize, store: &ParamStore<B>) -> Tensor<B, 2> {
        let ad = &self.list[i];
        let a = store.params[ad.a].value.clone();
        let b = store.params[ad.b].value.clone();
        let a = match ad.e {
            Some(e) => a * (store.params[e].value.clone() * ad.mask_column::<B>(&b.device())),
            None => a,
        };
        b.matmul(a) * ad.scale
    }

    pub fn total_live(&self) -> usize {
        self.list.iter().map(Adapter::live_rank).sum()
    }

    pub fn total_allocated(&self) -> usize {
        self.list.iter().map(|a| a.rank).sum()
    }
}

impl<B: Backend> LinearHook<B> for Adapters {
    fn delta(&self, layer: usize, site: Site, x: &Tensor<B, 2>, params: &[Tensor<B, 2>], train: bool) -> Option<Tensor<B, 2>> {
        let idx = self.by_site.get(layer * Site::ALL.len() + site.index()).copied().flatten()?;
        let ad = &self.list[idx];
        let x = dropout(x.clone(), self.dropout, train);
        Some(match ad.kind {
            AdapterKind::Lora => lora::delta(ad, x, params),
            AdapterKind::Svd => adalora::delta(ad, x, params),
        })
    }
}
