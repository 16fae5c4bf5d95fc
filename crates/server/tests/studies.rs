//! Studies over the REST API against a real PostgreSQL: the grid is validated up front and
//! queued all or nothing, extending reruns nothing, results aggregate into cells whose
//! numbers are the runs' own, cancelling stops what has not finished, and no other team
//! sees any of it. Runs are finished through the queue's own lease API (claim, record,
//! finish), the way a worker does.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{error_code, sentiment_jsonl, Api};
use rankfit_domain::prediction::{Output, Prediction};
use rankfit_store::{events, queue, studies};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn dataset(api: &Api, token: &str, name: &str) -> String {
    let (status, body) = api.upload(token, name, "s.jsonl", sentiment_jsonl(40).as_bytes(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["dataset"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_study_is_validated_whole_and_queued_all_or_nothing() {
    let api = Api::start(1 << 20).await;
    let a = api.team("alpha", false).await;
    let b = api.team("beta", false).await;
    let d1 = dataset(&api, &a, "one").await;
    let d2 = dataset(&api, &a, "two").await;
    let foreign = dataset(&api, &b, "theirs").await;
    let spec = |v: Value| {
        let mut base = json!({"name": "grid", "dataset_ids": [d1, d2], "methods": ["lora", "adalora"], "budgets": [4], "seeds": 2,
                              "training": {"max_steps": 3}});
        for (k, x) in v.as_object().unwrap() {
            base[k] = x.clone();
        }
        base
    };
    let (status, body) = api.post(&a, "/studies", spec(json!({"methods": ["lora", "dora"]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "methods");
    // One bad grid point (AdaLoRA's initial rank below the budget) rejects the whole study,
    // with the field a single run would name, and says which point.
    let (status, body) = api.post(&a, "/studies", spec(json!({"method_config": {"adalora": {"init_r": 2}}}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "method.init_r");
    assert!(body["error"]["message"].as_str().unwrap().contains("method adalora"), "{body}");
    let (status, body) = api.post(&a, "/studies", spec(json!({"training": {"learning_rate": -1}}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "training.learning_rate");
    // Another team's dataset is not yours.
    let (status, body) = api.post(&a, "/studies", spec(json!({"dataset_ids": [d1, foreign]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "dataset_ids[1]");
    assert_eq!((api.count("study").await, api.count("run").await), (0, 0), "rejected studies leave no rows");

    let (status, body) = api.post(&a, "/studies", spec(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["runs_created"], 8);
    let id = body["study"]["id"].as_str().unwrap().to_string();
    assert_eq!(api.count("run").await, 8);
    let (status, body) = api.post(&a, "/studies", spec(json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(api.count("run").await, 8);

    // Extending adds only the new grid points.
    let (status, body) = api.post(&a, &format!("/studies/{id}/extend"), json!({"seeds": 3, "budgets": [8]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["runs_created"].as_i64(), body["grid_size"].as_i64()), (Some(16), Some(24)));
    let (_, body) = api.post(&a, &format!("/studies/{id}/extend"), json!({"seeds": 3})).await;
    assert_eq!(body["runs_created"], 0);
    let (status, _) = api.post(&a, &format!("/studies/{id}/extend"), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api.count("run").await, 24);
    let (_, got) = api.get(&a, &format!("/studies/{id}")).await;
    assert_eq!(got["progress"]["total"], 24);
    assert_eq!(got["progress"]["queued"], 24);
    assert_eq!(got["grid"].as_array().unwrap().len(), 2 * 2 * 2);
    assert!(got["grid"].as_array().unwrap().iter().all(|c| c["runs"].as_array().unwrap().len() == 3));

    // The other team sees none of it.
    for path in [format!("/studies/{id}"), format!("/studies/{id}/table"), format!("/studies/{id}/events")] {
        let (status, _) = api.get(&b, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    for path in [format!("/studies/{id}/cancel"), format!("/studies/{id}/extend")] {
        let (status, _) = api.post(&b, &path, json!({"seeds": 5})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, list) = api.get(&b, "/studies").await;
    assert_eq!(list["studies"], json!([]));
    assert_eq!(api.count("run").await, 24);
}

fn sample_std(v: &[f64]) -> f64 {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

#[tokio::test]
async fn results_aggregate_the_runs_own_numbers_and_cancel_keeps_finished_runs() {
    let api = Api::start(1 << 20).await;
    let a = api.team("alpha", false).await;
    let b = api.team("beta", false).await;
    let d = dataset(&api, &a, "one").await;
    let body = json!({"name": "s", "dataset_ids": [d], "methods": ["lora", "adalora"], "budgets": [4], "seeds": 3});
    let (status, created) = api.post(&a, "/studies", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["study"]["id"].as_str().unwrap().to_string();

    // A "worker" finishes 4 of the 6 runs with known test accuracies and predictions
    // (the accuracy is the mean of the per-example 0/1 scores, as the trainer writes it).
    let mut recorded: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut some_run = None;
    for _ in 0..4 {
        let lease = queue::claim(&api.db.pool, "test-worker", Duration::from_secs(60)).await.unwrap().unwrap();
        let r = &lease.run;
        let right = 10 + r.seed as usize + if r.method == "adalora" { 4 } else { 0 };
        let preds: Vec<Prediction> = (0..20u32)
            .map(|i| Prediction {
                index: i,
                predicted: Output::Class { index: usize::from(i as usize >= right), label: String::new() },
                reference: Output::Class { index: 0, label: "positive".into() },
                input: None,
                scores: [("accuracy".to_string(), f64::from(u8::from((i as usize) < right)))].into_iter().collect(),
            })
            .collect();
        let acc = right as f64 / 20.0;
        assert!(studies::record_predictions(&api.db.pool, r.id, lease.token, "test", &preds).await.unwrap());
        let metrics = json!({"accuracy": acc, "f1": acc, "mcc": 0.1});
        assert!(events::record_evaluation(&api.db.pool, r.id, lease.token, "test", &metrics).await.unwrap());
        let summary = json!({"trainable_params": {"start": 100, "peak": 120, "end": 90 + r.seed}, "train_seconds": 10.0 * r.seed as f64,
                             "final_ranks": [["layer.0.query", 4], ["layer.0.value", 4]]});
        assert!(queue::finish(&api.db.pool, r.id, lease.token, &queue::Outcome::Succeeded { summary }).await.unwrap());
        recorded.entry(r.method.clone()).or_default().push(acc);
        some_run = Some(r.id);
    }

    let (status, got) = api.get(&a, &format!("/studies/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!((got["progress"]["done"].as_i64(), got["progress"]["total"].as_i64()), (Some(4), Some(6)));
    let cells = got["cells"].as_array().unwrap();
    assert_eq!(cells.len(), recorded.len());
    for c in cells {
        let values = &recorded[c["method"].as_str().unwrap()];
        let s = &c["metrics"]["accuracy"];
        assert_eq!(s["n"].as_u64().unwrap() as usize, values.len(), "{c}");
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((s["mean"].as_f64().unwrap() - mean).abs() < 1e-12, "{c}");
        if values.len() >= 2 {
            assert!((s["std"].as_f64().unwrap() - sample_std(values)).abs() < 1e-12, "{c}");
            assert_eq!(s["interval"]["method"], "student_t");
        } else {
            assert!(s["std"].is_null());
            assert_eq!(s["interval"]["method"], "bootstrap", "one seed: an interval over the test examples");
        }
        assert!(s["interval"]["lo"].as_f64().unwrap() <= mean && mean <= s["interval"]["hi"].as_f64().unwrap());
    }

    // The paper table in every format.
    let (_, t) = api.get(&a, &format!("/studies/{id}/table")).await;
    assert_eq!(t["table"]["columns"][0]["dataset"], "one");
    assert_eq!(t["table"]["rows"].as_array().unwrap().len(), recorded.len());
    for (format, needle) in [("md", "Method | Budget"), ("csv", "method,budget"), ("tex", "\\begin{tabular}")] {
        let resp = api.http.get(format!("{}/studies/{id}/table?format={format}", api.base)).bearer_auth(&a).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.unwrap();
        assert!(text.contains(needle), "{format}: {text}");
    }
    let (status, _) = api.get(&a, &format!("/studies/{id}/table?format=xls")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Predictions download, and nobody else's.
    let run = some_run.unwrap();
    let resp = api.http.get(format!("{}/runs/{run}/predictions?format=csv", api.base)).bearer_auth(&a).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let csv = resp.text().await.unwrap();
    assert_eq!(csv.lines().count(), 21, "{csv}");
    assert!(csv.starts_with("index,input,predicted,reference,accuracy"));
    let (status, _) = api.get(&b, &format!("/runs/{run}/predictions")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The leaderboard is the same cells, aggregated over all the team's runs on the dataset.
    let (_, lb) = api.get(&a, &format!("/leaderboards?dataset_id={d}")).await;
    assert_eq!(lb["cells"].as_array().unwrap().len(), recorded.len());
    assert_eq!(lb["split"], "test");
    let (status, body) = api.get(&b, &format!("/leaderboards?dataset_id={d}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Cancelling stops the 2 queued runs; the 4 finished ones stay.
    let (status, c) = api.post(&a, &format!("/studies/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!((c["cancelled"].as_u64(), c["stopping"].as_u64()), (Some(2), Some(0)));
    let (_, got) = api.get(&a, &format!("/studies/{id}")).await;
    assert_eq!(got["progress"]["succeeded"], 4);
    assert_eq!(got["progress"]["cancelled"], 2);
    assert_eq!(got["progress"]["queued"], 0);
    assert_eq!(error_code(&api.get(&a, "/studies/not-a-uuid").await.1), "bad_request");
}
