//! Every metric name quorumd exports, in one leaf module, with its help text and unit.
//! Names follow `quorumd_<thing>_<unit>`; counters end in `_total`; units are base units
//! (seconds, ratios). Only the typed events modules of each layer record them.

pub const HTTP_REQUESTS: &str = "quorumd_http_requests_total";
pub const HTTP_DURATION: &str = "quorumd_http_request_duration_seconds";
pub const NODE_UP: &str = "quorumd_node_up";
pub const NODE_HEALTH: &str = "quorumd_node_health";
pub const NODE_LATENCY: &str = "quorumd_node_latency_seconds";
pub const NODE_ERRORS: &str = "quorumd_node_errors_total";
pub const NODE_HEALTH_CHANGES: &str = "quorumd_node_health_changes_total";
pub const NODE_SHARDS: &str = "quorumd_node_shards";
pub const NODE_SHARD_CHANGES: &str = "quorumd_node_shard_changes_total";
pub const SHARD_UP: &str = "quorumd_shard_up";
pub const SHARD_LATENCY: &str = "quorumd_shard_latency_seconds";
pub const NODE_BATCHES: &str = "quorumd_node_batches_total";
pub const NODE_BATCH_ENTRIES: &str = "quorumd_node_batch_entries_total";
pub const QUORUM_FAILURES: &str = "quorumd_quorum_failures_total";
pub const READ_REPAIRS: &str = "quorumd_read_repairs_total";
pub const KEYS_REPAIRED: &str = "quorumd_keys_repaired_total";
pub const HINTS_RECORDED: &str = "quorumd_hints_recorded_total";
pub const HINTS_REPLAYED: &str = "quorumd_hints_replayed_total";
pub const HINTS_PENDING: &str = "quorumd_hints_pending";
pub const HINTS_DROPPED: &str = "quorumd_hints_dropped_total";
pub const SWEEPS: &str = "quorumd_sweeps_total";
pub const SWEEP_DURATION: &str = "quorumd_sweep_duration_seconds";
pub const SWEEP_BUCKETS_COMPARED: &str = "quorumd_sweep_buckets_compared_total";
pub const SWEEP_BUCKETS_MISMATCHED: &str = "quorumd_sweep_buckets_mismatched_total";
pub const SWEEP_KEYS_DIVERGENT: &str = "quorumd_sweep_keys_divergent_total";
pub const SWEEP_KEYS_SCANNED: &str = "quorumd_sweep_keys_scanned_total";
pub const SWEEP_ERRORS: &str = "quorumd_sweep_errors_total";
pub const SWEEP_RUNNING: &str = "quorumd_sweep_running";
pub const SWEEP_PHASE: &str = "quorumd_sweep_phase";
pub const SWEEP_PROGRESS: &str = "quorumd_sweep_progress_ratio";
pub const SWEEP_LAST_FINISHED: &str = "quorumd_sweep_last_finished_timestamp_seconds";
pub const BUCKET_TRANSITIONS: &str = "quorumd_bucket_state_changes_total";
pub const WORKER_FAILURES: &str = "quorumd_worker_failures_total";
pub const DIRECT_CHANGES: &str = "quorumd_direct_changes_total";
pub const SHARDS_HELD: &str = "quorumd_sweep_shards_held";
pub const SHARDS: &str = "quorumd_sweep_shards";
pub const NOTIFICATIONS_ENABLED: &str = "quorumd_node_notifications_enabled";
pub const LIVE_KEY_EVENTS: &str = "quorumd_live_key_events_total";

pub const LOCK_ACQUISITIONS: &str = "quorumd_lock_acquisitions_total";
pub const LOCK_ACQUIRE_DURATION: &str = "quorumd_lock_acquire_duration_seconds";
pub const LOCK_EXTENSIONS: &str = "quorumd_lock_extensions_total";
pub const LOCK_RELEASES: &str = "quorumd_lock_releases_total";
pub const QUEUE_OPERATIONS: &str = "quorumd_queue_operations_total";
pub const QUEUE_ITEMS: &str = "quorumd_queue_items";
pub const QUEUE_ITEMS_RESTORED: &str = "quorumd_queue_items_restored_total";
pub const CRDT_MERGES: &str = "quorumd_crdt_merges_total";
pub const CRDT_UPDATES: &str = "quorumd_crdt_updates_total";
pub const RESP_COMMANDS: &str = "quorumd_resp_commands_total";
pub const RESP_CONNECTIONS: &str = "quorumd_resp_connections";
pub const RESP_REFUSED: &str = "quorumd_resp_connections_refused_total";
pub const PUBSUB_PUBLISHED: &str = "quorumd_pubsub_published_total";
pub const PUBSUB_RECEIVED: &str = "quorumd_pubsub_received_total";
pub const PUBSUB_SUBSCRIPTIONS: &str = "quorumd_pubsub_node_subscriptions";
pub const PUBSUB_SUBSCRIBERS_DROPPED: &str = "quorumd_pubsub_subscribers_dropped_total";

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: its name, kind, unit and help text.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// Measured in seconds (durations, timestamps); otherwise a plain number.
    pub seconds: bool,
    pub help: &'static str,
}

/// Every metric quorumd exports.
pub const ALL: &[Metric] = &[
    Metric {
        name: SHARDS_HELD,
        kind: Kind::Gauge,
        seconds: false,
        help: "Shards whose lease this instance holds, after its last lease round (at each background exchange; 0 after shutdown). Summed over the instances of a job, the shards someone holds.",
    },
    Metric {
        name: SHARDS,
        kind: Kind::Gauge,
        seconds: false,
        help: "Shards the buckets are grouped in for background exchanges (sync.shards).",
    },
    Metric {
        name: DIRECT_CHANGES,
        kind: Kind::Counter,
        seconds: false,
        help: "Changes made on a node outside quorumd, by node, kind (changed, deleted, ttl, type, unversioned, state), path (live, scrub, read) and action (adopted, restored, reported, superseded, failed).",
    },
    Metric {
        name: NOTIFICATIONS_ENABLED,
        kind: Kind::Gauge,
        seconds: false,
        help: "1 while the node's keyspace notifications reach quorumd (live detection of direct changes), 0 when the node refused them or the subscription is down.",
    },
    Metric {
        name: LIVE_KEY_EVENTS,
        kind: Kind::Counter,
        seconds: false,
        help: "Key events on user keys heard by the live detection, by node and origin: own (announced by the quorumd script that wrote them, not verified) or unmarked (verified on the node as a suspect).",
    },
    Metric {
        name: HTTP_REQUESTS,
        kind: Kind::Counter,
        seconds: false,
        help: "HTTP requests answered, by method, route, consistency and result.",
    },
    Metric {
        name: HTTP_DURATION,
        kind: Kind::Histogram,
        seconds: true,
        help: "Time to answer an HTTP request.",
    },
    Metric {
        name: NODE_UP,
        kind: Kind::Gauge,
        seconds: false,
        help: "1 when the node answers (up, suspect or recovering), 0 when down.",
    },
    Metric {
        name: NODE_HEALTH,
        kind: Kind::Gauge,
        seconds: false,
        help: "1 for the node's current health state, 0 for the others.",
    },
    Metric {
        name: NODE_SHARDS,
        kind: Kind::Gauge,
        seconds: false,
        help: "A Redis Cluster replica's masters (shards) by state, up or down (0 for a standalone server).",
    },
    Metric {
        name: NODE_SHARD_CHANGES,
        kind: Kind::Counter,
        seconds: false,
        help: "Shards of a Redis Cluster replica that stopped (to=down) or started (to=up) answering, or that a failed request made suspect (to=suspect).",
    },
    Metric {
        name: SHARD_UP,
        kind: Kind::Gauge,
        seconds: false,
        help: "Per master of a Redis Cluster replica: 1 while its slots are served, 0 while down or suspect, NaN once it left the replica's slot map.",
    },
    Metric {
        name: SHARD_LATENCY,
        kind: Kind::Gauge,
        seconds: true,
        help: "Per master of a Redis Cluster replica: smoothed round-trip time of its probes and of the client requests that went to it alone (NaN once it left the slot map).",
    },
    Metric {
        name: NODE_LATENCY,
        kind: Kind::Gauge,
        seconds: true,
        help: "Smoothed round-trip time to the node.",
    },
    Metric {
        name: NODE_ERRORS,
        kind: Kind::Counter,
        seconds: false,
        help: "Requests to a node that failed, by kind.",
    },
    Metric {
        name: NODE_BATCHES,
        kind: Kind::Counter,
        seconds: false,
        help: "Script calls to a node carrying client reads or writes, by kind (read, write).",
    },
    Metric {
        name: NODE_BATCH_ENTRIES,
        kind: Kind::Counter,
        seconds: false,
        help: "Client reads or writes carried by those calls; divided by the calls, the mean batch size.",
    },
    Metric {
        name: NODE_HEALTH_CHANGES,
        kind: Kind::Counter,
        seconds: false,
        help: "Health state changes of a node, by new state.",
    },
    Metric {
        name: QUORUM_FAILURES,
        kind: Kind::Counter,
        seconds: false,
        help: "Operations that did not reach their quorum.",
    },
    Metric {
        name: READ_REPAIRS,
        kind: Kind::Counter,
        seconds: false,
        help: "Reads that wrote the newest version back to stale nodes.",
    },
    Metric {
        name: KEYS_REPAIRED,
        kind: Kind::Counter,
        seconds: false,
        help: "Keys written to a stale node, by node and source (read, exchange, full).",
    },
    Metric {
        name: HINTS_RECORDED,
        kind: Kind::Counter,
        seconds: false,
        help: "Hints recorded for nodes that missed a write.",
    },
    Metric {
        name: HINTS_REPLAYED,
        kind: Kind::Counter,
        seconds: false,
        help: "Hinted keys replayed and dropped by exchanges.",
    },
    Metric {
        name: HINTS_DROPPED,
        kind: Kind::Counter,
        seconds: false,
        help: "Hints not kept because the missed node's hint set was full on every node that took the write (sync.max_hints_per_node), by node; the digest exchange catches the node up instead.",
    },
    Metric {
        name: HINTS_PENDING,
        kind: Kind::Gauge,
        seconds: false,
        help: "Hinted keys waiting on the other nodes for this node, counted after each exchange.",
    },
    Metric {
        name: SWEEPS,
        kind: Kind::Counter,
        seconds: false,
        help: "Sweeps finished, by mode and result (ok, dry_run, error).",
    },
    Metric {
        name: SWEEP_DURATION,
        kind: Kind::Histogram,
        seconds: true,
        help: "Duration of a sweep.",
    },
    Metric {
        name: SWEEP_BUCKETS_COMPARED,
        kind: Kind::Counter,
        seconds: false,
        help: "Buckets compared by sweeps.",
    },
    Metric {
        name: SWEEP_BUCKETS_MISMATCHED,
        kind: Kind::Counter,
        seconds: false,
        help: "Buckets whose digests differed between nodes.",
    },
    Metric {
        name: SWEEP_KEYS_DIVERGENT,
        kind: Kind::Counter,
        seconds: false,
        help: "Keys found with differing versions between nodes.",
    },
    Metric {
        name: SWEEP_KEYS_SCANNED,
        kind: Kind::Counter,
        seconds: false,
        help: "Keys returned by SCAN in full sweeps, per node.",
    },
    Metric {
        name: SWEEP_ERRORS,
        kind: Kind::Counter,
        seconds: false,
        help: "Errors met by sweeps.",
    },
    Metric {
        name: SWEEP_RUNNING,
        kind: Kind::Gauge,
        seconds: false,
        help: "1 while a sweep of this mode runs.",
    },
    Metric {
        name: SWEEP_PHASE,
        kind: Kind::Gauge,
        seconds: false,
        help: "1 for the current (or last) phase of the sweep of this mode.",
    },
    Metric {
        name: SWEEP_PROGRESS,
        kind: Kind::Gauge,
        seconds: false,
        help: "Progress of the current (or last) sweep of this mode, 0 to 1.",
    },
    Metric {
        name: SWEEP_LAST_FINISHED,
        kind: Kind::Gauge,
        seconds: true,
        help: "When the last sweep of this mode finished, seconds since the epoch.",
    },
    Metric {
        name: BUCKET_TRANSITIONS,
        kind: Kind::Counter,
        seconds: false,
        help: "Buckets that changed state on the dashboard grid, by new state.",
    },
    Metric {
        name: WORKER_FAILURES,
        kind: Kind::Counter,
        seconds: false,
        help: "Failed passes of background workers (sweeps, node probes, token reloads), by worker.",
    },
    Metric {
        name: LOCK_ACQUISITIONS,
        kind: Kind::Counter,
        seconds: false,
        help: "Lock acquisitions, by result (granted, held, no_quorum, invalid).",
    },
    Metric {
        name: LOCK_ACQUIRE_DURATION,
        kind: Kind::Histogram,
        seconds: true,
        help: "Time to acquire a lock or give up, waiting included.",
    },
    Metric {
        name: LOCK_EXTENSIONS,
        kind: Kind::Counter,
        seconds: false,
        help: "Lock extensions, by result (ok, not_holder, no_quorum, invalid).",
    },
    Metric {
        name: LOCK_RELEASES,
        kind: Kind::Counter,
        seconds: false,
        help: "Lock releases, by result (ok, not_holder, no_quorum, invalid).",
    },
    Metric {
        name: QUEUE_OPERATIONS,
        kind: Kind::Counter,
        seconds: false,
        help: "Queue operations and item moves (dead_letter, redelivery), by result.",
    },
    Metric {
        name: QUEUE_ITEMS,
        kind: Kind::Gauge,
        seconds: false,
        help: "Items of a queue by state, as of the last depth read of that queue.",
    },
    Metric {
        name: QUEUE_ITEMS_RESTORED,
        kind: Kind::Counter,
        seconds: false,
        help: "Queue items a sweep merged into a node that lacked them or held older copies, by node and sweep mode.",
    },
    Metric {
        name: CRDT_MERGES,
        kind: Kind::Counter,
        seconds: false,
        help: "CRDT merges that changed a node's state, by type and source (write, read_repair, sweep).",
    },
    Metric {
        name: CRDT_UPDATES,
        kind: Kind::Counter,
        seconds: false,
        help: "CRDT updates, by type and result.",
    },
    Metric {
        name: RESP_COMMANDS,
        kind: Kind::Counter,
        seconds: false,
        help: "RESP commands answered, by command and result (ok, error, rejected).",
    },
    Metric {
        name: RESP_CONNECTIONS,
        kind: Kind::Gauge,
        seconds: false,
        help: "Open RESP client connections.",
    },
    Metric {
        name: RESP_REFUSED,
        kind: Kind::Counter,
        seconds: false,
        help: "RESP connections refused because resp.max_connections were open.",
    },
    Metric {
        name: PUBSUB_PUBLISHED,
        kind: Kind::Counter,
        seconds: false,
        help: "Messages published through this instance, by result (ok: at least one node took it; error).",
    },
    Metric {
        name: PUBSUB_RECEIVED,
        kind: Kind::Counter,
        seconds: false,
        help: "Copies of pub/sub messages received from the nodes, by node and outcome (delivered: the first copy, given to local subscribers; duplicate; malformed).",
    },
    Metric {
        name: PUBSUB_SUBSCRIPTIONS,
        kind: Kind::Gauge,
        seconds: false,
        help: "Whether this instance's pub/sub subscription to a node is up (1) or not (0), by node.",
    },
    Metric {
        name: PUBSUB_SUBSCRIBERS_DROPPED,
        kind: Kind::Counter,
        seconds: false,
        help: "RESP subscriber connections closed because they fell more than 4096 messages behind.",
    },
];

/// Gives every metric its help text and unit (called once, when the recorder is installed).
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    for m in ALL {
        match (m.kind, m.seconds) {
            (Kind::Counter, _) => describe_counter!(m.name, m.help),
            (Kind::Gauge, true) => describe_gauge!(m.name, Unit::Seconds, m.help),
            (Kind::Gauge, false) => describe_gauge!(m.name, m.help),
            (Kind::Histogram, true) => describe_histogram!(m.name, Unit::Seconds, m.help),
            (Kind::Histogram, false) => describe_histogram!(m.name, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// What is wrong with a metric's name: `quorumd_<thing>_<unit>` in snake case, counters
    /// end in `_total` and nothing else does, a metric in seconds says so, help text given.
    fn violations(m: &Metric) -> Vec<&'static str> {
        let n = m.name;
        let mut wrong = Vec::new();
        if !n.starts_with("quorumd_") {
            wrong.push("no quorumd_ prefix");
        }
        if !n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            wrong.push("not snake case");
        }
        if n.ends_with("_total") != (m.kind == Kind::Counter) {
            wrong.push("counters, and only counters, end in _total");
        }
        if m.seconds != n.contains("_seconds") {
            wrong.push("unit and name disagree");
        }
        if ["_milliseconds", "_ms", "_percent"]
            .iter()
            .any(|u| n.contains(u))
        {
            wrong.push("not a base unit");
        }
        if !m.help.ends_with('.') {
            wrong.push("help text is not a sentence");
        }
        wrong
    }

    #[test]
    fn every_name_follows_the_conventions() {
        let mut seen = HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert_eq!(violations(m), Vec::<&str>::new(), "{}", m.name);
        }
    }

    /// The negative control: the check catches each kind of bad name.
    #[test]
    fn the_check_rejects_bad_names() {
        let metric = |name, kind, seconds| Metric {
            name,
            kind,
            seconds,
            help: "Help.",
        };
        for bad in [
            metric("quorumd_requests", Kind::Counter, false),
            metric("quorumd_up_total", Kind::Gauge, false),
            metric("requests_total", Kind::Counter, false),
            metric("quorumd_Requests_total", Kind::Counter, false),
            metric("quorumd_wait_ms", Kind::Histogram, false),
            metric("quorumd_wait", Kind::Histogram, true),
        ] {
            assert!(!violations(&bad).is_empty(), "{} passed", bad.name);
        }
        assert!(violations(&metric("quorumd_wait_seconds", Kind::Histogram, true)).is_empty());
    }

    /// Every name constant of this module is in `ALL`, so none goes undescribed.
    #[test]
    fn every_constant_is_listed() {
        let source = include_str!("metric_names.rs");
        let constants = source
            .lines()
            .filter(|l| l.starts_with("pub const ") && l.contains(": &str = "))
            .count();
        assert_eq!(constants, ALL.len());
    }
}
