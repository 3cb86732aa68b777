//! The digest exchange: read every node's bucket digests (one HGETALL each); for the buckets
//! that differ read their sub-bucket digests, and only for the sub-buckets that differ read the
//! metadata, diff it key by key and repair the stale nodes.

use super::diff::{self, BucketMetas, BucketMismatch, Grouped, SubMismatch};
use super::progress::{self, ProgressHandle};
use super::repair::{self, Repair};
use super::{Sweeper, bulk, lease};
use futures::StreamExt;
use quorumd_core::hlc::wall_clock_ms;
use quorumd_core::meta::Meta;
use quorumd_node::calls;
use quorumd_node::live::BucketState;
use quorumd_node::pool::{Health, NodeId};
use std::collections::BTreeSet;
use std::collections::HashMap;

/// `shards`: only buckets in these shards (this instance's leases); `None` for all.
pub async fn run(sw: &Sweeper, p: &ProgressHandle, dry_run: bool, shards: Option<&BTreeSet<u32>>) {
    let pool = sw.pool();
    let settings = sw.store().settings();
    let n = pool.len();
    let buckets = settings.layout.buckets;
    let digest_keys = settings.layout.digest_keys();
    progress::lock(p).phase = "reading digests";
    // Per node, a wipe since its monitor's last pass is judged first, so the node is
    // recovering before its digests are read and this pass, which copies back what it lost,
    // can also find it in sync again and give it back its sentinel (otherwise only the next
    // pass could). Only a node that was recovering before its digests were read can be found
    // in sync by this pass: a node wiped after that read would look in sync from what it held
    // before. Losses are counted, not timed: a wipe judged in the same millisecond as the read
    // began is told apart all the same.
    let mut marked_before_read = vec![0; n];
    let reads = futures::future::join_all(pool.nodes().iter().map(|node| {
        let digest_keys = &digest_keys;
        async move {
            node.probe_now().await;
            let marked = node.losses_marked();
            (
                node.id,
                marked,
                calls::sync::digests(node, digest_keys).await,
            )
        }
    }))
    .await;
    let mut answered: Vec<(NodeId, HashMap<u32, u64>)> = Vec::new();
    // Nodes this pass covered completely; only those may leave `recovering`.
    let mut covered = vec![false; n];
    for (id, marked, r) in reads {
        marked_before_read[id] = marked;
        match r {
            Ok(d) => {
                covered[id] = true;
                answered.push((id, d));
            }
            Err(e) => progress::lock(p).error(format!("digests of {}: {e}", pool.node(id).display)),
        }
    }
    let mut mismatches = diff::mismatched_buckets(&answered, buckets);
    if let Some(owned) = shards {
        let total = sw.config().shards;
        mismatches.retain(|m| owned.contains(&lease::shard_of(m.bucket, total)));
    }
    let partial = shards.is_some_and(|owned| owned.len() < sw.config().shards as usize);
    if answered.len() >= 2 {
        // The grid: with every bucket compared, all the others are in sync now.
        crate::sync::events::BucketsChanged {
            state: BucketState::Differing,
            buckets: mismatches.iter().map(|m| m.bucket).collect(),
            reset: !partial,
            live: pool.live(),
        }
        .emit();
    }
    {
        let mut r = progress::lock(p);
        r.buckets_total = u64::from(buckets);
        r.buckets_compared = if answered.len() >= 2 {
            u64::from(buckets)
        } else {
            0
        };
        r.buckets_mismatched = mismatches.len() as u64;
        r.phase = "comparing buckets";
        r.tick(0, mismatches.len() as u64);
    }
    if answered.len() < 2 {
        progress::lock(p).error("fewer than two nodes answered: nothing to compare");
        return;
    }

    // (node, version) pairs a node still lacks after this pass.
    let mut lacking: Vec<(NodeId, quorumd_core::hlc::Version)> = Vec::new();
    let mut done = 0u64;
    let all_answered = answered.len() == n;
    // Eight chunks in flight: holders read, quorumd parses and empty or stale nodes write at
    // the same time (in the 1M-key heal bench, with the copy in plain transactions, four kept
    // 76–79% of the 2 cores busy and eight 80–86%; heal median of 6 rounds 4.34 s → 3.71 s).
    // Indices rather than slices: a closure taking a borrowed chunk trips the compiler's
    // higher-ranked lifetime inference once the sweep future is spawned.
    let batch = sw.cfg.bucket_batch;
    let mismatches = &mismatches;
    let mut chunks = futures::stream::iter((0..mismatches.len()).step_by(batch))
        .map(|start| async move {
            let chunk = &mismatches[start..(start + batch).min(mismatches.len())];
            (
                chunk.len(),
                process_chunk(sw, chunk, p, dry_run, all_answered).await,
            )
        })
        .buffer_unordered(8);
    while let Some((buckets_done, outcome)) = chunks.next().await {
        for node in outcome.unexamined {
            covered[node] = false;
        }
        lacking.extend(outcome.lacking);
        done += buckets_done as u64;
        progress::lock(p).tick(done, mismatches.len() as u64);
    }
    if !dry_run {
        // Queue state has no digests: a node that lost data gets its queues back here, and
        // is not called back in sync before it has them.
        for node in super::queues::restore_lost(sw, p, &covered, &marked_before_read).await {
            covered[node] = false;
        }
        let complete = answered.len() == n && !partial;
        finish_recovery(sw, &covered, &lacking, complete, &marked_before_read, p).await;
    }
}

/// What one chunk of mismatched buckets left behind.
struct ChunkOutcome {
    /// Nodes this pass cannot call in sync: their metadata could not be read, or a differing
    /// sub-bucket of theirs could not be compared.
    unexamined: Vec<NodeId>,
    /// (node, version) pairs still lacking after the chunk.
    lacking: Vec<(NodeId, quorumd_core::hlc::Version)>,
}

/// Reads, diffs and repairs one chunk of mismatched buckets.
async fn process_chunk(
    sw: &Sweeper,
    chunk: &[BucketMismatch],
    p: &ProgressHandle,
    dry_run: bool,
    all_answered: bool,
) -> ChunkOutcome {
    // Buckets that some nodes hold nothing of are copied whole; what that cannot do goes key
    // by key below.
    let key_by_key;
    let chunk: &[BucketMismatch] = if dry_run {
        chunk
    } else {
        let (plans, mut rest) = bulk::split(sw, chunk);
        let fallback = bulk::copy(sw, &plans, p).await;
        rest.extend(
            chunk
                .iter()
                .filter(|mm| fallback.contains(&mm.bucket))
                .cloned(),
        );
        key_by_key = rest;
        &key_by_key
    };
    let mut lacking = Vec::new();
    let (subs, views, mut unexamined) = read_chunk(sw, chunk, p).await;
    let now = wall_clock_ms();
    let mut repairs = Vec::new();
    let mut purges: Vec<(calls::store::KeyLocation, Meta)> = Vec::new();
    let mut buckets_with_repairs = Vec::new();
    for sm in &subs {
        let Some(view) = sub_view(sm, &views) else {
            // A digest group's reader failed: what the other nodes lack here is unknown.
            unexamined.extend(sm.nodes());
            continue;
        };
        let divergent = diff::diff_bucket(&view);
        let mut deferred = 0u64;
        let before = repairs.len();
        for d in &divergent {
            if diff::may_be_in_flight(&d.winner, now, sw.cfg.in_flight_window_ms) {
                deferred += 1;
                lacking.extend(d.stale.iter().map(|&s| (s, d.winner.version)));
                continue;
            }
            let Ok(loc) = sw.store().locate(&d.key) else {
                continue;
            };
            repairs.push(Repair {
                loc,
                winner: d.winner.clone(),
                holders: d.holders.clone(),
                stale: d.stale.clone(),
            });
        }
        // A bucket's sub-buckets come one after the other.
        if repairs.len() > before && buckets_with_repairs.last() != Some(&sm.bucket) {
            buckets_with_repairs.push(sm.bucket);
        }
        if all_answered {
            for (key, meta) in
                diff::purgeable(&view, sw.pool().len(), now, sw.cfg.tombstone_grace_ms)
            {
                if let Ok(loc) = sw.store().locate(&key) {
                    purges.push((loc, meta));
                }
            }
        }
        let mut r = progress::lock(p);
        r.keys_divergent += divergent.len() as u64;
        r.keys_deferred += deferred;
    }
    if dry_run {
        lacking.extend(
            repairs
                .iter()
                .flat_map(|r| r.stale.iter().map(|&s| (s, r.winner.version))),
        );
    } else {
        let live = sw.pool().live();
        let keys = repairs.len() as u64;
        crate::sync::events::BucketsChanged {
            state: BucketState::Repairing,
            buckets: buckets_with_repairs.clone(),
            reset: false,
            live,
        }
        .emit();
        let failed = repair::execute(sw, repairs, p).await;
        let ok = failed.is_empty();
        lacking.extend(failed);
        purge(sw, &purges, p).await;
        let repaired = buckets_with_repairs.len() as u64;
        crate::sync::events::BucketsChanged {
            state: if ok {
                BucketState::Repaired
            } else {
                BucketState::Differing
            },
            buckets: buckets_with_repairs,
            reset: false,
            live,
        }
        .emit();
        if ok {
            progress::lock(p).buckets_repaired += repaired;
            crate::sync::events::RepairBatchApplied {
                keys,
                buckets: repaired,
                live,
            }
            .emit();
        }
    }
    ChunkOutcome {
        unexamined,
        lacking,
    }
}

/// Metadata read for one chunk of mismatched buckets: (node, bucket, sub-bucket) → entries.
type ChunkViews = HashMap<(NodeId, u32, u32), BucketMetas>;

/// Narrows a chunk of mismatched buckets to its mismatched sub-buckets and reads those.
/// Returns the sub-buckets to diff, what was read, and the nodes the chunk could not examine
/// (their reads failed, or a bucket they differ in could not be read from every group).
async fn read_chunk(
    sw: &Sweeper,
    chunk: &[BucketMismatch],
    p: &ProgressHandle,
) -> (Vec<SubMismatch>, ChunkViews, Vec<NodeId>) {
    let (subs, mut failed) = narrow(sw, chunk, p).await;
    let (views, failed_metadata) = read_sub_buckets(sw, &subs, p).await;
    failed.extend(failed_metadata);
    (subs, views, failed)
}

/// The sub-buckets that differ in a chunk of mismatched buckets: the sub-digests of each bucket
/// are read from each group's representative (one pipeline per node) and compared. A bucket is
/// skipped when one of its groups could not be read, and all its nodes are returned as not
/// examined.
async fn narrow(
    sw: &Sweeper,
    chunk: &[BucketMismatch],
    p: &ProgressHandle,
) -> (Vec<SubMismatch>, Vec<NodeId>) {
    let settings = sw.store().settings();
    let layout = &settings.layout;
    let mut wanted: HashMap<NodeId, Vec<u32>> = HashMap::new();
    for mm in chunk {
        for reader in mm.readers() {
            wanted.entry(reader).or_default().push(mm.bucket);
        }
    }
    let reads = futures::future::join_all(wanted.into_iter().map(|(node, buckets)| async move {
        let keys: Vec<String> = buckets.iter().map(|b| layout.sub_digest_key(*b)).collect();
        let r = calls::sync::sub_digests(sw.pool().node(node), &keys).await;
        (node, buckets, r)
    }))
    .await;
    let mut sub_digests: HashMap<(NodeId, u32), HashMap<u32, u64>> = HashMap::new();
    let mut failed = Vec::new();
    for (node, buckets, r) in reads {
        match r {
            Ok(d) => sub_digests.extend(buckets.into_iter().map(|b| (node, b)).zip(d)),
            Err(e) => {
                progress::lock(p).error(format!(
                    "sub-bucket digests from {}: {e}",
                    sw.pool().node(node).display
                ));
                failed.push(node);
            }
        }
    }
    let mut subs = Vec::new();
    for mm in chunk {
        let read: Option<Vec<&HashMap<u32, u64>>> = mm
            .readers()
            .into_iter()
            .map(|r| sub_digests.get(&(r, mm.bucket)))
            .collect();
        match read {
            Some(read) => subs.extend(diff::mismatched_subs(
                mm,
                &read,
                settings.layout.sub_buckets,
            )),
            // What the bucket's other nodes lack is unknown this pass.
            None => failed.extend(mm.nodes()),
        }
    }
    progress::lock(p).sub_buckets_mismatched += subs.len() as u64;
    (subs, failed)
}

/// Reads the metadata of mismatched sub-buckets from one representative per sub-bucket group
/// (one pipeline per node).
async fn read_sub_buckets(
    sw: &Sweeper,
    subs: &[SubMismatch],
    p: &ProgressHandle,
) -> (ChunkViews, Vec<NodeId>) {
    let layout = &sw.store().settings().layout;
    let mut wanted: HashMap<NodeId, Vec<(u32, u32)>> = HashMap::new();
    for sm in subs {
        for reader in sm.readers() {
            wanted.entry(reader).or_default().push((sm.bucket, sm.sub));
        }
    }
    let reads = futures::future::join_all(wanted.into_iter().map(|(node, units)| async move {
        let keys: Vec<[String; 1]> = units
            .iter()
            .map(|(b, s)| [layout.meta_key(*b, *s)])
            .collect();
        let r = calls::sync::bucket_metas(sw.pool().node(node), &keys).await;
        (node, units, r)
    }))
    .await;
    let mut views = ChunkViews::new();
    let mut failed = Vec::new();
    let mut pr = progress::lock(p);
    for (node, units, r) in reads {
        match r {
            Ok((metas, bad)) => {
                for b in bad {
                    pr.error(b);
                }
                for ((b, s), m) in units.into_iter().zip(metas) {
                    pr.metadata_entries_read += m.len() as u64;
                    views.insert((node, b, s), m);
                }
            }
            Err(e) => {
                pr.error(format!(
                    "bucket metadata from {}: {e}",
                    sw.pool().node(node).display
                ));
                failed.push(node);
            }
        }
    }
    (views, failed)
}

/// The diff input for one sub-bucket, if every group's representative was read.
fn sub_view<'a>(
    sm: &'a SubMismatch,
    views: &'a ChunkViews,
) -> Option<Vec<(&'a [NodeId], &'a BucketMetas)>> {
    sm.groups
        .iter()
        .map(|g| {
            views
                .get(&(g.members[0], sm.bucket, sm.sub))
                .map(|m| (g.members.as_slice(), m))
        })
        .collect()
}

pub(super) async fn purge(
    sw: &Sweeper,
    purges: &[(calls::store::KeyLocation, Meta)],
    p: &ProgressHandle,
) {
    if purges.is_empty() {
        return;
    }
    let entries: Vec<_> = purges.iter().map(|(l, m)| (l, m)).collect();
    let results = futures::future::join_all(sw.pool().nodes().iter().map(|node| {
        let entries = &entries;
        async move {
            let mut removed = 0;
            for chunk in entries.chunks(sw.cfg.key_batch) {
                removed += calls::store::purge(node, chunk).await?;
            }
            Ok::<u64, quorumd_node::pool::NodeError>(removed)
        }
    }))
    .await;
    let mut r = progress::lock(p);
    let mut purged = 0;
    for (node, res) in sw.pool().nodes().iter().zip(results) {
        match res {
            // Each node removes the same entries; count them once.
            Ok(removed) => purged = purged.max(removed),
            Err(e) => r.error(format!("purge on {}: {e}", node.display)),
        }
    }
    r.tombstones_purged += purged;
}

/// After a pass: a recovering node that the pass covered, and that lacks nothing written
/// before it was marked recovering, is back in sync. Writes after that reached it directly.
/// Nodes found in sync also get the sentinel key that tells a later wipe apart, and then every
/// reachable node records which nodes hold it (see `record_sentinels`).
async fn finish_recovery(
    sw: &Sweeper,
    covered: &[bool],
    lacking: &[(NodeId, quorumd_core::hlc::Version)],
    all_answered: bool,
    marked_before_read: &[u64],
    p: &ProgressHandle,
) {
    let pool = sw.pool();
    // A pass that did not cover every bucket (other instances hold shards) cannot tell from
    // its own repairs; fresh digests that agree can.
    let agreeing = if all_answered {
        None
    } else {
        Some(digest_agreement(sw).await)
    };
    for node in pool.nodes() {
        if !covered[node.id] {
            continue;
        }
        let recovering_since = node.recovering_since_ms();
        if node.losses_marked() != marked_before_read[node.id] {
            // Marked after this pass read its digests: the next pass, which the marking
            // asked for, decides.
            continue;
        }
        let in_sync = match (&agreeing, recovering_since) {
            (Some(agree), _) => agree.get(node.id).copied().unwrap_or(false),
            (None, Some(since)) => !lacking.iter().any(|(n, v)| *n == node.id && v.ms <= since),
            (None, None) => !lacking.iter().any(|(n, _)| *n == node.id),
        };
        let needs_sentinel = pool.status()[node.id].has_sentinel != Some(true);
        if !in_sync || !(needs_sentinel || recovering_since.is_some()) {
            continue;
        }
        if node.health() == Health::Down {
            continue;
        }
        // A wipe took the layout marker with the data: written back before the sentinel, so
        // that a restart of quorumd finds the healed node marked.
        if let Err(e) = sw.store.mark_layout(node).await {
            progress::lock(p).error(format!("layout marker on {}: {e}", node.display));
            continue;
        }
        // Likewise the lock gate: an instance started after this heal must still keep the
        // node out of lock majorities until the loss's lock delay is over.
        if let Err(e) = node.write_lock_gates().await {
            progress::lock(p).error(format!("lock gate on {}: {e}", node.display));
            continue;
        }
        let (marks, keys): (Vec<String>, Vec<String>) = node.sentinel_keys().into_iter().unzip();
        match calls::sync::set_sentinels(node, &keys).await {
            Ok(()) => {
                pool.sentinel_written(node.id, &marks);
                node.mark_synced();
            }
            Err(e) => progress::lock(p).error(format!("sentinel on {}: {e}", node.display)),
        }
    }
    record_sentinels(sw, p).await;
}

/// Writes, on every node that is not down, the names of the nodes known to hold the sentinel
/// that its records lack. A node that lacks the sentinel lost data only if it was given one,
/// and these records are what tell so after a wipe (which takes the node's own records with
/// it) and after a restart of quorumd. They are written after the sentinel itself, so a
/// record never names a node that was not given it.
async fn record_sentinels(sw: &Sweeper, p: &ProgressHandle) {
    let pool = sw.pool();
    let writes = pool
        .nodes()
        .iter()
        .filter(|node| node.health() != Health::Down)
        .filter_map(|node| {
            let missing = pool.unrecorded_sentinels(node.id);
            (!missing.is_empty()).then_some((node, missing))
        })
        .map(|(node, missing)| async move {
            let written =
                calls::sync::record_sentinels(node, pool.sentinel_records_key(), &missing).await;
            (node, missing, written)
        });
    for (node, missing, written) in futures::future::join_all(writes).await {
        match written {
            Ok(()) => pool.sentinels_recorded(node.id, &missing),
            Err(e) => progress::lock(p).error(format!("sentinel records on {}: {e}", node.display)),
        }
    }
}

/// Per node: whether all its bucket digests equal those of the largest agreeing group of
/// nodes (a node that does not answer does not agree).
async fn digest_agreement(sw: &Sweeper) -> Vec<bool> {
    let pool = sw.pool();
    let digest_keys = sw.store().settings().layout.digest_keys();
    let reads = futures::future::join_all(
        pool.nodes()
            .iter()
            .map(|n| calls::sync::digests(n, &digest_keys)),
    )
    .await;
    let answered: Vec<(NodeId, HashMap<u32, u64>)> = reads
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.ok().map(|d| (i, d)))
        .collect();
    let mut agree = vec![false; pool.len()];
    for (id, _) in &answered {
        agree[*id] = true;
    }
    for mm in diff::mismatched_buckets(&answered, sw.store().settings().layout.buckets) {
        let largest = &mm.groups[0];
        // With no strict majority group, nobody can be called in sync from digests alone.
        let trusted = mm
            .groups
            .get(1)
            .is_none_or(|second| largest.members.len() > second.members.len());
        for g in &mm.groups {
            if !trusted || g.digest != largest.digest {
                for m in &g.members {
                    agree[*m] = false;
                }
            }
        }
    }
    agree
}
