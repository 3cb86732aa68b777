//! Per-shard health of a replica that is a Redis Cluster. A shard is one master and the slots
//! it owns. One master down makes that replica unable to answer for the keys of its slots
//! only: requests for those keys fail at once (no connection attempt, no wait for the node
//! timeout), and the replica keeps serving every other slot. The probe sets the table on each
//! pass from `CLUSTER SLOTS` and a `PING` of every master. A request that fails on one master
//! (its connection, or the node timeout) makes that shard `suspect` until the next probe, not
//! the replica; each master's latency is kept here too.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A range of hash slots, bounds included.
pub type SlotRange = std::ops::RangeInclusive<u16>;

/// One shard of a cluster replica, as `/v1/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShardStatus {
    /// The master's `host:port`, as the cluster announces it.
    pub master: String,
    /// The slot ranges it owns, bounds included.
    pub slots: Vec<(u16, u16)>,
    /// Whether its last probe answered.
    pub up: bool,
    /// Why its last probe failed.
    pub last_error: Option<String>,
    /// The master's run id as last probed (kept while it does not answer).
    pub run_id: Option<String>,
    /// A request to it failed since its last probe: its slots wait for the next probe (which
    /// the failure wakes at once), the replica's other slots are served.
    pub suspect: bool,
    /// Smoothed round trip of its probes and of the client requests that went to it alone, in
    /// milliseconds; `None` before the first.
    pub latency_ms: Option<f64>,
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

/// Slots whose master may have lost writes it acknowledged, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostSlots {
    pub master: String,
    pub slots: Vec<(u16, u16)>,
    pub reason: &'static str,
}

/// The shards of `probed` whose master may have lost acknowledged writes since the run ids
/// `known` were seen: a master that restarted (its run id changed), or one not known before
/// that owns slots, a replica promoted by a failover (which may lack its master's last
/// writes). Nothing before the first probe: a first sight is not a loss.
pub fn lost_slots(known: &HashMap<String, String>, probed: &[ShardStatus]) -> Vec<LostSlots> {
    if known.is_empty() {
        return Vec::new();
    }
    probed
        .iter()
        .filter(|s| !s.slots.is_empty())
        .filter_map(|s| {
            let now = s.run_id.as_ref()?;
            let reason = match known.get(&s.master) {
                Some(before) if before != now => "its master restarted (run_id changed)",
                Some(_) => return None,
                None => "a new master (failover) may lack its predecessor's last writes",
            };
            Some(LostSlots {
                master: s.master.clone(),
                slots: s.slots.clone(),
                reason,
            })
        })
        .collect()
}

/// What a recovering replica may have lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveringScope {
    /// Anything: a standalone server, or a cluster whose losses are not known per shard.
    Whole,
    /// Only these slots (a cluster's shards that restarted, failed over or were wiped).
    Slots(Vec<(u16, u16)>),
}

impl RecoveringScope {
    /// `all`, or the slot ranges as `a-b,c-d`: how a lock gate stores it on a node.
    pub fn to_text(&self) -> String {
        match self {
            RecoveringScope::Whole => "all".into(),
            RecoveringScope::Slots(ranges) => ranges
                .iter()
                .map(|(a, b)| format!("{a}-{b}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// The inverse of [`RecoveringScope::to_text`]; `None` when it does not parse.
    pub fn parse(text: &str) -> Option<RecoveringScope> {
        if text == "all" {
            return Some(RecoveringScope::Whole);
        }
        let ranges = text
            .split(',')
            .map(|r| {
                let (a, b) = r.split_once('-')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect::<Option<Vec<(u16, u16)>>>()?;
        Some(RecoveringScope::Slots(ranges))
    }

    /// Adds `more` to what is lost; returns whether that grew.
    pub fn widen(&mut self, more: RecoveringScope) -> bool {
        match (&mut *self, more) {
            (RecoveringScope::Whole, _) => false,
            (_, RecoveringScope::Whole) => {
                *self = RecoveringScope::Whole;
                true
            }
            (RecoveringScope::Slots(have), RecoveringScope::Slots(more)) => {
                let before = have.len();
                for range in more {
                    if !have.contains(&range) {
                        have.push(range);
                    }
                }
                have.len() != before
            }
        }
    }

    /// Whether a key of `slot` may have been lost.
    pub fn contains(&self, slot: u16) -> bool {
        match self {
            RecoveringScope::Whole => true,
            RecoveringScope::Slots(ranges) => ranges.iter().any(|&(a, b)| (a..=b).contains(&slot)),
        }
    }
}

/// A replica's losses, each as its recovery episode began or grew: (wall-clock ms, what it may
/// have lost by then). Locks keep a restarted replica out of their majorities for the longest
/// lock TTL after a loss, however fast the sweep catches it up; per episode, so that a shard's
/// loss keeps the replica out only for the locks of that shard's slots.
#[derive(Debug, Default)]
pub struct Episodes(std::collections::VecDeque<(u64, RecoveringScope)>);

impl Episodes {
    /// The longest history kept: past it the two oldest episodes merge into one that lost
    /// everything (the later start), which can only keep the replica out longer, never less.
    const KEPT: usize = 32;

    pub fn record(&mut self, since_ms: u64, scope: RecoveringScope) {
        self.0.push_back((since_ms, scope));
        if self.0.len() > Self::KEPT {
            self.0.pop_front();
            if let Some(oldest) = self.0.front_mut() {
                oldest.1 = RecoveringScope::Whole;
            }
        }
    }

    /// Whether a key of `slot` is outside every loss that began after `covered_ms` (`None`:
    /// no loss is covered yet). `None` for the slot: a question about every key.
    pub fn untouched_since(&self, covered_ms: Option<u64>, slot: Option<u16>) -> bool {
        self.0
            .iter()
            .filter(|(since, _)| covered_ms.is_none_or(|c| *since > c))
            .all(|(_, scope)| slot.is_some_and(|s| !scope.contains(s)))
    }

    /// Forgets the episodes that began by `covered_ms`: everything they lost is back.
    pub fn forget_until(&mut self, covered_ms: u64) {
        self.0.retain(|(since, _)| *since > covered_ms);
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
    /// Each master's last known run id, kept when the table is cleared: a master that
    /// restarted while the whole replica was unreachable is still seen to have.
    run_ids: Mutex<HashMap<String, String>>,
    /// Each master's smoothed latency in ms (α as for a node), shown in the table's entries.
    latency: Mutex<HashMap<String, f64>>,
}

/// Smoothing factor of a master's latency average, the node's (`pool::health`).
const LATENCY_ALPHA: f64 = 0.2;

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
            .find(|s| (!s.up || s.suspect) && s.owns(slot))
            .map(|s| match s.up {
                false => format!("the master of slot {slot} ({}) is down", s.master),
                true => format!(
                    "the master of slot {slot} ({}) failed a request: its slots wait for the next probe",
                    s.master
                ),
            })
    }

    /// The master that owns `slot` per the table, if known.
    pub fn master_of(&self, slot: u16) -> Option<String> {
        self.lock()
            .iter()
            .find(|s| s.owns(slot))
            .map(|s| s.master.clone())
    }

    /// A request to `master` failed (its connection, or no answer within the node timeout):
    /// its slots are refused until the next probe, as a failed connection to the whole cluster
    /// refuses every slot, since the cluster client reconnects to that master by itself and it
    /// may come back empty before the probe sees its new run id. Returns whether it was not
    /// suspect already (false also for a master the table does not know).
    pub fn suspect(&self, master: &str) -> bool {
        let mut table = self.lock();
        let Some(s) = table.iter_mut().find(|s| s.master == master) else {
            return false;
        };
        let newly = s.up && !s.suspect;
        s.suspect = true;
        self.any_down.store(true, Ordering::Relaxed);
        newly
    }

    /// Feeds a round trip of `master` into its smoothed latency.
    pub fn record_latency(&self, master: &str, rtt: std::time::Duration) {
        let ms = rtt.as_secs_f64() * 1000.0;
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        latency
            .entry(master.to_owned())
            .and_modify(|avg| *avg += LATENCY_ALPHA * (ms - *avg))
            .or_insert(ms);
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
    pub fn update(&self, mut shards: Vec<ShardStatus>) -> Vec<ShardChange> {
        let mut table = self.lock();
        for new in shards.iter_mut().filter(|s| s.run_id.is_none()) {
            new.run_id = table
                .iter()
                .find(|old| old.master == new.master)
                .and_then(|old| old.run_id.clone());
        }
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
            .store(shards.iter().any(|s| !s.up || s.suspect), Ordering::Relaxed);
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|master, _| shards.iter().any(|s| &s.master == master));
        *table = shards;
        changes
    }

    /// Forgets the table (the replica is down as a whole, or reconnecting).
    pub fn clear(&self) {
        self.unverified.store(false, Ordering::Relaxed);
        self.any_down.store(false, Ordering::Relaxed);
        self.lock().clear();
    }

    /// The slots of `probed` whose master may have lost acknowledged writes (`lost_slots`);
    /// remembers the run ids it answered with for the next probe.
    pub fn lost_since_last_probe(&self, probed: &[ShardStatus]) -> Vec<LostSlots> {
        let mut known = self.run_ids.lock().unwrap_or_else(|p| p.into_inner());
        let lost = lost_slots(&known, probed);
        for s in probed {
            if let Some(id) = &s.run_id {
                known.insert(s.master.clone(), id.clone());
            }
        }
        lost
    }

    /// The table, each shard with its latency.
    pub fn snapshot(&self) -> Vec<ShardStatus> {
        let mut table = self.lock().clone();
        let latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        for s in &mut table {
            s.latency_ms = latency.get(&s.master).copied();
        }
        table
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
            run_id: up.then(|| format!("run-{master}")),
            suspect: false,
            latency_ms: None,
        }
    }

    #[test]
    fn a_restarted_or_new_master_has_lost_its_slots_and_no_other() {
        let shards = Shards::default();
        let a = || shard("a:1", &[(0, 8191)], true);
        let b = || shard("b:2", &[(8192, 16383)], true);
        assert!(
            shards.lost_since_last_probe(&[a(), b()]).is_empty(),
            "first sight"
        );
        assert!(shards.lost_since_last_probe(&[a(), b()]).is_empty());
        // b restarted: only its slots.
        let restarted = ShardStatus {
            run_id: Some("run-b-again".into()),
            ..b()
        };
        let lost = shards.lost_since_last_probe(&[a(), restarted.clone()]);
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(
            (lost[0].master.as_str(), &lost[0].slots[..]),
            ("b:2", &[(8192, 16383)][..])
        );
        // Down (no run id): nothing known, nothing lost; back with the same run id: nothing.
        let down = shard("b:2", &[(8192, 16383)], false);
        assert!(shards.lost_since_last_probe(&[a(), down]).is_empty());
        assert!(shards.lost_since_last_probe(&[a(), restarted]).is_empty());
        // Its replica promoted: a master never seen, owning b's slots.
        let lost = shards.lost_since_last_probe(&[a(), shard("c:3", &[(8192, 16383)], true)]);
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(lost[0].master, "c:3");
        // A master added without slots has nothing to lose.
        assert!(
            shards
                .lost_since_last_probe(&[a(), shard("d:4", &[], true)])
                .is_empty()
        );
    }

    #[test]
    fn a_scope_grows_with_new_slots_only() {
        let mut scope = RecoveringScope::Slots(vec![(0, 99)]);
        assert!(!scope.widen(RecoveringScope::Slots(vec![(0, 99)])));
        assert!(scope.widen(RecoveringScope::Slots(vec![(100, 199)])));
        assert_eq!(scope, RecoveringScope::Slots(vec![(0, 99), (100, 199)]));
        assert!(scope.widen(RecoveringScope::Whole));
        assert!(!scope.widen(RecoveringScope::Slots(vec![(5, 5)])));
        assert_eq!(scope, RecoveringScope::Whole);
    }

    #[test]
    fn a_key_counts_again_once_no_uncovered_loss_holds_its_slot() {
        let mut e = Episodes::default();
        assert!(e.untouched_since(None, Some(7)));
        e.record(100, RecoveringScope::Slots(vec![(0, 99)]));
        e.record(200, RecoveringScope::Slots(vec![(0, 99), (500, 599)]));
        assert!(!e.untouched_since(None, Some(7)));
        assert!(!e.untouched_since(None, Some(550)));
        assert!(e.untouched_since(None, Some(300)));
        // A question about every key is never answered for a replica with a loss.
        assert!(!e.untouched_since(None, None));
        // Covered up to the first episode: the second still holds both ranges.
        assert!(!e.untouched_since(Some(100), Some(7)));
        assert!(e.untouched_since(Some(200), Some(7)));
        assert!(e.untouched_since(Some(200), None));
        e.forget_until(100);
        assert!(!e.untouched_since(None, Some(550)));
        e.forget_until(200);
        assert!(e.untouched_since(None, None));
        let mut whole = Episodes::default();
        whole.record(5, RecoveringScope::Whole);
        assert!(!whole.untouched_since(None, Some(0)));
    }

    #[test]
    fn a_long_history_merges_into_a_wider_loss_never_a_narrower_one() {
        let mut e = Episodes::default();
        for i in 0..=Episodes::KEPT as u64 {
            e.record(i, RecoveringScope::Slots(vec![(i as u16, i as u16)]));
        }
        assert_eq!(e.0.len(), Episodes::KEPT);
        // Slot 0's episode was dropped, but the oldest kept one now holds every slot.
        assert!(!e.untouched_since(None, Some(0)));
        assert!(!e.untouched_since(None, Some(16_000)));
        assert!(e.untouched_since(Some(1), Some(16_000)));
    }

    #[test]
    fn a_down_master_keeps_its_last_run_id_in_the_table() {
        let shards = Shards::default();
        shards.update(vec![shard("a:1", &[(0, 16383)], true)]);
        shards.update(vec![shard("a:1", &[(0, 16383)], false)]);
        assert_eq!(shards.snapshot()[0].run_id.as_deref(), Some("run-a:1"));
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
    fn a_failed_request_holds_back_its_master_only_until_the_next_probe() {
        let shards = Shards::default();
        let both = || {
            vec![
                shard("a:1", &[(0, 8191)], true),
                shard("b:2", &[(8192, 16383)], true),
            ]
        };
        shards.update(both());
        assert_eq!(shards.master_of(9000).as_deref(), Some("b:2"));
        assert!(shards.suspect("b:2"));
        assert!(!shards.suspect("b:2"), "already suspect");
        assert!(!shards.suspect("z:9"), "not in the table");
        assert!(
            shards
                .down_for(9000)
                .is_some_and(|why| why.contains("b:2") && why.contains("next probe"))
        );
        assert_eq!(shards.down_for(100), None, "the other master still serves");
        assert!(shards.snapshot()[1].suspect);
        // The probe found it answering: served again, and no change to report (it never
        // went down).
        assert!(shards.update(both()).is_empty());
        assert_eq!(shards.down_for(9000), None);
    }

    #[test]
    fn latency_is_kept_per_master_and_forgotten_when_it_leaves() {
        let shards = Shards::default();
        shards.update(vec![
            shard("a:1", &[(0, 8191)], true),
            shard("b:2", &[(8192, 16383)], true),
        ]);
        shards.record_latency("a:1", std::time::Duration::from_millis(10));
        shards.record_latency("a:1", std::time::Duration::from_millis(20));
        let table = shards.snapshot();
        assert!((table[0].latency_ms.unwrap() - 12.0).abs() < 1e-9);
        assert_eq!(table[1].latency_ms, None);
        shards.update(vec![shard("b:2", &[(0, 16383)], true)]);
        shards.record_latency("b:2", std::time::Duration::from_millis(1));
        shards.update(vec![shard("a:1", &[(0, 16383)], true)]);
        assert_eq!(
            shards.snapshot()[0].latency_ms,
            None,
            "a:1 left and came back"
        );
    }

    #[test]
    fn slot_count_adds_the_ranges() {
        let s = shard("a:1", &[(0, 99), (200, 200)], true);
        assert_eq!(s.slot_count(), 101);
        assert!(s.owns(200) && !s.owns(150));
    }
}
