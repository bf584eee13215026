#!/usr/bin/env bash
# Benchmark: a fleet change reaching a node that takes the precompiled artifact
# (`edge push --precompile`, `[fleet] accept_precompiled = true`) against, as the reference in
# the same run, a node that compiles the component itself (the default: baseline tier first
# for big components, optimized code compiled in the background). Real nats-server and
# docker-registry on loopback. Each round pushes a distinct copy of each component with its
# artifact, then applies it to one node and waits, then to the other (one at a time, so
# neither competes with the other for the CPU). Per node: seconds from the apply to the first
# 200, to optimized code serving, and the node's CPU seconds until then.
#
#   scripts/bench-precompiled.sh [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
scripts/setup.sh >/dev/null
source scripts/lib/language-hellos.sh
source scripts/lib/bench-node.sh
source scripts/lib/optimized.sh
source scripts/lib/fleet-servers.sh
start_fleet_servers

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }

# Two fleet nodes, no model (the artifact is what is measured).
declare -A admin_of data_of pid_of dir_of sizes
for id in precompiled compiling; do
  dir=$work/$id
  accept=false
  [[ $id == precompiled ]] && accept=true
  printf '[fleet]\nurl = "%s"\nnode_id = "%s"\ngroups = []\nheartbeat_s = 5\nretry_s = 1\naccept_precompiled = %s\n[openvino]\nfolder = "no-openvino"\n' \
    "$nats" "$id" "$accept" >"$dir.toml"
  start_node "$dir" --config "$dir.toml"
  admin_of[$id]=$admin data_of[$id]=$data pid_of[$id]=$node_pid dir_of[$id]=$dir
  keep_node
done

# The first apply makes the fleet's buckets; wait until both agents have found them and
# report, so no round includes an agent's reconnect wait.
printf '[nodes.precompiled]\n[nodes.compiling]\n' >"$work/fleet.toml"
"$edge" fleet apply "$work/fleet.toml" --nats "$nats" >/dev/null
for _ in $(seq 1 600); do
  reported=$("$edge" fleet status --json --nats "$nats" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
  [[ $reported == 2 ]] && break
  sleep 0.1
done

printf '%-6s %-10s %-36s %8s %13s %13s %9s\n' round component node "push s" "first 200 s" "optimized s" "CPU s"
for round in $(seq 1 "$rounds"); do
  for component in python js hello; do
    case $component in
      python) wasm=$python_wasm ;;
      js) wasm=$js_wasm ;;
      hello) wasm=$guests/hello.wasm ;;
    esac
    app=$component$round
    distinct_copy "$wasm" "$work/$app.wasm" "$app"
    start=$(now)
    "$edge" push "$work/$app.wasm" "oci://$registry/edge/$component:r$round" --precompile \
      >"$work/push.out"
    pushed=$(since "$start")
    sizes[$component]=$(sed -n 's/.*, \([0-9]*\) bytes).*/\1/p' "$work/push.out")
    for id in precompiled compiling; do
      printf '[nodes.%s.apps.%s]\nsource = "oci://%s/edge/%s:r%s"\n' "$id" "$app" "$registry" "$component" "$round" \
        >"$work/fleet.toml"
      cpu0=$(cpu_s "${pid_of[$id]}")
      start=$(now)
      "$edge" fleet apply "$work/fleet.toml" --nats "$nats" >/dev/null
      for _ in $(seq 1 6000); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "${data_of[$id]}/$app/" || true) == 200 ]] && break
        sleep 0.01
      done
      first=$(since "$start")
      wait_until_optimized "${admin_of[$id]}" "${dir_of[$id]}" "$app"
      optimized=$(since "$start")
      cpu=$(awk -v a="$cpu0" -v b="$(cpu_s "${pid_of[$id]}")" 'BEGIN { printf "%.2f", b - a }')
      label="takes the artifact"
      [[ $id == compiling ]] && label="compiles (the default, reference)"
      printf '%-6s %-10s %-36s %8s %13s %13s %9s\n' "$round" "$component" "$label" "$pushed" "$first" "$optimized" "$cpu"
    done
  done
done
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "(push s: edge push --precompile, its compile included; components $(mib "$(stat -c %s "$python_wasm")") Python, $(mib "$(stat -c %s "$js_wasm")") JavaScript, artifacts $(mib "${sizes[python]}") and $(mib "${sizes[js]}"); $(nproc) cores)"
