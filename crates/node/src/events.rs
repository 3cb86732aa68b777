//! The node layer's typed events: health changes, restarts, failed node calls, batch counts.
//! Each event writes its log line, records its metrics and, where the dashboard shows it,
//! publishes it on the live feed, in one place (metric names: `quorumd_core::metric_names`).

use crate::live::{LiveEvent, LiveFeed};
use crate::pool::Health;
use quorumd_core::metric_names::*;

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
        let reason = quorumd_core::redact::mask_urls_in_text(self.reason);
        metrics::counter!(NODE_HEALTH_CHANGES, "node" => self.node.to_owned(), "to" => self.to.to_string())
            .increment(1);
        self.live.publish(LiveEvent::Node {
            node: self.id,
            address: self.node.to_owned(),
            from: self.from.to_string(),
            to: self.to.to_string(),
            reason: reason.clone(),
            at_ms: quorumd_core::hlc::wall_clock_ms(),
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

/// A shard (one master and its slots) of a cluster replica stopped or started answering.
pub struct ShardChanged<'a> {
    pub node: &'a str,
    pub master: &'a str,
    pub up: bool,
    pub reason: &'a str,
}

impl ShardChanged<'_> {
    pub fn emit(self) {
        let reason = quorumd_core::redact::mask_urls_in_text(self.reason);
        metrics::counter!(NODE_SHARD_CHANGES, "node" => self.node.to_owned(), "to" => if self.up { "up" } else { "down" })
            .increment(1);
        if self.up {
            tracing::info!(node = self.node, master = self.master, reason, "shard up");
        } else {
            tracing::warn!(
                node = self.node,
                master = self.master,
                reason,
                "shard down: its slots are unavailable on this replica"
            );
        }
    }
}

/// A request to one master of a cluster replica failed (its connection, or the node timeout):
/// that shard's slots wait for the next probe, which runs at once; the replica's others are
/// served.
pub struct ShardSuspect<'a> {
    pub node: &'a str,
    pub master: &'a str,
    pub reason: &'a str,
}

impl ShardSuspect<'_> {
    pub fn emit(self) {
        let reason = quorumd_core::redact::mask_urls_in_text(self.reason);
        metrics::counter!(NODE_SHARD_CHANGES, "node" => self.node.to_owned(), "to" => "suspect")
            .increment(1);
        tracing::warn!(
            node = self.node,
            master = self.master,
            reason,
            "shard suspect: its slots wait for the next probe"
        );
    }
}

/// The masters each replica's per-shard gauges were last set for: a master no longer in the
/// slot map has its gauges set to NaN once, which retires them (the exporter cannot drop one
/// series, so `/metrics` leaves NaN gauges out).
static SHARD_SERIES: std::sync::Mutex<
    std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
> = std::sync::Mutex::new(std::collections::BTreeMap::new());

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

/// One request to one node failed (timeout, connection, error reply).
pub struct NodeRequestFailed<'a> {
    pub node: &'a str,
    pub error: &'a crate::pool::NodeError,
}

impl NodeRequestFailed<'_> {
    pub fn emit(self) {
        let kind = self.error.kind_label();
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
        const STATES: [Health; 5] = [
            Health::Unknown,
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
            let down = n.shards.iter().filter(|s| !s.up).count();
            metrics::gauge!(NODE_SHARDS, "node" => node.clone(), "state" => "up")
                .set((n.shards.len() - down) as f64);
            metrics::gauge!(NODE_SHARDS, "node" => node.clone(), "state" => "down")
                .set(down as f64);
            if let Some(ms) = n.latency_ms {
                metrics::gauge!(NODE_LATENCY, "node" => node.clone()).set(ms / 1000.0);
            }
            shard_gauges(&node, &n.shards);
        }
    }
}

/// `quorumd_shard_up` and `quorumd_shard_latency_seconds` of each master of one replica, and
/// NaN (retired, left out of `/metrics`) for the masters reported before that are no longer in
/// its slot map.
fn shard_gauges(node: &str, shards: &[crate::pool::ShardStatus]) {
    let series = |master: &str| {
        vec![
            metrics::Label::new("node", node.to_owned()),
            metrics::Label::new("master", master.to_owned()),
        ]
    };
    let mut reported = SHARD_SERIES.lock().unwrap_or_else(|p| p.into_inner());
    let known = reported.entry(node.to_owned()).or_default();
    // No table: the replica is down as a whole (or reconnecting), so are its masters.
    if shards.is_empty() {
        for master in known.iter() {
            metrics::gauge!(SHARD_UP, series(master)).set(0.0);
        }
        return;
    }
    for gone in known
        .iter()
        .filter(|m| !shards.iter().any(|s| &s.master == *m))
    {
        metrics::gauge!(SHARD_UP, series(gone)).set(f64::NAN);
        metrics::gauge!(SHARD_LATENCY, series(gone)).set(f64::NAN);
    }
    known.clear();
    for s in shards {
        let up = s.up && !s.suspect;
        metrics::gauge!(SHARD_UP, series(&s.master)).set(if up { 1.0 } else { 0.0 });
        if let Some(ms) = s.latency_ms {
            metrics::gauge!(SHARD_LATENCY, series(&s.master)).set(ms / 1000.0);
        }
        known.insert(s.master.clone());
    }
}

/// A background worker's pass failed (`fatal`: it panicked, and the worker ended).
pub struct WorkerFailed<'a> {
    pub worker: &'a str,
    /// Already masked by the caller.
    pub error: &'a str,
    pub fatal: bool,
}

impl WorkerFailed<'_> {
    pub fn emit(self) {
        metrics::counter!(WORKER_FAILURES, "worker" => self.worker.to_owned()).increment(1);
        if self.fatal {
            tracing::error!(
                worker = self.worker,
                error = self.error,
                "background worker ended"
            );
        } else {
            tracing::warn!(
                worker = self.worker,
                error = self.error,
                "background worker pass failed"
            );
        }
    }
}

/// The service is starting: every series of the node layer whose labels are known in advance
/// is registered at zero, so that a rate or an alert on it reads 0, not "no data", until the
/// first event. Registering changes no value: a series the pool already moved keeps its count.
pub struct NodeMetricsRegistered<'a> {
    pub nodes: &'a [std::sync::Arc<crate::pool::Node>],
}

impl NodeMetricsRegistered<'_> {
    pub fn emit(self) {
        use quorumd_core::metric_labels as labels;
        for n in self.nodes {
            let node = || n.display.clone();
            for kind in labels::NODE_ERROR_KINDS {
                metrics::counter!(NODE_ERRORS, "node" => node(), "kind" => *kind).increment(0);
            }
            for to in labels::NODE_HEALTH_STATES {
                metrics::counter!(NODE_HEALTH_CHANGES, "node" => node(), "to" => *to).increment(0);
            }
            for state in ["up", "down"] {
                metrics::counter!(NODE_SHARD_CHANGES, "node" => node(), "to" => state).increment(0);
                metrics::gauge!(NODE_SHARDS, "node" => node(), "state" => state).increment(0.0);
            }
            metrics::counter!(NODE_SHARD_CHANGES, "node" => node(), "to" => "suspect").increment(0);
            for kind in labels::BATCH_KINDS {
                metrics::counter!(NODE_BATCHES, "node" => node(), "kind" => *kind).increment(0);
                metrics::counter!(NODE_BATCH_ENTRIES, "node" => node(), "kind" => *kind)
                    .increment(0);
            }
            metrics::counter!(WORKER_FAILURES, "worker" => labels::probe_worker(&n.identity))
                .increment(0);
            metrics::gauge!(NOTIFICATIONS_ENABLED, "node" => node()).increment(0.0);
            for (kind, path, action) in labels::direct_change_labels() {
                metrics::counter!(DIRECT_CHANGES, "node" => node(), "kind" => kind, "path" => path, "action" => action).increment(0);
            }
        }
        tracing::debug!(nodes = self.nodes.len(), "node metrics registered");
    }
}

#[cfg(test)]
mod tests {
    use crate::live::BucketState;
    use crate::pool::{Health, NodeError, ServerError};
    use quorumd_core::metric_labels as labels;

    /// The lists registered at zero are the labels the events record.
    #[test]
    fn registered_labels_are_the_recorded_ones() {
        let states = [
            Health::Up,
            Health::Suspect,
            Health::Down,
            Health::Recovering,
        ];
        assert_eq!(
            states.map(|s| s.to_string()).to_vec(),
            labels::NODE_HEALTH_STATES
        );
        let counted = [
            NodeError::Timeout(1),
            NodeError::Connection("reset".into()),
            NodeError::Server(ServerError::from_reply_text("ERR no")),
            NodeError::Protocol("odd".into()),
        ];
        assert_eq!(
            counted.map(|e| e.kind_label()).to_vec(),
            labels::NODE_ERROR_KINDS
        );
        let buckets = [
            BucketState::InSync,
            BucketState::Differing,
            BucketState::Repairing,
            BucketState::Repaired,
        ];
        assert_eq!(buckets.map(|b| b.as_str()).to_vec(), labels::BUCKET_STATES);
    }
}
