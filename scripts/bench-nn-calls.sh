#!/usr/bin/env bash
# Where a model app's inference time goes, with serving taken out: `guests/classify` on a node
# runs 16 inferences per request (`POST /classify/tensor?repeat=16`), alternating with 16
# inferences of native OpenVINO (its Python API: the same wheel, IR, LATENCY hint and f32).
# Prints, each as a median per pair with its 95 % interval (the sign test's):
#   - the node's OpenVINO inference (`edge_inference_seconds`, `infer()` alone, read
#     from /metrics around each request) less native's `infer()` alone: is OpenVINO's own work
#     slower in the node?
#   - the guest's timing of its wasi-nn calls (`server-timing`) less the node's inference: what
#     the calls around each inference (load-by-name, the context, the tensor's one copy out of
#     the guest into the request's input buffer, reading the output, the drops) cost.
#
#   scripts/bench-nn-calls.sh [SECONDS=30]
# EDGE_BIN=PATH runs that build of edge; EDGE_CONFIG_TOML=TEXT adds node config before the model.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
[[ -f .cache/photos/chelsea.png && -f target/release/edge ]] || scripts/setup.sh >/dev/null

source scripts/lib/bench-node.sh
cat >"$work/node.toml" <<TOML
${EDGE_CONFIG_TOML:-}
[models.efficientnet-lite0]
path = "edge-config/models/efficientnet-lite0"
precision = "f32"
TOML
start_node "$work/data" --config "$work/node.toml"
"$edge" deploy c "$guests/classify.wasm" --model efficientnet-lite0 --route /c --node "$admin" \
  --data-dir "$work/data" >/dev/null 2>&1
curl -sf -X POST --data-binary @.cache/photos/chelsea.png "$data/c/classify/preprocess" \
  -o "$work/tensor.bin"

.venv/bin/python - "$data" "$admin" "$work/data/admin.token" "$work/tensor.bin" \
  edge-config/models/efficientnet-lite0 "$seconds" <<'PY'
import http.client, re, statistics, sys, time
from urllib.parse import urlsplit

import numpy as np
import openvino as ov

sys.path.insert(0, "scripts/lib")
from median_interval import median_interval

data, admin, token_file, tensor_file, model_dir, seconds = sys.argv[1:7]
REPEAT = 16
token = open(token_file).read().strip()
body = open(tensor_file, "rb").read()
tensor = np.frombuffer(body, dtype=np.float32).reshape(1, 3, 224, 224)
compiled = ov.Core().compile_model(
    f"{model_dir}/model.xml", "CPU",
    {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
request = compiled.create_infer_request()
native_input = request.get_input_tensor(0)
data_url, admin_url = urlsplit(data), urlsplit(admin)
data_conn = http.client.HTTPConnection(data_url.hostname, data_url.port, timeout=60)
admin_conn = http.client.HTTPConnection(admin_url.hostname, admin_url.port, timeout=60)


def node_inference_totals():
    admin_conn.request("GET", "/metrics", headers={"authorization": f"Bearer {token}"})
    text = admin_conn.getresponse().read().decode()
    total = lambda name: float(re.search(rf"^{name}\{{[^}}]*\}} (\S+)", text, re.M).group(1))
    return total("edge_inference_seconds_sum"), total("edge_inference_seconds_count")


def native_mean_ms():
    took = 0.0
    for _ in range(REPEAT):
        np.copyto(native_input.data, tensor)
        started = time.perf_counter()
        request.infer()
        took += time.perf_counter() - started
        request.get_output_tensor(0).data.copy()
    return took / REPEAT * 1e3


def node_means_ms():
    """The node's inference and the guest's wasi-nn calls, means per inference."""
    seconds_before, count_before = node_inference_totals()
    data_conn.request("POST", f"/c/classify/tensor?repeat={REPEAT}", body=body)
    response = data_conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"bench: the node answered {response.status}")
    timing = response.getheader("server-timing") or ""
    first, repeated = (float(re.search(rf"{name};dur=([\d.]+)", timing).group(1))
                       for name in ("inference", "repeated"))
    seconds_after, count_after = node_inference_totals()
    if count_after - count_before != REPEAT:
        sys.exit(f"bench: {count_after - count_before} inferences counted, not {REPEAT}")
    inference = (seconds_after - seconds_before) * 1e3 / REPEAT
    calls = (first + (REPEAT - 1) * repeated) / REPEAT
    return inference, calls


for _ in range(3):
    native_mean_ms()
    node_means_ms()
inference_over_native, calls_over_inference, native = [], [], []
deadline = time.monotonic() + float(seconds)
pair = 0
while time.monotonic() < deadline:
    if pair % 2 == 0:
        native_ms = native_mean_ms()
        inference_ms, calls_ms = node_means_ms()
    else:
        inference_ms, calls_ms = node_means_ms()
        native_ms = native_mean_ms()
    inference_over_native.append(inference_ms - native_ms)
    calls_over_inference.append(calls_ms - inference_ms)
    native.append(native_ms)
    pair += 1
for label, values in (
    ("the node's inference less native infer()", inference_over_native),
    ("the guest's wasi-nn calls less the node's inference", calls_over_inference),
):
    median, low, high = median_interval(values)
    print(f"{label}: {median:+.3f} ms per inference (95 % interval {low:+.3f} to {high:+.3f})")
print(f"({pair} pairs of {REPEAT} inferences a side, native infer() "
      f"{statistics.median(native):.3f} ms per inference, {seconds}s)")
PY
