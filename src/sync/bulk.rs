//! Whole-bucket copies onto nodes that hold nothing of a bucket: the heal of a wiped or
//! restarted-empty node.
//!
//! The key-by-key path reads the bucket from every node, diffs it and runs the versioned APPLY
//! per key, which costs a stale node several `HGET`/`HSET` calls and Lua string work per key.
//! When a node's digest says the bucket is empty there is nothing to compare on it: the bucket
//! is read from one node of the agreeing group, dumped there, and restored on the empty nodes
//! by `RESTORE_BUCKETS` (one `RESTORE` per value, the metadata in a few `HSET`s). The script
//! copies a bucket only if the node still holds no metadata of it, in the same atomic step, so
//! a client write that landed in between is never overwritten: that bucket goes back to the
//! key-by-key path, which compares versions. Any other surprise (a CRDT entry, a value missing
//! under its metadata, an error) does the same, so this path only ever saves work.

use super::Sweeper;
use super::diff::BucketMismatch;
use super::progress::{self, ProgressHandle};
use super::reads;
use crate::live::BucketState;
use crate::meta::EntryKind;
use crate::pool::{Health, NodeId};
use crate::store::scripts::{self, BucketCopy, BucketEntry, KeyLocation};
use crate::store::{digest_key, meta_key};
use std::collections::{BTreeMap, BTreeSet};

/// A bucket to copy whole from `source` to `targets`, which hold nothing of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkPlan {
    pub bucket: u32,
    pub source: NodeId,
    pub targets: Vec<NodeId>,
}

/// The whole-bucket copy for a mismatch, when one applies: the nodes that answered split into
/// exactly two groups, one with the bucket empty (digest 0) and one that agrees on a non-empty
/// digest, with a member that is up to read from. Members take turns as the source, by
/// bucket, so the dumping is spread over the holders.
pub fn plan(mm: &BucketMismatch, usable_source: impl Fn(NodeId) -> bool) -> Option<BulkPlan> {
    let [a, b] = mm.groups.as_slice() else {
        return None;
    };
    let (full, empty) = match (a.digest, b.digest) {
        (0, d) if d != 0 => (b, a),
        (d, 0) if d != 0 => (a, b),
        _ => return None,
    };
    let sources: Vec<NodeId> = full
        .members
        .iter()
        .copied()
        .filter(|&n| usable_source(n))
        .collect();
    let source = *sources.get(mm.bucket as usize % sources.len().max(1))?;
    Some(BulkPlan {
        bucket: mm.bucket,
        source,
        targets: empty.members.clone(),
    })
}

/// Splits a chunk of mismatches into whole-bucket copies and the rest.
pub fn split(sw: &Sweeper, chunk: &[BucketMismatch]) -> (Vec<BulkPlan>, Vec<BucketMismatch>) {
    let pool = sw.pool();
    let mut plans = Vec::new();
    let mut rest = Vec::new();
    for mm in chunk {
        match plan(mm, |n| pool.node(n).health() == Health::Up) {
            Some(p) => plans.push(p),
            None => rest.push(mm.clone()),
        }
    }
    (plans, rest)
}

/// Copies the planned buckets. Returns the buckets that must be repaired key by key instead.
pub async fn copy(sw: &Sweeper, plans: &[BulkPlan], p: &ProgressHandle) -> BTreeSet<u32> {
    let mut fallback = BTreeSet::new();
    if plans.is_empty() {
        return fallback;
    }
    let live = sw.pool().live();
    crate::events::BucketsChanged {
        state: BucketState::Repairing,
        buckets: plans.iter().map(|pl| pl.bucket).collect(),
        reset: false,
        live,
    }
    .emit();
    let mut by_source: BTreeMap<NodeId, Vec<&BulkPlan>> = BTreeMap::new();
    for pl in plans {
        by_source.entry(pl.source).or_default().push(pl);
    }
    let read = futures::future::join_all(
        by_source
            .into_iter()
            .map(|(source, list)| read_source(sw, source, list)),
    )
    .await;
    let mut copies: Vec<(BucketCopy, &[NodeId])> = Vec::new();
    for (ready, failed) in read {
        fallback.extend(failed);
        copies.extend(ready);
    }
    let mut per_target: BTreeMap<NodeId, Vec<&BucketCopy>> = BTreeMap::new();
    for (c, targets) in &copies {
        for &t in *targets {
            per_target.entry(t).or_default().push(c);
        }
    }
    let restored = futures::future::join_all(
        per_target
            .into_iter()
            .map(|(t, list)| restore_on(sw, t, list, p)),
    )
    .await;
    for failed in restored {
        fallback.extend(failed);
    }
    let copied: Vec<&BucketCopy> = copies
        .iter()
        .map(|(c, _)| c)
        .filter(|c| !fallback.contains(&c.bucket))
        .collect();
    let keys: u64 = copied.iter().map(|c| c.entries.len() as u64).sum();
    {
        let mut r = progress::lock(p);
        r.keys_divergent += keys;
        r.buckets_repaired += copied.len() as u64;
        r.buckets_copied += copied.len() as u64;
    }
    crate::events::BucketsChanged {
        state: BucketState::Repaired,
        buckets: copied.iter().map(|c| c.bucket).collect(),
        reset: false,
        live,
    }
    .emit();
    crate::events::RepairBatchApplied {
        keys,
        buckets: copied.len() as u64,
        live,
    }
    .emit();
    fallback
}

/// Reads and dumps the planned buckets from their source. Returns the copies ready to restore
/// (with their targets) and the buckets that must take the key-by-key path.
async fn read_source<'a>(
    sw: &Sweeper,
    source: NodeId,
    plans: Vec<&'a BulkPlan>,
) -> (Vec<(BucketCopy, &'a [NodeId])>, Vec<u32>) {
    let node = sw.pool().node(source);
    let prefix = &sw.store().settings().key_prefix;
    let meta_keys: Vec<String> = plans.iter().map(|pl| meta_key(prefix, pl.bucket)).collect();
    let all = || plans.iter().map(|pl| pl.bucket).collect();
    // Only the names: each entry's metadata is read again with its value, atomically. A read
    // error is for the key-by-key path to report.
    let Ok(names) = reads::bucket_keys(node, &meta_keys).await else {
        return (Vec::new(), all());
    };
    let mut fallback = Vec::new();
    let mut wanted: Vec<(&BulkPlan, String, Vec<KeyLocation>)> = Vec::new();
    for ((pl, mk), keys) in plans.iter().zip(meta_keys).zip(names) {
        if keys.is_empty() {
            fallback.push(pl.bucket);
            continue;
        }
        let locs = keys
            .into_iter()
            .filter_map(|k| sw.store().locate(&k).ok())
            .collect();
        wanted.push((pl, mk, locs));
    }
    let all_locs: Vec<&KeyLocation> = wanted.iter().flat_map(|(_, _, l)| l).collect();
    let mut dumps = Vec::with_capacity(all_locs.len());
    for chunk in all_locs.chunks(sw.cfg.key_batch.max(1)) {
        match scripts::dump(node, chunk).await {
            Ok(d) => dumps.extend(d),
            Err(_) => {
                fallback.extend(wanted.iter().map(|(pl, _, _)| pl.bucket));
                return (Vec::new(), fallback);
            }
        }
    }
    let now = crate::hlc::wall_clock_ms();
    let mut dumps = dumps.into_iter();
    let mut ready = Vec::new();
    for (pl, meta_key, locs) in wanted {
        let mut entries = Vec::with_capacity(locs.len());
        let mut usable = true;
        for (loc, d) in locs.into_iter().zip(dumps.by_ref()) {
            // The dump's metadata is read with the value, atomically: it is the one to copy.
            // None: purged since the bucket was read.
            let Some(meta) = d.meta else { continue };
            let dump = match (meta.kind, d.dump) {
                (EntryKind::Value, Some(bytes)) if !meta.is_expired(now) => Some(bytes),
                (EntryKind::Value, None) if !meta.is_expired(now) => {
                    usable = false;
                    None
                }
                (EntryKind::Crdt(_), _) => {
                    usable = false;
                    None
                }
                _ => None,
            };
            entries.push(BucketEntry {
                key: loc.key,
                meta,
                dump,
            });
        }
        if usable && !entries.is_empty() {
            ready.push((
                BucketCopy {
                    bucket: pl.bucket,
                    meta_key,
                    entries,
                },
                pl.targets.as_slice(),
            ));
        } else {
            fallback.push(pl.bucket);
        }
    }
    (ready, fallback)
}

/// Restores copies on one target, about `key_batch` entries per script call, paced by the
/// throttle. Returns the buckets that were not copied.
async fn restore_on(
    sw: &Sweeper,
    target: NodeId,
    copies: Vec<&BucketCopy>,
    p: &ProgressHandle,
) -> Vec<u32> {
    let node = sw.pool().node(target);
    let digest_key = digest_key(&sw.store().settings().key_prefix);
    let mut not_copied = Vec::new();
    let mut start = 0;
    while start < copies.len() {
        let mut end = start;
        let mut entries = 0;
        while end < copies.len() && (end == start || entries < sw.cfg.key_batch) {
            entries += copies[end].entries.len();
            end += 1;
        }
        let call = &copies[start..end];
        let waited = sw.throttle.acquire(node, entries as u64).await;
        if !waited.is_zero() {
            crate::events::SweepBackedOff {
                node: &node.display,
                waited,
            }
            .emit();
        }
        match scripts::restore_buckets(node, &digest_key, call).await {
            Ok(done) => {
                let mut copied_keys = 0;
                for (c, ok) in call.iter().zip(done) {
                    if ok {
                        copied_keys += c.entries.len() as u64;
                    } else {
                        not_copied.push(c.bucket);
                    }
                }
                progress::lock(p).keys_repaired_per_node[target] += copied_keys;
            }
            Err(e) => {
                tracing::debug!(node = %node.display, error = %e, "bucket copy failed; repairing key by key");
                not_copied.extend(call.iter().map(|c| c.bucket));
            }
        }
        start = end;
    }
    not_copied
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::diff::DigestGroup;

    fn mismatch(bucket: u32, groups: &[(u64, &[NodeId])]) -> BucketMismatch {
        BucketMismatch {
            bucket,
            groups: groups
                .iter()
                .map(|(digest, members)| DigestGroup {
                    digest: *digest,
                    members: members.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn an_empty_group_beside_one_agreeing_group_is_copied_whole() {
        let mm = mismatch(7, &[(42, &[0, 1]), (0, &[2])]);
        let plan = plan(&mm, |_| true).expect("a plan");
        assert_eq!(plan.targets, vec![2]);
        assert_eq!(plan.source, 1, "bucket 7 of two sources takes the second");
        let mm = mismatch(8, &[(0, &[1, 2]), (42, &[0])]);
        let plan = super::plan(&mm, |_| true).expect("a plan");
        assert_eq!((plan.source, plan.targets), (0, vec![1, 2]));
    }

    #[test]
    fn sources_that_cannot_be_read_are_skipped() {
        let mm = mismatch(7, &[(42, &[0, 1]), (0, &[2])]);
        assert_eq!(plan(&mm, |n| n == 0).map(|p| p.source), Some(0));
        assert_eq!(plan(&mm, |_| false), None);
    }

    #[test]
    fn disagreement_among_holders_takes_the_key_by_key_path() {
        assert_eq!(
            plan(&mismatch(1, &[(5, &[0]), (6, &[1]), (0, &[2])]), |_| true),
            None
        );
        assert_eq!(
            plan(&mismatch(1, &[(5, &[0, 1]), (6, &[2])]), |_| true),
            None
        );
    }
}
