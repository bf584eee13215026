#!/usr/bin/env bash
# Formatting and lints, as CI checks them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
(cd guests && cargo fmt --all -- --check)
cargo clippy --release --locked --workspace --all-targets -- -D warnings
(cd guests && cargo clippy --release --locked --target wasm32-wasip2 -- -D warnings)
# The node and its tests share one build (host/Cargo.toml, "Feature pins"): no dev-dependency
# may turn on a feature of a crate the node links that the node itself does not.
graph() { cargo tree --locked -p edge-host -e "$1" --prefix none -f '{p} {f}' | sed 's/ (\*)$//' | sort -u; }
normal=$(graph normal,build)
with_dev=$(graph normal,build,dev)
diverged=$(comm -23 <(echo "$normal") <(echo "$with_dev") | cut -d' ' -f1-2)
if [[ -n $diverged ]]; then
  echo "lint: dev-dependencies change the features of crates the node links:" >&2
  echo "$diverged" >&2
  echo "lint: add their features to host/Cargo.toml's feature pins (see the comment there)" >&2
  exit 1
fi
