//! The fleet of workers as operators see it: whether each worker is alive, and when each
//! queued run is expected to start and finish given the workers that are alive.

use serde::{Deserialize, Serialize};

/// A worker's state, from its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Heard from within its lease.
    Alive,
    /// Silent for longer than its lease: hung, partitioned or killed. Its run's lease
    /// expires and the run is requeued by the next worker that polls.
    Stale,
    /// Exited cleanly, or silent for longer than [`GONE_AFTER_SECS`].
    Gone,
}

/// A worker silent for this long is gone, not stale.
pub const GONE_AFTER_SECS: f64 = 15.0 * 60.0;

impl WorkerState {
    /// `silent_secs`: since its last heartbeat; `stopped`: it exited cleanly.
    pub fn of(silent_secs: f64, lease_secs: f64, stopped: bool) -> Self {
        if stopped || silent_secs > GONE_AFTER_SECS {
            WorkerState::Gone
        } else if silent_secs > lease_secs {
            WorkerState::Stale
        } else {
            WorkerState::Alive
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Alive => "alive",
            WorkerState::Stale => "stale",
            WorkerState::Gone => "gone",
        }
    }
}

/// When a queued run is expected to start and finish, in seconds from now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueEta {
    pub start_seconds: f64,
    pub finish_seconds: f64,
}

/// Simulates the queue: `workers` alive workers, busy for `running_left` seconds each
/// (one entry per running run, at most `workers` of them matter), take the queued runs in
/// claim order, each for its estimated seconds (`None`: `fallback_seconds`, e.g. the
/// median of recent runs). Each run starts on the worker that frees up first. Runs that
/// may not start before a time (`not_before`, seconds from now) wait for it. None for
/// every run when no worker is alive.
pub fn queue_etas(workers: usize, running_left: &[f64], queued: &[(Option<f64>, f64)], fallback_seconds: f64) -> Vec<Option<QueueEta>> {
    if workers == 0 {
        return vec![None; queued.len()];
    }
    let mut free: Vec<f64> = running_left.iter().map(|s| s.max(0.0)).collect();
    free.sort_by(f64::total_cmp);
    // More running runs than alive workers (stale workers' runs): the alive ones are busy
    // with the shortest; idle workers are free now.
    free.truncate(workers);
    free.resize(workers, 0.0);
    queued
        .iter()
        .map(|&(estimate, not_before)| {
            let (slot, at) = free.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map(|(i, t)| (i, *t)).unwrap_or((0, 0.0));
            let start = at.max(not_before.max(0.0));
            let finish = start + estimate.filter(|s| s.is_finite() && *s >= 0.0).unwrap_or(fallback_seconds);
            free[slot] = finish;
            Some(QueueEta { start_seconds: start, finish_seconds: finish })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_the_heartbeats() {
        assert_eq!(WorkerState::of(5.0, 30.0, false), WorkerState::Alive);
        assert_eq!(WorkerState::of(31.0, 30.0, false), WorkerState::Stale);
        assert_eq!(WorkerState::of(GONE_AFTER_SECS + 1.0, 30.0, false), WorkerState::Gone);
        assert_eq!(WorkerState::of(1.0, 30.0, true), WorkerState::Gone);
    }

    #[test]
    fn queued_runs_take_the_first_free_worker_in_claim_order() {
        // Two workers: one busy for 100 s, one idle. Runs of 50, 60, 10 s.
        let etas = queue_etas(2, &[100.0], &[(Some(50.0), 0.0), (Some(60.0), 0.0), (Some(10.0), 0.0)], 999.0);
        let got: Vec<(f64, f64)> = etas.iter().map(|e| e.map(|e| (e.start_seconds, e.finish_seconds)).unwrap()).collect();
        // idle worker: 0→50, then 50→110; busy worker frees at 100: 100→110.
        assert_eq!(got, vec![(0.0, 50.0), (50.0, 110.0), (100.0, 110.0)]);
    }

    #[test]
    fn unknown_estimates_use_the_fallback_and_not_before_delays_a_start() {
        let etas = queue_etas(1, &[], &[(None, 0.0), (Some(5.0), 100.0)], 30.0);
        assert_eq!(etas[0], Some(QueueEta { start_seconds: 0.0, finish_seconds: 30.0 }));
        assert_eq!(etas[1], Some(QueueEta { start_seconds: 100.0, finish_seconds: 105.0 }));
    }

    #[test]
    fn no_alive_worker_means_no_eta_and_extra_running_runs_do_not_block() {
        assert_eq!(queue_etas(0, &[10.0], &[(Some(1.0), 0.0)], 1.0), vec![None]);
        // Three running runs (one on a stale worker), one alive worker: it frees first.
        let e = queue_etas(1, &[300.0, 20.0, 50.0], &[(Some(1.0), 0.0)], 1.0);
        assert_eq!(e[0].unwrap().start_seconds, 20.0);
    }
}
