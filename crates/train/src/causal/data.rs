//! Decoder examples: prompt + answer token ids with the prompt length, so the loss can be
//! taken on the answer tokens only.
//!
//! Prompts go through the model's chat template (SmolLM2-Instruct's ChatML) when it has
//! one, else through the domain's plain chat format ([`render_chat_prompt`]):
//!
//! - summarization: one user turn `Summarize the following text.\n\n{document}`;
//! - instruction (Alpaca): one user turn `{instruction}` or `{instruction}\n\n{input}`;
//! - instruction (chat upload): the uploaded turns, re-rendered with the model's template.
//!
//! The answer is the reference text followed by the end-of-turn token (eos). When prompt +
//! answer exceed `max_seq_len`, the answer is cut to at most half of it and the last user
//! turn's text is cut from its end (the instruction at the start of a summarization prompt
//! and the template's tokens stay).

use rankfit_domain::dataset::{parse_chat_prompt, render_chat_prompt, Example, ParsedDataset, Split, Target};
use rankfit_domain::task::TaskFamily;

use crate::model::llama_tokenizer::{ChatMessage, LlamaTokenizer};
use crate::TrainError;

/// The instruction heading every summarization prompt.
pub const SUMMARIZE_INSTRUCTION: &str = "Summarize the following text.";

/// Stands for the truncatable text while the template is rendered (a private-use char).
const MARKER: &str = "\u{E000}";

/// One tokenized example.
#[derive(Debug, Clone, PartialEq)]
pub struct CausalSample {
    /// Prompt then answer (the answer ends with the end-of-turn token).
    pub ids: Vec<u32>,
    /// Tokens of `ids` that belong to the prompt (no loss on them).
    pub prompt_len: usize,
    /// The reference answer, untruncated (what generations are scored against).
    pub reference: String,
}

impl CausalSample {
    pub fn prompt(&self) -> &[u32] {
        &self.ids[..self.prompt_len]
    }

    /// Answer tokens (the loss targets).
    pub fn answer_len(&self) -> usize {
        self.ids.len() - self.prompt_len
    }
}

/// A dataset ready for the decoder loop.
#[derive(Debug, Clone)]
pub struct CausalData {
    pub family: TaskFamily,
    pub train: Vec<CausalSample>,
    pub validation: Vec<CausalSample>,
    pub test: Vec<CausalSample>,
}

/// Turns examples into prompts and token ids for one tokenizer.
pub struct PromptBuilder<'a> {
    tok: &'a LlamaTokenizer,
    max_len: usize,
    end_of_answer: u32,
}

impl<'a> PromptBuilder<'a> {
    pub fn new(tok: &'a LlamaTokenizer, max_len: usize) -> Result<Self, TrainError> {
        let end_of_answer = tok
            .eos_id()
            .or_else(|| tok.stop_ids().first().copied())
            .ok_or_else(|| TrainError::Model("tokenizer".into(), "the tokenizer has no end-of-sequence token".into()))?;
        Ok(Self { tok, max_len, end_of_answer })
    }

    /// The token that ends every answer.
    pub fn end_of_answer(&self) -> u32 {
        self.end_of_answer
    }

    /// The conversation turns of an example (the last one is the user's, whose text may be cut).
    pub fn turns(family: TaskFamily, ex: &Example) -> Result<Vec<(String, String)>, TrainError> {
        match family {
            TaskFamily::Summarization => Ok(vec![("user".into(), format!("{SUMMARIZE_INSTRUCTION}\n\n{}", ex.text_a))]),
            TaskFamily::Instruction => {
                if ex.text_b.is_none() {
                    if let Some(turns) = parse_chat_prompt(&ex.text_a) {
                        return Ok(turns);
                    }
                }
                let content = match &ex.text_b {
                    Some(input) => format!("{}\n\n{input}", ex.text_a),
                    None => ex.text_a.clone(),
                };
                Ok(vec![("user".into(), content)])
            }
            other => Err(TrainError::Data(format!("task family {other} is trained with the encoder, not a decoder"))),
        }
    }

    /// Prompt text for `turns`, rendered with `last` in place of the last turn's content.
    fn render(&self, turns: &[(String, String)], last: &str) -> Result<String, TrainError> {
        let n = turns.len();
        if self.tok.chat_template().is_some() {
            let msgs: Vec<ChatMessage> =
                turns.iter().enumerate().map(|(i, (r, c))| ChatMessage::new(r, if i + 1 == n { last } else { c.as_str() })).collect();
            self.tok.render_chat(&msgs, true)
        } else {
            Ok(render_chat_prompt(turns.iter().enumerate().map(|(i, (r, c))| (r.as_str(), if i + 1 == n { last } else { c.as_str() }))))
        }
    }

    /// Prompt token ids of `turns`, the last turn's text cut so that the prompt has at most
    /// `budget` tokens (when the template leaves room for any of it).
    pub fn prompt_ids(&self, turns: &[(String, String)], budget: usize) -> Result<Vec<u32>, TrainError> {
        let last = turns.last().map(|t| t.1.as_str()).ok_or_else(|| TrainError::Data("an example has no prompt".into()))?;
        let with_marker = self.render(turns, MARKER)?;
        let parts: Vec<&str> = with_marker.split(MARKER).collect();
        let ids = if let [prefix, suffix] = parts[..] {
            let pre = self.tok.encode_prompt(prefix)?;
            let suf = self.tok.encode(suffix)?;
            let mut content = self.tok.encode(last)?;
            let room = budget.saturating_sub(pre.len() + suf.len());
            if pre.len() + suf.len() + content.len() > budget && room > 0 {
                content.truncate(room);
            }
            [pre, content, suf].concat()
        } else {
            // The template changes the content: encode it whole, keep the end.
            self.tok.encode_prompt(&self.render(turns, last)?)?
        };
        Ok(keep_tail(ids, budget))
    }

    /// Tokenizes one example.
    pub fn sample(&self, family: TaskFamily, ex: &Example) -> Result<CausalSample, TrainError> {
        let reference = match &ex.target {
            Target::Text(t) => t.clone(),
            other => return Err(TrainError::Data(format!("a {family} example needs a text target, found {other:?}"))),
        };
        let turns = Self::turns(family, ex)?;
        let mut answer = self.tok.encode(&reference)?;
        answer.truncate((self.max_len / 2).saturating_sub(1).max(1));
        answer.push(self.end_of_answer);
        let prompt = self.prompt_ids(&turns, self.max_len - answer.len())?;
        if prompt.is_empty() {
            return Err(TrainError::Config(format!("max_seq_len {} leaves no room for the prompt", self.max_len)));
        }
        let prompt_len = prompt.len();
        Ok(CausalSample { ids: [prompt, answer].concat(), prompt_len, reference })
    }
}

/// The last `n` ids (the generation prompt's end must survive any cut).
fn keep_tail(ids: Vec<u32>, n: usize) -> Vec<u32> {
    if ids.len() <= n {
        ids
    } else {
        ids[ids.len() - n..].to_vec()
    }
}

/// Tokenizes every split of a summarization or instruction dataset.
pub fn prepare(ds: &ParsedDataset, tok: &LlamaTokenizer, max_len: usize) -> Result<CausalData, TrainError> {
    if ds.task_family.is_encoder_task() {
        return Err(TrainError::Data(format!("task family {} needs the encoder (all-minilm-l6-v2), not a decoder", ds.task_family)));
    }
    if max_len < 8 {
        return Err(TrainError::Config(format!("max_seq_len {max_len} is too short for a decoder prompt")));
    }
    let builder = PromptBuilder::new(tok, max_len)?;
    let encode = |split: Split| ds.split(split).map(|e| builder.sample(ds.task_family, e)).collect::<Result<Vec<_>, _>>();
    let data = CausalData {
        family: ds.task_family,
        train: encode(Split::Train)?,
        validation: encode(Split::Validation)?,
        test: encode(Split::Test)?,
    };
    if data.train.is_empty() {
        return Err(TrainError::Data("the dataset has no training examples".into()));
    }
    Ok(data)
}

/// A right-padded batch with the positions whose next token is an answer token.
#[derive(Debug, Clone, PartialEq)]
pub struct CausalBatch {
    pub batch: usize,
    pub seq: usize,
    /// Row-major `[batch, seq]`, padded with `pad`.
    pub ids: Vec<u32>,
    /// Flat positions `row * seq + p` whose logits predict an answer token.
    pub positions: Vec<i64>,
    /// The answer token predicted at each of `positions`.
    pub targets: Vec<i64>,
}

impl CausalBatch {
    pub fn new(items: &[&CausalSample], pad: u32) -> Self {
        let seq = items.iter().map(|s| s.ids.len()).max().unwrap_or(1).max(1);
        let mut ids = vec![pad; items.len() * seq];
        let (mut positions, mut targets) = (Vec::new(), Vec::new());
        for (r, s) in items.iter().enumerate() {
            ids[r * seq..r * seq + s.ids.len()].copy_from_slice(&s.ids);
            for p in s.prompt_len.max(1) - 1..s.ids.len() - 1 {
                positions.push((r * seq + p) as i64);
                targets.push(s.ids[p + 1] as i64);
            }
        }
        Self { batch: items.len(), seq, ids, positions, targets }
    }

    /// Answer tokens in the batch (the loss's denominator).
    pub fn tokens(&self) -> usize {
        self.targets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_targets_are_the_answer_tokens_only() {
        let a = CausalSample { ids: vec![10, 11, 12, 20, 21, 2], prompt_len: 3, reference: "x".into() };
        let b = CausalSample { ids: vec![13, 22, 2], prompt_len: 1, reference: "y".into() };
        let batch = CausalBatch::new(&[&a, &b], 0);
        assert_eq!(batch.seq, 6);
        assert_eq!(batch.ids, vec![10, 11, 12, 20, 21, 2, 13, 22, 2, 0, 0, 0]);
        // Row 0 predicts 20, 21, 2 from positions 2, 3, 4; row 1 predicts 22, 2 from 0, 1.
        assert_eq!(batch.positions, vec![2, 3, 4, 6, 7]);
        assert_eq!(batch.targets, vec![20, 21, 2, 22, 2]);
        assert_eq!(batch.tokens(), a.answer_len() + b.answer_len());
    }

    #[test]
    fn keep_tail_keeps_the_end() {
        assert_eq!(keep_tail(vec![1, 2, 3, 4], 2), vec![3, 4]);
        assert_eq!(keep_tail(vec![1, 2], 5), vec![1, 2]);
    }
}
