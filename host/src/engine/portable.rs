//! Artifacts compiled once for every node of an architecture. `edge push --precompile` compiles
//! a component with the node's engine settings for a CPU baseline of the machine's
//! architecture (x86-64-v2 on x86-64: SSE4.2, POPCNT; the base instruction set on aarch64)
//! instead of that machine's own CPU, so every node of the same architecture and `edge`
//! version can load the result instead of compiling. A node that cannot (another wasmtime, a
//! CPU without the baseline) is told so by wasmtime when it loads the artifact, and compiles
//! for itself.
//!
//! [`PortableCompiler::key`] names such artifacts: it changes with everything that makes an
//! artifact unloadable elsewhere (wasmtime version, target, code generation settings, wasm
//! features), so a node only fetches artifacts made for its own key.

use wasmtime::Engine;

/// The CPU baseline artifacts are compiled for, per architecture: a Cranelift preset.
fn cpu_baseline(arch: target_lexicon::Architecture) -> Option<&'static str> {
    match arch {
        // x86-64-v2: every x86-64 gateway CPU of the last decade (Atom from Silvermont on).
        target_lexicon::Architecture::X86_64 => Some("nehalem"),
        _ => None,
    }
}

/// An engine configured like a node's, compiling for its architecture's CPU baseline.
pub struct PortableCompiler {
    engine: Engine,
}

impl PortableCompiler {
    pub fn new() -> anyhow::Result<Self> {
        let host = target_lexicon::Triple::host();
        let mut config = super::base_config(None);
        config.target(&host.to_string())?;
        if let Some(preset) = cpu_baseline(host.architecture) {
            // SAFETY: wasmtime's own check on loading refuses the artifact on a CPU without
            // these features; the preset only names Cranelift's set of them.
            #[expect(unsafe_code, reason = "a Cranelift CPU preset, checked on every load")]
            unsafe {
                config.cranelift_flag_enable(preset);
            }
        }
        Ok(Self {
            engine: Engine::new(&config)?,
        })
    }

    /// The platform key: 16 hex digits of a SHA-256 of wasmtime's compatibility hash for
    /// this engine (stable across Rust releases, unlike std's hasher).
    pub fn key(&self) -> String {
        super::compatibility_tag(&self.engine)
    }

    /// The target triple artifacts are compiled for (this machine's).
    pub fn target(&self) -> String {
        target_lexicon::Triple::host().to_string()
    }

    /// Compiles `wasm` (a component) to an artifact for the baseline CPU.
    pub fn precompile(&self, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(self.engine.precompile_component(wasm)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_stable_across_engines() {
        let a = PortableCompiler::new().expect("portable engine");
        let b = PortableCompiler::new().expect("portable engine");
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().len(), 16);
    }

    #[test]
    fn a_node_engine_loads_a_portable_artifact() {
        // The smallest component: the preamble alone.
        let wasm = b"\0asm\x0d\0\x01\0";
        let portable = PortableCompiler::new().expect("portable engine");
        let artifact = portable.precompile(wasm).expect("compiles");
        let node = Engine::new(&super::super::base_config(None)).expect("native engine");
        // SAFETY: the artifact was compiled just above.
        #[expect(unsafe_code, reason = "an artifact this test compiled")]
        let component = unsafe { wasmtime::component::Component::deserialize(&node, &artifact) };
        component.expect("a node engine loads the baseline artifact");
    }
}
