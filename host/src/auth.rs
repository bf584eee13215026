//! Who may call the admin API: the bootstrap token (where it comes from, how it is generated,
//! how it is checked) and the roles named tokens carry ([`Role`], [`Caller`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

/// What a token may do. Each role includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// List apps and models, read usage, metrics and guest logs.
    Read,
    /// Also deploy, roll back and remove apps (keeping their data).
    Deploy,
    /// Everything: also delete app data, read and write kv, manage tokens, read the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Deploy => "deploy",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller of an admin request: the token's name (recorded in the audit log)
/// and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token: String,
    pub role: Role,
}

/// The name the bootstrap token (`admin.token` or `[server] token`) goes by in the audit log.
pub const BOOTSTRAP_TOKEN_NAME: &str = "admin";

/// File under the data folder holding the generated token.
pub const TOKEN_FILE: &str = "admin.token";

pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// The configured token, else the one in `<data_dir>/admin.token`, else a new random one
/// written there with mode 0600.
pub fn load_or_generate(configured: &str, data_dir: &Path) -> anyhow::Result<String> {
    if !configured.is_empty() {
        return Ok(configured.to_string());
    }
    let path = token_path(data_dir);
    if let Some(existing) = read_token_file(&path)? {
        return Ok(existing);
    }
    let token = new_secret();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("creating admin token file {}", path.display()))?;
    writeln!(file, "{token}")?;
    file.sync_all()?;
    tracing::info!("generated a new admin token in {}", path.display());
    Ok(token)
}

/// Reads a token file; `None` when it does not exist.
pub fn read_token_file(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading admin token {}", path.display())),
    }
}

/// The token in an `Authorization: Bearer ...` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Compares a presented `Authorization` header value with the token in constant time.
pub fn is_authorized(header: Option<&str>, token: &str) -> bool {
    let Some(presented) = bearer(header) else {
        return false;
    };
    bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}

/// Compares two secrets' digests in constant time.
pub fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    bool::from(a.ct_eq(b))
}

/// The SHA-256 of a token: what the node stores instead of the token itself.
pub fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// A new random token secret (256 bits, hex).
pub fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_is_persisted_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate("", dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_generate("", dir.path()).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(token_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        assert!(is_authorized(Some("Bearer abc"), "abc"));
        assert!(!is_authorized(Some("Bearer abd"), "abc"));
        assert!(!is_authorized(Some("Bearer ab"), "abc"));
        assert!(!is_authorized(Some("abc"), "abc"));
        assert!(!is_authorized(None, "abc"));
    }

    #[test]
    fn roles_are_ordered_by_what_they_allow() {
        assert!(Role::Read < Role::Deploy && Role::Deploy < Role::Admin);
        assert_eq!(serde_json::to_string(&Role::Deploy).unwrap(), "\"deploy\"");
    }
}
