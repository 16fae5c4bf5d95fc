//! `rankfit fleet workers|queue` (admin teams): the Workers page in a terminal.

use clap::Subcommand;
use rankfit_domain::estimate::human_duration;
use serde_json::Value;

use super::output::{cell, table};
use super::Client;

#[derive(Subcommand)]
pub enum FleetCommand {
    /// Every worker heard from in the last day: state, device, current run, counters.
    Workers,
    /// Queued runs of every team in claim order, with expected start and finish.
    Queue,
}

fn secs(v: &Value) -> String {
    v.as_f64().map(human_duration).unwrap_or_else(|| "-".into())
}

pub async fn run(client: &Client, cmd: FleetCommand) -> anyhow::Result<()> {
    match cmd {
        FleetCommand::Workers => {
            client.present(client.get("/workers"), print_workers).await?;
            Ok(())
        }
        FleetCommand::Queue => {
            client.present(client.get("/queue"), print_queue).await?;
            Ok(())
        }
    }
}

fn print_workers(body: &Value) {
    let rows: Vec<Vec<String>> = super::items(body, "workers")
        .map(|w| {
            let p = &w["current_run_progress"];
            let progress = if p.is_object() { format!("step {}/{}", cell(&p["step"]), cell(&p["total_steps"])) } else { String::new() };
            vec![
                cell(&w["name"]),
                cell(&w["state"]),
                cell(&w["device"]),
                format!("{} ago", secs(&w["silent_seconds"])),
                w["current_run_id"].as_str().map_or_else(|| "idle".into(), |id| format!("{} {progress}", &id[..8.min(id.len())])),
                cell(&w["succeeded"]),
                cell(&w["failed"]),
                cell(&w["version"]),
            ]
        })
        .collect();
    println!("{}", table(&["worker", "state", "device", "last heartbeat", "current run", "succeeded", "failed", "version"], &rows));
}

fn print_queue(body: &Value) {
    println!("{} alive worker(s), {} running run(s)", cell(&body["alive_workers"]), cell(&body["running"]));
    let rows: Vec<Vec<String>> = super::items(body, "queue")
        .map(|q| {
            vec![
                cell(&q["position"]),
                cell(&q["id"]),
                cell(&q["team_name"]),
                format!("{} b{} s{} on {}", cell(&q["method"]), cell(&q["budget"]), cell(&q["seed"]), cell(&q["dataset_name"])),
                cell(&q["priority"]),
                q["eta"]["start_seconds"].as_f64().map_or_else(|| "no worker alive".into(), |s| format!("in {}", human_duration(s))),
                secs(&q["eta"]["finish_seconds"]),
            ]
        })
        .collect();
    println!("{}", table(&["#", "run", "team", "what", "priority", "starts", "finishes in"], &rows));
}
