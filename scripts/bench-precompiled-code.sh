#!/usr/bin/env bash
# Does code compiled for the CPU baseline (a precompiled artifact) run slower than code
# compiled for this CPU? One node with `[fleet] accept_precompiled`: the fleet deploys a copy
# of COMPONENT from its artifact (`portable`), the admin API deploys another copy compiled
# here (`native`, waited for until optimized); `wrk` then loads them in turn.
#
#   scripts/bench-precompiled-code.sh [ROUNDS=3] [SECONDS=5] [COMPONENT=python|js]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}
component=${3:-python}
scripts/setup.sh >/dev/null
source scripts/lib/language-hellos.sh
source scripts/lib/bench-node.sh
source scripts/lib/optimized.sh
source scripts/lib/fleet-servers.sh
start_fleet_servers
wasm=$python_wasm
[[ $component == js ]] && wasm=$js_wasm

dir=$work/node
printf '[fleet]\nurl = "%s"\nnode_id = "gw"\ngroups = []\nheartbeat_s = 5\nretry_s = 1\naccept_precompiled = true\n[openvino]\nfolder = "no-openvino"\n' \
  "$nats" >"$dir.toml"
start_node "$dir" --config "$dir.toml"
distinct_copy "$wasm" "$work/portable.wasm" portable
distinct_copy "$wasm" "$work/native.wasm" native
"$edge" push "$work/portable.wasm" "oci://$registry/edge/$component:portable" --precompile >/dev/null
printf '[nodes.gw.apps.portable]\nsource = "oci://%s/edge/%s:portable"\n' "$registry" "$component" >"$work/fleet.toml"
"$edge" fleet apply "$work/fleet.toml" --nats "$nats" >/dev/null
"$edge" deploy native "$work/native.wasm" --node "$admin" --data-dir "$dir" >/dev/null
for app in portable native; do
  for _ in $(seq 1 3000); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$data/$app/" || true) == 200 ]] && break
    sleep 0.05
  done
  wait_until_optimized "$admin" "$dir" "$app"
done
state=$("$edge" fleet status --json --nats "$nats" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["apps"]["portable"].get("precompiled"))')
echo "portable app's artifact: $state"
for round in $(seq 1 "$rounds"); do
  for app in portable native; do
    wrk -t1 -c16 -d1s "$data/$app/" >/dev/null
    rps=$(wrk -t1 -c16 -d"${seconds}s" "$data/$app/" | awk '/Requests\/sec/ { print $2 }')
    printf 'round %s  %-9s %10s requests/s\n' "$round" "$app" "$rps"
  done
done
