//! Benchmarks shared across teams, over the REST API against a real PostgreSQL: a GLUE
//! folder (files or a zip) becomes nine datasets with their metrics in one request, or
//! nothing; public datasets are readable and runnable by every team and changeable by
//! none; publishing is by the owning team only and puts a run or a study on the public
//! leaderboard, with the team's name and intervals; nothing unpublished or private leaks.
//! Runs are finished through the queue's lease API, the way a worker does.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{error_code, sentiment_jsonl, Api};
use rankfit_domain::dataset::suite::{self, sample_glue_folder, SuiteFile};
use rankfit_domain::prediction::{Output, Prediction};
use rankfit_store::suites::{self as suite_store, NewSuite};
use rankfit_store::{events, queue, studies};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

async fn upload_suite(api: &Api, token: &str, name: &str, files: &[SuiteFile]) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new().text("name", name.to_string()).text("kind", "glue");
    for f in files {
        form = form.part("file", reqwest::multipart::Part::bytes(f.bytes.clone()).file_name(f.path.clone()));
    }
    let resp = api.http.post(format!("{}/suites", api.base)).bearer_auth(token).multipart(form).send().await.unwrap();
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

fn zip_of(files: &[SuiteFile]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    for f in files {
        zip.start_file(f.path.clone(), zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(&f.bytes).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

#[tokio::test]
async fn a_glue_folder_registers_nine_datasets_with_their_metrics_or_nothing() {
    let api = Api::start(1 << 20).await;
    let a = api.team("alpha", false).await;
    let b = api.team("beta", false).await;

    let (status, body) = upload_suite(&api, &a, "GLUE", &sample_glue_folder()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let datasets = body["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 9);
    let by_name = |n: &str| datasets.iter().find(|d| d["name"] == n).unwrap_or_else(|| panic!("{n} in {body}"));
    for (name, family, metric) in [
        ("GLUE / cola", "classification", "mcc"),
        ("GLUE / sst2", "classification", "accuracy"),
        ("GLUE / mrpc", "classification", "f1"),
        ("GLUE / qqp", "classification", "f1"),
        ("GLUE / stsb", "regression", "pearson"),
        ("GLUE / mnli", "classification", "accuracy"),
        ("GLUE / qnli", "classification", "accuracy"),
        ("GLUE / rte", "classification", "accuracy"),
        ("GLUE / wnli", "classification", "accuracy"),
    ] {
        let d = by_name(name);
        assert_eq!((d["task_family"].as_str(), d["primary_metric"].as_str()), (Some(family), Some(metric)), "{d}");
        assert_eq!(d["splits"]["test"], 6, "{name}: the dev file is the test split");
        assert_eq!(d["visibility"], "team");
        assert_eq!(d["suite_id"], body["suite"]["id"]);
    }
    assert_eq!(by_name("GLUE / mnli")["label_set"], json!(["contradiction", "entailment", "neutral"]));
    let ignored = body["suite"]["report"]["ignored"].as_array().unwrap();
    assert!(ignored.iter().any(|s| s.as_str().unwrap().contains("dev_mismatched.tsv: 9 rows validated")), "{ignored:?}");

    // Runs read exactly the stored rows: the rows endpoint serves the dev file as test.
    let mnli = by_name("GLUE / mnli")["id"].as_str().unwrap().to_string();
    let resp = api.http.get(format!("{}/datasets/{mnli}/rows?split=test", api.base)).bearer_auth(&a).send().await.unwrap();
    let text = resp.text().await.unwrap();
    assert_eq!(text.lines().count(), 6);
    assert!(text.contains("Premise 100."));

    // The suite is the team's: the other team sees neither it nor its datasets.
    let suite_id = body["suite"]["id"].as_str().unwrap().to_string();
    assert_eq!(api.get(&b, &format!("/suites/{suite_id}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.get(&b, &format!("/datasets/{mnli}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.get(&b, "/datasets").await.1["datasets"], json!([]));
    let (_, listed) = api.get(&a, "/suites").await;
    assert_eq!(listed["suites"].as_array().unwrap().len(), 1);

    // The same folder as a zip, under another name.
    let zipped = SuiteFile { path: "glue_data.zip".into(), bytes: zip_of(&sample_glue_folder()) };
    let (status, body) = upload_suite(&api, &b, "GLUE zipped", &[zipped]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["datasets"].as_array().unwrap().len(), 9);

    // Malformed files: every problem with its file and line, and nothing is created.
    let (suites_before, datasets_before, files_before) = (api.count("suite").await, api.count("dataset").await, api.stored_files().len());
    let mut bad = sample_glue_folder();
    let rte = bad.iter_mut().find(|f| f.path.ends_with("RTE/dev.tsv")).unwrap();
    rte.bytes = b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n".to_vec();
    let (status, body) = upload_suite(&api, &a, "GLUE broken", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid_suite");
    let errors = body["error"]["details"]["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["file"] == "glue_data/RTE/dev.tsv" && e["line"] == 3), "{errors:?}");
    assert!(body["error"]["message"].as_str().unwrap().contains("RTE/dev.tsv line 3"), "{body}");
    // A name the team already used: nothing is created either (rows roll back, files go).
    let (status, body) = upload_suite(&api, &a, "GLUE", &sample_glue_folder()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        (api.count("suite").await, api.count("dataset").await, api.stored_files().len()),
        (suites_before, datasets_before, files_before)
    );

    let (status, body) = upload_suite(&api, &a, "nothing", &[SuiteFile { path: "readme.txt".into(), bytes: b"hi".to_vec() }]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("CoLA/train.tsv"), "{body}");
}

/// Installs a one-dataset public suite the way `rankfit benchmarks install` does.
async fn public_dataset(api: &Api) -> String {
    let examples = rankfit_domain::dataset::parse(
        sentiment_jsonl(40).as_bytes(),
        &rankfit_domain::dataset::ParseOptions::new(
            rankfit_domain::dataset::DataFormat::Jsonl,
            rankfit_domain::task::TaskFamily::Classification,
        ),
    )
    .unwrap()
    .examples;
    let (jsonl, options, parsed) = suite::canonical(rankfit_domain::task::TaskFamily::Classification, &examples).unwrap();
    let member = suite::SuiteDataset {
        key: "sentiment".into(),
        task_family: rankfit_domain::task::TaskFamily::Classification,
        primary_metric: "accuracy".into(),
        benchmark: "test/sentiment".into(),
        jsonl,
        options,
        parsed,
        sources: vec![],
    };
    let store = rankfit_store::ArtifactStore::open(api.artifacts_dir.path().to_str().unwrap()).unwrap();
    let row = suite_store::new_dataset(None, "Bench", &member).unwrap();
    let new = NewSuite { id: Uuid::new_v4(), team_id: None, name: "Bench".into(), kind: "builtin".into(), report: json!({}) };
    let (_, rows) = suite_store::create(&api.db.pool, &store, &new, vec![row]).await.unwrap();
    rows[0].id.to_string()
}

/// A worker finishes the next queued run with `right` of 20 test examples correct.
async fn finish_next(api: &Api, right_for: impl Fn(&rankfit_store::runs::RunRow) -> usize) -> Uuid {
    let lease = queue::claim(&api.db.pool, "test-worker", Duration::from_secs(60)).await.unwrap().unwrap();
    let r = &lease.run;
    let right = right_for(r);
    let preds: Vec<Prediction> = (0..20u32)
        .map(|i| Prediction {
            index: i,
            predicted: Output::Class { index: usize::from(i as usize >= right), label: String::new() },
            reference: Output::Class { index: 0, label: "negative".into() },
            input: Some(format!("secret input {i}")),
            scores: [("accuracy".to_string(), f64::from(u8::from((i as usize) < right)))].into_iter().collect(),
        })
        .collect();
    let acc = right as f64 / 20.0;
    assert!(studies::record_predictions(&api.db.pool, r.id, lease.token, "test", &preds).await.unwrap());
    assert!(events::record_evaluation(&api.db.pool, r.id, lease.token, "test", &json!({"accuracy": acc, "f1": acc, "mcc": 0.0}))
        .await
        .unwrap());
    let summary = json!({"final_ranks": [["layer.0.query", 4]]});
    assert!(queue::finish(&api.db.pool, r.id, lease.token, &queue::Outcome::Succeeded { summary }).await.unwrap());
    r.id
}

#[tokio::test]
async fn teams_share_public_datasets_and_see_each_others_published_results_only() {
    let api = Api::start(1 << 20).await;
    let a = api.team("alpha", false).await;
    let b = api.team("beta", false).await;
    let public = public_dataset(&api).await;

    // Both teams list, read and run on the public dataset; neither can delete it.
    for t in [&a, &b] {
        let (_, listed) = api.get(t, "/datasets").await;
        let d = listed["datasets"].as_array().unwrap().iter().find(|d| d["id"] == public.as_str()).cloned().unwrap();
        assert_eq!((d["visibility"].as_str(), d["team_id"].is_null()), (Some("public"), true));
        assert_eq!(api.get(t, &format!("/datasets/{public}")).await.0, StatusCode::OK);
        let resp = api.http.delete(format!("{}/datasets/{public}", api.base)).bearer_auth(t).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(error_code(&body), "read_only");
    }
    let (_, suites) = api.get(&b, "/suites").await;
    assert_eq!(suites["suites"][0]["visibility"], "public");

    // alpha: a study of LoRA and AdaLoRA over 2 seeds; beta: one LoRA run, and a private dataset.
    let spec = json!({"name": "alpha bench", "dataset_ids": [public], "methods": ["lora", "adalora"], "budgets": [4], "seeds": 2});
    let (status, study) = api.post(&a, "/studies", spec).await;
    assert_eq!(status, StatusCode::CREATED, "{study}");
    let study_id = study["study"]["id"].as_str().unwrap().to_string();
    let (status, beta_run) = api.post(&b, "/runs", json!({"dataset_id": public, "method": "lora", "budget": 4, "seed": 1})).await;
    assert_eq!(status, StatusCode::CREATED, "{beta_run}");
    let beta_run = beta_run["run"]["id"].as_str().unwrap().to_string();
    let (_, private) = api.upload(&b, "mine", "m.jsonl", sentiment_jsonl(40).as_bytes(), &[]).await;
    let private = private["dataset"]["id"].as_str().unwrap().to_string();
    let (_, private_run) = api.post(&b, "/runs", json!({"dataset_id": private, "method": "lora", "budget": 4})).await;
    let private_run = private_run["run"]["id"].as_str().unwrap().to_string();
    for _ in 0..6 {
        finish_next(&api, |r| 10 + r.seed as usize + if r.method == "adalora" { 4 } else { 0 }).await;
    }

    // Nothing is published yet: the public board is empty, other teams see no runs.
    let board = |token: String| {
        let api = &api;
        let public = public.clone();
        async move { api.get(&token, &format!("/public/leaderboards/{public}")).await }
    };
    let (status, got) = board(a.clone()).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["cells"], json!([]));
    assert_eq!(api.get(&b, &format!("/studies/{study_id}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.get(&a, &format!("/runs/{beta_run}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.get(&a, &format!("/runs/{beta_run}/predictions")).await.0, StatusCode::NOT_FOUND);
    let (_, a_runs) = api.get(&a, "/runs").await;
    assert_eq!(a_runs["runs"].as_array().unwrap().len(), 4);

    // Publishing is the owner's: beta cannot publish alpha's study or run, nor a run on a private dataset.
    assert_eq!(api.post(&b, &format!("/studies/{study_id}/publish"), json!({})).await.0, StatusCode::NOT_FOUND);
    let (_, studies_a) = api.get(&a, &format!("/studies/{study_id}")).await;
    let alpha_run = studies_a["grid"][0]["runs"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(api.post(&b, &format!("/runs/{alpha_run}/publish"), json!({})).await.0, StatusCode::NOT_FOUND);
    let (status, body) = api.post(&b, &format!("/runs/{private_run}/publish"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, body) = api.post(&a, &format!("/studies/{study_id}/publish"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["study"]["visibility"], "public");
    let (status, body) = api.post(&b, &format!("/runs/{beta_run}/publish"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["run"]["published_at"].is_string());

    // Both teams see both teams' cells, with names, n, intervals and in-team differences.
    for t in [&a, &b] {
        let (_, got) = board(t.to_string()).await;
        let cells = got["cells"].as_array().unwrap();
        let keys: Vec<(String, String, u64)> = cells
            .iter()
            .map(|c| {
                (c["method"].as_str().unwrap().into(), c["team"].as_str().unwrap().into(), c["metrics"]["accuracy"]["n"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(keys, [("lora".into(), "alpha".into(), 2), ("lora".into(), "beta".into(), 1), ("adalora".into(), "alpha".into(), 2)]);
        for c in cells {
            assert!(c["metrics"]["accuracy"]["interval"]["lo"].is_number(), "{c}");
        }
        // alpha's AdaLoRA against alpha's LoRA: +4 of 20 on each seed.
        let ada = &cells[2];
        assert!((ada["vs_lora"]["summary"]["mean"].as_f64().unwrap() - 0.2).abs() < 1e-9, "{ada}");
        assert_eq!(ada["vs_lora"]["summary"]["n"], 2);
        // beta's private run (on its own dataset) is nowhere.
        assert!(!got.to_string().contains(&private_run));
        assert!(!got.to_string().contains("secret input"));
    }
    let (_, index) = api.get(&b, "/public/leaderboards").await;
    let entry = index["boards"].as_array().unwrap().iter().find(|x| x["dataset_id"] == public.as_str()).cloned().unwrap();
    assert_eq!((entry["published_runs"].as_i64(), entry["teams"].as_i64()), (Some(5), Some(2)));
    // A private dataset has no public board.
    assert_eq!(api.get(&b, &format!("/public/leaderboards/{private}")).await.0, StatusCode::NOT_FOUND);

    // Published runs stay private otherwise: the other team still cannot open them.
    assert_eq!(api.get(&a, &format!("/runs/{beta_run}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.get(&b, &format!("/studies/{study_id}")).await.0, StatusCode::NOT_FOUND);

    // Unpublishing removes the entries.
    assert_eq!(api.delete(&a, &format!("/studies/{study_id}/publish")).await, StatusCode::OK);
    assert_eq!(api.delete(&b, &format!("/runs/{beta_run}/publish")).await, StatusCode::OK);
    let (_, got) = board(b.clone()).await;
    assert_eq!(got["cells"], json!([]));
}
