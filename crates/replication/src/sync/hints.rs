//! Hinted handoff, replay side: before a digest exchange, every node that is back reads the
//! hints the other nodes hold for it and gets exactly the keys it missed, without waiting for
//! digests to find them.

use super::Sweeper;
use super::diff::{self, BucketMetas};
use super::progress::{self, ProgressHandle};
use super::repair::{self, Repair};
use crate::store::hint_key;
use quorumd_node::calls;
use quorumd_node::calls::store::KeyLocation;
use quorumd_node::pool::{Health, NodeId};

/// Keys read from a hint set per round.
const HINT_BATCH: usize = 500;

/// Replays the hints of every reachable node.
pub async fn replay_all(sw: &Sweeper, p: &ProgressHandle, dry_run: bool) {
    if dry_run {
        return;
    }
    for target in sw.pool().nodes() {
        if matches!(target.health(), Health::Up | Health::Recovering) {
            replay(sw, target.id, p).await;
        }
    }
    report_pending(sw).await;
}

/// Counts the hints left for each node (down ones included) on the nodes that answer, for
/// the `quorumd_hints_pending` gauge. A node whose count cannot be read is not reported.
async fn report_pending(sw: &Sweeper) {
    let pool = sw.pool();
    let prefix = &sw.store().settings().layout.prefix;
    let counts = futures::future::join_all(pool.nodes().iter().map(|target| async move {
        let key = hint_key(prefix, &target.identity);
        let mut total = 0u64;
        for holder in pool
            .nodes()
            .iter()
            .filter(|n| n.id != target.id && n.health() != Health::Down)
        {
            total += calls::hints::count(holder, &key).await.ok()?;
        }
        Some(total)
    }))
    .await;
    for (target, count) in pool.nodes().iter().zip(counts) {
        if let Some(pending) = count {
            crate::sync::events::HintsPending {
                node: &target.display,
                pending,
            }
            .emit();
        }
    }
}

/// Repairs the keys `target` missed, as recorded on each other node, then drops those hints.
async fn replay(sw: &Sweeper, target: NodeId, p: &ProgressHandle) {
    let pool = sw.pool();
    let key = hint_key(
        &sw.store().settings().layout.prefix,
        &pool.node(target).identity,
    );
    for holder in pool
        .nodes()
        .iter()
        .filter(|n| n.id != target && n.health() != Health::Down)
    {
        loop {
            let keys = match calls::hints::sample(holder, &key, HINT_BATCH).await {
                Ok(k) => k,
                Err(e) => {
                    progress::lock(p).error(format!("hints on {}: {e}", holder.display));
                    break;
                }
            };
            // On a cluster replica, the keys of a shard that is down (or suspect) wait in the
            // set for its return, which wakes an exchange and so this replay: they cannot be
            // repaired now, and must not hold back the keys of its other shards.
            let keys: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| pool.node(target).serves(k))
                .collect();
            if keys.is_empty() {
                break;
            }
            let locs: Vec<KeyLocation> = keys
                .iter()
                .filter_map(|k| sw.store().locate(k).ok())
                .collect();
            if !repair_keys(sw, target, &locs, p).await {
                break; // leave the hints for the next pass
            }
            if let Err(e) = calls::hints::drop_keys(holder, &key, &keys).await {
                progress::lock(p).error(format!("dropping hints on {}: {e}", holder.display));
                break;
            }
            progress::lock(p).hints_replayed += keys.len() as u64;
        }
    }
}

/// Reads the keys' metadata from every node and repairs whoever is behind. True when every
/// repair landed and `target`'s metadata was read: a target that could not be read is not
/// known to have the keys, so their hints must stay.
async fn repair_keys(
    sw: &Sweeper,
    target: NodeId,
    locs: &[KeyLocation],
    p: &ProgressHandle,
) -> bool {
    let pool = sw.pool();
    let reads = futures::future::join_all(
        pool.nodes()
            .iter()
            .map(|n| async move { (n.id, calls::sync::key_metas(n, locs).await) }),
    )
    .await;
    let mut per_node: Vec<(NodeId, BucketMetas)> = Vec::new();
    for (id, r) in reads {
        match r {
            Ok(metas) => per_node.push((
                id,
                locs.iter()
                    .zip(metas)
                    .filter_map(|(l, m)| m.map(|m| (l.key.clone(), m)))
                    .collect(),
            )),
            Err(e) => {
                progress::lock(p).error(format!("hinted keys on {}: {e}", pool.node(id).display))
            }
        }
    }
    if !per_node.iter().any(|(id, _)| *id == target) {
        return false;
    }
    let ids: Vec<[NodeId; 1]> = per_node.iter().map(|(id, _)| [*id]).collect();
    let view: Vec<(&[NodeId], &BucketMetas)> = ids
        .iter()
        .zip(&per_node)
        .map(|(id, (_, m))| (&id[..], m))
        .collect();
    let repairs: Vec<Repair> = diff::diff_bucket(&view)
        .into_iter()
        .filter_map(|d| {
            let loc = sw.store().locate(&d.key).ok()?;
            Some(Repair {
                loc,
                winner: d.winner,
                holders: d.holders,
                stale: d.stale,
            })
        })
        .collect();
    progress::lock(p).keys_divergent += repairs.len() as u64;
    repair::execute(sw, repairs, p).await.is_empty()
}
