#!/usr/bin/env bash
# Browser end-to-end tests of rankfit's pages: headless Debian Chromium driven by
# playwright-core against a real `rankfit serve` + `rankfit worker` on a fresh data dir
# (managed PostgreSQL) on a free loopback port. Screenshots of every page go to
# target/e2e-screenshots/. Prints "N passed, N failed" last; exits non-zero on failure.
#
# Environment: CARGO_TARGET_DIR (where cargo builds; default target/), RANKFIT_ASSETS_DIR
# (model/data assets for the worker; default ~/.cache/rankfit/assets), E2E_RUN_TIMEOUT_S
# (how long a run may take to reach a terminal state; default 900), E2E_CARGO_PROFILE
# (dev or release; default dev), RANKFIT_BIN (use this binary instead of building one).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
E2E="$ROOT/tests/e2e"
cd "$ROOT"

OUT="$ROOT/target"
SHOTS="$OUT/e2e-screenshots"
DATA="$OUT/e2e-data"
LOGS="$OUT/e2e-logs"
PROFILE="${E2E_CARGO_PROFILE:-dev}"
export RANKFIT_ASSETS_DIR="${RANKFIT_ASSETS_DIR:-$HOME/.cache/rankfit/assets}"
SERVE_PID=""
WORKER_PID=""

fail() { echo "e2e: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

stop_pid() { # pid, name: SIGTERM, wait up to 30 s, then SIGKILL
  local pid="$1" name="$2"
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  echo "e2e: $name ($pid) did not stop; killing it" >&2
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

cleanup() {
  stop_pid "$WORKER_PID" worker
  stop_pid "$SERVE_PID" server
  # The server stops the managed PostgreSQL it started; if it was killed, stop it here.
  local pidfile="$DATA/pg/pgdata/postmaster.pid"
  if [ -f "$pidfile" ]; then
    local pg; pg="$(head -n1 "$pidfile")"
    if [ -n "$pg" ] && kill -0 "$pg" 2>/dev/null; then
      kill -INT "$pg" 2>/dev/null
      for _ in $(seq 1 40); do kill -0 "$pg" 2>/dev/null || break; sleep 0.5; done
    fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- what the test needs: Chromium from Debian, playwright-core from npm (lockfile), the binary
if [ ! -x /usr/bin/chromium ]; then
  echo "e2e: installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q chromium chromium-driver; } || fail "could not install chromium"
fi
command -v npm >/dev/null 2>&1 || {
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q nodejs npm; } || fail "could not install node/npm"
}
if [ ! -f "$E2E/node_modules/playwright-core/package.json" ] || ! cmp -s "$E2E/package-lock.json" "$E2E/node_modules/.package-lock.json" 2>/dev/null; then
  (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci failed"
fi

if [ -n "${RANKFIT_BIN:-}" ]; then
  BIN="$RANKFIT_BIN" # a binary built from this checkout already
else
  echo "e2e: building rankfit ($PROFILE)"
  cargo build -q --locked --profile "$PROFILE" -p rankfit-cli --bin rankfit || fail "cargo build failed"
  TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
  case "$PROFILE" in dev) BIN="$TARGET_DIR/debug/rankfit" ;; *) BIN="$TARGET_DIR/$PROFILE/rankfit" ;; esac
fi
[ -x "$BIN" ] || fail "no binary at $BIN"

# ---- a fresh data dir (managed PostgreSQL starts itself there), a free port
rm -rf "$DATA" "$SHOTS" "$LOGS"
mkdir -p "$DATA" "$SHOTS" "$LOGS"
export RANKFIT_DATA_DIR="$DATA"
unset DATABASE_URL RANKFIT_ARTIFACTS
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

"$BIN" serve --addr "127.0.0.1:$PORT" >"$LOGS/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 240); do
  curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
  kill -0 "$SERVE_PID" 2>/dev/null || { tail -n 30 "$LOGS/serve.log" >&2; fail "server exited during start-up"; }
  sleep 0.5
done
curl -fsS "$BASE/healthz" >/dev/null 2>&1 || { tail -n 30 "$LOGS/serve.log" >&2; fail "server did not become healthy"; }

TOKEN="$("$BIN" team create e2e --admin 2>>"$LOGS/team.log" | awk '/^token /{print $2}')"
[ -n "$TOKEN" ] || { cat "$LOGS/team.log" >&2; fail "could not create the e2e team"; }

# A second team, and the public benchmark suite both can run on (small: 60 examples a task).
RIVAL_TOKEN="$("$BIN" team create e2e-rivals 2>>"$LOGS/team.log" | awk '/^token /{print $2}')"
[ -n "$RIVAL_TOKEN" ] || { cat "$LOGS/team.log" >&2; fail "could not create the second team"; }
"$BIN" benchmarks install --max-examples 60 >"$LOGS/benchmarks.log" 2>&1 || { cat "$LOGS/benchmarks.log" >&2; fail "benchmarks install failed"; }

"$BIN" worker --lease-secs 30 >"$LOGS/worker.log" 2>&1 &
WORKER_PID=$!

echo "e2e: server on $BASE (pid $SERVE_PID), worker pid $WORKER_PID, logs in $LOGS"
SUMMARY="$OUT/e2e-summary.txt"
rm -f "$SUMMARY"
BASE_URL="$BASE" RANKFIT_TOKEN="$TOKEN" RIVAL_TOKEN="$RIVAL_TOKEN" SCREENSHOT_DIR="$SHOTS" PROFILE_DIR="$OUT/e2e-chromium-profile" E2E_SUMMARY_FILE="$SUMMARY" \
  node "$E2E/e2e.mjs"
STATUS=$?
if [ "$STATUS" -ne 0 ]; then
  echo "---- last lines of the server log" >&2; tail -n 20 "$LOGS/serve.log" >&2
  echo "---- last lines of the worker log" >&2; tail -n 20 "$LOGS/worker.log" >&2
fi
cleanup
trap - EXIT
# The summary is the last line printed.
if [ -s "$SUMMARY" ]; then cat "$SUMMARY"; else echo "0 passed, 1 failed"; STATUS=1; fi
exit "$STATUS"
