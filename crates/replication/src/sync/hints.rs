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
        // One pass over the set, by cursor: keys hinted while it runs may wait for the next.
        let mut cursor = 0;
        loop {
            let (next, keys) = match calls::hints::scan(holder, &key, cursor, HINT_BATCH).await {
                Ok(step) => step,
                Err(e) => {
                    progress::lock(p).error(format!("hints on {}: {e}", holder.display));
                    break;
                }
            };
            // On a cluster replica, the keys of a shard that is down (or suspect) wait in the
            // set for its return, which wakes an exchange and so this replay: they cannot be
            // repaired now, and the scan goes on past them to the keys of its other shards.
            let keys: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| pool.node(target).serves(k))
                .collect();
            if !keys.is_empty() {
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
            cursor = next;
            if cursor == 0 {
                break;
            }
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

/// The name of the hint set `key`, when it is one (`{prefix}h:{identity}`) whose node is none
/// of `configured` (identities): nothing replays it.
fn orphan_hint_set(prefix: &str, configured: &[&str], key: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(key).ok()?;
    let identity = name.strip_prefix(prefix)?.strip_prefix("h:")?;
    (!configured.contains(&identity)).then(|| name.to_owned())
}

/// Deletes, from one node, the hint sets among its scanned `keys` whose node was removed from
/// the configuration (or renamed): no replay reads them, and they would stay forever. A dry
/// run only counts them. Hints only speed a catch-up up, so a set another instance, configured
/// differently for a while, still fills is safe to lose: the exchange finds its keys.
pub(super) async fn remove_orphans(
    sw: &Sweeper,
    node: &quorumd_node::pool::Node,
    keys: &[Vec<u8>],
    p: &ProgressHandle,
    dry_run: bool,
) {
    let prefix = &sw.store().settings().layout.prefix;
    let configured: Vec<&str> = sw
        .pool()
        .nodes()
        .iter()
        .map(|n| n.identity.as_str())
        .collect();
    let orphans: Vec<String> = keys
        .iter()
        .filter_map(|k| orphan_hint_set(prefix, &configured, k))
        .collect();
    if orphans.is_empty() {
        return;
    }
    progress::lock(p).orphan_hint_sets += orphans.len() as u64;
    if dry_run {
        return;
    }
    match calls::hints::delete_sets(node, &orphans).await {
        Ok(_) => super::events::OrphanHintSetsRemoved {
            node: &node.display,
            sets: &orphans,
        }
        .emit(),
        Err(e) => progress::lock(p).error(format!("removing hint sets on {}: {e}", node.display)),
    }
}

#[cfg(test)]
mod tests {
    use super::orphan_hint_set;

    #[test]
    fn only_hint_sets_of_unconfigured_nodes_are_orphans() {
        let configured = ["127.0.0.1:7001/0", "cluster:10.0.0.1:7000,10.0.0.2:7000"];
        let orphan = |key: &str| orphan_hint_set("qd:", &configured, key.as_bytes());
        assert_eq!(
            orphan("qd:h:127.0.0.1:7009/0").as_deref(),
            Some("qd:h:127.0.0.1:7009/0")
        );
        assert_eq!(orphan("qd:h:127.0.0.1:7001/0"), None);
        assert_eq!(orphan("qd:h:cluster:10.0.0.1:7000,10.0.0.2:7000"), None);
        // Another database of a configured server is another node.
        assert!(orphan("qd:h:127.0.0.1:7001/1").is_some());
        // Not hint sets: user keys, other reserved keys, another prefix, bytes not UTF-8.
        for key in [
            "h:127.0.0.1:7009/0",
            "qd:hx",
            "qd:m:1:2",
            "other:h:127.0.0.1:7009/0",
        ] {
            assert_eq!(orphan(key), None, "{key}");
        }
        assert_eq!(orphan_hint_set("qd:", &configured, b"qd:h:\xff"), None);
    }
}
