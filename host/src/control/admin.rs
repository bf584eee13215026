//! The admin API: deploy, list, inspect, remove and roll back apps; health and metrics;
//! tokens and the audit log. Everything but `/healthz` needs a bearer token whose role allows
//! the route ([`required_role`]); every change is recorded in the audit log. A deploy's
//! options are read in [`deploy_query`], `edge kv`'s routes are in [`kv_api`].

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{
    DefaultBodyLimit, Extension, MatchedPath, Path, Query, RawQuery, Request, State,
};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::api::{
    AppView, AuditEntry, AuditVerification, DeployReply, LimitsView, PreviousView, RemoveReply,
    SnapshotView, TokenCreated, TokenRequest, TokenView,
};
use crate::auth::{self, Caller, Role};
use crate::capabilities::kv::KvError;
use crate::control::audit::AuditEvent;
use crate::control::node::Node;
use crate::control::repository::{AppRecord, VersionRecord};
use crate::control::tokens::{TokenError, TokenStore};
use crate::error::DeployError;

mod deploy_query;
mod kv_api;

use deploy_query::{parse_config_header, parse_deploy_query};

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub node: Arc<Node>,
    /// The bootstrap token and the named ones.
    pub tokens: Arc<TokenStore>,
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
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{name}", axum::routing::delete(revoke_token))
        .route("/v1/usage", get(usage_report))
        .route("/v1/apps/{name}/logs", get(app_logs))
        .route("/v1/audit", get(audit_tail))
        .route("/v1/audit/verify", get(audit_verify))
        // The deploy handler enforces the upload limit itself, with a clear error.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
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
        for (app, reason) in state.node.failed_apps() {
            body.push_str(&format!("app {app}: failed to load ({reason})\n"));
        }
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

/// The role an admin route needs. Deny by default: a route not listed needs `admin`.
///
/// | role | routes |
/// |---|---|
/// | read | `GET /v1/apps`, `GET /v1/apps/{name}`, `GET /v1/models`, `GET /metrics`, `GET /v1/usage`, `GET /v1/apps/{name}/logs` |
/// | deploy | read, plus `PUT /v1/apps/{name}` (deploy), `POST /v1/apps/{name}/rollback`, `DELETE /v1/apps/{name}` keeping the app's data |
/// | admin | everything: `DELETE /v1/apps/{name}?delete_data=true`, kv reads and writes, tokens, the audit log |
pub fn required_role(method: &Method, route: &str, query: &str) -> Role {
    match (method.as_str(), route) {
        (
            "GET",
            "/v1/apps"
            | "/v1/apps/{name}"
            | "/v1/models"
            | "/metrics"
            | "/v1/usage"
            | "/v1/apps/{name}/logs",
        ) => Role::Read,
        ("PUT", "/v1/apps/{name}") | ("POST", "/v1/apps/{name}/rollback") => Role::Deploy,
        ("DELETE", "/v1/apps/{name}") if !deletes_data(query) => Role::Deploy,
        _ => Role::Admin,
    }
}

/// Whether a remove's query asks to delete the app's data (anything but an explicit no does,
/// so a malformed flag needs the stronger role).
fn deletes_data(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .any(|(key, value)| key == "delete_data" && !matches!(value.as_ref(), "false" | "0"))
}

/// Authenticates the bearer token, checks its role against the route, and passes the
/// [`Caller`] to the handler. A refusal for lack of role on a change is audited.
async fn authorize(State(state): State<AdminState>, mut request: Request, next: Next) -> Response {
    let presented = auth::bearer(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    let Some(caller) = presented.and_then(|token| state.tokens.authenticate(token)) else {
        discard_body(request).await;
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing, wrong or revoked admin token: pass --token, set EDGE_TOKEN, or use the \
             token in <data-dir>/admin.token on the node",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(String::new, |p| p.as_str().to_string());
    let needed = required_role(
        request.method(),
        &route,
        request.uri().query().unwrap_or_default(),
    );
    if caller.role < needed {
        let message = format!(
            "token {:?} has role {}; {} {route} needs role {needed} (an admin can create one \
             with `edge token create NAME --role {needed}`)",
            caller.token,
            caller.role,
            request.method()
        );
        if request.method() != Method::GET {
            state
                .node
                .record_audit(AuditEvent {
                    token: caller.token.clone(),
                    action: "forbidden",
                    target: Some(format!("{} {}", request.method(), request.uri().path())),
                    result: format!("refused: needs role {needed}"),
                    ..AuditEvent::default()
                })
                .await;
        }
        discard_body(request).await;
        return ApiError::new(StatusCode::FORBIDDEN, message).into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Reads and drops (a bounded part of) a refused request's body, so a client still uploading
/// a component reads the refusal instead of a reset connection.
async fn discard_body(request: Request) {
    const MOST: usize = 8 * 1024 * 1024;
    let drain = axum::body::to_bytes(request.into_body(), MOST);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
}

/// The audit line for an action's result.
fn result_text<T, E: std::fmt::Display>(result: &Result<T, E>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(err) => format!("refused: {err}"),
    }
}

async fn list_tokens(
    State(state): State<AdminState>,
) -> Result<axum::Json<Vec<TokenView>>, ApiError> {
    Ok(axum::Json(state.tokens.list()?))
}

async fn create_token(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    axum::Json(request): axum::Json<TokenRequest>,
) -> Result<axum::Json<TokenCreated>, ApiError> {
    let tokens = state.tokens.clone();
    let name = request.name.clone();
    let created = tokio::task::spawn_blocking(move || tokens.create(&name, request.role))
        .await
        .map_err(|err| DeployError::Internal(err.into()))?;
    state
        .node
        .record_audit(AuditEvent {
            token: caller.token,
            action: "token.create",
            target: Some(format!("{} (role {})", request.name, request.role)),
            result: result_text(&created),
            ..AuditEvent::default()
        })
        .await;
    let (secret, token) = created?;
    Ok(axum::Json(TokenCreated { token, secret }))
}

async fn revoke_token(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<TokenView>, ApiError> {
    let tokens = state.tokens.clone();
    let target = name.clone();
    let revoked = tokio::task::spawn_blocking(move || tokens.revoke(&target))
        .await
        .map_err(|err| DeployError::Internal(err.into()))?;
    state
        .node
        .record_audit(AuditEvent {
            token: caller.token,
            action: "token.revoke",
            target: Some(name),
            result: result_text(&revoked),
            ..AuditEvent::default()
        })
        .await;
    Ok(axum::Json(revoked?))
}

#[derive(Debug, Default, Deserialize)]
struct UsageQuery {
    app: Option<String>,
    /// Seconds since the Unix epoch (counted from the start of its hour).
    since: Option<u64>,
}

/// `GET /v1/usage[?app=NAME][&since=SECS]`: usage per app, persisted and not yet flushed.
async fn usage_report(
    State(state): State<AdminState>,
    Query(query): Query<UsageQuery>,
) -> Result<axum::Json<Vec<crate::api::UsageView>>, ApiError> {
    let node = state.node.clone();
    let report =
        tokio::task::spawn_blocking(move || node.usage.report(query.app.as_deref(), query.since))
            .await
            .map_err(|err| DeployError::Internal(err.into()))?
            .map_err(DeployError::Internal)?;
    Ok(axum::Json(report))
}

#[derive(Debug, Default, Deserialize)]
struct LogsQuery {
    /// Lines after this sequence number.
    #[serde(default)]
    after: u64,
    /// Lines from this time on, in ms since the Unix epoch.
    #[serde(default)]
    since_ms: u64,
    /// Seconds to wait for a new line when there is none (for `--follow`), at most 30.
    #[serde(default)]
    wait: u64,
    limit: Option<usize>,
}

/// `GET /v1/apps/{name}/logs`: the app's stdout and stderr lines.
async fn app_logs(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<axum::Json<crate::api::LogPage>, ApiError> {
    let log = match state.node.guest_logs.get(&name) {
        Some(log) => log,
        None if state.node.routes.current().get(&name).is_some() => {
            state.node.guest_logs.app(&name)
        }
        None => return Err(DeployError::NotFound(name).into()),
    };
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let mut page = log.page(query.after, query.since_ms, limit);
    if page.lines.is_empty() && query.wait > 0 {
        let wait = std::time::Duration::from_secs(query.wait.min(30));
        log.wait_after(page.next_after, wait).await;
        page = log.page(page.next_after, query.since_ms, limit);
    }
    Ok(axum::Json(page))
}

#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

/// The last entries of the audit log (default 100), oldest first.
async fn audit_tail(
    State(state): State<AdminState>,
    Query(query): Query<AuditQuery>,
) -> Result<axum::Json<Vec<AuditEntry>>, ApiError> {
    let node = state.node.clone();
    let limit = query.limit.unwrap_or(100);
    let entries = tokio::task::spawn_blocking(move || node.audit.tail(limit))
        .await
        .map_err(|err| DeployError::Internal(err.into()))?
        .map_err(DeployError::Internal)?;
    Ok(axum::Json(entries))
}

async fn audit_verify(
    State(state): State<AdminState>,
) -> Result<axum::Json<AuditVerification>, ApiError> {
    let node = state.node.clone();
    let verified = tokio::task::spawn_blocking(move || node.audit.verify())
        .await
        .map_err(|err| DeployError::Internal(err.into()))?
        .map_err(DeployError::Internal)?;
    Ok(axum::Json(verified))
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        let status = match &err {
            TokenError::InvalidName(_) | TokenError::Reserved => StatusCode::BAD_REQUEST,
            TokenError::Exists(_) => StatusCode::CONFLICT,
            TokenError::NotFound(_) => StatusCode::NOT_FOUND,
            TokenError::Storage(inner) => {
                tracing::error!("token storage failed: {inner:#}");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error on the node; see its log",
                );
            }
        };
        Self::new(status, err.to_string())
    }
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
            limits: _,
            reuse,
            source,
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
            kv_bytes: None,
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
            limits: None,
            reuse: *reuse,
            wasi_http: None,
            tier: None,
            source: source.as_ref().map(|s| s.reference.clone()),
            fleet: source.as_ref().is_some_and(|s| s.fleet_spec.is_some()),
        }
    }
}

/// An app as listed, with the limits it runs under (the node's defaults where it set none).
fn app_view(state: &AdminState, record: &AppRecord) -> AppView {
    let mut view = AppView::from(record);
    let routes = state.node.routes.current();
    let serving = routes
        .get(&record.name)
        .filter(|app| app.version == record.current);
    view.wasi_http = serving
        .and_then(|app| app.wasi_http_version())
        .map(str::to_string);
    view.tier = serving.map(|app| app.tier.as_str().to_string());
    let asked = &record.current.limits;
    if let Ok(limits) = state.node.config.limits.resolve(asked) {
        let mut overridden = Vec::new();
        for (set, name) in [
            (asked.memory_mib.is_some(), "memory"),
            (asked.timeout_ms.is_some(), "timeout"),
            (asked.concurrency.is_some(), "concurrency"),
            (asked.max_body_bytes.is_some(), "max_body"),
            (asked.kv_quota_mib.is_some(), "kv_quota"),
            (asked.kv_buckets.is_some(), "kv_buckets"),
        ] {
            if set {
                overridden.push(name.to_string());
            }
        }
        view.limits = Some(LimitsView {
            memory_mib: (limits.memory_bytes / (1024 * 1024)) as u64,
            timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            concurrency: limits.concurrency,
            max_body_bytes: limits.max_body_bytes,
            kv_quota_mib: limits.kv.bytes / (1024 * 1024),
            kv_buckets: limits.kv.buckets,
            overridden,
        });
    }
    if record.current.grants.kv {
        view.kv_bytes = state.node.kv.storage(&record.name).ok().map(|s| s.bytes());
    }
    view
}

async fn list_apps(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let apps = state.node.repo.list_apps().map_err(DeployError::from)?;
    let views: Vec<AppView> = apps.iter().map(|app| app_view(&state, app)).collect();
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
    Ok(axum::Json(app_view(&state, &record)).into_response())
}

async fn deploy_app(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
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
    let mut bytes = axum::body::to_bytes(body, read_limit)
        .await
        .map_err(|_| DeployError::TooLarge { limit })?
        .to_vec();
    if let Some(source) = &mut spec.source {
        if !bytes.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "a deploy from a registry (source=oci://…) has no body; send one or the other",
            ));
        }
        let pulled = state.node.pull(&source.reference).await?;
        source.reference = pulled.pinned.to_string();
        bytes = pulled.bytes;
    }
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let node = state.node.clone();
    let app = name.clone();
    let outcome = run_to_completion(async move {
        let outcome = node.deploy(&app, bytes, spec).await;
        node.record_audit(AuditEvent {
            token: caller.token,
            action: "deploy",
            app: Some(app),
            digest: Some(digest),
            result: result_text(&outcome),
            ..AuditEvent::default()
        })
        .await;
        outcome
    })
    .await??;
    let mut app = app_view(&state, &outcome.record);
    // What served first, even if the optimized code has replaced it since.
    app.tier = Some(outcome.tier.as_str().to_string());
    let reply = DeployReply {
        url: format!("{}{}", state.data_plane_url, outcome.record.current.route),
        app,
        compile_ms: outcome.compile_time.as_secs_f64() * 1e3,
        warnings: outcome.warnings,
    };
    Ok((StatusCode::OK, axum::Json(reply)).into_response())
}

/// Runs a change (deploy, remove, rollback) and its audit record to the end even if the client
/// goes away: axum drops a handler's future when its connection closes, which would stop a
/// deploy between compiling and recording it, after releasing the change lock. In a task of
/// its own it completes, or fails and cleans up, while holding the lock.
async fn run_to_completion<T: Send + 'static>(
    change: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(change).await.map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the change task failed: {err}"),
        )
    })
}

#[derive(Debug, Default, Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    delete_data: bool,
}

async fn remove_app(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<Response, ApiError> {
    let node = state.node.clone();
    let removed = run_to_completion(async move {
        let removed = node.remove(&name, query.delete_data).await;
        node.record_audit(AuditEvent {
            token: caller.token,
            action: if query.delete_data {
                "remove.delete_data"
            } else {
                "remove"
            },
            app: Some(name),
            digest: removed
                .as_ref()
                .ok()
                .and_then(|r| r.record.as_ref())
                .map(|r| r.current.digest.clone()),
            result: result_text(&removed),
            ..AuditEvent::default()
        })
        .await;
        removed
    })
    .await??;
    Ok(axum::Json(RemoveReply {
        app: removed.record.as_ref().map(|r| app_view(&state, r)),
        deleted_buckets: removed.deleted_buckets,
    })
    .into_response())
}

async fn rollback_app(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let node = state.node.clone();
    let rolled = run_to_completion(async move {
        let rolled = node.rollback(&name).await;
        node.record_audit(AuditEvent {
            token: caller.token,
            action: "rollback",
            app: Some(name),
            digest: rolled.as_ref().ok().map(|r| r.current.digest.clone()),
            result: result_text(&rolled),
            ..AuditEvent::default()
        })
        .await;
        rolled
    })
    .await??;
    Ok(axum::Json(app_view(&state, &rolled)).into_response())
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
    let idle: usize = state
        .node
        .routes
        .current()
        .apps()
        .filter_map(|app| app.warm.as_ref())
        .map(|warm| warm.idle_count())
        .sum();
    let budget = &state.node.memory_budget;
    let gauge = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
    state.node.metrics.guest_memory.set(gauge(budget.used()));
    state
        .node
        .metrics
        .idle_instances
        .set(i64::try_from(idle).unwrap_or(i64::MAX));
    state
        .node
        .metrics
        .guest_memory_budget
        .set(gauge(budget.limit()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.node.metrics.render(&apps, &state.node.usage.totals()),
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
