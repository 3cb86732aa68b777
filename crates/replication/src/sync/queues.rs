//! Queue state in anti-entropy. A queue's items are not versioned keys: they have no metadata
//! entries and no digests (docs/QUEUE.md), so neither the exchange's digest comparison nor the
//! full sweep's key states see them, and a node restarted empty would otherwise never get its
//! queues back. This pass lists the queues on the nodes (a `SCAN` for their record hashes),
//! pages through each queue's items on every source node (`HSCAN`), reads each page's items
//! from every node, joins the copies with the queue's own merge (`queue::record`: an acked or
//! dead item is never brought back, the newest lease wins, deliveries never go down) and merges
//! the join into the nodes whose copy differs or lacks its payload, with the queue's merge
//! script (`restore.lua`), so a queue write racing the restore cannot be undone by it.
//!
//! The one write a join cannot order is a purge (an acked item's record removed once every
//! node holds its tombstone): a live copy read on a lagging node before the purge would bring
//! the item back. Each node notes its purges for `PURGE_LOG_WINDOW_MS`, and a restore skips the
//! ids noted there; it carries the target's clock read before any copy was read (the mark), and
//! is refused once the mark is a window old, when the log may have forgotten a purge since.
//!
//! Two callers: the exchange restores every queue onto the nodes it finds recovering (they
//! lost data) once per loss, before it may call them back in sync; the full sweep brings
//! every reachable node up to the join of all of them (a node that missed writes while it was
//! away, or a record deleted on a node by hand).

use super::Sweeper;
use super::progress::{self, ProgressHandle};
use crate::queue::record::{ItemState, Record};
use quorumd_core::hlc::wall_clock_ms;
use quorumd_core::layout::Layout;
use quorumd_node::calls::queue::{
    self as calls, ItemCopy, PURGE_LOG_WINDOW_MS, QueueKeys, RestoreItem, Restored,
};
use quorumd_node::pool::{Health, Node, NodeId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Most payload bytes fetched and written per restore call (at least one item's).
const PAYLOAD_BATCH_BYTES: u64 = 4 << 20;

/// A mark older than this (by this instance's clock) is read again before the next page:
/// well inside the purge log's window, so the writes of a page never reach its end.
const MARK_REFRESH: Duration = Duration::from_millis(PURGE_LOG_WINDOW_MS / 4);

/// The exchange's part: every queue is restored onto each node that is recovering (it lost
/// data) and has not been restored since its latest loss, from the nodes that are not
/// recovering that way. A node that is a Redis Cluster gets only the queues in the slots it
/// lost. `covered`: the nodes whose digests the pass read; `losses`: each node's count of
/// losses taken before that read. Returns the nodes that could not be fully restored: the pass
/// must not call them back in sync.
pub(super) async fn restore_lost(
    sw: &Sweeper,
    p: &ProgressHandle,
    covered: &[bool],
    losses: &[u64],
) -> BTreeSet<NodeId> {
    if sw.skips_queue_heal() {
        return BTreeSet::new();
    }
    let pool = sw.pool();
    let done = sw.queues_restored();
    let targets: Vec<NodeId> = pool
        .nodes()
        .iter()
        .filter(|n| {
            covered[n.id]
                && n.health() != Health::Down
                && n.recovering_since_ms().is_some()
                && done[n.id] != Some(losses[n.id])
        })
        .map(|n| n.id)
        .collect();
    if targets.is_empty() {
        return BTreeSet::new();
    }
    let sources: Vec<NodeId> = pool
        .nodes()
        .iter()
        .filter(|n| n.health() != Health::Down && !targets.contains(&n.id))
        .map(|n| n.id)
        .collect();
    let sources = if !sources.is_empty() {
        sources
    } else if pool.nodes().iter().all(|n| n.health() != Health::Down) {
        // Every node lost data, none is away: on Redis Cluster replicas each usually lost other
        // shards. What they kept, joined, is all there is; waiting for a clean source would
        // keep them all recovering for good (found by `make torture`, cluster seed 18).
        targets.clone()
    } else {
        // A node that is down may hold the queues: the targets wait for a pass that has it.
        progress::lock(p).error("queues: no node that kept its data answers to restore from");
        return targets.into_iter().collect();
    };
    // What a recovering node lost: everything on a server, its lost shards' slots on a cluster.
    let lost = |node: &Node, keys: &QueueKeys| !node.counts_for_reads(Some(keys.rec.as_bytes()));
    let failed = heal(sw, p, &targets, &sources, Pass::Restore, lost).await;
    let restored: Vec<NodeId> = targets
        .into_iter()
        .filter(|t| !failed.contains(t))
        .collect();
    sw.queues_restored_at(&restored, losses);
    failed
}

/// The full sweep's part: every reachable node is brought up to the join of all of them, for
/// every queue any of them holds. Errors go to the report.
pub(super) async fn reconcile_all(sw: &Sweeper, p: &ProgressHandle, dry_run: bool) {
    if sw.skips_queue_heal() {
        return;
    }
    let nodes: Vec<NodeId> = sw
        .pool()
        .nodes()
        .iter()
        .filter(|n| n.health() != Health::Down)
        .map(|n| n.id)
        .collect();
    let pass = if dry_run {
        Pass::DryRun
    } else {
        Pass::Reconcile
    };
    heal(sw, p, &nodes, &nodes, pass, |_, _| true).await;
}

/// How a heal runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The exchange restoring nodes that lost data: its reads are not throttled (like the
    /// exchange's metadata reads), its writes are, by the repair throttle.
    Restore,
    /// The full sweep: reads paced by the scan throttle (one unit per item read on a node),
    /// writes by the repair throttle.
    Reconcile,
    /// The full sweep's dry run: reads as `Reconcile`, counts what it would write.
    DryRun,
}

/// Merges into `targets` the join of the copies held by `sources` and the targets, for every
/// queue found on `sources` that `wanted` says the target needs. Returns the targets that
/// could not be brought up to date (a read or write failed, or the queues could not all be
/// listed).
async fn heal(
    sw: &Sweeper,
    p: &ProgressHandle,
    targets: &[NodeId],
    sources: &[NodeId],
    pass: Pass,
    wanted: impl Fn(&Node, &QueueKeys) -> bool,
) -> BTreeSet<NodeId> {
    let dry_run = pass == Pass::DryRun;
    progress::lock(p).phase = "queues";
    let pool = sw.pool();
    let layout = &sw.store().settings().layout;
    let mut failed = BTreeSet::new();
    let (names, listed) = list_queues(sw, sources, pass, p).await;
    if !listed {
        failed.extend(targets.iter().copied());
    }
    for name in names {
        let keys = QueueKeys::new(&layout.prefix, &layout.group_tag(&name), &name);
        let mine: Vec<NodeId> = targets
            .iter()
            .copied()
            .filter(|&t| wanted(pool.node(t), &keys))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut q = QueueHeal {
            sw,
            p,
            name: &name,
            keys: &keys,
            sources,
            targets: mine,
            marks: HashMap::new(),
            failed: &mut failed,
            dry_run,
            throttle_reads: pass != Pass::Restore,
            restored: BTreeMap::new(),
            earlier: &[],
        };
        q.run().await;
        let restored = std::mem::take(&mut q.restored);
        let mut r = progress::lock(p);
        r.queues_checked += 1;
        for (&node, &items) in &restored {
            r.queue_items_restored_per_node[node] += items;
        }
        drop(r);
        for (node, items) in restored {
            super::events::QueueItemsRestored {
                queue: &name,
                node: &pool.node(node).display,
                items,
                mode: progress::lock(p).mode.as_str(),
                dry_run,
            }
            .emit();
        }
    }
    failed
}

/// The queues whose record hashes `sources` hold, and whether every source was listed whole.
async fn list_queues(
    sw: &Sweeper,
    sources: &[NodeId],
    pass: Pass,
    p: &ProgressHandle,
) -> (BTreeSet<String>, bool) {
    let layout = &sw.store().settings().layout;
    let pattern = calls::records_pattern(&layout.prefix);
    let scans = futures::future::join_all(sources.iter().map(|&s| {
        let pattern = &pattern;
        async move {
            let node = sw.pool().node(s);
            let mut names = BTreeSet::new();
            let mut cursor = 0;
            loop {
                let (next, keys) =
                    calls::scan_queues(node, pattern, cursor, sw.cfg.scan_count).await?;
                if pass != Pass::Restore {
                    sw.scan_throttle.acquire(node, keys.len() as u64).await;
                }
                names.extend(keys.iter().filter_map(|k| queue_name(layout, k)));
                if next == 0 {
                    return Ok::<_, quorumd_node::pool::NodeError>(names);
                }
                cursor = next;
            }
        }
    }))
    .await;
    let mut all = BTreeSet::new();
    let mut listed = true;
    for (&s, scan) in sources.iter().zip(scans) {
        match scan {
            Ok(names) => all.extend(names),
            Err(e) => {
                listed = false;
                progress::lock(p).error(format!(
                    "listing queues on {}: {e}",
                    sw.pool().node(s).display
                ));
            }
        }
    }
    (all, listed)
}

/// The queue name whose record hash is `key`, if it is one (`{prefix}q{tag}:{name}:rec`).
pub fn queue_name(layout: &Layout, key: &[u8]) -> Option<String> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key
        .strip_prefix(layout.prefix.as_str())?
        .strip_prefix('q')?;
    let rest = match rest.strip_prefix('{') {
        Some(tagged) => &tagged[tagged.find('}')? + 1..],
        None => rest,
    };
    let name = rest.strip_prefix(':')?.strip_suffix(":rec")?;
    let keys = QueueKeys::new(&layout.prefix, &layout.group_tag(name), name);
    (crate::locks::validate_name(name).is_ok() && keys.rec == key).then(|| name.to_owned())
}

/// One queue's heal.
struct QueueHeal<'a> {
    sw: &'a Sweeper,
    p: &'a ProgressHandle,
    name: &'a str,
    keys: &'a QueueKeys,
    sources: &'a [NodeId],
    /// The targets still being healed: one that fails is dropped (and noted in `failed`).
    targets: Vec<NodeId>,
    /// Per target, its mark and when this instance read it.
    marks: HashMap<NodeId, (u64, Instant)>,
    failed: &'a mut BTreeSet<NodeId>,
    dry_run: bool,
    /// Whether item reads are paced by the scan throttle (the full sweep).
    throttle_reads: bool,
    /// Items merged into each target (in a dry run: that would be).
    restored: BTreeMap<NodeId, u64>,
    /// The sources paged through before the current one. A dry run writes nothing, so it
    /// counts an item only on the first source holding it.
    earlier: &'a [NodeId],
}

/// What one page needs written: the join of each item, and per target the items it lacks.
struct PagePlan {
    /// Per item of the page, its join (`None`: on no node any more, or counted already).
    joins: Vec<Option<Join>>,
    /// Per target: (item index, whether it needs the payload).
    behind: BTreeMap<NodeId, Vec<(usize, bool)>>,
}

/// One item's copies joined.
struct Join {
    /// The joined record, encoded.
    record: String,
    /// When its tombstone counts from (the earliest any node has), if it is acked.
    acked_at_ms: u64,
    /// A node holding its payload (a source first), and the payload's size.
    payload_at: Option<(NodeId, u64)>,
}

impl QueueHeal<'_> {
    /// `node` cannot be healed in this pass: it is left out of the rest of it.
    fn fail(&mut self, node: NodeId, why: String) {
        progress::lock(self.p).error(why);
        self.failed.insert(node);
        self.targets.retain(|&t| t != node);
    }

    /// A source could not be read: the targets are still written what was read (a merge only
    /// moves an item forward), but none is known to be complete after this pass.
    fn source_failed(&mut self, why: String) {
        progress::lock(self.p).error(why);
        self.failed.extend(self.targets.iter().copied());
    }

    fn display(&self, node: NodeId) -> &str {
        &self.sw.pool().node(node).display
    }

    async fn run(&mut self) {
        for (k, &source) in self.sources.iter().enumerate() {
            self.earlier = &self.sources[..k];
            let node = self.sw.pool().node(source);
            let mut cursor = 0;
            loop {
                if self.targets.is_empty() {
                    return;
                }
                let (next, ids) =
                    match calls::scan_items(node, self.keys, cursor, self.sw.cfg.key_batch).await {
                        Ok(r) => r,
                        Err(e) => {
                            // Its items cannot be enumerated: the other sources still are.
                            let why =
                                format!("queue {:?}: records on {}: {e}", self.name, node.display);
                            self.source_failed(why);
                            break;
                        }
                    };
                if !ids.is_empty() {
                    self.page(&ids).await;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
    }

    /// Refreshes the marks of the targets whose mark is missing or old. Called before a page's
    /// copies are read, so each mark precedes them.
    async fn refresh_marks(&mut self) {
        if self.dry_run {
            return;
        }
        let stale: Vec<NodeId> = self
            .targets
            .iter()
            .copied()
            .filter(|t| {
                self.marks
                    .get(t)
                    .is_none_or(|(_, at)| at.elapsed() >= MARK_REFRESH)
            })
            .collect();
        let (sw, keys) = (self.sw, self.keys);
        let reads = futures::future::join_all(stale.iter().map(|&t| async move {
            let at = Instant::now();
            (t, at, calls::restore_mark(sw.pool().node(t), keys).await)
        }))
        .await;
        for (t, at, r) in reads {
            match r {
                Ok(mark) => {
                    self.marks.insert(t, (mark, at));
                }
                Err(e) => {
                    let why = format!("queue {:?}: clock of {}: {e}", self.name, self.display(t));
                    self.fail(t, why);
                }
            }
        }
    }

    async fn page(&mut self, ids: &[String]) {
        self.refresh_marks().await;
        if self.targets.is_empty() {
            return;
        }
        let readers: BTreeSet<NodeId> = self.sources.iter().chain(&self.targets).copied().collect();
        let (sw, keys, throttled) = (self.sw, self.keys, self.throttle_reads);
        let reads = futures::future::join_all(readers.iter().map(|&r| async move {
            let node = sw.pool().node(r);
            if throttled {
                sw.scan_throttle.acquire(node, ids.len() as u64).await;
            }
            (r, calls::item_copies(node, keys, ids).await)
        }))
        .await;
        let mut copies: Vec<(NodeId, Vec<ItemCopy>)> = Vec::new();
        for (r, res) in reads {
            match res {
                Ok(c) => copies.push((r, c)),
                Err(e) => {
                    let why = format!("queue {:?}: items on {}: {e}", self.name, self.display(r));
                    if self.targets.contains(&r) {
                        self.fail(r, why);
                    } else {
                        self.source_failed(why);
                    }
                }
            }
        }
        let plan = self.plan(ids, &copies);
        if self.dry_run {
            for (t, items) in &plan.behind {
                *self.restored.entry(*t).or_default() += items.len() as u64;
            }
            return;
        }
        self.write(ids, &plan).await;
    }

    /// Joins each item's copies and finds, per target, the items whose copy differs from the
    /// join or lacks the payload a live item needs.
    fn plan(&mut self, ids: &[String], copies: &[(NodeId, Vec<ItemCopy>)]) -> PagePlan {
        let mut joins = Vec::with_capacity(ids.len());
        let mut behind: BTreeMap<NodeId, Vec<(usize, bool)>> = BTreeMap::new();
        for (i, id) in ids.iter().enumerate() {
            let mut join: Option<Record> = None;
            let mut acked_at: Option<u64> = None;
            let mut payload_at: Option<(NodeId, u64)> = None;
            for (node, c) in copies {
                let c = &c[i];
                if let Some(raw) = &c.record {
                    match Record::parse(raw) {
                        Some(r) => {
                            join = Some(join.map_or(r.clone(), |j| j.merge(&r)));
                        }
                        None => progress::lock(self.p).error(format!(
                            "queue {:?}: malformed record of {id} on {}: {raw:?}",
                            self.name,
                            self.display(*node)
                        )),
                    }
                }
                if let Some(at) = c.acked_at_ms {
                    acked_at = Some(acked_at.map_or(at, |a| a.min(at)));
                }
                // Read payloads from a source rather than a target where one has it.
                let better = payload_at
                    .is_none_or(|(h, _)| self.targets.contains(&h) && !self.targets.contains(node));
                if c.payload_len > 0 && better {
                    payload_at = Some((*node, c.payload_len));
                }
            }
            let counted_before = self.dry_run
                && copies
                    .iter()
                    .any(|(n, c)| self.earlier.contains(n) && c[i].record.is_some());
            let Some(join) = join.filter(|_| !counted_before) else {
                // Gone from every node that answered (purged): nothing to restore. Or, in a
                // dry run, met on an earlier source already.
                joins.push(None);
                continue;
            };
            let live = join.state != ItemState::Acked;
            let record = join.encode();
            for (node, c) in copies {
                if !self.targets.contains(node) {
                    continue;
                }
                let c = &c[i];
                let needs_payload = live && c.payload_len == 0 && payload_at.is_some();
                if c.record.as_deref() != Some(record.as_str()) || needs_payload {
                    behind.entry(*node).or_default().push((i, needs_payload));
                }
            }
            joins.push(Some(Join {
                record,
                acked_at_ms: acked_at.unwrap_or_else(wall_clock_ms),
                payload_at,
            }));
        }
        PagePlan { joins, behind }
    }

    /// Writes a page's plan: its items in runs of at most `key_batch` items and
    /// `PAYLOAD_BATCH_BYTES` of payload, each run's payloads read once from their holders and
    /// merged into every target that lacks them, paced by the repair throttle.
    async fn write(&mut self, ids: &[String], plan: &PagePlan) {
        let wanted: BTreeSet<usize> = plan
            .behind
            .values()
            .flat_map(|items| items.iter().map(|(i, _)| *i))
            .collect();
        let mut runs: Vec<Vec<usize>> = Vec::new();
        let mut bytes = 0;
        for i in wanted {
            let size = plan.joins[i]
                .as_ref()
                .and_then(|j| j.payload_at)
                .map_or(0, |(_, n)| n);
            let full = runs.last().is_none_or(|run| {
                run.len() >= self.sw.cfg.key_batch
                    || (!run.is_empty() && bytes + size > PAYLOAD_BATCH_BYTES)
            });
            if full {
                runs.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            runs.last_mut().expect("a run was pushed").push(i);
        }
        for run in runs {
            if self.targets.is_empty() {
                return;
            }
            let payloads = self.fetch_payloads(ids, plan, &run).await;
            for t in self.targets.clone() {
                let Some(behind) = plan.behind.get(&t) else {
                    continue;
                };
                let items: Vec<RestoreItem<'_>> = behind
                    .iter()
                    .filter(|(i, _)| run.contains(i))
                    .filter_map(|&(i, needs_payload)| {
                        let join = plan.joins[i].as_ref()?;
                        let payload = if needs_payload {
                            payloads.get(&i).map_or("", String::as_str)
                        } else {
                            ""
                        };
                        Some(RestoreItem {
                            id: &ids[i],
                            record: &join.record,
                            payload,
                            acked_at_ms: join.acked_at_ms,
                        })
                    })
                    .collect();
                if items.is_empty() {
                    continue;
                }
                let node = self.sw.pool().node(t);
                self.sw.throttle.acquire(node, items.len() as u64).await;
                let Some(&(mark, _)) = self.marks.get(&t) else {
                    continue;
                };
                match calls::restore(node, self.keys, mark, &items).await {
                    Ok(Some(done)) => {
                        let merged = done.iter().filter(|d| **d == Restored::Merged).count();
                        *self.restored.entry(t).or_default() += merged as u64;
                    }
                    Ok(None) => {
                        let why = format!(
                            "queue {:?}: restore on {} refused: its mark is {} ms old",
                            self.name, node.display, PURGE_LOG_WINDOW_MS
                        );
                        self.fail(t, why);
                    }
                    Err(e) => {
                        let why =
                            format!("queue {:?}: restore on {}: {e}", self.name, node.display);
                        self.fail(t, why);
                    }
                }
            }
        }
    }

    /// The payloads a run needs, read from their holders (one call per holder). A payload that
    /// is gone by then (the item was acked meanwhile) is left out: its record is restored alone.
    async fn fetch_payloads(
        &mut self,
        ids: &[String],
        plan: &PagePlan,
        run: &[usize],
    ) -> HashMap<usize, String> {
        let needed: BTreeSet<usize> = plan
            .behind
            .iter()
            .filter(|(t, _)| self.targets.contains(t))
            .flat_map(|(_, items)| items.iter().filter(|(_, p)| *p).map(|(i, _)| *i))
            .filter(|i| run.contains(i))
            .collect();
        let mut by_holder: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
        for i in needed {
            if let Some((holder, _)) = plan.joins[i].as_ref().and_then(|j| j.payload_at) {
                by_holder.entry(holder).or_default().push(i);
            }
        }
        let (sw, keys) = (self.sw, self.keys);
        let reads = futures::future::join_all(by_holder.into_iter().map(|(h, idx)| async move {
            let wanted: Vec<&str> = idx.iter().map(|&i| ids[i].as_str()).collect();
            let r = calls::payloads(sw.pool().node(h), keys, &wanted).await;
            (h, idx, r)
        }))
        .await;
        let mut out = HashMap::new();
        for (h, idx, r) in reads {
            match r {
                Ok(values) => {
                    out.extend(
                        idx.into_iter()
                            .zip(values)
                            .filter_map(|(i, v)| v.map(|v| (i, v))),
                    );
                }
                Err(e) => {
                    // The records still go; the payloads come with the next pass.
                    let why = format!(
                        "queue {:?}: payloads on {}: {e}",
                        self.name,
                        self.display(h)
                    );
                    self.source_failed(why);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumd_core::layout::Scheme;

    fn layout(scheme: Scheme) -> Layout {
        Layout {
            prefix: "qd:".into(),
            scheme,
            buckets: 16384,
            sub_buckets: 4,
        }
    }

    #[test]
    fn queue_names_come_back_from_their_record_keys() {
        for scheme in [Scheme::Xxh3, Scheme::Slot] {
            let l = layout(scheme);
            for name in ["mail", "a:b:c", "x.y-z_1"] {
                let keys = QueueKeys::new(&l.prefix, &l.group_tag(name), name);
                assert_eq!(
                    queue_name(&l, keys.rec.as_bytes()).as_deref(),
                    Some(name),
                    "{scheme:?} {name}"
                );
                assert_eq!(queue_name(&l, keys.pay.as_bytes()), None);
                assert_eq!(queue_name(&l, keys.purged.as_bytes()), None);
            }
        }
        let l = layout(Scheme::Xxh3);
        for other in [
            "qd:q:rec",
            "qd:qx:mail:rec",
            "qd:q{1}:mail:rec",
            "q:mail:rec",
        ] {
            assert_eq!(queue_name(&l, other.as_bytes()), None, "{other}");
        }
    }
}
