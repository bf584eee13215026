#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests, which start the real `edge`
# binary on loopback and deploy real guest components built from guests/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --release --locked --workspace
