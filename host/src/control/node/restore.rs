//! Loading the deployed apps when the node starts: each from its stored artifact (recompiled
//! from the stored original after an engine upgrade), apps granted a model once the models
//! are loaded, and a broken app recorded as failed without keeping the others from serving.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context as _;
use tokio::sync::Semaphore;

use super::Node;
use crate::apps::{LoadedApp, RoutingTable};
use crate::control::repository::{AppRecord, VersionRecord};
use crate::error::DeployError;

impl Node {
    /// Loads every deployed app. Apps granted a model are loaded once the models are (on a
    /// thread of their own), so the others serve without waiting for OpenVINO.
    pub(super) fn restore_apps(self: &Arc<Self>) -> anyhow::Result<()> {
        let started = Instant::now();
        let (records, damaged) = self.repo.list_apps_lenient()?;
        for (name, reason) in damaged {
            tracing::error!(app = %name, "cannot load app: {reason}");
            self.set_failed(&name, Some(reason));
        }
        let (with_models, records): (Vec<AppRecord>, Vec<AppRecord>) = records
            .into_iter()
            .partition(|record| !record.current.grants.models.is_empty());
        let loaded: Vec<Arc<LoadedApp>> = records
            .iter()
            .filter_map(|record| self.restore_app(record))
            .collect();
        tracing::info!(
            apps = loaded.len(),
            waiting_for_models = with_models.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "restored deployed apps"
        );
        self.routes.replace(RoutingTable::new(loaded));
        if with_models.is_empty() {
            self.restored.store(true, Ordering::Release);
        } else {
            let node = self.clone();
            let restorer = std::thread::Builder::new()
                .name("edge-restore-nn".into())
                .spawn(move || node.restore_apps_with_models(with_models))
                .context("starting the thread that restores apps with models")?;
            self.start_up_threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(restorer);
        }
        Ok(())
    }

    fn restore_app(&self, record: &AppRecord) -> Option<Arc<LoadedApp>> {
        let app_started = Instant::now();
        match self.load_version(&record.name, &record.current, None) {
            Ok(app) => {
                self.metrics.app_loaded(&record.name, app_started.elapsed());
                Some(Arc::new(app))
            }
            // One broken app must not keep the others from serving.
            Err(err) => {
                tracing::error!(app = %record.name, "cannot load app: {err:#}");
                self.set_failed(&record.name, Some(format!("{err:#}")));
                None
            }
        }
    }

    /// Adds the apps granted a model once the models are loaded, unless a deploy, rollback
    /// or remove got to them first.
    fn restore_apps_with_models(&self, records: Vec<AppRecord>) {
        self.models.wait_until_loaded();
        for record in records {
            let _change = self.changes.blocking_lock();
            let still_current = matches!(
                self.repo.get_app(&record.name),
                Ok(Some(now)) if now == record
            );
            if !still_current || self.routes.current().get(&record.name).is_some() {
                continue;
            }
            if let Some(app) = self.restore_app(&record) {
                let table = self.routes.current().with(app);
                self.routes.replace(table);
                tracing::info!(app = %record.name, "restored (its models are loaded)");
            }
        }
        self.restored.store(true, Ordering::Release);
    }

    /// Loads a stored version: maps its artifact, or recompiles it from the stored original
    /// when the artifact is missing or was made by an incompatible engine.
    pub(super) fn load_version(
        &self,
        name: &str,
        version: &VersionRecord,
        concurrency: Option<Arc<Semaphore>>,
    ) -> Result<LoadedApp, DeployError> {
        let component = self.compiler.stored(name, version.served_digest())?;
        self.prepare(name, version.clone(), &component, concurrency)
    }
}
