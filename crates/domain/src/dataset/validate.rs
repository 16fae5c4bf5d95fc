//! File-wide checks after a format reader: label set and label types, missing labels,
//! split assignment, minimum sizes, warnings and the validation report.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::problems::Problems;
use super::record::{Draft, DraftTarget, LabelKind, Parsed, Place};
use super::split::{assign, example_hash};
use super::{Example, InvalidDataset, ParseOptions, ParsedDataset, Split, Target, ValidationReport, MAX_LABELS, PREVIEW_ROWS};
use crate::task::TaskFamily;

/// Labels listed in a message before it says "...".
const LABELS_SHOWN: usize = 20;

pub(crate) fn finish(parsed: Parsed, opts: &ParseOptions, mut problems: Problems) -> Result<ParsedDataset, InvalidDataset> {
    let Parsed { drafts, known_labels, place } = parsed;
    let family = opts.task_family;

    let label_set =
        if family == TaskFamily::Classification { classification_checks(&drafts, known_labels, place, &mut problems) } else { Vec::new() };

    if problems.has_errors() {
        return Err(problems.into_invalid());
    }
    if drafts.is_empty() {
        problems.error(0, "the file has no examples");
        return Err(problems.into_invalid());
    }

    let fixed: Vec<Option<Split>> = drafts.iter().map(|d| d.split.or(opts.default_split)).collect();
    let hashes: Vec<u64> = drafts.iter().map(|d| example_hash(&d.text_a, d.text_b.as_deref())).collect();
    let splits = assign(&fixed, &hashes);

    let mut rows_per_split: BTreeMap<String, usize> = Split::ALL.iter().map(|s| (s.as_str().to_string(), 0)).collect();
    for s in &splits {
        *rows_per_split.entry(s.as_str().to_string()).or_default() += 1;
    }
    if rows_per_split["train"] == 0 {
        let how = if drafts.iter().any(|d| d.split.is_some()) {
            "the file's \"split\" field puts every row in validation or test".to_string()
        } else {
            format!("every row was assigned to {}", opts.default_split.map(Split::as_str).unwrap_or("validation/test"))
        };
        problems.error(0, format!("the dataset has no training rows ({how}); at least 1 training row is needed"));
        return Err(problems.into_invalid());
    }
    if drafts.len() >= 10 && rows_per_split["validation"] == 0 {
        problems.warn(0, "no row is in the validation split, so runs on this dataset cannot report validation metrics; mark some rows \"split\": \"validation\"");
    }

    warn_duplicates(&drafts, place, &mut problems);
    let examples: Vec<Example> = drafts
        .into_iter()
        .zip(splits)
        .map(|(d, split)| Example {
            text_a: d.text_a,
            text_b: d.text_b,
            target: match d.target {
                DraftTarget::Class { label, .. } => Target::Class(label),
                DraftTarget::Score(v) => Target::Score(v),
                DraftTarget::Text(t) => Target::Text(t),
                // Reported as an error above; never reaches here.
                DraftTarget::MissingClass { .. } => Target::Class(String::new()),
            },
            split,
        })
        .collect();

    let mut label_distribution = BTreeMap::new();
    if family == TaskFamily::Classification {
        for l in &label_set {
            label_distribution.insert(l.clone(), 0usize);
        }
        let mut in_train = BTreeSet::new();
        let mut elsewhere = BTreeSet::new();
        for e in &examples {
            if let Target::Class(l) = &e.target {
                *label_distribution.entry(l.clone()).or_default() += 1;
                if e.split == Split::Train {
                    in_train.insert(l.as_str());
                } else {
                    elsewhere.insert(l.as_str());
                }
            }
        }
        let unseen: Vec<&&str> = elsewhere.difference(&in_train).collect();
        if !unseen.is_empty() {
            problems.warn(0, format!("label(s) {} appear in validation/test but never in train", quote_list(unseen.iter().map(|s| **s))));
        }
    }
    if family == TaskFamily::Regression {
        let first = examples.iter().find_map(|e| match e.target {
            Target::Score(v) => Some(v),
            _ => None,
        });
        if examples.len() > 1 && examples.iter().all(|e| matches!(e.target, Target::Score(v) if Some(v) == first)) {
            problems.warn(0, "every row has the same score; correlation metrics will be 0");
        }
    }

    let mut report = ValidationReport {
        rows: examples.len(),
        rows_per_split,
        label_distribution,
        text_bytes_per_split: BTreeMap::new(),
        preview: examples.iter().take(PREVIEW_ROWS).cloned().collect(),
        warnings: problems.into_warnings(),
    };
    report.count_splits(&examples);
    Ok(ParsedDataset { task_family: family, examples, label_set, report })
}

/// Label types, the label set, missing labels. Returns the sorted label set.
fn classification_checks(drafts: &[Draft], known: Vec<String>, place: Place, problems: &mut Problems) -> Vec<String> {
    // Rows already rejected may hold labels: only judge the label count on a clean file.
    let clean = !problems.has_errors();
    let mut first_kind: Option<(LabelKind, usize)> = None;
    let mut set: BTreeSet<String> = known.into_iter().collect();
    for d in drafts {
        if let DraftTarget::Class { label, kind } = &d.target {
            match first_kind {
                None => first_kind = Some((*kind, d.line)),
                Some((k, at)) if k != *kind => problems.error(
                    d.line,
                    format!(
                        "{}label {label:?} is {}, but the label at line {at} is {}; write every label the same way (all strings or all integers)",
                        place.prefix(d.line),
                        kind.describe(),
                        k.describe()
                    ),
                ),
                Some(_) => {}
            }
            set.insert(label.clone());
        }
    }
    let labels = sort_labels(set);
    for d in drafts {
        if let DraftTarget::MissingClass { field, empty } = &d.target {
            let state = if *empty { "empty" } else { "missing" };
            let expected = if labels.is_empty() {
                "a class label".to_string()
            } else {
                format!("one of the labels {}", quote_list(labels.iter().map(String::as_str)))
            };
            problems.error(d.line, format!("{}field \"{field}\" is {state}; expected {expected}", place.prefix(d.line)));
        }
    }
    if labels.len() > MAX_LABELS {
        problems.error(
            0,
            format!(
                "the dataset has {} distinct labels, more than the limit of {MAX_LABELS}; is the label column right? (for free-text targets choose the instruction task family)",
                labels.len()
            ),
        );
    } else if clean && !drafts.is_empty() && labels.len() < 2 {
        problems.error(
            0,
            format!(
                "classification needs at least 2 distinct labels, found {}; check the label column",
                if labels.is_empty() { "none".to_string() } else { quote_list(labels.iter().map(String::as_str)) }
            ),
        );
    }
    labels
}

/// Integers sort numerically (so "10" follows "9"), anything else lexicographically.
fn sort_labels(set: BTreeSet<String>) -> Vec<String> {
    let mut labels: Vec<String> = set.into_iter().collect();
    if labels.iter().all(|l| l.parse::<i64>().is_ok()) {
        labels.sort_by_key(|l| l.parse::<i64>().unwrap_or(0));
    }
    labels
}

fn quote_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let all: Vec<&str> = items.into_iter().collect();
    let mut shown: Vec<String> = all.iter().take(LABELS_SHOWN).map(|s| format!("{s:?}")).collect();
    if all.len() > LABELS_SHOWN {
        shown.push(format!("... ({} more)", all.len() - LABELS_SHOWN));
    }
    format!("[{}]", shown.join(", "))
}

fn warn_duplicates(drafts: &[Draft], place: Place, problems: &mut Problems) {
    let mut seen: HashMap<(&str, Option<&str>), (usize, &DraftTarget)> = HashMap::with_capacity(drafts.len());
    let (unit, units) = match place {
        Place::Line => ("line", "lines"),
        Place::Example => ("example", "examples"),
    };
    for d in drafts {
        match seen.get(&(d.text_a.as_str(), d.text_b.as_deref())) {
            None => {
                seen.insert((d.text_a.as_str(), d.text_b.as_deref()), (d.line, &d.target));
            }
            Some((first, target)) if *target == &d.target => {
                problems.warn(d.line, format!("{}duplicate of {unit} {first} (same text and target)", place.prefix(d.line)));
            }
            Some((first, _)) => problems.warn(
                d.line,
                format!(
                    "{}same text as {unit} {first} but a different target; conflicting {units} make training noisy",
                    place.prefix(d.line)
                ),
            ),
        }
    }
}
