"""Train-step throughput of LoRA and AdaLoRA on all-MiniLM-L6-v2 with PyTorch + PEFT, the
same workload as `cargo run --release -p rankfit-train --bin train_bench`.

    python3 tools/reference/bench_peft.py --threads 2 [--steps 3 --batch 32 --seq 128]
"""
import argparse
import time

import torch
from peft import AdaLoraConfig, LoraConfig, get_peft_model
from transformers import BertForSequenceClassification


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="rankfit-data/assets/models/all-minilm-l6-v2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ids = torch.randint(1000, 30000, (args.batch, args.seq))
    ids[:, 0] = 101
    labels = torch.arange(args.batch) % 2
    for name in ("lora", "adalora"):
        base = BertForSequenceClassification.from_pretrained(args.model, num_labels=2, attn_implementation="eager")
        if name == "lora":
            cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], task_type="SEQ_CLS")
        else:
            cfg = AdaLoraConfig(init_r=12, target_r=8, lora_alpha=16, target_modules=["query", "value"], total_step=args.steps + 2, tinit=0, tfinal=0, deltaT=1, task_type="SEQ_CLS")
        model = get_peft_model(base, cfg)
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
        timed = 0.0
        for step in range(args.steps + 1):
            t0 = time.perf_counter()
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
            out.loss.backward()
            if name == "adalora":
                model.base_model.update_and_allocate(step + 1)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            if step > 0:
                timed += time.perf_counter() - t0
        print(f"{name}: {args.steps * args.batch / timed:.2f} examples/s ({timed / args.steps:.3f} s/step, batch {args.batch}, seq {args.seq}, threads {args.threads})")


if __name__ == "__main__":
    main()
