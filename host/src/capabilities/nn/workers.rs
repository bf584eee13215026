//! The worker threads that run requests of apps granted a model.
//!
//! `wasi:nn` `compute` blocks its thread for the whole inference. Those requests therefore
//! run on a runtime of their own, so a burst of classifications occupies these threads (and
//! queues behind them) while the data plane's threads keep answering every other app.

use std::future::Future;

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

pub struct InferenceWorkers {
    /// `None` only while dropping.
    runtime: Option<Runtime>,
}

impl InferenceWorkers {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("edge-inference")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `task` on these workers.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => runtime.spawn(task),
            None => tokio::spawn(task),
        }
    }
}

impl Drop for InferenceWorkers {
    fn drop(&mut self) {
        // The node may be dropped on an async thread, where a blocking shutdown would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
