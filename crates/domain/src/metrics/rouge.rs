//! ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum exactly as Google's `rouge-score` package
//! computes them (`rouge_scorer.RougeScorer([...], use_stemmer=...)`, version 0.1.2):
//!
//! - tokens: the text is lower-cased, every run of characters outside `[a-z0-9]` becomes a
//!   space, the text is split on whitespace, and (with the stemmer) tokens longer than 3
//!   characters go through NLTK's Porter stemmer ([`super::porter`]);
//! - ROUGE-N: clipped n-gram overlap; precision over the prediction's n-grams, recall over
//!   the reference's (each at least 1);
//! - ROUGE-L: the longest common subsequence of the two token lists;
//! - ROUGE-Lsum: summary-level LCS: texts split on `\n` into sentences (empty lines
//!   dropped), for each reference sentence the union of its LCS indices with every
//!   prediction sentence, hits counted without double counting tokens;
//! - F-measure `2PR/(P+R)`, 0 when `P+R = 0`; empty texts score 0.
//!
//! The scores record whether the stemmer was on ([`RougeScores::stemmed`]), because the
//! numbers differ.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::porter;

/// Precision, recall and F-measure of one ROUGE variant.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RougeScore {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl RougeScore {
    fn from_pr(precision: f64, recall: f64) -> Self {
        let fmeasure = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        RougeScore { precision, recall, fmeasure }
    }
}

/// Every ROUGE variant for one (reference, prediction) pair.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RougeScores {
    pub rouge1: RougeScore,
    pub rouge2: RougeScore,
    #[serde(rename = "rougeL")]
    pub rouge_l: RougeScore,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: RougeScore,
    /// Whether tokens were Porter-stemmed.
    pub stemmed: bool,
}

/// Scores (reference, prediction) pairs; caches stems.
#[derive(Debug, Clone, Default)]
pub struct RougeScorer {
    use_stemmer: bool,
    cache: HashMap<String, String>,
}

impl RougeScorer {
    /// `use_stemmer = true` is what rankfit reports (as the papers and `evaluate` do).
    pub fn new(use_stemmer: bool) -> Self {
        RougeScorer { use_stemmer, cache: HashMap::new() }
    }

    pub fn use_stemmer(&self) -> bool {
        self.use_stemmer
    }

    /// `rouge_score.tokenize.tokenize(text, stemmer)`.
    pub fn tokenize(&mut self, text: &str) -> Vec<String> {
        let lower = text.to_lowercase();
        let mut tokens = Vec::new();
        for raw in lower.split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit())) {
            if raw.is_empty() {
                continue;
            }
            if self.use_stemmer && raw.len() > 3 {
                let stemmed = match self.cache.get(raw) {
                    Some(s) => s.clone(),
                    None => {
                        let s = porter::stem(raw);
                        if self.cache.len() < 100_000 {
                            self.cache.insert(raw.to_string(), s.clone());
                        }
                        s
                    }
                };
                // rouge-score drops tokens that are no longer [a-z0-9]+ (never happens
                // with ASCII input) or empty.
                if !stemmed.is_empty() {
                    tokens.push(stemmed);
                }
            } else {
                tokens.push(raw.to_string());
            }
        }
        tokens
    }

    /// Scores one pair: `reference` is rouge-score's `target`.
    pub fn score(&mut self, reference: &str, prediction: &str) -> RougeScores {
        let r = self.tokenize(reference);
        let p = self.tokenize(prediction);
        let r_sents: Vec<Vec<String>> = sentences(reference).map(|s| self.tokenize(s)).collect();
        let p_sents: Vec<Vec<String>> = sentences(prediction).map(|s| self.tokenize(s)).collect();
        RougeScores {
            rouge1: rouge_n(&r, &p, 1),
            rouge2: rouge_n(&r, &p, 2),
            rouge_l: rouge_l(&r, &p),
            rouge_lsum: rouge_lsum(&r_sents, &p_sents),
            stemmed: self.use_stemmer,
        }
    }
}

/// Scores one pair with a fresh scorer.
pub fn rouge_scores(reference: &str, prediction: &str, use_stemmer: bool) -> RougeScores {
    RougeScorer::new(use_stemmer).score(reference, prediction)
}

/// Newline-separated sentences, empty ones dropped (rouge-score's `get_sents`).
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').filter(|s| !s.is_empty())
}

fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    if tokens.len() >= n {
        for w in tokens.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// ROUGE-N over token lists.
pub fn rouge_n(reference: &[String], prediction: &[String], n: usize) -> RougeScore {
    let r = ngram_counts(reference, n);
    let p = ngram_counts(prediction, n);
    let overlap: usize = r.iter().map(|(g, c)| (*c).min(p.get(g).copied().unwrap_or(0))).sum();
    let r_total: usize = r.values().sum();
    let p_total: usize = p.values().sum();
    RougeScore::from_pr(overlap as f64 / p_total.max(1) as f64, overlap as f64 / r_total.max(1) as f64)
}

fn lcs_table(a: &[String], b: &[String]) -> Vec<Vec<u32>> {
    let mut t = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            t[i][j] = if a[i - 1] == b[j - 1] { t[i - 1][j - 1] + 1 } else { t[i - 1][j].max(t[i][j - 1]) };
        }
    }
    t
}

/// ROUGE-L (sentence-level LCS) over token lists.
pub fn rouge_l(reference: &[String], prediction: &[String]) -> RougeScore {
    if reference.is_empty() || prediction.is_empty() {
        return RougeScore::default();
    }
    let lcs = lcs_table(reference, prediction)[reference.len()][prediction.len()] as f64;
    RougeScore::from_pr(lcs / prediction.len() as f64, lcs / reference.len() as f64)
}

/// Indices into `reference` of one LCS, chosen as rouge-score's `_backtrack_norec` does.
fn lcs_indices(reference: &[String], candidate: &[String]) -> Vec<usize> {
    let t = lcs_table(reference, candidate);
    let (mut i, mut j) = (reference.len(), candidate.len());
    let mut out = Vec::new();
    while i > 0 && j > 0 {
        if reference[i - 1] == candidate[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i][j - 1] > t[i - 1][j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out.reverse();
    out
}

/// ROUGE-Lsum over tokenized sentences.
pub fn rouge_lsum(reference: &[Vec<String>], prediction: &[Vec<String>]) -> RougeScore {
    if reference.is_empty() || prediction.is_empty() {
        return RougeScore::default();
    }
    let m: usize = reference.iter().map(Vec::len).sum();
    let n: usize = prediction.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return RougeScore::default();
    }
    let mut r_counts: HashMap<&str, usize> = HashMap::new();
    let mut p_counts: HashMap<&str, usize> = HashMap::new();
    for t in reference.iter().flatten() {
        *r_counts.entry(t).or_insert(0) += 1;
    }
    for t in prediction.iter().flatten() {
        *p_counts.entry(t).or_insert(0) += 1;
    }
    let mut hits = 0usize;
    for r in reference {
        let union: BTreeSet<usize> = prediction.iter().flat_map(|c| lcs_indices(r, c)).collect();
        for i in union {
            let t = r[i].as_str();
            let (Some(pc), Some(rc)) = (p_counts.get_mut(t), r_counts.get_mut(t)) else {
                continue;
            };
            if *pc > 0 && *rc > 0 {
                hits += 1;
                *pc -= 1;
                *rc -= 1;
            }
        }
    }
    RougeScore::from_pr(hits as f64 / n as f64, hits as f64 / m as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_example() {
        // rouge-score's README: rouge1 P=0.75, R=0.6667, F=0.7059 (no stemmer).
        let s = rouge_scores("The quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log.", false);
        assert!((s.rouge1.precision - 0.75).abs() < 1e-12);
        assert!((s.rouge1.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.rouge_l.fmeasure - 10.0 / 17.0).abs() < 1e-12, "{:?}", s.rouge_l);
    }

    #[test]
    fn tokenizer() {
        let mut s = RougeScorer::new(true);
        assert_eq!(s.tokenize("Running, runs & ran: 3.5%!"), vec!["run", "run", "ran", "3", "5"]);
        assert!(s.tokenize("¿Qué?").iter().all(|t| t == "qu"));
        assert_eq!(rouge_scores("", "anything", true), RougeScores { stemmed: true, ..Default::default() });
    }
}
