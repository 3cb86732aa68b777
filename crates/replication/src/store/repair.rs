//! Read repair: after a read has answered its client, write the newest version to the nodes
//! that answered with an older one. Runs as a tracked background task: the client never waits
//! for it, shutdown does. The versioned write script makes it safe against concurrent newer
//! writes.

use super::batch::{Coalescer, WriteEntry};
use super::newest;
use crate::fanout::Gathered;
use crate::store::events;
use quorumd_core::hlc::Version;
use quorumd_core::meta::EntryKind;
use quorumd_node::calls::store::{KeyLocation, NodeCondition, NodeRead};
use quorumd_node::pool::NodePool;
use std::sync::Arc;

pub(super) fn spawn_read_repair(
    pool: Arc<NodePool>,
    batches: Arc<Coalescer>,
    loc: Arc<KeyLocation>,
    mut g: Gathered<NodeRead>,
) {
    let tasks = pool.clone();
    tasks.workers().spawn_task(async move {
        let late = g.collect_stragglers().await;
        let answered: Vec<_> = g
            .replies
            .into_iter()
            .chain(late)
            .filter_map(|r| r.result.ok().map(|v| (r.node, v)))
            .collect();
        // Stragglers included: one may know a newer version than the one the client got.
        let Some(winner) = newest(&loc.key, answered.iter().map(|(_, r)| r)) else {
            return;
        };
        // Unversioned data is the sweep's to adopt; a live entry whose value no node returned
        // (evicted, deleted behind quorumd's back) must not be repaired as an empty value.
        let value_missing = winner.meta.kind == EntryKind::Value && winner.value.is_none();
        // A CRDT's state is merged by the CRDT store's own read repair, never overwritten.
        let crdt = answered
            .iter()
            .any(|(_, r)| r.meta.as_ref().is_some_and(|m| m.kind.crdt().is_some()));
        if winner.meta.version == Version::ZERO || value_missing || crdt {
            return;
        }
        let stale: Vec<_> = answered
            .iter()
            .filter(|(_, r)| {
                r.meta
                    .as_ref()
                    .is_none_or(|m| m.version < winner.meta.version)
            })
            .map(|(n, _)| *n)
            .collect();
        if stale.is_empty() {
            return;
        }
        let entry = Arc::new(WriteEntry {
            loc: loc.clone(),
            meta: winner.meta,
            value: winner.value.unwrap_or_default().into(),
            cond: NodeCondition::None,
        });
        let writes = stale.iter().map(|&n| {
            let (node, write) = (
                pool.node(n).display.clone(),
                batches.write(n, entry.clone()),
            );
            async move { (node, write.await) }
        });
        let results = futures::future::join_all(writes).await;
        let repaired: Vec<String> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(n, _)| n.clone())
            .collect();
        let failed = results.len() - repaired.len();
        events::ReadRepaired {
            nodes: &repaired,
            failed,
            live: pool.live(),
        }
        .emit();
    });
}
