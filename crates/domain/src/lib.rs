//! rankfit's shared vocabulary. Pure data and pure functions: no IO, no async.
//!
//! - [`run`]: run states, method configs and their validation.
//! - [`dataset`]: upload formats, parsing and validation reports.
//! - [`rank`]: rank maps recorded over time.
//! - [`task`]: task families and the metrics reported for each.
//! - [`artifact`]: the kinds of stored files (adapters, merged weights, checkpoints).
//! - [`catalog`]: the base models and built-in tasks the platform knows.
//! - [`study`]: study grids (datasets × methods × budgets × seeds) and their validation.
//! - [`prediction`]: per-example test predictions and metrics recomputed from them.
//! - [`comparison`]: cells aggregated over seeds, intervals, paired differences, rank groups.
//! - [`estimate`]: a run's or study's steps, time and peak memory before it is queued.
//! - [`progress`]: where a running run is (phase, step, ETA), as workers report it.
//! - [`stats`]: Student-t quantiles and intervals, a replicable bootstrap, summaries over
//!   seeds, paired differences and rank groups.
//! - [`summary`]: what a finished run records about itself (typed, one definition).
//! - [`table`]: the paper-style results table (methods × budgets by datasets) as Markdown,
//!   CSV and LaTeX.

pub mod artifact;
pub mod catalog;
pub mod comparison;
pub mod dataset;
pub mod estimate;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod generation;
pub mod metrics;
pub mod prediction;
pub mod progress;
pub mod rank;
pub mod run;
pub mod stats;
pub mod study;
pub mod summary;
pub mod table;
pub mod task;

pub use uuid::Uuid;
