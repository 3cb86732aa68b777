//! Fan-out events: an operation that did not reach its quorum.

use quorumd_core::metric_names::*;

/// An operation did not reach its quorum.
pub struct QuorumFailed<'a> {
    pub operation: &'a str,
    pub required: usize,
    pub succeeded: usize,
    pub failures: &'a str,
}

impl QuorumFailed<'_> {
    pub fn emit(self) {
        metrics::counter!(QUORUM_FAILURES, "operation" => self.operation.to_owned()).increment(1);
        tracing::warn!(
            operation = self.operation,
            required = self.required,
            succeeded = self.succeeded,
            failures = self.failures,
            "quorum not reached"
        );
    }
}

/// The service is starting: quorum failures are registered at zero for every operation that
/// can fail its quorum. Registering changes no value.
pub struct FanoutMetricsRegistered;

impl FanoutMetricsRegistered {
    pub fn emit(self) {
        for operation in quorumd_core::metric_labels::QUORUM_OPERATIONS {
            metrics::counter!(QUORUM_FAILURES, "operation" => *operation).increment(0);
        }
    }
}
