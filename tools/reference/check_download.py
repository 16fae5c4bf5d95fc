"""Loads an encoder adapter downloaded with `rankfit runs download` in PEFT and checks that
it predicts what the run itself predicted on its test split (`rankfit runs predictions`).

    python3 tools/reference/check_download.py ADAPTER_DIR PREDICTIONS.jsonl \
        --model $RANKFIT_ASSETS_DIR/models/all-minilm-l6-v2 --num-labels 4 --max-len 32

Prints a JSON report; exits non-zero unless every prediction agrees (up to --min-agreement)
or PEFT cannot load the adapter.
"""
import argparse
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoTokenizer, BertForSequenceClassification


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("adapter_dir")
    ap.add_argument("predictions")
    ap.add_argument("--model", required=True)
    ap.add_argument("--num-labels", type=int, required=True, help="the size of the dataset's label set")
    ap.add_argument("--max-len", type=int, required=True)
    ap.add_argument("--min-agreement", type=float, default=1.0)
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.predictions) if line.strip()]
    texts = [r["input"] for r in rows]
    want = [r["predicted"]["index"] for r in rows]

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    base = BertForSequenceClassification.from_pretrained(args.model, num_labels=args.num_labels, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, args.adapter_dir).eval()
    got = []
    with torch.no_grad():
        for i in range(0, len(texts), 16):
            enc = tok(texts[i:i + 16], padding=True, truncation=True, max_length=args.max_len, return_tensors="pt")
            got += model(**enc).logits.argmax(-1).tolist()
    agree = sum(g == w for g, w in zip(got, want)) / max(len(want), 1)
    report = {"peft_type": model.peft_config["default"].peft_type.value, "examples": len(want), "agreement": agree,
              "disagreements": [i for i, (g, w) in enumerate(zip(got, want)) if g != w]}
    print(json.dumps(report))
    sys.exit(0 if agree >= args.min_agreement else 1)


if __name__ == "__main__":
    main()
