#!/usr/bin/env bash
# Benchmark: deploy-to-serving time of big components: the Python and JavaScript hellos
# (scripts/lib/language-hellos.sh builds them once), on a node with the baseline tier (the
# default) and, as the reference in the same run, on one with `[limits] baseline_tier = false`
# (the optimizing compile before serving). Per row: from `edge deploy` to the first 200, when
# the optimized code took over (baseline tier), and a redeploy of the same bytes.
#
#   scripts/bench-deploy.sh [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
scripts/setup.sh >/dev/null
source scripts/lib/language-hellos.sh
source scripts/lib/bench-node.sh
source scripts/lib/optimized.sh

printf '[models]\n' >"$work/tiered.toml"
printf '[limits]\nbaseline_tier = false\n\n[models]\n' >"$work/untiered.toml"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# deploy_to_200 NAME FILE: seconds from starting `edge deploy` to the app's first 200.
deploy_to_200() {
  local start
  start=$(now)
  "$edge" deploy "$1" "$2" --node "$admin" --data-dir "$dir" >/dev/null 2>&1
  for _ in $(seq 1 3000); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$data/$1/" || true) == 200 ]] && break
    sleep 0.01
  done
  since "$start"
}

printf '%-6s %-11s %-24s %16s %16s %12s\n' round component node "deploy to 200 s" "optimized at s" "redeploy s"
for round in $(seq 1 "$rounds"); do
  for component in python js; do
    wasm=$python_wasm
    [[ $component == js ]] && wasm=$js_wasm
    for setting in tiered untiered; do
      dir="$work/$setting-$component-$round"
      start_node "$dir" --config "$work/$setting.toml"
      start=$(now)
      first=$(deploy_to_200 "$component" "$wasm")
      optimized=$first
      if [[ $setting == tiered ]]; then
        wait_until_optimized "$admin" "$dir" "$component"
        optimized=$(since "$start")
      fi
      again=$(deploy_to_200 "$component" "$wasm")
      label="baseline tier (default)"
      [[ $setting == untiered ]] && label="baseline_tier = false"
      printf '%-6s %-11s %-24s %16s %16s %12s\n' "$round" "$component" "$label" "$first" "$optimized" "$again"
      stop_node
    done
  done
done
echo "($(du -h "$python_wasm" | cut -f1) Python, $(du -h "$js_wasm" | cut -f1) JavaScript; $(nproc) cores; each node otherwise idle)"
