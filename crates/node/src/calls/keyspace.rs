//! Per-node read behind the keyspace commands (SCAN, KEYS, RANDOMKEY, FLUSHDB): the metadata
//! entries of a range of buckets, raw, as the node holds them. Deciding which keys are live
//! across nodes is the replication layer's job (`store::keyspace`).

use crate::pool::{Node, NodeError};

/// One metadata hash's entries: (user key, encoded metadata).
pub type RawEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// `HGETALL` of every hash in `meta_keys`, in one pipeline, answered in the same order. A
/// missing hash answers no entries. Client traffic: a client command waits for it.
pub async fn meta_entries(node: &Node, meta_keys: &[String]) -> Result<Vec<RawEntries>, NodeError> {
    if meta_keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for k in meta_keys {
        pipe.cmd("HGETALL").arg(k);
    }
    node.run(|mut c| async move { pipe.query_async(&mut c).await })
        .await
}
