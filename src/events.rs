//! Every log line about an operational event is emitted here, from a typed event, so that what
//! an operator sees stays consistent and is never scattered through the code. Call sites build
//! an event and call `emit()`, which writes the log line, records the event's Prometheus
//! metrics and, for what the dashboard shows, publishes it on the live feed: one place each.
//! Every metric name is described in `describe_metrics` below (see docs/OBSERVABILITY.md).

use crate::live::{BucketState, LiveEvent, LiveFeed};
use crate::pool::Health;
use std::time::Duration;

/// A node's health state changed.
pub struct NodeHealthChanged<'a> {
    pub id: usize,
    pub node: &'a str,
    pub from: Health,
    pub to: Health,
    pub reason: &'a str,
    pub live: &'a LiveFeed,
}

impl NodeHealthChanged<'_> {
    pub fn emit(self) {
        let reason = crate::config::mask_urls_in_text(self.reason);
        metrics::counter!(NODE_HEALTH_CHANGES, "node" => self.node.to_owned(), "to" => self.to.to_string())
            .increment(1);
        self.live.publish(LiveEvent::Node {
            node: self.id,
            address: self.node.to_owned(),
            from: self.from.to_string(),
            to: self.to.to_string(),
            reason: reason.clone(),
            at_ms: crate::hlc::wall_clock_ms(),
        });
        match self.to {
            Health::Up => {
                tracing::info!(node = self.node, from = %self.from, to = %self.to, reason, "node health changed")
            }
            _ => {
                tracing::warn!(node = self.node, from = %self.from, to = %self.to, reason, "node health changed")
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
        metrics::counter!(QUORUM_FAILURES, "operation" => self.operation.to_owned()).increment(1);
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
    pub live: &'a LiveFeed,
}

impl ReadRepaired<'_> {
    pub fn emit(self) {
        metrics::counter!(READ_REPAIRS).increment(1);
        for node in self.nodes {
            metrics::counter!(KEYS_REPAIRED, "node" => node.clone(), "source" => "read")
                .increment(1);
        }
        if !self.nodes.is_empty() {
            self.live.publish(LiveEvent::Repair {
                source: "read",
                keys: self.nodes.len() as u64,
                buckets: 1,
                at_ms: crate::hlc::wall_clock_ms(),
            });
        }
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
        metrics::counter!(HINTS_RECORDED).increment(self.missed as u64);
        tracing::debug!(
            key_bytes = self.key_bytes,
            missed = self.missed,
            "hints recorded"
        );
    }
}

/// A key-value write refused by the nodes holding a CRDT was removed from a node that took it.
pub struct RefusedWriteRetracted<'a> {
    pub node: &'a str,
    pub result: Result<(), String>,
}

impl RefusedWriteRetracted<'_> {
    pub fn emit(self) {
        match self.result {
            Ok(()) => tracing::debug!(node = self.node, "refused write retracted"),
            Err(e) => tracing::warn!(
                node = self.node,
                error = %e,
                "a write refused for a CRDT could not be retracted: the sweep will report the key"
            ),
        }
    }
}

/// Hints waiting on the other nodes for `node`, counted after an exchange's hint replay.
pub struct HintsPending<'a> {
    pub node: &'a str,
    pub pending: u64,
}

impl HintsPending<'_> {
    pub fn emit(self) {
        metrics::gauge!(HINTS_PENDING, "node" => self.node.to_owned()).set(self.pending as f64);
    }
}

/// A sweep finished: one line with its summary.
pub struct SweepFinished<'a> {
    pub report: &'a crate::sync::SweepReport,
    /// Node names (masked addresses), in the order of the report's per-node counters.
    pub nodes: &'a [String],
    pub live: &'a LiveFeed,
}

impl SweepFinished<'_> {
    pub fn emit(self) {
        let r = self.report;
        self.record_metrics();
        self.live.publish(LiveEvent::SweepFinished {
            report: serde_json::to_value(r).unwrap_or_default(),
        });
        // The dashboard lists errors; the first few say enough.
        for e in r.errors.iter().take(5) {
            self.live.publish(LiveEvent::Alert {
                message: format!("{} sweep #{}: {e}", r.mode.as_str(), r.id),
                at_ms: crate::hlc::wall_clock_ms(),
            });
        }
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
impl SweepFinished<'_> {
    fn record_metrics(&self) {
        let r = self.report;
        let mode = r.mode.as_str();
        let result = if r.error_count > 0 {
            "error"
        } else if r.dry_run {
            "dry_run"
        } else {
            "ok"
        };
        metrics::counter!(SWEEPS, "mode" => mode, "result" => result).increment(1);
        metrics::histogram!(SWEEP_DURATION, "mode" => mode).record(r.elapsed_s);
        metrics::counter!(SWEEP_BUCKETS_COMPARED, "mode" => mode).increment(r.buckets_compared);
        metrics::counter!(SWEEP_BUCKETS_MISMATCHED, "mode" => mode).increment(r.buckets_mismatched);
        metrics::counter!(SWEEP_KEYS_DIVERGENT, "mode" => mode).increment(r.keys_divergent);
        metrics::counter!(SWEEP_ERRORS, "mode" => mode).increment(r.error_count);
        metrics::counter!(HINTS_REPLAYED).increment(r.hints_replayed);
        for (i, node) in self.nodes.iter().enumerate() {
            let scanned = r.keys_scanned_per_node.get(i).copied().unwrap_or(0);
            let repaired = r.keys_repaired_per_node.get(i).copied().unwrap_or(0);
            metrics::counter!(SWEEP_KEYS_SCANNED, "node" => node.clone()).increment(scanned);
            metrics::counter!(KEYS_REPAIRED, "node" => node.clone(), "source" => mode)
                .increment(repaired);
        }
        metrics::gauge!(SWEEP_LAST_FINISHED, "mode" => mode)
            .set(r.finished_at_ms.unwrap_or(0) as f64 / 1000.0);
        record_sweep_state(r);
    }
}

/// Sweep phases, as the report names them; the phase gauge has one series per phase.
const SWEEP_PHASES: &[&str] = &[
    "starting",
    "reading digests",
    "comparing buckets",
    "scanning",
    "checking buckets",
    "done",
];

/// The gauges of a sweep's current state: running, phase, progress.
fn record_sweep_state(r: &crate::sync::SweepReport) {
    let mode = r.mode.as_str();
    metrics::gauge!(SWEEP_RUNNING, "mode" => mode).set(if r.running { 1.0 } else { 0.0 });
    metrics::gauge!(SWEEP_PROGRESS, "mode" => mode).set(r.progress_ratio);
    for phase in SWEEP_PHASES {
        let on = *phase == r.phase;
        metrics::gauge!(SWEEP_PHASE, "mode" => mode, "phase" => phase.replace(' ', "_"))
            .set(if on { 1.0 } else { 0.0 });
    }
}

/// A running sweep's progress, sampled at most a few times a second by the sweeper.
pub struct SweepProgressed<'a> {
    pub report: &'a crate::sync::SweepReport,
    pub live: &'a LiveFeed,
}

impl SweepProgressed<'_> {
    pub fn emit(self) {
        record_sweep_state(self.report);
        self.live.publish(LiveEvent::SweepProgress {
            report: serde_json::to_value(self.report).unwrap_or_default(),
        });
    }
}

/// The exchange found buckets in a new state (differing, being repaired, repaired). With
/// `reset`, it compared every bucket, so all the others are in sync.
pub struct BucketsChanged<'a> {
    pub state: BucketState,
    pub buckets: Vec<u32>,
    pub reset: bool,
    pub live: &'a LiveFeed,
}

impl BucketsChanged<'_> {
    pub fn emit(self) {
        tracing::debug!(
            state = self.state.as_str(),
            buckets = self.buckets.len(),
            reset = self.reset,
            "buckets changed state"
        );
        metrics::counter!(BUCKET_TRANSITIONS, "state" => self.state.as_str())
            .increment(self.buckets.len() as u64);
        self.live.publish(LiveEvent::Buckets {
            state: self.state,
            buckets: self.buckets,
            reset: self.reset,
        });
    }
}

/// An exchange batch wrote the winning versions of `keys` keys in `buckets` buckets.
pub struct RepairBatchApplied<'a> {
    pub keys: u64,
    pub buckets: u64,
    pub live: &'a LiveFeed,
}

impl RepairBatchApplied<'_> {
    pub fn emit(self) {
        tracing::debug!(
            keys = self.keys,
            buckets = self.buckets,
            "repair batch applied"
        );
        self.live.publish(LiveEvent::Repair {
            source: "exchange",
            keys: self.keys,
            buckets: self.buckets,
            at_ms: crate::hlc::wall_clock_ms(),
        });
    }
}

/// One request to one node failed (timeout, connection, error reply).
pub struct NodeRequestFailed<'a> {
    pub node: &'a str,
    pub error: &'a crate::pool::NodeError,
}

impl NodeRequestFailed<'_> {
    pub fn emit(self) {
        use crate::pool::NodeError;
        let kind = match self.error {
            NodeError::Unavailable(_) => "unavailable",
            NodeError::Timeout(_) => "timeout",
            NodeError::Connection(_) => "connection",
            NodeError::Server(_) => "server",
            NodeError::Protocol(_) => "protocol",
        };
        metrics::counter!(NODE_ERRORS, "node" => self.node.to_owned(), "kind" => kind).increment(1);
        tracing::debug!(node = self.node, kind, error = %self.error, "node request failed");
    }
}

/// Counter handles of one node's batched calls of one kind (`read` or `write`), registered
/// once when the store starts: a call then counts without a registry lookup or label
/// allocation, which matters on the per-request path.
pub struct NodeBatchCounters {
    calls: metrics::Counter,
    entries: metrics::Counter,
}

impl NodeBatchCounters {
    pub fn register(node: &str, kind: &'static str) -> NodeBatchCounters {
        NodeBatchCounters {
            calls: metrics::counter!(NODE_BATCHES, "node" => node.to_owned(), "kind" => kind),
            entries: metrics::counter!(NODE_BATCH_ENTRIES, "node" => node.to_owned(), "kind" => kind),
        }
    }
}

/// One script call carrying `entries` client operations went to a node.
pub struct NodeBatchSent<'a> {
    pub counters: &'a NodeBatchCounters,
    pub entries: usize,
}

impl NodeBatchSent<'_> {
    pub fn emit(self) {
        self.counters.calls.increment(1);
        self.counters.entries.increment(self.entries as u64);
    }
}

/// The nodes' current state, observed when metrics are scraped (gauges only, no log line).
pub struct NodesObserved<'a> {
    pub nodes: &'a [crate::pool::NodeStatus],
}

impl NodesObserved<'_> {
    pub fn emit(self) {
        const STATES: [Health; 4] = [
            Health::Up,
            Health::Suspect,
            Health::Down,
            Health::Recovering,
        ];
        for n in self.nodes {
            let node = n.address.clone();
            let up = matches!(n.health, Health::Up | Health::Suspect | Health::Recovering);
            metrics::gauge!(NODE_UP, "node" => node.clone()).set(if up { 1.0 } else { 0.0 });
            for s in STATES {
                metrics::gauge!(NODE_HEALTH, "node" => node.clone(), "state" => s.to_string())
                    .set(if s == n.health { 1.0 } else { 0.0 });
            }
            if let Some(ms) = n.latency_ms {
                metrics::gauge!(NODE_LATENCY, "node" => node).set(ms / 1000.0);
            }
        }
    }
}

/// An HTTP request was answered.
pub struct HttpRequestServed<'a> {
    pub method: &'a str,
    /// The matched route pattern (e.g. `/v1/kv/{*key}`), never the raw path.
    pub route: &'a str,
    pub consistency: &'a str,
    pub status: u16,
    pub elapsed: Duration,
}

impl HttpRequestServed<'_> {
    pub fn emit(self) {
        let result = match self.status {
            200..=399 => "ok",
            404 => "not_found",
            412 => "precondition_failed",
            400..=499 => "client_error",
            503 => "unavailable",
            _ => "error",
        };
        let labels = [
            ("method", self.method.to_owned()),
            ("route", self.route.to_owned()),
            ("consistency", self.consistency.to_owned()),
        ];
        let mut with_result = labels.to_vec();
        with_result.push(("result", result.to_owned()));
        metrics::counter!(HTTP_REQUESTS, &with_result).increment(1);
        metrics::histogram!(HTTP_DURATION, &with_result).record(self.elapsed.as_secs_f64());
        tracing::debug!(
            method = self.method,
            route = self.route,
            status = self.status,
            elapsed_ms = self.elapsed.as_secs_f64() * 1000.0,
            "request served"
        );
    }
}

/// `quorumd demo` tampered with a node on purpose, so the healing can be watched.
pub struct DemoTampered<'a> {
    pub action: &'a str,
    pub node: &'a str,
    pub keys: u64,
}

impl DemoTampered<'_> {
    pub fn emit(self) {
        tracing::warn!(
            action = self.action,
            node = self.node,
            keys = self.keys,
            "demo: node tampered with"
        );
    }
}

// Metric names: `quorumd_<thing>_<unit>`, counters end in `_total`, base units.

/// A lock acquisition through the lock API finished.
pub struct LockAcquired {
    /// `granted`, `held` (wait ran out), `no_quorum` or `invalid`.
    pub result: &'static str,
    pub elapsed: Duration,
}

impl LockAcquired {
    pub fn emit(self) {
        metrics::counter!(LOCK_ACQUISITIONS, "result" => self.result).increment(1);
        metrics::histogram!(LOCK_ACQUIRE_DURATION, "result" => self.result)
            .record(self.elapsed.as_secs_f64());
        tracing::debug!(result = self.result, elapsed = ?self.elapsed, "lock acquisition");
    }
}

/// A lock extension or release through the lock API finished.
pub struct LockChanged {
    /// `extend` or `release`.
    pub operation: &'static str,
    /// `ok`, `not_holder`, `no_quorum` or `invalid`.
    pub result: &'static str,
}

impl LockChanged {
    pub fn emit(self) {
        let counter = match self.operation {
            "extend" => LOCK_EXTENSIONS,
            _ => LOCK_RELEASES,
        };
        metrics::counter!(counter, "result" => self.result).increment(1);
        tracing::debug!(
            operation = self.operation,
            result = self.result,
            "lock changed"
        );
    }
}

/// A queue operation finished, or an item moved on its own (`dead_letter`, `redelivery`).
pub struct QueueOperated {
    /// `put`, `claim`, `ack`, `nack`, `extend`, `dead_letter` or `redelivery`.
    pub operation: &'static str,
    /// `ok`, `empty` (a claim that found nothing), `stale_lease`, `too_large`, `invalid` or
    /// `no_quorum`.
    pub result: &'static str,
}

impl QueueOperated {
    pub fn emit(self) {
        metrics::counter!(QUEUE_OPERATIONS, "operation" => self.operation, "result" => self.result)
            .increment(1);
        tracing::debug!(
            operation = self.operation,
            result = self.result,
            "queue operation"
        );
    }
}

/// A queue's depths were computed (a depth read): sets the depth gauges of that queue.
pub struct QueueDepthsObserved<'a> {
    pub queue: &'a str,
    pub depths: [(&'static str, u64); 4],
}

impl QueueDepthsObserved<'_> {
    pub fn emit(self) {
        for (state, n) in self.depths {
            metrics::gauge!(QUEUE_ITEMS, "queue" => self.queue.to_owned(), "state" => state)
                .set(n as f64);
        }
    }
}

/// A CRDT state was merged into a node and changed what it held.
pub struct CrdtMerged {
    /// `counter`, `set` or `map`.
    pub kind: &'static str,
    /// `write`, `read_repair` or `sweep`.
    pub source: &'static str,
    pub nodes: u64,
}

impl CrdtMerged {
    pub fn emit(self) {
        if self.nodes == 0 {
            return;
        }
        metrics::counter!(CRDT_MERGES, "type" => self.kind, "source" => self.source)
            .increment(self.nodes);
        tracing::trace!(
            kind = self.kind,
            source = self.source,
            nodes = self.nodes,
            "crdt merged"
        );
    }
}

/// A CRDT update (counter add, set add/remove, map set/incr) finished.
pub struct CrdtUpdated {
    pub kind: &'static str,
    /// `ok`, `invalid`, `wrong_type`, `no_quorum`, `timeout` or `error`.
    pub result: &'static str,
}

impl CrdtUpdated {
    pub fn emit(self) {
        metrics::counter!(CRDT_UPDATES, "type" => self.kind, "result" => self.result).increment(1);
        tracing::debug!(kind = self.kind, result = self.result, "crdt update");
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

const HTTP_REQUESTS: &str = "quorumd_http_requests_total";
const HTTP_DURATION: &str = "quorumd_http_request_duration_seconds";
const NODE_UP: &str = "quorumd_node_up";
const NODE_HEALTH: &str = "quorumd_node_health";
const NODE_LATENCY: &str = "quorumd_node_latency_seconds";
const NODE_ERRORS: &str = "quorumd_node_errors_total";
const NODE_HEALTH_CHANGES: &str = "quorumd_node_health_changes_total";
const NODE_BATCHES: &str = "quorumd_node_batches_total";
const NODE_BATCH_ENTRIES: &str = "quorumd_node_batch_entries_total";
const QUORUM_FAILURES: &str = "quorumd_quorum_failures_total";
const READ_REPAIRS: &str = "quorumd_read_repairs_total";
const KEYS_REPAIRED: &str = "quorumd_keys_repaired_total";
const HINTS_RECORDED: &str = "quorumd_hints_recorded_total";
const HINTS_REPLAYED: &str = "quorumd_hints_replayed_total";
const HINTS_PENDING: &str = "quorumd_hints_pending";
const SWEEPS: &str = "quorumd_sweeps_total";
const SWEEP_DURATION: &str = "quorumd_sweep_duration_seconds";
const SWEEP_BUCKETS_COMPARED: &str = "quorumd_sweep_buckets_compared_total";
const SWEEP_BUCKETS_MISMATCHED: &str = "quorumd_sweep_buckets_mismatched_total";
const SWEEP_KEYS_DIVERGENT: &str = "quorumd_sweep_keys_divergent_total";
const SWEEP_KEYS_SCANNED: &str = "quorumd_sweep_keys_scanned_total";
const SWEEP_ERRORS: &str = "quorumd_sweep_errors_total";
const SWEEP_RUNNING: &str = "quorumd_sweep_running";
const SWEEP_PHASE: &str = "quorumd_sweep_phase";
const SWEEP_PROGRESS: &str = "quorumd_sweep_progress_ratio";
const SWEEP_LAST_FINISHED: &str = "quorumd_sweep_last_finished_timestamp_seconds";
const BUCKET_TRANSITIONS: &str = "quorumd_bucket_state_changes_total";

const LOCK_ACQUISITIONS: &str = "quorumd_lock_acquisitions_total";
pub(crate) const LOCK_ACQUIRE_DURATION: &str = "quorumd_lock_acquire_duration_seconds";
const LOCK_EXTENSIONS: &str = "quorumd_lock_extensions_total";
const LOCK_RELEASES: &str = "quorumd_lock_releases_total";
const QUEUE_OPERATIONS: &str = "quorumd_queue_operations_total";
const QUEUE_ITEMS: &str = "quorumd_queue_items";
const CRDT_MERGES: &str = "quorumd_crdt_merges_total";
const CRDT_UPDATES: &str = "quorumd_crdt_updates_total";
const RESP_COMMANDS: &str = "quorumd_resp_commands_total";
const RESP_CONNECTIONS: &str = "quorumd_resp_connections";
const RESP_REFUSED: &str = "quorumd_resp_connections_refused_total";

/// Gives every metric its help text and unit (called once, when the recorder is installed).
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route, consistency and result."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request."
    );
    describe_gauge!(
        NODE_UP,
        "1 when the node answers (up, suspect or recovering), 0 when down."
    );
    describe_gauge!(
        NODE_HEALTH,
        "1 for the node's current health state, 0 for the others."
    );
    describe_gauge!(
        NODE_LATENCY,
        Unit::Seconds,
        "Smoothed round-trip time to the node."
    );
    describe_counter!(NODE_ERRORS, "Requests to a node that failed, by kind.");
    describe_counter!(
        NODE_BATCHES,
        "Script calls to a node carrying client reads or writes, by kind (read, write)."
    );
    describe_counter!(
        NODE_BATCH_ENTRIES,
        "Client reads or writes carried by those calls; divided by the calls, the mean batch size."
    );
    describe_counter!(
        NODE_HEALTH_CHANGES,
        "Health state changes of a node, by new state."
    );
    describe_counter!(
        QUORUM_FAILURES,
        "Operations that did not reach their quorum."
    );
    describe_counter!(
        READ_REPAIRS,
        "Reads that wrote the newest version back to stale nodes."
    );
    describe_counter!(
        KEYS_REPAIRED,
        "Keys written to a stale node, by node and source (read, exchange, full)."
    );
    describe_counter!(
        HINTS_RECORDED,
        "Hints recorded for nodes that missed a write."
    );
    describe_counter!(
        HINTS_REPLAYED,
        "Hinted keys replayed and dropped by exchanges."
    );
    describe_gauge!(
        HINTS_PENDING,
        "Hinted keys waiting on the other nodes for this node, counted after each exchange."
    );
    describe_counter!(
        SWEEPS,
        "Sweeps finished, by mode and result (ok, dry_run, error)."
    );
    describe_histogram!(SWEEP_DURATION, Unit::Seconds, "Duration of a sweep.");
    describe_counter!(SWEEP_BUCKETS_COMPARED, "Buckets compared by sweeps.");
    describe_counter!(
        SWEEP_BUCKETS_MISMATCHED,
        "Buckets whose digests differed between nodes."
    );
    describe_counter!(
        SWEEP_KEYS_DIVERGENT,
        "Keys found with differing versions between nodes."
    );
    describe_counter!(
        SWEEP_KEYS_SCANNED,
        "Keys returned by SCAN in full sweeps, per node."
    );
    describe_counter!(SWEEP_ERRORS, "Errors met by sweeps.");
    describe_gauge!(SWEEP_RUNNING, "1 while a sweep of this mode runs.");
    describe_gauge!(
        SWEEP_PHASE,
        "1 for the current (or last) phase of the sweep of this mode."
    );
    describe_gauge!(
        SWEEP_PROGRESS,
        "Progress of the current (or last) sweep of this mode, 0 to 1."
    );
    describe_gauge!(
        SWEEP_LAST_FINISHED,
        Unit::Seconds,
        "When the last sweep of this mode finished, seconds since the epoch."
    );
    describe_counter!(
        BUCKET_TRANSITIONS,
        "Buckets that changed state on the dashboard grid, by new state."
    );
    describe_counter!(
        LOCK_ACQUISITIONS,
        "Lock acquisitions, by result (granted, held, no_quorum, invalid)."
    );
    describe_histogram!(
        LOCK_ACQUIRE_DURATION,
        Unit::Seconds,
        "Time to acquire a lock or give up, waiting included."
    );
    describe_counter!(
        LOCK_EXTENSIONS,
        "Lock extensions, by result (ok, not_holder, no_quorum, invalid)."
    );
    describe_counter!(
        LOCK_RELEASES,
        "Lock releases, by result (ok, not_holder, no_quorum, invalid)."
    );
    describe_counter!(
        QUEUE_OPERATIONS,
        "Queue operations and item moves (dead_letter, redelivery), by result."
    );
    describe_gauge!(
        QUEUE_ITEMS,
        "Items of a queue by state, as of the last depth read of that queue."
    );
    describe_counter!(
        CRDT_MERGES,
        "CRDT merges that changed a node's state, by type and source (write, read_repair, sweep)."
    );
    describe_counter!(CRDT_UPDATES, "CRDT updates, by type and result.");
    describe_counter!(
        RESP_COMMANDS,
        "RESP commands answered, by command and result (ok, error, rejected)."
    );
    describe_gauge!(RESP_CONNECTIONS, "Open RESP client connections.");
    describe_counter!(
        RESP_REFUSED,
        "RESP connections refused because resp.max_connections were open."
    );
}
