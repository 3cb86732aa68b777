//! Whole-bucket copies onto nodes that hold nothing of a bucket: the heal of a wiped or
//! restarted-empty node.
//!
//! The key-by-key path reads the bucket from every node, diffs it and runs the versioned APPLY
//! per key, which costs a stale node several `HGET`/`HSET` calls and Lua string work per key.
//! When a node's digest says the bucket is empty there is nothing to compare on it: the bucket
//! is read whole from one node of the agreeing group (`DUMP_BUCKETS`) and written on the empty
//! nodes by `RESTORE_BUCKETS` (strings by `MSET`, other types by `RESTORE`, each metadata hash
//! by one `RESTORE`; see `store::copy_scripts`). The script
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
use crate::meta::Meta;
use crate::pool::{Health, NodeId};
use crate::store::copy_scripts::{
    self as scripts, BucketCopy, BucketDump, BucketKeys, CopiedValue,
};
use crate::store::{digest_key, sub_digest_key};
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    let keys: u64 = copied.iter().map(|c| c.entries as u64).sum();
    {
        let mut r = progress::lock(p);
        r.keys_divergent += keys;
        r.buckets_repaired += copied.len() as u64;
        r.buckets_copied += copied.len() as u64;
    }
    // Buckets going on to the key-by-key path are differing until it has repaired them (it
    // marks only buckets where it repairs something).
    for (state, buckets) in [
        (
            BucketState::Repaired,
            copied.iter().map(|c| c.bucket).collect(),
        ),
        (BucketState::Differing, fallback.iter().copied().collect()),
    ] {
        let buckets: Vec<u32> = buckets;
        if !buckets.is_empty() {
            crate::events::BucketsChanged {
                state,
                buckets,
                reset: false,
                live,
            }
            .emit();
        }
    }
    if !copied.is_empty() {
        crate::events::RepairBatchApplied {
            keys,
            buckets: copied.len() as u64,
            live,
        }
        .emit();
    }
    fallback
}

/// Where one bucket lives on a node: its metadata hashes and the bucket-level keys that go
/// with them.
fn bucket_layout(sw: &Sweeper, bucket: u32) -> (Vec<String>, Vec<String>) {
    let settings = sw.store().settings();
    (
        settings.bucket_meta_keys(bucket),
        vec![sub_digest_key(&settings.key_prefix, bucket)],
    )
}

/// Reads and dumps the planned buckets from their source. Returns the copies ready to restore
/// (with their targets) and the buckets that must take the key-by-key path.
async fn read_source<'a>(
    sw: &Sweeper,
    source: NodeId,
    plans: Vec<&'a BulkPlan>,
) -> (Vec<(BucketCopy, &'a [NodeId])>, Vec<u32>) {
    let node = sw.pool().node(source);
    let layouts: Vec<_> = plans
        .iter()
        .map(|pl| bucket_layout(sw, pl.bucket))
        .collect();
    let all = || plans.iter().map(|pl| pl.bucket).collect();
    // The names first, to declare them to the script that reads everything atomically. A
    // read error is for the key-by-key path to report.
    let hashes: Vec<String> = layouts.iter().flat_map(|(m, _)| m.clone()).collect();
    let Ok(names) = reads::bucket_keys(node, &hashes).await else {
        return (Vec::new(), all());
    };
    let mut names = names.into_iter();
    let requests: Vec<BucketKeys> = layouts
        .into_iter()
        .map(|(meta_keys, state_keys)| BucketKeys {
            value_keys: names.by_ref().take(meta_keys.len()).flatten().collect(),
            meta_keys,
            state_keys,
        })
        .collect();
    let now = crate::hlc::wall_clock_ms();
    let mut ready = Vec::new();
    let mut fallback = Vec::new();
    for (start, end, _) in calls(&requests, |r| r.value_keys.len(), sw.cfg.key_batch) {
        match scripts::dump_buckets(node, &requests[start..end]).await {
            Ok(dumps) => {
                for ((pl, req), dump) in plans[start..end]
                    .iter()
                    .zip(&requests[start..end])
                    .zip(dumps)
                {
                    match prepare(pl.bucket, req, dump, now, sw.cfg.in_flight_window_ms) {
                        Some(copy) => ready.push((copy, pl.targets.as_slice())),
                        None => fallback.push(pl.bucket),
                    }
                }
            }
            Err(_) => fallback.extend(plans[start..end].iter().map(|pl| pl.bucket)),
        }
    }
    (ready, fallback)
}

/// Turns a bucket read whole into the copy to restore, or `None` when it must be repaired key
/// by key: empty, a CRDT entry (its state lives in another key), an entry that does not parse,
/// a live value missing under its metadata, a key added after the names were read (its
/// value was not dumped), or an entry younger than `in_flight_window_ms` (a write that may
/// still be landing: the key-by-key path defers it, which keeps a recovering node recovering
/// until it has landed).
pub fn prepare(
    bucket: u32,
    req: &BucketKeys,
    dump: BucketDump,
    now_ms: u64,
    in_flight_window_ms: u64,
) -> Option<BucketCopy> {
    let mut dumped = DumpedValues::new(&req.value_keys, dump.values);
    let mut values = Vec::new();
    let mut hashes = Vec::new();
    let mut meta = Vec::with_capacity(req.meta_keys.len());
    for (meta_key, (hash_dump, entries)) in req.meta_keys.iter().zip(dump.meta) {
        for (key, raw) in entries {
            let m = Meta::parse(&raw).ok()?;
            if super::diff::may_be_in_flight(&m, now_ms, in_flight_window_ms) {
                return None;
            }
            let value = dumped.take(&key)?;
            let value = match m.kind {
                EntryKind::Crdt(_) => return None,
                EntryKind::Value if !m.is_expired(now_ms) => Some(value?),
                _ => None,
            };
            hashes.push(m.entry_hash);
            values.push((key, value, m.expires_at_ms.unwrap_or(0)));
        }
        meta.push((meta_key.clone(), hash_dump));
    }
    if values.is_empty() {
        return None;
    }
    Some(BucketCopy {
        bucket,
        digest: crate::digest::combine(hashes),
        entries: values.len(),
        meta,
        state: req.state_keys.iter().cloned().zip(dump.state).collect(),
        values,
    })
}

/// The values a bucket read returned, taken by key name, each at most once. The names were read
/// with `HKEYS` and the entries with `HGETALL` of the same hashes, which list fields in the
/// same order while a hash is unchanged: values are taken in order, and a lookup by name takes
/// over at the first surprise (this runs once per key of a heal).
struct DumpedValues<'a> {
    slots: Vec<(&'a [u8], Option<Option<CopiedValue>>)>,
    next: usize,
    by_name: Option<HashMap<&'a [u8], usize>>,
}

impl<'a> DumpedValues<'a> {
    fn new(names: &'a [Vec<u8>], values: Vec<Option<CopiedValue>>) -> Self {
        DumpedValues {
            slots: names
                .iter()
                .map(|n| n.as_slice())
                .zip(values.into_iter().map(Some))
                .collect(),
            next: 0,
            by_name: None,
        }
    }

    /// The value read for `name`; `None` when none was read (or it was taken already).
    fn take(&mut self, name: &[u8]) -> Option<Option<CopiedValue>> {
        let at = match self.slots.get(self.next) {
            Some((n, _)) if *n == name && self.by_name.is_none() => {
                self.next += 1;
                self.next - 1
            }
            _ => {
                let slots = &self.slots;
                *self
                    .by_name
                    .get_or_insert_with(|| {
                        slots
                            .iter()
                            .enumerate()
                            .map(|(i, (n, _))| (*n, i))
                            .collect()
                    })
                    .get(name)?
            }
        };
        self.slots[at].1.take()
    }
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
    for (start, end, entries) in calls(&copies, |c| c.entries, sw.cfg.key_batch) {
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
                        copied_keys += c.entries as u64;
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
    }
    not_copied
}

/// Splits `items` into consecutive calls of about `limit` units each (what `size` counts), at
/// least one item per call: `(start, end, units)`.
fn calls<T>(items: &[T], size: impl Fn(&T) -> usize, limit: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let (mut end, mut units) = (start, 0);
        while end < items.len() && (end == start || units < limit) {
            units += size(&items[end]);
            end += 1;
        }
        out.push((start, end, units));
        start = end;
    }
    out
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
    fn calls_hold_about_the_limit_and_never_split_an_item() {
        let sizes = [300, 300, 10, 900, 1, 1];
        let got = calls(&sizes, |s| *s, 500);
        assert_eq!(got, vec![(0, 2, 600), (2, 4, 910), (4, 6, 2)]);
        assert!(calls(&[] as &[usize], |s| *s, 500).is_empty());
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

    fn entry(key: &str, kind: EntryKind, expires: Option<u64>) -> (Vec<u8>, Vec<u8>) {
        let v = crate::hlc::Version {
            ms: 1_000,
            counter: 0,
            writer: 7,
        };
        let meta = Meta::new(key.as_bytes(), v, kind, expires);
        (key.as_bytes().to_vec(), meta.encode().into_bytes())
    }

    fn bucket(
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        values: &[(&str, Option<&str>)],
    ) -> (BucketKeys, BucketDump) {
        let keys = BucketKeys {
            meta_keys: vec!["qd:m:1".into()],
            state_keys: vec!["qd:s:1".into()],
            value_keys: values.iter().map(|(k, _)| k.as_bytes().to_vec()).collect(),
        };
        let dump = BucketDump {
            meta: vec![(Some(b"hash-dump".to_vec()), entries)],
            state: vec![None],
            values: values
                .iter()
                .map(|(_, v)| v.map(|v| CopiedValue::String(v.as_bytes().to_vec())))
                .collect(),
        };
        (keys, dump)
    }

    #[test]
    fn a_bucket_read_whole_becomes_its_copy() {
        let now = 10_000;
        let live = entry("live", EntryKind::Value, Some(20_000));
        let gone = entry("gone", EntryKind::Tombstone, None);
        let expired = entry("expired", EntryKind::Value, Some(5_000));
        let hashes: Vec<u64> = [&live, &gone, &expired]
            .iter()
            .map(|(_, raw)| Meta::parse(raw).unwrap().entry_hash)
            .collect();
        let (keys, dump) = bucket(
            vec![live, gone, expired],
            &[
                ("live", Some("v")),
                ("gone", None),
                ("expired", None),
                ("purged", None),
            ],
        );
        let copy = prepare(1, &keys, dump, now, 0).expect("a copy");
        assert_eq!(copy.entries, 3);
        assert_eq!(copy.digest, crate::digest::combine(hashes));
        assert_eq!(
            copy.meta,
            vec![("qd:m:1".to_string(), Some(b"hash-dump".to_vec()))]
        );
        assert_eq!(copy.state, vec![("qd:s:1".to_string(), None)]);
        assert_eq!(
            copy.values,
            vec![
                (
                    b"live".to_vec(),
                    Some(CopiedValue::String(b"v".to_vec())),
                    20_000
                ),
                (b"gone".to_vec(), None, 0),
                (b"expired".to_vec(), None, 5_000),
            ],
            "only the live value is restored; the others are deleted"
        );
    }

    #[test]
    fn surprises_send_the_bucket_key_by_key() {
        let now = 10_000;
        let value = || entry("a", EntryKind::Value, None);
        // A key the names did not include: its value was not dumped.
        let (keys, dump) = bucket(
            vec![value(), entry("late", EntryKind::Value, None)],
            &[("a", Some("v"))],
        );
        assert!(prepare(1, &keys, dump, now, 0).is_none());
        // A live value missing under its metadata.
        let (keys, dump) = bucket(vec![value()], &[("a", None)]);
        assert!(prepare(1, &keys, dump, now, 0).is_none());
        // A CRDT entry: its state is another key.
        let crdt = (
            b"c".to_vec(),
            Meta::crdt(crate::crdt::CrdtKind::Counter, 5)
                .encode()
                .into_bytes(),
        );
        let (keys, dump) = bucket(vec![value(), crdt], &[("a", Some("v")), ("c", Some("1"))]);
        assert!(prepare(1, &keys, dump, now, 0).is_none());
        // A write that may still be landing (version 1,000 ms, now 10,000 ms, window 20 s).
        let (keys, dump) = bucket(vec![value()], &[("a", Some("v"))]);
        assert!(prepare(1, &keys, dump, now, 20_000).is_none());
        // Nothing in it.
        let (keys, dump) = bucket(Vec::new(), &[]);
        assert!(prepare(1, &keys, dump, now, 0).is_none());
        // The same bucket without surprises is copied.
        let (keys, dump) = bucket(vec![value()], &[("a", Some("v"))]);
        assert!(prepare(1, &keys, dump, now, 0).is_some());
    }

    #[test]
    fn values_are_taken_by_name_in_any_order_and_once() {
        let names: Vec<Vec<u8>> = ["a", "b", "c"]
            .iter()
            .map(|n| n.as_bytes().to_vec())
            .collect();
        let value = |v: &str| Some(CopiedValue::Dump(v.as_bytes().to_vec()));
        let mut dumped = DumpedValues::new(&names, vec![value("1"), None, value("3")]);
        assert_eq!(dumped.take(b"a"), Some(value("1")));
        assert_eq!(dumped.take(b"c"), Some(value("3")), "out of order");
        assert_eq!(dumped.take(b"b"), Some(None), "read, holding no value");
        assert_eq!(dumped.take(b"a"), None, "taken already");
        assert_eq!(dumped.take(b"x"), None, "never read");
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
