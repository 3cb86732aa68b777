//! What differs between nodes, and who wins. Pure: the exchange and the full sweep feed it what
//! they read and act on what it returns.

use quorumd_core::meta::{EntryKind, Meta};
use quorumd_node::pool::NodeId;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

/// One bucket's metadata on one node: key → entry.
pub type BucketMetas = HashMap<Vec<u8>, Meta>;

/// Nodes whose digest of a bucket is the same value; their metadata is taken to be identical,
/// so one member is read on behalf of all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestGroup {
    pub digest: u64,
    pub members: Vec<NodeId>,
}

/// A bucket whose digests differ between the nodes that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketMismatch {
    pub bucket: u32,
    /// Largest group first (ties: lowest digest), members in node order.
    pub groups: Vec<DigestGroup>,
}

impl Grouped for BucketMismatch {
    fn groups(&self) -> &[DigestGroup] {
        &self.groups
    }
}

/// A sub-bucket whose digests differ: the unit the exchange reads and diffs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubMismatch {
    pub bucket: u32,
    pub sub: u32,
    /// Largest group first (ties: lowest digest). The first member of each group is the
    /// representative of the largest bucket-level group merged into it.
    pub groups: Vec<DigestGroup>,
}

impl Grouped for SubMismatch {
    fn groups(&self) -> &[DigestGroup] {
        &self.groups
    }
}

/// A mismatch (of a bucket or of a sub-bucket) as its digest groups.
pub trait Grouped {
    fn groups(&self) -> &[DigestGroup];

    /// The node read on behalf of each group: its first member.
    fn readers(&self) -> Vec<NodeId> {
        self.groups().iter().map(|g| g.members[0]).collect()
    }

    /// Every node of every group.
    fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.groups().iter().flat_map(|g| g.members.iter().copied())
    }
}

/// Groups by digest value, largest group first (ties: lowest digest).
fn ordered_groups(by_digest: BTreeMap<u64, Vec<NodeId>>) -> Vec<DigestGroup> {
    let mut groups: Vec<DigestGroup> = by_digest
        .into_iter()
        .map(|(digest, members)| DigestGroup { digest, members })
        .collect();
    groups.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then(a.digest.cmp(&b.digest))
    });
    groups
}

/// Buckets in which not all answering nodes agree. A bucket missing from a node's digest hash
/// counts as 0 (empty).
pub fn mismatched_buckets<D: Borrow<HashMap<u32, u64>>>(
    digests: &[(NodeId, D)],
    buckets: u32,
) -> Vec<BucketMismatch> {
    let mut out = Vec::new();
    if digests.len() < 2 {
        return out;
    }
    // Each node's digests laid out by bucket once, so that the comparison hashes nothing: with
    // the slot placement's 16,384 buckets, four map lookups per bucket were the top symbol of
    // a profile of quorumd in idle exchanges (7.6% of its samples).
    let dense: Vec<Vec<u64>> = digests
        .iter()
        .map(|(_, d)| {
            let mut by_bucket = vec![0u64; buckets as usize];
            for (&bucket, &digest) in d.borrow() {
                if let Some(at) = by_bucket.get_mut(bucket as usize) {
                    *at = digest;
                }
            }
            by_bucket
        })
        .collect();
    for bucket in 0..buckets {
        let b = bucket as usize;
        let first = dense[0][b];
        if dense.iter().all(|d| d[b] == first) {
            continue;
        }
        let mut by_digest: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
        for ((node, _), d) in digests.iter().zip(&dense) {
            by_digest.entry(d[b]).or_default().push(*node);
        }
        out.push(BucketMismatch {
            bucket,
            groups: ordered_groups(by_digest),
        });
    }
    out
}

/// Narrows a mismatched bucket down to the sub-buckets whose digests differ.
/// `sub_digests[i]` holds the sub-digests (sub-bucket → digest, missing = 0) read from the
/// representative of `mm.groups[i]`. In each sub-bucket, the bucket-level groups that agree on
/// its digest merge into one group, so that sub-bucket is read once for all of them: a bucket
/// where node A differs in one sub-bucket and node B in another costs two reads per sub-bucket,
/// not three.
pub fn mismatched_subs(
    mm: &BucketMismatch,
    sub_digests: &[&HashMap<u32, u64>],
    sub_buckets: u32,
) -> Vec<SubMismatch> {
    let of = |i: usize, sub: u32| sub_digests[i].get(&sub).copied().unwrap_or(0);
    (0..sub_buckets)
        .filter(|&sub| (1..mm.groups.len()).any(|i| of(i, sub) != of(0, sub)))
        .map(|sub| {
            let mut by_digest: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
            // Bucket groups in order, largest first: each merged group starts with a node whose
            // sub-digests were read.
            for (i, g) in mm.groups.iter().enumerate() {
                by_digest
                    .entry(of(i, sub))
                    .or_default()
                    .extend_from_slice(&g.members);
            }
            SubMismatch {
                bucket: mm.bucket,
                sub,
                groups: ordered_groups(by_digest),
            }
        })
        .collect()
}

/// One key that some nodes hold at an older version (or not at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDivergence {
    pub key: Vec<u8>,
    pub winner: Meta,
    /// Nodes that hold the winning version.
    pub holders: Vec<NodeId>,
    /// Nodes that need the winning version.
    pub stale: Vec<NodeId>,
}

/// Compares one bucket. `views` pairs the nodes of each digest group with the metadata read
/// from that group's representative.
pub fn diff_bucket(views: &[(&[NodeId], &BucketMetas)]) -> Vec<KeyDivergence> {
    let mut winners: BTreeMap<&[u8], &Meta> = BTreeMap::new();
    for (_, metas) in views {
        for (key, meta) in metas.iter() {
            let w = winners.entry(key.as_slice()).or_insert(meta);
            if meta.version > w.version {
                *w = meta;
            }
        }
    }
    let mut out = Vec::new();
    for (key, winner) in winners {
        let mut holders = Vec::new();
        let mut stale = Vec::new();
        for (members, metas) in views {
            let has = metas.get(key).is_some_and(|m| m.version == winner.version);
            if has { &mut holders } else { &mut stale }.extend_from_slice(members);
        }
        if !stale.is_empty() {
            holders.sort_unstable();
            stale.sort_unstable();
            out.push(KeyDivergence {
                key: key.to_vec(),
                winner: winner.clone(),
                holders,
                stale,
            });
        }
    }
    out
}

/// True when a key's newest version is so recent that the write may still be landing on the
/// other nodes: such a key is re-examined in a later pass instead of repaired now.
pub fn may_be_in_flight(winner: &Meta, now_ms: u64, window_ms: u64) -> bool {
    winner.version.ms.saturating_add(window_ms) > now_ms
}

/// Entries every configured node holds identically and that have been dead for longer than the
/// grace period: tombstones, and values whose TTL passed. They can be removed everywhere
/// without any node bringing them back. `views` must cover all `total_nodes`.
pub fn purgeable(
    views: &[(&[NodeId], &BucketMetas)],
    total_nodes: usize,
    now_ms: u64,
    grace_ms: u64,
) -> Vec<(Vec<u8>, Meta)> {
    let covered: usize = views.iter().map(|(m, _)| m.len()).sum();
    let Some((_, first)) = views.first() else {
        return Vec::new();
    };
    if covered != total_nodes {
        return Vec::new();
    }
    let dead_since = |m: &Meta| match m.kind {
        EntryKind::Tombstone => Some(m.version.ms),
        EntryKind::Value => m.expires_at_ms,
        EntryKind::Crdt(_) => None,
    };
    first
        .iter()
        .filter(|(_, m)| dead_since(m).is_some_and(|t| t.saturating_add(grace_ms) < now_ms))
        .filter(|(k, m)| views.iter().all(|(_, metas)| metas.get(*k) == Some(*m)))
        .map(|(k, m)| (k.clone(), m.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumd_core::hlc::Version;

    fn meta(key: &[u8], ms: u64, kind: EntryKind) -> Meta {
        Meta::new(
            key,
            Version {
                ms,
                counter: 0,
                writer: 1,
            },
            kind,
            None,
            quorumd_core::content::Content::Absent,
        )
    }

    fn metas(entries: &[(&[u8], u64, EntryKind)]) -> BucketMetas {
        entries
            .iter()
            .map(|(k, ms, kind)| (k.to_vec(), meta(k, *ms, *kind)))
            .collect()
    }

    #[test]
    fn buckets_agreeing_everywhere_are_skipped_and_groups_ordered() {
        let d = |pairs: &[(u32, u64)]| pairs.iter().copied().collect::<HashMap<_, _>>();
        let digests = vec![
            (0, d(&[(0, 5), (1, 7)])),
            (1, d(&[(0, 5), (1, 7)])),
            (2, d(&[(0, 5), (1, 9), (3, 1)])),
        ];
        let m = mismatched_buckets(&digests, 4);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].bucket, 1);
        assert_eq!(
            m[0].groups[0],
            DigestGroup {
                digest: 7,
                members: vec![0, 1]
            }
        );
        assert_eq!(m[0].readers(), vec![0, 2]);
        assert_eq!(m[1].bucket, 3, "a bucket absent on some nodes counts as 0");
        assert_eq!(m[1].groups[0].members, vec![0, 1]);
        assert!(
            mismatched_buckets(&digests[..1], 4).is_empty(),
            "one node has nothing to compare with"
        );
        // A stored 0 is an absent bucket, and buckets past the count are not compared.
        let digests = vec![(0, d(&[(2, 0), (4, 8)])), (1, d(&[(4, 6)]))];
        assert!(mismatched_buckets(&digests, 4).is_empty());
    }

    #[test]
    fn sub_buckets_narrow_a_mismatch_and_merge_agreeing_groups() {
        let d = |pairs: &[(u32, u64)]| pairs.iter().copied().collect::<HashMap<_, _>>();
        // Five nodes, three bucket-level groups: {0, 1, 2} baseline, {3} differs in sub 1,
        // {4} differs in sub 2 (and has no field for sub 3, which is 0 everywhere).
        let mm = BucketMismatch {
            bucket: 9,
            groups: vec![
                DigestGroup {
                    digest: 1,
                    members: vec![0, 1, 2],
                },
                DigestGroup {
                    digest: 2,
                    members: vec![3],
                },
                DigestGroup {
                    digest: 3,
                    members: vec![4],
                },
            ],
        };
        let base = d(&[(0, 10), (1, 11), (2, 12), (3, 0)]);
        let a = d(&[(0, 10), (1, 99), (2, 12), (3, 0)]);
        let b = d(&[(0, 10), (1, 11), (2, 77)]);
        let subs = mismatched_subs(&mm, &[&base, &a, &b], 4);
        assert_eq!(
            subs,
            vec![
                SubMismatch {
                    bucket: 9,
                    sub: 1,
                    groups: vec![
                        DigestGroup {
                            digest: 11,
                            members: vec![0, 1, 2, 4]
                        },
                        DigestGroup {
                            digest: 99,
                            members: vec![3]
                        },
                    ],
                },
                SubMismatch {
                    bucket: 9,
                    sub: 2,
                    groups: vec![
                        DigestGroup {
                            digest: 12,
                            members: vec![0, 1, 2, 3]
                        },
                        DigestGroup {
                            digest: 77,
                            members: vec![4]
                        },
                    ],
                },
            ]
        );
        assert_eq!(subs[0].readers(), vec![0, 3]);
        assert!(
            mismatched_subs(&mm, &[&base, &base, &base], 4).is_empty(),
            "bucket digests that differ while every sub-digest agrees: nothing to read"
        );
    }

    #[test]
    fn newest_version_wins_and_tombstones_count() {
        let a = metas(&[
            (b"k1", 5, EntryKind::Value),
            (b"k2", 9, EntryKind::Tombstone),
        ]);
        let b = metas(&[(b"k1", 6, EntryKind::Value), (b"k2", 3, EntryKind::Value)]);
        let c = metas(&[]);
        let views: Vec<(&[NodeId], &BucketMetas)> = vec![(&[0, 1], &a), (&[2], &b), (&[3], &c)];
        let d = diff_bucket(&views);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].key, b"k1");
        assert_eq!(d[0].winner.version.ms, 6);
        assert_eq!(
            (d[0].holders.clone(), d[0].stale.clone()),
            (vec![2], vec![0, 1, 3])
        );
        assert_eq!(d[1].winner.kind, EntryKind::Tombstone);
        assert_eq!(
            (d[1].holders.clone(), d[1].stale.clone()),
            (vec![0, 1], vec![2, 3])
        );
    }

    #[test]
    fn identical_views_have_no_divergence() {
        let a = metas(&[(b"k", 1, EntryKind::Value)]);
        let views: Vec<(&[NodeId], &BucketMetas)> = vec![(&[0], &a), (&[1], &a)];
        assert!(diff_bucket(&views).is_empty());
    }

    #[test]
    fn recent_writes_are_deferred() {
        let m = meta(b"k", 1000, EntryKind::Value);
        assert!(may_be_in_flight(&m, 1500, 1000));
        assert!(!may_be_in_flight(&m, 2500, 1000));
    }

    #[test]
    fn only_old_dead_entries_held_by_every_node_are_purgeable() {
        let mut expired = meta(b"e", 10, EntryKind::Value);
        expired.expires_at_ms = Some(20);
        let mut a = metas(&[
            (b"t", 10, EntryKind::Tombstone),
            (b"young", 900, EntryKind::Tombstone),
            (b"v", 10, EntryKind::Value),
        ]);
        a.insert(b"e".to_vec(), expired.clone());
        let mut b = a.clone();
        let all: Vec<(&[NodeId], &BucketMetas)> = vec![(&[0, 1], &a), (&[2], &b)];
        let mut p = purgeable(&all, 3, 1000, 500);
        p.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            p.iter().map(|(k, _)| k.as_slice()).collect::<Vec<_>>(),
            vec![&b"e"[..], b"t"]
        );
        assert!(
            purgeable(&all, 4, 1000, 500).is_empty(),
            "a node that did not answer blocks purging"
        );
        b.remove(b"t".as_slice());
        let partial: Vec<(&[NodeId], &BucketMetas)> = vec![(&[0, 1], &a), (&[2], &b)];
        let p = purgeable(&partial, 3, 1000, 500);
        assert!(
            p.iter().all(|(k, _)| k != b"t"),
            "a tombstone one node lacks is not purged"
        );
    }
}
