//! Trainable parameters (adapters and head) and the AdamW optimizer over them.
//!
//! Values live on the inner (non-autodiff) backend. Every step wraps them into fresh
//! tracked leaves ([`ParamStore::live`]); the frozen backbone never appears here, so it
//! gets neither gradients nor optimizer state.

use std::ops::{Index, IndexMut};

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::model::weights::HostTensor;

/// A parameter's place in its [`ParamStore`]. Every per-step list of the store's tensors
/// ([`ParamStore::live`], [`ParamStore::constants`], [`ParamStore::values`], gradients,
/// optimizer state) follows the store's order, so a `ParamId` indexes those slices too;
/// unlike a bare `usize` it cannot be confused with a rank, a layer or a component index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParamId(usize);

impl ParamId {
    /// The position in the store's order.
    pub fn index(self) -> usize {
        self.0
    }

    /// The id at a position, for reading state saved by position (checkpoints).
    pub fn from_index(index: usize) -> ParamId {
        ParamId(index)
    }

    /// Every id of a store with `n` parameters, in order.
    pub fn all(n: usize) -> impl Iterator<Item = ParamId> {
        (0..n).map(ParamId)
    }
}

impl std::fmt::Display for ParamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "param#{}", self.0)
    }
}

impl<T> Index<ParamId> for [T] {
    type Output = T;
    fn index(&self, id: ParamId) -> &T {
        &self[id.0]
    }
}

impl<T> IndexMut<ParamId> for [T] {
    fn index_mut(&mut self, id: ParamId) -> &mut T {
        &mut self[id.0]
    }
}

impl<T> Index<ParamId> for Vec<T> {
    type Output = T;
    fn index(&self, id: ParamId) -> &T {
        &self[id.0]
    }
}

impl<T> IndexMut<ParamId> for Vec<T> {
    fn index_mut(&mut self, id: ParamId) -> &mut T {
        &mut self[id.0]
    }
}

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

    pub fn push(&mut self, name: impl Into<String>, value: Tensor<B, 2>, trainable: bool, decay: bool) -> ParamId {
        self.params.push(Param { name: name.into(), value, trainable, decay });
        ParamId(self.params.len() - 1)
    }

    pub fn index(&self, name: &str) -> Option<ParamId> {
        self.params.iter().position(|p| p.name == name).map(ParamId)
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

    pub fn host(&self, id: ParamId) -> HostTensor {
        HostTensor::from_tensor(&self.params[id].value)
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

/// Step counts per component of one parameter whose components are its rows (`lora_A`,
/// `lora_E`: `[r, n]`) or its columns (`lora_B`: `[n, r]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentSteps {
    pub along_rows: bool,
    pub t: Vec<u64>,
}

impl ComponentSteps {
    /// `1 - beta^t` per component, shaped to broadcast over the parameter.
    fn bias_correction<B: Backend>(&self, beta: f64, device: &B::Device) -> Tensor<B, 2> {
        let c: Vec<f32> = self.t.iter().map(|&t| (1.0 - beta.powi(t.min(i32::MAX as u64) as i32)) as f32).collect();
        let shape = if self.along_rows { [c.len(), 1] } else { [1, c.len()] };
        Tensor::from_data(TensorData::new(c, shape), device)
    }
}

/// AdamW with decoupled weight decay, as `torch.optim.AdamW`.
///
/// Bias correction uses the number of updates an entry has had. That is the global step
/// count `t` for every parameter, except for adapters that were resized (ALoRA's
/// reallocation, RoLoRA's EXTEND): their components carry their own counts, and a new
/// component starts at 0 with zero moments, exactly as a freshly added parameter does in
/// PyTorch. (With the global count, a component added at step 100 would divide its young
/// second moment by `1 - 0.999^100` instead of `1 - 0.999^k`, and its first updates would be
/// several times the learning rate.)
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
    /// Per parameter, per-component step counts once its components have been resized.
    pub component_steps: Vec<Option<ComponentSteps>>,
}

impl<B: Backend> AdamW<B> {
    pub fn new(n_params: usize, weight_decay: f64) -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            t: 0,
            m: vec![None; n_params],
            v: vec![None; n_params],
            component_steps: vec![None; n_params],
        }
    }

    /// Re-selects parameter `i`'s component step counts as a resize re-selects its
    /// components: `keep` (old indices, in order), then `grow` new components at 0.
    pub fn resize_components(&mut self, i: ParamId, along_rows: bool, old_rank: usize, keep: &[usize], grow: usize) {
        let old = self.component_steps[i].take().map(|c| c.t).unwrap_or_else(|| vec![self.t; old_rank]);
        let t = keep.iter().map(|&k| old.get(k).copied().unwrap_or(0)).chain(std::iter::repeat_n(0, grow)).collect();
        self.component_steps[i] = Some(ComponentSteps { along_rows, t });
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
            let device = g.device();
            let (c1, c2) = match self.component_steps[i].as_mut() {
                Some(cs) => {
                    cs.t.iter_mut().for_each(|t| *t += 1);
                    (Some(cs.bias_correction::<B>(self.beta1, &device)), Some(cs.bias_correction::<B>(self.beta2, &device)))
                }
                None => (None, None),
            };
            let m = match self.m[i].take() {
                Some(m) => m * self.beta1 + g.clone() * (1.0 - self.beta1),
                None => g.clone() * (1.0 - self.beta1),
            };
            let v = match self.v[i].take() {
                Some(v) => v * self.beta2 + g.clone().square() * (1.0 - self.beta2),
                None => g.clone().square() * (1.0 - self.beta2),
            };
            let m_hat = match c1 {
                Some(c) => m.clone() / c,
                None => m.clone() / bc1,
            };
            let v_hat = match c2 {
                Some(c) => v.clone() / c,
                None => v.clone() / bc2,
            };
            let mut delta = m_hat / (v_hat.sqrt() + self.eps) * lr;
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::adapters::AdapterKind;
    use crate::allocator::testing::{toy, T};

    /// Gradient `row + 1` on every entry of row `row` of each `[r, n]` parameter (columns of
    /// `lora_B`), the same at every step.
    fn grads(store: &ParamStore<T>) -> Vec<Option<Tensor<T, 2>>> {
        store
            .params
            .iter()
            .map(|p| {
                let [r, c] = p.value.dims();
                let data: Vec<f32> =
                    (0..r * c).map(|i| if p.name.ends_with("lora_B") { (i % c + 1) as f32 } else { (i / c + 1) as f32 }).collect();
                Some(Tensor::from_data(TensorData::new(data, [r, c]), &p.value.device()))
            })
            .collect()
    }

    #[test]
    fn a_component_added_late_takes_adam_steps_of_its_own_and_kept_moments_move_with_theirs() {
        let (mut adapters, mut store, mut adam) = toy(1, 2, AdapterKind::Lora, 3);
        let a = adapters.list[0].a;
        let lr = 1e-3;
        for _ in 0..100 {
            let g = grads(&store);
            adam.step(&mut store, &g, &[], lr);
        }
        let m_before = HostTensor::from_tensor(adam.m[a].as_ref().unwrap());
        // Keep component 1 only, add one: the kept moments are component 1's (non-zero).
        let mut g = grads(&store);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        adapters.resize(0, &[1], 1, &mut store, &mut adam, &mut g, &mut rng);
        let m_after = HostTensor::from_tensor(adam.m[a].as_ref().unwrap());
        let n = m_before.shape[1];
        assert!(m_before.data[n..2 * n].iter().all(|&x| x > 1.0), "component 1's moment is real: {:?}", &m_before.data[n..2 * n]);
        assert_eq!(&m_after.data[..n], &m_before.data[n..2 * n]);
        assert!(m_after.data[n..].iter().all(|&x| x == 0.0));
        assert_eq!(adam.component_steps[a].as_ref().map(|c| c.t.clone()), Some(vec![100, 0]));

        // Ten more steps of gradient 2 everywhere (what component 1 always had): Adam's
        // bias-corrected update is then exactly lr for every entry counted by its own steps.
        // With the shared count the new component's tenth update would be ~2.1 lr
        // (m_hat = (1-0.9^10) g, v_hat = (1-0.999^10) g^2 / (1-0.999^110)).
        let twos =
            |store: &ParamStore<T>| -> Vec<Option<Tensor<T, 2>>> { store.params.iter().map(|p| Some(p.value.ones_like() * 2.0)).collect() };
        for _ in 0..9 {
            let g = twos(&store);
            adam.step(&mut store, &g, &[], lr);
        }
        let before = HostTensor::from_tensor(&store.params[a].value);
        let g = twos(&store);
        adam.step(&mut store, &g, &[], lr);
        let after = HostTensor::from_tensor(&store.params[a].value);
        for (i, (x, y)) in before.data.iter().zip(&after.data).enumerate() {
            let step = (x - y) as f64;
            assert!((step - lr).abs() < 1e-6, "entry {i} (component {}): update {step} instead of lr {lr}", i / n);
        }
        assert_eq!(adam.component_steps[a].as_ref().map(|c| c.t.clone()), Some(vec![110, 10]));
    }
}
