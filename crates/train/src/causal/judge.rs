//! A pluggable judge: an external model grading generated answers (MT-Bench style), off
//! by default. rankfit never calls a hosted service itself; a deployment that has a judge
//! model supplies a [`Judge`] to [`super::CausalOptions`], or names a command in
//! `RANKFIT_JUDGE_CMD` for [`CommandJudge`].

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::TrainError;

/// Environment variable naming a judge command (run through `sh -c`); unset: no judge.
pub const JUDGE_CMD_ENV: &str = "RANKFIT_JUDGE_CMD";

/// One item to grade.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeItem<'a> {
    /// The prompt as the model saw it (chat template applied).
    pub prompt: &'a str,
    pub reference: &'a str,
    pub answer: &'a str,
}

/// Grades answers; higher is better. Scores are averaged per split and stored as
/// `judge_score` next to ROUGE.
pub trait Judge: Send + Sync {
    /// Short name recorded with the scores (e.g. the judge model's name).
    fn name(&self) -> &str;
    /// One score per item, in order.
    fn grade(&self, items: &[JudgeItem<'_>]) -> Result<Vec<f64>, TrainError>;
}

/// A judge behind a command: it gets one JSON object per line on stdin
/// (`{"prompt", "reference", "answer"}`) and prints one number per line on stdout.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandJudge {
    pub command: String,
}

impl CommandJudge {
    /// The judge named by [`JUDGE_CMD_ENV`], if set and non-empty.
    pub fn from_env() -> Option<Self> {
        std::env::var(JUDGE_CMD_ENV).ok().filter(|c| !c.trim().is_empty()).map(|command| Self { command })
    }
}

impl Judge for CommandJudge {
    fn name(&self) -> &str {
        &self.command
    }

    fn grade(&self, items: &[JudgeItem<'_>]) -> Result<Vec<f64>, TrainError> {
        let fail = |m: String| TrainError::Judge(format!("`{}`: {m}", self.command));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot start: {e}")))?;
        let mut input = String::new();
        for it in items {
            input.push_str(&json!({"prompt": it.prompt, "reference": it.reference, "answer": it.answer}).to_string());
            input.push('\n');
        }
        let mut stdin = child.stdin.take().ok_or_else(|| fail("no stdin".into()))?;
        // Write on a thread so a judge that answers while reading cannot deadlock us.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        match writer.join() {
            // A judge may answer without reading all its input: what it printed decides.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Ok(written) => written.map_err(|e| fail(format!("writing: {e}")))?,
            Err(_) => return Err(fail("writer thread panicked".into())),
        }
        if !out.status.success() {
            return Err(fail(format!("exited with {}", out.status)));
        }
        let scores = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().parse::<f64>().map_err(|_| fail(format!("printed {l:?}, not a number"))))
            .collect::<Result<Vec<_>, _>>()?;
        if scores.len() != items.len() {
            return Err(fail(format!("printed {} scores for {} answers", scores.len(), items.len())));
        }
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_judge_reads_one_score_per_answer() {
        // Scores each answer by whether it contains the reference.
        let judge =
            CommandJudge { command: r#"while IFS= read -r l; do case "$l" in *'"answer":"yes"'*) echo 1;; *) echo 0;; esac; done"#.into() };
        let items = [JudgeItem { prompt: "p", reference: "yes", answer: "yes" }, JudgeItem { prompt: "p", reference: "yes", answer: "no" }];
        assert_eq!(judge.grade(&items).unwrap(), vec![1.0, 0.0]);
        let bad = CommandJudge { command: "echo 1".into() };
        assert!(bad.grade(&items).unwrap_err().to_string().contains("1 scores for 2 answers"));
    }
}
