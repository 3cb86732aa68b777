//! Lock events: acquisitions, extensions and releases, fence catch-up on restarted nodes.

use quorumd_core::metric_names::*;
use std::time::Duration;

/// A restarted node's lock fence counters were caught up (or the attempt failed and will be
/// retried); only after that does it count toward lock majorities again.
pub struct FenceCatchUp<'a> {
    pub node: &'a str,
    pub raised: u64,
    pub error: Option<&'a str>,
}

impl FenceCatchUp<'_> {
    pub fn emit(self) {
        match self.error {
            None => tracing::info!(
                node = self.node,
                raised = self.raised,
                "lock fences caught up on restarted node"
            ),
            Some(e) => tracing::warn!(
                node = self.node,
                error = e,
                "lock fence catch-up failed; retried at the next lock operation"
            ),
        }
    }
}

/// A lock acquisition through the lock API finished.
pub struct LockAcquired {
    /// `granted`, `held` (wait ran out), `no_quorum` or `invalid`.
    pub result: &'static str,
    pub elapsed: Duration,
}

impl LockAcquired {
    pub fn emit(self) {
        metrics::counter!(LOCK_ACQUISITIONS, "result" => self.result).increment(1);
        metrics::histogram!(LOCK_ACQUIRE_DURATION, "result" => self.result)
            .record(self.elapsed.as_secs_f64());
        tracing::debug!(result = self.result, elapsed = ?self.elapsed, "lock acquisition");
    }
}

/// A lock extension or release through the lock API finished.
pub struct LockChanged {
    /// `extend` or `release`.
    pub operation: &'static str,
    /// `ok`, `not_holder`, `no_quorum` or `invalid`.
    pub result: &'static str,
}

impl LockChanged {
    pub fn emit(self) {
        let counter = match self.operation {
            "extend" => LOCK_EXTENSIONS,
            _ => LOCK_RELEASES,
        };
        metrics::counter!(counter, "result" => self.result).increment(1);
        tracing::debug!(
            operation = self.operation,
            result = self.result,
            "lock changed"
        );
    }
}

/// The service is starting: every lock result is registered at zero.
pub struct LockMetricsRegistered;

impl LockMetricsRegistered {
    pub fn emit(self) {
        use quorumd_core::metric_labels as labels;
        for result in labels::LOCK_ACQUIRE_RESULTS {
            metrics::counter!(LOCK_ACQUISITIONS, "result" => *result).increment(0);
            let _ = metrics::histogram!(LOCK_ACQUIRE_DURATION, "result" => *result);
        }
        for result in labels::LOCK_CHANGE_RESULTS {
            metrics::counter!(LOCK_EXTENSIONS, "result" => *result).increment(0);
            metrics::counter!(LOCK_RELEASES, "result" => *result).increment(0);
        }
    }
}
