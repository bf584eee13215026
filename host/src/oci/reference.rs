//! `oci://REGISTRY/REPOSITORY:TAG` and `oci://REGISTRY/REPOSITORY@sha256:HEX`: what users
//! write to name a component in a registry, parsed into the distribution reference the
//! registry client takes.

use std::fmt;

use super::OciError;

/// The scheme that marks a registry reference where a file path could also go.
pub const SCHEME: &str = "oci://";

/// A component in a registry, by tag or by manifest digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef {
    inner: oci_client::Reference,
}

impl OciRef {
    /// Parses `oci://REGISTRY/REPO:TAG` or `oci://REGISTRY/REPO@sha256:HEX`. The registry is
    /// required (no Docker Hub default): a gateway fleet names where its components live.
    pub fn parse(text: &str) -> Result<Self, OciError> {
        let invalid = |why: &str| OciError::InvalidReference {
            reference: text.to_string(),
            why: why.to_string(),
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| invalid("it must start with oci://"))?;
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("write oci://REGISTRY/REPOSITORY:TAG"))?;
        let names_a_host =
            registry.contains('.') || registry.contains(':') || registry == "localhost";
        if registry.is_empty() || !names_a_host || path.is_empty() {
            return Err(invalid(
                "the first part must be the registry host (with its port when not 443), \
                 e.g. oci://registry.example.com/team/app:1.0",
            ));
        }
        if let Some((_, digest)) = path.split_once('@') {
            let hex = digest
                .strip_prefix("sha256:")
                .ok_or_else(|| invalid("only sha256 digests are supported"))?;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid("a sha256 digest has 64 hex digits"));
            }
        }
        let inner: oci_client::Reference =
            rest.parse().map_err(|err: oci_client::ParseError| {
                invalid(&format!(
                    "{err}; repositories are lowercase, tags letters, digits, '.', '_' or '-'"
                ))
            })?;
        Ok(Self { inner })
    }

    /// Whether `text` is meant as a registry reference rather than a file.
    pub fn looks_like(text: &str) -> bool {
        text.starts_with(SCHEME)
    }

    /// `host:port` as written.
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    /// The manifest digest (`sha256:…`) when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// The same repository pinned to `digest` (`sha256:…`), without the tag.
    pub fn pinned(&self, digest: &str) -> Self {
        Self {
            inner: oci_client::Reference::with_digest(
                self.inner.registry().to_string(),
                self.inner.repository().to_string(),
                digest.to_string(),
            ),
        }
    }

    /// The same repository under `tag`.
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            inner: oci_client::Reference::with_tag(
                self.inner.registry().to_string(),
                self.inner.repository().to_string(),
                tag.to_string(),
            ),
        }
    }

    pub(super) fn as_client_ref(&self) -> &oci_client::Reference {
        &self.inner
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry(), self.repository())?;
        if let Some(digest) = self.inner.digest() {
            write!(f, "@{digest}")
        } else {
            write!(f, ":{}", self.inner.tag().unwrap_or("latest"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_by_tag_and_digest_round_trip() {
        let tagged = OciRef::parse("oci://127.0.0.1:5000/edge/hello:v1").expect("tag");
        assert_eq!(tagged.registry(), "127.0.0.1:5000");
        assert_eq!(tagged.repository(), "edge/hello");
        assert_eq!(tagged.digest(), None);
        assert_eq!(tagged.to_string(), "oci://127.0.0.1:5000/edge/hello:v1");
        let digest = format!("sha256:{}", "ab".repeat(32));
        let pinned = tagged.pinned(&digest);
        assert_eq!(pinned.digest(), Some(digest.as_str()));
        let text = pinned.to_string();
        assert_eq!(OciRef::parse(&text).expect("digest"), pinned);
    }

    #[test]
    fn references_without_a_registry_or_a_valid_digest_are_refused() {
        for bad in [
            "edge/hello:v1",
            "oci://hello:v1",
            "oci://edge/hello:v1",
            "oci://registry.example.com/",
            "oci://registry.example.com/edge/hello@sha256:1234",
            "oci://registry.example.com/edge/Hello:v1",
        ] {
            let err = OciRef::parse(bad).expect_err(bad);
            assert!(
                err.to_string().contains(bad),
                "{bad}: the error names the input: {err}"
            );
        }
    }
}
