//! Progress of one sweep: a first-class state that the status API, the CLI report and the logs
//! all read from one place.

use quorumd_core::hlc::wall_clock_ms;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Most error messages kept per sweep (the count keeps going).
const MAX_ERRORS_KEPT: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepMode {
    /// Compare bucket digests, diff only the buckets that differ.
    Exchange,
    /// SCAN every node's keyspace; adopt unversioned keys, restore vanished values, rebuild
    /// drifted digests, purge old tombstones.
    Full,
}

impl SweepMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepMode::Exchange => "exchange",
            SweepMode::Full => "full",
        }
    }
}

/// What started a sweep; the report shows it as `trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepTrigger {
    /// The exchange interval or the full sweep's cron.
    Schedule,
    /// A node turned recovering or came back from down.
    Recovery,
    /// `POST /v1/sweeps`.
    Api,
    /// `quorumd sweep`.
    Cli,
    /// A test or benchmark calling the sweeper directly.
    Test,
}

impl SweepTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepTrigger::Schedule => "schedule",
            SweepTrigger::Recovery => "recovery",
            SweepTrigger::Api => "api",
            SweepTrigger::Cli => "cli",
            SweepTrigger::Test => "test",
        }
    }

    /// Background passes split the buckets with the other instances; a sweep someone asked
    /// for covers everything.
    pub fn is_background(self) -> bool {
        matches!(self, SweepTrigger::Schedule | SweepTrigger::Recovery)
    }
}

/// A sweep to run: which kind, whether it only reports, and who asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepRequest {
    pub mode: SweepMode,
    pub dry_run: bool,
    pub trigger: SweepTrigger,
}

impl SweepRequest {
    /// A sweep that repairs what it finds.
    pub fn new(mode: SweepMode, trigger: SweepTrigger) -> SweepRequest {
        SweepRequest {
            mode,
            dry_run: false,
            trigger,
        }
    }

    /// The same sweep, only reporting what it would repair.
    pub fn dry_run(self) -> SweepRequest {
        SweepRequest {
            dry_run: true,
            ..self
        }
    }
}

/// Everything known about one sweep, while it runs and after.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub id: u64,
    pub mode: SweepMode,
    pub dry_run: bool,
    pub trigger: SweepTrigger,
    pub running: bool,
    pub phase: &'static str,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub elapsed_s: f64,
    pub buckets_total: u64,
    pub buckets_compared: u64,
    pub buckets_mismatched: u64,
    pub buckets_repaired: u64,
    /// Of those, buckets copied whole onto nodes that held nothing of them (a wiped node).
    pub buckets_copied: u64,
    /// Exchange: sub-buckets whose digests differ, within the mismatched buckets. Only these
    /// have their metadata read.
    pub sub_buckets_mismatched: u64,
    /// Metadata entries read from sub-bucket hashes to diff them (the exchange's and the full
    /// sweep's bucket phase; hint replay and key checks are not counted). The exchange's cost
    /// follows this figure.
    pub metadata_entries_read: u64,
    /// Keys whose versions differ between nodes.
    pub keys_divergent: u64,
    /// Divergent keys left for a later pass because their write may still be landing.
    pub keys_deferred: u64,
    /// Keys found without quorumd metadata (written straight to a node).
    pub keys_unversioned: u64,
    pub keys_adopted: u64,
    /// Unversioned keys the full sweep left as they are: their direct-writes policy is
    /// `report-only`. They still differ between nodes after the sweep.
    pub keys_unversioned_left: u64,
    /// Full sweep: hint sets of nodes no longer configured, found by its scans (and deleted,
    /// unless a dry run).
    pub orphan_hint_sets: u64,
    pub values_restored: u64,
    pub keys_repaired_per_node: Vec<u64>,
    pub keys_scanned_per_node: Vec<u64>,
    /// Full sweep: the SCAN cursor each node's scan resumed from (0 = from the start).
    pub resumed_from_cursor_per_node: Vec<u64>,
    /// Full sweep: the bucket its second phase resumed from, when a previous full sweep
    /// stopped there (its scans had finished, so this one skipped them).
    pub resumed_from_bucket: Option<u32>,
    pub tombstones_purged: u64,
    pub digests_rebuilt: u64,
    /// Full sweep: metadata entries whose value its node checked against the entry (scrub).
    pub entries_scrubbed: u64,
    /// Changes made on nodes outside quorumd that the scrub found, by kind (`changed`,
    /// `deleted`, `ttl`, `type`).
    pub direct_changes: std::collections::BTreeMap<&'static str, u64>,
    /// What was done about them, by action (`adopted`, `restored`, `reported`, `superseded`,
    /// `failed`).
    pub direct_changes_handled: std::collections::BTreeMap<&'static str, u64>,
    pub hints_replayed: u64,
    /// Queues whose items were compared across nodes (the full sweep: every queue; the
    /// exchange: only when a node lost data, onto that node).
    pub queues_checked: u64,
    /// Queue items merged into each node, which lacked them or held older copies (in a dry
    /// run: that would be).
    pub queue_items_restored_per_node: Vec<u64>,
    /// Work done so far out of the work known, in [0, 1].
    pub progress_ratio: f64,
    pub rate_keys_per_s: f64,
    pub eta_s: Option<f64>,
    pub error_count: u64,
    pub errors: Vec<String>,
    #[serde(skip)]
    started: Option<Instant>,
}

impl SweepReport {
    pub fn new(id: u64, request: SweepRequest, nodes: usize) -> Self {
        let SweepRequest {
            mode,
            dry_run,
            trigger,
        } = request;
        SweepReport {
            id,
            mode,
            dry_run,
            trigger,
            running: true,
            phase: "starting",
            started_at_ms: wall_clock_ms(),
            finished_at_ms: None,
            elapsed_s: 0.0,
            buckets_total: 0,
            buckets_compared: 0,
            buckets_mismatched: 0,
            buckets_repaired: 0,
            buckets_copied: 0,
            sub_buckets_mismatched: 0,
            metadata_entries_read: 0,
            keys_divergent: 0,
            keys_deferred: 0,
            keys_unversioned: 0,
            keys_adopted: 0,
            keys_unversioned_left: 0,
            orphan_hint_sets: 0,
            values_restored: 0,
            keys_repaired_per_node: vec![0; nodes],
            keys_scanned_per_node: vec![0; nodes],
            resumed_from_cursor_per_node: vec![0; nodes],
            tombstones_purged: 0,
            digests_rebuilt: 0,
            entries_scrubbed: 0,
            resumed_from_bucket: None,
            direct_changes: Default::default(),
            direct_changes_handled: Default::default(),
            hints_replayed: 0,
            queues_checked: 0,
            queue_items_restored_per_node: vec![0; nodes],
            progress_ratio: 0.0,
            rate_keys_per_s: 0.0,
            eta_s: None,
            error_count: 0,
            errors: Vec::new(),
            started: Some(Instant::now()),
        }
    }

    pub fn error(&mut self, message: impl Into<String>) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(message.into());
        }
    }

    pub fn keys_repaired(&self) -> u64 {
        self.keys_repaired_per_node.iter().sum()
    }

    pub fn keys_scanned(&self) -> u64 {
        self.keys_scanned_per_node.iter().sum()
    }

    pub fn queue_items_restored(&self) -> u64 {
        self.queue_items_restored_per_node.iter().sum()
    }

    /// Divergence this sweep found and did not resolve (in a dry run: all it found, queue
    /// items behind included).
    pub fn divergence_left(&self) -> u64 {
        let found = self.keys_divergent + self.keys_unversioned;
        if self.dry_run {
            found + self.direct_changes.values().sum::<u64>() + self.queue_items_restored()
        } else {
            self.keys_deferred + self.error_count.min(found) + self.outside_changes_left()
        }
    }

    /// Changes made outside quorumd that this sweep found and left as they are: keys created
    /// or changed outside it under a `report-only` policy, and changes whose handling failed.
    /// A digest exchange after the sweep does not see them.
    pub fn outside_changes_left(&self) -> u64 {
        let direct: u64 = ["reported", "failed"]
            .iter()
            .filter_map(|a| self.direct_changes_handled.get(a))
            .sum();
        self.keys_unversioned_left + direct
    }

    /// Updates elapsed time, progress, rate and ETA from `done` out of `total` units of work.
    pub fn tick(&mut self, done: u64, total: u64) {
        let elapsed = self
            .started
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        self.elapsed_s = elapsed;
        self.progress_ratio = if total == 0 {
            1.0
        } else {
            (done as f64 / total as f64).min(1.0)
        };
        let keys = (self.keys_repaired() + self.keys_scanned()) as f64;
        self.rate_keys_per_s = if elapsed > 0.0 { keys / elapsed } else { 0.0 };
        self.eta_s = (self.progress_ratio > 0.0 && self.progress_ratio < 1.0)
            .then(|| elapsed * (1.0 - self.progress_ratio) / self.progress_ratio);
    }

    pub fn finish(&mut self) {
        self.running = false;
        self.phase = "done";
        self.finished_at_ms = Some(wall_clock_ms());
        self.elapsed_s = self
            .started
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or(self.elapsed_s);
        self.progress_ratio = 1.0;
        self.eta_s = None;
    }
}

/// A running sweep's report, shared with whoever asks for progress.
pub type ProgressHandle = Arc<Mutex<SweepReport>>;

/// Most progress samples a running sweep publishes per second (dashboard, gauges).
const FEED_PER_SECOND: u64 = 4;

/// Publishes the sweep's progress a few times a second until aborted (when the sweep ends).
pub async fn feed(p: ProgressHandle, pool: Arc<quorumd_node::pool::NodePool>) {
    let mut every = tokio::time::interval(std::time::Duration::from_millis(1000 / FEED_PER_SECOND));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let report = lock(&p).clone();
        crate::sync::events::SweepProgressed {
            report: &report,
            live: pool.live(),
        }
        .emit();
    }
}

/// Locks a progress handle (a poisoned lock still holds usable counters).
pub fn lock(p: &ProgressHandle) -> std::sync::MutexGuard<'_, SweepReport> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_rate_and_eta() {
        let mut r = SweepReport::new(
            1,
            SweepRequest::new(SweepMode::Exchange, SweepTrigger::Api),
            3,
        );
        r.tick(0, 10);
        assert_eq!(r.progress_ratio, 0.0);
        assert_eq!(r.eta_s, None);
        r.tick(5, 10);
        assert_eq!(r.progress_ratio, 0.5);
        assert!(r.eta_s.is_some());
        r.finish();
        assert!(!r.running);
        assert_eq!(r.progress_ratio, 1.0);
    }

    #[test]
    fn errors_are_counted_beyond_what_is_kept() {
        let mut r = SweepReport::new(1, SweepRequest::new(SweepMode::Full, SweepTrigger::Api), 1);
        for i in 0..(MAX_ERRORS_KEPT + 10) {
            r.error(format!("e{i}"));
        }
        assert_eq!(r.error_count as usize, MAX_ERRORS_KEPT + 10);
        assert_eq!(r.errors.len(), MAX_ERRORS_KEPT);
    }

    #[test]
    fn divergence_left_depends_on_dry_run() {
        let mut r = SweepReport::new(
            1,
            SweepRequest::new(SweepMode::Exchange, SweepTrigger::Cli).dry_run(),
            3,
        );
        r.keys_divergent = 7;
        assert_eq!(r.divergence_left(), 7);
        r.dry_run = false;
        assert_eq!(r.divergence_left(), 0);
        r.keys_deferred = 2;
        assert_eq!(r.divergence_left(), 2);
        // Unversioned keys a `report-only` policy left count; adopted ones do not.
        r.keys_unversioned = 5;
        r.keys_adopted = 3;
        r.keys_unversioned_left = 2;
        assert_eq!(r.divergence_left(), 4);
        // Queue items a dry run would restore are divergence; restored ones are not.
        r.queue_items_restored_per_node = vec![0, 3, 0];
        assert_eq!(r.divergence_left(), 4);
        r.dry_run = true;
        assert_eq!(r.divergence_left(), 7 + 5 + 3);
    }
}
