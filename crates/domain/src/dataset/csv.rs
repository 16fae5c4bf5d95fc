//! Comma-separated values with a header row (RFC 4180 quoting: fields may hold commas,
//! quotes written as `""`, and line breaks).

use super::problems::Problems;
use super::record::{extract, Parsed, Row};
use super::{ParseOptions, MAX_ROWS};

pub(crate) fn parse(text: &str, opts: &ParseOptions, problems: &mut Problems) -> Parsed {
    let mut reader = ::csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut records = reader.records();
    let header: Vec<String> = match records.next() {
        None => {
            problems.error(0, "the file is empty; expected a header row and at least one data row");
            return Parsed::lines(Vec::new());
        }
        Some(Err(e)) => {
            problems.error(1, format!("could not read the header row: {}", csv_message(&e)));
            return Parsed::lines(Vec::new());
        }
        Some(Ok(h)) => h.iter().map(|c| c.trim().to_string()).collect(),
    };
    if header.iter().all(String::is_empty) {
        problems.error(1, "the header row is empty; the first row must name the columns");
        return Parsed::lines(Vec::new());
    }
    for (i, name) in header.iter().enumerate() {
        if !name.is_empty() && header[..i].contains(name) {
            problems.error(1, format!("column \"{name}\" appears twice in the header row; column names must be unique"));
        }
    }
    let mut drafts = Vec::new();
    let mut rows = 0usize;
    for rec in records {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                problems.error(line, format!("could not read the row: {}", csv_message(&e)));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        rows += 1;
        if rows > MAX_ROWS {
            problems.error(line, format!("the file has more than {MAX_ROWS} rows, the limit; split it into several datasets"));
            break;
        }
        if rec.len() != header.len() {
            problems.error(
                line,
                format!(
                    "expected {} comma-separated columns (as in the header), found {}; quote fields that contain commas with \"...\"",
                    header.len(),
                    rec.len()
                ),
            );
            continue;
        }
        if let Some(d) = extract(&Row { header: &header, cells: &rec }, line, opts, problems) {
            drafts.push(d);
        }
    }
    Parsed::lines(drafts)
}

fn csv_message(e: &::csv::Error) -> String {
    match e.kind() {
        ::csv::ErrorKind::Utf8 { .. } => "the row is not valid UTF-8".to_string(),
        _ => e.to_string(),
    }
}
