//! The REST API end to end: a real server on a loopback port, a real PostgreSQL.

mod common;

use common::{error_code, sentiment_jsonl, Api};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn start(max_upload_bytes: usize) -> Api {
    Api::start(max_upload_bytes).await
}

#[tokio::test]
async fn requests_without_a_valid_token_are_rejected() {
    let api = start(1 << 20).await;
    let resp = api.http.get(format!("{}/runs", api.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "unauthorized");
    let (status, _) = api.get("rf_not_a_token", "/runs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, doc) = api.get("", "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/runs"]["post"].is_object());
}

#[tokio::test]
async fn upload_round_trip_and_validation_report() {
    let api = start(1 << 20).await;
    let token = api.team("uploaders", false).await;
    let (status, body) = api.upload(&token, "sentiment", "s.jsonl", sentiment_jsonl(40).as_bytes(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ds = &body["dataset"];
    assert_eq!(ds["row_count"], 40);
    assert_eq!(ds["format"], "jsonl");
    assert_eq!(ds["label_set"], json!(["negative", "positive"]));
    assert_eq!(ds["report"]["label_distribution"]["positive"], 20);
    let id = ds["id"].as_str().unwrap();
    let (status, got) = api.get(&token, &format!("/datasets/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["dataset"]["sha256"], ds["sha256"]);
    assert_eq!(api.stored_files().len(), 1);
    // The rows exactly as runs see them, by split; another team sees nothing.
    let rows = |query: String, tok: String| {
        let (http, url) = (api.http.clone(), format!("{}/datasets/{id}/rows{query}", api.base));
        async move {
            let resp = http.get(url).bearer_auth(tok).send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    };
    let (status, all) = rows(String::new(), token.clone()).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let all: Vec<Value> = all.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(all.len(), 40);
    for split in ["train", "validation", "test"] {
        let (_, text) = rows(format!("?split={split}"), token.clone()).await;
        let n = text.lines().count() as u64;
        assert_eq!(Some(n), ds["splits"][split].as_u64().or(Some(0)), "{split}: {}", ds["splits"]);
        assert_eq!(n, all.iter().filter(|r| r["split"] == split).count() as u64);
    }
    assert!(all.iter().all(|r| r["target"]["class"] == "positive" || r["target"]["class"] == "negative"), "{:?}", all[0]);
    assert_eq!(rows("?split=dev".into(), token.clone()).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let other = api.team("others", false).await;
    assert_eq!(rows(String::new(), other).await.0, StatusCode::NOT_FOUND);
    // Same name again: 409, and nothing new stored.
    let (status, body) = api.upload(&token, "sentiment", "s.jsonl", sentiment_jsonl(40).as_bytes(), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(api.count("dataset").await, 1);
    assert_eq!(api.stored_files().len(), 1, "a rejected upload leaves no file");
    // Delete removes row and file.
    let resp = api.http.delete(format!("{}/datasets/{id}", api.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(api.count("dataset").await, 0);
    assert!(api.stored_files().is_empty());
}

#[tokio::test]
async fn malformed_uploads_are_rejected_with_line_numbers_and_leave_nothing() {
    let api = start(4096).await;
    let token = api.team("careless", false).await;
    let mut bad = sentiment_jsonl(10);
    bad.push_str("\n{\"text\": \"broken\", \"label\": \n");
    let (status, body) = api.upload(&token, "bad-json", "b.jsonl", bad.as_bytes(), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid_dataset");
    assert_eq!(body["error"]["details"]["errors"][0]["line"], 11, "{body}");

    let (status, body) = api.upload(&token, "no-label", "n.jsonl", b"{\"text\": \"hello\"}\n{\"text\": \"there\"}\n", &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, body) = api.upload(&token, "bad-utf8", "u.jsonl", b"{\"text\": \"\xff\xfe\", \"label\": \"a\"}\n", &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, body) = api.upload(&token, "what", "w.bin", b"12345", &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "format");

    let big = "x".repeat(10_000);
    let (status, body) = api.upload(&token, "huge", "h.jsonl", big.as_bytes(), &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "upload_too_large");

    assert_eq!(api.count("dataset").await, 0, "no rows left behind");
    assert!(api.stored_files().is_empty(), "no files left behind");
}

#[tokio::test]
async fn runs_are_validated_listed_cancelled_and_scoped_to_their_team() {
    let api = start(1 << 20).await;
    let a = api.team("team-a", false).await;
    let b = api.team("team-b", false).await;
    let (_, body) = api.upload(&a, "s", "s.jsonl", sentiment_jsonl(30).as_bytes(), &[]).await;
    let ds = body["dataset"]["id"].as_str().unwrap().to_string();

    // Field-named validation errors.
    let (status, body) = api.post(&a, "/runs", json!({"dataset_id": ds, "method": "lora", "budget": 100000})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"]["field"], "budget");
    let (status, body) = api.post(&a, "/runs", json!({"dataset_id": ds, "method": "magic", "budget": 4})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"]["field"], "method");
    let (status, body) =
        api.post(&a, "/runs", json!({"dataset_id": ds, "method": "adalora", "budget": 8, "method_config": {"init_r": 2}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"]["field"], "method.init_r");
    let (status, body) =
        api.post(&a, "/runs", json!({"dataset_id": ds, "method": "lora", "budget": 4, "training": {"learning_rate": -1}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"]["field"], "training.learning_rate");
    let (status, body) =
        api.post(&a, "/runs", json!({"dataset_id": ds, "method": "lora", "budget": 4, "base_model": "smollm2-135m-instruct"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"]["field"], "base_model");
    // Team B cannot launch on team A's dataset.
    let (status, body) = api.post(&b, "/runs", json!({"dataset_id": ds, "method": "lora", "budget": 4})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"]["field"], "dataset_id");
    assert_eq!(api.count("run").await, 0);

    let (status, body) = api.post(&a, "/runs", json!({"dataset_id": ds, "method": "adalora", "budget": 4, "seed": 3})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run = body["run"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["run"]["status"], "queued");
    assert_eq!(body["run"]["config"]["method"]["init_r"], Value::Null);
    assert_eq!(body["run"]["config"]["method"]["beta1"], 0.85);

    let (_, list) = api.get(&a, "/runs?status=queued&method=adalora").await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);
    let (_, list) = api.get(&a, "/runs?status=running").await;
    assert!(list["runs"].as_array().unwrap().is_empty());
    let (status, _) = api.get(&a, "/runs?status=bogus").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Team B sees nothing of team A.
    for path in [
        format!("/runs/{run}"),
        format!("/runs/{run}/metrics"),
        format!("/runs/{run}/rank-map"),
        format!("/datasets/{ds}"),
        format!("/runs/{run}/adapter"),
    ] {
        let (status, body) = api.get(&b, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (_, list) = api.get(&b, "/runs").await;
    assert!(list["runs"].as_array().unwrap().is_empty());
    let (_, list) = api.get(&b, "/datasets").await;
    assert!(list["datasets"].as_array().unwrap().is_empty());
    let (status, _) = api.post(&b, &format!("/runs/{run}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Team A cancels its queued run; cancelling again conflicts.
    let (status, body) = api.post(&a, &format!("/runs/{run}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run"]["status"], "cancelled");
    let (status, _) = api.post(&a, &format!("/runs/{run}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A dataset with runs cannot be deleted.
    let resp = api.http.delete(format!("{}/datasets/{ds}", api.base)).bearer_auth(&a).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn only_admins_create_teams() {
    let api = start(1 << 20).await;
    let admin = api.team("admins", true).await;
    let user = api.team("users", false).await;
    let (status, _) = api.post(&user, "/teams", json!({"name": "x"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api.post(&admin, "/teams", json!({"name": "newcomers"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"]["secret"].as_str().unwrap();
    let (status, me) = api.get(token, "/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["team"]["name"], "newcomers");
    let (status, _) = api.post(&admin, "/teams", json!({"name": "newcomers"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

/// Parses a complete SSE body into (id, event, data) triples.
fn sse_events(body: &str) -> Vec<(i64, String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut id = None;
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str(v.trim()).ok();
                }
            }
            Some((id?, event?, data?))
        })
        .collect()
}

#[tokio::test]
async fn run_events_replay_and_resume_after_last_event_id() {
    let api = start(1 << 20).await;
    let token = api.team("watchers", false).await;
    let (_, body) = api.upload(&token, "s", "s.jsonl", sentiment_jsonl(30).as_bytes(), &[]).await;
    let ds = body["dataset"]["id"].as_str().unwrap().to_string();
    let (_, body) = api.post(&token, "/runs", json!({"dataset_id": ds, "method": "lora", "budget": 2})).await;
    let run = body["run"]["id"].as_str().unwrap().to_string();
    api.post(&token, &format!("/runs/{run}/cancel"), json!({})).await;

    // The stream replays the whole log and ends after the terminal status.
    let resp = api.http.get(format!("{}/runs/{run}/events", api.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse_events(&resp.text().await.unwrap());
    let statuses: Vec<&str> = events.iter().filter(|e| e.1 == "status").map(|e| e.2["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["queued", "cancelled"]);
    assert!(events.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");

    // Reconnecting with Last-Event-ID gets only what came after it.
    let first = events[0].0;
    let resp = api
        .http
        .get(format!("{}/runs/{run}/events", api.base))
        .bearer_auth(&token)
        .header("Last-Event-ID", first.to_string())
        .send()
        .await
        .unwrap();
    let rest = sse_events(&resp.text().await.unwrap());
    assert_eq!(rest.len(), events.len() - 1);
    assert!(rest.iter().all(|e| e.0 > first));
}

/// `?dry_run=true`: the same validation as a real launch, an estimate back, nothing created.
/// Once a run of the model has finished on the fleet, the estimate rests on its measured
/// throughput; every queued run keeps the estimate it was launched with.
#[tokio::test]
async fn dry_runs_estimate_without_creating_anything() {
    let api = start(1 << 20).await;
    let a = api.team("team-a", false).await;
    let b = api.team("team-b", false).await;
    let (_, body) = api.upload(&a, "s", "s.jsonl", sentiment_jsonl(60).as_bytes(), &[]).await;
    let ds = body["dataset"]["id"].as_str().unwrap().to_string();
    let report = &body["dataset"]["report"];
    let train = report["rows_per_split"]["train"].as_u64().unwrap();
    let train_bytes = report["text_bytes_per_split"]["train"].as_u64().unwrap();
    assert!(train_bytes > 30 * train, "text bytes are counted per split: {report}");
    let events_before = api.count("run_event").await;

    let req = json!({"dataset_id": ds, "method": "lora", "budget": 4, "training": {"epochs": 2.0, "batch_size": 8, "max_seq_len": 64}});
    let (status, body) = api.post(&a, "/runs?dry_run=true", req.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let e = &body["estimate"];
    assert_eq!(body["dry_run"], true);
    assert_eq!(e["steps"].as_u64().unwrap(), 2 * train.div_ceil(8));
    assert_eq!(e["basis"]["source"], "reference");
    assert_eq!(e["device"], "cpu");
    assert_eq!(e["tokens_measured"], false);
    assert!(e["total_seconds"].as_f64().unwrap() > 0.0 && e["peak_memory_bytes"].as_f64().unwrap() > 0.0, "{e}");
    assert!(e["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("reference machine")));
    assert!(body["estimator_accuracy"].is_null());
    assert_eq!(api.count("run").await, 0, "a dry run creates no run");
    assert_eq!(api.count("run_event").await, events_before);

    // The same field errors as a launch, and the same team scoping.
    let (status, body) = api.post(&a, "/runs?dry_run=true", json!({"dataset_id": ds, "method": "lora", "budget": 100000})).await;
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("budget")));
    let (status, body) = api.post(&b, "/runs?dry_run=true", req.clone()).await;
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("dataset_id")));
    let (status, _) = api.post(&a, "/runs?dry_run=maybe", req.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A study's dry run: every grid point estimated, summed, nothing queued.
    let spec = json!({"name": "grid", "dataset_ids": [ds], "methods": ["lora", "adalora"], "budgets": [4], "seeds": 2,
                      "training": {"epochs": 1.0, "batch_size": 8, "max_seq_len": 64}});
    let (status, body) = api.post(&a, "/studies?dry_run=true", spec).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["grid_size"], 4);
    let runs = body["runs"].as_array().unwrap();
    let sum: f64 = runs.iter().map(|r| r["estimate"]["total_seconds"].as_f64().unwrap()).sum();
    assert!((body["estimate"]["total_seconds"].as_f64().unwrap() - sum).abs() < 1e-6);
    assert_eq!(api.count("study").await, 0);
    assert_eq!(api.count("run").await, 0);

    // A real launch stores its estimate.
    let (status, body) = api.post(&a, "/runs", req.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run = body["run"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["run"]["estimate"]["steps"].as_u64().unwrap(), 2 * train.div_ceil(8));

    // Pretend the fleet finished it (as a worker's summary records): 2000 tokens/s over
    // 40 tokens per example, 10 s of held-out passes inside 60 s of training.
    let summary = json!({"train_seconds": 60.0, "heldout_seconds": 10.0, "tokens_per_second": 2000.0 * 50.0 / 60.0,
                         "examples_per_second": 2000.0 / 40.0 * 50.0 / 60.0, "eval_seconds": 2.0, "eval_examples": 12,
                         "wall_seconds": 70.0, "device": "cpu", "peak_memory_bytes": 600u64 * 1048576});
    sqlx::query("update run set status = 'succeeded', started_at = now(), finished_at = now(), summary = $2 where id = $1::uuid")
        .bind(&run)
        .bind(&summary)
        .execute(&api.db.pool)
        .await
        .unwrap();
    let (_, body) = api.post(&a, "/runs?dry_run=true", req).await;
    let e = &body["estimate"];
    assert_eq!(e["basis"], json!({"source": "measured", "runs": 1, "same_method": true}));
    assert_eq!(e["tokens_measured"], true);
    assert!((e["tokens_per_example"].as_f64().unwrap() - 40.0).abs() < 1e-9, "{e}");
    assert!((e["tokens_per_second"].as_f64().unwrap() - 2000.0).abs() < 1e-6, "{e}");
    let want_train = (2 * train.div_ceil(8)) as f64 * 8.0 * 40.0 / 2000.0;
    assert!((e["train_seconds"].as_f64().unwrap() - want_train).abs() < 1e-9, "{e}");
    assert!(e["warnings"].as_array().unwrap().is_empty(), "{e}");
    // The finished run's own estimate against its 70 s.
    assert_eq!(body["estimator_accuracy"]["runs"], 1);
}
