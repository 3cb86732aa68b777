//! The systemd unit and the notify protocol: `systemd-analyze verify` must find nothing to say
//! about deploy/systemd/quorumd.service, its offline security exposure must stay low, and the
//! binary must send READY=1 over NOTIFY_SOCKET only once a quorum of nodes is reachable, then
//! watchdog pings, then STOPPING=1 on SIGTERM.

use quorumd::devcluster::DevCluster;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/systemd/quorumd.service"
);

fn systemd_analyze() -> Command {
    let probe = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: scripts/ensure-deps.sh installs Debian's `systemd` package"
    );
    Command::new("systemd-analyze")
}

/// The shipped unit with ExecStart pointing at the binary this test built: verify checks that
/// the command exists, and /usr/local/bin/quorumd is not installed here. Nothing else changes.
fn unit_for_this_build(dir: &Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/quorumd run"),
        "ExecStart moved?"
    );
    let path = dir.join("quorumd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/quorumd", env!("CARGO_BIN_EXE_quorumd")),
    )
    .unwrap();
    path
}

#[test]
fn unit_passes_systemd_analyze_verify_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let out = systemd_analyze().arg("verify").arg(&unit).output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );

    // Negative control: a typo in a directive must be reported, so silence above means
    // something.
    let broken = dir.path().join("broken.service");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&unit)
            .unwrap()
            .replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"),
    )
    .unwrap();
    let out = systemd_analyze()
        .arg("verify")
        .arg(&broken)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("NoNewPrivilege"), "typo not reported: {said}");
}

#[test]
fn unit_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let out = systemd_analyze()
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for quorumd.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    // 0 is fully locked down, 10 is unprotected; "OK" is below 2.
    assert!(exposure < 2.0, "exposure {exposure}: {text}");
    let shipped = std::fs::read_to_string(UNIT).unwrap();
    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "Restart=on-failure",
        "EnvironmentFile=",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(shipped.contains(needed), "unit lacks {needed:?}");
    }
}

/// Receives datagrams until one equals or starts with `prefix`; returns everything received.
fn wait_for(sock: &UnixDatagram, prefix: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.lines().any(|l| l.starts_with(prefix));
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
    panic!("no {prefix:?} within {limit:?}; received {seen:?}");
}

#[test]
fn ready_is_sent_once_a_quorum_is_reachable_then_watchdog_and_stopping() {
    let mut cluster = DevCluster::start(3).expect("redis-server");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quorumd.toml");
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("{u:?}")).collect();
    std::fs::write(
        &config,
        format!(
            "nodes = [{}]\n[http]\nlisten = \"127.0.0.1:0\"\n[timeouts]\nconnect_ms = 300\n\
             node_ms = 300\nhealth_interval_ms = 100\nreconnect_min_ms = 20\n\
             reconnect_max_ms = 200\n[sync]\nexchange_interval_ms = 0\nfull_sweep_cron = \"\"\n\
             [resp]\nlisten = \"127.0.0.1:0\"\n",
            nodes.join(", ")
        ),
    )
    .unwrap();
    // Two of three nodes are down at start: no quorum, so no READY yet.
    cluster.nodes[1].kill();
    cluster.nodes[2].kill();

    let socket_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quorumd"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env("QUORUMD_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let before = wait_for(
        &sock,
        "STATUS=waiting for a quorum",
        Duration::from_secs(20),
    );
    assert!(
        !before.iter().any(|m| m.contains("READY=1")),
        "READY before a quorum: {before:?}"
    );
    // While waiting, the watchdog is still fed, or systemd would kill a slow start.
    wait_for(&sock, "WATCHDOG=1", Duration::from_secs(5));
    let still_waiting: Vec<String> = (0..5)
        .filter_map(|_| {
            let mut buf = [0u8; 4096];
            sock.recv(&mut buf)
                .ok()
                .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        })
        .collect();
    assert!(
        !still_waiting.iter().any(|m| m.contains("READY=1")),
        "READY with one node of three: {still_waiting:?}"
    );

    // One node back: two of three reachable, a quorum.
    cluster.nodes[1].restart_empty().unwrap();
    let ready = wait_for(&sock, "READY=1", Duration::from_secs(20));
    let last = ready.last().unwrap();
    assert!(
        last.contains("STATUS=serving: 2 of 3 nodes reachable"),
        "{last}"
    );
    wait_for(&sock, "WATCHDOG=1", Duration::from_secs(5));

    // SIGTERM: STOPPING=1, then a clean exit.
    // SAFETY: kill(2) on the child we spawned.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    wait_for(&sock, "STOPPING=1", Duration::from_secs(10));
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}
