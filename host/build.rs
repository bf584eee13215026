//! Lays out the `edge` binary so that an idle node keeps less of it resident.
//!
//! `link-order.txt` names the functions a node runs to start with apps deployed and to serve
//! them (written by `scripts/link-order.sh` from an instrumented run). LLD places them first,
//! packed together; the kernel maps a binary's code in 64 KiB windows around each page
//! touched, so code spread over the whole binary keeps most of it resident. Only the `edge`
//! binary gets the order, and only where Rust links with its own LLD (x86-64 Linux, unless a
//! linker is configured): names that no longer exist are skipped, so a stale file costs
//! memory, never correctness. `EDGE_NO_LINK_ORDER=1` links without it.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=link-order.txt");
    // Set by scripts/link-order.sh for its instrumented build (see `cli`).
    println!("cargo::rustc-check-cfg=cfg(edge_link_order_profile)");
    for variable in [
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
        "EDGE_NO_LINK_ORDER",
    ] {
        println!("cargo::rerun-if-env-changed={variable}");
    }
    let rust_lld = env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu")
        && env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none()
        && !env::var("CARGO_ENCODED_RUSTFLAGS")
            .is_ok_and(|flags| flags.contains("linker") || flags.contains("link-self-contained"));
    if !rust_lld || env::var_os("EDGE_NO_LINK_ORDER").is_some() {
        return;
    }
    let order =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("link-order.txt");
    if order.exists() {
        println!(
            "cargo::rustc-link-arg-bin=edge=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo::rustc-link-arg-bin=edge=-Wl,--no-warn-symbol-ordering");
    }
}
