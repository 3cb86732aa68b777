//! Hinted handoff on one node: the sets `{prefix}h:{identity}` that hold the keys the node
//! named by `identity` missed. Recorded by the store after a write that missed nodes, replayed
//! and dropped by the sweep.

use crate::pool::{Node, NodeError};
use redis::Script;
use std::sync::LazyLock;

/// KEYS: hint sets; ARGV: the key, the most keys a set may hold. Adds the key to each set with
/// room; per set, 1 if it holds the key afterwards, 0 if it was full. One script, so the size
/// check and the add are one step against concurrent writers.
const RECORD_LUA: &str = include_str!("../../lua/hints/record.lua");

static RECORD: LazyLock<Script> = LazyLock::new(|| Script::new(RECORD_LUA));

/// Adds `key` to each of the hint sets `hint_keys` on one node, unless the set already holds
/// `max_keys` keys. Per set, in order: whether it holds the key now (`false`: full, dropped).
pub async fn record(
    node: &Node,
    hint_keys: &[String],
    key: &[u8],
    max_keys: u64,
) -> Result<Vec<bool>, NodeError> {
    node.per_slot(
        hint_keys,
        |k| k.as_str(),
        |group| async move {
            let mut inv = RECORD.prepare_invoke();
            for k in &group {
                inv.key(k);
            }
            inv.arg(key).arg(max_keys);
            let held: Vec<i64> = node
                .run(|mut c| async move { inv.invoke_async(&mut c).await })
                .await?;
            Ok(held.into_iter().map(|h| h == 1).collect())
        },
    )
    .await
}

/// How many keys a hint set holds on one node (`SCARD`).
pub async fn count(node: &Node, hint_key: &str) -> Result<u64, NodeError> {
    let mut cmd = redis::cmd("SCARD");
    cmd.arg(hint_key);
    node.run(|mut c| async move { cmd.query_async::<u64>(&mut c).await })
        .await
}

/// One step of a scan of a hint set on one node (`SSCAN ... COUNT count`): the next cursor (0
/// when the scan is over) and some of its keys. Every key the set holds from the scan's start
/// to its end comes back at least once, including while keys are removed along the way.
pub async fn scan(
    node: &Node,
    hint_key: &str,
    cursor: u64,
    count: usize,
) -> Result<(u64, Vec<Vec<u8>>), NodeError> {
    let mut cmd = redis::cmd("SSCAN");
    cmd.arg(hint_key).arg(cursor).arg("COUNT").arg(count);
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

/// Deletes whole hint sets on one node (on a cluster, one `DEL` per slot's sets); returns how
/// many existed.
pub async fn delete_sets(node: &Node, hint_keys: &[String]) -> Result<u64, NodeError> {
    let counts = node
        .per_slot_groups(
            hint_keys,
            |k| k.as_str(),
            |group| async move {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(&group);
                node.run_as(crate::pool::Traffic::Background, |mut c| async move {
                    cmd.query_async::<u64>(&mut c).await
                })
                .await
            },
        )
        .await?;
    Ok(counts.into_iter().sum())
}
