//! The node pool: the only place that opens connections to Redis.
//!
//! One multiplexed connection per node, shared by every request. A probe worker per node
//! probes it (PING, and `INFO server` for its `run_id`), keeps its health state and latency,
//! and reconnects with exponential back-off when the connection is lost. Requests never wait
//! for a reconnect: a node without a connection fails at once, so a dead node costs a quorum
//! nothing.

mod conn;
mod error;
mod health;
mod masters;
mod sentinel;
mod shards;
pub mod tls;

pub use conn::NodeConn;
pub use error::{NodeError, ServerError, ServerErrorKind, classify, tls_cause};
pub use health::{Health, HealthTracker};
pub use shards::{Episodes, LostSlots, RecoveringScope, ShardStatus, Shards};
pub use tls::{TlsConfig, TlsError};

use crate::events;
use crate::worker::{StopPhase, WorkFailed, Worker, Workers};
use quorumd_core::config::{NodeAddress, TimeoutConfig};
use redis::cluster::ClusterClient;
use redis::{AsyncConnectionConfig, RedisError, RedisResult, Value};
use sentinel::Sentinels;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Index of a node in the configured list.
pub type NodeId = usize;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("node {node}: {message}")]
    InvalidNode { node: String, message: String },
}

/// A point-in-time view of one node, for the status API.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub address: String,
    pub health: Health,
    /// Smoothed round-trip latency in milliseconds; `None` before the first answer.
    pub latency_ms: Option<f64>,
    pub last_error: Option<String>,
    pub run_id: Option<String>,
    /// Whether the node holds the cluster sentinel key (absent after a data loss).
    pub has_sentinel: Option<bool>,
    /// Seconds since the health state last changed.
    pub state_age_s: f64,
    /// A Redis Cluster replica's shards (its masters and their slots) as last probed; empty
    /// for a standalone server.
    pub shards: Vec<ShardStatus>,
    /// While recovering: the slots that wait for the sweep (all of them: `null`).
    pub recovering_slots: Option<Vec<(u16, u16)>>,
}

/// The master a `MOVED` reply names (`host:port`).
fn moved_to(reply: &Value) -> Option<String> {
    match reply {
        Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::Moved) => {
            e.details()?.split_whitespace().nth(1).map(str::to_owned)
        }
        _ => None,
    }
}

/// Items grouped by slot: (slot, its items).
type SlotGroups<T> = Vec<(u16, Vec<T>)>;

/// One slot's request in [`Node::per_master`].
pub enum SlotRequest {
    /// A transaction (an atomic pipeline): its answer is `EXEC`'s, the replies of its commands.
    Transaction(redis::Pipeline),
    /// One `EVALSHA` of the script whose source is `code`: its answer is its reply. A
    /// master's pipeline loads each such script first, so that a master that never ran it (or
    /// lost its script cache) answers at once instead of `NOSCRIPT`, which would send every
    /// slot of the batch alone through the cluster client.
    Script {
        eval: redis::Cmd,
        code: &'static str,
    },
}

/// One Redis server.
pub struct Node {
    pub id: NodeId,
    /// Address with the password masked: safe to log and show.
    pub display: String,
    client: NodeClient,
    conn: RwLock<Option<NodeConn>>,
    /// Connections for [`Node::run_exclusive`], idle between uses.
    spare: Mutex<Vec<NodeConn>>,
    health: Mutex<HealthTracker>,
    run_id: Mutex<Option<String>>,
    /// `host:port/db`: names the node in hints stored on the other nodes.
    pub identity: String,
    /// Wall-clock ms when the node was marked recovering.
    recovering_since_ms: Mutex<Option<u64>>,
    /// How many losses have been marked (a recovery begun or widened): tells a marking after
    /// a given moment even within the same millisecond, which `recovering_since_ms` cannot.
    losses_marked: std::sync::atomic::AtomicU64,
    /// What a recovering node may have lost: all of it, or a cluster's slots of some shards.
    recovering_scope: Mutex<RecoveringScope>,
    /// Every loss since the lock gate last had it covered (see [`Node::counts_for_locks`]).
    episodes: Mutex<Episodes>,
    shared: Arc<PoolShared>,
    /// Wakes the monitor early when a request saw the connection fail.
    wake: Notify,
    /// The monitor's passes: (started, finished), for [`Node::probe_now`].
    probe_passes: tokio::sync::watch::Sender<(u64, u64)>,
    timeouts: TimeoutConfig,
    /// A cluster replica's shards: requests for a down master's slots fail at once.
    shards: Arc<Shards>,
    /// A cluster replica's direct connections to its masters, for the probe.
    masters: Option<masters::MasterLinks>,
    /// The channel the writing scripts announce their writes of user keys on (live detection
    /// tells quorumd's own writes from direct ones by it); unset: they do not announce.
    own_writes: OnceLock<String>,
}

impl Node {
    fn new(
        id: NodeId,
        address: &NodeAddress,
        timeouts: &TimeoutConfig,
        tls: &TlsConfig,
        shared: Arc<PoolShared>,
    ) -> Result<Node, PoolError> {
        let client = if address.is_cluster() {
            tls::cluster_client(tls, &address.cluster_seeds, timeouts).map(NodeClient::Cluster)
        } else {
            tls::client(tls, address.url.as_str()).map(NodeClient::Server)
        }
        .map_err(|e| PoolError::InvalidNode {
            node: address.display.clone(),
            message: quorumd_core::redact::mask_url(&e),
        })?;
        let masters = match address.cluster_seeds.first() {
            Some(seed) => Some(masters::MasterLinks::new(seed, tls, timeouts).map_err(|e| {
                PoolError::InvalidNode {
                    node: address.display.clone(),
                    message: quorumd_core::redact::mask_url(&e),
                }
            })?),
            None => None,
        };
        Ok(Node {
            id,
            display: address.display.clone(),
            client,
            conn: RwLock::new(None),
            spare: Mutex::new(Vec::new()),
            health: Mutex::new(HealthTracker::new()),
            run_id: Mutex::new(None),
            identity: address.identity.clone(),
            recovering_since_ms: Mutex::new(None),
            losses_marked: Default::default(),
            recovering_scope: Mutex::new(RecoveringScope::Whole),
            episodes: Mutex::default(),
            shared,
            wake: Notify::new(),
            probe_passes: tokio::sync::watch::Sender::new((0, 0)),
            timeouts: timeouts.clone(),
            shards: Arc::default(),
            masters,
            own_writes: OnceLock::new(),
        })
    }

    pub fn health(&self) -> Health {
        self.tracker().health()
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, HealthTracker> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status(&self) -> NodeStatus {
        let t = self.tracker();
        NodeStatus {
            id: self.id,
            address: self.display.clone(),
            health: t.health(),
            latency_ms: t.latency_ms(),
            last_error: t.last_error().map(str::to_owned),
            run_id: self
                .run_id
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            has_sentinel: self.shared.sentinels().has(self.id),
            state_age_s: t.since().elapsed().as_secs_f64(),
            shards: self.shards.snapshot(),
            recovering_slots: match &*self.recovering_scope() {
                RecoveringScope::Slots(s) if t.is_recovering() => Some(s.clone()),
                _ => None,
            },
        }
    }

    /// Makes the writing scripts announce their writes of user keys on `channel`, from now on
    /// (live detection subscribes to it).
    pub fn announce_own_writes(&self, channel: &str) {
        let _ = self.own_writes.set(channel.to_owned());
    }

    /// The channel a writing script whose keys are in `key`'s slot announces on, `""` for
    /// none (their last argument). On a cluster the channel carries the slot's tag: a
    /// `PUBLISH` there reaches every master over the cluster bus, out of order with the key
    /// events of the master receiving it, so a master's subscriber heeds only the
    /// announcements of slots that master owns, which come from its own scripts, in order.
    pub fn own_writes_channel(&self, key: &[u8]) -> std::borrow::Cow<'_, str> {
        match self.own_writes.get() {
            None => "".into(),
            Some(channel) if self.is_cluster() => format!(
                "{channel}{{{}}}",
                quorumd_core::layout::slot_tag(quorumd_core::layout::key_slot(key))
            )
            .into(),
            Some(channel) => channel.as_str().into(),
        }
    }

    /// Whether a request for `key` is sent now: not for a key of a cluster replica's shard
    /// that is down, or suspect until the next probe (always, for a server).
    pub fn serves(&self, key: &[u8]) -> bool {
        !self.is_cluster() || self.shards.down_for(slot_of(key)).is_none()
    }

    /// The master serving `key` on a cluster replica, per the last probe's slot table; `None`
    /// on a server, or before a probe has placed the key's slot.
    pub fn master_for(&self, key: &[u8]) -> Option<String> {
        if !self.is_cluster() {
            return None;
        }
        self.shards.master_of(slot_of(key))
    }

    /// Whether this replica is a Redis Cluster (its keys spread over masters by slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self.client, NodeClient::Cluster(_))
    }

    /// Runs `call` over `items`: on a server once for all of them, on a cluster once per hash
    /// slot (the slot of the key `key_of` names) for that slot's items, all at once, since a
    /// cluster refuses a script whose keys span slots. One answer per call, in no set order.
    pub async fn per_slot_groups<T, K, R, Fut>(
        &self,
        items: &[T],
        key_of: impl Fn(&T) -> &K,
        call: impl Fn(Vec<T>) -> Fut,
    ) -> Result<Vec<R>, NodeError>
    where
        T: Clone,
        K: AsRef<[u8]> + ?Sized,
        Fut: Future<Output = Result<R, NodeError>>,
    {
        if !self.is_cluster() {
            return Ok(vec![call(items.to_vec()).await?]);
        }
        let mut groups: std::collections::BTreeMap<u32, Vec<T>> = Default::default();
        for item in items {
            let slot = quorumd_core::layout::key_slot(key_of(item).as_ref());
            groups.entry(slot).or_default().push(item.clone());
        }
        futures::future::try_join_all(groups.into_values().map(call)).await
    }

    /// [`Node::per_slot`] for calls that answer a result per item: on a cluster, a slot's call
    /// that fails as a whole (its master down, a timeout) fails only that slot's items, each
    /// with the call's error, so the keys of the other slots still count on this replica. When
    /// every slot's call failed, so does the whole, as on a server.
    pub async fn per_slot_each<T, K, R, Fut>(
        &self,
        items: &[T],
        key_of: impl Fn(&T) -> &K,
        call: impl Fn(Vec<T>) -> Fut,
    ) -> Result<Vec<Result<R, NodeError>>, NodeError>
    where
        T: Clone,
        K: AsRef<[u8]> + ?Sized,
        Fut: Future<Output = Result<Vec<Result<R, NodeError>>, NodeError>>,
    {
        if !self.is_cluster() {
            return call(items.to_vec()).await;
        }
        let failed_groups = std::sync::atomic::AtomicUsize::new(0);
        let groups = std::sync::atomic::AtomicUsize::new(0);
        let first_error = Mutex::new(None);
        let answers = self
            .per_slot(items, key_of, |group: Vec<T>| {
                let n = group.len();
                groups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let answer = call(group);
                let (failed_groups, first_error) = (&failed_groups, &first_error);
                async move {
                    Ok(answer.await.unwrap_or_else(|e| {
                        failed_groups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert_with(|| e.clone());
                        (0..n).map(|_| Err(e.clone())).collect()
                    }))
                }
            })
            .await?;
        let first_error = first_error.into_inner().unwrap_or_else(|p| p.into_inner());
        match first_error {
            Some(e) if failed_groups.into_inner() == groups.into_inner() => Err(e),
            _ => Ok(answers),
        }
    }

    /// [`Node::per_slot_groups`] for calls that answer one result per item, in order: the
    /// answers come back in the order of `items`.
    pub async fn per_slot<T, K, R, Fut>(
        &self,
        items: &[T],
        key_of: impl Fn(&T) -> &K,
        call: impl Fn(Vec<T>) -> Fut,
    ) -> Result<Vec<R>, NodeError>
    where
        T: Clone,
        K: AsRef<[u8]> + ?Sized,
        Fut: Future<Output = Result<Vec<R>, NodeError>>,
    {
        if !self.is_cluster() {
            return call(items.to_vec()).await;
        }
        let indexed: Vec<(usize, T)> = items.iter().cloned().enumerate().collect();
        let answers = self
            .per_slot_groups(
                &indexed,
                |(_, item)| key_of(item),
                |group: Vec<(usize, T)>| {
                    let (at, group): (Vec<usize>, Vec<T>) = group.into_iter().unzip();
                    let answer = call(group);
                    async move {
                        let answers = answer.await?;
                        if answers.len() != at.len() {
                            return Err(NodeError::Protocol(format!(
                                "{} answers for {} items of one slot",
                                answers.len(),
                                at.len()
                            )));
                        }
                        Ok(at.into_iter().zip(answers).collect::<Vec<_>>())
                    }
                },
            )
            .await?;
        let mut placed: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
        for (i, answer) in answers.into_iter().flatten() {
            placed[i] = Some(answer);
        }
        Ok(placed.into_iter().flatten().collect())
    }

    /// [`Node::per_slot`] for calls that are one request per slot, built by `request` and read
    /// by `answer`: on a cluster, the requests of all the slots one master owns (per the shard
    /// table) go in one pipeline on that master's own connection, instead of one request each
    /// through the cluster client; a heal of a shard makes one per slot, 5,461 for a third of
    /// the slots. A slot a master answers `MOVED` for (moved since the table was read) goes
    /// once more to the master named, with the others moved there; a slot whose request fails
    /// otherwise (`ASK` during a migration, the master unreachable) is sent again alone by
    /// `alone`, as [`Node::per_slot`] sends it, through the cluster client. So `request` must
    /// be safe to send twice: a read, or a write that checks it is wanted (a script answering
    /// "not copied" the second time).
    pub async fn per_master<T, K, R, Fut>(
        &self,
        items: &[T],
        key_of: impl Fn(&T) -> &K,
        request: impl Fn(&[T]) -> SlotRequest,
        answer: impl Fn(&[T], Value) -> Result<Vec<R>, NodeError>,
        alone: impl Fn(Vec<T>) -> Fut,
    ) -> Result<Vec<R>, NodeError>
    where
        T: Clone,
        K: AsRef<[u8]> + ?Sized,
        Fut: Future<Output = Result<Vec<R>, NodeError>>,
    {
        let Some(links) = self.masters.as_ref().filter(|_| self.is_cluster()) else {
            return alone(items.to_vec()).await;
        };
        let mut slots: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let slot = quorumd_core::layout::key_slot(key_of(item).as_ref()) as u16;
            slots.entry(slot).or_default().push(i);
        }
        let group = |at: &[usize]| at.iter().map(|&i| items[i].clone()).collect::<Vec<T>>();
        // Slots of a master the table knows as up go to it together; the others alone (a
        // down master's are refused at once there).
        let table = self.shards.snapshot();
        let mut by_master: BTreeMap<&str, SlotGroups<T>> = BTreeMap::new();
        let mut lone: SlotGroups<T> = Vec::new();
        for (slot, at) in &slots {
            match table.iter().find(|s| s.up && !s.suspect && s.owns(*slot)) {
                Some(s) => by_master
                    .entry(s.master.as_str())
                    .or_default()
                    .push((*slot, group(at))),
                None => lone.push((*slot, group(at))),
            }
        }
        let (request, answer) = (&request, &answer);
        // One pipeline to one master: per slot its answers, or the slot again with where a
        // MOVED sent it.
        let send = |addr: String, groups: SlotGroups<T>| async move {
            let mut pipe = redis::pipe();
            // Where each slot's replies are: from `MULTI` to `EXEC`, or the command's.
            let mut spans = Vec::with_capacity(groups.len());
            let mut loaded: Vec<&'static str> = Vec::new();
            for (_, g) in &groups {
                let slot_request = request(g);
                if let SlotRequest::Script { code, .. } = &slot_request
                    && !loaded.contains(code)
                {
                    // Its reply, the script's SHA, lies outside every span.
                    pipe.cmd("SCRIPT").arg("LOAD").arg(*code);
                    loaded.push(code);
                }
                let first = pipe.len();
                match slot_request {
                    SlotRequest::Transaction(tx) => {
                        pipe.cmd("MULTI");
                        for cmd in tx.cmd_iter() {
                            pipe.add_command(cmd.clone());
                        }
                        pipe.cmd("EXEC");
                    }
                    SlotRequest::Script { eval, .. } => {
                        pipe.add_command(eval);
                    }
                }
                spans.push(first..pipe.len());
            }
            let mut replies = links.pipeline(&addr, &pipe).await.ok();
            let mut done = Vec::new();
            let mut again = Vec::new();
            for ((slot, g), span) in groups.into_iter().zip(spans) {
                let Some(replies) = replies.as_mut().filter(|r| r.len() >= span.end) else {
                    again.push((slot, g, None));
                    continue;
                };
                let moved = replies[span.clone()].iter().find_map(moved_to);
                // Moved out: a heal's replies hold its values.
                let last = std::mem::replace(&mut replies[span.end - 1], Value::Nil);
                match answer(&g, last) {
                    Ok(answers) if answers.len() == g.len() => done.push((slot, answers)),
                    _ => again.push((slot, g, moved)),
                }
            }
            (done, again)
        };
        let mut answered: BTreeMap<u16, Vec<R>> = BTreeMap::new();
        let mut round: Vec<(String, SlotGroups<T>)> = by_master
            .into_iter()
            .map(|(addr, groups)| (addr.to_owned(), groups))
            .collect();
        // The slots a master answered MOVED for go once more, together, to the master named
        // (the cluster client would not follow a MOVED inside a transaction: it sees only the
        // `EXEC` reply, `EXECABORT`); anything else goes alone.
        for redirected in [false, true] {
            let batches = futures::future::join_all(
                round.into_iter().map(|(addr, groups)| send(addr, groups)),
            )
            .await;
            let mut moved: BTreeMap<String, SlotGroups<T>> = BTreeMap::new();
            for (done, again) in batches {
                answered.extend(done);
                for (slot, g, to) in again {
                    match to {
                        Some(addr) if !redirected => moved.entry(addr).or_default().push((slot, g)),
                        _ => lone.push((slot, g)),
                    }
                }
            }
            round = moved.into_iter().collect();
        }
        let alone = &alone;
        let retried = futures::future::try_join_all(
            lone.into_iter()
                .map(|(slot, g)| async move { Ok::<_, NodeError>((slot, alone(g).await?)) }),
        )
        .await?;
        answered.extend(retried);
        let mut placed: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
        for (slot, answers) in answered {
            if answers.len() != slots[&slot].len() {
                return Err(NodeError::Protocol(format!(
                    "{} answers for {} items of one slot",
                    answers.len(),
                    slots[&slot].len()
                )));
            }
            for (&i, a) in slots[&slot].iter().zip(answers) {
                placed[i] = Some(a);
            }
        }
        placed
            .into_iter()
            .map(|a| a.ok_or_else(|| NodeError::Protocol("an item of no slot's answer".into())))
            .collect()
    }

    fn connection(&self) -> Option<NodeConn> {
        self.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_connection(&self, conn: Option<NodeConn>) {
        *self.conn.write().unwrap_or_else(|p| p.into_inner()) = conn;
        // The spares went to the same server: after a reconnect they may be dead.
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Runs `op` on this node's connection with the per-node timeout, and feeds the outcome
    /// into the node's health.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, NodeError>
    where
        F: FnOnce(NodeConn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run_as(Traffic::Client, op).await
    }

    /// `run` for a call of the given kind: only client requests (and probes) feed the
    /// node's latency, which is what the sweep's back-off reads.
    pub async fn run_as<T, F, Fut>(&self, traffic: Traffic, op: F) -> Result<T, NodeError>
    where
        F: FnOnce(NodeConn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.connection().ok_or_else(|| self.unavailable())?;
        self.run_on(traffic, conn, self.timeouts.node(), op).await
    }

    /// `run` bounded by `limit` when that is shorter than the node timeout, with one timer
    /// for both (a lock call's limit is a fraction of its TTL). A call that runs out of a
    /// shorter `limit` is not the node failing: it fails without marking the node.
    pub async fn run_within<T, F, Fut>(&self, limit: Duration, op: F) -> Result<T, NodeError>
    where
        F: FnOnce(NodeConn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.connection().ok_or_else(|| self.unavailable())?;
        self.run_on(Traffic::Client, conn, limit.min(self.timeouts.node()), op)
            .await
    }

    /// `run_as` for background work on a connection that no other task uses while `op` runs,
    /// for commands whose state lives on the connection (`WATCH` before a `MULTI`). Opened on
    /// demand while the node is connected, and kept for reuse after a call that succeeded
    /// (one that failed may have left state behind, so its connection is dropped).
    pub async fn run_exclusive<T, F, Fut>(&self, op: F) -> Result<T, NodeError>
    where
        F: FnOnce(NodeConn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        /// Spare connections kept per node: a heal runs a few calls at once.
        const KEPT: usize = 4;
        if self.connection().is_none() {
            return Err(self.unavailable());
        }
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match spare {
            Some(c) => c,
            None => self.connect().await.map_err(NodeError::Connection)?,
        };
        let result = self
            .run_on(Traffic::Background, conn.clone(), self.timeouts.node(), op)
            .await;
        if result.is_ok() {
            let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            if spare.len() < KEPT {
                spare.push(conn);
            }
        }
        result
    }

    fn unavailable(&self) -> NodeError {
        let reason = self
            .tracker()
            .last_error()
            .unwrap_or("connecting")
            .to_owned();
        NodeError::Unavailable(reason)
    }

    async fn run_on<T, F, Fut>(
        &self,
        traffic: Traffic,
        conn: NodeConn,
        limit: Duration,
        op: F,
    ) -> Result<T, NodeError>
    where
        F: FnOnce(NodeConn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let started = Instant::now();
        // On a cluster, which slots the call sent commands for and which it still waits on:
        // a failure is then blamed on their master's shard, not on the replica.
        let attempts = self.is_cluster().then(Arc::<conn::Attempts>::default);
        let outcome = match &attempts {
            Some(a) => tokio::time::timeout(limit, conn::track(a.clone(), op(conn))).await,
            None => tokio::time::timeout(limit, op(conn)).await,
        };
        match outcome {
            Ok(Ok(value)) => {
                if traffic == Traffic::Client {
                    let rtt = started.elapsed();
                    self.tracker().record_latency(rtt);
                    // A call that went to one master alone is that master's latency.
                    if let Some([master]) = attempts
                        .and_then(|a| a.touched())
                        .and_then(|slots| self.masters_of(&slots))
                        .as_deref()
                    {
                        self.shards.record_latency(master, rtt);
                    }
                }
                Ok(value)
            }
            Ok(Err(e)) => {
                let err = match classify(&e) {
                    // The connection's own response timeout is the same limit.
                    NodeError::Timeout(_) => NodeError::Timeout(limit.as_millis() as u64),
                    other => other,
                };
                events::NodeRequestFailed {
                    node: &self.display,
                    error: &err,
                }
                .emit();
                if matches!(err, NodeError::Connection(_) | NodeError::Timeout(_)) {
                    self.report_failure(&err, self.blamed(attempts.as_deref()));
                }
                Err(err)
            }
            Err(_) if limit < self.timeouts.node() => {
                Err(NodeError::Timeout(limit.as_millis() as u64))
            }
            Err(_) => Err(self.timed_out(self.blamed(attempts.as_deref()))),
        }
    }

    /// The masters (per the shard table) that own `slots`, each once; `None` when a slot has
    /// no known master.
    fn masters_of(&self, slots: &[u16]) -> Option<Vec<String>> {
        let mut masters = Vec::new();
        for &slot in slots {
            let m = self.shards.master_of(slot)?;
            if !masters.contains(&m) {
                masters.push(m);
            }
        }
        Some(masters)
    }

    /// Whom a failed call of a cluster replica is blamed on: the masters of the slots it
    /// still waited on, or `None` (the replica) when that is not known, or when a command of
    /// no key was among them.
    fn blamed(&self, attempts: Option<&conn::Attempts>) -> Option<Vec<String>> {
        attempts?
            .unanswered()
            .and_then(|slots| self.masters_of(&slots))
            .filter(|m| !m.is_empty())
    }

    /// Waits for the answer to a request on this node that another task sends (the batch it
    /// travels in), bounded by the node timeout from the moment this is called, so a caller
    /// queued behind a stuck call fails after `node_ms` like any request the node did not
    /// answer in time. The timer starts here, not at the first poll.
    pub fn answer_within_timeout<T, F>(
        self: Arc<Self>,
        answer: F,
    ) -> impl Future<Output = Result<T, NodeError>> + use<T, F>
    where
        F: Future<Output = Result<T, NodeError>>,
    {
        let bounded = tokio::time::timeout(self.timeouts.node(), answer);
        async move {
            bounded.await.unwrap_or_else(|_| {
                // On a cluster the call carrying the request knows which master it waits on
                // and blames that one when it times out; a caller queued behind it, for a key
                // of another master, must not make its own master (or the replica) suspect.
                if self.is_cluster() {
                    let err = NodeError::Timeout(self.timeouts.node_ms);
                    events::NodeRequestFailed {
                        node: &self.display,
                        error: &err,
                    }
                    .emit();
                    return Err(err);
                }
                Err(self.timed_out(None))
            })
        }
    }

    /// A request got no answer within the node timeout: counted, and the node (or on a
    /// cluster the `blamed` masters' shards) is suspect.
    fn timed_out(&self, blamed: Option<Vec<String>>) -> NodeError {
        let err = NodeError::Timeout(self.timeouts.node_ms);
        events::NodeRequestFailed {
            node: &self.display,
            error: &err,
        }
        .emit();
        self.report_failure(&err, blamed);
        err
    }

    /// A request saw the node fail: mark it suspect and let the monitor probe it now. On a
    /// cluster, a failure of requests for known masters (`blamed`) makes only their shards
    /// suspect: until the probe, their slots are refused and the replica's other slots are
    /// served. A failure of no one master's (a command of no key, the cluster client as a
    /// whole) makes the replica suspect, and no slot is served until the probe.
    fn report_failure(&self, err: &NodeError, blamed: Option<Vec<String>>) {
        if self.is_cluster() {
            if let Some(masters) = blamed {
                for master in &masters {
                    if self.shards.suspect(master) {
                        events::ShardSuspect {
                            node: &self.display,
                            master,
                            reason: &err.to_string(),
                        }
                        .emit();
                    }
                }
                self.wake.notify_one();
                return;
            }
            self.shards.invalidate();
        }
        let change = self.tracker().request_failed(err.to_string());
        self.announce(change, &err.to_string());
        self.wake.notify_one();
    }

    /// Tells of the health change a tracker update made, if it made one (the tracker's lock
    /// already released).
    fn announce(&self, change: Option<(Health, Health)>, reason: &str) {
        if let Some((from, to)) = change {
            events::NodeHealthChanged {
                id: self.id,
                live: &self.shared.live,
                node: &self.display,
                from,
                to,
                reason,
            }
            .emit();
        }
    }

    fn apply_probe(&self, outcome: Result<Duration, String>) {
        let change = match &outcome {
            Ok(rtt) => self.tracker().probe_succeeded(*rtt),
            Err(e) => self.tracker().probe_failed(e.clone()),
        };
        match &outcome {
            Ok(_) => self.announce(change, "probe answered"),
            Err(e) => self.announce(change, e),
        }
    }

    async fn connect(&self) -> Result<NodeConn, String> {
        let limit = self.timeouts.connect() + self.timeouts.node();
        match &self.client {
            NodeClient::Server(client) => {
                let cfg = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeouts.connect()))
                    .set_response_timeout(Some(self.timeouts.node()));
                let attempt = client.get_multiplexed_async_connection_with_config(&cfg);
                bounded(attempt, limit, "connect", self.timeouts.connect_ms)
                    .await
                    .map(NodeConn::Server)
            }
            // The cluster client reads the slot map from a seed, connects to the masters on
            // demand, and follows MOVED and ASK by itself.
            NodeClient::Cluster(client) => bounded(
                client.get_async_connection(),
                limit,
                "connect",
                self.timeouts.connect_ms,
            )
            .await
            .map(|c| NodeConn::Cluster(c, self.shards.clone())),
        }
    }

    /// The sentinels this node should hold, each as (mark, key): a server's one, or one per
    /// master of a cluster replica that answered the last probe, in that master's lowest slot.
    pub fn sentinel_keys(&self) -> Vec<(String, String)> {
        if self.is_cluster() {
            self.cluster_sentinels(&self.shards.snapshot())
        } else {
            vec![(
                sentinel::mark(&self.identity, None),
                self.shared.sentinel_key.clone(),
            )]
        }
    }

    /// One sentinel per master of `shards` that is up and owns slots.
    fn cluster_sentinels(&self, shards: &[ShardStatus]) -> Vec<(String, String)> {
        shards
            .iter()
            .filter(|s| s.up)
            .filter_map(|s| s.slots.iter().map(|&(a, _)| a).min())
            .map(|slot| {
                let tag = quorumd_core::layout::slot_tag(u32::from(slot));
                (
                    sentinel::mark(&self.identity, Some(slot)),
                    format!("{}{{{tag}}}", self.shared.sentinel_key),
                )
            })
            .collect()
    }

    /// Where this node's keyspace notifications come from: the server itself, or each master
    /// of a cluster replica that answered the last probe (a master's events are its own keys'
    /// only). Empty for a cluster not probed yet, or whose masters are all down.
    pub fn event_sources(&self) -> Vec<EventSource> {
        if !self.is_cluster() {
            return vec![EventSource::Server];
        }
        let mut sources: Vec<EventSource> = self
            .shards
            .snapshot()
            .into_iter()
            .filter(|s| s.up)
            .filter(|s| !s.slots.is_empty())
            .map(|s| {
                let mut slots = s.slots;
                slots.sort_unstable();
                EventSource::Master {
                    addr: s.master,
                    slots,
                }
            })
            .collect();
        sources.sort_by(|a, b| a.label().cmp(b.label()));
        sources
    }

    /// A pub/sub connection of its own to `source`, bounded by the connect timeout. It does not
    /// feed the node's health: the monitor's probes do.
    pub async fn subscriber(&self, source: &EventSource) -> Result<redis::aio::PubSub, NodeError> {
        match (source, &self.client, &self.masters) {
            (EventSource::Server, NodeClient::Server(client), _) => {
                let limit = self.timeouts.connect() + self.timeouts.node();
                bounded(
                    client.get_async_pubsub(),
                    limit,
                    "connect",
                    self.timeouts.connect_ms,
                )
                .await
                .map_err(NodeError::Connection)
            }
            (EventSource::Master { addr, .. }, NodeClient::Cluster(_), Some(links)) => {
                links.subscriber(addr).await
            }
            _ => Err(NodeError::Protocol(format!(
                "{} is not an event source of {}",
                source.label(),
                self.display
            ))),
        }
    }

    /// Sends `cmd` to `source` itself: on a cluster, to that master, not routed by slot
    /// (`CONFIG` is per server).
    pub async fn query_source<T: redis::FromRedisValue + Send + 'static>(
        &self,
        source: &EventSource,
        cmd: redis::Cmd,
    ) -> Result<T, NodeError> {
        match (source, &self.masters) {
            (EventSource::Master { addr, .. }, Some(links)) => links.query(addr, &cmd).await,
            _ => {
                self.run_as(Traffic::Background, |mut c| async move {
                    cmd.query_async(&mut c).await
                })
                .await
            }
        }
    }

    /// The database number the node's address selects.
    pub fn db(&self) -> i64 {
        match &self.client {
            NodeClient::Server(client) => client.get_connection_info().redis_settings().db(),
            NodeClient::Cluster(_) => 0,
        }
    }

    /// PING, the server's run id, whether the node holds its sentinel keys, and the marks its
    /// sentinel records name. A cluster replica answers when at least one of its masters
    /// does: the others' slots are marked down in its shard table.
    async fn probe(&self, conn: NodeConn) -> Result<Probe, String> {
        let started = Instant::now();
        let mut c = conn;
        let sentinel = self.shared.sentinel_key.clone();
        let records = self.shared.records_key.clone();
        let fut = async move {
            let (rtt, run_id, shards) = if self.is_cluster() {
                let (rtt, run_id, shards) = self.probe_shards(&mut c).await?;
                (rtt, run_id, Some(shards))
            } else {
                redis::cmd("PING").query_async::<()>(&mut c).await?;
                let rtt = started.elapsed();
                let info = c.on_every_master(redis::cmd("INFO").arg("server")).await?;
                (rtt, combined_run_id(info)?, None)
            };
            let mut c = c.past_shard_table();
            // The sentinels to look for: one per master that answered (a down master's word
            // is not known, and the last probe's stands), or the server's one. They are read
            // past the shard table, which is set from this probe only once it has been judged
            // (`note_probe`).
            let marks = match &shards {
                Some(shards) => self.cluster_sentinels(shards),
                None => vec![(sentinel::mark(&self.identity, None), sentinel.clone())],
            };
            let mut held = Vec::with_capacity(marks.len());
            for (mark, key) in marks {
                // EXISTS, not GET: a sentinel of another type (written by hand) is there all
                // the same, and must not fail the probe, which would take the node out of
                // service.
                let n: u64 = redis::cmd("EXISTS").arg(&key).query_async(&mut c).await?;
                held.push((mark, n > 0));
            }
            // The records are one key: while its master is down, the last probe's word stands.
            let records_slot = quorumd_core::layout::key_slot(records.as_bytes()) as u16;
            let records_shard_down = shards
                .as_ref()
                .is_some_and(|all| all.iter().any(|s| !s.up && s.owns(records_slot)));
            // Records of another type (written by hand) name nobody.
            let records = if records_shard_down {
                None
            } else {
                match redis::cmd("HKEYS")
                    .arg(&records)
                    .query_async::<Vec<Vec<u8>>>(&mut c)
                    .await
                {
                    Ok(names) => Some(
                        names
                            .into_iter()
                            .map(|n| String::from_utf8_lossy(&n).into_owned())
                            .collect(),
                    ),
                    Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => Some(Vec::new()),
                    Err(e) => return Err(e),
                }
            };
            Ok::<_, RedisError>(Probe {
                rtt,
                run_id,
                sentinel: Some(held),
                records,
                shards,
            })
        };
        // A cluster's probe has three rounds, each within the node timeout: the slot map,
        // every master (a dead one takes the whole timeout), then the sentinel keys.
        let rounds = if self.is_cluster() { 3 } else { 1 };
        let limit = self.timeouts.node() * rounds;
        bounded(
            fut,
            limit,
            "probe",
            self.timeouts.node_ms * u64::from(rounds),
        )
        .await
    }

    /// A cluster replica's probe: `INFO server` of every master, each on a connection of its
    /// own, and the shard table set from the answers. Fails when no master answers. The run
    /// id is the masters' combined one when all answered; with a master down it is the last
    /// one known, so that a shard being down is not taken for a restart (its failover to a
    /// replica, a new run id, is).
    async fn probe_shards(
        &self,
        c: &mut NodeConn,
    ) -> Result<(Duration, Option<String>, Vec<ShardStatus>), RedisError> {
        let links = self
            .masters
            .as_ref()
            .expect("a cluster replica has master links");
        let started = Instant::now();
        let map = c.slot_map(self.timeouts.node()).await?;
        let addrs: Vec<String> = map.iter().map(|(addr, _)| addr.clone()).collect();
        links.retain(&addrs);
        // Each master's round trip is its shard's latency too.
        let answers = futures::future::join_all(addrs.iter().map(|a| async move {
            let asked = Instant::now();
            let answer = links.info(a).await;
            if answer.is_ok() {
                self.shards.record_latency(a, asked.elapsed());
            }
            answer
        }))
        .await;
        let rtt = started.elapsed();
        let mut infos = Vec::new();
        let mut shards = Vec::new();
        for ((master, slots), answer) in map.into_iter().zip(answers) {
            let (last_error, run_id) = match answer {
                Ok(info) => {
                    let run_id = redis::FromRedisValue::from_redis_value(info.clone())
                        .ok()
                        .and_then(|text: String| parse_run_id(&text));
                    infos.push((master.clone(), info));
                    (None, run_id)
                }
                Err(e) => (Some(e), None),
            };
            shards.push(ShardStatus {
                master,
                slots: slots.iter().map(|r| (*r.start(), *r.end())).collect(),
                up: last_error.is_none(),
                last_error,
                run_id,
                suspect: false,
                latency_ms: None,
            });
        }
        let all_answered = infos.len() == shards.len();
        let first_error = shards.iter().find_map(|s| s.last_error.clone());
        if infos.is_empty() {
            return Err(RedisError::from((
                redis::ErrorKind::Io,
                "no master of the cluster answered",
                first_error.unwrap_or_default(),
            )));
        }
        let run_id = if all_answered {
            combined_run_id(infos)?
        } else {
            self.run_id
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        Ok((rtt, run_id, shards))
    }

    /// A node that restarted (new run id), or that lacks the sentinel it was given (wiped:
    /// restarted empty, FLUSHALL), may have lost acknowledged writes.
    fn note_probe(&self, probe: &Probe) {
        let restarted = {
            let mut current = self.run_id.lock().unwrap_or_else(|p| p.into_inner());
            let old = current.replace(probe.run_id.clone().unwrap_or_default());
            match old.filter(|o| !o.is_empty() && Some(o) != probe.run_id.as_ref()) {
                Some(old) => {
                    let new = probe.run_id.clone().unwrap_or_default();
                    events::NodeRestarted {
                        node: &self.display,
                        old_run_id: &old,
                        new_run_id: &new,
                    }
                    .emit();
                    true
                }
                None => false,
            }
        };
        let wiped = {
            let mut sentinels = self.shared.sentinels();
            if let Some(records) = &probe.records {
                sentinels.records(self.id, records);
            }
            match &probe.sentinel {
                Some(held) => sentinels.probed(self.id, held.clone()),
                None => Vec::new(),
            }
        };
        match &probe.shards {
            // A cluster's losses are per shard: only the slots of a master that restarted,
            // failed over or lost its sentinel wait for the sweep.
            Some(shards) => {
                let mut lost = self.shards.lost_since_last_probe(shards);
                for slot in wiped.iter().filter_map(|m| sentinel::mark_slot(m)) {
                    if let Some(s) = shards.iter().find(|s| s.owns(slot)) {
                        lost.push(LostSlots {
                            master: s.master.clone(),
                            slots: s.slots.clone(),
                            reason: "sentinel key missing: data lost",
                        });
                    }
                }
                for l in lost {
                    let reason = format!("{}: {}", l.master, l.reason);
                    self.mark_recovering(&reason, RecoveringScope::Slots(l.slots));
                }
            }
            None if !wiped.is_empty() => {
                self.mark_recovering("sentinel key missing: data lost", RecoveringScope::Whole)
            }
            None if restarted => {
                self.mark_recovering("server restarted (run_id changed)", RecoveringScope::Whole)
            }
            None => {}
        }
        // Only now may requests reach a shard again: a master that came back empty has made
        // the replica `recovering` above, before any read can count its answer.
        if let Some(shards) = &probe.shards {
            for change in self.shards.update(shards.clone()) {
                events::ShardChanged {
                    node: &self.display,
                    master: &change.master,
                    up: change.up,
                    reason: change.reason.as_deref().unwrap_or("answering"),
                }
                .emit();
                // A shard back in service missed the writes of its slots meanwhile, as a node
                // back from down did: its hints are replayed and an exchange runs now, not at
                // the next interval. (The replica itself never went down.)
                if change.up {
                    self.shared.attention.notify_one();
                }
            }
        }
    }

    fn mark_recovering(&self, reason: &str, scope: RecoveringScope) {
        let (grew, change) = {
            let mut t = self.tracker();
            let mut current = self.recovering_scope();
            let grew = if t.is_recovering() {
                current.widen(scope)
            } else {
                *current = scope;
                true
            };
            (grew, t.mark_recovering())
        };
        // The flag may flip while the node looks down (restarted while unreachable): the
        // timestamp must be fresh all the same, or writes since an earlier episode are missed.
        // A scope that grew is a new loss: an exchange that read its digests before it must
        // not take the node for caught up.
        if grew {
            let now = quorumd_core::hlc::wall_clock_ms();
            *self.recovering_since() = Some(now);
            self.losses_marked
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let lost = self.recovering_scope().clone();
            self.episodes().record(now, lost);
            self.shared.attention.notify_one();
        }
        self.announce(change, reason);
    }

    fn recovering_scope(&self) -> std::sync::MutexGuard<'_, RecoveringScope> {
        self.recovering_scope
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node's answer about `key` counts toward a read quorum: not while it may
    /// lack writes it acknowledged for it (recovering, for a cluster only in the slots of the
    /// shards that lost them). `None`: a read of no one key (a scan), which needs every slot.
    pub fn counts_for_reads(&self, key: Option<&[u8]>) -> bool {
        if self.health() != Health::Recovering {
            return true;
        }
        key.is_some_and(|k| !self.recovering_scope().contains(slot_of(k)))
    }

    fn episodes(&self) -> std::sync::MutexGuard<'_, Episodes> {
        self.episodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node may count toward the majority of the lock at `key` (`None`: any
    /// lock), given that the lock gate covered every loss that began by `covered_ms` (the
    /// longest lock TTL had passed and fences were caught up): true unless a later loss may
    /// have taken `key`'s slot. A standalone server's loss takes every key.
    pub fn counts_for_locks(&self, covered_ms: Option<u64>, key: Option<&[u8]>) -> bool {
        self.episodes()
            .untouched_since(covered_ms, key.map(slot_of))
    }

    /// The lock gate covered every loss that began by `covered_ms`.
    pub fn losses_covered(&self, covered_ms: u64) {
        self.episodes().forget_until(covered_ms);
    }

    /// When the node was marked recovering (wall-clock ms), if it is recovering.
    pub fn recovering_since_ms(&self) -> Option<u64> {
        (self.health() == Health::Recovering)
            .then(|| *self.recovering_since())
            .flatten()
    }

    /// When the node was last marked recovering (wall-clock ms), even if the sweep has since
    /// brought it back in sync: locks keep a restarted node out of their majorities for the
    /// longest lock TTL after this, however fast the sweep was.
    pub fn last_recovering_since_ms(&self) -> Option<u64> {
        *self.recovering_since()
    }

    /// How many losses have been marked so far: a count that changed between two readings
    /// says a loss was marked in between.
    pub fn losses_marked(&self) -> u64 {
        self.losses_marked.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn recovering_since(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.recovering_since_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Has the monitor probe this node now instead of at its next interval, and waits for
    /// that pass, so that a wipe since the last one is judged (the node marked recovering)
    /// by the time this returns. Not for a node that is down: its monitor is reconnecting.
    pub async fn probe_now(&self) {
        if self.health() == Health::Down {
            return;
        }
        let mut passes = self.probe_passes.subscribe();
        // The next pass to start; one under way may have read the node before the caller's
        // question arose.
        let wanted = passes.borrow().0 + 1;
        self.wake.notify_one();
        // A cluster's probe has three rounds, each within the node timeout.
        let limit = self.timeouts.node() * 3;
        let _ = tokio::time::timeout(limit, passes.wait_for(|&(_, done)| done >= wanted)).await;
    }

    /// The sweep brought a recovering node back in sync: it counts for reads again.
    pub fn mark_synced(&self) {
        let change = self.tracker().synced();
        self.announce(change, "back in sync");
    }

    /// Opens a connection and probes it before requests may use it: a server that restarted
    /// (new run_id) must be marked recovering before any read counts its answer.
    async fn connect_and_probe(&self) -> Result<(), String> {
        let (conn, probe) = self.connect_probed().await?;
        self.install(conn, &probe);
        Ok(())
    }

    /// A new connection and its first probe, not yet judged or handed to requests.
    async fn connect_probed(&self) -> Result<(NodeConn, Probe), String> {
        let conn = self.connect().await?;
        let probe = self.probe(conn.clone()).await?;
        Ok((conn, probe))
    }

    /// Judges a new connection's probe, then hands the connection to requests.
    fn install(&self, conn: NodeConn, probe: &Probe) {
        self.note_probe(probe);
        self.set_connection(Some(conn));
        self.apply_probe(Ok(probe.rtt));
    }
}

/// A node's monitor: probes it (PING, `INFO server`), keeps its health state and latency, and
/// reconnects with exponential back-off when the connection is lost. A failed probe or
/// reconnect is a failed pass.
struct ProbeWorker {
    node: Arc<Node>,
    backoff: Duration,
    /// Until the next pass, unless a request wakes the monitor early.
    next: Duration,
}

impl ProbeWorker {
    fn new(node: Arc<Node>) -> ProbeWorker {
        ProbeWorker {
            backoff: Duration::from_millis(node.timeouts.reconnect_min_ms),
            node,
            next: Duration::ZERO,
        }
    }
}

impl Worker for ProbeWorker {
    fn name(&self) -> String {
        format!("probe:{}", self.node.identity)
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            _ = tokio::time::sleep(self.next) => {}
            _ = self.node.wake.notified() => {}
        }
    }

    async fn work(&mut self) -> Result<(), WorkFailed> {
        self.node
            .probe_passes
            .send_modify(|(started, _)| *started += 1);
        let outcome = self.pass().await;
        self.node
            .probe_passes
            .send_modify(|(_, finished)| *finished += 1);
        outcome
    }
}

impl ProbeWorker {
    async fn pass(&mut self) -> Result<(), WorkFailed> {
        let node = &self.node;
        let max_backoff = Duration::from_millis(node.timeouts.reconnect_max_ms);
        self.next = node.timeouts.health_interval();
        match node.connection() {
            None => match node.connect_and_probe().await {
                Ok(()) => {
                    // Back from down: hints for it wait on the other nodes.
                    node.shared.attention.notify_one();
                    self.backoff = Duration::from_millis(node.timeouts.reconnect_min_ms);
                    Ok(())
                }
                Err(e) => {
                    let failed = WorkFailed(format!("reconnect to {}: {e}", node.display));
                    node.apply_probe(Err(e));
                    self.next = self.backoff.mul_f64(rand::random_range(0.5..1.0));
                    self.backoff = (self.backoff * 2).min(max_backoff);
                    Err(failed)
                }
            },
            Some(conn) => match node.probe(conn).await {
                Ok(probe) => {
                    let was_down = node.health() == Health::Down;
                    let moved = probe
                        .shards
                        .as_ref()
                        .is_some_and(|s| node.shards.masters_changed(s));
                    if moved {
                        // The cluster client learns a new slot map only from a MOVED, and
                        // until then keeps trying a master that is gone: a fresh connection
                        // reads the map now.
                        if let Ok(fresh) = node.connect().await {
                            node.set_connection(Some(fresh));
                        }
                    }
                    node.note_probe(&probe);
                    node.apply_probe(Ok(probe.rtt));
                    if was_down {
                        // Back from down: hints for it wait on the other nodes.
                        node.shared.attention.notify_one();
                    }
                    Ok(())
                }
                Err(e) => {
                    let failed = WorkFailed(format!("probe of {}: {e}", node.display));
                    node.apply_probe(Err(e));
                    if node.health() == Health::Down {
                        // Drop a connection that stopped answering: a fresh one tells a dead
                        // server from a slow one.
                        node.set_connection(None);
                        node.shards.clear();
                    }
                    Err(failed)
                }
            },
        }
    }
}

struct Probe {
    rtt: Duration,
    run_id: Option<String>,
    /// Each of the node's sentinel marks, and whether it holds that key (`None`: not known).
    sentinel: Option<Vec<(String, bool)>>,
    /// The marks its sentinel records name (`None`: not known, their shard is down).
    records: Option<Vec<String>>,
    /// A cluster replica's shards as this probe found them.
    shards: Option<Vec<ShardStatus>>,
}

/// State the nodes of one pool share.
struct PoolShared {
    sentinel_key: String,
    /// The hash on every node naming the nodes known to hold the sentinel.
    records_key: String,
    sentinels: Mutex<Sentinels>,
    /// Signalled when a node needs the sweep's attention (recovering, or back from down).
    attention: Arc<Notify>,
    /// What the dashboard and `/v1/events` show; every layer reaches it through the pool.
    live: crate::live::LiveFeed,
}

impl PoolShared {
    fn sentinels(&self) -> std::sync::MutexGuard<'_, Sentinels> {
        self.sentinels.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a cluster replica has no live detection.
/// Where a node's keyspace notifications come from ([`Node::event_sources`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSource {
    /// A standalone server.
    Server,
    /// One master of a cluster replica, and the slot ranges it owns (bounds included): its
    /// probe writes a key of the first, and it heeds the announcements of these only.
    Master {
        addr: String,
        slots: Vec<(u16, u16)>,
    },
}

impl EventSource {
    /// Whether this source's own scripts are the ones writing keys of `slot` (always, for a
    /// server).
    pub fn owns(&self, slot: u16) -> bool {
        match self {
            EventSource::Server => true,
            EventSource::Master { slots, .. } => {
                slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
            }
        }
    }

    /// The master's address, `""` for a server.
    pub fn label(&self) -> &str {
        match self {
            EventSource::Server => "",
            EventSource::Master { addr, .. } => addr,
        }
    }
}

/// What a replica connects through.
// One per node: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum NodeClient {
    Server(redis::Client),
    Cluster(ClusterClient),
}

/// The run id of a server, or of a cluster the run ids of its masters, sorted and joined: a
/// master that restarted or failed over to its replica (which may lack the last writes it
/// acknowledged) changes it, and so marks the replica recovering.
fn combined_run_id(answers: Vec<(String, redis::Value)>) -> Result<Option<String>, RedisError> {
    let mut ids = Vec::new();
    for (_, answer) in answers {
        let info: String = redis::FromRedisValue::from_redis_value(answer)?;
        ids.extend(parse_run_id(&info));
    }
    ids.sort();
    Ok((!ids.is_empty()).then(|| ids.join(",")))
}

fn parse_run_id(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|s| s.trim().to_string())
}

/// Name of the sentinel key under the reserved prefix.
pub fn sentinel_key(prefix: &str) -> String {
    format!("{prefix}sentinel")
}

/// Name of the hash, on every node, whose fields are the identities (`host:port/db`) of the
/// nodes that were given the sentinel: how a node that lacks the sentinel is told from one
/// that lost it.
pub fn sentinel_records_key(prefix: &str) -> String {
    format!("{prefix}sentinels")
}

/// A failed connection attempt or probe, said so that an operator knows what to fix. Redis and rustls
/// error texts never carry the URL or the password.
/// A connect or probe step bounded by `limit`: its answer, its error explained, or
/// "`what` timed out after `limit_ms` ms" (the configured figure the operator knows).
async fn bounded<T>(
    step: impl Future<Output = Result<T, RedisError>>,
    limit: Duration,
    what: &str,
    limit_ms: u64,
) -> Result<T, String> {
    match tokio::time::timeout(limit, step).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(explain_error(&e)),
        Err(_) => Err(format!("{what} timed out after {limit_ms} ms")),
    }
}

fn explain_error(e: &RedisError) -> String {
    let error = classify(e);
    if error.server_kind() == Some(&ServerErrorKind::Auth) {
        format!("authentication failed: check the user and password in the node URL ({error})")
    } else if tls_cause(e).is_some() {
        format!("TLS handshake failed: check tls.ca_file, tls.cert_file and tls.key_file ({error})")
    } else {
        error.to_string()
    }
}

/// What a call to a node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// A client request, or work a client waits for: its latency is the node's latency.
    Client,
    /// Sweep work in large batches. Its latency says how big the batch was, not how long a
    /// client waits; counting it would make the sweep back off from its own load even with no
    /// client traffic at all.
    Background,
}

/// All configured nodes, their monitors, and the registry of every background worker and
/// tracked task of the service (every layer reaches it through the pool).
pub struct NodePool {
    nodes: Vec<Arc<Node>>,
    shared: Arc<PoolShared>,
    workers: Workers,
}

impl NodePool {
    /// Creates the pool and starts a monitor per node. Nodes that are down now are retried in
    /// the background; the first connection attempts are awaited so the initial state is known.
    pub async fn start(
        addresses: &[NodeAddress],
        timeouts: &TimeoutConfig,
        key_prefix: &str,
    ) -> Result<Arc<NodePool>, PoolError> {
        Self::start_with(addresses, timeouts, key_prefix, &TlsConfig::default(), 0).await
    }

    /// [`NodePool::start`] with TLS settings for the `rediss://` nodes, and a live feed that
    /// tracks `buckets` buckets for the dashboard grid.
    pub async fn start_with(
        addresses: &[NodeAddress],
        timeouts: &TimeoutConfig,
        key_prefix: &str,
        tls: &TlsConfig,
        buckets: u32,
    ) -> Result<Arc<NodePool>, PoolError> {
        let shared = Arc::new(PoolShared {
            sentinel_key: sentinel_key(key_prefix),
            records_key: sentinel_records_key(key_prefix),
            sentinels: Mutex::new(Sentinels::new(
                addresses.iter().map(|a| a.identity.clone()).collect(),
            )),
            attention: Arc::new(Notify::new()),
            live: crate::live::LiveFeed::new(buckets),
        });
        let nodes: Vec<Arc<Node>> = addresses
            .iter()
            .enumerate()
            .map(|(id, a)| Node::new(id, a, timeouts, tls, shared.clone()).map(Arc::new))
            .collect::<Result<_, _>>()?;
        // Connect and probe once before returning, so the initial health is known. Every
        // node's sentinel records are taken in before any node is judged: whether a node
        // without the sentinel lost it is told by the others' records, whichever answered first.
        let first = futures::future::join_all(nodes.iter().map(|n| n.connect_probed())).await;
        for (n, probed) in nodes.iter().zip(&first) {
            if let Ok((
                _,
                Probe {
                    records: Some(records),
                    ..
                },
            )) = probed
            {
                shared.sentinels().records(n.id, records);
            }
        }
        for (n, probed) in nodes.iter().zip(first) {
            match probed {
                Ok((conn, probe)) => n.install(conn, &probe),
                Err(e) => n.apply_probe(Err(e)),
            }
        }
        let workers = Workers::new();
        for n in &nodes {
            workers.spawn(StopPhase::Connections, ProbeWorker::new(n.clone()));
        }
        let pool = Arc::new(NodePool {
            nodes,
            shared,
            workers,
        });
        Ok(pool)
    }

    pub fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> &Arc<Node> {
        &self.nodes[id]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Signalled when a node needs the sweep's attention: it turned recovering, or came back
    /// from down (hints wait for it).
    pub fn attention(&self) -> Arc<Notify> {
        self.shared.attention.clone()
    }

    /// The live feed of this service (health changes, sweep progress, bucket states, repairs).
    pub fn live(&self) -> &crate::live::LiveFeed {
        &self.shared.live
    }

    /// Records that the sweep wrote the sentinels of `marks` on `node` (all it should hold).
    pub fn sentinel_written(&self, node: NodeId, marks: &[String]) {
        self.shared.sentinels().written(node, marks);
    }

    /// The hash on every node naming the sentinel marks that were given their sentinel.
    pub fn sentinel_records_key(&self) -> &str {
        &self.shared.records_key
    }

    /// The marks known to hold their sentinel that `node`'s records do not name yet.
    pub fn unrecorded_sentinels(&self, node: NodeId) -> Vec<String> {
        self.shared.sentinels().unrecorded_on(node)
    }

    /// Records that the sweep added `marks` to `node`'s sentinel records.
    pub fn sentinels_recorded(&self, node: NodeId, marks: &[String]) {
        self.shared.sentinels().recorded_on(node, marks);
    }

    pub fn status(&self) -> Vec<NodeStatus> {
        self.nodes.iter().map(|n| n.status()).collect()
    }

    /// Nodes currently believed reachable (up or suspect).
    pub fn reachable(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n.health(), Health::Up | Health::Suspect))
            .count()
    }

    /// The background workers (node probes, sweeps) and tracked tasks of this service.
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// Stops every worker still running (the monitors last) and closes every connection.
    pub async fn shutdown(&self) {
        self.workers.abort(StopPhase::Background).await;
        // A probe in progress may wait up to node_ms on a stuck node: do not wait for it.
        self.workers.abort(StopPhase::Connections).await;
        for n in &self.nodes {
            n.set_connection(None);
        }
    }
}

/// A key's Redis Cluster hash slot (below 16,384).
fn slot_of(key: &[u8]) -> u16 {
    quorumd_core::layout::key_slot(key) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_is_read_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\ntcp_port:1\r\n";
        assert_eq!(parse_run_id(info).as_deref(), Some("abc123"));
        assert_eq!(parse_run_id("# Server\r\n"), None);
    }
}
