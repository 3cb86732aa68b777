//! Test harness: real redis-server processes on free loopback ports (from
//! `quorumd_node::devcluster`), the service started in-process on 127.0.0.1:0, an HTTP client, and
//! direct connections to inspect or tamper with individual nodes.

#![allow(dead_code)] // each test binary uses a different part of the harness

use crate::nemesis::proxy::FaultProxy;
use quorumd_core::config::Config;
use quorumd_node::devcluster::DevCluster;
use quorumd_service::app::App;
use reqwest::{Response, StatusCode};
use std::future::Future;
use std::time::{Duration, Instant};

pub struct TestCluster {
    pub cluster: DevCluster,
    app: Option<App>,
    pub base: String,
    pub http: reqwest::Client,
}

/// Timeouts short enough that faults are noticed within a test, long enough for a busy
/// 2-core machine.
pub fn test_config(nodes: Vec<String>) -> Config {
    let mut cfg = Config {
        nodes,
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.resp.listen = "127.0.0.1:0".parse().unwrap();
    cfg.timeouts.node_ms = 400;
    cfg.timeouts.request_ms = 3000;
    cfg.timeouts.connect_ms = 400;
    cfg.timeouts.health_interval_ms = 100;
    cfg.timeouts.reconnect_min_ms = 20;
    cfg.timeouts.reconnect_max_ms = 300;
    // Tests start the sweeps they need; a fresh write is never repaired behind their back.
    cfg.sync.exchange_interval_ms = 0;
    cfg.sync.full_sweep_cron = String::new();
    cfg.sync.in_flight_window_ms = 600_000;
    cfg
}

impl TestCluster {
    pub async fn start(n: usize) -> TestCluster {
        Self::start_with(n, |_| {}).await
    }

    pub async fn start_with(n: usize, tweak: impl FnOnce(&mut Config)) -> TestCluster {
        let cluster = start_nodes(n).await;
        let mut cfg = test_config(cluster.urls());
        tweak(&mut cfg);
        Self::launch(cluster, cfg).await
    }

    /// `start_with`, with quorumd reaching node `proxied` through a fault-injecting proxy.
    /// The harness's own connections (`direct`, `raw_value`) still go straight to the node.
    pub async fn start_with_proxy(
        n: usize,
        proxied: usize,
        tweak: impl FnOnce(&mut Config),
    ) -> (TestCluster, FaultProxy) {
        let cluster = start_nodes(n).await;
        let proxy = FaultProxy::start(cluster.nodes[proxied].addr())
            .await
            .expect("start proxy");
        let mut cfg = test_config(cluster.urls());
        cfg.nodes[proxied] = proxy.url();
        tweak(&mut cfg);
        (Self::launch(cluster, cfg).await, proxy)
    }

    async fn launch(cluster: DevCluster, cfg: Config) -> TestCluster {
        let app = App::start(cfg.validate().expect("valid test config"))
            .await
            .expect("start quorumd");
        let base = format!("http://{}", app.http_addr());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        TestCluster {
            cluster,
            app: Some(app),
            base,
            http,
        }
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("service running")
    }

    /// Stops the service gracefully (also done on drop, less politely).
    pub async fn shutdown(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await.expect("clean shutdown");
        }
    }

    pub fn kv_url(&self, key: &str, query: &str) -> String {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        format!("{}/v1/kv/{key}{q}", self.base)
    }

    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>, query: &str) -> Response {
        self.http
            .put(self.kv_url(key, query))
            .body(value.into())
            .send()
            .await
            .expect("http put")
    }

    pub async fn get(&self, key: &str, query: &str) -> Response {
        self.http
            .get(self.kv_url(key, query))
            .send()
            .await
            .expect("http get")
    }

    pub async fn delete(&self, key: &str, query: &str) -> Response {
        self.http
            .delete(self.kv_url(key, query))
            .send()
            .await
            .expect("http delete")
    }

    pub async fn json(&self, path: &str) -> (StatusCode, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("http get");
        let status = r.status();
        (status, r.json().await.expect("json body"))
    }

    /// The health quorumd reports for node `i`.
    pub async fn health(&self, i: usize) -> String {
        let (_, s) = self.json("/v1/status").await;
        s["nodes"][i]["health"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Freezes node `i` and waits until quorumd has declared it down, so that from then on no
    /// write reaches it (a write sent while it is merely paused would still be applied when it
    /// resumes).
    pub async fn isolate(&mut self, i: usize) {
        self.cluster.nodes[i].pause();
        self.wait_health(i, "down").await;
    }

    /// Thaws an isolated node after deleting the hints the others hold for it (at least one
    /// write must have missed it while isolated), so it stays behind (as if the hints were
    /// lost) and what is under test — read repair, a stale read — is not preempted by hinted
    /// handoff.
    pub async fn resume_without_hints(&mut self, i: usize) {
        let identity = format!("127.0.0.1:{}/0", self.cluster.nodes[i].port());
        let key = quorumd_replication::store::hint_key("qd:", &identity);
        // Hints are recorded in the background after a write has answered: wait for them, or
        // they could land after the deletion below and bring the node up to date after all.
        wait_until(Duration::from_secs(5), "hints recorded", || async {
            for other in (0..self.cluster.nodes.len()).filter(|n| *n != i) {
                if self.cluster.nodes[other].is_running() {
                    let mut c = self.direct(other).await;
                    let held: u64 = redis::cmd("SCARD")
                        .arg(&key)
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    if held > 0 {
                        return true;
                    }
                }
            }
            false
        })
        .await;
        for other in (0..self.cluster.nodes.len()).filter(|n| *n != i) {
            if self.cluster.nodes[other].is_running() {
                let mut c = self.direct(other).await;
                let _: () = redis::cmd("DEL")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .unwrap();
            }
        }
        self.cluster.nodes[i].resume();
    }

    pub async fn wait_health(&self, i: usize, want: &str) {
        wait_until(
            Duration::from_secs(10),
            &format!("node {i} {want}"),
            || async { self.health(i).await == want },
        )
        .await;
    }

    /// A direct connection to node `i`, bypassing quorumd (to inspect or tamper).
    pub async fn direct(&self, i: usize) -> redis::aio::MultiplexedConnection {
        // The crate's default 500 ms response timeout is too short for a FLUSHALL of 100,000
        // keys on a loaded CI machine; a test's own deadlines bound it instead.
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
        redis::Client::open(self.cluster.nodes[i].url())
            .unwrap()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("direct connection")
    }

    /// The raw value of `key` on node `i`.
    pub async fn raw_value(&self, i: usize, key: &[u8]) -> Option<Vec<u8>> {
        let mut c = self.direct(i).await;
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut c)
            .await
            .expect("direct GET")
    }

    /// The metadata entry of `key` on node `i`.
    pub async fn raw_meta(&self, i: usize, key: &[u8]) -> Option<quorumd_core::meta::Meta> {
        let loc = self.app().store().locate(key).expect("user key");
        let mut c = self.direct(i).await;
        let raw: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(&loc.meta_key)
            .arg(key)
            .query_async(&mut c)
            .await
            .expect("HGET");
        raw.map(|r| quorumd_core::meta::Meta::parse(&r).expect("well-formed metadata"))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Resume paused nodes so their kill (in DevCluster's drop) is immediate.
        for n in &mut self.cluster.nodes {
            n.resume();
        }
    }
}

async fn start_nodes(n: usize) -> DevCluster {
    tokio::task::spawn_blocking(move || DevCluster::start(n))
        .await
        .unwrap()
        .expect("start redis-server")
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn body_json(r: Response) -> serde_json::Value {
    r.json().await.expect("json body")
}
