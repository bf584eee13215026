//! The node's index of pulled manifests, so a reference by digest deploys (and redeploys)
//! without the registry while the node keeps the component it names:
//!
//! ```text
//! oci/manifests/sha256/<hex>   the digest of the component layer of that manifest
//! ```
//! The component bytes are not copied here: a layer's digest is the sha256 of the component,
//! which is how the repository names the originals it keeps (`components/<hex>.wasm`, the
//! current and previous version of every app). So the bytes are stored once, and the cache
//! shrinks with the repository's garbage collection: an index entry whose component is gone
//! is pruned (at start, and at each pull once it is older than [`PULL_GRACE`], which leaves a
//! pull time to be deployed), and a reference to it is pulled again. Bytes are verified against their
//! digest when read, so a damaged file is pulled again instead of deployed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use sha2::Digest as _;

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The hex part of a `sha256:<hex>` digest, or `None` for anything else (never a path).
fn hex_of(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// How long an index entry may name a component the node does not keep: from a pull to the
/// end of its deploy (validation and compile; a deploy that fails leaves such an entry).
pub const PULL_GRACE: Duration = Duration::from_secs(15 * 60);

/// Where the node keeps the component whose sha256 is the given hex digest (whether or not
/// it is there).
pub type KeptComponents = Arc<dyn Fn(&str) -> PathBuf + Send + Sync>;

pub struct BlobCache {
    manifests: PathBuf,
    components: KeptComponents,
}

impl BlobCache {
    /// Opens the index under `data_dir/oci`, dropping entries whose component is gone and
    /// the copies of component bytes that earlier releases kept in `oci/blobs`.
    pub fn open(data_dir: &Path, components: KeptComponents) -> anyhow::Result<Self> {
        let root = data_dir.join("oci");
        let manifests = root.join("manifests/sha256");
        std::fs::create_dir_all(&manifests)
            .with_context(|| format!("creating the registry cache {}", manifests.display()))?;
        let legacy_blobs = root.join("blobs");
        if legacy_blobs.exists() {
            match std::fs::remove_dir_all(&legacy_blobs) {
                Ok(()) => tracing::info!(
                    path = %legacy_blobs.display(),
                    "removed the registry cache's copies of pulled components (the node keeps each component once)"
                ),
                Err(err) => tracing::warn!(
                    path = %legacy_blobs.display(),
                    "cannot remove the old copies of pulled components: {err}"
                ),
            }
        }
        let cache = Self {
            manifests,
            components,
        };
        // Nothing is being deployed yet: every entry without its component goes.
        cache.prune(Duration::ZERO);
        Ok(cache)
    }

    /// The component layer's digest recorded for a manifest digest.
    pub fn layer_of(&self, manifest_digest: &str) -> Option<String> {
        let path = self.manifests.join(hex_of(manifest_digest)?);
        let layer = std::fs::read_to_string(path).ok()?;
        hex_of(layer.trim()).map(|_| layer.trim().to_string())
    }

    /// The bytes of a component the node keeps, when present and still matching their digest.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        let path = (self.components)(hex_of(digest)?);
        let bytes = std::fs::read(&path).ok()?;
        if sha256_digest(&bytes) == digest {
            Some(bytes)
        } else {
            tracing::warn!(path = %path.display(), "a kept component does not match its digest; pulling it again");
            None
        }
    }

    /// Records a verified pull: the manifest and the layer it names. Entries older than
    /// [`PULL_GRACE`] whose component the node no longer keeps are pruned at the same time, so
    /// the index stays as small as the set of kept components plus recent pulls.
    pub fn store(&self, manifest_digest: &str, layer_digest: &str) -> anyhow::Result<()> {
        let (Some(manifest_hex), Some(_)) = (hex_of(manifest_digest), hex_of(layer_digest)) else {
            anyhow::bail!("not sha256 digests: {manifest_digest}, {layer_digest}");
        };
        self.prune(PULL_GRACE);
        write_atomically(&self.manifests.join(manifest_hex), layer_digest.as_bytes())
    }

    /// Removes index entries older than `grace` whose component is gone or that do not read
    /// as one (a partial write).
    fn prune(&self, grace: Duration) {
        let Ok(entries) = std::fs::read_dir(&self.manifests) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let young = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| SystemTime::now().duration_since(at).unwrap_or_default() < grace);
            if young {
                continue;
            }
            let kept = std::fs::read_to_string(&path)
                .ok()
                .and_then(|layer| hex_of(layer.trim()).map(|hex| (self.components)(hex)))
                .is_some_and(|component| component.exists());
            if !kept && let Err(err) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), "cannot prune the registry cache: {err}");
            }
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temp = path.with_extension("partial");
    let mut file =
        std::fs::File::create(&temp).with_context(|| format!("writing {}", temp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_over(dir: &Path) -> (BlobCache, PathBuf) {
        let components = dir.join("components");
        std::fs::create_dir_all(&components).expect("components dir");
        let kept = components.clone();
        let cache = BlobCache::open(
            dir,
            Arc::new(move |hex: &str| kept.join(format!("{hex}.wasm"))),
        )
        .expect("cache");
        (cache, components)
    }

    #[test]
    fn a_pull_is_found_by_manifest_while_its_component_is_kept_and_a_damaged_one_is_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cache, components) = cache_over(dir.path());
        let bytes = b"\0asm component bytes".to_vec();
        let layer = sha256_digest(&bytes);
        let manifest = sha256_digest(b"manifest");
        assert_eq!(cache.layer_of(&manifest), None);
        cache.store(&manifest, &layer).expect("store");
        assert_eq!(cache.layer_of(&manifest).as_deref(), Some(layer.as_str()));
        assert_eq!(cache.blob(&layer), None, "not deployed: nothing kept");
        let path = components.join(format!("{}.wasm", hex_of(&layer).unwrap()));
        std::fs::write(&path, &bytes).expect("deployed");
        assert_eq!(cache.blob(&layer), Some(bytes));
        std::fs::write(&path, b"damaged").expect("damage");
        assert_eq!(cache.blob(&layer), None);
        assert!(
            path.exists(),
            "the repository's file is left to the repository"
        );
        assert_eq!(cache.blob("sha256:../../etc/passwd"), None);
    }

    #[test]
    fn entries_whose_component_is_gone_are_pruned_and_old_blob_copies_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let legacy = dir.path().join("oci/blobs/sha256");
        std::fs::create_dir_all(&legacy).expect("legacy dir");
        std::fs::write(legacy.join("ab"), b"an old copy").expect("legacy blob");
        let (cache, components) = cache_over(dir.path());
        assert!(!dir.path().join("oci/blobs").exists(), "old copies removed");

        let manifest_of = |bytes: &[u8]| sha256_digest(&[bytes, b"m"].concat());
        let kept = b"kept".to_vec();
        let gone = b"gone".to_vec();
        for bytes in [&kept, &gone] {
            let hex = hex::encode(sha2::Sha256::digest(bytes));
            std::fs::write(components.join(format!("{hex}.wasm")), bytes).expect("kept");
            cache
                .store(&manifest_of(bytes), &sha256_digest(bytes))
                .expect("store");
        }
        // The repository collects the second component. A pull stores its entry: the entry of
        // the collected one goes once it is older than a deploy may take.
        let gone_hex = hex::encode(sha2::Sha256::digest(&gone));
        std::fs::remove_file(components.join(format!("{gone_hex}.wasm"))).expect("collected");
        let age = |bytes: &[u8], by: Duration| {
            let path = dir
                .path()
                .join("oci/manifests/sha256")
                .join(hex_of(&manifest_of(bytes)).unwrap());
            let file = std::fs::File::options()
                .write(true)
                .open(path)
                .expect("entry");
            file.set_modified(SystemTime::now() - by).expect("age");
        };
        cache
            .store(&sha256_digest(b"second pull"), &sha256_digest(b"x"))
            .expect("store");
        assert!(
            cache.layer_of(&manifest_of(&gone)).is_some(),
            "within the grace"
        );
        age(&gone, PULL_GRACE + Duration::from_secs(60));
        age(&kept, PULL_GRACE + Duration::from_secs(60));
        let third = b"third".to_vec();
        cache
            .store(&sha256_digest(b"third manifest"), &sha256_digest(&third))
            .expect("store");
        assert!(cache.layer_of(&manifest_of(&kept)).is_some());
        assert_eq!(cache.layer_of(&manifest_of(&gone)), None, "pruned");
        assert!(
            cache.layer_of(&sha256_digest(b"third manifest")).is_some(),
            "a pull being deployed keeps its entry"
        );
        // Opening again (nothing being deployed) prunes the pulls never deployed.
        drop(cache);
        let (cache, _) = cache_over(dir.path());
        assert_eq!(cache.layer_of(&sha256_digest(b"third manifest")), None);
        assert_eq!(cache.layer_of(&sha256_digest(b"second pull")), None);
        assert!(cache.layer_of(&manifest_of(&kept)).is_some());
    }
}
