//! Lock gates: a node's losses, kept on the node itself for the lock module.
//!
//! After a node lost data, locks keep it out of their majorities until the longest lock TTL has
//! passed and its fence counters were caught up (`quorumd_replication::locks::recovery`). That
//! wait lived only in the memory of the instances that saw the loss, while the sweep calls the
//! node back in sync within moments: an instance started after the heal took the node for whole
//! and could grant a lock a surviving holder still held, with a lower fence. So the exchange
//! that calls a node back in sync writes a gate beside each sentinel first (when the loss began,
//! by the node's clock, and what it took), every probe reads them, and a gate stays until a
//! fence catch-up that began after the loss's lock delay removes it.

use super::*;
use crate::calls::locks::{GATE_READ, GATE_SET};

/// The gate beside a sentinel key (same hash tag: the same master of a cluster).
pub fn lock_gate_key(sentinel_key: &str) -> String {
    format!("{sentinel_key}:lockgate")
}

/// A loss a probe read from a gate: since when (this process's wall clock, ms) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockGate {
    pub since_ms: u64,
    pub scope: RecoveringScope,
}

/// The gates the probes have read, and those the lock module has not taken yet.
#[derive(Debug, Default)]
pub(super) struct GatesSeen {
    /// Raw values of the gates the last probe found: one is taken once, not at every probe.
    known: HashSet<String>,
    pending: Vec<LockGate>,
}

/// `lost_at|scope` as a gate holds it, read at `node_now` (the node's clock) and `local_now`
/// (ours). A gate that does not parse is taken as a loss of everything, now: the longest wait.
pub fn parse_gate(raw: &str, node_now: u64, local_now: u64) -> LockGate {
    let parsed = raw.split_once('|').and_then(|(at, scope)| {
        let lost_at: u64 = at.parse().ok()?;
        Some((lost_at, RecoveringScope::parse(scope)?))
    });
    match parsed {
        Some((lost_at, scope)) => LockGate {
            since_ms: local_now.saturating_sub(node_now.saturating_sub(lost_at)),
            scope,
        },
        None => LockGate {
            since_ms: local_now,
            scope: RecoveringScope::Whole,
        },
    }
}

impl Node {
    /// The gates beside this node's sentinels (one per master of a cluster).
    pub fn lock_gate_keys(&self) -> Vec<String> {
        self.sentinel_keys()
            .into_iter()
            .map(|(_, key)| lock_gate_key(&key))
            .collect()
    }

    /// Writes a gate for the node's latest loss beside every sentinel, before the sentinels
    /// are written back. Nothing to write when no loss was ever marked.
    pub async fn write_lock_gates(&self) -> Result<(), NodeError> {
        let Some(since) = self.last_recovering_since_ms() else {
            return Ok(());
        };
        let age = quorumd_core::hlc::wall_clock_ms().saturating_sub(since);
        let scope = self.recovering_scope().to_text();
        for key in self.lock_gate_keys() {
            let mut inv = GATE_SET.prepare_invoke();
            inv.key(&key).arg(age).arg(&scope);
            self.run_as(Traffic::Background, |mut c| async move {
                inv.invoke_async::<()>(&mut c).await
            })
            .await?;
        }
        Ok(())
    }

    /// Removes the gates of losses that began at least `older_than` ago (by each gate's
    /// server's clock): what a fence catch-up that started then covered.
    pub async fn clear_lock_gates(&self, older_than: Duration) -> Result<(), NodeError> {
        let ms = older_than.as_millis() as u64;
        for key in self.lock_gate_keys() {
            let mut inv = crate::calls::locks::GATE_CLEAR.prepare_invoke();
            inv.key(&key).arg(ms);
            self.run_as(Traffic::Background, |mut c| async move {
                inv.invoke_async::<u64>(&mut c).await
            })
            .await?;
        }
        Ok(())
    }

    /// The gates probes read since the last call, for the lock module to count.
    pub fn take_lock_gates(&self) -> Vec<LockGate> {
        std::mem::take(&mut self.gates_seen().pending)
    }

    /// Takes in the gates a probe read: `(raw value, node clock)` per gate found.
    pub(super) fn saw_lock_gates(&self, found: &[(String, u64)]) {
        let local_now = quorumd_core::hlc::wall_clock_ms();
        let mut seen = self.gates_seen();
        let mut known = HashSet::with_capacity(found.len());
        for (raw, node_now) in found {
            if !seen.known.contains(raw) {
                seen.pending.push(parse_gate(raw, *node_now, local_now));
            }
            known.insert(raw.clone());
        }
        seen.known = known;
    }

    fn gates_seen(&self) -> std::sync::MutexGuard<'_, GatesSeen> {
        self.gates_seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads one gate on `c` with the server's clock: `None` when there is none.
pub(super) async fn read_gate(
    c: &mut impl redis::aio::ConnectionLike,
    key: &str,
) -> Result<Option<(String, u64)>, RedisError> {
    let mut inv = GATE_READ.prepare_invoke();
    inv.key(key);
    let (raw, now): (Option<String>, u64) = inv.invoke_async(c).await?;
    Ok(raw.map(|r| (r, now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_gives_the_loss_its_age_on_our_clock() {
        // Lost 5 s before the node's now; our clock is 1 s behind the node's.
        let g = parse_gate("95000|all", 100_000, 99_000);
        assert_eq!(g.since_ms, 94_000);
        assert_eq!(g.scope, RecoveringScope::Whole);
        let g = parse_gate("95000|0-5460,10923-16383", 100_000, 100_000);
        assert_eq!(
            g.scope,
            RecoveringScope::Slots(vec![(0, 5460), (10923, 16383)])
        );
        assert_eq!(g.since_ms, 95_000);
    }

    #[test]
    fn a_gate_that_does_not_parse_waits_longest() {
        for raw in ["", "x|all", "5|", "5|1-x", "no bar"] {
            let g = parse_gate(raw, 100, 7);
            assert_eq!(
                (g.since_ms, g.scope),
                (7, RecoveringScope::Whole),
                "{raw:?}"
            );
        }
    }
}
