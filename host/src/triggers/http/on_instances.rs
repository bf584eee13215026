//! A request of an app served by its instances ([`crate::triggers::instances`]: WASI 0.3
//! apps), handed over from the inference workers for an app granted a model.

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use http_body_util::BodyExt as _;

use super::ServeBody;
use super::answers::{CountedBody, time_limit_exceeded};
use super::request_body::LimitedBody;
use crate::apps::LoadedApp;
use crate::capabilities::nn::{AppModels, InferenceWorkers};
use crate::metrics::Outcome;
use crate::triggers::body_ahead::with_body_started;
use crate::triggers::instances::{AppInstances, InstanceRequest};
use crate::usage::Trigger;

/// [`run`] for a 0.3 app granted a model. A 0.3 instance runs on the runtime
/// that first handed it a request, so the request is handed over from the inference workers,
/// within the app's share of them: the instance lives there and its blocking `compute` never
/// holds a data-plane thread. Waiting for the app's share counts toward its time limit.
pub(super) async fn run_on_workers(
    app: &Arc<LoadedApp>,
    instances: Arc<AppInstances>,
    models: &AppModels,
    workers: &InferenceWorkers,
    req: Request<LimitedBody>,
    permit: tokio::sync::OwnedSemaphorePermit,
    request: InstanceRequest,
) -> Result<Response<ServeBody>, Outcome> {
    let (share, app) = (models.worker_share(), app.clone());
    let on_workers = workers.spawn(async move {
        let turn = tokio::time::timeout_at(request.deadline.into(), share.acquire_owned()).await;
        let Ok(Ok(_turn)) = turn else {
            return Err(time_limit_exceeded(&app));
        };
        run(&app, &instances, req, permit, request).await
    });
    on_workers.await.unwrap_or_else(|join| {
        tracing::error!("request task failed: {join}");
        Err(Outcome::Trapped)
    })
}

/// Passes the request to the app's instances (WASI 0.3, or reuse): a new or reused instance
/// answers it by its deadline (the request's arrival plus its time limit); the concurrency
/// permit is held until the response body ends. The start of the body is read before the
/// head goes to hyper ([`with_body_started`]), so they leave together.
pub(super) async fn run(
    app: &Arc<LoadedApp>,
    instances: &AppInstances,
    req: Request<LimitedBody>,
    permit: tokio::sync::OwnedSemaphorePermit,
    request: InstanceRequest,
) -> Result<Response<ServeBody>, Outcome> {
    if let Some(usage) = &app.usage {
        usage.count_invocation(Trigger::Http);
    }
    let deadline = request.deadline;
    let req = req.map(http_body_util::BodyExt::boxed_unsync);
    let handled = instances.handle(request, req);
    match tokio::time::timeout_at(deadline.into(), handled).await {
        Ok(Ok(response)) => Ok(with_body_started(response)
            .await
            .map(|body| CountedBody::holding(body, permit).boxed_unsync())),
        // An instance interrupted at the deadline ends as a trap of the whole instance.
        Ok(Err(_)) if Instant::now() >= deadline => Err(time_limit_exceeded(app)),
        Ok(Err(err)) => Err(crate::triggers::instances::classify_failure(
            &app.name, &err,
        )),
        Err(_elapsed) => Err(time_limit_exceeded(app)),
    }
}
