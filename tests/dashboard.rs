//! The dashboard in a real headless Chromium, against real nodes: a wiped node's buckets turn
//! "differing" on the page's grid, then the exchange heals them and the grid is all in sync.
//! A screenshot goes to target/artifacts/dashboard.png.

#[path = "support/cdp.rs"]
mod cdp;
use quorumd_testkit::cluster as common;

use common::TestCluster;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

const KEYS: usize = 300;

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts")
}

/// The grid's counters as the page shows them (`data-*` of `#grid-summary`).
async fn grid(page: &mut cdp::Page) -> Value {
    page.eval(GRID).await
}

fn count(v: &Value, field: &str) -> u64 {
    v[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("grid attribute {field} missing in {v}"))
}

const GRID: &str = "({...document.getElementById('grid-summary').dataset})";

/// The sweep's progress as the page shows it: the percentage in the text, and how much of the
/// bar's track its fill covers, as rendered.
const PROGRESS: &str = "(() => { \
    const fill = document.getElementById('sweep-progress').getBoundingClientRect(); \
    const track = document.getElementById('sweep-progress').parentElement; \
    return { shown: parseFloat(document.getElementById('sweep-ratio').textContent), \
             bar: 100 * fill.width / track.clientWidth }; })()";

/// Waits until the page shows a finished sweep, then checks that its bar is filled as far as
/// the percentage beside it says (issue 18: "100.0 %" beside a bar filled about halfway).
async fn assert_progress_matches_bar(page: &mut cdp::Page, what: &str) {
    wait_page(
        page,
        Duration::from_secs(20),
        "the page shows a finished sweep",
        "document.getElementById('sweep').dataset.running",
        |v| v == "false",
    )
    .await;
    let p = page.eval(PROGRESS).await;
    let (shown, bar) = (p["shown"].as_f64().unwrap(), p["bar"].as_f64().unwrap());
    assert!(
        (shown - bar).abs() < 1.0,
        "{what}: the text says {shown} % and the bar is {bar:.1} % filled"
    );
}

/// How much of the progress bar's track is filled in a screenshot (base64 PNG) of the page,
/// in percent: the screenshot is decoded in the page and the track's middle row counted.
async fn bar_in_screenshot(page: &mut cdp::Page, png_base64: &str) -> f64 {
    let expr = format!(
        "(async () => {{ \
          const img = new Image(); img.src = 'data:image/png;base64,{png_base64}'; \
          await img.decode(); \
          const c = document.createElement('canvas'); c.width = img.width; c.height = img.height; \
          const g = c.getContext('2d'); g.drawImage(img, 0, 0); \
          const scale = img.width / window.innerWidth; \
          const t = document.getElementById('sweep-progress').parentElement.getBoundingClientRect(); \
          const y = Math.round((t.top + t.height / 2) * scale); \
          const x0 = Math.round((t.left + 2) * scale), x1 = Math.round((t.right - 2) * scale); \
          const row = g.getImageData(x0, y, x1 - x0, 1).data; \
          let filled = 0; \
          for (let i = 0; i < row.length; i += 4) if (row[i + 2] > 180 && row[i] < 120) filled++; \
          return 100 * filled / (x1 - x0); }})()"
    );
    page.eval(&expr).await.as_f64().expect("bar fill")
}

/// What the page's sweep panel shows: which sweep, and the percentage beside its bar.
const SWEEP_SHOWN: &str = "[document.getElementById('sweep-title').textContent, \
    document.getElementById('sweep-ratio').textContent]";

/// A screenshot to `name` under target/artifacts, whose progress bar must show what the page's
/// text says. A sweep the service starts on its own (a recovery exchange after a wipe is
/// detected) may replace the shown one between reading the text and the capture; the capture
/// is then taken again, so the comparison is always of one frame's text and bar.
async fn screenshot(page: &mut cdp::Page, name: &str) {
    for _ in 0..20 {
        let before = page.eval(SWEEP_SHOWN).await;
        let shown = page.eval(PROGRESS).await["shown"].as_f64().unwrap();
        let png = page.screenshot(&artifacts().join(name)).await;
        if page.eval(SWEEP_SHOWN).await != before {
            continue;
        }
        let bar = bar_in_screenshot(page, &png).await;
        assert!(
            (shown - bar).abs() < 2.0,
            "{name}: the text says {shown} % and the bar in the screenshot is {bar:.1} % filled"
        );
        return;
    }
    panic!("{name}: the sweep shown changed during every one of 20 captures");
}

/// The node events the page lists (`from → to`).
const NODE_EVENTS: &str =
    "[...document.querySelectorAll('#recent li.node span')].map(e => e.textContent)";

/// Evaluates `expr` in the page every 50 ms until `ok` accepts its value; returns that value.
async fn wait_page(
    page: &mut cdp::Page,
    limit: Duration,
    what: &str,
    expr: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let v = page.eval(expr).await;
        if ok(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what} (last: {v})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_exchange(t: &TestCluster, dry_run: bool) -> reqwest::StatusCode {
    t.http
        .post(format!("{}/v1/sweeps", t.base))
        .json(&json!({ "mode": "exchange", "dry_run": dry_run }))
        .send()
        .await
        .expect("post sweep")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_shows_a_wiped_node_differing_then_healed() {
    // Fail loudly, not skip, when the browser is missing.
    if let Err(m) = cdp::find_chromium() {
        panic!("{m}");
    }
    let t = TestCluster::start_with(3, |c| c.sync.in_flight_window_ms = 0).await;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("dash:{i}")).collect();
    let puts = keys.iter().map(|k| t.put(k, format!("value of {k}"), ""));
    for r in futures::future::join_all(puts).await {
        assert!(r.status().is_success(), "seed write: {}", r.status());
    }
    let buckets_with_keys: BTreeSet<u32> = keys
        .iter()
        .map(|k| t.app().store().locate(k.as_bytes()).unwrap().bucket)
        .collect();
    // One exchange in sync: every node gets the sentinel that lets a wipe be detected.
    t.app()
        .sweeper()
        .run(quorumd::sync::SweepRequest::new(
            quorumd::sync::SweepMode::Exchange,
            quorumd::sync::SweepTrigger::Api,
        ))
        .await
        .unwrap();

    let browser = cdp::Browser::launch().await;
    let mut page = browser.open(&format!("{}/", t.base)).await;
    wait_page(
        &mut page,
        Duration::from_secs(20),
        "page connected, grid all in sync",
        // Optional chaining: the page may still be about:blank.
        "[document.getElementById('conn')?.dataset.state, \
          {...document.getElementById('grid-summary')?.dataset}]",
        |v| v[0] == "open" && v[1]["total"] == "4096" && v[1]["inSync"] == "4096",
    )
    .await;
    // Served from the binary with nothing from elsewhere.
    let foreign = page
        .eval("performance.getEntriesByType('resource').filter(e => !e.name.startsWith(location.origin)).length")
        .await;
    assert_eq!(
        foreign, 0,
        "the dashboard loaded something from another origin"
    );
    let nodes = page
        .eval("[...document.querySelectorAll('#nodes tbody tr')].map(r => r.dataset.health)")
        .await;
    assert_eq!(nodes, json!(["up", "up", "up"]));
    // Before its first probe a node is unknown, not down: starting is not a recovery. The
    // list is newest first, so a node's first event is its last line (a busy machine may add
    // later suspect/up changes).
    let events = page.eval(NODE_EVENTS).await;
    let events: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for node in 0..3 {
        let first = events
            .iter()
            .rev()
            .find(|e| e.starts_with(&format!("node {node} ")))
            .unwrap_or_else(|| panic!("no event for node {node}: {events:?}"));
        assert!(
            first.contains(": unknown → up ("),
            "node {node} started as {first:?}"
        );
    }

    // Wipe node 1 behind quorumd's back; a dry run shows the damage without repairing it (a
    // recovery exchange started by the node's detection may beat it: then that one shows it).
    let mut direct = t.direct(1).await;
    let _: () = common::command(&mut direct, &["FLUSHALL"]).await;
    let status = start_exchange(&t, true).await;
    assert!(status == 202 || status == 409, "dry run: {status}");
    let seen = wait_page(
        &mut page,
        Duration::from_secs(20),
        "grid shows the wiped buckets differing",
        GRID,
        |g| count(g, "maxDiffering") >= buckets_with_keys.len() as u64,
    )
    .await;
    assert_eq!(
        count(&seen, "maxDiffering"),
        buckets_with_keys.len() as u64,
        "exactly the buckets holding keys differ after the wipe: {seen}"
    );
    assert_progress_matches_bar(&mut page, "after the dry run").await;
    screenshot(&mut page, "dashboard-differing.png").await;

    // Heal: exchanges until the page shows every bucket in sync again.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let g = grid(&mut page).await;
        if count(&g, "inSync") == 4096 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "grid not all in sync 60 s after the wipe: {g}"
        );
        // 409 while an exchange runs is fine: the next round starts another.
        let _ = start_exchange(&t, false).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for k in &keys {
        assert!(
            t.raw_value(1, k.as_bytes()).await.is_some(),
            "{k} restored on node 1"
        );
    }
    // What the page shows matches what the service says.
    let (_, server) = t.json("/v1/sweeps/buckets").await;
    assert_eq!(server["counts"]["in_sync"], 4096);
    wait_page(
        &mut page,
        Duration::from_secs(20),
        "page shows node 1 up again",
        "document.querySelector('#nodes tr[data-node=\"1\"]').dataset.health",
        |h| h == "up",
    )
    .await;
    let repaired = page
        .eval("Number(document.getElementById('rate').dataset.total)")
        .await;
    assert!(
        repaired.as_u64().unwrap_or(0) >= KEYS as u64,
        "the repair chart counts the {KEYS} keys written back: {repaired}"
    );
    assert_progress_matches_bar(&mut page, "after the heal").await;
    screenshot(&mut page, "dashboard.png").await;
    drop(browser);
    t.shutdown().await;
}

/// The shard marks the page shows for node `node`: `[master, state, latency ms]` triples.
fn shards_of(node: usize) -> String {
    format!(
        "[...document.querySelectorAll('#nodes tr[data-node=\"{node}\"] .shard')]\
         .map(s => [s.dataset.master, ['up', 'suspect', 'down'].find(c => s.classList.contains(c)), \
         s.dataset.latency])"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_replicas_show_their_shards_and_a_dead_master() {
    if let Err(m) = cdp::find_chromium() {
        panic!("{m}");
    }
    let mut t = TestCluster::start_clusters(3, (3, 0), |_| {}).await;
    let browser = cdp::Browser::launch().await;
    let mut page = browser.open(&format!("{}/", t.base)).await;
    let expr = shards_of(1);
    wait_page(
        &mut page,
        Duration::from_secs(20),
        "three shards of node 1, all up, each with its latency",
        &expr,
        |v| {
            v.as_array().is_some_and(|s| {
                s.len() == 3
                    && s.iter().all(|m| {
                        m[1] == "up" && m[2].as_str().is_some_and(|l| l.parse::<f64>().is_ok())
                    })
            })
        },
    )
    .await;
    let victim = 3;
    let port = t.cluster.nodes[victim].port();
    t.cluster.nodes[victim].kill();
    let shown = wait_page(
        &mut page,
        Duration::from_secs(30),
        "node 1 shows its dead master",
        &expr,
        |v| {
            v.as_array()
                .is_some_and(|s| s.iter().any(|m| m[1] == "down"))
        },
    )
    .await;
    let down: Vec<&Value> = shown
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m[1] == "down")
        .collect();
    assert_eq!(down.len(), 1, "{shown}");
    assert!(
        down[0][0].as_str().unwrap().ends_with(&format!(":{port}")),
        "the down shard is the killed master {port}: {shown}"
    );
    // The other replicas' shards are all up.
    let other = page.eval(&shards_of(0)).await;
    assert!(
        other.as_array().unwrap().iter().all(|m| m[1] == "up"),
        "{other}"
    );
    // For a look by eye.
    page.screenshot(&artifacts().join("dashboard-cluster.png"))
        .await;
    drop(browser);
    t.shutdown().await;
}
