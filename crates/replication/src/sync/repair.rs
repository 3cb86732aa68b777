//! Executes repairs in batches: DUMP the winning versions from a node that holds them, then
//! APPLY them to the stale nodes, many keys per script call, paced by the throttle.

use super::Sweeper;
use super::progress::{self, ProgressHandle};
use quorumd_core::hlc::Version;
use quorumd_core::meta::{EntryKind, Meta};
use quorumd_node::calls;
use quorumd_node::calls::store::{ApplyEntry, KeyLocation, NodeCondition, Payload};
use quorumd_node::pool::{Health, NodeId, Traffic};
use std::collections::{BTreeMap, HashMap};

/// One key to bring to `winner` on `stale` nodes.
#[derive(Debug, Clone)]
pub struct Repair {
    pub loc: KeyLocation,
    pub winner: Meta,
    pub holders: Vec<NodeId>,
    pub stale: Vec<NodeId>,
}

/// What could not be repaired: (node, version it still lacks).
pub type Unrepaired = Vec<(NodeId, Version)>;

/// An entry ready to apply: location, metadata, and the DUMP payload for values.
struct Ready {
    loc: KeyLocation,
    meta: Meta,
    dump: Option<Vec<u8>>,
    targets: Vec<NodeId>,
}

/// The holder to DUMP from: one that answers and counts for reads, else any holder.
fn pick_source(sw: &Sweeper, holders: &[NodeId]) -> Option<NodeId> {
    let pool = sw.pool();
    holders
        .iter()
        .copied()
        .find(|&h| pool.node(h).health() == Health::Up)
        .or_else(|| {
            holders
                .iter()
                .copied()
                .find(|&h| pool.node(h).health() != Health::Down)
        })
}

pub async fn execute(sw: &Sweeper, repairs: Vec<Repair>, p: &ProgressHandle) -> Unrepaired {
    // CRDT keys merge; every other key goes to the newest version.
    let (crdts, repairs): (Vec<Repair>, Vec<Repair>) = repairs
        .into_iter()
        .partition(|r| r.winner.kind.crdt().is_some());
    let mut unrepaired = super::crdt::converge(sw, crdts, p).await;
    let mut ready: Vec<Ready> = Vec::with_capacity(repairs.len());
    let mut by_source: BTreeMap<NodeId, Vec<Repair>> = BTreeMap::new();
    for r in repairs {
        if r.winner.kind == EntryKind::Tombstone {
            ready.push(Ready {
                loc: r.loc,
                meta: r.winner,
                dump: None,
                targets: r.stale,
            });
        } else if let Some(src) = pick_source(sw, &r.holders) {
            by_source.entry(src).or_default().push(r);
        } else {
            unrepaired.extend(r.stale.iter().map(|&n| (n, r.winner.version)));
        }
    }
    // A source whose value turns out missing under its metadata (deleted outside quorumd)
    // hands those repairs to the next holder: one bad copy must not keep the stale nodes, a
    // wiped one among them, from the intact copies. Each round tries one more holder per key.
    let mut tried: HashMap<Vec<u8>, Vec<NodeId>> = HashMap::new();
    while !by_source.is_empty() {
        let mut next_round: BTreeMap<NodeId, Vec<Repair>> = BTreeMap::new();
        for (src, list) in by_source {
            let missing = dump_from(sw, src, &list, p, &mut ready, &mut unrepaired).await;
            for r in missing {
                let tried = tried.entry(r.loc.key.clone()).or_default();
                tried.push(src);
                let untried: Vec<NodeId> = r
                    .holders
                    .iter()
                    .copied()
                    .filter(|h| !tried.contains(h))
                    .collect();
                match pick_source(sw, &untried) {
                    Some(other) => next_round.entry(other).or_default().push(r),
                    None => {
                        progress::lock(p).error(format!(
                            "{}: value of {:?} missing under its metadata on {}",
                            r.loc.meta_key,
                            String::from_utf8_lossy(&r.loc.key),
                            sw.pool().node(src).display
                        ));
                        unrepaired.extend(r.stale.iter().map(|&n| (n, r.winner.version)));
                    }
                }
            }
        }
        by_source = next_round;
    }
    apply_to_targets(sw, &ready, p, &mut unrepaired).await;
    unrepaired
}

/// DUMPs `list` from `src` in batches: what it holds goes to `ready`, what fails to
/// `unrepaired`; returns the repairs whose live value `src` lacks under its metadata.
async fn dump_from(
    sw: &Sweeper,
    src: NodeId,
    list: &[Repair],
    p: &ProgressHandle,
    ready: &mut Vec<Ready>,
    unrepaired: &mut Unrepaired,
) -> Vec<Repair> {
    let node = sw.pool().node(src).clone();
    let mut missing = Vec::new();
    for chunk in list.chunks(sw.cfg.key_batch) {
        let locs: Vec<&KeyLocation> = chunk.iter().map(|r| &r.loc).collect();
        match calls::store::dump(&node, &locs).await {
            Ok(dumps) => {
                for (r, d) in chunk.iter().zip(dumps) {
                    // The source may hold something newer by now: apply what it holds.
                    let meta = d
                        .meta
                        .filter(|m| m.version >= r.winner.version)
                        .unwrap_or_else(|| r.winner.clone());
                    let expired = meta
                        .expires_at_ms
                        .is_some_and(|at| at <= quorumd_core::hlc::wall_clock_ms());
                    match (meta.kind, d.dump) {
                        (EntryKind::Crdt(k), _) => {
                            progress::lock(p).error(format!(
                                "{:?} is a {k} on {} and a key-value entry elsewhere: \
                                 resolve by hand",
                                String::from_utf8_lossy(&r.loc.key),
                                node.display
                            ));
                            unrepaired.extend(r.stale.iter().map(|&n| (n, r.winner.version)));
                        }
                        (EntryKind::Tombstone, _) => ready.push(Ready {
                            loc: r.loc.clone(),
                            meta,
                            dump: None,
                            targets: r.stale.clone(),
                        }),
                        (EntryKind::Value, Some(bytes)) => ready.push(Ready {
                            loc: r.loc.clone(),
                            meta,
                            dump: Some(bytes),
                            targets: r.stale.clone(),
                        }),
                        // Expired on the source: the metadata alone is the truth to copy.
                        (EntryKind::Value, None) if expired => ready.push(Ready {
                            loc: r.loc.clone(),
                            meta,
                            dump: Some(Vec::new()),
                            targets: r.stale.clone(),
                        }),
                        (EntryKind::Value, None) => missing.push(r.clone()),
                    }
                }
            }
            Err(e) => {
                progress::lock(p).error(format!("dump from {}: {e}", node.display));
                unrepaired.extend(
                    chunk
                        .iter()
                        .flat_map(|r| r.stale.iter().map(|&n| (n, r.winner.version))),
                );
            }
        }
    }
    missing
}

async fn apply_to_targets(
    sw: &Sweeper,
    ready: &[Ready],
    p: &ProgressHandle,
    unrepaired: &mut Unrepaired,
) {
    let mut per_target: BTreeMap<NodeId, Vec<&Ready>> = BTreeMap::new();
    for r in ready {
        for &t in &r.targets {
            per_target.entry(t).or_default().push(r);
        }
    }
    // Targets are repaired concurrently; each one's batches go in order, paced per node.
    let work = per_target.into_iter().map(|(t, list)| async move {
        let node = sw.pool().node(t).clone();
        let mut lost = Vec::new();
        for chunk in list.chunks(sw.cfg.key_batch) {
            let waited = sw.throttle.acquire(&node, chunk.len() as u64).await;
            if !waited.is_zero() {
                crate::sync::events::SweepBackedOff {
                    node: &node.display,
                    waited,
                }
                .emit();
            }
            let entries: Vec<ApplyEntry<'_>> = chunk
                .iter()
                .map(|r| ApplyEntry {
                    loc: &r.loc,
                    meta: &r.meta,
                    payload: r
                        .dump
                        .as_deref()
                        .map(Payload::Dump)
                        .unwrap_or(Payload::None),
                    cond: NodeCondition::None,
                })
                .collect();
            match calls::store::apply_as(&node, Traffic::Background, &entries).await {
                Ok(outcomes) => {
                    for (o, r) in outcomes.iter().zip(chunk) {
                        if let calls::store::WriteOutcome::KindConflict(_) = o {
                            progress::lock(p).error(format!(
                                "{:?} is a CRDT on {} and a key-value entry elsewhere: \
                                     resolve by hand",
                                String::from_utf8_lossy(&r.loc.key),
                                node.display
                            ));
                            lost.push((t, r.meta.version));
                        }
                    }
                    let changed = outcomes.iter().filter(|o| o.changed()).count() as u64;
                    let restored = outcomes
                        .iter()
                        .filter(|o| matches!(o, calls::store::WriteOutcome::ValueRestored))
                        .count() as u64;
                    let mut r = progress::lock(p);
                    r.keys_repaired_per_node[t] += changed;
                    r.values_restored += restored;
                }
                Err(e) => {
                    progress::lock(p).error(format!("repair on {}: {e}", node.display));
                    lost.extend(chunk.iter().map(|r| (t, r.meta.version)));
                }
            }
        }
        lost
    });
    for lost in futures::future::join_all(work).await {
        unrepaired.extend(lost);
    }
}
