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
use rand::Rng;

use crate::model::bert::{module_path, AdapterHook, BertConfig, Site};
use crate::model::dropout;
use crate::model::weights::HostTensor;
use crate::params::{AdamW, ParamId, ParamStore};
use crate::TrainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    Lora,
    /// The SVD triple with a 0/1 component mask.
    Svd,
}

impl AdapterKind {
    /// The adapter a method trains: LoRA and ALoRA (gated LoRA) the plain pair, AdaLoRA,
    /// SalientLoRA and RoLoRA the SVD triple.
    pub fn for_method(method: &rankfit_domain::run::MethodConfig) -> Self {
        use rankfit_domain::run::MethodConfig;
        if matches!(method, MethodConfig::Lora | MethodConfig::ALora(_)) {
            Self::Lora
        } else {
            Self::Svd
        }
    }
}

/// What a masked component of the SVD triple is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Masking {
    /// Gated off and frozen: `e ⊙ m` in the forward pass, no gradient, no optimizer update
    /// (SalientLoRA, RoLoRA; ALoRA's gates on the plain pair).
    #[default]
    Freeze,
    /// PEFT's AdaLoRA: masking only zeroes `lora_E`. Every component keeps training (a
    /// masked e grows back until the next masking, which is recomputed from all components,
    /// so it can come back), and after the final allocation the masked e are zeroed again
    /// after every optimizer step. The mask is the rank pattern, not a gate.
    ZeroE,
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
    /// Parameters: A/Q `[r, in]`, B/P `[out, r]`, E `[r, 1]` (triple only).
    pub a: ParamId,
    pub b: ParamId,
    pub e: Option<ParamId>,
    /// Output multiplier: alpha/r (LoRA) or alpha/(r_init + 1e-5) (triple, as PEFT).
    pub scale: f64,
    /// Live components (all true for LoRA).
    pub mask: Vec<bool>,
    pub masking: Masking,
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
            if ad.masking == Masking::ZeroE || ad.mask.iter().all(|m| *m) {
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
        let m = ad.mask_column::<B>(&b.device());
        let a = match ad.e {
            Some(e) => a * (store.params[e].value.clone() * m),
            None => a * m,
        };
        b.matmul(a) * ad.scale
    }

    /// How masked components behave, for every adapter.
    pub fn set_masking(&mut self, masking: Masking) {
        self.list.iter_mut().for_each(|a| a.masking = masking);
    }

    /// Zeroes the `lora_E` entries of masked components (PEFT's `mask_using_rank_pattern`).
    pub fn zero_masked_e<B: Backend>(&self, store: &mut ParamStore<B>) {
        for ad in &self.list {
            if let (Some(e), true) = (ad.e, ad.mask.iter().any(|m| !m)) {
                let device = store.params[e].value.device();
                store.params[e].value = store.params[e].value.clone() * ad.mask_column::<B>(&device);
            }
        }
    }

    pub fn total_live(&self) -> usize {
        self.list.iter().map(Adapter::live_rank).sum()
    }

    /// Trainable adapter parameters of the live components: `r (in + out)`, plus `r` for
    /// the SVD triple's `E`.
    pub fn live_params(&self) -> usize {
        self.list.iter().map(|a| a.live_rank() * (a.in_features + a.out_features + usize::from(a.e.is_some()))).sum()
    }

    pub fn total_allocated(&self) -> usize {
        self.list.iter().map(|a| a.rank).sum()
    }

    /// The adapter on `(layer, site)`, if that linear layer is adapted.
    pub fn index_of(&self, layer: usize, site: Site) -> Option<usize> {
        self.by_site.get(layer * Site::ALL.len() + site.index()).copied().flatten()
    }

    /// Rebuilds adapter `i` from its components `keep` (in that order) plus `grow` new
    /// components whose contribution is exactly zero (LoRA kind: A rows Kaiming-uniform,
    /// B columns 0; SVD triple: P, Q ~ N(0, 0.02), e = 0), so the adapter's output is
    /// unchanged when `keep` holds every component that contributes. The optimizer moments and
    /// this step's gradients follow the components (new entries 0), and so do the
    /// optimizer's per-component step counts (new components start at 0: see [`AdamW`]).
    /// Kept components keep their mask bit; new ones are live. The scale is unchanged. An
    /// adapter left with no component keeps one masked (gated-off) component so that no
    /// tensor has a zero dim.
    #[allow(clippy::too_many_arguments)]
    pub fn resize<B: Backend>(
        &mut self,
        i: usize,
        keep: &[usize],
        grow: usize,
        store: &mut ParamStore<B>,
        adam: &mut AdamW<B>,
        grads: &mut [Option<Tensor<B, 2>>],
        rng: &mut StdRng,
    ) {
        let ad = &self.list[i];
        let (mut keep, mut grow, mut empty) = (keep.to_vec(), grow, false);
        if keep.is_empty() && grow == 0 {
            if ad.rank > 0 {
                keep = vec![0];
            } else {
                grow = 1;
            }
            empty = true;
        }
        let new_r = keep.len() + grow;
        let device = store.params[ad.a].value.device();
        let (in_f, out_f) = (ad.in_features, ad.out_features);
        let old_r = ad.rank;
        // Rows of Q/A `[r, in]` and e `[r, 1]`, columns of P/B `[out, r]`.
        let rows = |t: &HostTensor, width: usize, fresh: &mut dyn FnMut() -> f32| -> HostTensor {
            let mut data = Vec::with_capacity(new_r * width);
            for &k in &keep {
                data.extend_from_slice(&t.data[k * width..(k + 1) * width]);
            }
            data.extend((0..grow * width).map(|_| fresh()));
            HostTensor::new(vec![new_r, width], data)
        };
        let cols = |t: &HostTensor, fresh: &mut dyn FnMut() -> f32| -> HostTensor {
            let mut data = Vec::with_capacity(out_f * new_r);
            for row in 0..out_f {
                data.extend(keep.iter().map(|&k| t.data[row * old_r + k]));
                data.extend((0..grow).map(|_| fresh()));
            }
            HostTensor::new(vec![out_f, new_r], data)
        };
        let kind = ad.kind;
        let bound = 1.0 / (in_f as f64).sqrt();
        let mut zero = || 0f32;
        let (a_idx, b_idx, e_idx) = (ad.a, ad.b, ad.e);
        // Parameters.
        let a_host = store.host(a_idx);
        let b_host = store.host(b_idx);
        let (new_a, new_b) = match kind {
            AdapterKind::Lora => {
                let mut ka = || rng.random_range(-bound..bound) as f32;
                (rows(&a_host, in_f, &mut ka), cols(&b_host, &mut zero))
            }
            AdapterKind::Svd => {
                let a = rows(&a_host, in_f, &mut || adalora::normal(rng, adalora::INIT_STD));
                let b = cols(&b_host, &mut || adalora::normal(rng, adalora::INIT_STD));
                (a, b)
            }
        };
        store.params[a_idx].value = new_a.to_tensor(&device);
        store.params[b_idx].value = new_b.to_tensor(&device);
        if let Some(e) = e_idx {
            let new_e = rows(&store.host(e), 1, &mut zero);
            store.params[e].value = new_e.to_tensor(&device);
        }
        // Optimizer moments and gradients: same selection, zeros for new components.
        let a_like = |t: &Tensor<B, 2>| rows(&HostTensor::from_tensor(t), in_f, &mut || 0.0).to_tensor::<B, 2>(&device);
        let b_like = |t: &Tensor<B, 2>| cols(&HostTensor::from_tensor(t), &mut || 0.0).to_tensor::<B, 2>(&device);
        let e_like = |t: &Tensor<B, 2>| rows(&HostTensor::from_tensor(t), 1, &mut || 0.0).to_tensor::<B, 2>(&device);
        type Follow<'f, B> = &'f dyn Fn(&Tensor<B, 2>) -> Tensor<B, 2>;
        let follow: [(Option<ParamId>, Follow<'_, B>, bool); 3] =
            [(Some(a_idx), &a_like, true), (Some(b_idx), &b_like, false), (e_idx, &e_like, true)];
        for (idx, f, along_rows) in follow {
            let Some(idx) = idx else { continue };
            adam.resize_components(idx, along_rows, old_r, &keep, grow);
            for slot in [adam.m.get_mut(idx.index()), adam.v.get_mut(idx.index()), grads.get_mut(idx.index())].into_iter().flatten() {
                if let Some(t) = slot.take() {
                    *slot = Some(f(&t));
                }
            }
        }
        let ad = &mut self.list[i];
        let mut mask: Vec<bool> = keep.iter().map(|&k| ad.mask.get(k).copied().unwrap_or(false)).collect();
        mask.extend(std::iter::repeat_n(true, grow));
        if empty {
            mask.iter_mut().for_each(|m| *m = false);
        }
        ad.rank = new_r;
        ad.mask = mask;
    }
}

/// Gates for scoring several gate settings ("variants") in one forward pass: the input
/// rows are the fixed batch repeated once per variant (variant v owns the v-th of
/// `variants` equal blocks of rows of every flattened `[rows, features]` activation, whatever
/// the block size: all tokens, or only the [CLS] rows), and adapter k's components are gated
/// in block v by `variants[v][k]`.
pub struct VariantMasks<B: Backend> {
    /// Per adapter, `[variants, r]`.
    pub gates: Vec<Tensor<B, 2>>,
}

impl<B: Backend> VariantMasks<B> {
    /// `variants[v][k]` is adapter k's gate vector in variant v.
    pub fn new(adapters: &Adapters, variants: &[Vec<Vec<bool>>], device: &B::Device) -> Self {
        let gates = adapters
            .list
            .iter()
            .enumerate()
            .map(|(k, ad)| {
                let data: Vec<f32> = variants.iter().flat_map(|v| v[k].iter().map(|&b| if b { 1.0 } else { 0.0 })).collect();
                HostTensor::new(vec![variants.len(), ad.rank], data).to_tensor(device)
            })
            .collect();
        Self { gates }
    }
}

/// Adapter `ad`'s output on `x [variants * m, in]` with per-variant gates `gates [variants, r]`
/// (which replace the adapter's own mask; rows `[v * m, (v + 1) * m)` take gate row v):
/// `scale * ((x Q^T) ⊙ e^T ⊙ gates) P^T` (LoRA kind: no e).
pub fn variant_delta<B: Backend>(ad: &Adapter, x: Tensor<B, 2>, params: &[Tensor<B, 2>], gates: &Tensor<B, 2>) -> Tensor<B, 2> {
    let [n, _] = x.dims();
    let [variants, r] = gates.dims();
    let mut h = x.matmul(params[ad.a].clone().transpose());
    if let Some(e) = ad.e {
        h = h * params[e].clone().reshape([1, ad.rank]);
    }
    let h = (h.reshape([variants, n / variants.max(1), r]) * gates.clone().reshape([variants, 1, r])).reshape([n, r]);
    h.matmul(params[ad.b].clone().transpose()) * ad.scale
}

/// A [`AdapterHook`] applying [`VariantMasks`] (BERT encoder; no dropout).
pub struct VariantHook<'a, B: Backend> {
    pub adapters: &'a Adapters,
    pub masks: VariantMasks<B>,
}

impl<B: Backend> AdapterHook<B, Site> for VariantHook<'_, B> {
    fn delta(&self, layer: usize, site: Site, x: &Tensor<B, 2>, params: &[Tensor<B, 2>], _train: bool) -> Option<Tensor<B, 2>> {
        let idx = self.adapters.index_of(layer, site)?;
        Some(variant_delta(&self.adapters.list[idx], x.clone(), params, &self.masks.gates[idx]))
    }
}

impl<B: Backend> AdapterHook<B, Site> for Adapters {
    fn delta(&self, layer: usize, site: Site, x: &Tensor<B, 2>, params: &[Tensor<B, 2>], train: bool) -> Option<Tensor<B, 2>> {
        let idx = self.index_of(layer, site)?;
        let ad = &self.list[idx];
        let x = dropout(x.clone(), self.dropout, train);
        Some(match ad.kind {
            AdapterKind::Lora => lora::delta(ad, x, params),
            AdapterKind::Svd => adalora::delta(ad, x, params),
        })
    }
}
