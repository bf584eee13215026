//! Pulling and pushing components: one registry client per registry host (plain HTTP for
//! loopback and `[registry] insecure`, HTTPS otherwise), with the node's credentials.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_wasm::{WASM_LAYER_MEDIA_TYPE, WasmClient, WasmConfig};

use super::cache::{BlobCache, KeptComponents, sha256_digest};
use super::{OciError, OciRef, RegistryConfig};

/// A component fetched from a registry (or the cache), with the digests it was verified by.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub bytes: Vec<u8>,
    /// The reference pinned to the manifest digest: what to deploy again for these bytes.
    pub pinned: OciRef,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// `sha256:…` of the component bytes (the wasm layer).
    pub layer_digest: String,
}

/// The node's (or the CLI's) way to registries.
pub struct Registries {
    config: RegistryConfig,
    cache: Option<BlobCache>,
    clients: Mutex<HashMap<String, Arc<WasmClient>>>,
}

impl Registries {
    /// For a node: pulls are indexed under `data_dir/oci`, and their bytes read from where
    /// the node keeps components (`components`).
    pub fn open(
        config: RegistryConfig,
        data_dir: &Path,
        components: KeptComponents,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            cache: Some(BlobCache::open(data_dir, components)?),
            ..Self::without_cache(config)
        })
    }

    /// For the CLI: nothing kept on disk.
    pub fn without_cache(config: RegistryConfig) -> Self {
        Self {
            config,
            cache: None,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn client(&self, registry: &str) -> Arc<WasmClient> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(registry.to_string())
            .or_insert_with(|| {
                let protocol = if self.plain_http(registry) {
                    ClientProtocol::Http
                } else {
                    ClientProtocol::Https
                };
                Arc::new(WasmClient::new(oci_client::Client::new(ClientConfig {
                    protocol,
                    connect_timeout: Some(Duration::from_secs(10)),
                    read_timeout: Some(Duration::from_secs(30)),
                    ..ClientConfig::default()
                })))
            })
            .clone()
    }

    /// Loopback registries and those listed as insecure are reached over plain HTTP.
    fn plain_http(&self, registry: &str) -> bool {
        if self.config.insecure.iter().any(|r| r == registry) {
            return true;
        }
        let host = registry
            .rsplit_once(':')
            .map_or(registry, |(host, _port)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    pub(super) fn auth(&self, registry: &str) -> RegistryAuth {
        self.config
            .credentials
            .iter()
            .find(|c| c.registry == registry)
            .map_or(RegistryAuth::Anonymous, |c| {
                RegistryAuth::Basic(c.username.clone(), c.password.expose().to_string())
            })
    }

    /// Fetches the component `reference` names, at most `max_bytes` long. A reference by
    /// digest is served from the cache while the node keeps that component, without the
    /// registry.
    pub async fn pull(&self, reference: &OciRef, max_bytes: u64) -> Result<Pulled, OciError> {
        if let Some(pulled) = self.cached(reference) {
            tracing::debug!(%reference, "component served from the registry cache");
            return Ok(pulled);
        }
        self.within_pull_timeout(reference, self.pull_from_registry(reference, max_bytes))
            .await
    }

    /// Runs `pull` for at most `[registry] pull_timeout_ms`.
    pub(super) async fn within_pull_timeout<T>(
        &self,
        reference: &OciRef,
        pull: impl Future<Output = Result<T, OciError>>,
    ) -> Result<T, OciError> {
        let timeout = Duration::from_millis(self.config.pull_timeout_ms);
        tokio::time::timeout(timeout, pull)
            .await
            .map_err(|_| OciError::Unreachable {
                reference: reference.to_string(),
                detail: format!(
                    "the pull took longer than [registry] pull_timeout_ms ({} ms)",
                    self.config.pull_timeout_ms
                ),
            })?
    }

    fn cached(&self, reference: &OciRef) -> Option<Pulled> {
        let cache = self.cache.as_ref()?;
        let manifest_digest = reference.digest()?;
        let layer_digest = cache.layer_of(manifest_digest)?;
        let bytes = cache.blob(&layer_digest)?;
        Some(Pulled {
            bytes,
            pinned: reference.clone(),
            manifest_digest: manifest_digest.to_string(),
            layer_digest,
        })
    }

    async fn pull_from_registry(
        &self,
        reference: &OciRef,
        max_bytes: u64,
    ) -> Result<Pulled, OciError> {
        let client = self.client(reference.registry());
        let auth = self.auth(reference.registry());
        let image = reference.as_client_ref();
        let (manifest, _config, manifest_digest) = client
            .pull_manifest_and_config(image, &auth)
            .await
            .map_err(|err| classify(reference, err))?;
        check_pinned(reference, &manifest_digest)?;
        let layer = wasm_layer(reference, &manifest)?;
        let too_large = || OciError::TooLarge {
            reference: reference.to_string(),
            limit: max_bytes,
        };
        if u64::try_from(layer.size).unwrap_or(u64::MAX) > max_bytes {
            return Err(too_large());
        }
        let pinned = reference.pinned(&manifest_digest);
        if let Some(bytes) = self.cache.as_ref().and_then(|c| c.blob(&layer.digest)) {
            self.remember(&manifest_digest, &layer.digest);
            return Ok(Pulled {
                bytes,
                pinned,
                manifest_digest,
                layer_digest: layer.digest.clone(),
            });
        }
        let bytes = download_verified(&client, reference, layer, max_bytes).await?;
        self.remember(&manifest_digest, &layer.digest);
        Ok(Pulled {
            bytes,
            pinned,
            manifest_digest,
            layer_digest: layer.digest.clone(),
        })
    }

    fn remember(&self, manifest_digest: &str, layer_digest: &str) {
        if let Some(cache) = &self.cache
            && let Err(err) = cache.store(manifest_digest, layer_digest)
        {
            tracing::warn!("cannot cache the pulled component: {err:#}");
        }
    }

    /// What `reference` names now, without downloading the component: the reference pinned
    /// to the manifest digest, and the component layer's digest (a tag resolved; a digest
    /// checked; the artifact checked to be a wasm component).
    pub async fn resolve(&self, reference: &OciRef) -> Result<(OciRef, String), OciError> {
        let client = self.client(reference.registry());
        let auth = self.auth(reference.registry());
        let (manifest, _config, digest) = client
            .pull_manifest_and_config(reference.as_client_ref(), &auth)
            .await
            .map_err(|err| classify(reference, err))?;
        check_pinned(reference, &digest)?;
        let layer = wasm_layer(reference, &manifest)?;
        Ok((reference.pinned(&digest), layer.digest.clone()))
    }

    /// Publishes `wasm` (a component) under `reference`; returns the reference pinned to the
    /// pushed manifest's digest.
    pub async fn push(&self, reference: &OciRef, wasm: Vec<u8>) -> anyhow::Result<OciRef> {
        let (config, layer) = WasmConfig::from_raw_component(wasm, None).map_err(|err| {
            anyhow::anyhow!("the file is not a wasm component, so it cannot be pushed: {err:#}")
        })?;
        let auth = self.auth(reference.registry());
        let client = self.client(reference.registry());
        client
            .push(reference.as_client_ref(), &auth, layer, config, None)
            .await
            .map_err(|err| anyhow::Error::new(classify(reference, err)))?;
        let digest = client
            .fetch_manifest_digest(reference.as_client_ref(), &auth)
            .await
            .map_err(|err| anyhow::Error::new(classify(reference, err.into())))?;
        Ok(reference.pinned(&digest))
    }
}

/// Downloads `layer` of `reference`, at most `max_bytes`, and checks its digest.
pub(super) async fn download_verified(
    client: &WasmClient,
    reference: &OciRef,
    layer: &OciDescriptor,
    max_bytes: u64,
) -> Result<Vec<u8>, OciError> {
    let too_large = || OciError::TooLarge {
        reference: reference.to_string(),
        limit: max_bytes,
    };
    if u64::try_from(layer.size).unwrap_or(u64::MAX) > max_bytes {
        return Err(too_large());
    }
    let mut stream = client
        .pull_blob_stream(reference.as_client_ref(), layer)
        .await
        .map_err(|err| classify(reference, err.into()))?;
    let mut bytes = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| download_error(reference, &err))?;
        if (bytes.len() + chunk.len()) as u64 > max_bytes {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    let actual = sha256_digest(&bytes);
    if actual != layer.digest {
        return Err(OciError::DigestMismatch {
            reference: reference.to_string(),
            expected: layer.digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// A failed component download: the client's own digest check, or a broken connection.
fn download_error(reference: &OciRef, err: &std::io::Error) -> OciError {
    match err.get_ref().and_then(|e| e.downcast_ref::<DigestError>()) {
        Some(DigestError::VerificationError { expected, actual }) => OciError::DigestMismatch {
            reference: reference.to_string(),
            expected: expected.clone(),
            actual: actual.clone(),
        },
        _ => OciError::Unreachable {
            reference: reference.to_string(),
            detail: format!("the download broke off: {err}"),
        },
    }
}

/// The manifest's digest must be the one the reference pins, if it pins one.
pub(super) fn check_pinned(reference: &OciRef, manifest_digest: &str) -> Result<(), OciError> {
    match reference.digest() {
        Some(expected) if expected != manifest_digest => Err(OciError::DigestMismatch {
            reference: reference.to_string(),
            expected: expected.to_string(),
            actual: manifest_digest.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The manifest's one layer, which must be a wasm component (oci-wasm checked the count).
fn wasm_layer<'m>(
    reference: &OciRef,
    manifest: &'m OciImageManifest,
) -> Result<&'m OciDescriptor, OciError> {
    let layer = &manifest.layers[0];
    if layer.media_type == WASM_LAYER_MEDIA_TYPE {
        Ok(layer)
    } else {
        Err(OciError::NotWasm {
            reference: reference.to_string(),
            detail: format!(
                "its layer is {:?}, not {WASM_LAYER_MEDIA_TYPE}",
                layer.media_type
            ),
        })
    }
}

/// Sorts a registry client's error into what the caller can act on.
pub(super) fn classify(reference: &OciRef, err: anyhow::Error) -> OciError {
    let reference_text = reference.to_string();
    let detail = format!("{err:#}");
    let Some(oci) = err.downcast_ref::<OciDistributionError>() else {
        // oci-wasm's own checks: the manifest or config is not the wasm layout.
        return OciError::NotWasm {
            reference: reference_text,
            detail,
        };
    };
    match oci {
        OciDistributionError::ImageManifestNotFoundError(_) => OciError::NotFound {
            reference: reference_text,
            detail,
        },
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) =>
        {
            OciError::NotFound {
                reference: reference_text,
                detail,
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => OciError::NotFound {
            reference: reference_text,
            detail,
        },
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => OciError::Unauthorized {
            reference: reference_text,
            registry: reference.registry().to_string(),
        },
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
            OciError::Unreachable {
                reference: reference_text,
                detail,
            }
        }
        OciDistributionError::DigestError(_) => OciError::DigestMismatch {
            reference: reference_text,
            expected: "the digest the registry named".into(),
            actual: detail,
        },
        OciDistributionError::UnsupportedMediaTypeError(_)
        | OciDistributionError::IncompatibleLayerMediaTypeError(_)
        | OciDistributionError::PullNoLayersError => OciError::NotWasm {
            reference: reference_text,
            detail,
        },
        _ => OciError::BadResponse {
            reference: reference_text,
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_registries_use_plain_http_and_others_https() {
        let registries = Registries::without_cache(RegistryConfig {
            insecure: vec!["gateway-registry.lan:5000".into()],
            ..RegistryConfig::default()
        });
        for plain in [
            "127.0.0.1:5000",
            "localhost:5000",
            "[::1]:5000",
            "gateway-registry.lan:5000",
        ] {
            assert!(registries.plain_http(plain), "{plain}");
        }
        for tls in [
            "registry.example.com",
            "10.0.0.5:5000",
            "gateway-registry.lan",
        ] {
            assert!(!registries.plain_http(tls), "{tls}");
        }
    }
}
