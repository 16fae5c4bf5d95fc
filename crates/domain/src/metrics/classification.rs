//! Classification metrics over class ids, matching scikit-learn 1.x.

use std::collections::{BTreeMap, BTreeSet};

use super::{check_lengths, MetricError};

/// Fraction of predictions equal to their reference (`sklearn.metrics.accuracy_score`).
pub fn accuracy(references: &[usize], predictions: &[usize]) -> Result<f64, MetricError> {
    check_lengths(references.len(), predictions.len())?;
    let correct = references.iter().zip(predictions).filter(|(r, p)| r == p).count();
    Ok(correct as f64 / references.len() as f64)
}

/// F1 of class `positive` against all others: `2·tp / (2·tp + fp + fn)`, 0 when that is 0/0.
fn f1_of(references: &[usize], predictions: &[usize], positive: usize) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    for (&r, &p) in references.iter().zip(predictions) {
        match (r == positive, p == positive) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            (false, false) => {}
        }
    }
    let denom = 2 * tp + fp + fn_;
    if denom == 0 {
        0.0
    } else {
        (2 * tp) as f64 / denom as f64
    }
}

/// Binary F1 with class 1 as the positive class (`f1_score(average="binary")`; any class
/// other than 1 counts as negative). 0 when there are no positives at all.
pub fn f1_binary(references: &[usize], predictions: &[usize]) -> Result<f64, MetricError> {
    check_lengths(references.len(), predictions.len())?;
    Ok(f1_of(references, predictions, 1))
}

/// Unweighted mean of per-class F1 over every class present in the references or the
/// predictions (`f1_score(average="macro")`).
pub fn f1_macro(references: &[usize], predictions: &[usize]) -> Result<f64, MetricError> {
    check_lengths(references.len(), predictions.len())?;
    let classes: BTreeSet<usize> = references.iter().chain(predictions).copied().collect();
    let sum: f64 = classes.iter().map(|&c| f1_of(references, predictions, c)).sum();
    Ok(sum / classes.len() as f64)
}

/// Matthews correlation coefficient for any number of classes, scikit-learn's formula
/// (Gorodkin's R_K): `(c·s − Σ p_k·t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²))`, with `c` the
/// correct predictions, `s` the samples, `t_k`/`p_k` the true/predicted counts of class k.
/// 0 when the denominator is 0 (one class only), as scikit-learn returns.
pub fn matthews_corrcoef(references: &[usize], predictions: &[usize]) -> Result<f64, MetricError> {
    check_lengths(references.len(), predictions.len())?;
    let mut t: BTreeMap<usize, f64> = BTreeMap::new();
    let mut p: BTreeMap<usize, f64> = BTreeMap::new();
    let mut correct = 0f64;
    for (&r, &q) in references.iter().zip(predictions) {
        *t.entry(r).or_default() += 1.0;
        *p.entry(q).or_default() += 1.0;
        if r == q {
            correct += 1.0;
        }
    }
    let s = references.len() as f64;
    let tp_dot: f64 = t.iter().map(|(k, tk)| tk * p.get(k).copied().unwrap_or(0.0)).sum();
    let cov_ytyp = correct * s - tp_dot;
    let cov_ypyp = s * s - p.values().map(|v| v * v).sum::<f64>();
    let cov_ytyt = s * s - t.values().map(|v| v * v).sum::<f64>();
    if cov_ypyp * cov_ytyt == 0.0 {
        return Ok(0.0);
    }
    Ok(cov_ytyp / (cov_ytyt * cov_ypyp).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_cases() {
        assert_eq!(accuracy(&[0, 1, 1, 0], &[0, 1, 0, 0]).unwrap(), 0.75);
        assert!((f1_binary(&[0, 1, 1, 0], &[0, 1, 0, 0]).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(f1_binary(&[0, 0], &[0, 0]).unwrap(), 0.0);
        assert_eq!(matthews_corrcoef(&[1, 1, 1], &[1, 1, 1]).unwrap(), 0.0);
        assert_eq!(matthews_corrcoef(&[0, 1, 0, 1], &[0, 1, 0, 1]).unwrap(), 1.0);
        assert_eq!(matthews_corrcoef(&[0, 1, 0, 1], &[1, 0, 1, 0]).unwrap(), -1.0);
        assert_eq!(f1_macro(&[0, 1, 2], &[0, 1, 2]).unwrap(), 1.0);
        assert_eq!(accuracy(&[], &[]), Err(MetricError::Empty));
        assert!(matches!(accuracy(&[1], &[1, 2]), Err(MetricError::LengthMismatch { .. })));
    }
}
