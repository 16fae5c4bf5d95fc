#!/usr/bin/env python3
"""Train-step throughput and peak memory of PyTorch + transformers + PEFT: the baseline the
Rust bench (`cargo run --release -p rankfit-train --bin train_bench`) compares against.

One (model, method) per process, so that the peak RSS belongs to that workload alone:

    python3 tools/reference/bench_peft.py --model-kind minilm --method lora --threads 2
    python3 tools/reference/bench_peft.py --model-kind smollm2 --method adalora --steps 2

Workloads (identical to the Rust side):
  minilm   all-MiniLM-L6-v2, sequence classification (2 labels), batch 32, seq 128,
           adapters on query/value
  smollm2  SmolLM2-135M-Instruct (weights dequantized from the shipped GGUF), causal LM loss
           on every position, batch 8, seq 512, adapters on q_proj/v_proj
  lora     r = 8, alpha 16;  adalora: r_init 12 -> target 8, masking every step
Random token ids (seeded), AdamW lr 1e-3, grad clipping 1.0, one untimed warm-up step.
--device cuda[:N] runs on a GPU (timed with cuda synchronisation; peak memory is
torch.cuda.max_memory_reserved); --checkpoint DIR loads an HF checkpoint directory instead of
the shipped assets (the random-initialised ones of tools/gpu/make_checkpoints.py).
Prints one JSON object on stdout.
"""
import argparse
import glob
import json
import os
import resource
import sys
import time

import torch
from peft import AdaLoraConfig, LoraConfig, get_peft_model

WORKLOADS = {
    "minilm": {"batch": 32, "seq": 128, "targets": ["query", "value"], "task": "SEQ_CLS"},
    "smollm2": {"batch": 8, "seq": 512, "targets": ["q_proj", "v_proj"], "task": "CAUSAL_LM"},
}


def assets_dir():
    return os.environ.get("RANKFIT_ASSETS_DIR", os.path.expanduser("~/.cache/rankfit/assets"))


def find_one(pattern, what):
    hits = sorted(glob.glob(os.path.join(assets_dir(), "**", pattern), recursive=True))
    if not hits:
        sys.exit(f"{what} not found under {assets_dir()}; run `rankfit assets fetch` first")
    return hits[0]


def load(kind, checkpoint=None):
    if kind == "minilm":
        from transformers import BertForSequenceClassification

        model_dir = checkpoint or os.path.dirname(find_one("all-minilm-l6-v2/**/config.json", "all-MiniLM-L6-v2"))
        return BertForSequenceClassification.from_pretrained(model_dir, num_labels=2), 30522
    from transformers import AutoModelForCausalLM

    if checkpoint:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
        return model, model.config.vocab_size
    gguf = find_one("SmolLM2-135M-Instruct*.gguf", "SmolLM2 GGUF")
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf), dtype=torch.float32)
    return model, model.config.vocab_size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-kind", choices=sorted(WORKLOADS), default="minilm")
    ap.add_argument("--method", choices=["lora", "adalora"], default="lora")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--seq", type=int)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint")
    args = ap.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    w = dict(WORKLOADS[args.model_kind])
    batch, seq = args.batch or w["batch"], args.seq or w["seq"]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base, vocab = load(args.model_kind, args.checkpoint)
    common = dict(lora_alpha=16, lora_dropout=0.0, target_modules=w["targets"], task_type=w["task"])
    if args.method == "lora":
        cfg = LoraConfig(r=8, **common)
    else:
        cfg = AdaLoraConfig(init_r=12, target_r=8, total_step=args.steps + 2, tinit=0, tfinal=0, deltaT=1, **common)
    model = get_peft_model(base, cfg).to(device)
    model.train()
    ids = torch.randint(1000, min(vocab, 30000), (batch, seq))
    if args.model_kind == "minilm":
        ids[:, 0] = 101
        labels = torch.arange(batch) % 2
    else:
        labels = ids.clone()
    ids, labels = ids.to(device), labels.to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    timed = 0.0
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
        out.loss.backward()
        if args.method == "adalora":
            model.base_model.update_and_allocate(step + 1)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if gpu:
            torch.cuda.synchronize(device)
        if step > 0:
            timed += time.perf_counter() - t0
    print(
        json.dumps(
            {
                "framework": "pytorch+peft",
                "torch": torch.__version__,
                "device": args.device,
                "gpu": torch.cuda.get_device_name(device) if gpu else None,
                "model": args.model_kind,
                "method": args.method,
                "batch": batch,
                "seq": seq,
                "threads": args.threads,
                "steps": args.steps,
                "seconds_per_step": timed / args.steps,
                "examples_per_second": args.steps * batch / timed,
                "tokens_per_second": args.steps * batch * seq / timed,
                "trainable_params": trainable,
                # ru_maxrss is in KiB on Linux.
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "gpu_memory_bytes": torch.cuda.max_memory_reserved(device) if gpu else None,
            }
        )
    )


if __name__ == "__main__":
    main()
