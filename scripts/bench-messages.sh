#!/usr/bin/env bash
# Benchmark: messages per second through a guest handler (guests/fixtures/relay: each message
# on jobs/# republished on relayed/...) against a native Rust subscriber doing the same relay
# on the same broker, in one run; and publish -> handler -> alert latency through
# guests/sensor-alert (p50/p99). A real mosquitto on a free loopback port.
#
#   scripts/bench-messages.sh [COUNT=5000] [LATENCY_SAMPLES=500] [IN_FLIGHT=16]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-5000}
samples=${2:-500}
in_flight=${3:-16}

scripts/setup.sh >/dev/null
cargo build --release --locked --example messages_bench -p edge-host 2>/dev/null

source scripts/lib/bench-node.sh

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/mosquitto"
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\nmax_inflight_messages 64\nset_tcp_nodelay true\nuser root\n' \
  "$port" >"$work/mosquitto/conf"
/usr/sbin/mosquitto -c "$work/mosquitto/conf" >"$work/mosquitto/log" 2>&1 &
broker_pid=$!
trap 'kill $broker_pid 2>/dev/null; cleanup' EXIT
for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done

mkdir -p "$work/node"
printf '[messaging]\nmax_in_flight_per_app = %s\n[messaging.mqtt]\nurl = "mqtt://127.0.0.1:%s"\n' \
  "$in_flight" "$port" >"$work/node/node.toml"
start_node "$work/node/data" --config "$work/node/node.toml"
deploy() { "$edge" deploy "$@" --node "$admin" --data-dir "$work/node/data" >/dev/null; }
deploy relay "$guests/relay.wasm" --subscribe 'mqtt:jobs/#' --publish 'mqtt:relayed/#'
deploy sensor "$guests/sensor_alert.wasm" --kv --subscribe 'mqtt:sensors/+/temperature' \
  --publish 'mqtt:alerts/#' --config threshold=-1000

read -r guest native p50 p99 < <(target/release/examples/messages_bench "$port" "$count" "$samples")
printf '%-34s %12s\n' "relay through the guest (msg/s)" "$guest"
printf '%-34s %12s\n' "native Rust relay (msg/s)" "$native"
awk -v g="$guest" -v n="$native" 'BEGIN { printf "%-34s %11.2fx\n", "ratio guest / native", g / n }'
printf '%-34s %9s ms\n' "publish -> alert p50" "$p50"
printf '%-34s %9s ms\n' "publish -> alert p99" "$p99"
echo "($count messages each way, QoS 1; $samples latency samples one at a time; max_in_flight_per_app = $in_flight; $(nproc) cores)"
