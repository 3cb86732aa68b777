//! Pub/sub across quorumd instances, carried by the nodes' own pub/sub.
//!
//! A `PUBLISH` goes to every (standalone) node, so a message survives nodes being down; it
//! succeeds when one node took it. On the node it is a message on `{prefix}ps:{channel}`
//! whose payload starts with an id unique to this publish (this instance's writer id and a
//! counter). Every instance holds one subscription per node to `{prefix}ps:*` (a `Worker`
//! that subscribes again after a drop), so it receives up to N copies of each message; the
//! first copy of an id is delivered to the local subscribers and the others are dropped, by a
//! window of the last `DEDUP_WINDOW` ids. Local subscribers are the RESP connections of this
//! instance, each with a [`Listener`] on one broadcast channel.
//!
//! What this gives: a message published through any instance reaches each subscriber of every
//! instance once, as long as one node that took the `PUBLISH` had that instance's subscription
//! up. What it does not: Redis's ordering (the first copy of each message is delivered, and
//! copies come through different nodes, so two messages of one publisher can arrive in either
//! order when a node is slow), nor delivery of what a node received while the subscription
//! to it was down (Redis does not queue messages either).

pub mod events;

use crate::fanout::{QuorumError, fan_out};
use crate::sync::glob;
use bytes::Bytes;
use quorumd_node::calls::pubsub as calls;
use quorumd_node::pool::{Node, NodePool};
use quorumd_node::worker::{StopPhase, WorkFailed, Worker};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Ids remembered to drop the later copies of a message. A copy comes from each node, within
/// the nodes' latency of the first; 100,000 messages in between would take far longer.
pub const DEDUP_WINDOW: usize = 100_000;
/// Messages a local subscriber may fall behind by; past that its connection is closed, as
/// Redis closes a subscriber past its output buffer limit.
const LOCAL_QUEUE: usize = 4096;
/// Wait before subscribing again to a node after a failure or a drop.
const RETRY: Duration = Duration::from_millis(200);
/// Bytes of the id at the start of a node message: writer and counter, 16 hex digits each.
const ID_LEN: usize = 32;

/// A message's id: the publishing instance's writer id and its counter.
pub type MessageId = (u64, u64);

/// A message as local subscribers receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub channel: Bytes,
    pub payload: Bytes,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PubSubError {
    /// No node took the message.
    #[error(transparent)]
    NoNode(#[from] QuorumError),
    #[error("publish did not finish within {ms} ms")]
    Timeout { ms: u64 },
}

/// The node payload: the id, then the message.
pub fn encode((writer, seq): MessageId, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{writer:016x}{seq:016x}").into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The id and the message of a node payload; `None` for one quorumd did not write.
pub fn decode(payload: &[u8]) -> Option<(MessageId, &[u8])> {
    let head = std::str::from_utf8(payload.get(..ID_LEN)?).ok()?;
    let writer = u64::from_str_radix(&head[..16], 16).ok()?;
    let seq = u64::from_str_radix(&head[16..], 16).ok()?;
    Some(((writer, seq), &payload[ID_LEN..]))
}

/// The last ids seen, oldest first.
#[derive(Debug)]
pub struct Window {
    order: VecDeque<MessageId>,
    seen: HashSet<MessageId>,
    capacity: usize,
}

impl Window {
    pub fn new(capacity: usize) -> Window {
        Window {
            order: VecDeque::with_capacity(capacity.min(1024)),
            seen: HashSet::new(),
            capacity,
        }
    }

    /// Whether `id` was not among the last ids seen; remembers it.
    pub fn first_time(&mut self, id: MessageId) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

/// How many local connections subscribe to each channel and each pattern.
#[derive(Debug, Default)]
struct Registry {
    channels: HashMap<Bytes, usize>,
    patterns: HashMap<Bytes, usize>,
}

fn add(map: &mut HashMap<Bytes, usize>, name: &Bytes) {
    *map.entry(name.clone()).or_default() += 1;
}

fn remove(map: &mut HashMap<Bytes, usize>, name: &[u8]) {
    if let Some(n) = map.get_mut(name) {
        *n -= 1;
        if *n == 0 {
            map.remove(name);
        }
    }
}

/// This instance's pub/sub: publishing to the nodes, the node subscriptions, the local
/// subscribers.
pub struct PubSub {
    pool: Arc<NodePool>,
    /// `{prefix}ps:`: the node channels of messages.
    namespace: Vec<u8>,
    writer: u64,
    seq: AtomicU64,
    timeout: Duration,
    tx: broadcast::Sender<Arc<Message>>,
    window: Mutex<Window>,
    local: Mutex<Registry>,
    /// Node subscriptions established and not dropped.
    up: AtomicUsize,
    /// Copies received from each node (by `NodeId`), counted once handled.
    copies: Vec<AtomicU64>,
}

impl PubSub {
    pub fn new(pool: Arc<NodePool>, prefix: &str, writer: u64, timeout: Duration) -> Arc<PubSub> {
        let (tx, _) = broadcast::channel(LOCAL_QUEUE);
        Arc::new(PubSub {
            namespace: format!("{prefix}ps:").into_bytes(),
            writer,
            seq: AtomicU64::new(0),
            timeout,
            tx,
            window: Mutex::new(Window::new(DEDUP_WINDOW)),
            local: Mutex::new(Registry::default()),
            up: AtomicUsize::new(0),
            copies: (0..pool.len()).map(|_| AtomicU64::new(0)).collect(),
            pool,
        })
    }

    /// Starts one subscription worker per node; shutdown stops them with the connections.
    pub fn start(self: &Arc<Self>) {
        for node in self.pool.nodes() {
            self.pool.workers().spawn(
                StopPhase::Connections,
                NodeSubscription {
                    hub: self.clone(),
                    node: node.clone(),
                    attempts: 0,
                },
            );
        }
    }

    /// Copies of messages received from node `id` and handled (delivered or dropped): what
    /// has come through that node's subscription so far.
    pub fn copies_from(&self, id: usize) -> u64 {
        self.copies.get(id).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// How many node subscriptions are up now.
    pub fn subscriptions_up(&self) -> usize {
        self.up.load(Ordering::Relaxed)
    }

    /// Publishes `payload` on `channel` through every node; done when one node took it.
    /// Returns how many local subscriptions match the channel (the channel's subscribers and
    /// each matching pattern subscription): subscribers of other instances are not knowable
    /// here, as in Redis Cluster, whose `PUBLISH` counts the clients of its own node only.
    #[tracing::instrument(level = "debug", name = "pubsub.publish", skip_all, fields(bytes = payload.len()))]
    pub async fn publish(&self, channel: &[u8], payload: &[u8]) -> Result<usize, PubSubError> {
        let targets: Vec<_> = self.pool.nodes().iter().map(|n| n.id).collect();
        let id = (self.writer, self.seq.fetch_add(1, Ordering::Relaxed) + 1);
        let node_channel: Arc<[u8]> = [self.namespace.as_slice(), channel].concat().into();
        let node_payload: Arc<[u8]> = encode(id, payload).into();
        let op = |node: Arc<Node>| {
            let (c, p) = (node_channel.clone(), node_payload.clone());
            async move { calls::publish(&node, &c, &p).await }
        };
        let mut gathered = tokio::time::timeout(
            self.timeout,
            fan_out(&self.pool, targets, 1, |_, _: &i64| true, op),
        )
        .await
        .map_err(|_| {
            events::Published { ok: false }.emit();
            PubSubError::Timeout {
                ms: self.timeout.as_millis() as u64,
            }
        })?;
        if gathered.decision != quorumd_core::quorum::Decision::Reached {
            let e = QuorumError::from_gathered(
                "publish",
                &self.pool,
                &mut gathered,
                |_, _| true,
                |n| n.to_string(),
            )
            .await;
            events::Published { ok: false }.emit();
            return Err(e.into());
        }
        events::Published { ok: true }.emit();
        Ok(self.local_receivers(channel))
    }

    fn local_receivers(&self, channel: &[u8]) -> usize {
        let local = self.local.lock().unwrap();
        let direct = local.channels.get(channel).copied().unwrap_or(0);
        let by_pattern: usize = local
            .patterns
            .iter()
            .filter(|(p, _)| glob::matches(p, channel))
            .map(|(_, n)| n)
            .sum();
        direct + by_pattern
    }

    /// The channels local connections subscribe to, matching `pattern` if given
    /// (`PUBSUB CHANNELS`).
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let local = self.local.lock().unwrap();
        let mut out: Vec<Bytes> = local
            .channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob::matches(p, c)))
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// How many local connections subscribe to `channel` (`PUBSUB NUMSUB`).
    pub fn numsub(&self, channel: &[u8]) -> usize {
        let local = self.local.lock().unwrap();
        local.channels.get(channel).copied().unwrap_or(0)
    }

    /// How many distinct patterns local connections subscribe to (`PUBSUB NUMPAT`).
    pub fn numpat(&self) -> usize {
        self.local.lock().unwrap().patterns.len()
    }

    /// A local subscriber with no subscriptions yet. It receives the messages that arrive
    /// from now on.
    pub fn listener(self: &Arc<Self>) -> Listener {
        Listener {
            hub: self.clone(),
            rx: self.tx.subscribe(),
            channels: Vec::new(),
            patterns: Vec::new(),
        }
    }

    /// A copy of a message from `node`: delivered locally if its id is new.
    fn receive(&self, node: &Node, received: calls::Received) {
        self.handle(&node.display, received);
        // After the broadcast: a caller that saw the count has its message queued already.
        if let Some(c) = self.copies.get(node.id) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn handle(&self, node: &str, received: calls::Received) {
        let Some(channel) = received.channel.strip_prefix(self.namespace.as_slice()) else {
            return;
        };
        let Some((id, payload)) = decode(&received.payload) else {
            events::Received {
                node,
                outcome: "malformed",
            }
            .emit();
            return;
        };
        if !self.window.lock().unwrap().first_time(id) {
            events::Received {
                node,
                outcome: "duplicate",
            }
            .emit();
            return;
        }
        events::Received {
            node,
            outcome: "delivered",
        }
        .emit();
        // No local subscriber is not an error.
        let _ = self.tx.send(Arc::new(Message {
            channel: Bytes::copy_from_slice(channel),
            payload: Bytes::copy_from_slice(payload),
        }));
    }
}

/// What a local subscriber is sent for one message: Redis's `message` and `pmessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Message {
        channel: Bytes,
        payload: Bytes,
    },
    PMessage {
        pattern: Bytes,
        channel: Bytes,
        payload: Bytes,
    },
}

/// The local subscriber fell this many messages behind and lost them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the subscriber fell {0} messages behind")]
pub struct Lagged(pub u64);

/// One connection's subscriptions, in the order they were made. Dropping it unsubscribes.
pub struct Listener {
    hub: Arc<PubSub>,
    rx: broadcast::Receiver<Arc<Message>>,
    channels: Vec<Bytes>,
    patterns: Vec<Bytes>,
}

impl Listener {
    /// Subscribes to `channel`; false if it already was.
    pub fn subscribe(&mut self, channel: Bytes) -> bool {
        if self.channels.contains(&channel) {
            return false;
        }
        add(&mut self.hub.local.lock().unwrap().channels, &channel);
        self.channels.push(channel);
        true
    }

    /// Unsubscribes from `channel`; false if it was not subscribed.
    pub fn unsubscribe(&mut self, channel: &[u8]) -> bool {
        let Some(i) = self.channels.iter().position(|c| c == channel) else {
            return false;
        };
        self.channels.remove(i);
        remove(&mut self.hub.local.lock().unwrap().channels, channel);
        true
    }

    pub fn psubscribe(&mut self, pattern: Bytes) -> bool {
        if self.patterns.contains(&pattern) {
            return false;
        }
        add(&mut self.hub.local.lock().unwrap().patterns, &pattern);
        self.patterns.push(pattern);
        true
    }

    pub fn punsubscribe(&mut self, pattern: &[u8]) -> bool {
        let Some(i) = self.patterns.iter().position(|p| p == pattern) else {
            return false;
        };
        self.patterns.remove(i);
        remove(&mut self.hub.local.lock().unwrap().patterns, pattern);
        true
    }

    pub fn channels(&self) -> &[Bytes] {
        &self.channels
    }

    pub fn patterns(&self) -> &[Bytes] {
        &self.patterns
    }

    /// Channels and patterns subscribed to.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// The deliveries of the next message that matches a subscription: the channel's first,
    /// then one per matching pattern, as Redis sends them. Cancel-safe. Pends forever once
    /// the hub is gone.
    pub async fn next(&mut self) -> Result<Vec<Delivery>, Lagged> {
        loop {
            let message = match self.rx.recv().await {
                Ok(m) => m,
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            };
            let mut out = Vec::new();
            if self.channels.contains(&message.channel) {
                out.push(Delivery::Message {
                    channel: message.channel.clone(),
                    payload: message.payload.clone(),
                });
            }
            for p in &self.patterns {
                if glob::matches(p, &message.channel) {
                    out.push(Delivery::PMessage {
                        pattern: p.clone(),
                        channel: message.channel.clone(),
                        payload: message.payload.clone(),
                    });
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut local = self.hub.local.lock().unwrap();
        for c in &self.channels {
            remove(&mut local.channels, c);
        }
        for p in &self.patterns {
            remove(&mut local.patterns, p);
        }
    }
}

/// Keeps one node's subscription to the message namespace open.
struct NodeSubscription {
    hub: Arc<PubSub>,
    node: Arc<Node>,
    attempts: u32,
}

/// Counts a node subscription as up while it lives, however it ends.
struct Up<'a>(&'a AtomicUsize);

impl Drop for Up<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Worker for NodeSubscription {
    fn name(&self) -> String {
        quorumd_core::metric_labels::pubsub_worker(&self.node.identity)
    }

    async fn wait_for_work(&mut self) {
        if self.attempts > 0 {
            tokio::time::sleep(RETRY).await;
        }
        self.attempts += 1;
    }

    /// One subscription, for as long as it lasts.
    #[tracing::instrument(name = "pubsub.subscription", skip_all, fields(node = %self.node.display))]
    async fn work(&mut self) -> Result<(), WorkFailed> {
        use futures::StreamExt;
        let stream = calls::subscribe(&self.node, &self.hub.namespace)
            .await
            .map_err(|e| WorkFailed(format!("subscribing on {}: {e}", self.node.display)))?;
        let mut stream = Box::pin(stream);
        self.hub.up.fetch_add(1, Ordering::Relaxed);
        let _up = Up(&self.hub.up);
        self.attempts = 0;
        events::SubscriptionChanged {
            node: &self.node.display,
            up: true,
        }
        .emit();
        while let Some(received) = stream.next().await {
            self.hub.receive(&self.node, received);
        }
        events::SubscriptionChanged {
            node: &self.node.display,
            up: false,
        }
        .emit();
        Err(WorkFailed(format!(
            "{}: the pub/sub subscription dropped",
            self.node.display
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_foreign_payloads_are_refused() {
        let payload = encode((u64::MAX, 7), b"hello");
        assert_eq!(decode(&payload), Some(((u64::MAX, 7), &b"hello"[..])));
        assert_eq!(decode(&encode((1, 2), b"")), Some(((1, 2), &b""[..])));
        assert_eq!(decode(b"hello"), None);
        assert_eq!(decode(&[b'z'; 40]), None);
    }

    #[test]
    fn the_window_drops_repeats_and_forgets_the_oldest() {
        let mut w = Window::new(3);
        assert!(w.first_time((1, 1)));
        assert!(!w.first_time((1, 1)));
        assert!(w.first_time((1, 2)));
        assert!(w.first_time((2, 1)));
        assert!(w.first_time((1, 3)));
        // (1, 1) fell out of the window of 3.
        assert!(w.first_time((1, 1)));
        assert!(!w.first_time((1, 3)));
    }
}
