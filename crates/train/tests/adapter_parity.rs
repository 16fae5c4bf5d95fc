//! Adapters: zero-initialised ones leave the logits unchanged, and LoRA/AdaLoRA adapters
//! saved by PEFT give PEFT's logits here (fixtures from tools/reference/peft_adapters.py).

mod common;

use common::{assert_close, fixture, minilm, B};
use rand::SeedableRng;
use rankfit_train::adapters::{AdapterKind, AdapterSpec, Adapters};
use rankfit_train::export::load_peft;
use rankfit_train::model::bert::{Inputs, NoHook};
use rankfit_train::model::head::init_head;
use rankfit_train::model::load_minilm;
use rankfit_train::params::ParamStore;
use rankfit_train::tokenize::collate;

const TARGETS: [&str; 6] = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"];

#[test]
fn zero_initialised_adapters_leave_logits_unchanged() {
    let dev = Default::default();
    let (bert, tok) = load_minilm::<B>(&minilm(), &dev).unwrap();
    let encs = [
        tok.encode("A quiet evening by the lake.", None, 64).unwrap(),
        tok.encode("Is it raining?", Some("The sky is clear."), 64).unwrap(),
    ];
    let batch = collate(&encs.iter().collect::<Vec<_>>(), tok.pad_id());
    let inp = Inputs::new(&batch, &dev);
    let targets: Vec<String> = TARGETS.iter().map(|s| s.to_string()).collect();
    for kind in [AdapterKind::Lora, AdapterKind::Svd] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut store = ParamStore::new();
        let head = init_head(&mut store, &bert.pooler, 3, true, &mut rng, &dev);
        let adapters = Adapters::build_bert(
            &bert.config,
            &targets,
            AdapterSpec { kind, rank: 4, alpha: 16.0, dropout: 0.0 },
            &mut store,
            &mut rng,
            &dev,
        )
        .unwrap();
        assert_eq!(adapters.list.len(), 36);
        let params = store.values();
        let plain = bert.logits(&inp, &params, &head, &NoHook, false).into_data().to_vec::<f32>().unwrap();
        let adapted = bert.logits(&inp, &params, &head, &adapters, false).into_data().to_vec::<f32>().unwrap();
        assert_eq!(plain, adapted, "{kind:?}");
    }
}

#[test]
fn peft_lora_and_adalora_logits_match() {
    let dev = Default::default();
    let (bert, tok) = load_minilm::<B>(&minilm(), &dev).unwrap();
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("peft_logits.json")).unwrap()).unwrap();
    for (dir, key, kind) in [("peft_lora", "lora_logits", AdapterKind::Lora), ("peft_adalora", "adalora_logits", AdapterKind::Svd)] {
        let loaded = load_peft::<B>(&fixture(dir), &bert, &dev).unwrap();
        assert_eq!(loaded.adapters.list.len(), 36);
        assert!(loaded.adapters.list.iter().all(|a| a.kind == kind));
        if kind == AdapterKind::Svd {
            // The fixture pruned one component of every 2nd module and two of every 3rd.
            let ranks: Vec<usize> = loaded.adapters.list.iter().map(|a| a.rank).collect();
            assert!(ranks.contains(&1) && ranks.contains(&2) && ranks.contains(&3), "{ranks:?}");
        }
        let params = loaded.store.values();
        for (text, want) in fx["texts"].as_array().unwrap().iter().zip(fx[key].as_array().unwrap()) {
            let a = text[0].as_str().unwrap();
            let enc = tok.encode(a, text[1].as_str(), 128).unwrap();
            let batch = collate(&[&enc], tok.pad_id());
            let got = bert
                .logits(&Inputs::new(&batch, &dev), &params, &loaded.head, &loaded.adapters, false)
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            let want: Vec<f64> = want.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_close(&got, &want, 1e-4, &format!("{dir}: {a}"));
        }
    }
}
