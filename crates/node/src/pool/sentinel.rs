//! What one instance knows of each node's sentinel key, and whether a node that lacks it lost
//! data. Pure: fed with probe results and the sweep's writes.
//!
//! A node lacks the sentinel in two cases that look alike on the node itself: it lost its data
//! (a restart without persistence, `FLUSHALL`), or it was never given the sentinel (it was
//! unreachable, or behind, whenever an exchange found the others in sync). Only the first is
//! a loss: a node that was never given the sentinel acknowledged nothing it no longer holds.
//! So the decision rests on whether the node was *given* the sentinel, never on timing: it
//! was if this instance saw it hold the sentinel (or wrote it there), or if any node records
//! it in its `{prefix}sentinels` hash, which the sweep fills with the nodes it knows hold the
//! sentinel, after writing it. A wipe takes the node's own sentinel and records with it, but
//! the records on the other nodes survive, and they survive a restart of quorumd too.

/// The sentinel state of every node of a pool.
#[derive(Debug)]
pub struct Sentinels {
    /// Per node: `host:port/db`, as the records name it.
    identities: Vec<String>,
    /// Per node: whether it held the sentinel when last probed or written (`None`: not yet
    /// probed).
    seen: Vec<Option<bool>>,
    /// Per node: whether it was ever given the sentinel, as far as this instance knows.
    given: Vec<bool>,
    /// Per node: the nodes its records name, as last probed or written.
    recorded: Vec<Vec<bool>>,
}

impl Sentinels {
    /// The nodes with these identities (`host:port/db`), none probed yet.
    pub fn new(identities: Vec<String>) -> Self {
        let n = identities.len();
        Sentinels {
            identities,
            seen: vec![None; n],
            given: vec![false; n],
            recorded: vec![vec![false; n]; n],
        }
    }

    /// Records what `id`'s `{prefix}sentinels` hash names: the identities of the nodes that
    /// were given the sentinel. Names of nodes not in the configuration are ignored.
    pub fn records(&mut self, id: usize, names: &[String]) {
        let mut recorded = vec![false; self.identities.len()];
        for name in names {
            if let Some(i) = self.identities.iter().position(|n| n == name) {
                recorded[i] = true;
                self.given[i] = true;
            }
        }
        self.recorded[id] = recorded;
    }

    /// Records a probe of `id` (whether it holds the sentinel). Returns whether the node lost
    /// data: it lacks the sentinel it was given.
    pub fn probed(&mut self, id: usize, holds: bool) -> bool {
        self.seen[id] = Some(holds);
        if holds {
            self.given[id] = true;
        }
        !holds && self.given[id]
    }

    /// Records that `id` was given the sentinel.
    pub fn written(&mut self, id: usize) {
        self.seen[id] = Some(true);
        self.given[id] = true;
    }

    /// Whether `id` holds the sentinel, as last probed or written (`None`: not probed yet).
    pub fn has(&self, id: usize) -> Option<bool> {
        self.seen[id]
    }

    /// The nodes known to hold the sentinel that `id`'s records do not name yet.
    pub fn unrecorded_on(&self, id: usize) -> Vec<usize> {
        (0..self.identities.len())
            .filter(|&i| self.seen[i] == Some(true) && !self.recorded[id][i])
            .collect()
    }

    /// Records that `id`'s records now name `nodes` too.
    pub fn recorded_on(&mut self, id: usize, nodes: &[usize]) {
        for &i in nodes {
            self.recorded[id][i] = true;
            self.given[i] = true;
        }
    }

    /// The identity the records use for `id`.
    pub fn identity(&self, id: usize) -> &str {
        &self.identities[id]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Sentinels {
        Sentinels::new(vec!["a:1/0".into(), "b:1/0".into(), "c:1/0".into()])
    }

    #[test]
    fn a_node_never_given_the_sentinel_has_lost_nothing() {
        // Nodes 0 and 1 were found in sync and recorded while node 2 was unreachable: node 2
        // lacks the sentinel however long the others have held it.
        let mut s = three();
        s.records(0, &["a:1/0".into(), "b:1/0".into()]);
        assert!(!s.probed(0, true));
        assert!(!s.probed(1, true));
        assert!(!s.probed(2, false));
        assert!(!s.probed(2, false), "still not a loss at the next probe");
        assert_eq!((s.has(0), s.has(2)), (Some(true), Some(false)));
    }

    #[test]
    fn a_node_that_another_node_records_lost_data_when_it_lacks_the_sentinel() {
        // A fresh instance (quorumd restarted) learns from node 0's records that node 1 was
        // given the sentinel: node 1 without it was wiped.
        let mut s = three();
        s.records(0, &["a:1/0".into(), "b:1/0".into(), "c:1/0".into()]);
        assert!(s.probed(1, false));
        // Names of nodes no longer configured are ignored.
        let mut t = three();
        t.records(0, &["gone:1/0".into()]);
        assert!(!t.probed(1, false));
    }

    #[test]
    fn losing_a_sentinel_this_instance_saw_is_a_loss_at_once() {
        let mut s = three();
        assert!(!s.probed(1, true));
        assert!(s.probed(1, false), "FLUSHALL, no records anywhere yet");
        // Written again by the recovery: held again.
        s.written(1);
        assert_eq!(s.has(1), Some(true));
        assert!(!s.probed(1, true));
        // A sentinel this instance wrote counts as seen.
        s.written(2);
        assert!(s.probed(2, false));
    }

    #[test]
    fn records_go_where_they_are_missing() {
        let mut s = three();
        s.written(0);
        assert!(!s.probed(1, true));
        s.probed(2, false);
        s.records(1, &["a:1/0".into()]);
        // Holders 0 and 1; node 1 already names 0.
        assert_eq!(s.unrecorded_on(0), vec![0, 1]);
        assert_eq!(s.unrecorded_on(1), vec![1]);
        assert_eq!(s.unrecorded_on(2), vec![0, 1]);
        s.recorded_on(2, &[0, 1]);
        assert!(s.unrecorded_on(2).is_empty());
        assert_eq!(s.identity(2), "c:1/0");
    }
}
