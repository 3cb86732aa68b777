//! Test harness: real redis-server processes on free loopback ports (from
//! `quorumd_node::devcluster`), the service started in-process on 127.0.0.1:0, an HTTP client, and
//! direct connections to inspect or tamper with individual nodes.

#![allow(dead_code)] // each test binary uses a different part of the harness

use crate::nemesis::proxy::FaultProxy;
use quorumd_core::config::Config;
use quorumd_core::layout::Layout;
use quorumd_node::devcluster::{DevCluster, DevClusterError};
use quorumd_replication::sync::{SweepMode, SweepReport, SweepRequest, SweepTrigger, SyncError};
use quorumd_service::app::App;
use reqwest::{Response, StatusCode};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::LazyLock;
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
    // Tests that write straight to a node expect only the sweep they run to see it; the tests
    // of live detection turn it on.
    cfg.sync.live_detection = false;
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

    /// quorumd over `count` Redis Clusters of `masters` masters with `replicas` replicas
    /// each, with slot placement. `self.cluster.nodes` holds every server, cluster after
    /// cluster, each cluster's masters first: with no replicas, master `m` of replica `r` is
    /// `nodes[r * masters + m]`.
    pub async fn start_clusters(
        count: usize,
        (masters, replicas): (usize, usize),
        tweak: impl FnOnce(&mut Config),
    ) -> TestCluster {
        Self::launch_slotted(
            move || DevCluster::start_clusters(count, masters, replicas),
            tweak,
        )
        .await
    }

    /// quorumd, with slot placement, over replicas of different shapes: per entry of
    /// `masters`, a Redis Cluster of that many masters, or a standalone server for 0
    /// (`DevCluster::start_shaped`). `self.cluster.nodes` holds every server in that order.
    pub async fn start_shaped(masters: &[usize], tweak: impl FnOnce(&mut Config)) -> TestCluster {
        let masters = masters.to_vec();
        Self::launch_slotted(move || DevCluster::start_shaped(&masters), tweak).await
    }

    /// Starts the servers with `start` (blocking: it waits for `redis-cli --cluster create`)
    /// and quorumd over the replicas it names, with slot placement.
    async fn launch_slotted(
        start: impl FnOnce() -> Result<(DevCluster, Vec<String>), DevClusterError> + Send + 'static,
        tweak: impl FnOnce(&mut Config),
    ) -> TestCluster {
        let (cluster, urls) = tokio::task::spawn_blocking(start)
            .await
            .unwrap()
            .expect("start redis-server replicas");
        let mut cfg = test_config(urls);
        cfg.placement = quorumd_core::layout::Scheme::Slot;
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

    /// Stops the service, leaving the nodes running (for what must happen with no quorumd
    /// attached); `relaunch` starts it again.
    pub async fn stop_service(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await.expect("clean shutdown");
        }
    }

    /// Stops the service and starts it again on the same nodes with `cfg` (e.g. to reach a
    /// node as another user).
    pub async fn relaunch(&mut self, cfg: Config) {
        self.stop_service().await;
        let app = App::start(cfg.validate().expect("valid test config"))
            .await
            .expect("start quorumd");
        self.base = format!("http://{}", app.http_addr());
        self.app = Some(app);
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
        let req = self.http.put(self.kv_url(key, query)).body(value.into());
        req.send().await.expect("http put")
    }

    pub async fn get(&self, key: &str, query: &str) -> Response {
        let req = self.http.get(self.kv_url(key, query));
        req.send().await.expect("http get")
    }

    pub async fn delete(&self, key: &str, query: &str) -> Response {
        let req = self.http.delete(self.kv_url(key, query));
        req.send().await.expect("http delete")
    }

    /// Adds `delta` to the PN-counter `name` (as it goes in the URL path, braces encoded).
    pub async fn counter_add(&self, name: &str, delta: i64) -> Response {
        let req = self.http.post(format!("{}/v1/counters/{name}", self.base));
        let req = req.json(&serde_json::json!({ "delta": delta }));
        req.send().await.expect("http post")
    }

    /// GET `path` (e.g. `/v1/status`) of the service.
    pub async fn fetch(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("http get")
    }

    pub async fn json(&self, path: &str) -> (StatusCode, serde_json::Value) {
        let r = self.fetch(path).await;
        let status = r.status();
        (status, r.json().await.expect("json body"))
    }

    /// The negative control of live detection: from now on the live path drops the events it
    /// hears. Returns once a batch the verifier took before the switch is done.
    pub async fn deafen_live_detection(&self) {
        self.app()
            .sweeper()
            .unsafe_knobs
            .live_drops_events
            .store(true, std::sync::atomic::Ordering::Relaxed);
        wait_until(Duration::from_secs(5), "verifier idle", || async {
            let (_, s) = self.json("/v1/status").await;
            s["workers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|w| w["name"] == "direct:verify" && w["state"] == "idle")
        })
        .await;
    }

    /// `quorumd_live_key_events_total{node = node i, origin}`, as `/metrics` shows it: the key
    /// events live detection heard from node `i`, quorumd's own (`"own"`) or not (`"unmarked"`).
    pub async fn live_key_events(&self, i: usize, origin: &str) -> u64 {
        let node = format!("node=\"{}\"", self.app().store().pool().node(i).display);
        let origin = format!("origin=\"{origin}\"");
        let m = self.fetch("/metrics").await.text().await.expect("metrics");
        m.lines()
            .find(|l| {
                l.starts_with("quorumd_live_key_events_total{")
                    && l.contains(&node)
                    && l.contains(&origin)
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Runs one sweep of `mode` now (`dry_run`: report only), triggered as "test".
    pub async fn try_sweep(
        &self,
        mode: SweepMode,
        dry_run: bool,
    ) -> Result<SweepReport, SyncError> {
        let request = SweepRequest {
            mode,
            dry_run,
            trigger: SweepTrigger::Test,
        };
        self.app().sweeper().run(request).await
    }

    /// [`TestCluster::try_sweep`], which must start.
    pub async fn sweep(&self, mode: SweepMode, dry_run: bool) -> SweepReport {
        self.try_sweep(mode, dry_run).await.expect("sweep runs")
    }

    /// The health quorumd reports for node `i`.
    pub async fn health(&self, i: usize) -> String {
        health_at(&self.http, &self.base, i).await
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
        let holders: Vec<String> = (0..self.cluster.nodes.len())
            .filter(|n| *n != i && self.cluster.nodes[*n].is_running())
            .map(|n| self.cluster.nodes[n].url())
            .collect();
        drop_hints(&identity, &holders).await;
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

    /// How often node `i` has run `command` (commands run by scripts included), from
    /// `INFO commandstats`.
    pub async fn command_calls(&self, i: usize, command: &str) -> u64 {
        let info: String =
            self::command(&mut self.direct(i).await, &["INFO", "commandstats"]).await;
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    }

    /// A direct connection to node `i`, bypassing quorumd (to inspect or tamper).
    pub async fn direct(&self, i: usize) -> redis::aio::MultiplexedConnection {
        direct(&self.cluster.nodes[i].url()).await
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
            .arg(&*loc.meta_key)
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

/// The prefix of quorumd's reserved keys on the nodes in the test config: the config's default.
pub fn key_prefix() -> &'static str {
    static PREFIX: LazyLock<String> = LazyLock::new(|| Config::default().key_prefix);
    &PREFIX
}

/// A reserved key: the prefix, then `rest` (e.g. `reserved_key("d")`, the digest hash).
pub fn reserved_key(rest: &str) -> String {
    format!("{}{rest}", key_prefix())
}

/// The layout of the default configuration (placement `xxh3`, 4096 buckets).
pub fn default_layout() -> Layout {
    let cfg = Config {
        nodes: vec!["redis://127.0.0.1:1".into()],
        ..Config::default()
    };
    cfg.validate()
        .expect("the default configuration with one node is valid")
        .config
        .layout()
}

/// The hash of bucket digests on every node, under the default layout.
pub fn digest_key() -> String {
    default_layout().digest_key(0)
}

/// The bucket digests a node holds under the default layout (bucket → digest). A node keeps
/// each digest as an int64 field that only grows (see `digest_lua!` in quorumd-node), so two
/// nodes with the same metadata can hold different fields: each is reduced mod 2^48, as
/// quorumd reads it.
pub async fn bucket_digests(c: &mut redis::aio::MultiplexedConnection) -> BTreeMap<u32, u64> {
    let fields: BTreeMap<u32, i64> = redis::cmd("HGETALL")
        .arg(digest_key())
        .query_async(c)
        .await
        .expect("HGETALL of the digest hash");
    fields
        .into_iter()
        .map(|(b, f)| (b, f.rem_euclid(1 << 48) as u64))
        .collect()
}

/// A Lua script (EVAL with no keys) that counts the metadata entries on a node: every
/// sub-bucket hash of every bucket of the default layout.
pub fn count_meta_entries_script() -> String {
    let layout = default_layout();
    format!(
        "local n = 0 for b = 0, {} do for s = 0, {} do \
         n = n + redis.call('HLEN', '{}m:' .. b .. ':' .. s) end end return n",
        layout.buckets - 1,
        layout.sub_buckets - 1,
        key_prefix()
    )
}

/// A connection straight to the node at `url`, bypassing quorumd (to inspect or tamper).
pub async fn direct(url: &str) -> redis::aio::MultiplexedConnection {
    // The crate's default 500 ms response timeout is too short for a FLUSHALL of 100,000
    // keys on a loaded CI machine; a test's own deadlines bound it instead.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("direct connection")
}

/// Sends one command, given as its words, on a direct connection; panics on an error reply.
pub async fn command<T: redis::FromRedisValue>(
    c: &mut redis::aio::MultiplexedConnection,
    words: &[&str],
) -> T {
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    cmd.query_async(c)
        .await
        .unwrap_or_else(|e| panic!("{words:?}: {e}"))
}

/// Starts quorumd with `cfg` expecting the start to be refused (a node of another layout), and
/// returns the refusal's message.
pub async fn start_refused(cfg: Config) -> String {
    match App::start(cfg.validate().expect("valid test config")).await {
        Ok(app) => {
            app.shutdown().await.expect("shutdown");
            panic!("quorumd started against a node of another layout")
        }
        Err(e) => e.to_string(),
    }
}

/// Runs `quorumd convert` with `cfg`, as the CLI does: every reachable node converted in place.
pub async fn convert(cfg: Config) -> quorumd_replication::store::layout::ConvertReport {
    let core = quorumd_service::app::Core::open(&cfg.validate().expect("valid test config"))
        .await
        .expect("open the nodes");
    let report = core.store.convert_layout().await.expect("convert");
    core.store.pool().shutdown().await;
    report
}

/// Deletes the hints the nodes at `holders` keep for the node known as `identity`
/// (`host:port/db`), so that node stays behind when it returns, as if the hints were lost.
/// Hints are recorded in the background after a write has answered: this first waits until
/// some holder has them (at least one write must have missed the node), or they could land
/// after the deletion and bring the node up to date after all.
pub async fn drop_hints(identity: &str, holders: &[String]) {
    let key = quorumd_replication::store::hint_key(key_prefix(), identity);
    wait_until(Duration::from_secs(5), "hints recorded", || async {
        for url in holders {
            let held: u64 = redis::cmd("SCARD")
                .arg(&key)
                .query_async(&mut direct(url).await)
                .await
                .unwrap();
            if held > 0 {
                return true;
            }
        }
        false
    })
    .await;
    for url in holders {
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut direct(url).await)
            .await
            .unwrap();
    }
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

/// GET `url`: the body as text, whatever the status.
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    let r = http.get(url).send().await.expect("http get");
    r.text().await.expect("text body")
}

/// GET `url`: the body as JSON, whatever the status.
pub async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    body_json(http.get(url).send().await.expect("http get")).await
}

/// The health the instance at `base` (`http://host:port`) reports for node `i`.
pub async fn health_at(http: &reqwest::Client, base: &str, i: usize) -> String {
    get_json(http, &format!("{base}/v1/status")).await["nodes"][i]["health"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// POSTs `body` as JSON to `url`: the status, and the answer's JSON (null when it is not JSON).
pub async fn post_json(
    http: &reqwest::Client,
    url: String,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let r = http.post(url).json(&body).send().await.expect("http post");
    let status = r.status();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// POSTs `body` to `url` as it is, labelled `application/json` (to send malformed JSON).
pub async fn post_raw_json(http: &reqwest::Client, url: String, body: &'static str) -> Response {
    http.post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("http post")
}

pub async fn body_json(r: Response) -> serde_json::Value {
    r.json().await.expect("json body")
}
