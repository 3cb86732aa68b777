//! The full sweep: SCAN every node's keyspace to find what digests cannot see — keys written
//! straight to a node without quorumd (adopted by the configured policy), nodes that miss a
//! key the others hold — then recheck every bucket: rebuild digests that drifted from their
//! metadata, scrub every entry against its value (which finds values deleted or changed
//! outside quorumd, handled by the direct-writes policy) and purge tombstones every node holds
//! past the grace period. SCAN cursors are
//! checkpointed on each node, so a sweep interrupted by a restart resumes where it was.

use super::Sweeper;
use super::diff::{self, BucketMetas};
use super::direct;
use super::glob;
use super::hints;
use super::progress::{self, ProgressHandle};
use super::repair::{self, Repair};
use quorumd_core::hlc::wall_clock_ms;
use quorumd_core::meta::{EntryKind, Meta};
use quorumd_node::calls;
use quorumd_node::calls::store::{
    ApplyEntry, BucketDigestKeys, Captured, KeyLocation, Mismatch, NodeCondition, Payload,
};
use quorumd_node::pool::{Health, Node, NodeError, NodeId, Traffic};
use std::collections::{BTreeMap, HashMap};

pub async fn run(sw: &Sweeper, p: &ProgressHandle, dry_run: bool) {
    let pool = sw.pool();
    let buckets = u64::from(sw.store().settings().layout.buckets);
    progress::lock(p).buckets_total = buckets;
    // A sweep stopped in its second phase resumes there: its scans had finished.
    let resume = if dry_run {
        None
    } else {
        bucket_checkpoint(sw).await
    };
    if let Some(from) = resume {
        progress::lock(p).resumed_from_bucket = Some(from);
        progress::lock(p).phase = "checking buckets";
        check_buckets(sw, p, dry_run, from).await;
        super::queues::reconcile_all(sw, p, dry_run).await;
        return;
    }
    for node in pool.nodes() {
        if node.health() == Health::Down {
            progress::lock(p).error(format!(
                "{} is down: its keyspace was not scanned",
                node.display
            ));
            continue;
        }
        progress::lock(p).phase = "scanning";
        scan_node(sw, node, p, dry_run).await;
    }
    progress::lock(p).phase = "checking buckets";
    check_buckets(sw, p, dry_run, 0).await;
    // Queue state is not made of versioned keys: its own pass, after the keys.
    super::queues::reconcile_all(sw, p, dry_run).await;
}

fn bucket_checkpoint_key(prefix: &str) -> String {
    format!("{prefix}sweep:buckets")
}

/// Where a previous full sweep's second phase stopped: the lowest saved position among the
/// nodes that answer, when every one of them saved one.
async fn bucket_checkpoint(sw: &Sweeper) -> Option<u32> {
    let key = bucket_checkpoint_key(&sw.store().settings().layout.prefix);
    let mut lowest: Option<u32> = None;
    for node in sw.pool().nodes() {
        if node.health() == Health::Down {
            continue;
        }
        let saved = calls::sync::load_bucket_checkpoint(node, &key)
            .await
            .ok()??;
        lowest = Some(lowest.map_or(saved, |l| l.min(saved)));
    }
    lowest
}

/// Saves the second phase's position on every node that is up (`None`: the phase finished).
async fn save_bucket_checkpoint(sw: &Sweeper, next: Option<u32>, p: &ProgressHandle) {
    let key = bucket_checkpoint_key(&sw.store().settings().layout.prefix);
    for node in sw.pool().nodes() {
        if node.health() == Health::Down {
            continue;
        }
        if let Err(e) = calls::sync::save_bucket_checkpoint(node, &key, next).await {
            progress::lock(p).error(format!("bucket checkpoint on {}: {e}", node.display));
        }
    }
}

fn checkpoint_key(prefix: &str) -> String {
    format!("{prefix}sweep:full")
}

/// Where a previous sweep of this node stopped, if the node is still the same server.
async fn load_checkpoint(node: &Node, key: &str) -> u64 {
    let run_id = node.status().run_id.unwrap_or_default();
    match calls::sync::load_checkpoint(node, key).await {
        Ok((Some(cursor), Some(saved_run))) if saved_run == run_id && !run_id.is_empty() => cursor,
        _ => 0,
    }
}

async fn save_checkpoint(
    node: &Node,
    key: &str,
    cursor: u64,
) -> Result<(), quorumd_node::pool::NodeError> {
    let run_id = node.status().run_id.unwrap_or_default();
    calls::sync::save_checkpoint(node, key, cursor, &run_id).await
}

fn wanted(sw: &Sweeper, key: &[u8]) -> bool {
    let cfg = sw.config();
    if key.starts_with(sw.store().settings().layout.prefix.as_bytes()) {
        return false;
    }
    let included =
        cfg.include.is_empty() || cfg.include.iter().any(|g| glob::matches(g.as_bytes(), key));
    included && !cfg.exclude.iter().any(|g| glob::matches(g.as_bytes(), key))
}

async fn scan_node(sw: &Sweeper, node: &Node, p: &ProgressHandle, dry_run: bool) {
    let ck = checkpoint_key(&sw.store().settings().layout.prefix);
    let mut cursor = if dry_run {
        0
    } else {
        load_checkpoint(node, &ck).await
    };
    progress::lock(p).resumed_from_cursor_per_node[node.id] = cursor;
    loop {
        let (next, keys) = match calls::sync::scan(node, cursor, sw.config().scan_count).await {
            Ok(r) => r,
            Err(e) => {
                progress::lock(p).error(format!("SCAN on {}: {e}", node.display));
                return;
            }
        };
        sw.scan_throttle.acquire(node, keys.len() as u64).await;
        progress::lock(p).keys_scanned_per_node[node.id] += keys.len() as u64;
        hints::remove_orphans(sw, node, &keys, p, dry_run).await;
        let locs: Vec<KeyLocation> = keys
            .iter()
            .filter(|k| wanted(sw, k))
            .filter_map(|k| sw.store().locate(k).ok())
            .collect();
        if !locs.is_empty() {
            examine(sw, &locs, p, dry_run).await;
        }
        cursor = next;
        if !dry_run && let Err(e) = save_checkpoint(node, &ck, cursor).await {
            progress::lock(p).error(format!("checkpoint on {}: {e}", node.display));
        }
        if cursor == 0 {
            return;
        }
    }
}

/// Looks at scanned keys on every node: repairs versioned keys that differ or lost their
/// value, and adopts unversioned ones.
async fn examine(sw: &Sweeper, locs: &[KeyLocation], p: &ProgressHandle, dry_run: bool) {
    let pool = sw.pool();
    let states = futures::future::join_all(
        pool.nodes()
            .iter()
            .map(|n| async move { (n.id, calls::sync::key_states(n, locs).await) }),
    )
    .await;
    let mut answered: Vec<(NodeId, Vec<calls::sync::KeyState>)> = Vec::new();
    for (id, r) in states {
        match r {
            Ok(s) => answered.push((id, s)),
            Err(e) => {
                progress::lock(p).error(format!("key states on {}: {e}", pool.node(id).display))
            }
        }
    }
    let now = wall_clock_ms();
    let mut repairs = Vec::new();
    let mut unversioned: Vec<(&KeyLocation, Vec<NodeId>)> = Vec::new();
    for (i, loc) in locs.iter().enumerate() {
        let winner = answered
            .iter()
            .filter_map(|(_, s)| s[i].0.as_ref())
            .max_by_key(|m| m.version)
            .cloned();
        let Some(winner) = winner else {
            let holders: Vec<NodeId> = answered
                .iter()
                .filter(|(_, s)| s[i].1)
                .map(|(id, _)| *id)
                .collect();
            if !holders.is_empty() {
                unversioned.push((loc, holders));
            }
            continue;
        };
        let live = winner.is_live(now);
        let has_winner =
            |s: &(Option<Meta>, bool)| s.0.as_ref().is_some_and(|m| m.version == winner.version);
        // A holder has the winning version and, for a live value, the value itself.
        let holds = |s: &(Option<Meta>, bool)| has_winner(s) && (s.1 || !live);
        let holders: Vec<NodeId> = answered
            .iter()
            .filter(|(_, s)| holds(&s[i]))
            .map(|(id, _)| *id)
            .collect();
        // A node with the winning entry but not its live value lost the value outside quorumd
        // (a direct DEL, an eviction): a direct change, which the scrub of this same sweep
        // finds and handles by its policy (a tombstone under `adopt`). Restoring it here would
        // undo a direct delete before the policy is asked, and only for keys older than the
        // in-flight window, which made the outcome depend on the key's age.
        let stale: Vec<NodeId> = answered
            .iter()
            .filter(|(_, s)| !holds(&s[i]) && !has_winner(&s[i]))
            .map(|(id, _)| *id)
            .collect();
        if stale.is_empty() {
            continue;
        }
        let mut r = progress::lock(p);
        r.keys_divergent += 1;
        if holders.is_empty() {
            // No node has the newest version's value: nothing to copy; an operator must look.
            let key = String::from_utf8_lossy(&loc.key);
            r.error(format!(
                "{key:?}: the value of its newest version {} is on no node",
                winner.version
            ));
            continue;
        }
        if diff::may_be_in_flight(&winner, now, sw.config().in_flight_window_ms) {
            r.keys_deferred += 1;
            continue;
        }
        drop(r);
        repairs.push(Repair {
            loc: loc.clone(),
            winner,
            holders,
            stale,
        });
    }
    progress::lock(p).keys_unversioned += unversioned.len() as u64;
    if dry_run {
        return;
    }
    repair::execute(sw, repairs, p).await;
    // Keys whose direct-writes policy is `report-only` are left as they are, and still differ.
    let found = unversioned.len();
    unversioned.retain(|(loc, _)| direct::adopts_unversioned(sw.config(), &loc.key));
    progress::lock(p).keys_unversioned_left += (found - unversioned.len()) as u64;
    if !unversioned.is_empty() {
        adopt(sw, &unversioned, p).await;
    }
}

/// Gives unversioned keys a version: among the nodes holding a key, the value held by most wins
/// (ties: the group with the lowest node index); a node lacking it does not vote for deleting
/// it, it gets a copy. Applied only where the key still has no metadata, so a client write that
/// lands meanwhile wins. One DUMP batch per holder, one APPLY batch per node.
async fn adopt(sw: &Sweeper, keys: &[(&KeyLocation, Vec<NodeId>)], p: &ProgressHandle) {
    let pool = sw.pool();
    let stream_checksum = sw.store().settings().stream_checksum;
    let mut asked: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
    for (i, (_, holders)) in keys.iter().enumerate() {
        for &h in holders {
            asked.entry(h).or_default().push(i);
        }
    }
    // Per key: content → nodes holding exactly that content, with what the first one read.
    let mut votes: Vec<BTreeMap<String, Vote>> = vec![BTreeMap::new(); keys.len()];
    let captures = futures::future::join_all(asked.iter().map(|(&h, idx)| async move {
        let locs: Vec<&KeyLocation> = idx.iter().map(|&i| keys[i].0).collect();
        (
            h,
            idx,
            calls::store::capture(pool.node(h), &locs, stream_checksum).await,
        )
    }))
    .await;
    for (h, idx, res) in captures {
        match res {
            Ok(list) => {
                for (&i, c) in idx.iter().zip(list) {
                    // A key that gained metadata or vanished meanwhile has nothing to adopt.
                    // Holders vote with their value's content checksum, which does not
                    // depend on its encoding or the Redis version that dumped it.
                    if c.meta.is_none() && c.dump.is_some() {
                        let vote = votes[i]
                            .entry(c.content.to_string())
                            .or_insert_with(|| (Vec::new(), c));
                        vote.0.push(h);
                    }
                }
            }
            Err(e) => progress::lock(p).error(format!(
                "capture for adoption on {}: {e}",
                pool.node(h).display
            )),
        }
    }
    let mut chosen: Vec<(usize, Vec<u8>, Captured)> = Vec::new();
    for (i, groups) in votes.into_iter().enumerate() {
        let best = groups
            .into_iter()
            .max_by(|a, b| a.1.0.len().cmp(&b.1.0.len()).then(b.1.0[0].cmp(&a.1.0[0])));
        if let Some((_, (_, captured))) = best
            && let Some(bytes) = captured.dump.clone()
        {
            chosen.push((i, bytes, captured));
        }
    }
    let metas: Vec<Meta> = chosen
        .iter()
        .map(|(i, _, c)| {
            Meta::new(
                &keys[*i].0.key,
                sw.store().clock().tick(),
                EntryKind::Value,
                c.expires_at_ms,
                c.content,
            )
        })
        .collect();
    // Each entry with the index of its key, to tell holders from nodes that got a copy.
    let (key_of, entries): (Vec<usize>, Vec<ApplyEntry<'_>>) = chosen
        .iter()
        .zip(&metas)
        .map(|((i, bytes, _), meta)| {
            let entry = ApplyEntry {
                loc: keys[*i].0,
                meta,
                payload: Payload::Dump(bytes),
                cond: NodeCondition::Absent,
            };
            (*i, entry)
        })
        .unzip();
    let results = futures::future::join_all(pool.nodes().iter().map(|n| {
        let entries = &entries;
        async move {
            let mut outcomes = Vec::with_capacity(entries.len());
            for chunk in entries.chunks(sw.config().key_batch) {
                sw.throttle.acquire(n, chunk.len() as u64).await;
                outcomes.extend(calls::store::apply_as(n, Traffic::Background, chunk).await?);
            }
            Ok::<_, quorumd_node::pool::NodeError>(outcomes)
        }
    }))
    .await;
    let mut adopted = vec![false; entries.len()];
    let mut r = progress::lock(p);
    for (node, res) in pool.nodes().iter().zip(results) {
        match res {
            Ok(outcomes) => {
                for (e, o) in outcomes.iter().enumerate() {
                    if o.changed() {
                        adopted[e] = true;
                    }
                }
                let copied = outcomes
                    .iter()
                    .zip(&key_of)
                    .filter(|(o, i)| o.changed() && !keys[**i].1.contains(&node.id));
                r.keys_repaired_per_node[node.id] += copied.count() as u64;
            }
            Err(e) => r.error(format!("adopting on {}: {e}", node.display)),
        }
    }
    r.keys_adopted += adopted.iter().filter(|a| **a).count() as u64;
}

/// The nodes holding one payload of an unversioned key, and what the first of them read.
type Vote = (Vec<NodeId>, Captured);

/// Second phase: every bucket on every node — digests rebuilt where they drifted from the
/// metadata, divergence the digests hid repaired, old tombstones purged.
async fn check_buckets(sw: &Sweeper, p: &ProgressHandle, dry_run: bool, from: u32) {
    let pool = sw.pool();
    let settings = sw.store().settings();
    let n = pool.len();
    let all: Vec<u32> = (from.min(settings.layout.buckets)..settings.layout.buckets).collect();
    let total = u64::from(settings.layout.buckets);
    let mut done = u64::from(from.min(settings.layout.buckets));
    for chunk in all.chunks(sw.config().bucket_batch) {
        let live: Vec<&std::sync::Arc<Node>> = pool
            .nodes()
            .iter()
            .filter(|n| n.health() != Health::Down)
            .collect();
        if !dry_run {
            let digest_keys: Vec<BucketDigestKeys> = chunk
                .iter()
                .map(|&bucket| BucketDigestKeys {
                    bucket,
                    digest_key: settings.layout.digest_key(bucket),
                    digest_field: settings.layout.digest_field(bucket),
                    sub_digest_key: settings.layout.sub_digest_key(bucket),
                    meta_keys: settings.layout.bucket_meta_keys(bucket),
                })
                .collect();
            for node in &live {
                match calls::store::rebuild_digests(node, settings.layout.sub_buckets, &digest_keys)
                    .await
                {
                    Ok(fixed) => progress::lock(p).digests_rebuilt += fixed.len() as u64,
                    Err(e) => {
                        progress::lock(p).error(format!("digest rebuild on {}: {e}", node.display))
                    }
                }
            }
        }
        // Each bucket is the union of its sub-bucket hashes.
        let meta_keys: Vec<Vec<String>> = chunk
            .iter()
            .map(|b| settings.layout.bucket_meta_keys(*b))
            .collect();
        let reads = futures::future::join_all(live.iter().map(|node| {
            let meta_keys = &meta_keys;
            async move { (node.id, calls::sync::bucket_metas(node, meta_keys).await) }
        }))
        .await;
        let mut per_node: HashMap<NodeId, Vec<BucketMetas>> = HashMap::new();
        for (id, r) in reads {
            match r {
                Ok((metas, bad)) => {
                    {
                        let mut pr = progress::lock(p);
                        for b in bad {
                            pr.error(b);
                        }
                    }
                    let entries: u64 = metas.iter().map(|m| m.len() as u64).sum();
                    progress::lock(p).metadata_entries_read += entries;
                    sw.scan_throttle.acquire(pool.node(id), entries).await;
                    per_node.insert(id, metas);
                }
                Err(e) => progress::lock(p).error(format!(
                    "bucket metadata from {}: {e}",
                    pool.node(id).display
                )),
            }
        }
        scrub(sw, &per_node, &meta_keys, p, dry_run).await;
        let ids: Vec<[NodeId; 1]> = per_node.keys().map(|id| [*id]).collect();
        let now = wall_clock_ms();
        let mut repairs = Vec::new();
        let mut purges = Vec::new();
        for (i, _) in chunk.iter().enumerate() {
            let view: Vec<(&[NodeId], &BucketMetas)> = ids
                .iter()
                .map(|id| (&id[..], &per_node[&id[0]][i]))
                .collect();
            for d in diff::diff_bucket(&view) {
                let mut r = progress::lock(p);
                r.keys_divergent += 1;
                if diff::may_be_in_flight(&d.winner, now, sw.config().in_flight_window_ms) {
                    r.keys_deferred += 1;
                    continue;
                }
                drop(r);
                if let Ok(loc) = sw.store().locate(&d.key) {
                    repairs.push(Repair {
                        loc,
                        winner: d.winner,
                        holders: d.holders,
                        stale: d.stale,
                    });
                }
            }
            for (key, meta) in diff::purgeable(&view, n, now, sw.config().tombstone_grace_ms) {
                if let Ok(loc) = sw.store().locate(&key) {
                    purges.push((loc, meta));
                }
            }
        }
        if !dry_run {
            repair::execute(sw, repairs, p).await;
            super::exchange::purge(sw, &purges, p).await;
        }
        done += chunk.len() as u64;
        if !dry_run {
            save_bucket_checkpoint(sw, Some(done as u32), p).await;
        }
        let mut r = progress::lock(p);
        r.buckets_compared = done;
        r.tick(done, total);
    }
    if !dry_run {
        save_bucket_checkpoint(sw, None, p).await;
    }
}

/// The CRDT keys among `entries` (with their entries on `node`) whose state hash on `node`
/// is not the state their entry hash sums: changed outside quorumd.
async fn changed_states(
    sw: &Sweeper,
    node: &Node,
    entries: &[(KeyLocation, &Meta)],
) -> Result<Vec<direct::Found>, NodeError> {
    let layout = &sw.store().settings().layout;
    let asked: Vec<(&KeyLocation, Vec<u8>)> = entries
        .iter()
        .map(|(l, _)| (l, layout.state_key(&l.key)))
        .collect();
    let refs: Vec<(&KeyLocation, &[u8])> = asked.iter().map(|(l, k)| (*l, &k[..])).collect();
    let changed = calls::crdt::verify_states(node, &refs).await?;
    Ok(entries
        .iter()
        .zip(changed)
        .filter(|(_, changed)| *changed)
        .map(|((loc, meta), _)| direct::Found {
            node: node.id,
            loc: loc.clone(),
            mismatch: Mismatch::State,
            meta: Some((*meta).clone()),
        })
        .collect())
}

/// Consecutive runs of items whose sizes add up to at most `limit` (an item larger than
/// `limit` alone): whole buckets per scrub call, about `limit` entries each.
pub fn scrub_runs(sizes: &[usize], limit: usize) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut sum) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && sum + size > limit {
            runs.push(start..i);
            (start, sum) = (i, 0);
        }
        sum += size;
    }
    if start < sizes.len() {
        runs.push(start..sizes.len());
    }
    runs
}

/// The scrub: each node checks, by itself, that the value of every entry it holds is the one
/// the entry records (content, type, expiry, presence), whole metadata hashes per call of about
/// `sync.key_batch` entries (`calls::store::verify_hashes`); only hash names go out, and only
/// what is not intact comes back. What differs was changed outside quorumd and goes to
/// `direct::handle`. `meta_keys` are the chunk's buckets' metadata hashes, in the order of
/// each node's `BucketMetas`.
async fn scrub(
    sw: &Sweeper,
    per_node: &HashMap<NodeId, Vec<BucketMetas>>,
    meta_keys: &[Vec<String>],
    p: &ProgressHandle,
    dry_run: bool,
) {
    for (&id, metas) in per_node {
        let node = sw.pool().node(id);
        let sizes: Vec<usize> = metas.iter().map(|m| m.len()).collect();
        for run in scrub_runs(&sizes, sw.config().key_batch.max(1)) {
            let entries: Vec<(&Vec<u8>, &Meta)> = metas[run.clone()]
                .iter()
                .flat_map(|m| m.iter())
                .filter(|(k, _)| wanted(sw, k))
                .collect();
            if entries.is_empty() {
                continue;
            }
            sw.scan_throttle.acquire(node, entries.len() as u64).await;
            progress::lock(p).entries_scrubbed += entries.len() as u64;
            let hashes: Vec<String> = meta_keys[run].iter().flatten().cloned().collect();
            let not_intact = match calls::store::verify_hashes(node, &hashes).await {
                Ok((found, _)) => found,
                Err(e) => {
                    progress::lock(p).error(format!("scrub on {}: {e}", node.display));
                    continue;
                }
            };
            // The hashes' other entries were checked too (include and exclude patterns):
            // only what the sweep covers is reported.
            let mut found: Vec<direct::Found> = not_intact
                .into_iter()
                .filter(|n| wanted(sw, &n.key))
                .filter(|n| {
                    !sw.scrub_skips_content()
                        || matches!(n.mismatch, Mismatch::Deleted | Mismatch::Unversioned)
                })
                .filter_map(|n| {
                    Some(direct::Found {
                        node: id,
                        loc: sw.store().locate(&n.key).ok()?,
                        mismatch: n.mismatch,
                        meta: Some(n.meta),
                    })
                })
                .collect();
            // The CRDT entries, whose state the value check does not see.
            let crdt: Vec<(KeyLocation, &Meta)> = entries
                .iter()
                .filter(|(_, meta)| meta.kind.crdt().is_some())
                .filter_map(|(k, meta)| Some((sw.store().locate(k).ok()?, *meta)))
                .collect();
            if !crdt.is_empty() && !sw.scrub_skips_content() {
                match changed_states(sw, node, &crdt).await {
                    Ok(states) => found.extend(states),
                    Err(e) => progress::lock(p).error(format!("scrub on {}: {e}", node.display)),
                }
            }
            if found.is_empty() {
                continue;
            }
            let actions = direct::handle(sw, direct::Path::Scrub, &found, dry_run).await;
            let mut r = progress::lock(p);
            for (f, a) in found.iter().zip(actions) {
                *r.direct_changes.entry(f.mismatch.as_str()).or_default() += 1;
                *r.direct_changes_handled.entry(a.as_str()).or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scrub_runs;

    #[test]
    fn scrub_calls_take_whole_buckets_up_to_the_batch() {
        assert_eq!(scrub_runs(&[], 10), vec![]);
        assert_eq!(scrub_runs(&[3, 3, 3, 3], 10), vec![0..3, 3..4]);
        // A bucket above the limit goes alone; empty ones ride along.
        assert_eq!(scrub_runs(&[2, 25, 0, 4], 10), vec![0..1, 1..2, 2..4]);
        assert_eq!(scrub_runs(&[10, 1], 10), vec![0..1, 1..2]);
    }
}
