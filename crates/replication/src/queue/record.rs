//! The state of one queue item as every node stores it, and how two nodes' copies merge. Pure.
//!
//! A record is `{state}|{fence}|{stamp}|{deliveries}|{not_before_ms}|{priority}`:
//! - state: `r` ready, `l` leased, `x` dead, `a` acknowledged (tombstone);
//! - fence: the fence of the item lease under which it was last written (0 at creation);
//! - stamp: a 34-hex HLC version of the write, ordering writes under the same lease;
//! - deliveries: how often it has been handed out;
//! - not_before_ms: when a ready item becomes claimable (a delay), or when a lease runs out;
//! - priority: fixed at creation.
//!
//! Merge keeps the record greatest by (rank, fence, stamp), rank being 0 for `r`/`l`, 1 for
//! `x`, 2 for `a`, with deliveries the max of both. That is a join (commutative, associative,
//! idempotent), so replaying or repairing in any order converges, and a removal (`x`, `a`) is
//! never undone by a node that missed it. The Lua `MERGE` script implements the same rule.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ItemState {
    Ready,
    Leased,
    Dead,
    Acked,
}

impl ItemState {
    fn code(self) -> char {
        match self {
            ItemState::Ready => 'r',
            ItemState::Leased => 'l',
            ItemState::Dead => 'x',
            ItemState::Acked => 'a',
        }
    }

    fn from_code(c: &str) -> Option<ItemState> {
        Some(match c {
            "r" => ItemState::Ready,
            "l" => ItemState::Leased,
            "x" => ItemState::Dead,
            "a" => ItemState::Acked,
            _ => return None,
        })
    }

    /// Ready and leased are the same rank: which wins is decided by fence and stamp.
    pub fn rank(self) -> u8 {
        match self {
            ItemState::Ready | ItemState::Leased => 0,
            ItemState::Dead => 1,
            ItemState::Acked => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub state: ItemState,
    pub fence: u64,
    pub stamp: String,
    pub deliveries: u32,
    pub not_before_ms: u64,
    pub priority: i64,
}

/// How an item counts in the queue's depths at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Ready,
    Leased,
    Delayed,
    Dead,
    Gone,
}

impl Record {
    pub fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}",
            self.state.code(),
            self.fence,
            self.stamp,
            self.deliveries,
            self.not_before_ms,
            self.priority
        )
    }

    pub fn parse(raw: &str) -> Option<Record> {
        let mut f = raw.split('|');
        let rec = Record {
            state: ItemState::from_code(f.next()?)?,
            fence: f.next()?.parse().ok()?,
            stamp: f.next()?.to_string(),
            deliveries: f.next()?.parse().ok()?,
            not_before_ms: f.next()?.parse().ok()?,
            priority: f.next()?.parse().ok()?,
        };
        f.next().is_none().then_some(rec)
    }

    fn order(&self, other: &Record) -> Ordering {
        (self.state.rank(), self.fence, &self.stamp).cmp(&(
            other.state.rank(),
            other.fence,
            &other.stamp,
        ))
    }

    /// The join of two copies of one item.
    pub fn merge(&self, other: &Record) -> Record {
        let mut winner = if self.order(other) == Ordering::Less {
            other.clone()
        } else {
            self.clone()
        };
        winner.deliveries = self.deliveries.max(other.deliveries);
        winner
    }

    /// Whether a consumer may claim it at `now` (a lease that ran out makes it claimable).
    pub fn claimable(&self, now: u64) -> bool {
        matches!(self.state, ItemState::Ready | ItemState::Leased) && self.not_before_ms <= now
    }

    pub fn depth(&self, now: u64) -> Depth {
        match self.state {
            ItemState::Acked => Depth::Gone,
            ItemState::Dead => Depth::Dead,
            _ if self.not_before_ms <= now => Depth::Ready,
            ItemState::Leased => Depth::Leased,
            ItemState::Ready => Depth::Delayed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: ItemState, fence: u64, stamp: &str, deliveries: u32, nb: u64) -> Record {
        Record {
            state,
            fence,
            stamp: stamp.into(),
            deliveries,
            not_before_ms: nb,
            priority: -3,
        }
    }

    fn samples() -> Vec<Record> {
        use ItemState::*;
        vec![
            rec(Ready, 0, "a0", 0, 10),
            rec(Leased, 4, "b1", 1, 500),
            rec(Ready, 4, "b2", 1, 20),
            rec(Leased, 7, "c1", 2, 900),
            rec(Dead, 7, "c2", 2, 900),
            rec(Acked, 4, "b3", 1, 0),
            rec(Ready, 9, "d1", 0, 5),
        ]
    }

    #[test]
    fn records_round_trip() {
        for r in samples() {
            assert_eq!(Record::parse(&r.encode()), Some(r));
        }
        assert_eq!(Record::parse("r|1|s|0|0"), None);
        assert_eq!(Record::parse("q|1|s|0|0|0"), None);
        assert_eq!(Record::parse("r|1|s|0|0|0|extra"), None);
    }

    #[test]
    fn merge_is_a_join() {
        let s = samples();
        for a in &s {
            assert_eq!(a.merge(a), *a, "idempotent");
            for b in &s {
                assert_eq!(a.merge(b), b.merge(a), "commutative");
                for c in &s {
                    assert_eq!(a.merge(b).merge(c), a.merge(&b.merge(c)), "associative");
                }
            }
        }
    }

    #[test]
    fn removals_win_over_any_live_copy() {
        let s = samples();
        let acked = &s[5];
        for other in &s {
            assert_eq!(other.merge(acked).state, ItemState::Acked);
        }
        // A dead record beats a live one with a higher fence too.
        assert_eq!(s[4].merge(&s[6]).state, ItemState::Dead);
        // Deliveries never go back.
        assert_eq!(s[6].merge(&s[3]).deliveries, 2);
    }

    #[test]
    fn depth_follows_state_and_time() {
        use ItemState::*;
        assert_eq!(rec(Ready, 0, "", 0, 10).depth(10), Depth::Ready);
        assert_eq!(rec(Ready, 0, "", 0, 11).depth(10), Depth::Delayed);
        assert_eq!(rec(Leased, 1, "", 1, 11).depth(10), Depth::Leased);
        assert_eq!(rec(Leased, 1, "", 1, 9).depth(10), Depth::Ready);
        assert!(rec(Leased, 1, "", 1, 9).claimable(10));
        assert!(!rec(Dead, 1, "", 1, 0).claimable(10));
        assert_eq!(rec(Acked, 1, "", 1, 0).depth(10), Depth::Gone);
    }
}
