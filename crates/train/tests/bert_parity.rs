//! MiniLM logits and tokenization equal PyTorch/transformers' (fixtures from
//! tools/reference/bert_logits.py).

mod common;

use burn::tensor::Tensor;
use common::{assert_close, fixture, minilm, B};
use rankfit_train::model::bert::{HeadParams, Inputs, NoHook};
use rankfit_train::model::load_minilm;
use rankfit_train::model::weights::{read_safetensors, HostTensor};
use rankfit_train::tokenize::collate;

fn head_params(labels: usize, bert_pooler: &(HostTensor, HostTensor)) -> (Vec<Tensor<B, 2>>, HeadParams) {
    let (heads, _) = read_safetensors(&fixture("bert_head.safetensors")).unwrap();
    let dev = Default::default();
    let w = &heads[&format!("classifier{labels}.weight")];
    let b = &heads[&format!("classifier{labels}.bias")];
    let h = bert_pooler.1.data.len();
    let mut store = rankfit_train::params::ParamStore::<B>::new();
    let head = HeadParams {
        pooler_w: store.push("pooler.w", bert_pooler.0.to_tensor(&dev), false, true),
        pooler_b: store.push("pooler.b", HostTensor::new(vec![1, h], bert_pooler.1.data.clone()).to_tensor(&dev), false, false),
        classifier_w: store.push("classifier.w", w.to_tensor(&dev), true, true),
        classifier_b: store.push("classifier.b", HostTensor::new(vec![1, labels], b.data.clone()).to_tensor(&dev), true, false),
    };
    (store.values(), head)
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn tokens_and_logits_match_transformers() {
    let files = minilm();
    let dev = Default::default();
    let (bert, tok) = load_minilm::<B>(&files, &dev).unwrap();
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("bert_logits.json")).unwrap()).unwrap();
    for labels in [3usize, 1] {
        let (params, head) = head_params(labels, &bert.pooler);
        for case in fx["cases"].as_array().unwrap() {
            let a = case["a"].as_str().unwrap();
            let b = case["b"].as_str();
            let max_len = case["max_len"].as_u64().unwrap() as usize;
            let enc = tok.encode(a, b, max_len).unwrap();
            let want_ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
            let want_types: Vec<u32> = case["type_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
            assert_eq!(enc.ids, want_ids, "ids of {a:?}");
            assert_eq!(enc.type_ids, want_types, "type ids of {a:?}");
            let batch = collate(&[&enc], tok.pad_id());
            let logits = bert.logits(&Inputs::new(&batch, &dev), &params, &head, &NoHook, false);
            let got = logits.into_data().to_vec::<f32>().unwrap();
            assert_close(&got, &floats(&case[format!("logits{labels}").as_str()]), 1e-4, a);
        }
        // A padded batch gives every row the logits it has alone.
        let texts: Vec<&str> = fx["batch_texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let encs: Vec<_> = texts.iter().map(|t| tok.encode(t, None, 128).unwrap()).collect();
        let batch = collate(&encs.iter().collect::<Vec<_>>(), tok.pad_id());
        let got = bert.logits(&Inputs::new(&batch, &dev), &params, &head, &NoHook, false).into_data().to_vec::<f32>().unwrap();
        let want: Vec<f64> = fx[format!("batch_logits{labels}").as_str()].as_array().unwrap().iter().flat_map(floats).collect();
        assert_close(&got, &want, 1e-4, "padded batch");
    }
}
