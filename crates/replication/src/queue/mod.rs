//! Locking queues over the node pool. Items are replicated on every node (acknowledged once a
//! majority holds them); a consumer claims an item under a majority lease taken with the lock
//! module (one lock per item), so one consumer holds it at a time. Every change to an item is
//! a merge of its record (`record.rs`), so a node that missed a change can only be behind,
//! never undo a removal. Delivery is at least once. See docs/QUEUE.md.

pub mod events;
mod metered;
pub mod record;

use crate::fanout::{Gathered, QuorumError, fan_out};
use crate::locks::{LockError, LockService, on_all_nodes, validate_name};
use crate::store::VersionedStore;
use quorumd_core::config::QueueConfig;
use quorumd_core::hlc::wall_clock_ms;
use quorumd_core::quorum::Decision;
use quorumd_core::quorum::majority;
use quorumd_node::calls;
use quorumd_node::calls::queue::{MergeArgs, QueueKeys};
use quorumd_node::pool::{Node, NodeError, NodeId, NodePool};
use record::{Depth, ItemState, Record};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest |priority| accepted: Redis sorted-set scores are doubles, exact far beyond this.
pub const MAX_PRIORITY: i64 = 1 << 40;
/// Longest delay accepted for an item: a year.
pub const MAX_DELAY_MS: u64 = 365 * 24 * 3600 * 1000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("{0}")]
    Invalid(String),
    #[error("the payload is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error(
        "lease {lease:?} does not hold item {id:?}: it expired, or the item was handed to someone else or removed"
    )]
    StaleLease { id: String, lease: String },
    #[error(transparent)]
    NoQuorum(#[from] QuorumError),
}

impl From<LockError> for QueueError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Invalid(m) => QueueError::Invalid(m),
            LockError::NoQuorum(q) => QueueError::NoQuorum(q),
            // Held / not holder: callers turn these into what they mean for the item.
            other => QueueError::Invalid(other.to_string()),
        }
    }
}

/// An item handed to a consumer.
#[derive(Debug, Clone, Serialize)]
pub struct Claimed {
    pub id: String,
    /// The payload as JSON text.
    pub payload: String,
    /// The lease: present it to ack, nack or extend.
    pub lease: String,
    pub deliveries: u32,
    /// How long, from when the claim was sent, the consumer holds the item.
    pub validity_ms: u64,
}

/// Items of a queue by state, as a majority of the nodes sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Depths {
    pub ready: u64,
    pub leased: u64,
    pub delayed: u64,
    pub dead: u64,
}

pub struct QueueService {
    store: Arc<VersionedStore>,
    locks: Arc<LockService>,
    cfg: QueueConfig,
    /// Queues whose depths have a gauge series (bounded: see `metered.rs`).
    gauged: metered::GaugedQueues,
}

impl QueueService {
    pub fn new(
        store: Arc<VersionedStore>,
        locks: Arc<LockService>,
        cfg: QueueConfig,
    ) -> Arc<QueueService> {
        Arc::new(QueueService {
            store,
            locks,
            cfg,
            gauged: metered::GaugedQueues::default(),
        })
    }

    fn pool(&self) -> &Arc<NodePool> {
        self.store.pool()
    }

    fn required(&self) -> usize {
        majority(self.pool().len())
    }

    fn keys(&self, queue: &str) -> Result<QueueKeys, QueueError> {
        validate_name(queue)?;
        let layout = &self.store.settings().layout;
        Ok(QueueKeys::new(
            &layout.prefix,
            &layout.group_tag(queue),
            queue,
        ))
    }

    fn item_lock(&self, queue: &str, id: &str) -> calls::locks::LockKeys {
        self.locks.keys("q", &format!("{queue}:{id}"), queue)
    }

    fn validate_id(id: &str) -> Result<(), QueueError> {
        if id.parse::<quorumd_core::hlc::Version>().is_ok() {
            Ok(())
        } else {
            Err(QueueError::Invalid(
                "the item id must be the 34 hex digits a put returned".into(),
            ))
        }
    }

    fn lease_ms(&self, lease_ms: u64) -> Result<u64, QueueError> {
        let max = self.cfg.max_lease_ms.min(self.locks.config().max_ttl_ms);
        if lease_ms == 0 || lease_ms > max {
            return Err(QueueError::Invalid(format!(
                "lease_ms must be between 1 and {max}, got {lease_ms}"
            )));
        }
        Ok(lease_ms)
    }

    /// A stamp above `after`'s, so a write under a lease always beats the previous one of the
    /// same lease, whichever instance made it.
    fn stamp_after(&self, after: &Record) -> String {
        if let Ok(v) = after.stamp.parse() {
            self.store.clock().observe(v);
        }
        self.store.clock().tick().encode()
    }

    /// Merges `record` (and the payload, if given) into the item on every node; succeeds as
    /// soon as a majority stored it. The other nodes' answers stay outstanding in the returned
    /// `Gathered` (driven to the end when it is dropped): a node that is frozen must not hold a
    /// claim past its lease (a merge only moves an item forward, so nothing waits for it).
    async fn write(
        &self,
        queue: &str,
        keys: &QueueKeys,
        id: &str,
        record: &Record,
        payload: &str,
        operation: &'static str,
    ) -> Result<Gathered<String>, QueueError> {
        let fence_key = self.item_lock(queue, id).fence;
        let encoded = record.encode();
        let now_ms = wall_clock_ms();
        let ttl = self.cfg.tombstone_ttl_ms;
        let counts = |_: NodeId, _: &String| true;
        let mut g = fan_out(
            self.pool(),
            self.pool().ids(),
            self.required(),
            counts,
            |node| {
                let (keys, fence_key, id, encoded, payload) = (
                    keys.clone(),
                    fence_key.clone(),
                    id.to_string(),
                    encoded.clone(),
                    payload.to_string(),
                );
                async move {
                    let args = MergeArgs {
                        id: &id,
                        record: &encoded,
                        payload: &payload,
                        now_ms,
                        tombstone_ttl_ms: ttl,
                    };
                    calls::queue::merge(&node, &keys, &fence_key, &args).await
                }
            },
        )
        .await;
        if g.decision == Decision::Reached {
            return Ok(g);
        }
        let why = |_: &String| String::new();
        Err(
            QuorumError::from_gathered(operation, self.pool(), &mut g, counts, why)
                .await
                .into(),
        )
    }

    /// Adds an item; returns its id once a majority holds it.
    #[tracing::instrument(level = "debug", name = "queue.put", skip_all, fields(queue = queue, priority, delay_ms))]
    async fn put_op(
        &self,
        queue: &str,
        payload: &str,
        priority: i64,
        delay_ms: u64,
    ) -> Result<String, QueueError> {
        let keys = self.keys(queue)?;
        if payload.len() > self.cfg.max_payload_bytes {
            return Err(QueueError::TooLarge {
                size: payload.len(),
                limit: self.cfg.max_payload_bytes,
            });
        }
        if priority.abs() > MAX_PRIORITY {
            return Err(QueueError::Invalid(format!(
                "priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"
            )));
        }
        if delay_ms > MAX_DELAY_MS {
            return Err(QueueError::Invalid(format!(
                "delay_ms must be at most {MAX_DELAY_MS}"
            )));
        }
        let id = self.store.clock().tick().encode();
        let record = Record {
            state: ItemState::Ready,
            fence: 0,
            stamp: id.clone(),
            deliveries: 0,
            not_before_ms: wall_clock_ms() + delay_ms,
            priority,
        };
        self.write(queue, &keys, &id, &record, payload, "queue put")
            .await?;
        Ok(id)
    }

    /// Runs a read of queue `keys` on every node; decided once a majority of nodes that count
    /// for the queue's locks answered (a frozen node costs a claim nothing). The answers that
    /// did not decide stay outstanding in the `Gathered`: merging can only move an item
    /// forward, so any answer, counted or not, may be used.
    async fn read_majority<T, F, Fut>(
        &self,
        operation: &'static str,
        keys: &QueueKeys,
        op: F,
    ) -> Result<Gathered<T>, QueueError>
    where
        T: Send + 'static,
        F: Fn(Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T, NodeError>> + Send + 'static,
    {
        // A queue's keys and its items' lease locks share the queue name's slot, so a cluster
        // replica that lost only other shards still counts for it, as it does for those locks.
        let slot_key = Some(keys.rec.as_bytes());
        let counts = |n: NodeId, _: &T| self.locks.counts_toward_majority(n, slot_key);
        let mut g = fan_out(self.pool(), self.pool().ids(), self.required(), counts, op).await;
        if g.decision == Decision::Reached {
            return Ok(g);
        }
        let why = |_: &T| "restarted: not counted yet".to_string();
        let e = QuorumError::from_gathered(operation, self.pool(), &mut g, counts, why).await;
        Err(e.into())
    }

    /// The merged view of one item from a majority of counted nodes: record and payload.
    async fn read_item(
        &self,
        keys: &QueueKeys,
        id: &str,
    ) -> Result<(Option<Record>, Option<String>), QueueError> {
        let answers = self
            .read_majority("queue read", keys, |node| {
                let (keys, id) = (keys.clone(), id.to_string());
                async move { calls::queue::read(&node, &keys, &id).await }
            })
            .await?;
        let mut merged: Option<Record> = None;
        let mut payload = None;
        for (_, (rec, pay)) in answers.into_successes() {
            if let Some(r) = rec.as_deref().and_then(Record::parse) {
                merged = Some(match merged {
                    Some(m) => m.merge(&r),
                    None => r,
                });
            }
            payload = payload.or(pay);
        }
        Ok((merged, payload))
    }

    /// Hands out the best claimable item under a lease of `lease_ms`, waiting up to `wait_ms`
    /// for one; `None` when there is none.
    #[tracing::instrument(level = "debug", name = "queue.claim", skip_all, fields(queue = queue, lease_ms, wait_ms))]
    async fn claim_op(
        &self,
        queue: &str,
        lease_ms: u64,
        wait_ms: u64,
    ) -> Result<Option<Claimed>, QueueError> {
        let keys = self.keys(queue)?;
        let lease_ms = self.lease_ms(lease_ms)?;
        let started = Instant::now();
        let deadline = started + Duration::from_millis(wait_ms);
        loop {
            if let Some(c) = self.claim_once(queue, &keys, lease_ms, started).await? {
                return Ok(Some(c));
            }
            let cfg = self.locks.config();
            let pause = Duration::from_millis(
                rand::random_range(cfg.retry_min_ms..=cfg.retry_max_ms.max(1)) * 2,
            );
            if Instant::now() + pause >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Claimable ids, best first, merged from the proposals of every node that answers within
    /// the lock module's per-node limit (a majority of counted nodes must): a node that missed
    /// a change proposes an item the others moved past, and the claim that meets it repairs it.
    async fn candidates(&self, keys: &QueueKeys) -> Result<Vec<String>, QueueError> {
        let now = wall_clock_ms();
        let want = self.cfg.claim_candidates;
        let limit = Duration::from_millis(self.locks.config().node_timeout_ms);
        let answers = self
            .read_majority("queue claim", keys, |node| {
                let keys = keys.clone();
                async move { calls::queue::candidates(&node, limit, &keys, now, want).await }
            })
            .await?
            .into_all_answers()
            .await;
        // Highest priority first, then oldest id (ids are time-ordered).
        let mut best: BTreeMap<(i64, String), ()> = BTreeMap::new();
        for (_, proposals) in answers {
            for (id, priority) in proposals {
                best.insert((-priority, id), ());
            }
        }
        Ok(best.into_keys().map(|(_, id)| id).collect())
    }

    async fn claim_once(
        &self,
        queue: &str,
        keys: &QueueKeys,
        lease_ms: u64,
        started: Instant,
    ) -> Result<Option<Claimed>, QueueError> {
        for id in self.candidates(keys).await? {
            let lock = self.item_lock(queue, &id);
            let grant = match self.locks.acquire_keys(&lock, &id, lease_ms, 0, "").await {
                Ok(g) => g,
                Err(LockError::Held { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let give_back = async || {
                let _ = self.locks.release_keys(&lock, &id, &grant.token).await;
            };
            let (record, payload) = match self.read_item(keys, &id).await {
                Ok(v) => v,
                Err(e) => {
                    give_back().await;
                    return Err(e);
                }
            };
            let now = wall_clock_ms();
            let (Some(record), Some(payload)) = (record, payload) else {
                give_back().await;
                continue;
            };
            if !record.claimable(now) {
                // A node proposed what the majority has moved past: bring it forward.
                let _ = self
                    .write(queue, keys, &id, &record, "", "queue repair")
                    .await;
                give_back().await;
                continue;
            }
            let deliveries = record.deliveries + 1;
            let stamp = self.stamp_after(&record);
            if deliveries > self.cfg.max_deliveries {
                let dead = Record {
                    state: ItemState::Dead,
                    fence: grant.fence,
                    stamp,
                    ..record
                };
                let written = self
                    .write(queue, keys, &id, &dead, &payload, "queue dead-letter")
                    .await;
                give_back().await;
                written?;
                metered::moved("dead_letter");
                continue;
            }
            let leased = Record {
                state: ItemState::Leased,
                fence: grant.fence,
                stamp,
                deliveries,
                not_before_ms: now + lease_ms,
                priority: record.priority,
            };
            if let Err(e) = self
                .write(queue, keys, &id, &leased, &payload, "queue claim")
                .await
            {
                give_back().await;
                return Err(e);
            }
            let validity_ms =
                crate::locks::validity_ms(self.locks.config(), lease_ms, started.elapsed());
            let Some(validity_ms) = validity_ms else {
                give_back().await;
                continue;
            };
            if deliveries > 1 {
                metered::moved("redelivery");
            }
            return Ok(Some(Claimed {
                id,
                payload,
                lease: grant.token,
                deliveries,
                validity_ms: validity_ms.min(grant.validity_ms),
            }));
        }
        Ok(None)
    }

    /// Checks that `lease` holds item `id`; returns the item's merged record and fence.
    async fn held(
        &self,
        queue: &str,
        keys: &QueueKeys,
        id: &str,
        lease: &str,
    ) -> Result<(Record, String), QueueError> {
        Self::validate_id(id)?;
        crate::locks::validate_token(lease)?;
        let stale = || QueueError::StaleLease {
            id: id.to_string(),
            lease: lease.to_string(),
        };
        match self
            .locks
            .holds(&self.item_lock(queue, id), id, lease)
            .await
        {
            Ok(_) => {}
            Err(LockError::NotHolder { .. }) => return Err(stale()),
            Err(e) => return Err(e.into()),
        }
        let (record, payload) = self.read_item(keys, id).await?;
        match record {
            Some(r) if r.state == ItemState::Leased => Ok((r, payload.unwrap_or_default())),
            _ => Err(stale()),
        }
    }

    /// Acknowledges item `id`: it is removed everywhere (a tombstone first; purged once every
    /// node holds it).
    #[tracing::instrument(level = "debug", name = "queue.ack", skip_all, fields(queue = queue, id = id))]
    async fn ack_op(&self, queue: &str, id: &str, lease: &str) -> Result<(), QueueError> {
        let keys = self.keys(queue)?;
        let (record, _) = self.held(queue, &keys, id, lease).await?;
        let tombstone = Record {
            state: ItemState::Acked,
            stamp: self.stamp_after(&record),
            ..record
        };
        let written = self
            .write(queue, &keys, id, &tombstone, "", "queue ack")
            .await?;
        let lock = self.item_lock(queue, id);
        let _ = self.locks.release_keys(&lock, id, lease).await;
        let stored = written.into_all_answers().await.len();
        if stored == self.pool().len() {
            // Every node holds the tombstone: nothing stale can bring the item back.
            on_all_nodes(self.pool(), |node| {
                let (keys, fence, id) = (keys.clone(), lock.fence.clone(), id.to_string());
                async move { calls::queue::purge(&node, &keys, &fence, &id).await }
            })
            .await;
        }
        Ok(())
    }

    /// Returns item `id` to the queue, claimable after `delay_ms`.
    #[tracing::instrument(level = "debug", name = "queue.nack", skip_all, fields(queue = queue, id = id, delay_ms))]
    async fn nack_op(
        &self,
        queue: &str,
        id: &str,
        lease: &str,
        delay_ms: u64,
    ) -> Result<(), QueueError> {
        let keys = self.keys(queue)?;
        if delay_ms > MAX_DELAY_MS {
            return Err(QueueError::Invalid(format!(
                "delay_ms must be at most {MAX_DELAY_MS}"
            )));
        }
        let (record, payload) = self.held(queue, &keys, id, lease).await?;
        let ready = Record {
            state: ItemState::Ready,
            stamp: self.stamp_after(&record),
            not_before_ms: wall_clock_ms() + delay_ms,
            ..record
        };
        self.write(queue, &keys, id, &ready, &payload, "queue nack")
            .await?;
        let _ = self
            .locks
            .release_keys(&self.item_lock(queue, id), id, lease)
            .await;
        Ok(())
    }

    /// Extends the lease on item `id` to `lease_ms` from now; returns the new validity.
    #[tracing::instrument(level = "debug", name = "queue.extend", skip_all, fields(queue = queue, id = id, lease_ms))]
    async fn extend_op(
        &self,
        queue: &str,
        id: &str,
        lease: &str,
        lease_ms: u64,
    ) -> Result<u64, QueueError> {
        let keys = self.keys(queue)?;
        let lease_ms = self.lease_ms(lease_ms)?;
        let started = Instant::now();
        let (record, payload) = self.held(queue, &keys, id, lease).await?;
        let grant = match self
            .locks
            .extend_keys(&self.item_lock(queue, id), id, lease, lease_ms)
            .await
        {
            Ok(g) => g,
            Err(LockError::NotHolder { .. }) => {
                return Err(QueueError::StaleLease {
                    id: id.to_string(),
                    lease: lease.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let leased = Record {
            stamp: self.stamp_after(&record),
            not_before_ms: wall_clock_ms() + lease_ms,
            ..record
        };
        self.write(queue, &keys, id, &leased, &payload, "queue extend")
            .await?;
        Ok(
            crate::locks::validity_ms(self.locks.config(), lease_ms, started.elapsed())
                .unwrap_or(0)
                .min(grant.validity_ms),
        )
    }

    /// Items by state, merged over a majority of counted nodes.
    #[tracing::instrument(level = "debug", name = "queue.depths", skip_all, fields(queue = queue))]
    async fn depths_op(&self, queue: &str) -> Result<Depths, QueueError> {
        let keys = self.keys(queue)?;
        let answers = self
            .read_majority("queue depths", &keys, |node| {
                let keys = keys.clone();
                async move { calls::queue::all_records(&node, &keys).await }
            })
            .await?;
        let mut merged: HashMap<String, Record> = HashMap::new();
        for (_, records) in answers.into_successes() {
            for (id, raw) in records {
                let Some(rec) = Record::parse(&raw) else {
                    continue;
                };
                let m = match merged.remove(&id) {
                    Some(m) => m.merge(&rec),
                    None => rec,
                };
                merged.insert(id, m);
            }
        }
        let now = wall_clock_ms();
        let mut d = Depths::default();
        for rec in merged.values() {
            match rec.depth(now) {
                Depth::Ready => d.ready += 1,
                Depth::Leased => d.leased += 1,
                Depth::Delayed => d.delayed += 1,
                Depth::Dead => d.dead += 1,
                Depth::Gone => {}
            }
        }
        Ok(d)
    }
}
