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

/// Orders module paths as people read a model: by layer number, then by module
/// (`layers.2.q_proj` before `layers.10.q_proj`): digit runs compare as numbers.
pub fn module_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<Result<u64, &str>> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits > 0 {
                out.push(rest[..digits].parse().map_err(|_| &rest[..digits]));
                rest = &rest[digits..];
            } else {
                let text = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
                out.push(Err(&rest[..text]));
                rest = &rest[text..];
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let o = match (x, y) {
            (Ok(m), Ok(n)) => m.cmp(n),
            (Err(s), Err(t)) => s.cmp(t),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod order_tests {
    #[test]
    fn modules_sort_by_layer_number_then_module() {
        let mut m =
            vec!["layers.10.self_attn.q_proj", "layers.2.self_attn.v_proj", "layers.2.self_attn.q_proj", "layers.1.mlp.up_proj", "embed"];
        m.sort_by(|a, b| super::module_order(a, b));
        assert_eq!(
            m,
            vec!["embed", "layers.1.mlp.up_proj", "layers.2.self_attn.q_proj", "layers.2.self_attn.v_proj", "layers.10.self_attn.q_proj"]
        );
    }
}
