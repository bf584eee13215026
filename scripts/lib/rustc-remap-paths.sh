#!/bin/sh
# rustc wrapper (.cargo/config.toml): runs the rustc command cargo gives (`$@`, which may
# start with clippy-driver) with this checkout's absolute path mapped to /edge and cargo's
# home to /cargo, in debug info, panic locations and file!().
#
# Why: rustc names a function called across codegen units `NAME.llvm.NUMBER`, the NUMBER a
# hash of its codegen unit, which holds the absolute paths of the build (the compile
# directory in the line tables, generated sources under target/). Built in two folders, the
# same commit gave about half of those names different numbers, so the function order in
# host/link-order.txt (generated in one folder) missed them in every other: 23.9 MiB
# resident instead of 20.4-21.1 for the idle node of docs/benchmarks.md. With the paths
# mapped, the other crates' numbers no longer depend on the folder; the node crate's own
# still changed with the length of the folder's path until it was built in one codegen unit
# (Cargo.toml; docs/benchmarks.md, "Every folder").
root=$(cd "$(dirname "$0")/../.." && pwd)
home=${CARGO_HOME:-$HOME/.cargo}
exec "$@" --remap-path-prefix="$home=/cargo" --remap-path-prefix="$root=/edge"
