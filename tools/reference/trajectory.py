"""PEFT reference trajectories for rankfit's training loop: trains PEFT LoRA and PEFT
AdaLoRA on all-MiniLM-L6-v2 + a 2-label classification head (pooler and classifier
trained) for 40 steps on 5 fixed batches, from a seeded initialisation, with no dropout,
and writes what crates/train's trajectory replay test compares step by step: per-step
learning rate, loss, task loss and pre-clip gradient norm; every AdaLoRA allocation
(budget, threshold, triplet scores, rank pattern); and all trainable tensors at init (but
the pooler, which starts as the pretrained one) and at the end, under rankfit's parameter
names.

    pip install torch transformers peft safetensors
    python3 tools/reference/trajectory.py --model rankfit-data/assets/models/all-minilm-l6-v2

Writes crates/train/tests/fixtures/trajectory/{lora,adalora}.json and
{lora,adalora}_{init,final}.safetensors. CPU, float32, one thread, deterministic
algorithms: two runs on one machine give bit-identical files; on another CPU the last
bits of losses and weights can differ (torch's kernels follow the CPU's vector width: a
rerun elsewhere moved losses by ~1e-7), far inside the replay test's tolerances. Made
with torch 2.15, transformers 5.24, peft 0.21.2 (the versions are recorded in the JSON).

The loop (`run_steps`) is shared with tools/reference/trajectory_llama.py, the decoder's
version. Per step s = 0..39 (global step t = s + 1, batch s % 5), as PEFT documents it:
    lr = learning_rate(s)                    # rankfit's trainer::learning_rate (0 at s = 0)
    loss = model(**batch, labels).loss      # AdaLoRA: + orth_reg_weight * orth regulariser
    loss.backward()
    grad_norm = clip_grad_norm_(trainable, 0.5)  # the pre-clip norm is recorded
    optimizer.step()                         # torch AdamW, decay on all but the biases
    model.base_model.update_and_allocate(t)  # AdaLoRA only
    optimizer.zero_grad()
"""
import argparse
import json
import math
import os

import torch
import torch.nn.functional as F
from peft import AdaLoraConfig, LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertForSequenceClassification

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "train", "tests", "fixtures", "trajectory")

SEED = 0
TARGETS = ["query", "value"]
STEPS = 40
BATCH = 8
SEQ_LEN = 16
# 1e-3: loss falls ~0.69 -> ~0.01 (LoRA) without saturating; at 5e-3 the trained pooler
# drives the float32 loss to exactly 0 by step 16 and the trajectory turns chaotic.
LR = 1e-3
WARMUP = math.ceil(0.1 * STEPS)  # rankfit: ceil(warmup_ratio * total)
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.01
# 0.5 rather than 1.0: pre-clip norms here stay within 0.03-0.8, so 1.0 never clips; 0.5
# clips about a third of the steps and leaves the rest alone.
GRAD_CLIP = 0.5
LORA = {"r": 4, "lora_alpha": 8}
ADALORA = {
    "init_r": 6,
    "target_r": 3,
    "lora_alpha": 8,
    "beta1": 0.85,
    "beta2": 0.85,
    "orth_reg_weight": 0.5,
    "tinit": 5,
    "tfinal": 10,
    "deltaT": 3,
    "total_step": STEPS,
}

# (sentence, label): 1 = positive, 0 = negative. 5 batches of 8, 4 of each per batch.
SENTENCES = [
    ("I loved this movie.", 1),
    ("The food was awful.", 0),
    ("What a wonderful day!", 1),
    ("The service was terribly slow.", 0),
    ("The plot was boring and dull.", 0),
    ("She gave a brilliant performance.", 1),
    ("I would not recommend it.", 0),
    ("An absolute delight to watch.", 1),
    ("This book is fantastic.", 1),
    ("The room was dirty and cold.", 0),
    ("Great value for the money.", 1),
    ("I hated every minute of it.", 0),
    ("The ending made me very sad.", 0),
    ("Our guide was friendly and kind.", 1),
    ("It broke after two days.", 0),
    ("The music is simply beautiful.", 1),
    ("A truly enjoyable experience.", 1),
    ("The staff were rude to us.", 0),
    ("Everything worked perfectly.", 1),
    ("It was a waste of time.", 0),
    ("The acting was weak.", 0),
    ("I am so happy with it.", 1),
    ("The battery dies too quickly.", 0),
    ("They did an excellent job.", 1),
    ("Best pizza in town.", 1),
    ("The screen cracked on day one.", 0),
    ("A charming and funny story.", 1),
    ("Nothing about it felt right.", 0),
    ("The instructions were confusing.", 0),
    ("I will definitely come back.", 1),
    ("Poor quality and overpriced.", 0),
    ("The view was breathtaking.", 1),
    ("The hotel was clean and quiet.", 1),
    ("My order arrived broken.", 0),
    ("A masterpiece of modern cinema.", 1),
    ("The noise kept me awake.", 0),
    ("Too long and too loud.", 0),
    ("Fresh, tasty and cheap.", 1),
    ("The worst meal I have had.", 0),
    ("I enjoyed every page.", 1),
]


def learning_rate(s, base=LR, total=STEPS, warmup=WARMUP):
    """rankfit's `learning_rate(base, s, total, warmup)` (HF linear schedule, 0-based s)."""
    if s < warmup:
        return base * s / max(warmup, 1)
    return base * max((total - min(s, total)) / max(total - warmup, 1), 0.0)


def make_batches(tok):
    batches = []
    for b in range(len(SENTENCES) // BATCH):
        rows = SENTENCES[b * BATCH : (b + 1) * BATCH]
        enc = tok([t for t, _ in rows], padding="max_length", max_length=SEQ_LEN, truncation=True, return_tensors="pt")
        for i, (text, _) in enumerate(rows):
            # No sentence is truncated: its [SEP] is inside the 16 tokens.
            n = len(tok(text)["input_ids"])
            assert n <= SEQ_LEN and int(enc["attention_mask"][i].sum()) == n, (text, n)
        batches.append(
            {
                "texts": [t for t, _ in rows],
                "input_ids": enc["input_ids"].tolist(),
                "attention_mask": enc["attention_mask"].tolist(),
                "token_type_ids": [[0] * SEQ_LEN for _ in rows],
                "labels": [y for _, y in rows],
            }
        )
    return batches


def to_tensors(batch):
    return {k: torch.tensor(batch[k], dtype=torch.long) for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}


def rankfit_name(peft_name):
    """`base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.default.weight`
    -> `bert.encoder.layer.0.attention.self.query.lora_A`; `...classifier.modules_to_save.default.weight`
    -> `classifier.weight`."""
    n = peft_name.removeprefix("base_model.model.")
    n = n.replace(".modules_to_save.default", "")
    for kind in ("lora_A", "lora_B", "lora_E"):
        for tail in (f".{kind}.default.weight", f".{kind}.default"):
            if n.endswith(tail):
                return n[: -len(tail)] + f".{kind}"
    return n


def module_of(rank_pattern_key):
    """`bert.encoder.layer.0.attention.self.query.lora_E.default` -> the module."""
    return rank_pattern_key.split(".lora_E")[0]


def build(model_dir, kind):
    torch.manual_seed(SEED)
    base = BertForSequenceClassification.from_pretrained(
        model_dir,
        num_labels=2,
        attn_implementation="eager",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        dtype=torch.float32,
    )
    common = {"target_modules": TARGETS, "lora_dropout": 0.0, "task_type": "SEQ_CLS", "modules_to_save": ["pooler"]}
    if kind == "lora":
        cfg = LoraConfig(**LORA, **common)
    else:
        cfg = AdaLoraConfig(**ADALORA, **common)
    model = get_peft_model(base, cfg)
    # The classifier as transformers' _init_weights: N(0, 0.02) weight, zero bias (on the
    # trained copy PEFT's modules_to_save made).
    with torch.no_grad():
        cls = model.base_model.model.classifier.modules_to_save["default"]
        cls.weight.normal_(0.0, 0.02)
        cls.bias.zero_()
    model.train()  # every dropout is p = 0 (eval-equivalent)

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names = sorted(rankfit_name(n) for n, _ in trainable)
    modules = sorted({n.rsplit(".", 1)[0] for n in names if ".lora_" in n})
    assert len(modules) == 12 and all(m.split(".")[-1] in TARGETS for m in modules), modules
    lora_kinds = ["lora_A", "lora_B"] + (["lora_E"] if kind == "adalora" else [])
    expected = sorted(
        [f"{m}.{k}" for m in modules for k in lora_kinds]
        + ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"]
    )
    assert names == expected, names
    return model, trainable


def snapshot(trainable):
    out = {}
    for n, p in trainable:
        key = rankfit_name(n)
        t = p.detach().clone().float()
        if t.dim() == 1:  # biases: rankfit stores [1, n]
            t = t.reshape(1, -1)
        out[key] = t.contiguous()
    return dict(sorted(out.items()))


def orth_reg(model):
    """AdaLoraModel.forward's regulariser, recomputed for the record."""
    total, n = 0.0, 0
    with torch.no_grad():
        for name, p in model.base_model.model.named_parameters():
            if ("lora_A" in name or "lora_B" in name) and "default" in name:
                cov = p @ p.T if "lora_A" in name else p.T @ p
                total += torch.norm(cov - torch.eye(*cov.size()), p="fro").item()
                n += 1
    return total / n


def make_optimizer(trainable, lr, weight_decay):
    """torch AdamW with rankfit's groups: weight decay on all but the biases."""
    decay = [p for n, p in trainable if not rankfit_name(n).endswith(".bias")]
    no_decay = [p for n, p in trainable if rankfit_name(n).endswith(".bias")]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=lr, betas=BETAS, eps=EPS, foreach=False)


def record_allocations(model, allocations, current):
    """Wraps AdaLoRA's mask_to_budget to append every allocation (step, budget, k,
    threshold, per-module triplet scores, rank pattern) to `allocations`."""
    alloc = model.base_model.rankallocator
    original = alloc.mask_to_budget

    def recording_mask_to_budget(m, budget):
        # Triplet scores exactly as mask_to_budget computes them, per module.
        scores = {}
        for n, _ in m.named_parameters():
            if "lora_E.default" in n:
                a, b, e = (n.replace("lora_E", x) for x in ("lora_A", "lora_B", "lora_E"))
                s_a = alloc._element_score(a).mean(dim=1, keepdim=True)
                s_b = alloc._element_score(b).mean(dim=0, keepdim=False).view(-1, 1)
                s = alloc._combine_ipt(alloc._element_score(e), torch.cat([s_a, s_b], dim=1))
                scores[module_of(n)] = s.view(-1).tolist()
        seen = {}
        kthvalue = torch.kthvalue

        def recording_kthvalue(x, k, *a, **kw):
            r = kthvalue(x, k, *a, **kw)
            seen["threshold"], seen["k"], seen["all"] = r[0].item(), k, x.tolist()
            return r

        torch.kthvalue = recording_kthvalue
        try:
            pattern = original(m, budget)
        finally:
            torch.kthvalue = kthvalue
        assert seen["all"] == [v for s in scores.values() for v in s], "score order"
        rp = {module_of(k): v for k, v in pattern.items()}
        allocations.append(
            {
                "step": current["step"],
                "budget": budget,
                "k": seen["k"],
                "threshold": seen["threshold"],
                "masked": sum(not x for v in rp.values() for x in v),
                "scores": scores,
                "rank_pattern": rp,
            }
        )
        return pattern

    alloc.mask_to_budget = recording_mask_to_budget


def run_steps(model, trainable, kind, batches, step_loss, steps, lr, warmup, weight_decay, grad_clip, tfinal=None):
    """The training loop of the module docs, shared with trajectory_llama.py. `step_loss(
    batch)` runs the forward pass and returns (PEFT's loss tensor, the task loss). Returns
    the per-step records, the AdaLoRA allocations and the final rank pattern ({} for LoRA)."""
    params = [p for _, p in trainable]
    opt = make_optimizer(trainable, lr, weight_decay)
    allocations = []
    current = {"step": None}
    if kind == "adalora":
        record_allocations(model, allocations, current)

    records = []
    for s in range(steps):
        t = s + 1
        current["step"] = t
        rate = learning_rate(s, lr, steps, warmup)
        for g in opt.param_groups:
            g["lr"] = rate
        reg = orth_reg(model) if kind == "adalora" else None
        loss, task_loss = step_loss(batches[s % len(batches)])
        loss_value = loss.item()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip).item()
        opt.step()
        if kind == "adalora":
            model.base_model.update_and_allocate(t)
        opt.zero_grad()
        row = {"step": t, "lr": rate, "loss": loss_value, "task_loss": task_loss, "grad_norm": grad_norm}
        if reg is not None:
            row["orth_reg"] = reg
        records.append(row)

    final_rank_pattern = {}
    if kind == "adalora":
        final_rank_pattern = {module_of(k): v for k, v in model.peft_config["default"].rank_pattern.items()}
        last = allocations[-1]
        assert last["step"] == steps - tfinal and last["rank_pattern"] == final_rank_pattern
        final = snapshot(trainable)
        for m, keep in final_rank_pattern.items():
            # Steps after T - tfinal re-zero the pruned lora_E entries after every optimizer step.
            e = final[f"{m}.lora_E"].view(-1)
            assert all(bool(k) or e[i].item() == 0.0 for i, k in enumerate(keep)), m
    return records, allocations, final_rank_pattern


def train(model_dir, kind, batches):
    model, trainable = build(model_dir, kind)
    init = snapshot(trainable)
    assert len([n for n, _ in trainable if rankfit_name(n).endswith(".bias")]) == 2

    def step_loss(batch):
        batch = to_tensors(batch)
        out = model(**batch)
        return out.loss, F.cross_entropy(out.logits.detach(), batch["labels"]).item()

    steps, allocations, final_rank_pattern = run_steps(
        model, trainable, kind, batches, step_loss, STEPS, LR, WARMUP, WEIGHT_DECAY, GRAD_CLIP, ADALORA["tfinal"]
    )
    result = {
        "config": {
            "method": kind,
            "seed": SEED,
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "num_labels": 2,
            "target_modules": TARGETS,
            "train_pooler": True,
            "lora_dropout": 0.0,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "steps": STEPS,
            "batch_size": BATCH,
            "max_seq_len": SEQ_LEN,
            "learning_rate": LR,
            "warmup_steps": WARMUP,
            "adam_betas": list(BETAS),
            "adam_eps": EPS,
            "weight_decay": WEIGHT_DECAY,
            "no_decay": ["bert.pooler.dense.bias", "classifier.bias"],
            "grad_clip": GRAD_CLIP,
            "batch_of_step": "batches[(step - 1) % 5]",
            **method_config(kind, LORA, ADALORA),
            "versions": versions(),
        },
        "batches": batches,
        "steps": steps,
    }
    if kind == "adalora":
        result["allocations"] = allocations
        result["final_rank_pattern"] = final_rank_pattern
    final = snapshot(trainable)
    # The trained pooler is PEFT's modules_to_save copy, and it did train.
    assert not torch.equal(init["bert.pooler.dense.weight"], final["bert.pooler.dense.weight"])
    return result, init, final


def method_config(kind, lora, adalora):
    if kind == "lora":
        return {"r": lora["r"], "lora_alpha": lora["lora_alpha"], "scale": lora["lora_alpha"] / lora["r"]}
    return {**adalora, "scale": "lora_alpha / (ranknum + 1e-5), ranknum = init_r"}


def versions():
    return {"torch": torch.__version__, "peft": __import__("peft").__version__, "transformers": __import__("transformers").__version__}


def print_summary(kind, result, strip=lambda m: m):
    st = result["steps"]
    print(f"{kind}: loss step 1 {st[0]['loss']:.6f}, step {len(st) // 4} {st[len(st) // 4 - 1]['loss']:.6f}, step {len(st)} {st[-1]['loss']:.6f}")
    if kind == "adalora":
        for a in result["allocations"]:
            print(f"  allocation at step {a['step']}: budget {a['budget']}, k {a['k']}, masked {a['masked']}")
        ranks = {strip(m): sum(v) for m, v in result["final_rank_pattern"].items()}
        print(f"  {len(result['allocations'])} allocations; final ranks {ranks}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="rankfit-data/assets/models/all-minilm-l6-v2")
    ap.add_argument("--out", default=FIXTURES)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    batches = make_batches(AutoTokenizer.from_pretrained(args.model))
    for kind in ("lora", "adalora"):
        result, init, final = train(args.model, kind, batches)
        with open(os.path.join(args.out, f"{kind}.json"), "w") as f:
            json.dump(result, f, indent=1)
        # The pooler at init is the pretrained one (rankfit's head starts from it too): left
        # out of the init file to keep the fixtures small.
        pretrained = ("bert.pooler.dense.weight", "bert.pooler.dense.bias")
        save_file({k: v for k, v in init.items() if k not in pretrained}, os.path.join(args.out, f"{kind}_init.safetensors"))
        save_file(final, os.path.join(args.out, f"{kind}_final.safetensors"))
        print_summary(kind, result, lambda m: m.replace("bert.encoder.layer.", "").replace("attention.self.", ""))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
