//! External tools some tests run: the Python validators' virtual environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (this crate lives in `crates/testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What a finished process wrote: stdout, then stderr.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The Python of the validators' virtual environment, created by
/// scripts/ensure-deploy-venv.sh (which `make test` runs through ensure-deps; run here too so
/// `cargo test` alone works). `QUORUMD_DEPLOY_VENV` names another venv.
pub fn deploy_venv_python() -> PathBuf {
    let root = repo_root();
    let out = Command::new("bash")
        .arg(root.join("scripts/ensure-deploy-venv.sh"))
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "ensure-deploy-venv.sh: {}",
        output_text(&out)
    );
    std::env::var_os("QUORUMD_DEPLOY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/deploy-venv"))
        .join("bin/python")
}

/// `quorumd run` in a process of its own, until dropped. Instances in one process share the
/// per-key turns of read-modify-writes; a second process is what races with them as another
/// deployment's instance would.
pub struct QuorumdProcess {
    child: std::process::Child,
    /// Where its Redis-protocol front end listens.
    pub resp: std::net::SocketAddr,
    dir: std::path::PathBuf,
}

impl QuorumdProcess {
    /// Starts `binary` (`env!("CARGO_BIN_EXE_quorumd")` in the caller) over `nodes`, with HTTP
    /// and RESP on free ports, no sweeps of its own, live detection off, and `extra` TOML
    /// appended (e.g. a `[timeouts]` section). Returns once the RESP port listens.
    pub fn start(binary: &str, nodes: &[String], extra: &str) -> QuorumdProcess {
        use std::io::BufRead;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "quorumd-process-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("config directory");
        let path = dir.join("quorumd.toml");
        let nodes: Vec<String> = nodes.iter().map(|u| format!("\"{u}\"")).collect();
        std::fs::write(
            &path,
            format!(
                "nodes = [{}]\n[http]\nlisten = \"127.0.0.1:0\"\n[resp]\nlisten = \"127.0.0.1:0\"\n\
                 [sync]\nexchange_interval_ms = 0\nfull_sweep_cron = \"\"\nlive_detection = false\n\
                 {extra}",
                nodes.join(", ")
            ),
        )
        .expect("write the config");
        let mut child = std::process::Command::new(binary)
            .args(["run", "--config"])
            .arg(&path)
            .env("QUORUMD_LOG__FORMAT", "json")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn quorumd");
        let mut logs = std::io::BufReader::new(child.stderr.take().expect("stderr piped"));
        let resp = loop {
            let mut line = String::new();
            let n = logs.read_line(&mut line).expect("read quorumd's log");
            assert!(n > 0, "quorumd exited before listening");
            if line.contains("resp listening") {
                let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
                break log["addr"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .expect("the RESP address");
            }
        };
        // Keep reading, so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in logs.lines() {});
        QuorumdProcess { child, resp, dir }
    }
}

impl Drop for QuorumdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
