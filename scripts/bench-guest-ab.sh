#!/usr/bin/env bash
# A/B of two builds of a model app's component on one node: both are deployed side by side
# (`a`, `b`, granted efficientnet-lite0) and one client alternates its requests between them
# (A B, then B A, ...), so the change is measured against the build without it under the same
# noise, request by request. Prints each build's p50 latency, the guest's own timing of its
# wasi-nn calls (`server-timing: inference`), the time outside them, the mean and p90 latency,
# and B against A: the difference of the p50s, and the median of the per-pair differences with
# its 95 % interval (the sign test's, as in `nn_bench`), which says whether a change shows above
# the noise. With PATH /classify/tensor?repeat=N the guest runs N inferences per request and
# the per-pair difference of its mean per inference after the first (`server-timing:
# repeated`) is printed too: what a change does to the wasi-nn calls with serving taken out.
#
#   scripts/bench-guest-ab.sh A.wasm B.wasm [REQUESTS=500] [PATH=/classify/tensor] [BODY]
#
# BODY defaults to the input tensor the classify guest makes from chelsea.png (for PATH
# /classify/tensor) and to chelsea.png itself for any other PATH. The first tenth of the
# requests is warm-up and not counted. EDGE_BIN_B=PATH serves `b` from a second node running
# that build of edge (both nodes up side by side), to compare node builds the same way: pass
# the same component twice. EDGE_CONFIG_B=FILE does the same with a second node running that
# node config (it must declare efficientnet-lite0 as below), to compare settings such as
# `[inference] workers`.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { sed -n '2,17p' "$0" >&2; exit 2; }
a=$1 b=$2
requests=${3:-500}
path=${4:-/classify/tensor}
photo=.cache/photos/chelsea.png
[[ -f $photo && -f target/release/edge ]] || scripts/setup.sh >/dev/null

source scripts/lib/bench-node.sh
cat >"$work/node.toml" <<'TOML'
[models.efficientnet-lite0]
path = "edge-config/models/efficientnet-lite0"
precision = "f32"
TOML
# Starts a node from `$edge` in $work/DIR with node config CONFIG and deploys component WASM
# as APP there.
#   node_with APP WASM DIR CONFIG    sets admin and data for that node
node_with() {
  start_node "$work/$3" --config "$4"
  "$edge" deploy "$1" "$2" --model efficientnet-lite0 --route "/$1" --node "$admin" \
    --data-dir "$work/$3" >/dev/null 2>&1
}
node_with a "$a" data "$work/node.toml"
data_a=$data
if [[ -n ${EDGE_BIN_B:-} || -n ${EDGE_CONFIG_B:-} ]]; then
  keep_node
  edge=${EDGE_BIN_B:-$edge} node_with b "$b" data-b "${EDGE_CONFIG_B:-$work/node.toml}"
else
  "$edge" deploy b "$b" --model efficientnet-lite0 --route /b --node "$admin" \
    --data-dir "$work/data" >/dev/null 2>&1
fi
data_b=$data
body=${5:-}
if [[ -z $body ]]; then
  body=$photo
  if [[ $path == /classify/tensor || $path == /classify/tensor\?* ]]; then
    body=$work/tensor.bin
    curl -sf -X POST --data-binary "@$photo" "$data_a/a/classify/preprocess" -o "$body"
  fi
fi

python3 - "$data_a" "$data_b" "$path" "$body" "$requests" <<'PY'
import http.client, re, statistics, sys, time
from urllib.parse import urlsplit

sys.path.insert(0, "scripts/lib")
from median_interval import median_interval

base_a, base_b, path, body_file = sys.argv[1:5]
requests = int(sys.argv[5])
body = open(body_file, "rb").read()
conns = {}
for app, base in (("a", base_a), ("b", base_b)):
    url = urlsplit(base)
    conns[app] = http.client.HTTPConnection(url.hostname, url.port, timeout=30)


def timing(response, name):
    found = re.search(name + r";dur=([\d.]+)", response.getheader("server-timing") or "")
    return float(found.group(1)) if found else None


total = {"a": [], "b": []}
inference = {"a": [], "b": []}
repeated = {"a": [], "b": []}
for i in range(requests):
    for app in ("a", "b") if i % 2 == 0 else ("b", "a"):
        started = time.perf_counter()
        conns[app].request("POST", f"/{app}{path}", body=body)
        response = conns[app].getresponse()
        response.read()
        took = (time.perf_counter() - started) * 1e3
        if response.status != 200:
            sys.exit(f"bench: {app}{path} answered {response.status}")
        if i < requests // 10:
            continue
        total[app].append(took)
        for name, into in (("inference", inference), ("repeated", repeated)):
            value = timing(response, name)
            if value is not None:
                into[app].append(value)


def paired(name, series):
    if len(series["a"]) != len(series["b"]) or not series["a"]:
        return
    median, low, high = median_interval([b - a for a, b in zip(series["a"], series["b"])])
    print(f"B vs A, {name}, median per pair: {median:+.3f} ms "
          f"(95 % interval {low:+.3f} to {high:+.3f})")


p50 = {app: statistics.median(values) for app, values in total.items()}
mean = {app: statistics.fmean(values) for app, values in total.items()}
p90 = {app: statistics.quantiles(values, n=10)[-1] for app, values in total.items()}
print(f"{'':4}{'p50 ms':>10}{'wasi-nn p50 ms':>16}{'outside ms':>12}{'mean ms':>10}{'p90 ms':>10}")
for app in ("a", "b"):
    nn = statistics.median(inference[app]) if inference[app] else float("nan")
    print(f"{app.upper():4}{p50[app]:>10.3f}{nn:>16.3f}{p50[app] - nn:>12.3f}"
          f"{mean[app]:>10.3f}{p90[app]:>10.3f}")
print(f"B vs A: p50 {p50['b'] / p50['a']:.3f}x ({(p50['b'] - p50['a']):+.3f} ms), "
      f"mean {(mean['b'] - mean['a']):+.3f} ms, p90 {(p90['b'] - p90['a']):+.3f} ms")
paired("request latency", total)
paired("wasi-nn calls", inference)
paired("wasi-nn calls per repeated inference", repeated)
PY
echo "($((requests - requests / 10)) requests each, alternating, concurrency 1, $(nproc) cores)"
