//! Rank maps: the live rank of every adapted module at one step.

use serde::{Deserialize, Serialize};

/// Live ranks per adapted module at a given training step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankMap {
    pub step: u64,
    /// The rank budget b(t) in force at this step (total live components allowed).
    pub budget: u64,
    /// (module path, live rank), in a stable module order.
    pub modules: Vec<(String, u32)>,
}

impl RankMap {
    pub fn total(&self) -> u64 {
        self.modules.iter().map(|(_, r)| u64::from(*r)).sum()
    }
}
