#!/usr/bin/env bash
# The device check: every question about rankfit's GPU path answered in one run.
#
#   bash tools/gpu/check.sh OUT [--cpu] [--tiny]
#
# On the GPU machine (CUDA + PyTorch + transformers + PEFT in python3, no network, no Rust):
# the binaries come prebuilt in .gpu/bin.tar.xz (tools/gpu/build.sh makes it here; .gpu
# travels as a carried path). With --cpu the same script runs on the CPU backend against the
# local PyTorch (the rehearsal CI runs with --tiny, so the script cannot rot).
#
# Steps, each writing JSON into OUT (and all output into OUT/check.log):
#   1. env.json        nvidia-smi, python/torch/transformers/peft versions, the binaries' build
#   2. checkpoints     seeded random-initialised MiniLM and SmolLM2 from the committed configs
#   3. parity.json     rankfit vs PyTorch on the same device, checkpoint and inputs: logits of
#                      MiniLM (+ head) and SmolLM2, one LoRA and one AdaLoRA step's loss and
#                      every adapter gradient (tolerances in tools/gpu/parity.py)
#   4. train.json      a real training run of each of the five methods on the synthetic task,
#      peft_load.json  and PEFT loading each export with matching logits
#   5. worker.json     `rankfit serve` + `rankfit worker` on the device's managed PostgreSQL:
#                      a run uploaded, claimed, trained and finished (skipped, saying so,
#                      when initdb is missing)
#   6. bench_*.json    train_bench next to PyTorch + PEFT for both workloads (+ a larger batch
#                      on the GPU): ratios, tokens/s, peak memory
# Steps that would start after RANKFIT_CHECK_BUDGET_S seconds (default 420) are skipped and
# reported as such, so the check fits one device call; the most important ones run first.
#   summary.json       every step's status, seconds and results, and the bench table (with
#                      an estimate of each side's share of the chip's f32 peak); the step
#                      files go into details.tar.gz. Exit status 0 only if every step passed.
#
# Environment: RANKFIT_PYTHON (default python3), RANKFIT_GPU_BIN (a folder with gpu_check,
# train_bench and rankfit; default: unpacked from .gpu/bin.tar.xz, else built with cargo),
# RANKFIT_ASSETS_DIR (for MiniLM's tokenizer.json when .gpu/ has none).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:?usage: tools/gpu/check.sh OUT [--cpu] [--tiny]}"
shift
DEVICE=cuda
TINY=0
for a in "$@"; do
  case "$a" in
    --cpu) DEVICE=cpu ;;
    --tiny) TINY=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
# Binaries built elsewhere find the checkout's files (tools/, static/) from its root.
cd "$ROOT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rankfit-gpu-check.XXXXXX")"
LOG="$OUT/check.log"
: >"$LOG"
PY="${RANKFIT_PYTHON:-python3}"
# Steps that would start after this many seconds are skipped (and reported), so that the
# whole check ends inside one device call (10 minutes at most).
BUDGET_S="${RANKFIT_CHECK_BUDGET_S:-420}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
STEPS_JSON="$WORK/steps.jsonl"
: >"$STEPS_JSON"
FAILED=0

log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG"; }

# step NAME COMMAND...: runs it with output into the log, records status and seconds.
step() {
  local name="$1"; shift
  local t0=$SECONDS status
  if [ "$SECONDS" -ge "$BUDGET_S" ]; then
    log "== $name: skipped (the check's ${BUDGET_S} s budget is spent)"
    printf '{"step":"%s","status":-1,"seconds":0,"skipped":true}\n' "$name" >>"$STEPS_JSON"
    FAILED=1
    return 1
  fi
  log "== $name"
  "$@" >>"$LOG" 2>&1
  status=$?
  local secs=$((SECONDS - t0))
  if [ "$status" -eq 0 ]; then log "   $name: ok (${secs} s)"; else log "   $name: FAILED (exit $status, ${secs} s)"; FAILED=1; fi
  printf '{"step":"%s","status":%d,"seconds":%d}\n' "$name" "$status" "$secs" >>"$STEPS_JSON"
  return "$status"
}

# --- binaries -----------------------------------------------------------------------------
BIN="${RANKFIT_GPU_BIN:-}"
if [ -z "$BIN" ] && [ -f "$ROOT/.gpu/bin.tar.xz" ]; then
  tar xJf "$ROOT/.gpu/bin.tar.xz" -C "$WORK" && BIN="$WORK/bin"
fi
if [ -z "$BIN" ]; then
  if command -v cargo >/dev/null 2>&1; then
    FEATURES=()
    [ "$DEVICE" = cuda ] && FEATURES=(--features rankfit-cli/cuda,rankfit-train/cuda)
    log "no prebuilt binaries: building them with cargo (release)"
    (cd "$ROOT" && cargo build --release --locked -p rankfit-cli -p rankfit-train "${FEATURES[@]}" \
      --bin rankfit --bin gpu_check --bin train_bench) >>"$LOG" 2>&1 || { log "cargo build failed"; exit 1; }
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
  else
    log "no binaries: run tools/gpu/build.sh where Rust is (it writes .gpu/bin.tar.xz) and carry .gpu"
    exit 1
  fi
fi
for b in gpu_check train_bench rankfit; do
  [ -x "$BIN/$b" ] || { log "missing $BIN/$b"; exit 1; }
done
TOKENIZER="$ROOT/.gpu/minilm-tokenizer.json"
[ -f "$TOKENIZER" ] || TOKENIZER="${RANKFIT_ASSETS_DIR:-$HOME/.cache/rankfit/assets}/models/all-minilm-l6-v2/tokenizer.json"
[ -f "$TOKENIZER" ] || { log "MiniLM's tokenizer.json not found (.gpu/minilm-tokenizer.json or the assets dir)"; exit 1; }
log "device $DEVICE, binaries $BIN, python $PY, work dir $WORK, tiny=$TINY"

# --- 1. environment -----------------------------------------------------------------------
env_info() {
  {
    echo '{'
    if command -v nvidia-smi >/dev/null 2>&1; then
      printf '"nvidia_smi": %s,\n' "$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))')"
    else
      echo '"nvidia_smi": null,'
    fi
    printf '"python": %s,\n' "$("$PY" -c 'import json, platform, torch, transformers, peft; print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(), "transformers": transformers.__version__, "peft": peft.__version__}))')"
    printf '"gpu_check": %s,\n' "$("$BIN/gpu_check" info --device "$DEVICE")"
    printf '"build": %s,\n' "$(cat "$BIN/BUILD_INFO.json" 2>/dev/null || echo null)"
    printf '"cpu": %s\n' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))')"
    echo '}'
  } >"$OUT/env.json"
  cat "$OUT/env.json"
  "$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$OUT/env.json"
}
step env env_info

# --- 2. random checkpoints ----------------------------------------------------------------
CK="$WORK/checkpoints"
TINY_FLAG=()
[ "$TINY" = 1 ] && TINY_FLAG=(--tiny)
step checkpoints "$PY" "$ROOT/tools/gpu/make_checkpoints.py" "$CK" "${TINY_FLAG[@]}" --tokenizer "$TOKENIZER" || { log "no checkpoints: stopping"; exit 1; }

# --- 3. parity ----------------------------------------------------------------------------
parity() {
  "$BIN/gpu_check" parity --device "$DEVICE" --checkpoints "$CK" --out "$WORK/parity" || return 1
  local tol=()
  # Different f32 kernels (cuBLAS vs cubecl's matmul, reduction orders) on the GPU.
  [ "$DEVICE" = cuda ] && tol=(--tol-logits 1e-3 --tol-grads 1e-2)
  "$PY" "$ROOT/tools/gpu/parity.py" --checkpoints "$CK" --cases "$WORK/parity" --device "$DEVICE" "${tol[@]}" >"$OUT/parity.json"
  local s=$?
  cat "$OUT/parity.json"
  return $s
}
step parity parity

# --- 4. every method's training run, loaded by PEFT ---------------------------------------
train_runs() {
  local steps=40
  [ "$TINY" = 1 ] && steps=16
  "$BIN/gpu_check" train --device "$DEVICE" --checkpoints "$CK" --out "$WORK/train" --steps "$steps" >"$OUT/train.json" || return 1
  cat "$OUT/train.json"
  "$PY" - "$OUT/train.json" <<'PY' || return 1
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
bad = [r["method"] for r in runs if not r["within_budget"] or r["steps"] == 0 or not (r["loss_tail"] < r["loss_head"])]
assert len(runs) == 5 and not bad, f"runs that trained no steps, did not lower the loss or ended over budget: {bad}"
PY
  local tol=1e-4 status=0 m
  [ "$DEVICE" = cuda ] && tol=1e-3
  echo '[' >"$OUT/peft_load.json"
  for m in lora adalora salientlora alora rolora; do
    [ "$m" = lora ] || echo ',' >>"$OUT/peft_load.json"
    printf '{"method": "%s", "report": ' "$m" >>"$OUT/peft_load.json"
    "$PY" "$ROOT/tools/reference/check_peft_load.py" "$WORK/train/$m/export" --model "$CK/minilm" --tol "$tol" >>"$OUT/peft_load.json" || status=1
    echo '}' >>"$OUT/peft_load.json"
  done
  echo ']' >>"$OUT/peft_load.json"
  cat "$OUT/peft_load.json"
  return $status
}
step train train_runs

# --- 5. a worker claims a run from PostgreSQL on this machine -----------------------------
worker_claim() {
  if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    echo '{"skipped": "initdb is not installed on this machine: no managed PostgreSQL, so no worker check"}' >"$OUT/worker.json"
    cat "$OUT/worker.json"
    return 0
  fi
  local data="$WORK/platform" port serve_pid worker_pid token status=1
  mkdir -p "$data"
  port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  export RANKFIT_DATA_DIR="$data" RANKFIT_ASSETS_DIR="$WORK/train/assets" RANKFIT_URL="http://127.0.0.1:$port"
  unset DATABASE_URL RANKFIT_ARTIFACTS
  "$BIN/rankfit" serve --addr "127.0.0.1:$port" >"$WORK/serve.log" 2>&1 &
  serve_pid=$!
  # (python rather than curl: the GPU machine may not have curl)
  for _ in $(seq 1 240); do
    "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$RANKFIT_URL/healthz" >/dev/null 2>&1 && break
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.5
  done
  if token="$("$BIN/rankfit" team create gpu-check --admin | awk '/^token /{print $2}')" && [ -n "$token" ]; then
    export RANKFIT_TOKEN="$token"
    RANKFIT_DEVICE="$DEVICE" "$BIN/rankfit" worker --lease-secs 30 >"$WORK/worker.log" 2>&1 &
    worker_pid=$!
    "$PY" - "$WORK/sentiment.csv" <<'PY'
import csv, sys
good, bad = ["wonderful", "great", "superb", "lovely"], ["terrible", "awful", "boring", "dreadful"]
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["text", "label", "split"])
    for i in range(96):
        pos = i % 2 == 0
        adj = (good if pos else bad)[i // 2 % 4]
        split = ["train", "train", "validation", "test"][i // 2 % 4]
        w.writerow([f"The show number {i} was {adj}.", "positive" if pos else "negative", split])
PY
    if "$BIN/rankfit" datasets upload "$WORK/sentiment.csv" --name gpu-check-sentiment &&
      "$BIN/rankfit" runs create --dataset gpu-check-sentiment --method lora --budget 4 \
        --training '{"max_steps": 20, "batch_size": 16, "max_seq_len": 32}' --watch; then
      "$BIN/rankfit" runs list --json >"$WORK/runs.json" && "$BIN/rankfit" fleet workers --json >"$WORK/workers.json" &&
        "$PY" - "$WORK/runs.json" "$WORK/workers.json" "$OUT/worker.json" "$DEVICE" <<'PY' && status=0
import json, sys
runs, workers = json.load(open(sys.argv[1]))["runs"], json.load(open(sys.argv[2]))["workers"]
report = {"runs": [{k: r.get(k) for k in ("id", "method", "status", "metrics", "error")} for r in runs],
          "workers": [{k: w.get(k) for k in ("name", "state", "device", "features", "claims", "succeeded", "failed")} for w in workers]}
json.dump(report, open(sys.argv[3], "w"), indent=1)
print(json.dumps(report, indent=1))
states = [r["status"] for r in runs]
assert states == ["succeeded"], f"run states {states}"
assert len(workers) == 1 and workers[0]["succeeded"] == 1, f"workers {workers}"
assert workers[0]["device"].startswith(sys.argv[4]), f"the worker trained on {workers[0]['device']}, not {sys.argv[4]}"
PY
    fi
    kill -TERM "$worker_pid" 2>/dev/null; wait "$worker_pid" 2>/dev/null
  else
    echo "could not create a team"
  fi
  kill -TERM "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null
  local pidfile="$data/pg/pgdata/postmaster.pid" pg
  if [ -f "$pidfile" ] && pg="$(head -n1 "$pidfile")" && kill -0 "$pg" 2>/dev/null; then
    kill -INT "$pg"
    for _ in $(seq 1 40); do kill -0 "$pg" 2>/dev/null || break; sleep 0.5; done
  fi
  if [ "$status" -ne 0 ]; then
    echo "--- serve.log"; tail -n 30 "$WORK/serve.log"; echo "--- worker.log"; tail -n 30 "$WORK/worker.log" 2>/dev/null
  fi
  return $status
}
step worker worker_claim

# --- 6. speed next to PyTorch + PEFT ------------------------------------------------------
bench() {
  local name="$1" model="$2"; shift 2
  RANKFIT_PYTHON="$PY" "$BIN/train_bench" --device "$DEVICE" --model "$model" --checkpoint "$CK/$model" --peft \
    --json "$OUT/bench_$name.json" "$@"
}
if [ "$TINY" = 1 ]; then
  step bench_minilm bench minilm minilm --small --methods lora,adalora
  step bench_smollm2 bench smollm2 smollm2 --small --methods lora,adalora
else
  step bench_minilm bench minilm minilm --steps 5
  step bench_smollm2 bench smollm2 smollm2 --steps 5 --methods lora,adalora
  if [ "$DEVICE" = cuda ]; then
    # Batches that fill an H200 better than the CPU-sized defaults.
    step bench_minilm_b256 bench minilm_b256 minilm --steps 5 --batch 256 --methods lora,adalora
    step bench_smollm2_b32 bench smollm2_b32 smollm2 --steps 5 --batch 32 --methods lora,adalora
  fi
fi

# --- summary ------------------------------------------------------------------------------
# The device machine returns at most 8 files: one summary (every step's result and the bench
# table), the log, and the step files in one archive.
"$PY" "$ROOT/tools/gpu/summarize.py" "$OUT" "$STEPS_JSON" "$CK" "$DEVICE" "$TINY" | tee -a "$LOG"
(cd "$OUT" && tar czf details.tar.gz --remove-files env.json parity.json train.json peft_load.json worker.json bench_*.json 2>/dev/null)
rm -rf "$WORK"
log "done: $OUT/summary.json ($(ls "$OUT" | tr '\n' ' '))"
exit "$FAILED"
