//! WATCH for the RESP front end: a key's version read at a quorum, and a transaction run on the
//! condition that the versions it watched have not changed.
//!
//! Redis aborts `EXEC` when a watched key was touched; quorumd has no server that sees every
//! write, so it compares versions instead. The check is as strong as compare-and-set allows:
//!
//! 1. `exec_watched` takes this process's turns of the watched keys (the striped lock of the
//!    read-modify-writes), so no write made through this instance can come between the check
//!    and the transaction's own writes;
//! 2. it reads every watched key's version again at a quorum and answers `Changed` if one
//!    differs, before anything runs;
//! 3. while the transaction runs, every versioned write of a watched key carries the version
//!    seen in 2 as its per-node condition (`NotNewerThan`, or `Absent`), so a write made through
//!    another instance in between makes the nodes refuse it; the store then reports
//!    `WatchedKeyChanged` and marks the transaction broken, so the caller runs nothing more.
//!
//! Step 3 is compare-and-set on a quorum, not consensus: against another instance's write it
//! can fail after the nodes of a minority took it (ARCHITECTURE.md, "CAS is not consensus").

use super::rmw::{STRIPES, lock_stripes, stripe_of};
use super::{StoreError, VersionedStore};
use quorumd_core::hlc::{Version, wall_clock_ms};
use quorumd_core::quorum::Consistency;
use quorumd_node::calls::store::{NodeCondition, ReadWanted};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A watched key as a quorum read saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchedState {
    /// The newest metadata version among the answers (a tombstone's too); `None` when no
    /// answer had metadata for the key.
    pub version: Option<Version>,
    /// Whether that version is a live value (not a tombstone, not expired): a key that
    /// expires while watched counts as changed, as in Redis 7.
    pub live: bool,
}

/// What `exec_watched` did.
#[derive(Debug)]
pub enum WatchOutcome<T> {
    /// A watched key's version changed since WATCH: nothing ran.
    Changed,
    /// The versions held and the transaction ran; its output.
    Ran(T),
}

/// The state of a watched transaction while it runs, visible to the store's write path.
struct Scope {
    /// Stripes of the per-key lock this transaction holds: its commands take no turn there.
    held: HashSet<u64>,
    /// Per watched key, the version its next write must still find on the nodes.
    expected: HashMap<Vec<u8>, Option<Version>>,
    /// A write of a watched key found it changed: the transaction must stop.
    broken: bool,
}

tokio::task_local! {
    static SCOPE: RefCell<Scope>;
}

/// Whether the current task runs a watched transaction and holds `stripe` for it.
pub(super) fn holds_stripe(stripe: u64) -> bool {
    SCOPE
        .try_with(|s| s.borrow().held.contains(&stripe))
        .unwrap_or(false)
}

/// Whether the watched transaction running in this task found a watched key changed.
pub fn watch_broken() -> bool {
    SCOPE.try_with(|s| s.borrow().broken).unwrap_or(false)
}

/// The version a write of `key` must still find, if `key` is watched by the running
/// transaction.
pub(super) fn expected(key: &[u8]) -> Option<Option<Version>> {
    SCOPE
        .try_with(|s| s.borrow().expected.get(key).copied())
        .ok()
        .flatten()
}

/// Narrows a write's per-node condition to the watched version: the write must find what
/// the transaction's check found, whatever the command itself asked for.
pub(super) fn narrow(
    key: &[u8],
    cond: NodeCondition,
    expected: Option<Version>,
) -> Result<NodeCondition, StoreError> {
    let narrowed = match (cond, expected) {
        (NodeCondition::None, Some(v)) => Some(NodeCondition::NotNewerThan(v)),
        (NodeCondition::None, None) | (NodeCondition::Absent, None) => Some(NodeCondition::Absent),
        (NodeCondition::NotNewerThan(seen), Some(v)) if seen == v => {
            Some(NodeCondition::NotNewerThan(v))
        }
        // A read-modify-write's accept: its own read must have found the watched version.
        (NodeCondition::Ballot(seen), expected) if seen == expected => {
            Some(NodeCondition::Ballot(seen))
        }
        // The command's own read found another version than the watch check did: another
        // writer got in between.
        _ => None,
    };
    narrowed.ok_or_else(|| broken(key))
}

/// Marks the running transaction broken and returns the error for the write of `key`.
pub(super) fn broken(key: &[u8]) -> StoreError {
    let _ = SCOPE.try_with(|s| s.borrow_mut().broken = true);
    StoreError::WatchedKeyChanged {
        key: String::from_utf8_lossy(key).into_owned(),
    }
}

/// The transaction's own write of a watched key succeeded at `version`: its next write of the
/// key must find that one.
pub(super) fn wrote(key: &[u8], version: Version) {
    let _ = SCOPE.try_with(|s| {
        if let Some(e) = s.borrow_mut().expected.get_mut(key) {
            *e = Some(version);
        }
    });
}

/// Reads at a quorum at least: at `one` a single node could hide a change from the check.
fn watch_level(level: Consistency) -> Consistency {
    match level {
        Consistency::One => Consistency::Quorum,
        other => other,
    }
}

impl VersionedStore {
    /// Reads `key`'s version (metadata only) at the level, at least `quorum`: what WATCH
    /// records. Any kind of entry counts, a CRDT's included (its version is its state's hash).
    #[tracing::instrument(level = "debug", name = "store.read_watched", skip_all, fields(level = %level))]
    pub async fn read_watched(
        &self,
        key: &[u8],
        level: Consistency,
    ) -> Result<WatchedState, StoreError> {
        let loc = Arc::new(self.locate(key)?);
        let required = self.settings.quorum.read_quorum(watch_level(level));
        self.within_deadline("watch read", async {
            let g = self
                .gather_reads("watch read", required, &loc, ReadWanted::MetaOnly)
                .await?;
            let newest = g
                .successes()
                .filter_map(|(_, r)| r.meta.as_ref())
                .max_by_key(|m| m.version)
                .cloned();
            if let Some(m) = &newest {
                // The transaction's writes must be above what it watched.
                self.clock.observe(m.version);
            }
            Ok(WatchedState {
                version: newest.as_ref().map(|m| m.version),
                live: newest.is_some_and(|m| m.is_live(wall_clock_ms())),
            })
        })
        .await
    }

    /// Runs `body` (a transaction's commands) if no watched key changed: takes this process's
    /// turns of the watched keys and of `writes` (the keys the transaction writes, so that its
    /// commands never wait on a turn another watched transaction holds while it waits on
    /// theirs), reads the watched versions again, and runs `body` with its writes of watched
    /// keys conditioned on them. See the module comment.
    #[tracing::instrument(level = "debug", name = "store.exec_watched", skip_all, fields(level = %level, watched = watched.len()))]
    pub async fn exec_watched<T>(
        &self,
        watched: &[(Vec<u8>, WatchedState)],
        writes: &[&[u8]],
        level: Consistency,
        body: impl Future<Output = T>,
    ) -> Result<WatchOutcome<T>, StoreError> {
        let stripes: Vec<u64> = watched
            .iter()
            .map(|(k, _)| stripe_of(k))
            .chain(writes.iter().map(|k| stripe_of(k)))
            .collect();
        let _turns = lock_stripes(stripes.clone()).await;
        let now = futures::future::try_join_all(
            watched.iter().map(|(key, _)| self.read_watched(key, level)),
        )
        .await?;
        if watched.iter().zip(&now).any(|((_, then), now)| then != now) {
            return Ok(WatchOutcome::Changed);
        }
        let scope = Scope {
            held: stripes.into_iter().map(|s| s % STRIPES).collect(),
            expected: watched
                .iter()
                .map(|(k, state)| (k.clone(), state.version))
                .collect(),
            broken: false,
        };
        Ok(WatchOutcome::Ran(
            SCOPE.scope(RefCell::new(scope), body).await,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ms: u64) -> Version {
        Version::first_in_ms(ms, 1)
    }

    #[test]
    fn a_write_is_narrowed_to_the_watched_version_or_refused() {
        let k = b"k";
        assert_eq!(
            narrow(k, NodeCondition::None, Some(v(1))).unwrap(),
            NodeCondition::NotNewerThan(v(1))
        );
        assert_eq!(
            narrow(k, NodeCondition::None, None).unwrap(),
            NodeCondition::Absent
        );
        assert_eq!(
            narrow(k, NodeCondition::NotNewerThan(v(1)), Some(v(1))).unwrap(),
            NodeCondition::NotNewerThan(v(1))
        );
        assert_eq!(
            narrow(k, NodeCondition::Absent, None).unwrap(),
            NodeCondition::Absent
        );
        for (cond, expected) in [
            (NodeCondition::NotNewerThan(v(2)), Some(v(1))),
            (NodeCondition::Absent, Some(v(1))),
            (NodeCondition::NotNewerThan(v(1)), None),
        ] {
            assert!(matches!(
                narrow(k, cond, expected),
                Err(StoreError::WatchedKeyChanged { .. })
            ));
        }
    }
}
