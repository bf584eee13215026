//! The compile cache: components compiled ahead of time to artifacts on disk, mapped on every
//! later load, recompiled from the stored original when an artifact is missing or was made by
//! an incompatible engine, and pre-instantiated against the node's linker so a request only
//! creates a store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, InstancePre};

use super::NodeEngine;
use crate::control::repository::Repository;
use crate::control::validate;
use crate::error::DeployError;
use crate::host_state::HostState;

pub struct CompileCache {
    engine: NodeEngine,
    repo: Arc<Repository>,
}

impl CompileCache {
    pub fn new(engine: NodeEngine, repo: Arc<Repository>) -> Self {
        Self { engine, repo }
    }

    /// The component for `wasm` (whose digest is `digest`): from its artifact when one was
    /// compiled before, else compiled now (the returned duration) and stored.
    pub fn component(
        &self,
        digest: &str,
        wasm: &[u8],
    ) -> Result<(Component, Duration), DeployError> {
        let tag = self.engine.compatibility_tag();
        let artifact = self.repo.artifact_path(digest, &tag);
        if artifact.exists() {
            match self.engine.load_artifact(&artifact) {
                Ok(component) => return Ok((component, Duration::ZERO)),
                Err(err) => tracing::warn!("replacing an unusable artifact: {err:#}"),
            }
        }
        let started = Instant::now();
        let compiled = self.engine.precompile(wasm).map_err(|err| {
            DeployError::InvalidComponent(format!(
                "the component does not validate or compile: {err:#}"
            ))
        })?;
        let path = self.repo.store_artifact(digest, &tag, &compiled)?;
        let compile_time = started.elapsed();
        Ok((self.engine.load_artifact(&path)?, compile_time))
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
                Ok(self.component(digest, &wasm)?.0)
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
        let engine = &self.engine.engine;
        let instance_pre = self
            .engine
            .linker
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
