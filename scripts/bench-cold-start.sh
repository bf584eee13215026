#!/usr/bin/env bash
# Cold-start benchmarks, each with its reference measured in the same run:
#   1. guests/heavy-init first request and steady state, snapshot vs no snapshot (same
#      component, deployed twice, one with --no-snapshot), after a node restart;
#   2. node restart with 20 deployed apps (20 distinct components): time from process start
#      to the first 200 answer from each app;
#   3. idle memory: the node's resident set after a restart with those 20 apps, without a
#      model and with the default model, and where the resident memory is;
#   4. guests/hello throughput and p99 against `wasmtime serve` (scripts/bench-hello.sh).
#
#   scripts/bench-cold-start.sh [STEADY_REQUESTS=50]
set -euo pipefail
cd "$(dirname "$0")/.."
steady=${1:-50}
scripts/setup.sh >/dev/null
cargo build --release --locked --example startup_probe -p edge-host 2>/dev/null
source scripts/lib/bench-node.sh
ms() { awk '{ printf "%.2f", $1 * 1000 }'; }

echo "== 1. heavy-init: snapshot vs no snapshot =="
start_node "$work/heavy"
"$edge" deploy heavy "$guests/heavy_init.wasm" --node "$admin" --data-dir "$work/heavy" 2>/dev/null
"$edge" deploy heavy-raw "$guests/heavy_init.wasm" --no-snapshot --node "$admin" \
  --data-dir "$work/heavy" 2>/dev/null
stop_node
start_node "$work/heavy" # first requests below are the first after a restart
printf '%-22s %16s %18s\n' app "first request ms" "steady p50 ms"
declare -A first p50
for app in heavy heavy-raw; do
  first[$app]=$(curl -s -o /dev/null -w '%{time_total}' "$data/$app/primes/1000000" | ms)
  p50[$app]=$(for _ in $(seq 1 "$steady"); do
    curl -s -o /dev/null -w '%{time_total}\n' "$data/$app/primes/1000000"
  done | sort -n | awk -v n="$steady" 'NR == int((n + 1) / 2)' | ms)
  printf '%-22s %16s %18s\n' "$app" "${first[$app]}" "${p50[$app]}"
done
stop_node
awk -v a="${first[heavy-raw]}" -v b="${first[heavy]}" -v c="${p50[heavy-raw]}" -v d="${p50[heavy]}" \
  'BEGIN { printf "snapshot speed-up: first request %.1fx, steady state %.1fx\n", a / b, c / d }'

echo
echo "== 2. restart with 20 apps: process start to first 200 from each =="
start_node "$work/twenty"
routes=()
for i in $(seq -w 1 20); do
  # 20 distinct components: the same app with a different custom section each.
  distinct_copy "$guests/hello.wasm" "$work/app$i.wasm" "$i"
  "$edge" deploy "app$i" "$work/app$i.wasm" --node "$admin" --data-dir "$work/twenty" >/dev/null 2>&1
  routes+=("/app$i/")
done
stop_node
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for run in 1 2 3; do
  result=$(target/release/examples/startup_probe "$edge" "$work/twenty" "$port" "${routes[@]}")
  echo "run $run: first app $(echo "$result" | head -1 | awk '{print $2}') ms, all 20 $(echo "$result" | awk '$1 == "all" {print $2}') ms"
done

echo
echo "== 3. idle memory after a restart with the 20 apps =="
# The binary's share depends on host/link-order.txt matching this build.
python3 scripts/lib/link_order.py check "$edge" host/link-order.txt
# The kernel maps a binary's code in pieces around each page touched, as large as the page
# cache holds the file in: a binary just written (built, copied) read 22.8-23.7 MiB here
# where the same file read from disk read 20.6. So the binary leaves the page cache first,
# and each start reads it from disk as after a reboot.
evict_from_page_cache() {
  # Written back first: the kernel keeps dirty pages.
  python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$1"
}
printf '[models]\n' >"$work/no-model.toml"
for setting in "no model" "default model"; do
  args=()
  [[ $setting == "no model" ]] && args=(--config "$work/no-model.toml")
  evict_from_page_cache "$edge"
  start_node "$work/twenty" "${args[@]}"
  for route in "${routes[@]}"; do
    for _ in $(seq 1 200); do
      [[ $(curl -s -o /dev/null -w '%{http_code}' "$data$route" || true) == 200 ]] && break
      sleep 0.05
    done
  done
  # /healthz answers 200 once every configured model is compiled.
  for _ in $(seq 1 600); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$admin/healthz" || true) == 200 ]] && break
    sleep 0.1
  done
  sleep 2
  awk -v what="$setting" '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2}
    END { printf "%s: %.1f MiB resident (%.1f anonymous, %.1f file-backed)\n", what, r/1024, a/1024, f/1024 }' \
    "/proc/$node_pid/status"
  awk '/^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anonymous]" : $6); sub(/.*\//, "", name) }
    /^Rss:/ { rss[name] += $2 }
    END { for (n in rss) if (rss[n] >= 1024) printf "    %6.1f MiB  %s\n", rss[n]/1024, n }' \
    "/proc/$node_pid/smaps" | sort -rn | head -8
  stop_node
done

echo
echo "== 4. hello: edge vs wasmtime serve =="
scripts/bench-hello.sh 6 16 3 | tail -5
