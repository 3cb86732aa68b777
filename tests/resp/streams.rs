//! Streams and consumer groups against a real redis-server, and streams healed by the sweep.

use super::*;

/// The stream commands without consumer groups: redis-server 7.0's replies and errors, option
/// by option, with explicit IDs (`*` IDs differ between servers: checked apart).
const STREAMS_SAME_AS_REDIS: &[&str] = &[
    "XLEN x:a",
    "XRANGE x:a - +",
    "XRANGE x:a - + COUNT 0",
    "XADD x:a 1-1 f v",
    "XADD x:a 1-1 f v",
    "XADD x:a 1-0 f v",
    "XADD x:a 0-0 f v",
    "XADD x:new 0-0 f v",
    "EXISTS x:new",
    "XADD x:a 1-* f2 v2",
    "XADD x:a 2-* f v",
    "XADD x:a 2 a 1 b 2",
    "XADD x:a 3-5 name Sara surname OConnor",
    "XADD x:a 3-* f",
    "XADD x:a NOMKSTREAM 4-0 f v",
    "XADD x:none NOMKSTREAM 4-0 f v",
    "EXISTS x:none",
    "XADD x:a MAXLEN 1 LIMIT 5 5-0 f v",
    "XADD x:a MAXLEN ~ 1 LIMIT -1 5-0 f v",
    "XADD x:a MAXLEN 1 MINID 1 5-0 f v",
    "XADD x:a LIMIT 0 5-0 f v",
    "XADD x:a LIMIT 5 5-0 f v",
    "XADD x:a MAXLEN -1 5-0 f v",
    "XADD x:a MAXLEN x 5-0 f v",
    "XADD x:a MINID - 5-0 f v",
    "XADD x:a (1 f v",
    "XADD x:a 99999999999999999999 f v",
    "XADD x:a 1-2-3 f v",
    "XADD x:a +5-01 f v",
    "XLEN x:a",
    "XRANGE x:a - +",
    "XRANGE x:a - + COUNT 2",
    "XRANGE x:a - + COUNT 0",
    "XRANGE x:a - + COUNT -3",
    "XRANGE x:a - + COUNT",
    "XRANGE x:a - + COUNT x",
    "XRANGE x:a - + FOO",
    "XRANGE x:a 2 3",
    "XRANGE x:a (2-0 +",
    "XRANGE x:a - (3-5",
    "XRANGE x:a (1-1 (3-5",
    "XRANGE x:a 3 2",
    "XRANGE x:a ( +",
    "XRANGE x:a (- +",
    "XRANGE x:a (18446744073709551615-18446744073709551615 +",
    "XRANGE x:a - (0-0",
    "XRANGE x:a 2 (2",
    "XRANGE x:a abc +",
    "XRANGE x:none - + COUNT x",
    "XRANGE x:none - + COUNT 0",
    "XREVRANGE x:a + -",
    "XREVRANGE x:a + - COUNT 2",
    "XREVRANGE x:a + - COUNT 0",
    "XREVRANGE x:a (3-5 -",
    "XREVRANGE x:a 2 3",
    "XREVRANGE x:none + -",
    "XINFO STREAM x:a",
    "XDEL x:a 2-0 9-9",
    "XDEL x:a abc",
    "XDEL x:none abc",
    "XDEL x:a",
    "XINFO STREAM x:a",
    "XTRIM x:a MAXLEN 2",
    "XTRIM x:a MAXLEN = 2",
    "XTRIM x:a MAXLEN 1 FOO",
    "XTRIM x:a",
    "XTRIM x:a FOO",
    "XTRIM x:a FOO 1",
    "XTRIM x:a MAXLEN -1",
    "XTRIM x:a LIMIT 1 MAXLEN 0",
    "XTRIM x:a MAXLEN 0 LIMIT 1",
    "XTRIM x:a MINID -",
    "XTRIM x:none MAXLEN 0",
    "XRANGE x:a - +",
    "XINFO STREAM x:a",
    "XTRIM x:a MINID = 4",
    "XLEN x:a",
    "XINFO STREAM x:a",
    "XADD x:a 5-0 f v",
    "XSETID x:a 1",
    "XSETID x:none 1",
    "XSETID x:a 20 ENTRIESADDED 1",
    "XSETID x:a 20 MAXDELETEDID 30",
    "XSETID x:a 20 ENTRIESADDED -1",
    "XSETID x:a 20 ENTRIESADDED x",
    "XSETID x:a 20 FOO",
    "XSETID x:a abc",
    "XSETID x:a 20 MAXDELETEDID 15 ENTRIESADDED 100",
    "XINFO STREAM x:a",
    "XSETID x:a 14",
    "XSETID x:a 14 MAXDELETEDID 0-0",
    "XINFO STREAM x:a",
    "XADD x:a 14-* f v",
    "XADD x:a 13-5 f v",
    "XDEL x:a 5-0 14-1",
    "XLEN x:a",
    "XRANGE x:a - +",
    "XINFO STREAM x:a",
    "TYPE x:a",
    "EXISTS x:a",
    "XADD x:b 1-1 a 1",
    "XADD x:b 2-1 a 2",
    "XREAD STREAMS x:a x:b 0 0",
    "XREAD COUNT 1 STREAMS x:a x:b 0 1-1",
    "XREAD COUNT 0 STREAMS x:b 0",
    "XREAD STREAMS x:b $",
    "XREAD STREAMS x:none $",
    "XREAD STREAMS x:none 0",
    "XREAD STREAMS x:b 2-1",
    "XREAD STREAMS x:b abc",
    "XREAD STREAMS x:none abc",
    "XREAD STREAMS x:b >",
    "XREAD STREAMS x:b",
    "XREAD STREAMS x:b x:a 0",
    "XREAD COUNT x STREAMS x:b 0",
    "XREAD FOO STREAMS x:b 0",
    "XREAD COUNT 1",
    "XREAD COUNT 1 x:b 0",
    "XREAD GROUP g c STREAMS x:b 0",
    "XREAD NOACK STREAMS x:b 0",
    "XDEL x:b 1-1 2-1",
    "XLEN x:b",
    "XRANGE x:b - +",
    "XINFO STREAM x:b",
    "XREAD STREAMS x:b 0",
    "XADD x:b 2-1 f v",
    "XADD x:b 2-2 f v",
    "XINFO STREAM x:b",
    "XINFO STREAM x:none",
    "XINFO STREAM",
    "XINFO FOO x:b",
    "XINFO STREAM x:b x",
    "XINFO HELP",
    "XINFO HELP x",
    "XINFO",
    "SET x:str v",
    "LPUSH x:list a",
    "XADD x:str 1-1 f v",
    "XADD x:str 0-0 f v",
    "XADD x:list 1-1 f v",
    "XLEN x:str",
    "XRANGE x:str - +",
    "XREVRANGE x:list + -",
    "XDEL x:str 1-1",
    "XDEL x:str abc",
    "XTRIM x:str MAXLEN 0",
    "XSETID x:str 1",
    "XREAD STREAMS x:b x:str 0 0",
    "XINFO STREAM x:str",
    "GET x:b",
    "LPUSH x:b a",
    "HSET x:b f v",
    "SADD x:b m",
    "ZADD x:b 1 m",
    "INCR x:b",
    "APPEND x:b v",
    "TYPE x:b",
    // Values that read as integers are stored as listpack integers by Redis: the same here.
    "XADD x:n 1-1 10 -7 1000000 9223372036854775807 007 -0",
    "XRANGE x:n - +",
    "XINFO STREAM x:n",
    // The keyspace commands move, copy and expire a stream whole, counters included.
    "RENAME x:n x:m",
    "EXISTS x:n",
    "XINFO STREAM x:m",
    "COPY x:m x:c",
    "XADD x:c 1-1 f v",
    "XADD x:c 1-2 f v",
    "EXPIRE x:c 100000",
    "TTL x:c",
    "XDEL x:c 1-2",
    "TTL x:c",
    "TYPE x:c",
    "DEL x:c x:m",
    "XLEN x:c",
    "SET x:c v",
    "XLEN x:c",
];

/// Stream commands against a real redis-server: every line above, the refusals, `*` IDs by
/// shape and order, and a few hundred seeded random XADD/XDEL/XTRIM/XRANGE with explicit IDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_commands_match_a_real_redis_server() {
    use rand::{Rng, SeedableRng};
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    for line in STREAMS_SAME_AS_REDIS {
        let expected = theirs.cmd(line).await;
        let got = ours.cmd(line).await;
        assert_eq!(got, expected, "{line}");
    }

    // `*`: ms-seq IDs, increasing, the second past the first even within a millisecond.
    let auto = |f: &Frame| match f {
        Frame::Bulk(b) => {
            let text = String::from_utf8(b.to_vec()).unwrap();
            let (ms, seq) = text.split_once('-').expect("ms-seq");
            (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
        }
        other => panic!("not an ID: {other:?}"),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let first = auto(&ours.cmd("XADD x:auto * f v").await);
    let second = auto(&ours.cmd("XADD x:auto MAXLEN ~ 10 * f v").await);
    assert!(second > first, "{first:?} {second:?}");
    assert!(
        first.0 >= now && first.0 < now + 60_000,
        "{first:?} vs {now}"
    );
    // A last ID in the future: `*` continues from it, as Redis does.
    let ahead = format!("XSETID x:auto {}-7", now + 3_600_000);
    assert_eq!(ours.cmd(&ahead).await, Frame::ok());
    assert_eq!(
        auto(&ours.cmd("XADD x:auto * f v").await),
        (now + 3_600_000, 8)
    );
    assert_eq!(ours.cmd("XLEN x:auto").await, Frame::Integer(3));

    // Refused, saying why.
    for line in [
        "XREAD BLOCK 0 STREAMS x:b $",
        "XREADGROUP GROUP g c BLOCK 10 STREAMS x:b >",
    ] {
        let reply = ours.cmd(line).await;
        let text = error_text(&reply);
        assert!(
            text.starts_with("ERR blocking stream reads are not supported by quorumd"),
            "{line}: {text}"
        );
    }

    // Seeded random operations with explicit IDs. x:r gets XDEL and exact trims; x:t only
    // XADD and `~` trims (which remove whole nodes: emulated exactly while no XDEL left holes),
    // with values long enough now and then to split nodes by bytes.
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let mut ms = 1u64;
    let mut ids: Vec<u64> = Vec::new();
    let mut lines = 0;
    for i in 0..600 {
        let key = if i % 2 == 0 { "x:r" } else { "x:t" };
        let roll = rng.random_range(0..100);
        let line = if roll < 55 || ids.is_empty() {
            ms += rng.random_range(0..3);
            let seq = rng.random_range(0..3);
            let value = if rng.random_bool(0.05) {
                "v".repeat(rng.random_range(100..1500))
            } else {
                rng.random_range(0..1000).to_string()
            };
            ids.push(ms);
            // Same fields as the first entry or not, to cover both listpack forms.
            if rng.random_bool(0.7) {
                format!("XADD {key} {ms}-{seq} f {value}")
            } else {
                format!("XADD {key} {ms}-* g {value} h x")
            }
        } else if roll < 70 && key == "x:r" {
            let a = ids[rng.random_range(0..ids.len())];
            format!("XDEL x:r {a}-0 {a}-1 {a}-2")
        } else if roll < 78 {
            let n = rng.random_range(0..200);
            if key == "x:r" {
                format!("XTRIM x:r MAXLEN {n}")
            } else {
                format!("XTRIM x:t MAXLEN ~ {n}")
            }
        } else if roll < 84 {
            let a = ids[rng.random_range(0..ids.len())];
            if key == "x:r" {
                format!("XTRIM x:r MINID {a}")
            } else {
                let limit = rng.random_range(0..300);
                format!("XTRIM x:t MINID ~ {a} LIMIT {limit}")
            }
        } else if roll < 88 && key == "x:t" {
            let n = rng.random_range(50..300);
            ms += 1;
            ids.push(ms);
            format!("XADD x:t MAXLEN ~ {n} {ms}-0 f v")
        } else {
            let a = ids[rng.random_range(0..ids.len())];
            let b = ids[rng.random_range(0..ids.len())];
            let count = rng.random_range(0..20);
            if rng.random_bool(0.5) {
                format!("XRANGE {key} {a} ({b} COUNT {count}")
            } else {
                format!("XREVRANGE {key} {b} {a} COUNT {count}")
            }
        };
        let expected = theirs.cmd(&line).await;
        let got = ours.cmd(&line).await;
        assert_eq!(got, expected, "{line}");
        lines += 1;
    }
    assert_eq!(lines, 600);
    // RESP3: XREAD answers a map of streams, XINFO STREAM a map.
    for c in [&mut ours, &mut theirs] {
        c.cmd("HELLO 3").await;
    }
    for line in ["XREAD COUNT 2 STREAMS x:r x:t 0 0", "XINFO STREAM x:t"] {
        let expected = theirs.cmd(line).await;
        let got = ours.cmd(line).await;
        assert!(matches!(got, Frame::Map(_)), "{line}: {got:?}");
        assert_eq!(got, expected, "{line}");
    }
    for line in [
        "XLEN x:r",
        "XLEN x:t",
        "XRANGE x:r - +",
        "XRANGE x:t - +",
        "XINFO STREAM x:t",
    ] {
        let expected = theirs.cmd(line).await;
        let got = ours.cmd(line).await;
        assert_eq!(got, expected, "{line}");
    }
    tc.shutdown().await;
}

/// Consumer-group command lines whose replies must be redis-server 7.0's, times aside (see
/// `without_times`); run in order on fresh keys.
const GROUPS_SAME_AS_REDIS: &[&str] = &[
    "XGROUP",
    "XGROUP FOO",
    "XGROUP HELP",
    "XGROUP HELP x",
    "XGROUP CREATE g:a",
    "XGROUP DESTROY g:a",
    "XGROUP CREATE g:a g1 $",
    "XGROUP CREATE g:a g1 $ MKSTREAM x",
    "XGROUP CREATE g:a g1 $ ENTRIESREAD -2 MKSTREAM",
    "XGROUP CREATE g:a g1 $ ENTRIESREAD x",
    "XGROUP CREATE g:a g1 x MKSTREAM",
    "EXISTS g:a",
    "XGROUP CREATE g:a g1 $ MKSTREAM",
    "XGROUP CREATE g:a g1 $",
    "XINFO STREAM g:a",
    "XINFO GROUPS g:a",
    "XADD g:a 1-1 f v",
    "XADD g:a 2-1 f v g w",
    "XADD g:a 3-1 f 7",
    "XADD g:a 4-1 f v",
    "XREADGROUP GROUP g1 c1 STREAMS g:a",
    "XREADGROUP GROUP g1 STREAMS g:a >",
    "XREADGROUP GROUP g1 c1 COUNT x STREAMS g:a >",
    "XREADGROUP GROUP g1 c1 STREAMS g:a $",
    "XREADGROUP GROUP g1 c1 STREAMS g:a x",
    "XREADGROUP GROUP nog c1 STREAMS g:a >",
    "XREADGROUP GROUP g1 c1 STREAMS g:none >",
    "XREADGROUP COUNT 1 STREAMS g:a > x",
    "XREADGROUP COUNT 1 NOACK STREAMS g:a >",
    "XREADGROUP GROUP g1 c1 COUNT 2 STREAMS g:a >",
    "XREADGROUP GROUP g1 c2 COUNT 1 STREAMS g:a >",
    "XREADGROUP GROUP g1 c3 NOACK COUNT 1 STREAMS g:a >",
    "XREADGROUP GROUP g1 c1 STREAMS g:a 0",
    "XREADGROUP GROUP g1 c1 COUNT 1 STREAMS g:a 1-1",
    "XREADGROUP GROUP g1 c9 STREAMS g:a 0",
    "XINFO GROUPS g:a",
    "XINFO CONSUMERS g:a g1",
    "XINFO CONSUMERS g:a nog",
    "XINFO CONSUMERS g:none g1",
    "XINFO CONSUMERS g:a",
    "XPENDING g:a g1",
    "XPENDING g:a g1 1",
    "XPENDING g:a g1 - + 10",
    "XPENDING g:a g1 - + 10 c1",
    "XPENDING g:a g1 - + 10 nobody",
    "XPENDING g:a g1 (1-1 + 1",
    "XPENDING g:a g1 IDLE 0 - + 10 c2",
    "XPENDING g:a g1 IDLE 3600000 - + 10",
    "XPENDING g:a g1 IDLE 1 - +",
    "XPENDING g:a g1 IDLE x - + 1",
    "XPENDING g:a g1 - + x",
    "XPENDING g:a g1 x + 1",
    "XPENDING g:a nog",
    "XPENDING g:none g1",
    "XACK g:a g1 x",
    "XACK g:a nog x",
    "XACK g:none g1 x",
    "XACK g:a g1 1-1 1-1 9-9",
    "XDEL g:a 2-1",
    "XREADGROUP GROUP g1 c1 STREAMS g:a 0",
    "XCLAIM g:a g1 c2 x 1-1",
    "XCLAIM g:a nog c2 0 1-1",
    "XCLAIM g:a g1 c2 0 1-1 foo",
    "XCLAIM g:a g1 c2 0 1-1 IDLE x",
    "XCLAIM g:a g1 c2 0 x",
    "XCLAIM g:a g1 c2 0 1-1 LASTID x",
    "XCLAIM g:a g1 c2 3600000 3-1",
    "XCLAIM g:a g1 c2 0 3-1 9-9",
    "XCLAIM g:a g1 c4 0 4-1 FORCE JUSTID",
    "XCLAIM g:a g1 c4 0 4-1 RETRYCOUNT 7 TIME 1000",
    "XCLAIM g:a g1 c5 3600000 4-1 IDLE 100",
    "XCLAIM g:a g1 c5 0 2-1 FORCE",
    "XCLAIM g:a g1 c5 0 3-1 IDLE 7200000 LASTID 9-0 JUSTID",
    "XPENDING g:a g1 - + 10",
    "XINFO GROUPS g:a",
    "XAUTOCLAIM g:a g1 c6 x 0",
    "XAUTOCLAIM g:a g1 c6 0 x",
    "XAUTOCLAIM g:a g1 c6 0 0 COUNT 0",
    "XAUTOCLAIM g:a g1 c6 0 0 foo",
    "XAUTOCLAIM g:a nog c6 0 0 COUNT 0",
    "XAUTOCLAIM g:a nog c6 0 0",
    "XAUTOCLAIM g:a g1 c6 3600000 0 JUSTID",
    "XAUTOCLAIM g:a g1 c6 0 0 COUNT 1",
    "XAUTOCLAIM g:a g1 c6 0 (3-1 COUNT 5 JUSTID",
    "XADD g:a 5-1 f v",
    "XADD g:a 6-1 f v",
    "XREADGROUP GROUP g1 c1 STREAMS g:a >",
    "XDEL g:a 5-1",
    "XAUTOCLAIM g:a g1 c6 0 - COUNT 2",
    "XINFO STREAM g:a FULL",
    "XINFO STREAM g:a FULL COUNT 1",
    "XINFO STREAM g:a FULL COUNT x",
    "XINFO STREAM g:a FULL COUNT",
    "XINFO STREAM g:a FOO",
    "XINFO STREAM g:none FULL",
    "XGROUP SETID g:a g1 0 ENTRIESREAD",
    "XGROUP SETID g:a g1 0 FOO 1",
    "XGROUP SETID g:a g1 0 MKSTREAM",
    "XGROUP SETID g:none g1 0 ENTRIESREAD -2",
    "XGROUP SETID g:none g1 0",
    "XGROUP SETID g:a nog 0",
    "XGROUP SETID g:a g1 x",
    "XGROUP SETID g:a g1 -",
    "XINFO GROUPS g:a",
    "XREADGROUP GROUP g1 c7 COUNT 2 STREAMS g:a >",
    "XGROUP SETID g:a g1 $ ENTRIESREAD 3",
    "XINFO GROUPS g:a",
    "XGROUP CREATE g:a 123 0 ENTRIESREAD 0",
    "XGROUP CREATECONSUMER g:a 123 -7",
    "XGROUP CREATECONSUMER g:a 123 -7",
    "XGROUP CREATECONSUMER g:a nog c",
    "XGROUP CREATECONSUMER g:none 123 c",
    "XGROUP CREATECONSUMER g:a 123",
    "XREADGROUP GROUP 123 -7 STREAMS g:a g:a > 0",
    "XINFO GROUPS g:a",
    "XGROUP DELCONSUMER g:a g1 nobody",
    "XGROUP DELCONSUMER g:a g1 c1",
    "XGROUP DELCONSUMER g:a nog c1",
    "XGROUP DESTROY g:a nog",
    "XGROUP DESTROY g:none g1",
    "XGROUP DESTROY g:a 123",
    "XINFO STREAM g:a FULL",
    // The read counter and lag around deleted entries (tombstones) ahead of and behind the
    // group's last-delivered ID.
    "XADD g:t 1-1 f v",
    "XADD g:t 2-1 f v",
    "XADD g:t 3-1 f v",
    "XADD g:t 4-1 f v",
    "XADD g:t 5-1 f v",
    "XGROUP CREATE g:t t1 0",
    "XINFO GROUPS g:t",
    "XREADGROUP GROUP t1 c COUNT 1 STREAMS g:t >",
    "XINFO GROUPS g:t",
    "XDEL g:t 4-1",
    "XINFO GROUPS g:t",
    "XREADGROUP GROUP t1 c COUNT 1 STREAMS g:t >",
    "XINFO GROUPS g:t",
    "XREADGROUP GROUP t1 c COUNT 2 STREAMS g:t >",
    "XINFO GROUPS g:t",
    "XGROUP CREATE g:t t2 2-1 ENTRIESREAD 2",
    "XDEL g:t 1-1",
    "XREADGROUP GROUP t2 c COUNT 1 STREAMS g:t >",
    "XINFO GROUPS g:t",
    "XADD g:t 6-1 f v",
    "XREADGROUP GROUP t2 c STREAMS g:t >",
    "XGROUP CREATE g:t t3 $",
    "XGROUP CREATE g:t t4 0-5",
    "XINFO GROUPS g:t",
    "XTRIM g:t MAXLEN 0",
    "XINFO GROUPS g:t",
    "XREADGROUP GROUP t1 c STREAMS g:t 0",
    "XAUTOCLAIM g:t t1 d 0 0",
    "XINFO STREAM g:t FULL",
    // Counters at i64's end wrap as Redis's C arithmetic does (and read back through the
    // nodes' Lua, rounded past 2^53, without breaking the stream).
    "XGROUP CREATE g:e e1 0 MKSTREAM ENTRIESREAD 9223372036854775807",
    "XADD g:e 1-1 f v",
    "XREADGROUP GROUP e1 c STREAMS g:e >",
    "XINFO GROUPS g:e",
    "XCLAIM g:e e1 c 0 1-1 RETRYCOUNT 9223372036854775807 JUSTID",
    "XCLAIM g:e e1 c 0 1-1 JUSTID",
    "XCLAIM g:e e1 c 0 1-1",
    "XPENDING g:e e1 - + 10",
    "XSETID g:e 5-5 ENTRIESADDED 9223372036854775807",
    "XINFO GROUPS g:e",
    "XLEN g:e",
    "SET g:s v",
    "XGROUP CREATE g:s g1 $",
    "XREADGROUP GROUP g1 c1 STREAMS g:s >",
    "XACK g:s g1 1-1",
    "XPENDING g:s g1",
    "XCLAIM g:s g1 c 0 1-1",
    "XAUTOCLAIM g:s g1 c 0 0",
    "XINFO GROUPS g:s",
    // XADD, XDEL and XTRIM keep the groups.
    "XTRIM g:a MAXLEN 1",
    "XADD g:a 7-1 f v",
    "XINFO STREAM g:a FULL",
];

/// A reply with the times in it zeroed: XPENDING's idle times, XINFO CONSUMERS' idle times,
/// XINFO STREAM FULL's delivery and seen times. Each server reads its own clock, so only these
/// differ; everything else (IDs, counts, owners, order) is compared as it is.
fn without_times(line: &str, f: Frame) -> Frame {
    let words: Vec<&str> = line.split(' ').collect();
    let zero = Frame::Integer(0);
    match f {
        // XPENDING's extended form: [id, consumer, idle, deliveries] per entry.
        Frame::Array(items) if words[0].eq_ignore_ascii_case("XPENDING") && words.len() > 3 => {
            Frame::Array(
                items
                    .into_iter()
                    .map(|e| match e {
                        Frame::Array(mut v) if v.len() == 4 => {
                            v[2] = zero.clone();
                            Frame::Array(v)
                        }
                        other => other,
                    })
                    .collect(),
            )
        }
        Frame::Array(items) if words[0].eq_ignore_ascii_case("XINFO") => {
            Frame::Array(zero_times(items))
        }
        Frame::Map(pairs) if words[0].eq_ignore_ascii_case("XINFO") => {
            Frame::Map(pairs.into_iter().map(|(k, v)| zero_field(k, v)).collect())
        }
        other => other,
    }
}

/// The time fields of XINFO replies, flat (RESP2) or as maps (RESP3), at any depth.
fn zero_times(items: Vec<Frame>) -> Vec<Frame> {
    let mut out = Vec::with_capacity(items.len());
    let mut it = items.into_iter().peekable();
    while let Some(item) = it.next() {
        let is_field = matches!(&item, Frame::Bulk(b) if b.iter().all(|c| c.is_ascii_lowercase() || *c == b'-'));
        if is_field && let Some(value) = it.next() {
            let (k, v) = zero_field(item, value);
            out.push(k);
            out.push(v);
            continue;
        }
        out.push(nested(item));
    }
    out
}

fn nested(f: Frame) -> Frame {
    match f {
        Frame::Array(v) => Frame::Array(zero_times(v)),
        Frame::Map(pairs) => Frame::Map(pairs.into_iter().map(|(k, v)| zero_field(k, v)).collect()),
        other => other,
    }
}

fn zero_field(k: Frame, v: Frame) -> (Frame, Frame) {
    let name = match &k {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    let v = match (name.as_str(), v) {
        ("idle" | "seen-time", Frame::Integer(_)) => Frame::Integer(0),
        // XINFO STREAM FULL: a group's PEL [id, consumer, delivery-time, count], a consumer's
        // [id, delivery-time, count].
        ("pending", Frame::Array(entries)) => Frame::Array(
            entries
                .into_iter()
                .map(|e| match e {
                    Frame::Array(mut p) if p.len() == 4 => {
                        p[2] = Frame::Integer(0);
                        Frame::Array(p)
                    }
                    Frame::Array(mut p) if p.len() == 3 => {
                        p[1] = Frame::Integer(0);
                        Frame::Array(p)
                    }
                    other => other,
                })
                .collect(),
        ),
        (_, v) => nested(v),
    };
    (k, v)
}

/// The consumer-group commands answer as redis-server 7.0 does, times aside (`without_times`):
/// fixed lines (every error path), then seeded random commands of every kind on two streams
/// with two groups, in RESP2 and then RESP3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_consumer_groups_match_a_real_redis_server() {
    use rand::{Rng, SeedableRng};
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    for line in GROUPS_SAME_AS_REDIS {
        let expected = without_times(line, theirs.cmd(line).await);
        let got = without_times(line, ours.cmd(line).await);
        assert_eq!(got, expected, "{line}");
    }
    // Random lines. Minimum idle times are 0 or an hour, and IDLE sets two hours, so that
    // which entries qualify never depends on the moment each server runs the line.
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let mut ms = 0u64;
    let keys = ["g:r1", "g:r2"];
    let groups = ["ga", "gb"];
    let consumers = ["c1", "c2", "c3"];
    for i in 0..900 {
        if i == 450 {
            for c in [&mut ours, &mut theirs] {
                c.cmd("HELLO 3").await;
            }
        }
        let k = keys[rng.random_range(0..2)];
        let g = groups[rng.random_range(0..2)];
        let c = consumers[rng.random_range(0..3)];
        let mut id = || {
            let m = rng.random_range(0..ms + 2);
            format!("{m}-{}", rng.random_range(0..2))
        };
        let (a, b) = (id(), id());
        let idle = ["0", "3600000"][rng.random_range(0..2)];
        let line = match rng.random_range(0..100) {
            0..=19 => {
                ms += rng.random_range(0..2);
                format!("XADD {k} {}-* f {i}", ms + 1)
            }
            20..=21 => format!("XDEL {k} {a} {b}"),
            22 => format!("XTRIM {k} MAXLEN {}", rng.random_range(0..20)),
            23..=26 => {
                let start = ["$", "0", a.as_str()][rng.random_range(0..3)];
                format!("XGROUP CREATE {k} {g} {start} MKSTREAM")
            }
            27..=28 => format!("XGROUP SETID {k} {g} {a}"),
            29 => format!(
                "XGROUP SETID {k} {g} $ ENTRIESREAD {}",
                rng.random_range(-1..30)
            ),
            30 => format!("XGROUP DESTROY {k} {g}"),
            31 => format!("XGROUP CREATECONSUMER {k} {g} {c}"),
            32 => format!("XGROUP DELCONSUMER {k} {g} {c}"),
            33..=47 => {
                let count = rng.random_range(0..4);
                let noack = if rng.random_bool(0.15) { "NOACK " } else { "" };
                format!("XREADGROUP GROUP {g} {c} COUNT {count} {noack}STREAMS {k} >")
            }
            48..=52 => {
                let other = keys[rng.random_range(0..2)];
                format!("XREADGROUP GROUP {g} {c} STREAMS {k} {other} {a} >")
            }
            53..=61 => format!("XACK {k} {g} {a} {b}"),
            62..=66 => {
                let opts = [
                    "",
                    " JUSTID",
                    " FORCE",
                    " RETRYCOUNT 5",
                    " TIME 1000",
                    " IDLE 7200000",
                    " LASTID 3-0",
                ];
                let o = opts[rng.random_range(0..opts.len())];
                format!("XCLAIM {k} {g} {c} {idle} {a} {b}{o}")
            }
            67..=71 => {
                let justid = if rng.random_bool(0.3) { " JUSTID" } else { "" };
                let count = rng.random_range(1..4);
                format!("XAUTOCLAIM {k} {g} {c} {idle} {a} COUNT {count}{justid}")
            }
            72..=77 => format!("XPENDING {k} {g}"),
            78..=83 => {
                let who = if rng.random_bool(0.4) { c } else { "" };
                format!(
                    "XPENDING {k} {g} IDLE {idle} - + {} {who}",
                    rng.random_range(0..5)
                )
                .trim_end()
                .to_string()
            }
            84..=87 => format!("XINFO GROUPS {k}"),
            88..=91 => format!("XINFO CONSUMERS {k} {g}"),
            92..=95 => format!("XINFO STREAM {k} FULL COUNT {}", rng.random_range(0..4)),
            _ => format!("XINFO STREAM {k}"),
        };
        let expected = without_times(&line, theirs.cmd(&line).await);
        let got = without_times(&line, ours.cmd(&line).await);
        assert_eq!(got, expected, "line {i}: {line}");
    }
    for k in keys {
        let line = format!("XINFO STREAM {k} FULL COUNT 0");
        let expected = without_times(&line, theirs.cmd(&line).await);
        let got = without_times(&line, ours.cmd(&line).await);
        assert_eq!(got, expected, "{line}");
    }
    tc.shutdown().await;
}

/// A stream written through quorumd is a real stream on every node, with the same entries,
/// counters and consumer groups; a node wiped and healed by a sweep gets it back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_streams_on_every_node_and_heal_after_a_sweep() {
    // No in-flight window: the sweep right after the writes repairs them instead of waiting.
    let tc = TestCluster::start_with(3, |c| c.sync.in_flight_window_ms = 0).await;
    let mut ours = RespClient::connect(resp_addr(&tc)).await;
    for line in [
        "XADD st 1-1 a 1 b 2",
        "XADD st 2-1 a 3",
        "XADD st 3-1 c x",
        "XDEL st 2-1",
        "XSETID st 9-9 ENTRIESADDED 12 MAXDELETEDID 2-1",
        "XGROUP CREATE st g 0",
        "XREADGROUP GROUP g alice COUNT 1 STREAMS st >",
    ] {
        assert!(!matches!(ours.cmd(line).await, Frame::Error(_)), "{line}");
    }
    let on_node = |i: usize| {
        let tc = &tc;
        async move {
            let mut c = tc.direct(i).await;
            let t: String = common::command(&mut c, &["TYPE", "st"]).await;
            let entries: Vec<(String, Vec<String>)> =
                common::command(&mut c, &["XRANGE", "st", "-", "+"]).await;
            let info: Vec<redis::Value> = common::command(&mut c, &["XINFO", "STREAM", "st"]).await;
            // The group and its pending entry, healed with the stream.
            let pending: redis::Value = common::command(&mut c, &["XPENDING", "st", "g"]).await;
            let mut info = info[6..12].to_vec();
            info.push(pending);
            (t, entries, info)
        }
    };
    let want = (
        "stream".to_string(),
        vec![
            (
                "1-1".to_string(),
                vec!["a".into(), "1".into(), "b".into(), "2".into()],
            ),
            ("3-1".to_string(), vec!["c".into(), "x".into()]),
        ],
    );
    // A quorum write is acknowledged before the last node applies it: wait for the last one
    // (the group's pending entry) everywhere.
    wait_until(Duration::from_secs(5), "the pending entry on every node", || async {
        let mut all = true;
        for i in 0..3 {
            let (_, _, info) = on_node(i).await;
            all &= matches!(&info[6], redis::Value::Array(p) if p.first() == Some(&redis::Value::Int(1)));
        }
        all
    })
    .await;
    let mut infos = Vec::new();
    for i in 0..3 {
        let (t, entries, info) = on_node(i).await;
        assert_eq!((t, entries), want, "node {i}");
        infos.push(info);
    }
    assert!(infos.iter().all(|i| *i == infos[0]), "{infos:?}");
    let bulk = |s: &str| redis::Value::BulkString(s.as_bytes().to_vec());
    assert_eq!(
        infos[0][6],
        redis::Value::Array(vec![
            redis::Value::Int(1),
            bulk("1-1"),
            bulk("1-1"),
            redis::Value::Array(vec![redis::Value::Array(vec![bulk("alice"), bulk("1")])]),
        ]),
        "{infos:?}"
    );
    assert_eq!(
        infos[0][1],
        redis::Value::BulkString(b"9-9".to_vec()),
        "{infos:?}"
    );

    let _: () = common::command(&mut tc.direct(2).await, &["FLUSHALL"]).await;
    // The digest exchange finds the wiped node's buckets differ and copies the stream back
    // (its DUMP from a healthy node, RESTOREd).
    let report = tc.sweep(quorumd::sync::SweepMode::Exchange, false).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.keys_repaired_per_node, [0, 0, 1], "{report:?}");
    let (t, entries, info) = on_node(2).await;
    assert_eq!((t, entries), want);
    assert_eq!(info, infos[0]);
    // Read back through quorumd after the heal, and written again on top of it.
    assert_eq!(ours.cmd("XLEN st").await, Frame::Integer(2));
    assert_eq!(
        ours.cmd("XADD st 10-0 d y").await,
        Frame::bulk(b"10-0".to_vec())
    );
    // A quorum write is acknowledged before the last node applies it.
    settled(&tc, "st", "XLEN", 3).await;
    for i in 0..3 {
        let (_, entries, info) = on_node(i).await;
        assert_eq!(entries.len(), 3, "node {i}");
        assert_eq!(info[6], infos[0][6], "node {i}: the group kept");
    }
    tc.shutdown().await;
}
