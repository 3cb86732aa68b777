//! SIGTERM drains: requests already inside the service when the signal arrives all complete
//! successfully, while new connections are refused; `http.drain_timeout_ms` bounds the wait.
//! The test kit's proxy between quorumd and each node holds the writes
//! (`LinkFault::HoldToNode`) after counting them, so the requests are provably in flight
//! (their values seen on the wire to every node) when the signal is sent. Control: the same scenario with SIGKILL loses them, so
//! the test can tell a drain from no drain.

use quorumd_testkit::cluster as common;

use common::wait_until;
use quorumd::devcluster::{DevCluster, free_port};
use quorumd_testkit::nemesis::proxy::{FaultProxy, LinkFault};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MARKER: &[u8] = b"drain-value-";
const IN_FLIGHT: usize = 12;

fn start_service(
    proxies: &[FaultProxy],
    port: u16,
    dir: &std::path::Path,
    timeouts: &str,
) -> Child {
    let nodes: Vec<String> = proxies.iter().map(|p| format!("\"{}\"", p.url())).collect();
    let config = dir.join("quorumd.toml");
    // Node timeouts far above how long the gate stays closed: the held writes must succeed.
    // A call slot per held write: with fewer, the writes beyond the slots would wait inside
    // quorumd for a batch (still in flight for the drain, but not on the wire, where the test
    // sees them).
    std::fs::write(
        &config,
        format!(
            "nodes = [{}]\n[quorum]\nbatch_in_flight = {IN_FLIGHT}\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n{timeouts}\n[sync]\n\
             exchange_interval_ms = 0\nfull_sweep_cron = \"\"\n[resp]\nlisten = \"127.0.0.1:0\"\n",
            nodes.join(", ")
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_quorumd"))
        .args(["run", "--config"])
        .arg(&config)
        .env("QUORUMD_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A service with `IN_FLIGHT` writes inside it, held at the gates.
struct Scenario {
    _cluster: DevCluster,
    proxies: Vec<FaultProxy>,
    child: Child,
    port: u16,
    requests: Vec<tokio::task::JoinHandle<reqwest::Result<reqwest::StatusCode>>>,
    _dir: tempfile::TempDir,
}

/// Node timeouts far above how long the gate stays closed: held writes must succeed.
const PATIENT: &str = "[timeouts]\nnode_ms = 8000\nrequest_ms = 10000\nhealth_interval_ms = 1000";

async fn writes_in_flight(http_extra: &str, timeouts: &str) -> Scenario {
    let cluster = tokio::task::spawn_blocking(|| DevCluster::start(3))
        .await
        .unwrap()
        .unwrap();
    let mut proxies = Vec::new();
    for n in &cluster.nodes {
        // Counts the held writes' values on their way to the node.
        proxies.push(FaultProxy::start_counting(n.addr(), MARKER).await.unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let child = start_service(
        &proxies,
        port,
        dir.path(),
        &format!("{http_extra}\n{timeouts}"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(20), "service ready", || async {
        let ready = http.get(format!("{base}/readyz")).send().await;
        ready.is_ok_and(|r| r.status().is_success())
    })
    .await;
    // A first write loads the script on every node, so the held ones are single EVALSHAs
    // (each finds a free call slot, so none is batched).
    let warm = http
        .put(format!("{base}/v1/kv/warm-up"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert!(warm.status().is_success());
    // The quorum answered after two nodes; the third node's call may still be on its way. Held
    // at a closed gate, it would keep one of that node's call slots busy and queue a held write
    // inside quorumd, off the wire. So the gates close only once every node holds the value.
    for node in &cluster.nodes {
        let client = redis::Client::open(node.url()).unwrap();
        let conn = client.get_multiplexed_async_connection().await.unwrap();
        let what = format!("the warm-up write on {}", node.addr());
        wait_until(Duration::from_secs(20), &what, || {
            let mut conn = conn.clone();
            async move {
                let value: Option<String> = redis::cmd("GET")
                    .arg("warm-up")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                value.as_deref() == Some("x")
            }
        })
        .await;
    }

    for p in &proxies {
        p.set(LinkFault::HoldToNode);
        p.reset_seen();
    }
    let requests: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let (http, url) = (http.clone(), format!("{base}/v1/kv/drain-{i}"));
            tokio::spawn(async move {
                let body = format!("{}{i}", String::from_utf8_lossy(MARKER));
                http.put(url).body(body).send().await.map(|r| r.status())
            })
        })
        .collect();
    // Every request has reached every node's connection: all are inside the service.
    wait_until(
        Duration::from_secs(20),
        "all writes on the wire to every node",
        || async { proxies.iter().all(|p| p.seen() == IN_FLIGHT) },
    )
    .await;
    Scenario {
        _cluster: cluster,
        proxies,
        child,
        port,
        requests,
        _dir: dir,
    }
}

impl Scenario {
    /// Sends `signal` and waits until the service refuses new connections.
    async fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the child we spawned.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
        let http_addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_until(
            Duration::from_secs(20),
            "new connections refused",
            || async {
                TcpStream::connect_timeout(&http_addr, Duration::from_millis(100)).is_err()
            },
        )
        .await;
    }

    fn open_gates(&self) {
        for p in &self.proxies {
            p.heal();
        }
    }

    /// Waits for the process to exit.
    async fn exit_status(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        wait_until(Duration::from_secs(20), "quorumd to exit", || {
            status = self.child.try_wait().unwrap();
            std::future::ready(status.is_some())
        })
        .await;
        status.expect("exited")
    }

    /// How many of the held requests succeeded.
    async fn succeeded(&mut self) -> usize {
        let mut ok = 0;
        for r in self.requests.drain(..) {
            if matches!(r.await.unwrap(), Ok(s) if s.is_success()) {
                ok += 1;
            }
        }
        ok
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_every_request_in_flight() {
    let mut s = writes_in_flight("", PATIENT).await;
    s.signal(libc::SIGTERM).await;
    s.open_gates();
    assert_eq!(s.succeeded().await, IN_FLIGHT);
    let status = s.exit_status().await;
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_sigkill_loses_the_requests_in_flight() {
    let mut s = writes_in_flight("", PATIENT).await;
    s.signal(libc::SIGKILL).await;
    s.open_gates();
    assert_eq!(s.succeeded().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_bounds_the_shutdown() {
    // Nodes that would hold the requests for a minute; the drain gives them 300 ms.
    let minute = "[timeouts]\nnode_ms = 60000\nrequest_ms = 60000\nhealth_interval_ms = 1000";
    let mut s = writes_in_flight("drain_timeout_ms = 300", minute).await;
    s.signal(libc::SIGTERM).await;
    // The gates stay closed: the process must exit on its own, well before the node timeout.
    let status = s.exit_status().await;
    assert!(status.success(), "exit after the drain deadline: {status}");
    s.open_gates();
    assert_eq!(s.succeeded().await, 0, "dropped at the deadline");
}
