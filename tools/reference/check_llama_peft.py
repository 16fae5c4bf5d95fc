"""Loads rankfit's CAUSAL_LM PEFT exports over the base Llama and compares logits.

    python3 tools/reference/check_llama_peft.py BASE_DIR EXPORTS_DIR [--tol 2e-3]

BASE_DIR is an HF checkpoint (config.json + model.safetensors, f32; rankfit writes the
dequantized SmolLM2 GGUF as one). EXPORTS_DIR holds one PEFT adapter directory per key of
rust_logits.json["logits"] and rust_logits.json itself: {"ids": [...], "rows": n,
"logits": {name: flat logits of the last n positions}}. Run by
crates/train/tests/decoder.rs (peft_loads_our_causal_lm_exports_with_matching_logits).
Prints {"max_abs_diff": {name: diff}, "tol": tol} and exits 1 when any diff exceeds tol.
"""
import argparse
import json
import os
import sys

import torch
from peft import PeftModel
from transformers import LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base_dir")
    ap.add_argument("exports_dir")
    ap.add_argument("--tol", type=float, default=2e-3)
    args = ap.parse_args()
    ref = json.load(open(os.path.join(args.exports_dir, "rust_logits.json")))
    ids = torch.tensor([ref["ids"]])
    rows = ref["rows"]
    report = {}
    for name, want in ref["logits"].items():
        base = LlamaForCausalLM.from_pretrained(args.base_dir, torch_dtype=torch.float32, attn_implementation="eager")
        model = PeftModel.from_pretrained(base, os.path.join(args.exports_dir, name)).eval()
        with torch.no_grad():
            got = model(input_ids=ids).logits[0, -rows:, :].reshape(-1)
        want = torch.tensor(want, dtype=torch.float32)
        report[name] = (got - want).abs().max().item()
    print(json.dumps({"max_abs_diff": report, "tol": args.tol}))
    sys.exit(0 if all(v <= args.tol for v in report.values()) else 1)


if __name__ == "__main__":
    main()
