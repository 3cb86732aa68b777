//! The label values of quorumd's metrics that are known before anything happens, so every
//! series can be registered at zero when the service starts (a rate over a series that does not
//! exist yet is "no data", not 0, and an alert on it can never fire). Each layer's events
//! module registers its own families from these lists; the code that records an event uses the
//! same strings, and the layers' unit tests check the two agree where the values come from an
//! enum. Values that come from clients (queue names) or from the router (HTTP routes) are not
//! listed here.

/// Node health states (`quorumd_node_health{state}`, `quorumd_node_health_changes_total{to}`).
pub const NODE_HEALTH_STATES: &[&str] = &["up", "suspect", "down", "recovering"];
/// Kinds of failed node requests (`quorumd_node_errors_total{kind}`). Requests refused at once
/// because the node has no connection (`unavailable`) are not counted.
pub const NODE_ERROR_KINDS: &[&str] = &["timeout", "connection", "server", "protocol"];
/// Kinds of batched script calls (`quorumd_node_batches_total{kind}`).
pub const BATCH_KINDS: &[&str] = &["read", "typed_read", "write"];

/// Sweep modes (`mode` label).
pub const SWEEP_MODES: &[&str] = &["exchange", "full"];
/// Results of a finished sweep (`quorumd_sweeps_total{result}`).
pub const SWEEP_RESULTS: &[&str] = &["ok", "dry_run", "error"];
/// Phases of a sweep as labels (`quorumd_sweep_phase{phase}`).
pub const SWEEP_PHASES: &[&str] = &[
    "starting",
    "reading_digests",
    "comparing_buckets",
    "scanning",
    "checking_buckets",
    "queues",
    "done",
];
/// Where a repaired key came from (`quorumd_keys_repaired_total{source}`).
pub const REPAIR_SOURCES: &[&str] = &["read", "exchange", "full"];
/// States of a bucket on the grid (`quorumd_bucket_state_changes_total{state}`).
pub const BUCKET_STATES: &[&str] = &["in_sync", "differing", "repairing", "repaired"];
/// Background workers that are not per node (`quorumd_worker_failures_total{worker}`); each
/// node adds `probe:<host:port/db>`.
pub const WORKERS: &[&str] = &[
    "sweep:exchange",
    "sweep:full",
    "auth:reload",
    "direct:verify",
];
/// The worker label of a node's probe, from the node's identity (`host:port/db`).
pub fn probe_worker(identity: &str) -> String {
    format!("probe:{identity}")
}
/// The worker label of a node's pub/sub subscription (`host:port/db`).
pub fn pubsub_worker(identity: &str) -> String {
    format!("pubsub:{identity}")
}

/// Results of a publish (`quorumd_pubsub_published_total{result}`).
pub const PUBSUB_PUBLISH_RESULTS: &[&str] = &["ok", "error"];
/// What became of a message copy a node sent (`quorumd_pubsub_received_total{outcome}`).
pub const PUBSUB_RECEIVED_OUTCOMES: &[&str] = &["delivered", "duplicate", "malformed"];

/// Operations that count in `quorumd_quorum_failures_total{operation}`.
pub const QUORUM_OPERATIONS: &[&str] = &[
    "read",
    "version read",
    "read write-back",
    "write",
    "key count",
    "crdt read",
    "crdt write",
    "lock acquire",
    "lock fence",
    "lock check",
    "lock inspect",
    "queue put",
    "queue read",
    "queue claim",
    "queue repair",
    "queue ack",
    "queue nack",
    "queue extend",
    "queue depths",
    "publish",
];

/// Results of a lock acquisition (`quorumd_lock_acquisitions_total{result}`).
pub const LOCK_ACQUIRE_RESULTS: &[&str] = &["granted", "held", "no_quorum", "invalid"];
/// Results of a lock extension or release.
pub const LOCK_CHANGE_RESULTS: &[&str] = &["ok", "not_holder", "no_quorum", "invalid"];

/// Queue operations a client asks for (`quorumd_queue_operations_total{operation}`).
pub const QUEUE_OPERATIONS: &[&str] = &["put", "claim", "ack", "nack", "extend"];
/// Their results.
pub const QUEUE_RESULTS: &[&str] = &[
    "ok",
    "empty",
    "stale_lease",
    "too_large",
    "invalid",
    "no_quorum",
];
/// Item moves the service makes itself; their result is always `ok`.
pub const QUEUE_MOVES: &[&str] = &["dead_letter", "redelivery"];

/// CRDT types (`type` label).
pub const CRDT_TYPES: &[&str] = &["counter", "set", "map"];
/// Where a CRDT merge came from (`quorumd_crdt_merges_total{source}`).
pub const CRDT_MERGE_SOURCES: &[&str] = &["write", "read_repair", "sweep"];
/// Results of a CRDT update (`quorumd_crdt_updates_total{result}`).
pub const CRDT_UPDATE_RESULTS: &[&str] = &[
    "ok",
    "invalid",
    "wrong_type",
    "no_quorum",
    "timeout",
    "error",
];

/// What a direct change to a node was (`quorumd_direct_changes_total{kind}`).
pub const DIRECT_CHANGE_KINDS: &[&str] =
    &["changed", "deleted", "ttl", "type", "unversioned", "state"];
/// How it was found: keyspace notifications, the scrub, or a read.
pub const DIRECT_CHANGE_PATHS: &[&str] = &["live", "scrub", "read"];
/// What quorumd did about it.
pub const DIRECT_CHANGE_ACTIONS: &[&str] =
    &["adopted", "restored", "reported", "superseded", "failed"];
/// Where a key event the live detection heard came from (`quorumd_live_key_events_total`).
pub const LIVE_EVENT_ORIGINS: &[&str] = &["own", "unmarked"];

/// Every `(kind, path, action)` of `quorumd_direct_changes_total`, for one node.
pub fn direct_change_labels() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    DIRECT_CHANGE_KINDS.iter().flat_map(|k| {
        DIRECT_CHANGE_PATHS
            .iter()
            .flat_map(move |p| DIRECT_CHANGE_ACTIONS.iter().map(move |a| (*k, *p, *a)))
    })
}

/// Results of an HTTP request (`quorumd_http_requests_total{result}`).
pub const HTTP_RESULTS: &[&str] = &[
    "ok",
    "not_found",
    "precondition_failed",
    "client_error",
    "unavailable",
    "error",
];
/// Consistency levels as labels.
pub const CONSISTENCY_LEVELS: &[&str] = &["one", "quorum", "all", "linearizable"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_labels_are_the_levels() {
        use crate::quorum::Consistency;
        for (label, level) in CONSISTENCY_LEVELS.iter().zip([
            Consistency::One,
            Consistency::Quorum,
            Consistency::All,
            Consistency::Linearizable,
        ]) {
            assert_eq!(*label, level.as_str());
        }
    }

    #[test]
    fn direct_change_labels_are_the_whole_product() {
        let all: Vec<_> = direct_change_labels().collect();
        assert_eq!(all.len(), 6 * 3 * 5);
        assert!(all.contains(&("unversioned", "read", "failed")));
        assert!(all.contains(&("state", "scrub", "adopted")));
    }

    /// Label values are snake case without spaces, except the quorum operations, which are
    /// the operation names errors show (`lock acquire`).
    #[test]
    fn label_values_are_plain() {
        for list in [
            NODE_HEALTH_STATES,
            NODE_ERROR_KINDS,
            SWEEP_MODES,
            SWEEP_RESULTS,
            SWEEP_PHASES,
            REPAIR_SOURCES,
            BUCKET_STATES,
            LOCK_ACQUIRE_RESULTS,
            LOCK_CHANGE_RESULTS,
            QUEUE_OPERATIONS,
            QUEUE_RESULTS,
            QUEUE_MOVES,
            CRDT_TYPES,
            CRDT_MERGE_SOURCES,
            CRDT_UPDATE_RESULTS,
            DIRECT_CHANGE_KINDS,
            DIRECT_CHANGE_PATHS,
            DIRECT_CHANGE_ACTIONS,
            LIVE_EVENT_ORIGINS,
            HTTP_RESULTS,
            PUBSUB_PUBLISH_RESULTS,
            PUBSUB_RECEIVED_OUTCOMES,
        ] {
            for v in list {
                assert!(v.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{v}");
            }
        }
    }
}
