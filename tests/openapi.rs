//! `GET /openapi.json`: served open, with the crate version; it lists exactly the operations
//! the router registers (both ways, with negative controls); every documented operation's
//! example request is answered by its handler (not the router's fallback) with a documented
//! status, content type, body schema and headers; its security requirement is what the auth
//! layer enforces; and the document passes the OpenAPI 3.1 validator (`openapi-spec-validator`,
//! in the venv of scripts/ensure-deploy-venv.sh), which rejects deliberately broken copies.

use quorumd_testkit::cluster as common;

use common::{TestCluster, test_config, wait_until};
use quorumd::app::App;
use quorumd::auth::{Scope, TokenEntry};
use quorumd::devcluster::DevCluster;
use quorumd_testkit::tools::{deploy_venv_python as venv_python, output_text};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The router, read as source: its `.route(...)` calls are the list of what is served.
const ROUTER_SOURCE: &str = include_str!("../crates/service/src/api/mod.rs");
/// The queue item route has an `{action}` segment; the handler's `match` lists the actions.
const QUEUES_SOURCE: &str = include_str!("../crates/service/src/api/queues.rs");
const DOCUMENT_FILE: &str = include_str!("../crates/service/src/api/openapi.json");

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// (method, path in OpenAPI form), e.g. ("get", "/v1/kv/{key}").
type Operations = BTreeSet<(String, String)>;

/// The actions `queues::item_action` matches, from its source.
fn queue_item_actions() -> Vec<String> {
    let start = QUEUES_SOURCE
        .find("match action.as_str()")
        .expect("queues.rs matches on the action");
    let end = start
        + QUEUES_SOURCE[start..]
            .find("other =>")
            .expect("queues.rs has a catch-all action arm");
    let actions: Vec<String> = QUEUES_SOURCE[start..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"')?.split_once("\" =>"))
        .map(|(a, _)| a.to_string())
        .collect();
    assert!(!actions.is_empty(), "no actions found in queues.rs");
    actions
}

/// axum's `{*key}` wildcard is an OpenAPI `{key}`.
fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// Every (method, path) registered by `.route(...)` calls in `source`.
fn routes_in(source: &str) -> Operations {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for unsupported in [
        ".nest(",
        ".nest_service(",
        ".route_service(",
        ".fallback_service(",
    ] {
        assert!(
            !code.contains(unsupported),
            "the router uses {unsupported}; teach this scanner about it"
        );
    }
    let mut out = Operations::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let open = rest.find('"').expect("route path literal");
        let close = open + 1 + rest[open + 1..].find('"').expect("end of the path literal");
        let path = &rest[open + 1..close];
        // The method router: up to the `)` that closes `.route(`.
        let expr = &rest[close + 1..];
        let mut depth = 0usize;
        let mut methods = Vec::new();
        for (i, c) in expr.char_indices() {
            match c {
                '(' => {
                    if depth == 0 {
                        let ident: String = expr[..i]
                            .chars()
                            .rev()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect();
                        assert!(
                            METHODS.contains(&ident.as_str()),
                            "route {path}: unknown method router `{ident}(`"
                        );
                        methods.push(ident);
                    }
                    depth += 1;
                }
                ')' if depth == 0 => break,
                ')' => depth -= 1,
                _ => {}
            }
        }
        assert!(!methods.is_empty(), "route {path}: no method found");
        let paths: Vec<String> = if path.contains("/{action}") {
            queue_item_actions()
                .iter()
                .map(|a| path.replace("{action}", a))
                .collect()
        } else {
            vec![path.to_string()]
        };
        for p in paths {
            for m in &methods {
                out.insert((m.clone(), openapi_path(&p)));
            }
        }
    }
    out
}

fn documented(doc: &Value) -> Operations {
    let mut out = Operations::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_string(), path.clone()));
            }
        }
    }
    out
}

/// Ok when the router and the document list the same operations; otherwise what differs.
fn compare(served: &Operations, doc: &Value) -> Result<(), String> {
    let documented = documented(doc);
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(served).collect();
    if undocumented.is_empty() && unserved.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "served but not documented: {undocumented:?}; documented but not served: {unserved:?}"
        ))
    }
}

fn file_document() -> Value {
    serde_json::from_str(DOCUMENT_FILE).expect("crates/service/src/api/openapi.json is JSON")
}

#[test]
fn the_document_lists_exactly_the_routes_the_router_registers() {
    let served = routes_in(ROUTER_SOURCE);
    // The scanner itself sees what is obviously there.
    for (m, p) in [
        ("get", "/v1/kv/{key}"),
        ("put", "/v1/kv/{key}"),
        ("delete", "/v1/kv/{key}"),
        ("patch", "/v1/maps/{name}"),
        ("post", "/v1/queues/{name}/items/{id}/nack"),
        ("post", "/v1/demo/wipe"),
        ("get", "/openapi.json"),
        ("get", "/"),
    ] {
        assert!(
            served.contains(&(m.to_string(), p.to_string())),
            "scanner missed {m} {p}: {served:?}"
        );
    }
    assert!(served.len() >= 30, "only {} routes found", served.len());
    let doc = file_document();
    compare(&served, &doc).unwrap();

    // Negative controls: the same comparison fails on a document missing a path, missing a
    // method, or listing an operation the router does not serve.
    let mut missing_path = doc.clone();
    missing_path["paths"]
        .as_object_mut()
        .unwrap()
        .remove("/v1/locks/{name}/extend");
    let e = compare(&served, &missing_path).unwrap_err();
    assert!(e.contains("/v1/locks/{name}/extend"), "{e}");
    let mut missing_method = doc.clone();
    missing_method["paths"]["/v1/kv/{key}"]
        .as_object_mut()
        .unwrap()
        .remove("delete");
    assert!(compare(&served, &missing_method).is_err());
    let mut extra = doc.clone();
    extra["paths"]["/v1/status"]["delete"] = doc["paths"]["/v1/status"]["get"].clone();
    let e = compare(&served, &extra).unwrap_err();
    assert!(e.contains("documented but not served"), "{e}");
    assert!(e.contains("/v1/status"), "{e}");
    // And a router with a route more than the document.
    let more = ROUTER_SOURCE.replace(
        ".route(\"/v1/status\", get(status::status))",
        ".route(\"/v1/status\", get(status::status).post(status::status))",
    );
    assert_ne!(
        more, ROUTER_SOURCE,
        "the status route moved; update this control"
    );
    assert!(compare(&routes_in(&more), &doc).is_err());
}

// ---------------------------------------------------------------- against a running service

/// Operations in the order they are exercised, each with its path template and operation
/// object; the demo operations last (one of them wipes a node).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops: Vec<(String, String, Value)> = documented(doc)
        .into_iter()
        .map(|(m, p)| {
            let op = doc["paths"][&p][&m].clone();
            (m, p, op)
        })
        .collect();
    ops.sort_by_key(|(m, p, op)| {
        (
            op["x-quorumd-demo-only"] == true,
            // put before claim, claim before the item actions
            !p.ends_with("/items"),
            p.clone(),
            // writes before reads, deletes last
            ["post", "put", "patch", "get", "delete"]
                .iter()
                .position(|x| x == m),
        )
    });
    ops
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.strip_prefix('#').expect("local $ref"))
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

/// The path with every `{param}` replaced by the parameter's `example`.
fn concrete_path(doc: &Value, path: &str, op: &Value) -> String {
    let params = doc["paths"][path]["parameters"]
        .as_array()
        .into_iter()
        .chain(op["parameters"].as_array())
        .flatten();
    let mut out = path.to_string();
    for param in params {
        let param = resolve(doc, param);
        if param["in"] == "path" {
            let name = param["name"].as_str().unwrap();
            let example = param["example"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: path parameter {name} has no example"));
            out = out.replace(&format!("{{{name}}}"), example);
        }
    }
    assert!(!out.contains('{'), "{path}: undeclared path parameter");
    out
}

fn request(
    http: &reqwest::Client,
    base: &str,
    doc: &Value,
    method: &str,
    path: &str,
    op: &Value,
) -> reqwest::RequestBuilder {
    let url = format!("{base}{}", concrete_path(doc, path, op));
    let mut req = http.request(
        Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
        url,
    );
    if let Some(content) = op["requestBody"]["content"].as_object() {
        let (media, spec) = content.iter().next().expect("a request media type");
        let example = &spec["example"];
        assert!(!example.is_null(), "{method} {path}: no request example");
        let body = match example {
            Value::String(s) if media == "application/octet-stream" => s.clone().into_bytes(),
            other => serde_json::to_vec(other).unwrap(),
        };
        req = req.header("content-type", media.as_str()).body(body);
    }
    req
}

/// Sends `req`; its status, and the answer as a sample for [`check_answers`] (an event
/// stream's body is not read: it never ends).
async fn sample(method: &str, path: &str, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = r.status();
    let headers = header_map(r.headers());
    let body = if headers["content-type"] == "text/event-stream" {
        Value::Null
    } else {
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null)
    };
    let answer = json!({
        "method": method, "path": path, "status": status.as_str(), "body": body,
        "headers": headers,
    });
    (status, answer)
}

/// Response headers, names in lowercase, as JSON strings.
fn header_map(headers: &reqwest::header::HeaderMap) -> Value {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                json!(v.to_str().unwrap_or("<not text>")),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// False for the router's own answers to what it does not route: the fallback's 404
/// "no such endpoint" and the 405 for a method a path does not have.
fn answered_by_handler(status: StatusCode, body: &[u8]) -> bool {
    let error: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let fallback_404 =
        status == StatusCode::NOT_FOUND && error["error"]["message"] == "no such endpoint";
    let fallback_405 =
        status == StatusCode::METHOD_NOT_ALLOWED || error["error"]["code"] == "method_not_allowed";
    !(fallback_404 || fallback_405)
}

fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

#[tokio::test]
async fn every_documented_operation_is_served_as_documented() {
    let cluster = tokio::task::spawn_blocking(|| DevCluster::start(3))
        .await
        .unwrap()
        .expect("start redis-server");
    // Demo mode, so that the demo-only operations are routed too.
    let app = App::start_demo(test_config(cluster.urls()).validate().unwrap(), 0)
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Every example is expected to succeed, `/readyz` included.
    wait_until(Duration::from_secs(10), "ready", || async {
        let r = http.get(format!("{base}/readyz")).send().await;
        r.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;

    let r = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served: Value = serde_json::from_slice(&r.bytes().await.unwrap()).expect("valid JSON");
    assert!(
        served["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        served["openapi"]
    );
    assert_eq!(served["info"]["version"], env!("CARGO_PKG_VERSION"));
    // The served document is the file, with the version filled in.
    let mut file = file_document();
    file["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    assert_eq!(served, file);
    let doc = served;

    // The router's own answers are told apart from a handler's (negative controls).
    for (method, path) in [
        (Method::GET, "/v1/no-such-thing"),
        (Method::PATCH, "/v1/status"),
    ] {
        let r = http
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert!(
            !answered_by_handler(status, &r.bytes().await.unwrap()),
            "{method} {path}"
        );
    }

    let mut samples = Vec::new();
    for (method, path, op) in operations(&doc) {
        let r = request(&http, &base, &doc, &method, &path, &op)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let streaming = content_type.as_deref() == Some("text/event-stream");
        let headers = header_map(r.headers());
        let body = if streaming {
            Vec::new() // endless; the headers are the answer
        } else {
            r.bytes().await.unwrap().to_vec()
        };
        let said = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        assert!(
            answered_by_handler(status, &body),
            "{method} {path}: not routed: {status} {said}"
        );
        let response = op["responses"]
            .get(status.as_str())
            .unwrap_or_else(|| panic!("{method} {path}: undocumented status {status}: {said}"));
        let response = resolve(&doc, response);
        match (response["content"].as_object(), content_type) {
            (None, None) => {}
            (None, Some(ct)) if body.is_empty() => {
                panic!("{method} {path}: {status} with content type {ct} and no body")
            }
            (Some(content), Some(ct)) => assert!(
                content.keys().any(|k| essence(k) == essence(&ct)),
                "{method} {path}: {status} answered {ct}, documented {:?}",
                content.keys().collect::<Vec<_>>()
            ),
            (documented, answered) => panic!(
                "{method} {path}: {status}: documented content {documented:?}, answered {answered:?}"
            ),
        }
        // The examples are valid requests: only those naming a lock token or a queue lease
        // that nobody holds are refused (by the handler, as documented).
        let refused_as_expected = status == StatusCode::CONFLICT
            && (path.starts_with("/v1/locks/{name}/") && !path.ends_with("/acquire")
                || path.starts_with("/v1/queues/{name}/items/{id}/"));
        assert!(
            status.is_success() || refused_as_expected,
            "{method} {path}: the documented example got {status}: {said}"
        );
        let json = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
        samples.push(json!({
            "method": method, "path": path, "status": status.as_str(), "body": json,
            "headers": headers,
        }));
    }
    let json_answers = samples.iter().filter(|s| !s["body"].is_null()).count();
    assert!(json_answers >= 28, "{json_answers} JSON answers");

    // Every answer's body and headers match what is documented for its status.
    let python = venv_python();
    let report = check_answers(&python, &doc, &samples).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.contains(" 0 failures"), "{report}");
    // Negative controls: answers that do not match their documentation are caught.
    let mut wrong = samples.clone();
    for s in &mut wrong {
        if s["path"] == "/healthz" {
            s["body"]["status"] = json!("degraded");
        }
        if s["path"] == "/v1/kv/{key}" && s["method"] == "put" {
            s["body"].as_object_mut().unwrap().remove("version");
        }
        if s["path"] == "/v1/kv/{key}" && s["method"] == "get" {
            s["headers"]["etag"] = json!("01a2"); // not a quoted version
        }
        if s["path"] == "/v1/kv/{key}" && s["method"] == "delete" {
            s["headers"].as_object_mut().unwrap().remove("etag"); // a required header
        }
    }
    let e = check_answers(&python, &doc, &wrong).unwrap_err();
    assert!(e.contains(" 4 failures"), "{e}");
    app.shutdown().await.unwrap();
    drop(cluster);
}

const READER: &str = "reader-token-0123456789abcdef";
const WRITER: &str = "writer-token-0123456789abcdef";

/// The scopes an operation's `security` names, or `None` when it may be called without a
/// token (an empty list, or an empty requirement among the alternatives).
fn needed_scopes(op: &Value) -> Option<BTreeSet<String>> {
    let alternatives = op["security"]
        .as_array()
        .expect("every operation states security");
    if alternatives.is_empty() || alternatives.iter().any(|a| a == &json!({})) {
        return None;
    }
    Some(
        alternatives
            .iter()
            .flat_map(|a| a.as_object().unwrap().values())
            .flat_map(|roles| roles.as_array().unwrap())
            .map(|r| r.as_str().unwrap().to_string())
            .collect(),
    )
}

#[tokio::test]
async fn documented_security_is_what_the_auth_layer_enforces() {
    let tc = TestCluster::start_with(1, |cfg| {
        cfg.auth.enabled = true;
        for (name, token, scope) in [("r", READER, Scope::Read), ("w", WRITER, Scope::Write)] {
            cfg.auth.tokens.push(TokenEntry {
                name: name.into(),
                token: token.into(),
                scope,
            });
        }
    })
    .await;
    let doc = file_document();
    let r = tc.fetch("/openapi.json").await;
    assert_eq!(r.status(), StatusCode::OK, "/openapi.json is open");
    // Control: the same client without a token is refused where a token is needed.
    let r = tc.fetch("/v1/status").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let (status, unknown_token) = sample(
        "get",
        "/v1/status",
        tc.http
            .get(format!("{}/v1/status", tc.base))
            .bearer_auth("not-a-token-0123456789"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut samples = vec![unknown_token];

    for (method, path, op) in operations(&doc) {
        if op["x-quorumd-demo-only"] == true {
            continue; // not routed here; protected like any unknown path
        }
        let (anonymous, answer) = sample(
            &method,
            &path,
            request(&tc.http, &tc.base, &doc, &method, &path, &op),
        )
        .await;
        samples.push(answer);
        match needed_scopes(&op) {
            None => assert_ne!(
                anonymous,
                StatusCode::UNAUTHORIZED,
                "{method} {path} is documented open"
            ),
            Some(scopes) => {
                assert_eq!(anonymous, StatusCode::UNAUTHORIZED, "{method} {path}");
                let expected = if method == "get" { "read" } else { "write" };
                assert_eq!(
                    scopes,
                    BTreeSet::from([expected.to_string()]),
                    "{method} {path}"
                );
                // Every token may read: 403 is documented only where `write` is needed.
                assert_eq!(
                    op["responses"].get("403").is_some(),
                    expected == "write",
                    "{method} {path}: documented 403"
                );
                // A read token is refused exactly where `write` is documented.
                let (with_reader, answer) = sample(
                    &method,
                    &path,
                    request(&tc.http, &tc.base, &doc, &method, &path, &op).bearer_auth(READER),
                )
                .await;
                samples.push(answer);
                if expected == "write" {
                    assert_eq!(with_reader, StatusCode::FORBIDDEN, "{method} {path}");
                } else {
                    assert!(
                        ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&with_reader),
                        "{method} {path}: {with_reader}"
                    );
                }
            }
        }
        // The query token works only where the document offers it.
        if method == "get" && needed_scopes(&op).is_some() {
            let offers = op["security"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a.get("accessToken").is_some());
            let url = format!("{}{}", tc.base, concrete_path(&doc, &path, &op));
            let status = tc
                .http
                .get(format!("{url}?access_token={READER}"))
                .send()
                .await
                .unwrap()
                .status();
            if offers {
                // The same answer as with the header (a key read may well be 404).
                let with_header = tc
                    .http
                    .get(&url)
                    .bearer_auth(READER)
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, with_header, "{path}?access_token=");
            } else {
                assert!(
                    !status.is_success(),
                    "{path}?access_token= is not documented: {status}"
                );
            }
        }
    }
    // The 401 and 403 answers (and the others) are as documented: body and headers.
    let refused = samples
        .iter()
        .filter(|s| s["status"] == "401" || s["status"] == "403")
        .count();
    assert!(refused >= 40, "{refused} refusals");
    let report = check_answers(&venv_python(), &doc, &samples).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.contains(" 0 failures"), "{report}");
    tc.shutdown().await;
}

// ---------------------------------------------------------------- OpenAPI 3.1 schema

/// Runs the Python `script` with, as its arguments, files holding each of `inputs` as JSON:
/// its exit code and what it wrote.
fn run_script(python: &Path, script: &str, inputs: &[&Value]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(python);
    cmd.args(["-c", script]);
    for (i, input) in inputs.iter().enumerate() {
        let file = dir.path().join(format!("input-{i}.json"));
        std::fs::write(&file, serde_json::to_vec(input).unwrap()).unwrap();
        cmd.arg(file);
    }
    let out = cmd.output().unwrap();
    (out.status.code(), output_text(&out))
}

const VALIDATE: &str = r#"
import json, sys
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
spec = json.load(open(sys.argv[1]))
try:
    validate(spec)
except OpenAPIValidationError as e:
    print("invalid:", str(e).splitlines()[0])
    sys.exit(1)
print("valid OpenAPI", spec["openapi"])
"#;

/// Runs openapi-spec-validator on `doc`: Ok(its report) or Err(why not valid).
fn validate(python: &Path, doc: &Value) -> Result<String, String> {
    let (code, report) = run_script(python, VALIDATE, &[doc]);
    match code {
        Some(0) => Ok(report),
        Some(1) if report.starts_with("invalid:") => Err(report),
        _ => panic!("the validator did not run: {report}"),
    }
}

const CHECK_ANSWERS: &str = r##"
import json, sys
from jsonschema import Draft202012Validator
doc = json.load(open(sys.argv[1]))
samples = json.load(open(sys.argv[2]))
def resolve(v):
    while "$ref" in v:
        node = doc
        for part in v["$ref"].removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        v = node
    return v
def errors(schema, instance):
    # The components ride along, so that "#/components/..." references resolve.
    wrapper = {"$schema": "https://json-schema.org/draft/2020-12/schema",
               "components": doc["components"], "allOf": [schema]}
    Draft202012Validator.check_schema(wrapper)
    return [f"{e.message[:300]} at {list(e.absolute_path)}"
            for e in Draft202012Validator(wrapper).iter_errors(instance)]
failures = 0
def fail(s, what):
    global failures
    failures += 1
    print(f"{s['method']} {s['path']} {s['status']}: {what}")
for s in samples:
    response = resolve(doc["paths"][s["path"]][s["method"]]["responses"][s["status"]])
    media = response.get("content", {}).get("application/json")
    if media is not None:
        if s["body"] is None:
            fail(s, "documented JSON, answered something else")
        for e in errors(media["schema"], s["body"]):
            fail(s, "body: " + e)
    for name, header in response.get("headers", {}).items():
        header = resolve(header)
        value = s["headers"].get(name.lower())
        if value is None:
            if header.get("required"):
                fail(s, f"no {name} header")
            continue
        if header["schema"].get("type", "string") != "string":
            value = json.loads(value)
        for e in errors(header["schema"], value):
            fail(s, f"header {name}: " + e)
print(f"{len(samples)} answers checked, {failures} failures")
sys.exit(1 if failures else 0)
"##;

/// Validates each `{method, path, status, body, headers}` sample against the response `doc`
/// documents for it (the body's schema, and every documented header: present when required,
/// matching its schema): Ok(report) when all match, Err(report) otherwise.
fn check_answers(python: &Path, doc: &Value, samples: &[Value]) -> Result<String, String> {
    let samples = Value::Array(samples.to_vec());
    let (code, report) = run_script(python, CHECK_ANSWERS, &[doc, &samples]);
    match code {
        Some(0) => Ok(report),
        Some(1) if report.contains("answers checked") => Err(report),
        _ => panic!("the body check did not run: {report}"),
    }
}

#[test]
fn the_document_is_valid_openapi_3_1_and_broken_copies_are_not() {
    let python = venv_python();
    let mut doc = file_document();
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    let report = validate(&python, &doc).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.contains("valid OpenAPI 3.1"), "{report}");

    // A response without its required description.
    let mut no_description = doc.clone();
    no_description["paths"]["/healthz"]["get"]["responses"]["200"]
        .as_object_mut()
        .unwrap()
        .remove("description");
    let e = validate(&python, &no_description).expect_err("a response without a description");
    eprintln!("rejected as expected: {e}");
    // A schema with a type that does not exist.
    let mut wrong_type = doc.clone();
    wrong_type["components"]["schemas"]["WriteReceipt"]["type"] = json!("record");
    let e = validate(&python, &wrong_type).expect_err("a schema of type \"record\"");
    eprintln!("rejected as expected: {e}");
    // A path parameter the operation does not declare.
    let mut undeclared = doc.clone();
    let paths = undeclared["paths"].as_object_mut().unwrap();
    let item = paths.remove("/v1/locks/{name}").unwrap();
    paths.insert("/v1/locks/{lock}".into(), item);
    let e = validate(&python, &undeclared).expect_err("an undeclared path parameter");
    eprintln!("rejected as expected: {e}");
}
