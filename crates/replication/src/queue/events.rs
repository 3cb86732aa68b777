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

/// The service is starting: every queue operation and result, and the item moves, are
/// registered at zero. Depth gauges are per queue, and queue names come from clients, so they
/// appear with the first depth read of a queue.
pub struct QueueMetricsRegistered;

impl QueueMetricsRegistered {
    pub fn emit(self) {
        use quorumd_core::metric_labels as labels;
        for operation in labels::QUEUE_OPERATIONS {
            for result in labels::QUEUE_RESULTS {
                metrics::counter!(QUEUE_OPERATIONS, "operation" => *operation, "result" => *result)
                    .increment(0);
            }
        }
        for operation in labels::QUEUE_MOVES {
            metrics::counter!(QUEUE_OPERATIONS, "operation" => *operation, "result" => "ok")
                .increment(0);
        }
    }
}
