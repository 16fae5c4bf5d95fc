//! The run summary: what a finished run records about itself (what PEFT's method_comparison
//! records, plus throughput), written by the training loop, stored as JSON with the run, and
//! read back by the pages, comparisons and the estimator through this one type.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Trainable parameters (adapters and head) at the start, at the peak and at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainableParams {
    pub start: u64,
    pub peak: u64,
    pub end: u64,
}

/// Every field is optional when read: summaries written by older versions (or by tests'
/// stand-in trainers) lack some of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_family: Option<String>,
    /// Where it trained (`cpu`, `cuda:0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<u64>,
    /// The step of the exported (best-validation) state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_step: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_examples: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trainable_params: Option<TrainableParams>,
    /// Live rank per adapted module at the end.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub final_ranks: Vec<(String, u32)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank_budget: Option<u64>,
    /// The allocator's resolved schedule and settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocator: Option<Value>,
    /// The training loop, periodic held-out passes included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_seconds: Option<f64>,
    /// Held-out passes inside `train_seconds` (step 0 and every `eval_every` steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heldout_seconds: Option<f64>,
    /// ALoRA's ablation rounds inside `train_seconds`: their forward passes over the
    /// variants of the fixed batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ablation_seconds: Option<f64>,
    /// Examples scored in those rounds (variants × batch examples, summed over rounds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ablation_examples: Option<u64>,
    /// The final evaluation: the final weights' held-out pass, then validation and test.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_examples: Option<u64>,
    /// From loading the model to the written exports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter_file_bytes: Option<u64>,
    /// Peak resident memory of the training process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// Settings of the run shown next to its results, not metrics (e.g. `rouge_stemmer`,
    /// `generated_test_examples` of generation runs).
    #[serde(flatten)]
    pub facts: Map<String, Value>,
}

impl RunSummary {
    /// A stored summary; what does not parse reads as absent.
    pub fn from_value(v: &Value) -> Self {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_keeps_facts_apart() {
        let v = json!({"method": "lora", "total_steps": 32, "trainable_params": {"start": 10, "peak": 12, "end": 8},
                       "final_ranks": [["layer.0.query", 4]], "wall_seconds": 41.5, "rouge_stemmer": "porter"});
        let s = RunSummary::from_value(&v);
        assert_eq!(s.total_steps, Some(32));
        assert_eq!(s.trainable_params, Some(TrainableParams { start: 10, peak: 12, end: 8 }));
        assert_eq!(s.final_ranks, vec![("layer.0.query".to_string(), 4)]);
        assert_eq!(s.facts.get("rouge_stemmer"), Some(&json!("porter")));
        assert_eq!(s.to_value(), v);
        // Partial or foreign summaries read as what they have.
        assert_eq!(RunSummary::from_value(&json!({"wall_seconds": 3.0})).wall_seconds, Some(3.0));
        assert_eq!(RunSummary::from_value(&json!("nonsense")), RunSummary::default());
    }
}
