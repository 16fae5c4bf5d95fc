//! `rankfit demo`: the whole platform on one machine. Starts the managed PostgreSQL,
//! the server and a worker, uploads a real BIG-bench classification task over the REST
//! API, launches a study (methods × budgets × seeds) at equal budget, shows its progress,
//! and prints the paper table with uncertainty and every method's paired difference
//! against LoRA. Everything goes through the public API, as a user's script would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rankfit_domain::estimate::{human_duration, Estimate, StudyEstimate};
use rankfit_domain::progress::Progress;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::{assets, db, Global};

#[derive(Args)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// BIG-bench classification tasks to compare on (comma separated): one dataset each.
    #[arg(long, default_value = "multiemo/all_sentence_en")]
    tasks: String,
    /// Examples taken from each task (keeps a CPU demo short).
    #[arg(long, default_value_t = 320)]
    examples: usize,
    /// Methods to compare (comma separated; add `alora` for all five: its ablation rounds
    /// make it the slowest on a CPU).
    #[arg(long, default_value = "lora,adalora,salientlora,rolora")]
    methods: String,
    /// Target average ranks per adapted module (comma separated); every method runs at each.
    #[arg(long, default_value = "4")]
    budgets: String,
    /// Seeds per cell: the replicates each mean, std and interval is computed over.
    #[arg(long, default_value_t = 2)]
    seeds: u32,
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

    // A slice of each real task file, same structure; a slice uploaded by an earlier demo is
    // the same data and is reused.
    let existing = check(http.get(format!("{base}/datasets")).bearer_auth(token).send().await?).await?;
    let mut dataset_ids = Vec::new();
    for task in args.tasks.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let name = format!("{task} ({} examples)", args.examples);
        let known = existing["datasets"].as_array().and_then(|ds| ds.iter().find(|d| d["name"] == name.as_str()));
        let dataset = match known {
            Some(d) => {
                println!("reusing {name}: {} rows, splits {}", d["row_count"], d["splits"]);
                d.clone()
            }
            None => {
                let path = assets::bigbench_task(assets_dir, task);
                let raw: Value = serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)?;
                let mut sliced = raw.clone();
                if let Some(ex) = sliced.get_mut("examples").and_then(Value::as_array_mut) {
                    ex.truncate(args.examples);
                }
                let form = reqwest::multipart::Form::new()
                    .text("name", name.clone())
                    .text("format", "bigbench")
                    .text("task_family", "classification")
                    .part("file", reqwest::multipart::Part::bytes(serde_json::to_vec(&sliced)?).file_name("task.json"));
                let body = check(http.post(format!("{base}/datasets")).bearer_auth(token).multipart(form).send().await?).await?;
                let d = body["dataset"].clone();
                println!("uploaded {name}: {} rows, splits {}, labels {}", d["row_count"], d["splits"], d["label_set"]);
                d
            }
        };
        dataset_ids.push(dataset["id"].as_str().context("dataset id")?.to_string());
    }

    let methods: Vec<&str> = args.methods.split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
    let budgets: Vec<u32> = args
        .budgets
        .split(',')
        .map(|b| b.trim().parse::<u32>().with_context(|| format!("--budgets: {b:?} is not a number")))
        .collect::<anyhow::Result<_>>()?;
    let spec = json!({
        "name": format!("demo {}", chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")),
        "dataset_ids": dataset_ids, "methods": methods, "budgets": budgets, "seeds": args.seeds,
        "base_model": "all-minilm-l6-v2",
        "training": { "epochs": args.epochs, "batch_size": 16, "max_seq_len": 64, "learning_rate": 2e-3,
                      "target_modules": ["query", "value"], "eval_every": 25, "checkpoint_every": 50 },
    });
    let dry = check(http.post(format!("{base}/studies?dry_run=true")).bearer_auth(token).json(&spec).send().await?).await?;
    let est: StudyEstimate = serde_json::from_value(dry["estimate"].clone()).context("study estimate")?;
    println!(
        "estimate: {} runs, about {} (± {:.0}%) one after another on one worker, peak memory ~{} MiB",
        est.runs,
        human_duration(est.total_seconds),
        100.0 * est.error_band,
        (est.peak_memory_bytes / 1048576.0).round()
    );
    for w in &est.warnings {
        println!("  note: {w}");
    }
    let body = check(http.post(format!("{base}/studies")).bearer_auth(token).json(&spec).send().await?).await?;
    let study_id = body["study"]["id"].as_str().context("study id")?.to_string();
    println!(
        "queued study {study_id}: {} runs ({} × {} methods × budgets {:?} × {} seeds); live at http://{}/studies/{study_id}",
        body["runs_created"],
        dataset_ids.len(),
        methods.len(),
        budgets,
        args.seeds,
        args.addr
    );

    // Wait for every run, with a progress line every few seconds.
    let started = Instant::now();
    let mut last_line = String::new();
    loop {
        let s = check(http.get(format!("{base}/studies/{study_id}")).bearer_auth(token).send().await?).await?;
        let p = &s["progress"];
        let mut running = Vec::new();
        for cell in s["grid"].as_array().cloned().unwrap_or_default() {
            for r in cell["runs"].as_array().cloned().unwrap_or_default() {
                if r["status"] == "running" {
                    let id = r["id"].as_str().unwrap_or_default();
                    let run = check(http.get(format!("{base}/runs/{id}")).bearer_auth(token).send().await?).await?;
                    let progress = serde_json::from_value::<Progress>(run["run"]["progress"].clone())
                        .map(|p| format!(": {}", p.line()))
                        .unwrap_or_else(|_| ": starting".into());
                    running.push(format!("{} b{} s{}{progress}", cell["method"].as_str().unwrap_or("?"), cell["budget"], r["seed"]));
                }
            }
        }
        let eta = p["eta_seconds"].as_f64().map(|e| format!(" · ETA {}", human_duration(e))).unwrap_or_default();
        let line = format!(
            "[{}] {}/{} runs finished ({} failed){eta} · running: {}",
            human_duration(started.elapsed().as_secs_f64()),
            p["done"],
            p["total"],
            p["failed"],
            if running.is_empty() { "-".to_string() } else { running.join(", ") }
        );
        if line != last_line {
            println!("{line}");
            last_line = line;
        }
        if p["queued"] == 0 && p["running"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    let table = http.get(format!("{base}/studies/{study_id}/table?format=md")).bearer_auth(token).send().await?;
    if !table.status().is_success() {
        bail!("API error {}: {}", table.status(), table.text().await.unwrap_or_default());
    }
    println!("\n{}", table.text().await?);
    let s = check(http.get(format!("{base}/studies/{study_id}")).bearer_auth(token).send().await?).await?;
    println!("Against LoRA at the same budget (accuracy points, 95% interval):");
    for c in s["cells"].as_array().cloned().unwrap_or_default() {
        let Some(d) = c.get("vs_lora").filter(|d| !d.is_null()) else { continue };
        let pts = |v: &Value| v.as_f64().map(|v| format!("{:+.2}", v * 100.0)).unwrap_or_else(|| "?".into());
        let interval = &d["summary"]["interval"];
        let how = if d["paired_by"] == "seed" {
            format!("paired by seed, n={}", d["summary"]["n"])
        } else {
            "paired bootstrap over test examples".into()
        };
        println!(
            "  {} · {:<12} budget {:>2}: {} [{}, {}] ({how}){}",
            c["dataset_name"].as_str().unwrap_or("?"),
            c["method"].as_str().unwrap_or("?"),
            c["budget"],
            pts(&d["summary"]["mean"]),
            pts(&interval["lo"]),
            pts(&interval["hi"]),
            if d["significant"] == true { " — the interval excludes 0" } else { " — not distinguishable from LoRA" }
        );
    }
    print_estimates_vs_actual(&http, &base, token, &s).await?;
    println!("\nstudy page: http://{}/studies/{study_id}", args.addr);
    Ok(())
}

async fn check(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("API error {status}: {body}");
    }
    Ok(body)
}

/// Each run's estimate (made when it was queued) next to its measured wall time, and the
/// share that landed inside the estimate's band.
async fn print_estimates_vs_actual(http: &reqwest::Client, base: &str, token: &str, study: &Value) -> anyhow::Result<()> {
    println!("\nEstimated (when queued) vs actual time per run:");
    let (mut n, mut inside, mut errors) = (0usize, 0usize, Vec::new());
    for cell in study["grid"].as_array().cloned().unwrap_or_default() {
        for r in cell["runs"].as_array().cloned().unwrap_or_default() {
            let id = r["id"].as_str().unwrap_or_default();
            let run = check(http.get(format!("{base}/runs/{id}")).bearer_auth(token).send().await?).await?;
            let (Ok(e), Some(actual)) =
                (serde_json::from_value::<Estimate>(run["run"]["estimate"].clone()), run["run"]["summary"]["wall_seconds"].as_f64())
            else {
                continue;
            };
            let off = actual / e.total_seconds - 1.0;
            let ok = off.abs() <= e.error_band;
            n += 1;
            inside += usize::from(ok);
            errors.push(off.abs());
            println!(
                "  {:<12} b{:<3} s{:<3} estimated {:>8} ± {:>3.0}% ({}), took {:>8} ({:+.0}%{})",
                cell["method"].as_str().unwrap_or("?"),
                cell["budget"],
                r["seed"],
                human_duration(e.total_seconds),
                100.0 * e.error_band,
                match e.basis {
                    rankfit_domain::estimate::Basis::Measured { runs, .. } => format!("measured, {runs} runs"),
                    rankfit_domain::estimate::Basis::Reference => "reference machine".into(),
                },
                human_duration(actual),
                100.0 * off,
                if ok { "" } else { ", outside the band" }
            );
        }
    }
    if n > 0 {
        errors.sort_by(f64::total_cmp);
        println!("  {inside} of {n} inside their band; median |error| {:.0}%", 100.0 * errors[n / 2]);
    }
    Ok(())
}
