//! WordPiece tokenization from `tokenizer.json` and dynamic-padding batches.
//!
//! The file's own truncation/padding settings are switched off: texts are encoded without
//! special tokens, truncated here the way `transformers` does with `truncation=True`
//! (longest-first, one token at a time, the second text losing ties), and wrapped as
//! `[CLS] a [SEP]` / `[CLS] a [SEP] b [SEP]` with token types 0/1.

use std::path::Path;

use crate::TrainError;

/// One encoded example (no padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

/// A padded batch: row-major `[batch, seq]` arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub batch: usize,
    pub seq: usize,
    pub ids: Vec<i64>,
    pub type_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<f32>,
}

pub struct BertTokenizer {
    inner: tokenizers::Tokenizer,
    cls: u32,
    sep: u32,
    pad: u32,
}

impl BertTokenizer {
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| TrainError::Model(path.display().to_string(), format!("reading tokenizer.json: {e}")))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| TrainError::Model(path.display().to_string(), format!("disabling truncation: {e}")))?;
        let id = |t: &str| {
            inner.token_to_id(t).ok_or_else(|| TrainError::Model(path.display().to_string(), format!("tokenizer has no {t} token")))
        };
        Ok(Self { cls: id("[CLS]")?, sep: id("[SEP]")?, pad: id("[PAD]")?, inner })
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    fn word_pieces(&self, text: &str) -> Result<Vec<u32>, TrainError> {
        let enc = self.inner.encode(text, false).map_err(|e| TrainError::Data(format!("tokenizing {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes one text or a text pair, truncated to `max_len` tokens including specials.
    pub fn encode(&self, a: &str, b: Option<&str>, max_len: usize) -> Result<Encoded, TrainError> {
        let mut ids_a = self.word_pieces(a)?;
        let mut ids_b = match b {
            Some(b) => Some(self.word_pieces(b)?),
            None => None,
        };
        let specials = if ids_b.is_some() { 3 } else { 2 };
        let room = max_len.saturating_sub(specials);
        match ids_b.as_mut() {
            None => ids_a.truncate(room),
            Some(ids_b) => {
                while ids_a.len() + ids_b.len() > room {
                    if ids_a.len() > ids_b.len() {
                        ids_a.pop();
                    } else {
                        ids_b.pop();
                    }
                }
            }
        }
        let mut ids = Vec::with_capacity(ids_a.len() + ids_b.as_ref().map_or(0, Vec::len) + specials);
        ids.push(self.cls);
        ids.extend_from_slice(&ids_a);
        ids.push(self.sep);
        let mut type_ids = vec![0; ids.len()];
        if let Some(ids_b) = ids_b {
            ids.extend_from_slice(&ids_b);
            ids.push(self.sep);
            type_ids.resize(ids.len(), 1);
        }
        Ok(Encoded { ids, type_ids })
    }
}

/// Pads `items` to the longest one (dynamic padding).
pub fn collate(items: &[&Encoded], pad_id: u32) -> Batch {
    let batch = items.len();
    let seq = items.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let mut ids = vec![i64::from(pad_id); batch * seq];
    let mut type_ids = vec![0i64; batch * seq];
    let mut mask = vec![0f32; batch * seq];
    for (row, e) in items.iter().enumerate() {
        for (j, (&id, &t)) in e.ids.iter().zip(&e.type_ids).enumerate() {
            ids[row * seq + j] = i64::from(id);
            type_ids[row * seq + j] = i64::from(t);
            mask[row * seq + j] = 1.0;
        }
    }
    Batch { batch, seq, ids, type_ids, mask }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collate_pads_to_longest() {
        let a = Encoded { ids: vec![101, 5, 102], type_ids: vec![0, 0, 0] };
        let b = Encoded { ids: vec![101, 102], type_ids: vec![0, 0] };
        let batch = collate(&[&a, &b], 0);
        assert_eq!((batch.batch, batch.seq), (2, 3));
        assert_eq!(batch.ids, vec![101, 5, 102, 101, 102, 0]);
        assert_eq!(batch.mask, vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
    }
}
