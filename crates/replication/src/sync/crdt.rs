//! Converges CRDT keys: reads the state from every node that answered, merges them all, and
//! merges the result into each node whose state differs. Never picks a winner: every node ends
//! with the join of all states, whatever it held.

use super::Sweeper;
use super::progress::{self, ProgressHandle};
use super::repair::{Repair, Unrepaired};
use futures::StreamExt;
use quorumd_core::crdt::AnyCrdt;
use quorumd_node::calls;
use quorumd_node::calls::crdt::MergeCode;
use quorumd_node::pool::NodeId;

/// How many keys are converged at once.
const CONCURRENT_KEYS: usize = 8;

/// Converges each key on the nodes listed in its repair (holders and stale alike).
pub async fn converge(sw: &Sweeper, repairs: Vec<Repair>, p: &ProgressHandle) -> Unrepaired {
    futures::stream::iter(repairs)
        .map(|r| converge_key(sw, r, p))
        .buffer_unordered(CONCURRENT_KEYS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn converge_key(sw: &Sweeper, r: Repair, p: &ProgressHandle) -> Unrepaired {
    let pool = sw.pool();
    let skey = sw.store().settings().layout.state_key(&r.loc.key);
    let key = String::from_utf8_lossy(&r.loc.key).into_owned();
    let lacking = |nodes: &[NodeId]| nodes.iter().map(|&n| (n, r.winner.version)).collect();
    let Some(kind) = r.winner.kind.crdt() else {
        return lacking(&r.stale);
    };
    let mut nodes: Vec<NodeId> = r.holders.iter().chain(&r.stale).copied().collect();
    nodes.sort_unstable();
    let reads = futures::future::join_all(nodes.iter().map(|&n| {
        let (loc, skey) = (&r.loc, &skey);
        async move { (n, calls::crdt::read_state(pool.node(n), loc, skey).await) }
    }))
    .await;
    let mut merged = AnyCrdt::empty(kind);
    let mut states: Vec<(NodeId, Option<AnyCrdt>)> = Vec::new();
    let mut failed = Vec::new();
    for (n, res) in reads {
        let node = pool.node(n);
        let state = res.map_err(|e| e.to_string()).and_then(|s| {
            match s.meta.as_ref().map(|m| m.kind.crdt()) {
                Some(Some(k)) if k != kind => {
                    return Err(format!(
                        "holds a {k}, other nodes a {kind}: resolve by hand"
                    ));
                }
                Some(None) => {
                    return Err(format!(
                        "holds a key-value entry, other nodes a {kind}: resolve by hand"
                    ));
                }
                _ => {}
            }
            let fields = s.state.iter().map(|(f, v)| (&f[..], &v[..]));
            AnyCrdt::from_fields(kind, fields)
                .map(|c| s.meta.is_some().then_some(c))
                .map_err(|e| e.to_string())
        });
        match state {
            Ok(s) => {
                if let Some(s) = &s {
                    merged.merge(s);
                }
                states.push((n, s));
            }
            Err(e) => {
                progress::lock(p).error(format!("{key:?} on {}: {e}", node.display));
                failed.push(n);
            }
        }
    }
    let fields = merged.to_fields();
    let behind: Vec<NodeId> = states
        .iter()
        .filter(|(_, s)| s.as_ref() != Some(&merged))
        .map(|(n, _)| *n)
        .collect();
    let writes = futures::future::join_all(behind.iter().map(|&n| {
        let (loc, skey, fields) = (&r.loc, &skey, &fields);
        async move {
            let node = pool.node(n);
            sw.throttle.acquire(node, 1).await;
            (
                n,
                calls::crdt::merge(node, loc, skey, kind, fields, false).await,
            )
        }
    }))
    .await;
    crate::crdt_store::events::CrdtMerged {
        kind: kind.name(),
        source: "sweep",
        nodes: writes
            .iter()
            .filter(|(_, r)| r.as_ref().is_ok_and(|r| r.code == MergeCode::Changed))
            .count() as u64,
    }
    .emit();
    for (n, res) in writes {
        let node = pool.node(n);
        match res {
            Ok(reply) if reply.code == MergeCode::KindConflict => {
                progress::lock(p).error(format!(
                    "{key:?} on {}: another kind of entry appeared meanwhile",
                    node.display
                ));
                failed.push(n);
            }
            Ok(reply) => {
                if reply.code == MergeCode::Changed {
                    progress::lock(p).keys_repaired_per_node[n] += 1;
                }
            }
            Err(e) => {
                progress::lock(p).error(format!("merging {key:?} on {}: {e}", node.display));
                failed.push(n);
            }
        }
    }
    lacking(&failed)
}
