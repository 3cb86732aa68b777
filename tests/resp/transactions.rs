//! `MULTI`/`EXEC` and `WATCH`, and read-modify-writes racing through one instance.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_writes_lose_nothing() {
    let tc = TestCluster::start(3).await;
    let addr = resp_addr(&tc);
    // Eight clients append to one key at once: compare-and-set with retries keeps every byte.
    let writers: Vec<_> = (0..8u8)
        .map(|w| {
            tokio::spawn(async move {
                let mut c = RespClient::connect(addr).await;
                for _ in 0..10 {
                    let reply = c.call(&[b"APPEND", b"shared", &[b'a' + w]]).await;
                    assert!(matches!(reply, Frame::Integer(_)), "{reply:?}");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut c = RespClient::connect(addr).await;
    let Frame::Bulk(value) = c.cmd("GET shared").await else {
        panic!("GET shared")
    };
    assert_eq!(value.len(), 80, "{value:?}");
    for w in 0..8u8 {
        assert_eq!(value.iter().filter(|b| **b == b'a' + w).count(), 10);
    }
    // Of many concurrent SET NX on one absent key, exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = RespClient::connect(addr).await;
                c.cmd(&format!("SET race {i} NX")).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, r) in racers.into_iter().enumerate() {
        match r.await.unwrap() {
            Frame::Simple(ok) if ok == "OK" => winners.push(i),
            Frame::Null => {}
            other => panic!("SET NX answered {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(c.cmd("GET race").await, bulk(&winners[0].to_string()));
    tc.shutdown().await;
}

/// WATCH sequences of one client, answered as redis-server 7 answers them: arity errors,
/// WATCH inside MULTI (refused, the transaction still runs), the client's own write of a watched
/// key (EXEC answers a null array and runs nothing), watches forgotten by EXEC, DISCARD,
/// UNWATCH and an EXECABORT, absent keys, a key watched twice, RESP3's null.
const WATCH_AS_REDIS: &[&str] = &[
    "WATCH",
    "UNWATCH x",
    "WATCH w:a",
    "MULTI",
    "WATCH w:a",
    "SET w:a 1",
    "EXEC",
    "GET w:a",
    "MULTI",
    "UNWATCH",
    "EXEC",
    "WATCH w:a",
    "SET w:a 2",
    "MULTI",
    "GET w:a",
    "SET w:b x",
    "EXEC",
    "GET w:b",
    "WATCH w:a",
    "MULTI",
    "GET w:a",
    "EXEC",
    "WATCH w:a",
    "UNWATCH",
    "SET w:a 3",
    "MULTI",
    "GET w:a",
    "EXEC",
    "WATCH w:a",
    "MULTI",
    "DISCARD",
    "SET w:a 4",
    "MULTI",
    "GET w:a",
    "EXEC",
    "WATCH w:a",
    "MULTI",
    "NOPE",
    "EXEC",
    "SET w:a 5",
    "MULTI",
    "GET w:a",
    "EXEC",
    "WATCH w:absent",
    "MULTI",
    "SET w:absent 1",
    "EXEC",
    "WATCH w:absent2 w:a",
    "SET w:absent2 x",
    "MULTI",
    "SET w:a 6",
    "EXEC",
    "GET w:a",
    "WATCH w:a",
    "WATCH w:a w:a",
    "DEL w:a",
    "MULTI",
    "INCR w:a",
    "EXEC",
    "WATCH w:h",
    "HSET w:h f v",
    "MULTI",
    "HGET w:h f",
    "EXEC",
    "HELLO 3",
    "WATCH w:a",
    "SET w:a 7",
    "MULTI",
    "GET w:a",
    "EXEC",
    "HELLO 2",
];

/// MULTI/EXEC/DISCARD answer as redis-server 7 does, and a transaction that EXEC refuses
/// applies none of its commands, on any node (the client sees it failed, so nothing of it may
/// have been written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_answer_as_redis_and_a_refused_one_writes_nothing() {
    let tc = TestCluster::start(3).await;
    let reference = start_reference().await;
    let mut ours = RespClient::connect(resp_addr(&tc)).await;
    let mut theirs = RespClient::connect(reference.nodes[0].addr()).await;
    for line in [
        "EXEC",
        "DISCARD",
        "MULTI",
        "SET t:a 1",
        "INCR t:c",
        "APPEND t:a 2",
        "GET t:a",
        "EXEC",
        "GET t:a",
        "MULTI",
        "MULTI",
        "SET t:b x",
        "DISCARD",
        "GET t:b",
        "MULTI x",
        "MULTI",
        "SET t:d 1",
        "NOPE x",
        "SET t:e 2",
        "EXEC",
        "GET t:d",
        "MULTI",
        "GET",
        "SET t:d 1",
        "EXEC",
        "GET t:d",
        // An argument error is found when EXEC runs the command, as in Redis: QUEUED, then
        // its error in EXEC's array while the others apply.
        "MULTI",
        "SET t:f 1 EX x",
        "SET t:f 2",
        "HSET t:h f v g",
        "EXEC",
        "GET t:f",
        "MULTI",
        "EXEC",
        "UNWATCH",
    ] {
        let expected = theirs.cmd(line).await;
        let got = ours.cmd(line).await;
        assert_eq!(got, expected, "{line}");
    }
    for line in WATCH_AS_REDIS {
        let expected = theirs.cmd(line).await;
        let got = ours.cmd(line).await;
        // HELLO names the server's version and the connection's id.
        if !line.starts_with("HELLO") {
            assert_eq!(got, expected, "{line}");
        }
    }

    // The redis crate's atomic pipeline (MULTI ... EXEC in one write), as redis-py sends it.
    let client = redis::Client::open(format!("redis://{}", resp_addr(&tc))).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let (set, incr): (String, i64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("t:p")
        .arg("v")
        .cmd("INCR")
        .arg("t:n")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!((set.as_str(), incr), ("OK", 1));
    let refused = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("t:never")
        .arg("v")
        .cmd("SET")
        .arg("t:never")
        .query_async::<()>(&mut con)
        .await
        .unwrap_err();
    // The crate reports EXECABORT as an aborted transaction, naming the refused command.
    assert!(
        refused.to_string().contains("Transaction aborted"),
        "{refused}"
    );
    for i in 0..3 {
        let mut node = tc.direct(i).await;
        let exists: i64 = redis::cmd("EXISTS")
            .arg("t:never")
            .query_async(&mut node)
            .await
            .unwrap();
        assert_eq!(exists, 0, "node {i} holds a write of a refused transaction");
    }
    let got: String = redis::cmd("GET")
        .arg("t:p")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(got, "v");
}

/// Another client's write of a watched key, through this instance or through a second quorumd
/// instance over the same nodes, makes EXEC answer a null array and apply none of its
/// commands (checked on every node); an unchanged watch lets EXEC run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_key_changed_by_another_client_makes_exec_apply_nothing() {
    let tc = TestCluster::start(3).await;
    let second =
        quorumd::app::App::start(common::test_config(tc.cluster.urls()).validate().unwrap())
            .await
            .unwrap();
    let mut a = RespClient::connect(resp_addr(&tc)).await;
    let mut same = RespClient::connect(resp_addr(&tc)).await;
    let mut other = RespClient::connect(second.resp_addr().unwrap()).await;
    let absent_on_every_node = |key: String| {
        let tc = &tc;
        async move {
            for i in 0..3 {
                assert_eq!(
                    tc.raw_value(i, key.as_bytes()).await,
                    None,
                    "node {i} holds {key}, written by a transaction whose EXEC answered null"
                );
            }
        }
    };
    for (round, writer) in [(0, &mut same), (1, &mut other)] {
        let k = format!("wk{round}");
        let side = format!("ws{round}");
        assert_eq!(a.cmd(&format!("SET {k} 1")).await, Frame::ok());
        assert_eq!(a.cmd(&format!("WATCH {k}")).await, Frame::ok());
        assert_eq!(a.cmd(&format!("GET {k}")).await, bulk("1"));
        assert_eq!(writer.cmd(&format!("SET {k} theirs")).await, Frame::ok());
        assert_eq!(a.cmd("MULTI").await, Frame::ok());
        for line in [format!("SET {side} x"), format!("SET {k} mine")] {
            assert_eq!(a.cmd(&line).await, Frame::Simple("QUEUED".into()));
        }
        assert_eq!(a.cmd("EXEC").await, Frame::Null, "round {round}");
        assert_eq!(a.cmd(&format!("GET {k}")).await, bulk("theirs"));
        absent_on_every_node(side.clone()).await;
        // The watch is gone after EXEC; unchanged, it lets EXEC run.
        assert_eq!(a.cmd(&format!("WATCH {k} {side}")).await, Frame::ok());
        assert_eq!(a.cmd("MULTI").await, Frame::ok());
        a.cmd(&format!("SET {side} y")).await;
        a.cmd(&format!("SET {k} mine")).await;
        assert_eq!(
            a.cmd("EXEC").await,
            Frame::Array(vec![Frame::ok(), Frame::ok()])
        );
        assert_eq!(writer.cmd(&format!("GET {k}")).await, bulk("mine"));
        assert_eq!(writer.cmd(&format!("GET {side}")).await, bulk("y"));
    }
    // A key deleted and a hash changed through the other instance count as changed too.
    a.cmd("SET wd 1").await;
    a.cmd("HSET wh f 1").await;
    for change in ["DEL wd", "HSET wh f 2"] {
        assert_eq!(a.cmd("WATCH wd wh").await, Frame::ok());
        assert_eq!(other.cmd(change).await, other_reply(change));
        a.cmd("MULTI").await;
        a.cmd("SET wside z").await;
        assert_eq!(a.cmd("EXEC").await, Frame::Null, "after {change}");
        absent_on_every_node("wside".into()).await;
    }
    second.shutdown().await.unwrap();
    tc.shutdown().await;
}

/// What `change` answers: DEL of an existing key 1, HSET of an existing field 0.
fn other_reply(change: &str) -> Frame {
    Frame::Integer(if change.starts_with("DEL") { 1 } else { 0 })
}

/// Clients in WATCH/GET/MULTI/SET n+1/EXEC retry loops, through one instance and through two
/// quorumd processes over the same nodes (where only the ballots of a watched write order the
/// writers; with a compare-and-set alone, one update in 72 was lost in a full-suite run): the
/// final counter equals the number of EXECs that succeeded, no update lost, none applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_increments_with_watch_lose_no_update() {
    let tc = TestCluster::start(3).await;
    // Another process, not another App in this one: instances in one process share the
    // per-key turns of read-modify-writes, which would hide the race between instances.
    let second = QuorumdProcess::start(env!("CARGO_BIN_EXE_quorumd"), &tc.cluster.urls(), "");
    let one = resp_addr(&tc);
    let two = second.resp;
    for (key, addrs) in [("cnt1", [one; 6]), ("cnt2", [one, two, one, two, one, two])] {
        let clients: Vec<_> = addrs
            .into_iter()
            .map(|addr| {
                tokio::spawn(async move {
                    let mut c = RespClient::connect(addr).await;
                    let (mut won, mut lost) = (0u64, 0u64);
                    while won < 12 {
                        assert_eq!(c.cmd(&format!("WATCH {key}")).await, Frame::ok());
                        let n: u64 = match c.cmd(&format!("GET {key}")).await {
                            Frame::Null => 0,
                            Frame::Bulk(b) => std::str::from_utf8(&b).unwrap().parse().unwrap(),
                            other => panic!("GET answered {other:?}"),
                        };
                        c.cmd("MULTI").await;
                        c.cmd(&format!("SET {key} {}", n + 1)).await;
                        match c.cmd("EXEC").await {
                            Frame::Array(r) if r == vec![Frame::ok()] => won += 1,
                            // `*-1`, which the parser reads as a null.
                            Frame::Null => lost += 1,
                            other => panic!("EXEC answered {other:?}"),
                        }
                        assert!(lost < 2000, "no progress");
                    }
                    (won, lost)
                })
            })
            .collect();
        let (mut won, mut lost) = (0, 0);
        for c in clients {
            let (w, l) = c.await.unwrap();
            won += w;
            lost += l;
        }
        let mut c = RespClient::connect(one).await;
        assert_eq!(
            c.cmd(&format!("GET {key}")).await,
            bulk(&won.to_string()),
            "{key}: {won} EXECs succeeded, {lost} answered null"
        );
        // The race was real: some EXECs had to answer null.
        assert!(lost > 0, "{key}: no contention, the test proves nothing");
    }
    drop(second);
    tc.shutdown().await;
}

/// The transaction commands' own arity, checked before anything else as redis-server 7.0
/// checks it: `EXEC x` discards the transaction rather than run it (and, in or out of one,
/// forgets the watches); `MULTI x`, `WATCH`, `DISCARD x`, `RESET x` and `UNWATCH x` inside
/// MULTI are refused with the arity error and make EXEC discard it; the subscribed mode's
/// refusal of EXEC is an EXECABORT too.
const TRANSACTION_ARITY_AS_REDIS: &[&str] = &[
    "MULTI",
    "SET tx2:a 1",
    "EXEC x",
    "GET tx2:a",
    "EXEC",
    "MULTI",
    "SET tx2:b 1",
    "MULTI x",
    "EXEC",
    "GET tx2:b",
    "MULTI",
    "SET tx2:c 1",
    "WATCH",
    "EXEC",
    "GET tx2:c",
    "MULTI",
    "SET tx2:d 1",
    "DISCARD x",
    "EXEC",
    "GET tx2:d",
    "MULTI",
    "SET tx2:e 1",
    "RESET x",
    "EXEC",
    "GET tx2:e",
    "MULTI",
    "SET tx2:f 1",
    "UNWATCH x",
    "EXEC",
    "GET tx2:f",
    "EXEC x",
    "DISCARD x",
    "RESET x",
    "UNWATCH x",
    "WATCH",
    "MULTI x",
    // EXEC's refusal forgets the watches: the client's own write no longer breaks this one.
    "WATCH tx2:w",
    "EXEC x",
    "SET tx2:w 1",
    "MULTI",
    "GET tx2:w",
    "EXEC",
    "MULTI",
    "SET tx2:g 1",
    "UNWATCH",
    "EXEC",
    "GET tx2:g",
    "SUBSCRIBE tx2:ch",
    "EXEC x",
    "EXEC",
    "RESET x",
    "RESET",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_commands_check_their_arity_first_as_redis() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    answers_as_reference(&mut ours, &mut theirs, TRANSACTION_ARITY_AS_REDIS).await;
    // Not on any node either: each of these transactions answered an error.
    for key in ["tx2:a", "tx2:b", "tx2:c", "tx2:d", "tx2:e", "tx2:f"] {
        for i in 0..3 {
            assert_eq!(
                tc.raw_value(i, key.as_bytes()).await,
                None,
                "{key} on node {i}"
            );
        }
    }
    tc.shutdown().await;
}

/// QUIT inside MULTI is not queued: as redis-server 7.0 does, it answers +OK and the
/// connection closes at once, the transaction discarded, nothing of it applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_inside_multi_closes_at_once_and_applies_nothing() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    for (who, c) in [("quorumd", &mut ours), ("redis-server", &mut theirs)] {
        assert_eq!(c.cmd("MULTI").await, Frame::ok(), "{who}");
        assert_eq!(
            c.cmd("SET tq:a 1").await,
            Frame::Simple("QUEUED".into()),
            "{who}"
        );
        c.send(&[b"QUIT"]).await;
        assert_eq!(c.read_or_closed().await, Some(Frame::ok()), "{who}");
        assert_eq!(c.read_or_closed().await, None, "{who} closes after QUIT");
        c.reconnect().await;
        assert_eq!(c.cmd("GET tq:a").await, Frame::Null, "{who}");
    }
    for i in 0..3 {
        assert_eq!(tc.raw_value(i, b"tq:a").await, None, "tq:a on node {i}");
    }
    tc.shutdown().await;
}
