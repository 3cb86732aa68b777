//! Deliberate damage for `quorumd demo`, on one node.

use crate::pool::{Node, NodeError};

/// `FLUSHALL` on one node: its data, metadata and digests are gone, as after a disk loss.
pub async fn flush_all(node: &Node) -> Result<(), NodeError> {
    node.run(|mut c| async move { redis::cmd("FLUSHALL").query_async::<()>(&mut c).await })
        .await
}
