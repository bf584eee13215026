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

/// Shortest token the node accepts, configured or read from its file: a shorter one could be
/// guessed, and a truncated file must not become a weak token.
pub const MIN_TOKEN_LEN: usize = 32;

/// The configured token, else the one in `<data_dir>/admin.token`, else a new random one
/// written there with mode 0600. A configured token shorter than [`MIN_TOKEN_LEN`] is refused;
/// a token file that is empty or too short (a damaged or truncated file) is replaced by a new
/// token, with a warning, never accepted.
pub fn load_or_generate(configured: &str, data_dir: &Path) -> anyhow::Result<String> {
    if !configured.is_empty() {
        if configured.len() < MIN_TOKEN_LEN {
            anyhow::bail!(
                "[server] token is {} characters long; use at least {MIN_TOKEN_LEN} (e.g. the \
                 output of `openssl rand -hex 32`), or leave it empty to use <data_dir>/admin.token",
                configured.len()
            );
        }
        return Ok(configured.to_string());
    }
    let path = token_path(data_dir);
    match read_token_file(&path)? {
        Some(existing) if existing.len() >= MIN_TOKEN_LEN => return Ok(existing),
        Some(damaged) => tracing::warn!(
            "{} holds a token of {} characters (empty or truncated); replacing it with a new one",
            path.display(),
            damaged.len()
        ),
        None => {}
    }
    let token = new_secret();
    write_private(&path, &format!("{token}\n"))
        .with_context(|| format!("writing admin token file {}", path.display()))?;
    tracing::info!("generated a new admin token in {}", path.display());
    Ok(token)
}

/// Writes `text` to `path` with mode 0600: a temporary file, synced, renamed over `path`.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Creates the data folder readable by this user only (0700), or tightens an existing one
/// that others can read: it holds the admin token, secrets in app config and app data.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating data folder {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "data folder {} was accessible to other users (mode {:o}); setting 0700",
                dir.display(),
                mode & 0o777
            );
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting data folder {}", dir.display()))?;
        }
    }
    Ok(())
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
    fn empty_or_truncated_token_file_is_replaced_and_short_configured_token_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(token_path(dir.path()), "abc\n").unwrap();
        let token = load_or_generate("", dir.path()).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(
            read_token_file(&token_path(dir.path())).unwrap(),
            Some(token)
        );
        std::fs::write(token_path(dir.path()), "").unwrap();
        assert_eq!(load_or_generate("", dir.path()).unwrap().len(), 64);
        let err = load_or_generate("short", dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 32"), "{err}");
    }

    #[test]
    fn data_folder_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        create_private_dir(&data).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let set = |mode| {
                std::fs::set_permissions(&data, std::fs::Permissions::from_mode(mode)).unwrap()
            };
            let mode = || std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(), 0o700);
            set(0o755);
            create_private_dir(&data).unwrap();
            assert_eq!(mode(), 0o700);
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
