//! A small Chrome DevTools Protocol client: starts headless Chromium on a free debugging port
//! with a throw-away profile, opens a page and drives it over its websocket (evaluate
//! JavaScript, take screenshots). Enough for the dashboard test, nothing more.

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Browsers tried in order (`CHROMIUM` overrides).
const CANDIDATES: &[&str] = &["chromium", "chromium-browser", "google-chrome"];

pub struct Browser {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

/// The browser binary, or a message saying exactly what to install.
pub fn find_chromium() -> Result<String, String> {
    let wanted: Vec<String> = match std::env::var("CHROMIUM") {
        Ok(c) => vec![c],
        Err(_) => CANDIDATES.iter().map(|s| s.to_string()).collect(),
    };
    for c in &wanted {
        let found = Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return Ok(c.clone());
        }
    }
    Err(format!(
        "no headless browser found (tried {wanted:?}). The dashboard test needs Chromium: \
         install it with `apt-get install chromium` (Debian/Ubuntu), or run `make test`, \
         whose scripts/ensure-deps.sh installs it; or set CHROMIUM to a Chromium binary."
    ))
}

impl Browser {
    pub async fn launch() -> Browser {
        let bin = find_chromium().unwrap_or_else(|m| panic!("{m}"));
        let profile = tempfile::tempdir().expect("browser profile dir");
        let child = Command::new(&bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--window-size=1366,900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        // Chromium writes the port it picked into the profile once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "{bin} did not open its debugging port within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Browser {
            child,
            port,
            _profile: profile,
        }
    }

    /// The first page target, navigated to `url`.
    pub async fn open(&self, url: &str) -> Page {
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{}/json/list", self.port))
            .await
            .expect("devtools target list")
            .json()
            .await
            .expect("target list json");
        let ws_url = targets
            .as_array()
            .and_then(|a| a.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (socket, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .expect("devtools websocket");
        let mut page = Page { socket, next_id: 1 };
        page.call("Page.enable", json!({})).await;
        page.call("Page.navigate", json!({ "url": url })).await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Page {
    socket: Socket,
    next_id: u64,
}

impl Page {
    /// Sends one command and returns its result (events in between are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(msg.to_string()))
            .await
            .expect("send to devtools");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("devtools did not answer {method} within 30 s"))
                .expect("devtools connection open")
                .expect("devtools frame");
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).expect("devtools json");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method} failed: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "page threw evaluating {expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Saves a PNG of the viewport; returns it base64-encoded. Waits for two animation frames
    /// first, so the capture is of a frame drawn after the page's last change.
    pub async fn screenshot(&mut self, path: &Path) -> String {
        self.eval(
            "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
        )
        .await;
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let data = r["data"].as_str().expect("screenshot data").to_owned();
        let png = base64::engine::general_purpose::STANDARD
            .decode(&data)
            .expect("base64 screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifact dir");
        }
        std::fs::write(path, png).expect("write screenshot");
        data
    }
}
