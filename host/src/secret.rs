//! A credential read from the node's config (broker and registry passwords, tokens): usable by
//! the code that needs it, never printed by `Debug`, so it cannot reach a log line or an error.

use serde::{Deserialize, Serialize};

/// A credential from the config: usable, never printed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}
