//! rankfit's shared vocabulary. Pure data and pure functions: no IO, no async.
//!
//! - [`run`]: run states, method configs and their validation.
//! - [`dataset`]: upload formats, parsing and validation reports.
//! - [`rank`]: rank maps recorded over time.
//! - [`task`]: task families and the metrics reported for each.
//! - [`catalog`]: the base models and built-in tasks the platform knows.

pub mod catalog;
pub mod dataset;
#[doc(hidden)]
pub mod fuzzing;
pub mod generation;
pub mod metrics;
pub mod rank;
pub mod run;
pub mod task;

pub use uuid::Uuid;
