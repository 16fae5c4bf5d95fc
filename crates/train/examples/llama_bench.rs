//! Times SmolLM2 (GGUF) on the CPU backend: load, prefill and per-token decode with the KV
//! cache. `cargo run --release -p rankfit-train --example llama_bench [ASSETS_DIR]`.

use std::time::Instant;

use burn::tensor::Tensor;
use rankfit_train::model::llama::{DecoderInputs, Llama, NoHook};
use rankfit_train::model::llama_assets::ensure_smollm2;

type I = burn::backend::NdArray<f32>;

fn main() -> Result<(), rankfit_train::TrainError> {
    let assets = std::env::args().nth(1).map(Into::into).unwrap_or_else(rankfit_train::assets::default_assets_dir);
    let path = ensure_smollm2(&assets)?;
    let dev = Default::default();
    let t = Instant::now();
    let model = Llama::<I>::load_gguf(&path, &dev)?;
    println!("load + dequantize: {:.2?}", t.elapsed());
    let prompt: Vec<u32> = (0..64).map(|i| 1000 + i * 7).collect();
    let mut cache = model.new_cache();
    let t = Instant::now();
    let _ = model.next_token_logits(&DecoderInputs::single(&prompt, &dev), &mut cache, &[], &NoHook).into_data();
    println!("prefill {} tokens: {:.2?}", prompt.len(), t.elapsed());
    let steps = 16;
    let t = Instant::now();
    for i in 0..steps {
        let _ = model.next_token_logits(&DecoderInputs::single(&[2000 + i], &dev), &mut cache, &[], &NoHook).into_data();
    }
    println!("decode: {:.2?}/token (cache {} → {})", t.elapsed() / steps, prompt.len(), cache.len());
    let x = Tensor::<I, 2>::ones([1, model.config.hidden_size], &dev);
    let t = Instant::now();
    for _ in 0..steps {
        let _ = model.lm_head(x.clone()).into_data();
    }
    println!("lm_head alone: {:.2?}/token", t.elapsed() / steps);
    Ok(())
}
