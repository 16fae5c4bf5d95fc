"""Checks that PEFT reads a rankfit adapter export the way rankfit computed it.

Loads the run's three downloads — `adapter_peft.zip` (the run's own method; AdaLoRA
exports carry PEFT's rank_pattern), `adapter_lora.zip` (the same adapter re-expressed as
plain LoRA with per-module ranks) and `adapter_merged.zip` (base weights with the adapter
merged in by rankfit) — and compares the classification logits of PEFT(base + adapter)
with transformers(merged) on a few sentences.

    python3 tools/reference/check_exports_agree.py <dir with the three zips> \
        --model ~/.cache/rankfit/assets/models/all-minilm-l6-v2

Prints the max |difference| per export; exits non-zero above --tol.
"""
import argparse
import json
import os
import sys
import tempfile
import zipfile

import torch
from peft import PeftModel
from transformers import AutoTokenizer, BertForSequenceClassification

TEXTS = [
    "a truly wonderful and moving film",
    "a dull, tiresome and far too long film",
    "The committee will meet again next Tuesday to discuss the budget.",
    "I am not sure whether I liked it or not.",
]


def unzip(path, into):
    with zipfile.ZipFile(path) as z:
        z.extractall(into)
    return into


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/rankfit/assets/models/all-minilm-l6-v2"))
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    merged_dir = unzip(os.path.join(args.run_dir, "adapter_merged.zip"), os.path.join(tmp, "merged"))
    tok = AutoTokenizer.from_pretrained(merged_dir)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    merged = BertForSequenceClassification.from_pretrained(merged_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        want = merged(**enc).logits
    report = {}
    for name in ["adapter_peft", "adapter_lora"]:
        path = os.path.join(args.run_dir, f"{name}.zip")
        if not os.path.exists(path):
            continue
        adapter = unzip(path, os.path.join(tmp, name))
        peft_type = json.load(open(os.path.join(adapter, "adapter_config.json")))["peft_type"]
        base = BertForSequenceClassification.from_pretrained(args.model, num_labels=want.shape[1], attn_implementation="eager")
        model = PeftModel.from_pretrained(base, adapter).eval()
        with torch.no_grad():
            got = model(**enc).logits
        report[f"{name} ({peft_type})"] = (got - want).abs().max().item()
    print(json.dumps({"max_abs_diff_vs_merged": report, "tol": args.tol}))
    sys.exit(0 if report and all(v <= args.tol for v in report.values()) else 1)


if __name__ == "__main__":
    main()
