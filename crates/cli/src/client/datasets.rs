//! `rankfit datasets upload|list|show`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::output::{cell, table};
use super::Client;

#[derive(Subcommand)]
pub enum DatasetsCommand {
    /// Upload a file; prints the validation report and exits non-zero when the file is rejected.
    Upload(UploadArgs),
    /// Your team's datasets, then the public ones.
    List,
    /// One dataset and its validation report.
    Show { dataset: String },
}

#[derive(Args)]
pub struct UploadArgs {
    pub file: PathBuf,
    /// Dataset name (default: the file name).
    #[arg(long)]
    pub name: Option<String>,
    /// jsonl, csv, glue_tsv or bigbench (default: from the file's extension).
    #[arg(long)]
    pub format: Option<String>,
    /// classification (default), regression, summarization or instruction.
    #[arg(long)]
    pub task_family: Option<String>,
    /// The split of rows that do not name one: train, validation or test.
    #[arg(long)]
    pub split: Option<String>,
    #[arg(long)]
    pub text_column: Option<String>,
    #[arg(long)]
    pub text_pair_column: Option<String>,
    #[arg(long)]
    pub label_column: Option<String>,
    /// GLUE task of a glue_tsv file (e.g. sst2, mnli).
    #[arg(long)]
    pub glue_task: Option<String>,
}

pub async fn run(client: &Client, cmd: DatasetsCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetsCommand::Upload(args) => upload(client, args).await,
        DatasetsCommand::List => {
            client.present(client.get("/datasets"), print_list).await?;
            Ok(())
        }
        DatasetsCommand::Show { dataset } => {
            let id = super::dataset_id(client, &dataset).await?;
            client.present(client.get(&format!("/datasets/{id}")), |b| print_dataset(&b["dataset"])).await?;
            Ok(())
        }
    }
}

fn print_list(body: &Value) {
    let rows: Vec<Vec<String>> = super::items(body, "datasets")
        .map(|d| {
            vec![
                cell(&d["id"]),
                cell(&d["name"]),
                cell(&d["visibility"]),
                cell(&d["task_family"]),
                cell(&d["row_count"]),
                splits(&d["splits"]),
                cell(&d["created_at"]).chars().take(19).collect(),
            ]
        })
        .collect();
    println!("{}", table(&["id", "name", "visibility", "task", "rows", "splits", "created"], &rows));
}

async fn upload(client: &Client, a: UploadArgs) -> anyhow::Result<()> {
    let bytes = tokio::fs::read(&a.file).await.with_context(|| format!("cannot read {}", a.file.display()))?;
    let file_name = a.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload".into());
    let mut form = reqwest::multipart::Form::new();
    let fields = [
        ("name", a.name),
        ("format", a.format),
        ("task_family", a.task_family),
        ("split", a.split),
        ("text_column", a.text_column),
        ("text_pair_column", a.text_pair_column),
        ("label_column", a.label_column),
        ("glue_task", a.glue_task),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            form = form.text(k, v);
        }
    }
    form = form.part("file", reqwest::multipart::Part::bytes(bytes).file_name(file_name));
    let req = client.post("/datasets").multipart(form);
    client.present(req, |b| print_dataset(&b["dataset"])).await.with_context(|| format!("{} was not stored", a.file.display()))?;
    Ok(())
}

fn splits(v: &Value) -> String {
    v.as_object().map(|m| m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

fn print_dataset(d: &Value) {
    println!("dataset {} ({})", cell(&d["name"]), cell(&d["id"]));
    println!("  task family   {} (ranked by {})", cell(&d["task_family"]), cell(&d["primary_metric"]));
    println!("  format        {}, {} bytes, sha256 {}", cell(&d["format"]), cell(&d["bytes"]), cell(&d["sha256"]));
    let report = &d["report"];
    println!("  rows          {} ({})", cell(&d["row_count"]), splits(&report["rows_per_split"]));
    if let Some(labels) = report["label_distribution"].as_object().filter(|m| !m.is_empty()) {
        let total: u64 = labels.values().filter_map(Value::as_u64).sum();
        println!("  labels");
        for (label, n) in labels {
            let n = n.as_u64().unwrap_or(0);
            println!("    {label:<24} {n:>8}  {:5.1}%", 100.0 * n as f64 / total.max(1) as f64);
        }
    }
    if let Some(warnings) = report["warnings"].as_array().filter(|w| !w.is_empty()) {
        println!("  warnings");
        for w in warnings {
            println!("    line {}: {}", cell(&w["line"]), cell(&w["message"]));
        }
    }
}
