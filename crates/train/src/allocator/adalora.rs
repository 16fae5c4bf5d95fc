//! AdaLoRA's allocator (METHODS.md section 2; PEFT `tuners/adalora/model.py`): sensitivity
//! EMAs times uncertainty, cubic budget schedule, global masking. Its [`Importance`] and
//! masking are also RoLoRA's SPARSIFY step.

use std::collections::HashMap;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rankfit_domain::run::AdaLoraConfig;
use serde::{Deserialize, Serialize};

use super::{AllocContext, AllocatorState, RankAllocator};
use crate::adapters::{AdapterKind, Adapters, Masking};
use crate::model::weights::HostTensor;
use crate::params::{ParamId, ParamStore};
use crate::TrainError;

/// AdaLoRA's cubic budget schedule with every step field resolved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdaLoraSchedule {
    pub total_step: u64,
    pub tinit: u64,
    pub tfinal: u64,
    pub delta_t: u64,
    /// b0 = r_init * K.
    pub init_budget: u64,
    /// bT = r_target * K.
    pub target_budget: u64,
}

impl AdaLoraSchedule {
    /// Resolves the config's optional fields from T: t_init = 10% T, t_final = 20% T,
    /// delta_t = max(1, 1% T) (floors), and checks T - t_final > t_init.
    pub fn resolve(cfg: &AdaLoraConfig, total_step: u64, init_r: u64, target_r: u64, modules: u64) -> Result<Self, TrainError> {
        let s = Self {
            total_step,
            tinit: cfg.tinit.unwrap_or(total_step / 10),
            tfinal: cfg.tfinal.unwrap_or(total_step / 5),
            delta_t: cfg.delta_t.unwrap_or((total_step / 100).max(1)).max(1),
            init_budget: init_r * modules,
            target_budget: target_r * modules,
        };
        if s.tinit + s.tfinal >= total_step {
            return Err(TrainError::Data(format!(
                "AdaLoRA needs tinit + tfinal < total steps (tinit {}, tfinal {}, total {total_step}); train longer or lower them",
                s.tinit, s.tfinal
            )));
        }
        Ok(s)
    }

    /// PEFT's `budget_schedule`: `(b(t), whether to mask at t)`.
    pub fn at(&self, step: u64) -> (u64, bool) {
        if step <= self.tinit {
            (self.init_budget, false)
        } else if step > self.total_step - self.tfinal {
            (self.target_budget, true)
        } else {
            let span = (self.total_step - self.tfinal - self.tinit) as f64;
            let mul = 1.0 - (step - self.tinit) as f64 / span;
            let b = ((self.init_budget - self.target_budget) as f64 * mul.powi(3) + self.target_budget as f64) as u64;
            (b, step.is_multiple_of(self.delta_t))
        }
    }

    /// The step at which the final allocation happens (T - t_final).
    pub fn final_step(&self) -> u64 {
        self.total_step - self.tfinal
    }
}

/// Sensitivity/uncertainty EMAs of one parameter.
struct Ema<B: Backend> {
    ipt: Tensor<B, 2>,
    unc: Tensor<B, 2>,
}

/// AdaLoRA's importance of every SVD-triple component: per parameter entry
/// `Ibar = b1 Ibar + (1-b1) |w g|`, `U = b2 U + (1-b2) |I - Ibar|`, `s = Ibar * U`, and per
/// component `S_{k,i} = s(e_i) + mean_j s(Q_ij) + mean_j s(P_ji)`.
pub struct Importance<B: Backend> {
    pub beta1: f64,
    pub beta2: f64,
    /// Per parameter index (A, E, B of every triple).
    ema: HashMap<ParamId, Ema<B>>,
}

impl<B: Backend> Importance<B> {
    pub fn new(beta1: f64, beta2: f64) -> Self {
        Self { beta1, beta2, ema: HashMap::new() }
    }

    pub fn clear(&mut self) {
        self.ema.clear();
    }

    pub fn update(&mut self, adapters: &Adapters, store: &ParamStore<B>, grads: &[Option<Tensor<B, 2>>]) {
        for ad in adapters.list.iter().filter(|a| a.kind == AdapterKind::Svd) {
            for idx in [Some(ad.a), ad.e, Some(ad.b)].into_iter().flatten() {
                let Some(g) = grads.get(idx.index()).and_then(Option::as_ref) else { continue };
                let ipt = (store.params[idx].value.clone() * g.clone()).abs();
                let (b1, b2) = (self.beta1, self.beta2);
                let next = match self.ema.remove(&idx) {
                    Some(Ema { ipt: avg, unc }) if avg.dims() == ipt.dims() => {
                        let avg = avg * b1 + ipt.clone() * (1.0 - b1);
                        let unc = unc * b2 + (ipt - avg.clone()).abs() * (1.0 - b2);
                        Ema { ipt: avg, unc }
                    }
                    _ => {
                        let avg = ipt.clone() * (1.0 - b1);
                        let unc = (ipt - avg.clone()).abs() * (1.0 - b2);
                        Ema { ipt: avg, unc }
                    }
                };
                self.ema.insert(idx, next);
            }
        }
    }

    /// Component scores per adapter, host-side (`+inf` for non-triple adapters).
    pub fn scores(&self, adapters: &Adapters) -> Vec<Vec<f32>> {
        let score = |idx: ParamId| self.ema.get(&idx).map(|e| e.ipt.clone() * e.unc.clone());
        adapters
            .list
            .iter()
            .map(|ad| {
                if ad.kind != AdapterKind::Svd {
                    return vec![f32::INFINITY; ad.rank];
                }
                let mut total = vec![0f32; ad.rank];
                let mut add = |t: Option<Tensor<B, 2>>| {
                    if let Some(t) = t {
                        for (s, v) in total.iter_mut().zip(HostTensor::from_tensor(&t).data) {
                            *s += v;
                        }
                    }
                };
                add(ad.e.and_then(score));
                add(score(ad.a).map(|s| s.mean_dim(1)));
                add(score(ad.b).map(|s| s.mean_dim(0)));
                total
            })
            .collect()
    }

    pub fn state(&self) -> Vec<(String, HostTensor)> {
        let mut tensors = Vec::new();
        let mut keys: Vec<_> = self.ema.keys().copied().collect();
        keys.sort_unstable();
        for k in keys {
            let e = &self.ema[&k];
            tensors.push((format!("ipt.{}", k.index()), HostTensor::from_tensor(&e.ipt)));
            tensors.push((format!("unc.{}", k.index()), HostTensor::from_tensor(&e.unc)));
        }
        tensors
    }

    pub fn restore(&mut self, tensors: Vec<(String, HostTensor)>, device: &B::Device) -> Result<(), TrainError> {
        let mut ipts = HashMap::new();
        let mut uncs = HashMap::new();
        for (name, t) in tensors {
            let bad = || TrainError::Checkpoint(format!("bad allocator tensor {name}"));
            let (kind, idx) = name.split_once('.').ok_or_else(bad)?;
            let idx = ParamId::from_index(idx.parse().map_err(|_| bad())?);
            match kind {
                "ipt" => ipts.insert(idx, t.to_tensor::<B, 2>(device)),
                "unc" => uncs.insert(idx, t.to_tensor::<B, 2>(device)),
                _ => return Err(bad()),
            };
        }
        self.ema = ipts.into_iter().filter_map(|(k, ipt)| uncs.remove(&k).map(|unc| (k, Ema { ipt, unc }))).collect();
        Ok(())
    }
}

/// Masks every component whose score is at or below the k-th smallest score (k >= 1;
/// k = 0 masks nothing) and zeroes its `lora_E`; unmasks the rest. Returns whether a mask
/// changed.
pub fn mask_at_threshold<B: Backend>(scores: &[Vec<f32>], k: usize, adapters: &mut Adapters, store: &mut ParamStore<B>) -> bool {
    let mut all: Vec<f32> = scores.iter().flatten().copied().collect();
    let threshold = if k == 0 || all.is_empty() {
        f32::NEG_INFINITY
    } else {
        let k = k.min(all.len());
        *all.select_nth_unstable_by(k - 1, f32::total_cmp).1
    };
    let mut changed = false;
    for (ad, s) in adapters.list.iter_mut().zip(scores) {
        let mask: Vec<bool> = s.iter().map(|&v| v > threshold).collect();
        if ad.mask != mask {
            changed = true;
            ad.mask = mask;
        }
    }
    adapters.zero_masked_e(store);
    changed
}

/// AdaLoRA's RankAllocator (PEFT `tuners/adalora/model.py`), METHODS.md section 2.
pub struct AdaLoraAllocator<B: Backend> {
    pub schedule: AdaLoraSchedule,
    orth_reg_weight: f64,
    budget: u64,
    importance: Importance<B>,
}

impl<B: Backend> AdaLoraAllocator<B> {
    pub fn new(cfg: &AdaLoraConfig, schedule: AdaLoraSchedule) -> Self {
        Self {
            schedule,
            orth_reg_weight: cfg.orth_reg_weight,
            budget: schedule.init_budget,
            importance: Importance::new(cfg.beta1, cfg.beta2),
        }
    }

    /// PEFT's `mask_to_budget`: with k = b0 - budget, the threshold is the k-th smallest
    /// score over all components (`torch.kthvalue`), and every component scoring at or below
    /// it is masked (so ties mask more than k) and its `lora_E` zeroed. Recomputed from all
    /// components each time: a component masked before comes back when its score rose.
    fn mask_to_budget(&mut self, budget: u64, adapters: &mut Adapters, store: &mut ParamStore<B>) -> bool {
        let scores = self.importance.scores(adapters);
        let k = self.schedule.init_budget.saturating_sub(budget) as usize;
        self.budget = budget;
        mask_at_threshold(&scores, k, adapters, store)
    }
}

impl<B: Backend> RankAllocator<B> for AdaLoraAllocator<B> {
    fn allocate(&mut self, ctx: &mut AllocContext<'_, B>) -> Result<bool, TrainError> {
        let step = ctx.step;
        let final_step = self.schedule.final_step();
        Ok(if step < final_step {
            self.importance.update(ctx.adapters, ctx.store, ctx.grads);
            let (budget, mask_now) = self.schedule.at(step);
            mask_now && self.mask_to_budget(budget, ctx.adapters, ctx.store)
        } else if step == final_step {
            let (budget, _) = self.schedule.at(step);
            let changed = self.mask_to_budget(budget, ctx.adapters, ctx.store);
            self.importance.clear();
            changed
        } else {
            // Final phase: the rank pattern is fixed; masked e are zeroed after every step
            // (PEFT's `mask_using_rank_pattern`).
            ctx.adapters.zero_masked_e(ctx.store);
            false
        })
    }

    fn budget(&self) -> u64 {
        self.budget
    }

    fn masking(&self) -> Masking {
        Masking::ZeroE
    }

    fn scheduled_budget(&self, step: u64) -> u64 {
        self.schedule.at(step).0
    }

    fn is_final(&self, step: u64) -> bool {
        step >= self.schedule.final_step()
    }

    fn orth_reg_weight(&self) -> f64 {
        self.orth_reg_weight
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "schedule": self.schedule, "orth_reg_weight": self.orth_reg_weight,
                            "beta1": self.importance.beta1, "beta2": self.importance.beta2 })
    }

    fn state(&self) -> AllocatorState {
        AllocatorState { json: serde_json::json!({ "budget": self.budget, "schedule": self.schedule }), tensors: self.importance.state() }
    }

    fn restore(&mut self, state: AllocatorState, device: &B::Device) -> Result<(), TrainError> {
        self.budget =
            state.json.get("budget").and_then(|v| v.as_u64()).ok_or_else(|| TrainError::Checkpoint("allocator budget missing".into()))?;
        self.importance.restore(state.tensors, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::super::testing::{toy, T};
    use super::*;

    fn t(data: Vec<f32>, shape: [usize; 2]) -> Tensor<T, 2> {
        Tensor::from_data(TensorData::new(data, shape), &Default::default())
    }

    #[test]
    fn sensitivity_emas_and_component_scores_by_hand() {
        // One triple of rank 2 on a [6 -> 5] layer: Q = 1, e = [2, 3], P = 0.5; gradients
        // 0.1 on Q, [1, -1] on e, 0.2 on P. |w g| is 0.1 on every Q and P entry and [2, 3] on e.
        let (adapters, mut store, _) = toy(1, 2, AdapterKind::Svd, 1);
        let ad = adapters.list[0].clone();
        let e = ad.e.unwrap();
        store.params[ad.a].value = t(vec![1.0; 12], [2, 6]);
        store.params[e].value = t(vec![2.0, 3.0], [2, 1]);
        store.params[ad.b].value = t(vec![0.5; 10], [5, 2]);
        let mut grads = vec![None; store.params.len()];
        grads[ad.a] = Some(t(vec![0.1; 12], [2, 6]));
        grads[e] = Some(t(vec![1.0, -1.0], [2, 1]));
        grads[ad.b] = Some(t(vec![0.2; 10], [5, 2]));
        let mut imp = Importance::<T>::new(0.85, 0.85);
        imp.update(&adapters, &store, &grads);
        imp.update(&adapters, &store, &grads);
        // Twice with the same I: Ibar = (0.15 * 0.85 + 0.15) I = 0.2775 I and
        // U = 0.85 * (0.15 * 0.85 I) + 0.15 |I - 0.2775 I| = 0.21675 I, so s = 0.060148125 I^2.
        // S_k = s(e_k) + mean_j s(Q_kj) + mean_j s(P_jk) = 0.060148125 (e_k^2 + 0.01 + 0.01).
        let got = imp.scores(&adapters);
        let want = [0.060148125 * 4.02, 0.060148125 * 9.02];
        for (g, w) in got[0].iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6 * w, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn masking_at_the_kth_score_masks_ties_too_and_zeroes_e() {
        let (mut adapters, mut store, _) = toy(2, 3, AdapterKind::Svd, 2);
        for ad in &adapters.list {
            store.params[ad.e.unwrap()].value = t(vec![1.0, 2.0, 3.0], [3, 1]);
        }
        // k = 2: the 2nd smallest score is 0.2, and both components scoring 0.2 go with the 0.1.
        let scores = vec![vec![0.5, 0.2, 0.9], vec![0.1, 0.2, 0.7]];
        assert!(mask_at_threshold(&scores, 2, &mut adapters, &mut store));
        assert_eq!(adapters.list[0].mask, vec![true, false, true]);
        assert_eq!(adapters.list[1].mask, vec![false, false, true]);
        assert_eq!(HostTensor::from_tensor(&store.params[adapters.list[1].e.unwrap()].value).data, vec![0.0, 0.0, 3.0]);
        // Inverting the order masks the other end: the scores' direction matters.
        let inverted: Vec<Vec<f32>> = scores.iter().map(|s| s.iter().map(|v| -v).collect()).collect();
        mask_at_threshold(&inverted, 2, &mut adapters, &mut store);
        assert_eq!(adapters.list[0].mask, vec![true, true, false]);
        assert_eq!(adapters.list[1].mask, vec![true, true, false]);
        // Recomputed from all components: what was masked comes back. k = 0 masks nothing.
        assert!(mask_at_threshold(&scores, 0, &mut adapters, &mut store));
        assert!(adapters.list.iter().all(|a| a.mask.iter().all(|m| *m)));
    }

    #[test]
    fn schedule_is_cubic_and_ends_at_target() {
        let cfg = AdaLoraConfig::default();
        let s = AdaLoraSchedule::resolve(&cfg, 100, 12, 8, 10).unwrap();
        assert_eq!((s.tinit, s.tfinal, s.delta_t), (10, 20, 1));
        assert_eq!(s.at(10), (120, false));
        assert_eq!(s.at(80).0, 80);
        assert_eq!(s.at(81), (80, true));
        let mut prev = u64::MAX;
        for t in 0..=100 {
            let b = s.at(t).0;
            assert!(b <= prev && (80..=120).contains(&b), "step {t}: {b}");
            prev = b;
        }
        assert!(AdaLoraSchedule::resolve(&AdaLoraConfig { tinit: Some(60), tfinal: Some(40), ..cfg }, 100, 12, 8, 10).is_err());
    }
}
