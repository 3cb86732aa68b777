//! A strict reader of the Prometheus text exposition format (0.0.4) and a check of quorumd's
//! naming conventions; plus `promtool check metrics` when promtool is installed.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

pub type Labels = Vec<(String, String)>;

#[derive(Debug, Default)]
pub struct Scrape {
    /// Family name → declared type.
    types: HashMap<String, String>,
    samples: Vec<(String, Labels, f64)>,
}

const TYPES: &[&str] = &["counter", "gauge", "histogram", "summary", "untyped"];
/// Unit suffixes that are not base units.
const NON_BASE_UNITS: &[&str] = &[
    "_ms",
    "_milliseconds",
    "_us",
    "_microseconds",
    "_ns",
    "_minutes",
    "_hours",
    "_kb",
    "_kilobytes",
    "_mb",
    "_megabytes",
    "_percent",
];

fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

/// Parses `{a="b",c="d"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = &s[1..];
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = rest[..eq].trim();
        if !valid_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or(format!("label {name} value not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {name} value not closed")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in label {name}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
        if !rest.trim_start().starts_with('}')
            && !rest
                .trim_start()
                .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        {
            return Err(format!("label set of {name} not closed"));
        }
    }
}

impl Scrape {
    pub fn parse(text: &str) -> Result<Scrape, String> {
        let mut s = Scrape::default();
        for (no, line) in text.lines().enumerate() {
            let err = |m: String| format!("line {}: {m}: {line:?}", no + 1);
            if line.trim().is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(err("TYPE needs a name and a type".into()));
                };
                if !valid_metric_name(name) || !TYPES.contains(&kind) {
                    return Err(err("bad TYPE".into()));
                }
                if s.types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    return Err(err("TYPE given twice".into()));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                if !valid_metric_name(name) {
                    return Err(err("bad HELP name".into()));
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name_end = line
                .find(['{', ' '])
                .ok_or_else(|| err("no value".into()))?;
            let name = &line[..name_end];
            if !valid_metric_name(name) {
                return Err(err(format!("bad metric name {name:?}")));
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..]).map_err(err)?
            } else {
                (Vec::new(), &line[name_end..])
            };
            let mut fields = rest.split_whitespace();
            let value =
                parse_value(fields.next().ok_or_else(|| err("no value".into()))?).map_err(err)?;
            if let Some(ts) = fields.next() {
                ts.parse::<i64>().map_err(|_| err("bad timestamp".into()))?;
            }
            if fields.next().is_some() {
                return Err(err("trailing fields".into()));
            }
            s.samples.push((name.to_owned(), labels, value));
        }
        Ok(s)
    }

    /// The family a sample belongs to, and its declared type.
    fn family(&self, sample: &str) -> Option<(String, String)> {
        if let Some(t) = self.types.get(sample) {
            return Some((sample.to_owned(), t.clone()));
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix)
                && let Some((name, t)) = self.types.get_key_value(base)
                && (t == "histogram" || t == "summary")
            {
                return Some((name.clone(), t.clone()));
            }
        }
        None
    }

    /// quorumd's conventions: every sample typed, names `quorumd_`, counters `_total`, base
    /// units, histograms complete, no credentials in label values.
    pub fn check_conventions(&self) -> Result<(), String> {
        for (name, t) in &self.types {
            if !name.starts_with("quorumd_") {
                return Err(format!("{name}: no quorumd_ prefix"));
            }
            if (t == "counter") != name.ends_with("_total") {
                return Err(format!(
                    "{name}: counters, and only counters, end in _total"
                ));
            }
            if let Some(u) = NON_BASE_UNITS.iter().find(|u| name.ends_with(*u)) {
                return Err(format!("{name}: {u} is not a base unit"));
            }
        }
        for (name, labels, value) in &self.samples {
            let (family, t) = self
                .family(name)
                .ok_or_else(|| format!("{name}: sample without TYPE"))?;
            if t == "counter" && *value < 0.0 {
                return Err(format!("{name}: negative counter"));
            }
            // A masked password (`***`) is fine; any other is a leak.
            if let Some((k, v)) = labels
                .iter()
                .find(|(_, v)| quorumd::redact::mask_urls_in_text(v) != *v)
            {
                return Err(format!("{name}: label {k}={v:?} may hold credentials"));
            }
            if t == "histogram" && name.ends_with("_count") {
                let mut inf: Vec<(&str, String)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                inf.push(("le", "+Inf".into()));
                let bucket = self.value(&format!("{family}_bucket"), &inf);
                if bucket != Some(*value) {
                    return Err(format!("{family}: +Inf bucket {bucket:?} != count {value}"));
                }
            }
        }
        Ok(())
    }

    /// The value of the series `name` whose label set is exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, String)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
    }

    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a Labels, f64)> + 'a {
        self.samples
            .iter()
            .filter(move |(n, _, _)| n == name)
            .map(|(_, l, v)| (l, *v))
    }

    /// The declared type of a family (`# TYPE` line), if the family is exported.
    pub fn family_type(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }

    /// Every sample name exported (histograms as `_bucket`, `_sum`, `_count`).
    pub fn sample_names(&self) -> std::collections::BTreeSet<&str> {
        self.samples.iter().map(|(n, _, _)| n.as_str()).collect()
    }

    pub fn sum(&self, name: &str) -> f64 {
        self.series(name).map(|(_, v)| v).sum()
    }
}

/// Runs `promtool check metrics` on the text when promtool is installed (Debian package
/// `prometheus`); the parser above is the check otherwise.
pub fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `GET /metrics` of a test service: answered 200 in the text format, checked by promtool
/// (when installed) and parsed.
pub async fn scrape(t: &quorumd_testkit::cluster::TestCluster) -> Scrape {
    let r = t.fetch("/metrics").await;
    assert_eq!(r.status(), 200);
    let ctype = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = r.text().await.unwrap();
    promtool_check(&text);
    Scrape::parse(&text).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"))
}
