//! Where training runs: the CPU backend every build has (burn ndarray), or an NVIDIA GPU
//! through burn-cuda in builds with the `cuda` feature. Chosen per worker process with
//! `RANKFIT_DEVICE` (`cpu`, `cuda`, `cuda:N`); checkpoints and exports are host tensors,
//! so a run started on one device resumes on the other.

use std::fmt;
use std::str::FromStr;

use crate::TrainError;

/// The environment variable naming the training device.
pub const DEVICE_ENV: &str = "RANKFIT_DEVICE";

/// The GPU backend (with autodiff), in builds with the `cuda` feature.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Autodiff<burn::backend::Cuda<f32>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComputeDevice {
    #[default]
    Cpu,
    /// The CUDA device with this index.
    Cuda(usize),
}

impl ComputeDevice {
    /// `RANKFIT_DEVICE`, or the CPU when it is unset or empty.
    pub fn from_env() -> Result<Self, TrainError> {
        match std::env::var(DEVICE_ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse(),
            _ => Ok(Self::Cpu),
        }
    }

    /// Whether this build can train on the device, and the machine shows an NVIDIA driver:
    /// without one the CUDA runtime fails later inside its own start-up thread, with a panic
    /// that names neither the device nor the setting. (Which GPUs exist is the runtime's to
    /// say: containers and CUDA_VISIBLE_DEVICES renumber them.)
    pub fn check_available(self) -> Result<Self, TrainError> {
        match self {
            Self::Cuda(_) if !cfg!(feature = "cuda") => Err(self.unavailable()),
            Self::Cuda(_) if !nvidia_driver_visible() => Err(TrainError::Config(format!(
                "{DEVICE_ENV}={self}: no NVIDIA driver is visible on this machine (neither /dev/nvidiactl nor /dev/dxg exists); check `nvidia-smi`, or use {DEVICE_ENV}=cpu"
            ))),
            _ => Ok(self),
        }
    }

    pub(crate) fn unavailable(self) -> TrainError {
        TrainError::Config(format!(
            "{DEVICE_ENV}={self} needs a build with the `cuda` feature (cargo build --release -p rankfit-cli --features cuda)"
        ))
    }
}

/// Keeps memory that training frees in the process for its next allocation, instead of
/// handing it back to the kernel: called once before training on the CPU.
///
/// A training step allocates and frees the same large tensors every step (activations,
/// gradients, logits: up to ~800 MB each on SmolLM2). glibc serves every allocation above its
/// mmap threshold (at most 32 MiB) with a fresh `mmap` and unmaps it on free, so each step
/// page-faults every such tensor in again and the kernel zeroes every page: 20% of the CPU
/// time of a SmolLM2 step was `clear_page_erms` (BENCHMARKS.md, "Copies and page faults").
/// With `mmap` off for the heap (`M_MMAP_MAX = 0`) and no trimming of its top, freed blocks
/// are reused: 1.3-1.5x faster steps at the same peak RSS. The price is that
/// a worker's resident memory stays near its largest run's peak between runs.
/// No-op on other platforms (their allocators differ; not measured).
pub fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only sets allocator parameters; it is called once, before training
        // allocates, and glibc serialises it against concurrent allocation.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            // glibc reads the threshold as a size_t: -1 is SIZE_MAX, never trim. (i32::MAX
            // was not enough: a SmolLM2 step at batch 8 frees more than 2 GiB at once, and
            // trimming it cost 5.7 million page faults per step.)
            libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        }
    });
}

/// The NVIDIA driver's control node (Linux) or the WSL GPU node.
fn nvidia_driver_visible() -> bool {
    ["/dev/nvidiactl", "/dev/dxg"].iter().any(|p| std::path::Path::new(p).exists())
}

impl FromStr for ComputeDevice {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| TrainError::Config(format!("{DEVICE_ENV}={s:?}: expected cpu, cuda or cuda:N"))),
        }
    }
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_device_names() {
        assert_eq!("cpu".parse::<ComputeDevice>().unwrap(), ComputeDevice::Cpu);
        assert_eq!(" CUDA ".parse::<ComputeDevice>().unwrap(), ComputeDevice::Cuda(0));
        assert_eq!("cuda:3".parse::<ComputeDevice>().unwrap(), ComputeDevice::Cuda(3));
        assert_eq!(ComputeDevice::Cuda(3).to_string(), "cuda:3");
        for bad in ["tpu", "cuda:", "cuda:x", "cuda:-1"] {
            let err = bad.parse::<ComputeDevice>().unwrap_err().to_string();
            assert!(err.contains("expected cpu, cuda or cuda:N"), "{bad}: {err}");
        }
    }

    #[test]
    fn cuda_needs_the_feature() {
        assert_eq!(ComputeDevice::Cpu.check_available().unwrap(), ComputeDevice::Cpu);
        let gpu = ComputeDevice::Cuda(0).check_available();
        assert_eq!(gpu.is_ok(), cfg!(feature = "cuda") && nvidia_driver_visible(), "{gpu:?}");
        if cfg!(feature = "cuda") && !nvidia_driver_visible() {
            assert!(gpu.unwrap_err().to_string().contains("no NVIDIA driver is visible"));
        }
    }
}
