//! CRDT events: merges that changed a node's state, and updates.

use quorumd_core::metric_names::*;

/// A CRDT state was merged into a node and changed what it held.
pub struct CrdtMerged {
    /// `counter`, `set` or `map`.
    pub kind: &'static str,
    /// `write`, `read_repair` or `sweep`.
    pub source: &'static str,
    pub nodes: u64,
}

impl CrdtMerged {
    pub fn emit(self) {
        if self.nodes == 0 {
            return;
        }
        metrics::counter!(CRDT_MERGES, "type" => self.kind, "source" => self.source)
            .increment(self.nodes);
        tracing::trace!(
            kind = self.kind,
            source = self.source,
            nodes = self.nodes,
            "crdt merged"
        );
    }
}

/// A CRDT update (counter add, set add/remove, map set/incr) finished.
pub struct CrdtUpdated {
    pub kind: &'static str,
    /// `ok`, `invalid`, `wrong_type`, `no_quorum`, `timeout` or `error`.
    pub result: &'static str,
}

impl CrdtUpdated {
    pub fn emit(self) {
        metrics::counter!(CRDT_UPDATES, "type" => self.kind, "result" => self.result).increment(1);
        tracing::debug!(kind = self.kind, result = self.result, "crdt update");
    }
}

/// The service is starting: CRDT merges and updates are registered at zero for every type,
/// source and result.
pub struct CrdtMetricsRegistered;

impl CrdtMetricsRegistered {
    pub fn emit(self) {
        use quorumd_core::metric_labels as labels;
        for kind in labels::CRDT_TYPES {
            for source in labels::CRDT_MERGE_SOURCES {
                metrics::counter!(CRDT_MERGES, "type" => *kind, "source" => *source).increment(0);
            }
            for result in labels::CRDT_UPDATE_RESULTS {
                metrics::counter!(CRDT_UPDATES, "type" => *kind, "result" => *result).increment(0);
            }
        }
    }
}
