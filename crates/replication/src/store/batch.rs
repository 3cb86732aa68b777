//! Natural batching per node: client reads and writes that meet at a node share one script
//! call.
//!
//! A node's cost per operation is mostly the cost of a script call (parse, EVALSHA lookup, one
//! round trip), not the work on the key. So each node has three lanes, one per script: reads of
//! strings, typed reads (a key of any type, or its type alone: EXISTS, TTL, TYPE) and writes
//! (`READ` and `READ_TYPED` are `no-writes` and still run under OOM, `APPLY` is refused up
//! front).
//! An operation that finds a free call slot on its lane is sent at once, alone: no timer, no
//! latency added when the service is idle. While every slot is busy, arrivals queue, and when a
//! call finishes, everything queued (up to `max_entries`) goes as one call on the slot it
//! freed. Under load the batch size follows the load by itself.
//!
//! Each caller gets its own answer through a oneshot. The scripts answer per entry, so an entry
//! the node refuses alone (WRONGTYPE) fails only its caller; a failure of the whole call
//! (timeout, lost connection, OOM or READONLY refusal) fails every entry of that call with the
//! same error a single call would have met. A caller waits at most the node timeout from the
//! moment it asked, so it never waits behind a stuck call longer than its own deadline. Reads
//! whose callers have given up by the time their call is sent are left out of it; writes are
//! always sent, so a write still lands on the nodes its caller did not wait for.
//!
//! The scripts apply entries in order, and a lane sends its queue in arrival order, so two
//! writes of one key in one call are applied in the order they arrived; the version rule decides
//! between them as it would between two calls.
//!
//! A node that is a Redis Cluster has a set of lanes per master (per the last probe's slot
//! table): a call waits for every slot it carries, so one lane per replica would hold the keys
//! of every shard behind a master that stopped answering, for up to the node timeout.

use quorumd_core::meta::Meta;
use quorumd_node::calls;
use quorumd_node::calls::store::{ApplyEntry, KeyLocation, NodeRead, Payload, ReadWanted};
use quorumd_node::calls::store::{NodeCondition, NodeTypedRead, TypedWanted, WriteOutcome};
use quorumd_node::events::{NodeBatchCounters, NodeBatchSent};
use quorumd_node::pool::{Node, NodeError, NodeId, NodePool, Traffic};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;
use tracing::Instrument;

/// Limits of every lane, from `quorum.batch_max_entries` and `quorum.batch_in_flight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most entries in one call.
    pub max_entries: usize,
    /// Calls in flight at once per lane.
    pub in_flight: usize,
}

/// The bookkeeping of one lane, without I/O: what waits, and how many calls are in flight.
#[derive(Debug)]
struct LaneState<T> {
    queued: VecDeque<T>,
    in_flight: usize,
    limits: BatchSettings,
}

impl<T> LaneState<T> {
    fn new(limits: BatchSettings) -> Self {
        LaneState {
            queued: VecDeque::new(),
            in_flight: 0,
            limits,
        }
    }

    /// An operation arrives. When a call slot is free, takes it and returns the batch to send
    /// now; otherwise the operation waits for a call to finish.
    fn arrive(&mut self, item: T) -> Option<Vec<T>> {
        self.queued.push_back(item);
        if self.in_flight >= self.limits.in_flight {
            return None;
        }
        self.in_flight += 1;
        Some(self.take())
    }

    /// A call finished. Returns the next batch, to send on the same slot, or `None` when
    /// nothing waits (the slot is then free).
    fn finished(&mut self) -> Option<Vec<T>> {
        if self.queued.is_empty() {
            self.in_flight -= 1;
            return None;
        }
        Some(self.take())
    }

    /// The oldest waiting operations, at most `max_entries`, in arrival order.
    fn take(&mut self) -> Vec<T> {
        let n = self.queued.len().min(self.limits.max_entries);
        self.queued.drain(..n).collect()
    }
}

/// A kind of node call that carries many callers' entries at once.
trait BatchedCall: Send + Sync + Sized + 'static {
    type Answer: Send + 'static;
    /// The `kind` label of the lane's metrics and spans.
    const KIND: &'static str;
    /// Whether an entry nobody waits for any more is left out of its call. True for reads
    /// (an answer nobody reads is wasted work); false for writes, which still bring the node
    /// up to date after the caller has its quorum or has given up.
    const SKIP_ABANDONED: bool;
    /// Runs one call for `entries` on `node`: per entry its answer, or an error for the whole
    /// call.
    fn call(
        node: &Node,
        entries: &[&Self],
    ) -> impl Future<Output = Result<Vec<Result<Self::Answer, NodeError>>, NodeError>> + Send;
}

/// A client read (or the version read of a two-phase write) of one key on one node.
pub(crate) struct ReadEntry {
    loc: Arc<KeyLocation>,
    wanted: ReadWanted,
}

impl BatchedCall for ReadEntry {
    type Answer = NodeRead;
    const KIND: &'static str = "read";
    const SKIP_ABANDONED: bool = true;

    async fn call(
        node: &Node,
        entries: &[&Self],
    ) -> Result<Vec<Result<NodeRead, NodeError>>, NodeError> {
        let reads: Vec<_> = entries.iter().map(|e| (&*e.loc, e.wanted)).collect();
        calls::store::read_each(node, &reads).await
    }
}

/// A typed read of one key on one node.
pub(crate) struct TypedReadEntry {
    loc: Arc<KeyLocation>,
    wanted: TypedWanted,
}

impl BatchedCall for TypedReadEntry {
    type Answer = NodeTypedRead;
    const KIND: &'static str = "typed_read";
    const SKIP_ABANDONED: bool = true;

    async fn call(
        node: &Node,
        entries: &[&Self],
    ) -> Result<Vec<Result<NodeTypedRead, NodeError>>, NodeError> {
        let reads: Vec<_> = entries.iter().map(|e| (&*e.loc, e.wanted)).collect();
        // The typed read answers for every type: no entry fails alone.
        let answers = calls::store::read_typed(node, &reads).await?;
        Ok(answers.into_iter().map(Ok).collect())
    }
}

/// A versioned write of one value or tombstone (a client write, a read write-back or a read
/// repair), shared by the lanes of every node it goes to.
pub(crate) struct WriteEntry {
    pub loc: Arc<KeyLocation>,
    pub meta: Meta,
    /// A string value, or with `restore` a `DUMP` payload (a list written whole).
    pub value: bytes::Bytes,
    pub restore: bool,
    pub cond: NodeCondition,
}

impl BatchedCall for Arc<WriteEntry> {
    type Answer = WriteOutcome;
    const KIND: &'static str = "write";
    const SKIP_ABANDONED: bool = false;

    async fn call(
        node: &Node,
        entries: &[&Self],
    ) -> Result<Vec<Result<WriteOutcome, NodeError>>, NodeError> {
        let applied: Vec<_> = entries
            .iter()
            .map(|e| ApplyEntry {
                loc: &e.loc,
                meta: &e.meta,
                payload: if e.restore {
                    Payload::Dump(&e.value)
                } else {
                    Payload::String(&e.value)
                },
                cond: e.cond.clone(),
            })
            .collect();
        // Every key of one store shares the digest hash (it depends on the prefix only).
        calls::store::apply_each(node, Traffic::Client, &applied).await
    }
}

/// An entry waiting for its call, and where its answer goes.
struct Waiting<C: BatchedCall> {
    entry: C,
    answer: oneshot::Sender<Result<C::Answer, NodeError>>,
}

/// One node's queue for one kind of call.
struct Lane<C: BatchedCall> {
    node: Arc<Node>,
    state: Mutex<LaneState<Waiting<C>>>,
    counters: NodeBatchCounters,
}

impl<C: BatchedCall> Lane<C> {
    fn new(node: Arc<Node>, limits: BatchSettings) -> Arc<Self> {
        let counters = NodeBatchCounters::register(&node.display, C::KIND);
        Arc::new(Lane {
            node,
            state: Mutex::new(LaneState::new(limits)),
            counters,
        })
    }

    fn state(&self) -> MutexGuard<'_, LaneState<Waiting<C>>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `entry` (sending it at once when a slot is free) and returns its answer, bounded
    /// by the node timeout from now.
    fn submit(
        self: &Arc<Self>,
        entry: C,
    ) -> impl Future<Output = Result<C::Answer, NodeError>> + Send + 'static + use<C> {
        let (answer, rx) = oneshot::channel();
        let now = self.state().arrive(Waiting { entry, answer });
        if let Some(batch) = now {
            tokio::spawn(self.clone().drive(batch));
        }
        self.node.clone().answer_within_timeout(async move {
            rx.await.unwrap_or_else(|_| {
                Err(NodeError::Connection(
                    "the call carrying this request was dropped".into(),
                ))
            })
        })
    }

    /// Sends `batch`, then whatever queued meanwhile, on one slot until nothing waits.
    async fn drive(self: Arc<Self>, mut batch: Vec<Waiting<C>>) {
        loop {
            self.send(batch).await;
            let next = self.state().finished();
            match next {
                Some(b) => batch = b,
                None => return,
            }
        }
    }

    async fn send(&self, mut batch: Vec<Waiting<C>>) {
        if C::SKIP_ABANDONED {
            batch.retain(|w| !w.answer.is_closed());
        }
        if batch.is_empty() {
            return;
        }
        NodeBatchSent {
            counters: &self.counters,
            entries: batch.len(),
        }
        .emit();
        let span = tracing::debug_span!(
            "node.batch",
            node = %self.node.display,
            kind = C::KIND,
            entries = batch.len()
        );
        let entries: Vec<&C> = batch.iter().map(|w| &w.entry).collect();
        let answers = C::call(&self.node, &entries).instrument(span).await;
        drop(entries);
        match answers {
            Ok(answers) => {
                for (w, a) in batch.into_iter().zip(answers) {
                    let _ = w.answer.send(a);
                }
            }
            Err(e) => {
                for w in batch {
                    let _ = w.answer.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One kind of call's lanes on one node: one for a server; on a Redis Cluster one per master.
struct ShardLanes<C: BatchedCall> {
    node: Arc<Node>,
    limits: BatchSettings,
    /// A server's lane; on a cluster, for keys whose slot no probe has placed yet.
    whole: Arc<Lane<C>>,
    /// A cluster's lanes by master address. A master that leaves keeps its idle lane: masters
    /// come and go rarely, and a lane holds nothing once its queue is drained.
    per_master: Mutex<HashMap<String, Arc<Lane<C>>>>,
}

impl<C: BatchedCall> ShardLanes<C> {
    fn new(node: &Arc<Node>, limits: BatchSettings) -> Self {
        ShardLanes {
            node: node.clone(),
            limits,
            whole: Lane::new(node.clone(), limits),
            per_master: Mutex::new(HashMap::new()),
        }
    }

    /// The lane of the shard serving `key`.
    fn lane(&self, key: &[u8]) -> Arc<Lane<C>> {
        let Some(master) = self.node.master_for(key) else {
            return self.whole.clone();
        };
        self.per_master
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(master)
            .or_insert_with(|| Lane::new(self.node.clone(), self.limits))
            .clone()
    }
}

/// The lanes of one node, one per script.
struct NodeLanes {
    reads: ShardLanes<ReadEntry>,
    typed_reads: ShardLanes<TypedReadEntry>,
    writes: ShardLanes<Arc<WriteEntry>>,
}

/// The lanes of every node of a pool; owned by the `VersionedStore`.
pub(crate) struct Coalescer {
    nodes: Vec<NodeLanes>,
}

impl Coalescer {
    pub fn new(pool: &NodePool, limits: BatchSettings) -> Coalescer {
        let nodes = pool
            .nodes()
            .iter()
            .map(|n| NodeLanes {
                reads: ShardLanes::new(n, limits),
                typed_reads: ShardLanes::new(n, limits),
                writes: ShardLanes::new(n, limits),
            })
            .collect();
        Coalescer { nodes }
    }

    /// Reads `loc` on `node`, batched with the other reads meeting there.
    pub fn read(
        &self,
        node: NodeId,
        loc: Arc<KeyLocation>,
        wanted: ReadWanted,
    ) -> impl Future<Output = Result<NodeRead, NodeError>> + Send + 'static + use<> {
        self.nodes[node]
            .reads
            .lane(&loc.key)
            .submit(ReadEntry { loc, wanted })
    }

    /// Reads `loc` with its type on `node`, batched with the other typed reads meeting there.
    pub fn read_typed(
        &self,
        node: NodeId,
        loc: Arc<KeyLocation>,
        wanted: TypedWanted,
    ) -> impl Future<Output = Result<NodeTypedRead, NodeError>> + Send + 'static + use<> {
        self.nodes[node]
            .typed_reads
            .lane(&loc.key)
            .submit(TypedReadEntry { loc, wanted })
    }

    /// Writes `entry` on `node`, batched with the other writes meeting there.
    pub fn write(
        &self,
        node: NodeId,
        entry: Arc<WriteEntry>,
    ) -> impl Future<Output = Result<WriteOutcome, NodeError>> + Send + 'static + use<> {
        self.nodes[node].writes.lane(&entry.loc.key).submit(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(max_entries: usize, in_flight: usize) -> LaneState<u32> {
        LaneState::new(BatchSettings {
            max_entries,
            in_flight,
        })
    }

    #[test]
    fn an_idle_lane_sends_at_once() {
        let mut l = lane(256, 1);
        assert_eq!(l.arrive(1), Some(vec![1]));
        assert_eq!(l.finished(), None);
        assert_eq!(l.arrive(2), Some(vec![2]), "the slot was freed");
        assert_eq!(l.finished(), None);
        assert_eq!(l.in_flight, 0);
    }

    #[test]
    fn arrivals_wait_while_every_slot_is_busy_and_go_together_in_order() {
        let mut l = lane(256, 2);
        assert_eq!(l.arrive(1), Some(vec![1]));
        assert_eq!(l.arrive(2), Some(vec![2]), "second slot");
        for i in 3..=6 {
            assert_eq!(l.arrive(i), None);
        }
        assert_eq!(
            l.finished(),
            Some(vec![3, 4, 5, 6]),
            "one call, arrival order"
        );
        assert_eq!(l.in_flight, 2, "the finished slot carries the next batch");
        assert_eq!(l.finished(), None);
        assert_eq!(l.finished(), None);
        assert_eq!(l.in_flight, 0);
    }

    #[test]
    fn a_batch_never_exceeds_max_entries() {
        let mut l = lane(3, 1);
        assert_eq!(l.arrive(0), Some(vec![0]));
        for i in 1..=7 {
            assert_eq!(l.arrive(i), None);
        }
        assert_eq!(l.finished(), Some(vec![1, 2, 3]));
        assert_eq!(l.finished(), Some(vec![4, 5, 6]));
        assert_eq!(l.finished(), Some(vec![7]));
        assert_eq!(l.finished(), None);
        assert_eq!(l.in_flight, 0);
    }
}
