//! Train-step throughput of LoRA and AdaLoRA on all-MiniLM-L6-v2 (CPU backend).
//!
//!     cargo run --release -p rankfit-train --bin train_bench -- [steps] [batch] [seq]
//!
//! Defaults: 3 timed steps after 1 warm-up step, batch 32, sequence length 128, adapters
//! on query/value (LoRA r=8; AdaLoRA r_init=12 -> 8, masking every step). Compare with
//! tools/reference/bench_peft.py at the same thread count (RAYON_NUM_THREADS / torch threads).

use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rankfit_domain::run::AdaLoraConfig;
use rankfit_train::adapters::adalora::orthogonal_regularizer;
use rankfit_train::adapters::{AdapterKind, AdapterSpec, Adapters};
use rankfit_train::allocator::{AdaLoraAllocator, AdaLoraSchedule, FixedRank, RankAllocator};
use rankfit_train::assets::{default_assets_dir, ensure_minilm};
use rankfit_train::model::bert::Inputs;
use rankfit_train::model::head::init_head;
use rankfit_train::model::load_minilm;
use rankfit_train::params::{clip_grads, collect_grads, AdamW, ParamStore};
use rankfit_train::tokenize::Batch;
use rankfit_train::CpuBackend as B;

type Inner = <B as burn::tensor::backend::AutodiffBackend>::InnerBackend;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let steps = args.first().copied().unwrap_or(3);
    let batch = args.get(1).copied().unwrap_or(32);
    let seq = args.get(2).copied().unwrap_or(128);
    let files = ensure_minilm(&default_assets_dir())?;
    let device = Default::default();
    let (bert, _) = load_minilm::<B>(&files, &device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let ids: Vec<i64> = (0..batch * seq).map(|i| if i % seq == 0 { 101 } else { rng.random_range(1000..30000) }).collect();
    let data = Batch { batch, seq, ids, type_ids: vec![0; batch * seq], mask: vec![1.0; batch * seq] };
    let labels: Vec<f32> = (0..batch).flat_map(|i| if i % 2 == 0 { [1.0, 0.0] } else { [0.0, 1.0] }).collect();
    let targets = vec!["query".to_string(), "value".to_string()];
    println!("threads: {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    for kind in [AdapterKind::Lora, AdapterKind::Svd] {
        let mut store = ParamStore::<Inner>::new();
        let head = init_head(&mut store, &bert.pooler, 2, true, &mut rng, &device);
        let rank = if kind == AdapterKind::Lora { 8 } else { 12 };
        let mut adapters = Adapters::build_bert(
            &bert.config,
            &targets,
            AdapterSpec { kind, rank, alpha: 16.0, dropout: 0.0 },
            &mut store,
            &mut rng,
            &device,
        )?;
        let k = adapters.list.len() as u64;
        let total = (steps + 1) as u64;
        let mut allocator: Box<dyn RankAllocator<Inner>> = match kind {
            AdapterKind::Lora => Box::new(FixedRank { budget: 8 * k }),
            AdapterKind::Svd => {
                let cfg = AdaLoraConfig { tinit: Some(0), tfinal: Some(0), delta_t: Some(1), ..AdaLoraConfig::default() };
                Box::new(AdaLoraAllocator::new(&cfg, AdaLoraSchedule::resolve(&cfg, total + 1, 12, 8, k)?))
            }
        };
        let mut adam = AdamW::new(store.params.len(), 0.0);
        let inputs = Inputs::<B>::new(&data, &device);
        let onehot = Tensor::<B, 2>::from_data(TensorData::new(labels.clone(), [batch, 2]), &device);
        let mut timed = 0.0;
        for step in 0..=steps {
            B::seed(&device, step as u64);
            let t0 = Instant::now();
            let live = store.live::<B>();
            let logits = bert.logits(&inputs, &live, &head, &adapters, true);
            let mut loss = (log_softmax(logits, 1) * onehot.clone()).sum().neg() / batch as f64;
            if allocator.orth_reg_weight() > 0.0 {
                if let Some(reg) = orthogonal_regularizer(&adapters, &live) {
                    loss = loss + reg * allocator.orth_reg_weight();
                }
            }
            let grads = loss.backward();
            let mut g = collect_grads(&live, &grads);
            allocator.after_backward(step as u64 + 1, &mut adapters, &mut store, &g);
            let keep = adapters.keep_masks::<Inner>(store.params.len(), &device);
            clip_grads(&mut g, 1.0);
            adam.step(&mut store, &g, &keep, 1e-3);
            // Force the lazy work to finish before stopping the clock.
            let _ = store.params[head.classifier_w].value.clone().sum().into_scalar();
            if step > 0 {
                timed += t0.elapsed().as_secs_f64();
            }
        }
        let name = if kind == AdapterKind::Lora { "lora" } else { "adalora" };
        println!(
            "{name}: {:.2} examples/s ({:.3} s/step, batch {batch}, seq {seq}, {steps} steps)",
            (steps * batch) as f64 / timed,
            timed / steps as f64
        );
    }
    Ok(())
}
