//! The fleet as operators see it: workers (alive, stale, gone) with their current run and
//! lease, the queue in claim order with expected start and finish, and `/metrics` in the
//! Prometheus text format, all admin-only, over a real server and database.

mod common;

use std::time::Duration;

use common::{sentiment_jsonl, Api};
use rankfit_store::{queue, workers};
use reqwest::StatusCode;
use serde_json::json;

fn worker(name: &str, device: &str) -> workers::NewWorker {
    workers::NewWorker {
        name: name.into(),
        host: "box".into(),
        pid: 1,
        device: device.into(),
        features: vec![],
        version: "0.1.0".into(),
        lease_secs: 30,
    }
}

async fn metrics(api: &Api, token: Option<&str>) -> (StatusCode, String) {
    let mut req = api.http.get(format!("{}/metrics", api.root));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// The value of the sample `series` (name with labels, exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn operators_see_workers_the_queue_and_metrics() {
    let api = Api::start(1 << 20).await;
    let admin = api.team("ops", true).await;
    let user = api.team("research", false).await;
    let (status, ds) = api.upload(&user, "sentiment", "s.jsonl", sentiment_jsonl(40).as_bytes(), &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api.upload(&user, "broken", "b.jsonl", b"{\"text\": 1}\n", &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let ds = ds["dataset"]["id"].as_str().unwrap().to_string();
    let mut runs = Vec::new();
    for priority in [0, 0, 5] {
        let (status, body) = api.post(&user, "/runs", json!({"dataset_id": ds, "method": "lora", "budget": 2, "priority": priority})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        runs.push(body["run"]["id"].as_str().unwrap().to_string());
    }

    // Three workers: one alive and training the first run, one silent past its lease, one that exited.
    let pool = &api.db.pool;
    for (name, device) in [("alive:1", "cuda:0"), ("stale:2", "cpu"), ("gone:3", "cpu")] {
        workers::register(pool, &worker(name, device)).await.unwrap();
    }
    // The claim takes the highest priority first: the third run.
    let lease = queue::claim(pool, "alive:1", Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!(lease.run.id.to_string(), runs[2]);
    workers::record(pool, "alive:1", workers::WorkerEvent::Claimed).await.unwrap();
    workers::beat(pool, "alive:1", Some(lease.run.id)).await.unwrap();
    sqlx::query("update worker set last_seen_at = now() - interval '2 minutes' where name = 'stale:2'").execute(pool).await.unwrap();
    workers::stopped(pool, "gone:3").await.unwrap();

    let (status, _) = api.get(&user, "/workers").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "workers are for admin teams");
    let (status, list) = api.get(&admin, "/workers").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let state = |name: &str| list["workers"].as_array().unwrap().iter().find(|w| w["name"] == name).unwrap().clone();
    let alive = state("alive:1");
    assert_eq!(alive["state"], "alive");
    assert_eq!(alive["current_run_id"], json!(runs[2]));
    assert_eq!(alive["claims"], 1);
    assert!(alive["current_run_lease_expires_at"].is_string(), "the lease expiry is visible: {alive}");
    assert_eq!(state("stale:2")["state"], "stale");
    assert!(state("stale:2")["silent_seconds"].as_f64().unwrap() >= 119.0);
    assert_eq!(state("gone:3")["state"], "gone");
    assert_eq!(list["alive_by_device"], json!({"cuda:0": 1}));

    // The queue: the other two in claim order (same priority: oldest first), each starting
    // when the one alive worker frees up from the run ahead of it.
    let (status, _) = api.get(&user, "/queue").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, q) = api.get(&admin, "/queue").await;
    assert_eq!(status, StatusCode::OK, "{q}");
    assert_eq!(q["alive_workers"], 1);
    let entries = q["queue"].as_array().unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![runs[0].as_str(), runs[1].as_str()]);
    assert_eq!((entries[0]["position"].as_u64(), entries[1]["position"].as_u64()), (Some(1), Some(2)));
    assert_eq!(entries[0]["team_name"], "research");
    let est = entries[0]["estimated_seconds"].as_f64().expect("runs are queued with an estimate");
    assert_eq!(entries[0]["eta"]["start_seconds"].as_f64(), Some(0.0), "the running run reported no ETA yet");
    assert_eq!(entries[1]["eta"]["start_seconds"].as_f64(), Some(est));

    // Metrics: admin only; the fleet from the database, the HTTP traffic by route pattern.
    assert_eq!(metrics(&api, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(metrics(&api, Some(&user)).await.0, StatusCode::FORBIDDEN);
    let (status, _) = api.get(&user, &format!("/runs/{}", runs[0])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = metrics(&api, Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    for (series, want) in [
        (r#"rankfit_runs{status="queued"}"#, 2.0),
        (r#"rankfit_runs{status="running"}"#, 1.0),
        (r#"rankfit_runs{status="succeeded"}"#, 0.0),
        ("rankfit_queue_depth", 2.0),
        ("rankfit_claims_total", 1.0),
        ("rankfit_lease_expiries_total", 0.0),
        (r#"rankfit_workers{device="cuda:0",state="alive"}"#, 1.0),
        (r#"rankfit_workers{device="cpu",state="stale"}"#, 1.0),
        (r#"rankfit_workers{device="cpu",state="gone"}"#, 1.0),
        (r#"rankfit_workers{device="cpu",state="alive"}"#, 0.0),
        (r#"rankfit_upload_rejects_total{status="422"}"#, 1.0),
        (r#"rankfit_http_requests_total{method="GET",route="/api/v1/runs/{id}",status="200"}"#, 1.0),
        (r#"rankfit_http_requests_total{method="GET",route="/api/v1/workers",status="403"}"#, 1.0),
        (r#"rankfit_http_requests_total{method="POST",route="/api/v1/runs",status="201"}"#, 3.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    assert!(sample(&text, "rankfit_queue_oldest_seconds").is_some_and(|s| s >= 0.0));
    assert!(sample(&text, "rankfit_upload_bytes_total").is_some_and(|b| b > 0.0));
    assert!(
        sample(&text, r#"rankfit_http_request_duration_seconds_count{method="GET",route="/api/v1/runs/{id}",status="200"}"#) == Some(1.0),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}
