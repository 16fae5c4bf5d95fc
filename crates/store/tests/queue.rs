//! The run queue against a real PostgreSQL (the managed test cluster).

use std::time::Duration;

use rankfit_store::queue::{self, Outcome};
use rankfit_store::runs::{self, NewRun, RunFilter};
use rankfit_store::testing::TestDb;
use rankfit_store::{datasets, events, teams, Pool, StoreError};
use serde_json::json;
use uuid::Uuid;

async fn team_with_dataset(pool: &Pool, name: &str) -> (Uuid, Uuid) {
    let team = teams::create_team(pool, name, false).await.unwrap();
    let ds = datasets::insert(pool, &rankfit_store::testing::placeholder_dataset(team.id)).await.unwrap();
    (team.id, ds.id)
}

async fn queue_run(pool: &Pool, team: Uuid, dataset: Uuid, max_attempts: i32) -> Uuid {
    runs::create(
        pool,
        &NewRun {
            team_id: team,
            dataset_id: dataset,
            base_model_id: "all-minilm-l6-v2".into(),
            method: "lora".into(),
            config: json!({"method": {"method": "lora"}}),
            budget: 4,
            seed: 1,
            name: String::new(),
            priority: 0,
            max_attempts,
            continue_from: None,
            estimate: None,
        },
    )
    .await
    .unwrap()
    .id
}

/// Forces a running run's lease into the past, as if its worker had died.
async fn expire_lease(pool: &Pool, run: Uuid) {
    sqlx::query("update run set lease_expires_at = now() - interval '1 second' where id = $1").bind(run).execute(pool).await.unwrap();
}

#[tokio::test]
async fn racing_workers_claim_a_run_exactly_once() {
    let db = TestDb::new().await;
    let (team, ds) = team_with_dataset(&db.pool, "racers").await;
    let run = queue_run(&db.pool, team, ds, 3).await;
    let mut handles = Vec::new();
    for i in 0..8 {
        let pool = db.pool.clone();
        handles.push(tokio::spawn(async move { queue::claim(&pool, &format!("w{i}"), Duration::from_secs(60)).await.unwrap() }));
    }
    let mut winners = Vec::new();
    for h in handles {
        if let Some(lease) = h.await.unwrap() {
            winners.push(lease);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one worker must win the run");
    assert_eq!(winners[0].run.id, run);
    assert_eq!(winners[0].run.status, "running");
    assert_eq!(winners[0].run.attempts, 1);
}

#[tokio::test]
async fn many_runs_are_each_claimed_once_under_contention() {
    let db = TestDb::new().await;
    let (team, ds) = team_with_dataset(&db.pool, "bulk").await;
    for _ in 0..60 {
        queue_run(&db.pool, team, ds, 3).await;
    }
    let mut handles = Vec::new();
    for i in 0..6 {
        let pool = db.pool.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(lease) = queue::claim(&pool, &format!("w{i}"), Duration::from_secs(60)).await.unwrap() {
                got.push(lease.run.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, 60, "every run claimed");
    assert_eq!(all.len(), 60, "no run claimed twice");
}

#[tokio::test]
async fn expired_lease_is_requeued_and_claimed_by_another_worker() {
    let db = TestDb::new().await;
    let (team, ds) = team_with_dataset(&db.pool, "expiry").await;
    let run = queue_run(&db.pool, team, ds, 3).await;
    let first = queue::claim(&db.pool, "dead-worker", Duration::from_secs(60)).await.unwrap().unwrap();
    // Not expired yet: the reaper leaves it alone.
    assert!(queue::reap(&db.pool, Duration::ZERO).await.unwrap().is_empty());
    expire_lease(&db.pool, run).await;
    let reaped = queue::reap(&db.pool, Duration::ZERO).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].status, "queued");
    let second = queue::claim(&db.pool, "live-worker", Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!(second.run.id, run);
    assert_eq!(second.run.attempts, 2);
    assert_eq!(second.run.lease_owner.as_deref(), Some("live-worker"));
    // The dead worker's token is now useless: it cannot heartbeat, write or finish.
    assert!(queue::heartbeat(&db.pool, run, first.token, Duration::from_secs(60)).await.unwrap().is_none());
    assert!(!events::record_metric(&db.pool, run, first.token, 1, "train", "loss", 1.0).await.unwrap());
    assert!(!queue::finish(&db.pool, run, first.token, &Outcome::Succeeded { summary: json!({}) }).await.unwrap());
    assert!(queue::finish(&db.pool, run, second.token, &Outcome::Succeeded { summary: json!({"ok": true}) }).await.unwrap());
    let row = runs::get_any(&db.pool, run).await.unwrap();
    assert_eq!(row.status, "succeeded");
    assert_eq!(row.summary.0, json!({"ok": true}));
}

#[tokio::test]
async fn backoff_delays_the_retry_and_max_attempts_fails_the_run() {
    let db = TestDb::new().await;
    let (team, ds) = team_with_dataset(&db.pool, "backoff").await;
    let run = queue_run(&db.pool, team, ds, 2).await;
    queue::claim(&db.pool, "w", Duration::from_secs(60)).await.unwrap().unwrap();
    expire_lease(&db.pool, run).await;
    queue::reap(&db.pool, Duration::from_secs(3600)).await.unwrap();
    // Requeued, but not claimable before its backoff has passed.
    assert_eq!(runs::get_any(&db.pool, run).await.unwrap().status, "queued");
    assert!(queue::claim(&db.pool, "w", Duration::from_secs(60)).await.unwrap().is_none());
    sqlx::query("update run set not_before = now() where id = $1").bind(run).execute(&db.pool).await.unwrap();
    queue::claim(&db.pool, "w", Duration::from_secs(60)).await.unwrap().unwrap();
    expire_lease(&db.pool, run).await;
    let reaped = queue::reap(&db.pool, Duration::ZERO).await.unwrap();
    assert_eq!(reaped[0].status, "failed");
    let row = runs::get_any(&db.pool, run).await.unwrap();
    assert_eq!(row.status, "failed");
    assert!(row.error.unwrap().contains("attempt 2 of 2"));
}

#[tokio::test]
async fn stale_token_heartbeat_is_rejected() {
    let db = TestDb::new().await;
    let (team, ds) = team_with_dataset(&db.pool, "stale").await;
    let run = queue_run(&db.pool, team, ds, 3).await;
    let lease = queue::claim(&db.pool, "w", Duration::from_secs(60)).await.unwrap().unwrap();
    let beat = queue::heartbeat(&db.pool, run, lease.token, Duration::from_secs(60)).await.unwrap();
    assert_eq!(beat, Some(queue::Beat { cancel_requested: false }));
    assert!(queue::heartbeat(&db.pool, run, Uuid::new_v4(), Duration::from_secs(60)).await.unwrap().is_none());
}

#[tokio::test]
async fn cancel_reaches_a_running_worker_and_cancels_a_queued_run() {
    let db = TestDb::new().await;
    let (team, ds) = team_with_dataset(&db.pool, "cancel").await;
    let running = queue_run(&db.pool, team, ds, 3).await;
    let lease = queue::claim(&db.pool, "w", Duration::from_secs(60)).await.unwrap().unwrap();
    let queued = queue_run(&db.pool, team, ds, 3).await;

    let row = runs::cancel(&db.pool, team, queued).await.unwrap();
    assert_eq!(row.status, "cancelled");
    assert!(queue::claim(&db.pool, "w2", Duration::from_secs(60)).await.unwrap().is_none(), "a cancelled run is never claimed");

    let row = runs::cancel(&db.pool, team, running).await.unwrap();
    assert_eq!(row.status, "running");
    assert!(row.cancel_requested);
    let beat = queue::heartbeat(&db.pool, running, lease.token, Duration::from_secs(60)).await.unwrap().unwrap();
    assert!(beat.cancel_requested);
    assert!(queue::finish(&db.pool, running, lease.token, &Outcome::Cancelled).await.unwrap());
    assert_eq!(runs::get_any(&db.pool, running).await.unwrap().status, "cancelled");
    assert!(matches!(runs::cancel(&db.pool, team, running).await, Err(StoreError::Conflict(_))));
}

#[tokio::test]
async fn teams_cannot_see_or_cancel_each_others_runs() {
    let db = TestDb::new().await;
    let (a, ds_a) = team_with_dataset(&db.pool, "team-a").await;
    let (b, _) = team_with_dataset(&db.pool, "team-b").await;
    let run = queue_run(&db.pool, a, ds_a, 3).await;
    assert!(matches!(runs::get(&db.pool, b, run).await, Err(StoreError::NotFound)));
    assert!(matches!(runs::cancel(&db.pool, b, run).await, Err(StoreError::NotFound)));
    assert!(matches!(datasets::get(&db.pool, b, ds_a).await, Err(StoreError::NotFound)));
    assert!(runs::list(&db.pool, b, &RunFilter { limit: 100, ..Default::default() }).await.unwrap().is_empty());
    assert_eq!(runs::list(&db.pool, a, &RunFilter { limit: 100, ..Default::default() }).await.unwrap().len(), 1);
    // Team B cannot queue a run on team A's dataset either.
    let mut new = NewRun {
        team_id: b,
        dataset_id: ds_a,
        base_model_id: "all-minilm-l6-v2".into(),
        method: "lora".into(),
        config: json!({}),
        budget: 4,
        seed: 1,
        name: String::new(),
        priority: 0,
        max_attempts: 3,
        continue_from: None,
        estimate: None,
    };
    assert!(matches!(runs::create(&db.pool, &new).await, Err(StoreError::NotFound)));
    new.team_id = a;
    new.continue_from = Some(Uuid::new_v4());
    assert!(matches!(runs::create(&db.pool, &new).await, Err(StoreError::NotFound)));
}

#[tokio::test]
async fn resumed_steps_do_not_duplicate_metrics() {
    let db = TestDb::new().await;
    let (team, ds) = team_with_dataset(&db.pool, "metrics").await;
    let run = queue_run(&db.pool, team, ds, 3).await;
    let lease = queue::claim(&db.pool, "w", Duration::from_secs(60)).await.unwrap().unwrap();
    for step in 1..=3 {
        assert!(events::record_metric(&db.pool, run, lease.token, step, "train", "loss", 1.0 / step as f64).await.unwrap());
    }
    // The resumed attempt replays steps 2..=3 with new values.
    expire_lease(&db.pool, run).await;
    queue::reap(&db.pool, Duration::ZERO).await.unwrap();
    let lease = queue::claim(&db.pool, "w2", Duration::from_secs(60)).await.unwrap().unwrap();
    for step in 2..=4 {
        events::record_metric(&db.pool, run, lease.token, step, "train", "loss", 0.5 / step as f64).await.unwrap();
    }
    let points = runs::metrics(&db.pool, run).await.unwrap();
    let steps: Vec<i64> = points.iter().map(|p| p.step).collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
    assert_eq!(points[3].value, 0.125);
}

#[tokio::test]
async fn tokens_are_stored_hashed_and_can_be_revoked() {
    let db = TestDb::new().await;
    let team = teams::create_team(&db.pool, "tokens", false).await.unwrap();
    let token = teams::issue_token(&db.pool, team.id, "t").await.unwrap();
    let stored: Vec<u8> =
        sqlx::query_scalar("select token_hash from api_token where id = $1").bind(token.id).fetch_one(&db.pool).await.unwrap();
    assert_ne!(stored, token.secret.as_bytes());
    assert_eq!(stored, teams::hash_token(&token.secret));
    assert_eq!(teams::authenticate(&db.pool, &token.secret).await.unwrap().unwrap().id, team.id);
    assert!(teams::authenticate(&db.pool, "rf_wrong").await.unwrap().is_none());
    teams::revoke_token(&db.pool, team.id, token.id).await.unwrap();
    assert!(teams::authenticate(&db.pool, &token.secret).await.unwrap().is_none());
}
