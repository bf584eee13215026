//! The admin API: deploy, list, inspect, remove and roll back apps; health and metrics.
//! Everything but `/healthz` needs the bearer token.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::api::{AppView, CONFIG_HEADER, DeployReply, PreviousView, SnapshotView};
use crate::auth;
use crate::capabilities::config::ConfigValues;
use crate::capabilities::kv::KvError;
use crate::control::node::{DeploySpec, Node};
use crate::control::repository::{AppRecord, VersionRecord};
use crate::error::DeployError;

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub node: Arc<Node>,
    pub token: Arc<str>,
    /// Base URL of the data plane, to tell deployers where their app answers.
    pub data_plane_url: Arc<str>,
}

/// The admin router; tests drive it without a socket.
pub fn router(state: AdminState) -> Router {
    let kv_value_limit = state.node.kv.config().max_value_bytes.saturating_add(1);
    let protected = Router::new()
        .route("/v1/apps", get(list_apps))
        .route(
            "/v1/apps/{name}",
            get(get_app).put(deploy_app).delete(remove_app),
        )
        .route("/v1/apps/{name}/rollback", post(rollback_app))
        .route("/v1/apps/{name}/kv/{bucket}", get(kv_api::list_keys))
        .route(
            "/v1/apps/{name}/kv/{bucket}/{key}",
            get(kv_api::get_value)
                .put(kv_api::set_value)
                .delete(kv_api::delete_value)
                .layer(DefaultBodyLimit::max(kv_value_limit)),
        )
        .route("/metrics", get(metrics))
        .route("/v1/models", get(list_models))
        // The deploy handler enforces the upload limit itself, with a clear error.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such admin endpoint") })
        .with_state(state)
}

/// `ok` once every deployed app is loaded; 503 while apps with a model wait for it. One line
/// per configured broker follows: its connection state and outbox. A broker being down does
/// not make the node unhealthy: HTTP serves regardless.
async fn healthz(State(state): State<AdminState>) -> Response {
    if state.node.is_restored() {
        let mut body = String::from("ok\n");
        for broker in state.node.brokers.status() {
            let link = match (&broker.error, broker.connected) {
                (_, true) => "connected".to_string(),
                (Some(why), false) => format!("unreachable ({why})"),
                (None, false) => "connecting".to_string(),
            };
            body.push_str(&format!(
                "{}: {link}, outbox {}\n",
                broker.broker, broker.outbox
            ));
        }
        body.into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: apps with a model are waiting for it to compile\n",
        )
            .into_response()
    }
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth::is_authorized(presented, &state.token) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong admin token: pass --token, set EDGE_TOKEN, or use the token in \
         <data-dir>/admin.token on the node",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

impl From<&AppRecord> for AppView {
    fn from(record: &AppRecord) -> Self {
        let VersionRecord {
            digest,
            size,
            route,
            env,
            config,
            deployed_at,
            grants,
            snapshot,
        } = &record.current;
        Self {
            name: record.name.clone(),
            route: route.clone(),
            digest: digest.clone(),
            size: *size,
            deployed_at: *deployed_at,
            env: env.iter().map(|(k, _)| k.clone()).collect(),
            config: config.keys(),
            kv: grants.kv,
            models: grants.models.clone(),
            outbound: grants.outbound.0.clone(),
            subscribe: grants.messaging.subscribe.clone(),
            publish: grants.messaging.publish.clone(),
            snapshot: snapshot.as_ref().map(|s| SnapshotView {
                size: s.size,
                init_ms: s.init_ms,
            }),
            previous: record.previous.as_ref().map(|p| PreviousView {
                digest: p.digest.clone(),
                route: p.route.clone(),
                deployed_at: p.deployed_at,
            }),
        }
    }
}

async fn list_apps(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let apps = state.node.repo.list_apps().map_err(DeployError::from)?;
    let views: Vec<AppView> = apps.iter().map(AppView::from).collect();
    Ok(axum::Json(views).into_response())
}

async fn get_app(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let record = state
        .node
        .repo
        .get_app(&name)
        .map_err(DeployError::from)?
        .ok_or(DeployError::NotFound(name))?;
    Ok(axum::Json(AppView::from(&record)).into_response())
}

async fn deploy_app(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut spec = parse_deploy_query(query.as_deref().unwrap_or_default())?;
    spec.config = parse_config_header(&headers)?;
    let limit = state.node.config.limits.max_component_bytes;
    let read_limit = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let bytes = axum::body::to_bytes(body, read_limit)
        .await
        .map_err(|_| DeployError::TooLarge { limit })?;
    let outcome = state.node.deploy(&name, bytes.to_vec(), spec).await?;
    let reply = DeployReply {
        url: format!("{}{}", state.data_plane_url, outcome.record.current.route),
        app: AppView::from(&outcome.record),
        compile_ms: outcome.compile_time.as_secs_f64() * 1e3,
        warnings: outcome.warnings,
    };
    Ok((StatusCode::OK, axum::Json(reply)).into_response())
}

/// Deploy options travel in the query: `route=/x`, and `env=KEY=VALUE` any number of times.
fn parse_deploy_query(query: &str) -> Result<DeploySpec, ApiError> {
    let mut spec = DeploySpec::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "route" => spec.route = Some(value.into_owned()),
            "kv" => spec.grants.kv = parse_flag(&key, &value)?,
            "model" => {
                if !spec.grants.models.iter().any(|m| *m == value) {
                    spec.grants.models.push(value.into_owned());
                }
            }
            "snapshot" => spec.snapshot = parse_flag(&key, &value)?,
            "subscribe" => push_unique(&mut spec.grants.messaging.subscribe, &value),
            "publish" => push_unique(&mut spec.grants.messaging.publish, &value),
            "allow_outbound" => {
                if !spec.grants.outbound.0.iter().any(|o| *o == value) {
                    spec.grants.outbound.0.push(value.into_owned());
                }
            }
            "env" => {
                let (k, v) = value.split_once('=').ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("invalid env setting {value:?}: expected KEY=VALUE"),
                    )
                })?;
                spec.env.push((k.to_string(), v.to_string()));
            }
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown deploy option {other:?}: expected route, env, kv, model, \
                         allow_outbound, subscribe, publish or snapshot"
                    ),
                ));
            }
        }
    }
    Ok(spec)
}

/// The app's wasi:config values, from the [`CONFIG_HEADER`] (hex-encoded JSON object of
/// strings). Errors never echo a value.
fn parse_config_header(headers: &HeaderMap) -> Result<ConfigValues, ApiError> {
    let Some(raw) = headers.get(CONFIG_HEADER) else {
        return Ok(ConfigValues::default());
    };
    let invalid = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid {CONFIG_HEADER} header: expected hex-encoded JSON object of strings"),
        )
    };
    let bytes = hex::decode(raw.as_bytes()).map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

fn push_unique(list: &mut Vec<String>, value: &str) {
    if !list.iter().any(|v| v == value) {
        list.push(value.to_string());
    }
}

fn parse_flag(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid value {other:?} for {key}: expected true or false"),
        )),
    }
}

#[derive(Debug, Default, Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    delete_data: bool,
}

async fn remove_app(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<Response, ApiError> {
    let record = state.node.remove(&name, query.delete_data).await?;
    Ok(axum::Json(AppView::from(&record)).into_response())
}

async fn rollback_app(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let record = state.node.rollback(&name).await?;
    Ok(axum::Json(AppView::from(&record)).into_response())
}

/// Waits for start-up loading to finish (at most the time to compile the models).
async fn list_models(State(state): State<AdminState>) -> Response {
    let models = state.node.models.clone();
    let view = tokio::task::spawn_blocking(move || models.view_when_loaded())
        .await
        .unwrap_or_else(|_| state.node.models.view());
    axum::Json(view).into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let apps: Vec<(String, Option<u64>)> = state
        .node
        .routes
        .current()
        .apps()
        .map(|app| {
            let snapshot = app.version.snapshot.as_ref().map(|s| s.size);
            (app.name.clone(), snapshot)
        })
        .collect();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.node.metrics.render(&apps),
    )
        .into_response()
}

/// An error answer: `{"error": "..."}` with a status; internals are logged, not sent.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(err: DeployError) -> Self {
        let status = err.status();
        let message = match &err {
            DeployError::Internal(inner) => {
                tracing::error!("admin request failed: {inner:#}");
                "internal error on the node; see its log".to_string()
            }
            other => other.to_string(),
        };
        Self::new(status, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        let body = serde_json::json!({ "error": self.message }).to_string();
        (self.status, headers, body).into_response()
    }
}

impl From<KvError> for ApiError {
    fn from(err: KvError) -> Self {
        let status = match err {
            KvError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            KvError::KeyTooLarge { .. } | KvError::ValueTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, err.to_string())
    }
}

/// Operator access to an app's key-value data (`edge kv`).
mod kv_api {
    use super::*;
    use crate::api::KeyPage;
    use crate::capabilities::kv::Bucket;
    use crate::names::validate_app_name;

    #[derive(Debug, Default, Deserialize)]
    pub struct ListQuery {
        after: Option<String>,
    }

    fn bucket(state: &AdminState, app: &str, bucket: &str) -> Result<Bucket, ApiError> {
        validate_app_name(app).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
        Ok(state.node.kv.bucket(app, bucket)?)
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
        Path((app, name, key)): Path<(String, String, String)>,
        body: axum::body::Bytes,
    ) -> Result<StatusCode, ApiError> {
        // The same checked, persisted write a guest's `set` makes.
        let bucket = bucket(&state, &app, &name)?;
        state.node.kv.set(&bucket, &key, &body).await?;
        Ok(StatusCode::NO_CONTENT)
    }

    pub async fn delete_value(
        State(state): State<AdminState>,
        Path((app, name, key)): Path<(String, String, String)>,
    ) -> Result<StatusCode, ApiError> {
        let bucket = bucket(&state, &app, &name)?;
        state.node.kv.delete(&bucket, &key).await?;
        Ok(StatusCode::NO_CONTENT)
    }
}
