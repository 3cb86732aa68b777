//! Pub/sub on the Redis-protocol front end against real nodes: a message published through one
//! quorumd instance reaches a subscriber of another exactly once although three nodes carry
//! it, also with a node killed and after it restarts; pattern subscriptions; unsubscribing
//! stops delivery; the subscribed mode's restrictions and reply shapes compared with a real
//! redis-server.

use quorumd_testkit::cluster as common;

use common::{TestCluster, wait_until};
use quorumd::app::App;
use quorumd::devcluster::DevCluster;
use quorumd::pubsub::PubSub;
use quorumd::resp::frame::Frame;
use quorumd_testkit::resp::RespClient;
use std::collections::HashMap;
use std::time::Duration;

fn bulk(s: &str) -> Frame {
    Frame::bulk(s.to_string())
}

/// A message push as the RESP2 parser reads it.
fn message(channel: &str, payload: &str) -> Frame {
    Frame::Array(vec![bulk("message"), bulk(channel), bulk(payload)])
}

fn pmessage(pattern: &str, channel: &str, payload: &str) -> Frame {
    Frame::Array(vec![
        bulk("pmessage"),
        bulk(pattern),
        bulk(channel),
        bulk(payload),
    ])
}

/// The payload of a message or pmessage frame.
fn payload_of(f: &Frame) -> Option<(String, String)> {
    let Frame::Array(items) = f else { return None };
    let text = |f: &Frame| match f {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("{other:?}"),
    };
    match items.as_slice() {
        [Frame::Bulk(k), _, p] if k.as_ref() == b"message" => Some(("message".into(), text(p))),
        [Frame::Bulk(k), _, _, p] if k.as_ref() == b"pmessage" => {
            Some(("pmessage".into(), text(p)))
        }
        _ => None,
    }
}

async fn second_instance(tc: &TestCluster) -> App {
    App::start(common::test_config(tc.cluster.urls()).validate().unwrap())
        .await
        .unwrap()
}

fn hub(app: &App) -> &std::sync::Arc<PubSub> {
    app.pubsub().expect("resp enabled")
}

/// Publishes probes through `publisher` until `subscriber` receives one: the subscriptions of
/// the subscriber's instance are up. Returns how many probes were sent (each is one message
/// more through every node).
async fn until_delivered(
    publisher: &mut RespClient,
    subscriber: &mut RespClient,
    channel: &str,
) -> u64 {
    for i in 0..200u64 {
        let probe = format!("probe-{i}");
        assert!(matches!(
            publisher.cmd(&format!("PUBLISH {channel} {probe}")).await,
            Frame::Integer(_)
        ));
        if let Some(f) = subscriber.read_within(Duration::from_millis(100)).await {
            assert!(payload_of(&f).is_some(), "{f:?}");
            // Earlier probes may come later: read them away with the fence of the caller.
            return i + 1;
        }
    }
    panic!("no probe reached the subscriber");
}

/// Reads messages until one with payload `fence` arrives: how many times each payload came.
async fn read_until_fence(sub: &mut RespClient, fence: &str) -> HashMap<(String, String), usize> {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    loop {
        let f = sub.read().await;
        let key = payload_of(&f).unwrap_or_else(|| panic!("not a message: {f:?}"));
        let done = key.1 == fence;
        *seen.entry(key).or_default() += 1;
        if done {
            return seen;
        }
    }
}

/// Waits until `hub` has handled `want` copies from each node in `nodes`.
async fn copies_reach(hub: &PubSub, nodes: &[usize], want: &[u64]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let have: Vec<u64> = nodes.iter().map(|n| hub.copies_from(*n)).collect();
        if have.iter().zip(want).all(|(h, w)| h >= w) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "copies from nodes {nodes:?}: {have:?}, waiting for {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A subscriber on instance A gets each message published through instance B once, by
/// channel and by pattern, though all three nodes carry it; with one node killed the messages
/// still arrive once (through the other two), and after it restarts the subscription to it
/// comes back. The fence (a last message) arrives after every copy of the earlier ones was
/// handled, so a duplicate would be read before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_instances_once_with_a_node_killed() {
    let mut tc = TestCluster::start(3).await;
    let b = second_instance(&tc).await;
    let a_hub = hub(tc.app()).clone();
    let mut sub = RespClient::connect(tc.app().resp_addr().unwrap()).await;
    let mut publisher = RespClient::connect(b.resp_addr().unwrap()).await;
    sub.send(&[b"SUBSCRIBE", b"news"]).await;
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![bulk("subscribe"), bulk("news"), Frame::Integer(1)])
    );
    sub.send(&[b"PSUBSCRIBE", b"sport.*"]).await;
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![bulk("psubscribe"), bulk("sport.*"), Frame::Integer(2)])
    );
    wait_until(
        Duration::from_secs(10),
        "A subscribed on every node",
        || async { a_hub.subscriptions_up() == 3 },
    )
    .await;
    let base: Vec<u64> = (0..3).map(|n| a_hub.copies_from(n)).collect();
    let mut sent = until_delivered(&mut publisher, &mut sub, "news").await;

    // All three nodes up: every copy arrives, one delivery each.
    for i in 0..30 {
        // B has no subscriber of its own: PUBLISH counts this instance's subscribers.
        assert_eq!(
            publisher.cmd(&format!("PUBLISH news n{i}")).await,
            Frame::Integer(0)
        );
        publisher.cmd(&format!("PUBLISH sport.tennis s{i}")).await;
        sent += 2;
    }
    copies_reach(
        &a_hub,
        &[0, 1, 2],
        &[base[0] + sent, base[1] + sent, base[2] + sent],
    )
    .await;
    publisher.cmd("PUBLISH news fence1").await;
    let seen = read_until_fence(&mut sub, "fence1").await;
    for i in 0..30 {
        assert_eq!(
            seen.get(&("message".into(), format!("n{i}"))),
            Some(&1),
            "n{i}: {seen:?}"
        );
        assert_eq!(
            seen.get(&("pmessage".into(), format!("s{i}"))),
            Some(&1),
            "s{i}: {seen:?}"
        );
    }
    assert!(
        seen.keys().all(|(_, p)| p.starts_with('n')
            || p.starts_with('s')
            || p.starts_with("probe")
            || p == "fence1"),
        "{seen:?}"
    );
    assert!(
        seen.values().all(|n| *n == 1),
        "a message came twice: {seen:?}"
    );
    sent += 1;
    copies_reach(
        &a_hub,
        &[0, 1, 2],
        &[base[0] + sent, base[1] + sent, base[2] + sent],
    )
    .await;

    // Node 2 killed: PUBLISH still succeeds, messages arrive once, through nodes 0 and 1.
    tc.cluster.nodes[2].kill();
    let before = [a_hub.copies_from(0), a_hub.copies_from(1)];
    for i in 0..20 {
        assert_eq!(
            publisher.cmd(&format!("PUBLISH news k{i}")).await,
            Frame::Integer(0),
            "PUBLISH with a node down"
        );
    }
    copies_reach(&a_hub, &[0, 1], &[before[0] + 20, before[1] + 20]).await;
    publisher.cmd("PUBLISH news fence2").await;
    let seen = read_until_fence(&mut sub, "fence2").await;
    for i in 0..20 {
        assert_eq!(
            seen.get(&("message".into(), format!("k{i}"))),
            Some(&1),
            "k{i}: {seen:?}"
        );
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a message came twice: {seen:?}"
    );

    // Node 2 back: the subscription to it comes back and carries messages again.
    tokio::task::block_in_place(|| tc.cluster.nodes[2].restart().expect("restart node 2"));
    let from_two = a_hub.copies_from(2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut i = 0;
    while a_hub.copies_from(2) == from_two {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no copy through node 2 after its restart"
        );
        i += 1;
        publisher.cmd(&format!("PUBLISH news r{i}")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publisher.cmd("PUBLISH news fence3").await;
    let seen = read_until_fence(&mut sub, "fence3").await;
    assert!(
        seen.values().all(|n| *n == 1),
        "a message came twice: {seen:?}"
    );
    assert_eq!(seen.len(), i + 1, "every r{{i}} and the fence: {seen:?}");

    // Unsubscribing stops delivery: a message after it is not received (the PING's reply
    // comes first and alone).
    sub.send(&[b"UNSUBSCRIBE", b"news"]).await;
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![bulk("unsubscribe"), bulk("news"), Frame::Integer(1)])
    );
    publisher.cmd("PUBLISH news after").await;
    publisher.cmd("PUBLISH sport.golf fence4").await;
    let seen = read_until_fence(&mut sub, "fence4").await;
    assert_eq!(seen.len(), 1, "only the pattern's fence: {seen:?}");
    sub.send(&[b"PUNSUBSCRIBE"]).await;
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![
            bulk("punsubscribe"),
            bulk("sport.*"),
            Frame::Integer(0)
        ])
    );
    // Out of the subscribed mode: ordinary commands again.
    assert_eq!(sub.cmd("PING").await, Frame::Simple("PONG".into()));
    b.shutdown().await.unwrap();
    tc.shutdown().await;
}

/// Runs `lines` on both connections; the replies (every push of a line that makes several)
/// must be the same.
async fn same_replies(ours: &mut RespClient, theirs: &mut RespClient, lines: &[&str]) {
    for line in lines {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        ours.send(&args).await;
        theirs.send(&args).await;
        let (o, t) = (ours.read().await, theirs.read().await);
        assert_eq!(o, t, "{line}");
        // Commands answered with several pushes: read them all.
        let extra = match args[0] {
            b"SUBSCRIBE" | b"PSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" if args.len() > 2 => {
                args.len() - 2
            }
            _ => 0,
        };
        for _ in 0..extra {
            assert_eq!(ours.read().await, theirs.read().await, "{line}");
        }
    }
}

/// The subscribed mode answers as redis-server 7: the subscribe and unsubscribe replies and
/// their counts, PING's `["pong", msg]`, the refusal of other commands (with the subcommand
/// named), arity errors first, RESET, PUBSUB's shapes and errors, messages and pmessages,
/// RESP3 (everything allowed, pushes), and PUBLISH's count of local subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_mode_answers_as_redis() {
    let tc = TestCluster::start(3).await;
    let reference = tokio::task::spawn_blocking(|| DevCluster::start(1))
        .await
        .unwrap()
        .expect("reference redis-server");
    let ours_addr = tc.app().resp_addr().unwrap();
    let theirs_addr = reference.nodes[0].addr();
    let mut ours = RespClient::connect(ours_addr).await;
    let mut theirs = RespClient::connect(theirs_addr).await;
    same_replies(
        &mut ours,
        &mut theirs,
        &[
            "UNSUBSCRIBE",
            "PUNSUBSCRIBE",
            "UNSUBSCRIBE x y",
            "SUBSCRIBE",
            "SUBSCRIBE a b a",
            "GET x",
            "GET",
            "PING",
            "PING hi",
            "PING a b",
            "PSUBSCRIBE h*",
            "UNSUBSCRIBE zz",
            "MULTI",
            "PUBSUB NUMSUB",
            "CLIENT ID",
            "UNSUBSCRIBE a",
            "UNSUBSCRIBE b",
            "PUNSUBSCRIBE",
            "GET x",
            "PUBSUB CHANNELS",
            "PUBSUB NUMSUB a b",
            "PUBSUB NUMPAT",
            "PUBSUB NOPE",
            "PUBSUB",
            "PUBLISH a",
            "PUBLISH nobody m",
            "SUBSCRIBE c",
            "RESET",
            "GET x",
        ],
    )
    .await;
    // Queued, a SUBSCRIBE would turn the connection into a subscriber in the middle of EXEC's
    // replies: quorumd refuses it there, and the transaction with it.
    assert_eq!(ours.cmd("MULTI").await, Frame::Simple("OK".into()));
    assert_eq!(
        ours.cmd("SUBSCRIBE q").await,
        Frame::Error("ERR SUBSCRIBE inside MULTI is not supported by quorumd".into())
    );
    assert!(matches!(ours.cmd("EXEC").await, Frame::Error(e) if e.starts_with("EXECABORT")));

    // Messages: the same pushes from both, and the same PUBLISH counts (one channel
    // subscription and two matching patterns: 3).
    let mut ours_sub = RespClient::connect(ours_addr).await;
    let mut theirs_sub = RespClient::connect(theirs_addr).await;
    for sub in [&mut ours_sub, &mut theirs_sub] {
        sub.send(&[b"SUBSCRIBE", b"m.x"]).await;
        sub.read().await;
        sub.send(&[b"PSUBSCRIBE", b"m.*", b"*x"]).await;
        sub.read().await;
        sub.read().await;
    }
    // Our instance's subscriptions must be up before the message goes out.
    let mut ours_pub = RespClient::connect(ours_addr).await;
    let probes = until_delivered(&mut ours_pub, &mut ours_sub, "m.x").await;
    assert!(probes >= 1);
    ours_pub.cmd("PUBLISH m.x fence").await;
    read_until_fence(&mut ours_sub, "fence").await;
    // The fence came three times (channel, two patterns): read the other two.
    read_until_fence(&mut ours_sub, "fence").await;
    read_until_fence(&mut ours_sub, "fence").await;
    let mut theirs_pub = RespClient::connect(theirs_addr).await;
    assert_eq!(
        ours_pub.cmd("PUBLISH m.x hello").await,
        theirs_pub.cmd("PUBLISH m.x hello").await
    );
    let expected = [
        message("m.x", "hello"),
        pmessage("m.*", "m.x", "hello"),
        pmessage("*x", "m.x", "hello"),
    ];
    // The channel's subscribers first; the patterns in an order of Redis's own (a hash
    // table's), so those are compared as a set.
    let mut theirs_got = Vec::new();
    let mut ours_got = Vec::new();
    for _ in &expected {
        theirs_got.push(theirs_sub.read().await);
        ours_got.push(ours_sub.read().await);
    }
    assert_eq!(theirs_got[0], expected[0], "redis-server");
    assert_eq!(ours_got[0], expected[0], "quorumd");
    for want in &expected[1..] {
        assert!(theirs_got.contains(want), "redis-server: {theirs_got:?}");
        assert!(ours_got.contains(want), "quorumd: {ours_got:?}");
    }
    assert_eq!(
        ours.cmd("PUBSUB NUMSUB m.x").await,
        theirs.cmd("PUBSUB NUMSUB m.x").await
    );
    assert_eq!(
        ours.cmd("PUBSUB NUMPAT").await,
        theirs.cmd("PUBSUB NUMPAT").await
    );
    assert_eq!(
        ours.cmd("PUBSUB CHANNELS m.*").await,
        theirs.cmd("PUBSUB CHANNELS m.*").await
    );

    // RESP3: every command runs in the subscribed mode, and replies are push frames.
    for c in [&mut ours, &mut theirs] {
        c.cmd("HELLO 3").await;
    }
    same_replies(
        &mut ours,
        &mut theirs,
        &["SUBSCRIBE r3", "GET x", "PING", "UNSUBSCRIBE"],
    )
    .await;
    tc.shutdown().await;
}

/// A node frozen (SIGSTOP) while messages are published still gets, once thawed, the
/// `PUBLISH`es that were waiting in its socket, and sends their copies late: they are dropped,
/// and each message is delivered once. The fence is published straight on the thawed node, so
/// it comes after every late copy on that node's subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_copies_from_a_paused_node_are_delivered_once() {
    let mut tc = TestCluster::start(3).await;
    let b = second_instance(&tc).await;
    let a_hub = hub(tc.app()).clone();
    let mut sub = RespClient::connect(tc.app().resp_addr().unwrap()).await;
    let mut publisher = RespClient::connect(b.resp_addr().unwrap()).await;
    sub.send(&[b"SUBSCRIBE", b"news"]).await;
    sub.read().await;
    wait_until(
        Duration::from_secs(10),
        "A subscribed on every node",
        || async { a_hub.subscriptions_up() == 3 },
    )
    .await;
    until_delivered(&mut publisher, &mut sub, "news").await;
    publisher.cmd("PUBLISH news fence0").await;
    read_until_fence(&mut sub, "fence0").await;

    tc.cluster.nodes[2].pause();
    let before = [a_hub.copies_from(0), a_hub.copies_from(1)];
    let from_two = a_hub.copies_from(2);
    for i in 0..10 {
        assert_eq!(
            publisher.cmd(&format!("PUBLISH news p{i}")).await,
            Frame::Integer(0)
        );
    }
    copies_reach(&a_hub, &[0, 1], &[before[0] + 10, before[1] + 10]).await;
    tc.cluster.nodes[2].resume();
    // The fence, with an id of its own, straight on node 2: after its backlog there.
    let mut node = tc.direct(2).await;
    let channel = format!("{}ps:news", common::key_prefix());
    let fence = quorumd::pubsub::encode((0xfe, 1), b"fence-direct");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(fence)
        .query_async(&mut node)
        .await
        .unwrap();
    let seen = read_until_fence(&mut sub, "fence-direct").await;
    for i in 0..10 {
        assert_eq!(
            seen.get(&("message".into(), format!("p{i}"))),
            Some(&1),
            "p{i}: {seen:?}"
        );
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a message came twice: {seen:?}"
    );
    // The test proves something only if copies did come late (all 10, in the runs so far).
    let late = a_hub.copies_from(2) - from_two - 1;
    assert!(late >= 1, "no late copy came through the thawed node");
    b.shutdown().await.unwrap();
    tc.shutdown().await;
}
