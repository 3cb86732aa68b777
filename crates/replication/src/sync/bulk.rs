//! Whole-bucket copies onto nodes that hold nothing of a bucket: the heal of a wiped or
//! restarted-empty node.
//!
//! The key-by-key path reads the bucket from every node, diffs it and runs the versioned APPLY
//! per key, which costs a stale node several `HGET`/`HSET` calls and Lua string work per key.
//! When a node's digest says the bucket is empty there is nothing to compare on it: the bucket
//! is read whole from one node of the agreeing group and written on the empty nodes as it is
//! (see `quorumd_node::calls::bucket_copy`). A bucket is copied only if the node still holds
//! no metadata of it, checked atomically with the copy, so a client write that landed in
//! between is never overwritten: that bucket goes back to the key-by-key path, which compares
//! versions. Any other surprise (a CRDT entry, a value missing under its metadata, a write on
//! the source between its reads, an error) does the same, so this path only ever saves work.

use super::Sweeper;
use super::diff::BucketMismatch;
use super::progress::{self, ProgressHandle};
use crate::store::StoreSettings;
use quorumd_core::meta::EntryKind;
use quorumd_core::meta::Meta;
use quorumd_node::calls;
use quorumd_node::calls::bucket_copy::{
    BucketCopy, BucketLayout, CopiedValue, MetaRead, ReadAs, ValuesRead,
};
use quorumd_node::live::BucketState;
use quorumd_node::pool::{Health, NodeId};
use quorumd_node::pool::{Node, NodeError};
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
    crate::sync::events::BucketsChanged {
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
            crate::sync::events::BucketsChanged {
                state,
                buckets,
                reset: false,
                live,
            }
            .emit();
        }
    }
    if !copied.is_empty() {
        crate::sync::events::RepairBatchApplied {
            keys,
            buckets: copied.len() as u64,
            live,
        }
        .emit();
    }
    fallback
}

/// Reads the planned buckets from their source. Returns the copies ready to restore
/// (with their targets) and the buckets that must take the key-by-key path.
async fn read_source<'a>(
    sw: &Sweeper,
    source: NodeId,
    plans: Vec<&'a BulkPlan>,
) -> (Vec<(BucketCopy, &'a [NodeId])>, Vec<u32>) {
    let settings = sw.store().settings();
    let buckets: Vec<u32> = plans.iter().map(|pl| pl.bucket).collect();
    let (copies, fallback) = read_copies(
        sw.pool().node(source),
        settings,
        &buckets,
        sw.cfg.key_batch,
        sw.cfg.in_flight_window_ms,
    )
    .await;
    let targets: HashMap<u32, &'a [NodeId]> = plans
        .iter()
        .map(|pl| (pl.bucket, pl.targets.as_slice()))
        .collect();
    let ready = copies
        .into_iter()
        .map(|c| {
            let t = targets[&c.bucket];
            (c, t)
        })
        .collect();
    (ready, fallback)
}

/// Reads `buckets` whole from `node` for a copy: their metadata in one transaction, then
/// their live values about `key_batch` at a time (`MGET`, and `DUMP` for what `MGET` could not
/// read: other types), each read with the bucket's digest. Returns the copies and the buckets
/// that must be repaired key by key instead: unreadable, not copyable (see [`prepare`]), or
/// written to between the reads (the digest changed).
pub async fn read_copies(
    node: &Node,
    settings: &StoreSettings,
    buckets: &[u32],
    key_batch: usize,
    in_flight_window_ms: u64,
) -> (Vec<BucketCopy>, Vec<u32>) {
    let layouts: Vec<BucketLayout> = buckets
        .iter()
        .map(|&bucket| BucketLayout {
            bucket,
            digest_key: settings.layout.digest_key(bucket),
            digest_field: settings.layout.digest_field(bucket),
            meta_keys: settings.layout.bucket_meta_keys(bucket),
            state_keys: vec![settings.layout.sub_digest_key(bucket)],
        })
        .collect();
    let Ok(metas) = calls::bucket_copy::read_meta(node, &layouts).await else {
        // A read error is for the key-by-key path to report.
        return (Vec::new(), buckets.to_vec());
    };
    let now = quorumd_core::hlc::wall_clock_ms();
    let mut pending: Vec<Option<PreparedCopy>> = layouts
        .iter()
        .zip(metas)
        .map(|(layout, read)| prepare(layout, read, now, in_flight_window_ms))
        .collect();
    for how in [ReadAs::Strings, ReadAs::Dumps] {
        let waiting: Vec<usize> = (0..pending.len())
            .filter(|&i| pending[i].as_ref().is_some_and(|p| !p.unread.is_empty()))
            .collect();
        let size = |&i: &usize| pending[i].as_ref().map_or(0, |p| p.unread.len());
        for (start, end, _) in calls(&waiting, size, key_batch) {
            let call = &waiting[start..end];
            let requests: Vec<(&BucketCopy, Vec<&[u8]>)> = call
                .iter()
                .filter_map(|&i| pending[i].as_ref())
                .map(|p| (&p.copy, p.keys_to_read()))
                .collect();
            let reads = calls::bucket_copy::read_values(node, &requests, how).await;
            let mut reads = reads.map(Vec::into_iter);
            for &i in call {
                let read = reads.as_mut().ok().and_then(Iterator::next);
                let taken = match (pending[i].as_mut(), read) {
                    (Some(p), Some(read)) => p.take(read, how),
                    _ => false,
                };
                if !taken {
                    pending[i] = None;
                }
            }
        }
    }
    let mut copies = Vec::new();
    let mut fallback = Vec::new();
    for (p, &bucket) in pending.into_iter().zip(buckets) {
        match p {
            Some(p) if p.unread.is_empty() => copies.push(p.copy),
            _ => fallback.push(bucket),
        }
    }
    (copies, fallback)
}

/// A bucket whose metadata was read for a copy, waiting for its live values.
#[derive(Debug)]
struct PreparedCopy {
    /// The copy, its live values still `None`.
    copy: BucketCopy,
    /// The bucket's digest as the metadata read found it.
    digest: Option<Vec<u8>>,
    /// Indices in `copy.values` of the live values not read yet.
    unread: Vec<usize>,
}

impl PreparedCopy {
    fn keys_to_read(&self) -> Vec<&[u8]> {
        self.unread
            .iter()
            .map(|&i| self.copy.values[i].0.as_slice())
            .collect()
    }

    /// Takes the values read for [`Self::keys_to_read`]. `false` when the bucket cannot be
    /// copied: its digest changed since the metadata was read (a write landed), or a live
    /// value is missing under its metadata.
    fn take(&mut self, read: ValuesRead, how: ReadAs) -> bool {
        if read.digest != self.digest || read.values.len() != self.unread.len() {
            return false;
        }
        let mut still_unread = Vec::new();
        for (&i, value) in self.unread.iter().zip(read.values) {
            self.copy.values[i].1 = match (value, how) {
                (Some(v), ReadAs::Strings) => Some(CopiedValue::String(v)),
                (Some(v), ReadAs::Dumps) => Some(CopiedValue::Dump(v)),
                // Not a string: read again as a dump.
                (None, ReadAs::Strings) => {
                    still_unread.push(i);
                    None
                }
                (None, ReadAs::Dumps) => return false,
            };
        }
        self.unread = still_unread;
        true
    }
}

/// Turns a bucket's metadata into the copy to fill with values, or `None` when it must be
/// repaired key by key: empty, a CRDT entry (its state lives in another key), an entry that
/// does not parse, or an entry younger than `in_flight_window_ms` (a write that may still be
/// landing: the key-by-key path defers it, which keeps a recovering node recovering until it
/// has landed). Tombstones and expired entries restore no value (their keys are deleted).
fn prepare(
    layout: &BucketLayout,
    read: MetaRead,
    now_ms: u64,
    in_flight_window_ms: u64,
) -> Option<PreparedCopy> {
    let mut values = Vec::new();
    let mut unread = Vec::new();
    let mut hashes = Vec::new();
    for entries in &read.meta {
        for (key, raw) in entries {
            let m = Meta::parse(raw).ok()?;
            if super::diff::may_be_in_flight(&m, now_ms, in_flight_window_ms) {
                return None;
            }
            match m.kind {
                EntryKind::Crdt(_) => return None,
                EntryKind::Value if !m.is_expired(now_ms) => unread.push(values.len()),
                _ => {}
            }
            hashes.push(m.entry_hash);
            values.push((key.clone(), None, m.expires_at_ms.unwrap_or(0)));
        }
    }
    if values.is_empty() {
        return None;
    }
    Some(PreparedCopy {
        copy: BucketCopy {
            bucket: layout.bucket,
            digest_key: layout.digest_key.clone(),
            digest_field: layout.digest_field,
            digest: quorumd_core::digest::combine(hashes),
            entries: values.len(),
            meta: layout.meta_keys.iter().cloned().zip(read.meta).collect(),
            state: layout.state_keys.iter().cloned().zip(read.state).collect(),
            values,
        },
        digest: read.digest,
        unread,
    })
}

/// Restores copies on one target, about `key_batch` entries per call, paced by the throttle.
/// Returns the buckets that were not copied.
async fn restore_on(
    sw: &Sweeper,
    target: NodeId,
    copies: Vec<&BucketCopy>,
    p: &ProgressHandle,
) -> Vec<u32> {
    let node = sw.pool().node(target);
    let mut not_copied = Vec::new();
    for (start, end, entries) in calls(&copies, |c| c.entries, sw.cfg.key_batch) {
        let call = &copies[start..end];
        let waited = sw.throttle.acquire(node, entries as u64).await;
        if !waited.is_zero() {
            crate::sync::events::SweepBackedOff {
                node: &node.display,
                waited,
            }
            .emit();
        }
        match restore_copies(node, call).await {
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

/// Restores copies on a node that held nothing of them when the digests were read; per copy,
/// whether it landed (`false`: the node holds metadata of that bucket by now). Strings go in
/// one transaction of plain commands; when a write to one of the buckets discards it, or a
/// value of another type is among them, the `RESTORE_BUCKETS` script decides bucket by bucket.
pub async fn restore_copies(node: &Node, copies: &[&BucketCopy]) -> Result<Vec<bool>, NodeError> {
    if copies.iter().all(|c| c.strings_only())
        && let Some(done) = calls::bucket_copy::restore_buckets_watched(node, copies).await?
    {
        return Ok(done);
    }
    calls::bucket_copy::restore_buckets(node, copies).await
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
        let v = quorumd_core::hlc::Version {
            ms: 1_000,
            counter: 0,
            writer: 7,
        };
        let meta = Meta::new(
            key.as_bytes(),
            v,
            kind,
            expires,
            quorumd_core::content::Content::Absent,
        );
        (key.as_bytes().to_vec(), meta.encode())
    }

    fn layout() -> BucketLayout {
        BucketLayout {
            bucket: 1,
            digest_key: "qd:d".into(),
            digest_field: quorumd_core::layout::DigestField::Hash(1),
            meta_keys: vec!["qd:m:1".into()],
            state_keys: vec!["qd:s:1".into()],
        }
    }

    fn meta_read(entries: Vec<(Vec<u8>, Vec<u8>)>) -> MetaRead {
        MetaRead {
            digest: Some(b"d1".to_vec()),
            meta: vec![entries],
            state: vec![vec![(b"0".to_vec(), b"sub-digest".to_vec())]],
        }
    }

    fn values_read(digest: &str, values: &[Option<&str>]) -> ValuesRead {
        ValuesRead {
            digest: Some(digest.as_bytes().to_vec()),
            values: values
                .iter()
                .map(|v| v.map(|v| v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn a_bucket_read_whole_becomes_its_copy() {
        let now = 10_000;
        let live = entry("live", EntryKind::Value, Some(20_000));
        let gone = entry("gone", EntryKind::Tombstone, None);
        let expired = entry("expired", EntryKind::Value, Some(5_000));
        let list = entry("list", EntryKind::Value, None);
        let hashes: Vec<u64> = [&live, &gone, &expired, &list]
            .iter()
            .map(|(_, raw)| Meta::parse(raw).unwrap().entry_hash)
            .collect();
        let entries = vec![live, gone, expired, list];
        let mut p = prepare(&layout(), meta_read(entries.clone()), now, 0).expect("a copy");
        assert_eq!(
            p.keys_to_read(),
            vec![&b"live"[..], b"list"],
            "live values only"
        );
        // MGET answers nil for the list: it is read again as a dump.
        assert!(p.take(values_read("d1", &[Some("v"), None]), ReadAs::Strings));
        assert_eq!(p.keys_to_read(), vec![&b"list"[..]]);
        assert!(p.take(values_read("d1", &[Some("list-dump")]), ReadAs::Dumps));
        assert!(p.unread.is_empty());
        let copy = p.copy;
        assert_eq!((copy.bucket, copy.entries), (1, 4));
        assert_eq!(copy.digest, quorumd_core::digest::combine(hashes));
        assert_eq!(copy.meta, vec![("qd:m:1".to_string(), entries)]);
        assert_eq!(
            copy.state,
            vec![(
                "qd:s:1".to_string(),
                vec![(b"0".to_vec(), b"sub-digest".to_vec())]
            )]
        );
        let string = |v: &str| Some(CopiedValue::String(v.as_bytes().to_vec()));
        assert_eq!(
            copy.values,
            vec![
                (b"live".to_vec(), string("v"), 20_000),
                (b"gone".to_vec(), None, 0),
                (b"expired".to_vec(), None, 5_000),
                (
                    b"list".to_vec(),
                    Some(CopiedValue::Dump(b"list-dump".to_vec())),
                    0
                ),
            ],
            "only live values are restored; the others are deleted"
        );
        assert!(!copy.strings_only());
    }

    #[test]
    fn surprises_send_the_bucket_key_by_key() {
        let now = 10_000;
        let value = || entry("a", EntryKind::Value, None);
        let prepared = |entries| prepare(&layout(), meta_read(entries), now, 0);
        // A CRDT entry: its state is another key.
        let crdt = (
            b"c".to_vec(),
            Meta::crdt(
                quorumd_core::crdt::CrdtKind::Counter,
                5,
                quorumd_core::content::Content::Absent,
            )
            .encode(),
        );
        assert!(prepared(vec![value(), crdt]).is_none());
        // An entry that does not parse.
        assert!(prepared(vec![(b"a".to_vec(), b"garbage".to_vec())]).is_none());
        // A write that may still be landing (version 1,000 ms, now 10,000 ms, window 20 s).
        assert!(prepare(&layout(), meta_read(vec![value()]), now, 20_000).is_none());
        // Nothing in it.
        assert!(prepared(Vec::new()).is_none());
        // A write landed between the reads: the digest changed.
        let mut p = prepared(vec![value()]).unwrap();
        assert!(!p.take(values_read("d2", &[Some("v")]), ReadAs::Strings));
        // A live value missing under its metadata.
        let mut p = prepared(vec![value()]).unwrap();
        assert!(p.take(values_read("d1", &[None]), ReadAs::Strings));
        assert!(!p.take(values_read("d1", &[None]), ReadAs::Dumps));
        // The same bucket without surprises is copied, strings only.
        let mut p = prepared(vec![value()]).unwrap();
        assert!(p.take(values_read("d1", &[Some("v")]), ReadAs::Strings));
        assert!(p.unread.is_empty() && p.copy.strings_only());
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
