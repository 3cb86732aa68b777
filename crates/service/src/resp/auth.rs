//! Who may run what on a RESP connection. AUTH (or HELLO ... AUTH) accepts `resp.password` or,
//! when `[auth]` is enabled, one of the HTTP API's bearer tokens, checked in the same token
//! store, so a SIGHUP reload applies to RESP connections too. A read-scoped token may run only
//! commands without the `write` flag. The command table says what each command requires
//! ([`Requirement`]); this module only checks it, so it does not depend on the table.
//!
//! Precedence: the password is tried first and grants everything (user `default` only); then the
//! tokens, as `AUTH <token>`, `AUTH default <token>` or `AUTH <token name> <token>`.

use super::frame::Frame;
use super::{Session, Shared};
use crate::auth::Scope;
use bytes::Bytes;

/// What running one command requires of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// The command's name, for the refusal.
    pub command: &'static str,
    /// The token scope it needs.
    pub scope: Scope,
    /// Allowed before AUTH when authentication is on (Redis's `no-auth` commands).
    pub before_auth: bool,
}

/// What a token let a connection do.
#[derive(Clone)]
pub struct Grant {
    /// The token's name, for NOPERM replies.
    pub name: String,
    pub scope: Scope,
    /// Kept to check again after the token store was reloaded (a rotated-out token stops
    /// working on open connections too). Never shown.
    token: Bytes,
    /// The token store's reload count when the token was last checked.
    generation: u64,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

fn wrong_pass() -> Frame {
    Frame::error("WRONGPASS invalid username-password pair or user is disabled.")
}

/// Compares without stopping at the first difference, so timing does not reveal a prefix.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, b) in expected.iter().enumerate() {
        diff |= usize::from(b ^ given.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// AUTH: on success the session is authenticated (with the token's scope, if a token was
/// used); on failure it keeps whatever it had, as in Redis.
pub fn login(
    session: &mut Session,
    shared: &Shared,
    user: Option<&[u8]>,
    secret: &[u8],
) -> Result<(), Frame> {
    let default_user = user.is_none_or(|u| u == b"default");
    if let Some(p) = &shared.password
        && default_user
        && same_secret(secret, p.as_bytes())
    {
        session.authenticated = true;
        session.grant = None;
        return Ok(());
    }
    let tokens = &shared.tokens;
    if tokens.enabled() {
        let generation = tokens.reloads();
        return match tokens.lookup(secret) {
            Some((name, scope)) if default_user || user == Some(name.as_bytes()) => {
                session.authenticated = true;
                session.grant = Some(Grant {
                    name,
                    scope,
                    token: Bytes::copy_from_slice(secret),
                    generation,
                });
                Ok(())
            }
            _ => Err(wrong_pass()),
        };
    }
    match (&shared.password, user) {
        (Some(_), _) => Err(wrong_pass()),
        (None, None) => Err(Frame::error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        )),
        // No authentication configured: the default user needs no password, as in Redis.
        (None, Some(_)) if default_user => Ok(()),
        (None, Some(_)) => Err(wrong_pass()),
    }
}

/// Whether the session may run a command that requires `need` now; the error reply if not.
pub fn permit(session: &mut Session, shared: &Shared, need: &Requirement) -> Result<(), Frame> {
    recheck_after_reload(session, shared);
    if !session.authenticated && !need.before_auth {
        return Err(Frame::error("NOAUTH Authentication required."));
    }
    if let Some(g) = &session.grant
        && !g.scope.allows(need.scope)
    {
        // Redis 7.0's text for a command the ACL user may not run.
        return Err(Frame::error(format!(
            "NOPERM this user has no permissions to run the '{}' command",
            need.command
        )));
    }
    Ok(())
}

/// After the token store was reloaded, a token-authenticated session checks its token again:
/// a removed token logs it out, a changed scope applies at once.
fn recheck_after_reload(session: &mut Session, shared: &Shared) {
    let Some(g) = &mut session.grant else {
        return;
    };
    let generation = shared.tokens.reloads();
    if g.generation == generation {
        return;
    }
    match shared.tokens.lookup(&g.token) {
        Some((name, scope)) => {
            g.name = name;
            g.scope = scope;
            g.generation = generation;
        }
        None => {
            session.grant = None;
            session.authenticated = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"abcd", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(same_secret(b"", b""));
    }
}
