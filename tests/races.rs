//! Repairs and old writes racing client writes never replace a newer version: each node's
//! version of a key only grows, and the cluster settles on the newest acknowledged write.

use quorumd_testkit::cluster as common;

use common::{TestCluster, wait_until};
use quorumd::calls;
use quorumd::calls::store::{NodeCondition, WriteOutcome};
use quorumd::hlc::Version;
use quorumd::meta::Meta;
use reqwest::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

const KEY: &str = "race";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repairs_and_old_writes_never_overwrite_newer_versions() {
    let tc = Arc::new(Mutex::new(TestCluster::start(3).await));
    let (http, base, loc) = {
        let t = tc.lock().await;
        (
            t.http.clone(),
            t.base.clone(),
            t.app().store().locate(KEY.as_bytes()).unwrap(),
        )
    };
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<std::sync::Mutex<Vec<(Version, String)>>> = Arc::default();

    // Watchers: every node's stored version of the key must never go down.
    let mut watchers = Vec::new();
    for i in 0..3 {
        let mut conn = tc.lock().await.direct(i).await;
        let (stop, meta_key) = (stop.clone(), loc.meta_key.clone());
        watchers.push(tokio::spawn(async move {
            let mut last: Option<Version> = None;
            let mut samples = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let raw: Option<Vec<u8>> = redis::cmd("HGET")
                    .arg(&*meta_key)
                    .arg(KEY)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(None);
                if let Some(m) = raw.map(|r| Meta::parse(&r).unwrap()) {
                    assert!(
                        last.is_none_or(|l| m.version >= l),
                        "node {i}: version went back from {last:?} to {:?}",
                        m.version
                    );
                    last = Some(m.version);
                    samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            samples
        }));
    }

    // Writers through the API.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (http, base, acked) = (http.clone(), base.clone(), acked.clone());
            tokio::spawn(async move {
                for n in 0..60 {
                    let value = format!("w{w}-{n}");
                    let r = http
                        .put(format!("{base}/v1/kv/{KEY}"))
                        .body(value.clone())
                        .send()
                        .await
                        .unwrap();
                    if r.status() == StatusCode::OK {
                        let body: serde_json::Value = r.json().await.unwrap();
                        let v: Version = body["version"].as_str().unwrap().parse().unwrap();
                        acked.lock().unwrap().push((v, value));
                    }
                }
            })
        })
        .collect();

    // Readers at `one` trigger read repair constantly.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = http
                        .get(format!("{base}/v1/kv/{KEY}?consistency=one"))
                        .send()
                        .await;
                }
            })
        })
        .collect();

    // Old writes: replay stale entries straight into every node's versioned write script.
    let replayer = {
        let (tc, stop, acked, loc) = (tc.clone(), stop.clone(), acked.clone(), loc.clone());
        tokio::spawn(async move {
            let pool = tc.lock().await.app().store().pool().clone();
            let mut rejected = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let oldest = acked.lock().unwrap().first().cloned();
                let stale = match oldest {
                    Some((v, _)) => Meta::for_string(KEY.as_bytes(), v, Some(b"STALE"), None),
                    None => Meta::for_string(
                        KEY.as_bytes(),
                        Version {
                            ms: 1,
                            counter: 0,
                            writer: 1,
                        },
                        Some(b"STALE"),
                        None,
                    ),
                };
                for node in pool.nodes() {
                    if let Ok(outcome) =
                        calls::store::write(node, &loc, &stale, b"STALE", &NodeCondition::None)
                            .await
                    {
                        // Only a node that never saw the key yet may take the very first entry.
                        if matches!(outcome, WriteOutcome::Superseded(_)) {
                            rejected += 1;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            rejected
        })
    };

    // Nemesis: node 2 freezes and thaws, so it falls behind and gets repaired.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        tc.lock().await.cluster.nodes[2].pause();
        tokio::time::sleep(Duration::from_millis(250)).await;
        tc.lock().await.cluster.nodes[2].resume();
    }
    for w in writers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let rejected = replayer.await.unwrap();
    for (i, w) in watchers.into_iter().enumerate() {
        let samples = w.await.unwrap();
        assert!(samples > 10, "node {i} watched only {samples} times");
    }
    assert!(
        rejected > 10,
        "stale writes were attempted and refused ({rejected})"
    );

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 200,
        "most writes succeed with one node flapping: {}",
        acked.len()
    );
    let (newest_version, newest_value) = acked.iter().max_by_key(|(v, _)| *v).unwrap().clone();
    let t = tc.lock().await;
    t.wait_health(2, "up").await;
    // All nodes settle on one version, at least the newest acknowledged one (a write that
    // failed its quorum may still be newer and win: it is indeterminate, not rolled back).
    wait_until(Duration::from_secs(10), "all nodes converge", || async {
        let _ = t.get(KEY, "consistency=all").await;
        let mut versions = Vec::new();
        for i in 0..3 {
            versions.push(t.raw_meta(i, KEY.as_bytes()).await.map(|m| m.version));
        }
        versions.iter().all(|v| *v == versions[0])
            && versions[0].is_some_and(|v| v >= newest_version)
    })
    .await;
    let settled = t.raw_meta(0, KEY.as_bytes()).await.unwrap().version;
    if settled == newest_version {
        for i in 0..3 {
            assert_eq!(
                t.raw_value(i, KEY.as_bytes()).await.as_deref(),
                Some(newest_value.as_bytes()),
                "node {i}"
            );
        }
    }
}
