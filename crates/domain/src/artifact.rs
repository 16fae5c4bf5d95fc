//! What a run stores in the artifact store, named the same way by the trainer that writes
//! it, the worker that uploads it and the server that serves it.

use serde::{Deserialize, Serialize};

/// Kind of a stored file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// PEFT-format adapter of the run's own method (zip: adapter_config.json + adapter_model.safetensors).
    AdapterPeft,
    /// An adaptive run re-expressed as plain LoRA with per-module ranks (for vLLM/LoRAX).
    AdapterLora,
    /// Base weights with the adapter merged in (safetensors).
    AdapterMerged,
    /// A resumable training checkpoint (zip).
    Checkpoint,
}

impl ArtifactKind {
    /// The kinds a user downloads, in the order pages list them.
    pub const DOWNLOADS: [ArtifactKind; 3] = [ArtifactKind::AdapterPeft, ArtifactKind::AdapterLora, ArtifactKind::AdapterMerged];

    /// As stored in the `artifact` table.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::AdapterPeft => "adapter_peft",
            ArtifactKind::AdapterLora => "adapter_lora",
            ArtifactKind::AdapterMerged => "adapter_merged",
            ArtifactKind::Checkpoint => "checkpoint",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::AdapterPeft, Self::AdapterLora, Self::AdapterMerged, Self::Checkpoint].into_iter().find(|k| k.as_str() == s)
    }

    /// The `format=` of the download endpoint (None: not downloadable).
    pub fn format(self) -> Option<&'static str> {
        match self {
            ArtifactKind::AdapterPeft => Some("peft"),
            ArtifactKind::AdapterLora => Some("lora"),
            ArtifactKind::AdapterMerged => Some("merged"),
            ArtifactKind::Checkpoint => None,
        }
    }

    pub fn from_format(format: &str) -> Option<Self> {
        Self::DOWNLOADS.into_iter().find(|k| k.format() == Some(format))
    }

    /// What the download is, for people.
    pub fn label(self) -> &'static str {
        match self {
            ArtifactKind::AdapterPeft => "PEFT adapter (zip)",
            ArtifactKind::AdapterLora => "Plain-LoRA adapter (zip)",
            ArtifactKind::AdapterMerged => "Merged weights (safetensors)",
            ArtifactKind::Checkpoint => "Checkpoint (zip)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ArtifactKind;

    #[test]
    fn names_round_trip() {
        for k in [ArtifactKind::AdapterPeft, ArtifactKind::AdapterLora, ArtifactKind::AdapterMerged, ArtifactKind::Checkpoint] {
            assert_eq!(ArtifactKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
            if let Some(f) = k.format() {
                assert_eq!(ArtifactKind::from_format(f), Some(k));
            }
        }
        assert_eq!(ArtifactKind::from_format("checkpoint"), None);
    }
}
