//! SIGHUP: re-read what can change without a restart (the bearer tokens file).

use crate::auth::Tokens;
use crate::events;
use quorumd_node::worker::{StopPhase, WorkFailed, Worker, Workers};
use std::sync::Arc;

/// Listens for SIGHUP and reloads `tokens` on each, as the `auth:reload` worker of
/// `workers` (a failed reload counts as its failure). The signal handler is registered before
/// this returns, so a SIGHUP sent right after start reloads instead of killing the process.
/// Registered even without a tokens file, so that SIGHUP (`systemctl reload`) never kills
/// the service. Returns whether it is listening (signals may be unavailable).
pub fn spawn_on_sighup(tokens: Arc<Tokens>, workers: &Workers) -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(hup) = signal(SignalKind::hangup()) else {
            return false;
        };
        workers.spawn(StopPhase::Background, SighupReloader { hup, tokens });
        true
    }
    #[cfg(not(unix))]
    {
        let _ = (tokens, workers);
        false
    }
}

#[cfg(unix)]
struct SighupReloader {
    hup: tokio::signal::unix::Signal,
    tokens: Arc<Tokens>,
}

#[cfg(unix)]
impl Worker for SighupReloader {
    fn name(&self) -> String {
        "auth:reload".into()
    }

    async fn wait_for_work(&mut self) {
        if self.hup.recv().await.is_none() {
            // No more signals can arrive: nothing left to do until shutdown.
            std::future::pending::<()>().await
        }
    }

    async fn work(&mut self) -> Result<(), WorkFailed> {
        reload(&self.tokens).map_err(WorkFailed)
    }
}

/// Re-reads the tokens file once, logging the outcome; the error, if it failed.
pub fn reload(tokens: &Tokens) -> Result<(), String> {
    let file = tokens
        .file()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    match tokens.reload() {
        Ok(n) => {
            events::AuthTokensReloaded {
                file: &file,
                tokens: n,
            }
            .emit();
            Ok(())
        }
        Err(e) => {
            let error = e.to_string();
            events::AuthTokensReloadFailed { error: &error }.emit();
            Err(error)
        }
    }
}
