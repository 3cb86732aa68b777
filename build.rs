//! Puts the commit the binary is built from in `BUILD_GIT_COMMIT` for `quorumd --version`:
//! `git rev-parse --short=12 HEAD`, or `unknown` when there is no git or no repository (a
//! source tarball, a Docker build whose context leaves out `.git`). Not a `QUORUMD_` name:
//! cargo also sets the variable for `cargo run` and `cargo test`, and the service refuses any
//! unknown `QUORUMD_*` variable as configuration.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    if commit.is_some() {
        // Build again when HEAD moves: HEAD itself (another branch), the branch's ref (a
        // commit), or packed-refs (a ref packed by gc). Only files that exist: Cargo reruns a
        // script on every build for one that does not.
        let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(branch);
        }
        for name in watched {
            if let Some(path) = git(&["rev-parse", "--git-path", &name])
                && Path::new(&path).exists()
            {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    println!(
        "cargo:rustc-env=BUILD_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}
