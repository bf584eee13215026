//! Precompiled artifacts in the registry, beside the component they were compiled from: one
//! layer of `application/vnd.edge.precompiled.v1` (the wasmtime artifact), a config naming
//! the component's digest, the platform key and target, tagged `aot-<KEY>-<COMPONENT HEX>` in
//! the component's repository.
//!
//! `edge push --precompile` publishes one per platform it is run on; `edge fleet apply` finds
//! those of each component it pins (by listing the repository's tags, page by page) and pins
//! them by digest in the desired state; a node that accepts precompiled artifacts pulls the one
//! for its key by that digest. A registry alone can thus never hand a node native code the
//! operator did not pin.

use std::collections::BTreeMap;

use oci_client::client::{Config, ImageLayer};
use serde::{Deserialize, Serialize};

use super::registry::download_verified;
use super::{OciError, OciRef, Registries};

/// The layer's media type: a wasmtime artifact of one component.
pub const PRECOMPILED_MEDIA_TYPE: &str = "application/vnd.edge.precompiled.v1";
/// The config's media type.
pub const PRECOMPILED_CONFIG_MEDIA_TYPE: &str = "application/vnd.edge.precompiled.config.v1+json";
const TAG_PREFIX: &str = "aot-";

/// What an artifact was compiled from and for: its config blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrecompiledConfig {
    /// `sha256:…` of the component it was compiled from.
    pub component: String,
    /// The platform key of the engine that compiled it (`engine::portable`).
    pub key: String,
    /// Its target triple, for people reading the registry.
    pub target: String,
    /// The `edge` version that compiled it.
    pub edge: String,
}

/// The tag of the artifact of `component` (`sha256:…`) for platform `key`.
pub fn tag(key: &str, component: &str) -> String {
    format!(
        "{TAG_PREFIX}{key}-{}",
        component.trim_start_matches("sha256:")
    )
}

/// The platform key of a tag made by [`tag`] for `component`, if it is one.
fn key_of<'t>(tag: &'t str, component: &str) -> Option<&'t str> {
    let hex = component.trim_start_matches("sha256:");
    let key = tag
        .strip_prefix(TAG_PREFIX)?
        .strip_suffix(hex)?
        .strip_suffix('-')?;
    (!key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit())).then_some(key)
}

impl Registries {
    /// Publishes `artifact` (compiled from the component `config.component`) beside it in the
    /// repository of `component`; returns the artifact's reference pinned to its digest.
    pub async fn push_precompiled(
        &self,
        component: &OciRef,
        config: &PrecompiledConfig,
        artifact: Vec<u8>,
    ) -> anyhow::Result<OciRef> {
        let reference = component.with_tag(&tag(&config.key, &config.component));
        let layer = ImageLayer::new(artifact, PRECOMPILED_MEDIA_TYPE.into(), None);
        let config = Config::new(
            serde_json::to_vec(config)?,
            PRECOMPILED_CONFIG_MEDIA_TYPE.into(),
            None,
        );
        let auth = self.auth(reference.registry());
        let client = self.client(reference.registry());
        // The plain OCI client: oci-wasm's own methods insist on the wasm layout.
        let plain: &oci_client::Client = &client;
        let classify = |err| anyhow::Error::new(super::registry::classify(&reference, err));
        plain
            .push(reference.as_client_ref(), &[layer], config, &auth, None)
            .await
            .map_err(|err| classify(err.into()))?;
        let digest = client
            .fetch_manifest_digest(reference.as_client_ref(), &auth)
            .await
            .map_err(|err| classify(err.into()))?;
        Ok(reference.pinned(&digest))
    }

    /// The precompiled artifacts published for the component `component` (`sha256:…`) in the
    /// repository of `pinned`: platform key to reference pinned by digest. Artifacts that are
    /// not what their tag says are left out, each with a line saying why.
    pub async fn find_precompiled(
        &self,
        pinned: &OciRef,
        component: &str,
    ) -> Result<(BTreeMap<String, String>, Vec<String>), OciError> {
        let auth = self.auth(pinned.registry());
        let client = self.client(pinned.registry());
        let tags = all_pages(TAGS_PER_PAGE, MAX_TAG_PAGES, |last| {
            let (client, auth) = (&client, &auth);
            async move {
                client
                    .list_tags(
                        pinned.as_client_ref(),
                        auth,
                        Some(TAGS_PER_PAGE),
                        last.as_deref(),
                    )
                    .await
                    .map(|page| page.tags)
                    .map_err(|err| super::registry::classify(pinned, err.into()))
            }
        })
        .await?;
        let mut found = BTreeMap::new();
        let mut skipped = Vec::new();
        for tag in &tags {
            let Some(key) = key_of(tag, component) else {
                continue;
            };
            let reference = pinned.with_tag(tag);
            match self.precompiled_manifest(&reference, component).await {
                Ok((digest, _)) => {
                    found.insert(key.to_string(), reference.pinned(&digest).to_string());
                }
                Err(err) => skipped.push(err.to_string()),
            }
        }
        Ok((found, skipped))
    }

    /// Fetches the artifact `reference`, which must be pinned by digest, and checks it was
    /// compiled from `component` (`sha256:…`); at most `max_bytes`.
    pub async fn pull_precompiled(
        &self,
        reference: &OciRef,
        component: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, OciError> {
        if reference.digest().is_none() {
            // Native code is only ever taken as the operator pinned it; a tag can move.
            return Err(OciError::InvalidReference {
                reference: reference.to_string(),
                why: "a precompiled artifact is only taken by digest (edge fleet apply pins it)"
                    .into(),
            });
        }
        self.within_pull_timeout(reference, async {
            let (_digest, layer) = self.precompiled_manifest(reference, component).await?;
            let client = self.client(reference.registry());
            download_verified(&client, reference, &layer, max_bytes).await
        })
        .await
    }

    /// The manifest digest and layer of the precompiled artifact `reference`, checked to be
    /// one and to be compiled from `component`.
    async fn precompiled_manifest(
        &self,
        reference: &OciRef,
        component: &str,
    ) -> Result<(String, oci_client::manifest::OciDescriptor), OciError> {
        let auth = self.auth(reference.registry());
        let client = self.client(reference.registry());
        let plain: &oci_client::Client = &client;
        let (manifest, digest, config) = plain
            .pull_manifest_and_config(reference.as_client_ref(), &auth)
            .await
            .map_err(|err| super::registry::classify(reference, err.into()))?;
        super::registry::check_pinned(reference, &digest)?;
        let not_one = |detail: String| OciError::NotPrecompiled {
            reference: reference.to_string(),
            detail,
        };
        let [layer] = manifest.layers.as_slice() else {
            return Err(not_one(format!(
                "it has {} layers, not one",
                manifest.layers.len()
            )));
        };
        if layer.media_type != PRECOMPILED_MEDIA_TYPE
            || manifest.config.media_type != PRECOMPILED_CONFIG_MEDIA_TYPE
        {
            return Err(not_one(format!(
                "its media types are {:?} and {:?}",
                manifest.config.media_type, layer.media_type
            )));
        }
        let config: PrecompiledConfig = serde_json::from_str(&config)
            .map_err(|err| not_one(format!("its config does not parse: {err}")))?;
        if config.component != component {
            return Err(not_one(format!(
                "it was compiled from {}, not {component}",
                config.component
            )));
        }
        Ok((digest, layer.clone()))
    }
}

/// Tags asked for per page of a repository's tag list (the distribution API's `n`).
const TAGS_PER_PAGE: usize = 1000;
/// Pages of tags read at most: a repository with more tags than this shows only its first
/// ones (artifacts past them cost their nodes a compile, never a wrong deploy).
const MAX_TAG_PAGES: usize = 100;

/// Every item of a paged listing: `fetch(last)` returns the page after `last` (`None`: the
/// first). Reading stops at a short page, at a page that brings nothing new (a registry that
/// ignores `n` and `last` and returns everything each time), or after `max_pages`.
async fn all_pages<F, Fut, E>(
    per_page: usize,
    max_pages: usize,
    mut fetch: F,
) -> Result<Vec<String>, E>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>, E>>,
{
    let mut items: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut last = None;
    for _ in 0..max_pages {
        let page = fetch(last.clone()).await?;
        let full = page.len() >= per_page;
        let before = items.len();
        for item in page {
            if seen.insert(item.clone()) {
                items.push(item);
            }
        }
        if !full || items.len() == before {
            break;
        }
        last = items.last().cloned();
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry's tag list of `total` tags, paged by `n` and `last` when `pages` is set,
    /// whole every time otherwise.
    fn listing(
        total: usize,
        pages: bool,
    ) -> impl FnMut(Option<String>) -> std::future::Ready<Result<Vec<String>, ()>> {
        let tags: Vec<String> = (0..total).map(|i| format!("t{i:05}")).collect();
        move |last: Option<String>| {
            if !pages {
                return std::future::ready(Ok(tags.clone()));
            }
            let start = last.map_or(0, |last| tags.iter().position(|t| *t == last).unwrap() + 1);
            std::future::ready(Ok(tags[start..(start + 3).min(tags.len())].to_vec()))
        }
    }

    #[tokio::test]
    async fn tag_listings_are_read_across_pages_and_a_registry_ignoring_pages_ends_the_loop() {
        let paged = all_pages(3, 100, listing(10, true)).await.unwrap();
        assert_eq!(paged.len(), 10, "{paged:?}");
        assert_eq!(paged.last().map(String::as_str), Some("t00009"));
        let exact = all_pages(3, 100, listing(9, true)).await.unwrap();
        assert_eq!(exact.len(), 9);
        let whole = all_pages(3, 100, listing(10, false)).await.unwrap();
        assert_eq!(
            whole.len(),
            10,
            "the same full list again adds nothing and stops"
        );
        let capped = all_pages(3, 2, listing(10, true)).await.unwrap();
        assert_eq!(capped.len(), 6, "at most max_pages pages");
    }

    #[test]
    fn tags_carry_the_key_and_the_component_and_nothing_else_matches() {
        let component = format!("sha256:{}", "ab".repeat(32));
        let other = format!("sha256:{}", "cd".repeat(32));
        let made = tag("0123456789abcdef", &component);
        assert!(made.len() <= 128, "an OCI tag has at most 128 characters");
        assert_eq!(key_of(&made, &component), Some("0123456789abcdef"));
        assert_eq!(key_of(&made, &other), None);
        for not_ours in [
            "v1",
            "latest",
            &format!("aot--{}", "ab".repeat(32)),
            &format!("aot-xyz-{}", "ab".repeat(32)),
        ] {
            assert_eq!(key_of(not_ours, &component), None, "{not_ours}");
        }
    }
}
