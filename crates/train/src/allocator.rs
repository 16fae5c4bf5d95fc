//! Rank allocators: who decides which adapter components stay live.
//!
//! The training loop calls [`RankAllocator::after_backward`] once per step, after the
//! backward pass and before gradient clipping and the optimizer step, with the raw
//! gradients. An allocator may rewrite the adapters' masks (and zero pruned `lora_E`
//! entries); the loop then freezes pruned components in the optimizer. Each adaptive method
//! (AdaLoRA here; SalientLoRA, ALoRA, RoLoRA later) is one implementation of this trait.

use std::collections::HashMap;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rankfit_domain::rank::RankMap;
use rankfit_domain::run::{AdaLoraConfig, MethodConfig};
use serde::{Deserialize, Serialize};

use crate::adapters::{AdapterKind, Adapters};
use crate::export::ExportMethod;
use crate::model::weights::HostTensor;
use crate::params::ParamStore;
use crate::TrainError;

/// Serializable allocator state for checkpoints (tensors go to safetensors, the rest to JSON).
#[derive(Debug, Clone, Default)]
pub struct AllocatorState {
    pub json: serde_json::Value,
    pub tensors: Vec<(String, HostTensor)>,
}

pub trait RankAllocator<B: Backend> {
    /// Updates importance and, when the schedule says so, the masks. Returns true when
    /// some adapter's mask changed.
    fn after_backward(&mut self, step: u64, adapters: &mut Adapters, store: &mut ParamStore<B>, grads: &[Option<Tensor<B, 2>>]) -> bool;
    /// Total live components allowed by the last allocation (b(t) in force).
    fn budget(&self) -> u64;
    /// The schedule's budget b(t) at `step` (what an allocation at `step` would enforce).
    fn scheduled_budget(&self, step: u64) -> u64;
    /// Whether the rank pattern is final from `step` on (best-checkpoint candidates).
    fn is_final(&self, step: u64) -> bool;
    /// Weight of the orthogonal regularizer (0: none).
    fn orth_reg_weight(&self) -> f64;
    fn state(&self) -> AllocatorState;
    fn restore(&mut self, state: AllocatorState, device: &B::Device) -> Result<(), TrainError>;
}

/// The rank map of `adapters` at `step`.
pub fn rank_map(step: u64, budget: u64, adapters: &Adapters) -> RankMap {
    RankMap { step, budget, modules: adapters.list.iter().map(|a| (a.module.clone(), a.live_rank() as u32)).collect() }
}

/// The allocator of a run's method and how its adapter is exported.
///
/// `total` is the number of training steps, `init_r` the rank adapters start with,
/// `target_r` the run's budget (average rank per module) and `modules` the number of
/// adapted modules. Every training loop (encoder and decoder) selects its allocator here,
/// so a new method is one module plus one arm of this match.
pub fn for_method<B: Backend>(
    method: &MethodConfig,
    total: u64,
    init_r: usize,
    target_r: usize,
    modules: u64,
) -> Result<(Box<dyn RankAllocator<B>>, ExportMethod), TrainError> {
    match method {
        MethodConfig::Lora => Ok((Box::new(FixedRank { budget: init_r as u64 * modules }), ExportMethod::Lora { r: init_r })),
        MethodConfig::AdaLora(ac) => {
            let schedule = AdaLoraSchedule::resolve(ac, total, init_r as u64, target_r as u64, modules)?;
            let export =
                ExportMethod::AdaLora { init_r, target_r, schedule, beta1: ac.beta1, beta2: ac.beta2, orth_reg_weight: ac.orth_reg_weight };
            Ok((Box::new(AdaLoraAllocator::new(ac, schedule)), export))
        }
        other => Err(TrainError::MethodNotAvailable(other.method().display_name().to_string())),
    }
}

/// Plain LoRA: the ranks never change.
pub struct FixedRank {
    pub budget: u64,
}

impl<B: Backend> RankAllocator<B> for FixedRank {
    fn after_backward(&mut self, _: u64, _: &mut Adapters, _: &mut ParamStore<B>, _: &[Option<Tensor<B, 2>>]) -> bool {
        false
    }
    fn budget(&self) -> u64 {
        self.budget
    }
    fn scheduled_budget(&self, _: u64) -> u64 {
        self.budget
    }
    fn is_final(&self, _: u64) -> bool {
        true
    }
    fn orth_reg_weight(&self) -> f64 {
        0.0
    }
    fn state(&self) -> AllocatorState {
        AllocatorState::default()
    }
    fn restore(&mut self, _: AllocatorState, _: &B::Device) -> Result<(), TrainError> {
        Ok(())
    }
}

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

/// AdaLoRA's RankAllocator (PEFT `tuners/adalora/model.py`), METHODS.md section 2.
pub struct AdaLoraAllocator<B: Backend> {
    pub schedule: AdaLoraSchedule,
    beta1: f64,
    beta2: f64,
    orth_reg_weight: f64,
    budget: u64,
    /// Per parameter index (A, E, B of every triple).
    ema: HashMap<usize, Ema<B>>,
}

impl<B: Backend> AdaLoraAllocator<B> {
    pub fn new(cfg: &AdaLoraConfig, schedule: AdaLoraSchedule) -> Self {
        Self {
            schedule,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            orth_reg_weight: cfg.orth_reg_weight,
            budget: schedule.init_budget,
            ema: HashMap::new(),
        }
    }

    /// `Ibar = b1 Ibar + (1-b1) |w g|`, `U = b2 U + (1-b2) |I - Ibar|` for every entry.
    fn update_importance(&mut self, adapters: &Adapters, store: &ParamStore<B>, grads: &[Option<Tensor<B, 2>>]) {
        for ad in adapters.list.iter().filter(|a| a.kind == AdapterKind::Svd) {
            for idx in [Some(ad.a), ad.e, Some(ad.b)].into_iter().flatten() {
                let Some(g) = grads.get(idx).and_then(Option::as_ref) else { continue };
                let ipt = (store.params[idx].value.clone() * g.clone()).abs();
                let (b1, b2) = (self.beta1, self.beta2);
                let next = match self.ema.remove(&idx) {
                    Some(Ema { ipt: avg, unc }) => {
                        let avg = avg * b1 + ipt.clone() * (1.0 - b1);
                        let unc = unc * b2 + (ipt - avg.clone()).abs() * (1.0 - b2);
                        Ema { ipt: avg, unc }
                    }
                    None => {
                        let avg = ipt.clone() * (1.0 - b1);
                        let unc = (ipt - avg.clone()).abs() * (1.0 - b2);
                        Ema { ipt: avg, unc }
                    }
                };
                self.ema.insert(idx, next);
            }
        }
    }

    /// `S_{k,i} = s(e_i) + mean_j s(Q_ij) + mean_j s(P_ji)` for every triple, host-side.
    fn scores(&self, adapters: &Adapters) -> Vec<Vec<f32>> {
        let score = |idx: usize| self.ema.get(&idx).map(|e| e.ipt.clone() * e.unc.clone());
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

    /// Masks the `b0 - budget` lowest-scoring components over all adapters (ties broken by
    /// position, so exactly that many go) and zeroes their `lora_E`.
    fn mask_to_budget(&mut self, budget: u64, adapters: &mut Adapters, store: &mut ParamStore<B>) -> bool {
        let scores = self.scores(adapters);
        let mut all: Vec<(f32, usize, usize)> = Vec::new();
        for (k, s) in scores.iter().enumerate() {
            for (i, v) in s.iter().enumerate() {
                all.push((*v, k, i));
            }
        }
        let n_mask = (self.schedule.init_budget.saturating_sub(budget) as usize).min(all.len());
        all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        let mut new_masks: Vec<Vec<bool>> = adapters.list.iter().map(|a| vec![true; a.rank]).collect();
        for &(_, k, i) in &all[..n_mask] {
            new_masks[k][i] = false;
        }
        let mut changed = false;
        for (ad, mask) in adapters.list.iter_mut().zip(new_masks) {
            if ad.mask != mask {
                changed = true;
                ad.mask = mask;
            }
            if let Some(e) = ad.e {
                if ad.mask.iter().any(|m| !m) {
                    let device = store.params[e].value.device();
                    store.params[e].value = store.params[e].value.clone() * ad.mask_column::<B>(&device);
                }
            }
        }
        self.budget = budget;
        changed
    }
}

impl<B: Backend> RankAllocator<B> for AdaLoraAllocator<B> {
    fn after_backward(&mut self, step: u64, adapters: &mut Adapters, store: &mut ParamStore<B>, grads: &[Option<Tensor<B, 2>>]) -> bool {
        let final_step = self.schedule.final_step();
        if step < final_step {
            self.update_importance(adapters, store, grads);
            let (budget, mask_now) = self.schedule.at(step);
            if mask_now {
                return self.mask_to_budget(budget, adapters, store);
            }
            false
        } else if step == final_step {
            let (budget, _) = self.schedule.at(step);
            let changed = self.mask_to_budget(budget, adapters, store);
            self.ema.clear();
            changed
        } else {
            // Final phase: the mask is frozen (pruned components get no updates).
            false
        }
    }

    fn budget(&self) -> u64 {
        self.budget
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

    fn state(&self) -> AllocatorState {
        let mut tensors = Vec::new();
        let mut keys: Vec<_> = self.ema.keys().copied().collect();
        keys.sort_unstable();
        for k in keys {
            let e = &self.ema[&k];
            tensors.push((format!("ipt.{k}"), HostTensor::from_tensor(&e.ipt)));
            tensors.push((format!("unc.{k}"), HostTensor::from_tensor(&e.unc)));
        }
        AllocatorState { json: serde_json::json!({ "budget": self.budget, "schedule": self.schedule }), tensors }
    }

    fn restore(&mut self, state: AllocatorState, device: &B::Device) -> Result<(), TrainError> {
        self.budget = state
            .json
            .get("budget")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| TrainError::Other("checkpoint: allocator budget missing".into()))?;
        let mut ipts = HashMap::new();
        let mut uncs = HashMap::new();
        for (name, t) in state.tensors {
            let bad = || TrainError::Other(format!("checkpoint: bad allocator tensor {name}"));
            let (kind, idx) = name.split_once('.').ok_or_else(bad)?;
            let idx: usize = idx.parse().map_err(|_| bad())?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
