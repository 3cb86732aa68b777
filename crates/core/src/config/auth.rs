//! The `[auth]` configuration section and the tokens file format.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a token may do. `write` includes `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// GET and HEAD requests (reads, status, sweep progress).
    #[serde(alias = "read-only")]
    Read,
    /// Every request, including writes and admin actions such as starting a sweep.
    #[serde(alias = "read-write")]
    Write,
}

impl Scope {
    /// Whether a token of this scope may do what `needed` requires.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

/// One bearer token. Its `Debug` output never shows the secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// A label for logs and errors (the token itself is never logged). Default: empty.
    #[serde(default)]
    pub name: String,
    /// The secret the client sends as `Authorization: Bearer <token>`. Required.
    pub token: String,
    /// `read` or `write`. Default `read`.
    #[serde(default = "default_scope")]
    pub scope: Scope,
}

fn default_scope() -> Scope {
    Scope::Read
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("token", &"***")
            .field("scope", &self.scope)
            .finish()
    }
}

/// HTTP (and RESP) authentication.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require a bearer token on every request except `/healthz` and `/readyz`. Default false.
    pub enabled: bool,
    /// Tokens given inline, as `[[auth.tokens]]` tables with `name`, `token` and `scope`.
    /// Default: none.
    pub tokens: Vec<TokenEntry>,
    /// A TOML file with more `[[tokens]]` tables, re-read on SIGHUP so tokens rotate without a
    /// restart. Default: empty (no file).
    pub tokens_file: String,
    /// Require a `read` token for `/metrics` too. Default false (scrapers often cannot send
    /// tokens, and metrics hold no data values).
    pub protect_metrics: bool,
}

impl AuthConfig {
    /// A copy safe to print: every token replaced by `***`.
    pub fn masked(&self) -> AuthConfig {
        let mut shown = self.clone();
        for t in &mut shown.tokens {
            t.token = "***".into();
        }
        shown
    }
}

/// The shape of a tokens file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}
