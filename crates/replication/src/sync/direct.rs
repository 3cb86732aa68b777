//! Changes made on a node outside quorumd, to keys it versions or to new keys: found by the
//! live detection (`live`), the full sweep's scrub or a read, classified on the node by
//! `calls::store::verify`, and handled here by `sync.direct_writes`:
//!
//! - `adopt`: the value as it stands on the changed node becomes a new version, above the one
//!   it replaced, written to every node; a direct delete becomes a tombstone. The write is
//!   conditional on the replaced version, so a client write that landed meanwhile wins.
//! - `restore`: the versioned value is copied back, from a node that holds it intact, by the
//!   same-version repair of `APPLY` (which rewrites a value that differs from its entry).
//! - `report-only`: nothing changes.
//!
//! The policy is a key's own: the first of `sync.direct_writes_rules` whose pattern matches
//! it, else `sync.direct_writes` ([`policy_for`]). A key created outside quorumd (no
//! metadata) is adopted under `sync.adopt_policy` (there is no versioned value to restore),
//! unless its policy is `report-only`. A CRDT key's materialised value is rebuilt from the
//! node's state under either other policy: the state, not the value, is what merges.

use super::Sweeper;
use super::events::DirectChangesHandled;
use super::glob;
use quorumd_core::config::{AdoptPolicy, DirectWritesPolicy, SyncConfig};
use quorumd_core::content::Content;
use quorumd_core::meta::{EntryKind, Meta};
use quorumd_node::calls;
use quorumd_node::calls::store::{
    ApplyEntry, Captured, KeyLocation, Mismatch, NodeCondition, Payload, WriteOutcome,
};
use quorumd_node::pool::{NodeError, NodeId, Traffic};
use std::collections::BTreeMap;

pub use crate::store::suspects::Path;

/// What was done about a direct change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Adopted,
    Restored,
    Reported,
    /// Nothing to do any more: quorumd wrote the key since (its write wins).
    Superseded,
    /// The policy's action failed (no intact copy to restore from, a node refused); the next
    /// scrub finds the change again.
    Failed,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Adopted,
        Action::Restored,
        Action::Reported,
        Action::Superseded,
        Action::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Adopted => "adopted",
            Action::Restored => "restored",
            Action::Reported => "reported",
            Action::Superseded => "superseded",
            Action::Failed => "failed",
        }
    }
}

/// One key whose value on `node` is not what its metadata there records.
#[derive(Debug, Clone)]
pub struct Found {
    pub node: NodeId,
    pub loc: KeyLocation,
    pub mismatch: Mismatch,
    /// The node's metadata for the key when verified (`None`: created outside quorumd).
    pub meta: Option<Meta>,
}

/// The policy for direct changes to `key`: that of the first rule whose pattern matches it,
/// else the default.
pub fn policy_for(cfg: &SyncConfig, key: &[u8]) -> DirectWritesPolicy {
    cfg.direct_writes_rules
        .iter()
        .find(|r| glob::matches(r.pattern.as_bytes(), key))
        .map_or(cfg.direct_writes, |r| r.policy)
}

/// Whether the full sweep may version `key`, found on the nodes without metadata.
pub fn adopts_unversioned(cfg: &SyncConfig, key: &[u8]) -> bool {
    cfg.adopt_policy == AdoptPolicy::Majority
        && policy_for(cfg, key) != DirectWritesPolicy::ReportOnly
}

/// Handles `found`, each by its key's policy (only reports in a dry run); one action per
/// item, in order. Emits the events.
pub async fn handle(sw: &Sweeper, path: Path, found: &[Found], dry_run: bool) -> Vec<Action> {
    let cfg = sw.config();
    let mut actions = vec![Action::Reported; found.len()];
    if !dry_run {
        let (mut adopt_new, mut adopt, mut restore) = (Vec::new(), Vec::new(), Vec::new());
        let mut rebuild = Vec::new();
        for (i, f) in found.iter().enumerate() {
            let policy = policy_for(cfg, &f.loc.key);
            match &f.meta {
                _ if policy == DirectWritesPolicy::ReportOnly => {}
                None if cfg.adopt_policy == AdoptPolicy::Majority => adopt_new.push(i),
                None => {}
                Some(m) if m.kind.crdt().is_some() => rebuild.push(i),
                Some(_) if policy == DirectWritesPolicy::Adopt => adopt.push(i),
                Some(_) => restore.push(i),
            }
        }
        adopt.extend(adopt_new);
        for (i, a) in adopt_changes(sw, found, &adopt).await {
            actions[i] = a;
        }
        for (i, a) in restore_changes(sw, found, &restore).await {
            actions[i] = a;
        }
        for i in rebuild {
            actions[i] = rebuild_crdt_value(sw, &found[i]).await;
        }
    }
    DirectChangesHandled {
        path,
        found,
        actions: &actions,
        pool: sw.pool(),
        live: sw.pool().live(),
    }
    .emit();
    actions
}

/// Writes each change, as it stands on its node, as a new version on every node.
async fn adopt_changes(sw: &Sweeper, found: &[Found], items: &[usize]) -> Vec<(usize, Action)> {
    let pool = sw.pool();
    let stream_checksum = sw.store().settings().stream_checksum;
    let mut out = Vec::with_capacity(items.len());
    // Capture every changed value from its own node, one call per node.
    let mut captured: Vec<(usize, Captured)> = Vec::new();
    for (node, idx) in by_node(found, items) {
        let locs: Vec<&KeyLocation> = idx.iter().map(|&i| &found[i].loc).collect();
        match calls::store::capture(pool.node(node), &locs, stream_checksum).await {
            Ok(list) => captured.extend(idx.into_iter().zip(list)),
            Err(_) => out.extend(idx.into_iter().map(|i| (i, Action::Failed))),
        }
    }
    let mut metas = Vec::with_capacity(captured.len());
    let mut adopted = Vec::with_capacity(captured.len());
    for (i, c) in &captured {
        let f = &found[*i];
        // The entry must still be the one the change was found under: a write since then
        // replaced the change, and wins.
        if c.meta != f.meta {
            out.push((*i, Action::Superseded));
            continue;
        }
        let version = {
            if let Some(m) = &f.meta {
                sw.store().clock().observe(m.version);
            }
            sw.store().clock().tick()
        };
        let (kind, content) = match &c.dump {
            Some(_) => (EntryKind::Value, c.content),
            None => (EntryKind::Tombstone, Content::Absent),
        };
        metas.push(Meta::new(
            &f.loc.key,
            version,
            kind,
            c.expires_at_ms.filter(|_| kind == EntryKind::Value),
            content,
        ));
        adopted.push((*i, c));
    }
    let entries: Vec<ApplyEntry<'_>> = adopted
        .iter()
        .zip(&metas)
        .map(|((i, c), meta)| ApplyEntry {
            loc: &found[*i].loc,
            meta,
            payload: c.dump.as_deref().map_or(Payload::None, Payload::Dump),
            cond: match &found[*i].meta {
                Some(m) => NodeCondition::NotNewerThan(m.version),
                None => NodeCondition::Absent,
            },
        })
        .collect();
    let results = apply_everywhere(sw, &entries).await;
    for (e, (i, _)) in adopted.iter().enumerate() {
        let origin = found[*i].node;
        // Adopted once the node where the change was made holds the new version.
        let action = match results.get(&origin).map(|r| r.as_ref().map(|o| &o[e])) {
            Some(Ok(o)) if o.holds_version() => Action::Adopted,
            Some(Ok(WriteOutcome::ConditionFailed(_))) => Action::Superseded,
            _ => Action::Failed,
        };
        out.push((*i, action));
    }
    out
}

/// Copies each key's versioned value back onto its node from a node holding it intact.
async fn restore_changes(sw: &Sweeper, found: &[Found], items: &[usize]) -> Vec<(usize, Action)> {
    let pool = sw.pool();
    let stream_checksum = sw.store().settings().stream_checksum;
    let mut out = Vec::with_capacity(items.len());
    // A source per item: another node whose value is intact under the same entry.
    let mut source: BTreeMap<usize, NodeId> = BTreeMap::new();
    let wanted: Vec<usize> = items
        .iter()
        .copied()
        .filter(|&i| {
            found[i]
                .meta
                .as_ref()
                .is_some_and(|m| m.kind == EntryKind::Value)
        })
        .collect();
    for node in pool.nodes() {
        let ask: Vec<usize> = wanted
            .iter()
            .copied()
            .filter(|i| found[*i].node != node.id && !source.contains_key(i))
            .collect();
        let locs: Vec<&KeyLocation> = ask.iter().map(|&i| &found[i].loc).collect();
        if let Ok(verdicts) = calls::store::verify(node, Traffic::Background, &locs).await {
            for (i, v) in ask.into_iter().zip(verdicts) {
                if v.mismatch.is_none() && v.meta == found[i].meta {
                    source.insert(i, node.id);
                }
            }
        }
    }
    let mut dumps: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut by_source: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
    for (&i, &n) in &source {
        by_source.entry(n).or_default().push(i);
    }
    for (n, idx) in by_source {
        let locs: Vec<&KeyLocation> = idx.iter().map(|&i| &found[i].loc).collect();
        if let Ok(list) = calls::store::capture(pool.node(n), &locs, stream_checksum).await {
            for (i, c) in idx.into_iter().zip(list) {
                if c.meta == found[i].meta
                    && let Some(d) = c.dump
                {
                    dumps.insert(i, d);
                }
            }
        }
    }
    for (node, idx) in by_node(found, items) {
        let mut ready = Vec::new();
        for i in idx {
            let f = &found[i];
            let Some(meta) = &f.meta else { continue };
            let payload = match (meta.kind, dumps.get(&i)) {
                (EntryKind::Tombstone, _) => Payload::None,
                (_, Some(d)) => Payload::Dump(d),
                // The value has expired by its metadata: the repair deletes it.
                (_, None) if !meta.is_live(quorumd_core::hlc::wall_clock_ms()) => {
                    Payload::Dump(b"")
                }
                (_, None) => {
                    out.push((i, Action::Failed));
                    continue;
                }
            };
            ready.push((
                i,
                ApplyEntry {
                    loc: &f.loc,
                    meta,
                    payload,
                    cond: NodeCondition::None,
                },
            ));
        }
        let entries: Vec<ApplyEntry<'_>> = ready.iter().map(|(_, e)| e.clone()).collect();
        let n = pool.node(node);
        sw.throttle.acquire(n, entries.len() as u64).await;
        let result = calls::store::apply_as(n, Traffic::Background, &entries).await;
        for (e, (i, _)) in ready.iter().enumerate() {
            let action = match result.as_ref().map(|o| &o[e]) {
                Ok(WriteOutcome::ValueRestored | WriteOutcome::Applied) => Action::Restored,
                Ok(WriteOutcome::Superseded(_)) => Action::Superseded,
                _ => Action::Failed,
            };
            out.push((*i, action));
        }
    }
    out
}

/// A CRDT key's materialised value changed on its node: the state is what merges, so under
/// either policy the value is rebuilt from the node's state. Its state changed: under either
/// policy the entry hash is recomputed from the state as it stands (and the value rebuilt), so
/// the digests show the node's state differs and the sweep merges it with the other nodes' as
/// for any CRDT key: a state cannot be restored to an earlier one, only joined.
async fn rebuild_crdt_value(sw: &Sweeper, f: &Found) -> Action {
    let Some(kind) = f.meta.as_ref().and_then(|m| m.kind.crdt()) else {
        return Action::Failed;
    };
    let state_key = sw.store().settings().layout.state_key(&f.loc.key);
    let node = sw.pool().node(f.node);
    sw.throttle.acquire(node, 1).await;
    let (reply, done) = if f.mismatch == Mismatch::State {
        (
            calls::crdt::rehash(node, &f.loc, &state_key, kind).await,
            Action::Adopted,
        )
    } else {
        (
            calls::crdt::rebuild(node, &f.loc, &state_key, kind).await,
            Action::Restored,
        )
    };
    match reply {
        Ok(r) if r.code == calls::crdt::MergeCode::Changed => done,
        _ => Action::Failed,
    }
}

/// Applies `entries` on every node, in batches, as background traffic.
async fn apply_everywhere(
    sw: &Sweeper,
    entries: &[ApplyEntry<'_>],
) -> BTreeMap<NodeId, Result<Vec<WriteOutcome>, NodeError>> {
    let results = futures::future::join_all(sw.pool().nodes().iter().map(|n| async move {
        let mut outcomes = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(sw.config().key_batch.max(1)) {
            sw.throttle.acquire(n, chunk.len() as u64).await;
            match calls::store::apply_as(n, Traffic::Background, chunk).await {
                Ok(o) => outcomes.extend(o),
                Err(e) => return (n.id, Err(e)),
            }
        }
        (n.id, Ok(outcomes))
    }))
    .await;
    results.into_iter().collect()
}

fn by_node(found: &[Found], items: &[usize]) -> BTreeMap<NodeId, Vec<usize>> {
    let mut out: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
    for &i in items {
        out.entry(found[i].node).or_default().push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumd_core::config::DirectWritesRule;
    use quorumd_core::metric_labels as labels;

    /// The label values registered at zero are exactly the ones this module records.
    #[test]
    fn registered_label_values_are_the_recorded_ones() {
        let kinds: Vec<&str> = Mismatch::ALL.iter().map(|m| m.as_str()).collect();
        let paths: Vec<&str> = Path::ALL.iter().map(|p| p.as_str()).collect();
        let actions: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(kinds, labels::DIRECT_CHANGE_KINDS);
        assert_eq!(paths, labels::DIRECT_CHANGE_PATHS);
        assert_eq!(actions, labels::DIRECT_CHANGE_ACTIONS);
    }

    #[test]
    fn the_first_matching_rule_decides_and_the_default_covers_the_rest() {
        let rule = |pattern: &str, policy| DirectWritesRule {
            pattern: pattern.into(),
            policy,
        };
        let cfg = SyncConfig {
            direct_writes: DirectWritesPolicy::Adopt,
            direct_writes_rules: vec![
                rule("cfg:audit:*", DirectWritesPolicy::ReportOnly),
                rule("cfg:*", DirectWritesPolicy::Restore),
            ],
            ..SyncConfig::default()
        };
        assert_eq!(policy_for(&cfg, b"cfg:limits"), DirectWritesPolicy::Restore);
        assert_eq!(
            policy_for(&cfg, b"cfg:audit:1"),
            DirectWritesPolicy::ReportOnly
        );
        assert_eq!(policy_for(&cfg, b"user:1"), DirectWritesPolicy::Adopt);
        // Keys without metadata are versioned unless their policy or `adopt_policy` forbids.
        assert!(adopts_unversioned(&cfg, b"user:1"));
        assert!(adopts_unversioned(&cfg, b"cfg:limits"));
        assert!(!adopts_unversioned(&cfg, b"cfg:audit:1"));
        let none = SyncConfig {
            adopt_policy: AdoptPolicy::ReportOnly,
            ..cfg
        };
        assert!(!adopts_unversioned(&none, b"user:1"));
    }
}
