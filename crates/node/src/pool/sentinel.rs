//! What one instance knows of each node's sentinel key, and whether a node that lacks it lost
//! data. Pure: fed with probe results and clock readings.
//!
//! The sentinel is written node by node (by an exchange that found the node in sync), so for a
//! moment some nodes hold it and some do not yet: on a fresh cluster, or when another instance
//! starts just as the first writes it. A node without it counts as wiped when this instance
//! saw it holding the sentinel before, or when another node has held the sentinel for at least
//! a grace period longer than one such round of writes. How long a
//! node has held it is the longer of what this instance saw (since its first probe that found
//! it) and the age the sentinel's value states (the wall-clock ms it was written, which may
//! come from another instance's clock: a clock ahead only delays detection, by the grace at
//! most).

use std::time::{Duration, Instant};

/// One node's sentinel as last probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Absent,
    /// Held since at least `since`.
    Held {
        since: Instant,
    },
}

/// The sentinel state of every node of a pool.
#[derive(Debug)]
pub struct Sentinels {
    seen: Vec<Option<Seen>>,
    /// Per node: whether this instance ever saw it hold the sentinel (or wrote it there).
    held_before: Vec<bool>,
    grace: Duration,
}

impl Sentinels {
    /// `nodes` nodes, none probed yet.
    pub fn new(nodes: usize, grace: Duration) -> Self {
        Sentinels {
            seen: vec![None; nodes],
            held_before: vec![false; nodes],
            grace,
        }
    }

    /// The grace for a pool: one round of sentinel writes (a node timeout per node) and two
    /// probe intervals for the probes to see it.
    pub fn grace_for(nodes: usize, node_timeout: Duration, health_interval: Duration) -> Duration {
        node_timeout * nodes as u32 + health_interval * 2
    }

    /// Records a probe of `id`: its sentinel's value as read (`None`: absent). Returns whether
    /// the node lost data: it lacks the sentinel, and held it before or another node has held
    /// it past the grace.
    pub fn probed(
        &mut self,
        id: usize,
        value: Option<&str>,
        now: Instant,
        wall_now_ms: u64,
    ) -> bool {
        match value {
            None => {
                self.seen[id] = Some(Seen::Absent);
                self.held_before[id] || self.held_elsewhere(id, now)
            }
            Some(v) => {
                // An unreadable value (written by hand) is taken as written just now.
                let age = v
                    .trim()
                    .parse::<u64>()
                    .map(|ms| Duration::from_millis(wall_now_ms.saturating_sub(ms)))
                    .unwrap_or_default();
                self.hold(id, now.checked_sub(age).unwrap_or(now));
                false
            }
        }
    }

    /// Records that `id` was given the sentinel at `now`.
    pub fn written(&mut self, id: usize, now: Instant) {
        self.hold(id, now);
    }

    /// Whether `id` holds the sentinel, as last probed or written (`None`: not probed yet).
    pub fn has(&self, id: usize) -> Option<bool> {
        self.seen[id].map(|s| matches!(s, Seen::Held { .. }))
    }

    fn hold(&mut self, id: usize, since: Instant) {
        let since = match self.seen[id] {
            Some(Seen::Held { since: earlier }) => earlier.min(since),
            _ => since,
        };
        self.seen[id] = Some(Seen::Held { since });
        self.held_before[id] = true;
    }

    fn held_elsewhere(&self, id: usize, now: Instant) -> bool {
        self.seen.iter().enumerate().any(|(i, s)| {
            i != id
                && matches!(s, Some(Seen::Held { since }) if now.saturating_duration_since(*since) >= self.grace)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(2);
    const WALL: u64 = 1_800_000_000_000;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn a_node_without_the_sentinel_while_others_hold_an_old_one_lost_data() {
        let t = Instant::now();
        let mut s = Sentinels::new(3, GRACE);
        let written_an_hour_ago = (WALL - 3_600_000).to_string();
        assert!(!s.probed(0, Some(&written_an_hour_ago), at(t, 0), WALL));
        assert!(s.probed(1, None, at(t, 0), WALL));
        assert_eq!(
            (s.has(0), s.has(1), s.has(2)),
            (Some(true), Some(false), None)
        );
    }

    #[test]
    fn a_sentinel_being_written_round_the_nodes_is_not_a_loss() {
        let t = Instant::now();
        let mut s = Sentinels::new(3, GRACE);
        let just_now = WALL.to_string();
        assert!(!s.probed(0, Some(&just_now), at(t, 0), WALL));
        assert!(!s.probed(1, None, at(t, 100), WALL + 100));
        // Still missing once the grace has passed: lost.
        assert!(s.probed(1, None, at(t, 2_000), WALL + 2_000));
    }

    #[test]
    fn a_clock_ahead_delays_detection_by_the_grace_at_most() {
        let t = Instant::now();
        let mut s = Sentinels::new(2, GRACE);
        let from_the_future = (WALL + 3_600_000).to_string();
        assert!(!s.probed(0, Some(&from_the_future), at(t, 0), WALL));
        assert!(!s.probed(1, None, at(t, 1_000), WALL + 1_000));
        assert!(s.probed(1, None, at(t, 2_000), WALL + 2_000));
    }

    #[test]
    fn the_earliest_sighting_counts_and_a_write_is_a_sighting() {
        let t = Instant::now();
        let mut s = Sentinels::new(2, GRACE);
        s.written(0, at(t, 0));
        // Rewritten later (a recovery): still held since the first sighting.
        assert!(!s.probed(
            0,
            Some(&(WALL + 5_000).to_string()),
            at(t, 5_000),
            WALL + 5_000
        ));
        assert!(s.probed(1, None, at(t, 5_000), WALL + 5_000));
        // An unreadable value counts as fresh.
        let mut fresh = Sentinels::new(2, GRACE);
        assert!(!fresh.probed(0, Some("by hand"), at(t, 0), WALL));
        assert!(!fresh.probed(1, None, at(t, 1_000), WALL));
    }

    #[test]
    fn losing_a_sentinel_this_instance_saw_is_a_loss_at_once() {
        let t = Instant::now();
        let mut s = Sentinels::new(2, GRACE);
        let just_now = WALL.to_string();
        assert!(!s.probed(0, Some(&just_now), at(t, 0), WALL));
        assert!(!s.probed(1, Some(&just_now), at(t, 0), WALL));
        assert!(
            s.probed(1, None, at(t, 100), WALL + 100),
            "FLUSHALL right after the write"
        );
        // Written again by the recovery: found again.
        s.written(1, at(t, 500));
        assert_eq!(s.has(1), Some(true));
    }

    #[test]
    fn a_node_lacking_the_sentinel_says_nothing_about_another() {
        let t = Instant::now();
        let mut s = Sentinels::new(2, GRACE);
        assert!(!s.probed(0, None, at(t, 0), WALL));
        assert!(!s.probed(1, None, at(t, 10_000), WALL));
    }
}
