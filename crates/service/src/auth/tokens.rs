//! The token store. Tokens are kept only as SHA-256 digests, and a lookup compares the
//! presented token's digest with every stored digest in constant time, so neither the timing
//! nor a memory dump of the store gives a token away.

use quorumd_core::config::{AuthConfig, Scope, TokenEntry, TokensFile};
use ring::digest::{SHA256, digest};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// Shortest accepted token: long enough that guessing is hopeless.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read tokens file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tokens file {path} is not valid: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
}

struct Stored {
    name: String,
    digest: [u8; 32],
    scope: Scope,
}

/// The current set of accepted tokens; cheap to share, replaced as a whole on reload.
pub struct Tokens {
    enabled: bool,
    protect_metrics: bool,
    inline: Vec<TokenEntry>,
    file: Option<PathBuf>,
    current: RwLock<Arc<Vec<Stored>>>,
    /// Reloads attempted so far, failed or not (lets tests and status see that one ran).
    reloads: AtomicU64,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("enabled", &self.enabled)
            .field("count", &self.len())
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

fn sha256(token: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token).as_ref());
    out
}

impl Tokens {
    /// Builds the store from the configuration, reading the tokens file if one is named.
    /// With auth enabled, at least one token must result.
    pub fn from_config(cfg: &AuthConfig) -> Result<Tokens, AuthError> {
        let file = (!cfg.tokens_file.trim().is_empty()).then(|| PathBuf::from(&cfg.tokens_file));
        let tokens = Tokens {
            enabled: cfg.enabled,
            protect_metrics: cfg.protect_metrics,
            inline: cfg.tokens.clone(),
            file,
            current: RwLock::new(Arc::new(Vec::new())),
            reloads: AtomicU64::new(0),
        };
        let loaded = tokens.load()?;
        if cfg.enabled && loaded.is_empty() {
            return Err(AuthError::Invalid {
                field: "auth.tokens".into(),
                message:
                    "auth is enabled but no token is configured (inline or in auth.tokens_file)"
                        .into(),
            });
        }
        *tokens.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(tokens)
    }

    /// A store that accepts nothing and is switched off (auth disabled).
    pub fn disabled() -> Tokens {
        Tokens {
            enabled: false,
            protect_metrics: false,
            inline: Vec::new(),
            file: None,
            current: RwLock::new(Arc::new(Vec::new())),
            reloads: AtomicU64::new(0),
        }
    }

    /// How many reloads were attempted, failed ones included.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::SeqCst)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn protect_metrics(&self) -> bool {
        self.protect_metrics
    }

    /// The tokens file, if one is configured.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    pub fn len(&self) -> usize {
        self.current.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scope of `token`, or `None` if it is not a valid token. Every stored token is
    /// compared, each in constant time, whatever matches.
    pub fn check(&self, token: &[u8]) -> Option<Scope> {
        self.lookup(token).map(|(_, scope)| scope)
    }

    /// Like [`Tokens::check`], with the token's name (for logs).
    pub fn lookup(&self, token: &[u8]) -> Option<(String, Scope)> {
        let presented = sha256(token);
        let current = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut found = None;
        for stored in current.iter() {
            if bool::from(stored.digest.ct_eq(&presented)) {
                found = Some((stored.name.clone(), stored.scope));
            }
        }
        found
    }

    /// Re-reads the tokens file (inline tokens stay). On any error the tokens in force are
    /// kept and the error is returned; on success returns the number of tokens now accepted.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let outcome = self.reload_inner();
        self.reloads.fetch_add(1, Ordering::SeqCst);
        outcome
    }

    fn reload_inner(&self) -> Result<usize, AuthError> {
        let loaded = self.load()?;
        if self.enabled && loaded.is_empty() {
            return Err(AuthError::Invalid {
                field: "auth.tokens_file".into(),
                message: "the reloaded tokens leave no token at all; keeping the old ones".into(),
            });
        }
        let n = loaded.len();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(n)
    }

    fn load(&self) -> Result<Vec<Stored>, AuthError> {
        let mut entries: Vec<(String, TokenEntry)> = self
            .inline
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("auth.tokens[{i}]"), t.clone()))
            .collect();
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path).map_err(|source| AuthError::ReadFile {
                path: path.clone(),
                source,
            })?;
            let parsed: TokensFile = toml::from_str(&text).map_err(|e| AuthError::ParseFile {
                path: path.clone(),
                // toml quotes the offending line, which may be a token: keep only the message.
                message: e.message().to_string(),
            })?;
            entries.extend(
                parsed
                    .tokens
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| (format!("{}: tokens[{i}]", path.display()), t)),
            );
        }
        let mut stored: Vec<Stored> = Vec::with_capacity(entries.len());
        for (field, entry) in entries {
            if entry.token.len() < MIN_TOKEN_LEN {
                return Err(AuthError::Invalid {
                    field,
                    message: format!("a token must be at least {MIN_TOKEN_LEN} characters"),
                });
            }
            if entry
                .token
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(AuthError::Invalid {
                    field,
                    message: "a token must not contain whitespace or control characters".into(),
                });
            }
            let digest = sha256(entry.token.as_bytes());
            if stored.iter().any(|s| s.digest == digest) {
                return Err(AuthError::Invalid {
                    field,
                    message: "the same token is configured twice".into(),
                });
            }
            stored.push(Stored {
                name: entry.name,
                digest,
                scope: entry.scope,
            });
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, token: &str, scope: Scope) -> TokenEntry {
        TokenEntry {
            name: name.into(),
            token: token.into(),
            scope,
        }
    }

    fn config(tokens: Vec<TokenEntry>, file: &str) -> AuthConfig {
        AuthConfig {
            enabled: true,
            tokens,
            tokens_file: file.into(),
            protect_metrics: false,
        }
    }

    #[test]
    fn scopes_and_unknown_tokens() {
        let t = Tokens::from_config(&config(
            vec![
                entry("reader", "read-token-0123456789", Scope::Read),
                entry("writer", "write-token-0123456789", Scope::Write),
            ],
            "",
        ))
        .unwrap();
        assert_eq!(t.check(b"read-token-0123456789"), Some(Scope::Read));
        assert_eq!(t.check(b"write-token-0123456789"), Some(Scope::Write));
        assert_eq!(t.check(b"write-token-012345678"), None);
        assert_eq!(t.check(b""), None);
        assert!(Scope::Write.allows(Scope::Read));
        assert!(!Scope::Read.allows(Scope::Write));
    }

    #[test]
    fn bad_tokens_are_refused_with_their_field() {
        let short = Tokens::from_config(&config(vec![entry("a", "short", Scope::Read)], ""));
        assert!(short.unwrap_err().to_string().contains("auth.tokens[0]"));
        let dup = Tokens::from_config(&config(
            vec![
                entry("a", "same-token-0123456789", Scope::Read),
                entry("b", "same-token-0123456789", Scope::Write),
            ],
            "",
        ));
        assert!(dup.unwrap_err().to_string().contains("auth.tokens[1]"));
        let none = Tokens::from_config(&config(vec![], ""));
        assert!(none.unwrap_err().to_string().contains("auth.tokens"));
        let missing = Tokens::from_config(&config(vec![], "/nonexistent/tokens.toml"));
        assert!(matches!(missing, Err(AuthError::ReadFile { .. })));
    }

    #[test]
    fn reload_replaces_file_tokens_and_keeps_old_ones_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let write = |body: &str| std::fs::write(&path, body).unwrap();
        write("[[tokens]]\nname = \"a\"\ntoken = \"first-token-0123456789\"\nscope = \"write\"\n");
        let t = Tokens::from_config(&config(vec![], path.to_str().unwrap())).unwrap();
        assert_eq!(t.check(b"first-token-0123456789"), Some(Scope::Write));

        write(
            "[[tokens]]\ntoken = \"second-token-0123456789\"\n[[tokens]]\ntoken = \"third-token-0123456789\"\nscope = \"read-write\"\n",
        );
        assert_eq!(t.reload().unwrap(), 2);
        assert_eq!(t.check(b"third-token-0123456789"), Some(Scope::Write));
        assert_eq!(t.check(b"first-token-0123456789"), None);
        assert_eq!(t.check(b"second-token-0123456789"), Some(Scope::Read));

        write("[[tokens]]\ntoken = \"secret-in-a-broken-file\nscope = 3\n");
        let err = t.reload().unwrap_err().to_string();
        assert!(!err.contains("secret-in-a-broken-file"), "{err}");
        assert_eq!(t.check(b"second-token-0123456789"), Some(Scope::Read));
        write("tokens = []\n");
        assert!(t.reload().is_err(), "an empty set would lock everyone out");
        assert_eq!(t.check(b"second-token-0123456789"), Some(Scope::Read));
    }

    #[test]
    fn debug_output_hides_tokens() {
        let cfg = config(vec![entry("n", "very-secret-token-123", Scope::Read)], "");
        assert!(!format!("{cfg:?}").contains("very-secret"));
        let t = Tokens::from_config(&cfg).unwrap();
        assert!(!format!("{t:?}").contains("very-secret"));
        assert!(!format!("{:?}", cfg.masked()).contains("very-secret"));
        assert!(
            !toml::to_string(&cfg.masked())
                .unwrap()
                .contains("very-secret")
        );
    }
}
