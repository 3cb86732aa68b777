//! What the shipped binary is built from: neither the test kit nor the lock service's
//! fault-injection knobs reach a normal build (docs/ARCHITECTURE.md, decision 29). Asked of
//! cargo itself, from the lock file, so a dependency added in the wrong section fails here.

use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// `cargo tree` of the root package along the given dependency kinds, with features.
fn tree(edges: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(REPO)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "quorumd",
            "--prefix",
            "none",
        ])
        .args(["-e", edges])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_binary_is_built_without_the_test_kit_or_the_lock_knobs() {
    let shipped = tree("normal,features");
    assert!(shipped.contains("quorumd-service"), "{shipped}");
    assert!(!shipped.contains("quorumd-testkit"), "{shipped}");
    assert!(!shipped.contains("fault-injection"), "{shipped}");
    // The control: the same question with dev-dependencies finds both, so the check above
    // would see them if a normal dependency pulled them in.
    let with_tests = tree("normal,dev,features");
    assert!(with_tests.contains("quorumd-testkit"), "{with_tests}");
    assert!(with_tests.contains("fault-injection"), "{with_tests}");
}
