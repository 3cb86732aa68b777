//! The versioned key-value store over the quorum: reads and writes at a consistency level,
//! read repair, and compare-and-set on version.

mod ballot;
mod batch;
pub mod events;
mod hints;
pub mod inspect;
pub mod keyspace;
pub mod layout;
mod names;
pub(crate) mod repair;
mod rmw;
mod stats;
pub mod suspects;
mod typed;
mod watch;

pub use rmw::Change;
pub use typed::{Transfer, TypedChange, TypedFound, TypedValue, TypedWanted};
pub use watch::{WatchOutcome, WatchedState, watch_broken};

pub use batch::BatchSettings;
pub use hints::hint_key;

use crate::fanout::{Gathered, QuorumError, WriteBack, fan_out, fan_out_in_waves};
use batch::{Coalescer, WriteEntry};
use quorumd_core::content::{Content, StreamChecksum};
use quorumd_core::hlc::{Hlc, Version, wall_clock_ms};
use quorumd_core::layout::Layout;
use quorumd_core::meta::{EntryKind, Meta};
use quorumd_core::quorum::{Consistency, Decision, QuorumSizes, ReadFanout, majority, read_waves};
use quorumd_node::calls;
use quorumd_node::calls::store::{KeyLocation, NodeCondition, NodeRead, ReadWanted, WriteOutcome};
use quorumd_node::pool::{Health, Node, NodeError, NodeId, NodePool};
use repair::ReadAnswer;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Settings of the store, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Where keys, metadata and digests live on a node (prefix, placement, buckets).
    pub layout: Layout,
    pub quorum: QuorumSizes,
    pub request_timeout: Duration,
    /// How client reads and writes are batched per node.
    pub batch: BatchSettings,
    /// Most keys a node's hint set may hold on each other node (`sync.max_hints_per_node`).
    pub max_hints_per_node: u64,
    /// The checksum new stream entries record (`sync.stream_checksum`).
    pub stream_checksum: StreamChecksum,
    /// Which nodes a read asks, and when it asks the others too (`quorum.read_fanout`,
    /// `quorum.read_hedge_ms`).
    pub read_fanout: ReadFanout,
    pub read_hedge: Duration,
}

/// What a client asks a write to check first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// The key must be live with exactly this version (HTTP `If-Match: "v"`).
    IfMatch(Version),
    /// The key must be live (HTTP `If-Match: *`).
    IfExists,
    /// The key must not be live (HTTP `If-None-Match: *`).
    IfAbsent,
}

/// A live value as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub value: Vec<u8>,
    pub version: Version,
    pub expires_at_ms: Option<u64>,
}

/// The result of a write that reached its quorum.
#[derive(Debug, Clone)]
pub struct WriteReceipt {
    pub version: Version,
    pub expires_at_ms: Option<u64>,
    /// Nodes that hold the version (or a newer one) among those that answered in time (named
    /// by the caller that shows them: most callers only need the count, and a name per node
    /// was an allocation each per write).
    pub acknowledged_by: Vec<NodeId>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    NoQuorum(#[from] QuorumError),
    #[error("precondition failed: the current version is {}", current.map(|v| v.encode()).unwrap_or_else(|| "none (key absent)".into()))]
    PreconditionFailed { current: Option<Version> },
    #[error("{operation} did not finish within {ms} ms")]
    Timeout { operation: &'static str, ms: u64 },
    #[error("keys starting with {prefix:?} are reserved for quorumd's metadata")]
    ReservedKey { prefix: String },
    #[error(
        "the key holds a {holds} (a CRDT, whose state merges): key-value reads and writes do not apply to it"
    )]
    KindConflict { holds: quorumd_core::crdt::CrdtKind },
    /// A value quorumd computed has no `DUMP` payload (cannot happen for a non-empty list;
    /// an error rather than a panic all the same).
    #[error("the value could not be encoded for the nodes: {0}")]
    Encoding(#[from] quorumd_core::dump::DumpError),
    /// A write of a key a transaction watched found it changed (RESP `WATCH`).
    #[error("the watched key {key:?} changed while the transaction ran")]
    WatchedKeyChanged { key: String },
    /// Phase one or two of a read-modify-write met a higher ballot (another writer's, through
    /// another quorumd) or a newer version; the read-modify-write retries from phase one.
    /// `maybe_written`: the write (phase two) may have landed on some node.
    #[error("another read-modify-write of the key holds a newer ballot ({by})")]
    Preempted { by: Version, maybe_written: bool },
    /// A read-modify-write whose write may have landed on some nodes met another writer's,
    /// which may or may not have built on it: whether the command took effect is unknown, as
    /// after a timeout. Retrying it could apply it twice, so the client is told.
    #[error(
        "the write may or may not have taken effect: a read-modify-write of the key through another quorumd got ahead of it"
    )]
    OutcomeUnknown,
    /// A string command met a key of another type.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
}

/// The CRDT kind one of `metas` marks the key as, if any.
fn crdt_kind_among<'a>(
    metas: impl IntoIterator<Item = &'a Meta>,
) -> Option<quorumd_core::crdt::CrdtKind> {
    metas.into_iter().find_map(|m| m.kind.crdt())
}

/// The newest entry among several nodes' answers, with its value if any node had it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Newest {
    pub meta: Meta,
    pub value: Option<Vec<u8>>,
    /// False when the value is not the one its version wrote and no answer had that one.
    pub intact: bool,
}

/// Picks the newest entry. A value without metadata (written straight to a node) counts as
/// version zero, below every versioned write. Among equal versions, an answer carrying the
/// value is preferred.
pub(crate) fn newest<'a, I>(key: &[u8], reads: I) -> Option<Newest>
where
    I: IntoIterator<Item = &'a NodeRead> + Clone,
{
    let reads_again = reads.clone();
    let mut best: Option<Newest> = None;
    for r in reads {
        let meta = match (&r.meta, &r.value) {
            (Some(m), _) => m.clone(),
            (None, Some(v)) => Meta::for_string(key, Version::ZERO, Some(v), None),
            (None, None) => continue,
        };
        let better = match &best {
            None => true,
            Some(b) => {
                meta.version > b.meta.version
                    || (meta.version == b.meta.version && b.value.is_none() && r.value.is_some())
            }
        };
        if better {
            let value = if meta.kind == EntryKind::Value {
                r.value.clone()
            } else {
                None
            };
            best = Some(Newest {
                meta,
                value,
                intact: true,
            });
        }
    }
    // A value changed on a node under an unchanged version must not be served when an intact
    // copy of that version answered too.
    if let Some(b) = &mut best
        && let Some(v) = &b.value
        && !b.meta.content.matches_string(v)
    {
        let intact = reads_again.into_iter().find_map(|r| {
            let m = r.meta.as_ref()?;
            let v = r.value.as_ref()?;
            (m.version == b.meta.version && m.content.matches_string(v)).then(|| v.clone())
        });
        b.intact = intact.is_some();
        if let Some(v) = intact {
            b.value = Some(v);
        }
    }
    best
}

/// The nodes among `reads` whose value at `winner`'s version is not the one that version wrote
/// (changed outside quorumd). Only string values are checked, and only values other than the
/// one served, which `newest` checked already.
pub(crate) fn damaged_answers<'a>(
    winner: &Newest,
    reads: impl IntoIterator<Item = (NodeId, &'a NodeRead)>,
) -> Vec<NodeId> {
    reads
        .into_iter()
        .filter(|(_, r)| match (&r.meta, &r.value) {
            (Some(m), Some(v))
                if m.version == winner.meta.version && m.kind == EntryKind::Value =>
            {
                if winner.value.as_ref() == Some(v) {
                    !winner.intact
                } else {
                    !m.content.matches_string(v)
                }
            }
            _ => false,
        })
        .map(|(node, _)| node)
        .collect()
}

/// What a write stores: a string, or a `DUMP` payload (`restore`), with the content checksum
/// its metadata records (for a payload, the one the node computes from the restored value).
pub(crate) struct Body<'a> {
    pub bytes: &'a [u8],
    pub content: Content,
    pub restore: bool,
}

/// The versioned store. Cheap to share behind an `Arc`.
pub struct VersionedStore {
    pool: Arc<NodePool>,
    clock: Hlc,
    settings: StoreSettings,
    /// Every client read and write of a key goes to the nodes through these per-node queues.
    batches: Arc<Coalescer>,
    /// Where reads send the nodes whose value was changed outside quorumd.
    suspects: suspects::SuspectSink,
    /// Where the next read's first wave starts (`quorum::read_waves`).
    read_turn: AtomicUsize,
    /// The names of each bucket's reserved keys, made once.
    names: names::KeyNames,
}

impl VersionedStore {
    pub fn new(pool: Arc<NodePool>, clock: Hlc, settings: StoreSettings) -> Self {
        let batches = Arc::new(Coalescer::new(&pool, settings.batch));
        let names = names::KeyNames::new(&settings.layout);
        VersionedStore {
            pool,
            clock,
            settings,
            batches,
            suspects: suspects::SuspectSink::default(),
            read_turn: AtomicUsize::new(0),
            names,
        }
    }

    pub fn pool(&self) -> &Arc<NodePool> {
        &self.pool
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// Where `key` lives, or an error if it is in the reserved namespace.
    pub fn locate(&self, key: &[u8]) -> Result<KeyLocation, StoreError> {
        let prefix = &self.settings.layout.prefix;
        if key.starts_with(prefix.as_bytes()) {
            return Err(StoreError::ReservedKey {
                prefix: prefix.clone(),
            });
        }
        let layout = &self.settings.layout;
        let quorumd_core::digest::Placement { bucket, sub } = layout.place(key);
        let names = self.names.of(bucket);
        Ok(KeyLocation {
            key: key.to_vec(),
            meta_key: names.meta[sub as usize].clone(),
            digest_key: names.digest.clone(),
            digest_field: layout.digest_field(bucket),
            sub_digest_key: names.sub_digest.clone(),
            bucket,
            sub,
        })
    }

    /// A node that restarted may have lost data: its answers are read (and repaired) but do
    /// not count toward a read quorum until the sweep has brought it back in sync (a cluster
    /// replica's, for `key`, only when `key`'s shard is one that lost data).
    fn counts_for_reads(&self, node: NodeId, key: Option<&[u8]>) -> bool {
        self.pool.node(node).counts_for_reads(key)
    }

    /// Sends `read` to the nodes `quorum.read_fanout` names, and to the others when those do
    /// not decide, waiting for `required` answers from nodes that count for reads of `key`
    /// (`None`: of every key): the read quorum of the key-value store and of the CRDT store
    /// alike.
    pub(crate) async fn read_quorum<T, F, Fut>(
        &self,
        operation: &'static str,
        required: usize,
        key: Option<&[u8]>,
        read: F,
    ) -> Result<Gathered<T>, QuorumError>
    where
        T: Send + 'static,
        F: Fn(Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T, NodeError>> + Send + 'static,
    {
        let counts = |n: NodeId, _: &T| self.counts_for_reads(n, key);
        // A node that is up counts for reads of every key: only `recovering` ones do not.
        let healthy: Vec<bool> = self
            .pool
            .ids()
            .map(|n| self.pool.node(n).health() == Health::Up)
            .collect();
        let turn = self.read_turn.fetch_add(1, Ordering::Relaxed);
        let waves = read_waves(self.settings.read_fanout, &healthy, required, turn);
        let mut g = fan_out_in_waves(
            &self.pool,
            waves.first,
            waves.rest,
            self.settings.read_hedge,
            required,
            counts,
            read,
        )
        .await;
        if g.decision == Decision::Reached {
            return Ok(g);
        }
        let why = |_: &T| "recovering: restarted and not yet back in sync".to_string();
        Err(QuorumError::from_gathered(operation, &self.pool, &mut g, counts, why).await)
    }

    /// Reads `loc` from a read quorum through the per-node batches.
    async fn gather_reads(
        &self,
        operation: &'static str,
        required: usize,
        loc: &Arc<KeyLocation>,
        wanted: ReadWanted,
    ) -> Result<Gathered<NodeRead>, StoreError> {
        let read = |node: Arc<Node>| self.batches.read(node.id, loc.clone(), wanted);
        Ok(self
            .read_quorum(operation, required, Some(&loc.key), read)
            .await?)
    }

    /// Where keys that reads found changed outside quorumd are sent (see `sync::direct`).
    pub fn suspects(&self) -> &suspects::SuspectSink {
        &self.suspects
    }

    pub fn clock(&self) -> &Hlc {
        &self.clock
    }

    /// Bounds a whole request by `request_timeout`, for the key-value and the CRDT store.
    pub(crate) async fn within_deadline<T, E: From<StoreError>>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let limit = self.settings.request_timeout;
        tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
            Err(StoreError::Timeout {
                operation,
                ms: limit.as_millis() as u64,
            }
            .into())
        })
    }

    /// Reads `key`. `Ok(None)` when it is absent, deleted or expired.
    #[tracing::instrument(level = "debug", name = "store.get", skip_all, fields(level = %level))]
    pub async fn get(&self, key: &[u8], level: Consistency) -> Result<Option<Found>, StoreError> {
        let loc = Arc::new(self.locate(key)?);
        self.within_deadline("read", self.get_inner(loc, level))
            .await
    }

    async fn get_inner(
        &self,
        loc: Arc<KeyLocation>,
        level: Consistency,
    ) -> Result<Option<Found>, StoreError> {
        let required = self.settings.quorum.read_quorum(level);
        let gathered = self
            .gather_reads("read", required, &loc, ReadWanted::MetaAndValue)
            .await?;
        if let Some(holds) =
            crdt_kind_among(gathered.successes().filter_map(|(_, r)| r.meta.as_ref()))
        {
            return Err(StoreError::KindConflict { holds });
        }
        let Some(winner) = newest(&loc.key, gathered.successes().map(|(_, r)| r)) else {
            repair::spawn_read_repair(self.pool.clone(), self.batches.clone(), loc, gathered);
            return Ok(None);
        };
        if level == Consistency::Linearizable {
            self.write_back(&loc, &winner, &gathered).await?;
        }
        for node in damaged_answers(&winner, gathered.successes()) {
            self.suspects.report(suspects::Suspect {
                node,
                key: loc.key.clone(),
                path: suspects::Path::Read,
            });
        }
        let found = winner
            .value
            .clone()
            .filter(|_| winner.meta.is_live(wall_clock_ms()))
            .map(|value| Found {
                value,
                version: winner.meta.version,
                expires_at_ms: winner.meta.expires_at_ms,
            });
        repair::spawn_read_repair(self.pool.clone(), self.batches.clone(), loc, gathered);
        Ok(found)
    }

    /// ABD read phase two: make sure a majority holds the version about to be returned, so no
    /// later read can return an older one.
    async fn write_back(
        &self,
        loc: &Arc<KeyLocation>,
        winner: &Newest,
        g: &Gathered<NodeRead>,
    ) -> Result<(), StoreError> {
        let value_missing = winner.meta.kind == EntryKind::Value && winner.value.is_none();
        if winner.meta.version == Version::ZERO || value_missing {
            // Unversioned data is adopted by the sweep, not by reads; a value that vanished
            // under its metadata is read as absent and left to the sweep as well.
            return Ok(());
        }
        let value = winner.value.as_deref().unwrap_or_default();
        self.write_back_entry(loc, &winner.meta, (value, false), g)
            .await
    }

    /// Writes `meta` with its stored form to as many nodes as a majority still lacks, given
    /// which answers of the read `g` hold that version already: the write-back of string and
    /// typed reads.
    async fn write_back_entry<T: ReadAnswer>(
        &self,
        loc: &Arc<KeyLocation>,
        meta: &Meta,
        stored: (&[u8], bool),
        g: &Gathered<T>,
    ) -> Result<(), StoreError> {
        let plan = g.write_back_plan(self.pool.len(), |r| {
            r.meta().is_some_and(|m| m.version == meta.version)
        });
        let Some(WriteBack { targets, needed }) = plan else {
            return Ok(());
        };
        let mut outcome = self
            .write_entry(loc, meta, stored, NodeCondition::None, targets, needed)
            .await;
        if outcome.decision == Decision::Reached {
            Ok(())
        } else {
            Err(QuorumError::from_gathered(
                "read write-back",
                &self.pool,
                &mut outcome,
                |_, o: &WriteOutcome| o.holds_version(),
                describe_outcome,
            )
            .await
            .into())
        }
    }

    /// Fans a versioned write out to `targets`: `value` is a string, or a `DUMP` payload when
    /// the flag (`restore`) is set.
    async fn write_entry(
        &self,
        loc: &Arc<KeyLocation>,
        meta: &Meta,
        (value, restore): (&[u8], bool),
        cond: NodeCondition,
        targets: impl IntoIterator<Item = NodeId>,
        required: usize,
    ) -> Gathered<WriteOutcome> {
        let entry = Arc::new(WriteEntry {
            loc: loc.clone(),
            meta: meta.clone(),
            value: bytes::Bytes::copy_from_slice(value),
            restore,
            cond,
        });
        fan_out(
            &self.pool,
            targets,
            required,
            |_, o: &WriteOutcome| o.holds_version(),
            |node| self.batches.write(node.id, entry.clone()),
        )
        .await
    }

    /// Writes `value` under `key`, expiring after `ttl` if given.
    #[tracing::instrument(level = "debug", name = "store.put", skip_all, fields(level = %level, bytes = value.len()))]
    pub async fn put(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        level: Consistency,
        precondition: Precondition,
    ) -> Result<WriteReceipt, StoreError> {
        let expires_at_ms = ttl.map(|t| wall_clock_ms().saturating_add(t.as_millis() as u64));
        self.put_at(key, value, expires_at_ms, level, precondition)
            .await
    }

    /// Deletes `key` by writing a tombstone.
    #[tracing::instrument(level = "debug", name = "store.delete", skip_all, fields(level = %level))]
    pub async fn delete(
        &self,
        key: &[u8],
        level: Consistency,
        precondition: Precondition,
    ) -> Result<WriteReceipt, StoreError> {
        let loc = Arc::new(self.locate(key)?);
        self.within_deadline(
            "delete",
            self.write_inner(loc, EntryKind::Tombstone, &[], None, level, precondition),
        )
        .await
    }

    async fn write_inner(
        &self,
        loc: Arc<KeyLocation>,
        kind: EntryKind,
        value: &[u8],
        expires_at_ms: Option<u64>,
        level: Consistency,
        precondition: Precondition,
    ) -> Result<WriteReceipt, StoreError> {
        let body = Body {
            bytes: value,
            content: Content::string(value),
            restore: false,
        };
        self.write_body(loc, kind, body, expires_at_ms, level, precondition)
            .await
    }

    /// A versioned write of `body` (ignored for a tombstone) at `level`.
    async fn write_body(
        &self,
        loc: Arc<KeyLocation>,
        kind: EntryKind,
        body: Body<'_>,
        expires_at_ms: Option<u64>,
        level: Consistency,
        precondition: Precondition,
    ) -> Result<WriteReceipt, StoreError> {
        if !body.restore && watch::expected(&loc.key).is_some() {
            return self
                .write_watched(loc, kind, body.bytes, expires_at_ms, level, precondition)
                .await;
        }
        let cond = if level == Consistency::Linearizable || precondition != Precondition::None {
            self.read_versions(&loc, level, precondition).await?
        } else {
            NodeCondition::None
        };
        let stamp = (self.clock.tick(), cond);
        self.write_stamped(loc, kind, body, expires_at_ms, level, stamp)
            .await
    }

    /// A versioned write of `body` with the version and per-node condition it was given: the
    /// second half of `write_body`, and a read-modify-write's accept (`ballot.rs`).
    async fn write_stamped(
        &self,
        loc: Arc<KeyLocation>,
        kind: EntryKind,
        body: Body<'_>,
        expires_at_ms: Option<u64>,
        level: Consistency,
        (version, mut cond): (Version, NodeCondition),
    ) -> Result<WriteReceipt, StoreError> {
        let watched = watch::expected(&loc.key);
        if let Some(expected) = watched {
            cond = watch::narrow(&loc.key, cond, expected)?;
        }
        let (content, stored) = match kind {
            EntryKind::Value => (body.content, (body.bytes, body.restore)),
            _ => (Content::Absent, (&[][..], false)),
        };
        let meta = Meta::new(&loc.key, version, kind, expires_at_ms, content);
        let required = self.settings.quorum.write_quorum(level);
        let accept = matches!(cond, NodeCondition::Ballot(_));
        let mut g = self
            .write_entry(&loc, &meta, stored, cond, self.pool.ids(), required)
            .await;
        let outcome = if g.decision == Decision::Reached {
            let acknowledged_by = g
                .successes()
                .filter(|(_, o)| o.holds_version())
                .map(|(n, _)| n)
                .collect();
            Ok(WriteReceipt {
                version,
                expires_at_ms,
                acknowledged_by,
            })
        } else {
            let crdt = g.successes().find_map(|(_, o)| match o {
                WriteOutcome::KindConflict(m) => m.kind.crdt(),
                _ => None,
            });
            let rejected_by_condition = g.successes().filter_map(|(_, o)| match o {
                WriteOutcome::ConditionFailed(m) => Some(m.version),
                _ => None,
            });
            let preempted_by = g.successes().filter_map(|(_, o)| match o {
                WriteOutcome::Preempted(ballot) => Some(*ballot),
                _ => None,
            });
            match (crdt, rejected_by_condition.max(), preempted_by.max()) {
                (Some(holds), _, _) => {
                    self.retract_refused(&loc, &meta, g).await;
                    return Err(StoreError::KindConflict { holds });
                }
                // A read-modify-write's accept that another writer's got ahead of: whether it
                // landed anywhere decides whether it may simply be retried (`ballot.rs`).
                (None, Some(by), _) | (None, None, Some(by)) if accept => {
                    let late = g.collect_stragglers().await;
                    g.replies.extend(late);
                    let maybe_written = g.replies.iter().any(|r| match &r.result {
                        Ok(o) => o.holds_version(),
                        Err(e) => matches!(e, NodeError::Timeout(_) | NodeError::Connection(_)),
                    });
                    Err(StoreError::Preempted { by, maybe_written })
                }
                (None, Some(current), _) => Err(StoreError::PreconditionFailed {
                    current: Some(current),
                }),
                (None, None, _) => Err(QuorumError::from_gathered(
                    "write",
                    &self.pool,
                    &mut g,
                    |_, o: &WriteOutcome| o.holds_version(),
                    describe_outcome,
                )
                .await
                .into()),
            }
        };
        let outcome = match (outcome, watched) {
            (Ok(receipt), Some(_)) => {
                watch::wrote(&loc.key, receipt.version);
                Ok(receipt)
            }
            // The nodes refused the watched version: another writer got in since the check.
            (Err(StoreError::PreconditionFailed { .. }), Some(_)) => Err(watch::broken(&loc.key)),
            (outcome, _) => outcome,
        };
        // Also after a failed write: the nodes that took it should tell the others.
        hints::spawn_hint_recording(
            self.pool.clone(),
            self.settings.layout.prefix.clone(),
            self.settings.max_hints_per_node,
            loc,
            g,
        );
        outcome
    }

    /// Removes a write that nodes holding a CRDT refused from the nodes that took it. Those
    /// lacked the CRDT because its own write had not reached them yet; left there, the entry
    /// would refuse the CRDT when it arrives, and no sweep could tell which of the two models
    /// the key should hold. Waits for every node's answer (each bounded by the node timeout),
    /// so the refusal reaches the client once nothing of the write is left. A node that cannot
    /// be reached keeps the entry, and the sweep reports the key for resolution by hand.
    async fn retract_refused(&self, loc: &KeyLocation, meta: &Meta, mut g: Gathered<WriteOutcome>) {
        let late = g.collect_stragglers().await;
        let took = g
            .replies
            .iter()
            .chain(&late)
            .filter(|r| matches!(r.result, Ok(WriteOutcome::Applied)))
            .map(|r| r.node);
        let retracted = futures::future::join_all(took.map(|n| async move {
            let node = self.pool.node(n);
            let result = calls::store::purge(node, &[(loc, meta)]).await;
            (node, result)
        }))
        .await;
        for (node, result) in retracted {
            crate::store::events::RefusedWriteRetracted {
                node: &node.display,
                result: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            }
            .emit();
        }
    }

    /// First phase of a two-phase write: reads the newest version from a quorum, moves the clock
    /// past it (so the write that follows is newer), and checks the client's precondition.
    async fn read_versions(
        &self,
        loc: &Arc<KeyLocation>,
        level: Consistency,
        precondition: Precondition,
    ) -> Result<NodeCondition, StoreError> {
        let required = match level {
            Consistency::Linearizable => majority(self.pool.len()),
            other => self.settings.quorum.read_quorum(other),
        };
        let g = self
            .gather_reads("version read", required, loc, ReadWanted::MetaOnly)
            .await?;
        let newest = g
            .successes()
            .filter_map(|(_, r)| r.meta.as_ref())
            .max_by_key(|m| m.version)
            .cloned();
        if let Some(holds) = crdt_kind_among(g.successes().filter_map(|(_, r)| r.meta.as_ref())) {
            return Err(StoreError::KindConflict { holds });
        }
        if let Some(m) = &newest {
            self.clock.observe(m.version);
        }
        let live = newest.as_ref().filter(|m| m.is_live(wall_clock_ms()));
        let satisfied = match precondition {
            Precondition::None => true,
            Precondition::IfMatch(v) => live.is_some_and(|m| m.version == v),
            Precondition::IfExists => live.is_some(),
            Precondition::IfAbsent => live.is_none(),
        };
        if !satisfied {
            return Err(StoreError::PreconditionFailed {
                current: live.map(|m| m.version),
            });
        }
        Ok(match (precondition, newest) {
            (Precondition::None, _) => NodeCondition::None,
            (_, Some(m)) => NodeCondition::NotNewerThan(m.version),
            (_, None) => NodeCondition::Absent,
        })
    }
}

pub(crate) fn describe_outcome(o: &WriteOutcome) -> String {
    match o {
        WriteOutcome::Applied => "applied".into(),
        WriteOutcome::ValueRestored => "value restored".into(),
        WriteOutcome::Superseded(m) => format!("holds newer version {}", m.version),
        WriteOutcome::ConditionFailed(m) => {
            format!("precondition failed (holds version {})", m.version)
        }
        WriteOutcome::Preempted(ballot) => format!("promised a newer ballot {ballot}"),
        WriteOutcome::KindConflict(m) => match m.kind.crdt() {
            Some(k) => format!("holds a {k} (a CRDT)"),
            None => "holds another kind of entry".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ms: u64) -> Version {
        Version::first_in_ms(ms, 1)
    }

    fn read(meta: Option<Meta>, value: Option<&str>) -> NodeRead {
        NodeRead {
            meta,
            value: value.map(|s| s.as_bytes().to_vec()),
        }
    }

    #[test]
    fn newest_prefers_highest_version_and_tombstones_count() {
        let key = b"k";
        let reads = [
            read(
                Some(Meta::for_string(key, v(1), Some(b"old"), None)),
                Some("old"),
            ),
            read(Some(Meta::for_string(key, v(3), None, None)), None),
            read(
                Some(Meta::for_string(key, v(2), Some(b"mid"), None)),
                Some("mid"),
            ),
        ];
        let n = newest(key, &reads).unwrap();
        assert_eq!(n.meta.version, v(3));
        assert_eq!(n.meta.kind, EntryKind::Tombstone);
        assert_eq!(n.value, None);
    }

    #[test]
    fn unversioned_value_loses_to_any_versioned_write() {
        let key = b"k";
        let reads = [
            read(None, Some("direct")),
            read(
                Some(Meta::for_string(key, v(1), Some(b"q"), None)),
                Some("q"),
            ),
        ];
        assert_eq!(
            newest(key, &reads).unwrap().value.as_deref(),
            Some(&b"q"[..])
        );
        let only_direct = [read(None, Some("direct")), read(None, None)];
        let n = newest(key, &only_direct).unwrap();
        assert_eq!(n.meta.version, Version::ZERO);
        assert_eq!(n.value.as_deref(), Some(&b"direct"[..]));
        assert!(newest(key, &[read(None, None)]).is_none());
    }

    #[test]
    fn among_equal_versions_the_answer_with_a_value_wins() {
        let key = b"k";
        let m = Meta::for_string(key, v(5), Some(b"x"), None);
        let reads = [read(Some(m.clone()), None), read(Some(m), Some("x"))];
        assert_eq!(
            newest(key, &reads).unwrap().value.as_deref(),
            Some(&b"x"[..])
        );
    }

    #[test]
    fn a_value_changed_under_its_version_is_not_served_when_an_intact_copy_answered() {
        let key = b"k";
        let m = Meta::for_string(key, v(5), Some(b"abc"), None);
        let reads = [
            (0, read(Some(m.clone()), Some("tampered"))),
            (1, read(Some(m.clone()), Some("abc"))),
            (2, read(Some(m.clone()), Some("abc"))),
        ];
        let n = newest(key, reads.iter().map(|(_, r)| r)).unwrap();
        assert_eq!(n.value.as_deref(), Some(&b"abc"[..]));
        assert!(n.intact);
        assert_eq!(
            damaged_answers(&n, reads.iter().map(|(i, r)| (*i, r))),
            vec![0]
        );
        // Only the damaged copy answered: it is served (nothing better is known), and named.
        let alone = [(0, read(Some(m), Some("tampered")))];
        let n = newest(key, alone.iter().map(|(_, r)| r)).unwrap();
        assert!(!n.intact);
        assert_eq!(
            damaged_answers(&n, alone.iter().map(|(i, r)| (*i, r))),
            vec![0]
        );
    }
}
