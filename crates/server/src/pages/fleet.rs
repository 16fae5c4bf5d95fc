//! The Workers page (admin teams): the fleet and the queue on one page.

use askama::Template;
use axum::extract::State;
use rankfit_domain::fleet::WorkerState;

use super::shared::{fmt_duration, short};
use super::{render, Nav, PageError, PageResult, WebSession};
use crate::api::fleet::{queue_view, worker_list};
use crate::AppState;

struct WorkerLine {
    name: String,
    host: String,
    device: String,
    version: String,
    state: &'static str,
    last_seen: String,
    uptime: String,
    run: String,
    progress: String,
    lease: String,
    succeeded: i64,
    failed: i64,
    claims: i64,
    reaped: i64,
}

struct QueueLine {
    position: usize,
    run: String,
    team: String,
    what: String,
    priority: i32,
    attempts: i32,
    waits: String,
    start: String,
    finish: String,
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    title: String,
    nav: Nav,
    counts: Vec<(&'static str, usize)>,
    by_device: Vec<(String, usize)>,
    workers: Vec<WorkerLine>,
    queue: Vec<QueueLine>,
    alive: usize,
    fallback: String,
}

pub async fn workers(State(st): State<AppState>, s: WebSession) -> PageResult {
    if !s.team.is_admin {
        return Err(PageError::forbidden("The Workers page is for operators: sign in with an admin team's token."));
    }
    let list = worker_list(&st).await?;
    let queue = queue_view(&st, &list).await?;
    let now = chrono::Utc::now();
    let counts = [WorkerState::Alive, WorkerState::Stale, WorkerState::Gone]
        .into_iter()
        .map(|state| (state.as_str(), list.workers.iter().filter(|w| w.state == state).count()))
        .collect();
    let workers = list
        .workers
        .iter()
        .map(|v| {
            let w = &v.worker;
            let progress = w
                .progress()
                .map(|p| {
                    let eta = p.eta_seconds.map(|e| format!(", {} left", fmt_duration(e))).unwrap_or_default();
                    format!("{} · step {}/{}{eta}", p.phase.label(), p.step, p.total_steps)
                })
                .unwrap_or_default();
            let lease = match w.current_run_lease_expires_at {
                Some(t) if t > now => format!("expires in {}", fmt_duration((t - now).num_milliseconds() as f64 / 1000.0)),
                Some(t) => format!("expired {} ago", fmt_duration((now - t).num_milliseconds() as f64 / 1000.0)),
                None => String::new(),
            };
            WorkerLine {
                name: w.name.clone(),
                host: w.host.clone(),
                device: if w.features.is_empty() { w.device.clone() } else { format!("{} ({})", w.device, w.features.join(", ")) },
                version: w.version.clone(),
                state: v.state.as_str(),
                last_seen: format!("{} ago", fmt_duration(w.silent_seconds)),
                uptime: fmt_duration((w.last_seen_at - w.started_at).num_seconds() as f64),
                run: w.current_run_id.as_ref().map(short).unwrap_or_default(),
                progress,
                lease,
                succeeded: w.succeeded,
                failed: w.failed,
                claims: w.claims,
                reaped: w.reaped,
            }
        })
        .collect();
    let queue_lines = queue
        .queue
        .iter()
        .map(|q| QueueLine {
            position: q.position,
            run: short(&q.run.id),
            team: q.run.team_name.clone(),
            what: format!(
                "{} · {} · budget {} · seed {} · {}",
                q.run.method, q.run.dataset_name, q.run.budget, q.run.seed, q.run.base_model_id
            ),
            priority: q.run.priority,
            attempts: q.run.attempts,
            waits: if q.run.wait_seconds > 0.0 { format!("backoff {}", fmt_duration(q.run.wait_seconds)) } else { String::new() },
            start: q.eta.map(|e| format!("in {}", fmt_duration(e.start_seconds))).unwrap_or_else(|| "no worker alive".into()),
            finish: q.eta.map(|e| format!("in {}", fmt_duration(e.finish_seconds))).unwrap_or_default(),
        })
        .collect();
    Ok(render(WorkersPage {
        title: "Workers".into(),
        nav: Nav::signed_in(&s, "workers"),
        counts,
        by_device: list.alive_by_device.into_iter().collect(),
        workers,
        queue: queue_lines,
        alive: queue.alive_workers,
        fallback: fmt_duration(queue.fallback_run_seconds),
    }))
}
