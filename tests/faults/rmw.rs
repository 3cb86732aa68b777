//! The read-modify-write workload of the Redis protocol: clients send `INCR`/`INCRBY`,
//! `APPEND` of unique tokens, `RPUSH` of unique items and `LPOP`, `ZINCRBY`,
//! `MULTI`/`EXEC` (`INCR` + `RPUSH` together), and `XADD` of unique items and `XREADGROUP >`
//! of a consumer group, one consumer per client, over RESP while a seeded plan pauses and kills
//! nodes; `checker::rmw` then compares what they saw with the converged state.
//!
//! Two groups of keys run side by side under the same plan, and exactly once must hold for
//! both:
//! - **in-process** keys, written through two quorumd instances of this test process, which
//!   share the per-key turns of read-modify-writes (`store/rmw.rs`);
//! - **cross-process** keys, written through one of those instances and a `quorumd run`
//!   process of its own: only the ballots of `store/ballot.rs` order their writers (before
//!   them, a compare-and-set alone lost and repeated changes here in every seed).

use crate::common::test_config;
use crate::run::{RunResult, converge, heal, into_inner, shut_down, start_instances};
use quorumd::resp::frame::Frame;
use quorumd_testkit::checker::rmw::{
    self, Append, Finals, History, Incr, Pop, Push, StreamFinal, Tx,
};
use quorumd_testkit::nemesis::Nemesis;
use quorumd_testkit::nemesis::plan::{FaultKind, Plan, PlanSettings};
use quorumd_testkit::resp::RespClient;
use quorumd_testkit::tools::QuorumdProcess;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sorted-set members the clients increment.
const MEMBERS: usize = 2;
/// The consumer group of each group's stream.
const STREAM_GROUP: &str = "g";

pub struct RmwRun {
    pub seed: u64,
    pub duration: Duration,
    /// The negative control end to end: one in-process client sends its commands to other
    /// keys than those it records them for, as a service that acknowledges writes and drops
    /// them would. The checker must then report lost writes.
    pub lie: bool,
}

impl RmwRun {
    pub fn new(seed: u64) -> RmwRun {
        RmwRun {
            seed,
            duration: Duration::from_secs(6),
            lie: false,
        }
    }

    pub async fn run(&self) -> RunResult {
        let mut nemesis = Nemesis::start(3).await.expect("start nodes and proxies");
        let mut cfg = test_config(nemesis.urls());
        // Background exchanges on, as in production, so a restarted node catches up.
        cfg.sync.exchange_interval_ms = 500;
        cfg.sync.in_flight_window_ms = 300;
        let (apps, _) = start_instances(&cfg, 2).await;
        let urls = nemesis.urls();
        let other = tokio::task::spawn_blocking(move || {
            QuorumdProcess::start(
                env!("CARGO_BIN_EXE_quorumd"),
                &urls,
                // The timeouts of `test_config`, so a paused node costs this instance what it
                // costs the in-process ones.
                "[timeouts]\nnode_ms = 400\nrequest_ms = 3000\nconnect_ms = 400\n\
             health_interval_ms = 100\nreconnect_min_ms = 20\nreconnect_max_ms = 300\n",
            )
        })
        .await
        .unwrap();
        let a = apps[0].resp_addr().expect("resp on");
        let b = apps[1].resp_addr().expect("resp on");
        let kinds = [FaultKind::Pause, FaultKind::Kill];
        let plan = Plan::generate(self.seed, &PlanSettings::new(3, self.duration, &kinds));
        let stop = Arc::new(AtomicBool::new(false));
        // The streams' groups exist before any fault, so every XREADGROUP is about delivery.
        for (group, addr) in [("in", a), ("x", other.resp)] {
            let mut c = RespClient::connect(addr).await;
            let stream = &keys(group)[6];
            let create = ["XGROUP", "CREATE", stream, STREAM_GROUP, "$", "MKSTREAM"];
            let reply = call(&mut c, &create).await;
            assert_eq!(reply, Some(Frame::ok()), "XGROUP CREATE {stream}");
        }
        let inproc = Arc::new(Mutex::new(History::default()));
        let cross = Arc::new(Mutex::new(History::default()));
        let mut tasks = Vec::new();
        for (k, addr) in [a, b, a, b].into_iter().enumerate() {
            let lie = self.lie && k == 0;
            tasks.push(client("in", k, addr, self.seed, lie, &inproc, &stop));
        }
        for (k, addr) in [a, other.resp, a, other.resp].into_iter().enumerate() {
            tasks.push(client("x", k, addr, self.seed, false, &cross, &stop));
        }
        let faults = async {
            let report = nemesis.play(&plan, std::future::pending()).await;
            stop.store(true, Ordering::Relaxed);
            report
        };
        let faults = faults.await;
        for t in tasks {
            t.await.expect("client task");
        }
        let (inproc, cross) = (into_inner(inproc), into_inner(cross));
        let mut violations = heal(&mut nemesis, &faults);
        let convergence = converge(&apps[0]).await;
        if convergence.is_none() {
            violations.push("replicas did not converge within 60 s of the heal".into());
        }
        // Every instance must answer the same state: the three read at quorum after a clean
        // exchange.
        let mut finals = Vec::new();
        for addr in [a, b, other.resp] {
            finals.push((read_finals(addr, "in").await, read_finals(addr, "x").await));
        }
        for (addr, f) in [b, other.resp].iter().zip(&finals[1..]) {
            if format!("{f:?}") != format!("{:?}", finals[0]) {
                violations.push(format!(
                    "{addr} answers another state than {a}: {f:?} / {:?}",
                    finals[0]
                ));
            }
        }
        let (in_finals, x_finals) = finals.swap_remove(0);
        violations.extend(
            rmw::check(&inproc, &in_finals)
                .iter()
                .map(|v| v.to_string()),
        );
        let cross_process = rmw::check(&cross, &x_finals);
        violations.extend(cross_process.iter().map(|v| format!("cross-process: {v}")));
        drop(other);
        shut_down(apps).await;
        let mut run = RunResult {
            convergence,
            ..RunResult::new(
                self.seed,
                inproc.operations() + cross.operations(),
                faults,
                violations,
            )
        };
        run.counters = [
            ("in-process ops", inproc.operations()),
            ("cross-process ops", cross.operations()),
            ("cross-process violations", cross_process.len()),
            (
                "stream entries delivered and heard",
                delivered(&inproc) + delivered(&cross),
            ),
        ]
        .into();
        run
    }
}

/// The keys of a group.
fn keys(group: &str) -> [String; 7] {
    ["ctr", "str", "list", "z", "txa", "txlog", "xs"].map(|k| format!("{group}:{k}"))
}

/// One client: a mix of read-modify-writes on its group's keys, one at a time, until `stop`.
/// `lie`: send them to the keys of group "lost" instead (the negative control).
fn client(
    group: &'static str,
    k: usize,
    addr: SocketAddr,
    seed: u64,
    lie: bool,
    history: &Arc<Mutex<History>>,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (history, stop) = (history.clone(), stop.clone());
    tokio::spawn(async move {
        let [ctr, string, list, z, txa, txlog, stream] = keys(group);
        let sent = keys(if lie { "lost" } else { group });
        let [
            to_ctr,
            to_string,
            to_list,
            to_z,
            to_txa,
            to_txlog,
            to_stream,
        ] = &sent;
        let consumer = format!("c{k}");
        let mut c = RespClient::connect(addr).await;
        // Cheap per-client LCG: the mix only has to vary, not to be random.
        let mut state = seed.wrapping_mul(31).wrapping_add(k as u64 + 1);
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = state >> 33;
            seq += 1;
            let unique = format!("{group}{k}.{seq}");
            match r % 12 {
                0..=1 => {
                    let delta = 1 + (r / 10 % 5) as i64;
                    let reply = if delta == 1 {
                        call(&mut c, &["INCR", to_ctr]).await
                    } else {
                        call(&mut c, &["INCRBY", to_ctr, &delta.to_string()]).await
                    };
                    let reply = integer(&reply);
                    history.lock().unwrap().incrs.push(Incr {
                        key: ctr.clone(),
                        member: None,
                        delta,
                        reply,
                    });
                }
                2 => {
                    let member = format!("m{}", r / 10 % MEMBERS as u64);
                    let delta = 1 + (r / 100 % 3) as i64;
                    let reply = call(&mut c, &["ZINCRBY", to_z, &delta.to_string(), &member]).await;
                    let reply = score(&reply);
                    history.lock().unwrap().incrs.push(Incr {
                        key: z.clone(),
                        member: Some(member),
                        delta,
                        reply,
                    });
                }
                3..=4 => {
                    let reply = call(&mut c, &["APPEND", to_string, &rmw::framed(&unique)]).await;
                    history.lock().unwrap().appends.push(Append {
                        key: string.clone(),
                        token: unique,
                        acked: integer(&reply).is_some(),
                    });
                }
                5..=6 => {
                    let reply = call(&mut c, &["RPUSH", to_list, &unique]).await;
                    history.lock().unwrap().pushes.push(Push {
                        key: list.clone(),
                        item: unique,
                        acked: integer(&reply).is_some(),
                    });
                }
                7 => {
                    let pop = match call(&mut c, &["LPOP", to_list]).await {
                        Some(Frame::Bulk(b)) => Pop::Item(String::from_utf8_lossy(&b).into()),
                        Some(Frame::Null) => Pop::Empty,
                        _ => Pop::Unknown,
                    };
                    let mut h = history.lock().unwrap();
                    h.pops.entry(list.clone()).or_default().push(pop);
                }
                10 => {
                    let reply = call(&mut c, &["XADD", to_stream, "*", "i", &unique]).await;
                    history.lock().unwrap().stream_adds.push(Push {
                        key: stream.clone(),
                        item: unique,
                        acked: matches!(reply, Some(Frame::Bulk(_))),
                    });
                }
                11 => {
                    let args = [
                        "XREADGROUP",
                        "GROUP",
                        STREAM_GROUP,
                        &consumer,
                        "COUNT",
                        "1",
                        "STREAMS",
                        to_stream,
                        ">",
                    ];
                    let delivery = match call(&mut c, &args).await {
                        Some(Frame::Null | Frame::NullArray) => Pop::Empty,
                        Some(Frame::Array(streams)) => match delivered_items(&streams).as_slice() {
                            [item] => Pop::Item(item.clone()),
                            _ => Pop::Unknown,
                        },
                        _ => Pop::Unknown,
                    };
                    let mut h = history.lock().unwrap();
                    h.deliveries
                        .entry(stream.clone())
                        .or_default()
                        .push(delivery);
                }
                _ => {
                    let reply = transaction(&mut c, to_txa, to_txlog, &unique).await;
                    history.lock().unwrap().txs.push(Tx {
                        counter: txa.clone(),
                        log: txlog.clone(),
                        item: unique,
                        reply,
                    });
                }
            }
        }
    })
}

/// XREADGROUPs that delivered an entry and whose reply came.
fn delivered(h: &History) -> usize {
    let all = h.deliveries.values().flatten();
    all.filter(|d| matches!(d, Pop::Item(_))).count()
}

fn integer(reply: &Option<Frame>) -> Option<i64> {
    match reply {
        Some(Frame::Integer(n)) => Some(*n),
        _ => None,
    }
}

/// ZINCRBY's new score (a bulk string in RESP2); the deltas are whole numbers.
fn score(reply: &Option<Frame>) -> Option<i64> {
    match reply {
        Some(Frame::Bulk(b)) => std::str::from_utf8(b)
            .ok()?
            .parse::<f64>()
            .ok()
            .map(|f| f as i64),
        Some(Frame::Score(f)) => Some(*f as i64),
        _ => None,
    }
}

/// The `i` field of every entry of an `XREADGROUP` or `XRANGE` reply's entries.
fn entry_items(entries: &[Frame]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match e {
            Frame::Array(id_and_fields) => match id_and_fields.as_slice() {
                [_, Frame::Array(fields)] => match fields.as_slice() {
                    [_, Frame::Bulk(item)] => Some(String::from_utf8_lossy(item).into()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The items an `XREADGROUP` of one stream delivered: `[[key, entries]]`.
fn delivered_items(streams: &[Frame]) -> Vec<String> {
    match streams {
        [Frame::Array(key_and_entries)] => match key_and_entries.as_slice() {
            [_, Frame::Array(entries)] => entry_items(entries),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The entry IDs of an `XRANGE` reply, beside their items.
fn entry_ids(entries: &[Frame]) -> Vec<Vec<u8>> {
    entries
        .iter()
        .filter_map(|e| match e {
            Frame::Array(id_and_fields) => match id_and_fields.first() {
                Some(Frame::Bulk(id)) => Some(id.to_vec()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The group's keys as `addr` answers them.
async fn read_finals(addr: SocketAddr, group: &str) -> Finals {
    let [ctr, string, list, z, txa, txlog, stream] = keys(group);
    let mut c = RespClient::connect(addr).await;
    // An error just after the heal (a node still recovering) is asked again, for a while.
    let mut ask = async |args: &[&str]| {
        for _ in 0..100 {
            match call(&mut c, args).await {
                Some(Frame::Error(e)) => eprintln!("{addr}: {args:?} answered {e} after the heal"),
                Some(reply) => return reply,
                None => panic!("{addr}: no answer to {args:?} after the heal"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{addr}: {args:?} kept answering errors for 10 s after the heal")
    };
    let mut f = Finals::default();
    for key in [&ctr, &txa] {
        let n = match ask(&["GET", key]).await {
            Frame::Null => 0,
            Frame::Bulk(b) => std::str::from_utf8(&b).unwrap().parse().unwrap(),
            other => panic!("GET {key} answered {other:?}"),
        };
        f.counters.insert((key.clone(), None), n);
    }
    for m in 0..MEMBERS {
        let member = format!("m{m}");
        let n = score(&Some(ask(&["ZSCORE", &z, &member]).await)).unwrap_or(0);
        f.counters.insert((z.clone(), Some(member)), n);
    }
    let text = match ask(&["GET", &string]).await {
        Frame::Null => String::new(),
        Frame::Bulk(b) => String::from_utf8_lossy(&b).into(),
        other => panic!("GET {string} answered {other:?}"),
    };
    f.strings.insert(string.clone(), text);
    for key in [&list, &txlog] {
        let items = match ask(&["LRANGE", key, "0", "-1"]).await {
            Frame::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Frame::Bulk(b) => String::from_utf8_lossy(&b).into(),
                    other => panic!("LRANGE {key} element {other:?}"),
                })
                .collect(),
            other => panic!("LRANGE {key} answered {other:?}"),
        };
        f.lists.insert(key.clone(), items);
    }
    let entries = match ask(&["XRANGE", &stream, "-", "+"]).await {
        Frame::Array(entries) => entries,
        other => panic!("XRANGE {stream} answered {other:?}"),
    };
    let (ids, items) = (entry_ids(&entries), entry_items(&entries));
    assert_eq!(ids.len(), entries.len(), "XRANGE {stream}: {entries:?}");
    assert_eq!(items.len(), entries.len(), "XRANGE {stream}: {entries:?}");
    let pending = match ask(&["XPENDING", &stream, STREAM_GROUP, "-", "+", "1000000"]).await {
        Frame::Array(rows) => rows
            .iter()
            .map(|row| match row {
                Frame::Array(fields) => match fields.first() {
                    Some(Frame::Bulk(id)) => match ids.iter().position(|i| i[..] == id[..]) {
                        Some(at) => items[at].clone(),
                        None => format!("<pending {} not in the stream>", id.escape_ascii()),
                    },
                    other => panic!("XPENDING {stream} row {other:?}"),
                },
                other => panic!("XPENDING {stream} row {other:?}"),
            })
            .collect(),
        other => panic!("XPENDING {stream} answered {other:?}"),
    };
    f.streams
        .insert(stream.clone(), StreamFinal { items, pending });
    f
}

/// How long a command may take before the client gives up on it (quorumd answers within its
/// 3 s request limit); the connection is then replaced, so a late reply is never taken for the
/// next command's (`RespClient::try_call`).
const REPLY_LIMIT: Duration = Duration::from_secs(5);

async fn call(c: &mut RespClient, args: &[&str]) -> Option<Frame> {
    c.try_call(args, REPLY_LIMIT).await
}

/// `MULTI; INCR counter; RPUSH log item; EXEC`: the INCR's reply when EXEC answered both
/// without an error. Anything unexpected drops the connection, so no half-queued transaction
/// carries over.
async fn transaction(c: &mut RespClient, counter: &str, log: &str, item: &str) -> Option<i64> {
    let queued = Some(Frame::Simple("QUEUED".into()));
    if call(c, &["MULTI"]).await != Some(Frame::ok())
        || call(c, &["INCR", counter]).await != queued
        || call(c, &["RPUSH", log, item]).await != queued
    {
        c.reconnect().await;
        return None;
    }
    match call(c, &["EXEC"]).await {
        Some(Frame::Array(r)) => match r.as_slice() {
            [Frame::Integer(n), Frame::Integer(_)] => Some(*n),
            _ => None,
        },
        _ => None,
    }
}
