//! The compile cache: components compiled ahead of time to artifacts on disk, mapped on every
//! later load, recompiled from the stored original when an artifact is missing or was made by
//! an incompatible engine, and pre-instantiated against the node's linker so a request only
//! creates a store. Big components first get the baseline tier's code ([`Tier::Baseline`],
//! never stored) while the node compiles the optimized artifact in the background.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, InstancePre};

use super::NodeEngine;
use crate::control::repository::Repository;
use crate::control::validate;
use crate::error::DeployError;
use crate::host_state::HostState;

/// Which compiler's code an app version runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Winch's, while the optimized artifact is compiled in the background.
    Baseline,
    /// Cranelift's, from the stored artifact.
    Optimized,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Baseline => "baseline",
            Tier::Optimized => "optimized",
        }
    }
}

pub struct CompileCache {
    engine: NodeEngine,
    repo: Arc<Repository>,
    /// Components from this many bytes take the baseline tier first (`None`: never).
    baseline_from: Option<u64>,
}

impl CompileCache {
    pub fn new(engine: NodeEngine, repo: Arc<Repository>, baseline_from: Option<u64>) -> Self {
        Self {
            engine,
            repo,
            baseline_from,
        }
    }

    /// The component for `wasm` (whose digest is `digest`): from its optimized artifact when
    /// one was compiled before; else, for a big component, compiled now by the baseline tier
    /// (the caller then runs [`Self::optimize`] in the background); else compiled now and
    /// stored. The duration is the compile's.
    pub fn component(
        &self,
        digest: &str,
        wasm: &[u8],
    ) -> Result<(Component, Duration, Tier), DeployError> {
        let tag = self.engine.compatibility_tag();
        let artifact = self.repo.artifact_path(digest, &tag);
        if artifact.exists() {
            match self.engine.load_artifact(&artifact) {
                Ok(component) => return Ok((component, Duration::ZERO, Tier::Optimized)),
                Err(err) => tracing::warn!("replacing an unusable artifact: {err:#}"),
            }
        }
        let big = self
            .baseline_from
            .is_some_and(|from| wasm.len() as u64 >= from);
        let baseline = big.then(|| self.engine.baseline.get_or_build()).flatten();
        if let Some(baseline) = baseline {
            let started = Instant::now();
            let compile = || Component::new(&baseline.engine, wasm);
            let compiled = match &baseline.threads {
                Some(threads) => threads.install(compile),
                None => compile(),
            };
            crate::heap::release_freed_memory();
            match compiled {
                Ok(component) => return Ok((component, started.elapsed(), Tier::Baseline)),
                // The optimizing compiler says what is wrong, if anything is.
                Err(err) => tracing::info!("the baseline compiler declined ({err:#})"),
            }
        }
        let (path, compile_time) = self.optimize(digest, wasm)?;
        Ok((
            self.engine.load_artifact(&path)?,
            compile_time,
            Tier::Optimized,
        ))
    }

    /// Compiles `wasm` with the optimizing compiler and stores the artifact; returns its path
    /// and the compile's duration.
    pub fn optimize(
        &self,
        digest: &str,
        wasm: &[u8],
    ) -> Result<(std::path::PathBuf, Duration), DeployError> {
        let started = Instant::now();
        let compiled = self.engine.precompile(wasm);
        crate::heap::release_freed_memory();
        let compiled = compiled.map_err(|err| {
            DeployError::InvalidComponent(format!(
                "the component does not validate or compile: {err:#}"
            ))
        })?;
        let path = self
            .repo
            .store_artifact(digest, &self.engine.compatibility_tag(), &compiled)?;
        Ok((path, started.elapsed()))
    }

    /// Takes `artifact`, compiled elsewhere for this node's platform ([`super::portable`]),
    /// as the optimized code of the component `digest`, when no artifact is stored for it
    /// yet and this node's engine can load it: stored, then loaded from where it is stored
    /// (one deserialization, the code mapped from the file). Says why not otherwise; nothing
    /// stays stored then.
    pub fn adopt(&self, digest: &str, artifact: &[u8]) -> Result<Component, String> {
        let tag = self.engine.compatibility_tag();
        if self.repo.artifact_path(digest, &tag).exists() {
            return Err("this node already had compiled code for the component".into());
        }
        let path = self
            .repo
            .store_artifact(digest, &tag, artifact)
            .map_err(|err| format!("cannot store it ({err:#})"))?;
        self.engine.load_foreign_artifact(&path).map_err(|err| {
            // Left in place, it would be tried again at every start.
            if let Err(remove) = std::fs::remove_file(&path) {
                tracing::warn!("removing an artifact this node cannot load: {remove}");
            }
            format!("this node cannot load it ({err:#})")
        })
    }

    /// The tier of a component this cache returned.
    pub fn tier_of(&self, component: &Component) -> Tier {
        match self.engine.is_baseline(component.engine()) {
            true => Tier::Baseline,
            false => Tier::Optimized,
        }
    }

    /// A stored component: its artifact mapped, or recompiled from the stored original when
    /// the artifact is missing or was made by an incompatible engine.
    pub fn stored(&self, app: &str, digest: &str) -> Result<Component, DeployError> {
        let artifact = self
            .repo
            .artifact_path(digest, &self.engine.compatibility_tag());
        match self.engine.load_artifact(&artifact) {
            Ok(component) => Ok(component),
            Err(err) => {
                tracing::warn!(
                    app,
                    "recompiling from the stored original ({err:#}); this happens once after \
                     an engine upgrade"
                );
                let wasm = self.repo.read_component(digest)?;
                let (path, _) = self.optimize(digest, &wasm)?;
                Ok(self.engine.load_artifact(&path)?)
            }
        }
    }

    /// Links the component against the node's interfaces and builds its memory images, so
    /// that serving it only creates a store. Fails, naming the import, when the component
    /// needs something this node does not provide.
    pub fn pre_instantiate(
        &self,
        component: &Component,
    ) -> Result<InstancePre<HostState>, DeployError> {
        let engine = component.engine();
        let instance_pre = self
            .engine
            .linker_for(engine)
            .instantiate_pre(component)
            .map_err(|err| validate::explain_missing_import(engine, component, &err.into()))?;
        // Build the copy-on-write memory images now rather than on the first request (for a
        // snapshot that is a multi-megabyte copy the first caller would wait for).
        component
            .initialize_copy_on_write_image()
            .map_err(|err| anyhow::anyhow!("preparing memory images: {err:#}"))?;
        Ok(instance_pre)
    }
}
