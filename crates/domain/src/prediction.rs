//! Per-example test predictions of a run, and metrics recomputed from them.
//!
//! Every run stores what it predicted for each test example (class, score or generated
//! text, with the reference), so that intervals over test examples (a bootstrap when a cell
//! has one seed) and paired comparisons between methods (the same examples resampled for
//! both) can be computed after the fact, without rerunning anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics;
use crate::task::TaskFamily;

/// What a model produced for one example, or what the reference says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Output {
    /// A class: its index in the dataset's label set, and the label.
    Class { index: usize, label: String },
    /// A real-valued score (regression).
    Value { value: f64 },
    /// Generated or reference text.
    Text { text: String },
}

impl Output {
    /// The label, the value or the text, as a person reads it.
    pub fn as_text(&self) -> String {
        match self {
            Output::Class { label, .. } => label.clone(),
            Output::Value { value } => value.to_string(),
            Output::Text { text } => text.clone(),
        }
    }
}

/// One test example's prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Position of the example in the split.
    pub index: u32,
    pub predicted: Output,
    pub reference: Output,
    /// The example's input text (the document, prompt or sentence; `text_a`), so that
    /// predictions can be read without the dataset at hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Per-example values whose mean over the split is that split's metric of the same name
    /// (`accuracy` as 0/1, `rouge1`, `rougeL`, ... F-measures, `loss`).
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
}

/// A metric of `family` recomputed on the examples `idx` (indices into `preds`, repeats
/// allowed, as a bootstrap resample has). `classes` is the size of the label set (F1 is
/// binary for two classes, macro otherwise, as the trainer reports it). None when the
/// metric can't be computed from predictions (e.g. perplexity) or is undefined on `idx`.
pub fn metric_on(family: TaskFamily, metric: &str, classes: usize, preds: &[Prediction], idx: &[usize]) -> Option<f64> {
    if idx.is_empty() {
        return None;
    }
    // Metrics that are means of per-example values.
    if idx.iter().all(|&i| preds.get(i).is_some_and(|p| p.scores.contains_key(metric))) {
        let sum: f64 = idx.iter().map(|&i| preds[i].scores[metric]).sum();
        return Some(sum / idx.len() as f64);
    }
    match family {
        TaskFamily::Classification => {
            let mut refs = Vec::with_capacity(idx.len());
            let mut hyp = Vec::with_capacity(idx.len());
            for &i in idx {
                match (&preds.get(i)?.reference, &preds[i].predicted) {
                    (Output::Class { index: r, .. }, Output::Class { index: p, .. }) => {
                        refs.push(*r);
                        hyp.push(*p);
                    }
                    _ => return None,
                }
            }
            let v = match metric {
                "accuracy" => metrics::accuracy(&refs, &hyp),
                "f1" if classes == 2 => metrics::f1_binary(&refs, &hyp),
                "f1" => metrics::f1_macro(&refs, &hyp),
                "mcc" => metrics::matthews_corrcoef(&refs, &hyp),
                _ => return None,
            };
            v.ok()
        }
        TaskFamily::Regression => {
            let mut refs = Vec::with_capacity(idx.len());
            let mut hyp = Vec::with_capacity(idx.len());
            for &i in idx {
                match (&preds.get(i)?.reference, &preds[i].predicted) {
                    (Output::Value { value: r }, Output::Value { value: p }) => {
                        refs.push(*r);
                        hyp.push(*p);
                    }
                    _ => return None,
                }
            }
            let v = match metric {
                "pearson" => metrics::pearson(&refs, &hyp),
                "spearman" => metrics::spearman(&refs, &hyp),
                "mse" => metrics::mse(&refs, &hyp),
                _ => return None,
            };
            v.ok().filter(|v| v.is_finite())
        }
        TaskFamily::Summarization | TaskFamily::Instruction => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(i: usize) -> Output {
        Output::Class { index: i, label: format!("l{i}") }
    }

    fn cls(index: u32, p: usize, r: usize) -> Prediction {
        Prediction { index, predicted: class(p), reference: class(r), input: None, scores: BTreeMap::new() }
    }

    #[test]
    fn classification_metrics_recomputed_from_pairs() {
        let preds = vec![cls(0, 1, 1), cls(1, 0, 1), cls(2, 0, 0), cls(3, 1, 0)];
        let all = [0, 1, 2, 3];
        assert_eq!(metric_on(TaskFamily::Classification, "accuracy", 2, &preds, &all), Some(0.5));
        // A resample with repeats: examples 0 and 2 (both right), twice each.
        assert_eq!(metric_on(TaskFamily::Classification, "accuracy", 2, &preds, &[0, 0, 2, 2]), Some(1.0));
        let mcc = metric_on(TaskFamily::Classification, "mcc", 2, &preds, &all).unwrap();
        assert!(mcc.abs() < 1e-12, "{mcc}");
        assert!(metric_on(TaskFamily::Classification, "perplexity", 2, &preds, &all).is_none());
        assert!(metric_on(TaskFamily::Classification, "accuracy", 2, &preds, &[]).is_none());
    }

    #[test]
    fn per_example_scores_are_averaged() {
        let p = |i: u32, r: f64| Prediction {
            index: i,
            predicted: Output::Text { text: "a".into() },
            reference: Output::Text { text: "b".into() },
            input: None,
            scores: BTreeMap::from([("rougeL".to_string(), r)]),
        };
        let preds = vec![p(0, 0.2), p(1, 0.4), p(2, 0.9)];
        let v = metric_on(TaskFamily::Summarization, "rougeL", 0, &preds, &[0, 1, 2]).unwrap();
        assert!((v - 0.5).abs() < 1e-12);
        assert_eq!(metric_on(TaskFamily::Summarization, "rouge2", 0, &preds, &[0, 1, 2]), None);
    }

    #[test]
    fn regression_pairs() {
        let p = |i: u32, y: f64, t: f64| Prediction {
            index: i,
            predicted: Output::Value { value: y },
            reference: Output::Value { value: t },
            input: None,
            scores: BTreeMap::new(),
        };
        let preds = vec![p(0, 1.0, 1.5), p(1, 2.0, 2.5), p(2, 3.0, 3.5)];
        let r = metric_on(TaskFamily::Regression, "pearson", 0, &preds, &[0, 1, 2]).unwrap();
        assert!((r - 1.0).abs() < 1e-12);
        assert!((metric_on(TaskFamily::Regression, "mse", 0, &preds, &[0, 1, 2]).unwrap() - 0.25).abs() < 1e-12);
        // A resample of one repeated example is constant: 0, as the run's own metric reports it.
        assert_eq!(metric_on(TaskFamily::Regression, "pearson", 0, &preds, &[1, 1, 1]), Some(0.0));
    }
}
