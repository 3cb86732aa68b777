//! Deliberate damage for `quorumd demo`, on one node.

use crate::pool::{Node, NodeError};

/// `FLUSHALL` on one node (on every master of a cluster): its data, metadata and digests are
/// gone, as after a disk loss.
pub async fn flush_all(node: &Node) -> Result<(), NodeError> {
    node.run(|mut c| async move { c.on_all_masters(&redis::cmd("FLUSHALL")).await.map(drop) })
        .await
}
