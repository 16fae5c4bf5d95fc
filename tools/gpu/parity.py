#!/usr/bin/env python3
"""PyTorch + PEFT side of the device parity check: for every case `gpu_check parity` wrote
(MiniLM with a 2-class head and SmolLM2, each with a LoRA and an AdaLoRA adapter), loads the
same random checkpoint and the same adapter (rankfit's PEFT export) on the same device, runs
the same forward and backward, and compares:

  - logits (and SmolLM2's logits without the adapter),
  - the loss,
  - every adapter tensor's gradient (lora_A, lora_B, lora_E),

each as the largest absolute difference relative to the largest magnitude of PyTorch's value
(`rel`). Tolerances: --tol-logits (default 1e-4) for logits and loss, --tol-grads (default
1e-3) for gradients; on a GPU, TF32 is switched off so both sides multiply in full f32.

    python3 tools/gpu/parity.py --checkpoints CK --cases OUT/parity --device cuda > parity.json

Prints a JSON report; exits non-zero when a case is out of tolerance or cannot run.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from peft import PeftModel
from safetensors.torch import load_file
from transformers import BertForSequenceClassification, LlamaForCausalLM


def rel(got, want):
    got, want = got.detach().float().cpu(), want.detach().float().cpu()
    if got.shape != want.shape:
        return float("inf")
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item()


def key(name):
    """PEFT's parameter name -> rankfit's `<module>.lora_X`."""
    name = name.replace("base_model.model.", "", 1).replace(".default", "")
    return name[: -len(".weight")] if name.endswith(".weight") else name


def run_case(case_dir, checkpoints, device):
    case = os.path.basename(case_dir)
    model_kind = case.split("-")[0]
    inputs = json.load(open(os.path.join(case_dir, "inputs.json")))
    ours = load_file(os.path.join(case_dir, "tensors.safetensors"))
    b, s = inputs["batch"], inputs["seq"]
    ids = torch.tensor(inputs["ids"], dtype=torch.long, device=device).view(b, s)
    mask = torch.ones_like(ids)
    report = {"case": case}
    if model_kind == "minilm":
        base = BertForSequenceClassification.from_pretrained(os.path.join(checkpoints, "minilm"), num_labels=2, attn_implementation="eager")
    else:
        base = LlamaForCausalLM.from_pretrained(os.path.join(checkpoints, "smollm2"), dtype=torch.float32, attn_implementation="eager")
        base = base.to(device).eval()
        with torch.no_grad():
            report["base_logits"] = rel(ours["base_logits"], base(input_ids=ids, attention_mask=mask).logits.reshape(ours["base_logits"].shape))
    model = PeftModel.from_pretrained(base, os.path.join(case_dir, "adapter"), is_trainable=True).to(device).eval()
    logits = model(input_ids=ids, attention_mask=mask).logits
    if model_kind == "minilm":
        loss = F.cross_entropy(logits, torch.tensor(inputs["labels"], device=device))
    else:
        v = logits.shape[-1]
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1))
    loss.backward()
    report["logits"] = rel(ours["logits"], logits.reshape(ours["logits"].shape))
    report["loss"] = rel(ours["loss"], loss.reshape(1))
    worst, missing, compared = 0.0, [], 0
    for name, p in model.named_parameters():
        if "lora_" not in name or not p.requires_grad:
            continue
        k = key(name)
        if k not in ours:
            missing.append(k)
            continue
        worst = max(worst, rel(ours[k], p.grad))
        compared += 1
    report["grads"] = worst
    report["grads_compared"] = compared
    report["grads_missing"] = missing
    return report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", required=True)
    ap.add_argument("--cases", required=True, help="the --out directory of `gpu_check parity`")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tol-logits", type=float, default=1e-4)
    ap.add_argument("--tol-grads", type=float, default=1e-3)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cases = sorted(d for d in os.listdir(args.cases) if os.path.isfile(os.path.join(args.cases, d, "inputs.json")))
    if not cases:
        sys.exit(f"no cases under {args.cases}")
    reports, ok = [], True
    for c in cases:
        r = run_case(os.path.join(args.cases, c), args.checkpoints, device)
        r["ok"] = (
            max(r["logits"], r["loss"], r.get("base_logits", 0.0)) <= args.tol_logits
            and r["grads"] <= args.tol_grads
            and r["grads_compared"] > 0
            and not r["grads_missing"]
        )
        ok &= r["ok"]
        reports.append(r)
    print(json.dumps({"device": args.device, "torch": torch.__version__, "tol_logits": args.tol_logits,
                      "tol_grads": args.tol_grads, "ok": ok, "cases": reports}, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
