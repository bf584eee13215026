//! Named admin tokens with roles (`edge token create|list|revoke`), kept in sled as SHA-256
//! digests only: the secret is shown once, when it is created, and never stored.
//!
//! The bootstrap token (`admin.token` or `[server] token`) stays valid as the `admin` token
//! with role admin, so the quick start needs nothing else. Lookups hash the presented token
//! and compare digests, so a guessed prefix of a secret tells nothing; a revoked token is
//! removed from the in-memory index before the revoke answers, so it is refused at once.

use std::collections::HashMap;
use std::sync::RwLock;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::api::TokenView;
use crate::auth::{self, BOOTSTRAP_TOKEN_NAME, Caller, Role};
use crate::names::validate_app_name;

/// Why a token change was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token name {0:?}: use 1-63 lowercase letters, digits, '-' or '_'")]
    InvalidName(String),
    #[error(
        "the name {BOOTSTRAP_TOKEN_NAME:?} belongs to the node's bootstrap token (admin.token); choose another name"
    )]
    Reserved,
    #[error("a token named {0:?} exists already; revoke it first or choose another name")]
    Exists(String),
    #[error("no token named {0:?}; see `edge token list`")]
    NotFound(String),
    #[error("token storage failed: {0:#}")]
    Storage(#[from] anyhow::Error),
}

/// What is stored per token: never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredToken {
    name: String,
    role: Role,
    /// Hex SHA-256 of the secret.
    digest: String,
    /// Seconds since the Unix epoch.
    created_at: u64,
}

impl StoredToken {
    fn view(&self) -> TokenView {
        TokenView {
            name: self.name.clone(),
            role: self.role,
            created_at: self.created_at,
        }
    }
}

/// The node's tokens: sled tree `tokens` (name -> [`StoredToken`]) plus an index by digest.
pub struct TokenStore {
    db: sled::Db,
    tree: sled::Tree,
    bootstrap: [u8; 32],
    by_digest: RwLock<HashMap<[u8; 32], Caller>>,
}

impl TokenStore {
    /// Opens the store; `bootstrap` is the node's admin token.
    pub fn open(db: &sled::Db, bootstrap: &str) -> anyhow::Result<Self> {
        let tree = db.open_tree("tokens").context("opening the tokens tree")?;
        let store = Self {
            db: db.clone(),
            tree,
            bootstrap: auth::token_digest(bootstrap),
            by_digest: RwLock::new(HashMap::new()),
        };
        store.reindex()?;
        Ok(store)
    }

    fn stored(&self) -> anyhow::Result<Vec<StoredToken>> {
        self.tree
            .iter()
            .map(|entry| {
                let (key, raw) = entry?;
                serde_json::from_slice(&raw)
                    .with_context(|| format!("decoding token {}", String::from_utf8_lossy(&key)))
            })
            .collect()
    }

    fn reindex(&self) -> anyhow::Result<()> {
        let mut index = HashMap::new();
        for token in self.stored()? {
            let Ok(bytes) = hex::decode(&token.digest) else {
                tracing::error!(token = %token.name, "stored token digest is not hex; ignored");
                continue;
            };
            let Ok(digest) = <[u8; 32]>::try_from(bytes) else {
                tracing::error!(token = %token.name, "stored token digest has a wrong length");
                continue;
            };
            index.insert(
                digest,
                Caller {
                    token: token.name,
                    role: token.role,
                },
            );
        }
        *self.by_digest.write().unwrap_or_else(|p| p.into_inner()) = index;
        Ok(())
    }

    /// The caller a presented secret belongs to, if any.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        let digest = auth::token_digest(presented);
        if auth::same_digest(&digest, &self.bootstrap) {
            return Some(Caller {
                token: BOOTSTRAP_TOKEN_NAME.to_string(),
                role: Role::Admin,
            });
        }
        self.by_digest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
            .cloned()
    }

    /// Creates a token; returns its secret (shown once) and its listing.
    pub fn create(&self, name: &str, role: Role) -> Result<(String, TokenView), TokenError> {
        validate_app_name(name).map_err(|_| TokenError::InvalidName(name.to_string()))?;
        if name == BOOTSTRAP_TOKEN_NAME {
            return Err(TokenError::Reserved);
        }
        let secret = auth::new_secret();
        let token = StoredToken {
            name: name.to_string(),
            role,
            digest: hex::encode(auth::token_digest(&secret)),
            created_at: crate::names::unix_now(),
        };
        let raw = serde_json::to_vec(&token).context("encoding token")?;
        let swapped = self
            .tree
            .compare_and_swap(name, None as Option<&[u8]>, Some(raw))
            .context("storing token")?;
        if swapped.is_err() {
            return Err(TokenError::Exists(name.to_string()));
        }
        self.db.flush().context("flushing tokens")?;
        self.reindex()?;
        Ok((secret, token.view()))
    }

    /// Every token but the bootstrap one, by name (never a secret or digest).
    pub fn list(&self) -> Result<Vec<TokenView>, TokenError> {
        Ok(self.stored()?.iter().map(StoredToken::view).collect())
    }

    /// Deletes a token; it is refused from the moment this returns.
    pub fn revoke(&self, name: &str) -> Result<TokenView, TokenError> {
        if name == BOOTSTRAP_TOKEN_NAME {
            return Err(TokenError::Reserved);
        }
        let removed = self
            .tree
            .remove(name)
            .context("removing token")?
            .ok_or_else(|| TokenError::NotFound(name.to_string()))?;
        self.db.flush().context("flushing tokens")?;
        self.reindex()?;
        let token: StoredToken = serde_json::from_slice(&removed).context("decoding token")?;
        Ok(token.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path) -> TokenStore {
        let db = crate::group_commit::open_test_db(dir);
        TokenStore::open(&db, "bootstrap-secret").unwrap()
    }

    #[test]
    fn created_token_authenticates_with_its_role_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = store(dir.path());
        let (secret, view) = tokens.create("ci", Role::Deploy).unwrap();
        assert_eq!(view.role, Role::Deploy);
        let caller = tokens.authenticate(&secret).unwrap();
        assert_eq!((caller.token.as_str(), caller.role), ("ci", Role::Deploy));
        assert!(tokens.authenticate("ci").is_none());
        tokens.revoke("ci").unwrap();
        assert!(tokens.authenticate(&secret).is_none());
        assert!(matches!(tokens.revoke("ci"), Err(TokenError::NotFound(_))));
    }

    #[test]
    fn only_digests_are_stored_and_tokens_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let secret = {
            let tokens = store(dir.path());
            tokens.create("reader", Role::Read).unwrap().0
        };
        let tokens = store(dir.path());
        assert_eq!(tokens.authenticate(&secret).unwrap().role, Role::Read);
        let raw: Vec<u8> = tokens.tree.get("reader").unwrap().unwrap().to_vec();
        assert!(!String::from_utf8_lossy(&raw).contains(&secret));
    }

    #[test]
    fn bootstrap_token_is_admin_and_its_name_is_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = store(dir.path());
        let caller = tokens.authenticate("bootstrap-secret").unwrap();
        assert_eq!((caller.token.as_str(), caller.role), ("admin", Role::Admin));
        assert!(matches!(
            tokens.create("admin", Role::Read),
            Err(TokenError::Reserved)
        ));
        assert!(matches!(
            tokens
                .create("x", Role::Read)
                .and(tokens.create("x", Role::Admin)),
            Err(TokenError::Exists(_))
        ));
        assert!(matches!(
            tokens.create("Bad Name", Role::Read),
            Err(TokenError::InvalidName(_))
        ));
    }
}
