//! The SVD-like triple of AdaLoRA (and the other adaptive methods):
//! `h = W0 x + alpha/(r_init + 1e-5) * P diag(e ⊙ m) Q x` with Q = `lora_A` `[r, in]`,
//! e = `lora_E` `[r, 1]` (init 0), P = `lora_B` `[out, r]`; P and Q ~ N(0, 0.02) as PEFT.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rand::rngs::StdRng;
use rand::Rng;

use super::{Adapter, AdapterKind, AdapterSpec, Adapters, Masking};
use crate::model::bert::Site;
use crate::model::weights::HostTensor;
use crate::params::ParamStore;

/// Standard deviation of PEFT's `normal_` init of `lora_A`/`lora_B`.
pub const INIT_STD: f64 = 0.02;

/// One N(0, std) sample (Box-Muller).
pub fn normal(rng: &mut StdRng, std: f64) -> f32 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
}

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
    let q: Vec<f32> = (0..r * in_f).map(|_| normal(rng, INIT_STD)).collect();
    let p: Vec<f32> = (0..out_f * r).map(|_| normal(rng, INIT_STD)).collect();
    let a = store.push(format!("{module}.lora_A"), HostTensor::new(vec![r, in_f], q).to_tensor(device), true, true);
    let e = store.push(format!("{module}.lora_E"), Tensor::zeros([r, 1], device), true, true);
    let b = store.push(format!("{module}.lora_B"), HostTensor::new(vec![out_f, r], p).to_tensor(device), true, true);
    Adapter {
        module: module.to_string(),
        layer,
        site,
        in_features: in_f,
        out_features: out_f,
        rank: r,
        kind: AdapterKind::Svd,
        a,
        b,
        e: Some(e),
        scale: spec.alpha / (r as f64 + 1e-5),
        mask: vec![true; r],
        masking: Default::default(),
    }
}

/// `scale * x (Q ⊙ (e ⊙ m))^T P^T` for `x [n, in]` (dropout already applied; with
/// [`Masking::ZeroE`] the mask lives in e itself and is not applied again).
pub fn delta<B: Backend>(ad: &Adapter, x: Tensor<B, 2>, params: &[Tensor<B, 2>]) -> Tensor<B, 2> {
    let e_idx = ad.e.expect("the SVD triple has lora_E");
    let q = params[ad.a].clone();
    let mut e = params[e_idx].clone();
    if ad.masking == Masking::Freeze && ad.mask.iter().any(|m| !m) {
        e = e * ad.mask_column::<B>(&q.device());
    }
    x.matmul((q * e).transpose()).matmul(params[ad.b].clone().transpose()) * ad.scale
}

/// PEFT's orthogonal regularizer: the mean over every P and Q of `||P^T P - I||_F` and
/// `||Q Q^T - I||_F` (all components, live or not).
pub fn orthogonal_regularizer<B: Backend>(adapters: &Adapters, params: &[Tensor<B, 2>]) -> Option<Tensor<B, 1>> {
    let mut total: Option<Tensor<B, 1>> = None;
    let mut n = 0usize;
    for ad in adapters.list.iter().filter(|a| a.kind == AdapterKind::Svd) {
        let q = params[ad.a].clone();
        let p = params[ad.b].clone();
        let device = q.device();
        let qq = q.clone().matmul(q.transpose());
        let pp = p.clone().transpose().matmul(p);
        for cov in [qq, pp] {
            let eye = Tensor::<B, 2>::eye(ad.rank, &device);
            let fro = (cov - eye).square().sum().sqrt();
            total = Some(match total {
                Some(t) => t + fro,
                None => fro,
            });
            n += 1;
        }
    }
    total.map(|t| t / n as f64)
}
