//! Adapters on a Llama decoder's linear layers (`q_proj`, `k_proj`, `v_proj`, `o_proj`,
//! `gate_proj`, `up_proj`, `down_proj`): the same [`Adapter`]s, parameter layout and
//! allocators as the encoder's, located by their `named_modules()` path
//! (`model.layers.N.self_attn.q_proj`, ...) instead of a BERT site.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rand::rngs::StdRng;

use super::{adalora, lora, matches_target, variant_delta, Adapter, AdapterKind, AdapterSpec, Adapters, VariantMasks};
use crate::model::bert::Site;
use crate::model::dropout;
use crate::model::llama::{module_path, AdapterHook, LlamaConfig, LlamaSite};
use crate::params::ParamStore;
use crate::TrainError;

/// The BERT site recorded in a decoder [`Adapter`]'s `site` field. The encoder's
/// `(layer, site)` index is never consulted for decoder adapters: [`LlamaHook`] finds them
/// by module path, and `Adapters::build_llama` leaves the encoder index empty.
const UNUSED_ENCODER_SITE: Site = Site::Query;

/// The decoder site of a module path `model.layers.N.<suffix>`, with its layer.
pub fn parse_module_path(path: &str) -> Option<(usize, LlamaSite)> {
    let rest = path.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer = layer.parse().ok()?;
    LlamaSite::ALL.into_iter().find(|s| s.suffix() == suffix).map(|s| (layer, s))
}

impl Adapters {
    /// Adds one adapter per matching decoder linear layer to `store`, layer by layer in
    /// [`LlamaSite::ALL`] order (the order of `named_modules()`). `targets` are PEFT-style
    /// names (`q_proj`, `mlp.down_proj`, or full paths).
    pub fn build_llama<B: Backend>(
        cfg: &LlamaConfig,
        targets: &[String],
        spec: AdapterSpec,
        store: &mut ParamStore<B>,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let mut list = Vec::new();
        for layer in 0..cfg.num_hidden_layers {
            for site in LlamaSite::ALL {
                let module = module_path(layer, site);
                if !matches_target(&module, targets) {
                    continue;
                }
                let (in_f, out_f) = cfg.site_dims(site);
                let adapter = match spec.kind {
                    AdapterKind::Lora => lora::init(store, &module, layer, UNUSED_ENCODER_SITE, in_f, out_f, spec, rng, device),
                    AdapterKind::Svd => adalora::init(store, &module, layer, UNUSED_ENCODER_SITE, in_f, out_f, spec, rng, device),
                };
                list.push(adapter);
            }
        }
        if list.is_empty() {
            return Err(TrainError::Model(
                "llama".into(),
                format!(
                    "target_modules {targets:?} match no layer; Llama has q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
                ),
            ));
        }
        Ok(Self { list, by_site: Vec::new(), dropout: spec.dropout })
    }
}

/// The low-rank update of one adapter for `x [n, in]` (input dropout when training).
fn adapter_delta<B: Backend>(ad: &Adapter, x: &Tensor<B, 2>, params: &[Tensor<B, 2>], p_drop: f64, train: bool) -> Tensor<B, 2> {
    let x = dropout(x.clone(), p_drop, train);
    match ad.kind {
        AdapterKind::Lora => lora::delta(ad, x, params),
        AdapterKind::Svd => adalora::delta(ad, x, params),
    }
}

/// [`AdapterHook`] over a set of decoder adapters: `(layer, site) -> adapter` is rebuilt
/// from the module paths, so it stays right whatever an allocator does to the masks.
pub struct LlamaHook<'a> {
    adapters: &'a Adapters,
    index: Vec<Option<usize>>,
}

/// `(layer, site) -> adapter index`, from the adapters' module paths.
fn site_index(adapters: &Adapters, num_layers: usize) -> Vec<Option<usize>> {
    let mut index = vec![None; num_layers * LlamaSite::ALL.len()];
    for (i, ad) in adapters.list.iter().enumerate() {
        if let Some((layer, site)) = parse_module_path(&ad.module) {
            if layer < num_layers {
                index[layer * LlamaSite::ALL.len() + site.index()] = Some(i);
            }
        }
    }
    index
}

impl<'a> LlamaHook<'a> {
    pub fn new(adapters: &'a Adapters, num_layers: usize) -> Self {
        Self { adapters, index: site_index(adapters, num_layers) }
    }

    /// Number of adapters the hook reaches (all of them for adapters from `build_llama`).
    pub fn reached(&self) -> usize {
        self.index.iter().flatten().count()
    }
}

impl<B: Backend> AdapterHook<B, LlamaSite> for LlamaHook<'_> {
    fn delta(&self, layer: usize, site: LlamaSite, x: &Tensor<B, 2>, params: &[Tensor<B, 2>], train: bool) -> Option<Tensor<B, 2>> {
        let idx = self.index.get(layer * LlamaSite::ALL.len() + site.index()).copied().flatten()?;
        Some(adapter_delta(&self.adapters.list[idx], x, params, self.adapters.dropout, train))
    }
}

/// A [`AdapterHook`] applying [`VariantMasks`]: the batch holds one copy per variant of the
/// adapters' gates, copy `v` gated by `variants[v]` (ablation scoring; no dropout).
pub struct LlamaVariantHook<'a, B: Backend> {
    adapters: &'a Adapters,
    index: Vec<Option<usize>>,
    masks: VariantMasks<B>,
}

impl<'a, B: Backend> LlamaVariantHook<'a, B> {
    pub fn new(adapters: &'a Adapters, num_layers: usize, variants: &[Vec<Vec<bool>>], device: &B::Device) -> Self {
        Self { adapters, index: site_index(adapters, num_layers), masks: VariantMasks::new(adapters, variants, device) }
    }
}

impl<B: Backend> AdapterHook<B, LlamaSite> for LlamaVariantHook<'_, B> {
    fn delta(&self, layer: usize, site: LlamaSite, x: &Tensor<B, 2>, params: &[Tensor<B, 2>], _train: bool) -> Option<Tensor<B, 2>> {
        let idx = self.index.get(layer * LlamaSite::ALL.len() + site.index()).copied().flatten()?;
        Some(variant_delta(&self.adapters.list[idx], x.clone(), params, &self.masks.gates[idx]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_round_trip() {
        for site in LlamaSite::ALL {
            assert_eq!(parse_module_path(&module_path(17, site)), Some((17, site)));
        }
        assert_eq!(parse_module_path("model.layers.x.self_attn.q_proj"), None);
        assert_eq!(parse_module_path("bert.encoder.layer.0.attention.self.query"), None);
    }
}
