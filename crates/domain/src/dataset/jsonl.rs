//! JSON Lines: one JSON object per line; blank lines are skipped.

use serde_json::Value;

use super::problems::Problems;
use super::record::{extract, Parsed};
use super::{ParseOptions, MAX_ROWS};

pub(crate) fn parse(text: &str, opts: &ParseOptions, problems: &mut Problems) -> Parsed {
    let mut drafts = Vec::new();
    let mut rows = 0usize;
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        rows += 1;
        if rows > MAX_ROWS {
            problems.error(line, format!("the file has more than {MAX_ROWS} rows, the limit; split it into several datasets"));
            break;
        }
        let value: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                // serde's message ends "at line 1 column N": within this line.
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                problems
                    .error(line, format!("invalid JSON at column {}: {msg} (each line must hold one complete JSON object)", e.column()));
                continue;
            }
        };
        let Value::Object(obj) = value else {
            let found = match value {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            };
            problems.error(line, format!("expected a JSON object ({{\"field\": value, ...}}), found {found}"));
            continue;
        };
        if let Some(d) = extract(&obj, line, opts, problems) {
            drafts.push(d);
        }
    }
    Parsed::lines(drafts)
}
