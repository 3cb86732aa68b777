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
use super::events::{LiveKeyEvents, NotificationsState, NotificationsTurnedOffOutside};
use crate::store::suspects::{Path, Suspect};
use futures::StreamExt;
use quorumd_node::calls;
use quorumd_node::calls::notify::{Heard, OwnWrites};
use quorumd_node::calls::store::KeyLocation;
use quorumd_node::pool::{EventSource, Node, NodeError, NodeId, Traffic};
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
/// Pause before subscribing again after the subscription failed or dropped, and before the
/// first probe sent again.
const RETRY: Duration = Duration::from_secs(1);
/// The longest pause between probes sent again.
const PROBE_RETRY_MAX: Duration = Duration::from_secs(10);
/// How often a cluster replica's subscriber compares its masters with the probe's.
const MASTERS_CHECK: Duration = Duration::from_secs(1);
/// How often a subscriber whose events arrive checks that the node still sends the classes it
/// needs: an operator's `CONFIG SET notify-keyspace-events ""` stops them without a sound.
const CLASSES_RECHECK: Duration = Duration::from_secs(5);

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

/// Keeps one node's key events flowing to the verifier: a server's, or those of every master
/// of a cluster replica (a master publishes its own keys' events only).
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

    /// One subscription per event source, for as long as they all last and a cluster's
    /// masters stay the same.
    async fn work(&mut self) -> Result<(), WorkFailed> {
        let live = self.sweeper.live_detection();
        let node = &self.node;
        let fail = |reason: String| {
            live.set(node, "connecting", Some(reason.clone()));
            Err(WorkFailed(format!("{}: {reason}", node.display)))
        };
        let sources = node.event_sources();
        if sources.is_empty() {
            return fail("no master of the cluster is known to be up yet".into());
        }
        let prefix = self.sweeper.store().settings().layout.prefix.clone();
        // Every instance's scripts announce on this channel (per slot on a cluster: see
        // `Node::own_writes_channel`), whoever subscribes.
        let own_channel = crate::store::layout::own_writes_channel(&prefix);
        // Per source, why the node refused to turn the events on.
        let mut refused = Vec::new();
        let mut probe_keys = Vec::new();
        let mut streams = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            let at = at_source(source);
            match enable(node, source).await {
                Ok(refusal) => refused.push(refusal),
                Err(e) => return fail(format!("{at}{e}")),
            }
            let probe_key = crate::store::layout::probe_key_for(&prefix, source);
            let events =
                match calls::notify::subscribe(node, source, &prefix, &probe_key, &own_channel)
                    .await
                {
                    Ok(s) => s,
                    Err(e) => return fail(format!("{at}subscribing: {e}")),
                };
            // `None` after the last notice: that source's subscription dropped.
            streams.push(
                events
                    .map(move |n| (i, Some(n)))
                    .chain(futures::stream::once(async move { (i, None) }))
                    .boxed(),
            );
            probe_keys.push(probe_key);
        }
        let mut events = futures::stream::select_all(streams);
        // A new subscription starts outside any announcement, whatever the last one saw.
        let mut own_writes: Vec<OwnWrites> = sources.iter().map(|_| OwnWrites::new()).collect();
        let counts = LiveKeyEvents::for_node(&node.display);
        let token = format!("{:016x}", rand::random::<u64>());
        let mut probes = Probes::new(sources.len());
        probes.send(node, live, &sources, &probe_keys, &token).await;
        let mut masters_check = tokio::time::interval(MASTERS_CHECK);
        let mut classes_check = tokio::time::interval_at(
            tokio::time::Instant::now() + CLASSES_RECHECK,
            CLASSES_RECHECK,
        );
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                () = tokio::time::sleep_until(probes.deadline), if probes.awaiting() => {
                    let deaf: Vec<&str> = probes.time_out().iter().map(|&i| sources[i].label()).collect();
                    let refusals: Vec<&str> = refused.iter().flatten().map(String::as_str).collect();
                    let reason = if refusals.is_empty() {
                        let at = if node.is_cluster() {
                            format!(" from master {}", deaf.join(", "))
                        } else {
                            String::new()
                        };
                        format!("key events do not arrive{at} (notify-keyspace-events lacks classes quorumd needs)")
                    } else {
                        refusals.join("; ")
                    };
                    live.set(node, "off", Some(reason));
                    continue;
                }
                () = tokio::time::sleep_until(probes.deadline), if probes.retry_due() => {
                    // The node may allow `CONFIG SET` by now (an ACL changed).
                    for i in probes.unheard() {
                        if let Ok(refusal) = enable(node, &sources[i]).await {
                            refused[i] = refusal;
                        }
                    }
                    probes.send(node, live, &sources, &probe_keys, &token).await;
                    continue;
                }
                _ = classes_check.tick(), if probes.all_heard() => {
                    // Turned off behind quorumd's back: on again, and probed again so that the
                    // status says `on` only once events arrive.
                    for (i, source) in sources.iter().enumerate() {
                        if let Ok(true) = calls::notify::enable(node, source).await {
                            NotificationsTurnedOffOutside {
                                node: &node.display,
                                source: &at_source(source),
                                live: self.sweeper.pool().live(),
                            }
                            .emit();
                            probes.forget(i);
                        }
                    }
                    if probes.retry_due() {
                        probes.send(node, live, &sources, &probe_keys, &token).await;
                    }
                    continue;
                }
                _ = masters_check.tick(), if node.is_cluster() => {
                    if node.event_sources() != sources {
                        return fail("the cluster's masters changed: subscribing again".into());
                    }
                    continue;
                }
            };
            let Some((i, Some(notice))) = next else {
                let at = next.map_or(String::new(), |(i, _)| at_source(&sources[i]));
                return fail(format!("{at}the notification subscription dropped"));
            };
            let (event, own) = match own_writes[i].hear(notice) {
                Heard::Mark => continue,
                Heard::Own(e) => (e, true),
                Heard::Unmarked(e) => (e, false),
            };
            if event.key.starts_with(prefix.as_bytes()) {
                if event.key == probe_keys[i].as_bytes() && probes.heard(i) {
                    let _ = calls::notify::clear_probe(node, &probe_keys[i]).await;
                    if probes.all_heard() {
                        self.attempts = 0;
                        live.set(node, "on", None);
                    }
                }
                continue;
            }
            if own && !self.sweeper.live_ignores_own_marks() {
                counts.own();
                continue;
            }
            counts.unmarked();
            let _ = self.tx.try_send(Suspect {
                node: node.id,
                key: event.key,
                path: Path::Live,
            });
        }
    }
}

/// Which sources' probes have been heard. A probe whose write failed or whose event did not
/// come in time is sent again after a growing pause: the failure may be passing (a cluster
/// failing over, a loaded node), and a subscription must not stay `off` or `connecting`
/// because of one.
struct Probes {
    heard: Vec<bool>,
    /// Sources whose probe was written and whose event has not arrived yet.
    waiting: BTreeSet<usize>,
    /// When the waiting probes time out, or when the unheard ones are sent again.
    deadline: tokio::time::Instant,
    pause: Duration,
}

impl Probes {
    fn new(sources: usize) -> Probes {
        Probes {
            heard: vec![false; sources],
            waiting: BTreeSet::new(),
            deadline: tokio::time::Instant::now(),
            pause: RETRY,
        }
    }

    /// Writes the probe of every source not heard yet.
    async fn send(
        &mut self,
        node: &Node,
        live: &LiveDetection,
        sources: &[EventSource],
        keys: &[String],
        token: &str,
    ) {
        for (i, key) in keys.iter().enumerate() {
            if self.heard[i] {
                continue;
            }
            match calls::notify::probe(node, key, token).await {
                Ok(()) => {
                    self.waiting.insert(i);
                }
                Err(e) => live.set(
                    node,
                    "connecting",
                    Some(format!("{}probe write failed: {e}", at_source(&sources[i]))),
                ),
            }
        }
        let now = tokio::time::Instant::now();
        self.deadline = if self.waiting.is_empty() {
            self.retry_later(now)
        } else {
            now + PROBE_WAIT
        };
    }

    fn retry_later(&mut self, now: tokio::time::Instant) -> tokio::time::Instant {
        let at = now + self.pause;
        self.pause = (self.pause * 2).min(PROBE_RETRY_MAX);
        at
    }

    fn awaiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Some probe is unheard, none is in flight: the next send is at `deadline`.
    fn retry_due(&self) -> bool {
        self.waiting.is_empty() && self.heard.contains(&false)
    }

    /// The waiting probes' time is up: they are sent again later. Returns them.
    fn time_out(&mut self) -> Vec<usize> {
        let deaf = std::mem::take(&mut self.waiting).into_iter().collect();
        self.deadline = self.retry_later(tokio::time::Instant::now());
        deaf
    }

    /// Source `i`'s probe event arrived; false if none was awaited from it.
    fn heard(&mut self, i: usize) -> bool {
        let awaited = self.waiting.remove(&i);
        if awaited {
            self.heard[i] = true;
        }
        awaited
    }

    /// Source `i` must be probed again before it counts as heard.
    fn forget(&mut self, i: usize) {
        self.heard[i] = false;
        self.pause = RETRY;
    }

    fn unheard(&self) -> Vec<usize> {
        (0..self.heard.len()).filter(|&i| !self.heard[i]).collect()
    }

    fn all_heard(&self) -> bool {
        !self.heard.contains(&false)
    }
}

/// Turns `source`'s key events on; `Some(reason)` when the node refused to.
async fn enable(node: &Node, source: &EventSource) -> Result<Option<String>, NodeError> {
    match calls::notify::enable(node, source).await {
        Ok(_) => Ok(None),
        Err(e) if e.server_kind().is_some() => Ok(Some(format!(
            "{}the node refused CONFIG SET notify-keyspace-events: {e}",
            at_source(source)
        ))),
        Err(e) => Err(e),
    }
}

/// `"master h:p: "` for a cluster's master, `""` for a server: where an error happened.
fn at_source(source: &EventSource) -> String {
    match source {
        EventSource::Server => String::new(),
        EventSource::Master { addr, .. } => format!("master {addr}: "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_awaited_probes_count_as_heard_and_the_unheard_are_retried_with_a_growing_pause() {
        let mut probes = Probes::new(3);
        assert!(probes.retry_due() && !probes.awaiting());
        // The probes of sources 0 and 2 were written; source 1's write failed.
        probes.waiting.extend([0, 2]);
        assert!(probes.awaiting() && !probes.retry_due());
        assert!(probes.heard(0));
        assert!(!probes.heard(0), "a probe is heard once");
        assert!(!probes.heard(1), "no probe of source 1 was awaited");
        assert_eq!(probes.unheard(), vec![1, 2]);

        // Source 2's event never comes: given up, and both are sent again after RETRY.
        let before = tokio::time::Instant::now();
        assert_eq!(probes.time_out(), vec![2]);
        assert!(!probes.awaiting() && probes.retry_due());
        assert!(probes.deadline >= before + RETRY);
        assert!(probes.deadline <= tokio::time::Instant::now() + RETRY);
        // Each retry waits twice as long as the one before, up to PROBE_RETRY_MAX.
        let now = tokio::time::Instant::now();
        let pauses: Vec<Duration> = (0..5).map(|_| probes.retry_later(now) - now).collect();
        assert_eq!(pauses, [2, 4, 8, 10, 10].map(Duration::from_secs));
        assert_eq!(PROBE_RETRY_MAX, Duration::from_secs(10));

        probes.waiting.extend([1, 2]);
        assert!(probes.heard(1) && probes.heard(2));
        assert!(probes.all_heard() && !probes.retry_due() && !probes.awaiting());
    }
}
