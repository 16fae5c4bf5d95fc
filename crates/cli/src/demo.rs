//! `rankfit demo`: the whole platform on one machine. Starts the managed PostgreSQL,
//! the server and a worker, uploads a real BIG-bench classification task over the REST
//! API, launches one run per method at the same budget, waits for them, and prints the
//! leaderboard. Everything goes through the public API, as a user's script would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::{assets, db, Global};

#[derive(Args)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// BIG-bench task to compare on.
    #[arg(long, default_value = "multiemo/all_sentence_en")]
    task: String,
    /// Examples taken from the task (keeps a CPU demo short).
    #[arg(long, default_value_t = 1500)]
    examples: usize,
    /// Methods to compare (comma separated).
    #[arg(long, default_value = "lora,adalora,salientlora,alora,rolora")]
    methods: String,
    /// Target average rank per adapted module, the same for every method.
    #[arg(long, default_value_t = 4)]
    budget: u32,
    #[arg(long, default_value_t = 2.0)]
    epochs: f64,
    /// Keep serving after the comparison (Ctrl-C to stop).
    #[arg(long)]
    keep_serving: bool,
}

pub async fn run(g: &Global, args: DemoArgs) -> anyhow::Result<()> {
    let assets_dir = g.assets_dir();
    {
        let dir = assets_dir.clone();
        tokio::task::spawn_blocking(move || assets::fetch_all(&dir)).await??;
    }
    let db = db::Database::open(g).await?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let team = match rankfit_store::teams::find_team_by_name(&db.pool, "demo").await? {
        Some(t) => t,
        None => rankfit_store::teams::create_team(&db.pool, "demo", true).await?,
    };
    let token = rankfit_store::teams::issue_token(&db.pool, team.id, "demo").await?.secret;

    let server = {
        let (g, pool_db, rx) = (g.clone(), db.pool.clone(), stop_rx.clone());
        let addr = args.addr;
        tokio::spawn(async move { crate::serve_pool(&g, pool_db, addr, 64, rx).await })
    };
    let worker = {
        let (g, pool, rx) = (g.clone(), db.pool.clone(), stop_rx.clone());
        tokio::spawn(async move { crate::worker_pool(&g, pool, 30, None, rx).await })
    };

    // Ctrl-C or SIGTERM at any point: stop the worker (it checkpoints its run and releases the
    // lease, so the next `rankfit demo` or `rankfit worker` resumes it), the server and the
    // managed PostgreSQL, instead of dying with them running.
    let (signal_tx, mut signal_rx) = watch::channel(false);
    tokio::spawn(crate::shutdown_on_signal(signal_tx));
    let result = tokio::select! {
        r = compare(&args, &assets_dir, &token) => r,
        _ = signal_rx.changed() => Err(anyhow::anyhow!("interrupted; unfinished runs stay queued and resume on the next start")),
    };
    if result.is_ok() && args.keep_serving {
        println!("\nserving on http://{} with token {token} (Ctrl-C to stop)", args.addr);
        let _ = signal_rx.changed().await;
    }
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let _ = server.await;
    db.close().await?;
    result
}

async fn compare(args: &DemoArgs, assets_dir: &std::path::Path, token: &str) -> anyhow::Result<()> {
    let base = format!("http://{}/api/v1", args.addr);
    let http = reqwest::Client::new();
    // Wait for the server.
    let start = Instant::now();
    while http.get(format!("{base}/openapi.json")).send().await.is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the server did not come up on {}", args.addr);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A slice of the real task file, same structure.
    let path = assets::bigbench_task(assets_dir, &args.task);
    let raw: Value = serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)?;
    let mut sliced = raw.clone();
    if let Some(ex) = sliced.get_mut("examples").and_then(Value::as_array_mut) {
        ex.truncate(args.examples);
    }
    let name = format!("{} ({} examples) {}", args.task, args.examples, chrono_like_now());
    let form = reqwest::multipart::Form::new()
        .text("name", name.clone())
        .text("format", "bigbench")
        .text("task_family", "classification")
        .part("file", reqwest::multipart::Part::bytes(serde_json::to_vec(&sliced)?).file_name("task.json"));
    let resp = http.post(format!("{base}/datasets")).bearer_auth(token).multipart(form).send().await?;
    let body = check(resp).await?;
    let dataset = &body["dataset"];
    let dataset_id = dataset["id"].as_str().context("dataset id")?.to_string();
    println!("uploaded {name}: {} rows, splits {}, labels {}", dataset["row_count"], dataset["splits"], dataset["label_set"]);

    let mut runs = BTreeMap::new();
    for method in args.methods.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let req = json!({
            "dataset_id": dataset_id, "base_model": "all-minilm-l6-v2", "method": method, "budget": args.budget, "seed": 7,
            "name": format!("demo {method}"),
            "training": { "epochs": args.epochs, "batch_size": 16, "max_seq_len": 64, "learning_rate": 2e-3,
                          "target_modules": ["query", "value"], "eval_every": 50, "checkpoint_every": 50 },
        });
        let resp = http.post(format!("{base}/runs")).bearer_auth(token).json(&req).send().await?;
        let body = check(resp).await?;
        let id = body["run"]["id"].as_str().context("run id")?.to_string();
        println!("queued {method} run {id}");
        runs.insert(method.to_string(), id);
    }

    // Wait for every run to finish, printing progress as it changes.
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut pending = 0;
        for (method, id) in &runs {
            let body = check(http.get(format!("{base}/runs/{id}")).bearer_auth(token).send().await?).await?;
            let status = body["run"]["status"].as_str().unwrap_or("?").to_string();
            if last.get(method) != Some(&status) {
                println!("{method}: {status}");
                last.insert(method.clone(), status.clone());
            }
            if !matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
                pending += 1;
            }
        }
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    println!("\n{:<12} {:<10} {:>9} {:>9} {:>9}  note", "method", "status", "accuracy", "f1", "mcc");
    for (method, id) in &runs {
        let body = check(http.get(format!("{base}/runs/{id}")).bearer_auth(token).send().await?).await?;
        let run = &body["run"];
        let evals = body["evaluations"].as_array().cloned().unwrap_or_default();
        let test =
            evals.iter().find(|e| e["split"] == "test").or_else(|| evals.first()).map(|e| e["metrics"].clone()).unwrap_or(Value::Null);
        let f = |k: &str| test.get(k).and_then(Value::as_f64).map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:<10} {:>9} {:>9} {:>9}  {}",
            method,
            run["status"].as_str().unwrap_or("?"),
            f("accuracy"),
            f("f1"),
            f("mcc"),
            run["error"].as_str().unwrap_or("")
        );
    }
    let lb = check(http.get(format!("{base}/leaderboards?dataset_id={dataset_id}")).bearer_auth(token).send().await?).await?;
    println!("\nleaderboard ({} on {}): {} entr(ies)", lb["metric"], lb["split"], lb["entries"].as_array().map(Vec::len).unwrap_or(0));
    for (i, e) in lb["entries"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        println!("  {}. {} budget {} score {}", i + 1, e["method"], e["budget"], e["score"]);
    }
    Ok(())
}

fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("@{secs}")
}

async fn check(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("API error {status}: {body}");
    }
    Ok(body)
}
