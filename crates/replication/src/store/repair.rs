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
use quorumd_node::pool::{NodeError, NodeId, NodePool};
use std::sync::Arc;

pub(super) fn spawn_read_repair(
    pool: Arc<NodePool>,
    batches: Arc<Coalescer>,
    loc: Arc<KeyLocation>,
    g: Gathered<NodeRead>,
) {
    let tasks = pool.clone();
    tasks.workers().spawn_task(async move {
        let answered = g.into_all_answers().await;
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
            restore: false,
            cond: NodeCondition::None,
        });
        repair_nodes(&pool, &stale, |n| batches.write(n, entry.clone()), |_| true).await;
    });
}

/// Sends a read's repair to each node in `behind` at once and reports which took it (the
/// `read repaired` event): the last step of read repair in the key-value and the CRDT store.
/// `took` says whether a node's answer means it now holds the repaired state.
pub(crate) async fn repair_nodes<R, Fut>(
    pool: &NodePool,
    behind: &[NodeId],
    write: impl Fn(NodeId) -> Fut,
    took: impl Fn(&R) -> bool,
) -> Vec<Result<R, NodeError>>
where
    Fut: Future<Output = Result<R, NodeError>>,
{
    let results = futures::future::join_all(behind.iter().map(|&n| write(n))).await;
    let repaired: Vec<String> = behind
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.as_ref().is_ok_and(&took))
        .map(|(&n, _)| pool.node(n).display.clone())
        .collect();
    events::ReadRepaired {
        nodes: &repaired,
        failed: results.len() - repaired.len(),
        live: pool.live(),
    }
    .emit();
    results
}
