#!/usr/bin/env python3
"""Gathers the device check's step files into one summary.json and prints the tables for
BENCHMARKS.md (called by tools/gpu/check.sh; the device machine returns at most 8 files, so the
step files go into details.tar.gz and this summary carries what matters).

    python3 tools/gpu/summarize.py OUT STEPS_JSONL CHECKPOINTS DEVICE TINY

The share of the chip's peak is an estimate: FLOPs per training step of a frozen base with
small adapters ≈ 2 × forward (the backward pass computes input gradients only), forward ≈
2 × (matmul parameters) × tokens + 4 × layers × seq × hidden × tokens (attention scores and
their weighted sum) + the decoder's vocabulary projection at every position; against the
H200's plain-f32 rate (~67 TFLOP/s by the datasheet: both sides multiply in f32, PyTorch
with TF32 off by default).
"""
import glob
import json
import os
import sys

F32_PEAK = {"cuda": 67e12}


def step_flops(cfg, batch, seq, decoder):
    h, i, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    if decoder:
        kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * cfg.get("head_dim", h // cfg["num_attention_heads"])
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * i
    else:
        per_layer = 4 * h * h + 2 * h * i
    tokens = batch * seq
    fwd = 2 * per_layer * layers * tokens + 4 * layers * seq * h * tokens
    if decoder:
        fwd += 2 * h * cfg["vocab_size"] * tokens
    return 2 * fwd


def main():
    out, steps_path, ck, device, tiny = sys.argv[1:6]
    steps = [json.loads(line) for line in open(steps_path) if line.strip()]
    summary = {"device": device, "tiny": tiny == "1", "ok": all(s["status"] == 0 for s in steps), "steps": steps}
    for name in ["env", "parity", "train", "peft_load", "worker"]:
        p = os.path.join(out, f"{name}.json")
        if os.path.isfile(p):
            try:
                summary[name] = json.load(open(p))
            except ValueError as e:
                summary[name] = {"unreadable": str(e)}
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "bench_*.json"))):
        doc = json.load(open(path))
        for r in doc["results"]:
            ours, torch = r["rankfit"], r.get("pytorch_peft")
            decoder = r["model"] == "smollm2"
            cfg = json.load(open(os.path.join(ck, r["model"], "config.json")))
            flops = step_flops(cfg, ours["batch"], ours["seq"], decoder)
            row = {
                "bench": os.path.basename(path)[len("bench_"):-len(".json")],
                "model": r["model"],
                "method": r["method"],
                "batch": ours["batch"],
                "seq": ours["seq"],
                "rankfit_s_per_step": ours["seconds_per_step"],
                "rankfit_tokens_per_s": ours["tokens_per_second"],
                "rankfit_memory_bytes": ours.get("gpu_memory_bytes") or ours.get("peak_rss_bytes"),
                "est_tflop_per_step": flops / 1e12,
            }
            if torch:
                row.update({
                    "pytorch_s_per_step": torch["seconds_per_step"],
                    "pytorch_tokens_per_s": torch.get("tokens_per_second"),
                    "pytorch_memory_bytes": torch.get("gpu_memory_bytes") or torch.get("peak_rss_bytes"),
                    "speed_vs_pytorch": torch["seconds_per_step"] / ours["seconds_per_step"],
                })
            peak = F32_PEAK.get(device.split(":")[0])
            if peak:
                row["rankfit_share_of_f32_peak"] = flops / ours["seconds_per_step"] / peak
                if torch:
                    row["pytorch_share_of_f32_peak"] = flops / torch["seconds_per_step"] / peak
            rows.append(row)
    summary["bench"] = rows
    json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)

    mib = lambda b: "-" if b is None else f"{b / 2**20:.0f}"
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    print(f"\n## device check on {device}: {'passed' if summary['ok'] else 'FAILED'}\n")
    print("| step | status | seconds |\n| --- | --- | --- |")
    for s in steps:
        print(f"| {s['step']} | {'ok' if s['status'] == 0 else 'failed'} | {s['seconds']} |")
    if rows:
        print("\n| workload | method | batch × seq | rankfit s/step | PyTorch s/step | speed vs PyTorch | rankfit tokens/s | "
              "rankfit MiB | PyTorch MiB | rankfit % of f32 peak | PyTorch % of f32 peak |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            ratio = r.get("speed_vs_pytorch")
            print(f"| {r['bench']} | {r['method']} | {r['batch']} × {r['seq']} | {r['rankfit_s_per_step']:.4f} | "
                  f"{r.get('pytorch_s_per_step', float('nan')):.4f} | {'-' if ratio is None else f'{ratio:.2f}x'} | "
                  f"{r['rankfit_tokens_per_s']:.0f} | {mib(r['rankfit_memory_bytes'])} | {mib(r.get('pytorch_memory_bytes'))} | "
                  f"{pct(r.get('rankfit_share_of_f32_peak'))} | {pct(r.get('pytorch_share_of_f32_peak'))} |")
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
