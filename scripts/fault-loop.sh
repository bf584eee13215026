#!/usr/bin/env bash
# Crash loop: ROUNDS times (default 50), start a node on one data folder, run key-value writes
# (4 writers) and deploys under load, kill -9 the node at a random moment, restart it, and check
# that every write and deploy it acknowledged is there. Prints the totals; exits 1 on any loss.
#   scripts/fault-loop.sh [ROUNDS]
# Needs scripts/setup.sh first (the release binary and the guests).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench-node.sh

rounds=${1:-50}
dir=$work/node
mkdir -p "$dir"
acked=$work/acked-writes
deployed=$work/acked-deploys
: >"$acked"
: >"$deployed"
lost=0
started=$(date +%s)

# Writes until the node dies: each acknowledged key is recorded with its value.
writer() {
  local round=$1 id=$2 i=0
  while true; do
    local key="r$round-w$id-$i" value="v$round-$id-$i-$RANDOM"
    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X PUT \
      --data-binary "$value" "$data/counter/kv/$key" 2>/dev/null) || return 0
    [[ $status == 200 ]] && echo "$key $value" >>"$acked"
    i=$((i + 1))
  done
}

# Deploys new apps until the node dies: each acknowledged deploy is recorded.
deployer() {
  local round=$1 j=0
  while true; do
    local name="r$round-d$j"
    if "$edge" deploy "$name" "$guests/hello.wasm" --node "$admin" --data-dir "$dir" \
      >/dev/null 2>&1; then
      echo "$name" >>"$deployed"
    else
      kill -0 "$node_pid" 2>/dev/null || return 0
    fi
    j=$((j + 1))
  done
}

verify() {
  local keys=$1 apps=$2
  while read -r key value; do
    got=$(curl -s --max-time 5 "$data/counter/kv/$key" || true)
    if [[ $got != "$value" ]]; then
      echo "LOST write $key (expected $value, got ${got:0:40})" >&2
      lost=$((lost + 1))
    fi
  done <"$keys"
  local listed
  listed=$("$edge" list --json --node "$admin" --data-dir "$dir")
  while read -r name; do
    if ! grep -q "\"name\": *\"$name\"" <<<"$listed"; then
      echo "LOST deploy $name" >&2
      lost=$((lost + 1))
    fi
  done <"$apps"
}

start_node "$dir"
"$edge" deploy counter "$guests/counter.wasm" --kv --node "$admin" --data-dir "$dir" >/dev/null 2>&1
for round in $(seq 1 "$rounds"); do
  before_writes=$(wc -l <"$acked")
  before_deploys=$(wc -l <"$deployed")
  pids=()
  for id in 1 2 3 4; do
    writer "$round" "$id" &
    pids+=($!)
  done
  deployer "$round" &
  pids+=($!)
  # A random moment between 0.2 and 2 s into the load.
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.2 + (r % 180) / 100 }')"
  kill -9 "$node_pid"
  wait "$node_pid" 2>/dev/null || true
  node_pid=""
  wait "${pids[@]}" 2>/dev/null || true
  start_node "$dir"
  tail -n +"$((before_writes + 1))" "$acked" >"$work/round-writes"
  tail -n +"$((before_deploys + 1))" "$deployed" >"$work/round-deploys"
  verify "$work/round-writes" "$work/round-deploys"
  printf 'round %d: %d writes and %d deploys acknowledged, all there after kill -9\n' \
    "$round" "$(wc -l <"$work/round-writes")" "$(wc -l <"$work/round-deploys")"
done
# Once more, everything from every round.
verify "$acked" "$deployed"
stop_node
printf 'fault loop: %d rounds, %d acknowledged writes, %d acknowledged deploys, %d lost, %d s\n' \
  "$rounds" "$(wc -l <"$acked")" "$(wc -l <"$deployed")" "$lost" "$(($(date +%s) - started))"
[[ $lost == 0 ]]
