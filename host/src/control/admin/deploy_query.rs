//! What a deploy request carries besides the component: its options in the query string
//! (route, env, grants, limits, reuse, a registry source) and its wasi:config values in a
//! header, each checked with an error that names the option.

use axum::http::{HeaderMap, StatusCode};

use super::ApiError;
use crate::api::CONFIG_HEADER;
use crate::capabilities::config::ConfigValues;
use crate::control::node::DeploySpec;
use crate::control::repository::SourceRecord;

/// Deploy options travel in the query: `route=/x`, and `env=KEY=VALUE` any number of times.
pub(super) fn parse_deploy_query(query: &str) -> Result<DeploySpec, ApiError> {
    let mut spec = DeploySpec::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "route" => spec.route = Some(value.into_owned()),
            // Pulled by the handler; the record keeps the reference pinned to its digest.
            "source" => {
                spec.source = Some(SourceRecord {
                    reference: value.into_owned(),
                    fleet_spec: None,
                })
            }
            "kv" => spec.grants.kv = parse_flag(&key, &value)?,
            "model" => {
                if !spec.grants.models.iter().any(|m| *m == value) {
                    spec.grants.models.push(value.into_owned());
                }
            }
            "snapshot" => spec.snapshot = parse_flag(&key, &value)?,
            "memory_mib" => spec.limits.memory_mib = Some(parse_number(&key, &value)?),
            "timeout_ms" => spec.limits.timeout_ms = Some(parse_number(&key, &value)?),
            "concurrency" => spec.limits.concurrency = Some(parse_number(&key, &value)?),
            "max_body_bytes" => spec.limits.max_body_bytes = Some(parse_number(&key, &value)?),
            "kv_quota_mib" => spec.limits.kv_quota_mib = Some(parse_number(&key, &value)?),
            "kv_buckets" => spec.limits.kv_buckets = Some(parse_number(&key, &value)?),
            "reuse" => spec.reuse.requests = parse_number(&key, &value)?,
            "reuse_concurrency" => spec.reuse.concurrency = parse_number(&key, &value)?,
            "reuse_idle_ms" => spec.reuse.idle_ms = parse_number(&key, &value)?,
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
                        "unknown deploy option {other:?}: expected source, route, env, kv, model, \
                         allow_outbound, subscribe, publish, snapshot, memory_mib, timeout_ms, \
                         concurrency, max_body_bytes, reuse, reuse_concurrency or reuse_idle_ms"
                    ),
                ));
            }
        }
    }
    Ok(spec)
}

/// The app's wasi:config values, from the [`CONFIG_HEADER`] (hex-encoded JSON object of
/// strings). Errors never echo a value.
pub(super) fn parse_config_header(headers: &HeaderMap) -> Result<ConfigValues, ApiError> {
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

fn parse_number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ApiError> {
    value.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid value {value:?} for {key}: expected a whole number"),
        )
    })
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
