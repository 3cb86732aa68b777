//! The binary: `check-config`, `run` with graceful shutdown on SIGTERM, and `demo`.

use quorumd::devcluster::{DevCluster, ping};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_quorumd");

fn write_config(dir: &tempfile::TempDir, body: &str) -> std::path::PathBuf {
    let path = dir.path().join("quorumd.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    path
}

fn check_config(path: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Issue 18, item 6: `--version` names the commit the binary was built from (build.rs), the
/// one `git` reports for this checkout, or "unknown" where git cannot tell.
#[test]
fn version_names_the_commit() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_owned(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        });
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("quorumd {} (commit {commit})\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_accepts_the_minimal_file_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        r#"nodes = ["redis://127.0.0.1:7001", "redis://:hunter2@127.0.0.1:7002", "rediss://user:pw@127.0.0.1:7003"]

[http]
listen = "127.0.0.1:8379"

[resp]
listen = "127.0.0.1:7379"
"#,
    );
    let (ok, stdout, stderr) = check_config(&path);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("node_ms = 500"),
        "defaults are printed: {stdout}"
    );
    assert!(
        !stdout.contains("hunter2") && !stdout.contains(":pw@"),
        "{stdout}"
    );
    assert!(stdout.contains("***"));
    assert!(stderr.contains("read quorum 2"), "{stderr}");
}

#[test]
fn check_config_names_the_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "nodes = [\"redis://a:1\"]\n[http]\nlisen = \"127.0.0.1:1\"\n",
            "lisen",
        ),
        ("nodes = []\n", "nodes"),
        ("nodes = [\"redis://a:1\", \"redis://a:1\"]\n", "nodes[1]"),
        (
            "nodes = [\"redis://a:1\",\"redis://b:1\",\"redis://c:1\"]\n[quorum]\nread = 1\nwrite = 1\n",
            "quorum",
        ),
        (
            "nodes = [\"redis://a:1\"]\n[timeouts]\nnode_ms = 9000\nrequest_ms = 100\n",
            "timeouts.node_ms",
        ),
        (
            "nodes = [\"redis://a:1\"]\n[http]\nlisten = \"not an address\"\n",
            "listen",
        ),
        (
            "nodes = [\"redis://a:1\"]\n[log]\nformat = \"xml\"\n",
            "format",
        ),
    ];
    for (body, field) in cases {
        let path = write_config(&dir, body);
        let (ok, _, stderr) = check_config(&path);
        assert!(!ok, "{body} should be rejected");
        assert!(
            stderr.contains(field),
            "error for {body:?} should name {field}: {stderr}"
        );
    }
    let (ok, _, stderr) = check_config(&dir.path().join("missing.toml"));
    assert!(!ok && stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "nodes = [\"redis://a:1\"]\n");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .env("QUORUMD_HTTP__LISTEN", "127.0.0.1:9999")
        .env("QUORUMD_TIMEOUTS__NODE_MS", "123")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("127.0.0.1:9999") && stdout.contains("node_ms = 123"),
        "{stdout}"
    );
}

#[test]
fn a_directory_given_as_the_configuration_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is a directory: give the path of the TOML file"),
        "{stderr}"
    );
}

#[test]
fn an_environment_variable_naming_no_setting_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "nodes = [\"redis://a:1\"]\n");
    for name in ["QUORUMD_", "QUORUMD_LOCKS__"] {
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .env(name, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(
            stderr.contains(name) && stderr.contains("names no setting"),
            "{stderr}"
        );
    }
}

/// Reads lines from the child's stream until one contains `needle`.
fn wait_for_line(reader: &mut impl BufRead, needle: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "stream closed before {needle:?}; saw:\n{seen}");
        if line.contains(needle) {
            return line;
        }
        seen.push_str(&line);
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// A child that is stopped when the test ends, passed or failed: Ctrl-C first, so a demo stops
/// its nodes, then SIGKILL. Without it a failed assertion leaves the process running, holding
/// the test's output open.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            signal(self.0.id(), libc::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_and_exits_zero_on_sigterm_after_finishing_requests() {
    let cluster = tokio::task::spawn_blocking(|| DevCluster::start(3))
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let path = write_config(
        &dir,
        &format!(
            "nodes = [{}]\nworker_threads = 1\n[http]\nlisten = \"127.0.0.1:0\"\n[resp]\nlisten = \"127.0.0.1:0\"\n",
            nodes.join(", ")
        ),
    );
    let mut child = Spawned(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&path)
            .env("QUORUMD_LOG__FORMAT", "json")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut logs = BufReader::new(child.0.stderr.take().unwrap());
    // The runtime has the configured size (the default is one thread per core).
    let line = wait_for_line(&mut logs, "runtime started");
    let log: serde_json::Value = serde_json::from_str(&line).expect("json log line");
    assert_eq!(log["workers"], 1, "{line}");
    let line = wait_for_line(&mut logs, "http api listening");
    let log: serde_json::Value = serde_json::from_str(&line).expect("json log line");
    let addr: SocketAddr = log["addr"].as_str().unwrap().parse().unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let r = http
        .put(format!("{base}/v1/kv/k"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Requests in flight when SIGTERM arrives still get their answers. Two paused nodes make
    // each write wait for its node timeout, so these are certainly still running.
    let mut cluster = cluster;
    cluster.nodes[1].pause();
    cluster.nodes[2].pause();
    let inflight: Vec<_> = (0..5)
        .map(|i| {
            std::thread::spawn(move || {
                use std::io::Read;
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                let req =
                    format!("PUT /v1/kv/slow{i} HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nv");
                s.write_all(req.as_bytes()).unwrap();
                let mut resp = String::new();
                s.read_to_string(&mut resp).unwrap();
                resp
            })
        })
        .collect();
    // No observable event says "the server has read the request": give it a moment.
    tokio::time::sleep(Duration::from_millis(150)).await;
    signal(child.0.id(), libc::SIGTERM);
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child.0, Duration::from_secs(10)))
            .await
            .unwrap();
    assert!(status.success(), "exit status {status}");
    for t in inflight {
        let resp = t.join().unwrap();
        assert!(
            resp.starts_with("HTTP/1.1 503"),
            "in-flight request answered: {resp}"
        );
        assert!(
            resp.contains("no_quorum") || resp.contains("timeout"),
            "{resp}"
        );
    }
    for n in &mut cluster.nodes {
        n.resume();
    }
    let rest: Vec<String> = logs.lines().map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("\"phase\":\"done\"")),
        "{rest:?}"
    );
}

#[test]
fn demo_starts_nodes_and_stops_them_on_ctrl_c() {
    let mut child = Spawned(
        Command::new(BIN)
            .args(["demo", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut ports = Vec::new();
    for _ in 0..3 {
        let line = wait_for_line(&mut out, "redis-cli -p");
        let port: u16 = line
            .rsplit("-p ")
            .next()
            .unwrap()
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap();
        ports.push(port);
    }
    let addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    assert!(addrs.iter().all(|a| ping(*a)), "demo nodes answer");
    wait_for_line(&mut out, "Press Ctrl-C");
    signal(child.0.id(), libc::SIGINT);
    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(
        addrs.iter().all(|a| !ping(*a)),
        "demo nodes are gone after exit"
    );
}

/// The port numbers after each `-p ` in a line the demo printed.
fn ports_in(line: &str) -> Vec<u16> {
    line.split("-p ")
        .skip(1)
        .map(|p| {
            p.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn demo_with_clusters_serves_three_clusters_of_three_masters() {
    let mut child = Spawned(
        Command::new(BIN)
            .args(["demo", "--cluster", "--port", "0", "--keys", "300"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut clusters = Vec::new();
    for _ in 0..3 {
        let line = wait_for_line(&mut out, "redis-cli -c -p");
        assert!(line.contains("redis+cluster://"), "{line}");
        let ports = ports_in(&line);
        assert_eq!(ports.len(), 3, "three masters: {line}");
        clusters.push(ports);
    }
    let resp_line = wait_for_line(&mut out, "SET greeting hello");
    let resp_port = ports_in(&resp_line)[0];
    wait_for_line(&mut out, "Press Ctrl-C");
    // A write through the Redis protocol lands in every cluster, on the master of its slot.
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{resp_port}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("demo:greeting")
        .arg("hello")
        .query(&mut c)
        .unwrap();
    let holders = |ports: &[u16]| -> Vec<Option<String>> {
        ports
            .iter()
            .map(|p| {
                let mut m = redis::Client::open(format!("redis://127.0.0.1:{p}"))
                    .unwrap()
                    .get_connection()
                    .unwrap();
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut m).unwrap();
                assert!(info.contains("cluster_state:ok"), "{p}: {info}");
                // Asked of the master that owns the key; the others answer MOVED.
                redis::cmd("GET").arg("demo:greeting").query(&mut m).ok()
            })
            .collect()
    };
    // A quorum write is acknowledged before the last cluster applies it: wait for it in every
    // cluster first.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !clusters
        .iter()
        .all(|ports| holders(ports).iter().any(|v| v.as_deref() == Some("hello")))
    {
        assert!(
            Instant::now() < deadline,
            "demo:greeting not in every cluster within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for ports in &clusters {
        let held = holders(ports);
        assert_eq!(
            held.iter()
                .filter(|v| v.as_deref() == Some("hello"))
                .count(),
            1,
            "exactly one master of {ports:?} holds the key: {held:?}"
        );
    }
    signal(child.0.id(), libc::SIGINT);
    let status = wait_exit(&mut child.0, Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let gone = clusters
        .iter()
        .flatten()
        .all(|p| !ping(SocketAddr::from(([127, 0, 0, 1], *p))));
    assert!(gone, "demo clusters are gone after exit");
}
