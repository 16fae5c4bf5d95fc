//! Trainable parameters (adapters and head) and the AdamW optimizer over them.
//!
//! Values live on the inner (non-autodiff) backend. Every step wraps them into fresh
//! tracked leaves ([`ParamStore::live`]); the frozen backbone never appears here, so it
//! gets neither gradients nor optimizer state.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::model::weights::HostTensor;

/// One named 2-D parameter (biases are stored as `[1, n]`).
#[derive(Clone)]
pub struct Param<B: Backend> {
    pub name: String,
    pub value: Tensor<B, 2>,
    /// False for a frozen head part (e.g. the pooler when `train_pooler` is off).
    pub trainable: bool,
    /// Whether AdamW's weight decay applies (not for biases).
    pub decay: bool,
}

#[derive(Clone, Default)]
pub struct ParamStore<B: Backend> {
    pub params: Vec<Param<B>>,
}

impl<B: Backend> ParamStore<B> {
    pub fn new() -> Self {
        Self { params: Vec::new() }
    }

    pub fn push(&mut self, name: impl Into<String>, value: Tensor<B, 2>, trainable: bool, decay: bool) -> usize {
        self.params.push(Param { name: name.into(), value, trainable, decay });
        self.params.len() - 1
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// Tracked leaves for a training step (frozen entries stay constants).
    pub fn live<AD: AutodiffBackend<InnerBackend = B>>(&self) -> Vec<Tensor<AD, 2>> {
        self.params
            .iter()
            .map(|p| {
                let t = Tensor::<AD, 2>::from_inner(p.value.clone());
                if p.trainable {
                    t.require_grad()
                } else {
                    t
                }
            })
            .collect()
    }

    /// Untracked constants, for evaluation.
    pub fn constants<AD: AutodiffBackend<InnerBackend = B>>(&self) -> Vec<Tensor<AD, 2>> {
        self.params.iter().map(|p| Tensor::<AD, 2>::from_inner(p.value.clone())).collect()
    }

    /// The values as they are (for a forward pass on this store's own backend).
    pub fn values(&self) -> Vec<Tensor<B, 2>> {
        self.params.iter().map(|p| p.value.clone()).collect()
    }

    /// Number of trainable scalars.
    pub fn trainable_count(&self) -> usize {
        self.params.iter().filter(|p| p.trainable).map(|p| p.value.dims().iter().product::<usize>()).sum()
    }

    pub fn host(&self, i: usize) -> HostTensor {
        HostTensor::from_tensor(&self.params[i].value)
    }
}

/// Gradients of the trainable entries after `backward` (None for frozen ones).
pub fn collect_grads<AD: AutodiffBackend>(live: &[Tensor<AD, 2>], grads: &AD::Gradients) -> Vec<Option<Tensor<AD::InnerBackend, 2>>> {
    live.iter().map(|t| if t.is_require_grad() { t.grad(grads) } else { None }).collect()
}

/// Global L2 norm of all gradients.
pub fn grad_norm<B: Backend>(grads: &[Option<Tensor<B, 2>>]) -> f64 {
    let mut total = 0f64;
    for g in grads.iter().flatten() {
        total += g.clone().square().sum().into_scalar().to_f64_lossy();
    }
    total.sqrt()
}

/// Scales gradients so their global norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when that is below 1).
pub fn clip_grads<B: Backend>(grads: &mut [Option<Tensor<B, 2>>], max_norm: f64) -> f64 {
    let norm = grad_norm(grads);
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for g in grads.iter_mut().flatten() {
                *g = g.clone() * coef;
            }
        }
    }
    norm
}

trait ToF64Lossy {
    fn to_f64_lossy(self) -> f64;
}

impl<E: burn::tensor::ElementConversion> ToF64Lossy for E {
    fn to_f64_lossy(self) -> f64 {
        self.elem::<f64>()
    }
}

/// AdamW with decoupled weight decay, as `torch.optim.AdamW`.
#[derive(Clone)]
pub struct AdamW<B: Backend> {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Steps taken (for bias correction).
    pub t: u64,
    pub m: Vec<Option<Tensor<B, 2>>>,
    pub v: Vec<Option<Tensor<B, 2>>>,
}

impl<B: Backend> AdamW<B> {
    pub fn new(n_params: usize, weight_decay: f64) -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, t: 0, m: vec![None; n_params], v: vec![None; n_params] }
    }

    /// One update. `keep[i]`, when given, is a 0/1 tensor broadcastable to parameter `i`:
    /// entries with 0 are left exactly as they are (pruned adapter components).
    pub fn step(&mut self, store: &mut ParamStore<B>, grads: &[Option<Tensor<B, 2>>], keep: &[Option<Tensor<B, 2>>], lr: f64) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        for (i, p) in store.params.iter_mut().enumerate() {
            let Some(g) = grads.get(i).and_then(Option::as_ref) else { continue };
            if !p.trainable {
                continue;
            }
            let m = match self.m[i].take() {
                Some(m) => m * self.beta1 + g.clone() * (1.0 - self.beta1),
                None => g.clone() * (1.0 - self.beta1),
            };
            let v = match self.v[i].take() {
                Some(v) => v * self.beta2 + g.clone().square() * (1.0 - self.beta2),
                None => g.clone().square() * (1.0 - self.beta2),
            };
            let mut delta = (m.clone() / bc1) / ((v.clone() / bc2).sqrt() + self.eps) * lr;
            if p.decay && self.weight_decay > 0.0 {
                delta = delta + p.value.clone() * (lr * self.weight_decay);
            }
            if let Some(k) = keep.get(i).and_then(Option::as_ref) {
                delta = delta * k.clone();
            }
            p.value = p.value.clone() - delta;
            self.m[i] = Some(m);
            self.v[i] = Some(v);
        }
    }
}
