//! Trajectory parity with PEFT: rankfit replays, step by step, 40 training steps that
//! PyTorch + PEFT took from the same initialisation on the same batches
//! (`tools/reference/trajectory.py`, fixtures in `tests/fixtures/trajectory/`), through the
//! same per-step code the trainers use ([`after_backward`]: masking, clipping, AdamW,
//! allocation in PEFT's order). It asserts every step's loss and gradient norm, AdaLoRA's
//! rank pattern at every allocation, and the final weights.

mod common;

use std::collections::HashMap;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, TensorData};
use common::{fixture, minilm, B};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rankfit_domain::run::{AdaLoraConfig, MethodConfig};
use rankfit_train::adapters::adalora::orthogonal_regularizer;
use rankfit_train::adapters::{AdapterKind, AdapterSpec, Adapters};
use rankfit_train::allocator::{for_method_with, AllocatorSetup};
use rankfit_train::model::bert::Inputs;
use rankfit_train::model::head::init_head;
use rankfit_train::model::load_minilm;
use rankfit_train::model::weights::{read_safetensors, HostTensor};
use rankfit_train::params::{collect_grads, AdamW, ParamStore};
use rankfit_train::step::{after_backward, Trainable};
use rankfit_train::tokenize::Batch;
use rankfit_train::trainer::learning_rate;
use serde_json::Value;

type Inner = burn::backend::NdArray<f32>;

struct Replay {
    losses: Vec<f64>,
    grad_norms: Vec<f64>,
    /// (step, module -> mask) at every step the reference allocated.
    patterns: Vec<(u64, HashMap<String, Vec<bool>>)>,
    store: ParamStore<Inner>,
}

fn load_json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(&format!("trajectory/{name}.json"))).unwrap()).unwrap()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_i64().unwrap())).collect()
}

fn replay(kind: &str, reference: &Value) -> Replay {
    let cfg = &reference["config"];
    let dev = Default::default();
    let (mut bert, _) = load_minilm::<B>(&minilm(), &dev).unwrap();
    bert.config.hidden_dropout_prob = 0.0;
    bert.config.attention_probs_dropout_prob = 0.0;
    let steps = cfg["steps"].as_u64().unwrap();
    let targets: Vec<String> = serde_json::from_value(cfg["target_modules"].clone()).unwrap();
    let alpha = cfg["lora_alpha"].as_f64().unwrap();

    let (method, rank, target_r) = match kind {
        "lora" => (MethodConfig::Lora, cfg["r"].as_u64().unwrap() as usize, cfg["r"].as_u64().unwrap() as usize),
        _ => {
            let ac = AdaLoraConfig {
                init_r: Some(cfg["init_r"].as_u64().unwrap() as u32),
                tinit: cfg["tinit"].as_u64(),
                tfinal: cfg["tfinal"].as_u64(),
                delta_t: cfg["deltaT"].as_u64(),
                beta1: cfg["beta1"].as_f64().unwrap(),
                beta2: cfg["beta2"].as_f64().unwrap(),
                orth_reg_weight: cfg["orth_reg_weight"].as_f64().unwrap(),
            };
            (MethodConfig::AdaLora(ac), cfg["init_r"].as_u64().unwrap() as usize, cfg["target_r"].as_u64().unwrap() as usize)
        }
    };

    // The model as the trainer builds it, then every trainable tensor from the reference's init.
    let mut store = ParamStore::<Inner>::new();
    let mut rng = StdRng::seed_from_u64(0);
    let head = init_head(&mut store, &bert.pooler, 2, true, &mut rng, &dev);
    let spec = AdapterSpec { kind: AdapterKind::for_method(&method), rank, alpha, dropout: 0.0 };
    let mut adapters = Adapters::build_bert(&bert.config, &targets, spec, &mut store, &mut rng, &dev).unwrap();
    let (init, _) = read_safetensors(&fixture(&format!("trajectory/{kind}_init.safetensors"))).unwrap();
    for p in store.params.iter_mut() {
        match init.get(&p.name) {
            Some(t) => {
                assert_eq!(t.shape, p.value.dims().to_vec(), "{}", p.name);
                p.value = t.to_tensor(&dev);
            }
            None => assert!(p.name.starts_with("bert.pooler."), "{} missing from the reference init", p.name),
        }
    }
    assert_eq!(init.len() + 2, store.params.len(), "the reference trains exactly rankfit's parameters");

    let setup = AllocatorSetup {
        total: steps,
        init_r: rank,
        target_r,
        modules: adapters.list.len() as u64,
        steps_per_epoch: Some(5),
        module_types: Some(2),
        seed: 0,
    };
    let (mut allocator, _) = for_method_with::<Inner>(&method, &setup).unwrap();
    adapters.set_masking(allocator.masking());
    let mut adam = AdamW::new(store.params.len(), cfg["weight_decay"].as_f64().unwrap());
    let (base_lr, warmup, clip) =
        (cfg["learning_rate"].as_f64().unwrap(), cfg["warmup_steps"].as_u64().unwrap(), cfg["grad_clip"].as_f64().unwrap());

    let batches: Vec<(Batch, Vec<f32>)> = reference["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let ids = ints(&b["input_ids"]);
            let n = b["labels"].as_array().unwrap().len();
            let seq = ids.len() / n;
            let batch = Batch {
                batch: n,
                seq,
                ids,
                type_ids: ints(&b["token_type_ids"]),
                mask: ints(&b["attention_mask"]).into_iter().map(|m| m as f32).collect(),
            };
            let onehot = b["labels"].as_array().unwrap().iter().flat_map(|l| if l.as_i64() == Some(0) { [1.0, 0.0] } else { [0.0, 1.0] });
            (batch, onehot.collect())
        })
        .collect();
    let alloc_steps: Vec<u64> =
        reference["allocations"].as_array().map(|a| a.iter().map(|x| x["step"].as_u64().unwrap()).collect()).unwrap_or_default();

    let mut out = Replay { losses: Vec::new(), grad_norms: Vec::new(), patterns: Vec::new(), store: ParamStore::new() };
    for s in 0..steps {
        let (batch, onehot) = &batches[s as usize % batches.len()];
        let inputs = Inputs::<B>::new(batch, &dev);
        let live = store.live::<B>();
        let logits = bert.logits(&inputs, &live, &head, &adapters, true);
        let target = Tensor::<B, 2>::from_data(TensorData::new(onehot.clone(), [batch.batch, 2]), &dev);
        let mut loss = (log_softmax(logits, 1) * target).sum().neg() / batch.batch as f64;
        let mut orth = None;
        if allocator.orth_reg_weight() > 0.0 {
            let reg = orthogonal_regularizer(&adapters, &live).unwrap();
            orth = Some(f64::from(reg.clone().into_scalar()));
            loss = loss + reg * allocator.orth_reg_weight();
        }
        out.losses.push(f64::from(loss.clone().into_scalar()));
        let grads = collect_grads(&live, &loss.backward());
        drop(live);
        let state = Trainable { adapters: &mut adapters, store: &mut store, adam: &mut adam, allocator: allocator.as_mut() };
        let step = after_backward(grads, s + 1, learning_rate(base_lr, s, steps, warmup), clip, orth, state, None).unwrap();
        out.grad_norms.push(step.grad_norm);
        if alloc_steps.contains(&(s + 1)) {
            out.patterns.push((s + 1, adapters.list.iter().map(|a| (a.module.clone(), a.mask.clone())).collect()));
        }
    }
    out.store = store;
    out
}

fn check(kind: &str) {
    let reference = load_json(kind);
    let got = replay(kind, &reference);
    let steps = reference["steps"].as_array().unwrap();
    let mut worst = (0f64, 0f64);
    for (i, st) in steps.iter().enumerate() {
        let (loss, norm) = (st["loss"].as_f64().unwrap(), st["grad_norm"].as_f64().unwrap());
        let dl = (got.losses[i] - loss).abs();
        let dn = (got.grad_norms[i] - norm).abs() / norm.max(1e-12);
        worst = (worst.0.max(dl), worst.1.max(dn));
        assert!(dl <= 2e-4 + 1e-4 * loss.abs(), "{kind} step {}: loss {} vs PEFT {loss}", i + 1, got.losses[i]);
        assert!(dn <= 2e-3, "{kind} step {}: grad norm {} vs PEFT {norm}", i + 1, got.grad_norms[i]);
    }
    eprintln!("{kind}: worst |loss - PEFT| {:.2e}, worst relative grad-norm difference {:.2e}", worst.0, worst.1);

    // AdaLoRA: the same components masked at every allocation.
    let allocations = reference["allocations"].as_array().cloned().unwrap_or_default();
    assert_eq!(got.patterns.len(), allocations.len());
    for ((step, pattern), want) in got.patterns.iter().zip(&allocations) {
        assert_eq!(Some(*step), want["step"].as_u64());
        for (module, mask) in want["rank_pattern"].as_object().unwrap() {
            let mask: Vec<bool> = serde_json::from_value(mask.clone()).unwrap();
            assert_eq!(pattern[module], mask, "{kind} allocation at step {step}: {module}");
        }
    }

    // Final weights. Per tensor, the relative Frobenius distance; per entry, at most a few
    // learning rates (Adam moves an entry whose gradient is near 0 by up to ~lr per step
    // whatever the gradient's exact value, so float-level differences there show as up to
    // ~lr of drift while the function computed stays the same, as the losses above show).
    let lr = reference["config"]["learning_rate"].as_f64().unwrap();
    let (want, _) = read_safetensors(&fixture(&format!("trajectory/{kind}_final.safetensors"))).unwrap();
    let (mut worst_rel, mut worst_abs) = (0f64, 0f64);
    for p in &got.store.params {
        let w = &want[&p.name];
        let g = HostTensor::from_tensor(&p.value);
        assert_eq!(g.shape, w.shape, "{}", p.name);
        let (mut diff, mut norm, mut max_abs) = (0f64, 0f64, 0f64);
        for (a, b) in g.data.iter().zip(&w.data) {
            let d = f64::from(a - b);
            diff += d * d;
            norm += f64::from(*b) * f64::from(*b);
            max_abs = max_abs.max(d.abs());
        }
        let rel = (diff / norm.max(1e-30)).sqrt();
        worst_rel = worst_rel.max(rel);
        worst_abs = worst_abs.max(max_abs);
        assert!(rel <= 2e-2, "{kind} final {}: {rel:.2e} of its norm away from PEFT's", p.name);
        assert!(max_abs <= 2.0 * lr, "{kind} final {}: an entry {max_abs:.2e} away from PEFT's", p.name);
    }
    eprintln!("{kind}: final weights: worst relative distance {worst_rel:.2e}, worst entry {worst_abs:.2e} (lr {lr:e})");
}

#[test]
fn lora_follows_peft_step_by_step() {
    check("lora");
}

#[test]
fn adalora_follows_peft_step_by_step_with_the_same_rank_patterns() {
    check("adalora");
}
