//! A connection to one replica, which is either a standalone server or a whole Redis Cluster.
//! Both are multiplexed and cheap to clone; the typed calls are written against
//! `ConnectionLike` and do not care which one they hold, except where a call touches keys of
//! several slots: a cluster takes each command to the master of its slot, and refuses a script
//! or transaction whose keys span slots (CROSSSLOT), so those calls split their work per slot
//! (see [`Node::per_slot`](super::Node::per_slot)).

use super::shards::{Shards, SlotRange};
use futures::future::try_join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The hash slots one call to a cluster replica sent commands for, and which of them are
/// still without an answer: when the call fails (a lost connection, the node timeout), the
/// slots it was still waiting on name the master to blame, so that one dead master makes its
/// shard suspect and not the replica. `None` stands for a command of no key, which any master
/// may have been sent. Kept per call through a task-local (see [`track`]), so the typed
/// calls need not know about it.
#[derive(Debug, Default)]
pub struct Attempts(Mutex<AttemptsInner>);

#[derive(Debug, Default)]
struct AttemptsInner {
    /// Commands sent and not answered, per slot.
    pending: BTreeMap<Option<u16>, usize>,
    /// Every slot a command went to.
    touched: BTreeSet<Option<u16>>,
}

impl Attempts {
    fn sent(&self, slots: &[Option<u16>]) {
        let mut a = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for &slot in slots {
            *a.pending.entry(slot).or_default() += 1;
            a.touched.insert(slot);
        }
    }

    fn answered(&self, slots: &[Option<u16>]) {
        let mut a = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for slot in slots {
            if let Some(n) = a.pending.get_mut(slot) {
                *n -= 1;
                if *n == 0 {
                    a.pending.remove(slot);
                }
            }
        }
    }

    /// The slots of the commands still without an answer; `None` when one of them named no
    /// key, or when nothing was sent through the shard-aware paths (the failure is not one
    /// master's).
    pub fn unanswered(&self) -> Option<Vec<u16>> {
        let a = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if a.pending.is_empty() {
            return None;
        }
        a.pending.keys().copied().collect()
    }

    /// Every slot the call sent a command for; `None` when one named no key or none was sent.
    pub fn touched(&self) -> Option<Vec<u16>> {
        let a = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if a.touched.is_empty() {
            return None;
        }
        a.touched.iter().copied().collect()
    }
}

tokio::task_local! {
    static ATTEMPTS: Arc<Attempts>;
}

/// Runs `call` with `attempts` recording the slots of the cluster commands it sends.
pub async fn track<F: Future>(attempts: Arc<Attempts>, call: F) -> F::Output {
    ATTEMPTS.scope(attempts, call).await
}

/// Records that commands for `slots` are sent, in the current call's [`Attempts`] if any;
/// returns the record, to mark them answered.
fn sending(slots: &[Option<u16>]) -> Option<Arc<Attempts>> {
    let attempts = ATTEMPTS.try_with(Arc::clone).ok()?;
    attempts.sent(slots);
    Some(attempts)
}

/// Marks `slots` answered when `result` is an answer: a value, or an error reply (the master
/// answered), but not a lost connection or a timeout.
fn settle<T>(attempts: Option<Arc<Attempts>>, slots: &[Option<u16>], result: &RedisResult<T>) {
    let answered = match result {
        Ok(_) => true,
        Err(e) => super::classify(e).server_kind().is_some(),
    };
    if let (Some(a), true) = (attempts, answered) {
        a.answered(slots);
    }
}

/// The slot `cmd` is routed by, `None` for a command of no key.
fn slot_of_cmd(cmd: &Cmd) -> Option<u16> {
    routing_key(cmd).map(|k| quorumd_core::layout::key_slot(k) as u16)
}

/// A connection to a standalone server or to a Redis Cluster (with the replica's shard table,
/// so that a request for a slot whose master is down fails at once).
#[derive(Clone)]
pub enum NodeConn {
    Server(MultiplexedConnection),
    Cluster(ClusterConnection, Arc<Shards>),
}

impl NodeConn {
    /// Sends `cmd` to every master of a cluster (to the server itself when standalone) and
    /// returns each master's answer with its address; one master's error reply is its answer,
    /// a master that cannot be reached fails the call.
    pub async fn on_every_master(&mut self, cmd: &Cmd) -> RedisResult<Vec<(String, Value)>> {
        match self {
            NodeConn::Server(c) => Ok(vec![(String::new(), cmd.query_async(c).await?)]),
            NodeConn::Cluster(c, _) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                match c.route_command(cmd.clone(), routing).await? {
                    Value::Map(answers) => Ok(answers
                        .into_iter()
                        .map(|(addr, v)| (String::from_utf8_lossy(&bytes(addr)).into_owned(), v))
                        .collect()),
                    other => Ok(vec![(String::new(), other)]),
                }
            }
        }
    }

    /// Sends `cmd` to every master and succeeds only if every master answers without error.
    pub async fn on_all_masters(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            NodeConn::Server(c) => cmd.query_async(c).await,
            NodeConn::Cluster(c, _) => {
                let routing = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                ));
                c.route_command(cmd.clone(), routing).await
            }
        }
    }
}

impl NodeConn {
    /// This connection without the shard table's refusals: for the probe, which reads the
    /// sentinel keys before its findings are installed.
    pub fn past_shard_table(self) -> NodeConn {
        match self {
            NodeConn::Cluster(c, _) => NodeConn::Cluster(c, Arc::default()),
            server => server,
        }
    }

    /// A cluster's masters (`host:port`) and the slot ranges each owns, per `CLUSTER SLOTS`,
    /// within `limit`.
    pub async fn slot_map(
        &mut self,
        limit: Duration,
    ) -> RedisResult<Vec<(String, Vec<SlotRange>)>> {
        let NodeConn::Cluster(c, shards) = self else {
            return Err(client_error("CLUSTER SLOTS", "not a cluster".into()));
        };
        let masters = tokio::time::timeout(limit, masters(c, shards))
            .await
            .map_err(|_| {
                redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "CLUSTER SLOTS: no master answered in time",
                ))
            })??;
        Ok(masters.into_iter().map(|m| (m.addr, m.slots)).collect())
    }
}

/// Bits of a cluster SCAN cursor that hold the master's cursor; the bits above index the
/// master (in address order). A server's cursor stays below 2^48 for any table it can hold.
const MASTER_CURSOR_BITS: u32 = 48;

impl NodeConn {
    /// One `SCAN` step. On a cluster the cursor walks the masters one after another, in the
    /// order of their addresses: a master's own cursor in the low bits, its index above them.
    /// A failover or reshard during a walk can skip or repeat keys, which the caller's
    /// restart check (the combined run id) covers.
    pub async fn scan(
        &mut self,
        cursor: u64,
        pattern: Option<&str>,
        count: usize,
    ) -> RedisResult<(u64, Vec<Vec<u8>>)> {
        let mut scan = redis::cmd("SCAN");
        let (c, shards) = match self {
            NodeConn::Server(c) => {
                scan.arg(cursor);
                if let Some(p) = pattern {
                    scan.arg("MATCH").arg(p);
                }
                scan.arg("COUNT").arg(count);
                return scan.query_async(c).await;
            }
            NodeConn::Cluster(c, shards) => (c, shards),
        };
        let masters = masters(c, shards).await?;
        let index = (cursor >> MASTER_CURSOR_BITS) as usize;
        let Some(master) = masters.get(index) else {
            return Ok((0, Vec::new()));
        };
        scan.arg(cursor & ((1 << MASTER_CURSOR_BITS) - 1));
        if let Some(p) = pattern {
            scan.arg("MATCH").arg(p);
        }
        scan.arg("COUNT").arg(count);
        let routing = RoutingInfo::SingleNode(master.route());
        let slot = [master.slots.first().map(|r| *r.start())];
        let attempts = sending(&slot);
        let reply = c.route_command(scan, routing).await;
        settle(attempts, &slot, &reply);
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::FromRedisValue::from_redis_value(reply?)?;
        let next = match next {
            0 if index + 1 < masters.len() => ((index + 1) as u64) << MASTER_CURSOR_BITS,
            0 => 0,
            inner => ((index as u64) << MASTER_CURSOR_BITS) | inner,
        };
        Ok((next, keys))
    }
}

/// A plain pipeline on a cluster: its commands grouped by the master that owns their key's
/// slot (per the cluster's current `CLUSTER SLOTS`), one pipeline per master, all at once;
/// the answers in the pipeline's order. A command a master refuses (MOVED during a
/// reshard) keeps its error reply in its place, as a server's pipeline reply would.
async fn pipeline_per_master(
    c: &mut ClusterConnection,
    shards: &Shards,
    pipeline: &Pipeline,
) -> RedisResult<Vec<Value>> {
    if let Some(refused) = pipeline.cmd_iter().find_map(|cmd| refusal(shards, cmd)) {
        return Err(refused);
    }
    let masters = masters(c, shards).await?;
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    for (i, cmd) in commands.iter().enumerate() {
        let slot = routing_key(cmd).map_or(0, quorumd_core::layout::key_slot) as u16;
        let owner = masters
            .iter()
            .position(|m| m.slots.iter().any(|r| r.contains(&slot)))
            .ok_or_else(|| client_error("no master owns slot", slot.to_string()))?;
        groups.entry(owner).or_default().push(i);
    }
    let sends = groups.into_iter().map(|(owner, at)| {
        let mut conn = c.clone();
        let mut pipe = redis::pipe();
        for &i in &at {
            pipe.add_command(commands[i].clone());
        }
        let routing = masters[owner].route();
        let slots: Vec<Option<u16>> = at.iter().map(|&i| slot_of_cmd(commands[i])).collect();
        let attempts = sending(&slots);
        async move {
            let answers = conn.route_pipeline(pipe, 0, at.len(), routing).await;
            settle(attempts, &slots, &answers);
            let answers = answers?;
            Ok::<_, redis::RedisError>(at.into_iter().zip(answers).collect::<Vec<_>>())
        }
    });
    let mut placed: Vec<Option<Value>> = vec![None; commands.len()];
    for (i, answer) in try_join_all(sends).await?.into_iter().flatten() {
        placed[i] = Some(answer);
    }
    placed
        .into_iter()
        .map(|v| v.ok_or_else(|| client_error("a pipeline answer", "went missing".into())))
        .collect()
}

fn client_error(what: &'static str, detail: String) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Client, what, detail))
}

/// Why a command for a slot whose master is down is refused without being sent; `pool::error`
/// classifies it as the replica being unavailable (for that slot), not as a failed connection.
pub const SHARD_DOWN: &str = "shard down";

/// Commands quorumd may send that name no key (a cluster routes them to any master).
const KEYLESS: &[&[u8]] = &[
    b"ACL",
    b"AUTH",
    b"CLIENT",
    b"CLUSTER",
    b"COMMAND",
    b"CONFIG",
    b"DBSIZE",
    b"DISCARD",
    b"ECHO",
    b"EXEC",
    b"FLUSHALL",
    b"FLUSHDB",
    b"FUNCTION",
    b"HELLO",
    b"INFO",
    b"KEYS",
    b"MULTI",
    b"PING",
    b"PUBLISH",
    b"RANDOMKEY",
    b"ROLE",
    b"SCAN",
    b"SCRIPT",
    b"SELECT",
    b"TIME",
    b"WAIT",
];

/// The key a cluster routes `cmd` by, if it names one: a script's first key, a subcommand's
/// key (`MEMORY USAGE`, `OBJECT`), or else the first argument.
fn routing_key(cmd: &Cmd) -> Option<&[u8]> {
    let mut args = cmd.args_iter().map(|a| match a {
        redis::Arg::Simple(bytes) => bytes,
        _ => &[],
    });
    let name = args.next()?.to_ascii_uppercase();
    if KEYLESS.contains(&name.as_slice()) {
        return None;
    }
    if name.starts_with(b"EVAL") || name.starts_with(b"FCALL") {
        let _script = args.next()?;
        let keys = args.next()?;
        return (keys != b"0").then(|| args.next()).flatten();
    }
    if name == b"MEMORY" || name == b"OBJECT" {
        return args.nth(1);
    }
    args.next()
}

/// The refusal of `cmd` when the master of its key's slot is down.
fn refusal(shards: &Shards, cmd: &Cmd) -> Option<redis::RedisError> {
    let slot = quorumd_core::layout::key_slot(routing_key(cmd)?) as u16;
    let why = shards.down_for(slot)?;
    Some(redis::RedisError::from((
        redis::ErrorKind::Client,
        SHARD_DOWN,
        why,
    )))
}

/// The route to the master that owns `slot`, along the cluster client's slot map.
fn master_of(slot: u16) -> SingleNodeRoutingInfo {
    SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master))
}

/// A master as `CLUSTER SLOTS` names it: its address and the slots it owns.
struct Master {
    addr: String,
    slots: Vec<SlotRange>,
}

impl Master {
    /// Routes a request to this master through one of its slots, so that the cluster client
    /// takes it there along its own slot map, and refreshes that map if the master moved.
    fn route(&self) -> SingleNodeRoutingInfo {
        master_of(self.slots.first().map_or(0, |r| *r.start()))
    }
}

/// The cluster's masters (per `CLUSTER SLOTS`), in address order. Asked of every master the
/// shard table knows as up at once, the first answer taken, so that a master that just died
/// (and that the client may still route to) costs no wait; of a random master before the
/// first probe.
async fn masters(c: &ClusterConnection, shards: &Shards) -> RedisResult<Vec<Master>> {
    let slots = redis::cmd("CLUSTER").arg("SLOTS").clone();
    let mut routes: Vec<SingleNodeRoutingInfo> = shards
        .snapshot()
        .iter()
        .filter(|s| s.up)
        .filter_map(|s| s.slots.first())
        .map(|&(slot, _)| master_of(slot))
        .collect();
    if routes.is_empty() {
        routes.push(SingleNodeRoutingInfo::RandomPrimary);
    }
    let asks = routes.into_iter().map(|route| {
        let (mut c, slots) = (c.clone(), slots.clone());
        Box::pin(async move { c.route_command(slots, RoutingInfo::SingleNode(route)).await })
    });
    let (reply, _) = futures::future::select_ok(asks).await?;
    let bad = |what: &str| client_error("CLUSTER SLOTS answered", what.to_string());
    let Value::Array(ranges) = reply else {
        return Err(bad("not an array"));
    };
    let mut masters: BTreeMap<String, Vec<SlotRange>> = BTreeMap::new();
    for range in ranges {
        let Value::Array(parts) = range else {
            return Err(bad("a range that is not an array"));
        };
        let [Value::Int(start), Value::Int(end), Value::Array(master), ..] = parts.as_slice()
        else {
            return Err(bad("a range without bounds and master"));
        };
        let [host, Value::Int(port), ..] = master.as_slice() else {
            return Err(bad("a master without host and port"));
        };
        let host = String::from_utf8_lossy(&bytes(host.clone())).into_owned();
        masters
            .entry(format!("{host}:{port}"))
            .or_default()
            .push((*start as u16)..=(*end as u16));
    }
    Ok(masters
        .into_iter()
        .map(|(addr, slots)| Master { addr, slots })
        .collect())
}

fn bytes(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        other => format!("{other:?}").into_bytes(),
    }
}

/// Whether `cmd` is a `SCRIPT LOAD`.
fn is_script_load(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter().map(|a| match a {
        redis::Arg::Simple(bytes) => bytes,
        _ => &[],
    });
    args.next()
        .is_some_and(|a| a.eq_ignore_ascii_case(b"SCRIPT"))
        && args.next().is_some_and(|a| a.eq_ignore_ascii_case(b"LOAD"))
}

/// `SCRIPT LOAD` on a cluster (a script call answered `NOSCRIPT`): sent to each master the
/// shard table knows as serving, each tracked by its first slot, instead of the cluster
/// client's fan-out to every node. The client would wait the node timeout for a master that is
/// down, and the failure of a keyless command makes the whole replica suspect, so the script
/// call that needed the load failed on the masters that were up too. A master that fails now is
/// blamed for its own shard. Answers the SHA-1 when any master loaded it: the script call sent
/// again goes to its key's master and fails by itself if that one lacks it. Before the first
/// probe (no table) the client sends it as it would.
async fn script_load(c: &ClusterConnection, shards: &Shards, cmd: &Cmd) -> RedisResult<Value> {
    let serving: Vec<u16> = shards
        .snapshot()
        .iter()
        .filter(|s| s.up && !s.suspect)
        .filter_map(|s| s.slots.first().map(|&(first, _)| first))
        .collect();
    if serving.is_empty() {
        return c.clone().req_packed_command(cmd).await;
    }
    let loads = serving.into_iter().map(|slot| {
        let (mut c, cmd) = (c.clone(), cmd.clone());
        async move {
            let tracked = [Some(slot)];
            let attempts = sending(&tracked);
            let reply = c
                .route_command(cmd, RoutingInfo::SingleNode(master_of(slot)))
                .await;
            settle(attempts, &tracked, &reply);
            reply
        }
    });
    let mut failed = None;
    for reply in futures::future::join_all(loads).await {
        match reply {
            Ok(sha) => return Ok(sha),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    Err(failed.unwrap_or_else(|| client_error("SCRIPT LOAD", "sent to no master".into())))
}

impl ConnectionLike for NodeConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            NodeConn::Server(c) => c.req_packed_command(cmd),
            NodeConn::Cluster(c, shards) if is_script_load(cmd) => {
                let (c, shards) = (c.clone(), shards.clone());
                Box::pin(async move { script_load(&c, &shards, cmd).await })
            }
            NodeConn::Cluster(c, shards) => match refusal(shards, cmd) {
                Some(refused) => Box::pin(async move { Err(refused) }),
                None => {
                    let slot = [slot_of_cmd(cmd)];
                    let attempts = sending(&slot);
                    let reply = c.req_packed_command(cmd);
                    Box::pin(async move {
                        let reply = reply.await;
                        settle(attempts, &slot, &reply);
                        reply
                    })
                }
            },
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            NodeConn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            // A transaction must stay one request (and one slot: the cluster refuses it
            // otherwise). A plain pipeline is only a batch: its commands go one by one, each
            // to its slot's master, all in flight at once on the multiplexed connections, and
            // an error reply stays in its place, as a server's pipeline reply keeps it.
            NodeConn::Cluster(c, shards) => {
                let (mut c, shards) = (c.clone(), shards.clone());
                Box::pin(async move {
                    if pipeline.is_transaction() {
                        if let Some(refused) =
                            pipeline.cmd_iter().find_map(|cmd| refusal(&shards, cmd))
                        {
                            return Err(refused);
                        }
                        // One slot: its first keyed command's.
                        let slot = [pipeline.cmd_iter().find_map(slot_of_cmd)];
                        let attempts = sending(&slot);
                        let replies = c.req_packed_commands(pipeline, offset, count).await;
                        settle(attempts, &slot, &replies);
                        return replies;
                    }
                    let answers = pipeline_per_master(&mut c, &shards, pipeline).await?;
                    Ok(answers.into_iter().skip(offset).take(count).collect())
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            NodeConn::Server(c) => c.get_db(),
            NodeConn::Cluster(..) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routing_key_is_the_one_the_cluster_routes_by() {
        let key = |c: &Cmd| routing_key(c).map(|k| String::from_utf8_lossy(k).into_owned());
        assert_eq!(key(redis::cmd("GET").arg("k")), Some("k".into()));
        assert_eq!(
            key(redis::cmd("evalsha").arg("sha").arg(2).arg("a").arg("b")),
            Some("a".into())
        );
        assert_eq!(key(redis::cmd("EVALSHA").arg("sha").arg(0).arg("x")), None);
        assert_eq!(
            key(redis::cmd("MEMORY").arg("USAGE").arg("m")),
            Some("m".into())
        );
        assert_eq!(key(redis::cmd("INFO").arg("server")), None);
        assert_eq!(key(&redis::cmd("PING")), None);
        assert!(is_script_load(
            redis::cmd("script").arg("load").arg("return 1")
        ));
        assert!(!is_script_load(redis::cmd("SCRIPT").arg("FLUSH")));
        assert!(!is_script_load(redis::cmd("GET").arg("LOAD")));
    }

    #[tokio::test]
    async fn a_call_names_the_slots_it_still_waits_on() {
        let a = Arc::new(Attempts::default());
        track(a.clone(), async {
            let x = sending(&[Some(1), Some(2)]);
            settle(x, &[Some(1)], &Ok::<_, redis::RedisError>(()));
            let y = sending(&[Some(3)]);
            let refused = redis::RedisError::from((redis::ErrorKind::Io, "reset"));
            settle(y, &[Some(3)], &Err::<(), _>(refused));
        })
        .await;
        assert_eq!(a.unanswered(), Some(vec![2, 3]));
        assert_eq!(a.touched(), Some(vec![1, 2, 3]));
        // A keyless command makes the call no one master's.
        let b = Arc::new(Attempts::default());
        track(b.clone(), async {
            sending(&[Some(1), None]);
        })
        .await;
        assert_eq!(b.unanswered(), None);
        // Outside a tracked call nothing is recorded, and nothing breaks.
        assert!(sending(&[Some(1)]).is_none());
        assert_eq!(Attempts::default().unanswered(), None);
    }

    #[test]
    fn only_commands_for_a_down_shard_are_refused() {
        use crate::pool::ShardStatus;
        let shards = Shards::default();
        let slot = quorumd_core::layout::key_slot(b"k") as u16;
        shards.update(vec![ShardStatus {
            master: "127.0.0.1:7000".into(),
            slots: vec![(slot, slot)],
            up: false,
            last_error: None,
            run_id: None,
            suspect: false,
            latency_ms: None,
        }]);
        let refused = refusal(&shards, redis::cmd("GET").arg("k")).expect("refused");
        assert_eq!(refused.kind(), redis::ErrorKind::Client);
        assert!(refused.to_string().contains("127.0.0.1:7000"), "{refused}");
        assert!(refusal(&shards, redis::cmd("GET").arg("other")).is_none());
        assert!(refusal(&shards, redis::cmd("INFO").arg("k")).is_none());
    }
}
