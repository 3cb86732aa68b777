//! Hinted handoff on one node: the sets `{prefix}h:{identity}` that hold the keys the node
//! named by `identity` missed. Recorded by the store after a write that missed nodes, replayed
//! and dropped by the sweep.

use crate::pool::{Node, NodeError};

/// Adds `key` to each of the hint sets `hint_keys` on one node (one pipeline).
pub async fn record(node: &Node, hint_keys: &[String], key: &[u8]) -> Result<(), NodeError> {
    let mut pipe = redis::pipe();
    for k in hint_keys {
        pipe.cmd("SADD").arg(k).arg(key).ignore();
    }
    node.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
        .await
}

/// How many keys a hint set holds on one node (`SCARD`).
pub async fn count(node: &Node, hint_key: &str) -> Result<u64, NodeError> {
    let mut cmd = redis::cmd("SCARD");
    cmd.arg(hint_key);
    node.run(|mut c| async move { cmd.query_async::<u64>(&mut c).await })
        .await
}

/// Up to `limit` distinct keys of a hint set on one node (`SRANDMEMBER`).
pub async fn sample(node: &Node, hint_key: &str, limit: usize) -> Result<Vec<Vec<u8>>, NodeError> {
    let mut cmd = redis::cmd("SRANDMEMBER");
    cmd.arg(hint_key).arg(limit);
    node.run(|mut c| async move { cmd.query_async(&mut c).await })
        .await
}

/// Removes replayed keys from a hint set on one node (`SREM`); returns how many were there.
pub async fn drop_keys(node: &Node, hint_key: &str, keys: &[Vec<u8>]) -> Result<u64, NodeError> {
    let mut cmd = redis::cmd("SREM");
    cmd.arg(hint_key).arg(keys);
    node.run(|mut c| async move { cmd.query_async::<u64>(&mut c).await })
        .await
}
