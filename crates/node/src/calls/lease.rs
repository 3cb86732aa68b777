//! The sweep's shard leases on one node: the lease script and the sorted set of live
//! instances, `{prefix}lease:members` (member = instance, score = its last heartbeat in ms).

use crate::pool::{Node, NodeError};
use redis::Script;
use std::sync::LazyLock;

/// Per key in KEYS: acquire (or keep) the lease for ARGV[1] with lifetime ARGV[2] ms, renew
/// it if already held by ARGV[1], or, in mode `release`, drop it if held by ARGV[1]. Returns 1
/// per key the caller holds (or released), 0 otherwise.
const LEASE_LUA: &str = include_str!("../../lua/sync/lease.lua");

static LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(LEASE_LUA));

/// What a lease call does with each lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseMode {
    /// Take a free lease, or renew one already held.
    Acquire,
    /// Renew a held lease only.
    Renew,
    /// Drop a held lease.
    Release,
}

impl LeaseMode {
    fn arg(self) -> &'static str {
        match self {
            LeaseMode::Acquire => "acquire",
            LeaseMode::Renew => "renew",
            LeaseMode::Release => "release",
        }
    }
}

/// Runs the lease script for `lease_keys` on one node on behalf of `instance`; per key, whether
/// the instance holds it afterwards (for `Release`: whether it held it and gave it back).
pub async fn leases(
    node: &Node,
    lease_keys: &[String],
    instance: &str,
    lease_ms: u64,
    mode: LeaseMode,
) -> Result<Vec<bool>, NodeError> {
    node.per_slot(
        lease_keys,
        |k| k.as_str(),
        |group| async move {
            let mut inv = LEASE.prepare_invoke();
            for k in &group {
                inv.key(k);
            }
            inv.arg(instance).arg(lease_ms).arg(mode.arg());
            let held: Vec<i64> = node
                .run(|mut c| async move { inv.invoke_async(&mut c).await })
                .await?;
            Ok(held.into_iter().map(|h| h == 1).collect())
        },
    )
    .await
}

/// Records `instance` as alive at `now_ms` in the members set on one node, forgets members
/// silent for ten lease periods, and counts those seen within the last lease period.
pub async fn heartbeat(
    node: &Node,
    members_key: &str,
    instance: &str,
    now_ms: u64,
    lease_ms: u64,
) -> Result<usize, NodeError> {
    let mut pipe = redis::pipe();
    pipe.cmd("ZADD")
        .arg(members_key)
        .arg(now_ms)
        .arg(instance)
        .ignore();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(members_key)
        .arg("-inf")
        .arg(now_ms.saturating_sub(10 * lease_ms))
        .ignore();
    pipe.cmd("ZCOUNT")
        .arg(members_key)
        .arg(now_ms.saturating_sub(lease_ms))
        .arg("+inf");
    let (live,): (usize,) = node
        .run(|mut c| async move { pipe.query_async(&mut c).await })
        .await?;
    Ok(live)
}

/// Removes `instance` from the members set on one node (graceful shutdown).
pub async fn leave(node: &Node, members_key: &str, instance: &str) -> Result<(), NodeError> {
    let mut cmd = redis::cmd("ZREM");
    cmd.arg(members_key).arg(instance);
    node.run(|mut c| async move { cmd.query_async::<()>(&mut c).await })
        .await
}
