//! SIGTERM drains: requests already inside the service when the signal arrives all complete
//! successfully, while new connections are refused; `http.drain_timeout_ms` bounds the wait. A gate between quorumd and each node
//! holds the writes, so the requests are provably in flight (their values seen on the wire to
//! every node) when the signal is sent. Control: the same scenario with SIGKILL loses them, so
//! the test can tell a drain from no drain.

use quorumd_testkit::cluster as common;

use common::wait_until;
use quorumd::devcluster::{DevCluster, free_port};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

const MARKER: &[u8] = b"drain-value-";
const IN_FLIGHT: usize = 12;

/// A TCP proxy that counts `MARKER` in what quorumd sends to a node and, while closed,
/// forwards nothing to the node (it keeps reading, so the count stays exact).
struct GatedProxy {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    seen: Arc<AtomicUsize>,
}

impl GatedProxy {
    async fn start(upstream: SocketAddr) -> GatedProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, gate) = watch::channel(true);
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (mut client_rd, mut client_wr) = client.into_split();
                let (mut server_rd, mut server_wr) = server.into_split();
                let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    // The tail of the previous chunk, so a marker split between reads counts.
                    let mut carry: Vec<u8> = Vec::new();
                    while let Ok(n) = client_rd.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        carry.extend_from_slice(&buf[..n]);
                        let hits = carry.windows(MARKER.len()).filter(|w| *w == MARKER).count();
                        counter.fetch_add(hits, Ordering::SeqCst);
                        let keep = carry.len().min(MARKER.len() - 1);
                        carry.drain(..carry.len() - keep);
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                });
                let mut gate = gate.clone();
                tokio::spawn(async move {
                    while let Some(chunk) = rx.recv().await {
                        if gate.wait_for(|open| *open).await.is_err()
                            || server_wr.write_all(&chunk).await.is_err()
                        {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
                });
            }
        });
        GatedProxy { addr, open, seen }
    }
}

fn start_service(
    proxies: &[GatedProxy],
    port: u16,
    dir: &std::path::Path,
    timeouts: &str,
) -> Child {
    let nodes: Vec<String> = proxies
        .iter()
        .map(|p| format!("\"redis://{}\"", p.addr))
        .collect();
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

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A service with `IN_FLIGHT` writes inside it, held at the gates.
struct Scenario {
    _cluster: DevCluster,
    proxies: Vec<GatedProxy>,
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
        proxies.push(GatedProxy::start(n.addr()).await);
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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "service not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
        p.open.send_replace(false);
        p.seen.store(0, Ordering::SeqCst);
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
    wait_for("all writes on the wire to every node", || {
        proxies
            .iter()
            .all(|p| p.seen.load(Ordering::SeqCst) == IN_FLIGHT)
    })
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
        wait_for("new connections refused", || {
            TcpStream::connect_timeout(&http_addr, Duration::from_millis(100)).is_err()
        })
        .await;
    }

    fn open_gates(&self) {
        for p in &self.proxies {
            p.open.send_replace(true);
        }
    }

    /// Waits for the process to exit.
    async fn exit_status(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "quorumd did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
