//! The admin bearer token: where it comes from, how it is generated, how it is checked.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use subtle::ConstantTimeEq as _;

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
    let token = hex::encode(rand::random::<[u8; 32]>());
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

/// Compares a presented `Authorization` header value with the token in constant time.
pub fn is_authorized(header: Option<&str>, token: &str) -> bool {
    let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    bool::from(presented.trim().as_bytes().ct_eq(token.as_bytes()))
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
}
