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
    mut oracle: Option<&mut dyn AblationOracle<B>>,
) -> Result<StepOutcome, TrainError> {
    let Trainable { adapters, store, adam, allocator } = state;
    let device = match store.params.first() {
        Some(p) => p.value.device(),
        None => return Err(TrainError::Other("nothing to train".into())),
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
    if let Some(o) = oracle.as_deref_mut() {
        ctx.oracle = Some(o);
    }
    let changed = allocator.allocate(&mut ctx);
    let log = std::mem::take(&mut ctx.log);
    Ok(StepOutcome { changed: changed?, grad_norm, log })
}
