#!/usr/bin/env bash
# Formatting and lints, as CI checks them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
(cd guests && cargo fmt --all -- --check)
cargo clippy --release --locked --workspace --all-targets -- -D warnings
(cd guests && cargo clippy --release --locked --target wasm32-wasip2 -- -D warnings)
