//! The nemesis toolkit for fault-injection tests: a fault-injecting TCP proxy per node
//! ([`proxy`]), seeded random fault schedules ([`plan`]), and [`Nemesis`], which plays a plan
//! against real `redis-server` processes and their proxies.

pub mod plan;
pub mod proxy;

use plan::{FaultKind, Plan, Step};
use proxy::{FaultProxy, LinkFault};
use quorumd_node::devcluster::{DevCluster, DevClusterError};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Nodes of a [`DevCluster`], each behind its own [`FaultProxy`].
pub struct Nemesis {
    pub cluster: DevCluster,
    pub proxies: Vec<FaultProxy>,
}

/// What a played plan did.
#[derive(Debug, Default, Clone)]
pub struct FaultReport {
    /// Faults started, by kind.
    pub injected: BTreeMap<FaultKind, usize>,
    /// Faults that could not be applied (e.g. a restart that failed), with the reason.
    pub failures: Vec<String>,
}

impl FaultReport {
    pub fn total(&self) -> usize {
        self.injected.values().sum()
    }
}

enum Edge {
    Start,
    End,
}

impl Nemesis {
    /// Starts `n` nodes, durable (`appendfsync always`, so a killed node restarts with all it
    /// acknowledged), each behind a proxy.
    pub async fn start(n: usize) -> Result<Nemesis, DevClusterError> {
        let cluster = tokio::task::spawn_blocking(move || {
            DevCluster::start_with(n, &["--appendonly", "yes", "--appendfsync", "always"])
        })
        .await
        .map_err(|e| DevClusterError::Io(std::io::Error::other(e)))??;
        let mut proxies = Vec::with_capacity(n);
        for node in &cluster.nodes {
            proxies.push(FaultProxy::start(node.addr()).await?);
        }
        Ok(Nemesis { cluster, proxies })
    }

    /// The URLs quorumd should use: through the proxies.
    pub fn urls(&self) -> Vec<String> {
        self.proxies.iter().map(FaultProxy::url).collect()
    }

    /// Plays `plan` from now and ends every fault it started, early when `stop` resolves.
    pub async fn play(
        &mut self,
        plan: &Plan,
        stop: impl std::future::Future<Output = ()>,
    ) -> FaultReport {
        let mut edges: Vec<(Duration, Edge, Step)> = plan
            .steps
            .iter()
            .flat_map(|s| [(s.at, Edge::Start, *s), (s.end(), Edge::End, *s)])
            .collect();
        // At equal times, end one fault before starting the next.
        edges.sort_by_key(|(t, edge, _)| (*t, matches!(edge, Edge::Start)));
        let mut report = FaultReport::default();
        let mut active: Vec<Step> = Vec::new();
        let started = Instant::now();
        let mut stop = std::pin::pin!(stop);
        for (at, edge, step) in edges {
            tokio::select! {
                _ = tokio::time::sleep_until(started + at) => {}
                _ = &mut stop => break,
            }
            match edge {
                Edge::Start => {
                    *report.injected.entry(step.kind).or_default() += 1;
                    self.begin(&step);
                    active.push(step);
                }
                Edge::End => {
                    active.retain(|a| *a != step);
                    if let Err(e) = self.end(&step) {
                        report
                            .failures
                            .push(format!("ending {} on node {}: {e}", step.kind, step.node));
                    }
                }
            }
        }
        for step in active {
            if let Err(e) = self.end(&step) {
                report
                    .failures
                    .push(format!("ending {} on node {}: {e}", step.kind, step.node));
            }
        }
        report
    }

    fn begin(&mut self, step: &Step) {
        let proxy = &self.proxies[step.node];
        let node = &mut self.cluster.nodes[step.node];
        match step.kind {
            FaultKind::Blackhole => proxy.set(LinkFault::Blackhole),
            FaultKind::Latency => proxy.set(LinkFault::Latency(step.latency)),
            FaultKind::CutToNode => proxy.set(LinkFault::CutToNode),
            FaultKind::CutFromNode => proxy.set(LinkFault::CutFromNode),
            FaultKind::Reset => {
                proxy.set(LinkFault::Refuse);
                proxy.reset_connections();
            }
            FaultKind::SlowClose => proxy.slow_close(step.hold),
            FaultKind::Pause => node.pause(),
            FaultKind::Kill | FaultKind::RestartEmpty => node.kill(),
        }
    }

    fn end(&mut self, step: &Step) -> Result<(), DevClusterError> {
        let node = &mut self.cluster.nodes[step.node];
        match step.kind {
            FaultKind::Pause => node.resume(),
            // Restarting waits for the server to answer PING: a blocking wait of milliseconds.
            FaultKind::Kill => tokio::task::block_in_place(|| node.restart())?,
            FaultKind::RestartEmpty => tokio::task::block_in_place(|| node.restart_empty())?,
            FaultKind::SlowClose => {}
            _ => self.proxies[step.node].heal(),
        }
        Ok(())
    }

    /// Ends every fault at once: proxies healthy, paused nodes resumed, dead nodes restarted.
    pub fn heal_all(&mut self) -> Result<(), DevClusterError> {
        for p in &self.proxies {
            p.heal();
        }
        for node in &mut self.cluster.nodes {
            node.resume();
            if !node.is_running() {
                tokio::task::block_in_place(|| node.restart())?;
            }
        }
        Ok(())
    }
}
