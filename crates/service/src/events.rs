//! Events of the service: HTTP listening and requests, shutdown, token reloads, systemd
//! notifications, the demo's deliberate damage. Each event writes its log line and records
//! its metrics in one place (metric names: `quorumd_core::metric_names`).

use quorumd_core::metric_names::*;
use std::time::Duration;

/// The HTTP listener is serving.
pub struct HttpListening {
    pub addr: std::net::SocketAddr,
}

impl HttpListening {
    pub fn emit(self) {
        tracing::info!(addr = %self.addr, "http api listening");
    }
}

/// The service is starting on a runtime of `workers` threads (`worker_threads`).
pub struct RuntimeStarted {
    pub workers: usize,
}

impl RuntimeStarted {
    pub fn emit(self) {
        tracing::info!(workers = self.workers, "runtime started");
    }
}

/// The service began or finished a graceful shutdown.
pub struct ShutdownProgress {
    pub phase: &'static str,
    pub elapsed: Duration,
}

impl ShutdownProgress {
    pub fn emit(self) {
        tracing::info!(
            phase = self.phase,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "shutdown"
        );
    }
}

/// What a graceful shutdown waited for: the background workers it stopped (and those it cut
/// off at the drain deadline) and the tracked tasks (read repairs, hint writes, sweeps started
/// through the API) it let finish.
pub struct ShutdownWaited<'a> {
    pub workers_stopped: &'a [String],
    pub workers_cut_off: &'a [String],
    pub tasks_waited_for: usize,
    pub tasks_unfinished: usize,
    pub elapsed: Duration,
}

impl ShutdownWaited<'_> {
    pub fn emit(self) {
        let stopped = self.workers_stopped.join(", ");
        let cut_off = self.workers_cut_off.join(", ");
        let elapsed_ms = self.elapsed.as_millis() as u64;
        if self.workers_cut_off.is_empty() && self.tasks_unfinished == 0 {
            tracing::info!(
                workers_stopped = stopped,
                tasks_waited_for = self.tasks_waited_for,
                elapsed_ms,
                "shutdown: background work finished"
            );
        } else {
            tracing::warn!(
                workers_stopped = stopped,
                workers_cut_off = cut_off,
                tasks_waited_for = self.tasks_waited_for,
                tasks_unfinished = self.tasks_unfinished,
                elapsed_ms,
                "shutdown: drain deadline passed with background work unfinished"
            );
        }
    }
}

/// A request failed inside the service (not the client's fault).
pub struct RequestFailed<'a> {
    pub operation: &'a str,
    pub error: &'a str,
}

impl RequestFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(
            operation = self.operation,
            error = self.error,
            "request failed"
        );
    }
}

/// SIGHUP re-read the tokens file.
pub struct AuthTokensReloaded<'a> {
    pub file: &'a str,
    pub tokens: usize,
}

impl AuthTokensReloaded<'_> {
    pub fn emit(self) {
        tracing::info!(
            file = self.file,
            tokens = self.tokens,
            "auth tokens reloaded"
        );
    }
}

/// SIGHUP found a bad tokens file; the tokens in force stay.
pub struct AuthTokensReloadFailed<'a> {
    pub error: &'a str,
}

impl AuthTokensReloadFailed<'_> {
    pub fn emit(self) {
        tracing::error!(
            error = self.error,
            "auth tokens not reloaded; the previous tokens stay in force"
        );
    }
}

/// systemd was told something over the notify socket (or could not be).
pub struct ServiceManagerNotified<'a> {
    pub state: &'a str,
    pub error: Option<&'a str>,
}

impl ServiceManagerNotified<'_> {
    pub fn emit(self) {
        match self.error {
            None => tracing::debug!(state = self.state, "service manager notified"),
            Some(e) => tracing::warn!(
                state = self.state,
                error = e,
                "cannot notify the service manager"
            ),
        }
    }
}

/// An HTTP request was answered.
pub struct HttpRequestServed {
    pub method: &'static str,
    /// The matched route pattern (e.g. `/v1/kv/{*key}`), never the raw path.
    pub route: &'static str,
    pub consistency: &'static str,
    pub status: u16,
    pub elapsed: Duration,
}

impl HttpRequestServed {
    pub fn emit(self) {
        let result = match self.status {
            200..=399 => "ok",
            404 => "not_found",
            412 => "precondition_failed",
            400..=499 => "client_error",
            503 => "unavailable",
            _ => "error",
        };
        // Static label values: no string is copied per request (each copy was an allocation,
        // about twenty a request before).
        let labels = [
            ("method", self.method),
            ("route", self.route),
            ("consistency", self.consistency),
            ("result", result),
        ];
        metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
        metrics::histogram!(HTTP_DURATION, &labels).record(self.elapsed.as_secs_f64());
        tracing::debug!(
            method = self.method,
            route = self.route,
            status = self.status,
            elapsed_ms = self.elapsed.as_secs_f64() * 1000.0,
            "request served"
        );
    }
}

/// `quorumd demo` tampered with a node on purpose, so the healing can be watched.
pub struct DemoTampered<'a> {
    pub action: &'a str,
    pub node: &'a str,
    pub keys: u64,
}

impl DemoTampered<'_> {
    pub fn emit(self) {
        tracing::warn!(
            action = self.action,
            node = self.node,
            keys = self.keys,
            "demo: node tampered with"
        );
    }
}

/// The key-value route's pattern, as the `route` label shows it.
pub const KV_ROUTE: &str = "/v1/kv/{*key}";

/// The service is starting: its own series whose labels are known in advance are registered at
/// zero. HTTP series are per route, method, level and result, several thousand lines with the
/// histograms' buckets if every route had them all; only the key-value route (the data path,
/// which the availability alerts and the dashboard watch) is registered, for each method and
/// level: its counter with every result, its histogram with `ok`. The other routes' series
/// appear with their first request. Registering changes no value.
pub struct ServiceMetricsRegistered;

impl ServiceMetricsRegistered {
    pub fn emit(self) {
        use quorumd_core::metric_labels as labels;
        for method in ["GET", "PUT", "DELETE"] {
            for level in labels::CONSISTENCY_LEVELS {
                let labels_with = |result: &'static str| {
                    [
                        ("method", method),
                        ("route", KV_ROUTE),
                        ("consistency", *level),
                        ("result", result),
                    ]
                };
                for result in labels::HTTP_RESULTS {
                    metrics::counter!(HTTP_REQUESTS, &labels_with(result)).increment(0);
                }
                let _ = metrics::histogram!(HTTP_DURATION, &labels_with("ok"));
            }
        }
        metrics::gauge!(RESP_CONNECTIONS).increment(0.0);
        metrics::counter!(RESP_REFUSED).increment(0);
        metrics::counter!(WORKER_FAILURES, "worker" => "auth:reload").increment(0);
    }
}
