//! rankfit's metrics against scikit-learn, SciPy, rouge-score and NLTK, on the values in
//! tests/fixtures/metrics.json (written by tools/reference/metrics/make_fixtures.py).

use rankfit_domain::metrics::{accuracy, f1_binary, f1_macro, matthews_corrcoef, mse, pearson, porter, spearman, RougeScore, RougeScorer};
use serde_json::Value;

fn fixtures() -> Value {
    serde_json::from_str(include_str!("fixtures/metrics.json")).expect("metrics.json is valid JSON")
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn close(name: &str, case: usize, got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol, "{name}, case {case}: got {got}, reference {want}");
}

#[test]
fn classification_matches_sklearn() {
    let f = fixtures();
    let cases = f["classification"].as_array().unwrap();
    assert!(cases.len() >= 10);
    let mut binary = 0;
    for (i, c) in cases.iter().enumerate() {
        let (y, p) = (usizes(&c["references"]), usizes(&c["predictions"]));
        close("accuracy", i, accuracy(&y, &p).unwrap(), c["accuracy"].as_f64().unwrap(), 1e-9);
        close("f1_macro", i, f1_macro(&y, &p).unwrap(), c["f1_macro"].as_f64().unwrap(), 1e-9);
        close("mcc", i, matthews_corrcoef(&y, &p).unwrap(), c["mcc"].as_f64().unwrap(), 1e-9);
        if let Some(want) = c["f1_binary"].as_f64() {
            close("f1_binary", i, f1_binary(&y, &p).unwrap(), want, 1e-9);
            binary += 1;
        }
    }
    assert!(binary >= 10);
}

#[test]
fn regression_matches_scipy_and_sklearn() {
    let f = fixtures();
    let cases = f["regression"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for (i, c) in cases.iter().enumerate() {
        let (x, y) = (floats(&c["references"]), floats(&c["predictions"]));
        close("pearson", i, pearson(&x, &y).unwrap(), c["pearson"].as_f64().unwrap(), 1e-9);
        close("spearman", i, spearman(&x, &y).unwrap(), c["spearman"].as_f64().unwrap(), 1e-9);
        close("mse", i, mse(&x, &y).unwrap(), c["mse"].as_f64().unwrap(), 1e-9 * c["mse"].as_f64().unwrap().max(1.0));
    }
}

#[test]
fn porter_matches_nltk() {
    let f = fixtures();
    let stems = f["porter"].as_object().unwrap();
    assert!(stems.len() > 1000);
    let wrong: Vec<String> = stems
        .iter()
        .filter_map(|(w, s)| {
            let got = porter::stem(w);
            (got != s.as_str().unwrap()).then(|| format!("{w}: got {got}, nltk {s}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{} of {} stems differ: {:#?}", wrong.len(), stems.len(), &wrong[..wrong.len().min(30)]);
}

#[test]
fn rouge_matches_rouge_score() {
    let f = fixtures();
    let cases = f["rouge"].as_array().unwrap();
    assert!(cases.len() >= 25);
    let mut stemmed = RougeScorer::new(true);
    let mut plain = RougeScorer::new(false);
    for (i, c) in cases.iter().enumerate() {
        let scorer = if c["use_stemmer"].as_bool().unwrap() { &mut stemmed } else { &mut plain };
        let s = scorer.score(c["reference"].as_str().unwrap(), c["prediction"].as_str().unwrap());
        assert_eq!(s.stemmed, c["use_stemmer"].as_bool().unwrap());
        for (name, got) in [("rouge1", s.rouge1), ("rouge2", s.rouge2), ("rougeL", s.rouge_l), ("rougeLsum", s.rouge_lsum)] {
            let want = &c[name];
            let check = |part: &str, g: f64| {
                let w = want[part].as_f64().unwrap();
                assert!(
                    (g - w).abs() <= 1e-6,
                    "{name}.{part}, case {i} (stemmer {}): got {g}, rouge-score {w}\nreference: {:?}\nprediction: {:?}",
                    c["use_stemmer"],
                    c["reference"],
                    c["prediction"]
                );
            };
            let RougeScore { precision, recall, fmeasure } = got;
            check("precision", precision);
            check("recall", recall);
            check("fmeasure", fmeasure);
        }
    }
}
