//! Train-step cost of every method on all-MiniLM-L6-v2 (CPU backend), at equal budget in the
//! same run, plus the cost of one allocation round of each adaptive method.
//!
//!     cargo run --release -p rankfit-train --bin train_bench -- [steps] [batch] [seq]
//!     cargo run -p rankfit-train --bin train_bench -- --small      (2 steps, batch 8, seq 32)
//!
//! Defaults: 3 timed steps after 1 warm-up step, batch 32, sequence length 128, adapters on
//! query/value, budget R = 8 (LoRA, ALoRA, RoLoRA start at 8; AdaLoRA and SalientLoRA at 12).
//! Per-step time includes each allocator's per-step work in its allocation phase (AdaLoRA
//! masking every step, SalientLoRA recording its window, RoLoRA's SPARSIFY importance).
//! Round costs: SalientLoRA scoring a full window of T_f = 200 steps over all components,
//! ALoRA's ablation round (2 batched forward passes per live component on a batch of 32),
//! RoLoRA's rescale + interpolate + EXTEND of every adapter. Compare LoRA with
//! tools/reference/bench_peft.py at the same thread count (RAYON_NUM_THREADS / torch threads).

use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rankfit_domain::run::{ALoraConfig, AdaLoraConfig, MethodConfig, RoLoraConfig, SalientLoraConfig};
use rankfit_train::adapters::adalora::orthogonal_regularizer;
use rankfit_train::adapters::{AdapterKind, AdapterSpec, Adapters};
use rankfit_train::allocator::alora::ablation_importance;
use rankfit_train::allocator::rolora::frank_wolfe_update;
use rankfit_train::allocator::salientlora::salience;
use rankfit_train::allocator::{for_method_with, AllocContext, AllocatorSetup};
use rankfit_train::assets::{default_assets_dir, ensure_minilm};
use rankfit_train::data::{HeadTask, Sample};
use rankfit_train::model::bert::Inputs;
use rankfit_train::model::head::init_head;
use rankfit_train::model::load_minilm;
use rankfit_train::params::{clip_grads, collect_grads, AdamW, ParamStore};
use rankfit_train::tokenize::{Batch, Encoded};
use rankfit_train::trainer::BertOracle;
use rankfit_train::CpuBackend as B;

type Inner = <B as burn::tensor::backend::AutodiffBackend>::InnerBackend;

const BUDGET: usize = 8;

/// Every method configured so that the timed steps sit in its allocation phase.
fn methods() -> Vec<(&'static str, MethodConfig)> {
    vec![
        ("lora", MethodConfig::Lora),
        ("adalora", MethodConfig::AdaLora(AdaLoraConfig { tinit: Some(0), tfinal: Some(0), delta_t: Some(1), ..Default::default() })),
        ("salientlora", MethodConfig::SalientLora(SalientLoraConfig { n_i: Some(0), n_f: Some(900), ..Default::default() })),
        ("alora", MethodConfig::ALora(ALoraConfig { k1_epochs: 100.0, ..Default::default() })),
        ("rolora", MethodConfig::RoLora(RoLoraConfig { delta_t: Some(1), ..Default::default() })),
    ]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let small = raw.iter().any(|a| a == "--small");
    let args: Vec<usize> = raw.iter().filter(|a| !a.starts_with("--")).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let (d_steps, d_batch, d_seq) = if small { (2, 8, 32) } else { (3, 32, 128) };
    let steps = args.first().copied().unwrap_or(d_steps);
    let batch = args.get(1).copied().unwrap_or(d_batch);
    let seq = args.get(2).copied().unwrap_or(d_seq);
    let files = ensure_minilm(&default_assets_dir())?;
    let device = Default::default();
    let (bert, _) = load_minilm::<B>(&files, &device)?;
    let mut rng = StdRng::seed_from_u64(0);
    let ids: Vec<i64> = (0..batch * seq).map(|i| if i % seq == 0 { 101 } else { rng.random_range(1000..30000) }).collect();
    let data = Batch { batch, seq, ids, type_ids: vec![0; batch * seq], mask: vec![1.0; batch * seq] };
    let labels: Vec<f32> = (0..batch).flat_map(|i| if i % 2 == 0 { [1.0, 0.0] } else { [0.0, 1.0] }).collect();
    let targets = vec!["query".to_string(), "value".to_string()];
    println!(
        "threads: {}, batch {batch}, seq {seq}, {steps} timed steps, budget R = {BUDGET}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    let mut rows: Vec<(&str, f64, usize)> = Vec::new();
    let mut rounds: Vec<(String, f64)> = Vec::new();
    for (name, method) in methods() {
        let mut store = ParamStore::<Inner>::new();
        let head = init_head(&mut store, &bert.pooler, 2, true, &mut rng, &device);
        let kind = if matches!(method, MethodConfig::Lora | MethodConfig::ALora(_)) { AdapterKind::Lora } else { AdapterKind::Svd };
        let init_r = method.init_rank(BUDGET as u32) as usize;
        let mut adapters = Adapters::build_bert(
            &bert.config,
            &targets,
            AdapterSpec { kind, rank: init_r, alpha: 16.0, dropout: 0.0 },
            &mut store,
            &mut rng,
            &device,
        )?;
        let k = adapters.list.len() as u64;
        let setup =
            AllocatorSetup { total: 1000, init_r, target_r: BUDGET, modules: k, steps_per_epoch: Some(10), module_types: Some(2), seed: 0 };
        let (mut allocator, _) = for_method_with::<Inner>(&method, &setup)?;
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
            let mut orth = None;
            if allocator.orth_reg_weight() > 0.0 {
                if let Some(reg) = orthogonal_regularizer(&adapters, &live) {
                    orth = Some(f64::from(reg.clone().into_scalar()));
                    loss = loss + reg * allocator.orth_reg_weight();
                }
            }
            let grads = loss.backward();
            let mut g = collect_grads(&live, &grads);
            let mut ctx = AllocContext::new(step as u64 + 1, &mut adapters, &mut store, &mut g);
            ctx.adam = Some(&mut adam);
            ctx.orth_loss = orth;
            allocator.allocate(&mut ctx)?;
            drop(ctx);
            let keep = adapters.keep_masks::<Inner>(store.params.len(), &device);
            clip_grads(&mut g, 1.0);
            adam.step(&mut store, &g, &keep, 1e-3);
            // Force the lazy work to finish before stopping the clock.
            let _ = store.params[head.classifier_w].value.clone().sum().into_scalar();
            if step > 0 {
                timed += t0.elapsed().as_secs_f64();
            }
        }
        rows.push((name, timed / steps as f64, adapters.total_live()));

        // One allocation round.
        match name {
            "salientlora" => {
                let n = adapters.total_live();
                let window = 200;
                let series = Tensor::<Inner, 2>::random([n, window], Distribution::Normal(0.0, 1.0), &device);
                let groups: Vec<usize> = adapters.list.iter().enumerate().flat_map(|(i, a)| std::iter::repeat_n(i, a.rank)).collect();
                let orth: Vec<f64> = (0..window).map(|t| 1.0 + t as f64 * 1e-3).collect();
                let t0 = Instant::now();
                let s = salience(series, &groups, &orth, 0.9, 2.0, 0.7);
                rounds.push((format!("salientlora window scoring ({n} components x {window} steps)"), t0.elapsed().as_secs_f64()));
                assert_eq!(s.len(), n);
            }
            "alora" => {
                let val = 32;
                let samples: Vec<Sample> = (0..val)
                    .map(|i| Sample {
                        enc: Encoded {
                            ids: (0..seq).map(|j| if j == 0 { 101 } else { rng.random_range(1000..30000) }).collect(),
                            type_ids: vec![0; seq],
                        },
                        class: i % 2,
                        score: 0.0,
                    })
                    .collect();
                let task = HeadTask::Classification { labels: vec!["a".into(), "b".into()] };
                let mut oracle = BertOracle::<B> { bert: &bert, head, task: &task, samples: &samples };
                let t0 = Instant::now();
                let is = ablation_importance(&adapters, &store, &mut oracle)?;
                let n = is.iter().flatten().flatten().count();
                rounds.push((format!("alora ablation round ({} variants on a batch of {val})", 2 * n), t0.elapsed().as_secs_f64()));
            }
            "rolora" => {
                let ranks: Vec<usize> = adapters.list.iter().map(|a| a.rank).collect();
                let s_raw: Vec<usize> = (0..ranks.len()).map(|i| 1 + i % BUDGET).collect();
                let mut g = vec![None; store.params.len()];
                let mut r2 = StdRng::seed_from_u64(1);
                let t0 = Instant::now();
                let (_, new_ranks) = frank_wolfe_update(&ranks, &s_raw, BUDGET, 1);
                for (i, &r) in new_ranks.iter().enumerate() {
                    let keep: Vec<usize> = (0..r.min(adapters.list[i].rank)).collect();
                    let grow = r - keep.len();
                    adapters.resize(i, &keep, grow, &mut store, &mut adam, &mut g, &mut r2);
                }
                rounds.push(("rolora iteration (rescale + interpolate + extend)".into(), t0.elapsed().as_secs_f64()));
            }
            _ => {}
        }
    }
    let lora = rows[0].1;
    println!("\n| method | s/step | examples/s | overhead vs LoRA | live components |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, per_step, live) in &rows {
        println!("| {name} | {per_step:.3} | {:.2} | {:.2}x | {live} |", batch as f64 / per_step, per_step / lora);
    }
    println!("\n| allocation round | seconds |");
    println!("| --- | --- |");
    for (what, secs) in &rounds {
        println!("| {what} | {secs:.3} |");
    }
    Ok(())
}
