//! Server and session commands: `DBSIZE`, `TIME`, `OBJECT`, `MEMORY USAGE`, `CONFIG GET`, `CLIENT`, `INFO`, `COMMAND`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_session_commands() {
    let tc = TestCluster::start(3).await;
    let mut c = RespClient::connect(resp_addr(&tc)).await;

    // HELLO 3 switches to RESP3: a map, then RESP3 nulls.
    let hello = c.cmd("HELLO 3").await;
    let Frame::Map(pairs) = &hello else {
        panic!("HELLO 3 answers a map: {hello:?}")
    };
    assert!(pairs.contains(&(bulk("proto"), Frame::Integer(3))));
    assert!(pairs.contains(&(bulk("server"), bulk("redis"))));
    c.send_raw(&request(&[b"GET", b"nothing"])).await;
    let mut raw = [0u8; 3];
    c.socket().read_exact(&mut raw).await.unwrap();
    assert_eq!(&raw, b"_\r\n", "RESP3 null on the wire");
    assert_eq!(c.cmd("HELLO 2").await.to_bytes(Protocol::Resp3)[0], b'*');
    assert_eq!(c.cmd("GET nothing").await, Frame::Null);

    let id = c.cmd("CLIENT ID").await;
    assert!(matches!(id, Frame::Integer(n) if n > 0), "{id:?}");
    let Frame::Bulk(info) = c.cmd("INFO").await else {
        panic!("INFO is a bulk string in RESP2")
    };
    let info = String::from_utf8(info.to_vec()).unwrap();
    for needle in [
        "# Server",
        "redis_version:",
        "# Clients",
        "connected_clients:1",
        "# Nodes",
        "nodes:3",
        "nodes_up:3",
        "node0:address=redis://127.0.0.1:",
        "health=up",
        "# Keyspace",
    ] {
        assert!(info.contains(needle), "INFO lacks {needle}: {info}");
    }
    let Frame::Bulk(nodes) = c.cmd("INFO nodes").await else {
        panic!("INFO nodes")
    };
    assert!(!String::from_utf8_lossy(&nodes).contains("# Server"));

    // DBSIZE counts user keys, not quorumd's metadata.
    assert_eq!(c.cmd("DBSIZE").await, Frame::Integer(0));
    for i in 0..5 {
        assert_eq!(c.cmd(&format!("SET db:{i} v")).await, Frame::ok());
    }
    assert_eq!(c.cmd("DEL db:4").await, Frame::Integer(1));
    // The count may be up to a second old (it is cached: see the DBSIZE test below).
    dbsize_becomes(&mut c, 4).await;

    // COMMAND, as redis-cli and client libraries use it.
    let Frame::Integer(count) = c.cmd("COMMAND COUNT").await else {
        panic!("COMMAND COUNT")
    };
    let Frame::Array(all) = c.cmd("COMMAND").await else {
        panic!("COMMAND")
    };
    assert_eq!(all.len() as i64, count);
    let Frame::Array(get) = c.cmd("COMMAND INFO get nosuch").await else {
        panic!("COMMAND INFO")
    };
    assert_eq!(get[1], Frame::Null);
    let Frame::Array(get) = &get[0] else {
        panic!("COMMAND INFO get")
    };
    assert_eq!((&get[0], &get[1]), (&bulk("get"), &Frame::Integer(2)));
    assert_eq!(c.cmd("COMMAND DOCS").await, Frame::Array(vec![]));

    // The connection's consistency level.
    assert_eq!(c.cmd("QUORUMD CONSISTENCY").await, bulk("quorum"));
    assert_eq!(c.cmd("quorumd consistency LINEARIZABLE").await, Frame::ok());
    assert_eq!(c.cmd("QUORUMD CONSISTENCY").await, bulk("linearizable"));
    assert_eq!(c.cmd("SET lin v").await, Frame::ok());
    assert_eq!(c.cmd("GET lin").await, bulk("v"));
    assert!(error_text(&c.cmd("QUORUMD CONSISTENCY most").await).contains("unknown consistency"));
    assert!(error_text(&c.cmd("QUORUMD NOPE").await).starts_with("ERR unknown subcommand 'NOPE'"));
    assert_eq!(c.cmd("QUIT").await, Frame::ok());
    assert_eq!(c.read_or_closed().await, None, "QUIT closes the connection");
    tc.shutdown().await;
}

/// Issue 19: DBSIZE counted the shard leases that background exchanges take (65 keys with
/// the defaults) as user keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbsize_leaves_out_the_shard_leases() {
    let tc = TestCluster::start_with(3, |c| c.sync.exchange_interval_ms = 200).await;
    let leases = format!("{}lease:*", common::key_prefix());
    wait_until(
        Duration::from_secs(20),
        "the exchanges hold leases",
        || async {
            let held: Vec<String> =
                common::command(&mut tc.direct(0).await, &["KEYS", &leases]).await;
            held.len() > 1
        },
    )
    .await;
    let mut c = RespClient::connect(resp_addr(&tc)).await;
    for i in 0..3 {
        assert_eq!(c.cmd(&format!("SET lease-test:{i} v")).await, Frame::ok());
    }
    dbsize_becomes(&mut c, 3).await;
    tc.shutdown().await;
}

/// Polls DBSIZE until it answers `n`; it counts writes at most `key_count::MAX_AGE` late.
async fn dbsize_becomes(c: &mut RespClient, n: i64) {
    let deadline = std::time::Instant::now() + 5 * quorumd::resp::key_count::MAX_AGE;
    loop {
        let reply = c.cmd("DBSIZE").await;
        if reply == Frame::Integer(n) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "DBSIZE still {reply:?}, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 18, item 5: DBSIZE read every bucket's sub-digest hash (B × S fields) on every call.
/// The count is now computed at most once a second for all connections: 50 DBSIZEs in a row
/// walk the sub-digests once (twice if the loop straddles the second), and a write shows
/// within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbsize_walks_the_sub_digests_at_most_once_a_second() {
    let tc = TestCluster::start(3).await;
    let buckets = u64::from(tc.app().store().settings().layout.buckets);
    let mut c = RespClient::connect(resp_addr(&tc)).await;
    for i in 0..10 {
        assert_eq!(c.cmd(&format!("SET dbs:{i} v")).await, Frame::ok());
    }
    let before = tc.command_calls(0, "hvals").await;
    for _ in 0..50 {
        assert_eq!(c.cmd("DBSIZE").await, Frame::Integer(10));
    }
    let walked = tc.command_calls(0, "hvals").await - before;
    assert!(
        walked <= 2 * buckets,
        "50 DBSIZEs read {walked} sub-digest hashes on node 0 ({buckets} per walk)"
    );
    for i in 10..15 {
        assert_eq!(c.cmd(&format!("SET dbs:{i} v")).await, Frame::ok());
    }
    dbsize_becomes(&mut c, 15).await;
    tc.shutdown().await;
}

#[tokio::test]
async fn time_answers_the_clock_and_scripts_are_refused_saying_why() {
    let tc = TestCluster::start(3).await;
    let mut c = RespClient::connect(resp_addr(&tc)).await;
    let Frame::Array(t) = c.cmd("TIME").await else {
        panic!("TIME answers an array")
    };
    let [Frame::Bulk(secs), Frame::Bulk(micros)] = t.as_slice() else {
        panic!("TIME answers seconds and microseconds: {t:?}")
    };
    let secs: u64 = std::str::from_utf8(secs).unwrap().parse().unwrap();
    let micros: u64 = std::str::from_utf8(micros).unwrap().parse().unwrap();
    let now = quorumd::hlc::wall_clock_ms() / 1000;
    assert!(secs.abs_diff(now) <= 5, "{secs} vs {now}");
    assert!(micros < 1_000_000);
    for line in [
        "EVAL return 0",
        "EVALSHA abc 0",
        "FCALL f 0",
        "SCRIPT LOAD x",
        "FUNCTION LIST",
    ] {
        let reply = c.cmd(line).await;
        let text = error_text(&reply);
        assert!(text.contains("not supported by quorumd"), "{line}: {text}");
        assert!(text.contains("outside the quorum"), "{line}: {text}");
    }
    assert_eq!(c.cmd("EVAL").await, c.cmd("EVAL").await);
    assert!(error_text(&c.cmd("EVAL").await).contains("wrong number of arguments"));
    tc.shutdown().await;
}

/// OBJECT and MEMORY: their errors and help as redis-server 7.0 answers them.
const OBJECT_SAME_AS_REDIS: &[&str] = &[
    "OBJECT",
    "OBJECT HELP",
    "OBJECT HELP x",
    "OBJECT foo o:k",
    "OBJECT ENCODING",
    "OBJECT ENCODING o:k o:k",
    "OBJECT ENCODING o:missing",
    "OBJECT REFCOUNT o:missing",
    "OBJECT IDLETIME o:missing",
    "OBJECT FREQ o:missing",
    // The nodes and the reference run without an LFU policy: the node's own error.
    "OBJECT FREQ o:str",
    "MEMORY",
    "MEMORY HELP",
    "MEMORY foo",
    "MEMORY USAGE",
    "MEMORY USAGE o:missing",
    "MEMORY USAGE o:missing SAMPLES 0",
    "MEMORY USAGE o:str SAMPLES x",
    "MEMORY USAGE o:str SAMPLES -1",
    "MEMORY USAGE o:str SAMPLES",
    "MEMORY USAGE o:str FOO 1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_and_memory_usage_answer_from_the_nodes() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    let many = |n: usize, width: usize| -> String {
        (0..n)
            .map(|i| format!("{i:0width$}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let setup = [
        "SET o:str hello".to_string(),
        "SET o:int 12345".to_string(),
        format!("SET o:raw {}", "x".repeat(100)),
        "RPUSH o:list a b c".to_string(),
        format!("RPUSH o:biglist {}", many(2000, 20)),
        "SADD o:intset 1 2 3".to_string(),
        "SADD o:words apple pear".to_string(),
        format!("SADD o:bigintset {}", many(600, 1)),
        "ZADD o:zset 1 a 2 b".to_string(),
        format!(
            "ZADD o:bigzset {}",
            (0..200)
                .map(|i| format!("{i} m{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        "HSET o:hash f v".to_string(),
        format!(
            "HSET o:bighash {}",
            (0..600)
                .map(|i| format!("f{i} v{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ];
    for line in &setup {
        assert_eq!(ours.cmd(line).await, theirs.cmd(line).await, "{line}");
    }
    for key in [
        "o:str",
        "o:int",
        "o:raw",
        "o:list",
        "o:biglist",
        "o:intset",
        "o:words",
        "o:bigintset",
        "o:zset",
        "o:bigzset",
        "o:hash",
        "o:bighash",
    ] {
        let line = format!("OBJECT ENCODING {key}");
        let expected = theirs.cmd(&line).await;
        assert!(matches!(expected, Frame::Bulk(_)), "{line}: {expected:?}");
        assert_eq!(ours.cmd(&line).await, expected, "{line}");

        // REFCOUNT and IDLETIME are the node's figures: small non-negative integers.
        for sub in ["REFCOUNT", "IDLETIME"] {
            match ours.cmd(&format!("OBJECT {sub} {key}")).await {
                Frame::Integer(n) => assert!((0..1_000_000).contains(&n), "{sub} {key}: {n}"),
                other => panic!("OBJECT {sub} {key}: {other:?}"),
            }
        }
        // MEMORY USAGE is one node's own figure for the key.
        let Frame::Integer(usage) = ours.cmd(&format!("MEMORY USAGE {key}")).await else {
            panic!("MEMORY USAGE {key}");
        };
        assert!(usage > 0, "{key}: {usage}");
        let mut figures = vec![];
        for i in 0..3 {
            let mut node = tc.direct(i).await;
            let figure: Option<i64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .query_async(&mut node)
                .await
                .unwrap();
            figures.push(figure.unwrap_or(0));
        }
        assert!(
            figures.contains(&usage),
            "{key}: {usage} not in {figures:?}"
        );
        let Frame::Integer(reference) = theirs.cmd(&format!("MEMORY USAGE {key}")).await else {
            panic!("reference MEMORY USAGE {key}");
        };
        // The same value on a plain server takes about as much.
        assert!(
            usage * 2 >= reference && usage <= reference * 2,
            "{key}: {usage} vs {reference}"
        );
    }
    let sampled = ours.cmd("MEMORY USAGE o:bighash SAMPLES 0").await;
    assert!(matches!(sampled, Frame::Integer(n) if n > 0), "{sampled:?}");

    for line in OBJECT_SAME_AS_REDIS {
        let expected = theirs.cmd(line).await;
        assert_eq!(ours.cmd(line).await, expected, "{line}");
    }
    // Deleted keys are missing too.
    assert_eq!(ours.cmd("DEL o:str").await, Frame::Integer(1));
    assert_eq!(ours.cmd("OBJECT ENCODING o:str").await, Frame::Null);
    assert_eq!(ours.cmd("MEMORY USAGE o:str").await, Frame::Null);

    // quorumd's own keys are not inspectable.
    let reserved = format!("{}anything", common::key_prefix());
    for line in [
        format!("OBJECT ENCODING {reserved}"),
        format!("MEMORY USAGE {reserved}"),
    ] {
        let reply = ours.cmd(&line).await;
        assert!(
            error_text(&reply).contains("quorumd's own"),
            "{line}: {reply:?}"
        );
    }
    // With an LFU policy on the nodes, FREQ is the node's counter.
    for i in 0..3 {
        let mut node = tc.direct(i).await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("allkeys-lfu")
            .query_async(&mut node)
            .await
            .unwrap();
    }
    let freq = ours.cmd("OBJECT FREQ o:int").await;
    assert!(matches!(freq, Frame::Integer(n) if n >= 0), "{freq:?}");

    // The MEMORY subcommands about a whole server are refused, saying why.
    let reply = ours.cmd("MEMORY STATS").await;
    assert!(error_text(&reply).contains("each node"), "{reply:?}");
    assert_eq!(
        ours.cmd("MEMORY STATS x").await,
        theirs.cmd("MEMORY STATS x").await
    );
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_get_answers_what_the_nodes_hold() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    let set = |i: usize, param: &'static str, value: &'static str| {
        let tc = &tc;
        async move {
            let mut node = tc.direct(i).await;
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(param)
                .arg(value)
                .query_async(&mut node)
                .await
                .unwrap();
        }
    };
    let pairs = |f: Frame| -> HashMap<Vec<u8>, Vec<u8>> {
        let Frame::Array(flat) = f else {
            panic!("{f:?}")
        };
        flat.chunks(2)
            .map(|p| match p {
                [Frame::Bulk(n), Frame::Bulk(v)] => (n.to_vec(), v.to_vec()),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    // Every node as the reference: the same parameters and values.
    for line in [
        "CONFIG GET maxmemory*",
        "CONFIG GET hash-max-* list-*",
        "CONFIG GET nosuch",
    ] {
        assert_eq!(
            pairs(ours.cmd(line).await),
            pairs(theirs.cmd(line).await),
            "{line}"
        );
    }
    let get = "CONFIG GET maxmemory-samples";
    assert_eq!(pairs(ours.cmd(get).await)[&b"maxmemory-samples"[..]], b"5");
    // One node differs: the majority's value.
    set(1, "maxmemory-samples", "7").await;
    assert_eq!(pairs(ours.cmd(get).await)[&b"maxmemory-samples"[..]], b"5");
    // Two nodes agree on another value: theirs.
    set(2, "maxmemory-samples", "7").await;
    assert_eq!(pairs(ours.cmd(get).await)[&b"maxmemory-samples"[..]], b"7");
    // All three differ: the first configured node's.
    set(2, "maxmemory-samples", "9").await;
    assert_eq!(pairs(ours.cmd(get).await)[&b"maxmemory-samples"[..]], b"5");

    // RESP3: a map, as Redis answers.
    let mut three = RespClient::connect(resp_addr(&tc)).await;
    assert!(matches!(three.cmd("HELLO 3").await, Frame::Map(_)));
    match three.cmd("CONFIG GET maxmemory-samples").await {
        Frame::Map(m) => assert_eq!(m, vec![(bulk("maxmemory-samples"), bulk("5"))]),
        other => panic!("{other:?}"),
    }

    for line in [
        "CONFIG",
        "CONFIG HELP",
        "CONFIG HELP x",
        "CONFIG GET",
        "CONFIG foo",
        "CONFIG SET maxmemory",
        "CONFIG REWRITE x",
    ] {
        assert_eq!(ours.cmd(line).await, theirs.cmd(line).await, "{line}");
    }
    for line in [
        "CONFIG SET maxmemory 1",
        "CONFIG REWRITE",
        "CONFIG RESETSTAT",
    ] {
        let reply = ours.cmd(line).await;
        assert!(
            error_text(&reply).contains("set it on each node"),
            "{line}: {reply:?}"
        );
    }
    tc.shutdown().await;
}

/// `COMMAND LIST FILTERBY PATTERN` keeps the names matching the glob, ignoring case, as
/// redis-server 7.0 does (the same names, which quorumd serves all of); `FILTERBY MODULE`
/// lists nothing (no modules); the syntax errors are Redis's; `FILTERBY ACLCAT` is refused,
/// saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_list_filters_as_redis() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    let sorted = |f: Frame| match f {
        Frame::Array(mut names) => {
            names.sort_by_key(|n| format!("{n:?}"));
            Frame::Array(names)
        }
        other => other,
    };
    for line in [
        "COMMAND LIST FILTERBY PATTERN xa*",
        "COMMAND LIST FILTERBY PATTERN XA*",
        "command list filterby pattern h?et",
        "COMMAND LIST FILTERBY PATTERN get*",
        "COMMAND LIST FILTERBY PATTERN [Z-a]*",
        "COMMAND LIST FILTERBY PATTERN nothing",
        "COMMAND LIST FILTERBY MODULE nomodule",
        "COMMAND LIST FILTERBY PATTERN",
        "COMMAND LIST FILTERBY PATTERN a extra",
        "COMMAND LIST FILTERBY NOPE x",
        "COMMAND LIST x",
    ] {
        let expected = sorted(theirs.cmd(line).await);
        let got = sorted(ours.cmd(line).await);
        assert_eq!(got, expected, "{line}");
    }
    assert_eq!(
        ours.cmd("COMMAND LIST FILTERBY PATTERN xa*").await,
        Frame::Array(vec![bulk("xadd"), bulk("xack"), bulk("xautoclaim")])
    );
    let Frame::Array(all) = ours.cmd("COMMAND LIST").await else {
        panic!("COMMAND LIST answers an array")
    };
    assert_eq!(
        ours.cmd("COMMAND COUNT").await,
        Frame::Integer(all.len() as i64)
    );
    let refused = ours.cmd("COMMAND LIST FILTERBY ACLCAT string").await;
    assert!(
        error_text(&refused).contains("no ACL categories"),
        "{refused:?}"
    );
    tc.shutdown().await;
}

/// `CLIENT NO-EVICT` is accepted (quorumd never evicts a client for memory), with Redis's
/// syntax and arity errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_no_evict_is_accepted_as_redis() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    answers_as_reference(
        &mut ours,
        &mut theirs,
        &[
            "CLIENT NO-EVICT on",
            "client no-evict OFF",
            "CLIENT NO-EVICT x",
            "CLIENT NO-EVICT",
            "CLIENT NO-EVICT on x",
        ],
    )
    .await;
    tc.shutdown().await;
}

/// The transaction commands are in the command table as in redis-server 7.0: `COMMAND INFO`
/// gives Redis's name, arity, flags and key positions (quorumd's table has no ACL categories
/// or key specs, the entries after those), and `COMMAND LIST` and `COMMAND COUNT` count them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_commands_are_in_the_command_table_as_in_redis() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    let head = |f: Frame| match f {
        Frame::Array(commands) => commands
            .into_iter()
            .map(|c| match c {
                Frame::Array(fields) => Frame::Array(fields.into_iter().take(6).collect()),
                other => other,
            })
            .collect::<Vec<_>>(),
        other => panic!("COMMAND INFO answers an array: {other:?}"),
    };
    let line = "COMMAND INFO multi EXEC discard watch unwatch auth";
    let expected = head(theirs.cmd(line).await);
    assert_eq!(head(ours.cmd(line).await), expected);
    let Frame::Array(names) = ours.cmd("COMMAND LIST").await else {
        panic!("COMMAND LIST")
    };
    for name in ["multi", "exec", "discard", "watch", "unwatch"] {
        assert!(names.contains(&bulk(name)), "{name} listed");
    }
    let Frame::Array(all) = ours.cmd("COMMAND").await else {
        panic!("COMMAND")
    };
    assert_eq!(all.len(), names.len());
    assert_eq!(
        ours.cmd("COMMAND COUNT").await,
        Frame::Integer(names.len() as i64)
    );
    // The connection still runs them.
    answers_as_reference(
        &mut ours,
        &mut theirs,
        &[
            "MULTI", "SET tx 1", "EXEC", "WATCH tx", "UNWATCH", "DISCARD",
        ],
    )
    .await;
    tc.shutdown().await;
}

/// `COMMAND GETKEYS` and `GETKEYSANDFLAGS` find the keys redis-server 7.0 finds, with its
/// flags and its errors, in RESP2 and RESP3 (where the flags are a set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_getkeys_answers_as_redis() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    let lines = [
        "COMMAND GETKEYS get k",
        "COMMAND GETKEYS mset a 1 b 2",
        "COMMAND GETKEYSANDFLAGS del a b",
        "COMMAND GETKEYSANDFLAGS lmove a b left right",
        "COMMAND GETKEYS rename a b",
        "COMMAND GETKEYS zunionstore d 2 a b",
        "COMMAND GETKEYS zunionstore d 3 a b",
        "COMMAND GETKEYSANDFLAGS zunionstore d 2x a b",
        "COMMAND GETKEYS zunion 2 a b withscores",
        "COMMAND GETKEYSANDFLAGS set k v",
        "COMMAND GETKEYSANDFLAGS set k v get",
        "COMMAND GETKEYSANDFLAGS bitfield k get u8 0",
        "COMMAND GETKEYSANDFLAGS bitfield k incrby u8 0 1",
        "COMMAND GETKEYSANDFLAGS sort k by w limit 0 1 store d",
        "COMMAND GETKEYS sort k store",
        "COMMAND GETKEYS xread count 1 streams a b 0 0",
        "COMMAND GETKEYS xread count 1 streams a",
        "COMMAND GETKEYSANDFLAGS xreadgroup group g c streams s >",
        "COMMAND GETKEYSANDFLAGS georadius k 0 0 1 km store d storedist e",
        "COMMAND GETKEYS geosearchstore d s frommember m byradius 1 km",
        "COMMAND GETKEYS eval s 0",
        "COMMAND GETKEYS eval s 2 a b",
        "COMMAND GETKEYS lmpop 2 a b left",
        "COMMAND GETKEYS blmpop 0 2 a b left count 2",
        "COMMAND GETKEYS sintercard 2 a b",
        "COMMAND GETKEYS watch a b",
        "COMMAND GETKEYS memory usage k",
        "COMMAND GETKEYS OBJECT ENCODING k",
        "COMMAND GETKEYS xinfo stream s",
        "COMMAND GETKEYSANDFLAGS xgroup create s g $",
        "COMMAND GETKEYS pfdebug getreg k",
        "COMMAND GETKEYS config get x",
        "COMMAND GETKEYS memory nosuch k",
        "COMMAND GETKEYS memory usage",
        "COMMAND GETKEYS publish c m",
        "COMMAND GETKEYS ping x",
        "COMMAND GETKEYS nosuch k",
        "COMMAND GETKEYS get a b",
        "COMMAND GETKEYS get",
        "COMMAND GETKEYS",
        "COMMAND GETKEYSANDFLAGS get",
    ];
    answers_as_reference(&mut ours, &mut theirs, &lines).await;
    assert!(matches!(ours.cmd("HELLO 3").await, Frame::Map(_)));
    assert!(matches!(theirs.cmd("HELLO 3").await, Frame::Map(_)));
    answers_as_reference(
        &mut ours,
        &mut theirs,
        &[
            "COMMAND GETKEYSANDFLAGS lmove a b left right",
            "COMMAND GETKEYS mset a 1 b 2",
        ],
    )
    .await;
    tc.shutdown().await;
}

/// `CLIENT REPLY OFF|ON|SKIP` drops the replies redis-server 7.0 drops, byte for byte:
/// pipelined commands (which quorumd runs concurrently), errors, MULTI/EXEC (where Redis
/// writes EXEC's array header before the commands run, so a `CLIENT REPLY` queued in the
/// transaction leaves the array short), RESET, and pub/sub confirmations, which are never
/// dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reply_drops_the_replies_redis_drops() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    let cat = |cmds: &[&[&[u8]]]| -> Vec<u8> { cmds.iter().flat_map(|c| request(c)).collect() };
    let on: &[&[u8]] = &[b"CLIENT", b"REPLY", b"ON"];
    let off: &[&[u8]] = &[b"CLIENT", b"REPLY", b"OFF"];
    let skip: &[&[u8]] = &[b"CLIENT", b"REPLY", b"SKIP"];
    let cases: Vec<Vec<u8>> = vec![
        cat(&[
            off,
            &[b"SET", b"r:a", b"1"],
            &[b"SET", b"r:b", b"2"],
            &[b"GET", b"r:a"],
            &[b"NOSUCH"],
            &[b"GET"],
            on,
            &[b"MGET", b"r:a", b"r:b"],
        ]),
        cat(&[
            &[b"SET", b"r:c", b"3"],
            skip,
            &[b"GET", b"r:a"],
            &[b"GET", b"r:b"],
            &[b"GET", b"r:c"],
        ]),
        cat(&[skip, skip, &[b"ECHO", b"1"], &[b"ECHO", b"2"]]),
        cat(&[skip, on, &[b"ECHO", b"2"]]),
        cat(&[off, skip, on, &[b"ECHO", b"2"]]),
        cat(&[skip, &[b"GET"], &[b"ECHO", b"z"]]),
        cat(&[skip, &[b"EXEC"], &[b"ECHO", b"z"]]),
        cat(&[
            &[b"CLIENT", b"REPLY"],
            &[b"CLIENT", b"REPLY", b"x"],
            &[b"CLIENT", b"REPLY", b"on", b"x"],
            &[b"client", b"reply", b"On"],
        ]),
        // MULTI/EXEC: the transaction's replies are dropped like any others...
        cat(&[skip, &[b"MULTI"], &[b"SET", b"r:d", b"1"], &[b"EXEC"]]),
        cat(&[
            off,
            &[b"MULTI"],
            &[b"SET", b"r:d", b"2"],
            &[b"EXEC"],
            on,
            &[b"GET", b"r:d"],
        ]),
        // ... and CLIENT REPLY inside one acts as it runs, at EXEC.
        cat(&[
            &[b"MULTI"],
            off,
            &[b"SET", b"r:e", b"1"],
            &[b"EXEC"],
            on,
            &[b"GET", b"r:e"],
        ]),
        cat(&[
            &[b"MULTI"],
            skip,
            &[b"ECHO", b"1"],
            &[b"ECHO", b"2"],
            &[b"EXEC"],
            &[b"ECHO", b"y"],
            &[b"ECHO", b"z"],
        ]),
        cat(&[
            off,
            &[b"MULTI"],
            on,
            &[b"ECHO", b"1"],
            &[b"EXEC"],
            &[b"ECHO", b"z"],
        ]),
        cat(&[&[b"MULTI"], skip, &[b"CLIENT", b"REPLY", b"X"], &[b"EXEC"]]),
        // RESET ends OFF, but not the SKIP it is under.
        cat(&[off, &[b"RESET"], &[b"ECHO", b"a"]]),
        cat(&[skip, &[b"RESET"], &[b"ECHO", b"a"]]),
        // Pub/sub confirmations are pushes, never dropped; PING's reply is not one.
        cat(&[
            off,
            &[b"SUBSCRIBE", b"r:ch"],
            &[b"PING"],
            &[b"UNSUBSCRIBE"],
            on,
        ]),
    ];
    let cases: Vec<&[u8]> = cases.iter().map(Vec::as_slice).collect();
    writes_as_reference(&mut ours, &mut theirs, &cases).await;
    tc.shutdown().await;
}
