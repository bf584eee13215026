//! `wasi:config/store` (`wasi:config@0.2.0-rc.1`, through `wasmtime-wasi-config`): an app's
//! settings, such as an upstream URL, a threshold or an API key, given at deploy with
//! `edge deploy --config KEY=VALUE` or `--config-file FILE.toml` and stored with the version
//! they belong to, so a redeploy or rollback carries them.
//!
//! Values may be secrets: they are never shown by listings, logs, metrics or errors, only their
//! keys ([`ConfigValues`]'s `Debug` prints keys only). They are kept in the node's metadata
//! database, inside its private data folder.
//!
//! Capability shape: config section [`AppConfigLimits`] (`[app_config]`), grant
//! [`ConfigValues`] (checked by [`check_values`]), per-store [`Variables`] shared by every
//! instance of a version, [`add_to_linker`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtime::component::Linker;
pub use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

use crate::error::DeployError;

/// The `[app_config]` section: what `--config` may set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfigLimits {
    /// Keys one app version may have.
    pub max_keys: usize,
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
}

impl Default for AppConfigLimits {
    fn default() -> Self {
        Self {
            max_keys: 256,
            max_key_bytes: 128,
            max_value_bytes: 64 * 1024,
        }
    }
}

/// An app version's config values, by key.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigValues(pub BTreeMap<String, String>);

impl std::fmt::Debug for ConfigValues {
    /// Keys only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl ConfigValues {
    pub fn keys(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Checks keys and sizes. Errors name the key, never the value.
pub fn check_values(values: &ConfigValues, limits: &AppConfigLimits) -> Result<(), DeployError> {
    let invalid = |message: String| Err(DeployError::InvalidConfig(message));
    if values.0.len() > limits.max_keys {
        return invalid(format!(
            "{} config keys given; this node accepts at most {} ([app_config] max_keys)",
            values.0.len(),
            limits.max_keys
        ));
    }
    for (key, value) in &values.0 {
        let key_ok = !key.is_empty()
            && key.len() <= limits.max_key_bytes
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !key_ok {
            return invalid(format!(
                "invalid config key {key:?}: use 1 to {} letters, digits, '_', '-' or '.'",
                limits.max_key_bytes
            ));
        }
        if value.len() > limits.max_value_bytes {
            return invalid(format!(
                "the value of config key {key:?} is {} bytes; this node accepts at most {} \
                 ([app_config] max_value_bytes)",
                value.len(),
                limits.max_value_bytes
            ));
        }
    }
    Ok(())
}

/// The values as the store of every instance of a version sees them (built once per version).
pub type Variables = Arc<WasiConfigVariables>;

pub fn variables(values: &ConfigValues) -> Variables {
    Arc::new(
        values
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
    )
}

/// Adds `wasi:config/store` to the linker; `view` borrows the store's variables.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> WasiConfig<'_>,
) -> anyhow::Result<()> {
    Ok(wasmtime_wasi_config::add_to_linker(linker, view)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> ConfigValues {
        ConfigValues(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn debug_output_shows_keys_never_values() {
        let shown = format!("{:?}", values(&[("api_key", "s3cr3t-value")]));
        assert!(
            shown.contains("api_key") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn errors_name_the_key_and_never_the_value() {
        let limits = AppConfigLimits {
            max_value_bytes: 8,
            ..AppConfigLimits::default()
        };
        let err = check_values(&values(&[("token", "s3cr3t-too-long")]), &limits)
            .unwrap_err()
            .to_string();
        assert!(err.contains("token") && !err.contains("s3cr3t"), "{err}");
        let err = check_values(&values(&[("bad key", "v")]), &limits)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad key"), "{err}");
        assert!(
            check_values(
                &values(&[("upstream.url", "http://x")]),
                &AppConfigLimits::default()
            )
            .is_ok()
        );
    }
}
