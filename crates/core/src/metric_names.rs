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
pub const NODE_BATCHES: &str = "quorumd_node_batches_total";
pub const NODE_BATCH_ENTRIES: &str = "quorumd_node_batch_entries_total";
pub const QUORUM_FAILURES: &str = "quorumd_quorum_failures_total";
pub const READ_REPAIRS: &str = "quorumd_read_repairs_total";
pub const KEYS_REPAIRED: &str = "quorumd_keys_repaired_total";
pub const HINTS_RECORDED: &str = "quorumd_hints_recorded_total";
pub const HINTS_REPLAYED: &str = "quorumd_hints_replayed_total";
pub const HINTS_PENDING: &str = "quorumd_hints_pending";
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

pub const LOCK_ACQUISITIONS: &str = "quorumd_lock_acquisitions_total";
pub const LOCK_ACQUIRE_DURATION: &str = "quorumd_lock_acquire_duration_seconds";
pub const LOCK_EXTENSIONS: &str = "quorumd_lock_extensions_total";
pub const LOCK_RELEASES: &str = "quorumd_lock_releases_total";
pub const QUEUE_OPERATIONS: &str = "quorumd_queue_operations_total";
pub const QUEUE_ITEMS: &str = "quorumd_queue_items";
pub const CRDT_MERGES: &str = "quorumd_crdt_merges_total";
pub const CRDT_UPDATES: &str = "quorumd_crdt_updates_total";
pub const RESP_COMMANDS: &str = "quorumd_resp_commands_total";
pub const RESP_CONNECTIONS: &str = "quorumd_resp_connections";
pub const RESP_REFUSED: &str = "quorumd_resp_connections_refused_total";

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
        WORKER_FAILURES,
        "Failed passes of background workers (sweeps, node probes), by worker."
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
