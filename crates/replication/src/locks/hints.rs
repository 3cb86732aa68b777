//! The per-process memory of the highest fence counter seen for each lock, from which an
//! acquisition proposes its fence (that plus one). Only a hint: the nodes refuse a proposal not
//! above their counter, so a stale or forgotten hint costs one more round trip, never safety.
//!
//! Bounded without a dependency: two generations of at most `capacity / 2` locks each. Writes
//! go to the current one; when it is full it becomes the previous one and the old previous one
//! is dropped, and a hit in the previous one moves back to the current one. So a lock not used
//! while `capacity / 2` others were is forgotten (roughly least recently used), and memory
//! stays at `capacity` keys however many names are locked.

use std::collections::HashMap;
use std::sync::Mutex;

pub struct FenceHints {
    half: usize,
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<String, u64>,
    previous: HashMap<String, u64>,
}

impl Generations {
    fn put(&mut self, half: usize, key: String, value: u64) {
        if self.current.len() >= half && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, value);
    }
}

impl FenceHints {
    pub fn new(capacity: usize) -> FenceHints {
        FenceHints {
            half: (capacity / 2).max(1),
            generations: Mutex::default(),
        }
    }

    /// The highest counter seen for `key`, 0 when unknown (or forgotten).
    pub fn get(&self, key: &str) -> u64 {
        let mut g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = g.current.get(key) {
            return *v;
        }
        match g.previous.remove(key) {
            Some(v) => {
                g.put(self.half, key.to_string(), v);
                v
            }
            None => 0,
        }
    }

    /// Records that `key`'s counter is at least `seen` somewhere (never lowers the hint).
    pub fn raise(&self, key: &str, seen: u64) {
        let mut g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = g.current.get_mut(key) {
            *v = (*v).max(seen);
            return;
        }
        let v = g.previous.remove(key).unwrap_or(0).max(seen);
        g.put(self.half, key.to_string(), v);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let g = self.generations.lock().unwrap();
        g.current.len() + g.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_only_grow() {
        let h = FenceHints::new(8);
        assert_eq!(h.get("a"), 0);
        h.raise("a", 5);
        h.raise("a", 3);
        assert_eq!(h.get("a"), 5);
    }

    #[test]
    fn memory_is_bounded_and_recently_used_names_survive() {
        let h = FenceHints::new(8);
        h.raise("hot", 7);
        for i in 0..1000 {
            h.raise(&format!("n{i}"), i);
            // Used as often as an acquisition of it would: kept.
            assert_eq!(h.get("hot"), 7);
            assert!(h.len() <= 8, "{} entries", h.len());
        }
        assert_eq!(h.get("n0"), 0, "a name unused for long is forgotten");
        assert_eq!(h.get("n999"), 999);
    }
}
