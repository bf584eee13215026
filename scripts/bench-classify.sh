#!/usr/bin/env bash
# Benchmark: image classification through the `classify` component (wasi:nn on OpenVINO) versus
# native OpenVINO on the same IR, device, performance hint and input tensor, in one run
# (host/examples/nn_bench.rs). Rows: native; the component given the preprocessed tensor (no
# decoding); the component given the image (decode + preprocess in wasm). p50/p99 latency at
# concurrency 1, images/s at concurrency 1 and 2. Last, a paired line: the tensor posted to
# native over HTTP and to the component alternately, request by request, so the machine's
# drift cannot move that ratio (median and quartiles of the per-pair ratios); and runs of 16
# inferences back to back, the component's (`?repeat=16`) and native's alternating, which
# compare what the wasi-nn calls add per inference with serving taken out.
#
#   scripts/bench-classify.sh [SECONDS=5] [IMAGE=.cache/photos/chelsea.png]
# PRECISION=f32|bf16|f16|auto (default f32, the node's default) sets the model's inference
# precision on both sides. EDGE_CONFIG=FILE runs the node with that config instead (its model
# must then use the same PRECISION). PAIRED_SECONDS=N runs each of the two paired lines for N seconds
# instead of SECONDS: their medians come with 95 % intervals, which narrow as the pairs grow
# (on a busy 2-core VM, 60 s gives intervals of a few hundredths of a millisecond or ratio).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
image=${2:-.cache/photos/chelsea.png}

scripts/setup.sh >/dev/null
cargo build --release --locked --example nn_bench -p edge-host 2>/dev/null

source scripts/lib/bench-node.sh

precision=${PRECISION:-f32}
node_config=${EDGE_CONFIG:-$work/node.toml}
if [[ -z ${EDGE_CONFIG:-} ]]; then
  cat >"$node_config" <<TOML
[models.efficientnet-lite0]
path = "edge-config/models/efficientnet-lite0"
precision = "$precision"
TOML
fi
config=(--config "$node_config")
start_node "$work/data" "${config[@]}"
"$edge" deploy classify "$guests/classify.wasm" --model efficientnet-lite0 --node "$admin" \
  --data-dir "$work/data" >/dev/null 2>&1

target/release/examples/nn_bench "$data/classify" "$image" edge-config/models/efficientnet-lite0 \
  .venv "$seconds" "$precision" "${PAIRED_SECONDS:-$seconds}"
echo "($(basename "$image"), efficientnet-lite0 on CPU with the LATENCY hint, precision setting $precision, ${seconds}s per cell, $(nproc) cores)"
