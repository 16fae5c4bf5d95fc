//! Where a running run is: its phase, step out of total, elapsed time and an ETA, as the
//! training loop reports it (about once a second) and the pages, the API and the demo show it.

use serde::{Deserialize, Serialize};

/// What the run is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Optimisation steps.
    Training,
    /// ALoRA's ablation round: one loss per (component, variant) on the fixed batch.
    AblationRound,
    /// A held-out pass (periodic validation).
    Validating,
    /// The final evaluation of the exported state (generation for decoders).
    Evaluating,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Training => "training",
            Phase::AblationRound => "ablation round",
            Phase::Validating => "validating",
            Phase::Evaluating => "final evaluation",
        }
    }
}

/// A progress report. `done`/`of` count the parts of a phase that has them (an ablation
/// round's variants); the step counters always refer to optimisation steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub phase: Phase,
    pub step: u64,
    pub total_steps: u64,
    /// Seconds since this attempt started training.
    pub elapsed_seconds: f64,
    /// Seconds of training left at this attempt's pace (None before the first step).
    pub eta_seconds: Option<f64>,
    /// Mean training loss since the previous report.
    pub loss: Option<f64>,
    /// Live rank summed over the adapted modules.
    pub rank_total: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<u64>,
}

/// Seconds left when `steps_done` steps of this attempt took `elapsed` seconds and
/// `remaining` steps are left; None before any step.
pub fn eta(elapsed: f64, steps_done: u64, remaining: u64) -> Option<f64> {
    (steps_done > 0).then(|| elapsed / steps_done as f64 * remaining as f64)
}

impl Progress {
    /// Fraction of the optimisation steps done, in [0, 1].
    pub fn fraction(&self) -> f64 {
        if self.total_steps == 0 {
            return 0.0;
        }
        (self.step as f64 / self.total_steps as f64).clamp(0.0, 1.0)
    }

    /// One line for a terminal: `training step 120/400 (30%) · loss 0.5312 · rank 96 · 2m 10s elapsed · ETA 5m 03s`.
    pub fn line(&self) -> String {
        let mut s = format!("{} step {}/{} ({:.0}%)", self.phase.label(), self.step, self.total_steps, 100.0 * self.fraction());
        if let (Some(d), Some(o)) = (self.done, self.of) {
            s.push_str(&format!(" · {d}/{o}"));
        }
        if let Some(l) = self.loss {
            s.push_str(&format!(" · loss {l:.4}"));
        }
        if let Some(r) = self.rank_total {
            s.push_str(&format!(" · rank {r}"));
        }
        s.push_str(&format!(" · {} elapsed", crate::estimate::human_duration(self.elapsed_seconds)));
        if let Some(e) = self.eta_seconds {
            s.push_str(&format!(" · ETA {}", crate::estimate::human_duration(e)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_the_pace_so_far_times_the_steps_left() {
        assert_eq!(eta(30.0, 10, 20), Some(60.0));
        assert_eq!(eta(0.0, 0, 20), None);
    }

    #[test]
    fn line_and_json_shape() {
        let p = Progress {
            phase: Phase::AblationRound,
            step: 120,
            total_steps: 400,
            elapsed_seconds: 130.0,
            eta_seconds: Some(303.0),
            loss: Some(0.53124),
            rank_total: Some(96),
            done: Some(12),
            of: Some(48),
        };
        assert_eq!(p.line(), "ablation round step 120/400 (30%) · 12/48 · loss 0.5312 · rank 96 · 2m 10s elapsed · ETA 5m 03s");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["phase"], "ablation_round");
        let back: Progress = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
        let q = Progress { done: None, of: None, ..p };
        assert!(serde_json::to_value(&q).unwrap().get("done").is_none());
    }
}
