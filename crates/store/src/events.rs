//! What a worker records while it trains (metrics, rank snapshots, evaluations) and the
//! replayable event log behind the SSE stream.
//!
//! Worker writes are guarded by the lease token: a worker that lost its lease cannot
//! write into a run that another worker now owns. Metric and snapshot keys include the
//! step, and writes are upserts, so a run resumed from a checkpoint never duplicates a step.

use chrono::{DateTime, Utc};
use rankfit_domain::rank::RankMap;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::Result;

/// NOTIFY channel raised for every new run event (payload: run id).
pub const EVENT_CHANNEL: &str = "rankfit_run_event";

pub async fn append(pool: &PgPool, run_id: Uuid, kind: &str, data: &serde_json::Value) -> Result<i64> {
    Ok(sqlx::query_scalar("insert into run_event (run_id, kind, data) values ($1, $2, $3) returning id")
        .bind(run_id)
        .bind(kind)
        .bind(Json(data))
        .fetch_one(pool)
        .await?)
}

pub(crate) async fn append_tx(tx: &mut Transaction<'_, Postgres>, run_id: Uuid, kind: &str, data: &serde_json::Value) -> Result<i64> {
    Ok(sqlx::query_scalar("insert into run_event (run_id, kind, data) values ($1, $2, $3) returning id")
        .bind(run_id)
        .bind(kind)
        .bind(Json(data))
        .fetch_one(&mut **tx)
        .await?)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub data: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

/// Events of a run with id > `after`, oldest first.
pub async fn since(pool: &PgPool, run_id: Uuid, after: i64, limit: i64) -> Result<Vec<EventRow>> {
    Ok(sqlx::query_as("select id, kind, data, created_at from run_event where run_id = $1 and id > $2 order by id limit $3")
        .bind(run_id)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

/// One metric value (upsert on run/split/name/step). False if the lease is lost.
pub async fn record_metric(pool: &PgPool, run_id: Uuid, token: Uuid, step: i64, split: &str, name: &str, value: f64) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "insert into run_metric (run_id, step, split, name, value)
         select $1, $3, $4, $5, $6 where exists (select 1 from run where id = $1 and lease_token = $2)
         on conflict (run_id, split, name, step) do update set value = excluded.value",
    )
    .bind(run_id)
    .bind(token)
    .bind(step)
    .bind(split)
    .bind(name)
    .bind(value)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    append_tx(&mut tx, run_id, "metrics", &serde_json::json!({"step": step, "split": split, "name": name, "value": value})).await?;
    tx.commit().await?;
    Ok(true)
}

/// A rank map at a step (upsert). False if the lease is lost.
pub async fn record_ranks(pool: &PgPool, run_id: Uuid, token: Uuid, map: &RankMap) -> Result<bool> {
    let ranks: serde_json::Map<String, serde_json::Value> = map.modules.iter().map(|(m, r)| (m.clone(), serde_json::json!(r))).collect();
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "insert into rank_snapshot (run_id, step, budget, ranks)
         select $1, $3, $4, $5 where exists (select 1 from run where id = $1 and lease_token = $2)
         on conflict (run_id, step) do update set budget = excluded.budget, ranks = excluded.ranks",
    )
    .bind(run_id)
    .bind(token)
    .bind(map.step as i64)
    .bind(map.budget as i64)
    .bind(Json(&ranks))
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    append_tx(&mut tx, run_id, "ranks", &serde_json::json!({"step": map.step, "budget": map.budget, "total": map.total(), "ranks": ranks}))
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// The evaluation of a split (upsert). False if the lease is lost.
pub async fn record_evaluation(pool: &PgPool, run_id: Uuid, token: Uuid, split: &str, metrics: &serde_json::Value) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "insert into evaluation (run_id, split, metrics)
         select $1, $3, $4 where exists (select 1 from run where id = $1 and lease_token = $2)
         on conflict (run_id, split) do update set metrics = excluded.metrics, created_at = now()",
    )
    .bind(run_id)
    .bind(token)
    .bind(split)
    .bind(Json(metrics))
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    append_tx(&mut tx, run_id, "eval", &serde_json::json!({"split": split, "metrics": metrics})).await?;
    tx.commit().await?;
    Ok(true)
}

/// A free-form log line or checkpoint notice for the run's event stream.
pub async fn log(pool: &PgPool, run_id: Uuid, kind: &str, data: &serde_json::Value) -> Result<()> {
    append(pool, run_id, kind, data).await.map(|_| ())
}

/// Replaces a running run's progress report and wakes its event streams (no event row: a
/// report is the latest state, not history). False if the lease is lost.
pub async fn record_progress(pool: &PgPool, run_id: Uuid, token: Uuid, progress: &serde_json::Value) -> Result<bool> {
    let done = sqlx::query(
        "with u as (update run set progress = $3 where id = $1 and lease_token = $2 and status = 'running' returning id)
         select pg_notify($4, $1::text) from u",
    )
    .bind(run_id)
    .bind(token)
    .bind(Json(progress))
    .bind(EVENT_CHANNEL)
    .fetch_optional(pool)
    .await?;
    Ok(done.is_some())
}
