//! The node's monitor: probes (PING, the run id, the sentinel keys, a cluster's shards),
//! what a probe says about lost writes (a restart, a wipe), and reconnection.

use super::*;

impl Node {
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
                            .collect::<Vec<String>>(),
                    ),
                    Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => Some(Vec::new()),
                    Err(e) => return Err(e),
                }
            };
            // What was given is taken before the keys are checked, the records read first: a
            // sentinel the sweep writes after a check (while this probe goes on) was not there
            // to lose, and judged against what is known later it looked lost.
            let names: Vec<String> = marks.iter().map(|(m, _)| m.clone()).collect();
            let given = self
                .shared
                .sentinels()
                .given_before_check(&names, records.as_deref());
            let mut held = Vec::with_capacity(marks.len());
            let mut gates = Vec::new();
            for (mark, key) in marks {
                // EXISTS, not GET: a sentinel of another type (written by hand) is there all
                // the same, and must not fail the probe, which would take the node out of
                // service.
                let n: u64 = redis::cmd("EXISTS").arg(&key).query_async(&mut c).await?;
                held.push((mark, n > 0));
                // Read (a script, for the server's clock) only when there is one: most probes
                // find none. A gate of another type (written by hand) is no gate.
                let gate = lock_gate_key(&key);
                let n: u64 = redis::cmd("EXISTS").arg(&gate).query_async(&mut c).await?;
                if n == 0 {
                    continue;
                }
                match lock_gates::read_gate(&mut c, &gate).await {
                    Ok(gate) => gates.extend(gate),
                    Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, RedisError>(Probe {
                rtt,
                run_id,
                sentinel: Some(held),
                given,
                records,
                shards,
                lock_gates: gates,
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
        self.saw_lock_gates(&probe.lock_gates);
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
                Some(held) => sentinels.probed(self.id, held.clone(), &probe.given),
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

    /// Opens a connection and probes it before requests may use it: a server that restarted
    /// (new run_id) must be marked recovering before any read counts its answer.
    async fn connect_and_probe(&self) -> Result<(), String> {
        let (conn, probe) = self.connect_probed().await?;
        self.install(conn, &probe);
        Ok(())
    }

    /// A new connection and its first probe, not yet judged or handed to requests.
    pub(super) async fn connect_probed(&self) -> Result<(NodeConn, Probe), String> {
        let conn = self.connect().await?;
        let probe = self.probe(conn.clone()).await?;
        Ok((conn, probe))
    }

    /// A first probe again if, now that every node's records are known (`start_with`), it
    /// lacks a sentinel they say was given: its own check came before some were read, so only
    /// a new probe can tell a wipe while no instance was running.
    pub(super) async fn settle_first_probe(
        &self,
        conn: &NodeConn,
        probe: Probe,
    ) -> Result<Probe, String> {
        let undecided = probe
            .sentinel
            .as_ref()
            .is_some_and(|held| self.shared.sentinels().undecided(held, &probe.given));
        if undecided {
            self.probe(conn.clone()).await
        } else {
            Ok(probe)
        }
    }

    /// Judges a new connection's probe, then hands the connection to requests.
    pub(super) fn install(&self, conn: NodeConn, probe: &Probe) {
        self.note_probe(probe);
        self.set_connection(Some(conn));
        self.apply_probe(Ok(probe.rtt));
    }
}

/// A node's monitor: probes it (PING, `INFO server`), keeps its health state and latency, and
/// reconnects with exponential back-off when the connection is lost. A failed probe or
/// reconnect is a failed pass.
pub(super) struct ProbeWorker {
    node: Arc<Node>,
    backoff: Duration,
    /// Until the next pass, unless a request wakes the monitor early.
    next: Duration,
}

impl ProbeWorker {
    pub(super) fn new(node: Arc<Node>) -> ProbeWorker {
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

pub(super) struct Probe {
    pub(super) rtt: Duration,
    pub(super) run_id: Option<String>,
    /// Each of the node's sentinel marks, and whether it holds that key (`None`: not known).
    pub(super) sentinel: Option<Vec<(String, bool)>>,
    /// Its marks known to have been given their sentinel before they were checked: a missing
    /// one is a loss only if it was.
    pub(super) given: sentinel::Given,
    /// The marks its sentinel records name (`None`: not known, their shard is down).
    pub(super) records: Option<Vec<String>>,
    /// A cluster replica's shards as this probe found them.
    pub(super) shards: Option<Vec<ShardStatus>>,
    /// The lock gates found beside the sentinels: raw value and the server's clock (ms).
    pub(super) lock_gates: Vec<(String, u64)>,
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
