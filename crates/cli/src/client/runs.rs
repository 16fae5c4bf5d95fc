//! `rankfit runs create|list|show|cancel|watch|download`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use futures::StreamExt;
use rankfit_domain::progress::Progress;
use serde_json::{json, Value};
use sha2::Digest;

use super::output::{cell, print_json, table};
use super::Client;

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Queue a run (or, with --dry-run, show its estimate and queue nothing).
    Create(CreateArgs),
    /// Your team's runs, newest first.
    List(ListArgs),
    /// A run: status, config, evaluations, artifacts.
    Show { id: String },
    /// Ask a queued or running run to stop.
    Cancel { id: String },
    /// Follow a run's progress until it ends; exits non-zero unless it succeeded.
    Watch { id: String },
    /// Download a run's adapter, unzipped into a folder ready for `PeftModel.from_pretrained`.
    Download(DownloadArgs),
    /// The run's test predictions (of its best-validation state), one per example.
    Predictions {
        id: String,
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// Dataset id or name.
    #[arg(long)]
    pub dataset: String,
    /// lora, adalora, salientlora, alora or rolora.
    #[arg(long)]
    pub method: String,
    /// Target average rank per adapted module.
    #[arg(long)]
    pub budget: u32,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Base model id (default: the first model serving the dataset's task family).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub priority: Option<i32>,
    /// Training settings as JSON, e.g. '{"max_steps": 100, "batch_size": 16}'.
    #[arg(long)]
    pub training: Option<String>,
    /// The method's own settings as JSON, e.g. '{"init_r": 12}'.
    #[arg(long)]
    pub method_config: Option<String>,
    /// Validate and show the estimate; queue nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Follow the run after queuing it (as `runs watch`).
    #[arg(long)]
    pub watch: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// queued, running, succeeded, failed or cancelled.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub method: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
}

#[derive(Args)]
pub struct DownloadArgs {
    pub id: String,
    /// peft (the run's own method, PEFT layout), lora (plain-LoRA re-expression) or merged
    /// (base weights with the adapter merged, one safetensors file).
    #[arg(long, default_value = "peft")]
    pub format: String,
    /// Folder to unzip into (default: rankfit-<run id>-<format>); for `merged`, the file.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Keep the zip as downloaded instead of unzipping it.
    #[arg(long)]
    pub zip: bool,
}

pub async fn run(client: &Client, cmd: RunsCommand) -> anyhow::Result<()> {
    match cmd {
        RunsCommand::Create(args) => create(client, args).await,
        RunsCommand::List(args) => {
            let mut req = client.get("/runs").query(&[("limit", args.limit.to_string())]);
            if let Some(s) = &args.status {
                req = req.query(&[("status", s)]);
            }
            if let Some(m) = &args.method {
                req = req.query(&[("method", m)]);
            }
            client
                .present(req, |body| {
                    let rows: Vec<Vec<String>> = super::items(body, "runs").map(run_row).collect();
                    println!("{}", table(&["id", "method", "budget", "seed", "status", "progress", "dataset", "created"], &rows));
                })
                .await?;
            Ok(())
        }
        RunsCommand::Show { id } => {
            client.present(client.get(&format!("/runs/{id}")), print_run).await?;
            Ok(())
        }
        RunsCommand::Cancel { id } => {
            client.present(client.post(&format!("/runs/{id}/cancel")), |b| println!("run {id}: {}", cell(&b["run"]["status"]))).await?;
            Ok(())
        }
        RunsCommand::Watch { id } => watch(client, &id).await,
        RunsCommand::Download(args) => download(client, args).await,
        RunsCommand::Predictions { id, format, output } => {
            let resp = client.send(client.get(&format!("/runs/{id}/predictions")).query(&[("format", &format)])).await?;
            let body = resp.bytes().await?;
            match output {
                Some(path) => {
                    std::fs::write(&path, &body).with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("{} bytes written to {}", body.len(), path.display());
                }
                None => std::io::stdout().write_all(&body)?,
            }
            Ok(())
        }
    }
}

fn parse_json_arg(flag: &str, s: &Option<String>) -> anyhow::Result<Option<Value>> {
    s.as_deref().map(|s| serde_json::from_str(s).with_context(|| format!("--{flag} is not valid JSON: {s}"))).transpose()
}

async fn create(client: &Client, a: CreateArgs) -> anyhow::Result<()> {
    let dataset = super::dataset_id(client, &a.dataset).await?;
    let mut body = json!({"dataset_id": dataset, "method": a.method, "budget": a.budget});
    let optional = [
        ("seed", a.seed.map(Value::from)),
        ("base_model", a.model.map(Value::from)),
        ("name", a.name.map(Value::from)),
        ("priority", a.priority.map(Value::from)),
        ("training", parse_json_arg("training", &a.training)?),
        ("method_config", parse_json_arg("method-config", &a.method_config)?),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            body[k] = v;
        }
    }
    let resp = client.call(client.post("/runs").query(&[("dry_run", a.dry_run)]).json(&body)).await?;
    if client.json {
        print_json(&resp);
    } else if a.dry_run {
        println!("dry run: {} at budget {} is valid; nothing was queued", a.method, a.budget);
        print_estimate(&resp["estimate"]);
    } else {
        let run = &resp["run"];
        println!(
            "queued run {} ({} at budget {}, seed {})",
            cell(&run["id"]),
            cell(&run["method"]),
            cell(&run["budget"]),
            cell(&run["seed"])
        );
        print_estimate(&run["estimate"]);
    }
    if a.watch && !a.dry_run {
        return watch(client, resp["run"]["id"].as_str().context("the server did not return the run's id")?).await;
    }
    Ok(())
}

fn print_estimate(e: &Value) {
    if e.is_null() {
        return;
    }
    let total = e["total_seconds"].as_f64().unwrap_or(0.0);
    let band = e["error_band"].as_f64().unwrap_or(0.0);
    println!(
        "  estimate: {} steps, about {} (±{:.0}%) on {}, peak memory ~{:.0} MiB",
        cell(&e["steps"]),
        rankfit_domain::estimate::human_duration(total),
        band * 100.0,
        cell(&e["device"]),
        e["peak_memory_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
    );
    for w in e["warnings"].as_array().into_iter().flatten() {
        println!("  warning: {}", cell(w));
    }
}

fn run_row(r: &Value) -> Vec<String> {
    let progress = serde_json::from_value::<Progress>(r["progress"].clone())
        .map(|p| format!("{}/{}", p.step, p.total_steps))
        .unwrap_or_else(|_| "-".into());
    vec![
        cell(&r["id"]),
        cell(&r["method"]),
        cell(&r["budget"]),
        cell(&r["seed"]),
        cell(&r["status"]),
        progress,
        cell(&r["dataset_id"]),
        cell(&r["created_at"]).chars().take(19).collect(),
    ]
}

fn print_run(body: &Value) {
    let r = &body["run"];
    println!("run {} — {}", cell(&r["id"]), cell(&r["status"]));
    println!(
        "  method {} at budget {}, seed {}, model {}",
        cell(&r["method"]),
        cell(&r["budget"]),
        cell(&r["seed"]),
        cell(&r["base_model_id"])
    );
    println!("  dataset {}", cell(&r["dataset_id"]));
    if let Some(study) = r["study_id"].as_str() {
        println!("  study {study}");
    }
    if !r["error"].is_null() {
        println!("  error: {}", cell(&r["error"]));
    }
    for e in body["evaluations"].as_array().into_iter().flatten() {
        println!("  {:<10} {}", cell(&e["split"]), metrics(&e["metrics"]));
    }
    for a in body["artifacts"].as_array().into_iter().flatten() {
        let kind = cell(&a["kind"]);
        let format = kind.strip_prefix("adapter_").unwrap_or(&kind);
        println!("  artifact {format:<7} {:>10} bytes   rankfit runs download {} --format {format}", cell(&a["bytes"]), cell(&r["id"]));
    }
}

fn metrics(m: &Value) -> String {
    m.as_object().map(|m| m.iter().map(|(k, v)| format!("{k} {}", cell(v))).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

/// Follows the run's events until its terminal status; prints a progress line (redrawn in
/// place on a terminal) and the run's log, evaluation and status events.
pub async fn watch(client: &Client, id: &str) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    let mut outcome: Option<(String, Value)> = None;
    super::sse::follow(client, &format!("/runs/{id}/events"), 30, |ev| {
        let data: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        match ev.event.as_str() {
            "progress" => {
                if let Ok(p) = serde_json::from_value::<Progress>(data) {
                    let line = progress_line(&p);
                    if tty {
                        eprint!("\r\x1b[2K{line}");
                    } else if line != last_line {
                        eprintln!("{line}");
                    }
                    last_line = line;
                }
            }
            "status" => {
                let status = data["status"].as_str().unwrap_or_default().to_string();
                if tty {
                    eprintln!();
                }
                eprintln!("status: {status}{}", data["error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default());
                if matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
                    outcome = Some((status, data));
                    return Ok(true);
                }
            }
            "eval" => {
                if tty {
                    eprintln!();
                }
                eprintln!("{}: {}", data["split"].as_str().unwrap_or("eval"), metrics(&data["metrics"]));
            }
            "log" => {
                if tty {
                    eprintln!();
                }
                eprintln!("{}", data["message"].as_str().unwrap_or(&ev.data));
            }
            _ => {}
        }
        let _ = std::io::stderr().flush();
        Ok(false)
    })
    .await?;
    let (status, data) = match outcome {
        Some(o) => o,
        // The stream ended without a terminal event (it should not): ask.
        None => {
            let body = client.call(client.get(&format!("/runs/{id}"))).await?;
            (body["run"]["status"].as_str().unwrap_or_default().to_string(), body["run"].clone())
        }
    };
    if status == "succeeded" {
        client.present(client.get(&format!("/runs/{id}")), print_run).await?;
        return Ok(());
    }
    bail!("run {id} {status}{}", data["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default())
}

fn progress_line(p: &Progress) -> String {
    let width = 24;
    let filled = (p.fraction() * width as f64).round() as usize;
    let bar = format!("[{}{}]", "#".repeat(filled.min(width)), " ".repeat(width - filled.min(width)));
    let mut s = format!("{bar} step {}/{} {}", p.step, p.total_steps, p.phase.label());
    if let (Some(done), Some(of)) = (p.done, p.of) {
        s += &format!(" {done}/{of}");
    }
    if let Some(l) = p.loss {
        s += &format!("  loss {l:.4}");
    }
    if let Some(r) = p.rank_total {
        s += &format!("  rank total {r}");
    }
    if let Some(eta) = p.eta_seconds {
        s += &format!("  ETA {}", rankfit_domain::estimate::human_duration(eta));
    }
    s
}

async fn download(client: &Client, a: DownloadArgs) -> anyhow::Result<()> {
    let resp = client.send(client.get(&format!("/runs/{}/adapter", a.id)).query(&[("format", &a.format)])).await?;
    let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(|s| s.trim_matches('"').to_string());
    let is_zip = resp.headers().get("content-type").and_then(|v| v.to_str().ok()) == Some("application/zip");
    let default_name = if is_zip && !a.zip {
        format!("rankfit-{}-{}", a.id, a.format)
    } else {
        format!("rankfit-{}-{}.{}", a.id, a.format, if is_zip { "zip" } else { "safetensors" })
    };
    let target = a.output.clone().unwrap_or_else(|| PathBuf::from(default_name));
    // Stream to a temporary file beside the target, checking the sha256 the server states.
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent).with_context(|| format!("cannot write in {}", parent.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut bytes = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("the download broke off; run the command again")?;
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        tmp.write_all(&chunk)?;
    }
    let sha = hex::encode(hasher.finalize());
    if let Some(expected) = etag.filter(|e| e.len() == 64) {
        if expected != sha {
            bail!("the download is corrupt: sha256 {sha}, the server says {expected}; run the command again");
        }
    }
    if is_zip && !a.zip {
        let file = tmp.reopen()?;
        let mut archive = zip::ZipArchive::new(file).context("the server sent a broken zip")?;
        std::fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?;
        // ZipArchive::extract refuses entries that would land outside the folder.
        archive.extract(&target).with_context(|| format!("cannot unzip into {}", target.display()))?;
        let mut files: Vec<String> = (0..archive.len()).filter_map(|i| archive.name_for_index(i).map(str::to_string)).collect();
        files.sort();
        println!("{} ({} bytes, sha256 {sha}) unzipped into {}: {}", a.format, bytes, target.display(), files.join(", "));
    } else {
        tmp.persist(&target).with_context(|| format!("cannot write {}", target.display()))?;
        println!("{} ({} bytes, sha256 {sha}) saved as {}", a.format, bytes, target.display());
    }
    Ok(())
}
