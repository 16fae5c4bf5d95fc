//! Turning a parsed dataset into encoded examples with numeric targets.

use rankfit_domain::dataset::{Example, ParsedDataset, Split, Target};
use rankfit_domain::task::TaskFamily;

use crate::tokenize::{BertTokenizer, Encoded};
use crate::TrainError;

/// What the head predicts.
#[derive(Debug, Clone, PartialEq)]
pub enum HeadTask {
    Classification { labels: Vec<String> },
    Regression,
}

impl HeadTask {
    pub fn outputs(&self) -> usize {
        match self {
            HeadTask::Classification { labels } => labels.len(),
            HeadTask::Regression => 1,
        }
    }

    pub fn family(&self) -> TaskFamily {
        match self {
            HeadTask::Classification { .. } => TaskFamily::Classification,
            HeadTask::Regression => TaskFamily::Regression,
        }
    }
}

/// One encoded example: `class` for classification, `score` for regression.
#[derive(Debug, Clone)]
pub struct Sample {
    pub enc: Encoded,
    pub class: usize,
    pub score: f32,
}

pub struct Prepared {
    pub task: HeadTask,
    pub train: Vec<Sample>,
    pub validation: Vec<Sample>,
    pub test: Vec<Sample>,
}

pub fn head_task(ds: &ParsedDataset) -> Result<HeadTask, TrainError> {
    match ds.task_family {
        TaskFamily::Classification => {
            if ds.label_set.len() < 2 {
                return Err(TrainError::Data(format!("classification needs at least 2 labels, the dataset has {}", ds.label_set.len())));
            }
            Ok(HeadTask::Classification { labels: ds.label_set.clone() })
        }
        TaskFamily::Regression => Ok(HeadTask::Regression),
        other => Err(TrainError::Data(format!("task family {other} needs a decoder model, not the BERT encoder"))),
    }
}

fn sample(ex: &Example, task: &HeadTask, tok: &BertTokenizer, max_len: usize) -> Result<Sample, TrainError> {
    let enc = tok.encode(&ex.text_a, ex.text_b.as_deref(), max_len)?;
    match (task, &ex.target) {
        (HeadTask::Classification { labels }, Target::Class(c)) => {
            let class =
                labels.iter().position(|l| l == c).ok_or_else(|| TrainError::Data(format!("label {c:?} is not in the label set")))?;
            Ok(Sample { enc, class, score: 0.0 })
        }
        (HeadTask::Regression, Target::Score(s)) => Ok(Sample { enc, class: 0, score: *s as f32 }),
        (_, t) => Err(TrainError::Data(format!("target {t:?} does not fit a {} task", task.family()))),
    }
}

pub fn prepare(ds: &ParsedDataset, tok: &BertTokenizer, max_len: usize) -> Result<Prepared, TrainError> {
    let task = head_task(ds)?;
    let encode = |split: Split| ds.split(split).map(|e| sample(e, &task, tok, max_len)).collect::<Result<Vec<_>, _>>();
    let (train, validation, test) = (encode(Split::Train)?, encode(Split::Validation)?, encode(Split::Test)?);
    if train.is_empty() {
        return Err(TrainError::Data("the dataset has no training examples".into()));
    }
    Ok(Prepared { task, train, validation, test })
}

/// A small synthetic classification task for smoke runs, device checks and tests: 160 short
/// reviews, 128 train and 32 validation, half of each positive, labelled by the adjective's
/// polarity (learnable in a few dozen steps).
pub fn synthetic_sentiment() -> ParsedDataset {
    let good = ["wonderful", "great", "excellent", "delightful", "superb", "lovely", "fantastic", "charming"];
    let bad = ["terrible", "awful", "boring", "dreadful", "horrible", "disappointing", "poor", "annoying"];
    let nouns = ["movie", "meal", "concert", "book", "hotel", "game", "show", "trip", "class", "album"];
    let frames = ["The {n} was {a}.", "What a {a} {n}!", "I found the {n} {a}.", "Honestly, a {a} {n}."];
    let mut examples = Vec::new();
    let mut i = 0usize;
    for n in nouns {
        for (k, f) in frames.iter().enumerate() {
            for j in 0..4 {
                let positive = j % 2 == 0;
                let adj = if positive { good[(i + j + k) % 8] } else { bad[(i * 3 + j + k) % 8] };
                let split = if i % 5 == 4 { Split::Validation } else { Split::Train };
                examples.push(Example {
                    text_a: f.replace("{n}", n).replace("{a}", adj),
                    text_b: None,
                    target: Target::Class(if positive { "positive" } else { "negative" }.into()),
                    split,
                });
                i += 1;
            }
        }
    }
    ParsedDataset {
        task_family: TaskFamily::Classification,
        examples,
        label_set: vec!["negative".into(), "positive".into()],
        report: rankfit_domain::dataset::ValidationReport::default(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_synthetic_task_has_both_labels_in_every_split() {
        use rankfit_domain::dataset::{Split, Target};
        let d = super::synthetic_sentiment();
        for split in [Split::Train, Split::Validation] {
            let labels: Vec<_> = d.split(split).map(|e| matches!(&e.target, Target::Class(c) if c == "positive")).collect();
            let positive = labels.iter().filter(|&&p| p).count();
            assert_eq!(positive * 2, labels.len(), "{split:?}: {positive} of {} positive", labels.len());
        }
        assert_eq!(d.examples.len(), 160);
    }
}
