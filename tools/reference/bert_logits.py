"""Reference logits of all-MiniLM-L6-v2 + a seeded classification head, from PyTorch/transformers.

Writes crates/train/tests/fixtures/bert_head.safetensors (the head weights) and
crates/train/tests/fixtures/bert_logits.json (token ids and logits) for
crates/train/tests/bert_parity.rs.

    pip install torch transformers safetensors
    python3 tools/reference/bert_logits.py --model rankfit-data/assets/models/all-minilm-l6-v2
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertForSequenceClassification

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "train", "tests", "fixtures")

CASES = [
    {"a": "The movie was surprisingly good, and the acting was superb!", "b": None, "max_len": 128},
    {"a": "I would not recommend this restaurant to anyone.", "b": None, "max_len": 128},
    {"a": "A man is playing a guitar.", "b": "Someone plays an instrument on stage.", "max_len": 128},
    {"a": "Tokenization of unusual words: hyperparameterization, naïve café, 42km/h.", "b": None, "max_len": 128},
    # Truncation: longest-first over a pair, and a single text cut to max_len.
    {"a": "the quick brown fox jumps over the lazy dog " * 3, "b": "a short second sentence", "max_len": 16},
    {"a": "one two three four five six seven eight nine ten eleven twelve", "b": None, "max_len": 8},
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="rankfit-data/assets/models/all-minilm-l6-v2")
    ap.add_argument("--out", default=FIXTURES)
    args = ap.parse_args()
    torch.manual_seed(1234)
    tok = AutoTokenizer.from_pretrained(args.model)
    out = {"cases": []}
    heads = {}
    for num_labels in (3, 1):
        model = BertForSequenceClassification.from_pretrained(args.model, num_labels=num_labels, attn_implementation="eager")
        model.eval()
        with torch.no_grad():
            # A larger-than-default head so the logits vary visibly across inputs.
            model.classifier.weight.normal_(0.0, 0.5)
            model.classifier.bias.normal_(0.0, 0.5)
        heads[f"classifier{num_labels}.weight"] = model.classifier.weight.detach().clone().contiguous()
        heads[f"classifier{num_labels}.bias"] = model.classifier.bias.detach().clone().contiguous()
        for i, case in enumerate(CASES):
            enc = tok(case["a"], case["b"], truncation=True, max_length=case["max_len"], return_tensors="pt")
            with torch.no_grad():
                logits = model(**enc).logits[0].tolist()
            if num_labels == 3:
                out["cases"].append({**case, "ids": enc["input_ids"][0].tolist(), "type_ids": enc["token_type_ids"][0].tolist(), "logits3": logits})
            else:
                out["cases"][i]["logits1"] = logits
        # One padded batch (all single texts of max_len 128) to check masking.
        singles = [c["a"] for c in CASES[:2]] + [CASES[3]["a"]]
        enc = tok(singles, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            out[f"batch_logits{num_labels}"] = model(**enc).logits.tolist()
    out["batch_texts"] = singles
    save_file(heads, os.path.join(args.out, "bert_head.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(args.out, "bert_logits.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
