"""Quality parity of a finished rankfit study against PyTorch + PEFT: for every succeeded
LoRA / AdaLoRA run of the study on a classification dataset, trains PEFT LoRA / AdaLoRA on
all-MiniLM-L6-v2 + a classification head on the same train/validation/test rows (from
`GET /api/v1/datasets/{id}/rows`, in the order rankfit's trainer sees them) with that
run's hyper-parameters, budget and seed, keeps the checkpoint with the best validation
accuracy the way rankfit does, and reports its test accuracy. Prints, per (dataset,
method, budget), rankfit's test accuracy mean ± sample std (n) next to PEFT's, the
difference, and whether rankfit's mean is within one PEFT std; writes every per-run number
to `--out` (rewritten after every run, so `--resume` continues an interrupted comparison).

    $HOME/.cache/rankfit/pyenv/bin/python tools/reference/quality_parity.py \
        --url http://127.0.0.1:8080 --token $TOKEN --study $STUDY \
        --model $RANKFIT_ASSETS_DIR/models/all-minilm-l6-v2 --out quality.json

    # offline check of this script (no server; a synthetic dataset and a stub API; ~25 s
    # with one thread; on a machine whose cores are busy, 2 threads oversubscribe them):
    $HOME/.cache/rankfit/pyenv/bin/python tools/reference/quality_parity.py --self-test --threads 1

Options: --threads N (torch threads, default 2), --device cpu|cuda|auto, --methods,
--budgets, --seeds (comma lists restricting the grid), --resume. Made with torch 2.15,
transformers 5.24, peft 0.21.2; HTTP with the standard library only.

What mirrors rankfit (crates/train/src/{trainer,data,tokenize}.rs, crates/domain/src/run.rs):
  * total steps T = max_steps, else ceil(epochs * ceil(n_train / batch_size)); epoch e =
    (step - 1) // ceil(n_train / batch) gets its own shuffle (a torch-seeded permutation:
    the same distribution as rankfit's, not the same order), the last partial batch kept;
  * warmup = ceil(warmup_ratio * T); lr(s) = rankfit's `learning_rate` (HF linear warm-up
    then linear decay, 0-based s, so the first step has lr 0 when warmup > 0);
  * AdamW (0.9, 0.999, 1e-8), weight decay on every trainable tensor but the biases
    (pooler and classifier biases); clip_grad_norm_(grad_clip) unless grad_clip is 0;
  * BERT's own hidden / attention / classifier dropout (0.1 from config.json) on while
    training, lora_dropout on the adapter input, all off for evaluation;
  * the head: pretrained pooler (trained when train_pooler, PEFT modules_to_save), a
    classifier N(0, 0.02) / zero bias; dynamic padding; evaluation batches of 64;
  * tokenization: word pieces of tokenizer.json without special tokens, truncated like
    rankfit's tokenize.rs (longest first, one token at a time, the second text losing
    ties), then [CLS] a [SEP] (b [SEP]) with token types 0 / 1. transformers' fast
    tokenizer with truncation=True splits an odd remainder the other way when the second
    text is the longer one, so it is not used;
  * adapters on exactly the encoder linears rankfit adapts (a target matches a module path
    equal to it or ending in "." + it); LoRA r = budget, alpha = lora_alpha; AdaLoRA
    init_r = the config's init_r or ceil(1.5 * budget), target_r = budget, and
    total_step / tinit / tfinal / deltaT / beta1 / beta2 / orth_reg_weight from the run
    summary's `allocator` (the schedule rankfit resolved), update_and_allocate(step) after
    optimizer.step() with the 1-based step, as PEFT documents it;
  * validation every eval_every steps (steps < T) and at T; the best validation accuracy
    among eligible steps wins, ties keep the earlier step (rankfit's `consider_best`:
    strictly greater); eligible = every step for LoRA, steps >= T - tfinal for AdaLoRA
    (rank pattern final). That state is restored and scored on the test split; with no
    validation split the final state is scored;
  * seed: torch.manual_seed(run seed) before building the model (classifier and adapter
    init, dropout); the shuffle uses its own torch.Generator seeded with the run seed.
"""
import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
import warnings
import urllib.error
import urllib.parse
import urllib.request

import torch
import torch.nn.functional as F

EVAL_BATCH = 64  # rankfit's trainer::EVAL_BATCH
MODEL_ID = "all-minilm-l6-v2"  # the catalog's BERT model (crates/domain/src/catalog.rs)
METHODS = ("lora", "adalora")
# rankfit's bert::Site suffixes, in named_modules() order.
BERT_SITES = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
# rankfit's TrainingConfig defaults (crates/domain/src/run.rs), for fields a stored config lacks.
TRAINING_DEFAULTS = {
    "epochs": 3.0,
    "max_steps": None,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "warmup_ratio": 0.06,
    "max_seq_len": 128,
    "grad_clip": 1.0,
    "eval_every": 0,
    "target_modules": ["query", "value"],
    "lora_alpha": 16.0,
    "lora_dropout": 0.0,
    "train_pooler": True,
}
ADALORA_DEFAULTS = {"init_r": None, "tinit": None, "tfinal": None, "delta_t": None, "beta1": 0.85, "beta2": 0.85, "orth_reg_weight": 0.5}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# The rankfit API (stdlib HTTP only)


class Api:
    def __init__(self, url, token, timeout=120):
        self.base = url.rstrip("/") + "/api/v1"
        self.token = token
        self.timeout = timeout

    def _get(self, path):
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            body = e.read().decode("utf-8", "replace")[:2000]
            sys.exit(f"GET {self.base + path}: HTTP {e.code}: {body}")
        except urllib.error.URLError as e:
            sys.exit(f"GET {self.base + path}: {e.reason}")

    def json(self, path):
        return json.loads(self._get(path))

    def study(self, sid):
        return self.json(f"/studies/{urllib.parse.quote(str(sid))}")

    def run(self, rid):
        return self.json(f"/runs/{urllib.parse.quote(str(rid))}")

    def dataset(self, did):
        return self.json(f"/datasets/{urllib.parse.quote(str(did))}")["dataset"]

    def rows(self, did):
        text = self._get(f"/datasets/{urllib.parse.quote(str(did))}/rows")
        return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------
# Data: rankfit's tokenization and batches


class Encoder:
    """tokenize.rs's BertTokenizer: word pieces without specials, rankfit's truncation,
    [CLS] a [SEP] (b [SEP]), token types 0 / 1."""

    def __init__(self, model_dir):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tok.no_padding()
        self.tok.no_truncation()
        ids = {t: self.tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"tokenizer.json has no {missing}")
        self.cls, self.sep, self.pad = ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]

    def pieces(self, text):
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode(self, a, b, max_len):
        return build_pair(self.pieces(a), None if b is None else self.pieces(b), max_len, self.cls, self.sep)


def build_pair(ids_a, ids_b, max_len, cls, sep):
    """`BertTokenizer::encode` on already-split word pieces: returns (ids, type_ids)."""
    ids_a = list(ids_a)
    specials = 2 if ids_b is None else 3
    room = max(max_len - specials, 0)
    if ids_b is None:
        del ids_a[room:]
    else:
        ids_b = list(ids_b)
        while len(ids_a) + len(ids_b) > room:
            if len(ids_a) > len(ids_b):
                ids_a.pop()
            else:
                ids_b.pop()
    ids = [cls] + ids_a + [sep]
    types = [0] * len(ids)
    if ids_b is not None:
        ids += ids_b + [sep]
        types += [1] * (len(ids_b) + 1)
    return ids, types


def encode_rows(enc, rows, labels, max_len):
    """rows (the API's JSON lines) -> {split: [(ids, type_ids, class)]}, in file order."""
    index = {label: i for i, label in enumerate(labels)}
    out = {"train": [], "validation": [], "test": []}
    for i, r in enumerate(rows):
        target = r.get("target") or {}
        if "class" not in target:
            raise ValueError(f"row {i}: target {target!r} is not a class label")
        if target["class"] not in index:
            raise ValueError(f"row {i}: label {target['class']!r} is not in the label set {labels}")
        ids, types = enc.encode(r["text_a"], r.get("text_b"), max_len)
        out[r["split"]].append((ids, types, index[target["class"]]))
    return out


def collate(items, device):
    """tokenize::collate: pad to the longest (with id 0, as the trainer calls it), mask."""
    seq = max(len(x[0]) for x in items)
    n = len(items)
    ids = torch.zeros((n, seq), dtype=torch.long)
    types = torch.zeros((n, seq), dtype=torch.long)
    mask = torch.zeros((n, seq), dtype=torch.long)
    for row, (i, t, _) in enumerate(items):
        ids[row, : len(i)] = torch.tensor(i, dtype=torch.long)
        types[row, : len(t)] = torch.tensor(t, dtype=torch.long)
        mask[row, : len(i)] = 1
    labels = torch.tensor([x[2] for x in items], dtype=torch.long)
    return {"input_ids": ids.to(device), "token_type_ids": types.to(device), "attention_mask": mask.to(device)}, labels.to(device)


# ---------------------------------------------------------------------------------------
# Schedules (trainer.rs, allocator/adalora.rs)


def total_steps(training, n_train):
    per_epoch = max(-(-n_train // int(training["batch_size"])), 1)
    if training.get("max_steps") is not None:
        return int(training["max_steps"])
    return max(math.ceil(float(training["epochs"]) * per_epoch), 1)


def learning_rate(base, s, total, warmup):
    """trainer::learning_rate (HF get_linear_schedule_with_warmup at 0-based step s)."""
    if s < warmup:
        return base * s / max(warmup, 1)
    return base * max((total - min(s, total)) / max(total - warmup, 1), 0.0)


def init_rank(method, method_cfg, budget):
    if method == "adalora":
        r = method_cfg.get("init_r")
        return int(r) if r is not None else -(-budget * 3 // 2)
    return budget


def adalora_schedule(method_cfg, summary, total, init_r, budget, modules):
    """The schedule rankfit resolved (run summary `allocator`), else resolved here the same
    way (AdaLoraSchedule::resolve: tinit = T/10, tfinal = T/5, delta_t = max(1, T/100))."""
    alloc = (summary or {}).get("allocator") or {}
    sched = alloc.get("schedule")
    if sched:
        out = {
            "total_step": int(sched["total_step"]),
            "tinit": int(sched["tinit"]),
            "tfinal": int(sched["tfinal"]),
            "delta_t": int(sched["delta_t"]),
            "beta1": float(alloc.get("beta1", method_cfg["beta1"])),
            "beta2": float(alloc.get("beta2", method_cfg["beta2"])),
            "orth_reg_weight": float(alloc.get("orth_reg_weight", method_cfg["orth_reg_weight"])),
            "source": "run summary",
        }
        want = (init_r * modules, budget * modules)
        got = (sched.get("init_budget"), sched.get("target_budget"))
        if None not in got and tuple(int(x) for x in got) != want:
            raise ValueError(f"summary budgets {got} != init_r*K, budget*K = {want} (K = {modules} adapted modules)")
        if out["total_step"] != total:
            raise ValueError(f"summary total_step {out['total_step']} != {total} steps computed from the data")
        return out
    return {
        "total_step": total,
        "tinit": int(method_cfg["tinit"]) if method_cfg.get("tinit") is not None else total // 10,
        "tfinal": int(method_cfg["tfinal"]) if method_cfg.get("tfinal") is not None else total // 5,
        "delta_t": max(int(method_cfg["delta_t"]) if method_cfg.get("delta_t") is not None else max(total // 100, 1), 1),
        "beta1": float(method_cfg["beta1"]),
        "beta2": float(method_cfg["beta2"]),
        "orth_reg_weight": float(method_cfg["orth_reg_weight"]),
        "source": "resolved from the config (no allocator in the run summary)",
    }


# ---------------------------------------------------------------------------------------
# PEFT training, as rankfit's trainer::run


def module_paths(targets, num_layers):
    """rankfit's Adapters::build_bert: the encoder linears whose path equals a target or
    ends with "." + target (PEFT's rule, restricted to the six BERT sites), in order."""
    out = []
    for layer in range(num_layers):
        for site in BERT_SITES:
            path = f"bert.encoder.layer.{layer}.{site}"
            if any(path == t or path.endswith("." + t) for t in targets):
                out.append(path)
    return out


def num_layers(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        return int(json.load(f)["num_hidden_layers"])


def build_model(model_dir, num_labels, training, method, budget, seed, method_cfg, schedule, device):
    from peft import AdaLoraConfig, LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    base = BertForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels, attn_implementation="eager", dtype=torch.float32)
    modules = module_paths(training["target_modules"], base.config.num_hidden_layers)
    if not modules:
        raise ValueError(f"target_modules {training['target_modules']} match no BERT layer")
    names = dict(base.named_modules())
    assert all(isinstance(names.get(m), torch.nn.Linear) for m in modules), modules
    common = {
        "target_modules": modules,
        "lora_alpha": float(training["lora_alpha"]),
        "lora_dropout": float(training["lora_dropout"]),
        "task_type": "SEQ_CLS",  # adds the classifier to modules_to_save
        "modules_to_save": ["pooler"] if training["train_pooler"] else None,
    }
    if method == "lora":
        cfg = LoraConfig(r=budget, **common)
    else:
        cfg = AdaLoraConfig(
            init_r=init_rank(method, method_cfg, budget),
            target_r=budget,
            tinit=schedule["tinit"],
            tfinal=schedule["tfinal"],
            deltaT=schedule["delta_t"],
            beta1=schedule["beta1"],
            beta2=schedule["beta2"],
            orth_reg_weight=schedule["orth_reg_weight"],
            total_step=schedule["total_step"],
            **common,
        )
    model = get_peft_model(base, cfg)
    # The classifier as transformers' _init_weights (rankfit's init_head): N(0, 0.02), zero bias.
    with torch.no_grad():
        cls = model.base_model.model.classifier.modules_to_save["default"]
        cls.weight.normal_(0.0, 0.02)
        cls.bias.zero_()
    model.to(device)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    lora_params = [n for n, _ in trainable if ".lora_" in n]
    head = sorted(n for n, _ in trainable if ".lora_" not in n)
    per_module = 3 if method == "adalora" else 2
    assert len(lora_params) == per_module * len(modules), (len(lora_params), len(modules))
    expected_head = 4 if training["train_pooler"] else 2
    assert len(head) == expected_head and all("classifier" in n or "pooler" in n for n in head), head
    return model, trainable, len(modules)


def evaluate(model, samples, device):
    """Accuracy and mean cross-entropy of the current weights (no dropout)."""
    if not samples:
        return None
    model.eval()
    order = sorted(range(len(samples)), key=lambda i: len(samples[i][0]))
    correct, loss = 0, 0.0
    with torch.no_grad():
        for k in range(0, len(order), EVAL_BATCH):
            chunk = [samples[i] for i in order[k : k + EVAL_BATCH]]
            inputs, labels = collate(chunk, device)
            logits = model(**inputs).logits.float()
            correct += int((logits.argmax(dim=-1) == labels).sum())  # ties: the first class, as rankfit
            loss += float(F.cross_entropy(logits, labels, reduction="sum"))
    model.train()
    return {"accuracy": correct / len(samples), "loss": loss / len(samples)}


def train_run(model_dir, data, labels, training, method, budget, seed, method_cfg=None, summary=None, device="cpu", verbose=False):
    """Trains one PEFT run as rankfit's trainer::run would train that run. `data`: {split:
    [(ids, type_ids, class)]} (encode_rows); `training`: the run's `config.training`;
    `method_cfg`: its `config.method` (AdaLoRA fields); `summary`: the run's summary (for the
    resolved AdaLoRA schedule). Returns the test accuracy of the best-validation state."""
    training = {**TRAINING_DEFAULTS, **{k: v for k, v in training.items() if k in TRAINING_DEFAULTS}}
    method_cfg = {**ADALORA_DEFAULTS, **{k: v for k, v in (method_cfg or {}).items() if k != "method"}}
    if method not in METHODS:
        raise ValueError(f"method {method!r} has no PEFT counterpart here")
    train = data["train"]
    if not train:
        raise ValueError("the dataset has no training examples")
    started = time.time()
    bs = int(training["batch_size"])
    per_epoch = -(-len(train) // bs)
    total = total_steps(training, len(train))
    warmup = math.ceil(float(training["warmup_ratio"]) * total)

    schedule = None
    if method == "adalora":
        # K, the number of adapted modules, checks the summary's budgets (b = rank * K).
        k = len(module_paths(training["target_modules"], num_layers(model_dir)))
        schedule = adalora_schedule(method_cfg, summary, total, init_rank(method, method_cfg, budget), budget, k)
        if schedule["tinit"] + schedule["tfinal"] >= total:
            raise ValueError(f"AdaLoRA needs tinit + tfinal < total steps ({schedule})")
    model, trainable, n_modules = build_model(model_dir, len(labels), training, method, budget, seed, method_cfg, schedule, device)
    params = [p for _, p in trainable]
    decay = [p for n, p in trainable if not n.endswith(".bias")]
    no_decay = [p for n, p in trainable if n.endswith(".bias")]
    wd = float(training["weight_decay"])
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=float(training["learning_rate"]),
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    final_from = schedule["total_step"] - schedule["tfinal"] if schedule else 0
    eval_every = int(training["eval_every"])
    grad_clip = float(training["grad_clip"])
    shuffle = torch.Generator().manual_seed(int(seed))
    order, order_epoch = None, -1
    best = None  # (step, accuracy, state)
    evals, losses = [], []

    def consider(step, metrics):
        nonlocal best
        eligible = step >= final_from
        evals.append({"step": step, "accuracy": metrics["accuracy"], "loss": metrics["loss"], "eligible": eligible})
        if eligible and (best is None or metrics["accuracy"] > best[1]):
            best = (step, metrics["accuracy"], {n: p.detach().clone() for n, p in trainable})

    model.train()
    for step in range(1, total + 1):
        s = step - 1
        epoch = s // per_epoch
        if epoch != order_epoch:
            order, order_epoch = torch.randperm(len(train), generator=shuffle).tolist(), epoch
        pos = (s % per_epoch) * bs
        items = [train[i] for i in order[pos : pos + bs]]
        inputs, y = collate(items, device)
        lr = learning_rate(float(training["learning_rate"]), s, total, warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        out = model(**inputs, labels=y)  # AdaLoRA adds orth_reg_weight * its regulariser
        loss = out.loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {step}")
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        if method == "adalora":
            model.base_model.update_and_allocate(step)
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if verbose and (step % max(total // 10, 1) == 0 or step == total):
            log(f"    step {step}/{total}: loss {sum(losses[-10:]) / len(losses[-10:]):.4f}, lr {lr:.2e}")
        if eval_every > 0 and step % eval_every == 0 and step < total and data["validation"]:
            consider(step, evaluate(model, data["validation"], device))

    best_step = total
    if data["validation"]:
        consider(total, evaluate(model, data["validation"], device))
        if best is not None and best[0] != total:
            with torch.no_grad():
                for n, p in trainable:
                    p.copy_(best[2][n])
            best_step = best[0]
    validation = evaluate(model, data["validation"], device)
    test = evaluate(model, data["test"], device)
    result = {
        "test_accuracy": test["accuracy"] if test else None,
        "test_loss": test["loss"] if test else None,
        "validation_accuracy": validation["accuracy"] if validation else None,
        "best_step": best_step,
        "total_steps": total,
        "warmup_steps": warmup,
        "train_examples": len(train),
        "adapted_modules": n_modules,
        "train_loss_first": sum(losses[:10]) / len(losses[:10]),
        "train_loss_last": sum(losses[-10:]) / len(losses[-10:]),
        "validations": evals,
        "seconds": time.time() - started,
    }
    if schedule is not None:
        pattern = model.peft_config["default"].rank_pattern or {}
        ranks = {k.split(".lora_E")[0]: int(sum(bool(x) for x in v)) for k, v in pattern.items()}
        result["schedule"] = schedule
        result["final_ranks"] = ranks
        result["final_rank_total"] = sum(ranks.values())
    return result


# ---------------------------------------------------------------------------------------
# The comparison


def summarize(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"n": 0, "mean": None, "std": None}
    return {"n": len(xs), "mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None}


def test_accuracy(evaluations):
    for e in evaluations or []:
        if e.get("split") == "test":
            return (e.get("metrics") or {}).get("accuracy")
    return None


def cells_of(records):
    groups = {}
    for r in records:
        if r.get("peft") is None:
            continue
        groups.setdefault((r["dataset"], r["dataset_id"], r["budget"], METHODS.index(r["method"]), r["method"]), []).append(r)
    out = []
    for (name, did, budget, _, method), rs in sorted(groups.items()):
        rk = summarize([r["rankfit"]["test_accuracy"] for r in rs])
        pf = summarize([r["peft"]["test_accuracy"] for r in rs])
        diff = rk["mean"] - pf["mean"] if rk["mean"] is not None and pf["mean"] is not None else None
        within = None if diff is None or pf["std"] is None else abs(diff) <= pf["std"]
        out.append(
            {
                "dataset": name,
                "dataset_id": did,
                "method": method,
                "budget": budget,
                "seeds": sorted(r["seed"] for r in rs),
                "rankfit": rk,
                "peft": pf,
                "difference": diff,
                "within_one_peft_std": within,
            }
        )
    return out


def fmt(s):
    if s["mean"] is None:
        return "n/a"
    std = "n/a" if s["std"] is None else f"{100 * s['std']:.2f}"
    return f"{100 * s['mean']:.2f} ± {std} ({s['n']})"


def table(cells):
    lines = [
        "| dataset | method | budget | rankfit test acc % (n) | PEFT test acc % (n) | diff (pts) | within 1 PEFT std |",
        "|---|---|---:|---:|---:|---:|:---:|",
    ]
    for c in cells:
        diff = "n/a" if c["difference"] is None else f"{100 * c['difference']:+.2f}"
        within = {True: "yes", False: "no", None: "n/a"}[c["within_one_peft_std"]]
        lines.append(f"| {c['dataset']} | {c['method']} | {c['budget']} | {fmt(c['rankfit'])} | {fmt(c['peft'])} | {diff} | {within} |")
    return "\n".join(lines)


def versions():
    import peft
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def write_out(path, doc):
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def comma_list(s, kind):
    return None if s is None else {kind(x) for x in s.split(",") if x.strip()}


def compare(api, args):
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    study = api.study(args.study)
    progress = study.get("progress") or {}
    if progress.get("queued", 0) + progress.get("running", 0) > 0:
        log(f"note: the study is not finished ({progress.get('done')}/{progress.get('total')} done); comparing its succeeded runs")
    methods, budgets, seeds = comma_list(args.methods, str), comma_list(args.budgets, int), comma_list(args.seeds, int)

    previous = {}
    if args.resume and args.out and os.path.exists(args.out):
        with open(args.out) as f:
            previous = {r["run_id"]: r for r in json.load(f).get("runs", []) if r.get("peft")}
        log(f"resuming: {len(previous)} runs already compared in {args.out}")

    datasets, rows_cache, enc_cache = {}, {}, {}
    encoder = Encoder(args.model)
    jobs, skipped = [], []
    for cell in study.get("grid", []):
        did, method, budget = cell["dataset_id"], cell["method"], int(cell["budget"])
        if methods is not None and method not in methods or budgets is not None and budget not in budgets:
            continue
        if did not in datasets:
            datasets[did] = api.dataset(did)
        ds = datasets[did]
        what = f"{ds['name']} · {method} · b{budget}"
        reason = None
        if method not in METHODS:
            reason = f"method {method} is out of scope (lora and adalora only)"
        elif ds.get("task_family") != "classification":
            reason = f"task family {ds.get('task_family')} is out of scope (classification only)"
        elif cell.get("model") != MODEL_ID:
            reason = f"base model {cell.get('model')} is out of scope ({MODEL_ID} only)"
        for r in cell["runs"]:
            if seeds is not None and int(r["seed"]) not in seeds:
                continue
            if reason is None and r["status"] != "succeeded":
                skipped.append({"cell": what, "run_id": r["id"], "seed": r["seed"], "reason": f"run status {r['status']}"})
            elif reason is None:
                jobs.append((ds, method, budget, r))
        if reason is not None:
            skipped.append({"cell": what, "runs": len(cell["runs"]), "reason": reason})

    doc = {
        "study_id": args.study,
        "study_name": (study.get("study") or {}).get("name"),
        "model": os.path.abspath(args.model),
        "device": device,
        "threads": args.threads,
        "versions": versions(),
        "runs": [],
        "skipped": skipped,
        "cells": [],
    }
    log(f"{len(jobs)} runs to compare, {len(skipped)} skipped entries")
    for n, (ds, method, budget, gr) in enumerate(jobs, 1):
        what = f"[{n}/{len(jobs)}] {ds['name']} · {method} · b{budget} · s{gr['seed']}"
        if gr["id"] in previous:
            doc["runs"].append(previous[gr["id"]])
            log(f"{what}: already compared")
            continue
        got = api.run(gr["id"])
        run = got["run"]
        config = run["config"]
        training, method_cfg, summary = config.get("training") or {}, config.get("method") or {}, run.get("summary") or {}
        max_len = int(training.get("max_seq_len", TRAINING_DEFAULTS["max_seq_len"]))
        did = ds["id"]
        if did not in rows_cache:
            rows_cache[did] = api.rows(did)
        if (did, max_len) not in enc_cache:
            enc_cache[(did, max_len)] = encode_rows(encoder, rows_cache[did], ds["label_set"], max_len)
        data = enc_cache[(did, max_len)]
        record = {
            "run_id": run["id"],
            "dataset_id": did,
            "dataset": ds["name"],
            "method": method,
            "budget": budget,
            "seed": int(run["seed"]),
            "splits": {k: len(v) for k, v in data.items()},
            "config": config,
            "rankfit": {
                "test_accuracy": test_accuracy(got.get("evaluations")),
                "validation_accuracy": next(
                    ((e.get("metrics") or {}).get("accuracy") for e in got.get("evaluations") or [] if e.get("split") == "validation"), None
                ),
                "best_step": summary.get("best_step"),
                "total_steps": summary.get("total_steps"),
                "train_examples": summary.get("train_examples"),
                "final_ranks": summary.get("final_ranks"),
                "allocator": summary.get("allocator"),
            },
        }
        if summary.get("train_examples") not in (None, len(data["train"])):
            log(f"warning: {what}: rankfit trained on {summary['train_examples']} examples, the rows endpoint has {len(data['train'])}")
        try:
            record["peft"] = train_run(
                args.model, data, ds["label_set"], training, method, budget, int(run["seed"]), method_cfg, summary, device, args.verbose
            )
        except (ValueError, FloatingPointError) as e:
            record["peft"] = None
            record["error"] = str(e)
            doc["skipped"].append({"cell": what, "run_id": run["id"], "reason": f"PEFT run failed: {e}"})
            log(f"{what}: PEFT run failed: {e}")
        p = record["peft"]
        if p is not None:
            if summary.get("total_steps") not in (None, p["total_steps"]):
                log(f"warning: {what}: rankfit ran {summary['total_steps']} steps, PEFT {p['total_steps']}")
            rk = record["rankfit"]["test_accuracy"]
            log(
                f"{what}: PEFT test acc {p['test_accuracy']:.4f} (best step {p['best_step']}/{p['total_steps']}), "
                f"rankfit {'n/a' if rk is None else f'{rk:.4f}'} (best step {record['rankfit']['best_step']}); {p['seconds']:.0f} s"
            )
        doc["runs"].append(record)
        doc["cells"] = cells_of(doc["runs"])
        write_out(args.out, doc)
    doc["cells"] = cells_of(doc["runs"])
    write_out(args.out, doc)

    print(f"Quality parity: study {doc['study_name'] or ''} ({args.study}), PyTorch + PEFT {doc['versions']['peft']} on {device}\n")
    print(table(doc["cells"]))
    print("\ndiff = rankfit mean - PEFT mean (accuracy points); within = |diff| <= PEFT sample std")
    if doc["skipped"]:
        print("\nSkipped:")
        for s in doc["skipped"]:
            extra = f" run {s['run_id']}" if "run_id" in s else f" ({s['runs']} runs)"
            print(f"- {s['cell']}{extra}: {s['reason']}")
    if args.out:
        print(f"\nper-run numbers: {args.out}")
    return doc


# ---------------------------------------------------------------------------------------
# Offline self-test: the training function on a synthetic dataset, then the whole pipeline
# against a stub of the API. A few dozen rows, a few steps; well under two minutes on CPU.

POS = ["good", "great", "lovely", "excellent", "wonderful", "fine", "happy", "superb"]
NEG = ["bad", "awful", "poor", "terrible", "horrible", "sad", "dull", "broken"]


def synthetic_rows(n_train=32, n_val=8, n_test=8):
    rows = []
    for i in range(n_train + n_val + n_test):
        label = "pos" if i % 2 == 0 else "neg"
        words = POS if label == "pos" else NEG
        a = f"the film was {words[i % 8]} and {words[(i * 3 + 1) % 8]}"
        b = None if i % 3 else f"a {words[(i + 5) % 8]} story told in a way that goes on and on for a long while"
        split = "train" if i < n_train else "validation" if i < n_train + n_val else "test"
        rows.append({"text_a": a, "text_b": b, "target": {"class": label}, "split": split})
    return rows


def self_test(model_dir, threads):
    import http.server
    import tempfile

    t0 = time.time()
    # Truncation as tokenize.rs (pieces are stand-ins: 101 = [CLS], 102 = [SEP]).
    assert build_pair(range(10), None, 5, 101, 102) == ([101, 0, 1, 2, 102], [0] * 5)
    ids, types = build_pair(range(10), range(20, 30), 8, 101, 102)  # room 5, equal: a keeps 3
    assert ids == [101, 0, 1, 2, 102, 20, 21, 102] and types == [0] * 5 + [1] * 3, ids
    ids, _ = build_pair(range(8), range(20, 30), 8, 101, 102)  # b longer: a still keeps 3
    assert ids == [101, 0, 1, 2, 102, 20, 21, 102], ids
    ids, _ = build_pair(range(2), range(20, 30), 8, 101, 102)  # only b truncated
    assert ids == [101, 0, 1, 102, 20, 21, 22, 102], ids
    assert total_steps({"batch_size": 8, "epochs": 2.5, "max_steps": None}, 33) == 13
    assert total_steps({"batch_size": 8, "epochs": 3.0, "max_steps": 7}, 33) == 7
    assert learning_rate(1.0, 0, 10, 2) == 0.0 and learning_rate(1.0, 1, 10, 2) == 0.5 and learning_rate(1.0, 2, 10, 2) == 1.0
    assert learning_rate(1.0, 6, 10, 2) == 0.5 and learning_rate(1.0, 10, 10, 2) == 0.0
    enc = Encoder(model_dir)
    ids, types = enc.encode("Hello world, this is a longer first sentence.", "and a second one", 10)
    assert len(ids) == 10 and ids[0] == enc.cls and ids[-1] == enc.sep and types[-1] == 1, (ids, types)

    labels = ["neg", "pos"]
    rows = synthetic_rows()
    data = encode_rows(enc, rows, labels, 24)
    assert [len(data[s]) for s in ("train", "validation", "test")] == [32, 8, 8]
    assert max(len(x[0]) for x in data["train"]) == 24  # the pair rows were truncated
    training = {
        **TRAINING_DEFAULTS,
        **{"batch_size": 8, "epochs": 1.5, "max_seq_len": 24, "eval_every": 2, "warmup_ratio": 0.1},
        **{"learning_rate": 5e-3, "weight_decay": 0.01, "lora_dropout": 0.05},
    }
    lora = train_run(model_dir, data, labels, training, "lora", 2, 7)
    assert lora["total_steps"] == 6 and lora["warmup_steps"] == 1, lora
    assert [e["step"] for e in lora["validations"]] == [2, 4, 6] and all(e["eligible"] for e in lora["validations"])
    best = max(lora["validations"], key=lambda e: (e["accuracy"], -e["step"]))
    assert lora["best_step"] == best["step"] and lora["validation_accuracy"] == best["accuracy"], lora
    assert 0.0 <= lora["test_accuracy"] <= 1.0

    ada_training = {**training, "max_steps": 10, "target_modules": ["query", "value", "output.dense"]}
    summary = {"allocator": {"schedule": {"total_step": 10, "tinit": 2, "tfinal": 3, "delta_t": 1, "init_budget": 3 * 24, "target_budget": 2 * 24}, "beta1": 0.85, "beta2": 0.85, "orth_reg_weight": 0.5}}
    ada = train_run(model_dir, data, labels, ada_training, "adalora", 2, 11, {"method": "adalora"}, summary)
    # "output.dense" also matches attention.output.dense: 6 query + 6 value + 12 = 24.
    assert ada["adapted_modules"] == 24, ada["adapted_modules"]
    assert ada["final_rank_total"] == 2 * 24, ada["final_ranks"]  # target budget after the final allocation
    assert [e["eligible"] for e in ada["validations"]] == [False, False, False, True, True], ada["validations"]
    assert ada["best_step"] >= 7, ada
    log(f"self-test: training function ok (lora test acc {lora['test_accuracy']:.3f}, adalora {ada['test_accuracy']:.3f}), {time.time() - t0:.0f} s")

    # The pipeline against a stub API: 1 dataset x {lora, adalora, salientlora} x b2 x seeds 1, 2.
    did = "00000000-0000-0000-0000-0000000000d1"
    study_training = {**training, "max_steps": 6, "eval_every": 2}
    runs, grid = {}, []
    for m in ("lora", "adalora", "salientlora"):
        cell = {"dataset_id": did, "model": MODEL_ID, "method": m, "budget": 2, "runs": []}
        for seed in (1, 2):
            rid = f"00000000-0000-0000-0000-{len(runs) + 1:012d}"
            status = "failed" if (m, seed) == ("adalora", 2) else "succeeded"
            cell["runs"].append({"id": rid, "seed": seed, "status": status})
            method_cfg = {"method": m} if m != "adalora" else {"method": m, **ADALORA_DEFAULTS}
            k = 12
            summ = {"total_steps": 6, "best_step": 6, "train_examples": 32}
            if m == "adalora":
                summ["allocator"] = {"schedule": {"total_step": 6, "tinit": 1, "tfinal": 2, "delta_t": 1, "init_budget": 3 * k, "target_budget": 2 * k}, "beta1": 0.85, "beta2": 0.85, "orth_reg_weight": 0.5}
            evals = [{"split": "test", "metrics": {"accuracy": 0.5 + 0.125 * seed}}, {"split": "validation", "metrics": {"accuracy": 0.75}}]
            runs[rid] = {"run": {"id": rid, "seed": seed, "budget": 2, "method": m, "status": status, "config": {"training": study_training, "method": method_cfg}, "summary": summ}, "evaluations": evals}
        grid.append(cell)
    study = {"study": {"id": "s1", "name": "synthetic"}, "progress": {"done": 6, "total": 6, "queued": 0, "running": 0}, "grid": grid, "cells": []}
    dataset = {"id": did, "name": "synthetic-sentiment", "task_family": "classification", "label_set": labels, "splits": {"train": 32, "validation": 8, "test": 8}}
    body_rows = "".join(json.dumps(r) + "\n" for r in rows)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.headers.get("Authorization") != "Bearer tok":
                self.send_response(401)
                self.end_headers()
                return
            p = self.path
            if p == "/api/v1/studies/s1":
                body = json.dumps(study)
            elif p == f"/api/v1/datasets/{did}":
                body = json.dumps({"dataset": dataset})
            elif p == f"/api/v1/datasets/{did}/rows":
                body = body_rows
            elif p.startswith("/api/v1/runs/") and p.split("/")[-1] in runs:
                body = json.dumps(runs[p.split("/")[-1]])
            else:
                self.send_response(404)
                self.end_headers()
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "quality.json")
            args = argparse.Namespace(
                study="s1", model=model_dir, out=out, device="cpu", threads=threads, methods=None, budgets=None, seeds=None, resume=False, verbose=False
            )
            doc = compare(Api(f"http://127.0.0.1:{server.server_port}", "tok"), args)
            with open(out) as f:
                saved = json.load(f)
            assert len(saved["runs"]) == 3 and all(r["peft"] for r in saved["runs"]), saved["runs"]
            cells = {(c["method"], c["budget"]): c for c in saved["cells"]}
            assert set(cells) == {("lora", 2), ("adalora", 2)}, cells
            lc = cells[("lora", 2)]
            assert lc["rankfit"]["n"] == 2 and abs(lc["rankfit"]["mean"] - 0.6875) < 1e-12 and abs(lc["rankfit"]["std"] - 0.125 / math.sqrt(2)) < 1e-12
            assert cells[("adalora", 2)]["peft"]["n"] == 1 and cells[("adalora", 2)]["within_one_peft_std"] is None
            reasons = " ".join(s["reason"] for s in saved["skipped"])
            assert "salientlora" in reasons and "run status failed" in reasons, saved["skipped"]
            assert doc["cells"] == saved["cells"]
            # --resume trains nothing again.
            args.resume = True
            t1 = time.time()
            compare(Api(f"http://127.0.0.1:{server.server_port}", "tok"), args)
            assert time.time() - t1 < 10
    finally:
        server.shutdown()
    log(f"self-test: passed in {time.time() - t0:.0f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="rankfit server (the API is under /api/v1)")
    ap.add_argument("--token", default=os.environ.get("RANKFIT_TOKEN"), help="API token (default: $RANKFIT_TOKEN)")
    ap.add_argument("--study", help="study id")
    assets = os.environ.get("RANKFIT_ASSETS_DIR", os.path.expanduser("~/.cache/rankfit/assets"))
    ap.add_argument("--model", default=os.path.join(assets, "models", MODEL_ID), help="all-MiniLM-L6-v2 directory")
    ap.add_argument("--out", default="quality.json", help="JSON with every per-run number")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--methods", help="comma list: only these methods")
    ap.add_argument("--budgets", help="comma list: only these budgets")
    ap.add_argument("--seeds", help="comma list: only these seeds")
    ap.add_argument("--resume", action="store_true", help="keep the runs already compared in --out")
    ap.add_argument("--verbose", action="store_true", help="log training progress")
    ap.add_argument("--self-test", action="store_true", help="offline check on a synthetic dataset and a stub API")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.self_test:
        self_test(args.model, args.threads)
        return
    if not args.token or not args.study:
        ap.error("--token (or $RANKFIT_TOKEN) and --study are required")
    compare(Api(args.url, args.token), args)


if __name__ == "__main__":
    main()
