//! Store events: read repair, hints recorded, refused writes retracted.

use quorumd_core::metric_names::*;
use quorumd_node::live::{LiveEvent, LiveFeed};

/// Read repair wrote the winning version to replicas that were behind.
pub struct ReadRepaired<'a> {
    pub nodes: &'a [String],
    pub failed: usize,
    pub live: &'a LiveFeed,
}

impl ReadRepaired<'_> {
    pub fn emit(self) {
        metrics::counter!(READ_REPAIRS).increment(1);
        for node in self.nodes {
            metrics::counter!(KEYS_REPAIRED, "node" => node.clone(), "source" => "read")
                .increment(1);
        }
        if !self.nodes.is_empty() {
            self.live.publish(LiveEvent::Repair {
                source: "read",
                keys: self.nodes.len() as u64,
                buckets: 1,
                at_ms: quorumd_core::hlc::wall_clock_ms(),
            });
        }
        tracing::debug!(nodes = ?self.nodes, failed = self.failed, "read repair applied");
    }
}

/// A node held this layout's metadata without the layout marker (wiped and healed before the
/// marker was written back); the marker was written again at start.
pub struct LayoutMarkerRestored<'a> {
    pub node: &'a str,
}

impl LayoutMarkerRestored<'_> {
    pub fn emit(self) {
        tracing::warn!(
            node = self.node,
            "the node's layout marker was missing though its metadata is of this layout (the node was wiped and healed before the marker was written back); marked it again"
        );
    }
}

/// A write missed nodes; hints were left on the nodes that took it.
pub struct HintsRecorded {
    pub key_bytes: usize,
    pub missed: usize,
}

impl HintsRecorded {
    pub fn emit(self) {
        metrics::counter!(HINTS_RECORDED).increment(self.missed as u64);
        tracing::debug!(
            key_bytes = self.key_bytes,
            missed = self.missed,
            "hints recorded"
        );
    }
}

/// Hints for a node that missed a write were not kept: its hint set was full on every node
/// that took the write. The digest exchange will find the key instead.
pub struct HintsDropped<'a> {
    /// The node that missed the write.
    pub node: &'a str,
    pub key_bytes: usize,
}

impl HintsDropped<'_> {
    pub fn emit(self) {
        metrics::counter!(HINTS_DROPPED, "node" => self.node.to_owned()).increment(1);
        tracing::debug!(
            node = self.node,
            key_bytes = self.key_bytes,
            "hint dropped: the node's hint sets are full"
        );
    }
}

/// A key-value write refused by the nodes holding a CRDT was removed from a node that took it.
pub struct RefusedWriteRetracted<'a> {
    pub node: &'a str,
    pub result: Result<(), String>,
}

impl RefusedWriteRetracted<'_> {
    pub fn emit(self) {
        match self.result {
            Ok(()) => tracing::debug!(node = self.node, "refused write retracted"),
            Err(e) => tracing::warn!(
                node = self.node,
                error = %e,
                "a write refused for a CRDT could not be retracted: the sweep will report the key"
            ),
        }
    }
}

/// The service is starting: read repairs and recorded hints are registered at zero.
pub struct StoreMetricsRegistered;

impl StoreMetricsRegistered {
    pub fn emit(self) {
        metrics::counter!(READ_REPAIRS).increment(0);
        metrics::counter!(HINTS_RECORDED).increment(0);
    }
}
