//! Resumable checkpoints in `work_dir/checkpoint/`: `state.json` (step, masks, allocator
//! scalars, best-so-far) and `tensors.safetensors` (parameters, AdamW moments, allocator
//! EMAs, best parameters). Written into a sibling temp dir, then swapped in, so a crash
//! never leaves a half-written checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::adapters::Adapters;
use crate::allocator::{AllocatorState, RankAllocator};
use crate::model::weights::{read_safetensors, write_safetensors, HostTensor};
use crate::params::{AdamW, ComponentSteps, ParamStore};
use crate::{TrainError, TrainJob};

const STATE: &str = "state.json";
const TENSORS: &str = "tensors.safetensors";
const VERSION: u32 = 1;

/// Identifies what a checkpoint belongs to; a mismatch means "start fresh".
pub fn fingerprint(job: &TrainJob, total_steps: u64) -> String {
    let cfg = serde_json::to_string(&job.config).unwrap_or_default();
    format!("v{VERSION}|{}|{}|{}|{}|{total_steps}|{cfg}", job.run_id, job.base_model, job.budget, job.seed)
}

/// The best evaluated state so far.
pub struct Best<B: Backend> {
    pub step: u64,
    pub metric: f64,
    pub values: Vec<Tensor<B, 2>>,
    pub masks: Vec<Vec<bool>>,
}

impl<B: Backend> Best<B> {
    pub fn capture(store: &ParamStore<B>, adapters: &Adapters, step: u64, metric: f64) -> Self {
        Self { step, metric, values: store.values(), masks: adapters.list.iter().map(|a| a.mask.clone()).collect() }
    }

    pub fn restore(self, store: &mut ParamStore<B>, adapters: &mut Adapters) {
        for (p, v) in store.params.iter_mut().zip(self.values) {
            p.value = v;
        }
        for (a, m) in adapters.list.iter_mut().zip(self.masks) {
            a.rank = m.len();
            a.mask = m;
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StateJson {
    fingerprint: String,
    step: u64,
    adam_t: u64,
    /// Per-component Adam step counts of resized parameters, by parameter name.
    #[serde(default)]
    adam_component_steps: BTreeMap<String, ComponentSteps>,
    masks: Vec<Vec<bool>>,
    allocator: Value,
    best: Option<BestJson>,
    peak_trainable: usize,
    param_names: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct BestJson {
    step: u64,
    metric: f64,
    masks: Vec<Vec<bool>>,
}

/// A checkpoint in memory (host-side).
pub struct Checkpoint<B: Backend> {
    pub step: u64,
    pub peak_trainable: usize,
    pub best: Option<Best<B>>,
    state: StateJson,
    tensors: HashMap<String, HostTensor>,
}

impl<B: Backend> Checkpoint<B> {
    pub fn capture(
        store: &ParamStore<B>,
        adapters: &Adapters,
        adam: &AdamW<B>,
        allocator: &dyn RankAllocator<B>,
        step: u64,
        best: Option<&Best<B>>,
        peak_trainable: usize,
    ) -> Checkpoint<B> {
        let mut tensors = HashMap::new();
        for (i, p) in store.params.iter().enumerate() {
            tensors.insert(format!("param.{}", p.name), HostTensor::from_tensor(&p.value));
            if let Some(m) = &adam.m[i] {
                tensors.insert(format!("adam_m.{}", p.name), HostTensor::from_tensor(m));
            }
            if let Some(v) = &adam.v[i] {
                tensors.insert(format!("adam_v.{}", p.name), HostTensor::from_tensor(v));
            }
        }
        if let Some(b) = best {
            for (p, v) in store.params.iter().zip(&b.values) {
                tensors.insert(format!("best.{}", p.name), HostTensor::from_tensor(v));
            }
        }
        let AllocatorState { json, tensors: alloc } = allocator.state();
        for (k, t) in alloc {
            tensors.insert(format!("alloc.{k}"), t);
        }
        let state = StateJson {
            fingerprint: String::new(),
            step,
            adam_t: adam.t,
            adam_component_steps: store
                .params
                .iter()
                .zip(&adam.component_steps)
                .filter_map(|(p, c)| c.clone().map(|c| (p.name.clone(), c)))
                .collect(),
            masks: adapters.list.iter().map(|a| a.mask.clone()).collect(),
            allocator: json,
            best: best.map(|b| BestJson { step: b.step, metric: b.metric, masks: b.masks.clone() }),
            peak_trainable,
            param_names: store.params.iter().map(|p| p.name.clone()).collect(),
        };
        Checkpoint { step, peak_trainable, best: None, state, tensors }
    }

    /// Puts the checkpointed state into a freshly initialised run.
    pub fn apply(
        &self,
        store: &mut ParamStore<B>,
        adapters: &mut Adapters,
        adam: &mut AdamW<B>,
        allocator: &mut dyn RankAllocator<B>,
        device: &B::Device,
    ) -> Result<(), TrainError> {
        let names: Vec<&String> = store.params.iter().map(|p| &p.name).collect();
        if self.state.param_names.iter().collect::<Vec<_>>() != names || self.state.masks.len() != adapters.list.len() {
            return Err(TrainError::Checkpoint("the parameter layout differs from this run's".into()));
        }
        for (i, p) in store.params.iter_mut().enumerate() {
            let get = |prefix: &str| self.tensors.get(&format!("{prefix}.{}", p.name)).map(|t| t.to_tensor::<B, 2>(device));
            p.value = get("param").ok_or_else(|| TrainError::Checkpoint(format!("{} missing", p.name)))?;
            adam.m[i] = get("adam_m");
            adam.v[i] = get("adam_v");
            adam.component_steps[i] = self.state.adam_component_steps.get(&p.name).cloned();
        }
        adam.t = self.state.adam_t;
        // Adapters resized during training (RoLoRA, ALoRA) come back at their saved size.
        for (a, m) in adapters.list.iter_mut().zip(&self.state.masks) {
            a.rank = m.len();
            a.mask = m.clone();
        }
        let alloc: Vec<(String, HostTensor)> =
            self.tensors.iter().filter_map(|(k, t)| k.strip_prefix("alloc.").map(|k| (k.to_string(), t.clone()))).collect();
        allocator.restore(AllocatorState { json: self.state.allocator.clone(), tensors: alloc }, device)
    }
}

pub fn save<B: Backend>(dir: &Path, fingerprint: &str, ck: &Checkpoint<B>) -> Result<(), TrainError> {
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let tensors: BTreeMap<String, HostTensor> = ck.tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    write_safetensors(&tmp.join(TENSORS), &tensors, None)?;
    let mut state = serde_json::to_value(&ck.state)?;
    state["fingerprint"] = Value::String(fingerprint.to_string());
    std::fs::write(tmp.join(STATE), serde_json::to_vec(&state)?)?;
    let old = dir.with_extension("old");
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&tmp, dir)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The checkpoint in `dir` if there is one for this run (same fingerprint).
pub fn load<B: Backend>(dir: &Path, fingerprint: &str, device: &B::Device) -> Result<Option<Checkpoint<B>>, TrainError> {
    let state_path = dir.join(STATE);
    if !state_path.is_file() {
        return Ok(None);
    }
    let state: StateJson = serde_json::from_slice(&std::fs::read(&state_path)?)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", state_path.display())))?;
    if state.fingerprint != fingerprint {
        return Ok(None);
    }
    let (tensors, _) = read_safetensors(&dir.join(TENSORS))?;
    let best = state.best.as_ref().map(|b| -> Result<Best<B>, TrainError> {
        let values = state
            .param_names
            .iter()
            .map(|n| {
                tensors
                    .get(&format!("best.{n}"))
                    .map(|t| t.to_tensor::<B, 2>(device))
                    .ok_or_else(|| TrainError::Checkpoint(format!("best.{n} missing")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Best { step: b.step, metric: b.metric, values, masks: b.masks.clone() })
    });
    let best = best.transpose()?;
    Ok(Some(Checkpoint { step: state.step, peak_trainable: state.peak_trainable, best, state, tensors }))
}
