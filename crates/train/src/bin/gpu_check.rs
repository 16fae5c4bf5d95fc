//! The Rust side of the device check (`tools/gpu/check.sh`): what rankfit computes on one
//! backend, written to files that the PyTorch side (`tools/gpu/parity.py`,
//! `tools/reference/check_peft_load.py`) compares with its own on the same device.
//!
//!     gpu_check info
//!     gpu_check parity --checkpoints DIR --out DIR [--device cuda] [--batch 4 --seq 32]
//!     gpu_check train  --checkpoints DIR --out DIR [--device cuda] [--steps 24] [--methods ...]
//!
//! `--checkpoints` is the output of tools/gpu/make_checkpoints.py: `minilm/` (config.json,
//! model.safetensors, tokenizer.json) and `smollm2/` (config.json, model.safetensors).
//!
//! - `parity`: per model (MiniLM with a 2-class head, SmolLM2) and method (LoRA r = 8,
//!   AdaLoRA r = 12, on the attention's query/value projections, with B and E drawn non-zero
//!   so that every adapter tensor gets a gradient), one forward and backward on seeded random
//!   ids without dropout: writes `<model>-<method>/inputs.json`, `tensors.safetensors`
//!   (logits, the base model's logits, the loss, every adapter tensor's gradient under
//!   `<module>.lora_A|lora_B|lora_E`) and `adapter/` (the PEFT export of the same adapter).
//! - `train`: each method's real training run (`rankfit_train::train_on`, the worker's entry
//!   point) on the synthetic sentiment task over the random MiniLM; writes `<method>/`
//!   with the PEFT export (`adapter_peft/`, `adapter_merged/`) and `rust_logits.json` (the
//!   reloaded export's validation logits, computed on the device), and prints a summary
//!   (steps, seconds, mean loss of the first and last quarter, validation metrics, the final
//!   live rank against the budget).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rankfit_domain::dataset::Split;
use rankfit_domain::run::{AdaLoraConfig, Method, MethodConfig, RunConfig, TrainingConfig};
use rankfit_train::adapters::llama::LlamaHook;
use rankfit_train::adapters::{AdapterKind, AdapterSpec, Adapters};
use rankfit_train::allocator::AdaLoraSchedule;
use rankfit_train::assets::{locate_minilm, MiniLmFiles};
use rankfit_train::causal::answer_nll;
use rankfit_train::causal::data::{CausalBatch, CausalSample};
use rankfit_train::data::{prepare, synthetic_sentiment};
use rankfit_train::device::ComputeDevice;
use rankfit_train::export::{load_peft, AdapterExport, ExportMethod, SavedModules, TaskType, TrainedAdapter};
use rankfit_train::model::bert::{Bert, BertConfig, Inputs};
use rankfit_train::model::head::init_head;
use rankfit_train::model::llama::{DecoderInputs, Llama};
use rankfit_train::model::load_minilm;
use rankfit_train::model::weights::{write_safetensors, HostTensor};
use rankfit_train::model::NoHook;
use rankfit_train::params::ParamStore;
use rankfit_train::tokenize::{collate, Batch};
use rankfit_train::{train_on, CpuBackend, TrainEvent, TrainJob};
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error>;
type Device<B> = <B as burn::tensor::backend::BackendTypes>::Device;

const ALPHA: f64 = 16.0;
const BUDGET: u32 = 8;

struct Args {
    command: String,
    checkpoints: PathBuf,
    out: PathBuf,
    device: ComputeDevice,
    batch: usize,
    seq: usize,
    steps: u64,
    methods: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or("usage: gpu_check info|parity|train [options] (see the doc comment of gpu_check.rs)")?;
    let mut a = Args {
        command,
        checkpoints: PathBuf::new(),
        out: PathBuf::new(),
        device: ComputeDevice::Cpu,
        batch: 4,
        seq: 32,
        steps: 24,
        methods: ["lora", "adalora", "salientlora", "alora", "rolora"].map(String::from).to_vec(),
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{v:?}: {e}"));
        match flag.as_str() {
            "--checkpoints" => a.checkpoints = value()?.into(),
            "--out" => a.out = value()?.into(),
            "--device" => {
                a.device = value()?.parse::<ComputeDevice>().map_err(|e| e.to_string())?.check_available().map_err(|e| e.to_string())?
            }
            "--batch" => a.batch = number(value()?)?,
            "--seq" => a.seq = number(value()?)?,
            "--steps" => a.steps = number(value()?)? as u64,
            "--methods" => a.methods = value()?.split(',').map(String::from).collect(),
            other => return Err(format!("unknown option {other:?} (see the doc comment of gpu_check.rs)")),
        }
    }
    if a.command != "info" && (a.checkpoints.as_os_str().is_empty() || a.out.as_os_str().is_empty()) {
        return Err(format!("{} needs --checkpoints DIR and --out DIR", a.command));
    }
    Ok(a)
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let report = match args.device {
        ComputeDevice::Cpu => dispatch::<CpuBackend>(&args, Default::default())?,
        #[cfg(feature = "cuda")]
        ComputeDevice::Cuda(index) => dispatch::<rankfit_train::device::CudaBackend>(&args, burn::backend::cuda::CudaDevice { index })?,
        #[cfg(not(feature = "cuda"))]
        ComputeDevice::Cuda(_) => unreachable!("--device was checked against the build's features"),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn dispatch<B: AutodiffBackend>(args: &Args, device: Device<B>) -> Result<Value, Error> {
    match args.command.as_str() {
        "info" => Ok(json!({
            "rankfit": env!("CARGO_PKG_VERSION"),
            "features": { "cuda": cfg!(feature = "cuda") },
            "backend": std::any::type_name::<B>(),
            "device": args.device.to_string(),
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        })),
        "parity" => {
            std::fs::create_dir_all(&args.out)?;
            let mut cases = Vec::new();
            for method in ["lora", "adalora"] {
                cases.push(parity_minilm::<B>(args, method, &device)?);
                cases.push(parity_smollm2::<B>(args, method, &device)?);
            }
            Ok(json!({ "device": args.device.to_string(), "cases": cases }))
        }
        "train" => train_all::<B>(args, &device),
        other => Err(format!("unknown command {other:?}: info, parity or train").into()),
    }
}

/// LoRA (r = 8) or AdaLoRA (r = 12, the budget's initial rank) on `targets`, with B (and E)
/// drawn non-zero: at PEFT's initialisation (B = 0, E = 0) A would get no gradient.
fn adapters_for<B: AutodiffBackend>(
    method: &str,
    build: impl FnOnce(AdapterSpec, &mut ParamStore<B::InnerBackend>, &mut StdRng) -> Result<Adapters, rankfit_train::TrainError>,
    store: &mut ParamStore<B::InnerBackend>,
    rng: &mut StdRng,
    device: &Device<B>,
) -> Result<(Adapters, ExportMethod), Error> {
    let (kind, rank) = if method == "lora" { (AdapterKind::Lora, BUDGET as usize) } else { (AdapterKind::Svd, 12) };
    let adapters = build(AdapterSpec { kind, rank, alpha: ALPHA, dropout: 0.0 }, store, rng)?;
    for ad in &adapters.list {
        let b: Vec<f32> = (0..ad.out_features * ad.rank).map(|_| rng.random_range(-0.1f32..0.1)).collect();
        store.params[ad.b.index()].value = Tensor::from_data(TensorData::new(b, [ad.out_features, ad.rank]), device);
        if let Some(e) = ad.e {
            let v: Vec<f32> = (0..ad.rank).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            store.params[e.index()].value = Tensor::from_data(TensorData::new(v, [ad.rank, 1]), device);
        }
    }
    let export = match kind {
        AdapterKind::Lora => ExportMethod::Lora { r: rank },
        AdapterKind::Svd => {
            let modules = adapters.list.len() as u64;
            let schedule = AdaLoraSchedule::resolve(&AdaLoraConfig::default(), 100, rank as u64, u64::from(BUDGET), modules)?;
            ExportMethod::AdaLora { init_r: rank, target_r: BUDGET as usize, schedule, beta1: 0.85, beta2: 0.85, orth_reg_weight: 0.5 }
        }
    };
    Ok((adapters, export))
}

/// Every adapter tensor's gradient, named `<module>.lora_A|lora_B|lora_E`.
fn adapter_grads<B: AutodiffBackend>(adapters: &Adapters, live: &[Tensor<B, 2>], grads: &B::Gradients) -> BTreeMap<String, HostTensor> {
    let mut out = BTreeMap::new();
    for ad in &adapters.list {
        for (name, id) in [("lora_A", Some(ad.a)), ("lora_B", Some(ad.b)), ("lora_E", ad.e)] {
            if let Some(id) = id {
                if let Some(g) = live[id.index()].grad(grads) {
                    out.insert(format!("{}.{name}", ad.module), HostTensor::from_tensor(&g));
                }
            }
        }
    }
    out
}

fn host<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> HostTensor {
    let dims = t.dims().to_vec();
    let n: usize = dims.iter().product();
    HostTensor::new(dims, t.reshape([n]).into_data().convert::<f32>().to_vec::<f32>().expect("f32 tensor"))
}

fn random_ids(rng: &mut StdRng, batch: usize, seq: usize, vocab: usize, cls: Option<i64>) -> Vec<i64> {
    (0..batch * seq)
        .map(|i| match cls {
            Some(c) if i % seq == 0 => c,
            _ => rng.random_range(1000..30000.min(vocab as i64)),
        })
        .collect()
}

/// Writes one case's files and returns its summary.
#[allow(clippy::too_many_arguments)]
fn write_case(
    args: &Args,
    case: &str,
    ids: &[i64],
    labels: Option<&[usize]>,
    loss: f64,
    mut tensors: BTreeMap<String, HostTensor>,
    export: &AdapterExport<'_, impl burn::tensor::backend::Backend>,
    seconds: f64,
) -> Result<Value, Error> {
    let dir = args.out.join(case);
    std::fs::create_dir_all(&dir)?;
    export.write_peft(&dir.join("adapter"))?;
    tensors.insert("loss".into(), HostTensor::new(vec![1], vec![loss as f32]));
    let grads = tensors.keys().filter(|k| k.contains(".lora_")).count();
    write_safetensors(&dir.join("tensors.safetensors"), &tensors, None)?;
    let inputs = json!({ "batch": args.batch, "seq": args.seq, "ids": ids, "labels": labels, "loss": loss });
    std::fs::write(dir.join("inputs.json"), serde_json::to_vec(&inputs)?)?;
    Ok(json!({ "case": case, "loss": loss, "gradients": grads, "seconds": seconds }))
}

fn parity_minilm<B: AutodiffBackend>(args: &Args, method: &str, device: &Device<B>) -> Result<Value, Error> {
    let t0 = Instant::now();
    let dir = args.checkpoints.join("minilm");
    let bert = Bert::<B>::load(BertConfig::from_file(&dir.join("config.json"))?, &dir.join("model.safetensors"), device)?;
    let mut rng = StdRng::seed_from_u64(17);
    let (b, s) = (args.batch, args.seq);
    let ids = random_ids(&mut rng, b, s, bert.config.vocab_size, Some(101));
    let labels: Vec<usize> = (0..b).map(|i| i % 2).collect();
    let inputs = Inputs::new(&Batch { batch: b, seq: s, ids: ids.clone(), type_ids: vec![0; b * s], mask: vec![1.0; b * s] }, device);
    let mut store = ParamStore::<B::InnerBackend>::new();
    let head = init_head(&mut store, &bert.pooler, 2, true, &mut rng, device);
    let targets = vec!["query".to_string(), "value".to_string()];
    let cfg = bert.config.clone();
    let (adapters, export_method) = adapters_for::<B>(
        method,
        |spec, store, rng| Adapters::build_bert(&cfg, &targets, spec, store, rng, device),
        &mut store,
        &mut rng,
        device,
    )?;
    let live = store.live::<B>();
    let logits = bert.logits(&inputs, &live, &head, &adapters, false);
    let onehot: Vec<f32> = labels.iter().flat_map(|&l| if l == 0 { [1.0, 0.0] } else { [0.0, 1.0] }).collect();
    let onehot = Tensor::<B, 2>::from_data(TensorData::new(onehot, [b, 2]), device);
    let loss = (log_softmax(logits.clone(), 1) * onehot).sum().neg() / b as f64;
    let grads = loss.backward();
    let mut tensors = adapter_grads(&adapters, &live, &grads);
    tensors.insert("logits".into(), host(logits.inner()));
    let loss = loss.into_scalar().elem::<f64>();
    let labels_names = ["a".to_string(), "b".to_string()];
    let trained = TrainedAdapter {
        store: &store,
        adapters: &adapters,
        head,
        train_pooler: true,
        method: export_method,
        target_modules: &targets,
        lora_alpha: ALPHA,
        lora_dropout: 0.0,
        base_model: "random-minilm",
        labels: &labels_names,
    };
    write_case(args, &format!("minilm-{method}"), &ids, Some(&labels), loss, tensors, &trained.adapter(), t0.elapsed().as_secs_f64())
}

fn parity_smollm2<B: AutodiffBackend>(args: &Args, method: &str, device: &Device<B>) -> Result<Value, Error> {
    let t0 = Instant::now();
    let model = Llama::<B>::load_hf(&args.checkpoints.join("smollm2"), device)?;
    let mut rng = StdRng::seed_from_u64(23);
    let (b, s) = (args.batch, args.seq);
    let ids = random_ids(&mut rng, b, s, model.config.vocab_size, None);
    let mut store = ParamStore::<B::InnerBackend>::new();
    let targets = vec!["q_proj".to_string(), "v_proj".to_string()];
    let cfg = model.config.clone();
    let (adapters, export_method) = adapters_for::<B>(
        method,
        |spec, store, rng| Adapters::build_llama(&cfg, &targets, spec, store, rng, device),
        &mut store,
        &mut rng,
        device,
    )?;
    let ids_u32: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let inputs = DecoderInputs::new(&ids_u32, None, b, s, device);
    let live = store.live::<B>();
    let hook = LlamaHook::new(&adapters, model.config.num_hidden_layers);
    let base = model.logits(&inputs, &live, &NoHook, false);
    let logits = model.logits(&inputs, &live, &hook, false);
    // Next-token loss on every position (prompt length 1), as transformers' labels = input_ids.
    let samples: Vec<CausalSample> =
        ids_u32.chunks(s).map(|row| CausalSample { ids: row.to_vec(), prompt_len: 1, reference: String::new() }).collect();
    let batch = CausalBatch::new(&samples.iter().collect::<Vec<_>>(), 0);
    let loss = answer_nll(&model, &batch, &live, &hook, false, device) / batch.tokens() as f64;
    let grads = loss.backward();
    let mut tensors = adapter_grads(&adapters, &live, &grads);
    tensors.insert("logits".into(), host(logits.inner()));
    tensors.insert("base_logits".into(), host(base.inner()));
    let loss = loss.into_scalar().elem::<f64>();
    let export = AdapterExport {
        store: &store,
        adapters: &adapters,
        method: export_method,
        target_modules: &targets,
        lora_alpha: ALPHA,
        lora_dropout: 0.0,
        base_model: "random-smollm2",
        task_type: TaskType::CausalLm,
        saved: SavedModules::default(),
    };
    write_case(args, &format!("smollm2-{method}"), &ids, None, loss, tensors, &export, t0.elapsed().as_secs_f64())
}

fn method_config(name: &str) -> Result<MethodConfig, Error> {
    Method::parse(name).map(MethodConfig::default_for).ok_or_else(|| format!("unknown method {name:?}").into())
}

/// Every method's real training run on the device, its export and the export's logits.
fn train_all<B: AutodiffBackend>(args: &Args, device: &Device<B>) -> Result<Value, Error> {
    let assets = args.out.join("assets");
    let files = minilm_assets(&args.checkpoints.join("minilm"), &assets)?;
    let dataset = synthetic_sentiment();
    // The base model every export is reloaded onto.
    let (bert, tok) = load_minilm::<B>(&files, device)?;
    let data = prepare(&dataset, &tok, args.seq)?;
    let validation = Inputs::new(&collate(&data.validation.iter().map(|s| &s.enc).collect::<Vec<_>>(), tok.pad_id()), device);
    let texts: Vec<String> = dataset.split(Split::Validation).map(|e| e.text_a.clone()).collect();
    let mut runs = Vec::new();
    for method in &args.methods {
        let work_dir = args.out.join(method);
        let _ = std::fs::remove_dir_all(&work_dir);
        std::fs::create_dir_all(&work_dir)?;
        let training = TrainingConfig {
            max_steps: Some(args.steps),
            batch_size: 16,
            learning_rate: 5e-3,
            warmup_ratio: 0.1,
            max_seq_len: args.seq as u32,
            eval_every: 0,
            checkpoint_every: 0,
            ..TrainingConfig::default()
        };
        let job = TrainJob {
            run_id: uuid::Uuid::nil(),
            base_model: "all-minilm-l6-v2".into(),
            config: RunConfig { training, method: method_config(method)? },
            budget: 2,
            seed: 7,
            dataset: dataset.clone(),
            selection_metric: None,
            assets_dir: assets.clone(),
            work_dir: work_dir.clone(),
        };
        let t0 = Instant::now();
        let mut losses = Vec::new();
        let mut ranks = Vec::new();
        let out = train_on(
            args.device,
            &job,
            &mut |e| match e {
                TrainEvent::Metric { split, name, value, .. } if split == "train" && name == "loss" => losses.push(value),
                TrainEvent::Ranks(m) => ranks.push((m.total(), m.budget)),
                _ => {}
            },
            &AtomicBool::new(false),
        )?;
        let seconds = t0.elapsed().as_secs_f64();
        // The trainer writes every artifact under one export directory of the run's work dir.
        let peft_dir = out.artifacts.first().map(|(_, dir)| dir.clone()).ok_or_else(|| format!("{method}: the run exported nothing"))?;
        let export = peft_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| work_dir.clone());
        // The reloaded export's validation logits, on the device: what PEFT must reproduce.
        let loaded = load_peft::<B>(&peft_dir, &bert, device)?;
        let logits = bert.logits(&validation, &loaded.store.values(), &loaded.head, &loaded.adapters, false);
        let logits = logits.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        let rust_logits = json!({ "texts": texts, "max_len": args.seq, "adapter_peft": logits });
        std::fs::write(export.join("rust_logits.json"), serde_json::to_vec(&rust_logits)?)?;
        let last = ranks.last().copied();
        runs.push(json!({
            "method": method,
            "steps": losses.len(),
            "seconds": seconds,
            // Mean training loss over the first and the last quarter of the steps.
            "loss_head": mean(&losses[..losses.len().div_ceil(4)]),
            "loss_tail": mean(&losses[losses.len() - losses.len().div_ceil(4)..]),
            "validation": out.evaluations.iter().find(|(s, _)| s == "validation").map(|(_, m)| m.clone()),
            "final_live_rank": last.map(|r| r.0),
            "final_budget": last.map(|r| r.1),
            "within_budget": last.is_some_and(|(total, budget)| total <= budget),
            "export": export,
        }));
    }
    Ok(json!({ "device": args.device.to_string(), "runs": runs }))
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The random MiniLM laid out as the assets directory a training job reads.
fn minilm_assets(checkpoint: &Path, assets: &Path) -> Result<MiniLmFiles, Error> {
    let dir = assets.join("models/all-minilm-l6-v2");
    std::fs::create_dir_all(&dir)?;
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        let (from, to) = (checkpoint.join(f), dir.join(f));
        if !to.exists() {
            std::fs::hard_link(&from, &to)
                .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
                .map_err(|e| format!("{}: {e}", from.display()))?;
        }
    }
    Ok(locate_minilm(assets)?)
}
