//! Per-shard health of a replica that is a Redis Cluster. A shard is one master and the slots
//! it owns. One master down makes that replica unable to answer for the keys of its slots
//! only: requests for those keys fail at once (no connection attempt, no wait for the node
//! timeout), and the replica keeps serving every other slot. The probe sets the table on each
//! pass from `CLUSTER SLOTS` and a `PING` of every master.

use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A range of hash slots, bounds included.
pub type SlotRange = std::ops::RangeInclusive<u16>;

/// One shard of a cluster replica, as `/v1/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ShardStatus {
    /// The master's `host:port`, as the cluster announces it.
    pub master: String,
    /// The slot ranges it owns, bounds included.
    pub slots: Vec<(u16, u16)>,
    /// Whether its last probe answered.
    pub up: bool,
    /// Why its last probe failed.
    pub last_error: Option<String>,
}

impl ShardStatus {
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }

    /// How many slots it owns.
    pub fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|&(a, b)| u32::from(b) - u32::from(a) + 1)
            .sum()
    }
}

/// A shard whose state changed between two probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardChange {
    pub master: String,
    pub up: bool,
    pub reason: Option<String>,
}

/// The shard table of one cluster replica (empty for a standalone server).
#[derive(Default)]
pub struct Shards {
    table: Mutex<Vec<ShardStatus>>,
    /// Whether any shard is down: requests check it first, without the lock.
    any_down: AtomicBool,
    /// A connection to the cluster failed since the last probe: until the next one, no slot
    /// is served. The cluster client reconnects to a master by itself, and a master that
    /// restarted empty must be seen by the probe (new run id: `recovering`) before any read
    /// counts its answers.
    unverified: AtomicBool,
}

/// Why every slot is refused between a failed connection and the next probe.
const UNVERIFIED: &str =
    "a connection to the cluster failed: no slot is served until the next probe";

impl Shards {
    /// Why `slot` is not served (its master is down, or no slot is until the next probe);
    /// `None` when it is.
    pub fn down_for(&self, slot: u16) -> Option<String> {
        if !self.any_down.load(Ordering::Relaxed) {
            return None;
        }
        if self.unverified.load(Ordering::Relaxed) {
            return Some(UNVERIFIED.into());
        }
        self.lock()
            .iter()
            .find(|s| !s.up && s.owns(slot))
            .map(|s| format!("the master of slot {slot} ({}) is down", s.master))
    }

    /// Whether `shards` names other masters than the table (a failover, a master added or
    /// removed): the cluster client's own slot map may be stale.
    pub fn masters_changed(&self, shards: &[ShardStatus]) -> bool {
        let table = self.lock();
        let mut old: Vec<&str> = table.iter().map(|s| s.master.as_str()).collect();
        let mut new: Vec<&str> = shards.iter().map(|s| s.master.as_str()).collect();
        old.sort_unstable();
        new.sort_unstable();
        !table.is_empty() && old != new
    }

    /// A connection to the cluster failed: no slot is served until the next probe.
    pub fn invalidate(&self) {
        self.unverified.store(true, Ordering::Relaxed);
        self.any_down.store(true, Ordering::Relaxed);
    }

    /// Installs a probe's view of the shards; returns the shards whose state changed (a
    /// master that appears for the first time counts as changed only when it is down; one
    /// that was down and owns no slot any more, its replica having taken over, as back up).
    pub fn update(&self, shards: Vec<ShardStatus>) -> Vec<ShardChange> {
        let mut table = self.lock();
        let replaced = table
            .iter()
            .filter(|old| !old.up && !shards.iter().any(|new| new.master == old.master))
            .map(|old| ShardChange {
                master: old.master.clone(),
                up: true,
                reason: Some("its slots moved to another master".into()),
            });
        let changes = replaced
            .collect::<Vec<_>>()
            .into_iter()
            .chain(
                shards
                    .iter()
                    .filter(|new| {
                        let was_up = table
                            .iter()
                            .find(|old| old.master == new.master)
                            .is_none_or(|old| old.up);
                        was_up != new.up
                    })
                    .map(|s| ShardChange {
                        master: s.master.clone(),
                        up: s.up,
                        reason: s.last_error.clone(),
                    }),
            )
            .collect();
        self.unverified.store(false, Ordering::Relaxed);
        self.any_down
            .store(shards.iter().any(|s| !s.up), Ordering::Relaxed);
        *table = shards;
        changes
    }

    /// Forgets the table (the replica is down as a whole, or reconnecting).
    pub fn clear(&self) {
        self.unverified.store(false, Ordering::Relaxed);
        self.any_down.store(false, Ordering::Relaxed);
        self.lock().clear();
    }

    pub fn snapshot(&self) -> Vec<ShardStatus> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ShardStatus>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(master: &str, slots: &[(u16, u16)], up: bool) -> ShardStatus {
        ShardStatus {
            master: master.into(),
            slots: slots.to_vec(),
            up,
            last_error: (!up).then(|| "connection refused".into()),
        }
    }

    #[test]
    fn a_down_shard_refuses_only_its_own_slots() {
        let shards = Shards::default();
        assert!(
            shards
                .update(vec![
                    shard("a:1", &[(0, 8191)], true),
                    shard("b:2", &[(8192, 16383)], true)
                ])
                .is_empty()
        );
        assert_eq!(shards.down_for(9000), None);
        let changes = shards.update(vec![
            shard("a:1", &[(0, 8191)], true),
            shard("b:2", &[(8192, 16383)], false),
        ]);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].master, "b:2");
        assert!(!changes[0].up);
        assert_eq!(
            shards.down_for(9000).as_deref(),
            Some("the master of slot 9000 (b:2) is down")
        );
        assert!(shards.masters_changed(&[
            shard("a:1", &[(0, 8191)], true),
            shard("c:3", &[(8192, 16383)], true),
        ]));
        assert_eq!(shards.down_for(100), None);
        // Its replica took over: a new master for the same slots, up.
        let changes = shards.update(vec![
            shard("a:1", &[(0, 8191)], true),
            shard("c:3", &[(8192, 16383)], true),
        ]);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!((changes[0].master.as_str(), changes[0].up), ("b:2", true));
        assert_eq!(shards.down_for(9000), None);
    }

    #[test]
    fn a_failed_connection_refuses_every_slot_until_the_next_probe() {
        let shards = Shards::default();
        shards.update(vec![shard("a:1", &[(0, 16383)], true)]);
        shards.invalidate();
        assert!(
            shards
                .down_for(5)
                .is_some_and(|why| why.contains("until the next probe"))
        );
        shards.update(vec![shard("a:1", &[(0, 16383)], true)]);
        assert_eq!(shards.down_for(5), None);
    }

    #[test]
    fn slot_count_adds_the_ranges() {
        let s = shard("a:1", &[(0, 99), (200, 200)], true);
        assert_eq!(s.slot_count(), 101);
        assert!(s.owns(200) && !s.owns(150));
    }
}
