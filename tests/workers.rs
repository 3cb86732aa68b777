//! Background workers and tracked tasks, against real redis-server processes: `/v1/status`
//! lists the workers (probes, scheduled sweeps, the SIGHUP reloader) with their states; a
//! worker whose node is gone counts failed passes (in the status and in
//! `quorumd_worker_failures_total`) and goes back to idle once the node returns;
//! a graceful shutdown waits for a sweep started through the API (a tracked task) instead
//! of dropping it.

use quorumd_testkit::cluster as common;
#[path = "support/exposition.rs"]
#[allow(dead_code)] // shared with tests/observability.rs, which uses all of it
mod exposition;

use common::{TestCluster, wait_until};
use exposition::Scrape;
use serde_json::Value;
use std::time::Duration;

async fn workers(t: &TestCluster) -> Vec<Value> {
    let (status, body) = t.json("/v1/status").await;
    assert_eq!(status, 200);
    body["workers"].as_array().expect("workers list").clone()
}

fn worker<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|w| w["name"] == name)
}

fn probe_name(t: &TestCluster, i: usize) -> String {
    format!("probe:127.0.0.1:{}/0", t.cluster.nodes[i].port())
}

async fn scrape(t: &TestCluster) -> Scrape {
    let scrape = exposition::scrape(t).await;
    scrape.check_conventions().unwrap();
    scrape
}

fn failures_metric(s: &Scrape, worker: &str) -> f64 {
    s.value(
        "quorumd_worker_failures_total",
        &[("worker", worker.to_string())],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_probes_and_the_scheduled_sweeps() {
    let t = TestCluster::start_with(3, |c| {
        c.sync.exchange_interval_ms = 200;
        c.sync.full_sweep_cron = "0 0 3 * * *".into();
    })
    .await;
    let mut expected: Vec<String> = (0..3).map(|i| probe_name(&t, i)).collect();
    expected.push("sweep:exchange".into());
    expected.push("sweep:full".into());
    expected.push("auth:reload".into());
    expected.push("direct:verify".into());
    expected.push("locks:gate".into());
    // One pub/sub subscription per node, held open for as long as it lasts.
    expected.extend((0..3).map(|i| format!("pubsub:127.0.0.1:{}/0", t.cluster.nodes[i].port())));

    // Every probe and the exchange have finished a pass without failing.
    wait_until(
        Duration::from_secs(10),
        "probes and exchange ran",
        || async {
            let list = workers(&t).await;
            ["sweep:exchange"]
                .into_iter()
                .map(String::from)
                .chain((0..3).map(|i| probe_name(&t, i)))
                .all(|name| worker(&list, &name).is_some_and(|w| w["runs"].as_u64() >= Some(1)))
        },
    )
    .await;
    let list = workers(&t).await;
    let mut names: Vec<String> = list
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    expected.sort();
    assert_eq!(names, expected);
    for w in &list {
        let name = w["name"].as_str().unwrap();
        assert_eq!(w["failures"], 0, "{w}");
        assert!(w["last_error"].is_null(), "{w}");
        let state = w["state"].as_str().unwrap();
        if name == "sweep:full" || name == "auth:reload" || name == "direct:verify" {
            // The cron fires at 03:00, no SIGHUP was sent, and no read met a changed value:
            // none has run.
            assert_eq!(state, "idle", "{w}");
            assert_eq!(w["runs"], 0, "{w}");
            assert!(w["last_activity_ms"].is_null(), "{w}");
        } else {
            assert!(state == "idle" || state == "running", "{w}");
            assert!(w["last_activity_ms"].as_u64().unwrap() > 0, "{w}");
        }
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_fails_its_probe_and_the_exchange_until_it_returns() {
    let mut t = TestCluster::start_with(3, |c| c.sync.exchange_interval_ms = 200).await;
    let probe = probe_name(&t, 2);
    let port = t.cluster.nodes[2].port().to_string();
    wait_until(Duration::from_secs(10), "a clean exchange", || async {
        worker(&workers(&t).await, "sweep:exchange")
            .is_some_and(|w| w["runs"].as_u64() >= Some(1) && w["failures"] == 0)
    })
    .await;
    let before = scrape(&t).await;
    assert_eq!(failures_metric(&before, &probe), 0.0);

    t.cluster.nodes[2].kill();
    wait_until(
        Duration::from_secs(10),
        "probe and exchange failures",
        || async {
            let list = workers(&t).await;
            let failing = |name: &str| {
                worker(&list, name).is_some_and(|w| {
                    w["failures"].as_u64() >= Some(1)
                        && w["last_error"].as_str().is_some_and(|e| e.contains(&port))
                })
            };
            failing(&probe) && failing("sweep:exchange")
        },
    )
    .await;
    let list = workers(&t).await;
    let probe_status = worker(&list, &probe).unwrap();
    // Reconnects keep failing while the node is dead: the last pass failed.
    assert_eq!(probe_status["state"], "failed", "{probe_status}");
    let exchange_failures = worker(&list, "sweep:exchange").unwrap()["failures"]
        .as_u64()
        .unwrap();
    for (i, _) in t.cluster.nodes.iter().enumerate().take(2) {
        let healthy = worker(&list, &probe_name(&t, i)).unwrap();
        assert_eq!(healthy["failures"], 0, "{healthy}");
    }
    let after = scrape(&t).await;
    assert!(failures_metric(&after, &probe) >= 1.0);
    assert!(failures_metric(&after, "sweep:exchange") > failures_metric(&before, "sweep:exchange"));

    t.cluster.nodes[2].restart().expect("restart node 2");
    wait_until(Duration::from_secs(15), "workers back to idle", || async {
        let list = workers(&t).await;
        let ok_again = |name: &str| {
            worker(&list, name).is_some_and(|w| w["state"] == "idle" || w["state"] == "running")
        };
        ok_again(&probe) && ok_again("sweep:exchange")
    })
    .await;
    // Recovery does not wipe the record of what failed.
    let list = workers(&t).await;
    assert!(
        worker(&list, "sweep:exchange").unwrap()["failures"].as_u64() >= Some(exchange_failures)
    );
    assert!(worker(&list, &probe).unwrap()["last_error"].is_string());
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_sweep_started_through_the_api() {
    // A full sweep paced to 200 keys (and metadata entries) per second per node: a couple of
    // seconds of work, well within the drain deadline.
    let t = TestCluster::start_with(3, |c| {
        c.buckets = 64;
        c.sync.scan_count = 10;
        c.sync.max_scan_keys_per_sec = 200;
    })
    .await;
    for i in 0..100 {
        assert!(
            t.put(&format!("paced:{i}"), "v", "")
                .await
                .status()
                .is_success()
        );
    }
    let r = t
        .http
        .post(format!("{}/v1/sweeps", t.base))
        .json(&serde_json::json!({"mode": "full"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let sweeper = t.app().sweeper().clone();
    let workers_before = t.app().store().pool().workers().tasks_in_flight();
    assert!(
        sweeper.status().full.is_some(),
        "the sweep is still running"
    );
    assert!(workers_before >= 1, "the sweep is a tracked task");

    t.shutdown().await;
    // Without the wait, shutdown would have returned mid-sweep and closed the connections
    // under it: no finished report, or one with errors.
    let status = sweeper.status();
    assert!(status.full.is_none(), "no full sweep left running");
    let report = status
        .last_full
        .expect("the sweep finished before shutdown returned");
    assert_eq!(report.error_count, 0, "{:?}", report.errors);
    assert!(
        report.keys_scanned_per_node.iter().all(|&n| n >= 100),
        "{:?}",
        report.keys_scanned_per_node
    );
}
