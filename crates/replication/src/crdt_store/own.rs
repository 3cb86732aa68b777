//! This process's own counter totals per key. Increments of one key by this process are
//! serialised here, so its per-actor totals only grow, and a total written by a write that
//! failed (and may have landed on a minority that the next read does not reach) is remembered,
//! so the next increment builds on it instead of writing a lower total that the merge would
//! swallow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Slots kept before the ones that are safe to forget are dropped.
const KEPT_SLOTS: usize = 100_000;

/// The totals this process last wrote for a key, and whether every node acknowledged them
/// (then any later read sees them, and the slot may be forgotten).
#[derive(Debug, Default)]
pub struct Slot {
    pub totals: (u64, u64),
    pub everywhere: bool,
}

#[derive(Default)]
pub struct OwnTotals {
    slots: Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Mutex<Slot>>>>,
}

/// One record per writer id in the process: the actor is the writer id, so every `CrdtStore`
/// built on the same store (the HTTP surface, the Redis-protocol front end) must serialise its
/// increments with the others, or two of them could write the same total for two increments.
static BY_WRITER: std::sync::LazyLock<Mutex<HashMap<u64, Arc<OwnTotals>>>> =
    std::sync::LazyLock::new(Default::default);

impl OwnTotals {
    pub fn for_writer(writer: u64) -> Arc<OwnTotals> {
        let mut all = BY_WRITER.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(writer).or_default().clone()
    }

    /// The slot of `key`; lock it for the whole increment.
    pub fn slot(&self, key: &[u8]) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= KEPT_SLOTS {
            // Only slots nobody is using and whose totals every node holds.
            slots.retain(|_, s| {
                Arc::strong_count(s) > 1 || s.try_lock().map_or(true, |g| !g.everywhere)
            });
        }
        slots.entry(key.to_vec()).or_default().clone()
    }
}
