//! `rankfit studies create|list|show|watch|table|cancel`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;

use rankfit_domain::comparison::Cell;
use rankfit_domain::stats::{Interval, Summary};

use super::experiment;
use super::output::{cell, print_json, table};
use super::{ApiError, Client};

#[derive(Subcommand)]
pub enum StudiesCommand {
    /// Create a study from an experiment file (TOML; see `rankfit studies create --help`).
    Create(CreateArgs),
    /// Your team's studies with their progress.
    List,
    /// A study's progress, grid and comparison cells (mean ± std, 95% interval, vs LoRA).
    Show { id: String },
    /// Follow a study's grid until every run has finished; exits non-zero if any failed.
    Watch { id: String },
    /// The study's table: methods × budgets by datasets, mean ± std over seeds.
    Table {
        id: String,
        /// md, csv, tex or json.
        #[arg(long, default_value = "md")]
        format: String,
    },
    /// Cancel the study's queued and running runs.
    Cancel { id: String },
}

#[derive(Args)]
#[command(after_long_help = EXPERIMENT_HELP)]
pub struct CreateArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// Check the file and show the study's estimate; create nothing.
    #[arg(long)]
    pub dry_run: bool,
}

const EXPERIMENT_HELP: &str = r#"Experiment file (TOML):

    name = "sst2 budgets"
    datasets = ["sst2"]              # dataset names (yours, then public) or ids
    methods = ["lora", "adalora"]    # lora, adalora, salientlora, alora, rolora
    budgets = [2, 4]                 # target average ranks
    seeds = 3                        # seeds 1..=3, or a list [11, 12]
    base_model = "all-minilm-l6-v2"  # optional
    priority = 0                     # optional

    [training]                       # optional: any run training field
    max_steps = 200

    [method_config.adalora]          # optional: per-method settings
    init_r = 12

Every error names the file's line; nothing is created unless the whole grid is valid."#;

pub async fn run(client: &Client, cmd: StudiesCommand) -> anyhow::Result<()> {
    match cmd {
        StudiesCommand::Create(args) => create(client, args).await,
        StudiesCommand::List => {
            client
                .present(client.get("/studies"), |body| {
                    let rows: Vec<Vec<String>> = super::items(body, "studies")
                        .map(|s| {
                            let p = &s["progress"];
                            vec![
                                cell(&s["study"]["id"]),
                                cell(&s["study"]["name"]),
                                format!("{}/{}", cell(&p["done"]), cell(&p["total"])),
                                format!("{} ok, {} failed, {} cancelled", cell(&p["succeeded"]), cell(&p["failed"]), cell(&p["cancelled"])),
                                cell(&s["study"]["created_at"]).chars().take(19).collect(),
                            ]
                        })
                        .collect();
                    println!("{}", table(&["id", "name", "done", "outcomes", "created"], &rows));
                })
                .await?;
            Ok(())
        }
        StudiesCommand::Show { id } => show(client, &id).await.map(drop),
        StudiesCommand::Watch { id } => watch(client, &id).await,
        StudiesCommand::Table { id, format } => {
            let resp = client.send(client.get(&format!("/studies/{id}/table")).query(&[("format", &format)])).await?;
            let text = resp.text().await?;
            if format == "json" {
                print_json(&serde_json::from_str(&text).unwrap_or(Value::String(text)));
            } else {
                print!("{text}");
                if !text.ends_with('\n') {
                    println!();
                }
            }
            Ok(())
        }
        StudiesCommand::Cancel { id } => {
            let req = client.post(&format!("/studies/{id}/cancel"));
            client
                .present(req, |b| {
                    println!(
                        "study {id}: {} queued run(s) cancelled, {} running run(s) stopping",
                        cell(&b["cancelled"]),
                        cell(&b["stopping"])
                    )
                })
                .await?;
            Ok(())
        }
    }
}

async fn create(client: &Client, a: CreateArgs) -> anyhow::Result<()> {
    let path = a.file.display().to_string();
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {path}"))?;
    let located = |e: experiment::FileError| anyhow!("{}\nnothing was created", e.render(&path, &text));
    let exp = experiment::parse(&text).map_err(located)?;
    let mut ids = Vec::new();
    for d in &exp.datasets {
        let id = super::dataset_id(client, d).await.map_err(|e| located(experiment::locate(&text, "dataset_ids", e.to_string())))?;
        ids.push(id);
    }
    let spec = exp.to_spec(ids);
    experiment::validate(&text, &spec).map_err(located)?;
    let resp = client.call(client.post("/studies").query(&[("dry_run", a.dry_run)]).json(&spec)).await.map_err(|e| {
        match e.downcast_ref::<ApiError>() {
            Some(api) if api.field().is_some() => located(experiment::locate(&text, api.field().unwrap_or_default(), api.message.clone())),
            _ => e.context(format!("{path}: nothing was created")),
        }
    })?;
    if client.json {
        print_json(&resp);
        return Ok(());
    }
    if a.dry_run {
        let e = &resp["estimate"];
        println!(
            "{path} is valid: {} runs, about {} (±{:.0}%) one after another on one worker",
            cell(&resp["grid_size"]),
            rankfit_domain::estimate::human_duration(e["total_seconds"].as_f64().unwrap_or(0.0)),
            e["error_band"].as_f64().unwrap_or(0.0) * 100.0
        );
        for w in e["warnings"].as_array().into_iter().flatten() {
            println!("  warning: {}", cell(w));
        }
    } else {
        println!("study {} ({}): {} runs queued", cell(&resp["study"]["name"]), cell(&resp["study"]["id"]), cell(&resp["runs_created"]));
        println!("  follow it:  rankfit studies watch {}", cell(&resp["study"]["id"]));
    }
    Ok(())
}

fn grid_line(progress: &Value) -> String {
    let eta =
        progress["eta_seconds"].as_f64().map(|s| format!(", ETA {}", rankfit_domain::estimate::human_duration(s))).unwrap_or_default();
    format!(
        "{}/{} done: {} succeeded, {} failed, {} cancelled, {} running, {} queued{eta}",
        cell(&progress["done"]),
        cell(&progress["total"]),
        cell(&progress["succeeded"]),
        cell(&progress["failed"]),
        cell(&progress["cancelled"]),
        cell(&progress["running"]),
        cell(&progress["queued"])
    )
}

fn grid_rows(grid: &Value, dataset_names: &HashMap<&str, &str>) -> Vec<Vec<String>> {
    grid.as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let runs: Vec<String> =
                c["runs"].as_array().into_iter().flatten().map(|r| format!("{}:{}", cell(&r["seed"]), cell(&r["status"]))).collect();
            let id = cell(&c["dataset_id"]);
            let dataset = dataset_names.get(id.as_str()).map_or(id.clone(), |n| n.to_string());
            vec![dataset, cell(&c["method"]), cell(&c["budget"]), runs.join(" ")]
        })
        .collect()
}

/// Follows the study's `grid` events until it has finished.
async fn watch(client: &Client, id: &str) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    let mut final_progress = Value::Null;
    super::sse::follow(client, &format!("/studies/{id}/events"), 30, |ev| {
        if ev.event != "grid" {
            return Ok(false);
        }
        let data: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        if let Some(err) = data["error"].as_str() {
            eprintln!("server: {err}");
            return Ok(false);
        }
        let line = grid_line(&data["progress"]);
        if line != last {
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            last = line;
        }
        final_progress = data["progress"].clone();
        Ok(data["finished"].as_bool() == Some(true))
    })
    .await?;
    if tty {
        eprintln!();
    }
    let body = show(client, id).await?;
    let p = &body["progress"];
    let failed = p["failed"].as_i64().unwrap_or(0) + p["cancelled"].as_i64().unwrap_or(0);
    if p["queued"].as_i64().unwrap_or(0) + p["running"].as_i64().unwrap_or(0) > 0 {
        bail!("the stream ended before the study finished: {}", grid_line(if final_progress.is_null() { p } else { &final_progress }));
    }
    if failed > 0 {
        bail!("study {id}: {failed} run(s) did not succeed");
    }
    Ok(())
}

/// Prints the study (its grid with dataset names) and returns its body.
async fn show(client: &Client, id: &str) -> anyhow::Result<Value> {
    let body = client.call(client.get(&format!("/studies/{id}"))).await?;
    if client.json {
        print_json(&body);
        return Ok(body);
    }
    let datasets = client.call(client.get("/datasets")).await?;
    let names: HashMap<&str, &str> =
        datasets["datasets"].as_array().into_iter().flatten().filter_map(|d| Some((d["id"].as_str()?, d["name"].as_str()?))).collect();
    print_study(&body, &names);
    Ok(body)
}

fn print_study(body: &Value, dataset_names: &HashMap<&str, &str>) {
    let s = &body["study"];
    println!("study {} ({})", cell(&s["name"]), cell(&s["id"]));
    println!("  {}", grid_line(&body["progress"]));
    println!("{}", table(&["dataset", "method", "budget", "seed:status"], &grid_rows(&body["grid"], dataset_names)));
    let cells: Vec<Cell> = serde_json::from_value(body["cells"].clone()).unwrap_or_default();
    if cells.is_empty() {
        return;
    }
    println!();
    let rows: Vec<Vec<String>> = cells.iter().map(summary_row).collect();
    println!("{}", table(&["dataset", "method", "budget", "metric", "n", "mean ± std", "95% interval", "vs LoRA (95% interval)"], &rows));
}

fn interval(i: &Option<Interval>) -> String {
    i.map(|i| format!("[{:.4}, {:.4}]", i.lo, i.hi)).unwrap_or_else(|| "-".into())
}

fn summary_row(c: &Cell) -> Vec<String> {
    let std = |s: &Summary| s.std.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into());
    let (n, mean, ci) = match c.primary() {
        Some(s) => (s.n.to_string(), format!("{:.4} ± {}", s.mean, std(s)), interval(&s.interval)),
        None => ("0".into(), "-".into(), "-".into()),
    };
    let vs = c.vs_lora.as_ref().map(|d| format!("{:+.4} {}", d.summary.mean, interval(&d.summary.interval))).unwrap_or_else(|| "-".into());
    vec![c.dataset_name.clone(), c.method.as_str().to_string(), c.budget.to_string(), c.primary_metric.clone(), n, mean, ci, vs]
}
