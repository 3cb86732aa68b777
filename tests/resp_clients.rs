//! Redis clients, unchanged, against quorumd's Redis-protocol port (issue 19): redis-py's
//! common calls (tests/clients/redis_py_calls.py), the `redis` crate's async client, and
//! `redis-benchmark` with its default test set. redis-py and redis-benchmark each have a
//! negative control showing the check fails when a call misbehaves; the Rust client's calls
//! assert their replies one by one.

use quorumd::devcluster::DevCluster;
use quorumd_testkit::cluster::TestCluster;
use quorumd_testkit::tools::{deploy_venv_python, output_text, repo_root};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Output};

fn resp_addr(tc: &TestCluster) -> SocketAddr {
    tc.app().resp_addr().expect("resp enabled")
}

async fn start_redis() -> DevCluster {
    tokio::task::spawn_blocking(|| DevCluster::start(1))
        .await
        .unwrap()
        .expect("redis-server")
}

/// Runs `program` with `args` to completion off the runtime's threads.
async fn run(program: std::path::PathBuf, args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(&program)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
    })
    .await
    .unwrap()
}

async fn redis_py(port: u16, prefix: &str) -> Output {
    let python = tokio::task::spawn_blocking(deploy_venv_python)
        .await
        .unwrap();
    let script = repo_root().join("tests/clients/redis_py_calls.py");
    run(
        python,
        vec![
            script.display().to_string(),
            port.to_string(),
            prefix.to_string(),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_common_calls_work_unchanged() {
    let tc = TestCluster::start(3).await;
    let out = redis_py(resp_addr(&tc).port(), "py:").await;
    let text = output_text(&out);
    assert!(out.status.success(), "redis-py against quorumd:\n{text}");
    assert!(text.contains("ok "), "{text}");
    // redis-py's Lock releases through EVALSHA: the user sees quorumd's reason, not a
    // generic failure.
    assert!(
        text.contains(
            "Lock.release() refused: EVALSHA is not supported by quorumd: a script or function \
             would run on each node separately, outside the quorum"
        ),
        "{text}"
    );
    tc.shutdown().await;
}

/// Negative control: against a plain redis-server, Lock.release() succeeds (it runs the
/// script), which the script counts as a misbehaving call: it must exit 1 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_script_names_the_call_that_misbehaves() {
    let redis = start_redis().await;
    let out = redis_py(redis.nodes[0].port(), "py:").await;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED Lock(timeout=10).acquire() then .release(): got 'released'"),
        "{text}"
    );
}

/// The tests `redis-benchmark` 7.0 runs without `-t`, as its `--csv` output names them.
const DEFAULT_TESTS: &[&str] = &[
    "PING_INLINE",
    "PING_MBULK",
    "SET",
    "GET",
    "INCR",
    "LPUSH",
    "RPUSH",
    "LPOP",
    "RPOP",
    "SADD",
    "HSET",
    "SPOP",
    "ZADD",
    "ZPOPMIN",
    "LPUSH (needed to benchmark LRANGE)",
    "LRANGE_100 (first 100 elements)",
    "LRANGE_300 (first 300 elements)",
    "LRANGE_500 (first 500 elements)",
    "LRANGE_600 (first 600 elements)",
    "MSET (10 keys)",
];

/// `redis-benchmark` 7 prints the first error reply as `Error from server: ...` and exits
/// at once, so no such line and a full CSV mean no error reply at all.
async fn benchmark(port: u16, extra: &[&str]) -> (Output, String) {
    let mut args: Vec<String> = ["-h", "127.0.0.1", "-p", &port.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = run("redis-benchmark".into(), args).await;
    let text = output_text(&out);
    (out, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_default_set_runs_without_an_error_reply() {
    let tc = TestCluster::start(3).await;
    let port = resp_addr(&tc).port();
    let (out, text) = benchmark(port, &["-n", "200", "-c", "4", "--csv"]).await;
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("Error from server"), "{text}");
    let ran: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix('"')?.split('"').next())
        .filter(|name| *name != "test")
        .collect();
    let wanted: BTreeSet<&str> = DEFAULT_TESTS.iter().copied().collect();
    assert_eq!(ran, wanted, "{text}");

    // Negative control: a command quorumd refuses is reported by the same check.
    let (out, refused) = benchmark(port, &["-n", "5", "-c", "1", "EVAL", "return 1", "0"]).await;
    assert!(
        !out.status.success()
            && refused.contains("Error from server: ERR EVAL is not supported by quorumd"),
        "{refused}"
    );
    tc.shutdown().await;
}

/// The `redis` crate's async client, with its typed commands as an application calls them:
/// the same groups as the redis-py script, plus pub/sub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_crate_async_client_works_unchanged() {
    use futures::StreamExt;
    use redis::AsyncCommands;
    let tc = TestCluster::start(3).await;
    let client = redis::Client::open(format!("redis://{}", resp_addr(&tc))).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();

    // Strings, counters, expiry, delete.
    let _: () = c.set("rs:s", "v").await.unwrap();
    assert_eq!(c.get::<_, String>("rs:s").await.unwrap(), "v");
    let _: () = c.set("rs:n", 10).await.unwrap();
    assert_eq!(c.incr::<_, _, i64>("rs:n", 5).await.unwrap(), 15);
    assert!(c.expire::<_, bool>("rs:n", 100).await.unwrap());
    let ttl: i64 = c.ttl("rs:n").await.unwrap();
    assert!((1..=100).contains(&ttl), "ttl {ttl}");
    let _: () = c.mset(&[("rs:m1", "1"), ("rs:m2", "2")]).await.unwrap();
    let got: Vec<Option<String>> = c.mget(&["rs:m1", "rs:m2", "rs:none"]).await.unwrap();
    assert_eq!(got, [Some("1".into()), Some("2".into()), None]);
    assert_eq!(c.append::<_, _, i64>("rs:s", "x").await.unwrap(), 2);
    assert_eq!(c.del::<_, i64>(&["rs:s", "rs:n"]).await.unwrap(), 2);
    assert_eq!(c.exists::<_, i64>("rs:s").await.unwrap(), 0);

    // Hashes, sets, lists, sorted sets.
    let _: () = c
        .hset_multiple("rs:h", &[("a", "1"), ("b", "2")])
        .await
        .unwrap();
    assert_eq!(c.hincr::<_, _, _, i64>("rs:h", "a", 4).await.unwrap(), 5);
    let h: std::collections::HashMap<String, String> = c.hgetall("rs:h").await.unwrap();
    assert_eq!(h.get("a").map(String::as_str), Some("5"));
    assert_eq!(c.sadd::<_, _, i64>("rs:st", &["a", "b"]).await.unwrap(), 2);
    assert!(c.sismember::<_, _, bool>("rs:st", "b").await.unwrap());
    assert_eq!(
        c.rpush::<_, _, i64>("rs:l", &["a", "b", "c"])
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        c.lpop::<_, Option<String>>("rs:l", None).await.unwrap(),
        Some("a".into())
    );
    let l: Vec<String> = c.lrange("rs:l", 0, -1).await.unwrap();
    assert_eq!(l, ["b", "c"]);
    let _: () = c
        .zadd_multiple("rs:z", &[(1, "a"), (2, "b")])
        .await
        .unwrap();
    assert_eq!(c.zincr::<_, _, _, f64>("rs:z", "a", 5).await.unwrap(), 6.0);
    let z: Vec<(String, f64)> = c.zrange_withscores("rs:z", 0, -1).await.unwrap();
    assert_eq!(z, [("b".to_string(), 2.0), ("a".to_string(), 6.0)]);

    // An atomic pipeline (MULTI/EXEC) applies all of its commands and answers each.
    let (a, b, n): (String, i64, i64) = redis::pipe()
        .atomic()
        .set("rs:t1", "a")
        .ignore()
        .get("rs:t1")
        .incr("rs:t2", 1)
        .rpush("rs:t3", "x")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!((a.as_str(), b, n), ("a", 1, 1));

    // SCAN through the client's iterator returns every key once.
    for i in 0..30 {
        let _: () = c.set(format!("rs:scan:{i}"), "x").await.unwrap();
    }
    let mut seen = Vec::new();
    {
        let mut keys = c.scan_match::<_, String>("rs:scan:*").await.unwrap();
        while let Some(k) = keys.next().await {
            seen.push(k.expect("a key"));
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (30, 30), "{seen:?}");

    // Pub/sub: a subscriber on its own connection gets a message published on another.
    let hub = tc.app().pubsub().expect("pub/sub runs").clone();
    quorumd_testkit::cluster::wait_until(
        std::time::Duration::from_secs(10),
        "subscribed on every node",
        || async { hub.subscriptions_up() == 3 },
    )
    .await;
    let mut sub = client.get_async_pubsub().await.unwrap();
    sub.subscribe("rs:news").await.unwrap();
    let receivers: i64 = c.publish("rs:news", "hello").await.unwrap();
    assert_eq!(receivers, 1);
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), sub.on_message().next())
        .await
        .expect("a message within 5 s")
        .expect("subscription open");
    assert_eq!(msg.get_payload::<String>().unwrap(), "hello");
    tc.shutdown().await;
}
