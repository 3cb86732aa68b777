//! Property tests: every merge is a join (commutative, associative, idempotent), encodings are
//! canonical, and each type keeps its promise (no increment lost or doubled, add wins, a removed
//! member stays removed when a stale replica is merged back, the newest write wins).

use super::*;
use crate::hlc::Version;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn version(ms: u64, writer: u64) -> Version {
    Version::first_in_ms(ms, writer)
}

fn actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        (0u64..4).prop_map(Actor::Writer),
        (0u128..3).prop_map(Actor::Request),
    ]
}

fn counter() -> impl Strategy<Value = PnCounter> {
    prop::collection::vec((actor(), any::<u32>(), any::<u32>()), 0..6).prop_map(|entries| {
        let mut c = PnCounter::default();
        for (a, p, n) in entries {
            c.set_entry(a, (u64::from(p), u64::from(n)));
        }
        c
    })
}

fn member() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), vec![]])
}

fn orset() -> impl Strategy<Value = OrSet> {
    (
        prop::collection::vec(((0u64..6, 0u64..3), member()), 0..8),
        prop::collection::vec((0u64..6, 0u64..3), 0..4),
    )
        .prop_map(|(adds, removes)| {
            let mut s = OrSet::add_delta(adds.into_iter().map(|((ms, w), m)| (version(ms, w), m)));
            let removed = OrSet::from_fields(
                removes
                    .iter()
                    .map(|&(ms, w)| {
                        let mut f = b"r:".to_vec();
                        f.extend_from_slice(version(ms, w).encode().as_bytes());
                        f
                    })
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|f| (&f[..], &b""[..])),
            )
            .expect("well-formed removal");
            s.merge(&removed);
            s
        })
}

fn lwwmap() -> impl Strategy<Value = LwwMap> {
    prop::collection::vec(
        (member(), (0u64..5, 0u64..2), prop::option::of(member())),
        0..8,
    )
    .prop_map(|writes| {
        let mut m = LwwMap::default();
        for (f, (ms, w), v) in writes {
            m.set(f, version(ms, w), v);
        }
        m
    })
}

fn merged<C: Crdt>(a: &C, b: &C) -> C {
    let mut out = a.clone();
    out.merge(b);
    out
}

fn check_join<C: Crdt>(a: &C, b: &C, c: &C) -> Result<(), TestCaseError> {
    prop_assert_eq!(merged(a, b), merged(b, a), "commutative");
    prop_assert_eq!(
        merged(&merged(a, b), c),
        merged(a, &merged(b, c)),
        "associative"
    );
    prop_assert_eq!(merged(a, a), a.clone(), "idempotent");
    let ab = merged(a, b);
    prop_assert_eq!(
        merged(&ab, a),
        ab.clone(),
        "a merged state absorbs its inputs"
    );
    // Canonical: decoding the fields gives the same state and the same bytes; decoding two
    // replicas' fields together is their merge (what a node's script computes).
    let fields = a.to_fields();
    let back = C::from_fields(fields.iter().map(|(f, v)| (&f[..], &v[..]))).unwrap();
    prop_assert_eq!(back.canonical_bytes(), a.canonical_bytes());
    let both: Fields = a.to_fields().into_iter().chain(b.to_fields()).collect();
    let joined = C::from_fields(both.iter().map(|(f, v)| (&f[..], &v[..]))).unwrap();
    prop_assert_eq!(joined.state_hash(), ab.state_hash());
    prop_assert_eq!(merged(a, b).state_hash(), merged(b, a).state_hash());
    Ok(())
}

/// Replicas, each its own actor, doing operations and gossiping states in any order.
#[derive(Debug, Clone)]
enum CounterOp {
    Add(usize, i32),
    Sync(usize, usize),
}

fn counter_ops() -> impl Strategy<Value = Vec<CounterOp>> {
    prop::collection::vec(
        prop_oneof![
            (0usize..3, any::<i32>()).prop_map(|(r, d)| CounterOp::Add(r, d)),
            (0usize..3, 0usize..3).prop_map(|(a, b)| CounterOp::Sync(a, b)),
        ],
        0..40,
    )
}

#[derive(Debug, Clone)]
enum SetOp {
    Add(usize, Vec<u8>),
    Remove(usize, Vec<u8>),
    Sync(usize, usize),
}

fn set_ops() -> impl Strategy<Value = Vec<SetOp>> {
    prop::collection::vec(
        prop_oneof![
            (0usize..3, member()).prop_map(|(r, m)| SetOp::Add(r, m)),
            (0usize..3, member()).prop_map(|(r, m)| SetOp::Remove(r, m)),
            (0usize..3, 0usize..3).prop_map(|(a, b)| SetOp::Sync(a, b)),
        ],
        0..40,
    )
}

proptest! {
    #[test]
    fn counter_merge_is_a_join(a in counter(), b in counter(), c in counter()) {
        check_join(&a, &b, &c)?;
    }

    #[test]
    fn orset_merge_is_a_join(a in orset(), b in orset(), c in orset()) {
        check_join(&a, &b, &c)?;
    }

    #[test]
    fn lwwmap_merge_is_a_join(a in lwwmap(), b in lwwmap(), c in lwwmap()) {
        check_join(&a, &b, &c)?;
    }

    /// Whatever the gossip order, and however often a state is re-delivered, the merged value
    /// is exactly the sum of every increment made.
    #[test]
    fn increments_are_never_lost_nor_doubled(ops in counter_ops()) {
        let mut replicas = vec![PnCounter::default(); 3];
        let mut sum = 0i128;
        for op in ops {
            match op {
                CounterOp::Add(r, d) => {
                    replicas[r].increment(Actor::Writer(r as u64), i64::from(d)).unwrap();
                    sum += i128::from(d);
                }
                CounterOp::Sync(from, to) => {
                    let s = replicas[from].clone();
                    replicas[to].merge(&s);
                    replicas[to].merge(&s);
                }
            }
        }
        let all = replicas.iter().fold(PnCounter::default(), |acc, r| merged(&acc, r));
        prop_assert_eq!(all.value(), sum);
    }

    /// The model: a member is present iff one of its adds was not observed by any remove.
    /// Checks add-wins and that no stale state brings back what a remove observed.
    #[test]
    fn orset_follows_observed_remove_semantics(ops in set_ops()) {
        let mut replicas = vec![OrSet::default(); 3];
        let mut adds: Vec<(Version, Vec<u8>)> = Vec::new();
        let mut observed_removed: BTreeSet<Version> = BTreeSet::new();
        let mut snapshots: Vec<OrSet> = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                SetOp::Add(r, m) => {
                    let tag = version(i as u64, r as u64);
                    replicas[r].merge(&OrSet::add_delta([(tag, m.clone())]));
                    adds.push((tag, m));
                }
                SetOp::Remove(r, m) => {
                    snapshots.push(replicas[r].clone());
                    let delta = replicas[r].remove_delta(&[m].into());
                    observed_removed.extend(
                        delta.to_fields().iter().map(|(f, _)| {
                            std::str::from_utf8(&f[2..]).unwrap().parse::<Version>().unwrap()
                        }),
                    );
                    replicas[r].merge(&delta);
                }
                SetOp::Sync(from, to) => {
                    let s = replicas[from].clone();
                    replicas[to].merge(&s);
                }
            }
        }
        let mut all = replicas.iter().fold(OrSet::default(), |acc, r| merged(&acc, r));
        let model: BTreeSet<Vec<u8>> = adds
            .iter()
            .filter(|(t, _)| !observed_removed.contains(t))
            .map(|(_, m)| m.clone())
            .collect();
        prop_assert_eq!(all.members(), model.clone());
        // Stale states from before each remove change nothing any more.
        for s in &snapshots {
            all.merge(s);
        }
        prop_assert_eq!(all.members(), model);
    }

    /// Every field ends with the value of its write with the highest version.
    #[test]
    fn lwwmap_newest_write_wins(
        writes in prop::collection::vec((0usize..3, member(), prop::option::of(member())), 0..30),
    ) {
        let mut replicas = vec![LwwMap::default(); 3];
        let mut newest: BTreeMap<Vec<u8>, (Version, Option<Vec<u8>>)> = BTreeMap::new();
        for (i, (r, f, v)) in writes.into_iter().enumerate() {
            // Versions unique per write, issued in a shuffled order across replicas.
            let ver = version((i as u64 * 7919) % 101, r as u64);
            replicas[r].set(f.clone(), ver, v.clone());
            let e = newest.entry(f).or_insert((ver, v.clone()));
            if ver > e.0 {
                *e = (ver, v);
            }
        }
        let all = replicas.iter().fold(LwwMap::default(), |acc, r| merged(&acc, r));
        let model: BTreeMap<Vec<u8>, Vec<u8>> = newest
            .into_iter()
            .filter_map(|(f, (_, v))| v.map(|v| (f, v)))
            .collect();
        prop_assert_eq!(all.entries(), model);
    }
}
