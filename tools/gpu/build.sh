#!/usr/bin/env bash
# Builds what tools/gpu/check.sh runs on the GPU machine (which has no Rust toolchain) into
# .gpu/, the one folder that travels there as a carried path (64 MiB at most in all):
#
#   bash tools/gpu/build.sh            # --release --features cuda (the GPU build)
#   bash tools/gpu/build.sh --cpu      # the same binaries without cuda (to rehearse the layout)
#
# .gpu/bin.tar.xz   rankfit, gpu_check, train_bench (stripped, xz-compressed: the three
#                   binaries together are larger than the carry limit uncompressed)
# .gpu/BUILD_INFO.json  git commit, rustc, features, sizes
# .gpu/minilm-tokenizer.json  MiniLM's tokenizer (the random checkpoints need it for training)
#
# The cuda build has its own target folder (RANKFIT_CUDA_TARGET_DIR, default
# ~/.cache/rankfit/target-cuda) so that it does not invalidate the CPU build's.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
FEATURES=(--features rankfit-cli/cuda,rankfit-train/cuda)
TARGET="${RANKFIT_CUDA_TARGET_DIR:-$HOME/.cache/rankfit/target-cuda}"
if [ "${1:-}" = "--cpu" ]; then FEATURES=(); TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"; fi
cargo build --release --locked -p rankfit-cli -p rankfit-train "${FEATURES[@]}" --bin rankfit --bin gpu_check --bin train_bench \
  --target-dir "$TARGET"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" .gpu
for b in rankfit gpu_check train_bench; do
  cp "$TARGET/release/$b" "$STAGE/bin/$b"
  strip "$STAGE/bin/$b"
done
python3 - "$STAGE/bin" "${#FEATURES[@]}" >"$STAGE/bin/BUILD_INFO.json" <<'PY'
import json, os, subprocess, sys
d = sys.argv[1]
run = lambda *c: subprocess.run(c, capture_output=True, text=True).stdout.strip()
print(json.dumps({
    "commit": run("git", "rev-parse", "HEAD"),
    "dirty": bool(run("git", "status", "--porcelain", "--untracked-files=no")),
    "rustc": run("rustc", "--version"),
    "features": ["cuda"] if sys.argv[2] != "0" else [],
    "bytes": {b: os.path.getsize(os.path.join(d, b)) for b in sorted(os.listdir(d)) if b != "BUILD_INFO.json"},
}, indent=1))
PY
tar cJf .gpu/bin.tar.xz -C "$STAGE" bin
cp "$STAGE/bin/BUILD_INFO.json" .gpu/BUILD_INFO.json
cp "${RANKFIT_ASSETS_DIR:-$HOME/.cache/rankfit/assets}/models/all-minilm-l6-v2/tokenizer.json" .gpu/minilm-tokenizer.json
cat .gpu/BUILD_INFO.json
du -b .gpu/* | awk '{ total += $1; print } END { printf "total %.1f MiB (the carry limit is 64 MiB with the working tree)\n", total / 1048576 }'
