//! Quorum arithmetic: how many node answers an operation needs, and whether the answers so far
//! decide it. Pure, so every rule is unit-tested here and nowhere else.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Consistency level of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// One node answers. Fast, may read stale data.
    One,
    /// The configured read/write quorum answers (R + W > N). Last-writer-wins by version.
    Quorum,
    /// Every configured node answers.
    All,
    /// Majority quorum in two phases (ABD): writes read the highest version first, reads write
    /// the newest value back to a majority before returning.
    Linearizable,
}

impl Consistency {
    pub const ALL_LEVELS: [Consistency; 4] = [
        Consistency::One,
        Consistency::Quorum,
        Consistency::All,
        Consistency::Linearizable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::One => "one",
            Consistency::Quorum => "quorum",
            Consistency::All => "all",
            Consistency::Linearizable => "linearizable",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Consistency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Consistency::ALL_LEVELS
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown consistency level {s:?}: expected one, quorum, all or linearizable"
                )
            })
    }
}

/// Majority of the configured node count (not of the nodes that happen to be up).
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// The configured quorum sizes of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuorumSizes {
    pub nodes: usize,
    pub read: usize,
    pub write: usize,
}

impl QuorumSizes {
    /// Quorum sizes for `nodes`; `read`/`write` of `None` mean majority.
    pub fn new(nodes: usize, read: Option<usize>, write: Option<usize>) -> Result<Self, String> {
        if nodes == 0 {
            return Err("at least one node is required".into());
        }
        let read = read.unwrap_or(majority(nodes));
        let write = write.unwrap_or(majority(nodes));
        for (name, v) in [("read", read), ("write", write)] {
            if v == 0 || v > nodes {
                return Err(format!(
                    "{name} quorum {v} must be between 1 and the node count {nodes}"
                ));
            }
        }
        if read + write <= nodes {
            return Err(format!(
                "read quorum {read} + write quorum {write} must exceed the node count {nodes}, \
                 or a read may miss the latest acknowledged write"
            ));
        }
        Ok(QuorumSizes { nodes, read, write })
    }

    /// Answers a read at `level` needs.
    pub fn read_quorum(&self, level: Consistency) -> usize {
        match level {
            Consistency::One => 1,
            Consistency::Quorum => self.read,
            Consistency::All => self.nodes,
            Consistency::Linearizable => majority(self.nodes),
        }
    }

    /// Acknowledgements a write at `level` needs.
    pub fn write_quorum(&self, level: Consistency) -> usize {
        match level {
            Consistency::One => 1,
            Consistency::Quorum => self.write,
            Consistency::All => self.nodes,
            Consistency::Linearizable => majority(self.nodes),
        }
    }
}

/// Where a fan-out stands after the answers so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Enough successes.
    Reached,
    /// Not decided yet: more answers are outstanding.
    Pending,
    /// Even if every outstanding node succeeds, the quorum cannot be met.
    Impossible,
}

/// Counts answers of one fan-out against its required size.
#[derive(Debug, Clone, Copy)]
pub struct QuorumTracker {
    required: usize,
    total: usize,
    succeeded: usize,
    failed: usize,
}

impl QuorumTracker {
    /// `total` is the number of nodes asked; `required` may exceed it (then it is impossible).
    pub fn new(required: usize, total: usize) -> Self {
        QuorumTracker {
            required,
            total,
            succeeded: 0,
            failed: 0,
        }
    }

    pub fn record(&mut self, success: bool) -> Decision {
        if success {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
        self.decision()
    }

    pub fn decision(&self) -> Decision {
        if self.succeeded >= self.required {
            Decision::Reached
        } else if self.total - self.failed.min(self.total) < self.required {
            Decision::Impossible
        } else {
            Decision::Pending
        }
    }

    pub fn succeeded(&self) -> usize {
        self.succeeded
    }

    pub fn required(&self) -> usize {
        self.required
    }
}

/// Which nodes a read asks (`quorum.read_fanout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFanout {
    /// As many healthy nodes as the level needs, in turn; the others only when one of those
    /// fails, does not count, or is slow.
    #[default]
    Needed,
    /// Every node at once: each read compares every copy (read repair), and the fastest
    /// answers decide.
    All,
}

/// The nodes a read asks at once, and those it asks only if it must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadWaves {
    pub first: Vec<usize>,
    pub rest: Vec<usize>,
}

/// Splits nodes `0..healthy.len()` for a read that needs `required` answers. Under `Needed`
/// the first wave is `required` of the healthy nodes, starting at `turn` (so that the load,
/// and the copies read repair compares, go round every node); with fewer healthy nodes than
/// that, every node is asked at once, as under `All`.
pub fn read_waves(fanout: ReadFanout, healthy: &[bool], required: usize, turn: usize) -> ReadWaves {
    let n = healthy.len();
    let every = || ReadWaves {
        first: (0..n).collect(),
        rest: Vec::new(),
    };
    if fanout == ReadFanout::All || n == 0 || healthy.iter().filter(|h| **h).count() < required {
        return every();
    }
    let order = (0..n).map(|i| (turn + i) % n);
    let first: Vec<usize> = order
        .clone()
        .filter(|&i| healthy[i])
        .take(required)
        .collect();
    let rest = order.filter(|i| !first.contains(i)).collect();
    ReadWaves { first, rest }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_needed_read_asks_as_many_healthy_nodes_as_required_in_turn() {
        let all = [true; 3];
        let w = |turn| read_waves(ReadFanout::Needed, &all, 2, turn);
        assert_eq!(w(0).first, [0, 1]);
        assert_eq!(w(0).rest, [2]);
        assert_eq!(w(1).first, [1, 2]);
        assert_eq!(w(2).first, [2, 0]);
        assert_eq!(w(2).rest, [1]);
        assert_eq!(w(5), w(2));
        let one_down = [true, false, true];
        let w = read_waves(ReadFanout::Needed, &one_down, 2, 1);
        assert_eq!((w.first, w.rest), (vec![2, 0], vec![1]));
    }

    #[test]
    fn too_few_healthy_nodes_or_all_asks_every_node_at_once() {
        let every = ReadWaves {
            first: vec![0, 1, 2],
            rest: vec![],
        };
        assert_eq!(
            read_waves(ReadFanout::Needed, &[true, false, false], 2, 0),
            every
        );
        assert_eq!(read_waves(ReadFanout::All, &[true; 3], 2, 1), every);
        assert_eq!(read_waves(ReadFanout::Needed, &[true; 3], 3, 1).rest, []);
        assert_eq!(read_waves(ReadFanout::Needed, &[], 1, 0).first, []);
    }

    #[test]
    fn majority_of_configured_nodes() {
        assert_eq!([1, 2, 3, 4, 5, 6, 7].map(majority), [1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn sizes_validate_overlap() {
        assert!(QuorumSizes::new(0, None, None).is_err());
        assert!(QuorumSizes::new(3, Some(1), Some(2)).is_err());
        assert!(QuorumSizes::new(3, Some(4), None).is_err());
        assert!(QuorumSizes::new(3, Some(0), None).is_err());
        let q = QuorumSizes::new(3, Some(1), Some(3)).unwrap();
        assert_eq!((q.read, q.write), (1, 3));
        let q = QuorumSizes::new(5, None, None).unwrap();
        assert_eq!((q.read, q.write), (3, 3));
    }

    #[test]
    fn per_level_sizes() {
        let q = QuorumSizes::new(5, Some(2), Some(4)).unwrap();
        assert_eq!(
            Consistency::ALL_LEVELS.map(|l| q.read_quorum(l)),
            [1, 2, 5, 3]
        );
        assert_eq!(
            Consistency::ALL_LEVELS.map(|l| q.write_quorum(l)),
            [1, 4, 5, 3]
        );
    }

    #[test]
    fn tracker_reaches_as_soon_as_enough_succeed() {
        let mut t = QuorumTracker::new(2, 3);
        assert_eq!(t.record(true), Decision::Pending);
        assert_eq!(t.record(true), Decision::Reached);
    }

    #[test]
    fn tracker_gives_up_as_soon_as_impossible() {
        let mut t = QuorumTracker::new(2, 3);
        assert_eq!(t.record(false), Decision::Pending);
        assert_eq!(t.record(false), Decision::Impossible);
        let mut t = QuorumTracker::new(3, 5);
        assert_eq!(t.record(true), Decision::Pending);
        assert_eq!(t.record(false), Decision::Pending);
        assert_eq!(t.record(false), Decision::Pending);
        assert_eq!(t.record(false), Decision::Impossible);
    }

    #[test]
    fn tracker_with_fewer_targets_than_required_is_impossible_at_once() {
        assert_eq!(QuorumTracker::new(3, 2).decision(), Decision::Impossible);
        assert_eq!(QuorumTracker::new(0, 0).decision(), Decision::Reached);
    }

    #[test]
    fn consistency_parses_case_insensitively() {
        assert_eq!(
            "LINEARIZABLE".parse::<Consistency>().unwrap(),
            Consistency::Linearizable
        );
        assert!("strong".parse::<Consistency>().is_err());
    }
}
