# Sourced by the bench scripts (from the repository root): a scratch folder removed on exit,
# and one `edge serve` at a time on free loopback ports.
#   start_node DATA_DIR [serve args...]   sets node_pid, admin (admin API URL), data (data plane URL)
#   stop_node
#   keep_node                             leaves the running node up (stopped on exit), so
#                                         start_node can start another beside it
#   distinct_copy IN.wasm OUT.wasm TAG     a distinct component: IN plus a custom section
# EDGE_BIN=PATH runs that build of edge instead of target/release/edge (copy it out of target/).
edge=${EDGE_BIN:-target/release/edge}
guests=guests/target/wasm32-wasip2/release
work=$(mktemp -d)
node_pid=""
kept_nodes=()
cleanup() {
  for pid in $node_pid "${kept_nodes[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

start_node() {
  local dir=$1
  shift
  EDGE_LOG=warn "$edge" serve "$@" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --data-dir "$dir" >"$dir.out" 2>"$dir.err" &
  node_pid=$!
  for _ in $(seq 1 600); do grep -q "admin API" "$dir.out" 2>/dev/null && break; sleep 0.05; done
  admin=$(sed -n 's/^edge: admin API listening on //p' "$dir.out")
  data=$(sed -n 's/^edge: data plane listening on //p' "$dir.out")
  [[ -n $admin ]] || { echo "bench: the node did not start; its log: $dir.err" >&2; exit 1; }
}

keep_node() {
  kept_nodes+=("$node_pid")
  node_pid=""
}

stop_node() {
  kill "$node_pid"
  wait "$node_pid" 2>/dev/null || true
  node_pid=""
}

# The same component with a custom section naming TAG: distinct bytes, so a node compiles and
# keeps it as an app of its own.
distinct_copy() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
name = b"edge-bench"
payload = bytes([len(name)]) + name + sys.argv[3].encode()
open(sys.argv[2], "wb").write(data + bytes([0, len(payload)]) + payload)
PY
}
