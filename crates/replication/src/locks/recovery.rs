//! Which nodes count toward lock majorities. A node that restarted (or lost its data) may have
//! forgotten lock keys and fence counters. It counts again only when both hold:
//!
//! 1. the longest lock TTL (plus its drift) has passed since it was marked recovering, so every
//!    lock it may have forgotten has expired everywhere (the Redlock "delayed restart"), and
//! 2. its fence counters were raised to the highest values held by enough other nodes
//!    (`N − majority + 1` of them, which always includes one of the surviving holders of any
//!    fence stored on a majority), so fences keep increasing once it counts again.
//!
//! The catch-up starts only after the delay: by then every acquisition granted with a script
//! run before the loss was granted (within its TTL of starting), and its fence is on a majority
//! (stored in the same step as the lock), so the catch-up sees every fence it must carry over.
//!
//! A loss is learnt of by the probes that see it (a new run id, a missing sentinel), and from
//! the node's lock gates (`quorumd_node::pool::lock_gates`), which the exchange writes before
//! it calls the node back in sync: an instance started after the heal waits as one that saw the
//! loss would. A catch-up removes the gates it covers.

use crate::locks::events;
use quorumd_core::config::LocksConfig;
use quorumd_node::pool::{NodeId, NodePool};
use quorumd_node::worker::{StopPhase, WorkFailed, Worker};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fence counters raised per script call during a catch-up.
const RAISE_BATCH: usize = 200;

/// How often the gate looks for a node whose wait is over, so that its catch-up runs without a
/// lock request to start it.
const GATE_CHECK: Duration = Duration::from_secs(1);

pub struct RecoveryGate {
    pool: Arc<NodePool>,
    delay_ms: u64,
    pattern: String,
    /// Per node: the recovery episode (its `recovering_since_ms`) whose catch-up finished.
    caught_up: Mutex<Vec<Option<u64>>>,
    /// Per node: the episode whose catch-up is running.
    running: Mutex<Vec<Option<u64>>>,
    /// False only under a test's unsafe knob: the catch-up then raises nothing.
    copy: bool,
    /// Set by a test whose other lock service must be the only one to catch nodes up.
    worker_paused: std::sync::atomic::AtomicBool,
}

impl RecoveryGate {
    pub fn new(
        pool: Arc<NodePool>,
        cfg: &LocksConfig,
        prefix: &str,
        copy: bool,
    ) -> Arc<RecoveryGate> {
        let n = pool.len();
        let gate = Arc::new(RecoveryGate {
            pool: pool.clone(),
            delay_ms: cfg.max_ttl_ms + super::drift_ms(cfg, cfg.max_ttl_ms),
            // `fence*`: under slot placement a tag follows the name.
            pattern: format!("{prefix}fence*"),
            caught_up: Mutex::new(vec![None; n]),
            running: Mutex::new(vec![None; n]),
            copy,
            worker_paused: Default::default(),
        });
        pool.workers()
            .spawn(StopPhase::Background, GateWorker(gate.clone(), false));
        gate
    }

    /// Whether `node` counts now toward the majority of the lock at `key` (`None`: of any
    /// lock); starts its catch-up once the delay of its latest loss is over. Before that, it
    /// still counts for a lock whose slot no uncovered loss took (a cluster replica that lost
    /// some shards keeps the locks of the others).
    pub fn counts(self: &Arc<Self>, node: NodeId, key: Option<&[u8]>) -> bool {
        let target = self.pool.node(node);
        // Losses this process learnt of from the node's lock gates (an instance started after
        // the node was healed did not see them happen).
        for gate in target.take_lock_gates() {
            target.record_lock_episode(gate.since_ms, gate.scope);
        }
        let Some(episode) = target.last_recovering_since_ms() else {
            return true;
        };
        let covered = self.caught_up.lock().unwrap_or_else(|p| p.into_inner())[node];
        if covered == Some(episode) {
            return true;
        }
        if quorumd_core::hlc::wall_clock_ms() >= episode + self.delay_ms {
            let start = {
                let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                let start = running[node] != Some(episode);
                running[node] = Some(episode);
                start
            };
            if start {
                let gate = self.clone();
                self.pool
                    .workers()
                    .spawn_task(async move { gate.catch_up(node, episode).await });
            }
        }
        target.counts_for_locks(covered, key)
    }

    /// Stops the `locks:gate` worker from starting catch-ups (for the negative controls of
    /// tests that run a second lock service, with the catch-up switched off, on this pool).
    pub fn pause_worker(&self) {
        self.worker_paused
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn why_not_counted(&self, node: NodeId) -> String {
        match self.pool.node(node).last_recovering_since_ms() {
            Some(since) if quorumd_core::hlc::wall_clock_ms() < since + self.delay_ms => format!(
                "restarted: counts toward lock majorities {} ms after it came back",
                self.delay_ms
            ),
            Some(_) => "restarted: fence counters still being caught up".into(),
            None => "not counted".into(),
        }
    }

    /// Raises `node`'s fence counters to the highest seen on enough other nodes, then lets it
    /// count. On failure it is retried at the next lock operation.
    async fn catch_up(self: Arc<Self>, node: NodeId, episode: u64) {
        let started = std::time::Instant::now();
        let outcome = match self.copy {
            true => self.copy_fences(node).await,
            false => Ok(0),
        };
        // The node's gates of losses whose delay was over when this catch-up began are
        // covered: no instance needs to wait for them again. Left for the next catch-up if
        // the node does not answer.
        if outcome.is_ok() {
            let covered = Duration::from_millis(self.delay_ms) + started.elapsed();
            let _ = self.pool.node(node).clear_lock_gates(covered).await;
        }
        let raised = match &outcome {
            Ok(n) => *n,
            Err(_) => 0,
        };
        if outcome.is_ok() {
            self.caught_up.lock().unwrap_or_else(|p| p.into_inner())[node] = Some(episode);
            // Every loss that began by then is covered: the delay of each has passed, and the
            // fences just copied include those of its slots.
            self.pool.node(node).losses_covered(episode);
        } else {
            self.running.lock().unwrap_or_else(|p| p.into_inner())[node] = None;
        }
        events::FenceCatchUp {
            node: &self.pool.node(node).display,
            raised,
            error: outcome.err().as_deref(),
        }
        .emit();
    }

    async fn copy_fences(&self, node: NodeId) -> Result<u64, String> {
        let n = self.pool.len();
        let needed = n - quorumd_core::quorum::majority(n) + 1;
        let others: Vec<NodeId> = (0..n).filter(|o| *o != node).collect();
        let scans = futures::future::join_all(others.iter().map(|o| self.scan_all(*o))).await;
        let mut highest: HashMap<String, u64> = HashMap::new();
        let mut answered = 0;
        let mut errors = Vec::new();
        for scan in scans {
            match scan {
                Ok(pairs) => {
                    answered += 1;
                    for (k, v) in pairs {
                        let e = highest.entry(k).or_insert(0);
                        *e = (*e).max(v);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if answered < needed {
            return Err(format!(
                "{answered} of the {needed} other nodes needed answered: {}",
                errors.join("; ")
            ));
        }
        let pairs: Vec<(String, u64)> = highest.into_iter().collect();
        let target = self.pool.node(node);
        let mut raised = 0;
        for chunk in pairs.chunks(RAISE_BATCH) {
            raised +=
                quorumd_node::calls::locks::raise_fences(target, Duration::from_secs(5), chunk)
                    .await
                    .map_err(|e| e.to_string())?;
        }
        Ok(raised)
    }

    async fn scan_all(&self, node: NodeId) -> Result<Vec<(String, u64)>, String> {
        let target = self.pool.node(node);
        let mut cursor = 0;
        let mut out = Vec::new();
        loop {
            let (next, page) =
                quorumd_node::calls::locks::scan_fences(target, &self.pattern, cursor)
                    .await
                    .map_err(|e| format!("{}: {e}", target.display))?;
            out.extend(page);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}

/// Starts the catch-up of every node whose wait is over, and takes in the lock gates probes
/// read: the first lock request after a node's wait found its catch-up not started (started by
/// that very request) and was refused with every node up.
struct GateWorker(Arc<RecoveryGate>, bool);

impl Worker for GateWorker {
    fn name(&self) -> String {
        "locks:gate".into()
    }

    /// The first pass at once (the gates the first probes read), then every `GATE_CHECK`.
    async fn wait_for_work(&mut self) {
        if std::mem::replace(&mut self.1, true) {
            tokio::time::sleep(GATE_CHECK).await;
        }
    }

    async fn work(&mut self) -> Result<(), WorkFailed> {
        if self
            .0
            .worker_paused
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        for node in 0..self.0.pool.len() {
            self.0.counts(node, None);
        }
        Ok(())
    }
}
