//! The full sweep: SCAN every node's keyspace to find what digests cannot see — keys written
//! straight to a node without quorumd (adopted by the configured policy), values that vanished
//! under their metadata — then recheck every bucket: rebuild digests that drifted from their
//! metadata and purge tombstones every node holds past the grace period. SCAN cursors are
//! checkpointed on each node, so a sweep interrupted by a restart resumes where it was.

use super::Sweeper;
use super::diff::{self, BucketMetas};
use super::glob;
use super::progress::{self, ProgressHandle};
use super::repair::{self, Repair};
use quorumd_core::config::AdoptPolicy;
use quorumd_core::hlc::wall_clock_ms;
use quorumd_core::meta::{EntryKind, Meta};
use quorumd_node::calls;
use quorumd_node::calls::store::{
    ApplyEntry, BucketDigestKeys, KeyLocation, NodeCondition, Payload,
};
use quorumd_node::pool::{Health, Node, NodeId, Traffic};
use std::collections::{BTreeMap, HashMap};

pub async fn run(sw: &Sweeper, p: &ProgressHandle, dry_run: bool) {
    let pool = sw.pool();
    let buckets = u64::from(sw.store().settings().buckets);
    progress::lock(p).buckets_total = buckets;
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
    check_buckets(sw, p, dry_run).await;
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
    if key.starts_with(sw.store().settings().key_prefix.as_bytes()) {
        return false;
    }
    let included =
        cfg.include.is_empty() || cfg.include.iter().any(|g| glob::matches(g.as_bytes(), key));
    included && !cfg.exclude.iter().any(|g| glob::matches(g.as_bytes(), key))
}

async fn scan_node(sw: &Sweeper, node: &Node, p: &ProgressHandle, dry_run: bool) {
    let ck = checkpoint_key(&sw.store().settings().key_prefix);
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
        // A holder has the winning version and, for a live value, the value itself.
        let holds = |s: &(Option<Meta>, bool)| {
            s.0.as_ref().is_some_and(|m| m.version == winner.version) && (s.1 || !live)
        };
        let holders: Vec<NodeId> = answered
            .iter()
            .filter(|(_, s)| holds(&s[i]))
            .map(|(id, _)| *id)
            .collect();
        let stale: Vec<NodeId> = answered
            .iter()
            .filter(|(_, s)| !holds(&s[i]))
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
    if sw.config().adopt_policy == AdoptPolicy::Majority && !unversioned.is_empty() {
        adopt(sw, &unversioned, p).await;
    }
}

/// Gives unversioned keys a version: among the nodes holding a key, the value held by most wins
/// (ties: the group with the lowest node index); a node lacking it does not vote for deleting
/// it, it gets a copy. Applied only where the key still has no metadata, so a client write that
/// lands meanwhile wins. One DUMP batch per holder, one APPLY batch per node.
async fn adopt(sw: &Sweeper, keys: &[(&KeyLocation, Vec<NodeId>)], p: &ProgressHandle) {
    let pool = sw.pool();
    let mut asked: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
    for (i, (_, holders)) in keys.iter().enumerate() {
        for &h in holders {
            asked.entry(h).or_default().push(i);
        }
    }
    // Per key: DUMP payload → nodes holding exactly that payload.
    let mut votes: Vec<BTreeMap<Vec<u8>, Vec<NodeId>>> = vec![BTreeMap::new(); keys.len()];
    let dumps = futures::future::join_all(asked.iter().map(|(&h, idx)| async move {
        let locs: Vec<&KeyLocation> = idx.iter().map(|&i| keys[i].0).collect();
        (h, idx, calls::store::dump(pool.node(h), &locs).await)
    }))
    .await;
    for (h, idx, res) in dumps {
        match res {
            Ok(list) => {
                for (&i, d) in idx.iter().zip(list) {
                    // A key that gained metadata or vanished meanwhile has nothing to adopt.
                    if let calls::store::NodeDump {
                        meta: None,
                        dump: Some(bytes),
                    } = d
                    {
                        votes[i].entry(bytes).or_default().push(h);
                    }
                }
            }
            Err(e) => progress::lock(p).error(format!(
                "dump for adoption on {}: {e}",
                pool.node(h).display
            )),
        }
    }
    let mut chosen: Vec<(usize, Vec<u8>, NodeId)> = Vec::new();
    for (i, groups) in votes.into_iter().enumerate() {
        let best = groups
            .into_iter()
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.1[0].cmp(&a.1[0])));
        if let Some((bytes, members)) = best {
            chosen.push((i, bytes, members[0]));
        }
    }
    // TTLs are not in a DUMP: read them from each winner's node.
    let mut by_source: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
    for (c, (_, _, src)) in chosen.iter().enumerate() {
        by_source.entry(*src).or_default().push(c);
    }
    let mut expiry: Vec<Option<Option<u64>>> = vec![None; chosen.len()];
    for (src, list) in by_source {
        let locs: Vec<&[u8]> = list.iter().map(|&c| &keys[chosen[c].0].0.key[..]).collect();
        match calls::sync::expiries_ms(pool.node(src), &locs).await {
            Ok(exp) => list.iter().zip(exp).for_each(|(&c, e)| expiry[c] = Some(e)),
            Err(e) => progress::lock(p).error(format!(
                "expiry for adoption on {}: {e}",
                pool.node(src).display
            )),
        }
    }
    let metas: Vec<Option<Meta>> = chosen
        .iter()
        .zip(&expiry)
        .map(|((i, _, _), e)| {
            e.map(|e| {
                Meta::new(
                    &keys[*i].0.key,
                    sw.store().clock().tick(),
                    EntryKind::Value,
                    e,
                )
            })
        })
        .collect();
    // Each entry with the index of its key, to tell holders from nodes that got a copy.
    let (key_of, entries): (Vec<usize>, Vec<ApplyEntry<'_>>) = chosen
        .iter()
        .zip(&metas)
        .filter_map(|((i, bytes, _), m)| {
            let entry = ApplyEntry {
                loc: keys[*i].0,
                meta: m.as_ref()?,
                payload: Payload::Dump(bytes),
                cond: NodeCondition::Absent,
            };
            Some((*i, entry))
        })
        .unzip();
    let digest_key = crate::store::digest_key(&sw.store().settings().key_prefix);
    let results = futures::future::join_all(pool.nodes().iter().map(|n| {
        let (entries, digest_key) = (&entries, &digest_key);
        async move {
            let mut outcomes = Vec::with_capacity(entries.len());
            for chunk in entries.chunks(sw.config().key_batch) {
                sw.throttle.acquire(n, chunk.len() as u64).await;
                outcomes.extend(
                    calls::store::apply_as(n, Traffic::Background, digest_key, chunk).await?,
                );
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

/// Second phase: every bucket on every node — digests rebuilt where they drifted from the
/// metadata, divergence the digests hid repaired, old tombstones purged.
async fn check_buckets(sw: &Sweeper, p: &ProgressHandle, dry_run: bool) {
    let pool = sw.pool();
    let settings = sw.store().settings();
    let n = pool.len();
    let all: Vec<u32> = (0..settings.buckets).collect();
    let total = all.len() as u64;
    let mut done = 0u64;
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
                    sub_digest_key: crate::store::sub_digest_key(&settings.key_prefix, bucket),
                    meta_keys: settings.bucket_meta_keys(bucket),
                })
                .collect();
            for node in &live {
                match calls::store::rebuild_digests(
                    node,
                    &crate::store::digest_key(&settings.key_prefix),
                    settings.sub_buckets,
                    &digest_keys,
                )
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
            .map(|b| settings.bucket_meta_keys(*b))
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
        let mut r = progress::lock(p);
        r.buckets_compared = done;
        r.tick(done, total);
    }
}
