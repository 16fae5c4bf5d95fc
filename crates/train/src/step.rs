//! What every training loop (encoder and decoder) does with one step's gradients, in
//! PEFT's order: `loss.backward(); clip_grad_norm_; optimizer.step();
//! model.update_and_allocate(step)`.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::adapters::Adapters;
use crate::allocator::{AblationOracle, AllocContext, RankAllocator};
use crate::params::{clip_grads, AdamW, ParamStore};
use crate::TrainError;

/// The trainable state of a run.
pub struct Trainable<'a, B: Backend> {
    pub adapters: &'a mut Adapters,
    pub store: &'a mut ParamStore<B>,
    pub adam: &'a mut AdamW<B>,
    pub allocator: &'a mut dyn RankAllocator<B>,
}

/// What one step did besides the loss.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// Whether an adapter's rank pattern or size changed.
    pub changed: bool,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    /// Lines for the run log (allocation rounds).
    pub log: Vec<String>,
}

/// Applies step `step`'s gradients: components masked under
/// [`crate::adapters::Masking::Freeze`] get no gradient (before clipping, so they do not count
/// in the norm) and no update; the gradients are clipped to `grad_clip` (PyTorch's
/// `clip_grad_norm_`); AdamW steps at `lr`; then the allocator sees the updated weights and
/// the clipped gradients, and masks or resizes.
pub fn after_backward<B: Backend>(
    mut grads: Vec<Option<Tensor<B, 2>>>,
    step: u64,
    lr: f64,
    grad_clip: f64,
    orth_loss: Option<f64>,
    state: Trainable<'_, B>,
    oracle: Option<&mut dyn AblationOracle<B>>,
) -> Result<StepOutcome, TrainError> {
    let Trainable { adapters, store, adam, allocator } = state;
    let device = match store.params.first() {
        Some(p) => p.value.device(),
        None => return Err(TrainError::Internal("nothing to train".into())),
    };
    let keep = adapters.keep_masks::<B>(store.params.len(), &device);
    for (g, k) in grads.iter_mut().zip(&keep) {
        if let (Some(g), Some(k)) = (g.as_mut(), k) {
            *g = g.clone() * k.clone();
        }
    }
    let grad_norm = clip_grads(&mut grads, grad_clip);
    adam.step(store, &grads, &keep, lr);
    let mut ctx = AllocContext::new(step, adapters, store, &mut grads);
    ctx.adam = Some(adam);
    ctx.orth_loss = orth_loss;
    if let Some(o) = oracle {
        ctx.oracle = Some(o);
    }
    let changed = allocator.allocate(&mut ctx);
    let log = std::mem::take(&mut ctx.log);
    Ok(StepOutcome { changed: changed?, grad_norm, log })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::{AdapterKind, Masking};
    use crate::allocator::testing::toy;
    use crate::allocator::FixedRank;
    use crate::model::weights::HostTensor;

    /// Adapter 0's component 1 masked; one step with gradient 1 everywhere. Returns, per
    /// parameter of adapter 0 (Q, e, P), whether component 0 and component 1 moved.
    fn step_with(masking: Masking) -> Vec<(bool, bool)> {
        let (mut adapters, mut store, mut adam) = toy(1, 2, AdapterKind::Svd, 5);
        adapters.set_masking(masking);
        adapters.list[0].mask = vec![true, false];
        let ad = adapters.list[0].clone();
        let parts = [(ad.a, true), (ad.e.unwrap(), true), (ad.b, false)];
        let before: Vec<HostTensor> = parts.iter().map(|&(i, _)| store.host(i)).collect();
        let grads = store.params.iter().map(|p| Some(p.value.ones_like())).collect();
        let mut alloc = FixedRank { budget: 2 };
        let state = Trainable { adapters: &mut adapters, store: &mut store, adam: &mut adam, allocator: &mut alloc };
        after_backward(grads, 1, 1e-2, 0.0, None, state, None).unwrap();
        parts
            .iter()
            .zip(before)
            .map(|(&(i, rows), b)| {
                let a = store.host(i);
                let width = if rows { a.shape[1] } else { 1 };
                let moved = |c: usize| {
                    a.data.iter().zip(&b.data).enumerate().any(|(k, (x, y))| {
                        let comp = if rows { k / width } else { k % a.shape[1] };
                        comp == c && x != y
                    })
                };
                (moved(0), moved(1))
            })
            .collect()
    }

    #[test]
    fn frozen_components_stay_put_and_peft_masked_ones_keep_training() {
        // Freeze (SalientLoRA, RoLoRA): the masked component's Q row, e entry and P column
        // are exactly as they were; the live one moved.
        assert_eq!(step_with(Masking::Freeze), vec![(true, false); 3]);
        // PEFT's AdaLoRA: every component trains; masking is only e = 0 at allocations.
        assert_eq!(step_with(Masking::ZeroE), vec![(true, true); 3]);
    }
}
