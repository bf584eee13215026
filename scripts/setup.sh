#!/usr/bin/env bash
# Installs what building and testing need beyond a Rust toolchain, then builds the host and the
# example guests. Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi

echo "setup: building the edge host (release; the first build takes several minutes)"
cargo build --release --locked -p edge-host

echo "setup: building the example guests for wasm32-wasip2"
cargo build --release --locked --target wasm32-wasip2 --manifest-path guests/Cargo.toml

echo "setup: OpenVINO runtime, the EfficientNet-Lite0 model and the test photos"
scripts/setup-model.sh
