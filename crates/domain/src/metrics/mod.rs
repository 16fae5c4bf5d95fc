//! Evaluation metrics, defined once for the whole platform (the worker computes them, the
//! leaderboards rank by them). Pure functions over predictions and references.
//!
//! - [`classification`]: accuracy, F1 (binary with positive class 1, and macro), Matthews
//!   correlation (multiclass), matching scikit-learn.
//! - [`regression`]: Pearson, Spearman (average ranks for ties), MSE, matching SciPy and
//!   scikit-learn.
//! - [`rouge`]: ROUGE-1/2/L/Lsum matching Google's `rouge-score` package (with NLTK's
//!   Porter stemmer, [`porter`]).
//!
//! Degenerate inputs never produce NaN: a correlation with a constant vector is 0 (SciPy
//! returns NaN, scikit-learn's MCC returns 0), an F1 with no positive predictions and no
//! positive references is 0 (scikit-learn's `zero_division` default), and ROUGE of an
//! empty text is 0. Inputs of different lengths, or empty inputs, are an error.

pub mod classification;
pub mod porter;
pub mod regression;
pub mod rouge;

pub use classification::{accuracy, f1_binary, f1_macro, matthews_corrcoef};
pub use regression::{mse, pearson, spearman};
pub use rouge::{rouge_scores, RougeScore, RougeScorer, RougeScores};

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    #[error("predictions and references differ in length ({predictions} vs {references})")]
    LengthMismatch { predictions: usize, references: usize },
    #[error("no examples to score")]
    Empty,
}

pub(crate) fn check_lengths(references: usize, predictions: usize) -> Result<(), MetricError> {
    if references != predictions {
        return Err(MetricError::LengthMismatch { predictions, references });
    }
    if references == 0 {
        return Err(MetricError::Empty);
    }
    Ok(())
}
