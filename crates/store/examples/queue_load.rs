//! Queue load check: N workers drain M tiny jobs from one PostgreSQL queue; prints how
//! many were claimed, how many more than once, and the claim throughput.
//!
//!     cargo run --release -p rankfit-store --example queue_load -- [jobs] [workers]
//!
//! Uses the managed test cluster (or RANKFIT_TEST_DATABASE_URL) and a fresh database.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rankfit_store::queue::{self, Outcome};
use rankfit_store::testing::TestDb;
use serde_json::json;
use uuid::Uuid;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let workers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let db = TestDb::new().await;
    let team = rankfit_store::teams::create_team(&db.pool, "load", false).await.unwrap();
    // Through the store's own insert, so the example follows the schema as it changes.
    let ds = rankfit_store::datasets::insert(&db.pool, &rankfit_store::testing::placeholder_dataset(team.id)).await.unwrap().id;
    let t0 = Instant::now();
    sqlx::query(
        "insert into run (id, team_id, dataset_id, base_model_id, method, config, budget, seed)
         select gen_random_uuid(), $1, $2, 'all-minilm-l6-v2', 'lora', '{}', 4, g from generate_series(1, $3) g",
    )
    .bind(team.id)
    .bind(ds)
    .bind(jobs as i32)
    .execute(&db.pool)
    .await
    .unwrap();
    let enqueue = t0.elapsed();

    let t1 = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let pool = db.pool.clone();
        handles.push(tokio::spawn(async move {
            let mut claimed = Vec::new();
            while let Some(lease) = queue::claim(&pool, &format!("w{w}"), Duration::from_secs(60)).await.unwrap() {
                queue::finish(&pool, lease.run.id, lease.token, &Outcome::Succeeded { summary: json!({}) }).await.unwrap();
                claimed.push(lease.run.id);
            }
            claimed
        }));
    }
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for h in handles {
        for id in h.await.unwrap() {
            *counts.entry(id).or_default() += 1;
        }
    }
    let drain = t1.elapsed();
    let claimed: usize = counts.values().sum();
    let twice = counts.values().filter(|&&c| c > 1).count();
    let succeeded: i64 = sqlx::query_scalar("select count(*) from run where status = 'succeeded'").fetch_one(&db.pool).await.unwrap();
    println!("| jobs | workers | claimed | distinct | claimed more than once | succeeded | enqueue s | drain s | claims/s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {jobs} | {workers} | {claimed} | {} | {twice} | {succeeded} | {:.2} | {:.2} | {:.0} |",
        counts.len(),
        enqueue.as_secs_f64(),
        drain.as_secs_f64(),
        claimed as f64 / drain.as_secs_f64()
    );
    assert_eq!(claimed, jobs, "every job claimed");
    assert_eq!(twice, 0, "no job claimed twice");
    assert_eq!(succeeded as usize, jobs);
}
