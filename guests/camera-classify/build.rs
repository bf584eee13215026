//! Links the component with 4 MiB of initial linear memory, as `guests/classify` does (its
//! build.rs says why): a frame's decoding and preprocessing fit without growing the memory.

const INITIAL_MEMORY_BYTES: u32 = 4 * 1024 * 1024;

fn main() {
    println!("cargo:rustc-link-arg-cdylib=--initial-memory={INITIAL_MEMORY_BYTES}");
}
