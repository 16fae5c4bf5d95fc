//! Rank allocators: who decides which adapter components stay live, and how many each
//! adapter has.
//!
//! The training loop calls [`RankAllocator::allocate`] once per step in PEFT's order
//! (`loss.backward(); clip; optimizer.step(); update_and_allocate(step)`): after the
//! optimizer step, with the updated weights and this step's clipped gradients (see
//! [`crate::step::after_backward`]). An allocator may rewrite the adapters' masks (and zero
//! pruned `lora_E` entries) and, for the methods that move ranks between modules (RoLoRA,
//! ALoRA), resize adapters: it then moves the optimizer moments and step counts along (see
//! [`Adapters::resize`]). With [`Masking::Freeze`] the loop freezes masked components in the
//! optimizer from the next step on; AdaLoRA uses PEFT's [`Masking::ZeroE`].
//!
//! One module per method; [`for_method`] / [`for_method_with`] is the single selection
//! point every training loop (encoder and decoder) uses.
//!
//! - [`adalora`]: AdaLoRA (METHODS.md section 2), also the SPARSIFY step of RoLoRA.
//! - [`salientlora`]: SalientLoRA (section 3).
//! - [`alora`]: ALoRA / AB-LoRA (section 4), needs an [`AblationOracle`].
//! - [`rolora`]: RoLoRA (section 5).

pub mod adalora;
pub mod alora;
pub mod rolora;
pub mod salientlora;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rankfit_domain::rank::RankMap;
use rankfit_domain::run::MethodConfig;

pub use adalora::{AdaLoraAllocator, AdaLoraSchedule};
pub use alora::ALoraAllocator;
pub use rolora::RoLoraAllocator;
pub use salientlora::{SalientLoraAllocator, SalientSchedule};

use crate::adapters::{Adapters, Masking};
use crate::export::ExportMethod;
use crate::model::weights::HostTensor;
use crate::params::{AdamW, ParamStore};
use crate::TrainError;

/// Serializable allocator state for checkpoints (tensors go to safetensors, the rest to JSON).
#[derive(Debug, Clone, Default)]
pub struct AllocatorState {
    pub json: serde_json::Value,
    pub tensors: Vec<(String, HostTensor)>,
}

/// Forward passes of the model on the allocator's fixed batch, for ablation scores (ALoRA).
/// Model-agnostic: the encoder loop implements it with a BERT forward pass, the decoder
/// loop with its own; see [`crate::adapters::VariantMasks`] for batching several variants
/// into one pass.
pub trait AblationOracle<B: Backend> {
    /// For every variant, the mean task loss (cross-entropy; MSE for regression) on the fixed
    /// batch with the current parameter values, no dropout, and adapter `k`'s component gates
    /// replaced by `variants[v][k]` (one bool per allocated component).
    fn losses(&mut self, adapters: &Adapters, store: &ParamStore<B>, variants: &[Vec<Vec<bool>>]) -> Result<Vec<f64>, TrainError>;

    /// Variants evaluated in one forward pass: callers that split a round into parts
    /// (for progress reports) split at multiples of it.
    fn variants_per_pass(&self) -> usize {
        1
    }
}

/// How an oracle can skip the layers below a variant's first change: a variant's gates equal
/// a reference setting's in every layer below the first adapter where they differ, so the
/// layer inputs up to there are the reference's. Two references cover ALoRA's variants ("all
/// current gates but one" and "only one component on"): the current gates and all gates off.
/// An oracle traces each reference's layer inputs once and runs each variant from
/// `start` upward on `trace[reference][start]`; the losses are those of full passes.
pub struct RestartPlan {
    /// The reference gate settings: `[current, none]`.
    pub references: [Vec<Vec<bool>>; 2],
    /// `(start layer, reference) -> variant indices`, in ascending order of both (a start
    /// equal to the layer count means the variant is the reference: only the head runs).
    pub groups: std::collections::BTreeMap<(usize, usize), Vec<usize>>,
}

impl RestartPlan {
    pub fn new(adapters: &Adapters, variants: &[Vec<Vec<bool>>], layers: usize) -> Self {
        let references = [
            adapters.list.iter().map(|a| a.mask.clone()).collect::<Vec<_>>(),
            adapters.list.iter().map(|a| vec![false; a.rank]).collect::<Vec<_>>(),
        ];
        let first_change = |gates: &[Vec<bool>], reference: &[Vec<bool>]| {
            adapters.list.iter().zip(gates.iter().zip(reference)).filter(|(_, (g, r))| g != r).map(|(a, _)| a.layer).min().unwrap_or(layers)
        };
        let mut groups: std::collections::BTreeMap<(usize, usize), Vec<usize>> = Default::default();
        for (v, gates) in variants.iter().enumerate() {
            let (s0, s1) = (first_change(gates, &references[0]), first_change(gates, &references[1]));
            let key = if s0 >= s1 { (s0, 0) } else { (s1, 1) };
            groups.entry(key).or_default().push(v);
        }
        Self { references, groups }
    }
}

/// Indices of `lengths` in buckets of at most `size`, each holding examples of similar
/// length (sorted by length, ties by index): an oracle pads each bucket to its own longest
/// example instead of the batch's.
pub fn length_buckets(lengths: &[usize], size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    order.chunks(size.max(1)).map(<[usize]>::to_vec).collect()
}

/// Any closure with the oracle's signature is an oracle (tests, toy models).
impl<B: Backend, F> AblationOracle<B> for F
where
    F: FnMut(&Adapters, &ParamStore<B>, &[Vec<Vec<bool>>]) -> Result<Vec<f64>, TrainError>,
{
    fn losses(&mut self, adapters: &Adapters, store: &ParamStore<B>, variants: &[Vec<Vec<bool>>]) -> Result<Vec<f64>, TrainError> {
        self(adapters, store, variants)
    }
}

/// What an allocator sees at one step.
pub struct AllocContext<'a, B: Backend> {
    /// 1-based step whose optimizer update just ran.
    pub step: u64,
    pub adapters: &'a mut Adapters,
    pub store: &'a mut ParamStore<B>,
    /// This step's gradients (clipped, masked ones zeroed under [`Masking::Freeze`]), one
    /// per parameter; resized along with the adapters.
    pub grads: &'a mut [Option<Tensor<B, 2>>],
    /// The optimizer: methods that resize adapters (RoLoRA, ALoRA) move its moments.
    pub adam: Option<&'a mut AdamW<B>>,
    /// This step's orthogonal-regularizer value, detached (SalientLoRA's step weights).
    pub orth_loss: Option<f64>,
    /// Forward passes on a fixed batch (ALoRA's ablation).
    pub oracle: Option<&'a mut dyn AblationOracle<B>>,
    /// Lines for the run log (e.g. how long an allocation round took).
    pub log: Vec<String>,
}

impl<'a, B: Backend> AllocContext<'a, B> {
    /// A context with no optimizer, oracle or regularizer value.
    pub fn new(step: u64, adapters: &'a mut Adapters, store: &'a mut ParamStore<B>, grads: &'a mut [Option<Tensor<B, 2>>]) -> Self {
        Self { step, adapters, store, grads, adam: None, orth_loss: None, oracle: None, log: Vec::new() }
    }
}

pub trait RankAllocator<B: Backend> {
    /// Updates importance and, when the schedule says so, the masks and adapter sizes.
    /// Returns true when some adapter's mask or size changed.
    fn allocate(&mut self, ctx: &mut AllocContext<'_, B>) -> Result<bool, TrainError>;

    /// The pre-RoLoRA/ALoRA entry point, kept for loops that only have the gradients: the
    /// same as [`RankAllocator::allocate`] without optimizer, oracle or regularizer value.
    ///
    /// # Panics
    /// For methods that need more (RoLoRA and ALoRA resize adapters and need the optimizer;
    /// ALoRA needs an [`AblationOracle`]): call `allocate` with a full [`AllocContext`].
    fn after_backward(&mut self, step: u64, adapters: &mut Adapters, store: &mut ParamStore<B>, grads: &[Option<Tensor<B, 2>>]) -> bool {
        let mut grads = grads.to_vec();
        let mut ctx = AllocContext::new(step, adapters, store, &mut grads);
        match self.allocate(&mut ctx) {
            Ok(changed) => changed,
            Err(e) => panic!("RankAllocator::after_backward: {e}"),
        }
    }
    /// Total live components allowed by the last allocation (b(t) in force).
    fn budget(&self) -> u64;
    /// The schedule's budget b(t) at `step` (what an allocation at `step` would enforce).
    fn scheduled_budget(&self, step: u64) -> u64;
    /// Whether the rank pattern is final from `step` on (best-checkpoint candidates).
    fn is_final(&self, step: u64) -> bool;
    /// Weight of the orthogonal regularizer (0: none).
    fn orth_reg_weight(&self) -> f64;
    /// Whether [`AllocContext::oracle`] is needed (the loop then builds its fixed batch).
    fn needs_oracle(&self) -> bool {
        false
    }
    /// What a masked component is (the loop sets it on the adapters).
    fn masking(&self) -> Masking {
        Masking::Freeze
    }
    /// The resolved schedule (every default filled in), recorded in the run summary as
    /// `allocator` so that a comparison can show how each method was actually run.
    fn describe(&self) -> serde_json::Value;
    fn state(&self) -> AllocatorState;
    fn restore(&mut self, state: AllocatorState, device: &B::Device) -> Result<(), TrainError>;
}

/// The rank map of `adapters` at `step`.
pub fn rank_map(step: u64, budget: u64, adapters: &Adapters) -> RankMap {
    RankMap { step, budget, modules: adapters.list.iter().map(|a| (a.module.clone(), a.live_rank() as u32)).collect() }
}

/// What an allocator needs to know about the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AllocatorSetup {
    /// Training steps T.
    pub total: u64,
    /// Rank every adapter starts with.
    pub init_r: usize,
    /// The run's budget: target average rank per module.
    pub target_r: usize,
    /// Adapted modules K.
    pub modules: u64,
    /// Optimizer steps per epoch (ALoRA's K1/K2 are in epochs); None: unknown.
    pub steps_per_epoch: Option<u64>,
    /// Adapted module types per block (ALoRA's default n_A); None: unknown (1 is used).
    pub module_types: Option<u32>,
    /// Run seed (new components' init).
    pub seed: u64,
}

impl AllocatorSetup {
    /// The setup of a training run over `adapters`, `total` steps of `batch_size` examples
    /// from `n_train`. Module types are the distinct [`module_type`]s of the adapted modules.
    pub fn for_run(total: u64, init_r: usize, budget: u32, adapters: &Adapters, n_train: usize, batch_size: u32, seed: u64) -> Self {
        let mut types: Vec<&str> = adapters.list.iter().map(|a| module_type(&a.module)).collect();
        types.sort_unstable();
        types.dedup();
        Self {
            total,
            init_r,
            target_r: budget as usize,
            modules: adapters.list.len() as u64,
            steps_per_epoch: Some(n_train.div_ceil(batch_size.max(1) as usize).max(1) as u64),
            module_types: Some(types.len() as u32),
            seed,
        }
    }
}

/// A module's type within its block: the path after the layer index
/// (`bert.encoder.layer.3.attention.output.dense` -> `attention.output.dense`,
/// `model.layers.0.self_attn.q_proj` -> `self_attn.q_proj`). The last segment alone would
/// fold BERT's three `dense` modules into one.
pub fn module_type(path: &str) -> &str {
    let mut rest = path;
    while let Some((head, tail)) = rest.split_once('.') {
        if !head.is_empty() && head.bytes().all(|b| b.is_ascii_digit()) {
            return tail;
        }
        rest = tail;
    }
    path
}

/// ALoRA's fixed ablation batch when `allocator` needs one: `val_batch` examples of
/// `validation` (of `train` when there is no validation split), drawn with the run seed.
/// Empty for the other methods.
pub fn oracle_batch<B: Backend, T: Clone>(
    method: &MethodConfig,
    allocator: &dyn RankAllocator<B>,
    seed: u64,
    train: &[T],
    validation: &[T],
) -> Vec<T> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    match method {
        MethodConfig::ALora(ac) if allocator.needs_oracle() => {
            let pool = if validation.is_empty() { train } else { validation };
            let mut order: Vec<usize> = (0..pool.len()).collect();
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0x5EED_0BA7_C400_0001));
            order.iter().take(ac.val_batch as usize).map(|&i| pool[i].clone()).collect()
        }
        _ => Vec::new(),
    }
}

/// The allocator of a run's method and how its adapter is exported.
///
/// `total` is the number of training steps, `init_r` the rank adapters start with,
/// `target_r` the run's budget (average rank per module) and `modules` the number of
/// adapted modules. Kept for callers that know nothing more; ALoRA needs the epoch length
/// and is only available through [`for_method_with`].
pub fn for_method<B: Backend>(
    method: &MethodConfig,
    total: u64,
    init_r: usize,
    target_r: usize,
    modules: u64,
) -> Result<(Box<dyn RankAllocator<B>>, ExportMethod), TrainError> {
    for_method_with(method, &AllocatorSetup { total, init_r, target_r, modules, steps_per_epoch: None, module_types: None, seed: 0 })
}

/// The allocator of a run's method and how its adapter is exported: one arm per method.
pub fn for_method_with<B: Backend>(
    method: &MethodConfig,
    s: &AllocatorSetup,
) -> Result<(Box<dyn RankAllocator<B>>, ExportMethod), TrainError> {
    let (total, init_r, target_r, modules) = (s.total, s.init_r, s.target_r, s.modules);
    match method {
        MethodConfig::Lora => Ok((Box::new(FixedRank { budget: init_r as u64 * modules }), ExportMethod::Lora { r: init_r })),
        MethodConfig::AdaLora(ac) => {
            let schedule = AdaLoraSchedule::resolve(ac, total, init_r as u64, target_r as u64, modules)?;
            let export =
                ExportMethod::AdaLora { init_r, target_r, schedule, beta1: ac.beta1, beta2: ac.beta2, orth_reg_weight: ac.orth_reg_weight };
            Ok((Box::new(AdaLoraAllocator::new(ac, schedule)), export))
        }
        MethodConfig::SalientLora(sc) => {
            let schedule = SalientSchedule::resolve(sc, total, init_r as u64, target_r as u64, modules)?;
            let export = ExportMethod::AdaLora {
                init_r,
                target_r,
                schedule: schedule.as_adalora(),
                beta1: 0.85,
                beta2: 0.85,
                orth_reg_weight: sc.orth_reg_weight,
            };
            Ok((Box::new(SalientLoraAllocator::new(sc, schedule)), export))
        }
        MethodConfig::ALora(ac) => {
            let spe = s.steps_per_epoch.ok_or_else(|| {
                TrainError::Config("ALoRA schedules its rounds in epochs: select it with for_method_with and steps_per_epoch".into())
            })?;
            let alloc = ALoraAllocator::new(ac, total, spe, target_r, modules, s.module_types.unwrap_or(1), s.seed)?;
            Ok((Box::new(alloc), ExportMethod::RankPattern { method: "alora" }))
        }
        MethodConfig::RoLora(rc) => {
            let alloc = RoLoraAllocator::new(rc, total, target_r, modules, s.seed)?;
            Ok((Box::new(alloc), ExportMethod::RankPattern { method: "rolora" }))
        }
    }
}

/// Plain LoRA: the ranks never change.
pub struct FixedRank {
    pub budget: u64,
}

impl<B: Backend> RankAllocator<B> for FixedRank {
    fn allocate(&mut self, _: &mut AllocContext<'_, B>) -> Result<bool, TrainError> {
        Ok(false)
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
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "rank_total": self.budget })
    }
    fn state(&self) -> AllocatorState {
        AllocatorState::default()
    }
    fn restore(&mut self, _: AllocatorState, _: &B::Device) -> Result<(), TrainError> {
        Ok(())
    }
}

/// Masks, over all adapters together, the `n_mask` lowest-scoring components (ties broken
/// by position, so exactly that many go; components scored `+inf` are never chosen before
/// finite ones). Zeroes the masked `lora_E` entries. Returns whether a mask changed.
/// With `from_scratch`, masks are recomputed from all components (AdaLoRA); otherwise
/// only live components are candidates and masked ones stay masked.
pub(crate) fn mask_lowest<B: Backend>(
    scores: &[Vec<f32>],
    n_mask: usize,
    from_scratch: bool,
    adapters: &mut Adapters,
    store: &mut ParamStore<B>,
) -> bool {
    let mut all: Vec<(f32, usize, usize)> = Vec::new();
    for (k, s) in scores.iter().enumerate() {
        for (i, v) in s.iter().enumerate() {
            if from_scratch || adapters.list[k].mask[i] {
                all.push((*v, k, i));
            }
        }
    }
    let n_mask = n_mask.min(all.len());
    all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let mut new_masks: Vec<Vec<bool>> =
        adapters.list.iter().map(|a| if from_scratch { vec![true; a.rank] } else { a.mask.clone() }).collect();
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
    changed
}

/// Rounds non-negative reals to integers whose sum is at most `cap`: each value is rounded
/// to nearest, then, while the sum exceeds `cap`, the entry rounded up the most (ties: the
/// first) loses one.
pub fn round_to_budget(exact: &[f64], cap: u64) -> Vec<usize> {
    let mut r: Vec<usize> = exact.iter().map(|x| x.max(0.0).round() as usize).collect();
    while r.iter().sum::<usize>() as u64 > cap {
        let (i, _) = r
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0)
            .map(|(i, &v)| (i, v as f64 - exact[i]))
            .fold((usize::MAX, f64::NEG_INFINITY), |best, c| if c.1 > best.1 { c } else { best });
        if i == usize::MAX {
            break;
        }
        r[i] -= 1;
    }
    r
}

#[cfg(test)]
pub(crate) mod testing {
    //! Toy adapters on a fake store (no model) for allocator unit tests.
    use burn::backend::NdArray;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use crate::adapters::{adalora, lora, AdapterKind, AdapterSpec, Adapters};
    use crate::model::bert::Site;
    use crate::params::{AdamW, ParamStore};

    pub type T = NdArray<f32>;

    /// `k` adapters of rank `r` on `[6 -> 5]` linear layers (query/value of layers 0..).
    pub fn toy(k: usize, r: usize, kind: AdapterKind, seed: u64) -> (Adapters, ParamStore<T>, AdamW<T>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut store = ParamStore::<T>::new();
        let dev = Default::default();
        let spec = AdapterSpec { kind, rank: r, alpha: 8.0, dropout: 0.0 };
        let list = (0..k)
            .map(|i| {
                let (layer, site) = (i / 2, if i % 2 == 0 { Site::Query } else { Site::Value });
                let m = format!("layer.{layer}.{}", if i % 2 == 0 { "query" } else { "value" });
                match kind {
                    AdapterKind::Lora => lora::init(&mut store, &m, layer, site, 6, 5, spec, &mut rng, &dev),
                    AdapterKind::Svd => adalora::init(&mut store, &m, layer, site, 6, 5, spec, &mut rng, &dev),
                }
            })
            .collect();
        let adam = AdamW::new(store.params.len(), 0.0);
        (Adapters::from_list(list, k.div_ceil(2), 0.0), store, adam)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Six adapters, two per layer (query, value) over three layers, rank 2, all live.
    #[test]
    fn restart_plan_starts_each_variant_at_its_first_change_from_the_longer_agreeing_reference() {
        let (mut adapters, _, _) = testing::toy(6, 2, crate::adapters::AdapterKind::Lora, 1);
        adapters.list[3].mask = vec![true, false];
        let current: Vec<Vec<bool>> = adapters.list.iter().map(|a| a.mask.clone()).collect();
        let none = vec![vec![false; 2]; 6];
        let with = |base: &Vec<Vec<bool>>, k: usize, i: usize, on: bool| {
            let mut v = base.clone();
            v[k][i] = on;
            v
        };
        let variants = vec![
            with(&current, 4, 0, false), // 0: without a layer-2 component -> current, layer 2
            with(&none, 1, 1, true),     // 1: only a layer-0 component -> layer 0 (a tie: current)
            with(&none, 5, 0, true),     // 2: only a layer-2 component -> none, layer 2
            current.clone(),             // 3: the current gates -> current, nothing runs (3)
            none.clone(),                // 4: everything off -> none, nothing runs (3)
            with(&current, 0, 0, false), // 5: without a layer-0 component -> current, layer 0
            with(&current, 2, 1, false), // 6: layer 1
        ];
        let plan = RestartPlan::new(&adapters, &variants, 3);
        assert_eq!(plan.references, [current, none]);
        let got: Vec<((usize, usize), Vec<usize>)> = plan.groups.into_iter().collect();
        // Ties (both references differ in the same first layer) go to `current`.
        let want =
            vec![((0, 0), vec![1, 5]), ((1, 0), vec![6]), ((2, 0), vec![0]), ((2, 1), vec![2]), ((3, 0), vec![3]), ((3, 1), vec![4])];
        assert_eq!(got, want);
    }

    #[test]
    fn length_buckets_group_similar_lengths_and_keep_every_index_once() {
        let lengths = [30, 5, 12, 5, 40, 12, 7];
        assert_eq!(length_buckets(&lengths, 3), vec![vec![1, 3, 6], vec![2, 5, 0], vec![4]]);
        assert_eq!(length_buckets(&lengths, 0).len(), 7, "a zero size is one example per bucket");
        assert!(length_buckets(&[], 8).is_empty());
    }

    #[test]
    fn module_types_keep_berts_three_dense_modules_apart() {
        use crate::model::bert::{module_path, Site};
        let paths: Vec<String> = Site::ALL.iter().map(|&s| module_path(2, s)).collect();
        let types: std::collections::BTreeSet<&str> = paths.iter().map(|p| module_type(p)).collect();
        assert_eq!(types.len(), 6, "{types:?}");
        assert!(types.contains("attention.output.dense") && types.contains("intermediate.dense") && types.contains("output.dense"));
        assert_eq!(module_type("model.layers.11.self_attn.q_proj"), "self_attn.q_proj");
        assert_eq!(module_type("lm_head"), "lm_head");
    }

    /// ALoRA's n_A (components pruned per round) defaults to the number of adapted module
    /// types per block: with all six BERT targets it is 6, not 4 (the three `dense` modules
    /// are different modules), and with query+value it is 2.
    #[test]
    fn alora_prunes_one_component_per_adapted_module_type_of_a_run() {
        use crate::adapters::{AdapterKind, AdapterSpec};
        use crate::model::bert::BertConfig;
        use rand::rngs::StdRng;
        use rand::SeedableRng;
        use rankfit_domain::run::ALoraConfig;
        type Cpu = burn::backend::NdArray<f32>;
        let cfg = BertConfig {
            vocab_size: 16,
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 16,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            max_position_embeddings: 16,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        };
        let n_prune = |targets: &[&str]| {
            let targets: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
            let mut store = ParamStore::<Cpu>::new();
            let mut rng = StdRng::seed_from_u64(0);
            let spec = AdapterSpec { kind: AdapterKind::Lora, rank: 4, alpha: 8.0, dropout: 0.0 };
            let adapters = Adapters::build_bert(&cfg, &targets, spec, &mut store, &mut rng, &Default::default()).unwrap();
            let setup = AllocatorSetup::for_run(100, 4, 4, &adapters, 64, 8, 0);
            let (alloc, _) = for_method_with::<Cpu>(&MethodConfig::ALora(ALoraConfig::default()), &setup).unwrap();
            (adapters.list.len(), alloc.describe()["n_prune"].as_u64().unwrap())
        };
        let all = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"];
        assert_eq!(n_prune(&all), (12, 6));
        assert_eq!(n_prune(&["query", "value"]), (4, 2));
        // `dense` matches all three dense modules (PEFT's suffix match): still three types.
        assert_eq!(n_prune(&["dense"]), (6, 3));
    }

    #[test]
    fn rounding_never_exceeds_the_cap() {
        // 2.5 -> 3, 2.5 -> 3, 3.0 -> 3: sum 9 > 8, the first entry rounded up by 0.5 loses one.
        assert_eq!(round_to_budget(&[2.5, 2.5, 3.0], 8), vec![2, 3, 3]);
        assert_eq!(round_to_budget(&[1.2, 0.4, 2.4], 8), vec![1, 0, 2]);
        // 5,5,5,5 = 20 > 18: the first two (each rounded up by 0.4) lose one.
        assert_eq!(round_to_budget(&[4.6, 4.6, 4.6, 4.6], 18), vec![4, 4, 5, 5]);
    }
}
