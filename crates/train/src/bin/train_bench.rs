//! Train-step throughput and peak memory of every method on the CPU backend, side by side
//! with PyTorch + transformers + PEFT on the same workload and thread count.
//!
//!     cargo run --release -p rankfit-train --bin train_bench -- [options]
//!
//! Options:
//!   --model minilm|smollm2|all   workload (default minilm)
//!   --methods lora,adalora,...   methods to time (default: all five)
//!   --steps N                    timed steps after one untimed warm-up step (default 3)
//!   --batch B --seq S            override the workload's shape
//!   --peft                       also run tools/reference/bench_peft.py (LoRA and AdaLoRA;
//!                                the interpreter is $RANKFIT_PYTHON or python3)
//!   --rounds                     time one allocation round of each adaptive method (MiniLM)
//!   --json PATH                  write every measurement as JSON
//!   --small                      2 steps, batch 8, seq 32 (a smoke run)
//!   --device cpu|cuda[:N]        the backend (default cpu; cuda needs a `--features cuda`
//!                                build); PyTorch runs on the same device
//!   --checkpoint DIR             load the model from an HF checkpoint directory
//!                                (config.json + model.safetensors; MiniLM also needs
//!                                tokenizer.json) instead of the shipped assets, e.g. the
//!                                random-initialised ones of tools/gpu/make_checkpoints.py
//!   --default-malloc             leave glibc's allocator at its defaults (the baseline of
//!                                `device::keep_freed_memory`, which training uses)
//!   --ops                        instead: time single ops forward + backward on the MiniLM
//!                                workload's shapes (GELU: burn's op, the fused exact op,
//!                                the exact form from tensor ops; softmax: burn's op, the
//!                                fused op) and print tables
//!
//! Workloads (tools/reference/bench_peft.py runs the same ones):
//!   minilm   all-MiniLM-L6-v2 + 2-class head, batch 32, seq 128, adapters on query/value
//!   smollm2  SmolLM2-135M-Instruct, causal-LM loss on every position, batch 8, seq 512,
//!            adapters on q_proj/v_proj
//! Budget R = 8: LoRA, ALoRA and RoLoRA start at rank 8, AdaLoRA and SalientLoRA at 12.
//! Every (model, method) runs in its own child process, so its peak RSS is its own. Each
//! method is configured so that the timed steps sit in its allocation phase (AdaLoRA masking
//! every step, SalientLoRA recording its window, RoLoRA's SPARSIFY importance). Threads:
//! burn's ndarray backend uses one thread per physical core; pass the same number to PyTorch
//! (`RANKFIT_BENCH_THREADS`, default: the machine's physical cores as std reports them).

use std::process::Command;
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Distribution, ElementConversion, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rankfit_domain::run::{ALoraConfig, AdaLoraConfig, MethodConfig, RoLoraConfig, SalientLoraConfig};
use rankfit_train::adapters::adalora::orthogonal_regularizer;
use rankfit_train::adapters::llama::LlamaHook;
use rankfit_train::adapters::{AdapterKind, AdapterSpec, Adapters};
use rankfit_train::allocator::alora::ablation_importance;
use rankfit_train::allocator::rolora::frank_wolfe_update;
use rankfit_train::allocator::salientlora::salience;
use rankfit_train::allocator::{for_method_with, AllocatorSetup, RankAllocator};
use rankfit_train::assets::{default_assets_dir, ensure_minilm, MiniLmFiles};
use rankfit_train::causal::answer_nll;
use rankfit_train::causal::data::{CausalBatch, CausalSample};
use rankfit_train::data::{HeadTask, Sample};
use rankfit_train::device::ComputeDevice;
use rankfit_train::fit::peak_memory_bytes;
use rankfit_train::model::bert::{Bert, HeadParams, Inputs};
use rankfit_train::model::head::init_head;
use rankfit_train::model::llama::Llama;
use rankfit_train::model::llama_assets::ensure_smollm2;
use rankfit_train::model::load_minilm;
use rankfit_train::params::{collect_grads, AdamW, ParamStore};
use rankfit_train::step::{after_backward, Trainable};
use rankfit_train::tokenize::{Batch, Encoded};
use rankfit_train::trainer::BertOracle;
use rankfit_train::CpuBackend;
use serde_json::{json, Value};

use burn::tensor::backend::AutodiffBackend;

type Inner<B> = <B as AutodiffBackend>::InnerBackend;
type Device<B> = <B as burn::tensor::backend::BackendTypes>::Device;

const BUDGET: usize = 8;
const MODELS: [&str; 2] = ["minilm", "smollm2"];
const METHODS: [&str; 5] = ["lora", "adalora", "salientlora", "alora", "rolora"];

/// A method configured so that the timed steps sit in its allocation phase.
fn method_config(name: &str) -> Result<MethodConfig, String> {
    Ok(match name {
        "lora" => MethodConfig::Lora,
        "adalora" => MethodConfig::AdaLora(AdaLoraConfig { tinit: Some(0), tfinal: Some(0), delta_t: Some(1), ..Default::default() }),
        "salientlora" => MethodConfig::SalientLora(SalientLoraConfig { n_i: Some(0), n_f: Some(900), ..Default::default() }),
        "alora" => MethodConfig::ALora(ALoraConfig { k1_epochs: 100.0, ..Default::default() }),
        "rolora" => MethodConfig::RoLora(RoLoraConfig { delta_t: Some(1), ..Default::default() }),
        other => return Err(format!("unknown method {other:?}; one of {METHODS:?}")),
    })
}

/// The default shape of a workload: (batch, seq, adapted modules).
fn workload(model: &str) -> Result<(usize, usize, [&'static str; 2]), String> {
    match model {
        "minilm" => Ok((32, 128, ["query", "value"])),
        "smollm2" => Ok((8, 512, ["q_proj", "v_proj"])),
        other => Err(format!("unknown model {other:?}; one of {MODELS:?}")),
    }
}

#[derive(Debug, Clone)]
struct Args {
    models: Vec<String>,
    methods: Vec<String>,
    steps: usize,
    batch: Option<usize>,
    seq: Option<usize>,
    peft: bool,
    rounds: bool,
    json: Option<String>,
    child: bool,
    ops: bool,
    device: ComputeDevice,
    checkpoint: Option<String>,
    /// Leave glibc's allocator at its defaults (the baseline of `device::keep_freed_memory`).
    default_malloc: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        models: vec!["minilm".into()],
        methods: METHODS.map(String::from).to_vec(),
        steps: 3,
        batch: None,
        seq: None,
        peft: false,
        rounds: false,
        json: None,
        child: false,
        ops: false,
        device: ComputeDevice::Cpu,
        checkpoint: None,
        default_malloc: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{v:?}: {e}"));
        match flag.as_str() {
            "--model" => {
                let v = value()?;
                a.models = if v == "all" { MODELS.map(String::from).to_vec() } else { vec![v] };
            }
            "--methods" => a.methods = value()?.split(',').map(String::from).collect(),
            "--steps" => a.steps = number(value()?)?,
            "--batch" => a.batch = Some(number(value()?)?),
            "--seq" => a.seq = Some(number(value()?)?),
            "--peft" => a.peft = true,
            "--rounds" => a.rounds = true,
            "--json" => a.json = Some(value()?),
            "--child" => a.child = true,
            "--ops" => a.ops = true,
            "--device" => {
                a.device = value()?.parse::<ComputeDevice>().map_err(|e| e.to_string())?.check_available().map_err(|e| e.to_string())?
            }
            "--checkpoint" => a.checkpoint = Some(value()?),
            "--default-malloc" => a.default_malloc = true,
            "--small" => (a.steps, a.batch, a.seq) = (2, Some(8), Some(32)),
            other => return Err(format!("unknown option {other:?} (see the doc comment of train_bench.rs)")),
        }
    }
    for m in &a.models {
        workload(m)?;
    }
    for m in &a.methods {
        method_config(m)?;
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    if args.ops {
        bench_ops(args.steps.max(3));
        return Ok(());
    }
    if args.child {
        if !args.default_malloc {
            rankfit_train::device::keep_freed_memory();
        }
        let result = match args.device {
            ComputeDevice::Cpu => child::<CpuBackend>(&args, Default::default())?,
            #[cfg(feature = "cuda")]
            ComputeDevice::Cuda(index) => child::<rankfit_train::device::CudaBackend>(&args, burn::backend::cuda::CudaDevice { index })?,
            #[cfg(not(feature = "cuda"))]
            ComputeDevice::Cuda(_) => unreachable!("--device was checked against the build's features"),
        };
        println!("{result}");
        return Ok(());
    }
    let threads = std::env::var("RANKFIT_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let mut results = Vec::new();
    for model in &args.models {
        let (batch, seq, _) = workload(model)?;
        let (batch, seq) = (args.batch.unwrap_or(batch), args.seq.unwrap_or(seq));
        println!(
            "\n## {model}: batch {batch}, seq {seq}, {} timed steps, budget R = {BUDGET}, on {}, {threads} threads\n",
            args.steps, args.device
        );
        let mut rows = Vec::new();
        for method in &args.methods {
            let ours = run_child(&args, model, method, batch, seq)?;
            let peft = if args.peft && matches!(method.as_str(), "lora" | "adalora") {
                Some(run_peft(&args, model, method, batch, seq, threads)?)
            } else {
                None
            };
            eprintln!("{model}/{method}: {ours}");
            rows.push((method.clone(), ours, peft));
        }
        print_table(&rows);
        print_rounds(&rows);
        for (method, ours, peft) in rows {
            results.push(json!({ "model": model, "method": method, "rankfit": ours, "pytorch_peft": peft }));
        }
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "bench": "train_bench",
            "threads": threads,
            "device": args.device.to_string(),
            "checkpoint": args.checkpoint,
            "cpu": cpu_model(),
            "results": results,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
        println!("\nwrote {path}");
    }
    Ok(())
}

fn run_child(args: &Args, model: &str, method: &str, batch: usize, seq: usize) -> Result<Value, Box<dyn std::error::Error>> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["--child", "--model", model, "--methods", method, "--steps", &args.steps.to_string()]);
    cmd.args(["--batch", &batch.to_string(), "--seq", &seq.to_string(), "--device", &args.device.to_string()]);
    if args.rounds {
        cmd.arg("--rounds");
    }
    if let Some(dir) = &args.checkpoint {
        cmd.args(["--checkpoint", dir]);
    }
    if args.default_malloc {
        cmd.arg("--default-malloc");
    }
    last_json_line(cmd.output()?, &format!("train_bench child {model}/{method}"))
}

fn run_peft(args: &Args, model: &str, method: &str, batch: usize, seq: usize, threads: usize) -> Result<Value, Box<dyn std::error::Error>> {
    let python = std::env::var("RANKFIT_PYTHON").unwrap_or_else(|_| "python3".into());
    // The checkout this binary was built from, or (a binary carried to another machine) the
    // checkout it runs in.
    let built = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/reference/bench_peft.py");
    let script = if std::path::Path::new(built).is_file() { built } else { "tools/reference/bench_peft.py" };
    let mut cmd = Command::new(python);
    cmd.args([script, "--model-kind", model, "--method", method]);
    for (flag, v) in [("--batch", batch), ("--seq", seq), ("--steps", args.steps), ("--threads", threads)] {
        cmd.args([flag, &v.to_string()]);
    }
    // PyTorch names the devices as rankfit does (cpu, cuda:N).
    cmd.args(["--device", &args.device.to_string()]);
    if let Some(dir) = &args.checkpoint {
        cmd.args(["--checkpoint", dir]);
    }
    last_json_line(cmd.output()?, &format!("bench_peft.py {model}/{method}"))
}

fn last_json_line(out: std::process::Output, what: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).ok_or_else(|| format!("{what} printed no JSON: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

/// GPU memory this process holds (burn's memory pool keeps what the steps needed, so after
/// the timed steps this is their peak), as `nvidia-smi` reports it; None on the CPU.
fn gpu_memory_bytes(device: ComputeDevice) -> Option<u64> {
    if device == ComputeDevice::Cpu {
        return None;
    }
    let out = Command::new("nvidia-smi").args(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]).output().ok()?;
    let pid = std::process::id().to_string();
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (p, mib) = l.split_once(',')?;
        (p.trim() == pid).then(|| mib.trim().parse::<u64>().ok().map(|m| m << 20)).flatten()
    })
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string())
}

fn mib(v: &Value) -> String {
    v.as_u64().map_or("-".into(), |b| format!("{:.0}", b as f64 / (1 << 20) as f64))
}

fn print_table(rows: &[(String, Value, Option<Value>)]) {
    let lora = rows.iter().find(|r| r.0 == "lora").and_then(|r| r.1["seconds_per_step"].as_f64());
    let peft_lora = rows.iter().find(|r| r.0 == "lora").and_then(|r| r.2.as_ref()).and_then(|p| p["seconds_per_step"].as_f64());
    println!("| method | s/step | examples/s | tokens/s | peak RSS MiB | vs rankfit LoRA | PyTorch+PEFT s/step | PyTorch peak MiB | speed vs PyTorch |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (method, ours, peft) in rows {
        let s = ours["seconds_per_step"].as_f64().unwrap_or(f64::NAN);
        let overhead = lora.map_or("-".into(), |l| format!("{:.2}x", s / l));
        // The adaptive methods PEFT lacks are compared with PEFT's LoRA (their common baseline).
        let (torch_s, torch_mem, note) = match peft {
            Some(p) => (p["seconds_per_step"].as_f64(), mib(&p["peak_rss_bytes"]), ""),
            None => (peft_lora, "-".into(), if peft_lora.is_some() { " (vs PEFT LoRA)" } else { "" }),
        };
        let ratio = torch_s.map_or("-".into(), |t| format!("{:.2}x{note}", t / s));
        println!(
            "| {method} | {s:.3} | {:.2} | {:.0} | {} | {overhead} | {} | {torch_mem} | {ratio} |",
            ours["examples_per_second"].as_f64().unwrap_or(f64::NAN),
            ours["tokens_per_second"].as_f64().unwrap_or(f64::NAN),
            mib(&ours["peak_rss_bytes"]),
            torch_s.map_or("-".into(), |t| format!("{t:.3}")),
        );
    }
    println!("\n(speed vs PyTorch = PyTorch s/step ÷ rankfit s/step: above 1 means rankfit is faster)");
}

fn print_rounds(rows: &[(String, Value, Option<Value>)]) {
    let rounds: Vec<&Value> = rows.iter().filter_map(|r| r.1.get("round")).filter(|r| !r.is_null()).collect();
    if rounds.is_empty() {
        return;
    }
    println!("\n| allocation round | seconds |\n| --- | --- |");
    for r in rounds {
        println!("| {} | {:.3} |", r["what"].as_str().unwrap_or("?"), r["seconds"].as_f64().unwrap_or(f64::NAN));
    }
}

/// What differs between the two workloads: how a batch's loss is computed.
enum Workload<B: AutodiffBackend> {
    Bert { bert: Box<Bert<B>>, head: HeadParams, inputs: Inputs<B>, onehot: Tensor<B, 2> },
    Llama { model: Box<Llama<B>>, batch: CausalBatch },
}

impl<B: AutodiffBackend> Workload<B> {
    fn loss(&self, live: &[Tensor<B, 2>], adapters: &Adapters, device: &Device<B>) -> Tensor<B, 1> {
        match self {
            Workload::Bert { bert, head, inputs, onehot } => {
                let logits = bert.logits(inputs, live, head, adapters, true);
                (log_softmax(logits, 1) * onehot.clone()).sum().neg() / onehot.dims()[0] as f64
            }
            Workload::Llama { model, batch } => {
                let hook = LlamaHook::new(adapters, model.config.num_hidden_layers);
                answer_nll(model, batch, live, &hook, true, device) / batch.tokens() as f64
            }
        }
    }
}

/// One (model, method): builds the adapters, runs warm-up + timed steps, prints JSON.
fn child<B: AutodiffBackend>(args: &Args, device: Device<B>) -> Result<Value, Box<dyn std::error::Error>> {
    let (model, method) = (args.models[0].as_str(), args.methods[0].as_str());
    let (d_batch, d_seq, targets) = workload(model)?;
    let (batch, seq) = (args.batch.unwrap_or(d_batch), args.seq.unwrap_or(d_seq));
    let targets: Vec<String> = targets.map(String::from).to_vec();
    let config = method_config(method)?;
    let mut rng = StdRng::seed_from_u64(0);
    let mut store = ParamStore::<Inner<B>>::new();
    let init_r = config.init_rank(BUDGET as u32) as usize;
    let spec = AdapterSpec { kind: AdapterKind::for_method(&config), rank: init_r, alpha: 16.0, dropout: 0.0 };
    let (work, mut adapters) = if model == "minilm" {
        let files = match &args.checkpoint {
            Some(dir) => MiniLmFiles::in_dir(std::path::Path::new(dir)),
            None => ensure_minilm(&default_assets_dir())?,
        };
        let (bert, _) = load_minilm::<B>(&files, &device)?;
        let head = init_head(&mut store, &bert.pooler, 2, true, &mut rng, &device);
        let adapters = Adapters::build_bert(&bert.config, &targets, spec, &mut store, &mut rng, &device)?;
        let ids: Vec<i64> = (0..batch * seq).map(|i| if i % seq == 0 { 101 } else { rng.random_range(1000..30000) }).collect();
        let data = Batch { batch, seq, ids, type_ids: vec![0; batch * seq], mask: vec![1.0; batch * seq] };
        let labels: Vec<f32> = (0..batch).flat_map(|i| if i % 2 == 0 { [1.0, 0.0] } else { [0.0, 1.0] }).collect();
        let onehot = Tensor::from_data(TensorData::new(labels, [batch, 2]), &device);
        (Workload::Bert { inputs: Inputs::new(&data, &device), bert: Box::new(bert), head, onehot }, adapters)
    } else {
        let llama = match &args.checkpoint {
            Some(dir) => Llama::<B>::load_hf(std::path::Path::new(dir), &device)?,
            None => Llama::<B>::load_gguf(&ensure_smollm2(&default_assets_dir())?, &device)?,
        };
        let vocab = llama.config.vocab_size;
        let adapters = Adapters::build_llama(&llama.config, &targets, spec, &mut store, &mut rng, &device)?;
        // Every position but the last predicts the next token (prompt length 1), like labels = input_ids.
        let samples: Vec<CausalSample> = (0..batch)
            .map(|_| CausalSample {
                ids: (0..seq).map(|_| rng.random_range(1000..30000.min(vocab as u32))).collect(),
                prompt_len: 1,
                reference: String::new(),
            })
            .collect();
        let refs: Vec<&CausalSample> = samples.iter().collect();
        (Workload::Llama { batch: CausalBatch::new(&refs, 0), model: Box::new(llama) }, adapters)
    };
    let setup = AllocatorSetup {
        total: 1000,
        init_r,
        target_r: BUDGET,
        modules: adapters.list.len() as u64,
        steps_per_epoch: Some(10),
        module_types: Some(2),
        seed: 0,
    };
    let (mut allocator, _) = for_method_with::<Inner<B>>(&config, &setup)?;
    adapters.set_masking(allocator.masking());
    let mut adam = AdamW::new(store.params.len(), 0.0);
    let trainable = adapters.live_params();
    let mut timed = 0.0;
    for step in 0..=args.steps {
        B::seed(&device, step as u64);
        let t0 = Instant::now();
        train_step(&work, &mut adapters, &mut store, &mut adam, allocator.as_mut(), step as u64 + 1, &device)?;
        if step > 0 {
            timed += t0.elapsed().as_secs_f64();
        }
    }
    let per_step = timed / args.steps.max(1) as f64;
    let round = if args.rounds { allocation_round(method, &work, &mut adapters, &mut store, &mut adam, seq, &device)? } else { None };
    Ok(json!({
        "framework": if args.device == ComputeDevice::Cpu { "rankfit (burn ndarray)" } else { "rankfit (burn cuda)" },
        "device": args.device.to_string(),
        "model": model,
        "method": method,
        "batch": batch,
        "seq": seq,
        "steps": args.steps,
        "seconds_per_step": per_step,
        "examples_per_second": batch as f64 / per_step,
        "tokens_per_second": (batch * seq) as f64 / per_step,
        "trainable_params": trainable,
        "peak_rss_bytes": peak_memory_bytes(),
        "gpu_memory_bytes": gpu_memory_bytes(args.device),
        "round": round,
    }))
}

fn train_step<B: AutodiffBackend>(
    work: &Workload<B>,
    adapters: &mut Adapters,
    store: &mut ParamStore<Inner<B>>,
    adam: &mut AdamW<Inner<B>>,
    allocator: &mut dyn RankAllocator<Inner<B>>,
    step: u64,
    device: &Device<B>,
) -> Result<(), Box<dyn std::error::Error>> {
    let live = store.live::<B>();
    let mut loss = work.loss(&live, adapters, device);
    let mut orth = None;
    if allocator.orth_reg_weight() > 0.0 {
        if let Some(reg) = orthogonal_regularizer(adapters, &live) {
            orth = Some(reg.clone().into_scalar().elem::<f64>());
            loss = loss + reg * allocator.orth_reg_weight();
        }
    }
    let grads = loss.backward();
    let g = collect_grads(&live, &grads);
    drop(live);
    after_backward(g, step, 1e-3, 1.0, orth, Trainable { adapters, store, adam, allocator }, None)?;
    // Force the lazy work to finish before the clock stops.
    let _ = store.params[adapters.list[0].a].value.clone().sum().into_scalar();
    Ok(())
}

/// The cost of one allocation round of an adaptive method (MiniLM only: an ALoRA round on
/// the decoder is thousands of full forward passes, see BENCHMARKS.md).
fn allocation_round<B: AutodiffBackend>(
    method: &str,
    work: &Workload<B>,
    adapters: &mut Adapters,
    store: &mut ParamStore<Inner<B>>,
    adam: &mut AdamW<Inner<B>>,
    seq: usize,
    device: &Device<B>,
) -> Result<Option<Value>, Box<dyn std::error::Error>> {
    let mut rng = StdRng::seed_from_u64(1);
    let t0 = Instant::now();
    let what = match (method, work) {
        ("salientlora", _) => {
            let n = adapters.total_live();
            let window = 200;
            let series = Tensor::<Inner<B>, 2>::random([n, window], Distribution::Normal(0.0, 1.0), device);
            let groups: Vec<usize> = adapters.list.iter().enumerate().flat_map(|(i, a)| std::iter::repeat_n(i, a.rank)).collect();
            let orth: Vec<f64> = (0..window).map(|t| 1.0 + t as f64 * 1e-3).collect();
            let t0 = Instant::now();
            let s = salience(series, &groups, &orth, 0.9, 2.0, 0.7);
            assert_eq!(s.len(), n);
            return Ok(Some(
                json!({"what": format!("salientlora window scoring ({n} components x {window} steps)"), "seconds": t0.elapsed().as_secs_f64()}),
            ));
        }
        ("alora", Workload::Bert { bert, head, .. }) => {
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
            let mut oracle = BertOracle::<B>::new(bert, *head, &task, &samples);
            let is = ablation_importance(adapters, store, &mut oracle)?;
            let n = is.iter().flatten().flatten().count();
            format!("alora ablation round ({} variants on a batch of {val})", 2 * n)
        }
        ("rolora", _) => {
            let ranks: Vec<usize> = adapters.list.iter().map(|a| a.rank).collect();
            let s_raw: Vec<usize> = (0..ranks.len()).map(|i| 1 + i % BUDGET).collect();
            let mut g = vec![None; store.params.len()];
            let (_, new_ranks) = frank_wolfe_update(&ranks, &s_raw, BUDGET, 1);
            for (i, &r) in new_ranks.iter().enumerate() {
                let keep: Vec<usize> = (0..r.min(adapters.list[i].rank)).collect();
                let grow = r - keep.len();
                adapters.resize(i, &keep, grow, store, adam, &mut g, &mut rng);
            }
            "rolora iteration (rescale + interpolate + extend)".to_string()
        }
        _ => return Ok(None),
    };
    Ok(Some(json!({"what": what, "seconds": t0.elapsed().as_secs_f64()})))
}

/// Forward + backward of each implementation of the ops rankfit fuses, on MiniLM's shapes at
/// batch 32 × seq 128 (GELU on the intermediate activation, softmax on the attention scores),
/// `reps` timed repetitions after one warm-up, with the gradient's worst distance from the
/// analytic one computed in f64, relative to its largest entry.
fn bench_ops(reps: usize) {
    use rankfit_train::model::fused::{gelu, gelu_from_ops, softmax};
    let mut rng = StdRng::seed_from_u64(1);
    // The f64 references are plain loops: an f64 tensor on the CPU device would make burn
    // create the f32 tensors that follow as f64.
    let shape = [32 * 128, 1536];
    let data: Vec<f32> = (0..shape[0] * shape[1]).map(|_| rng.random_range(-4.0f32..4.0)).collect();
    // Φ(x) + x φ(x).
    let exact: Vec<f64> = data
        .iter()
        .map(|&x| {
            let x = f64::from(x);
            0.5 * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2)) + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
        })
        .collect();
    let gelus: [Variant<2>; 3] = [
        ("burn gelu (tanh-approximation derivative)", burn::tensor::activation::gelu),
        ("rankfit fused gelu (exact derivative)", gelu),
        ("exact gelu from tensor ops", gelu_from_ops),
    ];
    op_table(&format!("GELU forward + backward, {shape:?} f32"), reps, &data, shape, &gelus, None, &exact);

    let shape = [32, 12, 128, 128];
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-6.0f32..6.0)).collect();
    let upstream: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    // p ⊙ (g − Σ p ⊙ g) per row.
    let row = shape[3];
    let exact: Vec<f64> = data
        .chunks(row)
        .zip(upstream.chunks(row))
        .flat_map(|(x, g)| {
            let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let e: Vec<f64> = x.iter().map(|&v| (f64::from(v) - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            let dot: f64 = e.iter().zip(g).map(|(e, &g)| e / sum * f64::from(g)).sum();
            e.into_iter().zip(g).map(move |(e, &g)| e / sum * (f64::from(g) - dot)).collect::<Vec<_>>()
        })
        .collect();
    let softmaxes: [Variant<4>; 2] =
        [("burn softmax (op-by-op backward)", |x| burn::tensor::activation::softmax(x, 3)), ("rankfit fused softmax", |x| softmax(x, 3))];
    op_table(
        &format!("softmax forward + backward, {shape:?} f32 (last dimension)"),
        reps,
        &data,
        shape,
        &softmaxes,
        Some(&upstream),
        &exact,
    );
}

/// A named implementation of an op, for [`op_table`].
type Variant<const D: usize> = (&'static str, fn(Tensor<CpuBackend, D>) -> Tensor<CpuBackend, D>);

/// One table of [`bench_ops`]: each variant's forward + backward of `sum(f(x) ⊙ upstream)`
/// (`upstream` all ones when `None`).
fn op_table<const D: usize>(
    title: &str,
    reps: usize,
    data: &[f32],
    shape: [usize; D],
    variants: &[Variant<D>],
    upstream: Option<&[f32]>,
    exact: &[f64],
) {
    type B = CpuBackend;
    let dev = Device::<B>::default();
    let upstream = upstream.map(|u| Tensor::<B, D>::from_data(TensorData::new(u.to_vec(), shape), &dev));
    let scale = exact.iter().fold(0f64, |m, v| m.max(v.abs()));
    println!("\n## {title}, {reps} repetitions\n");
    println!("| implementation | ms | speed vs the first | worst gradient error |");
    println!("| --- | --- | --- | --- |");
    let mut base = None;
    for &(name, f) in variants {
        let run = || {
            let x = Tensor::<B, D>::from_data(TensorData::new(data.to_vec(), shape), &dev).require_grad();
            let y = f(x.clone());
            let loss = match &upstream {
                Some(u) => (y * u.clone()).sum(),
                None => y.sum(),
            };
            x.grad(&loss.backward()).expect("x has a gradient")
        };
        let g = run().into_data().convert::<f32>().to_vec::<f32>().expect("f32 gradient");
        let err = g.iter().zip(exact).map(|(&a, &b)| (f64::from(a) - b).abs()).fold(0f64, f64::max);
        let started = Instant::now();
        for _ in 0..reps {
            let _ = run();
        }
        let ms = started.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let base_ms = *base.get_or_insert(ms);
        println!("| {name} | {ms:.1} | {:.2}x | {:.1e} |", base_ms / ms, err / scale.max(f64::MIN_POSITIVE));
    }
}
