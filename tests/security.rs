//! Nodes that need credentials or TLS: password-protected servers, ACL users, `rediss://` with
//! a CA, and mutual TLS, all with real redis-server processes and certificates made for the
//! test (openssl CLI). Wrong credentials and untrusted certificates must give an error that
//! names the node, says what to fix, and never shows the password.

use quorumd_testkit::cluster as common;

use common::{test_config, wait_until};
use quorumd::app::App;
use quorumd::config::Config;
use quorumd::devcluster::{DevCluster, free_port};
use reqwest::StatusCode;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A running service over the given node URLs.
struct Service {
    app: App,
    base: String,
    http: reqwest::Client,
}

impl Service {
    async fn start(nodes: Vec<String>, tweak: impl FnOnce(&mut Config)) -> Service {
        let mut cfg = test_config(nodes);
        tweak(&mut cfg);
        let app = App::start(cfg.validate().expect("valid config"))
            .await
            .expect("start quorumd");
        let base = format!("http://{}", app.http_addr());
        Service {
            app,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn put_get(&self, key: &str, value: &str) -> (StatusCode, String) {
        let put = self
            .http
            .put(format!("{}/v1/kv/{key}", self.base))
            .body(value.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            put.status(),
            StatusCode::OK,
            "{}",
            put.text().await.unwrap()
        );
        self.text(&format!("/v1/kv/{key}")).await
    }

    async fn text(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// Waits until every node is `down` with a last error containing `needle`, and returns
    /// the `/readyz` body (503) that operators and probes see.
    async fn wait_all_down_with(&self, needle: &str) -> String {
        wait_until(Duration::from_secs(10), needle, || async {
            let (_, body) = self.text("/v1/status").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["nodes"].as_array().unwrap().iter().all(|n| {
                n["health"] == "down"
                    && n["last_error"].as_str().is_some_and(|e| e.contains(needle))
            })
        })
        .await;
        let (status, body) = self.text("/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        body
    }
}

fn with_credentials(cluster: &DevCluster, userinfo: &str) -> Vec<String> {
    cluster
        .nodes
        .iter()
        .map(|n| format!("redis://{userinfo}@127.0.0.1:{}", n.port()))
        .collect()
}

#[tokio::test]
async fn password_protected_nodes() {
    let password = "n0de-s3cret-pw";
    let cluster = tokio::task::spawn_blocking(move || {
        DevCluster::start_with(3, &["--requirepass", password])
    })
    .await
    .unwrap()
    .expect("redis-server with requirepass");

    let svc = Service::start(with_credentials(&cluster, &format!(":{password}")), |_| {}).await;
    assert_eq!(svc.put_get("k", "v").await, (StatusCode::OK, "v".into()));
    let (_, status) = svc.text("/v1/status").await;
    assert!(status.contains(":***@127.0.0.1"), "{status}");
    assert!(
        !status.contains(password),
        "status leaks the password: {status}"
    );
    svc.app.shutdown().await.unwrap();

    let wrong = "wr0ng-passw0rd";
    let svc = Service::start(with_credentials(&cluster, &format!(":{wrong}")), |_| {}).await;
    let body = svc.wait_all_down_with("authentication failed").await;
    assert!(body.contains(":***@127.0.0.1"), "names the node: {body}");
    assert!(!body.contains(wrong), "leaks the password: {body}");
    svc.app.shutdown().await.unwrap();
}

#[tokio::test]
async fn acl_user_nodes() {
    let cluster = tokio::task::spawn_blocking(|| {
        DevCluster::start_with(
            3,
            &[
                "--user",
                "default",
                "off",
                "--user",
                "quorumd",
                "on",
                ">acl-user-pw",
                "~*",
                "&*",
                "+@all",
            ],
        )
    })
    .await
    .unwrap()
    .expect("redis-server with an ACL user");

    let svc = Service::start(with_credentials(&cluster, "quorumd:acl-user-pw"), |_| {}).await;
    assert_eq!(
        svc.put_get("acl", "ok").await,
        (StatusCode::OK, "ok".into())
    );
    let (_, status) = svc.text("/v1/status").await;
    assert!(status.contains("quorumd:***@"), "{status}");
    assert!(!status.contains("acl-user-pw"), "{status}");
    svc.app.shutdown().await.unwrap();

    // The default user is off: a URL without credentials is refused, and says so.
    let anonymous = cluster.urls();
    let svc = Service::start(anonymous, |_| {}).await;
    svc.wait_all_down_with("authentication failed").await;
    svc.app.shutdown().await.unwrap();
}

/// A CA and certificates signed by it, made with the openssl CLI.
struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A CA named `name`, with a server certificate for 127.0.0.1 and a client certificate.
    fn new(root: &Path, name: &str) -> Pki {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec![
            "req", "-x509", "-days", "2", "-keyout", "ca.key", "-out", "ca.crt",
        ];
        ca.extend(ec);
        let subject = format!("/CN=quorumd test CA {name}");
        ca.extend(["-subj", subject.as_str()]);
        ca.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&dir, &ca);
        for (leaf, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(dir.join(format!("{leaf}.ext")), ext).unwrap();
            let (key, csr, crt, extfile) = (
                format!("{leaf}.key"),
                format!("{leaf}.csr"),
                format!("{leaf}.crt"),
                format!("{leaf}.ext"),
            );
            let subj = format!("/CN={leaf}");
            let mut req = vec!["req", "-new", "-keyout", &key, "-out", &csr, "-subj", &subj];
            req.extend(ec);
            openssl(&dir, &req);
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-out",
                    &crt,
                    "-extfile",
                    &extfile,
                ],
            );
        }
        Pki { dir }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

/// Three servers with a TLS port each (the plain port stays for the harness' readiness
/// check), and their `rediss://` URLs.
async fn tls_cluster(pki: &Pki, client_auth: bool) -> (DevCluster, Vec<String>) {
    let (cert, key, ca) = (
        pki.file("server.crt"),
        pki.file("server.key"),
        pki.file("ca.crt"),
    );
    let auth = if client_auth { "yes" } else { "no" };
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        let mut urls = Vec::new();
        for _ in 0..3 {
            let port = free_port().unwrap().to_string();
            let extra = [
                "--tls-port",
                &port,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                auth,
            ];
            nodes.push(quorumd::devcluster::RedisProcess::start(dir.path(), &extra).unwrap());
            urls.push(format!("rediss://127.0.0.1:{port}"));
        }
        (DevCluster::from_processes(nodes, dir), urls)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn tls_nodes_with_a_configured_ca() {
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::new(root.path(), "good");
    let other = Pki::new(root.path(), "other");
    let (_cluster, urls) = tls_cluster(&pki, false).await;

    let ca = pki.file("ca.crt");
    let svc = Service::start(urls.clone(), |c| c.tls.ca_file = ca).await;
    assert_eq!(
        svc.put_get("tls", "secure").await,
        (StatusCode::OK, "secure".into())
    );
    svc.app.shutdown().await.unwrap();

    // A CA that did not sign the servers' certificates: refused, with a clear reason.
    let wrong_ca = other.file("ca.crt");
    let svc = Service::start(urls.clone(), |c| c.tls.ca_file = wrong_ca).await;
    let body = svc.wait_all_down_with("TLS handshake failed").await;
    assert!(
        body.contains("rediss://127.0.0.1:"),
        "names the node: {body}"
    );
    svc.app.shutdown().await.unwrap();

    // The default roots do not know a private CA either.
    let svc = Service::start(urls.clone(), |_| {}).await;
    svc.wait_all_down_with("TLS handshake failed").await;
    svc.app.shutdown().await.unwrap();

    // insecure_skip_verify accepts any certificate (tests only): still encrypted, no check.
    let svc = Service::start(urls, |c| c.tls.insecure_skip_verify = true).await;
    assert_eq!(
        svc.put_get("tls", "unchecked").await,
        (StatusCode::OK, "unchecked".into())
    );
    svc.app.shutdown().await.unwrap();
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::new(root.path(), "mtls");
    let (_cluster, urls) = tls_cluster(&pki, true).await;
    let (ca, cert, key) = (
        pki.file("ca.crt"),
        pki.file("client.crt"),
        pki.file("client.key"),
    );

    let svc = Service::start(urls.clone(), |c| {
        c.tls.ca_file = ca.clone();
        c.tls.cert_file = cert;
        c.tls.key_file = key;
    })
    .await;
    assert_eq!(
        svc.put_get("mtls", "both").await,
        (StatusCode::OK, "both".into())
    );
    svc.app.shutdown().await.unwrap();

    // Without a client certificate the server ends the handshake.
    let svc = Service::start(urls, |c| c.tls.ca_file = ca).await;
    wait_until(Duration::from_secs(10), "nodes refuse us", || async {
        let (status, _) = svc.text("/readyz").await;
        status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let (_, status) = svc.text("/v1/status").await;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["health"] == "down"),
        "{status}"
    );
    svc.app.shutdown().await.unwrap();
}

#[tokio::test]
async fn check_config_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quorumd.toml");
    std::fs::write(
        &path,
        r#"nodes = ["redis://alice:node-password-1@127.0.0.1:7001", "rediss://:node-password-2@127.0.0.1:7002", "redis://127.0.0.1:7003"]
[auth]
enabled = true
[[auth.tokens]]
name = "ops"
token = "http-token-abcdefghijkl"
scope = "write"
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quorumd"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    for secret in [
        "node-password-1",
        "node-password-2",
        "http-token-abcdefghijkl",
    ] {
        assert!(!all.contains(secret), "check-config shows {secret}: {all}");
    }
    assert!(all.contains("alice:***@"), "{all}");
}

/// A replica that is a Redis Cluster reached over TLS (`rediss+cluster://`): a cluster of three
/// masters with `tls-cluster yes`, made with `redis-cli --tls --cluster create`, beside two
/// standalone TLS servers. The cluster client, the probe's own connection to each master and
/// the live detection's subscriptions all speak TLS with the configured CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_is_a_tls_redis_cluster() {
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::new(root.path(), "cluster");
    let (_servers, server_urls) = tls_cluster(&pki, false).await;
    let (cert, key, ca, client_cert, client_key) = (
        pki.file("server.crt"),
        pki.file("server.key"),
        pki.file("ca.crt"),
        pki.file("client.crt"),
        pki.file("client.key"),
    );
    let ca_for_cli = ca.clone();
    let (tls_cluster_nodes, tls_seeds) = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        let mut seeds = Vec::new();
        for _ in 0..3 {
            let port = free_port().unwrap().to_string();
            let mut extra = vec![
                "--tls-port",
                &port,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
                "--tls-cluster",
                "yes",
                // The cluster bus always asks the connecting node for a certificate, and the
                // server certificate is for server authentication only.
                "--tls-client-cert-file",
                &client_cert,
                "--tls-client-key-file",
                &client_key,
            ];
            extra.extend(quorumd::devcluster::CLUSTER_OPTIONS);
            nodes.push(quorumd::devcluster::RedisProcess::start(dir.path(), &extra).unwrap());
            seeds.push(format!("127.0.0.1:{port}"));
        }
        quorumd::devcluster::create_redis_cluster_over(
            &nodes,
            0,
            &seeds,
            &["--tls", "--cacert", &ca_for_cli],
        )
        .unwrap();
        (DevCluster::from_processes(nodes, dir), seeds)
    })
    .await
    .unwrap();
    let mut nodes = vec![format!("rediss+cluster://{}", tls_seeds.join(","))];
    nodes.extend(server_urls[..2].iter().cloned());
    let ca = pki.file("ca.crt");
    let svc = Service::start(nodes, |c| {
        c.tls.ca_file = ca;
        c.placement = quorumd::layout::Scheme::Slot;
        c.sync.live_detection = true;
    })
    .await;
    wait_until(
        Duration::from_secs(20),
        "the TLS cluster in service",
        || async {
            let (_, body) = svc.text("/v1/status").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let shards = v["nodes"][0]["shards"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            v["nodes"][0]["health"] == "up"
                && shards.len() == 3
                && shards.iter().all(|s| s["up"] == true)
                && v["sweeps"]["live_detection"][0]["state"] == "on"
        },
    )
    .await;
    let keys: Vec<String> = (0..20).map(|i| format!("tls:{i}")).collect();
    for k in &keys {
        assert_eq!(
            svc.put_get(k, &format!("value {k}")).await,
            (StatusCode::OK, format!("value {k}"))
        );
    }
    // Each key is on its owning master of the TLS cluster, read here over the plain ports
    // (a plain client is given the masters' plain ports by the cluster).
    let plain: Vec<String> = tls_cluster_nodes.urls();
    let mut c = redis::cluster::ClusterClient::new(plain)
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(5),
        "every key on the cluster",
        || async {
            let mut c = c.clone();
            for k in &keys {
                let v: Option<String> = redis::cmd("GET").arg(k).query_async(&mut c).await.unwrap();
                if v.as_deref() != Some(format!("value {k}").as_str()) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    // A change made on the cluster behind quorumd's back is seen live (over TLS) and adopted
    // by the standalone servers.
    let _: () = redis::cmd("SET")
        .arg(&keys[0])
        .arg("direct")
        .query_async(&mut c)
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the direct write adopted",
        || async {
            svc.text(&format!("/v1/kv/{}?consistency=all", keys[0]))
                .await
                == (StatusCode::OK, "direct".into())
        },
    )
    .await;
    svc.app.shutdown().await.unwrap();
}
