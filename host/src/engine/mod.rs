//! The one wasmtime [`Engine`] of a node and everything tied to it: allocator choice, epoch
//! ticking for timeouts, the linker with the interfaces this node provides, compilation and
//! its artifact cache ([`compile`]), artifacts compiled elsewhere for a CPU baseline
//! ([`portable`]), and deploy-time snapshots ([`snapshot`]).

pub mod compile;
pub mod portable;
pub mod snapshot;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::{LimitsConfig, PoolConfig};
use crate::host_state::HostState;
use crate::lateness::WakeupLateness;

/// How often the epoch advances: the time slice after which a running guest yields to other
/// requests, and the granularity of request timeouts.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Which instance allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    Pooling,
    OnDemand,
}

/// The node's engine plus the linker every app is instantiated against.
#[derive(Clone)]
pub struct NodeEngine {
    pub engine: Engine,
    pub linker: Arc<Linker<HostState>>,
    pub allocator: Allocator,
    /// The baseline compiler's engine, when `[limits] baseline_tier` is on and available.
    pub baseline: Arc<LazyBaseline>,
}

/// The baseline tier, built at its first use: a node that never deploys a big component does
/// not pay for its engine, linker and threads at start-up or in memory.
pub struct LazyBaseline {
    enabled: bool,
    tier: OnceLock<Option<Arc<BaselineTier>>>,
}

impl LazyBaseline {
    /// The tier, built now if this is its first use; `None` when off or unavailable.
    pub fn get_or_build(&self) -> Option<&Arc<BaselineTier>> {
        if !self.enabled {
            return None;
        }
        self.tier.get_or_init(baseline_tier).as_ref()
    }

    /// The tier if it was built.
    pub fn built(&self) -> Option<&Arc<BaselineTier>> {
        self.tier.get().and_then(Option::as_ref)
    }
}

/// A second engine whose compiler is Winch, the baseline compiler: it compiles several times
/// faster than Cranelift and its code runs slower, so a big component serves from it while
/// Cranelift compiles in the background. On-demand allocation (it serves only in between), the
/// same epoch interruption, and its own linker with the same interfaces.
pub struct BaselineTier {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    /// Threads for baseline compiles: every core, for the second or two that ends with the
    /// app serving (optimizing compiles stay on the node's bounded compile threads).
    pub threads: Option<rayon::ThreadPool>,
}

impl NodeEngine {
    /// Builds the engine: pooling allocator when enabled and the address space reservation
    /// succeeds, on-demand otherwise (logged), copy-on-write memory images, epoch interruption.
    /// Its epoch thread records how late it wakes in `lateness`.
    pub fn new(
        pool: &PoolConfig,
        limits: &LimitsConfig,
        lateness: WakeupLateness,
    ) -> anyhow::Result<Self> {
        let (engine, allocator) = if pool.enabled {
            match Engine::new(&base_config(Some(pooling_config(pool, limits)))) {
                Ok(engine) => (engine, Allocator::Pooling),
                Err(err) => {
                    tracing::warn!(
                        "pooling allocator unavailable ({err:#}); falling back to on-demand \
                         allocation (slower instantiation). Lower [pool] max_instances or \
                         [limits] memory_mib, or raise the address-space limit (ulimit -v)"
                    );
                    (Engine::new(&base_config(None))?, Allocator::OnDemand)
                }
            }
        } else {
            (Engine::new(&base_config(None))?, Allocator::OnDemand)
        };
        let linker = Arc::new(crate::host_state::linker(&engine)?);
        start_epoch_ticker(&engine, Some(lateness));
        let baseline = Arc::new(LazyBaseline {
            enabled: limits.baseline_tier,
            tier: OnceLock::new(),
        });
        Ok(Self {
            engine,
            linker,
            allocator,
            baseline,
        })
    }

    /// The linker for components of `engine` (the node's, or the baseline tier's).
    pub fn linker_for(&self, engine: &Engine) -> &Linker<HostState> {
        match self.baseline.built() {
            Some(baseline) if Engine::same(engine, &baseline.engine) => &baseline.linker,
            _ => &self.linker,
        }
    }

    /// Whether `engine` is the baseline tier's.
    pub fn is_baseline(&self, engine: &Engine) -> bool {
        self.baseline
            .built()
            .is_some_and(|baseline| Engine::same(engine, &baseline.engine))
    }

    /// Compiles a component to a precompiled artifact (the expensive, ahead-of-time step).
    pub fn precompile(&self, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(self.engine.precompile_component(wasm)?)
    }

    /// A short hex tag that changes whenever artifacts of this engine stop being loadable
    /// by another (different wasmtime version or codegen settings). A SHA-256 of wasmtime's
    /// compatibility hash, so the tag is stable across Rust releases (std's `DefaultHasher`
    /// may change its algorithm between them).
    pub fn compatibility_tag(&self) -> String {
        compatibility_tag(&self.engine)
    }

    /// Loads an artifact compiled elsewhere ([`portable`]) and stored at `path`, by mapping
    /// the file: wasmtime checks its header (version, target, settings, wasm features, CPU
    /// features) and refuses one this node cannot run, with the reason.
    ///
    /// Only artifacts whose digest the fleet's operator pinned reach this call (see
    /// `[fleet] accept_precompiled`): loading native code is trusting whoever made it.
    #[expect(
        unsafe_code,
        reason = "loading native code the fleet operator pinned by digest, opted into per node"
    )]
    pub fn load_foreign_artifact(&self, path: &std::path::Path) -> anyhow::Result<Component> {
        // SAFETY: see above; wasmtime refuses artifacts of an incompatible engine or CPU, and
        // the file sits in the node's private data folder, not modified while mapped.
        unsafe { Component::deserialize_file(&self.engine, path) }.map_err(anyhow::Error::from)
    }

    /// Loads a precompiled artifact by mapping the file.
    ///
    /// Artifacts are only ever written by this node into its own data folder (atomically,
    /// content-addressed, tagged with [`Self::compatibility_tag`]); wasmtime still checks the
    /// header and refuses artifacts from an incompatible engine.
    #[expect(
        unsafe_code,
        reason = "deserializing precompiled code this node wrote itself"
    )]
    pub fn load_artifact(&self, path: &std::path::Path) -> anyhow::Result<Component> {
        // SAFETY: the file is a wasmtime artifact produced by `precompile` on this node and
        // stored in the node's private data folder; it is not modified while mapped.
        unsafe { Component::deserialize_file(&self.engine, path) }
            .map_err(anyhow::Error::from)
            .with_context(|| format!("loading precompiled artifact {}", path.display()))
    }
}

/// The baseline tier, or `None` (logged) where Winch cannot build an engine here.
fn baseline_tier() -> Option<Arc<BaselineTier>> {
    let mut config = base_config(None);
    config.strategy(wasmtime::Strategy::Winch);
    // Winch compiles the guest's functions; Cranelift still compiles the entry trampolines,
    // one per function a table or export lets escape: thousands for an interpreter (40 % of
    // the Python hello's serial compile time). They are tiny, so Cranelift's fastest settings
    // cost them nothing that matters and cut the baseline compile by about a quarter of its
    // CPU (measured with `wasmtime compile -C compiler=winch`, docs/benchmarks.md).
    config.cranelift_opt_level(wasmtime::OptLevel::None);
    config.cranelift_regalloc_algorithm(wasmtime::RegallocAlgorithm::SinglePass);
    let built = (|| -> anyhow::Result<_> {
        let engine = Engine::new(&config)?;
        let linker = crate::host_state::linker(&engine)?;
        Ok((engine, linker))
    })();
    match built {
        Ok((engine, linker)) => {
            start_epoch_ticker(&engine, None);
            let threads = rayon::ThreadPoolBuilder::new()
                .thread_name(|i| format!("edge-baseline-{i}"))
                .build()
                .inspect_err(|err| tracing::warn!("baseline compile threads: {err}"))
                .ok();
            Some(Arc::new(BaselineTier {
                engine,
                linker,
                threads,
            }))
        }
        Err(err) => {
            tracing::warn!(
                "the baseline compiler is unavailable ({err:#}); every deploy waits for the \
                 optimizing compile"
            );
            None
        }
    }
}

fn base_config(pooling: Option<PoolingAllocationConfig>) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // WASI 0.3 components (native async: `stream`, `future`, async functions).
    config.wasm_component_model_async(true);
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    config.parallel_compilation(true);
    if let Some(pooling) = pooling {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    }
    config
}

fn pooling_config(pool: &PoolConfig, limits: &LimitsConfig) -> PoolingAllocationConfig {
    let instances = pool.max_instances;
    let pagemap_scan = PoolingAllocationConfig::is_pagemap_scan_available();
    let keep_resident = pool.keep_resident_kib.kib(pagemap_scan) as usize * 1024;
    tracing::debug!(
        pagemap_scan,
        keep_resident_kib = keep_resident / 1024,
        "instance pool: memory kept resident per slot"
    );
    let mut config = PoolingAllocationConfig::default();
    config
        .total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(pool.max_memories_per_instance.max(4)))
        .total_memories(instances.saturating_mul(pool.max_memories_per_instance))
        .total_tables(instances.saturating_mul(pool.max_tables_per_instance))
        .max_memories_per_component(pool.max_memories_per_instance)
        .max_tables_per_component(pool.max_tables_per_instance)
        .max_memory_size(limits.largest_memory_bytes())
        .max_unused_warm_slots(pool.max_unused_warm_slots)
        .linear_memory_keep_resident(keep_resident)
        .table_keep_resident(keep_resident)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), an ending instance's memory is
        // reset by finding the pages it dirtied anywhere in the memory and restoring those
        // (up to keep_resident) in place, instead of an madvise of everything past the
        // first keep_resident bytes: no TLB shootdown and no copy-on-write fault on the next
        // request. (vendor/wasmtime lets that scan see more than 32 dirty regions, which an
        // interpreter's heap has.) Older kernels keep the plain keep-resident behaviour.
        .pagemap_scan(wasmtime::Enabled::Auto);
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a plain thread, so a guest stuck in a
/// loop is interrupted even when every async worker is busy, and records in `lateness` how
/// late each wake-up came (the node's engine only: one thread measures the machine). The
/// thread ends with the engine.
fn start_epoch_ticker(engine: &Engine, lateness: Option<WakeupLateness>) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("edge-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                let asleep = std::time::Instant::now();
                std::thread::sleep(EPOCH_TICK);
                if let Some(lateness) = &lateness {
                    lateness.record(asleep.elapsed().saturating_sub(EPOCH_TICK));
                }
            }
        });
    if let Err(err) = spawned {
        tracing::error!("cannot start the epoch thread, request timeouts will not fire: {err}");
    }
}

/// 16 hex digits of a SHA-256 of `engine`'s compatibility hash: equal for two engines
/// exactly when artifacts of one load in the other (see [`NodeEngine::compatibility_tag`]).
fn compatibility_tag(engine: &Engine) -> String {
    use sha2::Digest as _;
    use std::hash::Hash as _;
    let mut hasher = Sha256Hasher(sha2::Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// Feeds what a `Hash` implementation writes into SHA-256.
struct Sha256Hasher(sha2::Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }

    /// Unused: the digest is read from the inner hasher.
    fn finish(&self) -> u64 {
        0
    }
}
