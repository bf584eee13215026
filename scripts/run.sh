#!/usr/bin/env bash
# Quick start: set up, start a node with the embedded defaults, deploy the example apps, and
# keep serving until ctrl-c. Data lives in ./.edge-data (delete it to start over).
#   data plane  http://127.0.0.1:8080     admin API  http://127.0.0.1:8081
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

edge=target/release/edge
guests=guests/target/wasm32-wasip2/release
log=$(mktemp)
"$edge" serve "$@" > >(tee "$log") &
node=$!
trap 'kill -TERM $node 2>/dev/null; wait $node' INT TERM EXIT

admin=""
for _ in $(seq 1 300); do
  admin=$(sed -n 's/^edge: admin API listening on //p' "$log")
  [[ -n $admin ]] && break
  kill -0 $node 2>/dev/null || { echo "run: the node failed to start" >&2; exit 1; }
  sleep 0.1
done
[[ -n $admin ]] || { echo "run: the node did not start within 30 s" >&2; exit 1; }
data=$(sed -n 's/^edge: data plane listening on //p' "$log")

"$edge" deploy hello "$guests/hello.wasm" --node "$admin"
"$edge" deploy counter "$guests/counter.wasm" --kv --node "$admin"
"$edge" deploy classify "$guests/classify.wasm" --model efficientnet-lite0 --node "$admin" ||
  echo "run: classify not deployed (see the node's log for why the model did not load)" >&2

cat <<MSG

The node is serving. Try:
  curl $data/hello/world
  curl -X POST $data/counter/incr/visits
  curl --data-binary @.cache/photos/coffee.png $data/classify
  $edge list
Press ctrl-c to stop it.
MSG
wait $node
