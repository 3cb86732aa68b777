//! The torture report: one markdown table per workload, by fault kind, written under
//! `target/torture/` (`make torture` joins them into `report.md`).

use crate::run::RunResult;
use quorumd_testkit::nemesis::plan::FaultKind;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("torture")
}

/// Writes `target/torture/<name>.md` and returns its text; `note` says what the workload
/// counts (e.g. what its convergence column measures).
pub fn write(name: &str, note: &str, results: &[RunResult]) -> String {
    let text = render(name, note, results);
    let dir = dir();
    std::fs::create_dir_all(&dir).expect("create target/torture");
    std::fs::write(dir.join(format!("{name}.md")), &text).expect("write the report");
    text
}

fn render(name: &str, note: &str, results: &[RunResult]) -> String {
    // Workload-specific counts (e.g. redeliveries) become extra columns, summed per row.
    let counters: BTreeSet<&str> = results
        .iter()
        .flat_map(|r| r.counters.keys().copied())
        .collect();
    let mut out = format!(
        "### {name}\n\n| fault kind | runs | operations | faults injected | violations | convergence median | convergence max |{}\n|---|---:|---:|---:|---:|---:|---:|{}\n",
        counters
            .iter()
            .map(|c| format!(" {c} |"))
            .collect::<String>(),
        "---:|".repeat(counters.len()),
    );
    let mut row = |label: &str, runs: Vec<&RunResult>, faults: usize| {
        let mut conv: Vec<Duration> = runs.iter().filter_map(|r| r.convergence).collect();
        conv.sort();
        let fmt =
            |d: Option<&Duration>| d.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
        let extra: String = counters
            .iter()
            .map(|c| {
                format!(
                    " {} |",
                    runs.iter()
                        .map(|r| r.counters.get(c).copied().unwrap_or(0))
                        .sum::<usize>()
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {faults} | {} | {} | {} |{extra}",
            runs.len(),
            runs.iter().map(|r| r.operations).sum::<usize>(),
            runs.iter().map(|r| r.violations.len()).sum::<usize>(),
            fmt(conv.get(conv.len() / 2)),
            fmt(conv.last()),
        );
    };
    for kind in FaultKind::ALL {
        let runs: Vec<&RunResult> = results
            .iter()
            .filter(|r| r.faults.injected.contains_key(&kind))
            .collect();
        let faults = runs.iter().map(|r| r.faults.injected[&kind]).sum();
        row(kind.as_str(), runs, faults);
    }
    row(
        "**all runs**",
        results.iter().collect(),
        results.iter().map(|r| r.faults.total()).sum(),
    );
    let seeds: Vec<String> = results.iter().map(|r| r.seed.to_string()).collect();
    let _ = writeln!(
        out,
        "\nSeeds: {}. A run counts under a fault kind when that kind was injected in it. {note}\n",
        seeds.join(", ")
    );
    out
}
