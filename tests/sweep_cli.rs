//! `quorumd sweep` from the command line: exit codes for cron and CI, and a full sweep that
//! is killed midway resumes from its checkpoint.

use quorumd_testkit::cluster as common;

use quorumd::devcluster::DevCluster;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_quorumd");

fn config(dir: &tempfile::TempDir, cluster: &DevCluster, sync: &str) -> std::path::PathBuf {
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let path = dir.path().join("quorumd.toml");
    let body = format!(
        "nodes = [{}]\n[sync]\nexchange_interval_ms = 0\nfull_sweep_cron = \"\"\nin_flight_window_ms = 0\n{sync}",
        nodes.join(", ")
    );
    std::fs::File::create(&path)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    path
}

fn sweep(path: &std::path::Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(BIN)
        .arg("sweep")
        .arg("--config")
        .arg(path)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), json)
}

fn fill(url: &str, n: usize, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_connection().unwrap();
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET").arg(format!("{prefix}{i}")).arg(i).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
}

fn hget(url: &str, key: &str, field: &str) -> Option<String> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query(&mut c)
        .unwrap()
}

#[test]
fn dry_run_exits_2_on_divergence_and_0_once_repaired() {
    let cluster = DevCluster::start(3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config(&dir, &cluster, "");
    fill(&cluster.nodes[1].url(), 25, "direct:");
    let (code, json) = sweep(&path, &["--full", "--dry-run"]);
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["report"]["keys_unversioned"], 25);
    assert_eq!(json["report"]["keys_adopted"], 0);
    let (code, json) = sweep(&path, &["--full"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["report"]["keys_adopted"], 25);
    assert_eq!(json["divergence_left"], 0);
    let (code, json) = sweep(&path, &["--dry-run"]);
    assert_eq!(code, 0, "{json}");
}

/// Under `report-only` a full sweep leaves keys created outside quorumd as they are: the keys
/// still differ between nodes afterwards, so the sweep must say so (exit 2, counted in
/// `divergence_left`) rather than exit 0 as if they were in sync. The keys under an `adopt`
/// rule beside them are adopted and not counted.
#[test]
fn a_full_sweep_that_leaves_keys_by_policy_exits_2() {
    let cluster = DevCluster::start(3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        &dir,
        &cluster,
        "direct_writes = \"report-only\"\n[[sync.direct_writes_rules]]\npattern = \"adopted:*\"\npolicy = \"adopt\"\n",
    );
    fill(&cluster.nodes[1].url(), 4, "direct:");
    fill(&cluster.nodes[1].url(), 3, "adopted:");
    let (code, json) = sweep(&path, &["--full"]);
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["report"]["keys_unversioned"], 7, "{json}");
    assert_eq!(json["report"]["keys_adopted"], 3, "{json}");
    assert_eq!(json["report"]["keys_unversioned_left"], 4, "{json}");
    assert_eq!(json["divergence_left"], 4, "{json}");
    let mut c = redis::Client::open(cluster.nodes[0].url())
        .unwrap()
        .get_connection()
        .unwrap();
    let left: Option<String> = redis::cmd("GET").arg("direct:0").query(&mut c).unwrap();
    assert_eq!(left, None, "report-only copied a key");
    let adopted: Option<String> = redis::cmd("GET").arg("adopted:0").query(&mut c).unwrap();
    assert_eq!(
        adopted.as_deref(),
        Some("0"),
        "the adopt rule's key was not copied"
    );
}

/// Hint sets of a node removed from the configuration are replayed by nobody: the full sweep
/// deletes them (a dry run counts them), and keeps those of configured nodes.
#[test]
fn a_full_sweep_deletes_the_hint_sets_of_removed_nodes() {
    let cluster = DevCluster::start(3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config(&dir, &cluster, "");
    let removed = common::reserved_key("h:127.0.0.1:1/0");
    let kept = common::reserved_key(&format!("h:127.0.0.1:{}/0", cluster.nodes[2].port()));
    let mut c = redis::Client::open(cluster.nodes[0].url())
        .unwrap()
        .get_connection()
        .unwrap();
    for set in [&removed, &kept] {
        let _: () = redis::cmd("SADD")
            .arg(set)
            .arg("k1")
            .arg("k2")
            .query(&mut c)
            .unwrap();
    }
    let exists = |c: &mut redis::Connection, key: &str| -> bool {
        redis::cmd("EXISTS").arg(key).query::<u64>(c).unwrap() == 1
    };
    let (code, json) = sweep(&path, &["--full", "--dry-run"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["report"]["orphan_hint_sets"], 1, "{json}");
    assert!(exists(&mut c, &removed), "a dry run deleted a hint set");
    let (code, json) = sweep(&path, &["--full"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["report"]["orphan_hint_sets"], 1, "{json}");
    assert!(
        !exists(&mut c, &removed),
        "the removed node's hint set is still there"
    );
    assert!(
        exists(&mut c, &kept),
        "a configured node's hint set was deleted"
    );
}

#[test]
fn a_full_sweep_killed_midway_resumes_from_its_checkpoint() {
    let cluster = DevCluster::start(3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Slow enough to be killed in the middle of node 0's keyspace.
    let path = config(
        &dir,
        &cluster,
        "scan_count = 50\nmax_scan_keys_per_sec = 1500\n",
    );
    let total = 3000;
    fill(&cluster.nodes[0].url(), total, "k:");
    let mut child = Command::new(BIN)
        .arg("sweep")
        .arg("--config")
        .arg(&path)
        .arg("--full")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let node0 = cluster.nodes[0].url();
    // Where the full sweep keeps its checkpoint.
    let checkpoint = common::reserved_key("sweep:full");
    let deadline = Instant::now() + Duration::from_secs(20);
    let cursor = loop {
        if let Some(c) = hget(&node0, &checkpoint, "cursor") {
            break c;
        }
        assert!(Instant::now() < deadline, "no checkpoint written");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_ne!(cursor, "0");
    child.kill().unwrap();
    child.wait().unwrap();
    let saved = hget(&node0, &checkpoint, "cursor").expect("checkpoint survives the kill");

    let (code, json) = sweep(&path, &["--full"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        json["report"]["resumed_from_cursor_per_node"][0]
            .as_u64()
            .unwrap()
            .to_string(),
        saved,
        "node 0's scan resumed from the checkpoint"
    );
    assert!(json["report"]["keys_scanned_per_node"][0].as_u64().unwrap() > 0);
    assert_eq!(json["divergence_left"], 0);
    assert_eq!(
        hget(&node0, &checkpoint, "cursor"),
        None,
        "checkpoint cleared at the end"
    );
    for node in &cluster.nodes {
        let mut c = redis::Client::open(node.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let n: u64 = redis::cmd("EVAL")
            .arg(common::count_meta_entries_script())
            .arg(0)
            .query(&mut c)
            .unwrap();
        assert_eq!(n, total as u64, "every key versioned on {}", node.url());
    }
}
