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
