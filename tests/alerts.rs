//! What quorumd ships for operators, checked (issue 20): the Prometheus rules
//! (deploy/prometheus/quorumd.rules.yml) pass `promtool check rules` and their unit tests
//! (`promtool test rules`), every alert has a test case that fires it and one that does not,
//! every alert links to its section of docs/RUNBOOK.md, the PrometheusRule manifest carries the
//! same groups, the Grafana dashboard (deploy/grafana/quorumd.json) uses a datasource variable
//! and no hard-coded UID and every panel query parses as PromQL, and every series a rule or a
//! panel names is exported by a freshly started instance. Each checker has a negative control.
//!
//! promtool comes with Debian's `prometheus` package; scripts/ensure-deps.sh installs it. When
//! it is missing these tests fail and say so: they never pass without it.

use quorumd_testkit::cluster as common;
#[allow(dead_code)] // shared with tests/observability.rs
#[path = "support/exposition.rs"]
mod exposition;

use common::TestCluster;
use exposition::{Scrape, scrape};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const RULES: &str = "deploy/prometheus/quorumd.rules.yml";
const RULE_TESTS: &str = "deploy/prometheus/quorumd.rules.test.yml";
const PROMETHEUS_RULE: &str = "deploy/kubernetes/prometheusrule.yaml";
const DASHBOARD: &str = "deploy/grafana/quorumd.json";
const RUNBOOK: &str = "docs/RUNBOOK.md";
/// Series Prometheus makes itself for every target, not quorumd's.
const PROMETHEUS_OWN: &[&str] = &["up"];
/// Families quorumd cannot export before their first use (labelled by client-given names):
/// checked against the names the code defines instead of a scrape.
const NOT_AT_START: &[&str] = &[quorumd::metric_names::QUEUE_ITEMS];

fn repo(path: &str) -> PathBuf {
    Path::new(REPO).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[derive(Debug, thiserror::Error)]
enum ToolError {
    #[error(
        "promtool is not installed. It comes with Debian's `prometheus` package: \
         `apt-get install prometheus` (scripts/ensure-deps.sh does it), or set PROMTOOL to a \
         promtool binary ({0})"
    )]
    Missing(std::io::Error),
    #[error("promtool {args} failed:\n{output}")]
    Failed { args: String, output: String },
}

/// The promtool to run: `$PROMTOOL`, or `promtool` on PATH.
fn promtool_path() -> PathBuf {
    std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promtool"))
}

/// Runs promtool in `dir`; its output when it succeeds.
fn promtool(dir: &Path, args: &[&str]) -> Result<String, ToolError> {
    let out = Command::new(promtool_path())
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(ToolError::Missing)?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(output)
    } else {
        Err(ToolError::Failed {
            args: args.join(" "),
            output,
        })
    }
}

fn promtool_ok(dir: &Path, args: &[&str]) -> String {
    promtool(dir, args).unwrap_or_else(|e| panic!("{e}"))
}

// ---- The rules file and its unit tests -------------------------------------------------------

#[derive(Debug, Clone, Deserialize, Serialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
struct Group {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    expr: String,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

impl RuleFile {
    fn load() -> RuleFile {
        serde_norway::from_str(&read(RULES)).expect("rules file parses")
    }

    fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.groups.iter().flat_map(|g| &g.rules)
    }

    fn alerts(&self) -> impl Iterator<Item = (&str, &Rule)> {
        self.rules()
            .filter_map(|r| r.alert.as_deref().map(|a| (a, r)))
    }

    fn recorded(&self) -> BTreeSet<String> {
        self.rules().filter_map(|r| r.record.clone()).collect()
    }
}

#[derive(Debug, Deserialize)]
struct RuleTests {
    tests: Vec<RuleTestGroup>,
}

#[derive(Debug, Deserialize)]
struct RuleTestGroup {
    #[serde(default)]
    alert_rule_test: Vec<AlertCase>,
}

#[derive(Debug, Deserialize)]
struct AlertCase {
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<serde_norway::Value>,
}

/// What the unit tests leave untested: an alert no case fires, an alert no case shows silent,
/// a case naming an alert that does not exist.
fn untested_alerts(rules: &RuleFile, tests: &RuleTests) -> Vec<String> {
    let cases: Vec<&AlertCase> = tests
        .tests
        .iter()
        .flat_map(|g| &g.alert_rule_test)
        .collect();
    let mut problems = Vec::new();
    for (name, _) in rules.alerts() {
        let mine = || cases.iter().filter(|c| c.alertname == name);
        if !mine().any(|c| !c.exp_alerts.is_empty()) {
            problems.push(format!("{name}: no test case fires it"));
        }
        if !mine().any(|c| c.exp_alerts.is_empty()) {
            problems.push(format!("{name}: no test case where it stays silent"));
        }
    }
    let names: BTreeSet<&str> = rules.alerts().map(|(n, _)| n).collect();
    for c in &cases {
        if !names.contains(c.alertname.as_str()) {
            problems.push(format!("test case for unknown alert {}", c.alertname));
        }
    }
    problems
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let dir = repo("deploy/prometheus");
    let checked = promtool_ok(&dir, &["check", "rules", "quorumd.rules.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool_ok(&dir, &["test", "rules", "quorumd.rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// The negative control of the unit tests: a rule whose threshold moved (6 quorum failures a
/// minute, which the tests keep silent, now fire) fails `promtool test rules`.
#[test]
fn promtool_unit_tests_catch_a_moved_threshold() {
    let rules = read(RULES);
    let moved = rules.replace(
        "quorumd:quorum_failures:rate5m{job=\"quorumd\"} > 0.1",
        "quorumd:quorum_failures:rate5m{job=\"quorumd\"} >= 0.1",
    );
    assert_ne!(moved, rules, "the threshold to move is in the rules file");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("quorumd.rules.yml"), moved).unwrap();
    std::fs::copy(repo(RULE_TESTS), dir.path().join("quorumd.rules.test.yml")).unwrap();
    match promtool(dir.path(), &["test", "rules", "quorumd.rules.test.yml"]) {
        Err(ToolError::Failed { output, .. }) => {
            assert!(output.contains("QuorumdQuorumFailures"), "{output}")
        }
        other => panic!("a moved threshold passed the unit tests: {other:?}"),
    }
}

#[test]
fn every_alert_has_a_case_that_fires_it_and_one_that_does_not() {
    let rules = RuleFile::load();
    let tests: RuleTests = serde_norway::from_str(&read(RULE_TESTS)).unwrap();
    assert!(rules.alerts().count() >= 10);
    assert_eq!(untested_alerts(&rules, &tests), Vec::<String>::new());

    // Negative control: an alert added without a test is caught, twice (no firing case, no
    // silent case).
    let mut more = rules.clone();
    more.groups[0].rules.push(Rule {
        alert: Some("QuorumdUntested".into()),
        expr: "vector(1)".into(),
        ..Rule::default()
    });
    assert_eq!(
        untested_alerts(&more, &tests),
        [
            "QuorumdUntested: no test case fires it",
            "QuorumdUntested: no test case where it stays silent"
        ]
    );
}

/// GitHub's heading anchors: lowercase, punctuation but `-` and `_` dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// What is wrong with the alerts' labels and annotations: a severity, a summary, a
/// description, and a runbook_url whose anchor is a heading of the runbook.
fn annotation_problems(rules: &RuleFile, runbook: &str) -> Vec<String> {
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("#"))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let mut problems = Vec::new();
    for (name, r) in rules.alerts() {
        let severity = r.labels.get("severity").map(String::as_str);
        if !matches!(severity, Some("critical" | "warning" | "info")) {
            problems.push(format!("{name}: severity {severity:?}"));
        }
        for key in ["summary", "description"] {
            if r.annotations.get(key).is_none_or(|s| s.is_empty()) {
                problems.push(format!("{name}: no {key}"));
            }
        }
        match r
            .annotations
            .get("runbook_url")
            .and_then(|u| u.strip_prefix("docs/RUNBOOK.md#"))
        {
            Some(a) if anchors.contains(a) => {}
            other => problems.push(format!(
                "{name}: runbook_url {other:?} is not docs/RUNBOOK.md#<a heading>"
            )),
        }
    }
    problems
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_runbook_section() {
    let rules = RuleFile::load();
    let runbook = read(RUNBOOK);
    assert_eq!(annotation_problems(&rules, &runbook), Vec::<String>::new());
    // Each alert's section is headed by its name.
    for (name, _) in rules.alerts() {
        assert!(
            runbook.lines().any(|l| l == format!("### {name}")),
            "no section `### {name}` in the runbook"
        );
    }
    // Negative controls: a link to a missing section, and a missing severity.
    let mut broken = rules.clone();
    let first = broken.groups[0]
        .rules
        .iter_mut()
        .find(|r| r.alert.is_some())
        .unwrap();
    first.annotations.insert(
        "runbook_url".into(),
        "docs/RUNBOOK.md#no-such-section".into(),
    );
    first.labels.remove("severity");
    let problems = annotation_problems(&broken, &runbook);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(anchor("QuorumdNodeDown"), "quorumdnodedown");
    assert_eq!(
        anchor("What to do: the node's data"),
        "what-to-do-the-nodes-data"
    );
}

/// The differences between the rules file's groups and the manifest's `spec.groups`.
fn manifest_differences(
    rules: &serde_norway::Value,
    manifest: &serde_norway::Value,
) -> Vec<String> {
    let mut problems = Vec::new();
    if manifest["apiVersion"] != "monitoring.coreos.com/v1" || manifest["kind"] != "PrometheusRule"
    {
        problems.push("not a monitoring.coreos.com/v1 PrometheusRule".to_owned());
    }
    if rules["groups"] != manifest["spec"]["groups"] {
        problems.push(format!(
            "spec.groups differs from {RULES}: run scripts/gen-prometheusrule.sh"
        ));
    }
    problems
}

#[test]
fn the_prometheusrule_manifest_carries_the_rules_file() {
    let rules: serde_norway::Value = serde_norway::from_str(&read(RULES)).unwrap();
    let manifest: serde_norway::Value = serde_norway::from_str(&read(PROMETHEUS_RULE)).unwrap();
    assert_eq!(
        manifest_differences(&rules, &manifest),
        Vec::<String>::new()
    );
    let kustomization = read("deploy/kubernetes/kustomization.yaml");
    assert!(
        kustomization.contains("- prometheusrule.yaml"),
        "{kustomization}"
    );
    // The generator writes exactly the committed manifest.
    let committed = read(PROMETHEUS_RULE);
    let out = Command::new("bash")
        .arg(repo("scripts/gen-prometheusrule.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read(PROMETHEUS_RULE),
        committed,
        "the generator's output changed"
    );

    // Negative control: a threshold changed in one file only is caught.
    let edited: serde_norway::Value =
        serde_norway::from_str(&read(RULES).replace("> 0.1", "> 0.2")).unwrap();
    assert_eq!(manifest_differences(&edited, &manifest).len(), 1);
}

// ---- The dashboard ---------------------------------------------------------------------------

fn dashboard() -> Json {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is valid JSON")
}

/// Every panel, rows' nested panels included.
fn panels(d: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// `(panel title, query)` of every panel target.
fn panel_queries(d: &Json) -> Vec<(String, String)> {
    panels(d)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or("").to_owned()))
        })
        .collect()
}

/// The selectors the variables query (`label_values(<selector>, label)`).
fn variable_selectors(d: &Json) -> Vec<String> {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["query"]["query"].as_str())
        .filter_map(|q| {
            let inner = q.strip_prefix("label_values(")?.strip_suffix(')')?;
            Some(inner.rsplit_once(',')?.0.trim().to_owned())
        })
        .collect()
}

/// What is wrong with the dashboard's data sources: a `datasource` variable of type
/// prometheus must exist, and every `uid` anywhere must be a variable, not a hard-coded one.
fn dashboard_problems(d: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let vars = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !vars.iter().any(|v| {
        v["type"] == "datasource" && v["query"] == "prometheus" && v["name"] == "datasource"
    }) {
        problems.push("no `datasource` variable of type prometheus".to_owned());
    }
    fn walk(v: &Json, path: &str, problems: &mut Vec<String>) {
        match v {
            Json::Object(m) => {
                for (k, x) in m {
                    let here = format!("{path}.{k}");
                    if k == "uid"
                        && !(x.is_null() || x.as_str().is_some_and(|s| s.starts_with('$')))
                    {
                        problems.push(format!("hard-coded uid {x} at {here}"));
                    }
                    walk(x, &here, problems);
                }
            }
            Json::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}[{i}]"), problems);
                }
            }
            _ => {}
        }
    }
    walk(d, "", &mut problems);
    for p in panels(d) {
        if p["type"] == "row" {
            continue;
        }
        if p["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("panel {} does not use ${{datasource}}", p["title"]));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty()
            || targets
                .iter()
                .any(|t| t["expr"].as_str().is_none_or(str::is_empty))
        {
            problems.push(format!("panel {} has an empty query", p["title"]));
        }
    }
    problems
}

/// A panel query with Grafana's variables replaced, so Prometheus can parse it.
fn without_grafana_variables(q: &str) -> String {
    let mut out = q
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h");
    // Template variables only stand in label values here, inside quotes.
    while let Some(start) = out.find('$') {
        let end = out[start + 1..]
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '{' | '}')))
            .map_or(out.len(), |e| start + 1 + e);
        out.replace_range(start..end, ".*");
    }
    out
}

/// Parses queries with promtool: as recording rules of a generated rules file, which
/// `promtool check rules` parses (promtool has no offline query parser).
fn promtool_parses(queries: &[String]) -> Result<String, ToolError> {
    let file = RuleFile {
        groups: vec![Group {
            name: "dashboard".into(),
            rules: queries
                .iter()
                .enumerate()
                .map(|(i, q)| Rule {
                    record: Some(format!("dashboard:panel_query_{i}")),
                    expr: without_grafana_variables(q),
                    ..Rule::default()
                })
                .collect(),
        }],
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dashboard.rules.yml"),
        serde_norway::to_string(&file).unwrap(),
    )
    .unwrap();
    promtool(dir.path(), &["check", "rules", "dashboard.rules.yml"])
}

#[test]
fn the_dashboard_uses_a_datasource_variable_and_every_query_parses() {
    let d = dashboard();
    assert_eq!(dashboard_problems(&d), Vec::<String>::new());
    let queries: Vec<String> = panel_queries(&d).into_iter().map(|(_, q)| q).collect();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let parsed = promtool_parses(&queries).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        parsed.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{parsed}"
    );

    // The topics each have a panel on their series.
    let all = queries.join("\n");
    for (topic, series) in [
        ("node health", "quorumd_node_health"),
        ("node latency", "quorumd_node_latency_seconds"),
        ("request rate and errors", "quorumd_http_requests_total"),
        (
            "request latency",
            "quorumd_http_request_duration_seconds_bucket",
        ),
        ("divergence", "quorumd:sweep_keys_divergent:rate5m"),
        ("repairs", "quorumd:keys_repaired:rate5m"),
        ("sweep duration", "quorumd_sweep_duration_seconds_sum"),
        ("sweep progress", "quorumd_sweep_progress_ratio"),
        ("hints", "quorumd:hints_pending:max"),
        ("locks", "quorumd:lock_acquisitions:rate5m"),
        ("queues", "quorumd:queue_operations:rate5m"),
    ] {
        assert!(all.contains(series), "no panel shows {topic} ({series})");
    }

    // Negative controls: a query that does not parse, and a hard-coded data source.
    match promtool_parses(&["sum(rate(quorumd_sweeps_total[$__rate_interval])".to_owned()]) {
        Err(ToolError::Failed { output, .. }) => assert!(output.contains("parse"), "{output}"),
        other => panic!("a broken query parsed: {other:?}"),
    }
    let mut hard = d.clone();
    hard["panels"][1]["datasource"] =
        serde_json::json!({"type": "prometheus", "uid": "P1809F7CD0C75ACF3"});
    let problems = dashboard_problems(&hard);
    assert_eq!(problems.len(), 2, "{problems:?}");
}

// ---- Every series named exists ---------------------------------------------------------------

/// One series selector of a PromQL expression: the metric name and its label matchers.
#[derive(Debug, Clone, PartialEq)]
struct Selector {
    name: String,
    /// `(label, operator, value)`.
    matchers: Vec<(String, String, String)>,
}

/// Words that are not metric names: aggregations, keywords and modifiers (those followed by a
/// label list skip it).
const NOT_METRICS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
];
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The end (exclusive) of the bracketed group opening at `i` (`(`, `[` or `{`).
fn group_end(s: &[u8], i: usize) -> usize {
    let (open, close) = (
        s[i],
        match s[i] {
            b'(' => b')',
            b'[' => b']',
            _ => b'}',
        },
    );
    let mut depth = 0;
    let mut j = i;
    while j < s.len() {
        match s[j] {
            b'"' | b'\'' | b'`' => j = string_end(s, j) - 1,
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    s.len()
}

/// The end (exclusive) of the string literal opening at `i`.
fn string_end(s: &[u8], i: usize) -> usize {
    let quote = s[i];
    let mut j = i + 1;
    while j < s.len() && s[j] != quote {
        if s[j] == b'\\' && quote != b'`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// The label matchers of `{...}` (without the braces).
fn matchers(body: &str) -> Vec<(String, String, String)> {
    let s = body.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if !(s[i].is_ascii_alphabetic() || s[i] == b'_') {
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && is_ident(s[i]) {
            i += 1;
        }
        let label = body[start..i].to_owned();
        while i < s.len() && s[i] == b' ' {
            i += 1;
        }
        let op_start = i;
        while i < s.len() && matches!(s[i], b'=' | b'!' | b'~') {
            i += 1;
        }
        let op = body[op_start..i].to_owned();
        while i < s.len() && s[i] == b' ' {
            i += 1;
        }
        if i < s.len() && matches!(s[i], b'"' | b'\'' | b'`') {
            let end = string_end(s, i);
            out.push((label, op, body[i + 1..end - 1].to_owned()));
            i = end;
        }
    }
    out
}

/// Every series selector of a PromQL expression.
fn selectors(expr: &str) -> Vec<Selector> {
    let s = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            i = string_end(s, i);
        } else if c == b'[' {
            i = group_end(s, i);
        } else if c == b'#' {
            i = expr[i..].find('\n').map_or(s.len(), |e| i + e);
        } else if c.is_ascii_digit() || (c == b'.' && s.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            // Numbers and durations (`0.99`, `1e3`, `26h`).
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let mut next = i;
            while next < s.len() && s[next].is_ascii_whitespace() {
                next += 1;
            }
            let followed_by = s.get(next).copied();
            if LABEL_LISTS.contains(&word) {
                if followed_by == Some(b'(') {
                    i = group_end(s, next);
                }
            } else if NOT_METRICS.contains(&word) || followed_by == Some(b'(') {
                // An aggregation, a keyword or a function.
            } else if followed_by == Some(b'{') {
                let end = group_end(s, next);
                out.push(Selector {
                    name: word.to_owned(),
                    matchers: matchers(&expr[next + 1..end - 1]),
                });
                i = end;
            } else {
                out.push(Selector {
                    name: word.to_owned(),
                    matchers: Vec::new(),
                });
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The selectors a scrape of quorumd cannot satisfy: a metric it does not export, a label
/// value it never has, a recording rule the rules file does not define. Matchers on the
/// target's own labels (`job`, `instance`) and on dashboard variables are not checked.
fn missing_series(
    named: &[(String, Selector)],
    scrape: &Scrape,
    recorded: &BTreeSet<String>,
) -> Vec<String> {
    let exported = scrape.sample_names();
    let defined: BTreeSet<&str> = quorumd::metric_names::ALL.iter().map(|m| m.name).collect();
    let mut problems = Vec::new();
    for (place, sel) in named {
        let name = sel.name.as_str();
        if PROMETHEUS_OWN.contains(&name) {
            continue;
        }
        if name.contains(':') {
            if !recorded.contains(name) {
                problems.push(format!("{place}: {name} is recorded by no rule"));
            }
            continue;
        }
        if NOT_AT_START.contains(&name) {
            if !defined.contains(name) {
                problems.push(format!("{place}: {name} is not a quorumd metric"));
            }
            continue;
        }
        if !exported.contains(name) {
            problems.push(format!("{place}: {name} is not exported"));
            continue;
        }
        for (label, op, value) in &sel.matchers {
            if matches!(label.as_str(), "job" | "instance") || value.contains('$') {
                continue;
            }
            let values: BTreeSet<&str> = scrape
                .series(name)
                .filter_map(|(l, _)| l.iter().find(|(k, _)| k == label).map(|(_, v)| v.as_str()))
                .collect();
            let wanted: Vec<&str> = match op.as_str() {
                "=" => vec![value.as_str()],
                // A list of literal alternatives: each must exist.
                "=~" if value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_|".contains(c)) =>
                {
                    value.split('|').collect()
                }
                _ => Vec::new(),
            };
            if values.is_empty() {
                problems.push(format!("{place}: {name} has no label {label}"));
            }
            for v in wanted {
                if !values.contains(v) {
                    problems.push(format!("{place}: no {name}{{{label}=\"{v}\"}}"));
                }
            }
        }
    }
    problems
}

/// `(where, selector)` of every series the rules and the dashboard name.
fn named_series(rules: &RuleFile, d: &Json) -> Vec<(String, Selector)> {
    let mut named = Vec::new();
    for r in rules.rules() {
        let place = r.alert.clone().or(r.record.clone()).unwrap_or_default();
        named.extend(selectors(&r.expr).into_iter().map(|s| (place.clone(), s)));
    }
    for (title, q) in panel_queries(d) {
        named.extend(
            selectors(&q)
                .into_iter()
                .map(|s| (format!("panel {title}"), s)),
        );
    }
    for q in variable_selectors(d) {
        named.extend(
            selectors(&q)
                .into_iter()
                .map(|s| ("variable".to_owned(), s)),
        );
    }
    named
}

#[test]
fn the_selector_reader_finds_names_and_matchers_only() {
    let found = selectors(
        "sum by (job, node) (rate(quorumd_x_total{job=\"quorumd\", mode=~\"a|b\"}[5m] offset 1h)) \
         > on (job) group_left(node) 0.5 * quorumd:y:rate5m and up == 1e3 # quorumd_comment",
    );
    let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["quorumd_x_total", "quorumd:y:rate5m", "up"]);
    assert_eq!(
        found[0].matchers,
        [
            ("job".into(), "=".into(), "quorumd".into()),
            ("mode".into(), "=~".into(), "a|b".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_a_rule_or_panel_names_is_exported_by_a_fresh_instance() {
    let rules = RuleFile::load();
    let d = dashboard();
    let named = named_series(&rules, &d);
    assert!(named.len() > 50, "{} selectors", named.len());

    // A fresh instance, no request but scrapes: the series exist because they are registered
    // at zero when the service starts. The latency gauge waits for the first probes.
    let t = TestCluster::start(3).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = scrape(&t).await;
        if s.sample_names()
            .contains(quorumd::metric_names::NODE_LATENCY)
        {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no node latency after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let recorded = rules.recorded();
    assert_eq!(missing_series(&named, &s, &recorded), Vec::<String>::new());

    // Negative control: a renamed metric, a label value that never occurs, a recording rule
    // nobody defines, and a name the code does not know are each caught.
    let bad: Vec<(String, Selector)> = [
        "rate(quorumd_sweep_total{mode=\"full\"}[5m])",
        "quorumd_sweeps_total{mode=\"fulll\"}",
        "quorumd_sweeps_total{mode=~\"full|exchang\"}",
        "quorumd:nothing:rate5m",
    ]
    .iter()
    .flat_map(|q| {
        selectors(q)
            .into_iter()
            .map(|sel| ("control".to_owned(), sel))
    })
    .collect();
    let caught = missing_series(&bad, &s, &recorded);
    assert_eq!(caught.len(), 4, "{caught:#?}");
    t.shutdown().await;
}
