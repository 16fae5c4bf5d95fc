//! Reading one record (a JSONL object or a CSV row) into a draft example, with the field
//! names each task family expects. Shared by the JSONL and CSV readers.

use serde_json::Value;

use super::problems::Problems;
use super::{ParseOptions, Split, LONG_TEXT_CHARS, MAX_FIELD_BYTES};
use crate::task::TaskFamily;

/// How the chat format (`{"messages": [...]}`) is turned into a prompt: every turn before
/// the last assistant message is written as `<|role|>\n{content}\n`, and the prompt ends
/// with `<|assistant|>\n`; the last assistant message is the target.
pub const CHAT_PROMPT_FORMAT: &str = "<|{role}|>\\n{content}\\n per turn, then <|assistant|>\\n";

/// Renders chat turns `(role, content)` into the prompt text described by
/// [`CHAT_PROMPT_FORMAT`].
///
/// ```
/// use rankfit_domain::dataset::render_chat_prompt;
/// let p = render_chat_prompt([("system", "Be brief."), ("user", "Hi")]);
/// assert_eq!(p, "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n");
/// ```
pub fn render_chat_prompt<'a>(turns: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (role, content) in turns {
        out.push_str("<|");
        out.push_str(role);
        out.push_str("|>\n");
        out.push_str(content);
        out.push('\n');
    }
    out.push_str("<|assistant|>\n");
    out
}

/// The turns `(role, content)` of a prompt written by [`render_chat_prompt`] (what the
/// chat upload format stores as an example's text), or None for any other text. A decoder
/// uses it to re-render the conversation with the model's own chat template.
///
/// ```
/// use rankfit_domain::dataset::{parse_chat_prompt, render_chat_prompt};
/// let p = render_chat_prompt([("system", "Be brief."), ("user", "Hi\nthere")]);
/// let turns = parse_chat_prompt(&p).unwrap();
/// assert_eq!(turns, vec![("system".to_string(), "Be brief.".to_string()), ("user".to_string(), "Hi\nthere".to_string())]);
/// assert_eq!(parse_chat_prompt("Summarize this"), None);
/// ```
pub fn parse_chat_prompt(text: &str) -> Option<Vec<(String, String)>> {
    let body = text.strip_suffix("<|assistant|>\n")?;
    // A turn header is `<|role|>\n` at the start of the text or right after a newline.
    let header_at = |s: &str, at: usize| -> Option<(String, usize)> {
        let rest = s[at..].strip_prefix("<|")?;
        let end = rest.find("|>\n")?;
        let role = &rest[..end];
        let ok = !role.is_empty() && role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        ok.then(|| (role.to_string(), at + 2 + end + 3))
    };
    let mut turns = Vec::new();
    let (mut role, mut start) = header_at(body, 0)?;
    let mut search = start;
    loop {
        // The content ends with the newline before the next header (or the body's end).
        let next = body[search..].find("\n<|").map(|i| search + i);
        match next {
            Some(nl) => match header_at(body, nl + 1) {
                Some((next_role, next_start)) => {
                    turns.push((std::mem::replace(&mut role, next_role), body[start..nl].to_string()));
                    start = next_start;
                    search = next_start;
                }
                None => search = nl + 1,
            },
            None => {
                let content = body[start..].strip_suffix('\n')?;
                turns.push((role, content.to_string()));
                return Some(turns);
            }
        }
    }
}

/// What kind of value a class label was written as (JSON only; CSV cells are all text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LabelKind {
    Text,
    Integer,
    Bool,
}

impl LabelKind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            LabelKind::Text => "a string",
            LabelKind::Integer => "an integer",
            LabelKind::Bool => "a boolean",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DraftTarget {
    Class {
        label: String,
        kind: LabelKind,
    },
    /// A classification row whose label is absent or empty: reported once the label set
    /// of the whole file is known, so the message can list the valid labels.
    MissingClass {
        field: String,
        empty: bool,
    },
    Score(f64),
    Text(String),
}

/// An example as read from the file, before file-wide checks and split assignment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Draft {
    pub line: usize,
    pub text_a: String,
    pub text_b: Option<String>,
    pub target: DraftTarget,
    pub split: Option<Split>,
}

/// What a format reader hands to the file-wide checks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    pub drafts: Vec<Draft>,
    /// Class labels that belong to the label set even if no row uses them (GLUE's fixed
    /// labels, every choice of a BIG-bench `target_scores`).
    pub known_labels: Vec<String>,
    pub place: Place,
}

impl Parsed {
    pub(crate) fn lines(drafts: Vec<Draft>) -> Self {
        Parsed { drafts, known_labels: Vec::new(), place: Place::Line }
    }
}

/// How positions are named in messages: file lines, or examples of a JSON document
/// (which have no useful line numbers, so their 1-based index is used as the line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Line,
    Example,
}

impl Place {
    /// Prefix for a message about position `n`.
    pub(crate) fn prefix(self, n: usize) -> String {
        match self {
            Place::Line => String::new(),
            Place::Example => format!("example {n} (in a JSON document the line number is the example's index, from 1): "),
        }
    }
}

/// A field's value, from JSON or from a CSV cell.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FieldRef<'a> {
    Json(&'a Value),
    Cell(&'a str),
}

impl<'a> FieldRef<'a> {
    /// The text of a CSV cell or a JSON string; otherwise the JSON value.
    fn text(self) -> Result<&'a str, &'a Value> {
        match self {
            FieldRef::Cell(s) => Ok(s),
            FieldRef::Json(Value::String(s)) => Ok(s.as_str()),
            FieldRef::Json(v) => Err(v),
        }
    }
}

/// A record whose fields can be looked up by name.
pub(crate) trait Fields {
    fn get(&self, name: &str) -> Option<FieldRef<'_>>;
    fn names(&self) -> Vec<String>;
}

impl Fields for serde_json::Map<String, Value> {
    fn get(&self, name: &str) -> Option<FieldRef<'_>> {
        match serde_json::Map::get(self, name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(FieldRef::Json(v)),
        }
    }
    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

/// A CSV row with its header.
pub(crate) struct Row<'a> {
    pub header: &'a [String],
    pub cells: &'a ::csv::StringRecord,
}

impl Fields for Row<'_> {
    fn get(&self, name: &str) -> Option<FieldRef<'_>> {
        let i = self.header.iter().position(|h| h == name)?;
        self.cells.get(i).map(FieldRef::Cell)
    }
    fn names(&self) -> Vec<String> {
        self.header.to_vec()
    }
}

/// Default field names per role and family; the first one present is used.
pub(crate) fn default_fields(family: TaskFamily) -> (&'static [&'static str], &'static [&'static str], &'static [&'static str]) {
    match family {
        TaskFamily::Classification => (&["text", "sentence", "sentence1"], &["text_pair", "sentence2"], &["label"]),
        TaskFamily::Regression => (&["text", "sentence", "sentence1"], &["text_pair", "sentence2"], &["score", "label"]),
        TaskFamily::Summarization => (&["document", "article"], &[], &["summary", "highlights"]),
        TaskFamily::Instruction => (&["instruction", "prompt"], &["input"], &["output", "response", "completion"]),
    }
}

fn candidates<'a>(over: &'a Option<String>, defaults: &'a [&'a str]) -> Vec<&'a str> {
    match over {
        Some(name) => vec![name.as_str()],
        None => defaults.to_vec(),
    }
}

fn describe_names(names: &[&str]) -> String {
    match names {
        [one] => format!("field \"{one}\""),
        [first, rest @ ..] => format!("field \"{first}\" (or {})", rest.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")),
        [] => "no field".to_string(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads one record. Every problem goes to `problems`; `None` when the row is unusable.
pub(crate) fn extract(fields: &dyn Fields, line: usize, opts: &ParseOptions, problems: &mut Problems) -> Option<Draft> {
    let mut ok = true;
    let err = |problems: &mut Problems, msg: String| {
        problems.error(line, msg);
        false
    };

    let split = match fields.get("split") {
        None => None,
        Some(FieldRef::Cell(s)) if s.trim().is_empty() => None,
        Some(f) => match f.text() {
            Ok(s) => match Split::parse(s) {
                Some(sp) => Some(sp),
                None => {
                    ok &= err(problems, format!("field \"split\" is {s:?}; expected train, validation (or dev, val) or test"));
                    None
                }
            },
            Err(v) => {
                ok &= err(problems, format!("field \"split\" must be a string (train, validation or test), found {}", json_type(v)));
                None
            }
        },
    };

    if opts.task_family == TaskFamily::Instruction && opts.text_column.is_none() {
        if let Some(messages) = fields.get("messages") {
            let chat = chat(messages, line, problems);
            return match (chat, ok) {
                (Some((prompt, answer)), true) => {
                    Some(Draft { line, text_a: prompt, text_b: None, target: DraftTarget::Text(answer), split })
                }
                _ => None,
            };
        }
    }

    let (text_defaults, pair_defaults, target_defaults) = default_fields(opts.task_family);
    let text_names = candidates(&opts.text_column, text_defaults);
    let pair_names = candidates(&opts.text_pair_column, pair_defaults);
    let target_names = candidates(&opts.label_column, target_defaults);

    let text_a = match required_text(fields, &text_names, line, problems) {
        Some(t) => Some(t),
        None => {
            ok = false;
            None
        }
    };
    let text_b = match optional_text(fields, &pair_names, line, problems) {
        Ok(t) => t,
        Err(()) => {
            ok = false;
            None
        }
    };
    let target = match opts.task_family {
        TaskFamily::Classification => class_label(fields, &target_names, line, problems),
        TaskFamily::Regression => score(fields, &target_names, line, problems),
        TaskFamily::Summarization | TaskFamily::Instruction => required_text(fields, &target_names, line, problems).map(DraftTarget::Text),
    };
    if !ok {
        return None;
    }
    Some(Draft { line, text_a: text_a?, text_b, target: target?, split })
}

/// Finds the first present field of `names`.
fn find<'a>(fields: &'a dyn Fields, names: &[&'a str]) -> Option<(&'a str, FieldRef<'a>)> {
    names.iter().find_map(|n| fields.get(n).map(|v| (*n, v)))
}

fn missing_message(fields: &dyn Fields, names: &[&str], what: &str) -> String {
    let present = fields.names();
    format!(
        "{} is missing; expected {what}. Fields in this record: [{}] (set the column options to use other names)",
        describe_names(names),
        present.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
    )
}

/// Checks a text's size and warns about very long ones.
pub(crate) fn check_text(name: &str, text: &str, line: usize, place: Place, problems: &mut Problems) -> bool {
    if text.len() > MAX_FIELD_BYTES {
        problems.error(
            line,
            format!("{}field \"{name}\" is {} bytes long, more than the limit of {MAX_FIELD_BYTES} bytes", place.prefix(line), text.len()),
        );
        return false;
    }
    if text.len() > LONG_TEXT_CHARS {
        let chars = text.chars().count();
        if chars > LONG_TEXT_CHARS {
            problems.warn(
                line,
                format!(
                    "{}field \"{name}\" is very long ({chars} characters); it will be truncated to the model's maximum sequence length",
                    place.prefix(line)
                ),
            );
        }
    }
    true
}

fn required_text(fields: &dyn Fields, names: &[&str], line: usize, problems: &mut Problems) -> Option<String> {
    let Some((name, value)) = find(fields, names) else {
        problems.error(line, missing_message(fields, names, "a non-empty text"));
        return None;
    };
    let text = match value.text() {
        Ok(s) => s,
        Err(v) => {
            problems.error(line, format!("field \"{name}\" must be a string, found {}", json_type(v)));
            return None;
        }
    };
    if text.trim().is_empty() {
        problems.error(line, format!("field \"{name}\" is empty; expected a non-empty text"));
        return None;
    }
    check_text(name, text, line, Place::Line, problems).then(|| text.to_string())
}

fn optional_text(fields: &dyn Fields, names: &[&str], line: usize, problems: &mut Problems) -> Result<Option<String>, ()> {
    let Some((name, value)) = find(fields, names) else {
        return Ok(None);
    };
    let text = match value.text() {
        Ok(s) => s,
        Err(v) => {
            problems.error(line, format!("field \"{name}\" must be a string, found {}", json_type(v)));
            return Err(());
        }
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    if check_text(name, text, line, Place::Line, problems) {
        Ok(Some(text.to_string()))
    } else {
        Err(())
    }
}

/// A class label from a JSON value: strings, integers (also `1.0`) and booleans.
pub(crate) fn label_from_json(v: &Value) -> Result<Option<(String, LabelKind)>, String> {
    match v {
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some((s.trim().to_string(), LabelKind::Text))),
        Value::Bool(b) => Ok(Some((b.to_string(), LabelKind::Bool))),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Some((i.to_string(), LabelKind::Integer)))
            } else if let Some(u) = n.as_u64() {
                Ok(Some((u.to_string(), LabelKind::Integer)))
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    Ok(Some(((f as i64).to_string(), LabelKind::Integer)))
                } else {
                    Err(format!(
                        "is {n}, which is not a class label (use whole numbers or strings; for real-valued targets choose the regression task family)"
                    ))
                }
            }
        }
        other => Err(format!("must be a string or an integer, found {}", json_type(other))),
    }
}

fn class_label(fields: &dyn Fields, names: &[&str], line: usize, problems: &mut Problems) -> Option<DraftTarget> {
    let Some((name, value)) = find(fields, names) else {
        return Some(DraftTarget::MissingClass { field: names.first().copied().unwrap_or("label").to_string(), empty: false });
    };
    match value {
        FieldRef::Cell(s) if s.trim().is_empty() => Some(DraftTarget::MissingClass { field: name.to_string(), empty: true }),
        FieldRef::Cell(s) => Some(DraftTarget::Class { label: s.trim().to_string(), kind: LabelKind::Text }),
        FieldRef::Json(v) => match label_from_json(v) {
            Ok(Some((label, kind))) => Some(DraftTarget::Class { label, kind }),
            Ok(None) => Some(DraftTarget::MissingClass { field: name.to_string(), empty: true }),
            Err(msg) => {
                problems.error(line, format!("field \"{name}\" {msg}"));
                None
            }
        },
    }
}

/// Parses a regression target: a finite number (strings holding a number are accepted).
pub(crate) fn parse_score(text: &str) -> Result<f64, String> {
    let t = text.trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!("is {v}; expected a finite number")),
        Err(_) => Err(format!("is {t:?}, which is not a number")),
    }
}

fn score(fields: &dyn Fields, names: &[&str], line: usize, problems: &mut Problems) -> Option<DraftTarget> {
    let Some((name, value)) = find(fields, names) else {
        problems.error(line, missing_message(fields, names, "a number"));
        return None;
    };
    let parsed = match value.text() {
        Ok(s) => parse_score(s),
        Err(Value::Number(n)) => n.as_f64().ok_or_else(|| format!("is {n}, which is out of range")),
        Err(v) => Err(format!("must be a number, found {}", json_type(v))),
    };
    match parsed {
        Ok(v) => Some(DraftTarget::Score(v)),
        Err(msg) => {
            problems.error(line, format!("field \"{name}\" {msg}"));
            None
        }
    }
}

/// Reads `messages`: returns the rendered prompt and the last assistant message.
fn chat(messages: FieldRef<'_>, line: usize, problems: &mut Problems) -> Option<(String, String)> {
    let FieldRef::Json(Value::Array(list)) = messages else {
        let found = match messages {
            FieldRef::Json(v) => json_type(v),
            FieldRef::Cell(_) => "a CSV cell (the chat format needs JSONL)",
        };
        problems.error(line, format!("field \"messages\" must be an array of {{\"role\", \"content\"}} objects, found {found}"));
        return None;
    };
    let mut turns: Vec<(&str, &str)> = Vec::with_capacity(list.len());
    let mut ok = true;
    for (i, m) in list.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        let content = m.get("content").and_then(Value::as_str);
        match (role, content) {
            (Some(r), Some(c)) if !r.trim().is_empty() => turns.push((r.trim(), c)),
            _ => {
                problems.error(
                    line,
                    format!("messages[{i}] must be an object with string fields \"role\" and \"content\", found {}", short_json(m)),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    let Some(last) = turns.iter().rposition(|(r, _)| *r == "assistant") else {
        problems
            .error(line, "field \"messages\" has no message with role \"assistant\"; the last assistant message is the target to learn");
        return None;
    };
    let answer = turns[last].1;
    if answer.trim().is_empty() {
        problems.error(line, format!("messages[{last}] (the last assistant message, the target) is empty"));
        return None;
    }
    if last == 0 {
        problems.error(line, "field \"messages\" has no turn before the assistant's answer; add the user's message");
        return None;
    }
    let after = turns.len() - last - 1;
    if after > 0 {
        problems.warn(line, format!("{after} message(s) after the last assistant message are ignored"));
    }
    let prompt = render_chat_prompt(turns[..last].iter().copied());
    if !check_text("messages", &prompt, line, Place::Line, problems) || !check_text("messages", answer, line, Place::Line, problems) {
        return None;
    }
    Some((prompt, answer.to_string()))
}

/// A JSON value, shortened for a message.
pub(crate) fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}
