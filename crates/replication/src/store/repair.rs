//! Read repair: after a read has answered its client, write the newest version to the nodes
//! that answered with an older one. Runs as a tracked background task: the client never waits
//! for it, shutdown does. The versioned write script makes it safe against concurrent newer
//! writes.

use super::batch::{Coalescer, WriteEntry};
use super::newest;
use crate::fanout::Gathered;
use crate::store::events;
use quorumd_core::hlc::Version;
use quorumd_core::meta::{EntryKind, Meta};
use quorumd_node::calls::store::{KeyLocation, NodeCondition, NodeRead, NodeTypedRead};
use quorumd_node::pool::{NodeError, NodeId, NodePool};
use std::sync::Arc;

/// A node's answer to a read, as read repair and the write-back see it: its metadata.
pub(crate) trait ReadAnswer: Send + 'static {
    fn meta(&self) -> Option<&Meta>;
}

impl ReadAnswer for NodeRead {
    fn meta(&self) -> Option<&Meta> {
        self.meta.as_ref()
    }
}

impl ReadAnswer for NodeTypedRead {
    fn meta(&self) -> Option<&Meta> {
        self.meta.as_ref()
    }
}

/// What read repair writes: the newest entry and its stored form (the bytes, and whether they
/// are a `DUMP` payload).
pub(crate) struct Repair {
    pub meta: Meta,
    pub stored: (Vec<u8>, bool),
}

/// Read repair of a string read (`newest` among the answers).
pub(super) fn spawn_read_repair(
    pool: Arc<NodePool>,
    batches: Arc<Coalescer>,
    loc: Arc<KeyLocation>,
    g: Gathered<NodeRead>,
) {
    let key = loc.key.clone();
    spawn_repair(pool, batches, loc, g, move |answered| {
        let winner = newest(&key, answered.iter().map(|(_, r)| r))?;
        // A live entry whose value no node returned (evicted, deleted behind quorumd's back)
        // must not be repaired as an empty value.
        let value_missing = winner.meta.kind == EntryKind::Value && winner.value.is_none();
        (!value_missing).then(|| Repair {
            meta: winner.meta,
            stored: (winner.value.unwrap_or_default(), false),
        })
    });
}

/// Whether no call of `g` is outstanding and every successful answer holds the same version
/// (or none holds the key).
fn answered_alike<T>(g: &Gathered<T>) -> bool
where
    T: ReadAnswer,
{
    if !g.all_answered() {
        return false;
    }
    let mut versions = g.successes().map(|(_, r)| r.meta().map(|m| m.version));
    match versions.next() {
        Some(first) => versions.all(|v| v == first),
        None => true,
    }
}

/// Waits for every answer of a read (stragglers included: one may know a newer version than
/// the one the client got), asks `winner` for the entry to repair with, and writes it to every
/// node that answered with no metadata or an older version.
pub(super) fn spawn_repair<T: ReadAnswer>(
    pool: Arc<NodePool>,
    batches: Arc<Coalescer>,
    loc: Arc<KeyLocation>,
    g: Gathered<T>,
    winner: impl FnOnce(&[(NodeId, T)]) -> Option<Repair> + Send + 'static,
) {
    // Every node asked has answered, with the same version (or none has the key): no answer
    // is older than the newest, so there is nothing to repair and no task to spawn for it.
    // The common case of a read that asks only the nodes it needs (issue 16).
    if answered_alike(&g) {
        return;
    }
    let tasks = pool.clone();
    tasks.workers().spawn_task(async move {
        let answered = g.into_all_answers().await;
        // A CRDT's state is merged by the CRDT store's own read repair, never overwritten.
        let crdt = answered
            .iter()
            .any(|(_, r)| r.meta().is_some_and(|m| m.kind.crdt().is_some()));
        if crdt {
            return;
        }
        let Some(Repair { meta, stored }) = winner(&answered) else {
            return;
        };
        // Unversioned data is the sweep's to adopt.
        if meta.version == Version::ZERO {
            return;
        }
        let stale: Vec<_> = answered
            .iter()
            .filter(|(_, r)| r.meta().is_none_or(|m| m.version < meta.version))
            .map(|(n, _)| *n)
            .collect();
        if stale.is_empty() {
            return;
        }
        let entry = Arc::new(WriteEntry {
            loc: loc.clone(),
            meta,
            value: stored.0.into(),
            restore: stored.1,
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
