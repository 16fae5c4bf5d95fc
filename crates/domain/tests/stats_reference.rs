//! rankfit's statistics against SciPy and NumPy, on the values in tests/fixtures/stats.json
//! (written by tools/reference/stats/make_fixtures.py).

use rankfit_domain::stats::{
    bootstrap_interval, mean, paired_difference, sample_std, summarize, t_interval, t_quantile, IntervalMethod, SplitMix64,
};
use serde_json::Value;

fn fixtures() -> Value {
    serde_json::from_str(include_str!("fixtures/stats.json")).expect("stats.json is valid JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

/// `|got - want| <= rel * scale`.
fn close(what: &str, got: f64, want: f64, rel: f64, scale: f64) {
    assert!((got - want).abs() <= rel * scale, "{what}: got {got:e}, reference {want:e} (diff {:e})", (got - want).abs());
}

#[test]
fn splitmix64_matches_the_python_replica() {
    let fx = fixtures();
    let cases = fx["splitmix64"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for c in cases {
        let seed: u64 = c["seed"].as_str().unwrap().parse().unwrap();
        let mut r = SplitMix64::new(seed);
        for want in c["next_u64"].as_array().unwrap() {
            assert_eq!(r.next_u64(), want.as_str().unwrap().parse::<u64>().unwrap(), "seed {seed}");
        }
        let mut r = SplitMix64::new(seed);
        for pair in c["below"].as_array().unwrap() {
            let (n, want) = (pair[0].as_u64().unwrap() as usize, pair[1].as_u64().unwrap() as usize);
            assert_eq!(r.below(n), want, "seed {seed}, below({n})");
        }
    }
}

#[test]
fn t_quantile_matches_scipy_and_the_exact_value() {
    let fx = fixtures();
    let cases = fx["t_quantile"].as_array().unwrap();
    assert!(cases.len() > 1000);
    let (mut worst, mut scipy_checked, mut scipy_off) = (0f64, 0, Vec::new());
    for c in cases {
        // [p, df, exact (mpmath, 50 digits), scipy.stats.t.ppf]
        let (p, df, exact, scipy) = (f(&c[0]), f(&c[1]), f(&c[2]), f(&c[3]));
        let got = t_quantile(p, df);
        if exact == 0.0 {
            assert_eq!((got, scipy), (0.0, 0.0), "p {p}, df {df}");
            continue;
        }
        let rel = ((got - exact) / exact).abs();
        worst = worst.max(rel);
        assert!(rel <= 1e-12, "t_quantile({p}, {df}): got {got:e}, exact {exact:e}, relative error {rel:e}");
        // Against SciPy wherever SciPy itself is right to 1e-10 (it is not near p = 0.5 for
        // some df: Boost's quantile loses relative accuracy there).
        if ((scipy - exact) / exact).abs() <= 1e-10 {
            let rel = ((got - scipy) / scipy).abs();
            assert!(rel <= 1e-9, "t_quantile({p}, {df}): got {got:e}, scipy {scipy:e}, relative error {rel:e}");
            scipy_checked += 1;
        } else {
            scipy_off.push((p, df));
        }
    }
    assert!(scipy_checked > 1000);
    assert!(scipy_off.len() <= 20 && scipy_off.iter().all(|(p, _)| (p - 0.5).abs() <= 1e-4), "{scipy_off:?}");
    eprintln!("t_quantile: worst relative error {worst:e} over {} points", cases.len());
}

#[test]
fn t_interval_matches_scipy() {
    let fx = fixtures();
    let cases = fx["t_interval"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let mut sizes = std::collections::BTreeSet::new();
    for (i, c) in cases.iter().enumerate() {
        let xs = floats(&c["xs"]);
        sizes.insert(xs.len());
        let level = f(&c["level"]);
        let iv = t_interval(&xs, level).unwrap();
        let (m, s) = (mean(&xs).unwrap(), sample_std(&xs).unwrap());
        let scale = f(&c["mean"]).abs().max(f(&c["hi"]) - f(&c["lo"]));
        close(&format!("case {i} mean"), m, f(&c["mean"]), 1e-12, scale);
        close(&format!("case {i} std"), s, f(&c["std"]), 1e-12, f(&c["std"]));
        close(&format!("case {i} lo"), iv.lo, f(&c["lo"]), 1e-9, scale);
        close(&format!("case {i} hi"), iv.hi, f(&c["hi"]), 1e-9, scale);
        // The half-width itself, relative to itself.
        close(&format!("case {i} half-width"), iv.half_width(), (f(&c["hi"]) - f(&c["lo"])) / 2.0, 1e-9, iv.half_width());
        assert_eq!((iv.level, iv.method), (level, IntervalMethod::StudentT));
        let s = summarize(&xs, level).unwrap();
        assert_eq!((s.n, s.mean, s.std, s.interval), (xs.len(), m, Some(sample_std(&xs).unwrap()), Some(iv)));
    }
    assert!([2, 3, 5, 10].iter().all(|n| sizes.contains(n)), "{sizes:?}");
}

#[test]
fn paired_difference_matches_ttest_rel() {
    let fx = fixtures();
    let cases = fx["paired_difference"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for (i, c) in cases.iter().enumerate() {
        let (a, b) = (floats(&c["a"]), floats(&c["b"]));
        let d = paired_difference(&a, &b, f(&c["level"])).unwrap();
        let iv = d.interval.unwrap();
        let scale = f(&c["mean"]).abs().max(f(&c["hi"]) - f(&c["lo"]));
        assert_eq!(d.n, a.len());
        close(&format!("case {i} mean"), d.mean, f(&c["mean"]), 1e-12, scale);
        close(&format!("case {i} std"), d.std.unwrap(), f(&c["std"]), 1e-9, f(&c["std"]));
        close(&format!("case {i} lo"), iv.lo, f(&c["lo"]), 1e-9, scale);
        close(&format!("case {i} hi"), iv.hi, f(&c["hi"]), 1e-9, scale);
    }
}

fn check_bootstrap(name: &str, cases: &Value, n: usize, stat: impl Fn(&[usize]) -> f64) {
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 3);
    for c in cases {
        let (seed, resamples, level) = (c["seed"].as_u64().unwrap(), c["resamples"].as_u64().unwrap() as usize, f(&c["level"]));
        let iv = bootstrap_interval(n, resamples, seed, level, &stat).unwrap();
        let what = format!("{name}, seed {seed}, {resamples} resamples, level {level}");
        close(&format!("{what}: lo"), iv.lo, f(&c["lo"]), 1e-12, 1.0);
        close(&format!("{what}: hi"), iv.hi, f(&c["hi"]), 1e-12, 1.0);
        assert_eq!((iv.level, iv.method), (level, IntervalMethod::Bootstrap));
    }
}

#[test]
fn bootstrap_matches_numpy_on_the_same_indices() {
    let fx = fixtures();
    let b = &fx["bootstrap"];
    let x = floats(&b["mean_of_correct"]["x"]);
    assert!(x.len() >= 100 && x.iter().all(|&v| v == 0.0 || v == 1.0));
    check_bootstrap("mean", &b["mean_of_correct"]["cases"], x.len(), |idx| idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64);
    let (a, bb) = (floats(&b["paired_difference"]["a"]), floats(&b["paired_difference"]["b"]));
    assert_eq!(a.len(), bb.len());
    check_bootstrap("paired difference", &b["paired_difference"]["cases"], a.len(), |idx| {
        idx.iter().map(|&i| a[i] - bb[i]).sum::<f64>() / idx.len() as f64
    });
}
