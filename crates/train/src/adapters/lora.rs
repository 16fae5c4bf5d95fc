//! Plain LoRA: `h = W0 x + (alpha/r) B A x`, A `[r, in]` Kaiming-uniform (PEFT's
//! `kaiming_uniform_(a=sqrt(5))`, i.e. U(-1/sqrt(in), 1/sqrt(in))), B `[out, r]` zero.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rand::rngs::StdRng;
use rand::Rng;

use super::{Adapter, AdapterKind, AdapterSpec};
use crate::model::bert::Site;
use crate::model::weights::HostTensor;
use crate::params::ParamStore;

#[allow(clippy::too_many_arguments)]
pub fn init<B: Backend>(
    store: &mut ParamStore<B>,
    module: &str,
    layer: usize,
    site: Site,
    in_f: usize,
    out_f: usize,
    spec: AdapterSpec,
    rng: &mut StdRng,
    device: &B::Device,
) -> Adapter {
    let r = spec.rank;
    let bound = 1.0 / (in_f as f64).sqrt();
    let a_data: Vec<f32> = (0..r * in_f).map(|_| rng.random_range(-bound..bound) as f32).collect();
    let a = store.push(format!("{module}.lora_A"), HostTensor::new(vec![r, in_f], a_data).to_tensor(device), true, true);
    let b = store.push(format!("{module}.lora_B"), Tensor::zeros([out_f, r], device), true, true);
    Adapter {
        module: module.to_string(),
        layer,
        site,
        in_features: in_f,
        out_features: out_f,
        rank: r,
        kind: AdapterKind::Lora,
        a,
        b,
        e: None,
        scale: spec.alpha / r as f64,
        mask: vec![true; r],
        masking: Default::default(),
    }
}

/// `(alpha/r) * ((x A^T) ⊙ g) B^T` for `x [n, in]` (dropout already applied), with the 0/1
/// gates g = the adapter's mask (ALoRA's gates; all ones for plain LoRA).
pub fn delta<B: Backend>(ad: &Adapter, x: Tensor<B, 2>, params: &[Tensor<B, 2>]) -> Tensor<B, 2> {
    let mut h = x.matmul(params[ad.a].clone().transpose());
    if ad.mask.iter().any(|m| !m) {
        h = h * ad.mask_column::<B>(&params[ad.a].device()).reshape([1, ad.rank]);
    }
    h.matmul(params[ad.b].clone().transpose()) * ad.scale
}
