//! CRDTs on the quorum: PN-counters, add-wins OR-sets and LWW maps, one key each.
//!
//! Every update is a small state (a delta: this process's counter totals, fresh set tags,
//! removals of observed tags, new map registers) merged into every node by the merge script
//! and acknowledged after the write quorum; merging is idempotent, so a retry or a repair that
//! repeats it changes nothing. Reads merge the states of a read quorum and merge the result back
//! into the nodes that were behind. The anti-entropy sweep does the same for every CRDT key
//! (`sync/crdt.rs`). Layout and guarantees: docs/CRDTS.md.

pub mod events;
mod own;

use crate::fanout::{Gathered, QuorumError, WriteBack, fan_out};
use crate::store::repair::repair_nodes;
use crate::store::{StoreError, VersionedStore};
use quorumd_core::crdt::{Actor, CounterError, Crdt, CrdtKind, LwwMap, OrSet, PnCounter};
use quorumd_core::hlc::wall_clock_ms;
use quorumd_core::quorum::{Consistency, Decision};
use quorumd_core::stream::string2ll;
use quorumd_node::calls;
use quorumd_node::calls::crdt::{MergeCode, MergeReply, NodeState};
use quorumd_node::calls::store::KeyLocation;
use quorumd_node::pool::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CrdtError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the key holds {holds}, not a {wanted}")]
    KindConflict { wanted: CrdtKind, holds: String },
    #[error(transparent)]
    Overflow(#[from] CounterError),
    #[error(
        "idempotency key already used for a delta of {previous}, not {requested}: use a new key for a new increment"
    )]
    IdempotencyConflict { previous: i128, requested: i64 },
    #[error("a node holds a state that does not parse: {0}")]
    Corrupt(String),
    #[error("hash field value is not an integer or out of range")]
    NotAnInteger,
}

impl CrdtError {
    /// The `result` label of the CRDT update metric.
    pub fn label(&self) -> &'static str {
        match self {
            CrdtError::Store(StoreError::NoQuorum(_)) => "no_quorum",
            CrdtError::Store(StoreError::Timeout { .. }) => "timeout",
            CrdtError::Store(StoreError::KindConflict { .. }) | CrdtError::KindConflict { .. } => {
                "wrong_type"
            }
            CrdtError::Store(StoreError::ReservedKey { .. })
            | CrdtError::Overflow(_)
            | CrdtError::IdempotencyConflict { .. }
            | CrdtError::NotAnInteger => "invalid",
            CrdtError::Store(_) | CrdtError::Corrupt(_) => "error",
        }
    }
}

impl From<QuorumError> for CrdtError {
    fn from(e: QuorumError) -> Self {
        CrdtError::Store(StoreError::NoQuorum(e))
    }
}

/// A counter after an increment.
#[derive(Debug, Clone)]
pub struct CounterReceipt {
    /// The value merged from what was read and what the acknowledging nodes hold now.
    pub value: i128,
    /// True when the idempotency key had been used for this increment already: it was not
    /// counted again.
    pub replayed: bool,
    pub acknowledged_by: Vec<String>,
}

/// An update that reached its write quorum.
#[derive(Debug, Clone)]
pub struct CrdtReceipt {
    pub acknowledged_by: Vec<String>,
}

/// Where a CRDT key lives on every node.
struct Place {
    loc: KeyLocation,
    state_key: Vec<u8>,
}

/// What a quorum read found.
struct ReadState<C> {
    merged: C,
}

/// CRDT operations over the quorum. Cheap to share behind an `Arc`; several built on the same
/// store share this process's record of its own counter totals.
pub struct CrdtStore {
    store: Arc<VersionedStore>,
    own: Arc<own::OwnTotals>,
}

impl CrdtStore {
    pub fn new(store: Arc<VersionedStore>) -> Self {
        let own = own::OwnTotals::for_writer(store.clock().writer());
        CrdtStore { store, own }
    }

    /// This process's actor id: the store's writer id.
    pub fn actor(&self) -> Actor {
        Actor::Writer(self.store.clock().writer())
    }

    fn place(&self, key: &[u8]) -> Result<Place, CrdtError> {
        let loc = self.store.locate(key)?;
        let state_key = self.store.settings().layout.state_key(key);
        Ok(Place { loc, state_key })
    }

    async fn within_deadline<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, CrdtError>>,
    ) -> Result<T, CrdtError> {
        self.store.within_deadline(operation, fut).await
    }

    /// `within_deadline` for an update: also counts it by type and result.
    async fn update_within_deadline<T>(
        &self,
        kind: CrdtKind,
        operation: &'static str,
        fut: impl Future<Output = Result<T, CrdtError>>,
    ) -> Result<T, CrdtError> {
        let r = self.within_deadline(operation, fut).await;
        crate::crdt_store::events::CrdtUpdated {
            kind: kind.name(),
            result: r.as_ref().map_or_else(CrdtError::label, |_| "ok"),
        }
        .emit();
        r
    }

    // ---- counters ----

    /// Adds `delta` to a counter. With an idempotency key, the increment is recorded under its
    /// own actor (the key's hash) as a fixed amount, so repeating the request, through any
    /// instance, writes the same entry again instead of counting twice.
    #[tracing::instrument(level = "debug", name = "crdt.counter_add", skip_all, fields(level = %level, delta))]
    pub async fn counter_add(
        &self,
        key: &[u8],
        delta: i64,
        level: Consistency,
        idempotency_key: Option<&[u8]>,
    ) -> Result<CounterReceipt, CrdtError> {
        let place = self.place(key)?;
        self.update_within_deadline(CrdtKind::Counter, "counter increment", async {
            match idempotency_key {
                Some(k) => self.add_once(&place, delta, level, Actor::request(k)).await,
                None => self.add_as_self(&place, delta, level).await,
            }
        })
        .await
    }

    async fn add_as_self(
        &self,
        place: &Place,
        delta: i64,
        level: Consistency,
    ) -> Result<CounterReceipt, CrdtError> {
        let actor = self.actor();
        let slot = self.own.slot(&place.loc.key);
        let mut own = slot.lock().await;
        let read = self.read::<PnCounter>(place, level).await?;
        let mut next = read.merged;
        next.set_entry(actor, own.totals);
        next.increment(actor, delta)?;
        let totals = next.entry(actor);
        // Remembered before the write: if it fails halfway, the next increment builds on it.
        own.totals = totals;
        own.everywhere = false;
        let mut update = PnCounter::default();
        update.set_entry(actor, totals);
        let (receipt, states) = self.write(place, &update, level, true).await?;
        own.everywhere = receipt.acknowledged_by.len() == self.store.pool().len();
        let value = merged_value(next, &states)?;
        Ok(CounterReceipt {
            value,
            replayed: false,
            acknowledged_by: receipt.acknowledged_by,
        })
    }

    async fn add_once(
        &self,
        place: &Place,
        delta: i64,
        level: Consistency,
        actor: Actor,
    ) -> Result<CounterReceipt, CrdtError> {
        let read = self.read::<PnCounter>(place, level).await?;
        let wanted = if delta >= 0 {
            (delta.unsigned_abs(), 0)
        } else {
            (0, delta.unsigned_abs())
        };
        let previous = read.merged.entry(actor);
        let replayed = previous != (0, 0);
        if replayed && previous != wanted {
            return Err(CrdtError::IdempotencyConflict {
                previous: i128::from(previous.0) - i128::from(previous.1),
                requested: delta,
            });
        }
        let mut next = read.merged;
        if !replayed {
            next.increment(actor, delta)?;
        }
        let mut update = PnCounter::default();
        update.set_entry(actor, wanted);
        let (receipt, states) = self.write(place, &update, level, true).await?;
        Ok(CounterReceipt {
            value: merged_value(next, &states)?,
            replayed,
            acknowledged_by: receipt.acknowledged_by,
        })
    }

    /// A counter's value (0 when it does not exist).
    #[tracing::instrument(level = "debug", name = "crdt.counter_get", skip_all, fields(level = %level))]
    pub async fn counter_get(&self, key: &[u8], level: Consistency) -> Result<i128, CrdtError> {
        let place = self.place(key)?;
        self.within_deadline("counter read", async {
            Ok(self.read::<PnCounter>(&place, level).await?.merged.value())
        })
        .await
    }

    // ---- sets ----

    /// Adds members, each under a fresh tag.
    #[tracing::instrument(level = "debug", name = "crdt.set_add", skip_all, fields(level = %level, members = members.len()))]
    pub async fn set_add(
        &self,
        key: &[u8],
        members: &[Vec<u8>],
        level: Consistency,
    ) -> Result<CrdtReceipt, CrdtError> {
        let place = self.place(key)?;
        let clock = self.store.clock();
        let update = OrSet::add_delta(members.iter().map(|m| (clock.tick(), m.clone())));
        self.update_within_deadline(CrdtKind::Set, "set add", async {
            Ok(self.write(&place, &update, level, false).await?.0)
        })
        .await
    }

    /// Removes members as observed by a read quorum; returns how many of them were present.
    /// An add this read did not see (concurrent) survives: add wins.
    #[tracing::instrument(level = "debug", name = "crdt.set_remove", skip_all, fields(level = %level, members = members.len()))]
    pub async fn set_remove(
        &self,
        key: &[u8],
        members: &[Vec<u8>],
        level: Consistency,
    ) -> Result<(usize, CrdtReceipt), CrdtError> {
        let place = self.place(key)?;
        self.update_within_deadline(CrdtKind::Set, "set remove", async {
            let read = self.read::<OrSet>(&place, level).await?;
            let wanted: BTreeSet<Vec<u8>> = members.iter().cloned().collect();
            let present = wanted.iter().filter(|m| read.merged.contains(m)).count();
            let update = read.merged.remove_delta(&wanted);
            if update == OrSet::default() {
                return Ok((
                    0,
                    CrdtReceipt {
                        acknowledged_by: Vec::new(),
                    },
                ));
            }
            Ok((present, self.write(&place, &update, level, false).await?.0))
        })
        .await
    }

    /// A set's members (empty when it does not exist).
    #[tracing::instrument(level = "debug", name = "crdt.set_members", skip_all, fields(level = %level))]
    pub async fn set_members(
        &self,
        key: &[u8],
        level: Consistency,
    ) -> Result<BTreeSet<Vec<u8>>, CrdtError> {
        let place = self.place(key)?;
        self.within_deadline("set read", async {
            Ok(self.read::<OrSet>(&place, level).await?.merged.members())
        })
        .await
    }

    // ---- maps ----

    /// Writes fields (`None` deletes one), all under one fresh version: the newest write of a
    /// field wins.
    #[tracing::instrument(level = "debug", name = "crdt.map_set", skip_all, fields(level = %level, fields = fields.len()))]
    pub async fn map_set(
        &self,
        key: &[u8],
        fields: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        level: Consistency,
    ) -> Result<CrdtReceipt, CrdtError> {
        let place = self.place(key)?;
        let version = self.store.clock().tick();
        let mut update = LwwMap::default();
        for (f, v) in fields {
            update.set(f, version, v);
        }
        self.update_within_deadline(CrdtKind::Map, "map write", async {
            Ok(self.write(&place, &update, level, false).await?.0)
        })
        .await
    }

    /// A map's live fields (empty when it does not exist).
    #[tracing::instrument(level = "debug", name = "crdt.map_get", skip_all, fields(level = %level))]
    pub async fn map_get(
        &self,
        key: &[u8],
        level: Consistency,
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, CrdtError> {
        let place = self.place(key)?;
        self.within_deadline("map read", async {
            Ok(self.read::<LwwMap>(&place, level).await?.merged.entries())
        })
        .await
    }

    /// Adds `delta` to an integer field of a map (HINCRBY). This is a last-writer-wins
    /// read-modify-write, not a counter: two concurrent increments of one field can lose one.
    #[tracing::instrument(level = "debug", name = "crdt.map_incr_by", skip_all, fields(level = %level, delta))]
    pub async fn map_incr_by(
        &self,
        key: &[u8],
        field: &[u8],
        delta: i64,
        level: Consistency,
    ) -> Result<i64, CrdtError> {
        let place = self.place(key)?;
        self.update_within_deadline(CrdtKind::Map, "map increment", async {
            let read = self.read::<LwwMap>(&place, level).await?;
            let current = match read.merged.register(field) {
                Some(reg) => {
                    self.store.clock().observe(reg.version);
                    match &reg.value {
                        // As strictly as Redis reads a hash field (`string2ll`).
                        Some(v) => string2ll(v).ok_or(CrdtError::NotAnInteger)?,
                        None => 0,
                    }
                }
                None => 0,
            };
            let next = current.checked_add(delta).ok_or(CounterError::Overflow {
                value: i128::from(current),
                delta,
            })?;
            let mut update = LwwMap::default();
            update.set(
                field.to_vec(),
                self.store.clock().tick(),
                Some(next.to_string().into_bytes()),
            );
            self.write(&place, &update, level, false).await?;
            Ok(next)
        })
        .await
    }

    // ---- the quorum parts shared by all kinds ----

    /// Reads the state from a read quorum and merges it; repairs the nodes that were behind
    /// (before answering at `linearizable`, in the background otherwise).
    async fn read<C: Crdt + Send + 'static>(
        &self,
        place: &Place,
        level: Consistency,
    ) -> Result<ReadState<C>, CrdtError> {
        let required = self.store.settings().quorum.read_quorum(level);
        let shared = Arc::new((place.loc.clone(), place.state_key.clone()));
        let g = self
            .store
            .read_quorum("crdt read", required, Some(&place.loc.key), |node| {
                let shared = shared.clone();
                async move { calls::crdt::read_state(&node, &shared.0, &shared.1).await }
            })
            .await?;
        let merged: C = merge_answers(g.successes().map(|(_, s)| s))?;
        if level == Consistency::Linearizable {
            self.write_back(place, &merged, &g).await?;
        }
        spawn_read_repair(
            self.store.clone(),
            place.loc.clone(),
            place.state_key.clone(),
            g,
        );
        Ok(ReadState { merged })
    }

    /// Makes sure a majority holds at least `merged` before a `linearizable` read answers.
    async fn write_back<C: Crdt>(
        &self,
        place: &Place,
        merged: &C,
        g: &Gathered<NodeState>,
    ) -> Result<(), CrdtError> {
        // An empty state has nothing a majority could lack (and a node holding a deleted
        // key-value entry would refuse the merge).
        if *merged == C::default() {
            return Ok(());
        }
        let plan = g.write_back_plan(self.store.pool().len(), |s| {
            decode::<C>(s).is_ok_and(|c| c.as_ref() == Some(merged))
        });
        let Some(WriteBack { targets, needed }) = plan else {
            return Ok(());
        };
        self.write_to(place, merged, targets, needed, false, "read_repair")
            .await
            .map(|_| ())
    }

    /// Merges `update` into every node; done when the level's write quorum acknowledged.
    /// With `want_state`, also returns the states the acknowledging nodes hold afterwards.
    async fn write<C: Crdt>(
        &self,
        place: &Place,
        update: &C,
        level: Consistency,
        want_state: bool,
    ) -> Result<(CrdtReceipt, Vec<C>), CrdtError> {
        let required = self.store.settings().quorum.write_quorum(level);
        self.write_to(
            place,
            update,
            0..self.store.pool().len(),
            required,
            want_state,
            "write",
        )
        .await
    }

    async fn write_to<C: Crdt>(
        &self,
        place: &Place,
        update: &C,
        targets: impl IntoIterator<Item = NodeId>,
        required: usize,
        want_state: bool,
        source: &'static str,
    ) -> Result<(CrdtReceipt, Vec<C>), CrdtError> {
        let pool = self.store.pool();
        let shared = Arc::new((
            place.loc.clone(),
            place.state_key.clone(),
            update.to_fields(),
        ));
        let counts = |_: NodeId, r: &MergeReply| r.code != MergeCode::KindConflict;
        let mut g = fan_out(pool, targets, required, counts, |node| {
            let shared = shared.clone();
            async move {
                let (loc, skey, fields) = &*shared;
                calls::crdt::merge(&node, loc, skey, C::KIND, fields, want_state).await
            }
        })
        .await;
        crate::crdt_store::events::CrdtMerged {
            kind: C::KIND.name(),
            source,
            nodes: g
                .successes()
                .filter(|(_, r)| r.code == MergeCode::Changed)
                .count() as u64,
        }
        .emit();
        if g.decision != Decision::Reached {
            if let Some(holds) = g.successes().find_map(|(_, r)| {
                (r.code == MergeCode::KindConflict).then(|| describe(r.meta.as_ref()))
            }) {
                return Err(CrdtError::KindConflict {
                    wanted: C::KIND,
                    holds,
                });
            }
            let why = |r: &MergeReply| describe(r.meta.as_ref());
            return Err(
                QuorumError::from_gathered("crdt write", pool, &mut g, counts, why)
                    .await
                    .into(),
            );
        }
        let mut states = Vec::new();
        let mut acknowledged_by = Vec::new();
        for (n, r) in g
            .successes()
            .filter(|(_, r)| r.code != MergeCode::KindConflict)
        {
            acknowledged_by.push(pool.node(n).display.clone());
            if want_state {
                let fields = r.state.iter().map(|(f, v)| (&f[..], &v[..]));
                states.push(C::from_fields(fields).map_err(|e| CrdtError::Corrupt(e.to_string()))?);
            }
        }
        Ok((CrdtReceipt { acknowledged_by }, states))
    }
}

/// What an entry in the way is, for error messages.
fn describe(meta: Option<&quorumd_core::meta::Meta>) -> String {
    match meta.map(|m| m.kind.crdt()) {
        Some(Some(k)) => format!("a {k}"),
        Some(None) => "a key-value entry".into(),
        None => "nothing".into(),
    }
}

/// A node's state as `C`: `None` when the key does not exist there; an error when it holds
/// another kind of entry or a state that does not parse.
fn decode<C: Crdt>(s: &NodeState) -> Result<Option<C>, CrdtError> {
    match &s.meta {
        None => Ok(None),
        // A deleted or expired key-value entry holds nothing: reading it as a set or a map
        // finds it empty, as Redis finds the key absent (`SET k v`, `DEL k`, `SISMEMBER k m`
        // answers 0, not WRONGTYPE).
        Some(m) if m.kind.crdt().is_none() && !m.is_live(wall_clock_ms()) => Ok(None),
        Some(m) if m.kind.crdt() != Some(C::KIND) => Err(CrdtError::KindConflict {
            wanted: C::KIND,
            holds: describe(Some(m)),
        }),
        Some(_) => C::from_fields(s.state.iter().map(|(f, v)| (&f[..], &v[..])))
            .map(Some)
            .map_err(|e| CrdtError::Corrupt(e.to_string())),
    }
}

fn merge_answers<'a, C: Crdt>(
    answers: impl IntoIterator<Item = &'a NodeState>,
) -> Result<C, CrdtError> {
    let mut merged = C::default();
    for s in answers {
        if let Some(c) = decode::<C>(s)? {
            merged.merge(&c);
        }
    }
    Ok(merged)
}

fn merged_value(mut counter: PnCounter, states: &[PnCounter]) -> Result<i128, CrdtError> {
    for s in states {
        counter.merge(s);
    }
    Ok(counter.value())
}

/// After a read: merges every answer (stragglers included) and merges the result into each
/// node that answered with less. Nodes that failed are left to the sweep.
fn spawn_read_repair(
    store: Arc<VersionedStore>,
    loc: KeyLocation,
    state_key: Vec<u8>,
    g: Gathered<NodeState>,
) {
    let tasks = store.pool().clone();
    tasks.workers().spawn_task(async move {
        let answered = g.into_all_answers().await;
        let Some(kind) = answered
            .iter()
            .find_map(|(_, s)| s.meta.as_ref().and_then(|m| m.kind.crdt()))
        else {
            return;
        };
        let decoded: Vec<(NodeId, Option<quorumd_core::crdt::AnyCrdt>)> = answered
            .iter()
            .filter_map(|(n, s)| {
                let fields = s.state.iter().map(|(f, v)| (&f[..], &v[..]));
                match s.meta.as_ref().map(|m| m.kind.crdt()) {
                    None => Some((*n, None)),
                    Some(Some(k)) if k == kind => {
                        quorumd_core::crdt::AnyCrdt::from_fields(k, fields)
                            .ok()
                            .map(|c| (*n, Some(c)))
                    }
                    // Another kind of entry: the sweep reports it; nothing to merge here.
                    Some(_) => None,
                }
            })
            .collect();
        let mut merged = quorumd_core::crdt::AnyCrdt::empty(kind);
        for c in decoded.iter().filter_map(|(_, c)| c.as_ref()) {
            merged.merge(c);
        }
        let behind: Vec<NodeId> = decoded
            .iter()
            .filter(|(_, c)| c.as_ref() != Some(&merged))
            .map(|(n, _)| *n)
            .collect();
        if behind.is_empty() {
            return;
        }
        let fields = merged.to_fields();
        let (loc, state_key, fields) = (&loc, &state_key, &fields);
        let merge = |n: NodeId| {
            calls::crdt::merge(store.pool().node(n), loc, state_key, kind, fields, false)
        };
        let took = |r: &MergeReply| r.code != MergeCode::KindConflict;
        let results = repair_nodes(store.pool(), &behind, merge, took).await;
        crate::crdt_store::events::CrdtMerged {
            kind: kind.name(),
            source: "read_repair",
            nodes: results
                .iter()
                .filter(|r| r.as_ref().is_ok_and(|r| r.code == MergeCode::Changed))
                .count() as u64,
        }
        .emit();
    });
}
