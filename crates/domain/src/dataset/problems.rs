//! Collects errors and warnings while a file is read, and caps what is reported.

use super::{InvalidDataset, LineError, MAX_ERRORS, MAX_WARNINGS};

/// Problems kept in memory before only counting the rest (bounds memory on a file where
/// every one of a million rows is wrong; the report lists [`MAX_ERRORS`] anyway).
const MAX_KEPT: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct Problems {
    errors: Vec<LineError>,
    errors_dropped: usize,
    warnings: Vec<LineError>,
    warnings_dropped: usize,
}

impl Problems {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn error(&mut self, line: usize, message: impl Into<String>) {
        self.push_error(LineError { line, message: message.into() });
    }

    pub(crate) fn push_error(&mut self, e: LineError) {
        if self.errors.len() < MAX_KEPT {
            self.errors.push(e);
        } else {
            self.errors_dropped += 1;
        }
    }

    pub(crate) fn warn(&mut self, line: usize, message: impl Into<String>) {
        if self.warnings.len() < MAX_KEPT {
            self.warnings.push(LineError { line, message: message.into() });
        } else {
            self.warnings_dropped += 1;
        }
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The errors, ordered by line, capped at [`MAX_ERRORS`] plus a final
    /// `... and N more problems` entry (line 0).
    pub(crate) fn into_invalid(self) -> InvalidDataset {
        InvalidDataset { errors: cap(self.errors, self.errors_dropped, MAX_ERRORS, "problems") }
    }

    /// The warnings, ordered by line and capped like the errors.
    pub(crate) fn into_warnings(self) -> Vec<LineError> {
        cap(self.warnings, self.warnings_dropped, MAX_WARNINGS, "warnings")
    }
}

fn cap(mut list: Vec<LineError>, dropped: usize, max: usize, what: &str) -> Vec<LineError> {
    // Stable: problems on one line keep the order they were found in. Whole-file problems
    // (line 0) come first.
    list.sort_by_key(|e| e.line);
    let extra = list.len().saturating_sub(max) + dropped;
    list.truncate(max);
    if extra > 0 {
        list.push(LineError { line: 0, message: format!("... and {extra} more {what}") });
    }
    list
}
