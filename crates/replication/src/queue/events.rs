//! Queue events: operations and depths.

use quorumd_core::metric_names::*;

/// A queue operation finished, or an item moved on its own (`dead_letter`, `redelivery`).
pub struct QueueOperated {
    /// `put`, `claim`, `ack`, `nack`, `extend`, `dead_letter` or `redelivery`.
    pub operation: &'static str,
    /// `ok`, `empty` (a claim that found nothing), `stale_lease`, `too_large`, `invalid` or
    /// `no_quorum`.
    pub result: &'static str,
}

impl QueueOperated {
    pub fn emit(self) {
        metrics::counter!(QUEUE_OPERATIONS, "operation" => self.operation, "result" => self.result)
            .increment(1);
        tracing::debug!(
            operation = self.operation,
            result = self.result,
            "queue operation"
        );
    }
}

/// A queue's depths were computed (a depth read): sets the depth gauges of that queue.
pub struct QueueDepthsObserved<'a> {
    pub queue: &'a str,
    pub depths: [(&'static str, u64); 4],
}

impl QueueDepthsObserved<'_> {
    pub fn emit(self) {
        for (state, n) in self.depths {
            metrics::gauge!(QUEUE_ITEMS, "queue" => self.queue.to_owned(), "state" => state)
                .set(n as f64);
        }
    }
}
