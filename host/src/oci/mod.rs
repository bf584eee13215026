//! Components in OCI registries, in the CNCF wasm artifact layout (`oci-client` + `oci-wasm`):
//! one `application/wasm` layer, a `application/vnd.wasm.config.v0+json` config.
//!
//! `edge push` publishes a component (and with `--precompile` an artifact compiled from it,
//! [`precompiled`]); `edge deploy NAME oci://…` and the fleet agent pull one
//! through [`Registries`], which checks the artifact is a wasm component, bounds its size,
//! verifies every digest (the manifest's when the reference pins one, the layer's always) and
//! indexes it in a [`cache`] of manifests, so a reference by digest deploys again without
//! the registry while the node keeps that component. Loopback registries are reached over
//! plain HTTP (as container tools do for localhost), others over HTTPS unless
//! `[registry] insecure` lists them.

mod cache;
mod precompiled;
mod reference;
mod registry;

use serde::{Deserialize, Serialize};

pub use cache::{KeptComponents, sha256_digest};
pub use precompiled::PrecompiledConfig;
pub use reference::OciRef;
pub use registry::{Pulled, Registries};

use crate::secret::Secret;

/// `[registry]`: how the node reaches OCI registries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registries (`host:port`) reached over plain HTTP although not on loopback.
    pub insecure: Vec<String>,
    /// Longest a whole pull (manifest and component) may take, in ms.
    pub pull_timeout_ms: u64,
    /// Credentials per registry; anonymous where none is listed.
    pub credentials: Vec<RegistryCredential>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            pull_timeout_ms: 120_000,
            credentials: Vec::new(),
        }
    }
}

/// `[[registry.credentials]]`: basic credentials for one registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredential {
    /// `host:port` as written in references.
    pub registry: String,
    pub username: String,
    pub password: Secret,
}

/// Why a component could not be pulled or pushed. Messages name the reference, never
/// credentials.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("invalid registry reference {reference:?}: {why}")]
    InvalidReference { reference: String, why: String },
    #[error(
        "{reference} does not exist in the registry ({detail}); check the repository and tag, or push it first with `edge push`"
    )]
    NotFound { reference: String, detail: String },
    #[error(
        "the registry refused access to {reference}; check [[registry.credentials]] for {registry}"
    )]
    Unauthorized { reference: String, registry: String },
    #[error(
        "cannot reach the registry for {reference}: {detail}; a reference by digest (@sha256:…) deploys from this node's cache while the node keeps that component"
    )]
    Unreachable { reference: String, detail: String },
    #[error("{reference} is not a wasm component artifact: {detail}")]
    NotWasm { reference: String, detail: String },
    #[error(
        "{reference} is not an edge precompiled artifact of this component: {detail}; push one with `edge push --precompile`"
    )]
    NotPrecompiled { reference: String, detail: String },
    #[error(
        "digest mismatch for {reference}: expected {expected}, the registry sent {actual}; nothing was deployed"
    )]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{reference} is larger than this node's limit of {limit} bytes ([limits] max_component_bytes)"
    )]
    TooLarge { reference: String, limit: u64 },
    #[error(
        "the registry answered {reference} with something that is not an OCI response: {detail}"
    )]
    BadResponse { reference: String, detail: String },
}

impl OciError {
    /// The admin API status: the caller's mistake, or the registry's.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            OciError::InvalidReference { .. } => StatusCode::BAD_REQUEST,
            OciError::NotFound { .. } => StatusCode::NOT_FOUND,
            OciError::NotWasm { .. } | OciError::NotPrecompiled { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            OciError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            OciError::Unauthorized { .. }
            | OciError::Unreachable { .. }
            | OciError::DigestMismatch { .. }
            | OciError::BadResponse { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_passwords_never_appear_in_debug_output() {
        let config: RegistryConfig = toml::from_str(
            "[[credentials]]\nregistry = \"registry.lan:5000\"\nusername = \"gw\"\n\
             password = \"hunter2\"",
        )
        .expect("parses");
        let debug = format!("{config:?}");
        assert!(
            debug.contains("registry.lan:5000") && !debug.contains("hunter2"),
            "{debug}"
        );
    }
}
