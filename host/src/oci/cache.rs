//! The node's content-addressed cache of pulled components, so a reference by digest deploys
//! (and redeploys, and rolls back) without the registry:
//!
//! ```text
//! oci/blobs/sha256/<hex>       component bytes, named by their own digest
//! oci/manifests/sha256/<hex>   the digest of the component layer of that manifest
//! ```
//! Entries are written to a temporary name, synced and renamed; a blob is verified against
//! its name when read, so a damaged file is pulled again instead of deployed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

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

pub struct BlobCache {
    blobs: PathBuf,
    manifests: PathBuf,
}

impl BlobCache {
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let root = data_dir.join("oci");
        let blobs = root.join("blobs/sha256");
        let manifests = root.join("manifests/sha256");
        for dir in [&blobs, &manifests] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the registry cache {}", dir.display()))?;
        }
        Ok(Self { blobs, manifests })
    }

    /// The component layer's digest recorded for a manifest digest.
    pub fn layer_of(&self, manifest_digest: &str) -> Option<String> {
        let path = self.manifests.join(hex_of(manifest_digest)?);
        let layer = std::fs::read_to_string(path).ok()?;
        hex_of(layer.trim()).map(|_| layer.trim().to_string())
    }

    /// The bytes of a cached blob, when present and still matching their digest.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.blobs.join(hex_of(digest)?);
        let bytes = std::fs::read(&path).ok()?;
        if sha256_digest(&bytes) == digest {
            Some(bytes)
        } else {
            tracing::warn!(path = %path.display(), "cached component does not match its digest; pulling it again");
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Records a verified pull: the blob under its digest, then the manifest that names it.
    pub fn store(
        &self,
        manifest_digest: &str,
        layer_digest: &str,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        let (Some(manifest_hex), Some(layer_hex)) = (hex_of(manifest_digest), hex_of(layer_digest))
        else {
            anyhow::bail!("not sha256 digests: {manifest_digest}, {layer_digest}");
        };
        write_atomically(&self.blobs.join(layer_hex), bytes)?;
        write_atomically(&self.manifests.join(manifest_hex), layer_digest.as_bytes())
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

    #[test]
    fn a_stored_pull_is_found_by_manifest_and_a_damaged_blob_is_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = BlobCache::open(dir.path()).expect("cache");
        let bytes = b"\0asm component bytes".to_vec();
        let layer = sha256_digest(&bytes);
        let manifest = sha256_digest(b"manifest");
        assert_eq!(cache.layer_of(&manifest), None);
        cache.store(&manifest, &layer, &bytes).expect("store");
        assert_eq!(cache.layer_of(&manifest).as_deref(), Some(layer.as_str()));
        assert_eq!(cache.blob(&layer), Some(bytes));
        let path = dir.path().join("oci/blobs").join(layer.replace(':', "/"));
        std::fs::write(&path, b"damaged").expect("damage");
        assert_eq!(cache.blob(&layer), None);
        assert!(!path.exists(), "the damaged blob is removed");
        assert_eq!(cache.blob("sha256:../../etc/passwd"), None);
    }
}
