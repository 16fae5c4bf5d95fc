#!/usr/bin/env python3
"""Random-initialised checkpoints of the MiniLM and SmolLM2 shapes, for the GPU check.

The real weights (87 MiB of MiniLM safetensors, the SmolLM2 GGUF) do not travel to the GPU
machine; speed does not depend on the weights, and parity can be checked on any of them. So
the check builds seeded random models from the committed config.json files with transformers
(its own initialisation), saved as safetensors, and both rankfit and PyTorch load the same
files:

    python3 tools/gpu/make_checkpoints.py OUT_DIR [--tiny] [--tokenizer MINILM_TOKENIZER_JSON]

writes OUT_DIR/minilm/ (BertModel: config.json, model.safetensors, and tokenizer.json when
given, which training needs) and OUT_DIR/smollm2/ (LlamaForCausalLM, tied embeddings).
--tiny keeps 2 layers of each (and a 4,096-token decoder vocabulary): the CPU rehearsal's size.
(`gpu_check train` lays the MiniLM directory out as the assets folder a training job reads.)
Prints a JSON summary.
"""
import argparse
import json
import os
import shutil

import torch
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--tokenizer", help="MiniLM's tokenizer.json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    summary = {}

    bert_cfg = BertConfig.from_json_file(os.path.join(CONFIGS, "all-minilm-l6-v2.json"))
    llama_cfg = LlamaConfig.from_json_file(os.path.join(CONFIGS, "smollm2-135m-instruct.json"))
    if args.tiny:
        bert_cfg.num_hidden_layers = 2
        llama_cfg.num_hidden_layers = 2
        llama_cfg.vocab_size = 4096
    for name, cfg, cls in [("minilm", bert_cfg, BertModel), ("smollm2", llama_cfg, LlamaForCausalLM)]:
        torch.manual_seed(args.seed)
        model = cls(cfg).float().eval()
        out = os.path.join(args.out, name)
        model.save_pretrained(out, safe_serialization=True)
        summary[name] = {"dir": out, "parameters": sum(p.numel() for p in model.parameters()), "layers": cfg.num_hidden_layers}
    if args.tokenizer:
        shutil.copy(args.tokenizer, os.path.join(args.out, "minilm", "tokenizer.json"))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
