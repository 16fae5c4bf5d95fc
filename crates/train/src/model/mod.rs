//! Backbones and the small tensor helpers they share.

pub mod bert;
pub mod gguf;
pub mod head;
pub mod llama;
pub mod llama_assets;
pub mod llama_generate;
pub mod llama_tokenizer;
pub mod weights;

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

/// Inverted dropout (`p` = drop probability); identity outside training.
pub fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, p: f64, train: bool) -> Tensor<B, D> {
    if !train || p <= 0.0 {
        return x;
    }
    let drop = x.random_like(Distribution::Bernoulli(p)).equal_elem(1.0);
    x.mask_fill(drop, 0.0) / (1.0 - p)
}

/// LayerNorm over the last dim with biased variance (PyTorch semantics).
pub fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>, gamma: &Tensor<B, 1>, beta: &Tensor<B, 1>, eps: f64) -> Tensor<B, D> {
    let last = D - 1;
    let mean = x.clone().mean_dim(last);
    let centered = x - mean;
    let var = centered.clone().square().mean_dim(last);
    let normed = centered / (var + eps).sqrt();
    let h = gamma.dims()[0];
    let mut shape = [1usize; D];
    shape[last] = h;
    normed * gamma.clone().reshape(shape) + beta.clone().reshape(shape)
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
