//! The lock scripts, one atomic call per node each, and the per-node calls that run them.
//!
//! A lock key holds `{token}|{owner}|{fence}` with a `PX` TTL; the fence key holds the highest
//! fence granted on that node. Values written by versions before the one-round-trip
//! acquisition may have an empty fence (`{token}|{owner}|`, between their two phases): they are
//! parsed the same way, with no fence, and expire within `locks.max_ttl_ms`. Every compare-token
//! check matches the `{token}|` prefix, so an owner containing `|` cannot confuse it.

use crate::pool::{Node, NodeError};
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

/// KEYS: lock, fence. ARGV: token, ttl ms, owner, proposed fence.
/// In one atomic step: refuses if the lock is held (0) or if the proposal is not above the
/// node's fence counter (2); otherwise takes the lock (`SET PX`, the value records the fence)
/// and sets the counter to the proposal (1). Returns `{code, counter after}`, so that every
/// fence this node granted before is below any fence it grants later.
const ACQUIRE_LUA: &str = include_str!("../../lua/locks/acquire.lua");

/// KEYS: lock. ARGV: token, ttl ms, full value to re-lock with (`''` = do not re-lock).
/// Extends the lock if held by `token` (1); if the key is absent and a value is given, takes
/// it again with that value (2); otherwise 0. Also returns the stored value when held.
const EXTEND_LUA: &str = include_str!("../../lua/locks/extend.lua");

/// KEYS: lock. ARGV: token. Deletes the lock if held by `token`; returns 1 if it was.
const RELEASE_LUA: &str = include_str!("../../lua/locks/release.lua");

/// KEYS: lock, fence. Returns `{value or '', pttl, fence counter}`.
const INSPECT_LUA: &str = include_str!("../../lua/locks/inspect.lua");

/// KEYS: fence keys. ARGV: one value per key. Raises each counter to its value (never lowers):
/// brings a restarted node's counters back up. Returns the number raised.
const RAISE_LUA: &str = include_str!("../../lua/locks/raise.lua");

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_LUA));
static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_LUA));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));
static INSPECT: LazyLock<Script> = LazyLock::new(|| Script::new(INSPECT_LUA));
static RAISE: LazyLock<Script> = LazyLock::new(|| Script::new(RAISE_LUA));

/// A node's lock gates (see `pool/lock_gates.rs`): written before the sentinel comes back,
/// read by every probe, cleared by the fence catch-up that covers the loss.
pub(crate) static GATE_SET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/locks/gate_set.lua")));
pub(crate) static GATE_READ: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/locks/gate_read.lua")));
pub(crate) static GATE_CLEAR: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/locks/gate_clear.lua")));

/// Where one lock lives on every node.
#[derive(Debug, Clone)]
pub struct LockKeys {
    pub lock: String,
    pub fence: String,
}

/// Runs `op` on `node`, bounded by the lock's own (short) node timeout.
async fn bounded<T>(
    node: &Node,
    limit: Duration,
    invocation: redis::ScriptInvocation<'static>,
) -> Result<T, NodeError>
where
    T: redis::FromRedisValue + Send + 'static,
{
    node.run_within(limit, |mut c| async move {
        invocation.invoke_async::<T>(&mut c).await
    })
    .await
}

fn parse_fence(raw: &str) -> Result<u64, NodeError> {
    raw.parse()
        .map_err(|_| NodeError::Protocol(format!("fence counter {raw:?} is not a number")))
}

/// One node's answer to an acquisition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Took the lock and stored the proposed fence as its counter.
    Granted,
    /// Refused: the lock is held (by anyone). Carries the node's fence counter.
    Held(u64),
    /// Refused: the proposed fence was not above the node's counter, which it carries.
    Stale(u64),
}

/// Tries to take the lock on one node with fence `proposal` (see `ACQUIRE_LUA`).
pub async fn acquire(
    node: &Node,
    limit: Duration,
    keys: &LockKeys,
    token: &str,
    ttl_ms: u64,
    owner: &str,
    proposal: u64,
) -> Result<Taken, NodeError> {
    let mut inv = ACQUIRE.prepare_invoke();
    inv.key(&keys.lock)
        .key(&keys.fence)
        .arg(token)
        .arg(ttl_ms)
        .arg(owner)
        .arg(proposal);
    let (code, counter): (i64, String) = bounded(node, limit, inv).await?;
    let counter = parse_fence(&counter)?;
    match code {
        1 => Ok(Taken::Granted),
        0 => Ok(Taken::Held(counter)),
        2 => Ok(Taken::Stale(counter)),
        other => Err(NodeError::Protocol(format!(
            "lock acquire answered code {other}"
        ))),
    }
}

/// What extending did on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extended {
    /// Held by the token and extended; the stored value.
    Renewed(String),
    /// The key was absent and was taken again with the given value.
    Relocked,
    /// Held by someone else, or absent and not re-locked.
    NotHeld,
}

pub async fn extend(
    node: &Node,
    limit: Duration,
    keys: &LockKeys,
    token: &str,
    ttl_ms: u64,
    relock_value: &str,
) -> Result<Extended, NodeError> {
    let mut inv = EXTEND.prepare_invoke();
    inv.key(&keys.lock).arg(token).arg(ttl_ms).arg(relock_value);
    let (code, value): (i64, String) = bounded(node, limit, inv).await?;
    Ok(match code {
        1 => Extended::Renewed(value),
        2 => Extended::Relocked,
        _ => Extended::NotHeld,
    })
}

pub async fn release(
    node: &Node,
    limit: Duration,
    keys: &LockKeys,
    token: &str,
) -> Result<bool, NodeError> {
    let mut inv = RELEASE.prepare_invoke();
    inv.key(&keys.lock).arg(token);
    let released: i64 = bounded(node, limit, inv).await?;
    Ok(released == 1)
}

/// One node's view of a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The stored value, `None` when free.
    pub value: Option<String>,
    /// Remaining ms of the key's TTL (meaningless when free).
    pub remaining_ms: i64,
    pub fence_counter: u64,
}

pub async fn inspect(node: &Node, limit: Duration, keys: &LockKeys) -> Result<NodeView, NodeError> {
    let mut inv = INSPECT.prepare_invoke();
    inv.key(&keys.lock).key(&keys.fence);
    let (value, remaining_ms, fence): (String, i64, String) = bounded(node, limit, inv).await?;
    Ok(NodeView {
        value: (!value.is_empty()).then_some(value),
        remaining_ms,
        fence_counter: parse_fence(&fence)?,
    })
}

/// Raises fence counters on one node (catch-up of a restarted node).
pub async fn raise_fences(
    node: &Node,
    limit: Duration,
    counters: &[(String, u64)],
) -> Result<u64, NodeError> {
    // One call per slot on a cluster, which refuses a script whose keys span slots.
    let raised: Vec<u64> = node
        .per_slot_groups(
            counters,
            |(key, _)| key.as_str(),
            |group| async move {
                let mut inv = RAISE.prepare_invoke();
                for (key, value) in &group {
                    inv.key(key).arg(value);
                }
                bounded(node, limit, inv).await
            },
        )
        .await?;
    Ok(raised.into_iter().sum())
}

/// One page of fence keys on a node, with their values: `(next cursor, [(key, value)])`.
pub async fn scan_fences(
    node: &Node,
    pattern: &str,
    cursor: u64,
) -> Result<(u64, Vec<(String, u64)>), NodeError> {
    let (next, keys) = node
        .run(|mut c| async move { c.scan(cursor, Some(pattern), 1000).await })
        .await?;
    let keys: Vec<String> = keys
        .into_iter()
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect();
    if keys.is_empty() {
        return Ok((next, Vec::new()));
    }
    let mget_keys = keys.clone();
    let values: Vec<Option<String>> = node
        .run(|mut c| async move { redis::cmd("MGET").arg(&mget_keys).query_async(&mut c).await })
        .await?;
    let mut out = Vec::with_capacity(keys.len());
    for (k, v) in keys.into_iter().zip(values) {
        if let Some(v) = v {
            out.push((k, parse_fence(&v)?));
        }
    }
    Ok((next, out))
}

/// Splits a stored lock value `{token}|{owner}|{fence}` into its parts; the owner may itself
/// contain `|`, the token and fence never do.
pub fn parse_value(value: &str) -> Option<(&str, &str, Option<u64>)> {
    let (token, rest) = value.split_once('|')?;
    let (owner, fence) = rest.rsplit_once('|')?;
    Some((token, owner, fence.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_even_with_bars_in_the_owner() {
        assert_eq!(parse_value("ab|me|7"), Some(("ab", "me", Some(7))));
        assert_eq!(parse_value("ab|a|b|c|"), Some(("ab", "a|b|c", None)));
        assert_eq!(parse_value("ab||12"), Some(("ab", "", Some(12))));
        assert_eq!(parse_value("garbage"), None);
    }
}
