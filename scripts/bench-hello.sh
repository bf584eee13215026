#!/usr/bin/env bash
# Benchmark: guests/hello served by `edge` and by `wasmtime serve` (wasmtime-cli 48.0.8, the
# same wasmtime version) on this machine, in one run, driven by the same load generator (wrk)
# with the same connections and duration on loopback. A second edge node runs with usage
# metering off ([metering] enabled = false), to price metering. Rounds alternate
# edge / edge without metering / wasmtime so all see the same machine state; the median round
# of each is compared.
#
#   scripts/bench-hello.sh [DURATION_S=6] [CONNECTIONS=16] [ROUNDS=3]
#
# Installs wasmtime-cli 48.0.8 into .cache/ with `cargo install` if missing (about 10 minutes
# once) and wrk from Debian's packages if missing (needs root/apt).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-6}
connections=${2:-16}
rounds=${3:-3}

wasmtime_root=.cache/wasmtime-48.0.8
wasmtime=$wasmtime_root/bin/wasmtime
if [[ ! -x $wasmtime ]]; then
  echo "bench: installing wasmtime-cli 48.0.8 into $wasmtime_root (once)"
  cargo install wasmtime-cli@48.0.8 --locked --root "$wasmtime_root"
fi
if ! command -v wrk >/dev/null; then
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    apt-get update -qq && apt-get install -y -qq wrk
  else
    echo "bench: wrk is needed: install it (Debian/Ubuntu: apt-get install wrk)" >&2
    exit 1
  fi
fi
scripts/setup.sh >/dev/null
source scripts/lib/freezes.sh
source scripts/lib/wrk.sh
# Error values capture a backtrace per error when RUST_BACKTRACE is set; the node turns that
# off for itself (RUST_LIB_BACKTRACE=0), so give the reference the same footing.
export RUST_LIB_BACKTRACE=0

hello=guests/target/wasm32-wasip2/release/hello.wasm
source scripts/lib/bench-servers.sh
start_freeze_canary "$work"
pids+=("${canary_pids[@]}")

# --- edge, with metering (the default) and without ---
# start_edge NAME [serve args...]: starts a node with hello deployed; sets hello_url
start_edge() {
  local name=$1
  shift
  EDGE_LOG=warn target/release/edge serve "$@" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --data-dir "$work/$name" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    grep -q "admin API listening" "$work/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  local admin data
  admin=$(sed -n 's/^edge: admin API listening on //p' "$work/$name.out")
  data=$(sed -n 's/^edge: data plane listening on //p' "$work/$name.out")
  target/release/edge deploy hello "$hello" --node "$admin" --data-dir "$work/$name" >/dev/null 2>&1
  hello_url="$data/hello/bench"
  wait_for_200 "$hello_url"
}
start_edge edge
edge_url=$hello_url
printf '[metering]\nenabled = false\n' >"$work/no-metering.toml"
start_edge nometer --config "$work/no-metering.toml"
nometer_url=$hello_url

# --- wasmtime serve (-S cli: hello uses std, which imports wasi:cli interfaces) ---
port=$(free_port)
"$wasmtime" serve -S cli --addr "127.0.0.1:$port" "$hello" >"$work/wasmtime.out" 2>&1 &
pids+=($!)
wasmtime_url="http://127.0.0.1:$port/hello/bench"
wait_for_200 "$wasmtime_url"


echo "warming up"
wrk -t1 -c"$connections" -d2s "$edge_url" >/dev/null
wrk -t1 -c"$connections" -d2s "$nometer_url" >/dev/null
wrk -t1 -c"$connections" -d2s "$wasmtime_url" >/dev/null

printf '%-6s %-10s %12s %10s %10s  %s\n' round server "requests/s" "p50 ms" "p99 ms" \
  "CPU froze (scripts/lib/freeze_canary.py)"
: >"$work/edge.results"
: >"$work/nometer.results"
: >"$work/wasmtime.results"
for round in $(seq 1 "$rounds"); do
  for server in edge nometer wasmtime; do
    url=$edge_url
    [[ $server == nometer ]] && url=$nometer_url
    [[ $server == wasmtime ]] && url=$wasmtime_url
    mark=$(freeze_mark)
    read -r rps p50 p99 < <(wrk_measure "$url" "$connections" "$duration")
    frozen=$(freezes_label "$mark")
    echo "$rps $p50 $p99" >>"$work/$server.results"
    printf '%-6s %-10s %12s %10s %10s  %s\n' "$round" "$server" "$rps" "$p50" "$p99" "$frozen"
  done
done

median() { sort -n -k1,1 "$1" | awk -v n="$rounds" 'NR == int((n + 1) / 2)'; }
read -r e_rps e_p50 e_p99 < <(median "$work/edge.results")
read -r w_rps w_p50 w_p99 < <(median "$work/wasmtime.results")
read -r n_rps n_p50 n_p99 < <(median "$work/nometer.results")
echo
echo "median of $rounds rounds, wrk -t1 -c$connections -d${duration}s, $(nproc) cores, $(uname -m)"
printf '%-16s %12s %10s %10s\n' server "requests/s" "p50 ms" "p99 ms"
printf '%-16s %12s %10s %10s\n' edge "$e_rps" "$e_p50" "$e_p99"
printf '%-16s %12s %10s %10s\n' "edge, no meter" "$n_rps" "$n_p50" "$n_p99"
printf '%-16s %12s %10s %10s\n' "wasmtime serve" "$w_rps" "$w_p50" "$w_p99"
awk -v a="$e_rps" -v b="$w_rps" -v c="$e_p99" -v d="$w_p99" \
  'BEGIN { printf "edge / wasmtime serve: throughput %.2fx, p99 %.2fx\n", a / b, c / d }'
awk -v a="$e_rps" -v b="$n_rps" -v c="$e_p99" -v d="$n_p99" \
  'BEGIN { printf "metering on / off: throughput %.3fx, p99 %.2fx\n", a / b, c / d }'
freeze_summary
