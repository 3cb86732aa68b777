//! Anti-entropy: finds replicas that fell behind and writes the winning versions back.
//!
//! Two tiers (docs/ARCHITECTURE.md, "Anti-entropy"): the digest exchange compares each node's bucket digests and diffs
//! only the buckets that differ, so its cost follows the divergence, not the keyspace; the
//! full sweep SCANs every node for what digests cannot see. Both repair through the same
//! versioned APPLY script as client writes, so a repair never overwrites a newer write; a
//! bucket that a node holds nothing of is copied whole (`bulk`), and only while it stays so.

pub mod bulk;
mod crdt;
pub mod diff;
pub mod direct;
pub mod events;
mod exchange;
mod full;
pub(crate) mod glob;
mod hints;
pub mod lease;
pub mod live;
pub mod progress;
mod queues;
mod repair;
pub mod schedule;
pub mod throttle;

pub use full::scrub_runs;
pub use progress::{SweepMode, SweepReport, SweepRequest, SweepTrigger};

use crate::store::VersionedStore;
use progress::ProgressHandle;
use quorumd_core::config::SyncConfig;
use quorumd_node::pool::NodePool;
#[cfg(feature = "fault-injection")]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use throttle::Throttle;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error("a {} sweep is already running (id {})", .0.mode.as_str(), .0.id)]
    AlreadyRunning(Box<SweepReport>),
    #[error("cannot start the sweep scheduler: {0}")]
    Scheduler(String),
}

/// The running and the last finished sweep of one mode.
#[derive(Default)]
struct Slot {
    running: Mutex<Option<ProgressHandle>>,
    last: Mutex<Option<SweepReport>>,
}

/// What the status API shows about sweeps.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepStatus {
    pub leases: lease::LeaseStatus,
    pub totals: Totals,
    pub exchange: Option<SweepReport>,
    pub full: Option<SweepReport>,
    pub last_exchange: Option<SweepReport>,
    pub last_full: Option<SweepReport>,
    /// Per node, whether changes made on it outside quorumd are seen live.
    pub live_detection: Vec<live::NotificationStatus>,
}

/// Counters over every sweep this instance ran since it started.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Totals {
    pub sweeps: u64,
    pub keys_repaired_per_node: Vec<u64>,
    pub keys_adopted: u64,
    /// Whole buckets copied to an empty or wiped node by the bulk path.
    pub buckets_copied: u64,
    pub tombstones_purged: u64,
    pub hints_replayed: u64,
    /// Queue items merged into nodes that lacked them or held older copies.
    pub queue_items_restored: u64,
    pub errors: u64,
}

/// Runs sweeps; at most one of each mode at a time.
pub struct Sweeper {
    store: Arc<VersionedStore>,
    cfg: SyncConfig,
    throttle: Throttle,
    scan_throttle: Throttle,
    exchange: Slot,
    full: Slot,
    next_id: AtomicU64,
    leases: lease::ShardLeases,
    totals: Mutex<Totals>,
    live: live::LiveDetection,
    /// Per node, the count of its losses (`Node::losses_marked`) as of the last exchange that
    /// restored every queue onto it: the exchange restores a node's queues once per loss.
    queues_restored: Mutex<Vec<Option<u64>>>,
    /// Detection broken on purpose for the tests' negative controls.
    #[cfg(feature = "fault-injection")]
    pub unsafe_knobs: UnsafeDetectionKnobs,
}

/// Switches that break the detection of direct changes, so that the tests can show their
/// checks catch a detection that misses changes. Only with the `fault-injection` feature.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Default)]
pub struct UnsafeDetectionKnobs {
    /// The scrub takes every present value of the right presence for intact (no content, type
    /// or expiry comparison).
    pub scrub_skips_content: AtomicBool,
    /// The live path drops every key event it has not verified yet.
    pub live_drops_events: AtomicBool,
    /// The live path ignores the scripts' announcements of quorumd's own writes, so it
    /// verifies every key event, as before they existed.
    pub live_ignores_own_marks: AtomicBool,
    /// The sweeps leave queue state alone, as before they restored it: a node restarted empty
    /// is called back in sync without its queues.
    pub skip_queue_heal: AtomicBool,
}

impl Sweeper {
    /// `instance` names this instance in shard leases.
    pub fn new(store: Arc<VersionedStore>, cfg: SyncConfig, instance: String) -> Arc<Sweeper> {
        let n = store.pool().len();
        let live_detection = cfg.live_detection;
        let names: Vec<String> = store
            .pool()
            .nodes()
            .iter()
            .map(|n| n.display.clone())
            .collect();
        Arc::new(Sweeper {
            leases: lease::ShardLeases::new(
                instance,
                &store.settings().layout.prefix,
                cfg.shards,
                cfg.lease_ms,
            ),
            throttle: Throttle::new(n, cfg.max_repairs_per_sec, cfg.backoff_latency_ms),
            scan_throttle: Throttle::new(n, cfg.max_scan_keys_per_sec, cfg.backoff_latency_ms),
            store,
            cfg,
            exchange: Slot::default(),
            full: Slot::default(),
            next_id: AtomicU64::new(1),
            totals: Mutex::new(Totals {
                keys_repaired_per_node: vec![0; n],
                ..Totals::default()
            }),
            live: live::LiveDetection::new(&names, live_detection),
            queues_restored: Mutex::new(vec![None; n]),
            #[cfg(feature = "fault-injection")]
            unsafe_knobs: UnsafeDetectionKnobs::default(),
        })
    }

    pub fn pool(&self) -> &Arc<NodePool> {
        self.store.pool()
    }

    pub fn store(&self) -> &Arc<VersionedStore> {
        &self.store
    }

    /// Whether the scrub skips comparing content (a negative control; never in a release).
    fn scrub_skips_content(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self
            .unsafe_knobs
            .scrub_skips_content
            .load(Ordering::Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Whether the live path drops key events (a negative control; never in a release).
    fn live_drops_events(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.unsafe_knobs.live_drops_events.load(Ordering::Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Whether the live path ignores the marks of quorumd's own writes (a negative control).
    fn live_ignores_own_marks(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self
            .unsafe_knobs
            .live_ignores_own_marks
            .load(Ordering::Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Whether the sweeps leave queue state alone (a negative control; never in a release).
    fn skips_queue_heal(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.unsafe_knobs.skip_queue_heal.load(Ordering::Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Per node, its loss count as of its last complete queue restore.
    fn queues_restored(&self) -> Vec<Option<u64>> {
        self.queues_restored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every queue was restored onto `nodes`, whose loss counts were `losses` before.
    fn queues_restored_at(&self, nodes: &[quorumd_node::pool::NodeId], losses: &[u64]) {
        let mut done = self
            .queues_restored
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for &n in nodes {
            done[n] = Some(losses[n]);
        }
    }

    pub fn live_detection(&self) -> &live::LiveDetection {
        &self.live
    }

    pub fn config(&self) -> &SyncConfig {
        &self.cfg
    }

    fn slot(&self, mode: SweepMode) -> &Slot {
        match mode {
            SweepMode::Exchange => &self.exchange,
            SweepMode::Full => &self.full,
        }
    }

    /// Claims the slot of `mode` and returns the new sweep's progress handle, or the running
    /// sweep's report if one is running.
    pub fn begin(&self, request: SweepRequest) -> Result<ProgressHandle, SyncError> {
        let mut running = self
            .slot(request.mode)
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(current) = running.as_ref() {
            return Err(SyncError::AlreadyRunning(Box::new(
                progress::lock(current).clone(),
            )));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(Mutex::new(SweepReport::new(id, request, self.pool().len())));
        *running = Some(handle.clone());
        Ok(handle)
    }

    /// Runs a sweep claimed by `begin` to its end and returns its report.
    #[tracing::instrument(name = "sweep", skip_all)]
    pub async fn execute(&self, handle: ProgressHandle) -> SweepReport {
        let (mode, dry_run, trigger) = {
            let r = progress::lock(&handle);
            (r.mode, r.dry_run, r.trigger)
        };
        let feed = tokio::spawn(progress::feed(handle.clone(), self.pool().clone()));
        match mode {
            SweepMode::Exchange => {
                hints::replay_all(self, &handle, dry_run).await;
                let shards = if trigger.is_background() {
                    Some(self.leases.rebalance(self.pool()).await)
                } else {
                    None
                };
                let run = exchange::run(self, &handle, dry_run, shards.as_ref());
                if shards.is_some() {
                    // The leases stay renewed while the exchange works on their shards.
                    tokio::select! {
                        () = run => {}
                        () = self.leases.keep_renewed(self.pool()) => {}
                    }
                } else {
                    run.await;
                }
            }
            SweepMode::Full => full::run(self, &handle, dry_run).await,
        }
        feed.abort();
        let report = {
            let mut r = progress::lock(&handle);
            r.finish();
            r.clone()
        };
        let nodes: Vec<String> = self
            .pool()
            .nodes()
            .iter()
            .map(|n| n.display.clone())
            .collect();
        crate::sync::events::SweepFinished {
            report: &report,
            nodes: &nodes,
            live: self.pool().live(),
        }
        .emit();
        {
            let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
            t.sweeps += 1;
            for (total, n) in t
                .keys_repaired_per_node
                .iter_mut()
                .zip(&report.keys_repaired_per_node)
            {
                *total += n;
            }
            t.keys_adopted += report.keys_adopted;
            t.buckets_copied += report.buckets_copied;
            t.tombstones_purged += report.tombstones_purged;
            t.hints_replayed += report.hints_replayed;
            t.queue_items_restored += report.queue_items_restored();
            t.errors += report.error_count;
        }
        let slot = self.slot(mode);
        *slot.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
        *slot.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
        report
    }

    /// Runs one sweep now, inline.
    pub async fn run(&self, request: SweepRequest) -> Result<SweepReport, SyncError> {
        let handle = self.begin(request)?;
        Ok(self.execute(handle).await)
    }

    pub fn status(&self) -> SweepStatus {
        let running = |m| {
            self.slot(m)
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|h| progress::lock(h).clone())
        };
        let last = |m| {
            self.slot(m)
                .last
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        SweepStatus {
            leases: self.leases.status(),
            totals: self
                .totals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            exchange: running(SweepMode::Exchange),
            full: running(SweepMode::Full),
            last_exchange: last(SweepMode::Exchange),
            last_full: last(SweepMode::Full),
            live_detection: self.live.status(),
        }
    }
}

impl Sweeper {
    pub fn leases(&self) -> &lease::ShardLeases {
        &self.leases
    }
}
