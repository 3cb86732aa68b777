//! What one instance knows of each node's sentinel keys, and whether a node that lacks one lost
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
//!
//! A probe judges a sentinel it found missing against what was known *before* it checked the
//! key ([`Given`]), never against what is known when the answer is judged: a sentinel written
//! (or records naming it read) after the check was given after the check, and its absence then
//! says nothing about a loss. The sweep writes the sentinels while probes run, so a probe that
//! checked a node just before its first sentinel was written would otherwise take it for wiped.
//!
//! A sentinel is known by its *mark*: a standalone server has one, its identity. A Redis
//! Cluster replica has one per master, `{identity}#{slot}`, for a sentinel key tagged with the
//! lowest slot that master owns, so that a wipe of any master is seen, not only of the one
//! holding a single sentinel key. The key moves with its slot in a reshard: a master whose
//! lowest slot changed has a mark never given, which is no loss.

use std::collections::BTreeSet;

/// The sentinel state of every node of a pool.
#[derive(Debug)]
pub struct Sentinels {
    /// Per node: `host:port/db`, as the records name it.
    identities: Vec<String>,
    /// Per node: its marks as last probed or written, each with whether it was held (`None`:
    /// not yet probed).
    seen: Vec<Option<Vec<(String, bool)>>>,
    /// The marks known to have been given the sentinel.
    given: BTreeSet<String>,
    /// Per node: the marks its records name, as last probed or written.
    recorded: Vec<BTreeSet<String>>,
}

/// The marks of one node that were known to have been given their sentinel before a probe
/// checked its keys ([`Sentinels::given_before_check`]).
#[derive(Debug)]
pub struct Given(BTreeSet<String>);

/// The mark of a standalone node's sentinel (`slot` `None`), or of the sentinel a cluster
/// replica's master holds in `slot`.
pub fn mark(identity: &str, slot: Option<u16>) -> String {
    match slot {
        None => identity.to_owned(),
        Some(slot) => format!("{identity}#{slot}"),
    }
}

/// The slot a cluster mark names (`None` for a standalone server's).
pub fn mark_slot(mark: &str) -> Option<u16> {
    mark.rsplit_once('#')?.1.parse().ok()
}

impl Sentinels {
    /// The nodes with these identities (`host:port/db`), none probed yet.
    pub fn new(identities: Vec<String>) -> Self {
        let n = identities.len();
        Sentinels {
            identities,
            seen: vec![None; n],
            given: BTreeSet::new(),
            recorded: vec![BTreeSet::new(); n],
        }
    }

    /// Whether `mark` names a sentinel of a configured node.
    fn configured(&self, mark: &str) -> bool {
        let node = mark.split_once('#').map_or(mark, |(identity, _)| identity);
        self.identities.iter().any(|i| i == node)
    }

    /// Records what `id`'s `{prefix}sentinels` hash names: the marks that were given the
    /// sentinel. Marks of nodes not in the configuration are ignored.
    pub fn records(&mut self, id: usize, names: &[String]) {
        let recorded: BTreeSet<String> = names
            .iter()
            .filter(|n| self.configured(n))
            .cloned()
            .collect();
        self.given.extend(recorded.iter().cloned());
        self.recorded[id] = recorded;
    }

    /// Of `marks` (one node's), those known to have been given their sentinel: by this
    /// instance, or by `records`, the node's own records. To be taken, with the records read,
    /// before the probe checks the keys.
    pub fn given_before_check(&self, marks: &[String], records: Option<&[String]>) -> Given {
        let recorded = |m: &String| records.is_some_and(|r| r.contains(m));
        Given(
            marks
                .iter()
                .filter(|m| self.given.contains(*m) || recorded(m))
                .cloned()
                .collect(),
        )
    }

    /// Records a probe of `id`: each of its marks, and whether it holds that sentinel. Returns
    /// the marks whose sentinel it lost: it lacks them though it was given them before the
    /// probe checked them (`before`).
    pub fn probed(&mut self, id: usize, marks: Vec<(String, bool)>, before: &Given) -> Vec<String> {
        let lost = marks
            .iter()
            .filter(|(mark, holds)| !holds && before.0.contains(mark))
            .map(|(mark, _)| mark.clone())
            .collect();
        self.given.extend(
            marks
                .iter()
                .filter(|(_, holds)| *holds)
                .map(|(m, _)| m.clone()),
        );
        self.seen[id] = Some(marks);
        lost
    }

    /// Whether a probe that found `marks`, having known `before` as given, lacks a sentinel
    /// known as given only since: it was written after the check, or the records that name it
    /// were read after it (a wipe, perhaps). Only a new probe can tell.
    pub fn undecided(&self, marks: &[(String, bool)], before: &Given) -> bool {
        marks
            .iter()
            .any(|(mark, holds)| !holds && !before.0.contains(mark) && self.given.contains(mark))
    }

    /// Records that `id` was given the sentinels of `marks` (all of its marks).
    pub fn written(&mut self, id: usize, marks: &[String]) {
        self.given.extend(marks.iter().cloned());
        self.seen[id] = Some(marks.iter().map(|m| (m.clone(), true)).collect());
    }

    /// Whether `id` holds every sentinel it should, as last probed or written (`None`: not
    /// probed yet).
    pub fn has(&self, id: usize) -> Option<bool> {
        let marks = self.seen[id].as_ref()?;
        Some(!marks.is_empty() && marks.iter().all(|(_, holds)| *holds))
    }

    /// The marks known to be held that `id`'s records do not name yet.
    pub fn unrecorded_on(&self, id: usize) -> Vec<String> {
        self.seen
            .iter()
            .flatten()
            .flatten()
            .filter(|(mark, holds)| *holds && !self.recorded[id].contains(mark))
            .map(|(mark, _)| mark.clone())
            .collect()
    }

    /// Records that `id`'s records now name `marks` too.
    pub fn recorded_on(&mut self, id: usize, marks: &[String]) {
        self.given.extend(marks.iter().cloned());
        self.recorded[id].extend(marks.iter().cloned());
    }

    /// The identity the records use for `id`.
    #[cfg(test)]
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

    fn one(s: &Sentinels, id: usize, holds: bool) -> Vec<(String, bool)> {
        vec![(mark(s.identity(id), None), holds)]
    }

    impl Sentinels {
        /// A probe of `id` that nothing raced: judged against what was known when it checked.
        fn probed_at_once(&mut self, id: usize, marks: Vec<(String, bool)>) -> Vec<String> {
            let names: Vec<String> = marks.iter().map(|(m, _)| m.clone()).collect();
            let before = self.given_before_check(&names, None);
            self.probed(id, marks, &before)
        }
    }

    #[test]
    fn a_sentinel_given_after_the_check_is_not_lost() {
        // The probe checks node 1's key before the exchange writes it, and is judged after.
        let mut s = three();
        let b = [mark("b:1/0", None)];
        let before = s.given_before_check(&b, None);
        s.written(1, &b);
        assert!(s.undecided(&one(&s, 1, false), &before));
        assert!(s.probed(1, one(&s, 1, false), &before).is_empty());
        // Nor is one that records read after the check name (another node's probe).
        let mut t = three();
        let before = t.given_before_check(&b, None);
        t.records(0, &b);
        assert!(t.undecided(&one(&t, 1, false), &before));
        assert!(t.probed(1, one(&t, 1, false), &before).is_empty());
        // The next probe, which checks after both, finds the loss if it is one.
        assert_eq!(t.probed_at_once(1, one(&t, 1, false)), b);
        // Records read before the check (the node's own) do name it.
        let mut u = three();
        let before = u.given_before_check(&b, Some(&b));
        assert!(!u.undecided(&one(&u, 1, false), &before));
        assert_eq!(u.probed(1, one(&u, 1, false), &before), b);
    }

    #[test]
    fn a_node_never_given_the_sentinel_has_lost_nothing() {
        // Nodes 0 and 1 were found in sync and recorded while node 2 was unreachable: node 2
        // lacks the sentinel however long the others have held it.
        let mut s = three();
        s.records(0, &["a:1/0".into(), "b:1/0".into()]);
        assert!(s.probed_at_once(0, one(&s, 0, true)).is_empty());
        assert!(s.probed_at_once(1, one(&s, 1, true)).is_empty());
        assert!(s.probed_at_once(2, one(&s, 2, false)).is_empty());
        assert!(
            s.probed_at_once(2, one(&s, 2, false)).is_empty(),
            "still not a loss at the next probe"
        );
        assert_eq!((s.has(0), s.has(2)), (Some(true), Some(false)));
    }

    #[test]
    fn a_node_that_another_node_records_lost_data_when_it_lacks_the_sentinel() {
        // A fresh instance (quorumd restarted) learns from node 0's records that node 1 was
        // given the sentinel: node 1 without it was wiped.
        let mut s = three();
        s.records(0, &["a:1/0".into(), "b:1/0".into(), "c:1/0".into()]);
        assert!(!s.probed_at_once(1, one(&s, 1, false)).is_empty());
        // Names of nodes no longer configured are ignored.
        let mut t = three();
        t.records(0, &["gone:1/0".into(), "gone:1/0#5".into()]);
        assert!(t.probed_at_once(1, one(&t, 1, false)).is_empty());
        assert!(t.unrecorded_on(1).is_empty());
    }

    #[test]
    fn losing_a_sentinel_this_instance_saw_is_a_loss_at_once() {
        let mut s = three();
        assert!(s.probed_at_once(1, one(&s, 1, true)).is_empty());
        assert!(
            !s.probed_at_once(1, one(&s, 1, false)).is_empty(),
            "FLUSHALL, no records anywhere yet"
        );
        // Written again by the recovery: held again.
        s.written(1, &[mark("b:1/0", None)]);
        assert_eq!(s.has(1), Some(true));
        assert!(s.probed_at_once(1, one(&s, 1, true)).is_empty());
        // A sentinel this instance wrote counts as seen.
        s.written(2, &[mark("c:1/0", None)]);
        assert!(!s.probed_at_once(2, one(&s, 2, false)).is_empty());
    }

    #[test]
    fn a_cluster_mark_names_its_slot() {
        assert_eq!(mark_slot(&mark("a:1/0", Some(8192))), Some(8192));
        assert_eq!(mark_slot(&mark("a:1/0", None)), None);
    }

    #[test]
    fn records_go_where_they_are_missing() {
        let mut s = three();
        s.written(0, &[mark("a:1/0", None)]);
        assert!(s.probed_at_once(1, one(&s, 1, true)).is_empty());
        s.probed_at_once(2, one(&s, 2, false));
        s.records(1, &["a:1/0".into()]);
        // Holders 0 and 1; node 1 already names 0.
        assert_eq!(s.unrecorded_on(0), ["a:1/0", "b:1/0"]);
        assert_eq!(s.unrecorded_on(1), ["b:1/0"]);
        assert_eq!(s.unrecorded_on(2), ["a:1/0", "b:1/0"]);
        s.recorded_on(2, &["a:1/0".into(), "b:1/0".into()]);
        assert!(s.unrecorded_on(2).is_empty());
        assert_eq!(s.identity(2), "c:1/0");
    }

    #[test]
    fn a_wipe_of_any_master_of_a_cluster_is_a_loss() {
        let cluster = "cluster:h:1";
        let mut s = Sentinels::new(vec!["a:1/0".into(), cluster.into()]);
        let masters = |held: [bool; 3]| -> Vec<(String, bool)> {
            [0u16, 5461, 10923]
                .iter()
                .zip(held)
                .map(|(slot, h)| (mark(cluster, Some(*slot)), h))
                .collect()
        };
        let marks: Vec<String> = masters([true; 3]).into_iter().map(|(m, _)| m).collect();
        s.written(1, &marks);
        assert_eq!(s.has(1), Some(true));
        // The second master was flushed: its sentinel is gone, the others' are not.
        // Only the second master's mark is lost: the slots of that shard only wait for the sweep.
        assert_eq!(
            s.probed_at_once(1, masters([true, false, true])),
            [mark(cluster, Some(5461))]
        );
        assert_eq!(s.has(1), Some(false));
        // Another instance learns it from the records on node 0.
        let mut other = Sentinels::new(vec!["a:1/0".into(), cluster.into()]);
        other.records(0, &marks);
        assert_eq!(
            other.probed_at_once(1, masters([true, false, true])).len(),
            1
        );
        // A master whose lowest slot changed in a reshard has a mark never given: no loss.
        let moved = vec![(mark(cluster, Some(100)), false)];
        let mut fresh = Sentinels::new(vec!["a:1/0".into(), cluster.into()]);
        fresh.records(0, &marks);
        assert!(fresh.probed_at_once(1, moved).is_empty());
        assert_eq!(fresh.has(1), Some(false), "it needs its sentinel written");
    }
}
