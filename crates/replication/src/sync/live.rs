//! Live detection of changes made on the nodes outside quorumd.
//!
//! One `notify:{node}` worker per node turns the node's keyspace notifications on (`CONFIG
//! SET notify-keyspace-events`, keeping the classes already on), subscribes to its key events
//! and checks with a probe key that events do arrive. quorumd's writing scripts announce their
//! writes of user keys on a channel of the same subscription (`begin`/`end`, once per call);
//! the events between the two are quorumd's own and dropped. Every other event on a user key
//! becomes a suspect; so do the nodes a read found holding a changed value. The
//! `direct:verify` worker gathers suspects for a moment, verifies them on their node
//! (`calls::store::verify`: an unannounced write of quorumd's still passes, since value and
//! entry change together), and hands what fails to `direct::handle`.
//!
//! Limits: an event published while the subscription is down is lost; the next full sweep's
//! scrub finds the change. A node that refuses `CONFIG` is said so once (log, `/v1/status`,
//! `quorumd_node_notifications_enabled`), and relies on the scrub unless its operator turned
//! the events on.

use super::Sweeper;
use super::direct::{self, Found};
use super::events::{LiveKeyEvents, NotificationsState};
use crate::store::suspects::{Path, Suspect};
use futures::StreamExt;
use quorumd_node::calls;
use quorumd_node::calls::notify::{Heard, OwnWrites};
use quorumd_node::calls::store::KeyLocation;
use quorumd_node::pool::{Node, NodeError, NodeId, Traffic};
use quorumd_node::worker::{StopPhase, WorkFailed, Worker};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Suspects waiting for the verifier at most; more are dropped (the scrub finds them).
const QUEUE: usize = 100_000;
/// How long the verifier gathers suspects before verifying them together.
const GATHER: Duration = Duration::from_millis(20);
/// How long a new subscription waits for its probe's event.
const PROBE_WAIT: Duration = Duration::from_secs(2);
/// Pause before subscribing again after the subscription failed or dropped.
const RETRY: Duration = Duration::from_secs(1);

/// One node's live detection, as `/v1/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotificationStatus {
    pub node: String,
    /// `on`, `off` (refused or not delivered: see `reason`), `connecting` or `disabled`
    /// (`sync.live_detection = false`).
    pub state: &'static str,
    pub reason: Option<String>,
}

/// The live detection's shared state.
pub struct LiveDetection {
    status: Mutex<Vec<NotificationStatus>>,
}

impl LiveDetection {
    pub fn new(nodes: &[String], enabled: bool) -> LiveDetection {
        let state = if enabled { "connecting" } else { "disabled" };
        LiveDetection {
            status: Mutex::new(
                nodes
                    .iter()
                    .map(|n| NotificationStatus {
                        node: n.clone(),
                        state,
                        reason: None,
                    })
                    .collect(),
            ),
        }
    }

    pub fn status(&self) -> Vec<NotificationStatus> {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, node: &Node, state: &'static str, reason: Option<String>) {
        let changed = {
            let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
            let s = &mut all[node.id];
            let changed = s.state != state || (state == "off" && s.reason != reason);
            s.state = state;
            s.reason = reason.clone();
            changed
        };
        NotificationsState {
            node: &node.display,
            enabled: state == "on",
            reason: reason.as_deref(),
            changed,
        }
        .emit();
    }
}

/// Starts the verifier, and the subscribers when `sync.live_detection` is on.
pub fn start(sweeper: &Arc<Sweeper>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    sweeper.store().suspects().connect(tx.clone());
    let workers = sweeper.pool().workers();
    workers.spawn(
        StopPhase::Background,
        Verifier {
            sweeper: sweeper.clone(),
            rx,
            first: None,
        },
    );
    if !sweeper.config().live_detection {
        return;
    }
    let own = crate::store::layout::own_writes_channel(&sweeper.store().settings().layout.prefix);
    for node in sweeper.pool().nodes() {
        if node.is_cluster() {
            let reason = quorumd_node::pool::CLUSTER_NOTIFICATIONS.to_string();
            sweeper.live_detection().set(node, "off", Some(reason));
            continue;
        }
        node.announce_own_writes(&own);
        workers.spawn(
            StopPhase::Connections,
            Subscriber {
                sweeper: sweeper.clone(),
                node: node.clone(),
                tx: tx.clone(),
                attempts: 0,
            },
        );
    }
}

/// Verifies suspects in batches and hands the changes found to `direct::handle`.
struct Verifier {
    sweeper: Arc<Sweeper>,
    rx: mpsc::Receiver<Suspect>,
    first: Option<Suspect>,
}

impl Worker for Verifier {
    fn name(&self) -> String {
        "direct:verify".into()
    }

    async fn wait_for_work(&mut self) {
        match self.rx.recv().await {
            Some(s) => self.first = Some(s),
            // Every sender is gone: nothing will come again.
            None => std::future::pending().await,
        }
    }

    async fn work(&mut self) -> Result<(), WorkFailed> {
        let Some(first) = self.first.take() else {
            return Ok(());
        };
        tokio::time::sleep(GATHER).await;
        let mut batch: BTreeMap<(NodeId, Path), BTreeSet<Vec<u8>>> = BTreeMap::new();
        batch
            .entry((first.node, first.path))
            .or_default()
            .insert(first.key);
        let limit = self.sweeper.config().key_batch.max(1) * 4;
        let mut taken = 1;
        while taken < limit {
            let Ok(s) = self.rx.try_recv() else { break };
            batch.entry((s.node, s.path)).or_default().insert(s.key);
            taken += 1;
        }
        let mut failed = None;
        for ((node, path), keys) in batch {
            if path == Path::Live && self.sweeper.live_drops_events() {
                continue;
            }
            let locs: Vec<KeyLocation> = keys
                .iter()
                .filter_map(|k| self.sweeper.store().locate(k).ok())
                .collect();
            for chunk in locs.chunks(self.sweeper.config().key_batch.max(1)) {
                if let Err(e) = verify_and_handle(&self.sweeper, node, path, chunk).await {
                    failed = Some(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Verifies `locs` on `node` and handles the changes found.
async fn verify_and_handle(
    sw: &Sweeper,
    node: NodeId,
    path: Path,
    locs: &[KeyLocation],
) -> Result<(), WorkFailed> {
    let n = sw.pool().node(node);
    let found = verify_only(n, locs)
        .await
        .map_err(|e| WorkFailed(format!("verifying on {}: {e}", n.display)))?;
    if !found.is_empty() {
        direct::handle(sw, path, &found, false).await;
    }
    Ok(())
}

/// The keys of `locs` whose value on `node` is not what the node's entry records.
pub(super) async fn verify_only(
    node: &Node,
    locs: &[KeyLocation],
) -> Result<Vec<Found>, NodeError> {
    let refs: Vec<&KeyLocation> = locs.iter().collect();
    let verdicts = calls::store::verify(node, Traffic::Background, &refs).await?;
    Ok(locs
        .iter()
        .zip(verdicts)
        .filter_map(|(loc, v)| {
            Some(Found {
                node: node.id,
                loc: loc.clone(),
                mismatch: v.mismatch?,
                meta: v.meta,
            })
        })
        .collect())
}

/// Keeps one node's key events flowing to the verifier.
struct Subscriber {
    sweeper: Arc<Sweeper>,
    node: Arc<Node>,
    tx: mpsc::Sender<Suspect>,
    attempts: u32,
}

impl Worker for Subscriber {
    fn name(&self) -> String {
        format!("notify:{}", self.node.identity)
    }

    async fn wait_for_work(&mut self) {
        if self.attempts > 0 {
            tokio::time::sleep(RETRY).await;
        }
        self.attempts += 1;
    }

    /// One subscription, for as long as it lasts.
    async fn work(&mut self) -> Result<(), WorkFailed> {
        let live = self.sweeper.live_detection();
        let refused = match calls::notify::enable(&self.node).await {
            Ok(_) => None,
            Err(e) if e.server_kind().is_some() => Some(format!(
                "the node refused CONFIG SET notify-keyspace-events: {e}"
            )),
            Err(e) => {
                live.set(&self.node, "connecting", Some(e.to_string()));
                return Err(WorkFailed(format!("{}: {e}", self.node.display)));
            }
        };
        let prefix = self.sweeper.store().settings().layout.prefix.clone();
        let probe_key = crate::store::layout::probe_key(&prefix);
        // Every instance's scripts announce on this channel, whoever subscribes.
        let own_channel = crate::store::layout::own_writes_channel(&prefix);
        let events =
            match calls::notify::subscribe(&self.node, &prefix, &probe_key, &own_channel).await {
                Ok(s) => s,
                Err(e) => {
                    live.set(&self.node, "connecting", Some(e.to_string()));
                    return Err(WorkFailed(format!(
                        "subscribing on {}: {e}",
                        self.node.display
                    )));
                }
            };
        let mut events = Box::pin(events);
        // A new subscription starts outside any announcement, whatever the last one saw.
        let mut own_writes = OwnWrites::new();
        let counts = LiveKeyEvents::for_node(&self.node.display);
        let token = format!("{:016x}", rand::random::<u64>());
        let mut probing = calls::notify::probe(&self.node, &probe_key, &token)
            .await
            .is_ok();
        let deadline = tokio::time::Instant::now() + PROBE_WAIT;
        if !probing {
            live.set(&self.node, "connecting", Some("probe write failed".into()));
        }
        loop {
            let next = if probing {
                match tokio::time::timeout_at(deadline, events.next()).await {
                    Ok(e) => e,
                    Err(_) => {
                        probing = false;
                        live.set(
                            &self.node,
                            "off",
                            Some(refused.clone().unwrap_or_else(|| {
                                "key events do not arrive (notify-keyspace-events lacks classes quorumd needs)".into()
                            })),
                        );
                        continue;
                    }
                }
            } else {
                events.next().await
            };
            let Some(notice) = next else {
                live.set(
                    &self.node,
                    "connecting",
                    Some("subscription dropped".into()),
                );
                return Err(WorkFailed(format!(
                    "{}: the notification subscription dropped",
                    self.node.display
                )));
            };
            let (event, own) = match own_writes.hear(notice) {
                Heard::Mark => continue,
                Heard::Own(e) => (e, true),
                Heard::Unmarked(e) => (e, false),
            };
            if event.key.starts_with(prefix.as_bytes()) {
                if probing && event.key == probe_key.as_bytes() {
                    probing = false;
                    self.attempts = 0;
                    live.set(&self.node, "on", None);
                }
                continue;
            }
            if own && !self.sweeper.live_ignores_own_marks() {
                counts.own();
                continue;
            }
            counts.unmarked();
            let _ = self.tx.try_send(Suspect {
                node: self.node.id,
                key: event.key,
                path: Path::Live,
            });
        }
    }
}
