#!/usr/bin/env bash
# Installs what building and testing need beyond a Rust toolchain, then builds the host and the
# example guests. Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi

# Real brokers and a registry for the messaging and fleet tests and benchmarks (started by them
# on free loopback ports).
if ! { [ -x /usr/sbin/mosquitto ] && [ -x /usr/sbin/nats-server ] && command -v mosquitto_pub >/dev/null \
  && [ -x /usr/bin/docker-registry ]; }; then
  echo "setup: installing Debian's mosquitto, nats-server and docker-registry (test servers)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    mosquitto mosquitto-clients nats-server docker-registry >/dev/null
  # The packages start system services on the default ports; the tests start their own.
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    $SUDO systemctl disable --now mosquitto nats-server docker-registry >/dev/null 2>&1 || true
  fi
fi

echo "setup: building the edge host (release; the first build takes several minutes)"
cargo build --release --locked -p edge-host

echo "setup: building the example guests for wasm32-wasip2"
cargo build --release --locked --target wasm32-wasip2 --manifest-path guests/Cargo.toml

echo "setup: OpenVINO runtime, the EfficientNet-Lite0 model and the test photos"
scripts/setup-model.sh
