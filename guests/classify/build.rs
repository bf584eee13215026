//! Links the component with 4 MiB of initial linear memory: a request's working set (the
//! 602 KB input tensor read from the body, the decoded image, the resize buffers) fits in it, so
//! a fresh instance never grows its memory while it serves. On a node each growth costs two
//! changes of page protection (made accessible at the growth, taken back when the next instance
//! starts in the slot), each with a TLB shootdown across cores: about 0.1-0.2 ms per request on
//! a 2-core VM (docs/benchmarks.md, "Pre-sized linear memory").

const INITIAL_MEMORY_BYTES: u32 = 4 * 1024 * 1024;

fn main() {
    println!("cargo:rustc-link-arg-cdylib=--initial-memory={INITIAL_MEMORY_BYTES}");
}
