//! Events of the Redis-protocol front end: listening, connections, commands, protocol errors.

use quorumd_core::metric_names::*;

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
        metrics::counter!(RESP_REFUSED).increment(1);
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

/// A RESP command was answered. `command` is a supported command's name or `other`.
pub struct RespCommandServed {
    pub command: &'static str,
    /// `ok`, `error` (ran, answered an error) or `rejected` (unknown, wrong arity, not
    /// authenticated, bad arguments).
    pub result: &'static str,
}

/// The result labels of `RespCommandServed`.
pub const RESP_RESULTS: [&str; 3] = ["ok", "error", "rejected"];

/// Counter handles of every (command, result) pair, registered once: counting a command is
/// then a map lookup, with no registry lookup or label allocation per command.
static RESP_COMMAND_COUNTERS: std::sync::OnceLock<
    std::collections::HashMap<(&'static str, &'static str), metrics::Counter>,
> = std::sync::OnceLock::new();

/// Registers the RESP command counters for these command names (called when a RESP server
/// starts, after the recorder is installed).
pub fn register_resp_commands(names: impl Iterator<Item = &'static str>) {
    RESP_COMMAND_COUNTERS.get_or_init(|| {
        names
            .flat_map(|c| RESP_RESULTS.map(|r| (c, r)))
            .map(|(c, r)| {
                let counter = metrics::counter!(RESP_COMMANDS, "command" => c, "result" => r);
                ((c, r), counter)
            })
            .collect()
    });
}

impl RespCommandServed {
    pub fn emit(self) {
        let key = (self.command, self.result);
        match RESP_COMMAND_COUNTERS.get().and_then(|m| m.get(&key)) {
            Some(counter) => counter.increment(1),
            None => {
                metrics::counter!(RESP_COMMANDS, "command" => key.0, "result" => key.1).increment(1)
            }
        }
    }
}

/// A RESP connection opened (`delta` 1) or closed (-1).
pub struct RespConnectionCounted {
    pub delta: f64,
}

impl RespConnectionCounted {
    pub fn emit(self) {
        metrics::gauge!(RESP_CONNECTIONS).increment(self.delta);
    }
}

/// A subscriber fell too far behind the messages and was disconnected.
pub struct RespSubscriberDropped {
    pub peer: std::net::SocketAddr,
    pub missed: u64,
}

impl RespSubscriberDropped {
    pub fn emit(self) {
        metrics::counter!(quorumd_core::metric_names::PUBSUB_SUBSCRIBERS_DROPPED).increment(1);
        tracing::warn!(
            peer = %self.peer,
            missed = self.missed,
            "RESP subscriber fell behind the messages and was disconnected"
        );
    }
}
