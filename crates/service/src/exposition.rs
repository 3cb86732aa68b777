//! The Prometheus recorder: installed once per process, the first time anything asks for it.
//!
//! The `metrics` facade has one global recorder, and the tests start several services in one
//! process, so the recorder is process-wide and installed lazily; every service renders the
//! same registry at its own `GET /metrics` (tests compare deltas). Metrics are recorded only by
//! the typed events in `crate::events`; this module only installs, describes and renders.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Upper bounds of the latency histograms, in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the sweep duration histogram, in seconds: 10 ms to 1 h.
const SWEEP_BUCKETS_S: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Installs the recorder if no one did yet. `None` when another recorder was installed first
/// (a library user's own): then our metrics go to theirs and `/metrics` says so.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("quorumd_sweep_duration_seconds".into()),
                    SWEEP_BUCKETS_S,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("quorumd_http_request_duration_seconds".into()),
                        LATENCY_BUCKETS_S,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(quorumd_core::metric_names::LOCK_ACQUIRE_DURATION.into()),
                        LATENCY_BUCKETS_S,
                    )
                })
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            quorumd_core::metric_names::describe_metrics();
            Some(handle)
        })
        .as_ref()
}

/// The exposition text of every metric recorded in this process, without retired gauges.
pub fn render() -> Option<String> {
    let h = handle()?;
    h.run_upkeep();
    Some(without_retired_gauges(&h.render()))
}

/// `text` without the samples of gauges set to NaN. The exporter cannot drop one series (its
/// idle timeout drops every series of a kind not updated lately, and quorumd sets many gauges
/// only when they change), so an event retires a series by setting it to NaN, and it is left
/// out here: a departed cluster master's gauges disappear from the scrape instead of lingering
/// as NaN, and come back if the master does. Other kinds' samples are kept whatever their value.
fn without_retired_gauges(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_gauge = false;
    for line in text.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            in_gauge = rest.split_whitespace().nth(1) == Some("gauge");
        } else if in_gauge
            && !line.starts_with('#')
            && line.trim_end().rsplit(' ').next() == Some("NaN")
        {
            continue;
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_gauge_samples_are_left_out_and_everything_else_kept() {
        let text = "# HELP quorumd_shard_up Per master.\n\
                    # TYPE quorumd_shard_up gauge\n\
                    quorumd_shard_up{node=\"a\",master=\"h:1\"} 1\n\
                    quorumd_shard_up{node=\"a\",master=\"h:2\"} NaN\n\
                    quorumd_shard_up{node=\"a\",master=\"NaN\"} 0\n\
                    \n\
                    # TYPE quorumd_thing_seconds summary\n\
                    quorumd_thing_seconds{quantile=\"0.5\"} NaN\n\
                    # TYPE quorumd_other gauge\n\
                    quorumd_other NaN\n";
        let kept = without_retired_gauges(text);
        assert_eq!(
            kept,
            "# HELP quorumd_shard_up Per master.\n\
             # TYPE quorumd_shard_up gauge\n\
             quorumd_shard_up{node=\"a\",master=\"h:1\"} 1\n\
             quorumd_shard_up{node=\"a\",master=\"NaN\"} 0\n\
             \n\
             # TYPE quorumd_thing_seconds summary\n\
             quorumd_thing_seconds{quantile=\"0.5\"} NaN\n\
             # TYPE quorumd_other gauge\n"
        );
    }
}
