//! The fleet's workers: registration, heartbeats, their counters, and the queue in claim
//! order, as the Workers page, `GET /api/v1/workers`, `GET /api/v1/queue` and `/metrics`
//! show them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// What a worker says about itself when it starts.
#[derive(Debug, Clone)]
pub struct NewWorker {
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub device: String,
    pub features: Vec<String>,
    pub version: String,
    pub lease_secs: i32,
}

/// A worker with its current run (if any) and that run's lease and progress.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WorkerRow {
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub device: String,
    pub features: Vec<String>,
    pub version: String,
    pub lease_secs: i32,
    pub started_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    /// Seconds since its last heartbeat, by the database's clock.
    pub silent_seconds: f64,
    pub current_run_id: Option<Uuid>,
    pub current_run_lease_expires_at: Option<DateTime<Utc>>,
    /// The current run's latest progress report.
    #[schema(value_type = Option<Object>)]
    pub current_run_progress: Option<Json<serde_json::Value>>,
    pub claims: i64,
    pub reaped: i64,
    pub succeeded: i64,
    pub failed: i64,
}

impl WorkerRow {
    /// The current run's latest progress report, typed.
    pub fn progress(&self) -> Option<rankfit_domain::progress::Progress> {
        serde_json::from_value(self.current_run_progress.as_ref()?.0.clone()).ok()
    }
}

/// Registers (or re-registers, after a restart under the same name) a worker.
pub async fn register(pool: &PgPool, w: &NewWorker) -> Result<()> {
    sqlx::query(
        "insert into worker (name, host, pid, device, features, version, lease_secs)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (name) do update set host = excluded.host, pid = excluded.pid, device = excluded.device,
             features = excluded.features, version = excluded.version, lease_secs = excluded.lease_secs,
             started_at = now(), last_seen_at = now(), stopped_at = null, current_run_id = null",
    )
    .bind(&w.name)
    .bind(&w.host)
    .bind(w.pid)
    .bind(&w.device)
    .bind(&w.features)
    .bind(&w.version)
    .bind(w.lease_secs)
    .execute(pool)
    .await?;
    Ok(())
}

/// A heartbeat: the worker is alive and runs `current_run` (None: idle).
pub async fn beat(pool: &PgPool, name: &str, current_run: Option<Uuid>) -> Result<()> {
    sqlx::query("update worker set last_seen_at = now(), current_run_id = $2, stopped_at = null where name = $1")
        .bind(name)
        .bind(current_run)
        .execute(pool)
        .await?;
    Ok(())
}

/// Something a worker did, for its counters. (Which run it is on is its heartbeat's
/// business: [`beat`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEvent {
    Claimed,
    /// Expired leases it requeued or failed.
    Reaped(u32),
    /// A run it trained ended (succeeded or not; a run released at shutdown is neither).
    Finished {
        succeeded: bool,
    },
}

pub async fn record(pool: &PgPool, name: &str, event: WorkerEvent) -> Result<()> {
    let q = match event {
        WorkerEvent::Claimed => sqlx::query("update worker set claims = claims + 1 where name = $1").bind(name),
        WorkerEvent::Reaped(n) => sqlx::query("update worker set reaped = reaped + $2 where name = $1").bind(name).bind(i64::from(n)),
        WorkerEvent::Finished { succeeded } => sqlx::query(
            "update worker set succeeded = succeeded + case when $2 then 1 else 0 end,
                               failed = failed + case when $2 then 0 else 1 end where name = $1",
        )
        .bind(name)
        .bind(succeeded),
    };
    q.execute(pool).await?;
    Ok(())
}

/// A clean exit.
pub async fn stopped(pool: &PgPool, name: &str) -> Result<()> {
    sqlx::query("update worker set stopped_at = now(), current_run_id = null where name = $1").bind(name).execute(pool).await?;
    Ok(())
}

/// Every worker heard from in the last `within_hours`, most recently seen first.
pub async fn list(pool: &PgPool, within_hours: i64) -> Result<Vec<WorkerRow>> {
    Ok(sqlx::query_as(
        "select w.name, w.host, w.pid, w.device, w.features, w.version, w.lease_secs, w.started_at, w.last_seen_at, w.stopped_at,
                extract(epoch from now() - w.last_seen_at)::float8 as silent_seconds,
                w.current_run_id, r.lease_expires_at as current_run_lease_expires_at, r.progress as current_run_progress,
                w.claims, w.reaped, w.succeeded, w.failed
         from worker w left join run r on r.id = w.current_run_id and r.status = 'running'
         where w.last_seen_at > now() - make_interval(hours => $1::int)
         order by w.last_seen_at desc, w.name",
    )
    .bind(within_hours as i32)
    .fetch_all(pool)
    .await?)
}

/// A queued run in claim order (the order [`crate::queue::claim`] takes them in).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct QueuedRun {
    pub id: Uuid,
    pub team_name: String,
    pub dataset_name: String,
    pub base_model_id: String,
    pub method: String,
    pub budget: i32,
    pub seed: i64,
    pub priority: i32,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// Seconds until it may be claimed (a retry's backoff); 0 when claimable now.
    pub wait_seconds: f64,
    /// Its estimated wall time when it was queued.
    pub estimated_seconds: Option<f64>,
}

pub async fn queue(pool: &PgPool, limit: i64) -> Result<Vec<QueuedRun>> {
    Ok(sqlx::query_as(
        "select r.id, t.name as team_name, d.name as dataset_name, r.base_model_id, r.method, r.budget, r.seed, r.priority,
                r.attempts, r.created_at, greatest(extract(epoch from r.not_before - now()), 0)::float8 as wait_seconds,
                (r.estimate->>'total_seconds')::float8 as estimated_seconds
         from run r join team t on t.id = r.team_id join dataset d on d.id = r.dataset_id
         where r.status = 'queued'
         order by r.priority desc, r.created_at, r.id
         limit $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The fleet in numbers, for `/metrics`.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct FleetStats {
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub oldest_queued_seconds: Option<f64>,
    pub claims: i64,
    pub reaped: i64,
    /// Expired leases over every run's history (status events with that reason).
    pub lease_expiries: i64,
}

pub async fn stats(pool: &PgPool) -> Result<FleetStats> {
    Ok(sqlx::query_as(
        "select
            (select count(*) from run where status = 'queued') as queued,
            (select count(*) from run where status = 'running') as running,
            (select count(*) from run where status = 'succeeded') as succeeded,
            (select count(*) from run where status = 'failed') as failed,
            (select count(*) from run where status = 'cancelled') as cancelled,
            (select extract(epoch from now() - min(created_at))::float8 from run where status = 'queued') as oldest_queued_seconds,
            (select coalesce(sum(claims), 0)::bigint from worker) as claims,
            (select coalesce(sum(reaped), 0)::bigint from worker) as reaped,
            (select count(*) from run_event where kind = 'status' and data->>'reason' = 'lease expired') as lease_expiries",
    )
    .fetch_one(pool)
    .await?)
}

/// Median wall time of the last 50 succeeded runs, a queue ETA's fallback for runs queued
/// without an estimate.
pub async fn recent_run_seconds(pool: &PgPool) -> Result<Option<f64>> {
    Ok(sqlx::query_scalar(
        "select percentile_cont(0.5) within group (order by s)::float8 from (
             select extract(epoch from finished_at - started_at)::float8 as s from run
             where status = 'succeeded' and started_at is not null and finished_at is not null
             order by finished_at desc limit 50) recent",
    )
    .fetch_one(pool)
    .await?)
}
