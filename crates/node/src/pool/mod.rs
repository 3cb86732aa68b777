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
mod lock_gates;
mod masters;
mod probe;
mod recovery;
mod sentinel;
mod shards;
mod slots;
pub mod tls;

pub use conn::NodeConn;
pub use error::{NodeError, ServerError, ServerErrorKind, classify, tls_cause};
pub use health::{Health, HealthTracker};
pub use shards::{Episodes, LostSlots, RecoveringScope, ShardStatus, Shards};
pub use slots::SlotRequest;

pub use lock_gates::{LockGate, lock_gate_key};
use probe::{Probe, ProbeWorker};
pub use tls::{TlsConfig, TlsError};

use crate::events;
use crate::worker::{StopPhase, WorkFailed, Worker, Workers};
use quorumd_core::config::{NodeAddress, TimeoutConfig};
use redis::cluster::ClusterClient;
use redis::{AsyncConnectionConfig, RedisError, RedisResult, Value};
use sentinel::Sentinels;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
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
    /// The last request the node refused as a whole although it answers (out of memory, a
    /// read-only replica, busy, an ACL or auth refusal), with its age in seconds: such a node
    /// stays `up`, its probes succeed.
    pub last_refusal: Option<String>,
    pub last_refusal_age_s: Option<f64>,
    pub run_id: Option<String>,
    /// Whether the node holds the cluster sentinel key (absent after a data loss); `None` while
    /// the node is down or not yet probed.
    pub has_sentinel: Option<bool>,
    /// Seconds since the health state last changed.
    pub state_age_s: f64,
    /// A Redis Cluster replica's shards (its masters and their slots) as last probed; empty
    /// for a standalone server.
    pub shards: Vec<ShardStatus>,
    /// While recovering: the slots that wait for the sweep (all of them: `null`).
    pub recovering_slots: Option<Vec<(u16, u16)>>,
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
    /// The lock gates the probes found on the node (`lock_gates.rs`).
    gates_seen: Mutex<lock_gates::GatesSeen>,
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
            gates_seen: Mutex::default(),
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
            last_refusal: t.last_refusal().map(|(e, _)| e.to_owned()),
            last_refusal_age_s: t.last_refusal().map(|(_, age)| age.as_secs_f64()),
            run_id: self
                .run_id
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            // Not known while the node is down: the last probe's answer may be long stale.
            has_sentinel: (t.health() != Health::Down)
                .then(|| self.shared.sentinels().has(self.id))
                .flatten(),
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
                // The connection's own response timeout is the same limit.
                let err = classify(&e).within(limit.as_millis() as u64);
                events::NodeRequestFailed {
                    node: &self.display,
                    error: &err,
                }
                .emit();
                if matches!(err, NodeError::Connection(_) | NodeError::Timeout(_)) {
                    self.report_failure(&err, self.blamed(attempts.as_deref()));
                }
                if err
                    .server_kind()
                    .is_some_and(ServerErrorKind::refuses_the_node)
                {
                    self.tracker().refused(err.to_string());
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
        Ok(Err(e)) if e.is_timeout() => Err(format!("{what} timed out after {limit_ms} ms")),
        Ok(Err(e)) => Err(explain_error(&e)),
        Err(_) => Err(format!("{what} timed out after {limit_ms} ms")),
    }
}

/// A failed connection attempt or probe, said so that an operator knows what to fix. Redis and
/// rustls error texts never carry the URL or the password.
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
        // without the sentinel lost it is told by the others' records, whichever answered first
        // (a node they name is probed again, as they may have been read after its check).
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
            let probed = match probed {
                Ok((conn, probe)) => n.settle_first_probe(&conn, probe).await.map(|p| (conn, p)),
                Err(e) => Err(e),
            };
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

    /// Every node's id, in order: the targets of a fan-out to all nodes.
    pub fn ids(&self) -> std::ops::Range<NodeId> {
        0..self.nodes.len()
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

    #[tokio::test]
    async fn a_step_the_redis_crate_timed_out_names_its_limit() {
        let timed_out: RedisError = std::io::Error::from(std::io::ErrorKind::TimedOut).into();
        let said = bounded(
            async { Err::<(), _>(timed_out) },
            Duration::from_secs(5),
            "connect",
            1000,
        )
        .await;
        assert_eq!(said, Err("connect timed out after 1000 ms".to_owned()));
    }
}
