//! The queue's public operations: each runs the operation (in `mod.rs`) and emits its metric
//! event with the result, so every caller (HTTP today, any surface later) is counted once.

use super::{Claimed, Depths, QueueError, QueueService};
use crate::queue::events::{QueueDepthsObserved, QueueOperated};
use std::collections::HashSet;
use std::sync::Mutex;

/// Most queues that get their own depth gauges: queue names come from clients, so the series
/// stop growing here. Depth reads of other queues still answer; they set no gauge.
pub const MAX_GAUGED_QUEUES: usize = 100;

/// Names of the queues that have depth gauges.
#[derive(Default)]
pub struct GaugedQueues(Mutex<HashSet<String>>);

impl GaugedQueues {
    /// Whether `queue` has (or may now take) its own gauge series.
    fn admit(&self, queue: &str) -> bool {
        let mut names = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if names.contains(queue) {
            return true;
        }
        if names.len() >= MAX_GAUGED_QUEUES {
            return false;
        }
        names.insert(queue.to_owned())
    }
}

/// An item moved without a client asking: `dead_letter` or `redelivery`.
pub(super) fn moved(operation: &'static str) {
    QueueOperated {
        operation,
        result: "ok",
    }
    .emit();
}

fn counted<T>(
    operation: &'static str,
    r: Result<T, QueueError>,
    ok: &'static str,
) -> Result<T, QueueError> {
    let result = match &r {
        Ok(_) => ok,
        Err(e) => e.label(),
    };
    QueueOperated { operation, result }.emit();
    r
}

impl QueueError {
    /// The `result` label of the queue metrics.
    pub fn label(&self) -> &'static str {
        match self {
            QueueError::Invalid(_) => "invalid",
            QueueError::TooLarge { .. } => "too_large",
            QueueError::StaleLease { .. } => "stale_lease",
            QueueError::NoQuorum(_) => "no_quorum",
        }
    }
}

impl QueueService {
    /// Adds an item; returns its id once a majority holds it.
    pub async fn put(
        &self,
        queue: &str,
        payload: &str,
        priority: i64,
        delay_ms: u64,
    ) -> Result<String, QueueError> {
        let r = self.put_op(queue, payload, priority, delay_ms).await;
        counted("put", r, "ok")
    }

    /// Claims the best claimable item, waiting up to `wait_ms` for one; `None` when none came.
    pub async fn claim(
        &self,
        queue: &str,
        lease_ms: u64,
        wait_ms: u64,
    ) -> Result<Option<Claimed>, QueueError> {
        let r = self.claim_op(queue, lease_ms, wait_ms).await;
        let ok = match &r {
            Ok(None) => "empty",
            _ => "ok",
        };
        counted("claim", r, ok)
    }

    /// Acknowledges item `id`: it is removed everywhere.
    pub async fn ack(&self, queue: &str, id: &str, lease: &str) -> Result<(), QueueError> {
        let r = self.ack_op(queue, id, lease).await;
        counted("ack", r, "ok")
    }

    /// Returns item `id` to the queue, claimable after `delay_ms`.
    pub async fn nack(
        &self,
        queue: &str,
        id: &str,
        lease: &str,
        delay_ms: u64,
    ) -> Result<(), QueueError> {
        let r = self.nack_op(queue, id, lease, delay_ms).await;
        counted("nack", r, "ok")
    }

    /// Extends the lease on item `id` to `lease_ms` from now; returns the new validity.
    pub async fn extend(
        &self,
        queue: &str,
        id: &str,
        lease: &str,
        lease_ms: u64,
    ) -> Result<u64, QueueError> {
        let r = self.extend_op(queue, id, lease, lease_ms).await;
        counted("extend", r, "ok")
    }

    /// Items by state, merged over a majority of counted nodes; sets the queue's depth gauges
    /// (for the first `MAX_GAUGED_QUEUES` queues read).
    pub async fn depths(&self, queue: &str) -> Result<Depths, QueueError> {
        let d = self.depths_op(queue).await?;
        if self.gauged.admit(queue) {
            QueueDepthsObserved {
                queue,
                depths: [
                    ("ready", d.ready),
                    ("leased", d.leased),
                    ("delayed", d.delayed),
                    ("dead", d.dead),
                ],
            }
            .emit();
        }
        Ok(d)
    }
}
