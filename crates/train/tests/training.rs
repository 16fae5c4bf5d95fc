//! End-to-end training through the public `train` entry point on a small sentiment task:
//! loss goes down, AdaLoRA keeps to its budget schedule, exports reload to the same
//! logits, cancellation and resume from a checkpoint work.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{assets_dir, minilm, B};
use rankfit_domain::dataset::{Split, Target};
use rankfit_domain::run::{ALoraConfig, AdaLoraConfig, MethodConfig, RoLoraConfig, RunConfig, SalientLoraConfig, TrainingConfig};
use rankfit_train::allocator::AdaLoraSchedule;
use rankfit_train::data::{prepare, synthetic_sentiment};
use rankfit_train::export::load_peft;
use rankfit_train::model::bert::Inputs;
use rankfit_train::model::load_minilm;
use rankfit_train::tokenize::collate;
use rankfit_train::{train, ArtifactKind, TrainError, TrainEvent, TrainJob};

fn job(method: MethodConfig, work_dir: &Path, max_steps: u64) -> TrainJob {
    let training = TrainingConfig {
        max_steps: Some(max_steps),
        batch_size: 16,
        learning_rate: 5e-3,
        warmup_ratio: 0.1,
        max_seq_len: 32,
        eval_every: 0,
        checkpoint_every: 0,
        ..TrainingConfig::default()
    };
    TrainJob {
        run_id: uuid::Uuid::nil(),
        base_model: "all-minilm-l6-v2".into(),
        config: RunConfig { training, method },
        budget: 2,
        seed: 7,
        selection_metric: None,
        dataset: synthetic_sentiment(),
        assets_dir: assets_dir(),
        work_dir: work_dir.to_path_buf(),
    }
}

/// burn's CPU backend draws dropout masks from one process-wide generator that each run
/// seeds per step (`B::seed`): two runs training at the same time in one process (parallel
/// test threads) interleave their draws, and runs that must reproduce each other (resume vs
/// uninterrupted) stop being comparable. The tests of this file train one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn train_losses(events: &[TrainEvent]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Metric { split, name, value, .. } if split == "train" && name == "loss" => Some(*value),
            _ => None,
        })
        .collect()
}

/// Logits of the validation split through a PEFT adapter dir.
fn peft_logits(dir: &Path) -> Vec<f32> {
    let dev = Default::default();
    let (bert, tok) = load_minilm::<B>(&minilm(), &dev).unwrap();
    let loaded = load_peft::<B>(dir, &bert, &dev).unwrap();
    let data = prepare(&synthetic_sentiment(), &tok, 32).unwrap();
    let encs: Vec<_> = data.validation.iter().map(|s| &s.enc).collect();
    let batch = collate(&encs, tok.pad_id());
    bert.logits(&Inputs::new(&batch, &dev), &loaded.store.values(), &loaded.head, &loaded.adapters, false)
        .into_data()
        .to_vec::<f32>()
        .unwrap()
}

fn accuracy(logits: &[f32]) -> f64 {
    let data_labels: Vec<usize> = synthetic_sentiment()
        .split(Split::Validation)
        .map(|e| match &e.target {
            Target::Class(c) if c == "positive" => 1,
            _ => 0,
        })
        .collect();
    let hits = data_labels.iter().enumerate().filter(|(i, &l)| usize::from(logits[i * 2 + 1] > logits[i * 2]) == l).count();
    hits as f64 / data_labels.len() as f64
}

#[test]
fn lora_learns_and_its_export_reloads() {
    let _serial = serial();
    minilm();
    let dir = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    let out = train(&job(MethodConfig::Lora, dir.path(), 48), &mut |e| events.push(e), &AtomicBool::new(false)).unwrap();
    let losses = train_losses(&events);
    assert_eq!(losses.len(), 48);
    let head: f64 = losses[..8].iter().sum::<f64>() / 8.0;
    let tail: f64 = losses[40..].iter().sum::<f64>() / 8.0;
    assert!(tail < head * 0.7, "loss did not go down: {head} -> {tail}");
    let (split, metrics) = &out.evaluations[0];
    assert_eq!(split, "validation");
    let acc = metrics["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.75, "validation accuracy {acc}");
    assert!(metrics.contains_key("f1") && metrics.contains_key("mcc"));

    let kinds: Vec<ArtifactKind> = out.artifacts.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, vec![ArtifactKind::AdapterPeft, ArtifactKind::AdapterMerged]);
    let peft_dir = &out.artifacts[0].1;
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(peft_dir.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 2);
    let logits = peft_logits(peft_dir);
    assert_eq!(accuracy(&logits), acc, "reloaded adapter scores differently");

    // The merged model gives the same logits as base + adapter.
    let merged = &out.artifacts[1].1;
    let dev = Default::default();
    let files = rankfit_train::assets::MiniLmFiles::in_dir(merged);
    let (bert, tok) = load_minilm::<B>(&files, &dev).unwrap();
    let (tensors, _) = rankfit_train::model::weights::read_safetensors(&merged.join("model.safetensors")).unwrap();
    let mut store = rankfit_train::params::ParamStore::<B>::new();
    let h = 384;
    let hp = rankfit_train::model::bert::HeadParams {
        pooler_w: store.push("p", tensors["bert.pooler.dense.weight"].to_tensor(&dev), false, false),
        pooler_b: store.push(
            "pb",
            rankfit_train::model::weights::HostTensor::new(vec![1, h], tensors["bert.pooler.dense.bias"].data.clone()).to_tensor(&dev),
            false,
            false,
        ),
        classifier_w: store.push("c", tensors["classifier.weight"].to_tensor(&dev), false, false),
        classifier_b: store.push(
            "cb",
            rankfit_train::model::weights::HostTensor::new(vec![1, 2], tensors["classifier.bias"].data.clone()).to_tensor(&dev),
            false,
            false,
        ),
    };
    let data = prepare(&synthetic_sentiment(), &tok, 32).unwrap();
    let batch = collate(&data.validation.iter().map(|s| &s.enc).collect::<Vec<_>>(), tok.pad_id());
    let merged_logits = bert
        .logits(&Inputs::new(&batch, &dev), &store.values(), &hp, &rankfit_train::model::bert::NoHook, false)
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    for (a, b) in merged_logits.iter().zip(&logits) {
        assert!((a - b).abs() < 1e-4, "merged {a} vs adapter {b}");
    }
    if let Some(export_to) = std::env::var_os("RANKFIT_EXPORT_DIR") {
        let to = Path::new(&export_to);
        std::fs::create_dir_all(to).unwrap();
        for (kind, p) in &out.artifacts {
            let dest = to.join(kind.as_str());
            let _ = std::fs::remove_dir_all(&dest);
            std::fs::create_dir_all(&dest).unwrap();
            for f in std::fs::read_dir(p).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), dest.join(f.file_name())).unwrap();
            }
        }
        let texts: Vec<String> = synthetic_sentiment().split(Split::Validation).map(|e| e.text_a.clone()).collect();
        std::fs::write(
            to.join("rust_logits.json"),
            serde_json::to_vec(&serde_json::json!({ "texts": texts, "max_len": 32, "adapter_peft": logits })).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn adalora_keeps_to_the_budget_schedule() {
    let _serial = serial();
    minilm();
    let dir = tempfile::tempdir().unwrap();
    let total = 40;
    let ada = AdaLoraConfig { init_r: Some(3), ..AdaLoraConfig::default() };
    let schedule = AdaLoraSchedule::resolve(&ada, total, 3, 2, 12).unwrap();
    let mut events = Vec::new();
    let out = train(&job(MethodConfig::AdaLora(ada), dir.path(), total), &mut |e| events.push(e), &AtomicBool::new(false)).unwrap();
    let maps: Vec<_> = events.iter().filter_map(|e| if let TrainEvent::Ranks(m) = e { Some(m.clone()) } else { None }).collect();
    assert!(maps.len() >= 3, "rank maps at start, on changes, at the end");
    assert_eq!(maps[0].total(), 36);
    let mut last_budget = u64::MAX;
    for m in &maps {
        assert_eq!(m.modules.len(), 12);
        assert!(m.total() <= m.budget, "step {}: {} live > budget {}", m.step, m.total(), m.budget);
        assert!(m.budget <= last_budget, "budget grew at step {}", m.step);
        if m.step > 0 && m.step <= schedule.final_step() {
            assert_eq!(m.budget, schedule.at(m.step).0, "budget at step {}", m.step);
        }
        last_budget = m.budget;
    }
    let last = maps.last().unwrap();
    assert_eq!(last.step, total);
    assert_eq!(last.total(), 24, "ends at exactly target_r * K");
    assert_eq!(last.budget, 24);

    let kinds: Vec<ArtifactKind> = out.artifacts.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, vec![ArtifactKind::AdapterPeft, ArtifactKind::AdapterLora, ArtifactKind::AdapterMerged]);
    let peft = &out.artifacts[0].1;
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(peft.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "ADALORA");
    assert_eq!(cfg["total_step"], total);
    assert_eq!(cfg["init_r"], 3);
    assert_eq!(cfg["target_r"], 2);
    let kept: usize = cfg["rank_pattern"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_array().unwrap().iter().filter(|b| b.as_bool().unwrap()).count())
        .sum();
    assert_eq!(kept, 24);
    // AdaLoRA export and its plain-LoRA re-expression compute the same function.
    let a = peft_logits(peft);
    let b = peft_logits(&out.artifacts[1].1);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-4, "adalora {x} vs plain lora {y}");
    }
}

#[test]
fn cancel_then_resume_from_checkpoint() {
    let _serial = serial();
    minilm();
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(MethodConfig::Lora, dir.path(), 12);
    j.config.training.checkpoint_every = 5;
    let cancel = AtomicBool::new(false);
    let mut seen = Vec::new();
    let err = train(
        &j,
        &mut |e| {
            if let TrainEvent::Checkpoint { step: 5 } = e {
                cancel.store(true, Ordering::Relaxed);
            }
            seen.push(e);
        },
        &cancel,
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Cancelled), "{err}");
    assert!(dir.path().join(rankfit_train::CHECKPOINT_DIR).join("state.json").is_file());
    assert!(!dir.path().join("export").exists(), "a cancelled run exports nothing");

    let mut events = Vec::new();
    let resumed = train(&j, &mut |e| events.push(e), &AtomicBool::new(false)).unwrap();
    assert!(events.iter().any(|e| matches!(e, TrainEvent::Log { message } if message.contains("resumed from the checkpoint at step 5"))));
    let resumed_losses: Vec<u64> = events
        .iter()
        .filter_map(|e| {
            if let TrainEvent::Metric { step, split, name, .. } = e {
                (split == "train" && name == "loss").then_some(*step)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(resumed_losses, (6..=12).collect::<Vec<_>>());

    // The same run without interruption ends with the same validation metrics.
    let fresh_dir = tempfile::tempdir().unwrap();
    let mut fresh_job = j.clone();
    fresh_job.work_dir = fresh_dir.path().to_path_buf();
    let fresh = train(&fresh_job, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    let l1 = resumed.evaluations[0].1["loss"].as_f64().unwrap();
    let l2 = fresh.evaluations[0].1["loss"].as_f64().unwrap();
    assert!((l1 - l2).abs() < 1e-4, "resumed {l1} vs uninterrupted {l2}");
}

fn rank_maps(events: &[TrainEvent]) -> Vec<rankfit_domain::rank::RankMap> {
    events.iter().filter_map(|e| if let TrainEvent::Ranks(m) = e { Some(m.clone()) } else { None }).collect()
}

/// The run's PEFT export reloads and scores exactly what the trainer's final evaluation did.
fn export_reloads(out: &rankfit_train::TrainOutput, peft_type: &str) -> serde_json::Value {
    let peft = &out.artifacts[0].1;
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(peft.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], peft_type);
    let acc = out.evaluations[0].1["accuracy"].as_f64().unwrap();
    assert_eq!(accuracy(&peft_logits(peft)), acc, "reloaded adapter scores differently");
    cfg
}

#[test]
fn salientlora_reaches_exactly_its_target_and_exports_as_adalora() {
    let _serial = serial();
    minilm();
    let dir = tempfile::tempdir().unwrap();
    let total = 40;
    let cfg = SalientLoraConfig { init_r: Some(3), n_i: Some(4), n_f: Some(26), window_initial: 3, window_final: 8, ..Default::default() };
    let mut events = Vec::new();
    let started = std::time::Instant::now();
    let out = train(&job(MethodConfig::SalientLora(cfg), dir.path(), total), &mut |e| events.push(e), &AtomicBool::new(false)).unwrap();
    eprintln!("salientlora: {:.1} s", started.elapsed().as_secs_f64());
    let maps = rank_maps(&events);
    assert_eq!(maps[0].total(), 36);
    assert!(maps.len() >= 4, "windows closed and pruned: {} maps", maps.len());
    for m in &maps {
        assert!(m.total() <= m.budget, "step {}: {} live > budget {}", m.step, m.total(), m.budget);
    }
    let last = maps.last().unwrap();
    assert_eq!((last.total(), last.budget), (24, 24), "exactly r_t at the end");
    assert!(events.iter().any(|e| matches!(e, TrainEvent::Log { message } if message.contains("SalientLoRA window"))));
    let losses = train_losses(&events);
    assert!(losses.iter().all(|l| l.is_finite()));
    let kinds: Vec<ArtifactKind> = out.artifacts.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, vec![ArtifactKind::AdapterPeft, ArtifactKind::AdapterLora, ArtifactKind::AdapterMerged]);
    let cfg = export_reloads(&out, "ADALORA");
    assert_eq!((cfg["init_r"].as_u64(), cfg["target_r"].as_u64(), cfg["tinit"].as_u64()), (Some(3), Some(2), Some(4)));
    let a = peft_logits(&out.artifacts[0].1);
    let b = peft_logits(&out.artifacts[1].1);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-4, "adalora-format {x} vs plain lora {y}");
    }
}

#[test]
fn rolora_never_exceeds_its_budget_and_moves_ranks() {
    let _serial = serial();
    minilm();
    let dir = tempfile::tempdir().unwrap();
    let total = 40;
    let cfg = RoLoraConfig { final_ratio: 0.25, delta_t: Some(1), ..Default::default() };
    let mut events = Vec::new();
    let started = std::time::Instant::now();
    let out = train(&job(MethodConfig::RoLora(cfg), dir.path(), total), &mut |e| events.push(e), &AtomicBool::new(false)).unwrap();
    eprintln!("rolora: {:.1} s", started.elapsed().as_secs_f64());
    let maps = rank_maps(&events);
    assert_eq!(maps[0].total(), 24, "starts at the budget, not above it");
    for m in &maps {
        assert!(m.total() <= 24, "step {}: {} live > K*R", m.step, m.total());
    }
    let iterations = events.iter().filter(|e| matches!(e, TrainEvent::Log { message } if message.contains("RoLoRA iteration"))).count();
    assert_eq!(iterations, 3);
    // First SPARSIFY goes down to R/2 on average (12 live components).
    assert!(maps.iter().any(|m| m.total() == 12), "first sparsify reaches R/2");
    let peak = out.summary.to_value()["trainable_params"]["peak"].as_u64().unwrap();
    let start = out.summary.to_value()["trainable_params"]["start"].as_u64().unwrap();
    assert!(peak <= start, "peak {peak} above the start {start} (= the budget)");
    let cfg = export_reloads(&out, "LORA");
    let ranks: u64 = cfg["rank_pattern"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(ranks, maps.last().unwrap().total());
    assert!(ranks <= 24);
}

#[test]
fn alora_keeps_the_budget_through_rounds_and_exports_per_module_ranks() {
    let _serial = serial();
    minilm();
    let dir = tempfile::tempdir().unwrap();
    let total = 40;
    // 16 steps per epoch: rounds at steps 8, 12, 16, each pruning n_A = 2 (query, value).
    let cfg = ALoraConfig { k1_epochs: 0.5, k2_epochs: 0.25, rounds: 3, n_prune: None, val_batch: 8 };
    let mut events = Vec::new();
    let started = std::time::Instant::now();
    let out = train(&job(MethodConfig::ALora(cfg), dir.path(), total), &mut |e| events.push(e), &AtomicBool::new(false)).unwrap();
    eprintln!("alora: {:.1} s", started.elapsed().as_secs_f64());
    let maps = rank_maps(&events);
    for m in &maps {
        assert_eq!(m.total(), 24, "step {}: the budget K*R holds exactly", m.step);
    }
    let rounds: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Log { message } if message.contains("ALoRA round") => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(rounds.len(), 3, "{rounds:?}");
    assert!(rounds[0].contains("48 variants scored"), "{}", rounds[0]);
    assert!(maps.iter().any(|m| m.modules.iter().any(|(_, r)| *r != 2)), "ranks moved");
    let losses = train_losses(&events);
    let head: f64 = losses[..8].iter().sum::<f64>() / 8.0;
    let tail: f64 = losses[32..].iter().sum::<f64>() / 8.0;
    assert!(tail < head, "loss did not go down: {head} -> {tail}");
    let cfg = export_reloads(&out, "LORA");
    let ranks: u64 = cfg["rank_pattern"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(ranks, 24);
}

#[test]
fn rolora_resumes_from_a_checkpoint_taken_after_adapters_were_resized() {
    let _serial = serial();
    minilm();
    let dir = tempfile::tempdir().unwrap();
    let cfg = RoLoraConfig { final_ratio: 0.25, delta_t: Some(1), ..Default::default() };
    let mut j = job(MethodConfig::RoLora(cfg), dir.path(), 40);
    // The first EXTEND happens at step 10; the checkpoint at 15 holds resized tensors.
    j.config.training.checkpoint_every = 15;
    let cancel = AtomicBool::new(false);
    let err = train(
        &j,
        &mut |e| {
            if let TrainEvent::Checkpoint { step: 15 } = e {
                cancel.store(true, Ordering::Relaxed);
            }
        },
        &cancel,
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Cancelled), "{err}");
    let mut events = Vec::new();
    let resumed = train(&j, &mut |e| events.push(e), &AtomicBool::new(false)).unwrap();
    assert!(events.iter().any(|e| matches!(e, TrainEvent::Log { message } if message.contains("resumed from the checkpoint at step 15"))));
    let fresh_dir = tempfile::tempdir().unwrap();
    let mut fresh_job = j.clone();
    fresh_job.work_dir = fresh_dir.path().to_path_buf();
    let fresh = train(&fresh_job, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    assert_eq!(resumed.summary.to_value()["final_ranks"], fresh.summary.to_value()["final_ranks"]);
    let l1 = resumed.evaluations[0].1["loss"].as_f64().unwrap();
    let l2 = fresh.evaluations[0].1["loss"].as_f64().unwrap();
    assert!((l1 - l2).abs() < 1e-4, "resumed {l1} vs uninterrupted {l2}");
}

/// ALoRA's ablation oracle on the encoder (variants stacked along the batch, each copy with
/// its own gates) scores every variant exactly as a separate forward pass with those
/// components masked does.
#[test]
fn bert_oracle_scores_gate_variants_like_masked_forward_passes() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rankfit_train::adapters::{AdapterKind, AdapterSpec, Adapters};
    use rankfit_train::allocator::AblationOracle;
    use rankfit_train::model::head::init_head;
    use rankfit_train::model::weights::HostTensor;
    use rankfit_train::params::ParamStore;
    use rankfit_train::trainer::BertOracle;
    type I = burn::backend::NdArray<f32>;

    let dev = Default::default();
    let (bert, tok) = load_minilm::<B>(&minilm(), &dev).unwrap();
    let data = prepare(&synthetic_sentiment(), &tok, 32).unwrap();
    // More than one length bucket (8 examples each), of different lengths.
    let samples = data.train[..11].to_vec();
    let lengths: std::collections::BTreeSet<usize> = samples.iter().map(|s| s.enc.ids.len()).collect();
    assert!(lengths.len() > 1, "examples of different lengths: {lengths:?}");
    let mut rng = StdRng::seed_from_u64(4);
    let mut store = ParamStore::<I>::new();
    let head = init_head(&mut store, &bert.pooler, data.task.outputs(), true, &mut rng, &dev);
    let targets: Vec<String> = ["query", "value", "intermediate.dense"].map(String::from).to_vec();
    let spec = AdapterSpec { kind: AdapterKind::Lora, rank: 4, alpha: 8.0, dropout: 0.0 };
    let adapters = Adapters::build_bert(&bert.config, &targets, spec, &mut store, &mut rng, &dev).unwrap();
    // B starts at 0, which would make every variant the base model: give it trained-looking values.
    for ad in &adapters.list {
        let shape = store.params[ad.b].value.dims();
        let data: Vec<f32> = (0..shape[0] * shape[1]).map(|_| rng.random_range(-0.05f32..0.05)).collect();
        store.params[ad.b].value = HostTensor::new(shape.to_vec(), data).to_tensor(&dev);
    }
    let k = adapters.list.len();
    let mut partial = vec![vec![true; 4]; k];
    partial[0] = vec![false; 4];
    partial[4] = vec![true, false, true, false];
    partial[k - 1] = vec![false, false, false, true];
    // ALoRA's shapes, which the oracle restarts at the changed adapter's layer: all gates but
    // one (late and middle layers), only one gate on, and a variant changed in two layers.
    let all = vec![vec![true; 4]; k];
    let none = vec![vec![false; 4]; k];
    let mut without_late = all.clone();
    without_late[k - 2][1] = false;
    let mut only_middle = none.clone();
    only_middle[k / 2][2] = true;
    let mut two_layers = all.clone();
    two_layers[7] = vec![false; 4];
    two_layers[k - 1][3] = false;
    let variants = vec![all, partial, none, without_late, only_middle, two_layers];
    let mut oracle = BertOracle::<B>::new(&bert, head, &data.task, &samples);
    let got = oracle.losses(&adapters, &store, &variants).unwrap();
    // A second call of the same round reuses the cached layer inputs, variant by variant.
    let again: Vec<f64> = variants.iter().flat_map(|v| oracle.losses(&adapters, &store, std::slice::from_ref(v)).unwrap()).collect();
    for (v, (a, b)) in got.iter().zip(&again).enumerate() {
        assert!((a - b).abs() < 1e-6 * a.abs().max(1.0), "variant {v}: {a} in one call, {b} alone: a round's split does not matter");
    }

    let batch = collate(&samples.iter().map(|s| &s.enc).collect::<Vec<_>>(), 0);
    let params = store.constants::<B>();
    let masked_loss = |gates: &[Vec<bool>]| {
        let mut masked = adapters.clone();
        for (ad, g) in masked.list.iter_mut().zip(gates) {
            ad.mask = g.clone();
        }
        let logits = bert.logits(&Inputs::<B>::new(&batch, &dev), &params, &head, &masked, false);
        let logits = logits.into_data().to_vec::<f32>().unwrap();
        let c = data.task.outputs();
        let nll: f64 = samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let row = &logits[i * c..(i + 1) * c];
                let lse = row.iter().map(|&v| f64::from(v).exp()).sum::<f64>().ln();
                lse - f64::from(row[s.class])
            })
            .sum();
        nll / samples.len() as f64
    };
    for (v, gates) in variants.iter().enumerate() {
        let want = masked_loss(gates);
        assert!((got[v] - want).abs() < 1e-5 * want.abs().max(1.0), "variant {v}: oracle {} vs masked pass {want}", got[v]);
    }
    for v in 1..variants.len() {
        assert!((got[0] - got[v]).abs() > 1e-6, "variant {v}'s gates change the loss: {got:?}");
    }
}
