//! ALoRA / AB-LoRA (METHODS.md section 4; seed 003, Algorithm 1): ablation-based
//! importance of every live component on a fixed batch, prune the lowest, give the freed
//! ranks to modules that lost nothing, grow them output-preservingly.
//!
//! Adapters are plain LoRA with 0/1 gates (the adapter mask), all starting at the target
//! average rank R, so the budget K*R holds from step 0 and at every step: a round removes
//! `n_A` components and adds `n_A` back.
//!
//! `IS(r) = S(M) - S(M \ r) + S(M_r)` with `S = -loss` on the fixed batch; S(M) is the same for
//! every component and dropped, so `IS(r) = L(M \ r) - L(M_r)`. The 2N variants of a round are
//! independent and go to the [`AblationOracle`] together (the encoder loop batches them).

use std::time::Instant;

use burn::tensor::backend::Backend;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rankfit_domain::run::ALoraConfig;

use super::{AblationOracle, AllocContext, AllocatorState, RankAllocator};
use crate::adapters::Adapters;
use crate::params::ParamStore;
use crate::TrainError;

/// `IS(c) = L(M \ c) - L(M_c)` for every live component (None for masked ones), with the
/// 2N variants sent to the oracle in one call: for live component j (adapter order), variant
/// 2j is "all current gates, c off" and variant 2j+1 "only c on, every other component of every
/// adapter off".
pub fn ablation_importance<B: Backend>(
    adapters: &Adapters,
    store: &ParamStore<B>,
    oracle: &mut dyn AblationOracle<B>,
) -> Result<Vec<Vec<Option<f64>>>, TrainError> {
    let live: Vec<(usize, usize)> =
        adapters.list.iter().enumerate().flat_map(|(k, a)| (0..a.rank).filter(|&i| a.mask[i]).map(move |i| (k, i))).collect();
    let current: Vec<Vec<bool>> = adapters.list.iter().map(|a| a.mask.clone()).collect();
    let none: Vec<Vec<bool>> = adapters.list.iter().map(|a| vec![false; a.rank]).collect();
    let mut variants = Vec::with_capacity(2 * live.len());
    for &(k, i) in &live {
        let mut without = current.clone();
        without[k][i] = false;
        let mut only = none.clone();
        only[k][i] = true;
        variants.push(without);
        variants.push(only);
    }
    let losses = oracle.losses(adapters, store, &variants)?;
    if losses.len() != variants.len() {
        return Err(TrainError::Internal(format!("ablation oracle returned {} losses for {} variants", losses.len(), variants.len())));
    }
    let mut out: Vec<Vec<Option<f64>>> = adapters.list.iter().map(|a| vec![None; a.rank]).collect();
    for (j, &(k, i)) in live.iter().enumerate() {
        out[k][i] = Some(losses[2 * j] - losses[2 * j + 1]);
    }
    Ok(out)
}

/// One round's decision from the scores: the `n_prune` lowest live components (ties: by
/// position) and how many new components each adapter receives. Receivers are the adapters
/// that lost nothing, `n_prune / receivers` each, the remainder one by one to those with the
/// highest mean importance. When every adapter lost a component, nothing is added back
/// (Algorithm 1, line 6: "if there are modules not pruned"), and the budget shrinks.
pub fn plan_round(scores: &[Vec<Option<f64>>], n_prune: usize) -> (Vec<(usize, usize)>, Vec<usize>) {
    let mut live: Vec<(f64, usize, usize)> =
        scores.iter().enumerate().flat_map(|(k, s)| s.iter().enumerate().filter_map(move |(i, v)| v.map(|v| (v, k, i)))).collect();
    live.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let pruned: Vec<(usize, usize)> = live.iter().take(n_prune.min(live.len())).map(|&(_, k, i)| (k, i)).collect();
    let n = pruned.len();
    let k = scores.len();
    let receivers: Vec<usize> = (0..k).filter(|m| !pruned.iter().any(|p| p.0 == *m)).collect();
    let mean = |m: usize| {
        let v: Vec<f64> = scores[m].iter().flatten().copied().collect();
        if v.is_empty() {
            f64::NEG_INFINITY
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let mut grow = vec![0usize; k];
    if n > 0 && !receivers.is_empty() {
        for &m in &receivers {
            grow[m] = n / receivers.len();
        }
        let mut by_importance = receivers.clone();
        by_importance.sort_by(|&a, &b| mean(b).total_cmp(&mean(a)).then(a.cmp(&b)));
        for &m in by_importance.iter().take(n % receivers.len()) {
            grow[m] += 1;
        }
    }
    (pruned, grow)
}

pub struct ALoraAllocator<B: Backend> {
    /// Steps at which a round runs (after K1 epochs, then every K2 epochs).
    pub rounds_at: Vec<u64>,
    n_prune: usize,
    budget: u64,
    seed: u64,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend> ALoraAllocator<B> {
    /// `module_types`: adapted module types per block (n_A's default).
    pub fn new(
        cfg: &ALoraConfig,
        total: u64,
        steps_per_epoch: u64,
        r_avg: usize,
        modules: u64,
        module_types: u32,
        seed: u64,
    ) -> Result<Self, TrainError> {
        let rounds_at = cfg.round_steps(steps_per_epoch, total);
        let n_prune = cfg.n_prune.unwrap_or(module_types.max(1)) as usize;
        if n_prune as u64 >= r_avg as u64 * modules {
            return Err(TrainError::Config(format!(
                "method.n_prune: {n_prune} is not below the {} components of the budget",
                r_avg as u64 * modules
            )));
        }
        Ok(Self { rounds_at, n_prune, budget: r_avg as u64 * modules, seed, _backend: std::marker::PhantomData })
    }
}

impl<B: Backend> RankAllocator<B> for ALoraAllocator<B> {
    fn allocate(&mut self, ctx: &mut AllocContext<'_, B>) -> Result<bool, TrainError> {
        let Some(round) = self.rounds_at.iter().position(|&s| s == ctx.step) else { return Ok(false) };
        let started = Instant::now();
        let oracle = ctx.oracle.as_deref_mut().ok_or_else(|| {
            TrainError::Config("ALoRA scores components by ablation: the training loop must pass an AblationOracle".into())
        })?;
        let scores = ablation_importance(ctx.adapters, ctx.store, oracle)?;
        let scored = started.elapsed().as_secs_f64();
        let (pruned, grow) = plan_round(&scores, self.n_prune);
        let adam = ctx.adam.as_deref_mut().ok_or_else(|| {
            TrainError::Config("ALoRA resizes adapters: the training loop must pass its optimizer in AllocContext::adam".into())
        })?;
        let mut rng = StdRng::seed_from_u64(self.seed ^ (round as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
        for (k, &g) in grow.iter().enumerate() {
            let ad = &ctx.adapters.list[k];
            if g == 0 && !pruned.iter().any(|p| p.0 == k) {
                continue;
            }
            let keep: Vec<usize> = (0..ad.rank).filter(|&i| ad.mask[i] && !pruned.contains(&(k, i))).collect();
            ctx.adapters.resize(k, &keep, g, ctx.store, adam, ctx.grads, &mut rng);
        }
        let names = |v: Vec<usize>| v.into_iter().map(|k| ctx.adapters.list[k].module.clone()).collect::<Vec<_>>().join(", ");
        let pruned_from = names(pruned.iter().map(|p| p.0).collect());
        let grown = names(grow.iter().enumerate().filter(|(_, &g)| g > 0).map(|(k, _)| k).collect());
        ctx.log.push(format!(
            "ALoRA round {} of {} at step {}: {} variants scored in {scored:.3} s, round {:.3} s; pruned from [{pruned_from}], grown [{grown}]",
            round + 1,
            self.rounds_at.len(),
            ctx.step,
            2 * scores.iter().flatten().flatten().count(),
            started.elapsed().as_secs_f64()
        ));
        self.budget = ctx.adapters.total_live() as u64;
        Ok(true)
    }

    fn budget(&self) -> u64 {
        self.budget
    }

    fn scheduled_budget(&self, _: u64) -> u64 {
        self.budget
    }

    fn is_final(&self, step: u64) -> bool {
        self.rounds_at.last().is_none_or(|&s| step >= s)
    }

    fn orth_reg_weight(&self) -> f64 {
        0.0
    }

    fn needs_oracle(&self) -> bool {
        true
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "rounds_at": self.rounds_at, "n_prune": self.n_prune })
    }

    fn state(&self) -> AllocatorState {
        AllocatorState { json: serde_json::json!({ "budget": self.budget }), tensors: Vec::new() }
    }

    fn restore(&mut self, state: AllocatorState, _: &B::Device) -> Result<(), TrainError> {
        self.budget = state
            .json
            .get("budget")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| TrainError::Checkpoint("ALoRA allocator budget missing".into()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};

    use super::super::testing::{toy, T};
    use super::*;
    use crate::adapters::{lora, AdapterKind};
    use crate::model::weights::HostTensor;

    #[test]
    fn ablation_score_on_a_two_component_toy() {
        // One adapter, two components; loss(g0, g1) = 1 - 0.3 g0 - 0.1 g1 + 0.05 g0 g1.
        let (adapters, store, _) = toy(1, 2, AdapterKind::Lora, 1);
        let mut calls = 0;
        let mut oracle = |_: &Adapters, _: &ParamStore<T>, variants: &[Vec<Vec<bool>>]| -> Result<Vec<f64>, TrainError> {
            calls += 1;
            Ok(variants
                .iter()
                .map(|v| {
                    let (g0, g1) = (f64::from(u8::from(v[0][0])), f64::from(u8::from(v[0][1])));
                    1.0 - 0.3 * g0 - 0.1 * g1 + 0.05 * g0 * g1
                })
                .collect())
        };
        let is = ablation_importance(&adapters, &store, &mut oracle).unwrap();
        // IS(0) = L(0,1) - L(1,0) = 0.9 - 0.7 = 0.2; IS(1) = L(1,0) - L(0,1) = -0.2.
        assert!((is[0][0].unwrap() - 0.2).abs() < 1e-12 && (is[0][1].unwrap() + 0.2).abs() < 1e-12, "{is:?}");
        assert_eq!(calls, 1, "all variants in one batched call");
    }

    #[test]
    fn batched_variants_match_separate_masked_passes() {
        use crate::adapters::{adalora, variant_delta, VariantMasks};
        let dev = Default::default();
        for kind in [AdapterKind::Lora, AdapterKind::Svd] {
            let (mut adapters, mut store, _) = toy(1, 3, kind, 6);
            let ad = &adapters.list[0];
            store.params[ad.b].value = Tensor::<T, 2>::random([5, 3], Distribution::Normal(0.0, 1.0), &dev);
            if let Some(e) = ad.e {
                store.params[e].value = Tensor::<T, 2>::random([3, 1], Distribution::Normal(0.0, 1.0), &dev);
            }
            let x = Tensor::<T, 2>::random([2, 6], Distribution::Normal(0.0, 1.0), &dev);
            let variants = vec![vec![vec![true, false, true]], vec![vec![false, true, false]]];
            let masks = VariantMasks::<T>::new(&adapters, &variants, &dev);
            let stacked = Tensor::cat(vec![x.clone(), x.clone()], 0);
            let batched = HostTensor::from_tensor(&variant_delta(&adapters.list[0], stacked, &store.values(), &masks.gates[0])).data;
            for (v, gates) in variants.iter().enumerate() {
                adapters.list[0].mask = gates[0].clone();
                let ad = &adapters.list[0];
                let single = match kind {
                    AdapterKind::Lora => lora::delta(ad, x.clone(), &store.values()),
                    AdapterKind::Svd => adalora::delta(ad, x.clone(), &store.values()),
                };
                let single = HostTensor::from_tensor(&single).data;
                for (a, b) in batched[v * 10..(v + 1) * 10].iter().zip(&single) {
                    assert!((a - b).abs() < 1e-6, "{kind:?} variant {v}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn round_plan_prunes_lowest_and_feeds_untouched_modules() {
        let s = vec![vec![Some(0.5), Some(-1.0)], vec![Some(0.1), Some(0.2)], vec![Some(0.9), None], vec![Some(0.3), Some(0.4)]];
        // Prune the two lowest: (0,1) = -1.0 and (1,0) = 0.1; receivers 2 and 3 get one each.
        let (pruned, grow) = plan_round(&s, 2);
        assert_eq!(pruned, vec![(0, 1), (1, 0)]);
        assert_eq!(grow, vec![0, 0, 1, 1]);
        // Three freed ranks over two receivers: the extra goes to module 2 (mean 0.9 > 0.35).
        let (pruned, grow) = plan_round(&s, 3);
        assert_eq!(pruned, vec![(0, 1), (1, 0), (1, 1)]);
        assert_eq!(grow, vec![0, 0, 2, 1]);
        // The paper's footnote: n_A = 8 over three unpruned modules ranked m1 > m2 > m3 by
        // mean importance gives 3, 3, 2.
        let s = vec![vec![Some(-1.0); 9], vec![Some(0.9)], vec![Some(0.5)], vec![Some(0.1)]];
        let (pruned, grow) = plan_round(&s, 8);
        assert!(pruned.iter().all(|p| p.0 == 0) && pruned.len() == 8);
        assert_eq!(grow, vec![0, 3, 3, 2]);
        // Every module lost a component: Algorithm 1 adds none back (line 6).
        let s = vec![vec![Some(0.1), Some(0.5)], vec![Some(0.2), Some(0.6)]];
        let (pruned, grow) = plan_round(&s, 2);
        assert_eq!(pruned, vec![(0, 0), (1, 0)]);
        assert_eq!(grow, vec![0, 0]);
    }

    /// `a` and `b` equal up to f32 summation order: a grown adapter multiplies through a longer
    /// rank axis (zeros in the new components), and the sgemm kernel blocks a different inner
    /// length differently, which moves the last bit of some sums.
    fn assert_same_up_to_rounding(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-6 * scale, "{what}: element {i}: {x} vs {y}");
        }
    }

    #[test]
    fn growth_preserves_the_output() {
        let (mut adapters, mut store, mut adam) = toy(2, 3, AdapterKind::Lora, 2);
        let dev = Default::default();
        // Trained-looking weights: B nonzero.
        for ad in &adapters.list {
            store.params[ad.b].value = Tensor::<T, 2>::random([5, 3], Distribution::Normal(0.0, 1.0), &dev);
        }
        let x = Tensor::<T, 2>::random([4, 6], Distribution::Normal(0.0, 1.0), &dev);
        let before = HostTensor::from_tensor(&lora::delta(&adapters.list[0], x.clone(), &store.values())).data;
        let w_before = HostTensor::from_tensor(&adapters.delta_weight(0, &store)).data;
        let mut grads = vec![None; store.params.len()];
        let mut rng = StdRng::seed_from_u64(0);
        adapters.resize(0, &[0, 1, 2], 4, &mut store, &mut adam, &mut grads, &mut rng);
        assert_eq!(adapters.list[0].rank, 7);
        assert_eq!(store.params[adapters.list[0].a].value.dims(), [7, 6]);
        let after = HostTensor::from_tensor(&lora::delta(&adapters.list[0], x, &store.values())).data;
        assert_same_up_to_rounding(&before, &after, "the adapter's output");
        assert_same_up_to_rounding(&w_before, &HostTensor::from_tensor(&adapters.delta_weight(0, &store)).data, "ΔW");
        // The same holds for the SVD triple (e = 0 on new components).
        let (mut adapters, mut store, mut adam) = toy(1, 2, AdapterKind::Svd, 4);
        let e = adapters.list[0].e.unwrap();
        store.params[e].value = Tensor::<T, 2>::random([2, 1], Distribution::Normal(0.0, 1.0), &dev);
        let w_before = HostTensor::from_tensor(&adapters.delta_weight(0, &store)).data;
        adapters.resize(0, &[0, 1], 3, &mut store, &mut adam, &mut grads, &mut rng);
        assert_same_up_to_rounding(&w_before, &HostTensor::from_tensor(&adapters.delta_weight(0, &store)).data, "SVD ΔW");
    }

    #[test]
    fn rounds_keep_the_budget_at_every_step() {
        let (k, r, total) = (4usize, 3usize, 30u64);
        let (mut adapters, mut store, mut adam) = toy(k, r, AdapterKind::Lora, 8);
        let cfg = ALoraConfig { k1_epochs: 1.0, k2_epochs: 0.5, rounds: 4, n_prune: Some(2), val_batch: 4 };
        let mut alloc = ALoraAllocator::<T>::new(&cfg, total, 8, r, k as u64, 2, 1).unwrap();
        assert_eq!(alloc.rounds_at, vec![8, 12, 16, 20]);
        let dev = Default::default();
        // A toy "model": the loss falls with the live components of adapters 0 and 3 only, so
        // those of 1 and 2 get pruned and 0 and 3 receive.
        let mut oracle = |ads: &Adapters, _: &ParamStore<T>, variants: &[Vec<Vec<bool>>]| -> Result<Vec<f64>, TrainError> {
            Ok(variants
                .iter()
                .map(|v| {
                    let on = |m: usize| v[m].iter().filter(|g| **g).count() as f64;
                    assert_eq!(v.len(), ads.list.len());
                    5.0 - on(0) - 0.5 * on(3) - 0.01 * (on(1) + on(2))
                })
                .collect())
        };
        let mut rounds = 0;
        for step in 1..=total {
            let mut grads: Vec<_> =
                store.params.iter().map(|p| Some(Tensor::<T, 2>::random(p.value.dims(), Distribution::Normal(0.0, 1.0), &dev))).collect();
            let mut ctx = AllocContext::new(step, &mut adapters, &mut store, &mut grads);
            ctx.adam = Some(&mut adam);
            ctx.oracle = Some(&mut oracle);
            if alloc.allocate(&mut ctx).unwrap() {
                rounds += 1;
            }
            assert_eq!(adapters.total_live(), k * r, "step {step}");
            let allocated: usize = adapters.list.iter().filter(|a| a.live_rank() > 0).map(|a| a.rank).sum();
            assert!(allocated <= k * r, "step {step}: {allocated}");
        }
        assert_eq!(rounds, 4);
        let ranks: Vec<usize> = adapters.list.iter().map(|a| a.live_rank()).collect();
        assert!(ranks[0] > r && ranks[3] > r && ranks[1] + ranks[2] < 2 * r, "{ranks:?}");
        assert!(alloc.is_final(20) && !alloc.is_final(19));
    }
}
