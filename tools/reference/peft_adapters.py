"""PEFT reference for rankfit's adapters: saves a LoRA and an AdaLoRA adapter (with a
pruned rank pattern) for all-MiniLM-L6-v2 + a classification head, and the logits PEFT
computes with them, as fixtures for crates/train/tests/adapter_parity.rs.

    pip install torch transformers peft safetensors
    python3 tools/reference/peft_adapters.py --model rankfit-data/assets/models/all-minilm-l6-v2
"""
import argparse
import json
import os
import shutil

import torch
from peft import AdaLoraConfig, LoraConfig, PeftModel, get_peft_model
from transformers import AutoTokenizer, BertForSequenceClassification

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "train", "tests", "fixtures")
TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
TEXTS = [
    ["A man is playing a guitar.", "Someone plays an instrument."],
    ["The cat sat on the mat.", None],
    ["Stocks fell sharply after the announcement of new tariffs.", None],
]


def base(model_dir, seed):
    torch.manual_seed(seed)
    m = BertForSequenceClassification.from_pretrained(model_dir, num_labels=2, attn_implementation="eager")
    with torch.no_grad():
        m.classifier.weight.normal_(0.0, 0.5)
        m.classifier.bias.normal_(0.0, 0.5)
    return m


def logits(model, tok):
    model.eval()
    out = []
    with torch.no_grad():
        for a, b in TEXTS:
            enc = tok(a, b, truncation=True, max_length=128, return_tensors="pt")
            out.append(model(**enc).logits[0].tolist())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="rankfit-data/assets/models/all-minilm-l6-v2")
    ap.add_argument("--out", default=FIXTURES)
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    result = {"texts": TEXTS}

    # LoRA: r=2, alpha=8; B made non-zero so the adapter changes the output.
    lora = get_peft_model(base(args.model, 7), LoraConfig(r=2, lora_alpha=8, target_modules=TARGETS, task_type="SEQ_CLS"))
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.05)
    result["lora_logits"] = logits(lora, tok)
    out_dir = os.path.join(args.out, "peft_lora")
    shutil.rmtree(out_dir, ignore_errors=True)
    lora.save_pretrained(out_dir)

    # AdaLoRA: init_r=3, target_r=2; random E; a rank pattern pruning some components.
    cfg = AdaLoraConfig(init_r=3, target_r=2, lora_alpha=8, total_step=100, tinit=10, tfinal=20, target_modules=TARGETS, task_type="SEQ_CLS")
    ada = get_peft_model(base(args.model, 11), cfg)
    pattern = {}
    with torch.no_grad():
        for i, (n, p) in enumerate((n, p) for n, p in ada.named_parameters() if "lora_E" in n):
            p.normal_(0.0, 0.5)
            keep = [True, True, True]
            if i % 3 == 1:
                keep = [True, False, True]
            elif i % 3 == 2:
                keep = [False, False, True]
            p[~torch.tensor(keep)] = 0.0
            key = n.replace("base_model.model.", "", 1)
            pattern[key] = keep
    ada.peft_config["default"].rank_pattern = pattern
    result["adalora_logits"] = logits(ada, tok)
    out_dir = os.path.join(args.out, "peft_adalora")
    shutil.rmtree(out_dir, ignore_errors=True)
    ada.save_pretrained(out_dir)

    # PEFT itself reloads both with the same logits.
    for name, key, seed in [("peft_lora", "lora_logits", 7), ("peft_adalora", "adalora_logits", 11)]:
        m = BertForSequenceClassification.from_pretrained(args.model, num_labels=2, attn_implementation="eager")
        m = PeftModel.from_pretrained(m, os.path.join(args.out, name))
        got = logits(m, tok)
        diff = max(abs(x - y) for r1, r2 in zip(got, result[key]) for x, y in zip(r1, r2))
        assert diff < 1e-5, (name, diff)
    with open(os.path.join(args.out, "peft_logits.json"), "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
