//! Anti-entropy events: sweeps finished and progressing, buckets changing state on the grid,
//! repair batches, back-off, pending hints.

use quorumd_core::metric_names::*;
use quorumd_node::live::{BucketState, LiveEvent, LiveFeed};

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

/// The full sweep deleted, on `node`, the hint sets of nodes no longer configured.
pub struct OrphanHintSetsRemoved<'a> {
    pub node: &'a str,
    pub sets: &'a [String],
}

impl OrphanHintSetsRemoved<'_> {
    pub fn emit(self) {
        tracing::info!(
            node = self.node,
            sets = ?self.sets,
            "removed the hint sets of nodes no longer configured"
        );
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
                at_ms: quorumd_core::hlc::wall_clock_ms(),
            });
        }
        // One line per sweep, with the same fields at whichever level fits.
        macro_rules! line {
            ($level:ident, $msg:literal) => {
                tracing::$level!(
                    id = r.id,
                    mode = r.mode.as_str(),
                    dry_run = r.dry_run,
                    trigger = r.trigger.as_str(),
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
                    queues_checked = r.queues_checked,
                    queue_items_restored = r.queue_items_restored(),
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
            || r.queue_items_restored() > 0
            || r.mode == crate::sync::SweepMode::Full
        {
            line!(info, "sweep finished");
        } else {
            // An exchange that found nothing runs every few seconds: not worth an info line.
            line!(debug, "sweep finished, replicas agree");
        }
    }
}

/// A sweep merged `items` items of queue `queue` into `node`, which lacked them (it lost its
/// data, or missed writes) or held older copies. A dry run only logs what it would merge.
pub struct QueueItemsRestored<'a> {
    pub queue: &'a str,
    pub node: &'a str,
    pub items: u64,
    /// The sweep's mode (`exchange`, `full`).
    pub mode: &'static str,
    pub dry_run: bool,
}

impl QueueItemsRestored<'_> {
    pub fn emit(self) {
        if self.dry_run {
            tracing::info!(
                queue = self.queue,
                node = self.node,
                items = self.items,
                mode = self.mode,
                "queue items behind on a node (dry run)"
            );
            return;
        }
        metrics::counter!(QUEUE_ITEMS_RESTORED, "node" => self.node.to_owned(), "mode" => self.mode)
            .increment(self.items);
        tracing::info!(
            queue = self.queue,
            node = self.node,
            items = self.items,
            mode = self.mode,
            "queue items restored"
        );
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
    "queues",
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
        // A batch whose keys were all deferred or already in place repaired nothing: on the
        // dashboard's list it would only push the node and alert events off.
        if self.keys == 0 {
            return;
        }
        self.live.publish(LiveEvent::Repair {
            source: "exchange",
            keys: self.keys,
            buckets: self.buckets,
            at_ms: quorumd_core::hlc::wall_clock_ms(),
        });
    }
}

/// Changes made on nodes outside quorumd, found and handled (`sync::direct`): a counter per
/// key, one log line per batch, and the first few on the dashboard's list.
pub struct DirectChangesHandled<'a> {
    pub path: crate::sync::direct::Path,
    pub found: &'a [crate::sync::direct::Found],
    pub actions: &'a [crate::sync::direct::Action],
    pub pool: &'a quorumd_node::pool::NodePool,
    pub live: &'a LiveFeed,
}

impl DirectChangesHandled<'_> {
    pub fn emit(self) {
        if self.found.is_empty() {
            return;
        }
        let path = self.path.as_str();
        let mut summary: std::collections::BTreeMap<(String, &str, &str), u64> =
            std::collections::BTreeMap::new();
        for (f, a) in self.found.iter().zip(self.actions) {
            let node = self.pool.node(f.node).display.clone();
            metrics::counter!(DIRECT_CHANGES,
                "node" => node.clone(),
                "kind" => f.mismatch.as_str(),
                "path" => path,
                "action" => a.as_str())
            .increment(1);
            tracing::debug!(
                node = %node,
                key = %String::from_utf8_lossy(&f.loc.key),
                kind = f.mismatch.as_str(),
                path,
                action = a.as_str(),
                "direct change"
            );
            *summary
                .entry((node, f.mismatch.as_str(), a.as_str()))
                .or_default() += 1;
        }
        let at_ms = quorumd_core::hlc::wall_clock_ms();
        for ((node, kind, action), n) in &summary {
            let example = self
                .found
                .iter()
                .find(|f| self.pool.node(f.node).display == *node && f.mismatch.as_str() == *kind)
                .map(|f| String::from_utf8_lossy(&f.loc.key).into_owned())
                .unwrap_or_default();
            tracing::warn!(
                node = %node,
                kind,
                path,
                action,
                keys = n,
                example_key = %example,
                "changes made outside quorumd"
            );
            self.live.publish(LiveEvent::Alert {
                message: format!(
                    "{n} key(s) {kind} outside quorumd on {node} (e.g. {example:?}), found by {path}: {action}"
                ),
                at_ms,
            });
        }
    }
}

/// Whether a node's keyspace notifications reach quorumd. Logged when it changes, so a node
/// that refuses them is said once, not on every retry.
pub struct NotificationsState<'a> {
    pub node: &'a str,
    pub enabled: bool,
    /// Why not, when not enabled.
    pub reason: Option<&'a str>,
    pub changed: bool,
}

impl NotificationsState<'_> {
    pub fn emit(self) {
        metrics::gauge!(NOTIFICATIONS_ENABLED, "node" => self.node.to_owned())
            .set(if self.enabled { 1.0 } else { 0.0 });
        if !self.changed {
            return;
        }
        if self.enabled {
            tracing::info!(node = self.node, "live detection of direct changes is on");
        } else {
            tracing::warn!(
                node = self.node,
                reason = self.reason.unwrap_or(""),
                "live detection of direct changes is off for this node: changes made on it outside quorumd are found by the full sweep's scrub only"
            );
        }
    }
}

/// A node had stopped sending key events of classes live detection needs (its
/// `notify-keyspace-events` changed outside quorumd) and quorumd turned them on again.
pub struct NotificationsTurnedOffOutside<'a> {
    pub node: &'a str,
    /// `"master h:p: "` on a cluster, empty for a server.
    pub source: &'a str,
    pub live: &'a LiveFeed,
}

impl NotificationsTurnedOffOutside<'_> {
    pub fn emit(self) {
        let message = format!(
            "{}: {}notify-keyspace-events had been changed outside quorumd and lacked classes live detection needs; turned them on again (changes made meanwhile are found by the next full sweep's scrub)",
            self.node, self.source,
        );
        tracing::warn!(node = self.node, source = self.source, "{message}");
        self.live.publish(LiveEvent::Alert {
            message,
            at_ms: quorumd_core::hlc::wall_clock_ms(),
        });
    }
}

/// The key events one node's live detection hears, counted by origin. The counters are looked
/// up once per subscription: counting an event is then one atomic add.
pub struct LiveKeyEvents {
    own: metrics::Counter,
    unmarked: metrics::Counter,
}

impl LiveKeyEvents {
    pub fn for_node(node: &str) -> LiveKeyEvents {
        let counter = |origin: &'static str| metrics::counter!(LIVE_KEY_EVENTS, "node" => node.to_owned(), "origin" => origin);
        LiveKeyEvents {
            own: counter("own"),
            unmarked: counter("unmarked"),
        }
    }

    /// An event inside a script's announcement: quorumd's own write, not verified.
    pub fn own(&self) {
        self.own.increment(1);
    }

    /// An event outside any announcement: sent to the verifier.
    pub fn unmarked(&self) {
        self.unmarked.increment(1);
    }
}

/// The service is starting: the anti-entropy series whose labels are known in advance are
/// registered at zero (sweep counters and gauges per mode, per-node repair, queue restore and
/// scan counters, pending hints, bucket states, the sweep workers). Registering changes no value.
pub struct SyncMetricsRegistered<'a> {
    /// Node names (masked addresses).
    pub nodes: &'a [String],
    /// `sync.shards`.
    pub shards: u32,
}

impl SyncMetricsRegistered<'_> {
    pub fn emit(self) {
        use quorumd_core::metric_labels as labels;
        ShardsHeld {
            held: 0,
            shards: self.shards,
        }
        .emit();
        for mode in labels::SWEEP_MODES {
            for result in labels::SWEEP_RESULTS {
                metrics::counter!(SWEEPS, "mode" => *mode, "result" => *result).increment(0);
            }
            let _ = metrics::histogram!(SWEEP_DURATION, "mode" => *mode);
            for counter in [
                SWEEP_BUCKETS_COMPARED,
                SWEEP_BUCKETS_MISMATCHED,
                SWEEP_KEYS_DIVERGENT,
                SWEEP_ERRORS,
            ] {
                metrics::counter!(counter, "mode" => *mode).increment(0);
            }
            for gauge in [SWEEP_RUNNING, SWEEP_PROGRESS, SWEEP_LAST_FINISHED] {
                metrics::gauge!(gauge, "mode" => *mode).increment(0.0);
            }
            for phase in labels::SWEEP_PHASES {
                metrics::gauge!(SWEEP_PHASE, "mode" => *mode, "phase" => *phase).increment(0.0);
            }
        }
        metrics::counter!(HINTS_REPLAYED).increment(0);
        for node in self.nodes {
            metrics::counter!(SWEEP_KEYS_SCANNED, "node" => node.clone()).increment(0);
            metrics::gauge!(HINTS_PENDING, "node" => node.clone()).increment(0.0);
            metrics::counter!(HINTS_DROPPED, "node" => node.clone()).increment(0);
            for origin in labels::LIVE_EVENT_ORIGINS {
                metrics::counter!(LIVE_KEY_EVENTS, "node" => node.clone(), "origin" => *origin)
                    .increment(0);
            }
            for source in labels::REPAIR_SOURCES {
                metrics::counter!(KEYS_REPAIRED, "node" => node.clone(), "source" => *source)
                    .increment(0);
            }
            for mode in labels::SWEEP_MODES {
                metrics::counter!(QUEUE_ITEMS_RESTORED, "node" => node.clone(), "mode" => *mode)
                    .increment(0);
            }
        }
        for state in labels::BUCKET_STATES {
            metrics::counter!(BUCKET_TRANSITIONS, "state" => *state).increment(0);
        }
        for worker in ["sweep:exchange", "sweep:full", "direct:verify"] {
            metrics::counter!(WORKER_FAILURES, "worker" => worker).increment(0);
        }
    }
}

/// This instance's shard leases after a lease round: how many it holds, of how many.
pub struct ShardsHeld {
    pub held: usize,
    pub shards: u32,
}

impl ShardsHeld {
    pub fn emit(self) {
        metrics::gauge!(SHARDS_HELD).set(self.held as f64);
        metrics::gauge!(SHARDS).set(f64::from(self.shards));
    }
}

#[cfg(test)]
mod registration_tests {
    use quorumd_core::metric_labels as labels;

    /// The phases and modes registered at zero are the ones sweeps record.
    #[test]
    fn registered_labels_are_the_recorded_ones() {
        let phases: Vec<String> = super::SWEEP_PHASES
            .iter()
            .map(|p| p.replace(' ', "_"))
            .collect();
        assert_eq!(phases, labels::SWEEP_PHASES);
        let modes = [
            crate::sync::SweepMode::Exchange,
            crate::sync::SweepMode::Full,
        ];
        assert_eq!(modes.map(|m| m.as_str()).to_vec(), labels::SWEEP_MODES);
        assert!(
            labels::WORKERS.contains(&"sweep:exchange") && labels::WORKERS.contains(&"sweep:full")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repair_batch_that_repaired_nothing_stays_off_the_event_list() {
        let live = LiveFeed::new(16);
        let recent = |live: &LiveFeed| live.snapshot(quorumd_core::hlc::wall_clock_ms()).recent;
        RepairBatchApplied {
            keys: 0,
            buckets: 0,
            live: &live,
        }
        .emit();
        assert!(recent(&live).is_empty());
        RepairBatchApplied {
            keys: 3,
            buckets: 2,
            live: &live,
        }
        .emit();
        assert!(
            matches!(recent(&live)[..], [LiveEvent::Repair { keys: 3, .. }]),
            "{:?}",
            recent(&live)
        );
    }
}
