//! Regression metrics, matching `scipy.stats.pearsonr`/`spearmanr` and
//! `sklearn.metrics.mean_squared_error`, except that a constant input gives a correlation
//! of 0 instead of NaN.

use super::{check_lengths, MetricError};

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Pearson's r, in [-1, 1]; 0 when either input is constant (or has one element).
pub fn pearson(references: &[f64], predictions: &[f64]) -> Result<f64, MetricError> {
    check_lengths(references.len(), predictions.len())?;
    let (mx, my) = (mean(references), mean(predictions));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&x, &y) in references.iter().zip(predictions) {
        let (dx, dy) = (x - mx, y - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 || !(sxx * syy).is_finite() {
        return Ok(0.0);
    }
    let r = sxy / (sxx.sqrt() * syy.sqrt());
    if r.is_nan() {
        return Ok(0.0);
    }
    Ok(r.clamp(-1.0, 1.0))
}

/// Ranks from 1, ties getting the average of the ranks they span
/// (`scipy.stats.rankdata(method="average")`).
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) share the mean of ranks i+1..=j+1.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's rank correlation: Pearson's r of the average ranks. 0 when either input is
/// constant.
pub fn spearman(references: &[f64], predictions: &[f64]) -> Result<f64, MetricError> {
    check_lengths(references.len(), predictions.len())?;
    pearson(&average_ranks(references), &average_ranks(predictions))
}

/// Mean squared error.
pub fn mse(references: &[f64], predictions: &[f64]) -> Result<f64, MetricError> {
    check_lengths(references.len(), predictions.len())?;
    let sum: f64 = references.iter().zip(predictions).map(|(r, p)| (r - p) * (r - p)).sum();
    Ok(sum / references.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_degenerate_inputs() {
        assert_eq!(average_ranks(&[10.0, 20.0, 10.0, 5.0]), vec![2.5, 4.0, 2.5, 1.0]);
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).unwrap(), 0.0);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[4.0, 4.0, 4.0]).unwrap(), 0.0);
        assert_eq!(pearson(&[1.0], &[2.0]).unwrap(), 0.0);
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-15);
        assert_eq!(mse(&[1.0, 2.0], &[1.0, 4.0]).unwrap(), 2.0);
    }
}
