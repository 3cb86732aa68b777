//! Every metric family, and every series whose labels are known in advance, is exported at zero
//! by a fresh instance, before anything happened (issue 18, item 2): a `rate()` or an alert on
//! a series that does not exist yet reads "no data", not 0.
//!
//! The metrics recorder is one per process, so this binary holds only this test: nothing else
//! in the process may record the series it expects to find registered. The test cluster runs no
//! sweep of its own (no exchange interval, no cron), and the test sends no request but scrapes.

use quorumd_testkit::cluster as common;
#[allow(dead_code)] // shared with tests/observability.rs
#[path = "support/exposition.rs"]
mod exposition;

use common::TestCluster;
use exposition::{Scrape, scrape};
use quorumd::metric_labels as labels;
use quorumd::metric_names::{self as names, ALL};
use std::time::Duration;

/// Families that cannot be registered at start, and why.
const NOT_AT_START: &[(&str, &str)] = &[
    (
        names::QUEUE_ITEMS,
        "labelled by queue names, which come from clients",
    ),
    (
        names::SHARD_UP,
        "labelled by the masters of Redis Cluster replicas, known from their probes only",
    ),
    (
        names::SHARD_LATENCY,
        "labelled by the masters of Redis Cluster replicas, known from their probes only",
    ),
];

/// What a fresh instance must export: `(family, labels)`, each one series.
type Series = (String, Vec<(&'static str, String)>);

fn expected_series(nodes: &[String], identities: &[String]) -> Vec<Series> {
    let mut want: Vec<Series> = Vec::new();
    let mut add = |name: &str, l: Vec<(&'static str, String)>| want.push((name.to_owned(), l));
    let s = |v: &str| v.to_owned();
    for (node, identity) in nodes.iter().zip(identities) {
        for kind in labels::NODE_ERROR_KINDS {
            add(
                names::NODE_ERRORS,
                vec![("node", node.clone()), ("kind", s(kind))],
            );
        }
        for to in labels::NODE_HEALTH_STATES {
            add(
                names::NODE_HEALTH_CHANGES,
                vec![("node", node.clone()), ("to", s(to))],
            );
        }
        for kind in labels::BATCH_KINDS {
            add(
                names::NODE_BATCHES,
                vec![("node", node.clone()), ("kind", s(kind))],
            );
            add(
                names::NODE_BATCH_ENTRIES,
                vec![("node", node.clone()), ("kind", s(kind))],
            );
        }
        for source in labels::REPAIR_SOURCES {
            add(
                names::KEYS_REPAIRED,
                vec![("node", node.clone()), ("source", s(source))],
            );
        }
        add(names::SWEEP_KEYS_SCANNED, vec![("node", node.clone())]);
        for mode in labels::SWEEP_MODES {
            add(
                names::QUEUE_ITEMS_RESTORED,
                vec![("node", node.clone()), ("mode", s(mode))],
            );
        }
        add(names::HINTS_PENDING, vec![("node", node.clone())]);
        add(names::NOTIFICATIONS_ENABLED, vec![("node", node.clone())]);
        add(
            names::WORKER_FAILURES,
            vec![("worker", labels::probe_worker(identity))],
        );
        for (kind, path, action) in labels::direct_change_labels() {
            add(
                names::DIRECT_CHANGES,
                vec![
                    ("node", node.clone()),
                    ("kind", s(kind)),
                    ("path", s(path)),
                    ("action", s(action)),
                ],
            );
        }
    }
    for mode in labels::SWEEP_MODES {
        for result in labels::SWEEP_RESULTS {
            add(
                names::SWEEPS,
                vec![("mode", s(mode)), ("result", s(result))],
            );
        }
        for name in [
            names::SWEEP_BUCKETS_COMPARED,
            names::SWEEP_BUCKETS_MISMATCHED,
            names::SWEEP_KEYS_DIVERGENT,
            names::SWEEP_ERRORS,
            names::SWEEP_RUNNING,
            names::SWEEP_PROGRESS,
            names::SWEEP_LAST_FINISHED,
        ] {
            add(name, vec![("mode", s(mode))]);
        }
        add(
            &format!("{}_count", names::SWEEP_DURATION),
            vec![("mode", s(mode))],
        );
        for phase in labels::SWEEP_PHASES {
            add(
                names::SWEEP_PHASE,
                vec![("mode", s(mode)), ("phase", s(phase))],
            );
        }
    }
    for state in labels::BUCKET_STATES {
        add(names::BUCKET_TRANSITIONS, vec![("state", s(state))]);
    }
    for worker in labels::WORKERS {
        add(names::WORKER_FAILURES, vec![("worker", s(worker))]);
    }
    for operation in labels::QUORUM_OPERATIONS {
        add(names::QUORUM_FAILURES, vec![("operation", s(operation))]);
    }
    for name in [
        names::READ_REPAIRS,
        names::HINTS_RECORDED,
        names::HINTS_REPLAYED,
        names::RESP_CONNECTIONS,
        names::RESP_REFUSED,
    ] {
        add(name, vec![]);
    }
    for result in labels::LOCK_ACQUIRE_RESULTS {
        add(names::LOCK_ACQUISITIONS, vec![("result", s(result))]);
        add(
            &format!("{}_count", names::LOCK_ACQUIRE_DURATION),
            vec![("result", s(result))],
        );
    }
    for result in labels::LOCK_CHANGE_RESULTS {
        add(names::LOCK_EXTENSIONS, vec![("result", s(result))]);
        add(names::LOCK_RELEASES, vec![("result", s(result))]);
    }
    for operation in labels::QUEUE_OPERATIONS {
        for result in labels::QUEUE_RESULTS {
            add(
                names::QUEUE_OPERATIONS,
                vec![("operation", s(operation)), ("result", s(result))],
            );
        }
    }
    for operation in labels::QUEUE_MOVES {
        add(
            names::QUEUE_OPERATIONS,
            vec![("operation", s(operation)), ("result", s("ok"))],
        );
    }
    for kind in labels::CRDT_TYPES {
        for source in labels::CRDT_MERGE_SOURCES {
            add(
                names::CRDT_MERGES,
                vec![("type", s(kind)), ("source", s(source))],
            );
        }
        for result in labels::CRDT_UPDATE_RESULTS {
            add(
                names::CRDT_UPDATES,
                vec![("type", s(kind)), ("result", s(result))],
            );
        }
    }
    for method in ["GET", "PUT", "DELETE"] {
        for level in labels::CONSISTENCY_LEVELS {
            let kv = |result: &str| {
                vec![
                    ("method", s(method)),
                    ("route", s("/v1/kv/{*key}")),
                    ("consistency", s(level)),
                    ("result", s(result)),
                ]
            };
            for result in labels::HTTP_RESULTS {
                add(names::HTTP_REQUESTS, kv(result));
            }
            add(&format!("{}_count", names::HTTP_DURATION), kv("ok"));
        }
    }
    want
}

/// The families of `ALL` a scrape lacks (a `# TYPE` line and at least one sample), but those
/// that cannot exist at start.
fn missing_families(s: &Scrape) -> Vec<&'static str> {
    let samples = s.sample_names();
    ALL.iter()
        .map(|m| m.name)
        .filter(|name| !NOT_AT_START.iter().any(|(n, _)| n == name))
        .filter(|name| {
            let has_samples = samples.iter().any(|x| {
                *x == *name
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| x.strip_suffix(suffix) == Some(*name))
            });
            s.family_type(name).is_none() || !has_samples
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_instance_exports_every_family_and_known_series_at_zero() {
    let t = TestCluster::start(3).await;
    let nodes = t.cluster.urls();
    let identities: Vec<String> = t
        .cluster
        .nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}/0", n.port()))
        .collect();
    // The latency gauge is set from the first probe's round trip (0 would be a false figure),
    // so the scrape that is checked is one taken after every node answered a probe.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = scrape(&t).await;
        let measured = nodes.iter().all(|n| {
            s.value(names::NODE_LATENCY, &[("node", n.clone())])
                .is_some()
        });
        if measured {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no latency measured for every node within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    s.check_conventions().unwrap();

    let missing = missing_families(&s);
    assert!(
        missing.is_empty(),
        "families a fresh instance does not export: {missing:?}"
    );

    let mut absent = Vec::new();
    for (name, l) in expected_series(&nodes, &identities) {
        match s.value(&name, &l) {
            None => absent.push(format!("{name}{l:?}")),
            // Nothing happened yet, so every counter and gauge registered at start reads 0, but
            // the health changes of the start-up probes and the gauges the lead's live
            // detection sets.
            Some(v)
                if v != 0.0
                    && name != names::NODE_HEALTH_CHANGES
                    && name != names::NOTIFICATIONS_ENABLED =>
            {
                absent.push(format!("{name}{l:?} = {v}, not 0"))
            }
            Some(_) => {}
        }
    }
    assert!(
        absent.is_empty(),
        "{} series missing at start:\n{}",
        absent.len(),
        absent.join("\n")
    );
    t.shutdown().await;
}

/// The negative control: the family check flags an exposition without the families.
#[test]
fn the_check_flags_a_scrape_without_the_families() {
    let bare = Scrape::parse(
        "# TYPE quorumd_http_requests_total counter\nquorumd_http_requests_total{route=\"/\"} 1\n",
    )
    .unwrap();
    let missing = missing_families(&bare);
    assert!(missing.contains(&names::SWEEPS), "{missing:?}");
    assert!(!missing.contains(&names::HTTP_REQUESTS), "{missing:?}");
    assert!(!missing.contains(&names::QUEUE_ITEMS));
}
