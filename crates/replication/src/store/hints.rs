//! Hinted handoff, recording side: when a write misses nodes, the nodes that took it remember
//! the key under the missed node's name, so that node's catch-up starts with exactly the keys
//! it missed (replayed by `sync::hints`). Hints live on the nodes, so they survive a restart
//! of quorumd.

use crate::fanout::Gathered;
use quorumd_node::calls;
use quorumd_node::calls::store::{KeyLocation, WriteOutcome};
use quorumd_node::pool::{NodeId, NodePool};
use std::sync::Arc;

/// The set on every node holding the keys that `identity` (a node's `host:port/db`) missed.
pub fn hint_key(prefix: &str, identity: &str) -> String {
    format!("{prefix}h:{identity}")
}

/// After a write has answered its client: waits for the remaining answers, and if some nodes
/// failed, records hints for them on the nodes that hold the write. A write every node has
/// already answered without a failure needs no task at all. A hint set holds at most
/// `max_hints` keys on each node: while a node is down long enough to miss more, its later
/// keys are left to the digest exchange (counted as dropped), so a long outage cannot fill the
/// other nodes' memory with hints.
pub(super) fn spawn_hint_recording(
    pool: Arc<NodePool>,
    prefix: String,
    max_hints: u64,
    loc: Arc<KeyLocation>,
    mut g: Gathered<WriteOutcome>,
) {
    if g.all_answered() && g.replies.iter().all(|r| r.result.is_ok()) {
        return;
    }
    let tasks = pool.clone();
    tasks.workers().spawn_task(async move {
        let late = g.collect_stragglers().await;
        let mut missed: Vec<NodeId> = Vec::new();
        let mut holders: Vec<NodeId> = Vec::new();
        for r in g.replies.iter().chain(late.iter()) {
            match &r.result {
                Err(_) => missed.push(r.node),
                Ok(o) if o.holds_version() => holders.push(r.node),
                Ok(_) => {}
            }
        }
        if missed.is_empty() || holders.is_empty() {
            return;
        }
        let keys: Vec<String> = missed
            .iter()
            .map(|&n| hint_key(&prefix, &pool.node(n).identity))
            .collect();
        // Per missed node: whether some holder kept the hint, and whether one refused it full.
        let mut kept = vec![false; missed.len()];
        let mut full = vec![false; missed.len()];
        for h in holders {
            let node = pool.node(h).clone();
            // Best effort: a lost hint only delays catch-up until the next digest exchange.
            if let Ok(held) = calls::hints::record(&node, &keys, &loc.key, max_hints).await {
                for (i, held) in held.into_iter().enumerate().take(missed.len()) {
                    kept[i] |= held;
                    full[i] |= !held;
                }
            }
        }
        crate::store::events::HintsRecorded {
            key_bytes: loc.key.len(),
            missed: missed.len(),
        }
        .emit();
        for (i, &n) in missed.iter().enumerate() {
            if full[i] && !kept[i] {
                crate::store::events::HintsDropped {
                    node: &pool.node(n).display,
                    key_bytes: loc.key.len(),
                }
                .emit();
            }
        }
    });
}
