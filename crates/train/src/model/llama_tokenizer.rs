//! Decoder tokenizer: the byte-level BPE stored in GGUF metadata (`tokenizer.ggml.model =
//! "gpt2"`), rebuilt as a `tokenizers::Tokenizer`, and the chat template rendered with
//! `minijinja` configured like transformers' `apply_chat_template` (jinja2 with
//! `trim_blocks` and `lstrip_blocks`).
//!
//! The BPE is set up as SmolLM2's `tokenizer.json` (and llama.cpp's `smollm` pre-tokenizer)
//! does: no normalizer; pre-tokenizer = individual digits, then GPT-2 byte-level regex
//! splitting without a prefix space; byte-level decoder. Tokens of type CONTROL (3) are
//! special added tokens (matched in raw text, dropped by `decode(.., true)`), USER_DEFINED
//! (4) are plain added tokens.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

use super::gguf::GgufFile;
use crate::TrainError;

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i128 = 3;
const TOKEN_TYPE_USER_DEFINED: i128 = 4;

/// End-of-turn markers of common chat formats, used as extra stop tokens when in the vocab.
const END_OF_TURN: [&str; 4] = ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>"];

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.to_string(), content: content.to_string() }
    }
}

/// Tokenizer, special ids and chat template of a decoder.
pub struct LlamaTokenizer {
    inner: Tokenizer,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    add_bos: bool,
    chat_template: Option<String>,
}

fn tok_err(source: &Path, msg: impl Into<String>) -> TrainError {
    TrainError::Model(source.display().to_string(), format!("tokenizer: {}", msg.into()))
}

impl LlamaTokenizer {
    /// Builds the tokenizer from a GGUF's `tokenizer.*` metadata (gpt2-style BPE only).
    pub fn from_gguf(g: &GgufFile) -> Result<Self, TrainError> {
        let path = g.path.as_path();
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(tok_err(path, format!("tokenizer.ggml.model {model:?} is not supported (byte-level BPE \"gpt2\" only)")));
        }
        let tokens = g.get_strings("tokenizer.ggml.tokens")?;
        let merges = g.get_strings("tokenizer.ggml.merges")?;
        let types: Vec<i128> = match g.get("tokenizer.ggml.token_type").and_then(|v| v.as_array()) {
            Some(a) => a.iter().map(|v| v.as_int().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(tok_err(path, "token_type and tokens differ in length"));
        }
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| tok_err(path, format!("merge {m:?} has no space")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .fuse_unk(false)
            .byte_fallback(false)
            .build()
            .map_err(|e| tok_err(path, format!("building BPE: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]))));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL)
            .map(|(tok, _)| AddedToken::from(tok.to_string(), true))
            .collect();
        let user: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == TOKEN_TYPE_USER_DEFINED)
            .map(|(tok, _)| AddedToken::from(tok.to_string(), false))
            .collect();
        inner.add_special_tokens(&special);
        inner.add_tokens(&user);
        let id = |k: &str| g.get(k).and_then(|v| v.as_int()).map(|v| v as u32);
        Ok(Self {
            inner,
            bos_id: id("tokenizer.ggml.bos_token_id"),
            eos_id: id("tokenizer.ggml.eos_token_id"),
            add_bos: g.get("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false),
            chat_template: g.get("tokenizer.chat_template").and_then(|v| v.as_str()).map(str::to_string),
        })
    }

    /// Loads an HF checkpoint's `tokenizer.json`, taking bos/eos, `add_bos_token` and the chat
    /// template from `tokenizer_config.json` when present.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, TrainError> {
        let file = dir.join("tokenizer.json");
        let mut inner = Tokenizer::from_file(&file).map_err(|e| tok_err(&file, format!("reading tokenizer.json: {e}")))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| tok_err(&file, e.to_string()))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: serde_json::Value = match std::fs::read_to_string(&cfg_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| tok_err(&cfg_path, e.to_string()))?,
            Err(_) => serde_json::Value::Null,
        };
        let token_id = |key: &str| {
            let v = cfg.get(key)?;
            let s = v.as_str().or_else(|| v.get("content").and_then(|c| c.as_str()))?;
            inner.token_to_id(s)
        };
        let template = match cfg.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            _ => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
        };
        Ok(Self {
            bos_id: token_id("bos_token"),
            eos_id: token_id("eos_token"),
            add_bos: cfg.get("add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false),
            chat_template: template,
            inner,
        })
    }

    /// Token ids of `text` (special-token strings in it map to their ids; no bos added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TrainError> {
        let enc = self.inner.encode(text, false).map_err(|e| TrainError::Data(format!("tokenizing {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// [`Self::encode`] with the bos token prepended when the model asks for it
    /// (`add_bos_token`; false for SmolLM2).
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, TrainError> {
        let mut ids = self.encode(text)?;
        if let (true, Some(bos)) = (self.add_bos, self.bos_id) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Text of `ids`; special tokens are dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TrainError> {
        self.inner.decode(ids, skip_special).map_err(|e| TrainError::Data(format!("decoding {} ids: {e}", ids.len())))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Ids that end a generation: eos plus the end-of-turn markers present in the vocab.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eos_id.into_iter().collect();
        for t in END_OF_TURN {
            if let Some(id) = self.inner.token_to_id(t) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    /// The raw chat template (jinja), if the model has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Renders the chat template like transformers' `apply_chat_template(messages,
    /// tokenize=False, add_generation_prompt=..)`.
    pub fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, TrainError> {
        let template = self.chat_template.as_deref().ok_or_else(|| TrainError::Config("this model has no chat template".into()))?;
        let tok = |id: Option<u32>| id.and_then(|i| self.inner.id_to_token(i)).unwrap_or_default();
        render_chat_template(template, messages, add_generation_prompt, &tok(self.bos_id), &tok(self.eos_id))
    }

    /// [`Self::render_chat`] then [`Self::encode`] (the template writes any bos itself).
    pub fn encode_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<Vec<u32>, TrainError> {
        self.encode(&self.render_chat(messages, add_generation_prompt)?)
    }
}

/// Renders a HF chat template (jinja2 semantics: `trim_blocks`, `lstrip_blocks`, a
/// `raise_exception` function) with `messages`, `add_generation_prompt`, `bos_token` and
/// `eos_token` in scope.
pub fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, TrainError> {
    let mut env = minijinja::Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| TrainError::Config(format!("chat template syntax: {e}")))?;
    env.set_syntax(syntax);
    env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env.add_template("chat", template).map_err(|e| TrainError::Config(format!("chat template does not parse: {e}")))?;
    let tmpl = env.get_template("chat").map_err(|e| TrainError::Config(format!("chat template: {e}")))?;
    tmpl.render(minijinja::context! {
        messages => messages.iter().map(message_value).collect::<minijinja::Value>(),
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    })
    .map_err(|e| TrainError::Config(format!("rendering the chat template: {e}")))
}

/// A message as the `{"role": .., "content": ..}` mapping templates index into.
fn message_value(m: &ChatMessage) -> minijinja::Value {
    minijinja::Value::from_pairs([
        ("role", minijinja::Value::from(m.role.as_str())),
        ("content", minijinja::Value::from(m.content.as_str())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_template_adds_default_system_prompt() {
        let out = render_chat_template(CHATML, &[ChatMessage::new("user", "Hi")], true, "", "").unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let msgs = [ChatMessage::new("system", "S"), ChatMessage::new("user", "U")];
        let out = render_chat_template(CHATML, &msgs, false, "", "").unwrap();
        assert_eq!(out, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
    }

    #[test]
    fn raise_exception_is_an_error() {
        let err = render_chat_template("{{ raise_exception('no') }}", &[], false, "", "").unwrap_err();
        assert!(err.to_string().contains("no"), "{err}");
    }
}
