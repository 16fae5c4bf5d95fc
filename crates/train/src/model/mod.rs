//! Backbones and the small tensor helpers they share.

pub mod bert;
pub mod fused;
pub mod gguf;
pub mod head;
pub mod llama;
pub mod llama_assets;
pub mod llama_generate;
pub mod llama_tokenizer;
pub mod weights;

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Distribution, ElementConversion, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Inverted dropout (`p` = drop probability); identity outside training.
///
/// On the CPU backend the drop mask is drawn on the host from a generator seeded by one
/// draw of the backend's, instead of burn's per-element Bernoulli sampler + compare (a
/// twentieth of a MiniLM training step, see BENCHMARKS.md). Masks stay reproducible under `B::seed`. Other backends draw
/// the mask on the device.
pub fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, p: f64, train: bool) -> Tensor<B, D> {
    if !train || p <= 0.0 {
        return x;
    }
    if p >= 1.0 {
        return x.zeros_like();
    }
    let device = x.device();
    if !B::name(&device).contains("ndarray") {
        let drop = x.random_like(Distribution::Bernoulli(p)).equal_elem(1.0);
        return x.mask_fill(drop, 0.0) / (1.0 - p);
    }
    let draw: f64 = Tensor::<B, 1>::random([1], Distribution::Uniform(0.0, 1.0), &device).into_scalar().elem();
    let mut rng = StdRng::seed_from_u64((draw * (1u64 << 53) as f64) as u64);
    let threshold = (p * (1u64 << 32) as f64) as u64;
    let shape = x.shape();
    // A bool mask: what autodiff keeps for the backward pass is 1 byte per entry, not 4.
    let drop: Vec<bool> = (0..shape.num_elements()).map(|_| u64::from(rng.next_u32()) < threshold).collect();
    x.mask_fill(Tensor::<B, D, Bool>::from_data(TensorData::new(drop, shape), &device), 0.0) / (1.0 - p)
}

pub use fused::layer_norm;

/// Adds a low-rank update to a frozen linear layer's output. One trait for every
/// architecture, generic over its site type ([`bert::Site`], [`llama::LlamaSite`]): the
/// adapters, the ablation variants and the no-op all implement it per site type.
pub trait AdapterHook<B: Backend, S> {
    /// The update for `x [n, in]` at `(layer, site)`, or None when the site is not adapted.
    fn delta(&self, layer: usize, site: S, x: &Tensor<B, 2>, params: &[Tensor<B, 2>], train: bool) -> Option<Tensor<B, 2>>;
}

/// No adapters at all, for any architecture.
pub struct NoHook;

impl<B: Backend, S> AdapterHook<B, S> for NoHook {
    fn delta(&self, _: usize, _: S, _: &Tensor<B, 2>, _: &[Tensor<B, 2>], _: bool) -> Option<Tensor<B, 2>> {
        None
    }
}

/// `x [n, in] @ wt [in, out] + b`.
pub fn affine<B: Backend>(x: Tensor<B, 2>, wt: &Tensor<B, 2>, b: &Tensor<B, 1>) -> Tensor<B, 2> {
    let out = wt.dims()[1];
    x.matmul(wt.clone()) + b.clone().reshape([1, out])
}

/// Loads the MiniLM encoder and its tokenizer.
pub fn load_minilm<B: Backend>(
    files: &crate::assets::MiniLmFiles,
    device: &B::Device,
) -> Result<(bert::Bert<B>, crate::tokenize::BertTokenizer), crate::TrainError> {
    let cfg = bert::BertConfig::from_file(&files.config)?;
    let model = bert::Bert::load(cfg, &files.weights, device)?;
    let tok = crate::tokenize::BertTokenizer::from_file(&files.tokenizer)?;
    Ok((model, tok))
}

#[cfg(test)]
mod tests {
    use super::*;

    type I = burn::backend::NdArray<f32>;

    fn host(t: Tensor<I, 2>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn dropout_drops_p_of_the_entries_scales_the_rest_and_follows_the_backend_seed() {
        let dev = Default::default();
        let x = Tensor::<I, 2>::ones([200, 500], &dev);
        assert_eq!(host(dropout(x.clone(), 0.1, false)), host(x.clone()), "identity outside training");
        I::seed(&dev, 7);
        let a = host(dropout(x.clone(), 0.1, true));
        let zeros = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
        assert!((zeros - 0.1).abs() < 0.005, "dropped fraction {zeros}");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6), "kept entries are scaled by 1/(1-p)");
        let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / a.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "inverted dropout keeps the mean: {mean}");
        I::seed(&dev, 7);
        assert_eq!(host(dropout(x.clone(), 0.1, true)), a, "same backend seed, same mask");
        assert_ne!(host(dropout(x.clone(), 0.1, true)), a, "the next call draws a new mask");
        assert!(host(dropout(x, 1.0, true)).iter().all(|&v| v == 0.0));
    }
}
