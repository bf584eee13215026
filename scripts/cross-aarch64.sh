#!/usr/bin/env bash
# Cross-compiles the node for 64-bit ARM gateways (aarch64-unknown-linux-gnu) and smoke-tests
# the result under qemu-user: `edge serve`, a deploy of the hello guest (compiled by Cranelift
# to aarch64 code inside the emulated node) and a request to it; then the fleet path for ARM
# gateways: the aarch64 `edge push --precompile` publishes an aarch64 artifact to a
# docker-registry, and a second emulated node with `[fleet] accept_precompiled` takes it from
# a nats-server's desired state instead of compiling (both servers from scripts/setup.sh).
#
#   scripts/cross-aarch64.sh            # build and smoke-test
#   scripts/cross-aarch64.sh --build    # build only
# The binary lands in target/aarch64-unknown-linux-gnu/release/edge; scripts/package-deb.sh
# --target aarch64-unknown-linux-gnu packages it. A clean build takes about as long as the
# host's (wasmtime and Cranelift dominate).
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu

if ! { command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null; }; then
  echo "cross-aarch64: installing Debian's aarch64 cross compiler and qemu-user"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
fi
rustup target list --installed | grep -qx $target || rustup target add $target

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
echo "cross-aarch64: building edge for $target"
cargo build --release --locked --target $target -p edge-host --bin edge
binary=target/$target/release/edge
file "$binary" 2>/dev/null || true
[[ ${1:-} == --build ]] && exit 0

echo "cross-aarch64: smoke test under qemu-user"
cargo build --release --locked --target wasm32-wasip2 --manifest-path guests/Cargo.toml -q
run=(qemu-aarch64 -L /usr/aarch64-linux-gnu "$binary")
work=$(mktemp -d)
log=$work/node.log
# OpenVINO's library is x86-64 here: the emulated node runs without wasi-nn. qemu-user keeps
# bookkeeping for every guest page mapped, so the pooling allocator's terabyte-sized address
# reservation would exhaust this machine's memory (seen: OOM-killed at 24 GB); the emulated
# node allocates on demand. On a real aarch64 board the pool works as on x86-64.
printf '[pool]\nenabled = false\n' >"$work/node.toml"
"${run[@]}" serve --config "$work/node.toml" --data-dir "$work/data" \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$log" 2>&1 &
node=$!
fleet_node=""
cleanup() {
  for pid in $node $fleet_node; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 1200); do
  grep -q '^edge: admin API listening on ' "$log" && break
  kill -0 $node 2>/dev/null || { cat "$log"; echo "cross-aarch64: the node did not start" >&2; exit 1; }
  sleep 0.1
done
admin=$(sed -n 's/^edge: admin API listening on //p' "$log")
data=$(sed -n 's/^edge: data plane listening on //p' "$log")
[[ -n $admin ]] || { cat "$log"; echo "cross-aarch64: no admin address within 120 s" >&2; exit 1; }
started=$(date +%s.%N)
"${run[@]}" deploy hello guests/target/wasm32-wasip2/release/hello.wasm \
  --node "$admin" --data-dir "$work/data"
deployed=$(date +%s.%N)
answer=$(curl -fsS "$data/hello")
[[ $answer == "hello from edge 1: /hello" ]] ||
  { cat "$log"; echo "cross-aarch64: unexpected answer: $answer" >&2; exit 1; }
printf 'cross-aarch64: ok: an aarch64 edge under qemu-user deployed hello in %.1f s and answered "%s"\n' \
  "$(echo "$deployed - $started" | bc)" "$answer"

echo "cross-aarch64: the fleet path: an aarch64 precompiled artifact taken by an emulated node"
source scripts/lib/fleet-servers.sh # its EXIT trap stops the servers, then runs cleanup
start_fleet_servers
pushed=$("${run[@]}" push guests/target/wasm32-wasip2/release/hello.wasm \
  "oci://$registry/edge/hello:arm" --precompile)
echo "$pushed" | grep -q 'pushed the artifact for aarch64' ||
  { echo "$pushed"; echo "cross-aarch64: no aarch64 artifact pushed" >&2; exit 1; }
printf '[pool]\nenabled = false\n[fleet]\nurl = "%s"\nnode_id = "arm"\nretry_s = 1\naccept_precompiled = true\n' \
  "$nats" >"$work/fleet-node.toml"
fleet_log=$work/fleet-node.log
"${run[@]}" serve --config "$work/fleet-node.toml" --data-dir "$work/fleet-data" \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$fleet_log" 2>&1 &
fleet_node=$!
printf '[nodes.arm.apps.hello]\nsource = "oci://%s/edge/hello:arm"\nroute = "/hello"\n' \
  "$registry" >"$work/fleet.toml"
"${run[@]}" fleet apply "$work/fleet.toml" --nats "$nats"
state=""
for _ in $(seq 1 1200); do
  state=$("${run[@]}" fleet status --json --nats "$nats" |
    python3 -c 'import json, sys; s = json.load(sys.stdin); print(s[0]["apps"].get("hello", {}).get("precompiled", "") if s else "")')
  [[ -n $state ]] && break
  sleep 0.2
done
[[ $state == used ]] ||
  { cat "$fleet_log"; echo "cross-aarch64: the artifact was not used: ${state:-no report}" >&2; exit 1; }
fleet_data=$(sed -n 's/^edge: data plane listening on //p' "$fleet_log")
answer=$(curl -fsS "$fleet_data/hello")
[[ $answer == "hello from edge 1: /hello" ]] ||
  { cat "$fleet_log"; echo "cross-aarch64: unexpected answer: $answer" >&2; exit 1; }
echo "cross-aarch64: ok: the emulated fleet node took the aarch64 artifact (precompiled: $state) and answered \"$answer\""
