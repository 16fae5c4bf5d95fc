//! Adapter training: the one entry point the worker calls is [`train`].
//!
//! Everything here is synchronous and generic over the burn backend; the worker runs
//! it on a dedicated thread and relays [`TrainEvent`]s to the database.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

pub mod adapters;
pub mod allocator;
pub mod assets;
pub mod causal;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod export;
pub mod fit;
pub mod model;
pub mod params;
pub mod step;
pub mod tokenize;
pub mod trainer;

/// The CPU backend every build has (burn ndarray + autodiff).
pub type CpuBackend = burn::backend::Autodiff<burn::backend::NdArray<f32>>;

use rankfit_domain::dataset::ParsedDataset;
use rankfit_domain::rank::RankMap;
use rankfit_domain::run::RunConfig;
use serde::{Deserialize, Serialize};

/// Sub-directory of `TrainJob::work_dir` holding the latest resumable checkpoint. The
/// trainer writes it completely (e.g. into a temporary dir renamed into place) before it
/// emits [`TrainEvent::Checkpoint`]; the worker then uploads it, and on a resumed attempt
/// restores it here before calling [`train`] again.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// Everything needed to train one run.
#[derive(Debug, Clone)]
pub struct TrainJob {
    pub run_id: uuid::Uuid,
    pub base_model: String,
    pub config: RunConfig,
    /// Target average rank per adapted module.
    pub budget: u32,
    pub seed: u64,
    pub dataset: ParsedDataset,
    /// The dataset's ranking metric (e.g. `mcc` for CoLA), which validation selects the
    /// checkpoint on when the task reports it; None: the task family's primary metric.
    pub selection_metric: Option<String>,
    /// Where `rankfit assets fetch` put the model packages.
    pub assets_dir: PathBuf,
    /// Private scratch dir of this run: checkpoints and exported files go here.
    pub work_dir: PathBuf,
}

/// Progress reported while training; the worker stores each one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TrainEvent {
    Metric {
        step: u64,
        split: String,
        name: String,
        value: f64,
    },
    Ranks(RankMap),
    Checkpoint {
        step: u64,
    },
    Log {
        message: String,
    },
    /// Where the run is (about once a second while training, and at each phase change).
    Progress(rankfit_domain::progress::Progress),
}

pub use rankfit_domain::artifact::ArtifactKind;

/// What a finished run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOutput {
    /// split -> metric name -> value.
    pub evaluations: Vec<(String, serde_json::Map<String, serde_json::Value>)>,
    pub artifacts: Vec<(ArtifactKind, PathBuf)>,
    /// Trainable parameters at start/peak/end, wall time, throughput, peak memory, ...
    pub summary: rankfit_domain::summary::RunSummary,
    /// Per-example predictions of the exported (best-validation) state on the test split:
    /// what intervals over examples and paired comparisons are computed from.
    #[serde(default)]
    pub predictions: Vec<rankfit_domain::prediction::Prediction>,
}

/// Why training stopped. The policy: every error names what it is about (the step and value
/// of a diverged loss, the path of a missing asset or an unwritable file, the part of a
/// checkpoint that does not fit, the tensor that could not be read back) in words a user can
/// act on, because the worker stores `to_string()` as the run's error and the run page shows
/// it. Input problems (`Data`, `Config`, `Model`, `AssetMissing`) are the user's to fix;
/// `Internal` is a bug of ours; `Cancelled` is not a failure.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("method {0} is not available in this build of rankfit")]
    MethodNotAvailable(String),
    #[error("base model {0}: {1}")]
    Model(String, String),
    #[error("asset missing: {0}")]
    AssetMissing(String),
    #[error("dataset: {0}")]
    Data(String),
    #[error("config: {0}")]
    Config(String),
    #[error("cancelled")]
    Cancelled,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Training diverged.
    #[error("the loss became {value} at step {step}; lower the learning rate")]
    NonFiniteLoss { step: u64, value: f64 },
    /// A checkpoint that does not belong to this run or lacks a part (the run then starts over
    /// or fails; it never resumes from half a state).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Reading a tensor back to the host failed (a backend error).
    #[error("reading {what} from the device: {message}")]
    Tensor { what: &'static str, message: String },
    /// Writing a weights file.
    #[error("writing {}: {message}", path.display())]
    Weights { path: std::path::PathBuf, message: String },
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("metric: {0}")]
    Metric(#[from] rankfit_domain::metrics::MetricError),
    /// The external judge command of decoder runs.
    #[error("judge: {0}")]
    Judge(String),
    /// The training thread panicked (reported by the worker).
    #[error("training crashed: {0}")]
    Crashed(String),
    /// A broken invariant of the training code itself (a bug, not bad input).
    #[error("internal: {0}")]
    Internal(String),
}

impl TrainError {
    /// A tensor that could not be read back to the host.
    pub fn tensor(what: &'static str) -> impl FnOnce(burn::tensor::DataError) -> TrainError {
        move |e| TrainError::Tensor { what, message: format!("{e:?}") }
    }
}

/// Trains `job`, calling `on_event` with progress and polling `cancel` between steps.
///
/// Dispatches on the base model's architecture: the BERT encoder ([`trainer`]:
/// classification/regression) or the Llama decoder ([`causal`]: summarization/instruction,
/// with the judge named by `RANKFIT_JUDGE_CMD`, if any). All five methods (LoRA, AdaLoRA,
/// SalientLoRA, ALoRA, RoLoRA) run on both. Resumes from
/// `work_dir/checkpoint` when it holds a checkpoint of the same run. Runs on the device
/// `RANKFIT_DEVICE` names (the CPU by default; see [`device`]).
pub fn train(job: &TrainJob, on_event: &mut dyn FnMut(TrainEvent), cancel: &AtomicBool) -> Result<TrainOutput, TrainError> {
    train_on(device::ComputeDevice::from_env()?, job, on_event, cancel)
}

/// [`train`] on an explicit device (see [`device`]).
pub fn train_on(
    device: device::ComputeDevice,
    job: &TrainJob,
    on_event: &mut dyn FnMut(TrainEvent),
    cancel: &AtomicBool,
) -> Result<TrainOutput, TrainError> {
    let mut out = match device {
        device::ComputeDevice::Cpu => {
            device::keep_freed_memory();
            train_with::<CpuBackend>(job, on_event, cancel, Default::default())
        }
        #[cfg(feature = "cuda")]
        device::ComputeDevice::Cuda(index) => {
            train_with::<device::CudaBackend>(job, on_event, cancel, burn::backend::cuda::CudaDevice { index })
        }
        #[cfg(not(feature = "cuda"))]
        device::ComputeDevice::Cuda(_) => Err(device.unavailable()),
    }?;
    out.summary.device = Some(device.to_string());
    Ok(out)
}

fn train_with<B: burn::tensor::backend::AutodiffBackend>(
    job: &TrainJob,
    on_event: &mut dyn FnMut(TrainEvent),
    cancel: &AtomicBool,
    device: B::Device,
) -> Result<TrainOutput, TrainError> {
    use rankfit_domain::catalog::{base_model, Architecture};
    let base = base_model(&job.base_model).ok_or_else(|| TrainError::Model(job.base_model.clone(), "unknown base model".into()))?;
    if !base.architecture.serves(job.dataset.task_family) {
        return Err(TrainError::Data(format!(
            "{} ({}) does not train {} tasks",
            base.id,
            base.architecture.as_str(),
            job.dataset.task_family
        )));
    }
    match base.architecture {
        Architecture::Bert => trainer::run::<B>(job, on_event, cancel, device),
        Architecture::Llama => {
            let judge = causal::judge::CommandJudge::from_env().map(|j| Box::new(j) as Box<dyn causal::judge::Judge>);
            causal::run::<B>(job, on_event, cancel, device, causal::CausalOptions { judge })
        }
    }
}
