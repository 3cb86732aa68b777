//! The queue scripts and the per-node calls that run them.
//!
//! Per queue, every node holds: `{prefix}q:{name}:rec` (hash id → record, see the replication
//! crate's `queue/record.rs`), `{prefix}q:{name}:pay` (hash id → payload),
//! `{prefix}q:{name}:ready` (sorted set of items that may be claimed, score −priority, member
//! id: Redis orders equal scores by member, and ids are HLC versions, so that is FIFO within a
//! priority) and `{prefix}q:{name}:gone` (sorted set: acknowledged id → when its tombstone was
//! written).

use crate::pool::{Node, NodeError};
use redis::Script;
use std::sync::LazyLock;

/// KEYS: rec, pay, ready, gone, the item's fence key. ARGV: id, record, payload (`''` =
/// none), now ms, tombstone ttl ms.
/// Merges the record into the stored one (the same join as `Record::merge`), keeps the ready
/// index and payload in step with the result, and drops a few tombstones past their time.
/// Returns the stored record.
const MERGE_LUA: &str = include_str!("../../lua/queue/merge.lua");

/// KEYS: rec, ready. ARGV: now ms, how many, most index entries to look at.
/// Returns `[id, score, ...]`: the first claimable items in priority order.
const CANDIDATES_LUA: &str = include_str!("../../lua/queue/candidates.lua");

/// KEYS: rec, pay. ARGV: id. Returns `{record or '', payload or ''}`.
const READ_LUA: &str = include_str!("../../lua/queue/read.lua");

/// KEYS: rec, pay, ready, gone, the item's fence key. ARGV: id.
/// Removes every trace of an acknowledged item (once every node holds its tombstone).
const PURGE_LUA: &str = include_str!("../../lua/queue/purge.lua");

static MERGE: LazyLock<Script> = LazyLock::new(|| Script::new(MERGE_LUA));
static CANDIDATES: LazyLock<Script> = LazyLock::new(|| Script::new(CANDIDATES_LUA));
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_LUA));
static PURGE: LazyLock<Script> = LazyLock::new(|| Script::new(PURGE_LUA));

/// The keys of one queue on every node.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub rec: String,
    pub pay: String,
    pub ready: String,
    pub gone: String,
}

impl QueueKeys {
    /// The keys of queue `name`; `tag` is the layout's group tag of the name.
    pub fn new(prefix: &str, tag: &str, name: &str) -> QueueKeys {
        let base = format!("{prefix}q{tag}:{name}:");
        QueueKeys {
            rec: format!("{base}rec"),
            pay: format!("{base}pay"),
            ready: format!("{base}ready"),
            gone: format!("{base}gone"),
        }
    }
}

/// One merge on one node.
pub struct MergeArgs<'a> {
    pub id: &'a str,
    pub record: &'a str,
    pub payload: &'a str,
    pub now_ms: u64,
    pub tombstone_ttl_ms: u64,
}

async fn invoke<T: redis::FromRedisValue + Send + 'static>(
    node: &Node,
    inv: redis::ScriptInvocation<'static>,
) -> Result<T, NodeError> {
    node.run(|mut c| async move { inv.invoke_async::<T>(&mut c).await })
        .await
}

pub async fn merge(
    node: &Node,
    keys: &QueueKeys,
    fence_key: &str,
    a: &MergeArgs<'_>,
) -> Result<String, NodeError> {
    let mut inv = MERGE.prepare_invoke();
    inv.key(&keys.rec)
        .key(&keys.pay)
        .key(&keys.ready)
        .key(&keys.gone)
        .key(fence_key)
        .arg(a.id)
        .arg(a.record)
        .arg(a.payload)
        .arg(a.now_ms)
        .arg(a.tombstone_ttl_ms);
    invoke(node, inv).await
}

/// Claimable ids with their priority, best first, as this node sees them.
pub async fn candidates(
    node: &Node,
    keys: &QueueKeys,
    now_ms: u64,
    want: usize,
) -> Result<Vec<(String, i64)>, NodeError> {
    let mut inv = CANDIDATES.prepare_invoke();
    inv.key(&keys.rec)
        .key(&keys.ready)
        .arg(now_ms)
        .arg(want)
        .arg(want * 64);
    let flat: Vec<String> = invoke(node, inv).await?;
    flat.chunks(2)
        .map(|p| {
            let score: f64 = p
                .get(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| NodeError::Protocol(format!("bad candidate {p:?}")))?;
            Ok((p[0].clone(), -score as i64))
        })
        .collect()
}

/// The record and payload of one item on one node (`None` where absent).
pub async fn read(
    node: &Node,
    keys: &QueueKeys,
    id: &str,
) -> Result<(Option<String>, Option<String>), NodeError> {
    let mut inv = READ.prepare_invoke();
    inv.key(&keys.rec).key(&keys.pay).arg(id);
    let (rec, pay): (String, String) = invoke(node, inv).await?;
    Ok((
        (!rec.is_empty()).then_some(rec),
        (!pay.is_empty()).then_some(pay),
    ))
}

/// Every record of a queue on one node.
pub async fn all_records(
    node: &Node,
    keys: &QueueKeys,
) -> Result<std::collections::HashMap<String, String>, NodeError> {
    let key = keys.rec.clone();
    node.run(|mut c| async move { redis::cmd("HGETALL").arg(&key).query_async(&mut c).await })
        .await
}

pub async fn purge(
    node: &Node,
    keys: &QueueKeys,
    fence_key: &str,
    id: &str,
) -> Result<bool, NodeError> {
    let mut inv = PURGE.prepare_invoke();
    inv.key(&keys.rec)
        .key(&keys.pay)
        .key(&keys.ready)
        .key(&keys.gone)
        .key(fence_key)
        .arg(id);
    let n: i64 = invoke(node, inv).await?;
    Ok(n == 1)
}
