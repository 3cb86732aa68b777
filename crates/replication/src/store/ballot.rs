//! Read-modify-writes that stay exact across quorumd processes: each one is a round of
//! CASPaxos on its key (docs/ARCHITECTURE.md, "Read-modify-writes across processes").
//!
//! A compare-and-set on a quorum alone is not consensus: a write refused by most nodes may
//! have landed on one, and if its version is the highest it later wins there and spreads, so
//! a change acknowledged to another writer in between is lost. A ballot closes that gap. The
//! writer picks a version first (the ballot) and sends it with its read (`prepare`): each node
//! promises it, unless it promised a higher one, and answers the key as it stands. The write
//! that follows carries the ballot as its version, and a node refuses it once it promised a
//! higher ballot since. So two writers that read the same state cannot both write, and a
//! write that is refused can never carry a version above one acknowledged after it: the
//! later writer's prepare reached a node that then refused the earlier one's write.

use super::typed::{TypedChange, TypedFound, TypedNewest, newest_typed};
use super::{Precondition, StoreError, VersionedStore, WriteReceipt, crdt_kind_among};
use crate::fanout::{QuorumError, fan_out};
use quorumd_core::hlc::{Version, wall_clock_ms};
use quorumd_core::meta::EntryKind;
use quorumd_core::quorum::{Consistency, Decision};
use quorumd_node::calls;
use quorumd_node::calls::store::{KeyLocation, NodeCondition, Prepared};
use quorumd_node::pool::NodeId;
use std::sync::Arc;

/// What phase one found: the live value (if any), and the condition and version the write of
/// phase two carries.
pub(crate) struct PreparedRead {
    pub found: Option<TypedFound>,
    pub accept: Accept,
}

/// The version and per-node condition of a read-modify-write's write (phase two).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accept {
    pub ballot: Version,
    /// The newest version phase one read (`None`: no node had metadata for the key).
    pub read: Option<Version>,
}

impl Accept {
    pub fn condition(&self) -> NodeCondition {
        NodeCondition::Ballot(self.read)
    }
}

impl super::repair::ReadAnswer for Prepared {
    fn meta(&self) -> Option<&quorumd_core::meta::Meta> {
        match self {
            Prepared::Promised(r) => r.meta.as_ref(),
            Prepared::Refused(_) => None,
        }
    }
}

impl VersionedStore {
    /// How long a node keeps a promise: past the request deadline, after which its writer has
    /// given up; a promise that outlives a crashed writer only delays the next one's ballot
    /// check, never its write (a higher ballot replaces it).
    fn promise_ttl_ms(&self) -> u64 {
        2 * self.settings.request_timeout.as_millis() as u64
    }

    /// Phase one of a read-modify-write of `loc`'s key: a fresh ballot, promised by a read
    /// quorum of the nodes, with the key read whole from each. `Preempted` when too many
    /// nodes had promised another writer, or one holds a version at or above this ballot: the
    /// caller retries with a new ballot, which the clock has moved past what was seen. On an
    /// error the promises made are withdrawn; after success, the write or `release` does it.
    pub(crate) async fn prepare(
        &self,
        loc: &Arc<KeyLocation>,
        level: Consistency,
    ) -> Result<PreparedRead, StoreError> {
        let ballot = self.clock.tick();
        let prepared = self.prepare_ballot(loc, level, ballot).await;
        if prepared.is_err() {
            self.release(loc, ballot);
        }
        prepared
    }

    /// Withdraws the promises of `ballot` for `loc`'s key, in the background: no write of
    /// it follows (the command changed nothing, or the attempt ended early).
    pub(crate) fn release(&self, loc: &Arc<KeyLocation>, ballot: Version) {
        let (pool, loc) = (self.pool.clone(), loc.clone());
        self.pool.workers().spawn_task(async move {
            let nodes = pool.nodes().iter();
            let released = nodes.map(|node| calls::store::release_promise(node, &loc, ballot));
            // A node that misses it lets the promise expire.
            futures::future::join_all(released).await;
        });
    }

    async fn prepare_ballot(
        &self,
        loc: &Arc<KeyLocation>,
        level: Consistency,
        ballot: Version,
    ) -> Result<PreparedRead, StoreError> {
        let ttl = self.promise_ttl_ms();
        let required = self.settings.quorum.read_quorum(level);
        let counts = |n: NodeId, p: &Prepared| {
            self.counts_for_reads(n, Some(&loc.key)) && matches!(p, Prepared::Promised(_))
        };
        let mut g = fan_out(&self.pool, self.pool.ids(), required, counts, |node| {
            let loc = loc.clone();
            async move { calls::store::prepare(&node, &loc, ballot, ttl).await }
        })
        .await;
        let seen = g
            .successes()
            .filter_map(|(_, p)| match p {
                Prepared::Refused(higher) => Some(*higher),
                Prepared::Promised(r) => r.meta.as_ref().map(|m| m.version),
            })
            .max();
        if let Some(v) = seen {
            self.clock.observe(v);
        }
        let refused = g
            .successes()
            .filter_map(|(_, p)| match p {
                Prepared::Refused(other) => Some(*other),
                Prepared::Promised(_) => None,
            })
            .max();
        let preempted_by = match (seen.filter(|v| *v >= ballot), g.decision) {
            (Some(newer), _) => Some(newer),
            (None, Decision::Reached) => None,
            (None, _) => refused,
        };
        if let Some(by) = preempted_by {
            return Err(StoreError::Preempted {
                by,
                maybe_written: false,
            });
        }
        if g.decision != Decision::Reached {
            let why = |_: &Prepared| "recovering: restarted and not yet back in sync".to_string();
            return Err(QuorumError::from_gathered(
                "read-modify-write",
                &self.pool,
                &mut g,
                counts,
                why,
            )
            .await
            .into());
        }
        let reads = || {
            g.successes().filter_map(|(_, p)| match p {
                Prepared::Promised(r) => Some(r),
                Prepared::Refused(_) => None,
            })
        };
        if let Some(holds) = crdt_kind_among(reads().filter_map(|r| r.meta.as_ref())) {
            return Err(StoreError::KindConflict { holds });
        }
        let winner = newest_typed(&loc.key, reads());
        // What is returned without a write (the command changes nothing) must be on a
        // majority at this level, as a linearizable read's answer is.
        if let Some(w) = &winner
            && level == Consistency::Linearizable
        {
            self.write_back_typed(loc, w, &g).await?;
        }
        let read = reads()
            .filter_map(|r| r.meta.as_ref())
            .map(|m| m.version)
            .max();
        Ok(PreparedRead {
            found: winner.and_then(live_value),
            accept: Accept { ballot, read },
        })
    }
}

impl VersionedStore {
    /// A watched transaction's write of a string or a tombstone (SET, DEL... between MULTI and
    /// EXEC), made as a round of ballots rather than a compare-and-set, so that a write whose
    /// transaction failed through one process can never win later over one acknowledged
    /// through another. The watch check is the narrowing of its accept (`watch::narrow`): the
    /// version read in phase one must be the watched one.
    pub(super) async fn write_watched(
        &self,
        loc: Arc<KeyLocation>,
        kind: EntryKind,
        value: &[u8],
        expires_at_ms: Option<u64>,
        level: Consistency,
        precondition: Precondition,
    ) -> Result<WriteReceipt, StoreError> {
        let (held, receipt) = self
            .rmw_typed_in_turn(&loc, level, |found| {
                let live = found.map(|f| f.version);
                let holds = match precondition {
                    Precondition::None => true,
                    Precondition::IfMatch(v) => live == Some(v),
                    Precondition::IfExists => live.is_some(),
                    Precondition::IfAbsent => live.is_none(),
                };
                if !holds {
                    let refused = StoreError::PreconditionFailed { current: live };
                    return (TypedChange::Keep, Err(refused));
                }
                let change = match kind {
                    EntryKind::Value => TypedChange::PutString {
                        value: value.to_vec(),
                        expires_at_ms,
                    },
                    _ => TypedChange::Delete,
                };
                (change, Ok(()))
            })
            .await?;
        held?;
        // A decision to write that returned has written.
        receipt.ok_or(StoreError::OutcomeUnknown)
    }
}

/// The live value of a read's winner; `None` for a tombstone or an expired value.
pub(crate) fn live_value(w: TypedNewest) -> Option<TypedFound> {
    let value = w.value.filter(|_| w.meta.is_live(wall_clock_ms()))?;
    Some(TypedFound {
        value,
        version: w.meta.version,
        expires_at_ms: w.meta.expires_at_ms,
    })
}

/// Whether a read-modify-write may go back to phase one after this error: a ballot or write
/// refused by another writer's.
pub(crate) fn retry_worthy(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Preempted { .. } | StoreError::PreconditionFailed { .. }
    )
}

/// A read-modify-write's earlier writes that may have landed on some node: each one's ballot
/// and the answer of the decision it wrote. Several ballots can carry one decision, when a
/// write of it was finished under a new ballot and that one too was cut short.
pub(crate) struct Pending<R> {
    writes: Vec<(Version, usize)>,
    answers: Vec<R>,
}

impl<R> Default for Pending<R> {
    fn default() -> Self {
        Pending {
            writes: Vec::new(),
            answers: Vec::new(),
        }
    }
}

impl<R> Pending<R> {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Keeps a new decision's answer; its index.
    pub fn answer(&mut self, answer: R) -> usize {
        self.answers.push(answer);
        self.answers.len() - 1
    }

    /// The write under `ballot` of decision `answer` may have landed.
    pub fn wrote(&mut self, ballot: Version, answer: usize) {
        self.writes.push((ballot, answer));
    }

    /// The answer of the decision that was finally written.
    pub fn take(mut self, answer: usize) -> R {
        self.answers.swap_remove(answer)
    }

    /// What these writes mean for the attempt that read `read`. The newest version read is
    /// one of them: that write is the key's state now, and is written again under the new
    /// ballot to make it chosen, with its decision's answer (`Some`). Newer than one of them
    /// but not one: another writer got in, which may have built on it or not, so the outcome
    /// is unknown. Older than all: none of them can win any more once this attempt's write is
    /// chosen, so the command is decided afresh (`None`).
    pub fn settle(&self, read: &PreparedRead) -> Result<Option<(TypedChange, usize)>, StoreError> {
        let Some(newest) = read.accept.read else {
            return Ok(None);
        };
        if let Some((_, answer)) = self.writes.iter().find(|(ballot, _)| *ballot == newest) {
            return Ok(Some((rewrite(read)?, *answer)));
        }
        if self.writes.iter().any(|(ballot, _)| newest > *ballot) {
            return Err(StoreError::OutcomeUnknown);
        }
        Ok(None)
    }
}

/// The change that writes the state `read` found again, unchanged, under the new ballot.
pub(crate) fn rewrite(read: &PreparedRead) -> Result<TypedChange, StoreError> {
    match &read.found {
        None => Ok(TypedChange::Delete),
        Some(f) => TypedChange::put(&f.value, f.expires_at_ms).ok_or(StoreError::OutcomeUnknown),
    }
}
