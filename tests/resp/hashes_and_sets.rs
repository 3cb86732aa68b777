//! Hashes, sets and counters against a real redis-server, and concurrent increments and adds.

use super::*;

/// Counters (strings, as INCR keeps them), hashes and sets (CRDT families): replies compared
/// with redis-server 7.
/// HGETALL and SMEMBERS are compared as sorted collections: quorumd answers in byte order,
/// Redis in its encoding's order.
const CRDT_SAME_AS_REDIS: &[&str] = &[
    "INCR c:n",
    "INCRBY c:n 10",
    "DECR c:n",
    "DECRBY c:n 3",
    "INCRBY c:n -20",
    "GET c:n",
    "TYPE c:n",
    "EXISTS c:n",
    "INCRBY c:n abc",
    "INCRBY c:n 1.5",
    "INCRBY c:n 01",
    "DECRBY c:n -9223372036854775808",
    "INCRBY c:big 9223372036854775807",
    "INCR c:big",
    "GET c:big",
    "DECRBY c:low 9223372036854775807",
    "DECR c:low",
    "DECR c:low",
    "INCR",
    "INCR a b",
    "INCRBY c:n",
    "DECRBY c:n 1 2",
    "HSET hh:h a 1 b 2",
    "LCS hh:h hh:nothing",
    "LCS hh:nothing hh:h IDX LEN",
    "HSET hh:h a 3 c 4",
    "HSET hh:h a 1 a 2",
    "HSET hh:h a",
    "HSET hh:h a 1 b",
    "HGET hh:h a",
    "HGET hh:h zz",
    "HGET hh:missing a",
    "HMGET hh:h a zz c",
    "HMGET hh:missing a",
    "HGETALL hh:h",
    "HGETALL hh:missing",
    "HLEN hh:h",
    "HLEN hh:missing",
    "HEXISTS hh:h a",
    "HEXISTS hh:h zz",
    "HEXISTS hh:missing a",
    "HSTRLEN hh:h c",
    "HSTRLEN hh:h zz",
    "HKEYS hh:h",
    "HVALS hh:h",
    "HKEYS hh:missing",
    "HLEN",
    "HEXISTS hh:h",
    "HDEL hh:h a zz",
    "HDEL hh:h a",
    "HDEL hh:missing a",
    "HINCRBY hh:h n 5",
    "HINCRBY hh:h n -7",
    "HINCRBY hh:h n x",
    "HSET hh:h s abc",
    "HINCRBY hh:h s 1",
    "HSET hh:h big 9223372036854775807",
    "HINCRBY hh:h big 1",
    "TYPE hh:h",
    "HGETALL hh:h",
    "HDEL hh:h b c n s big",
    "TYPE hh:h",
    "HGETALL hh:h",
    "HGET",
    "HGETALL a b",
    "SADD st:s a b c",
    "SADD st:s a d d",
    "SREM st:s a zz",
    "SREM st:s a",
    "SREM st:missing a",
    "SISMEMBER st:s b",
    "SISMEMBER st:s a",
    "SISMEMBER st:missing a",
    "SCARD st:s",
    "SCARD st:missing",
    "SMISMEMBER st:s b a zz",
    "SMISMEMBER st:missing a",
    "SMISMEMBER st:s",
    "SMEMBERS st:s",
    "SMEMBERS st:missing",
    "SADD st:x a b c d",
    "SADD st:y c d e",
    "SINTER st:s st:x",
    "SINTER st:x st:y",
    "SINTER st:x st:missing",
    "SINTER st:missing c:n",
    "SINTER st:x c:n st:missing",
    "SUNION st:x st:y",
    "SUNION st:x st:missing st:s",
    "SUNION st:x c:n",
    "SDIFF st:x st:y",
    "SDIFF st:y st:x st:s",
    "SDIFF st:missing st:x",
    "SDIFF st:x st:missing c:n",
    "SINTER",
    "SUNION",
    "SDIFF",
    "TYPE st:s",
    "SADD st:s",
    "SISMEMBER st:s",
    "SREM st:s b c d",
    "TYPE st:s",
    "SADD st:s x",
    "GET st:s",
    "INCR st:s",
    "HSET st:s a 1",
    "HGET st:s a",
    "SADD c:n x",
    "SCARD c:n",
    "HGET c:n a",
    "HSET hh:w f v",
    "GET hh:w",
    "SADD hh:w x",
    "INCR hh:w",
    "SET st:str v",
    "SADD st:str a",
    "HGET st:str a",
    "SCARD st:str",
    "HELLO 3",
    "HGETALL hh:w",
    "SMEMBERS st:s",
    "HMGET hh:w f g",
    "HGET hh:w g",
    "HELLO 2",
];

/// HGETALL and SMEMBERS replies in a comparable order; HELLO's reply (server details) left out.
fn comparable(line: &str, f: Frame) -> Frame {
    let sort = |mut v: Vec<Frame>| {
        v.sort_by_key(|f| format!("{f:?}"));
        v
    };
    match (line.split(' ').next(), f) {
        (Some("HELLO"), Frame::Map(_) | Frame::Array(_)) => Frame::Simple("hello".into()),
        (Some("SMEMBERS" | "SINTER" | "SUNION" | "SDIFF" | "SPOP"), Frame::Set(v)) => {
            Frame::Set(sort(v))
        }
        (Some("SMEMBERS" | "SINTER" | "SUNION" | "SDIFF" | "SPOP"), Frame::Array(v)) => {
            Frame::Array(sort(v))
        }
        (Some("HKEYS" | "HVALS"), Frame::Array(v)) => Frame::Array(sort(v)),
        (Some("HGETALL"), Frame::Map(mut pairs)) => {
            pairs.sort_by_key(|p| format!("{p:?}"));
            Frame::Map(pairs)
        }
        (Some("HGETALL"), Frame::Array(v)) => {
            let mut pairs: Vec<Vec<Frame>> = v.chunks(2).map(<[Frame]>::to_vec).collect();
            pairs.sort_by_key(|p| format!("{p:?}"));
            Frame::Array(pairs.concat())
        }
        (_, f) => f,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_hashes_and_sets_match_a_real_redis_server() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    for line in CRDT_SAME_AS_REDIS {
        let expected = comparable(line, theirs.cmd(line).await);
        let got = comparable(line, ours.cmd(line).await);
        assert_eq!(got, expected, "{line}");
    }
    // RESP3 types on the wire: a map for HGETALL, a set for SMEMBERS.
    ours.cmd("HELLO 3").await;
    assert!(matches!(ours.cmd("HGETALL hh:w").await, Frame::Map(m) if m.len() == 1));
    assert!(matches!(ours.cmd("SMEMBERS st:s").await, Frame::Set(m) if m.len() == 1));
    ours.cmd("HELLO 2").await;

    // The counter is a plain string on every node, holding what Redis would hold.
    wait_until(Duration::from_secs(5), "every node holds -13", || async {
        let mut all = true;
        for i in 0..3 {
            all &= tc.raw_value(i, b"c:n").await == Some(b"-13".to_vec());
        }
        all
    })
    .await;

    // Issue 19: INCR on a string written by SET counts from its value, and a key INCR made is
    // a string that SET, DEL, EXPIRE and APPEND apply to, as in Redis.
    for line in [
        "SET c:plain 5",
        "INCR c:plain",
        "SET c:plain abc",
        "INCR c:plain",
        "GET c:plain",
        "SET c:n 1",
        "INCR c:n",
        "DEL c:n",
        "INCR c:n",
        "EXPIRE c:n 1000",
        "INCR c:n",
        "PERSIST c:n",
        "APPEND c:n 0",
        "INCR c:n",
        "TYPE c:n",
        "APPEND c:n x",
        "INCR c:n",
        "GET c:n",
    ] {
        let expected = theirs.cmd(line).await;
        let got = ours.cmd(line).await;
        assert_eq!(got, expected, "{line}");
    }
    // Issue 19: a hash or a set is a Redis hash or set: expired, deleted, emptied (and so gone),
    // renamed, and its key given another type, as in Redis.
    for line in [
        "APPEND hh:w x",
        "EXPIRE st:s 1000",
        "TTL st:s",
        "SADD st:s other",
        "TTL st:s",
        "PERSIST st:s",
        "DEL hh:w",
        "EXISTS hh:w",
        "HSET hh:w f 1",
        "HDEL hh:w f",
        "EXISTS hh:w",
        "TYPE hh:w",
        "SET hh:w now-a-string",
        "GET hh:w",
        "DEL hh:w",
        "HSET hh:w a 1 b 2",
        "RENAME hh:w hh:moved",
        "HGET hh:moved b",
        "EXISTS hh:w",
        "SREM st:s other",
        "SPOP st:s 5",
        "EXISTS st:s",
        "TYPE st:s",
        "SADD st:s x",
        "TYPE st:s",
        "HINCRBY hh:moved a 41",
        "HINCRBY hh:moved a x",
        "HSET hh:moved s abc",
        "HINCRBY hh:moved s 1",
        "HINCRBY hh:moved big 9223372036854775807",
        "HINCRBY hh:moved big 1",
    ] {
        let expected = comparable(line, theirs.cmd(line).await);
        let got = comparable(line, ours.cmd(line).await);
        assert_eq!(got, expected, "{line}");
    }
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_incrs_and_sadds_lose_nothing() {
    let tc = TestCluster::start(3).await;
    let addr = resp_addr(&tc);
    let clients = (0..4).map(|c| async move {
        let mut r = RespClient::connect(addr).await;
        for i in 0..25 {
            assert!(matches!(r.cmd("INCR conc:n").await, Frame::Integer(_)));
            let member = format!("SADD conc:s m{c}-{i}");
            assert!(matches!(r.cmd(&member).await, Frame::Integer(_)));
            // HINCRBY of one field per client: no other writer, so nothing may be lost.
            let field = format!("HINCRBY conc:h f{c} 2");
            assert_eq!(r.cmd(&field).await, Frame::Integer(2 * (i + 1)));
        }
    });
    futures::future::join_all(clients).await;
    let mut r = RespClient::connect(addr).await;
    assert_eq!(r.cmd("GET conc:n").await, bulk("100"));
    assert_eq!(r.cmd("SCARD conc:s").await, Frame::Integer(100));
    assert_eq!(r.cmd("HGET conc:h f3").await, bulk("50"));
    tc.shutdown().await;
}

/// The rest of the hash and set commands (issue 19): replies and errors as redis-server 7.0's,
/// random picks compared by shape, scans as a set of items.
const MORE_HASH_AND_SET_SAME_AS_REDIS: &[&str] = &[
    "HSETNX hx:h f v",
    "HSETNX hx:h f w",
    "HGET hx:h f",
    "HSETNX hx:h",
    "HINCRBYFLOAT hx:h n 1.5",
    "HINCRBYFLOAT hx:h n 0.1",
    "HINCRBYFLOAT hx:h n 1e3",
    "HINCRBYFLOAT hx:h n 0x10",
    "HINCRBYFLOAT hx:h f 1",
    "HINCRBYFLOAT hx:h n abc",
    "HINCRBYFLOAT hx:h n inf",
    "HINCRBYFLOAT hx:h n 1.18e4932",
    "HINCRBYFLOAT hx:h n 1e5000",
    "HINCRBYFLOAT hx:none n abc",
    "SET hx:s v",
    "HINCRBYFLOAT hx:s n 1",
    "HINCRBYFLOAT hx:s n abc",
    "HSETNX hx:s f v",
    "HRANDFIELD hx:missing",
    "HRANDFIELD hx:missing 3",
    "HRANDFIELD hx:h 0",
    "HRANDFIELD hx:h 1 WITHVALUE",
    "HRANDFIELD hx:h 1 WITHVALUES 2",
    "HRANDFIELD hx:h x",
    "HRANDFIELD hx:h -9223372036854775808",
    "HRANDFIELD hx:h 9223372036854775807 WITHVALUES",
    "ZADD zx:z 1 a",
    "ZRANDMEMBER zx:z 9223372036854775807 WITHSCORES",
    "ZRANDMEMBER zx:z -4611686018427387904 WITHSCORES",
    "HRANDFIELD hx:s",
    "HSCAN hx:h x",
    "HSCAN hx:missing 0 FOO",
    "HSCAN hx:h 0 FOO 1",
    "HSCAN hx:h 0 COUNT 0",
    "HSCAN hx:h 0 MATCH",
    "HSCAN hx:s 0",
    // A hash of few fields keeps Redis's order: new fields last, in argument order.
    "HSET hx:order b 1 a 2 b 3 c 4",
    "HRANDFIELD hx:order 10 WITHVALUES",
    "SADD sx:a a b c",
    "SADD sx:b b c d",
    "SINTERCARD 2 sx:a sx:b",
    "SINTERCARD 2 sx:a sx:b LIMIT 1",
    "SINTERCARD 2 sx:a sx:b LIMIT 0",
    "SINTERCARD 2 sx:a sx:missing",
    "SINTERCARD 0 sx:a",
    "SINTERCARD x sx:a",
    "SINTERCARD 3 sx:a sx:b",
    "SINTERCARD 2 sx:a sx:b LIMIT -1",
    "SINTERCARD 2 sx:a sx:b LIMIT",
    "SINTERCARD 2 sx:a sx:b FOO 1",
    "SINTERCARD 2 sx:a hx:s",
    "SINTERSTORE sx:i sx:a sx:b",
    "SMEMBERS sx:i",
    "SUNIONSTORE sx:u sx:a sx:b",
    "SCARD sx:u",
    "SDIFFSTORE sx:d sx:a sx:b",
    "SMEMBERS sx:d",
    "SDIFFSTORE sx:d sx:a sx:a",
    "EXISTS sx:d",
    "SET sx:over v EX 1000",
    "SUNIONSTORE sx:over sx:a",
    "TTL sx:over",
    "TYPE sx:over",
    "SINTERSTORE sx:e sx:a hx:s",
    "SINTERSTORE sx:e",
    "SMOVE sx:a sx:m a",
    "SMEMBERS sx:a",
    "SMEMBERS sx:m",
    "SMOVE sx:a sx:m a",
    "SMOVE sx:missing hx:s a",
    "SMOVE sx:a hx:s b",
    "SMOVE hx:s sx:a b",
    "SMOVE sx:a sx:a b",
    "SMOVE sx:a sx:a zz",
    "SMOVE sx:m sx:a a",
    "EXISTS sx:m",
    "SSCAN sx:a x",
    "SSCAN sx:missing 0 MATCH",
    "SSCAN sx:a 0 COUNT 0",
    "SSCAN hx:s 0",
    "SADD sx:n 1 2 3",
    "SSCAN sx:n 0",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_hash_and_set_commands_match_a_real_redis_server() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    for line in MORE_HASH_AND_SET_SAME_AS_REDIS {
        let expected = comparable(line, theirs.cmd(line).await);
        let got = comparable(line, ours.cmd(line).await);
        assert_eq!(got, expected, "{line}");
    }
    // Random picks: the same shape (nil, one field, or as many items) as Redis's.
    for line in [
        "HRANDFIELD hx:h",
        "HRANDFIELD hx:h 1",
        "HRANDFIELD hx:h -5",
        "HRANDFIELD hx:h 10",
        "HRANDFIELD hx:h -3 WITHVALUES",
    ] {
        let (got, expected) = (ours.cmd(line).await, theirs.cmd(line).await);
        match (&got, &expected) {
            (Frame::Bulk(_), Frame::Bulk(_)) => {}
            (Frame::Array(a), Frame::Array(b)) => assert_eq!(a.len(), b.len(), "{line}"),
            _ => panic!("{line}: quorumd {got:?}, redis-server {expected:?}"),
        }
    }
    // Scans of a whole small hash and set: the same items, in any order.
    for line in [
        "HSCAN hx:h 0",
        "HSCAN hx:h 0 MATCH n*",
        "SSCAN sx:a 0 MATCH *",
    ] {
        assert_eq!(
            scanned(ours.cmd(line).await),
            scanned(theirs.cmd(line).await),
            "{line}"
        );
    }

    // On a map and an OR-set made by the HTTP API, the commands merge into the CRDT.
    let made = tc
        .http
        .patch(format!("{}/v1/maps/hx:crdt", tc.base))
        .json(&serde_json::json!({ "a": "1" }))
        .send()
        .await
        .expect("map set");
    assert!(made.status().is_success(), "{}", made.status());
    assert_eq!(ours.cmd("HSETNX hx:crdt a 2").await, Frame::Integer(0));
    assert_eq!(ours.cmd("HSETNX hx:crdt b 2").await, Frame::Integer(1));
    assert_eq!(
        ours.cmd("HINCRBYFLOAT hx:crdt a 0.5").await,
        Frame::bulk("1.5")
    );
    assert_eq!(ours.cmd("HGET hx:crdt a").await, Frame::bulk("1.5"));
    assert_eq!(
        scanned(ours.cmd("HSCAN hx:crdt 0").await),
        scanned(Frame::Array(vec![
            Frame::bulk("0"),
            Frame::Array(vec![
                Frame::bulk("a"),
                Frame::bulk("1.5"),
                Frame::bulk("b"),
                Frame::bulk("2")
            ])
        ]))
    );
    tc.shutdown().await;
}

/// A SCAN-like reply with its items sorted (pairs kept together would need the command; a
/// sort of the flat items compares the same content either way for these tests).
fn scanned(f: Frame) -> Frame {
    match f {
        Frame::Array(mut parts) if parts.len() == 2 => {
            if let Frame::Array(items) = &mut parts[1] {
                items.sort_by_key(|f| format!("{f:?}"));
            }
            Frame::Array(parts)
        }
        other => other,
    }
}

/// HINCRBY reads a stored value as INCR reads a string (Redis's `string2ll`): `01`, `+1`,
/// `-0`, `00` and `-01` are not integers. HINCRBYFLOAT reads them as `strtold` does.
const HINCRBY_READS_AS_REDIS: &[&str] = &[
    "HSET hn:h a 01 b +1 c -0 d 00 e -01 f 10 g -9223372036854775808 h 1.0",
    "HINCRBY hn:h a 1",
    "HINCRBY hn:h b 1",
    "HINCRBY hn:h c 1",
    "HINCRBY hn:h d 1",
    "HINCRBY hn:h e 1",
    "HINCRBY hn:h f 1",
    "HINCRBY hn:h g 1",
    "HINCRBY hn:h g -2",
    "HINCRBY hn:h h 1",
    "HMGET hn:h a b c d e f g h",
    "HINCRBYFLOAT hn:h a 1",
    "HINCRBYFLOAT hn:h b 1",
    "HINCRBYFLOAT hn:h c 1",
    "HINCRBYFLOAT hn:h e 1",
    "HINCRBYFLOAT hn:h h 1",
    "HMGET hn:h a b c d e f g h",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hincrby_reads_stored_integers_as_incr_does() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    answers_as_reference(&mut ours, &mut theirs, HINCRBY_READS_AS_REDIS).await;
    tc.shutdown().await;
}
