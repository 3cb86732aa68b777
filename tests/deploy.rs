//! The deployment files: Kubernetes manifests, docker-compose.yml and docker-compose.cluster.yml
//! validated against real schemas by scripts/validate-deploy.py (with its own negative
//! controls), the configuration they ship accepted by `quorumd check-config`, and the
//! Dockerfile's shape. Docker itself cannot run here; `docker compose config` is used when the
//! client has the plugin.

use quorumd_testkit::tools::{deploy_venv_python as venv_python, output_text as text};
use std::path::Path;
use std::process::{Command, Output};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn check_config(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quorumd"));
    cmd.args(["check-config", "--config"]).arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn kubernetes_manifests_and_compose_file_pass_schema_validation() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(venv_python())
        .arg(Path::new(REPO).join("scripts/validate-deploy.py"))
        .arg(REPO)
        .arg(out_dir.path())
        .output()
        .unwrap();
    let report = text(&out);
    assert!(out.status.success(), "validate-deploy.py:\n{report}");
    assert!(report.contains("0 failures"), "{report}");
    for kind in [
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(
            report.contains(&format!(": {kind} ")),
            "{kind} not validated:\n{report}"
        );
    }
    assert_eq!(
        report.matches("negative control rejected").count(),
        8,
        "{report}"
    );

    // The ConfigMap's quorumd.toml, with the Secret's node list and tokens, is a valid
    // configuration (it listens on 0.0.0.0, so this also proves auth is on).
    let nodes = std::fs::read_to_string(out_dir.path().join("nodes")).unwrap();
    let tokens = out_dir.path().join("tokens.toml");
    let out = check_config(
        &out_dir.path().join("quorumd.toml"),
        &[
            ("QUORUMD_NODES", nodes.as_str()),
            ("QUORUMD_AUTH__TOKENS_FILE", tokens.to_str().unwrap()),
        ],
    );
    let said = text(&out);
    assert!(
        out.status.success(),
        "check-config on the ConfigMap: {said}"
    );
    assert!(said.contains("configuration is valid: 3 nodes"), "{said}");
    assert!(!said.contains("CHANGE-ME@"), "node password shown: {said}");
    assert!(
        !said.contains("CHANGE-ME-write-token"),
        "token shown: {said}"
    );
    // The cluster-mode compose file's nodes and placement are a valid configuration.
    let nodes = std::fs::read_to_string(out_dir.path().join("cluster-nodes")).unwrap();
    let placement = std::fs::read_to_string(out_dir.path().join("cluster-placement")).unwrap();
    // Only the environment: the compose file mounts no configuration.
    let empty = out_dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let out = check_config(
        &empty,
        &[
            ("QUORUMD_NODES", nodes.as_str()),
            ("QUORUMD_PLACEMENT", placement.as_str()),
        ],
    );
    let said = text(&out);
    assert!(
        out.status.success(),
        "check-config on docker-compose.cluster.yml: {said}"
    );
    assert!(said.contains("configuration is valid: 3 nodes"), "{said}");
    // The mount path of the tokens volume is the path the configuration reads.
    let mounts = std::fs::read_to_string(out_dir.path().join("mounts.json")).unwrap();
    let config = std::fs::read_to_string(out_dir.path().join("quorumd.toml")).unwrap();
    assert!(mounts.contains("\"/etc/quorumd/tokens\""), "{mounts}");
    assert!(
        config.contains("/etc/quorumd/tokens/tokens.toml"),
        "{config}"
    );
}

/// The environment docker-compose.yml and the Dockerfile give quorumd.
const COMPOSE_ENV: &[(&str, &str)] = &[
    (
        "QUORUMD_NODES",
        r#"["redis://redis-1:6379", "redis://redis-2:6379", "redis://redis-3:6379"]"#,
    ),
    ("QUORUMD_HTTP__LISTEN", "0.0.0.0:8379"),
    ("QUORUMD_RESP__LISTEN", "0.0.0.0:7379"),
    ("QUORUMD_LOG__FORMAT", "json"),
];

#[test]
fn container_configuration_is_valid_and_needs_explicit_consent_to_listen_openly() {
    let config = Path::new(REPO).join("config/quorumd.toml");
    let mut env = COMPOSE_ENV.to_vec();
    let refused = check_config(&config, &env);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("http.listen"), "{}", text(&refused));
    env.push(("QUORUMD_HTTP__ALLOW_PUBLIC_WITHOUT_AUTH", "true"));
    let out = check_config(&config, &env);
    assert!(out.status.success(), "{}", text(&out));

    let compose = std::fs::read_to_string(Path::new(REPO).join("docker-compose.yml")).unwrap();
    assert!(compose.contains("QUORUMD_HTTP__ALLOW_PUBLIC_WITHOUT_AUTH: \"true\""));
    let dockerfile = std::fs::read_to_string(Path::new(REPO).join("Dockerfile")).unwrap();
    for (k, v) in COMPOSE_ENV.iter().skip(1) {
        assert!(
            dockerfile.contains(&format!("{k}={v}")),
            "Dockerfile lacks {k}={v}"
        );
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_health_check() {
    let dockerfile = std::fs::read_to_string(Path::new(REPO).join("Dockerfile")).unwrap();
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let from: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(from.len(), 2, "build and run stages: {from:?}");
    assert!(from[0].starts_with("FROM rust:") && from[0].ends_with(" AS build"));
    assert!(from[1].starts_with("FROM debian:") && from[1].contains("-slim"));
    let run_stage = dockerfile.split(from[1]).nth(1).unwrap();
    let copies: Vec<&str> = run_stage
        .lines()
        .filter(|l| l.starts_with("COPY"))
        .collect();
    assert_eq!(
        copies,
        [
            "COPY --from=build /src/target/release/quorumd /usr/local/bin/quorumd",
            "COPY config/quorumd.toml /etc/quorumd/quorumd.toml"
        ],
        "the image holds only the binary and the default configuration"
    );
    assert!(run_stage.contains("USER 10001:10001"));
    assert!(run_stage.contains("EXPOSE 8379 7379"));
    assert!(run_stage.contains("HEALTHCHECK") && run_stage.contains("/healthz"));
    assert!(run_stage.contains("ENTRYPOINT [\"/usr/local/bin/quorumd\"]"));
    assert!(run_stage.contains("CMD [\"run\", \"--config\", \"/etc/quorumd/quorumd.toml\"]"));
    let ignore = std::fs::read_to_string(Path::new(REPO).join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "target"),
        "build context excludes target/"
    );
}

#[test]
fn compose_file_passes_docker_compose_config_when_available() {
    let plugin = Command::new("docker").args(["compose", "version"]).output();
    match plugin {
        Ok(o) if o.status.success() => {
            let runs = [
                ("docker-compose.yml", None),
                ("docker-compose.yml", Some("second")),
                ("docker-compose.cluster.yml", None),
            ];
            for (file, profile) in runs {
                let mut cmd = Command::new("docker");
                cmd.args(["compose", "-f", file]).current_dir(REPO);
                if let Some(p) = profile {
                    cmd.args(["--profile", p]);
                }
                let out = cmd.args(["config", "--quiet"]).output().unwrap();
                assert!(
                    out.status.success(),
                    "docker compose config: {}",
                    text(&out)
                );
            }
        }
        _ => eprintln!(
            "docker compose plugin not available: docker-compose.yml was checked by \
             scripts/validate-deploy.py only (see kubernetes_manifests_and_compose_file_pass_schema_validation)"
        ),
    }
}

/// `config/quorumd.toml` says it has every field at its default (but `nodes`): each default of
/// `Config::default()` must be in it, with the same value, so that a field added to the
/// configuration without its line in the file (and its comment) fails here.
#[test]
fn the_sample_configuration_has_every_field_at_its_default() {
    fn differences(
        path: &str,
        defaults: &toml::Table,
        sample: &toml::Table,
        out: &mut Vec<String>,
    ) {
        for (name, default) in defaults {
            let at = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            match (default, sample.get(name)) {
                (_, None) => out.push(format!("{at} is missing (default {default})")),
                (toml::Value::Table(d), Some(toml::Value::Table(s))) => differences(&at, d, s, out),
                (d, Some(s)) if d != s => out.push(format!("{at} = {s}, default {d}")),
                _ => {}
            }
        }
        for name in sample.keys().filter(|n| !defaults.contains_key(*n)) {
            out.push(format!("{path}.{name} is not a configuration field"));
        }
    }
    let text = std::fs::read_to_string(Path::new(REPO).join("config/quorumd.toml")).unwrap();
    let mut sample: toml::Table = toml::from_str(&text).unwrap();
    let mut defaults = toml::Table::try_from(quorumd::config::Config::default()).unwrap();
    assert!(
        sample.remove("nodes").is_some(),
        "the sample names its nodes"
    );
    defaults.remove("nodes");
    let mut found = Vec::new();
    differences("", &defaults, &sample, &mut found);
    assert!(
        found.is_empty(),
        "config/quorumd.toml:\n{}",
        found.join("\n")
    );
}
