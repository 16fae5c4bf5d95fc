//! The run table as a queue: at-least-once delivery with leases.
//!
//! - [`claim`]: one statement, `for update skip locked`, sets a fresh lease token.
//! - [`heartbeat`]: extends the lease only while the token still matches; tells the
//!   worker whether a cancel was requested. A `None` means the lease is lost: stop.
//! - [`finish`]: writes the terminal state, guarded by the token.
//! - [`reap`]: requeues runs whose lease expired (with exponential backoff), or fails
//!   them after `max_attempts`.
//!
//! No transaction stays open while a run trains.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::runs::{RunRow, RUN_COLS};
use crate::Result;

/// The NOTIFY channel raised when a run becomes claimable.
pub const QUEUED_CHANNEL: &str = "rankfit_run_queued";

/// A run held by a worker under a lease.
#[derive(Debug, Clone)]
pub struct Lease {
    pub run: RunRow,
    pub token: Uuid,
}

/// Claims the highest-priority, oldest claimable run for `owner`.
pub async fn claim(pool: &PgPool, owner: &str, lease: Duration) -> Result<Option<Lease>> {
    let token = Uuid::new_v4();
    let row: Option<RunRow> = sqlx::query_as(&format!(
        "update run set status = 'running', lease_owner = $1, lease_token = $2,
                lease_expires_at = now() + make_interval(secs => $3), attempts = attempts + 1,
                started_at = coalesce(started_at, now())
         where id = (select id from run where status = 'queued' and not_before <= now()
                     order by priority desc, created_at, id for update skip locked limit 1)
         returning {RUN_COLS}"
    ))
    .bind(owner)
    .bind(token)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    if let Some(run) = &row {
        crate::events::append(pool, run.id, "status", &serde_json::json!({"status": "running", "worker": owner, "attempt": run.attempts}))
            .await?;
    }
    Ok(row.map(|run| Lease { run, token }))
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    pub cancel_requested: bool,
}

/// Extends the lease of `run_id` if `token` still holds it; `None` if the lease is lost.
pub async fn heartbeat(pool: &PgPool, run_id: Uuid, token: Uuid, lease: Duration) -> Result<Option<Beat>> {
    let row: Option<bool> = sqlx::query_scalar(
        "update run set lease_expires_at = now() + make_interval(secs => $3)
         where id = $1 and lease_token = $2 and status = 'running'
         returning cancel_requested",
    )
    .bind(run_id)
    .bind(token)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|cancel_requested| Beat { cancel_requested }))
}

/// How a leased run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Outcome {
    Succeeded { summary: serde_json::Value },
    Failed { error: String },
    Cancelled,
}

/// Records the end of a leased run; false if the lease was lost meanwhile (nothing written).
pub async fn finish(pool: &PgPool, run_id: Uuid, token: Uuid, outcome: &Outcome) -> Result<bool> {
    let (status, error, summary) = match outcome {
        Outcome::Succeeded { summary } => ("succeeded", None, Some(summary.clone())),
        Outcome::Failed { error } => ("failed", Some(error.clone()), None),
        Outcome::Cancelled => ("cancelled", Some("cancelled by user".to_string()), None),
    };
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "update run set status = $3, error = $4, summary = coalesce($5, summary), finished_at = now(),
                lease_owner = null, lease_token = null, lease_expires_at = null
         where id = $1 and lease_token = $2 and status = 'running'",
    )
    .bind(run_id)
    .bind(token)
    .bind(status)
    .bind(&error)
    .bind(summary.map(sqlx::types::Json))
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    crate::events::append_tx(&mut tx, run_id, "status", &serde_json::json!({"status": status, "error": error})).await?;
    tx.commit().await?;
    Ok(true)
}

/// Gives a run back to the queue without counting the attempt (graceful worker shutdown).
pub async fn release(pool: &PgPool, run_id: Uuid, token: Uuid) -> Result<bool> {
    let done = sqlx::query(
        "update run set status = 'queued', attempts = greatest(attempts - 1, 0),
                lease_owner = null, lease_token = null, lease_expires_at = null, not_before = now()
         where id = $1 and lease_token = $2 and status = 'running'",
    )
    .bind(run_id)
    .bind(token)
    .execute(pool)
    .await?;
    if done.rows_affected() == 1 {
        crate::events::append(pool, run_id, "status", &serde_json::json!({"status": "queued", "reason": "worker shut down"})).await?;
    }
    Ok(done.rows_affected() == 1)
}

/// A run the reaper acted on.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Reaped {
    pub id: Uuid,
    pub status: String,
    pub attempts: i32,
}

/// Requeues expired leases with backoff `base * 2^(attempts-1)` (capped at 10 minutes),
/// or fails runs that used all their attempts. Cancel-requested runs become cancelled.
pub async fn reap(pool: &PgPool, backoff_base: Duration) -> Result<Vec<Reaped>> {
    let mut tx = pool.begin().await?;
    let rows: Vec<Reaped> = sqlx::query_as(
        "update run set
            status = case when cancel_requested then 'cancelled'
                          when attempts >= max_attempts then 'failed' else 'queued' end,
            error = case when cancel_requested then 'cancelled by user'
                         when attempts >= max_attempts
                         then format('lease expired on attempt %s of %s (worker %s stopped responding)', attempts, max_attempts, lease_owner)
                         else error end,
            finished_at = case when cancel_requested or attempts >= max_attempts then now() else null end,
            not_before = now() + least(make_interval(secs => $1 * power(2, greatest(attempts - 1, 0))), interval '10 minutes'),
            lease_owner = null, lease_token = null, lease_expires_at = null
         where id in (select id from run where status = 'running' and lease_expires_at < now() for update skip locked)
         returning id, status, attempts",
    )
    .bind(backoff_base.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    for r in &rows {
        crate::events::append_tx(
            &mut tx,
            r.id,
            "status",
            &serde_json::json!({"status": r.status, "reason": "lease expired", "attempts": r.attempts}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(rows)
}
