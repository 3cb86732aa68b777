//! Every log line about an operational event is emitted here, from a typed event, so that what
//! an operator sees (and, later, metrics) stays consistent and is never scattered through the
//! code. Call sites build an event and call `emit()`.

use crate::pool::Health;
use std::time::Duration;

/// A node's health state changed.
pub struct NodeHealthChanged<'a> {
    pub node: &'a str,
    pub from: Health,
    pub to: Health,
    pub reason: &'a str,
}

impl NodeHealthChanged<'_> {
    pub fn emit(self) {
        match self.to {
            Health::Up => {
                tracing::info!(node = self.node, from = %self.from, to = %self.to, reason = self.reason, "node health changed")
            }
            _ => {
                tracing::warn!(node = self.node, from = %self.from, to = %self.to, reason = self.reason, "node health changed")
            }
        }
    }
}

/// A node's Redis server restarted (its `run_id` changed); it may have lost data.
pub struct NodeRestarted<'a> {
    pub node: &'a str,
    pub old_run_id: &'a str,
    pub new_run_id: &'a str,
}

impl NodeRestarted<'_> {
    pub fn emit(self) {
        tracing::warn!(
            node = self.node,
            old_run_id = self.old_run_id,
            new_run_id = self.new_run_id,
            "node restarted"
        );
    }
}

/// An operation did not reach its quorum.
pub struct QuorumFailed<'a> {
    pub operation: &'a str,
    pub required: usize,
    pub succeeded: usize,
    pub failures: &'a str,
}

impl QuorumFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(
            operation = self.operation,
            required = self.required,
            succeeded = self.succeeded,
            failures = self.failures,
            "quorum not reached"
        );
    }
}

/// Read repair wrote the winning version to replicas that were behind.
pub struct ReadRepaired<'a> {
    pub nodes: &'a [String],
    pub failed: usize,
}

impl ReadRepaired<'_> {
    pub fn emit(self) {
        tracing::debug!(nodes = ?self.nodes, failed = self.failed, "read repair applied");
    }
}

/// The HTTP listener is serving.
pub struct HttpListening {
    pub addr: std::net::SocketAddr,
}

impl HttpListening {
    pub fn emit(self) {
        tracing::info!(addr = %self.addr, "http api listening");
    }
}

/// The Redis-protocol listener is serving.
pub struct RespListening {
    pub addr: std::net::SocketAddr,
}

impl RespListening {
    pub fn emit(self) {
        tracing::info!(addr = %self.addr, "resp listening");
    }
}

/// A RESP client sent a malformed request; it got the error and was disconnected.
pub struct RespProtocolError<'a> {
    pub peer: std::net::SocketAddr,
    pub error: &'a str,
}

impl RespProtocolError<'_> {
    pub fn emit(self) {
        tracing::debug!(peer = %self.peer, error = self.error, "resp protocol error");
    }
}

/// A RESP connection was refused because `resp.max_connections` were open.
pub struct RespConnectionRefused {
    pub peer: std::net::SocketAddr,
    pub limit: usize,
}

impl RespConnectionRefused {
    pub fn emit(self) {
        tracing::warn!(peer = %self.peer, limit = self.limit, "resp connection refused: limit reached");
    }
}

/// A RESP connection ended with an I/O error (usually the client going away mid-write).
pub struct RespConnectionFailed<'a> {
    pub peer: std::net::SocketAddr,
    pub error: &'a str,
}

impl RespConnectionFailed<'_> {
    pub fn emit(self) {
        tracing::debug!(peer = %self.peer, error = self.error, "resp connection failed");
    }
}

/// Accepting a RESP connection failed (e.g. out of file descriptors).
pub struct RespAcceptFailed<'a> {
    pub error: &'a str,
}

impl RespAcceptFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(error = self.error, "resp accept failed");
    }
}

/// The service began or finished a graceful shutdown.
pub struct ShutdownProgress {
    pub phase: &'static str,
    pub elapsed: Duration,
}

impl ShutdownProgress {
    pub fn emit(self) {
        tracing::info!(
            phase = self.phase,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "shutdown"
        );
    }
}

/// A request failed inside the service (not the client's fault).
pub struct RequestFailed<'a> {
    pub operation: &'a str,
    pub error: &'a str,
}

impl RequestFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(
            operation = self.operation,
            error = self.error,
            "request failed"
        );
    }
}

/// A write missed nodes; hints were left on the nodes that took it.
pub struct HintsRecorded {
    pub key_bytes: usize,
    pub missed: usize,
}

impl HintsRecorded {
    pub fn emit(self) {
        tracing::debug!(
            key_bytes = self.key_bytes,
            missed = self.missed,
            "hints recorded"
        );
    }
}

/// A sweep finished: one line with its summary.
pub struct SweepFinished<'a> {
    pub report: &'a crate::sync::SweepReport,
}

impl SweepFinished<'_> {
    pub fn emit(self) {
        let r = self.report;
        // One line per sweep, with the same fields at whichever level fits.
        macro_rules! line {
            ($level:ident, $msg:literal) => {
                tracing::$level!(
                    id = r.id,
                    mode = r.mode.as_str(),
                    dry_run = r.dry_run,
                    trigger = r.trigger,
                    elapsed_s = r.elapsed_s,
                    buckets_mismatched = r.buckets_mismatched,
                    keys_divergent = r.keys_divergent,
                    keys_repaired = r.keys_repaired(),
                    keys_deferred = r.keys_deferred,
                    keys_scanned = r.keys_scanned(),
                    keys_unversioned = r.keys_unversioned,
                    keys_adopted = r.keys_adopted,
                    tombstones_purged = r.tombstones_purged,
                    hints_replayed = r.hints_replayed,
                    errors = r.error_count,
                    first_error = r.errors.first().map(String::as_str).unwrap_or(""),
                    $msg
                )
            };
        }
        if r.error_count > 0 || (r.dry_run && r.divergence_left() > 0) {
            line!(warn, "sweep finished");
        } else if r.keys_divergent > 0
            || r.keys_unversioned > 0
            || r.hints_replayed > 0
            || r.mode == crate::sync::SweepMode::Full
        {
            line!(info, "sweep finished");
        } else {
            // An exchange that found nothing runs every few seconds: not worth an info line.
            line!(debug, "sweep finished, replicas agree");
        }
    }
}

/// A node was slow, so the sweep slowed down for it.
pub struct SweepBackedOff<'a> {
    pub node: &'a str,
    pub waited: std::time::Duration,
}

impl SweepBackedOff<'_> {
    pub fn emit(self) {
        tracing::debug!(
            node = self.node,
            waited_ms = self.waited.as_millis() as u64,
            "sweep backed off"
        );
    }
}

/// SIGHUP re-read the tokens file.
pub struct AuthTokensReloaded<'a> {
    pub file: &'a str,
    pub tokens: usize,
}

impl AuthTokensReloaded<'_> {
    pub fn emit(self) {
        tracing::info!(
            file = self.file,
            tokens = self.tokens,
            "auth tokens reloaded"
        );
    }
}

/// SIGHUP found a bad tokens file; the tokens in force stay.
pub struct AuthTokensReloadFailed<'a> {
    pub error: &'a str,
}

impl AuthTokensReloadFailed<'_> {
    pub fn emit(self) {
        tracing::error!(
            error = self.error,
            "auth tokens not reloaded; the previous tokens stay in force"
        );
    }
}

/// systemd was told something over the notify socket (or could not be).
pub struct ServiceManagerNotified<'a> {
    pub state: &'a str,
    pub error: Option<&'a str>,
}

impl ServiceManagerNotified<'_> {
    pub fn emit(self) {
        match self.error {
            None => tracing::debug!(state = self.state, "service manager notified"),
            Some(e) => tracing::warn!(
                state = self.state,
                error = e,
                "cannot notify the service manager"
            ),
        }
    }
}

/// A restarted node's lock fence counters were caught up (or the attempt failed and will be
/// retried); only after that does it count toward lock majorities again.
pub struct FenceCatchUp<'a> {
    pub node: &'a str,
    pub raised: u64,
    pub error: Option<&'a str>,
}

impl FenceCatchUp<'_> {
    pub fn emit(self) {
        match self.error {
            None => tracing::info!(
                node = self.node,
                raised = self.raised,
                "lock fences caught up on restarted node"
            ),
            Some(e) => tracing::warn!(
                node = self.node,
                error = e,
                "lock fence catch-up failed; retried at the next lock operation"
            ),
        }
    }
}
