//! RoLoRA (METHODS.md section 5; seed 001, Algorithm 1): Frank-Wolfe style prune-and-grow
//! under a strict budget. Adapters are SVD triples that all start at the target average
//! rank R (sum r_i = K*R from step 0). The run's steps are split into T iterations plus a
//! final fine-tuning phase (`final_ratio`); iteration t:
//!
//! 1. SPARSIFY: AdaLoRA's importance and cubic schedule (inside the iteration) from the
//!    current ranks down to an average of `keep_t * R` live components, with
//!    `keep_1 = first_keep` (paper: 1/2) and `keep_{t+1} = keep_t * (1 + 1/(T + t))`
//!    (the paper's SCHEDULE, applied after iteration t). Output: live ranks s_i.
//! 2. Rescale: `s_i <- round(s_i * R / mean(s))`, rounding fixed so `sum s_i <= K*R`.
//! 3. Interpolate: `r_i <- round((1 - 1/t) r_i + (1/t) s_i)`, again `sum r_i <= K*R`.
//! 4. EXTEND: every adapter is resized to r_i, keeping its most important live components
//!    and adding new ones with `e = 0` (their product is 0: the output is unchanged).
//!
//! Live (trainable) components never exceed K*R: sparsify only masks, and every resize
//! lands on ranks summing to at most K*R.

use burn::tensor::backend::Backend;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rankfit_domain::run::RoLoraConfig;

use super::adalora::{AdaLoraSchedule, Importance};
use super::{mask_lowest, round_to_budget, AllocContext, AllocatorState, RankAllocator};
use crate::TrainError;

/// One Frank-Wolfe update of the rank configuration: rescale the sparsified live ranks
/// `s_raw` to the budget (average `r_avg`), then interpolate from `ranks` with step 1/t.
/// Both results sum to at most `K * r_avg`. Returns (rescaled s, new ranks).
pub fn frank_wolfe_update(ranks: &[usize], s_raw: &[usize], r_avg: usize, t: u32) -> (Vec<usize>, Vec<usize>) {
    let k = ranks.len();
    let cap = (k * r_avg) as u64;
    let mean = s_raw.iter().sum::<usize>() as f64 / k.max(1) as f64;
    let s = if mean > 0.0 {
        round_to_budget(&s_raw.iter().map(|&x| x as f64 * r_avg as f64 / mean).collect::<Vec<_>>(), cap)
    } else {
        ranks.to_vec()
    };
    let gamma = 1.0 / f64::from(t.max(1));
    let exact: Vec<f64> = ranks.iter().zip(&s).map(|(&r, &si)| (1.0 - gamma) * r as f64 + gamma * si as f64).collect();
    (s.clone(), round_to_budget(&exact, cap))
}

/// SPARSIFY targets (total live components) per iteration.
pub fn sparsify_targets(cfg: &RoLoraConfig, r_avg: usize, modules: u64) -> Vec<u64> {
    let full = r_avg as f64 * modules as f64;
    let t_max = cfg.iterations;
    let mut keep = cfg.first_keep;
    (1..=t_max)
        .map(|t| {
            let target = (full * keep).round().clamp(1.0, full) as u64;
            keep *= 1.0 + 1.0 / f64::from(t_max + t);
            target
        })
        .collect()
}

pub struct RoLoraAllocator<B: Backend> {
    cfg: RoLoraConfig,
    r_avg: usize,
    modules: u64,
    /// Steps per iteration L.
    seg: u64,
    /// Steps of the whole run.
    total: u64,
    targets: Vec<u64>,
    seed: u64,
    importance: Importance<B>,
    /// The rank configuration r (the EXTENDed sizes), per adapter.
    ranks: Vec<usize>,
    /// Allocated components when the current iteration began (SPARSIFY's b0).
    start_total: u64,
    budget: u64,
}

impl<B: Backend> RoLoraAllocator<B> {
    pub fn new(cfg: &RoLoraConfig, total: u64, r_avg: usize, modules: u64, seed: u64) -> Result<Self, TrainError> {
        let seg = cfg
            .iteration_steps
            .unwrap_or_else(|| (total as f64 * (1.0 - cfg.final_ratio) / f64::from(cfg.iterations.max(1))).floor() as u64);
        if seg * u64::from(cfg.iterations) > total {
            return Err(TrainError::Config(format!(
                "method.iteration_steps: {} iterations of {seg} steps do not fit in the run's {total} steps",
                cfg.iterations
            )));
        }
        let this = Self {
            cfg: cfg.clone(),
            r_avg,
            modules,
            seg,
            total,
            targets: sparsify_targets(cfg, r_avg, modules),
            seed,
            importance: Importance::new(cfg.beta1, cfg.beta2),
            ranks: vec![r_avg; modules as usize],
            start_total: r_avg as u64 * modules,
            budget: r_avg as u64 * modules,
        };
        let s = this.schedule(1, this.start_total);
        if seg < 3 || s.tinit + s.tfinal >= seg {
            return Err(TrainError::Config(format!(
                "RoLoRA needs at least 3 steps per iteration with tinit + tfinal below it ({} iterations over {total} steps give {seg}); train longer or lower method.iterations",
                cfg.iterations
            )));
        }
        Ok(this)
    }

    /// SPARSIFY's schedule inside iteration `t` (local steps 1..=L).
    fn schedule(&self, t: u32, start_total: u64) -> AdaLoraSchedule {
        let l = self.seg;
        let target = self.targets[(t as usize - 1).min(self.targets.len() - 1)].min(start_total);
        AdaLoraSchedule {
            total_step: l,
            tinit: (self.cfg.tinit_ratio * l as f64).floor() as u64,
            tfinal: (self.cfg.tfinal_ratio * l as f64).floor() as u64,
            delta_t: self.cfg.delta_t.unwrap_or((l / 100).max(1)).max(1),
            init_budget: start_total,
            target_budget: target,
        }
    }

    /// (iteration t, local step u) of a global step inside the iterations.
    fn locate(&self, step: u64) -> Option<(u32, u64)> {
        if step == 0 || step > self.seg * u64::from(self.cfg.iterations) {
            return None;
        }
        Some((((step - 1) / self.seg + 1) as u32, (step - 1) % self.seg + 1))
    }

    fn extend(&mut self, t: u32, ctx: &mut AllocContext<'_, B>) -> Result<(), TrainError> {
        let s_raw: Vec<usize> = ctx.adapters.list.iter().map(|a| a.live_rank()).collect();
        let (s, new_ranks) = frank_wolfe_update(&self.ranks, &s_raw, self.r_avg, t);
        let scores = self.importance.scores(ctx.adapters);
        let adam = ctx.adam.as_deref_mut().ok_or_else(|| {
            TrainError::Config("RoLoRA resizes adapters: the training loop must pass its optimizer in AllocContext::adam".into())
        })?;
        let mut rng = StdRng::seed_from_u64(self.seed ^ u64::from(t).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for (i, &r_new) in new_ranks.iter().enumerate() {
            let ad = &ctx.adapters.list[i];
            let mut live: Vec<usize> = (0..ad.rank).filter(|&c| ad.mask[c]).collect();
            live.sort_by(|&x, &y| scores[i][y].total_cmp(&scores[i][x]).then(x.cmp(&y)));
            live.truncate(r_new);
            live.sort_unstable();
            let grow = r_new - live.len();
            ctx.adapters.resize(i, &live, grow, ctx.store, adam, ctx.grads, &mut rng);
        }
        ctx.log.push(format!("RoLoRA iteration {t}: sparsified {s_raw:?}, rescaled {s:?}, new ranks {new_ranks:?}"));
        self.ranks = new_ranks;
        self.importance.clear();
        self.budget = self.ranks.iter().sum::<usize>() as u64;
        Ok(())
    }
}

impl<B: Backend> RankAllocator<B> for RoLoraAllocator<B> {
    fn allocate(&mut self, ctx: &mut AllocContext<'_, B>) -> Result<bool, TrainError> {
        let Some((t, u)) = self.locate(ctx.step) else { return Ok(false) };
        if u == 1 {
            self.start_total = ctx.adapters.total_allocated() as u64;
            self.importance.clear();
        }
        let sched = self.schedule(t, self.start_total);
        let final_step = sched.final_step();
        let mut changed = false;
        if u <= final_step {
            if u < final_step {
                self.importance.update(ctx.adapters, ctx.store, ctx.grads);
            }
            let (b, mask_now) = sched.at(u);
            if mask_now || u == final_step {
                let scores = self.importance.scores(ctx.adapters);
                changed = mask_lowest(&scores, self.start_total.saturating_sub(b) as usize, true, ctx.adapters, ctx.store);
                self.budget = b;
            }
        }
        if u == self.seg {
            self.extend(t, ctx)?;
            changed = true;
        }
        Ok(changed)
    }

    fn budget(&self) -> u64 {
        self.budget
    }

    fn scheduled_budget(&self, step: u64) -> u64 {
        match self.locate(step) {
            Some((t, u)) => self.schedule(t, self.r_avg as u64 * self.modules).at(u).0,
            None => self.r_avg as u64 * self.modules,
        }
    }

    fn is_final(&self, step: u64) -> bool {
        step >= self.seg * u64::from(self.cfg.iterations)
    }

    fn orth_reg_weight(&self) -> f64 {
        self.cfg.orth_reg_weight
    }

    fn describe(&self) -> serde_json::Value {
        let first = self.schedule(1, self.r_avg as u64 * self.modules);
        let iterations = u64::from(self.cfg.iterations);
        serde_json::json!({
            "iterations": iterations,
            "iteration_steps": self.seg,
            "final_steps": self.total.saturating_sub(self.seg * iterations),
            "sparsify": { "tinit": first.tinit, "tfinal": first.tfinal, "delta_t": first.delta_t },
            "sparsify_targets": self.targets,
            "orth_reg_weight": self.cfg.orth_reg_weight,
        })
    }

    fn state(&self) -> AllocatorState {
        AllocatorState {
            json: serde_json::json!({ "budget": self.budget, "ranks": self.ranks, "start_total": self.start_total }),
            tensors: self.importance.state(),
        }
    }

    fn restore(&mut self, state: AllocatorState, device: &B::Device) -> Result<(), TrainError> {
        let bad = || TrainError::Checkpoint("RoLoRA allocator state incomplete".into());
        self.budget = state.json.get("budget").and_then(|v| v.as_u64()).ok_or_else(bad)?;
        self.start_total = state.json.get("start_total").and_then(|v| v.as_u64()).ok_or_else(bad)?;
        self.ranks = serde_json::from_value(state.json.get("ranks").cloned().ok_or_else(bad)?).map_err(|_| bad())?;
        self.importance.restore(state.tensors, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};

    use super::super::testing::{toy, T};
    use super::*;
    use crate::adapters::AdapterKind;

    #[test]
    fn frank_wolfe_rescales_and_interpolates_by_hand() {
        // Iteration 1 (gamma = 1): s = [2,1,3] has mean 2, rescaled by 4/2 to [4,2,6].
        assert_eq!(frank_wolfe_update(&[4, 4, 4], &[2, 1, 3], 4, 1), (vec![4, 2, 6], vec![4, 2, 6]));
        // Iteration 2: s = [1,1,2] (mean 4/3) -> [3,3,6]; r = ([4,2,6] + [3,3,6]) / 2 =
        // [3.5, 2.5, 6] -> [4,3,6] = 13 > 12, the first rounded-up entry loses one.
        assert_eq!(frank_wolfe_update(&[4, 2, 6], &[1, 1, 2], 4, 2), (vec![3, 3, 6], vec![3, 3, 6]));
        // Iteration 3: gamma = 1/3; s = [0, 3, 3] (mean 2) -> [0, 6, 6]; r = 2/3 [3,3,6] + 1/3 s = [2, 4, 6].
        assert_eq!(frank_wolfe_update(&[3, 3, 6], &[0, 3, 3], 4, 3), (vec![0, 6, 6], vec![2, 4, 6]));
    }

    #[test]
    fn phase_lengths_are_configurable_and_described() {
        let d = RoLoraAllocator::<T>::new(&RoLoraConfig::default(), 100, 4, 6, 0).unwrap().describe();
        assert_eq!((d["iterations"].as_u64(), d["iteration_steps"].as_u64(), d["final_steps"].as_u64()), (Some(3), Some(26), Some(22)));
        let cfg = RoLoraConfig { iteration_steps: Some(30), ..RoLoraConfig::default() };
        let d = RoLoraAllocator::<T>::new(&cfg, 100, 4, 6, 0).unwrap().describe();
        assert_eq!((d["iteration_steps"].as_u64(), d["final_steps"].as_u64()), (Some(30), Some(10)));
        assert_eq!(d["sparsify"]["tinit"], 3);
        let cfg = RoLoraConfig { iteration_steps: Some(40), ..RoLoraConfig::default() };
        assert!(RoLoraAllocator::<T>::new(&cfg, 100, 4, 6, 0).is_err(), "3 x 40 > 100 steps");
    }

    #[test]
    fn sparsify_targets_follow_the_paper_schedule() {
        // K*R = 96: 48, then *(1 + 1/4) = 60, then *(1 + 1/5) = 72.
        assert_eq!(sparsify_targets(&RoLoraConfig::default(), 8, 12), vec![48, 60, 72]);
    }

    #[test]
    fn never_exceeds_the_budget_and_moves_ranks() {
        let (k, r, total) = (6usize, 4usize, 60u64);
        let (mut adapters, mut store, mut adam) = toy(k, r, AdapterKind::Svd, 3);
        let cfg = RoLoraConfig { delta_t: Some(1), ..RoLoraConfig::default() };
        let mut alloc = RoLoraAllocator::<T>::new(&cfg, total, r, k as u64, 9).unwrap();
        let dev = Default::default();
        let mut extends = 0;
        for step in 1..=total {
            // Gradients that make some modules look far more important than others.
            let mut grads: Vec<_> = store
                .params
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let g = Tensor::<T, 2>::random(p.value.dims(), Distribution::Normal(0.0, 1.0), &dev);
                    Some(g * (1.0 + (i / 3 % 3) as f64 * 10.0))
                })
                .collect();
            // Nonzero e so importance is not all zero.
            for ad in &adapters.list {
                let e = ad.e.unwrap();
                store.params[e].value = store.params[e].value.clone() + 0.01;
            }
            let mut ctx = AllocContext::new(step, &mut adapters, &mut store, &mut grads);
            ctx.adam = Some(&mut adam);
            let changed = alloc.allocate(&mut ctx).unwrap();
            if ctx.log.iter().any(|l| l.contains("iteration")) {
                extends += 1;
            }
            assert!(changed || !ctx.log.iter().any(|l| l.contains("iteration")));
            let live = adapters.total_live();
            assert!(live <= k * r, "step {step}: {live} live > {}", k * r);
            let sized: usize = adapters.list.iter().filter(|a| a.live_rank() > 0 || a.rank > 1).map(|a| a.rank).sum();
            assert!(sized <= k * r, "step {step}: {sized} allocated > {}", k * r);
            for (i, a) in adapters.list.iter().enumerate() {
                assert_eq!(store.params[a.a].value.dims(), [a.rank, 6]);
                assert_eq!(store.params[a.b].value.dims(), [5, a.rank]);
                assert_eq!(grads[a.a].as_ref().unwrap().dims(), [a.rank, 6], "adapter {i}");
            }
        }
        assert_eq!(extends, 3);
        assert!(alloc.is_final(total));
        let ranks: Vec<usize> = adapters.list.iter().map(|a| a.live_rank()).collect();
        assert!(ranks.iter().any(|&x| x != r), "ranks never moved: {ranks:?}");
    }
}
