//! The ballots of read-modify-writes (`store/ballot.rs`, ARCHITECTURE.md "Read-modify-writes
//! across processes"): the node scripts' promise and accept rules on a real redis-server, and
//! increments through two quorumd processes at once.

use quorumd_testkit::cluster as common;

use common::TestCluster;
use quorumd::calls;
use quorumd::calls::store::{NodeCondition, Prepared, WriteOutcome};
use quorumd::hlc::Version;
use quorumd::meta::Meta;
use quorumd::resp::frame::Frame;
use quorumd_testkit::resp::RespClient;
use quorumd_testkit::tools::QuorumdProcess;
use redis::AsyncCommands;
use std::collections::HashSet;
use std::net::SocketAddr;

fn ballot(ms: u64, writer: u64) -> Version {
    Version::first_in_ms(ms, writer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_its_promise_to_one_writer_at_a_time() {
    let tc = TestCluster::start(1).await;
    let store = tc.app().store();
    let node = store.pool().node(0).clone();
    let loc = store.locate(b"promised").unwrap();
    // Where `promise.lua` keeps the key's promise.
    let promise_key = format!("{}|p|promised", loc.meta_key);
    let mut direct = tc.direct(0).await;
    let (w1, w2) = (1, 2);
    let ttl = 60_000;

    let first = calls::store::prepare(&node, &loc, ballot(100, w1), ttl)
        .await
        .unwrap();
    assert_eq!(
        first,
        Prepared::Promised(calls::store::NodeTypedRead {
            meta: None,
            value: None
        })
    );
    let left: i64 = direct.pttl(&promise_key).await.unwrap();
    assert!(left > 0 && left <= ttl as i64, "promise lifetime {left} ms");
    // Another writer is refused while the promise lives, with a higher ballot or a lower one.
    for other in [ballot(200, w2), ballot(50, w2)] {
        assert_eq!(
            calls::store::prepare(&node, &loc, other, ttl)
                .await
                .unwrap(),
            Prepared::Refused(ballot(100, w1))
        );
    }
    // The same writer's next attempt takes the promise over.
    assert!(matches!(
        calls::store::prepare(&node, &loc, ballot(150, w1), ttl)
            .await
            .unwrap(),
        Prepared::Promised(_)
    ));

    // A write under a lower ballot than the one promised is refused and changes nothing.
    let stale = Meta::for_string(b"promised", ballot(120, w1), Some(b"stale"), None);
    let refused = calls::store::write(&node, &loc, &stale, b"stale", &NodeCondition::Ballot(None))
        .await
        .unwrap();
    assert_eq!(refused, WriteOutcome::Preempted(ballot(150, w1)));
    let value: Option<String> = direct.get("promised").await.unwrap();
    assert_eq!(value, None);

    // The promised ballot's write lands and takes the promise away with it.
    let chosen = Meta::for_string(b"promised", ballot(150, w1), Some(b"one"), None);
    let applied = calls::store::write(&node, &loc, &chosen, b"one", &NodeCondition::Ballot(None))
        .await
        .unwrap();
    assert_eq!(applied, WriteOutcome::Applied);
    let value: Option<String> = direct.get("promised").await.unwrap();
    assert_eq!(value.as_deref(), Some("one"));
    let exists: bool = direct.exists(&promise_key).await.unwrap();
    assert!(!exists, "the write left its promise behind");

    // A later writer that read the old state loses to the stored version, promise or not.
    let late = Meta::for_string(b"promised", ballot(300, w2), Some(b"late"), None);
    let cond = NodeCondition::Ballot(Some(ballot(90, w2)));
    assert!(matches!(
        calls::store::write(&node, &loc, &late, b"late", &cond)
            .await
            .unwrap(),
        WriteOutcome::ConditionFailed(_)
    ));

    // A release withdraws only the releasing writer's own promise.
    assert!(matches!(
        calls::store::prepare(&node, &loc, ballot(400, w2), ttl)
            .await
            .unwrap(),
        Prepared::Promised(_)
    ));
    calls::store::release_promise(&node, &loc, ballot(400, w1))
        .await
        .unwrap();
    let exists: bool = direct.exists(&promise_key).await.unwrap();
    assert!(exists, "another writer's release withdrew the promise");
    calls::store::release_promise(&node, &loc, ballot(400, w2))
        .await
        .unwrap();
    let exists: bool = direct.exists(&promise_key).await.unwrap();
    assert!(!exists, "the writer's release left its promise");
    tc.shutdown().await;
}

/// Three nodes, quorumd in-process and a second quorumd process over them: the cluster, the
/// second process (stopped when dropped), and the four client addresses the tests use, two
/// through each process.
fn two_processes(tc: &TestCluster) -> (QuorumdProcess, [SocketAddr; 4]) {
    let second = QuorumdProcess::start(env!("CARGO_BIN_EXE_quorumd"), &tc.cluster.urls(), "");
    let one = tc.app().resp_addr().expect("resp on");
    let addrs = [one, second.resp, one, second.resp];
    (second, addrs)
}

/// `count` members `m0`.. added to the set `key` through `c`.
async fn fill_set(c: &mut RespClient, key: &str, count: usize) -> Vec<String> {
    let members: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
    let line = format!("SADD {key} {}", members.join(" "));
    assert_eq!(c.cmd(&line).await, Frame::Integer(count as i64));
    members
}

/// INCR and APPEND on the same keys from clients of two quorumd processes at once: every
/// acknowledged INCR answered a value no other did, the counter ends at the number of
/// acknowledged INCRs, and each acknowledged APPEND's token is in the string exactly once.
/// Without ballots, writers that read the same version could both win on different nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn increments_through_two_processes_are_each_applied_once() {
    let tc = TestCluster::start(3).await;
    let (second, addrs) = two_processes(&tc);
    let one = addrs[0];
    let clients: Vec<_> = addrs
        .into_iter()
        .enumerate()
        .map(|(k, addr)| {
            tokio::spawn(async move {
                let mut c = RespClient::connect(addr).await;
                let (mut replies, mut tokens, mut errors) = (Vec::new(), Vec::new(), 0);
                for i in 0..60 {
                    match c.cmd("INCR ballot:ctr").await {
                        Frame::Integer(n) => replies.push(n),
                        Frame::Error(_) => errors += 1,
                        other => panic!("INCR answered {other:?}"),
                    }
                    let token = format!("<{k}.{i}>");
                    match c.cmd(&format!("APPEND ballot:log {token}")).await {
                        Frame::Integer(_) => tokens.push(token),
                        Frame::Error(_) => errors += 1,
                        other => panic!("APPEND answered {other:?}"),
                    }
                }
                (replies, tokens, errors)
            })
        })
        .collect();
    let (mut replies, mut tokens, mut errors) = (Vec::new(), Vec::new(), 0);
    for c in clients {
        let (r, t, e) = c.await.unwrap();
        replies.extend(r);
        tokens.extend(t);
        errors += e;
    }
    eprintln!(
        "{} INCRs and {} APPENDs acknowledged, {errors} errors",
        replies.len(),
        tokens.len()
    );
    // Refusals under contention are allowed (the client is told); silent loss is not.
    assert!(errors < 40, "{errors} of 480 commands failed");
    let distinct: HashSet<i64> = replies.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        replies.len(),
        "two INCRs answered one value"
    );
    let mut c = RespClient::connect(one).await;
    let Frame::Bulk(counter) = c.cmd("GET ballot:ctr").await else {
        panic!("the counter is gone")
    };
    let counter: i64 = std::str::from_utf8(&counter).unwrap().parse().unwrap();
    // An INCR that answered an error may or may not have counted.
    let acked = replies.len() as i64;
    assert!(
        (acked..=acked + errors).contains(&counter),
        "counter {counter}, {acked} INCRs acknowledged, {errors} errors"
    );
    let Frame::Bulk(log) = c.cmd("GET ballot:log").await else {
        panic!("the log is gone")
    };
    let log = String::from_utf8(log.to_vec()).unwrap();
    for token in &tokens {
        assert_eq!(log.matches(token.as_str()).count(), 1, "{token} in {log}");
    }
    drop(second);
    tc.shutdown().await;
}

/// SPOP of one set from clients of two quorumd processes at once: every member is answered
/// to exactly one client, none twice and none lost, and the emptied set is gone (a Redis set,
/// a versioned value under ballots; as a CRDT, two concurrent SPOPs could answer one member).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_spops_through_two_processes_hand_out_each_member_once() {
    let tc = TestCluster::start(3).await;
    let (second, addrs) = two_processes(&tc);
    let mut c = RespClient::connect(addrs[0]).await;
    let members = fill_set(&mut c, "ballot:pool", 120).await;
    let clients: Vec<_> = addrs
        .into_iter()
        .map(|addr| {
            tokio::spawn(async move {
                let mut c = RespClient::connect(addr).await;
                let (mut popped, mut errors) = (Vec::new(), 0);
                loop {
                    match c.cmd("SPOP ballot:pool").await {
                        Frame::Bulk(m) => popped.push(String::from_utf8(m.to_vec()).unwrap()),
                        Frame::Null => return (popped, errors),
                        Frame::Error(_) => errors += 1,
                        other => panic!("SPOP answered {other:?}"),
                    }
                    assert!(errors < 50, "SPOP keeps failing");
                }
            })
        })
        .collect();
    let (mut popped, mut errors) = (Vec::new(), 0);
    for c in clients {
        let (p, e) = c.await.unwrap();
        popped.extend(p);
        errors += e;
    }
    let distinct: HashSet<&String> = popped.iter().collect();
    assert_eq!(
        distinct.len(),
        popped.len(),
        "a member was handed out twice"
    );
    // A pop that answered an error may have taken its member.
    assert!(
        popped.len() + errors >= members.len(),
        "{} popped, {errors} errors, {} members",
        popped.len(),
        members.len()
    );
    assert_eq!(c.cmd("EXISTS ballot:pool").await, Frame::Integer(0));
    drop(second);
    tc.shutdown().await;
}

/// SMOVE back and forth between two sets from clients of two quorumd processes at once: a
/// member may end up in both sets, never in neither. An add to the destination, then a removal
/// from the source, each a read-modify-write of its own key, loses members here: a concurrent
/// SMOVE the other way can find the member still in this source, take it from the destination,
/// and leave it to this one's removal. SMOVE is one transfer holding both keys' promises.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_smoves_through_two_processes_never_lose_a_member() {
    let tc = TestCluster::start(3).await;
    let (second, addrs) = two_processes(&tc);
    let mut c = RespClient::connect(addrs[0]).await;
    let members = fill_set(&mut c, "ballot:left", 20).await;
    let clients: Vec<_> = addrs
        .into_iter()
        .enumerate()
        .map(|(k, addr)| {
            tokio::spawn(async move {
                let mut c = RespClient::connect(addr).await;
                // A fixed xorshift per client: the same interleaving of choices every run.
                let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ (k as u64 + 1);
                let (mut moved, mut errors) = (0, 0);
                for _ in 0..60 {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    // Different bits for the two choices: `s % 30` and `s % 2` share parity.
                    let member = format!("m{}", (s >> 8) % 20);
                    let (from, to) = if (s >> 3) & 1 == 0 {
                        ("ballot:left", "ballot:right")
                    } else {
                        ("ballot:right", "ballot:left")
                    };
                    match c.cmd(&format!("SMOVE {from} {to} {member}")).await {
                        Frame::Integer(n) => moved += n,
                        Frame::Error(_) => errors += 1,
                        other => panic!("SMOVE answered {other:?}"),
                    }
                }
                (moved, errors)
            })
        })
        .collect();
    let (mut moved, mut errors) = (0, 0);
    for c in clients {
        let (m, e) = c.await.unwrap();
        moved += m;
        errors += e;
    }
    eprintln!("{moved} members moved, {errors} errors");
    assert!(moved > 0, "no SMOVE moved anything");
    assert!(errors < 40, "{errors} of 240 SMOVEs failed");
    let set = |frame: Frame| -> HashSet<String> {
        let Frame::Array(items) = frame else {
            panic!("SMEMBERS answered {frame:?}")
        };
        items
            .into_iter()
            .map(|i| match i {
                Frame::Bulk(m) => String::from_utf8(m.to_vec()).unwrap(),
                other => panic!("member {other:?}"),
            })
            .collect()
    };
    let left = set(c.cmd("SMEMBERS ballot:left").await);
    let right = set(c.cmd("SMEMBERS ballot:right").await);
    for m in &members {
        assert!(
            left.contains(m) || right.contains(m),
            "{m} is in neither set: left {left:?}, right {right:?}"
        );
    }
    assert!(left.union(&right).all(|m| members.contains(m)));
    drop(second);
    tc.shutdown().await;
}

/// XREADGROUP `>` on one consumer group from clients of two quorumd processes at once, while
/// another client adds entries: every entry is delivered to exactly one consumer, and the
/// group's pending list is exactly the delivered entries not acknowledged. XREADGROUP `>` is a
/// read-modify-write of the whole stream under the key's ballot; were it a read followed by a
/// plain write, two processes that read the same last-delivered ID would both hand out the
/// entries after it (a duplicate here), and one's pending entries would overwrite the other's
/// (a delivered, unacknowledged entry missing from XPENDING).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_xreadgroups_through_two_processes_deliver_each_entry_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const ENTRIES: usize = 120;
    let tc = TestCluster::start(3).await;
    let (second, addrs) = two_processes(&tc);
    let mut c = RespClient::connect(addrs[0]).await;
    assert_eq!(
        c.cmd("XGROUP CREATE ballot:stream g $ MKSTREAM").await,
        Frame::ok()
    );
    let added = Arc::new(AtomicBool::new(false));
    let producer = {
        let added = added.clone();
        let addr = addrs[1];
        tokio::spawn(async move {
            let mut c = RespClient::connect(addr).await;
            for i in 1..=ENTRIES {
                // An XADD answered with an error may have landed: retried, it is refused.
                loop {
                    match c.cmd(&format!("XADD ballot:stream {i}-1 n {i}")).await {
                        Frame::Bulk(_) => break,
                        Frame::Error(e) if e.contains("equal or smaller") => break,
                        Frame::Error(_) => continue,
                        other => panic!("XADD answered {other:?}"),
                    }
                }
            }
            added.store(true, Ordering::SeqCst);
        })
    };
    let consumers: Vec<_> = addrs
        .into_iter()
        .enumerate()
        .map(|(n, addr)| {
            let added = added.clone();
            tokio::spawn(async move {
                let mut c = RespClient::connect(addr).await;
                let (mut delivered, mut acked, mut errors) = (Vec::new(), Vec::new(), 0);
                // More than every entry means some came twice: stop, the check below fails.
                while delivered.len() <= ENTRIES {
                    let done = added.load(Ordering::SeqCst);
                    let line = format!("XREADGROUP GROUP g c{n} COUNT 3 STREAMS ballot:stream >");
                    let ids: Vec<String> = match c.cmd(&line).await {
                        Frame::Null | Frame::NullArray if done => {
                            return (delivered, acked, errors);
                        }
                        Frame::Null | Frame::NullArray => {
                            tokio::task::yield_now().await;
                            continue;
                        }
                        Frame::Array(streams) => entry_ids(&streams),
                        Frame::Error(_) => {
                            errors += 1;
                            assert!(errors < 50, "XREADGROUP keeps failing");
                            continue;
                        }
                        other => panic!("XREADGROUP answered {other:?}"),
                    };
                    // Every other entry is acknowledged (retried until answered: XACK of an
                    // acknowledged entry answers 0).
                    for id in ids.iter().step_by(2) {
                        loop {
                            match c.cmd(&format!("XACK ballot:stream g {id}")).await {
                                Frame::Integer(_) => break,
                                Frame::Error(_) => continue,
                                other => panic!("XACK answered {other:?}"),
                            }
                        }
                        acked.push(id.clone());
                    }
                    delivered.extend(ids);
                }
                (delivered, acked, errors)
            })
        })
        .collect();
    producer.await.unwrap();
    let (mut delivered, mut acked, mut errors) = (Vec::new(), HashSet::<String>::new(), 0);
    for c in consumers {
        let (d, a, e) = c.await.unwrap();
        delivered.extend(d);
        acked.extend(a);
        errors += e;
    }
    let distinct: HashSet<&String> = delivered.iter().collect();
    assert_eq!(
        distinct.len(),
        delivered.len(),
        "an entry was delivered twice"
    );
    let pending = match c.cmd("XPENDING ballot:stream g - + 1000").await {
        Frame::Array(items) => items
            .iter()
            .map(|e| match e {
                Frame::Array(v) => match &v[0] {
                    Frame::Bulk(id) => String::from_utf8(id.to_vec()).unwrap(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .collect::<HashSet<String>>(),
        other => panic!("XPENDING answered {other:?}"),
    };
    let unacked: HashSet<String> = distinct
        .iter()
        .filter(|id| !acked.contains(id.as_str()))
        .map(|id| id.to_string())
        .collect();
    // An XREADGROUP answered with an error may have delivered entries nobody saw: they are
    // pending. Every entry is either seen or pending.
    assert!(
        unacked.is_subset(&pending),
        "a delivered entry is not pending"
    );
    assert!(pending.iter().all(|id| !acked.contains(id)));
    assert_eq!(distinct.len() + (pending.len() - unacked.len()), ENTRIES);
    if errors == 0 {
        assert_eq!(pending, unacked);
        assert_eq!(delivered.len(), ENTRIES);
    }
    let summary = c.cmd("XPENDING ballot:stream g").await;
    let Frame::Array(summary) = summary else {
        panic!("{summary:?}");
    };
    assert_eq!(summary[0], Frame::Integer(pending.len() as i64));
    drop(second);
    tc.shutdown().await;
}

/// The entry IDs of an XREADGROUP reply (RESP2: [[key, [[id, fields], ...]], ...]).
fn entry_ids(streams: &[Frame]) -> Vec<String> {
    let mut ids = Vec::new();
    for s in streams {
        let Frame::Array(pair) = s else {
            panic!("{s:?}")
        };
        let Frame::Array(entries) = &pair[1] else {
            panic!("{pair:?}")
        };
        for e in entries {
            let Frame::Array(e) = e else { panic!("{e:?}") };
            let Frame::Bulk(id) = &e[0] else {
                panic!("{e:?}")
            };
            ids.push(String::from_utf8(id.to_vec()).unwrap());
        }
    }
    ids
}

/// Consumers blocked in BRPOP through two quorumd processes while producers push unique items
/// through both: every acknowledged item is delivered exactly once and nothing remains. It
/// catches a pop delivered twice (a wait that popped on each node, or a retried pop that
/// answered an item another consumer also got) and a wait that is never woken or retried (an
/// item left in the list).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocking_pops_through_two_processes_deliver_each_item_once() {
    const PER_PRODUCER: usize = 30;
    let tc = TestCluster::start(3).await;
    let (second, addrs) = two_processes(&tc);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consumers: Vec<_> = addrs
        .into_iter()
        .map(|addr| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut c = RespClient::connect(addr).await;
                let (mut got, mut errors) = (Vec::new(), 0);
                let started = std::time::Instant::now();
                // Bounded, so that a pop that never empties the list fails the test, not hangs.
                while got.len() <= 2 * PER_PRODUCER
                    && started.elapsed() < std::time::Duration::from_secs(60)
                {
                    match c.cmd("BRPOP bq:jobs 1").await {
                        Frame::Array(kv) if kv.len() == 2 => got.push(kv[1].clone()),
                        Frame::NullArray | Frame::Null
                            if done.load(std::sync::atomic::Ordering::SeqCst) =>
                        {
                            break;
                        }
                        Frame::NullArray | Frame::Null => {}
                        Frame::Error(_) => errors += 1,
                        other => panic!("BRPOP answered {other:?}"),
                    }
                }
                (got, errors)
            })
        })
        .collect();
    let producers: Vec<_> = [addrs[0], addrs[1]]
        .into_iter()
        .enumerate()
        .map(|(p, addr)| {
            tokio::spawn(async move {
                let mut c = RespClient::connect(addr).await;
                let mut acked = Vec::new();
                for i in 0..PER_PRODUCER {
                    let item = format!("p{p}-{i}");
                    if let Frame::Integer(_) = c.cmd(&format!("LPUSH bq:jobs {item}")).await {
                        acked.push(item);
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = HashSet::new();
    for p in producers {
        acked.extend(p.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut delivered, mut pop_errors) = (Vec::new(), 0);
    for c in consumers {
        let (got, errors) = c.await.unwrap();
        delivered.extend(got);
        pop_errors += errors;
    }
    let delivered: Vec<String> = delivered
        .into_iter()
        .map(|f| match f {
            Frame::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("an item {other:?}"),
        })
        .collect();
    let unique: HashSet<&String> = delivered.iter().collect();
    assert_eq!(unique.len(), delivered.len(), "an item delivered twice");
    assert!(
        acked.len() >= PER_PRODUCER,
        "too few pushes acknowledged: {}",
        acked.len()
    );
    let missing: Vec<&String> = acked.iter().filter(|i| !unique.contains(i)).collect();
    // A pop that failed with an unknown outcome may have taken an item nobody received.
    assert!(
        missing.len() <= pop_errors,
        "acknowledged items never delivered: {missing:?} ({pop_errors} failed pops)"
    );
    let mut c = RespClient::connect(addrs[0]).await;
    assert_eq!(
        c.cmd("LLEN bq:jobs").await,
        Frame::Integer(0),
        "items remain"
    );
    drop(second);
    tc.shutdown().await;
}
