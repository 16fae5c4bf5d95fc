//! Text generation with a [`Llama`] and its KV cache: greedy decoding and beam search.
//!
//! Beam search follows transformers' `generate(num_beams=k, early_stopping=True)`: each step
//! keeps the `2k` best continuations of the live beams by summed log-probability, a stop
//! token among the first `k` of them finishes a hypothesis scored `sum_logprob /
//! generated_len^length_penalty` (the stop token counted), the first `k` others become the
//! next live beams, and the search ends once `k` hypotheses are finished or after
//! `max_new_tokens` (live beams then finish as they are).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::llama::{AdapterHook, DecoderInputs, KvCache, Llama, LlamaSite};
use crate::TrainError;

/// Limits of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Tokens that end a sequence (eos, `<|im_end|>`, ...): see `LlamaTokenizer::stop_ids`.
    pub stop_ids: Vec<u32>,
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New tokens, without the stop token.
    pub tokens: Vec<u32>,
    /// The stop token that ended it, or None when `max_new_tokens` did.
    pub stop: Option<u32>,
    /// Sum of the log-probabilities of the new tokens (the stop token included).
    pub logprob: f64,
    /// `logprob / n^length_penalty`, `n` = new tokens incl. the stop token (greedy: penalty 1).
    pub score: f64,
}

/// `log_softmax` of a logits row, in f64.
fn log_softmax_row(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    row.iter().map(|&v| v as f64 - lse).collect()
}

/// Rows of a `[n, vocab]` logits tensor on the host.
fn host_rows<B: Backend>(logits: Tensor<B, 2>) -> Result<Vec<Vec<f32>>, TrainError> {
    let [_, v] = logits.dims();
    let data = logits.into_data().convert::<f32>().to_vec::<f32>().map_err(TrainError::tensor("logits"))?;
    Ok(data.chunks_exact(v).map(<[f32]>::to_vec).collect())
}

fn check_prompt<B: Backend>(model: &Llama<B>, prompt: &[u32]) -> Result<(), TrainError> {
    if prompt.is_empty() {
        return Err(TrainError::Config("generation needs a non-empty prompt".into()));
    }
    let vocab = model.config.vocab_size;
    if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
        return Err(TrainError::Config(format!("prompt token {bad} is outside the vocabulary ({vocab})")));
    }
    Ok(())
}

/// Greedy decoding (argmax; ties go to the lowest id, as `torch.argmax`).
pub fn greedy<B: Backend>(
    model: &Llama<B>,
    prompt: &[u32],
    opts: &GenerateOptions,
    params: &[Tensor<B, 2>],
    hook: &dyn AdapterHook<B, LlamaSite>,
    device: &B::Device,
) -> Result<Generation, TrainError> {
    check_prompt(model, prompt)?;
    let mut cache = model.new_cache();
    let mut out = Generation { tokens: Vec::new(), stop: None, logprob: 0.0, score: 0.0 };
    let mut feed = prompt.to_vec();
    for _ in 0..opts.max_new_tokens {
        let logits = model.next_token_logits(&DecoderInputs::single(&feed, device), &mut cache, params, hook);
        let row = host_rows(logits)?.remove(0);
        let (best, _) = row.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc });
        out.logprob += log_softmax_row(&row)[best];
        let tok = best as u32;
        if opts.stop_ids.contains(&tok) {
            out.stop = Some(tok);
            break;
        }
        out.tokens.push(tok);
        feed = vec![tok];
    }
    let n = out.tokens.len() + usize::from(out.stop.is_some());
    out.score = if n == 0 { 0.0 } else { out.logprob / n as f64 };
    Ok(out)
}

/// Beam-search settings (transformers' `num_beams`, `length_penalty`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamOptions {
    pub beams: usize,
    /// Exponent of the length normalisation; 1.0 = mean log-probability per token.
    pub length_penalty: f64,
}

impl Default for BeamOptions {
    fn default() -> Self {
        Self { beams: 4, length_penalty: 1.0 }
    }
}

struct Beam {
    tokens: Vec<u32>,
    logprob: f64,
}

/// Beam search with `beams` beams; returns up to `beams` finished hypotheses, best first.
pub fn beam_search<B: Backend>(
    model: &Llama<B>,
    prompt: &[u32],
    beam: BeamOptions,
    opts: &GenerateOptions,
    params: &[Tensor<B, 2>],
    hook: &dyn AdapterHook<B, LlamaSite>,
    device: &B::Device,
) -> Result<Vec<Generation>, TrainError> {
    check_prompt(model, prompt)?;
    let BeamOptions { beams, length_penalty } = beam;
    if beams == 0 {
        return Err(TrainError::Config("beam search needs at least one beam".into()));
    }
    let norm = |logprob: f64, n: usize| if n == 0 { 0.0 } else { logprob / (n as f64).powf(length_penalty) };
    let mut cache: KvCache<B> = model.new_cache();
    let mut live = vec![Beam { tokens: Vec::new(), logprob: 0.0 }];
    let mut finished: Vec<Generation> = Vec::new();
    let mut inputs = DecoderInputs::single(prompt, device);
    for _ in 0..opts.max_new_tokens {
        let rows = host_rows(model.next_token_logits(&inputs, &mut cache, params, hook))?;
        // The 2k best (beam, token) continuations by summed log-probability.
        let want = 2 * beams;
        let mut cands: Vec<(f64, usize, u32)> = Vec::with_capacity(want * live.len());
        for (b, row) in rows.iter().enumerate() {
            let lp = log_softmax_row(row);
            let mut idx: Vec<usize> = (0..lp.len()).collect();
            let k = want.min(idx.len());
            idx.select_nth_unstable_by(k - 1, |&x, &y| lp[y].total_cmp(&lp[x]).then(x.cmp(&y)));
            cands.extend(idx[..k].iter().map(|&t| (live[b].logprob + lp[t], b, t as u32)));
        }
        cands.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        cands.truncate(want);
        let mut next = Vec::with_capacity(beams);
        for (rank, &(logprob, b, tok)) in cands.iter().enumerate() {
            if opts.stop_ids.contains(&tok) {
                if rank < beams {
                    let n = live[b].tokens.len() + 1;
                    finished.push(Generation { tokens: live[b].tokens.clone(), stop: Some(tok), logprob, score: norm(logprob, n) });
                }
                continue;
            }
            let mut tokens = live[b].tokens.clone();
            tokens.push(tok);
            next.push((b, Beam { tokens, logprob }));
            if next.len() == beams {
                break;
            }
        }
        if finished.len() >= beams || next.is_empty() {
            live.clear();
            break;
        }
        let parents: Vec<usize> = next.iter().map(|(b, _)| *b).collect();
        cache.select_rows(&parents, device);
        let feed: Vec<u32> = next.iter().map(|(_, beam)| *beam.tokens.last().expect("a new token")).collect();
        inputs = DecoderInputs::new(&feed, None, feed.len(), 1, device);
        live = next.into_iter().map(|(_, beam)| beam).collect();
    }
    for beam in live {
        let n = beam.tokens.len();
        finished.push(Generation { score: norm(beam.logprob, n), tokens: beam.tokens, stop: None, logprob: beam.logprob });
    }
    finished.sort_by(|a, b| b.score.total_cmp(&a.score));
    finished.truncate(beams);
    Ok(finished)
}
