#!/usr/bin/env python3
"""Reference fixtures for crates/train/tests/llama_parity.rs.

Writes crates/train/tests/fixtures/llama/:
  dequant.json           sha256 of the f32 (little-endian) dequantization by the `gguf` package of
                         whole tensors of the shipped SmolLM2 GGUF (one per block type it uses),
                         plus the first values for diagnostics;
  blocks.gguf            a small GGUF with random blocks of every type the Rust reader supports
  blocks.json            ... and their dequantization by `gguf.quants.dequantize`;
  logits.json            transformers' LlamaForCausalLM logits (weights dequantized by
                         transformers' own GGUF loader) for two prompts: top-50 of the last
                         position and strided columns of every position;
  last_row.safetensors   the full last-position logits row of prompt 0;
  tokenizer.json         transformers' token ids (tokenizer built from the GGUF metadata) for
                         several strings, and the rendered chat template;
  generate.json          transformers' greedy (and 3-beam) continuation of a chat prompt;
  tiny/                  a random tiny Llama (GQA, untied lm_head) saved as HF safetensors
                         (config.json + model.safetensors), with its logits.

Usage: python3 tools/reference/llama_logits.py PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf
Needs torch, transformers (5.x), gguf, safetensors, numpy.
"""

import hashlib
import json
import os
import sys

import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFWriter
from gguf.quants import dequantize
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "../../crates/train/tests/fixtures/llama")

TOKENIZER_CASES = [
    "Hello world",
    "The year 2024 had 366 days.",
    "naïve café — 日本語 🙂",
    "  two  spaces\n\nnewlines\tTab",
    "I'm sure they'll say it's fine; don't you?",
    "def f(x):\n    return x**2  # square",
    "<|im_start|>user\nHi<|im_end|>",
]

CHAT = [("user", "What is the capital of France?")]
CHAT2 = [("system", "You answer in one word."), ("user", "Name a colour."), ("assistant", "Blue"), ("user", "Another one?")]
PROMPTS = ["The capital of France is", None]  # None: the chat-templated CHAT
GEN_CHAT = [("user", "Write a short story about a robot who learns to paint.")]


def sha(arr):
    return hashlib.sha256(np.ascontiguousarray(arr, dtype="<f4").tobytes()).hexdigest()


def dequant_fixtures(path):
    r = GGUFReader(path)
    wanted = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.29.ffn_down.weight", "blk.0.attn_norm.weight", "output_norm.weight"]
    out = []
    for t in r.tensors:
        if t.name not in wanted:
            continue
        x = dequantize(t.data, t.tensor_type).astype(np.float32)
        out.append({"name": t.name, "type": t.tensor_type.name, "shape": list(x.shape), "sha256": sha(x), "first": x.reshape(-1)[:16].tolist()})
    return out


def random_blocks(rng, qtype, n_blocks):
    """Random raw blocks whose f16 scale fields are finite and moderate."""
    from gguf.constants import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)

    def f16(col):
        v = rng.uniform(-0.5, 0.5, size=n_blocks).astype(np.float16)
        raw[:, col : col + 2] = v.view(np.uint8).reshape(n_blocks, 2)

    if qtype in (T.Q4_0, T.Q5_0, T.Q8_0):
        f16(0)
    elif qtype in (T.Q4_1, T.Q5_1, T.Q4_K, T.Q5_K):
        f16(0)
        f16(2)
    elif qtype == T.Q6_K:
        f16(size - 2)
    return block, raw


def block_fixtures():
    rng = np.random.default_rng(7)
    path = os.path.join(OUT, "blocks.gguf")
    w = GGUFWriter(path, "llama")
    w.add_uint32("test.u32", 7)
    w.add_int64("test.i64", -5)
    w.add_float64("test.f64", 0.25)
    w.add_bool("test.bool", True)
    w.add_array("test.ints", [1, -2, 3])
    w.add_array("test.strs", ["a", "βγ", ""])
    w.add_array("test.nested", [[1, 2], [3]])
    expected = []
    rows = 2
    for qtype in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]:
        from gguf.constants import GGML_QUANT_SIZES

        block = GGML_QUANT_SIZES[qtype][0]
        _, raw = random_blocks(rng, qtype, rows * (256 // block))
        raw = raw.reshape(rows, -1)
        name = f"t.{qtype.name}"
        w.add_tensor(name, raw, raw_dtype=qtype)
        x = dequantize(raw, qtype).astype(np.float32)
        expected.append({"name": name, "type": qtype.name, "shape": list(x.shape), "values": x.reshape(-1).tolist()})
    f32 = rng.standard_normal((2, 5)).astype(np.float32)
    f16 = rng.standard_normal((4, 3)).astype(np.float16)
    w.add_tensor("t.F32", f32)
    w.add_tensor("t.F16", f16)
    expected.append({"name": "t.F32", "type": "F32", "shape": [2, 5], "values": f32.reshape(-1).tolist()})
    expected.append({"name": "t.F16", "type": "F16", "shape": [4, 3], "values": f16.astype(np.float32).reshape(-1).tolist()})
    bf = rng.standard_normal((2, 8)).astype(np.float32)
    bf_bits = (bf.view(np.uint32) >> 16).astype(np.uint16)
    w.add_tensor("t.BF16", bf_bits.view(np.uint8).reshape(2, 16), raw_dtype=T.BF16)
    expected.append({"name": "t.BF16", "type": "BF16", "shape": [2, 8], "values": dequantize(bf_bits.view(np.uint8).reshape(2, 16), T.BF16).astype(np.float32).reshape(-1).tolist()})
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected


def render_chat(tok, msgs):
    return tok.apply_chat_template([{"role": r, "content": c} for r, c in msgs], tokenize=False, add_generation_prompt=True)


def main():
    gguf_path = os.path.abspath(sys.argv[1])
    os.makedirs(OUT, exist_ok=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    with open(os.path.join(OUT, "dequant.json"), "w") as f:
        json.dump({"tensors": dequant_fixtures(gguf_path)}, f, indent=1)
    with open(os.path.join(OUT, "blocks.json"), "w") as f:
        json.dump({"tensors": block_fixtures()}, f)

    d, name = os.path.dirname(gguf_path), os.path.basename(gguf_path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    chats = [CHAT, CHAT2]
    tok_fx = {
        "cases": [{"text": s, "ids": tok(s, add_special_tokens=False)["input_ids"]} for s in TOKENIZER_CASES],
        "chats": [{"messages": m, "text": render_chat(tok, m), "ids": tok(render_chat(tok, m), add_special_tokens=False)["input_ids"]} for m in chats],
    }
    for c in tok_fx["cases"]:
        c["decoded"] = tok.decode(c["ids"])
    with open(os.path.join(OUT, "tokenizer.json"), "w") as f:
        json.dump(tok_fx, f, ensure_ascii=False, indent=1)

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    texts = [p if p is not None else render_chat(tok, CHAT) for p in PROMPTS]
    cols = list(range(0, model.config.vocab_size, 491))
    logit_fx = {"columns": cols, "prompts": []}
    with torch.no_grad():
        for i, text in enumerate(texts):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            logits = model(torch.tensor([ids])).logits[0].float().numpy()
            last = logits[-1]
            top = np.argsort(-last, kind="stable")[:50]
            logit_fx["prompts"].append(
                {"text": text, "ids": ids, "top_idx": top.tolist(), "top_val": last[top].tolist(), "cols": logits[:, cols].tolist()}
            )
            if i == 0:
                save_file({"logits": last.astype(np.float32)}, os.path.join(OUT, "last_row.safetensors"))
        with open(os.path.join(OUT, "logits.json"), "w") as f:
            json.dump(logit_fx, f)

        chat_ids = tok(render_chat(tok, GEN_CHAT), add_special_tokens=False)["input_ids"]
        inp = torch.tensor([chat_ids])
        greedy = model.generate(inp, max_new_tokens=20, do_sample=False, eos_token_id=[2], pad_token_id=2)[0, len(chat_ids) :]
        beam = model.generate(
            inp, max_new_tokens=20, do_sample=False, num_beams=3, length_penalty=1.0, early_stopping=True, eos_token_id=[2], pad_token_id=2
        )[0, len(chat_ids) :]
        with open(os.path.join(OUT, "generate.json"), "w") as f:
            json.dump({"messages": GEN_CHAT, "prompt_ids": chat_ids, "greedy": greedy.tolist(), "beam3": beam.tolist(), "greedy_text": tok.decode(greedy)}, f, indent=1)

        # A tiny random HF Llama (GQA, untied lm_head, rope_theta != 10000) in safetensors.
        torch.manual_seed(1)
        cfg = LlamaConfig(
            vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=5000.0, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, pad_token_id=0,
        )
        tiny = LlamaForCausalLM(cfg).eval()
        for p in tiny.parameters():
            p.data.normal_(0, 0.3)
        tdir = os.path.join(OUT, "tiny")
        tiny.save_pretrained(tdir, safe_serialization=True)
        ids = [1, 5, 17, 33, 2, 90, 64, 8]
        tl = tiny(torch.tensor([ids])).logits[0].numpy()
        with open(os.path.join(tdir, "logits.json"), "w") as f:
            json.dump({"ids": ids, "logits": tl.tolist()}, f)
        # The generation config is not needed by the Rust loader.
        gc = os.path.join(tdir, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)


if __name__ == "__main__":
    main()
