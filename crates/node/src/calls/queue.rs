//! The queue scripts and the per-node calls that run them.
//!
//! Per queue, every node holds: `{prefix}q:{name}:rec` (hash id → record, see the replication
//! crate's `queue/record.rs`), `{prefix}q:{name}:pay` (hash id → payload),
//! `{prefix}q:{name}:ready` (sorted set of items that may be claimed, score −priority, member
//! id: Redis orders equal scores by member, and ids are HLC versions, so that is FIFO within a
//! priority), `{prefix}q:{name}:gone` (sorted set: acknowledged id → when its tombstone was
//! written) and `{prefix}q:{name}:purged` (sorted set: id → the node's clock when the acked
//! item's record left the node, kept [`PURGE_LOG_WINDOW_MS`]; see `lua/queue/record.lua`).
//!
//! The sweep's calls (`scan_queues`, `scan_items`, `item_copies`, `payloads`, `restore_mark`,
//! `restore`) restore a queue's state onto a node that lost or missed it; they run as
//! background traffic.

use super::clock_lua;
use crate::pool::{Node, NodeError, Traffic};
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

/// How long a node remembers an acked item whose record it dropped (the purge log). A restore
/// of queue state onto the node must be written within this long of the node's clock reading
/// taken before the copies it restores were read (`restore_mark`), or it is refused: within
/// it, every purge since that reading is in the log, and the restore skips those items.
pub const PURGE_LOG_WINDOW_MS: u64 = 60_000;

/// The record join, the purge log and the tombstone upkeep shared by the writing scripts.
macro_rules! record_lua {
    () => {
        concat!(clock_lua!(), include_str!("../../lua/queue/record.lua"))
    };
}

/// KEYS: rec, pay, ready, gone, purged, the item's fence key. ARGV: id, record, payload (`''`
/// = none), now ms, tombstone ttl ms, purge log window ms.
/// Merges the record into the stored one (the same join as `Record::merge`), keeps the ready
/// index and payload in step with the result, and drops a few tombstones past their time.
/// Returns the stored record.
const MERGE_LUA: &str = concat!(
    "#!lua\n",
    record_lua!(),
    include_str!("../../lua/queue/merge.lua")
);

/// KEYS: rec, ready. ARGV: now ms, how many, most index entries to look at.
/// Returns `[id, score, ...]`: the first claimable items in priority order.
const CANDIDATES_LUA: &str = include_str!("../../lua/queue/candidates.lua");

/// KEYS: rec, pay. ARGV: id. Returns `{record or '', payload or ''}`.
const READ_LUA: &str = include_str!("../../lua/queue/read.lua");

/// KEYS: rec, pay, ready, gone, purged, the item's fence key. ARGV: id, purge log window ms.
/// Removes every trace of an acknowledged item (once every node holds its tombstone) and
/// notes it in the purge log.
const PURGE_LUA: &str = concat!(
    "#!lua\n",
    record_lua!(),
    include_str!("../../lua/queue/purge.lua")
);

/// KEYS: rec, pay, gone. ARGV: ids. Returns per id: record or `''`, payload length, when its
/// tombstone was written or `''`.
const STATES_LUA: &str = include_str!("../../lua/queue/states.lua");

/// KEYS: purged (only to reach the queue's node on a cluster). Returns the node's clock in ms.
const MARK_LUA: &str = concat!(
    "#!lua flags=no-writes\n",
    clock_lua!(),
    include_str!("../../lua/queue/mark.lua")
);

/// KEYS: rec, pay, ready, gone, purged. ARGV: mark (`restore_mark`), purge log window ms, then
/// per item: id, record, payload (`''` = none), ms its tombstone counts from.
/// Merges each item as `MERGE` does, except items in the purge log (answer 2); answers 1 for
/// an item whose copy changed, 0 for one the node held already; `{-1}` (nothing written) when
/// the mark is a window old.
const RESTORE_LUA: &str = concat!(
    "#!lua\n",
    record_lua!(),
    include_str!("../../lua/queue/restore.lua")
);

static MERGE: LazyLock<Script> = LazyLock::new(|| Script::new(MERGE_LUA));
static CANDIDATES: LazyLock<Script> = LazyLock::new(|| Script::new(CANDIDATES_LUA));
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_LUA));
static PURGE: LazyLock<Script> = LazyLock::new(|| Script::new(PURGE_LUA));
static STATES: LazyLock<Script> = LazyLock::new(|| Script::new(STATES_LUA));
static MARK: LazyLock<Script> = LazyLock::new(|| Script::new(MARK_LUA));
static RESTORE: LazyLock<Script> = LazyLock::new(|| Script::new(RESTORE_LUA));

/// The keys of one queue on every node.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub rec: String,
    pub pay: String,
    pub ready: String,
    pub gone: String,
    /// The purge log: acked items whose record left the node lately.
    pub purged: String,
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
            purged: format!("{base}purged"),
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
        .key(&keys.purged)
        .key(fence_key)
        .arg(a.id)
        .arg(a.record)
        .arg(a.payload)
        .arg(a.now_ms)
        .arg(a.tombstone_ttl_ms)
        .arg(PURGE_LOG_WINDOW_MS);
    invoke(node, inv).await
}

/// Claimable ids with their priority, best first, as this node sees them; the call gives up
/// after `limit`.
pub async fn candidates(
    node: &Node,
    limit: Duration,
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
    let flat: Vec<String> = node
        .run_within(limit, |mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
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
        .key(&keys.purged)
        .key(fence_key)
        .arg(id)
        .arg(PURGE_LOG_WINDOW_MS);
    let n: i64 = invoke(node, inv).await?;
    Ok(n == 1)
}

/// `SCAN` pattern matching the record hash of every queue under `prefix` (its glob
/// characters escaped): `{prefix}q*:rec`.
pub fn records_pattern(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 6);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("q*:rec");
    out
}

/// One `SCAN` step over the node's keys matching `pattern` ([`records_pattern`]); on a
/// cluster the cursor walks its masters. Returns the next cursor and the keys.
pub async fn scan_queues(
    node: &Node,
    pattern: &str,
    cursor: u64,
    count: usize,
) -> Result<(u64, Vec<Vec<u8>>), NodeError> {
    node.run_as(Traffic::Background, |mut c| async move {
        c.scan(cursor, Some(pattern), count).await
    })
    .await
}

/// One `HSCAN` step over a queue's records: the next cursor and the ids it returned (an id
/// may come twice).
pub async fn scan_items(
    node: &Node,
    keys: &QueueKeys,
    cursor: u64,
    count: usize,
) -> Result<(u64, Vec<String>), NodeError> {
    let mut cmd = redis::cmd("HSCAN");
    cmd.arg(&keys.rec).arg(cursor).arg("COUNT").arg(count);
    let (next, flat): (u64, Vec<String>) = node
        .run_as(Traffic::Background, |mut c| async move {
            cmd.query_async(&mut c).await
        })
        .await?;
    Ok((next, flat.into_iter().step_by(2).collect()))
}

/// One item as a node holds it, for the sweep to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemCopy {
    /// The record, if the node has one.
    pub record: Option<String>,
    /// Bytes of its payload (0: none).
    pub payload_len: u64,
    /// When its tombstone was written (ms), for an acked item.
    pub acked_at_ms: Option<u64>,
}

/// Items `ids` of a queue as the node holds them, in the order asked.
pub async fn item_copies(
    node: &Node,
    keys: &QueueKeys,
    ids: &[String],
) -> Result<Vec<ItemCopy>, NodeError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut inv = STATES.prepare_invoke();
    inv.key(&keys.rec).key(&keys.pay).key(&keys.gone);
    for id in ids {
        inv.arg(id);
    }
    let flat: Vec<String> = node
        .run_as(Traffic::Background, |mut c| async move {
            inv.invoke_async(&mut c).await
        })
        .await?;
    if flat.len() != ids.len() * 3 {
        return Err(NodeError::Protocol(format!(
            "queue states: {} values for {} ids",
            flat.len(),
            ids.len()
        )));
    }
    flat.chunks(3)
        .map(|c| {
            let bad = || NodeError::Protocol(format!("queue states: {c:?}"));
            let payload_len: u64 = c[1].parse().map_err(|_| bad())?;
            let acked_at_ms = if c[2].is_empty() {
                None
            } else {
                let ms: f64 = c[2].parse().map_err(|_| bad())?;
                Some(ms as u64)
            };
            Ok(ItemCopy {
                record: (!c[0].is_empty()).then(|| c[0].clone()),
                payload_len,
                acked_at_ms,
            })
        })
        .collect()
}

/// The payloads of items `ids` (`None` where absent), in the order asked.
pub async fn payloads(
    node: &Node,
    keys: &QueueKeys,
    ids: &[&str],
) -> Result<Vec<Option<String>>, NodeError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(&keys.pay).arg(ids);
    node.run_as(Traffic::Background, |mut c| async move {
        cmd.query_async(&mut c).await
    })
    .await
}

/// The node's clock (ms) where the queue lives. Read before the copies a restore will write
/// are read anywhere, it is the restore's mark (see [`PURGE_LOG_WINDOW_MS`]).
pub async fn restore_mark(node: &Node, keys: &QueueKeys) -> Result<u64, NodeError> {
    let mut inv = MARK.prepare_invoke();
    inv.key(&keys.purged);
    node.run_as(Traffic::Background, |mut c| async move {
        inv.invoke_async(&mut c).await
    })
    .await
}

/// One item a restore merges into a node.
#[derive(Debug, Clone)]
pub struct RestoreItem<'a> {
    pub id: &'a str,
    /// The record to merge (the join of the nodes' copies).
    pub record: &'a str,
    /// `''`: none (the node has it, or the item is acked).
    pub payload: &'a str,
    /// When an acked item's tombstone counts from, if the node has none yet.
    pub acked_at_ms: u64,
}

/// What a restore did with one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The node held it as merged already.
    Unchanged,
    /// The node's copy changed (record or payload).
    Merged,
    /// The node purged it within the purge log's window: the copy is stale, left out.
    Purged,
}

/// Merges `items` into the queue on the node, each as a queue write merges it, but for items
/// the node purged since `mark` (see [`PURGE_LOG_WINDOW_MS`]). `None`: the mark is too old,
/// nothing was written.
pub async fn restore(
    node: &Node,
    keys: &QueueKeys,
    mark: u64,
    items: &[RestoreItem<'_>],
) -> Result<Option<Vec<Restored>>, NodeError> {
    if items.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut inv = RESTORE.prepare_invoke();
    inv.key(&keys.rec)
        .key(&keys.pay)
        .key(&keys.ready)
        .key(&keys.gone)
        .key(&keys.purged)
        .arg(mark)
        .arg(PURGE_LOG_WINDOW_MS);
    for it in items {
        inv.arg(it.id)
            .arg(it.record)
            .arg(it.payload)
            .arg(it.acked_at_ms);
    }
    let codes: Vec<i64> = node
        .run_as(Traffic::Background, |mut c| async move {
            inv.invoke_async(&mut c).await
        })
        .await?;
    if codes == [-1] {
        return Ok(None);
    }
    if codes.len() != items.len() {
        return Err(NodeError::Protocol(format!(
            "queue restore: {} answers for {} items",
            codes.len(),
            items.len()
        )));
    }
    codes
        .into_iter()
        .map(|c| match c {
            0 => Ok(Restored::Unchanged),
            1 => Ok(Restored::Merged),
            2 => Ok(Restored::Purged),
            other => Err(NodeError::Protocol(format!(
                "queue restore answered {other}"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_records_pattern_escapes_the_prefix() {
        assert_eq!(records_pattern("qd:"), "qd:q*:rec");
        assert_eq!(records_pattern("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:q*:rec");
    }

    #[test]
    fn queue_keys_share_the_tag() {
        let k = QueueKeys::new("qd:", "{7}", "mail");
        assert_eq!(k.rec, "qd:q{7}:mail:rec");
        assert_eq!(k.purged, "qd:q{7}:mail:purged");
    }
}
