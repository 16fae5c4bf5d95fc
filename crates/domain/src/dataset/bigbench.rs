//! BIG-bench `task.json` files (JSON tasks; programmatic `task.py` tasks are not files
//! rankfit can read).
//!
//! `{"examples": [{"input": ..., "target_scores": {choice: score, ...}} | {"input": ...,
//! "target": "text" | ["text", ...]}, ...], ...}`; the other top-level fields (canary,
//! name, description, keywords, metrics, prefixes) are ignored.
//!
//! - classification: with `target_scores`, the label is the choice with the highest score
//!   (the first in file order when several share it) and every choice joins the label
//!   set; without, the `target` text (the first if a list) is the label.
//! - summarization / instruction: the `target` text (the first if a list); with only
//!   `target_scores`, the best choice's text (hhh_alignment: the preferred answer).
//! - instruction: a non-empty top-level `task_prefix` (natural_instructions' subtask
//!   definitions) becomes every example's instruction (`text_a`) and the example's
//!   `input` its input (`text_b`), as in the Alpaca format.
//! - regression: BIG-bench has no numeric targets; rejected.
//!
//! A JSON document has no meaningful lines per example, so errors use the example's
//! 1-based index as their line, and say so.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::problems::Problems;
use super::record::{check_text, short_json, Draft, DraftTarget, LabelKind, Parsed, Place};
use super::{ParseOptions, MAX_ROWS};
use crate::task::TaskFamily;

#[derive(Deserialize)]
struct TaskFile {
    examples: Option<Vec<Value>>,
    /// Text the task puts before every input; natural_instructions keeps each subtask's
    /// crowdsourcing instructions ("Definition: ... Prompt: ...") here.
    task_prefix: Option<Value>,
}

/// A JSON object's entries in file order (serde_json's `Map` sorts its keys, and the
/// order decides ties in `target_scores`); `None` for any other JSON value.
struct Ordered(Option<Vec<(String, Value)>>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Ordered(Some(out)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Ordered(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
        }
        d.deserialize_any(V)
    }
}

pub(crate) fn parse(text: &str, opts: &ParseOptions, problems: &mut Problems) -> Parsed {
    let empty = || Parsed { drafts: Vec::new(), known_labels: Vec::new(), place: Place::Example };
    if opts.task_family == TaskFamily::Regression {
        problems.error(
            0,
            "BIG-bench tasks have no numeric targets; choose task family classification (target_scores), summarization or instruction (target texts)",
        );
        return empty();
    }
    let file: TaskFile = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            problems.error(e.line(), format!("not a valid BIG-bench task.json: {e} (this error's line is the file's line)"));
            return empty();
        }
    };
    let Some(examples) = file.examples else {
        problems.error(
            0,
            "the file has no \"examples\" array; expected a BIG-bench task.json ({\"examples\": [{\"input\": ..., \"target_scores\" or \"target\": ...}]}); programmatic tasks (task.py) are not supported",
        );
        return empty();
    };
    // Instruction tuning: a task-wide instruction (natural_instructions' task_prefix) is the
    // example's instruction and the example's input its input (Alpaca's instruction/input).
    let instruction = match &file.task_prefix {
        Some(Value::String(p)) if opts.task_family == TaskFamily::Instruction && !p.trim().is_empty() => Some(p.trim().to_string()),
        _ => None,
    };
    // target_scores in file order (ties go to the first choice written).
    let ordered = ordered_scores(text, examples.len());

    let mut drafts = Vec::with_capacity(examples.len());
    let mut known = Vec::new();
    for (i, ex) in examples.iter().enumerate() {
        let n = i + 1;
        if n > MAX_ROWS {
            problems.error(n, format!("the file has more than {MAX_ROWS} examples, the limit; split it into several datasets"));
            break;
        }
        let pre = Place::Example.prefix(n);
        let Value::Object(obj) = ex else {
            problems
                .error(n, format!("{pre}expected an object with \"input\" and \"target_scores\" or \"target\", found {}", short_json(ex)));
            continue;
        };
        let input = match obj.get("input") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.as_str()),
            Some(Value::String(_)) => {
                problems.error(n, format!("{pre}field \"input\" is empty; expected a non-empty text"));
                None
            }
            None | Some(Value::Null) => {
                problems.error(n, format!("{pre}field \"input\" is missing; expected a non-empty text"));
                None
            }
            Some(v) => {
                problems.error(n, format!("{pre}field \"input\" must be a string, found {}", short_json(v)));
                None
            }
        };
        let input = input.filter(|s| check_text("input", s, n, Place::Example, problems));

        let scores = match obj.get("target_scores") {
            None | Some(Value::Null) => None,
            Some(Value::Object(_)) => match ordered.get(i).and_then(|o| o.as_ref()) {
                Some(list) => best_choice(list, n, &pre, problems),
                None => {
                    problems.error(n, format!("{pre}could not read \"target_scores\""));
                    continue;
                }
            },
            Some(v) => {
                problems.error(n, format!("{pre}field \"target_scores\" must be an object {{choice: score}}, found {}", short_json(v)));
                continue;
            }
        };
        // A broken target_scores has been reported; skip the row.
        if matches!(scores, Some(None)) {
            continue;
        }
        let scores = scores.flatten();
        let target_text = match obj.get("target") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(Value::Array(list)) => match list.first() {
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(v) => Err(format!("{pre}field \"target\" must be a text or a list of texts, found a list holding {}", short_json(v))),
                None => Err(format!("{pre}field \"target\" is an empty list; expected at least one text")),
            },
            Some(v) => Err(format!("{pre}field \"target\" must be a text or a list of texts, found {}", short_json(v))),
        };
        let target_text = match target_text {
            Ok(t) => t,
            Err(msg) => {
                problems.error(n, msg);
                continue;
            }
        };

        let target = match (opts.task_family, scores, target_text) {
            (TaskFamily::Classification, Some((label, choices)), _) => {
                known.extend(choices);
                Some(DraftTarget::Class { label, kind: LabelKind::Text })
            }
            (TaskFamily::Classification, None, Some(t)) if !t.trim().is_empty() => {
                Some(DraftTarget::Class { label: t.trim().to_string(), kind: LabelKind::Text })
            }
            (TaskFamily::Classification, None, _) => {
                problems
                    .error(n, format!("{pre}has neither \"target_scores\" nor a non-empty \"target\"; classification needs one of them"));
                None
            }
            (_, _, Some(t)) if !t.trim().is_empty() => Some(DraftTarget::Text(t.to_string())),
            (_, _, Some(_)) => {
                problems.error(n, format!("{pre}field \"target\" is empty; expected a non-empty text"));
                None
            }
            (_, Some((best, _)), None) => Some(DraftTarget::Text(best)),
            (_, None, None) => {
                problems.error(n, format!("{pre}field \"target\" is missing; expected the reference text"));
                None
            }
        };
        if let (Some(input), Some(target)) = (input, target) {
            let (text_a, text_b) = match &instruction {
                Some(ins) => (ins.clone(), Some(input.to_string())),
                None => (input.to_string(), None),
            };
            drafts.push(Draft { line: n, text_a, text_b, target, split: None });
        }
    }
    Parsed { drafts, known_labels: known, place: Place::Example }
}

/// `Some(Some((best, choices)))`, or `Some(None)` when the scores were reported as broken.
fn best_choice(list: &[(String, Value)], n: usize, pre: &str, problems: &mut Problems) -> Option<Option<(String, Vec<String>)>> {
    if list.is_empty() {
        problems.error(n, format!("{pre}field \"target_scores\" is empty; expected {{choice: score, ...}}"));
        return Some(None);
    }
    let mut best: Option<(usize, f64)> = None;
    let mut ok = true;
    for (j, (choice, score)) in list.iter().enumerate() {
        if choice.trim().is_empty() {
            problems.error(n, format!("{pre}\"target_scores\" has an empty choice"));
            ok = false;
            continue;
        }
        let Some(s) = score.as_f64() else {
            problems.error(n, format!("{pre}the score of choice {choice:?} is {}, not a number", short_json(score)));
            ok = false;
            continue;
        };
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((j, s));
        }
    }
    if !ok {
        return Some(None);
    }
    let (j, top) = best?;
    let ties = list.iter().filter(|(_, s)| s.as_f64() == Some(top)).count();
    if ties > 1 {
        problems.warn(n, format!("{pre}{ties} choices share the top score {top}; using the first, {:?}", list[j].0));
    }
    Some(Some((list[j].0.trim().to_string(), list.iter().map(|(c, _)| c.trim().to_string()).collect())))
}

/// Reads every example's `target_scores` again, keeping the order the file writes them in.
fn ordered_scores(text: &str, len: usize) -> Vec<Option<Vec<(String, Value)>>> {
    #[derive(Deserialize)]
    struct File {
        examples: Vec<Slot>,
    }
    /// One example: its `target_scores` entries in order, if it is an object that has them.
    struct Slot(Option<Vec<(String, Value)>>);
    impl<'de> Deserialize<'de> for Slot {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Slot;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Slot, A::Error> {
                    let mut scores = None;
                    while let Some(key) = map.next_key::<String>()? {
                        if key == "target_scores" {
                            scores = map.next_value::<Ordered>()?.0;
                        } else {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    Ok(Slot(scores))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Slot, A::Error> {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(Slot(None))
                }
                fn visit_str<E: de::Error>(self, _: &str) -> Result<Slot, E> {
                    Ok(Slot(None))
                }
                fn visit_bool<E: de::Error>(self, _: bool) -> Result<Slot, E> {
                    Ok(Slot(None))
                }
                fn visit_i64<E: de::Error>(self, _: i64) -> Result<Slot, E> {
                    Ok(Slot(None))
                }
                fn visit_u64<E: de::Error>(self, _: u64) -> Result<Slot, E> {
                    Ok(Slot(None))
                }
                fn visit_f64<E: de::Error>(self, _: f64) -> Result<Slot, E> {
                    Ok(Slot(None))
                }
                fn visit_unit<E: de::Error>(self) -> Result<Slot, E> {
                    Ok(Slot(None))
                }
            }
            d.deserialize_any(V)
        }
    }
    match serde_json::from_str::<File>(text) {
        Ok(file) => file.examples.into_iter().map(|s| s.0).collect(),
        Err(_) => vec![None; len],
    }
}
