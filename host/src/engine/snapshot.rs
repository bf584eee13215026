//! Deploy-time pre-initialisation (instance snapshots) with wasmtime-wizer.
//!
//! A component that exports the function `wizer-initialize` (no parameters, no results; see
//! the `http-app-snapshot` world in `wit/world.wit`) has it run once at deploy. The state it
//! leaves in linear memory is written back into the component as data, so every request's
//! instance starts already initialised, from a copy-on-write memory image.
//!
//! The init function runs with no imports at all: WASI, kv and nn calls trap, because handles,
//! clocks and randomness captured in a snapshot would be wrong in every later instance. A deploy
//! whose init calls an import fails with an error naming it.

use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wizer::Wizer;

use crate::error::DeployError;

/// The export that marks a component for pre-initialisation.
pub const INIT_EXPORT: &str = "wizer-initialize";

/// How long an init function may run at deploy.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(30);

/// A finished snapshot.
pub struct Snapshot {
    pub wasm: Vec<u8>,
    pub init_time: Duration,
}

/// Whether the component exports [`INIT_EXPORT`] at its top level (checked on the binary,
/// before anything is compiled).
pub fn exports_init(wasm: &[u8]) -> bool {
    exports_matching(wasm, |name| name == INIT_EXPORT)
}

/// Whether a deploy of `wasm` takes a snapshot: it exports [`INIT_EXPORT`] and the deploy
/// did not turn snapshots off (`wanted`).
pub fn taken_at_deploy(wanted: bool, wasm: &[u8]) -> bool {
    wanted && exports_init(wasm)
}

/// Why a precompiled artifact cannot serve a component the node snapshots.
pub const ARTIFACT_OF_SNAPSHOTTED_COMPONENT: &str = "the node snapshots this component at deploy \
     (it exports wizer-initialize), so it serves other bytes than the artifact was compiled \
     from; set snapshot = false to use the artifact";

/// Whether the component's top level exports WASI 0.3's `wasi:http/handler@0.3.x`.
pub fn exports_p3_handler(wasm: &[u8]) -> bool {
    exports_matching(wasm, |name| name.starts_with("wasi:http/handler@0.3"))
}

/// Whether the component's top level has an export whose name satisfies `wanted`.
fn exports_matching(wasm: &[u8], wanted: impl Fn(&str) -> bool) -> bool {
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::Version { .. }) => depth += 1,
            Ok(wasmparser::Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(wasmparser::Payload::ComponentExportSection(exports))
                if depth == 1
                    && exports
                        .clone()
                        .into_iter()
                        .flatten()
                        .any(|export| wanted(export.name.name)) =>
            {
                return true;
            }
            Err(_) => return false,
            _ => {}
        }
    }
    false
}

/// Runs the component's init function under wizer and returns the snapshotted component.
pub async fn snapshot(
    engine: &Engine,
    wasm: &[u8],
    memory_bytes: usize,
) -> Result<Snapshot, DeployError> {
    let started = Instant::now();
    let mut store = Store::new(
        engine,
        StoreLimitsBuilder::new().memory_size(memory_bytes).build(),
    );
    store.limiter(|limits: &mut StoreLimits| limits);
    crate::host_state::interrupt_at(&mut store, started + INIT_TIMEOUT);

    let mut wizer = Wizer::new();
    wizer.init_func(INIT_EXPORT).keep_init_func(true);
    let result = wizer
        .run_component(&mut store, wasm, async |store, component: &Component| {
            let mut linker = Linker::new(store.engine());
            linker.define_unknown_imports_as_traps(component)?;
            linker.instantiate_async(store, component).await
        })
        .await;
    match result {
        Ok((wasm, _)) => Ok(Snapshot {
            wasm,
            init_time: started.elapsed(),
        }),
        Err(err) => Err(explain_init_failure(&err)),
    }
}

fn explain_init_failure(err: &wasmtime::Error) -> DeployError {
    let message = format!("{err:#}");
    if let Some(import) = message
        .split("unknown import: `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
    {
        return DeployError::InitFailed(format!(
            "the component's {INIT_EXPORT} function called `{import}` at deploy time; init \
             functions get no imports (no WASI, kv or nn: handles, clocks and randomness must \
             not be captured in a snapshot). Move that call into the request handler"
        ));
    }
    if matches!(
        err.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        return DeployError::InitFailed(format!(
            "the component's {INIT_EXPORT} function ran longer than {}s at deploy",
            INIT_TIMEOUT.as_secs()
        ));
    }
    DeployError::InitFailed(format!(
        "pre-initialising the component with {INIT_EXPORT} failed: {message}"
    ))
}
