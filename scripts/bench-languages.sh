#!/usr/bin/env bash
# Benchmark: components from other toolchains, and instance reuse, against `wasmtime serve`
# (wasmtime-cli 48.0.8) with the same reuse settings, in one run, on loopback with wrk.
#
#   scripts/bench-languages.sh [DURATION_S=6] [CONNECTIONS=16]
#
# Rows: a Python hello (componentize-py from PyPI), a JavaScript hello (componentize-js from
# npm), both built here into .cache/languages/, and guests/hello-p3 (WASI 0.3). Each is
# measured four ways: edge and wasmtime serve with a fresh instance per request, and both with
# reuse (128 requests per instance; 16 at once for the 0.3 component). A third column runs
# `wasmtime serve -W timeout=60s`: the same epoch checks the node compiles into every guest so
# that a request can be stopped at its time limit (plain `wasmtime serve` has none and cannot
# stop a guest in a loop), the like-for-like reference for guest-bound rows. Needs network to
# PyPI and npm the first time; installs wasmtime-cli like scripts/bench-hello.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-6}
connections=${2:-16}

wasmtime=.cache/wasmtime-48.0.8/bin/wasmtime
if [[ ! -x $wasmtime ]]; then
  echo "bench: installing wasmtime-cli 48.0.8 into .cache/wasmtime-48.0.8 (once)"
  cargo install wasmtime-cli@48.0.8 --locked --root .cache/wasmtime-48.0.8
fi
scripts/setup.sh >/dev/null

# --- the components ---
source scripts/lib/language-hellos.sh
source scripts/lib/optimized.sh
source scripts/lib/freezes.sh
source scripts/lib/wrk.sh

# --- servers ---
source scripts/lib/bench-servers.sh
start_freeze_canary "$work"
pids+=("${canary_pids[@]}")

# EDGE_CONFIG=FILE runs the node with that config (e.g. a larger [pool] keep_resident_kib).
EDGE_LOG=warn target/release/edge serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --data-dir "$work/edge" ${EDGE_CONFIG:+--config "$EDGE_CONFIG"} >"$work/edge.out" 2>"$work/edge.err" &
pids+=($!)
for _ in $(seq 1 300); do grep -q "admin API" "$work/edge.out" 2>/dev/null && break; sleep 0.1; done
admin=$(sed -n 's/^edge: admin API listening on //p' "$work/edge.out")
data=$(sed -n 's/^edge: data plane listening on //p' "$work/edge.out")

# deploy NAME FILE [flags]: deploys, prints how long deploy-to-serving took, and returns once
# the app runs optimized code
deploy() {
  local name=$1 file=$2
  shift 2
  local started
  started=$(date +%s.%N)
  target/release/edge deploy "$name" "$file" --node "$admin" --data-dir "$work/edge" "$@" >/dev/null 2>&1
  wait_for_200 "$data/$name/bench"
  local took
  took=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
  # Big components serve first from baseline code while the optimizing compile runs on a
  # core: measure once the optimized code serves.
  wait_until_optimized "$admin" "$work/edge" "$name"
  echo "$took"
}

# wasmtime_serve FILE REUSE CONCURRENT [OPTIONS...]: starts `wasmtime serve`, sets wasmtime_url
wasmtime_serve() {
  local port file=$1 reuse=$2 concurrent=$3
  shift 3
  port=$(free_port)
  "$wasmtime" serve -S cli,p3 "$@" --addr "127.0.0.1:$port" --max-instance-reuse-count "$reuse" \
    --max-instance-concurrent-reuse-count "$concurrent" "$file" >"$work/wasmtime-$port.out" 2>&1 &
  pids+=($!)
  wasmtime_pid=$!
  wasmtime_url="http://127.0.0.1:$port/bench"
  wait_for_200 "$wasmtime_url"
}


echo
echo "wrk -t1 -c$connections -d${duration}s, $(nproc) cores, $(uname -m); same run"
printf '%-10s %-14s %10s %10s %10s %10s %8s %12s %8s %10s\n' component reuse "edge rps" "p99 ms" \
  "wasmtime" "p99 ms" ratio "-W timeout" ratio "deploy s"
for row in "python $python_wasm 128 1" "js $js_wasm 128 1" "hello-p3 $p3_wasm 128 16"; do
  read -r name file reuse concurrent <<<"$row"
  for mode in off on; do
    if [[ $mode == off ]]; then
      flags=()
      w_reuse=1
      w_concurrent=1
    else
      flags=(--reuse "$reuse")
      [[ $concurrent -gt 1 ]] && flags+=(--reuse-concurrency "$concurrent")
      w_reuse=$reuse
      w_concurrent=$concurrent
    fi
    app="$name-$mode"
    deploy_s=$(deploy "$app" "$file" --route "/$app" "${flags[@]}")
    wasmtime_serve "$file" "$w_reuse" "$w_concurrent"
    plain_url=$wasmtime_url plain_pid=$wasmtime_pid
    wasmtime_serve "$file" "$w_reuse" "$w_concurrent" -W timeout=60s
    checked_url=$wasmtime_url checked_pid=$wasmtime_pid
    for url in "$data/$app/bench" "$plain_url" "$checked_url"; do
      wrk -t1 -c"$connections" -d2s "$url" >/dev/null
    done
    mark=$(freeze_mark)
    read -r e_rps _ e_p99 < <(wrk_measure "$data/$app/bench" "$connections" "$duration")
    read -r froze _ < <(freezes_since "$mark")
    [[ $froze -gt 0 ]] && e_p99="$e_p99*"
    mark=$(freeze_mark)
    read -r w_rps _ w_p99 < <(wrk_measure "$plain_url" "$connections" "$duration")
    read -r froze _ < <(freezes_since "$mark")
    [[ $froze -gt 0 ]] && w_p99="$w_p99*"
    read -r c_rps _ _ < <(wrk_measure "$checked_url" "$connections" "$duration")
    kill "$plain_pid" "$checked_pid" 2>/dev/null || true
    ratio=$(awk -v a="$e_rps" -v b="$w_rps" 'BEGIN { printf "%.2fx", a / b }')
    checked_ratio=$(awk -v a="$e_rps" -v b="$c_rps" 'BEGIN { printf "%.2fx", a / b }')
    printf '%-10s %-14s %10s %10s %10s %10s %8s %12s %8s %10s\n' "$name" "$mode ${flags[*]:-}" \
      "$e_rps" "$e_p99" "$w_rps" "$w_p99" "$ratio" "$c_rps" "$checked_ratio" "$deploy_s"
  done
done
echo "* a CPU froze for 20 ms or more during that measurement (scripts/lib/freeze_canary.py)"
freeze_summary
