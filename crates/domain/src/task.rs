//! Task families and the metrics each one reports.

use serde::{Deserialize, Serialize};

/// What kind of supervision a dataset carries; decides the head, the loss and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskFamily {
    /// Single-label classification (GLUE CoLA, SST-2, MRPC, ..., BIG-bench multiple choice).
    Classification,
    /// Real-valued target (STS-B style), MSE loss.
    Regression,
    /// Document -> summary generation.
    Summarization,
    /// Instruction -> response generation.
    Instruction,
}

impl TaskFamily {
    pub const ALL: [TaskFamily; 4] =
        [TaskFamily::Classification, TaskFamily::Regression, TaskFamily::Summarization, TaskFamily::Instruction];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskFamily::Classification => "classification",
            TaskFamily::Regression => "regression",
            TaskFamily::Summarization => "summarization",
            TaskFamily::Instruction => "instruction",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The metric a leaderboard ranks by (higher is better for all of them; see
    /// [`higher_is_better`] for the others).
    pub fn primary_metric(self) -> &'static str {
        match self {
            TaskFamily::Classification => "accuracy",
            TaskFamily::Regression => "pearson",
            TaskFamily::Summarization => "rougeL",
            TaskFamily::Instruction => "rougeL",
        }
    }

    /// Every metric reported for this family, in display order.
    pub fn metrics(self) -> &'static [&'static str] {
        match self {
            TaskFamily::Classification => &["accuracy", "f1", "mcc"],
            TaskFamily::Regression => &["pearson", "spearman", "mse"],
            TaskFamily::Summarization => &["rouge1", "rouge2", "rougeL", "rougeLsum", "loss", "perplexity"],
            TaskFamily::Instruction => &["rougeL", "rouge1", "rouge2", "rougeLsum", "loss", "perplexity"],
        }
    }

    /// Whether the family is trained with an encoder + head (vs a causal decoder).
    pub fn is_encoder_task(self) -> bool {
        matches!(self, TaskFamily::Classification | TaskFamily::Regression)
    }
}

/// Whether a larger value of a reported metric is better: false for losses and errors
/// (`loss`, `perplexity`, `mse`), true for the rest (accuracy, F1, MCC, correlations, ROUGE).
pub fn higher_is_better(metric: &str) -> bool {
    !matches!(metric, "loss" | "perplexity" | "mse")
}

impl std::fmt::Display for TaskFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_rank_ascending_and_scores_descending() {
        for m in ["loss", "perplexity", "mse"] {
            assert!(!higher_is_better(m), "{m}");
        }
        for m in ["accuracy", "rougeL", "rouge1", "pearson", "mcc"] {
            assert!(higher_is_better(m), "{m}");
        }
        for f in TaskFamily::ALL {
            assert!(higher_is_better(f.primary_metric()));
        }
    }
}
