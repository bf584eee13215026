//! Operator access to an app's key-value data (`edge kv`): list keys, read, write and
//! delete values, each recorded in the audit log.

use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AdminState, ApiError};
use crate::api::KeyPage;
use crate::auth::Caller;
use crate::capabilities::kv::Bucket;
use crate::capabilities::kv::KvError;
use crate::control::audit::AuditEvent;
use crate::names::validate_app_name;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    after: Option<String>,
}

fn bucket(state: &AdminState, app: &str, bucket: &str) -> Result<Bucket, ApiError> {
    validate_app_name(app).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    // The operator writes within the app's quota, as the app would.
    let quota = state
        .node
        .routes
        .current()
        .get(app)
        .map(|loaded| loaded.limits.kv)
        .or_else(|| {
            let defaults = crate::api::AppLimits::default();
            state
                .node
                .config
                .limits
                .resolve(&defaults)
                .ok()
                .map(|l| l.kv)
        })
        .unwrap_or_default();
    Ok(state.node.kv.bucket(app, bucket, quota)?)
}

pub async fn list_keys(
    State(state): State<AdminState>,
    Path((app, name)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<KeyPage>, ApiError> {
    let bucket = bucket(&state, &app, &name)?;
    let page_size = state.node.kv.config().page_size;
    Ok(axum::Json(
        bucket.list_keys(query.after.as_deref(), page_size)?,
    ))
}

pub async fn get_value(
    State(state): State<AdminState>,
    Path((app, name, key)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let bucket = bucket(&state, &app, &name)?;
    match state.node.kv.get(&bucket, &key)? {
        Some(value) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response())
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no key {key:?} in bucket {name} of app {app}"),
        )),
    }
}

pub async fn set_value(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path((app, name, key)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    // The same checked, persisted write a guest's `set` makes.
    let kv = state.node.kv.clone();
    let target = (app, name, key.clone());
    audited_change(&state, caller, "kv.set", target, async move |bucket| {
        kv.set(&bucket, &key, &body).await
    })
    .await
}

pub async fn delete_value(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path((app, name, key)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let kv = state.node.kv.clone();
    let target = (app, name, key.clone());
    audited_change(&state, caller, "kv.delete", target, async move |bucket| {
        kv.delete(&bucket, &key).await
    })
    .await
}

/// Runs a change to one key of an app's bucket and records it in the audit log.
async fn audited_change(
    state: &AdminState,
    caller: Caller,
    action: &'static str,
    (app, name, key): (String, String, String),
    change: impl AsyncFnOnce(Bucket) -> Result<(), KvError>,
) -> Result<StatusCode, ApiError> {
    let result = match bucket(state, &app, &name) {
        Ok(bucket) => change(bucket).await.map_err(ApiError::from),
        Err(err) => Err(err),
    };
    state
        .node
        .record_audit(AuditEvent {
            token: caller.token,
            action,
            app: Some(app),
            target: Some(format!("{name}/{key}")),
            result: match &result {
                Ok(()) => "ok".to_string(),
                Err(err) => format!("refused: {}", err.message),
            },
            ..AuditEvent::default()
        })
        .await;
    result.map(|()| StatusCode::NO_CONTENT)
}
