//! Redis clients, unchanged, against quorumd's Redis-protocol port (issue 19): redis-py's
//! common calls (tests/clients/redis_py_calls.py) and `redis-benchmark` with its default test
//! set. Each has a negative control showing the check fails when a call misbehaves.

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
