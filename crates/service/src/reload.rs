//! SIGHUP: re-read what can change without a restart (the bearer tokens file).

use crate::auth::Tokens;
use crate::events;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Listens for SIGHUP and reloads `tokens` on each. The signal handler is registered before
/// this returns, so a SIGHUP sent right after start reloads instead of killing the process.
/// Registered even without a tokens file, so that SIGHUP (`systemctl reload`) never kills
/// the service. `None` when signals are unavailable.
pub fn spawn_on_sighup(tokens: Arc<Tokens>) -> Option<JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).ok()?;
        Some(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                reload(&tokens);
            }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = tokens;
        None
    }
}

/// Re-reads the tokens file once, logging the outcome.
pub fn reload(tokens: &Tokens) {
    let file = tokens
        .file()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    match tokens.reload() {
        Ok(n) => events::AuthTokensReloaded {
            file: &file,
            tokens: n,
        }
        .emit(),
        Err(e) => events::AuthTokensReloadFailed {
            error: &e.to_string(),
        }
        .emit(),
    }
}
