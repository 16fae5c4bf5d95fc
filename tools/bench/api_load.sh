#!/usr/bin/env bash
# The REST API under wrk on loopback: a real `rankfit serve` on a fresh data dir (managed
# PostgreSQL), a team, a dataset and 50 queued runs; then 10 s of wrk per endpoint.
# Prints a table (requests/s, latency p50/p99, errors) and writes target/bench/api_load.json.
# Exits non-zero if any request failed or returned a non-2xx status.
#
#   bash tools/bench/api_load.sh            # builds the release binary first
#   RANKFIT_BIN=target/release/rankfit DURATION=10s CONNECTIONS=64 THREADS=2 bash tools/bench/api_load.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
OUT="$ROOT/target/bench"
DATA="$OUT/api-load-data"
mkdir -p "$OUT"
command -v wrk >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; }
if [ -z "${RANKFIT_BIN:-}" ]; then
  cargo build -q --release --locked -p rankfit-cli --bin rankfit
  RANKFIT_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/rankfit"
fi
rm -rf "$DATA"
export RANKFIT_DATA_DIR="$DATA"
unset DATABASE_URL
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
RUST_LOG=warn "$RANKFIT_BIN" serve --addr "127.0.0.1:$PORT" >"$OUT/api-load-serve.log" 2>&1 &
SERVE=$!
trap 'kill -TERM $SERVE 2>/dev/null; wait $SERVE 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
TOKEN="$("$RANKFIT_BIN" team create bench 2>/dev/null | awk '/^token /{print $2}')"
AUTH="Authorization: Bearer $TOKEN"
python3 - >"$OUT/api-load.jsonl" <<'PY'
import json
for i in range(500):
    print(json.dumps({"text": f"a {'wonderful' if i % 2 else 'dreadful'} film, number {i}", "label": "pos" if i % 2 else "neg"}))
PY
DS="$(curl -fsS -H "$AUTH" -F name=bench -F file=@"$OUT/api-load.jsonl" "$BASE/api/v1/datasets" | python3 -c 'import json,sys; print(json.load(sys.stdin)["dataset"]["id"])')"
RUN=""
for i in $(seq 1 50); do
  RUN="$(curl -fsS -H "$AUTH" -H 'Content-Type: application/json' \
    -d "{\"dataset_id\": \"$DS\", \"method\": \"lora\", \"budget\": 4, \"seed\": $i}" "$BASE/api/v1/runs" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["run"]["id"])')"
done

printf '%-44s %10s %10s %10s %8s\n' endpoint "req/s" "p50" "p99" errors
echo "[" >"$OUT/api_load.json"
FAILED=0
FIRST=1
for path in /healthz /api/v1/runs "/api/v1/runs/$RUN" "/api/v1/runs/$RUN/metrics" "/api/v1/leaderboards?dataset_id=$DS" /api/v1/models; do
  out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "$AUTH" "$BASE$path")"
  rps="$(awk '/^Requests\/sec:/{print $2}' <<<"$out")"
  p50="$(awk '$1=="50%"{print $2}' <<<"$out")"
  p99="$(awk '$1=="99%"{print $2}' <<<"$out")"
  total="$(awk '/requests in/{print $1}' <<<"$out")"
  non2xx="$(awk '/Non-2xx or 3xx responses:/{print $NF}' <<<"$out")"
  sock="$(awk '/Socket errors:/{gsub(",","");print $4+$6+$8+$10}' <<<"$out")"
  errors=$(( ${non2xx:-0} + ${sock:-0} ))
  [ "$errors" -eq 0 ] || FAILED=1
  label="${path//$RUN/{run\}}"; label="${label//$DS/{dataset\}}"
  printf '%-44s %10s %10s %10s %8s\n' "$label" "$rps" "$p50" "$p99" "$errors"
  [ $FIRST -eq 1 ] || echo "," >>"$OUT/api_load.json"
  FIRST=0
  printf '{"endpoint": "%s", "requests": %s, "requests_per_s": %s, "p50": "%s", "p99": "%s", "errors": %s}' \
    "$label" "${total:-0}" "${rps:-0}" "$p50" "$p99" "$errors" >>"$OUT/api_load.json"
done
echo "]" >>"$OUT/api_load.json"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $(nproc) cores; results in $OUT/api_load.json"
exit $FAILED
