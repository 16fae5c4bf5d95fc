"""Loads a rankfit PEFT export with PEFT and compares its logits with rankfit's.

    RANKFIT_EXPORT_DIR=/tmp/rankfit-export cargo test -p rankfit-train --test training lora_learns
    python3 tools/reference/check_peft_load.py /tmp/rankfit-export --model rankfit-data/assets/models/all-minilm-l6-v2

The export dir holds adapter_peft/ (and adapter_merged/) plus rust_logits.json written by
that test. Exits non-zero when any logit differs by more than --tol.
"""
import argparse
import json
import os
import sys

import torch
from peft import PeftModel
from transformers import AutoTokenizer, BertForSequenceClassification


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("export_dir")
    ap.add_argument("--model", default="rankfit-data/assets/models/all-minilm-l6-v2")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    ref = json.load(open(os.path.join(args.export_dir, "rust_logits.json")))
    tok = AutoTokenizer.from_pretrained(args.model)
    want = torch.tensor(ref["adapter_peft"]).view(len(ref["texts"]), -1)
    enc = tok(ref["texts"], padding=True, truncation=True, max_length=ref["max_len"], return_tensors="pt")
    report = {}
    base = BertForSequenceClassification.from_pretrained(args.model, num_labels=want.shape[1], attn_implementation="eager")
    model = PeftModel.from_pretrained(base, os.path.join(args.export_dir, "adapter_peft")).eval()
    with torch.no_grad():
        report["adapter_peft"] = (model(**enc).logits - want).abs().max().item()
    # `adapter_merged/` as the training test copies it, `merged/` as a run's export dir has it.
    merged_dir = next((d for d in (os.path.join(args.export_dir, n) for n in ("adapter_merged", "merged")) if os.path.isdir(d)), None)
    if merged_dir:
        merged = BertForSequenceClassification.from_pretrained(merged_dir, attn_implementation="eager").eval()
        with torch.no_grad():
            report["adapter_merged"] = (merged(**enc).logits - want).abs().max().item()
    print(json.dumps({"max_abs_diff": report, "tol": args.tol}))
    sys.exit(0 if all(v <= args.tol for v in report.values()) else 1)


if __name__ == "__main__":
    main()
