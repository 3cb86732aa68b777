//! What a node may have lost and since when: the recovering state, its scope (the whole
//! node, or a cluster's slots), and when the node's answers count again for reads and locks.

use super::*;

impl Node {
    pub(super) fn mark_recovering(&self, reason: &str, scope: RecoveringScope) {
        let (grew, change) = {
            let mut t = self.tracker();
            let mut current = self.recovering_scope();
            let grew = if t.is_recovering() {
                current.widen(scope)
            } else {
                *current = scope;
                true
            };
            (grew, t.mark_recovering())
        };
        // The flag may flip while the node looks down (restarted while unreachable): the
        // timestamp must be fresh all the same, or writes since an earlier episode are missed.
        // A scope that grew is a new loss: an exchange that read its digests before it must
        // not take the node for caught up.
        if grew {
            let now = quorumd_core::hlc::wall_clock_ms();
            *self.recovering_since() = Some(now);
            self.losses_marked
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let lost = self.recovering_scope().clone();
            self.episodes().record(now, lost);
            self.shared.attention.notify_one();
        }
        self.announce(change, reason);
    }

    pub(super) fn recovering_scope(&self) -> std::sync::MutexGuard<'_, RecoveringScope> {
        self.recovering_scope
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node's answer about `key` counts toward a read quorum: not while it may
    /// lack writes it acknowledged for it (recovering, for a cluster only in the slots of the
    /// shards that lost them). `None`: a read of no one key (a scan), which needs every slot.
    pub fn counts_for_reads(&self, key: Option<&[u8]>) -> bool {
        if self.health() != Health::Recovering {
            return true;
        }
        key.is_some_and(|k| !self.recovering_scope().contains(slot_of(k)))
    }

    fn episodes(&self) -> std::sync::MutexGuard<'_, Episodes> {
        self.episodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node may count toward the majority of the lock at `key` (`None`: any
    /// lock), given that the lock gate covered every loss that began by `covered_ms` (the
    /// longest lock TTL had passed and fences were caught up): true unless a later loss may
    /// have taken `key`'s slot. A standalone server's loss takes every key.
    pub fn counts_for_locks(&self, covered_ms: Option<u64>, key: Option<&[u8]>) -> bool {
        self.episodes()
            .untouched_since(covered_ms, key.map(slot_of))
    }

    /// Adds a loss the lock gate must cover although this process did not see it happen (a
    /// lock gate read from the node): it keeps the node out of lock majorities as a loss seen
    /// at `since_ms` would, and changes nothing about reads, which the sentinel guards.
    pub fn record_lock_episode(&self, since_ms: u64, scope: RecoveringScope) {
        let mut since = self.recovering_since();
        *since = Some(since.map_or(since_ms, |s| s.max(since_ms)));
        self.episodes().record(since_ms, scope);
    }

    /// The lock gate covered every loss that began by `covered_ms`.
    pub fn losses_covered(&self, covered_ms: u64) {
        self.episodes().forget_until(covered_ms);
    }

    /// When the node was marked recovering (wall-clock ms), if it is recovering.
    pub fn recovering_since_ms(&self) -> Option<u64> {
        (self.health() == Health::Recovering)
            .then(|| *self.recovering_since())
            .flatten()
    }

    /// When the node was last marked recovering (wall-clock ms), even if the sweep has since
    /// brought it back in sync: locks keep a restarted node out of their majorities for the
    /// longest lock TTL after this, however fast the sweep was.
    pub fn last_recovering_since_ms(&self) -> Option<u64> {
        *self.recovering_since()
    }

    /// How many losses have been marked so far: a count that changed between two readings
    /// says a loss was marked in between.
    pub fn losses_marked(&self) -> u64 {
        self.losses_marked.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn recovering_since(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.recovering_since_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The sweep brought a recovering node back in sync: it counts for reads again.
    pub fn mark_synced(&self) {
        let change = self.tracker().synced();
        self.announce(change, "back in sync");
    }
}
