//! SalientLoRA (METHODS.md section 3; Ke et al., NeurIPS 2024): salience of every SVD-triple
//! component from a time-series window of its singular value e(t) and the orthogonal loss,
//! pruned on adaptive windows (short early, long late) under a cubic budget schedule.
//!
//! Salience `S = lambda * Mn + (1 - lambda) * In` over the live components, with
//! - orthogonality-aware magnitude `Mn` ([`window_weights`], [`magnitudes`]), and
//! - influence domain `In` ([`influence_edges`] -> [`break_cycles`] -> [`path_sums`]); the
//!   pairwise Pearson/slope step is one `[N, T] x [T, N]` matrix product, the path sums
//!   repeated matrix-vector products.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rankfit_domain::run::SalientLoraConfig;
use serde::{Deserialize, Serialize};

use super::adalora::AdaLoraSchedule;
use super::{mask_lowest, AllocContext, AllocatorState, RankAllocator};
use crate::adapters::Adapters;
use crate::model::weights::HostTensor;
use crate::TrainError;

/// Guard for every division.
pub const EPS: f64 = 1e-8;

/// SalientLoRA's schedule with every field resolved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SalientSchedule {
    pub total_step: u64,
    /// Warm-up steps n_i.
    pub n_i: u64,
    /// Allocation steps n_f.
    pub n_f: u64,
    /// Window lengths T_i (first) and T_f (last).
    pub t_i: u64,
    pub t_f: u64,
    /// b0 = r_init * K and the target total rank r_t = budget * K.
    pub init_budget: u64,
    pub target_budget: u64,
}

impl SalientSchedule {
    /// n_i defaults to 10% and n_f to 60% of the total steps; n_i + n_f must fit in them.
    pub fn resolve(cfg: &SalientLoraConfig, total_step: u64, init_r: u64, target_r: u64, modules: u64) -> Result<Self, TrainError> {
        let s = Self {
            total_step,
            n_i: cfg.n_i.unwrap_or(total_step / 10),
            n_f: cfg.n_f.unwrap_or(total_step * 6 / 10).max(1),
            t_i: cfg.window_initial.max(1),
            t_f: cfg.window_final.max(cfg.window_initial.max(1)),
            init_budget: init_r * modules,
            target_budget: target_r * modules,
        };
        if s.n_i + s.n_f > total_step {
            return Err(TrainError::Config(format!(
                "method.n_f: SalientLoRA needs n_i + n_f <= total steps (n_i {}, n_f {}, total {total_step}); train longer or lower them",
                s.n_i, s.n_f
            )));
        }
        Ok(s)
    }

    /// Step of the last prune (to exactly r_t); the mask is frozen after it.
    pub fn end(&self) -> u64 {
        self.n_i + self.n_f
    }

    /// Window length T(t) = round(T_f + (T_i - T_f) (1 - c)^3), c = clip((t - n_i)/n_f, 0, 1).
    pub fn window(&self, t: u64) -> u64 {
        let c = ((t as f64 - self.n_i as f64) / self.n_f as f64).clamp(0.0, 1.0);
        (self.t_f as f64 + (self.t_i as f64 - self.t_f as f64) * (1.0 - c).powi(3)).round() as u64
    }

    /// b(t) = floor(b0 - (T(t)/T_f) (b0 - r_t)) inside the allocation phase; b0 before, r_t after.
    pub fn budget(&self, t: u64) -> u64 {
        if t <= self.n_i {
            self.init_budget
        } else if t >= self.end() {
            self.target_budget
        } else {
            let b0 = self.init_budget as f64;
            let drop = self.window(t) as f64 / self.t_f as f64 * (b0 - self.target_budget as f64);
            ((b0 - drop).floor() as u64).max(self.target_budget)
        }
    }

    /// The PEFT AdaLoRA fields of an export (tinit = n_i, tfinal = T - n_i - n_f).
    pub fn as_adalora(&self) -> AdaLoraSchedule {
        AdaLoraSchedule {
            total_step: self.total_step,
            tinit: self.n_i,
            tfinal: self.total_step - self.end(),
            delta_t: self.t_i,
            init_budget: self.init_budget,
            target_budget: self.target_budget,
        }
    }
}

/// Step weights of a window: `w_t = (sum_s R_s) / R_t`, min-max normalized to [0, 1]
/// (all 1 when the window's losses are all equal).
pub fn window_weights(orth: &[f64]) -> Vec<f64> {
    let sum: f64 = orth.iter().sum();
    let w: Vec<f64> = orth.iter().map(|r| sum / (r + EPS)).collect();
    let (lo, hi) = w.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if hi - lo <= EPS * hi.abs().max(1.0) {
        return vec![1.0; w.len()];
    }
    w.iter().map(|v| (v - lo) / (hi - lo)).collect()
}

/// `M_n = sum_t wt_t |e_n(t)|` for every row of `series [N, T]`.
pub fn magnitudes<B: Backend>(series: Tensor<B, 2>, weights: &[f64]) -> Vec<f32> {
    let t = weights.len();
    let device = series.device();
    let w = Tensor::<B, 2>::from_data(TensorData::new(weights.iter().map(|&v| v as f32).collect::<Vec<_>>(), [t, 1]), &device);
    HostTensor::from_tensor(&series.abs().matmul(w)).data
}

/// Guard of the Pearson and slope denominators (units of e², which late in training is
/// ~1e-8 and smaller: a fixed 1e-8 would halve rho there and silently drop the influence
/// term). The reference implementation uses 1e-15.
pub const TINY: f64 = 1e-15;

/// The influence graph of `series [N, T]` as a dense row-major `N x N` weight matrix:
/// edge i -> j with weight `s_ij = cov(e_i, e_j) / var(e_i)` when `rho_ij >= beta` and
/// `s_ij >= gamma` (i != j; a constant series has no edges). Invariant to the scale of e.
pub fn influence_edges<B: Backend>(series: Tensor<B, 2>, beta: f64, gamma: f64) -> Vec<f32> {
    let [n, t] = series.dims();
    let device = series.device();
    let mean_sq = series.clone().square().mean_dim(1); // [N, 1]
    let centered = series.clone() - series.mean_dim(1);
    let cov = centered.clone().matmul(centered.clone().transpose()) / t as f64;
    let var = centered.square().sum_dim(1) / t as f64; // [N, 1]
    let std = var.clone().sqrt();
    let rho = cov.clone() / (std.clone().matmul(std.transpose()) + TINY);
    let slope = cov / (var.clone() + TINY);
    let off_diag = Tensor::<B, 2>::ones([n, n], &device) - Tensor::<B, 2>::eye(n, &device);
    // Rows of (numerically) constant series get no edges: variance below f32 round-off of
    // the series' own magnitude.
    let varies = var.greater(mean_sq * 1e-10 + 1e-30).float(); // [N, 1]
    let edges = rho.greater_equal_elem(beta).float() * slope.clone().greater_equal_elem(gamma).float() * off_diag * varies;
    HostTensor::from_tensor(&(slope * edges)).data
}

/// Removes, while the graph `w` (row-major `n x n`, 0 = no edge) has a directed cycle, the
/// lowest-weight edge of the cycle found first (depth-first from node 0).
pub fn break_cycles(w: &mut [f32], n: usize) {
    while let Some(cycle) = find_cycle(w, n) {
        let &(i, j) = cycle.iter().min_by(|a, b| w[a.0 * n + a.1].total_cmp(&w[b.0 * n + b.1])).expect("a cycle has edges");
        w[i * n + j] = 0.0;
    }
}

/// The edges of one directed cycle, if any.
fn find_cycle(w: &[f32], n: usize) -> Option<Vec<(usize, usize)>> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut color = vec![0u8; n];
    for start in 0..n {
        if color[start] != 0 {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        color[start] = 1;
        while let Some(&(u, next)) = path.last() {
            if let Some(v) = (next..n).find(|&v| w[u * n + v] != 0.0) {
                if let Some(top) = path.last_mut() {
                    top.1 = v + 1;
                }
                match color[v] {
                    0 => {
                        color[v] = 1;
                        path.push((v, 0));
                    }
                    1 => {
                        let from = path.iter().position(|&(x, _)| x == v).expect("v is on the path");
                        let nodes: Vec<usize> = path[from..].iter().map(|&(x, _)| x).collect();
                        let mut edges: Vec<(usize, usize)> = nodes.windows(2).map(|p| (p[0], p[1])).collect();
                        edges.push((u, v));
                        return Some(edges);
                    }
                    _ => {}
                }
            } else {
                color[u] = 2;
                path.pop();
            }
        }
    }
    None
}

/// Path-sum influence on a DAG `w` (row-major `n x n`): `D_i = sum_{i->j} s_ij D'_j` with
/// `D'_j = 1` for a node without outgoing edges, else `D_j`. Computed exactly in f64, in
/// reverse topological order (one pass over the edges). Path sums grow like the product of
/// slopes along the longest path (>= gamma^depth), which overflows f32 on long chains; a sum
/// beyond f64's range saturates at `f64::MAX` instead of becoming inf (and In NaN).
pub fn path_sums(w: &[f32], n: usize) -> Vec<f64> {
    let out: Vec<Vec<(usize, f64)>> =
        (0..n).map(|i| (0..n).filter(|&j| w[i * n + j] != 0.0).map(|j| (j, f64::from(w[i * n + j]))).collect()).collect();
    let mut d: Vec<Option<f64>> = vec![None; n];
    for start in 0..n {
        // Iterative post-order DFS: a node is summed once all its successors are.
        let mut stack = vec![(start, false)];
        while let Some((u, expanded)) = stack.pop() {
            if d[u].is_some() {
                continue;
            }
            if expanded {
                let sum: f64 = out[u].iter().map(|&(j, s)| s * if out[j].is_empty() { 1.0 } else { d[j].unwrap_or(0.0) }).sum();
                d[u] = Some(if sum.is_finite() { sum } else { f64::MAX.copysign(sum) });
            } else {
                stack.push((u, true));
                stack.extend(out[u].iter().filter(|&&(j, _)| d[j].is_none()).map(|&(j, _)| (j, false)));
            }
        }
    }
    d.into_iter().map(|x| x.unwrap_or(0.0)).collect()
}

/// `In = D / sum D` of the window `series [N, T]` (0 everywhere when there is no edge),
/// computed relative to the largest D so that it stays finite.
pub fn influence<B: Backend>(series: Tensor<B, 2>, beta: f64, gamma: f64) -> Vec<f32> {
    let n = series.dims()[0];
    let mut w = influence_edges(series, beta, gamma);
    break_cycles(&mut w, n);
    let d = path_sums(&w, n);
    let top = d.iter().fold(0f64, |m, &x| m.max(x.abs()));
    if top == 0.0 {
        return vec![0.0; n];
    }
    let total: f64 = d.iter().map(|&x| x / top).sum();
    d.iter().map(|&x| (x / top / total) as f32).collect()
}

/// Salience of the live components: `lambda * Mn + (1 - lambda) * In`, where the window
/// `series [N, T]` has one row per live component and `groups[n]` is the adapter of row n
/// (Mn is normalized within each adapter).
pub fn salience<B: Backend>(series: Tensor<B, 2>, groups: &[usize], orth: &[f64], beta: f64, gamma: f64, lambda: f64) -> Vec<f32> {
    let m = magnitudes(series.clone(), &window_weights(orth));
    let n_groups = groups.iter().copied().max().map_or(0, |g| g + 1);
    let mut sums = vec![0f64; n_groups];
    for (&g, &v) in groups.iter().zip(&m) {
        sums[g] += f64::from(v);
    }
    let inf = influence(series, beta, gamma);
    m.iter()
        .zip(&inf)
        .zip(groups)
        .map(|((&mv, &iv), &g)| (lambda * f64::from(mv) / (sums[g] + EPS) + (1.0 - lambda) * f64::from(iv)) as f32)
        .collect()
}

pub struct SalientLoraAllocator<B: Backend> {
    pub schedule: SalientSchedule,
    beta: f64,
    gamma: f64,
    lambda: f64,
    orth_reg_weight: f64,
    /// The current window: every component's e per recorded step (adapter order).
    records: Vec<Vec<f32>>,
    orth: Vec<f64>,
    window_len: u64,
    budget: u64,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend> SalientLoraAllocator<B> {
    pub fn new(cfg: &SalientLoraConfig, schedule: SalientSchedule) -> Self {
        Self {
            schedule,
            beta: cfg.beta,
            gamma: cfg.gamma,
            lambda: cfg.lambda,
            orth_reg_weight: cfg.orth_reg_weight,
            records: Vec::new(),
            orth: Vec::new(),
            window_len: schedule.t_i,
            budget: schedule.init_budget,
            _backend: std::marker::PhantomData,
        }
    }

    /// Salience of every component (live ones scored over the window; masked ones +inf,
    /// they are not candidates).
    fn scores(&self, adapters: &Adapters, device: &B::Device) -> Vec<Vec<f32>> {
        let mut rows = Vec::new();
        let mut groups = Vec::new();
        let mut at = Vec::new();
        let mut offset = 0;
        for (k, ad) in adapters.list.iter().enumerate() {
            for i in 0..ad.rank {
                if ad.mask[i] {
                    rows.push(offset + i);
                    groups.push(k);
                    at.push((k, i));
                }
            }
            offset += ad.rank;
        }
        let mut out: Vec<Vec<f32>> = adapters.list.iter().map(|a| vec![f32::INFINITY; a.rank]).collect();
        let t = self.records.len();
        if rows.is_empty() || t == 0 {
            return out;
        }
        let data: Vec<f32> = rows.iter().flat_map(|&r| self.records.iter().map(move |step| step[r])).collect();
        let series = Tensor::<B, 2>::from_data(TensorData::new(data, [rows.len(), t]), device);
        let s = salience(series, &groups, &self.orth, self.beta, self.gamma, self.lambda);
        for ((k, i), v) in at.into_iter().zip(s) {
            out[k][i] = v;
        }
        out
    }

    fn prune_to(&mut self, target: u64, ctx: &mut AllocContext<'_, B>) -> bool {
        let device = ctx.store.params[ctx.adapters.list[0].a].value.device();
        let scores = self.scores(ctx.adapters, &device);
        let live = ctx.adapters.total_live() as u64;
        self.budget = target;
        self.records.clear();
        self.orth.clear();
        mask_lowest(&scores, live.saturating_sub(target) as usize, false, ctx.adapters, ctx.store)
    }
}

impl<B: Backend> RankAllocator<B> for SalientLoraAllocator<B> {
    fn allocate(&mut self, ctx: &mut AllocContext<'_, B>) -> Result<bool, TrainError> {
        let t = ctx.step;
        if t <= self.schedule.n_i || t > self.schedule.end() || ctx.adapters.list.is_empty() {
            return Ok(false);
        }
        let mut row = Vec::with_capacity(ctx.adapters.total_allocated());
        for ad in &ctx.adapters.list {
            match ad.e {
                Some(e) => row.extend(HostTensor::from_tensor(&ctx.store.params[e].value).data),
                None => row.extend(std::iter::repeat_n(0.0, ad.rank)),
            }
        }
        self.records.push(row);
        self.orth.push(ctx.orth_loss.unwrap_or(1.0));
        if t == self.schedule.end() {
            return Ok(self.prune_to(self.schedule.target_budget, ctx));
        }
        if self.records.len() as u64 >= self.window_len {
            let started = std::time::Instant::now();
            let steps = self.records.len();
            let changed = self.prune_to(self.schedule.budget(t), ctx);
            ctx.log.push(format!(
                "SalientLoRA window of {steps} steps scored at step {t} in {:.3} s; budget {}",
                started.elapsed().as_secs_f64(),
                self.budget
            ));
            self.window_len = self.schedule.window(t);
            return Ok(changed);
        }
        Ok(false)
    }

    fn budget(&self) -> u64 {
        self.budget
    }

    fn scheduled_budget(&self, step: u64) -> u64 {
        self.schedule.budget(step)
    }

    fn is_final(&self, step: u64) -> bool {
        step >= self.schedule.end()
    }

    fn orth_reg_weight(&self) -> f64 {
        self.orth_reg_weight
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "schedule": self.schedule, "beta": self.beta, "gamma": self.gamma, "lambda": self.lambda,
                            "orth_reg_weight": self.orth_reg_weight })
    }

    fn state(&self) -> AllocatorState {
        let mut tensors = Vec::new();
        if let Some(first) = self.records.first() {
            let data: Vec<f32> = self.records.iter().flatten().copied().collect();
            tensors.push(("window".to_string(), HostTensor::new(vec![self.records.len(), first.len()], data)));
        }
        AllocatorState { json: serde_json::json!({ "budget": self.budget, "window_len": self.window_len, "orth": self.orth }), tensors }
    }

    fn restore(&mut self, state: AllocatorState, _device: &B::Device) -> Result<(), TrainError> {
        let bad = || TrainError::Checkpoint("SalientLoRA allocator state incomplete".into());
        self.budget = state.json.get("budget").and_then(|v| v.as_u64()).ok_or_else(bad)?;
        self.window_len = state.json.get("window_len").and_then(|v| v.as_u64()).ok_or_else(bad)?;
        self.orth = serde_json::from_value(state.json.get("orth").cloned().ok_or_else(bad)?).map_err(|_| bad())?;
        self.records = match state.tensors.into_iter().find(|(k, _)| k == "window") {
            Some((_, t)) => t.data.chunks(t.shape[1].max(1)).map(<[f32]>::to_vec).collect(),
            None => Vec::new(),
        };
        if self.records.len() != self.orth.len() {
            return Err(bad());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::super::testing::{toy, T};
    use super::*;
    use crate::adapters::AdapterKind;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn window_weights_by_hand() {
        // sum 7: w = [7, 3.5, 1.75] -> min-max [1, 1/3, 0].
        let w = window_weights(&[1.0, 2.0, 4.0]);
        close(&w.iter().map(|&v| v as f32).collect::<Vec<_>>(), &[1.0, 1.0 / 3.0, 0.0]);
        assert_eq!(window_weights(&[0.5, 0.5]), vec![1.0, 1.0]);
    }

    #[test]
    fn magnitude_by_hand() {
        let dev = Default::default();
        let series = Tensor::<T, 2>::from_data(TensorData::new(vec![1.0f32, -3.0, 5.0, 2.0, 3.0, 100.0], [2, 3]), &dev);
        // weights [1, 1/3, 0]: M = [1 + 1, 2 + 1] = [2, 3].
        close(&magnitudes(series, &[1.0, 1.0 / 3.0, 0.0]), &[2.0, 3.0]);
    }

    #[test]
    fn edges_from_time_series_by_hand() {
        let dev = Default::default();
        // e1 = 2.5 e0 + 1 (rho 1, slope 2.5 from 0 to 1, 0.4 back); e2 alternates (rho -0.45 with e0).
        let e0 = [1.0f32, 2.0, 3.0, 4.0];
        let mut data = e0.to_vec();
        data.extend(e0.iter().map(|v| 2.5 * v + 1.0));
        data.extend([1.0, -1.0, 1.0, -1.0]);
        let w = influence_edges(Tensor::<T, 2>::from_data(TensorData::new(data, [3, 4]), &dev), 0.9, 2.0);
        close(&w, &[0.0, 2.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn three_node_cycle_is_broken_at_its_lightest_edge_and_paths_sum() {
        // 0 -> 1 (2.5), 1 -> 2 (3.0), 2 -> 0 (2.2): the cycle loses 2 -> 0.
        let n = 3;
        let mut w = vec![0.0f32; 9];
        w[1] = 2.5;
        w[n + 2] = 3.0;
        w[2 * n] = 2.2;
        break_cycles(&mut w, n);
        assert_eq!(w, vec![0.0, 2.5, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0]);
        // D2 = 0 (no outgoing edge), D1 = 3.0 * 1, D0 = 2.5 * D1 = 7.5.
        let d = path_sums(&w, n);
        assert_eq!(d, vec![7.5, 3.0, 0.0]);
        // Two paths: 0 -> 1 -> 2 and 0 -> 2 directly (2.0): D0 = 2.5 * 3 + 2.0 * 1 = 9.5.
        w[2] = 2.0;
        assert_eq!(path_sums(&w, n), vec![9.5, 3.0, 0.0]);
        // No edges: no influence.
        assert_eq!(path_sums(&[0.0; 4], 2), vec![0.0, 0.0]);
    }

    #[test]
    fn edges_do_not_depend_on_the_scale_of_e() {
        // Late in training singular values are ~1e-4: with a fixed 1e-8 added to
        // sigma_i sigma_j (~1e-8 there) rho halved and the edge below went away.
        let dev = Default::default();
        let e0 = [1.0f32, 2.0, 3.0, 4.0];
        for scale in [1.0f32, 1e-4, 1e-6] {
            let mut data: Vec<f32> = e0.iter().map(|v| v * scale).collect();
            data.extend(e0.iter().map(|v| (2.5 * v + 1.0) * scale));
            let w = influence_edges(Tensor::<T, 2>::from_data(TensorData::new(data, [2, 4]), &dev), 0.9, 2.0);
            assert!((w[1] - 2.5).abs() < 1e-2 && w[0] == 0.0 && w[2] == 0.0 && w[3] == 0.0, "scale {scale}: {w:?}");
        }
    }

    #[test]
    fn long_chains_of_steep_slopes_give_finite_influence_and_the_least_salient_go_first() {
        // A chain 0 -> 1 -> ... -> 59 of slope 10: D_0 = 10^59, beyond f32 (the old f32 path
        // sums became inf, In = inf / inf = NaN, and a NaN salience was never pruned).
        let n = 60;
        let mut w = vec![0f32; n * n];
        for i in 0..n - 1 {
            w[i * n + i + 1] = 10.0;
        }
        let d = path_sums(&w, n);
        assert!((d[0] / 1e59 - 1.0).abs() < 1e-9 && d[n - 1] == 0.0, "{:e}", d[0]);
        // The same chain from time series: e_{i+1} = 10 e_i + noise-free offset.
        let dev = Default::default();
        let base = [1.0f32, 2.0, 4.0, 3.0, 5.0];
        let mut data = Vec::new();
        for i in 0..12 {
            let k = 3f32.powi(i);
            data.extend(base.iter().map(|v| v * k));
        }
        let series = Tensor::<T, 2>::from_data(TensorData::new(data, [12, 5]), &dev);
        let inf = influence(series.clone(), 0.9, 2.0);
        assert!(inf.iter().all(|v| v.is_finite()), "{inf:?}");
        assert!((inf.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let s = salience(series, &[0; 12], &[1.0; 5], 0.9, 2.0, 0.7);
        assert!(s.iter().all(|v| v.is_finite()), "{s:?}");
        // mask_lowest prunes the smallest: the last (largest-magnitude, no-influence) node is
        // not it; the first (smallest magnitude, but the head of the chain) is not either.
        let lowest = s.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert!(lowest > 0 && lowest < 11, "{s:?}");
    }

    #[test]
    fn salience_mixes_magnitude_and_influence() {
        let dev = Default::default();
        // Adapter 0: rows 0, 1; adapter 1: row 2. Equal orth losses (weights all 1).
        let e0 = [1.0f32, 2.0, 3.0, 4.0];
        let mut data = e0.to_vec();
        data.extend(e0.iter().map(|v| 2.5 * v + 1.0)); // |.| sums: 10 and 29
        data.extend([1.0, -1.0, 1.0, -1.0]); // 4
        let series = Tensor::<T, 2>::from_data(TensorData::new(data, [3, 4]), &dev);
        let s = salience(series, &[0, 0, 1], &[1.0; 4], 0.9, 2.0, 0.7);
        // Mn = [10/39, 29/39, 4/4]; D = [2.5, 0, 0] -> In = [1, 0, 0].
        close(&s, &[0.7 * 10.0 / 39.0 + 0.3, 0.7 * 29.0 / 39.0, 0.7]);
    }

    #[test]
    fn schedule_by_hand() {
        let cfg = SalientLoraConfig { n_i: Some(10), n_f: Some(40), window_initial: 2, window_final: 8, ..Default::default() };
        let s = SalientSchedule::resolve(&cfg, 60, 3, 2, 10).unwrap();
        assert_eq!((s.window(10), s.window(50), s.window(30)), (2, 8, 7)); // 8 - 6 * 0.125 = 7.25
                                                                           // b0 = 30, r_t = 20: b(30) = floor(30 - 7/8 * 10) = 21.
        assert_eq!((s.budget(5), s.budget(30), s.budget(50)), (30, 21, 20));
        assert!(SalientSchedule::resolve(&SalientLoraConfig { n_i: Some(30), n_f: Some(40), ..cfg }, 60, 3, 2, 10).is_err());
    }

    #[test]
    fn reaches_exactly_the_target_and_never_exceeds_the_schedule() {
        let (k, total) = (6usize, 40u64);
        let (mut adapters, mut store, _) = toy(k, 3, AdapterKind::Svd, 5);
        let cfg = SalientLoraConfig { n_i: Some(4), n_f: Some(26), window_initial: 2, window_final: 8, gamma: 1.1, ..Default::default() };
        let sched = SalientSchedule::resolve(&cfg, total, 3, 2, k as u64).unwrap();
        let mut alloc = SalientLoraAllocator::<T>::new(&cfg, sched);
        let dev = Default::default();
        let mut prunes = 0;
        for step in 1..=total {
            for ad in &adapters.list {
                let e = ad.e.unwrap();
                let drift = Tensor::<T, 2>::random([ad.rank, 1], Distribution::Normal(0.0, 0.05), &dev);
                store.params[e].value = (store.params[e].value.clone() + drift) * ad.mask_column::<T>(&dev);
            }
            let mut grads = vec![None; store.params.len()];
            let mut ctx = AllocContext::new(step, &mut adapters, &mut store, &mut grads);
            ctx.orth_loss = Some(1.0 + step as f64 * 0.01);
            if alloc.allocate(&mut ctx).unwrap() {
                prunes += 1;
            }
            let live = adapters.total_live() as u64;
            assert!(live <= sched.budget(step).max(alloc.budget), "step {step}: {live}");
            assert!(live <= alloc.budget, "step {step}: {live} > {}", alloc.budget);
        }
        assert!(prunes >= 3, "{prunes} prunes");
        assert_eq!(adapters.total_live(), 12, "exactly r_t = 2 * 6");
        // Masked components have e = 0.
        for ad in &adapters.list {
            let e = HostTensor::from_tensor(&store.params[ad.e.unwrap()].value).data;
            for (i, m) in ad.mask.iter().enumerate() {
                assert!(*m || e[i] == 0.0);
            }
        }
    }
}
