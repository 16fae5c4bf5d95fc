//! How a decoder run generates answers for its evaluation (summaries, instruction
//! responses) and scores them with ROUGE.

use serde::{Deserialize, Serialize};

use crate::run::ConfigError;

/// Generation settings of a decoder run's evaluation (greedy decoding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    /// Longest generated answer, in tokens.
    pub max_new_tokens: u32,
    /// Examples of each evaluation split (validation, test) that are generated and scored
    /// with ROUGE; the held-out loss always covers the whole split. 0 turns generation off.
    pub eval_examples: u32,
    /// Porter stemming in ROUGE (rouge-score's `use_stemmer`; the papers use it).
    pub rouge_stemmer: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self { max_new_tokens: 64, eval_examples: 64, rouge_stemmer: true }
    }
}

impl GenerationConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_new_tokens == 0 || self.max_new_tokens > 2048 {
            return Err(ConfigError { field: "training.generation.max_new_tokens".into(), message: "must be in 1..=2048".into() });
        }
        if self.eval_examples > 100_000 {
            return Err(ConfigError { field: "training.generation.eval_examples".into(), message: "must be at most 100000".into() });
        }
        Ok(())
    }
}
