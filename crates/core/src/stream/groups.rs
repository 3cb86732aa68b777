//! Consumer groups, kept in the stream value as redis-server 7.0 keeps them: per group the
//! last-delivered ID, the entries-read counter, the group's pending entries list (PEL: ID,
//! owner, delivery time, delivery count) and the consumers (name, seen time). A consumer's own
//! PEL is the group PEL's entries it owns, so it is not stored twice. The operations are
//! ports of `t_stream.c` (7.0): they take the time from the caller (quorumd's clock, ms) so
//! that they stay pure, and each changes the value that is then written whole.

use super::{Entry, Stream, StreamId, string2ll};
use crate::dump;
use std::collections::BTreeMap;

/// Redis's `SCG_INVALID_ENTRIES_READ`: the group's read counter is unknown.
pub const NO_ENTRIES_READ: i64 = -1;

/// One consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub last_id: StreamId,
    /// The logical read counter, [`NO_ENTRIES_READ`] when unknown.
    pub entries_read: i64,
    /// The group's PEL, by ID.
    pub pending: BTreeMap<StreamId, Pending>,
    /// The consumers by name, in byte order.
    pub consumers: BTreeMap<Vec<u8>, Consumer>,
}

impl Group {
    pub fn new(last_id: StreamId, entries_read: i64) -> Group {
        Group {
            last_id,
            entries_read,
            pending: BTreeMap::new(),
            consumers: BTreeMap::new(),
        }
    }

    /// The IDs a consumer owns, ascending (its own PEL).
    pub fn pending_of<'a>(&'a self, consumer: &'a [u8]) -> impl Iterator<Item = StreamId> + 'a {
        self.pending
            .iter()
            .filter(move |(_, p)| p.consumer == consumer)
            .map(|(id, _)| *id)
    }

    /// Looks a consumer up as `streamLookupConsumer` does (refreshing its seen time), creating
    /// it when absent.
    fn touch(&mut self, consumer: &[u8], now_ms: u64) {
        self.consumers
            .entry(consumer.to_vec())
            .or_default()
            .seen_time = now_ms;
    }
}

/// An entry delivered and not acknowledged yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub consumer: Vec<u8>,
    /// When it was last delivered, ms since the epoch.
    pub delivery_time: u64,
    pub delivery_count: u64,
}

/// A consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Consumer {
    /// When it was last seen by a command that refreshes it, ms since the epoch.
    pub seen_time: u64,
}

/// XCLAIM's options (`None`: not given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Claim {
    pub min_idle: u64,
    /// The delivery time IDLE or TIME gave (before the check against now).
    pub delivery_time: Option<i64>,
    pub retry_count: Option<u64>,
    pub force: bool,
    pub justid: bool,
    pub last_id: Option<StreamId>,
}

/// What XAUTOCLAIM did: the cursor, the claimed IDs (with their entries unless JUSTID) and the
/// IDs it removed from the PEL because their entries are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoClaim {
    pub next: StreamId,
    pub claimed: Vec<(StreamId, Option<Entry>)>,
    pub deleted: Vec<StreamId>,
}

impl Stream {
    /// The entry with this ID, if it is live.
    pub fn entry(&self, id: StreamId) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.id.cmp(&id))
            .ok()
            .map(|at| &self.entries[at])
    }

    /// `streamRangeHasTombstones(s, start, NULL)`.
    fn has_tombstones_from(&self, start: StreamId) -> bool {
        if self.entries.is_empty() || self.max_deleted == StreamId::ZERO {
            return false;
        }
        if self.first_id() > self.max_deleted {
            return false;
        }
        start <= self.max_deleted
    }

    /// `streamEstimateDistanceFromFirstEverEntry`: the read counter of `id`, if knowable.
    pub fn estimate_entries_read(&self, id: StreamId) -> i64 {
        let added = self.entries_added as i64;
        if self.entries_added == 0 {
            return 0;
        }
        let len = self.entries.len() as i64;
        if len == 0 && id <= self.last_id {
            return added;
        }
        if id == self.last_id {
            return added;
        } else if id > self.last_id {
            return NO_ENTRIES_READ;
        }
        let first = self.first_id();
        if self.max_deleted == StreamId::ZERO || self.max_deleted < first {
            if id < first {
                return added.wrapping_sub(len);
            } else if id == first {
                return added.wrapping_sub(len).wrapping_add(1);
            }
        }
        NO_ENTRIES_READ
    }

    /// `streamReplyWithCGLag`: how many entries the group has not read yet, if knowable. The
    /// arithmetic wraps as C's does on the extreme counters ENTRIESREAD and XSETID accept.
    pub fn lag(&self, g: &Group) -> Option<i64> {
        let added = self.entries_added as i64;
        if self.entries_added == 0 {
            return Some(0);
        }
        if g.entries_read != NO_ENTRIES_READ && !self.has_tombstones_from(g.last_id) {
            return Some(added.wrapping_sub(g.entries_read));
        }
        let read = self.estimate_entries_read(g.last_id);
        (read != NO_ENTRIES_READ).then(|| added.wrapping_sub(read))
    }

    /// XGROUP CREATE once the arguments are checked: false when the group exists.
    pub fn create_group(&mut self, name: &[u8], last_id: StreamId, entries_read: i64) -> bool {
        if self.groups.contains_key(name) {
            return false;
        }
        self.groups
            .insert(name.to_vec(), Group::new(last_id, entries_read));
        true
    }

    /// XREADGROUP with `>` on one stream: the entries past the group's last-delivered ID
    /// (at most `count`, 0 for all), delivered to `consumer` (in its PEL unless `noack`).
    /// Empty when there is none, and then nothing changes (the consumer is not created).
    pub fn read_new(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        count: usize,
        noack: bool,
        now_ms: u64,
    ) -> Vec<Entry> {
        let Some(mut g) = self.groups.get(group).cloned() else {
            return Vec::new();
        };
        let Some(last) = self.entries.last() else {
            return Vec::new();
        };
        let Some(start) = g.last_id.incr().filter(|_| last.id > g.last_id) else {
            return Vec::new();
        };
        g.touch(consumer, now_ms);
        let limit = if count == 0 { usize::MAX } else { count };
        let from = self.entries.partition_point(|e| e.id < start);
        let delivered: Vec<Entry> = self.entries[from..].iter().take(limit).cloned().collect();
        for e in &delivered {
            if e.id > g.last_id {
                if g.entries_read != NO_ENTRIES_READ && !self.has_tombstones_from(e.id) {
                    g.entries_read = g.entries_read.wrapping_add(1);
                } else if self.entries_added != 0 {
                    g.entries_read = self.estimate_entries_read(e.id);
                }
                g.last_id = e.id;
            }
            if !noack {
                // An entry already pending (after XGROUP SETID) moves to this consumer anew.
                g.pending.insert(
                    e.id,
                    Pending {
                        consumer: consumer.to_vec(),
                        delivery_time: now_ms,
                        delivery_count: 1,
                    },
                );
            }
        }
        self.groups.insert(group.to_vec(), g);
        delivered
    }

    /// XREADGROUP with an explicit ID on one stream: the consumer's pending entries after
    /// `after` (at most `count`, 0 for all), `None` for those whose entry is gone; delivered
    /// again (time and count updated). The consumer is created if needed.
    pub fn read_history(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        after: StreamId,
        count: usize,
        now_ms: u64,
    ) -> Vec<(StreamId, Option<Entry>)> {
        let Some(g) = self.groups.get_mut(group) else {
            return Vec::new();
        };
        g.touch(consumer, now_ms);
        // `streamIncrID` past the last ID wraps to 0-0.
        let start = after.incr().unwrap_or(StreamId::ZERO);
        let limit = if count == 0 { usize::MAX } else { count };
        let mut out = Vec::new();
        for (id, p) in g.pending.range_mut(start..) {
            if out.len() == limit {
                break;
            }
            if p.consumer != consumer {
                continue;
            }
            let found = self
                .entries
                .binary_search_by(|e| e.id.cmp(id))
                .ok()
                .map(|at| self.entries[at].clone());
            if found.is_some() {
                p.delivery_time = now_ms;
                p.delivery_count = p.delivery_count.wrapping_add(1);
            }
            out.push((*id, found));
        }
        out
    }

    /// XACK: how many of `ids` were pending in the group (they no longer are).
    pub fn ack(&mut self, group: &[u8], ids: &[StreamId]) -> u64 {
        let Some(g) = self.groups.get_mut(group) else {
            return 0;
        };
        ids.iter()
            .filter(|id| g.pending.remove(id).is_some())
            .count() as u64
    }

    /// XCLAIM: the claimed IDs with their entries (`None` with JUSTID). Pending IDs whose
    /// entry is gone leave the PEL.
    pub fn claim(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        ids: &[StreamId],
        opts: Claim,
        now_ms: u64,
    ) -> Vec<(StreamId, Option<Entry>)> {
        let Some(mut g) = self.groups.get(group).cloned() else {
            return Vec::new();
        };
        if let Some(last) = opts.last_id
            && last > g.last_id
        {
            g.last_id = last;
        }
        let now = now_ms as i64;
        let delivery_time = match opts.delivery_time {
            Some(t) if (0..=now).contains(&t) => t as u64,
            _ => now_ms,
        };
        let mut out = Vec::new();
        let mut looked_up = false;
        for id in ids {
            let Some(entry) = self.entry(*id) else {
                g.pending.remove(id);
                continue;
            };
            let fresh = !g.pending.contains_key(id);
            if fresh && !opts.force {
                continue;
            }
            if !fresh && opts.min_idle > 0 {
                let idle = now - g.pending[id].delivery_time as i64;
                if idle < opts.min_idle as i64 {
                    continue;
                }
            }
            if !looked_up {
                g.touch(consumer, now_ms);
                looked_up = true;
            }
            let p = g.pending.entry(*id).or_insert(Pending {
                consumer: Vec::new(),
                delivery_time: 0,
                delivery_count: 0,
            });
            p.consumer = consumer.to_vec();
            p.delivery_time = delivery_time;
            match opts.retry_count {
                Some(n) => p.delivery_count = n,
                None if !opts.justid => p.delivery_count = p.delivery_count.wrapping_add(1),
                None => {}
            }
            out.push((*id, (!opts.justid).then(|| entry.clone())));
        }
        self.groups.insert(group.to_vec(), g);
        out
    }

    /// XAUTOCLAIM: scans the PEL from `start`, examining at most `count` × 10 entries and
    /// claiming (or dropping, when their entry is gone) at most `count`.
    pub fn auto_claim(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        (min_idle, start, count, justid): (u64, StreamId, u64, bool),
        now_ms: u64,
    ) -> AutoClaim {
        let mut out = AutoClaim {
            next: StreamId::ZERO,
            claimed: Vec::new(),
            deleted: Vec::new(),
        };
        let Some(mut g) = self.groups.get(group).cloned() else {
            return out;
        };
        let mut attempts = count.saturating_mul(10);
        let mut count = count;
        let mut looked_up = false;
        let mut last_seen = None;
        let ids: Vec<StreamId> = g.pending.range(start..).map(|(id, _)| *id).collect();
        let mut at = 0;
        while attempts > 0 && count > 0 && at < ids.len() {
            attempts -= 1;
            let id = ids[at];
            at += 1;
            last_seen = Some(id);
            let Some(entry) = self.entry(id) else {
                g.pending.remove(&id);
                out.deleted.push(id);
                count -= 1;
                continue;
            };
            let p = &g.pending[&id];
            if min_idle > 0 && (now_ms as i64 - p.delivery_time as i64) < min_idle as i64 {
                continue;
            }
            if !looked_up {
                g.touch(consumer, now_ms);
                looked_up = true;
            }
            let p = g.pending.get_mut(&id).expect("listed above");
            p.consumer = consumer.to_vec();
            p.delivery_time = now_ms;
            if !justid {
                p.delivery_count = p.delivery_count.wrapping_add(1);
            }
            out.claimed.push((id, (!justid).then(|| entry.clone())));
            count -= 1;
        }
        // The cursor: the next pending ID after the last one examined, 0-0 at the end.
        let after = match last_seen {
            Some(id) => id.incr(),
            None => Some(start),
        };
        if let Some(after) = after {
            out.next = g
                .pending
                .range(after..)
                .next()
                .map_or(StreamId::ZERO, |(id, _)| *id);
        }
        self.groups.insert(group.to_vec(), g);
        out
    }
}

/// `rdbSaveRawString` without compression: a string of at most 11 bytes that reads as a
/// 32-bit integer is stored as that integer.
fn put_rdb_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 11
        && let Some(v) = string2ll(s)
    {
        if let Ok(v) = i8::try_from(v) {
            out.push(0xC0);
            out.push(v as u8);
            return;
        } else if let Ok(v) = i16::try_from(v) {
            out.push(0xC1);
            out.extend_from_slice(&v.to_le_bytes());
            return;
        } else if let Ok(v) = i32::try_from(v) {
            out.push(0xC2);
            out.extend_from_slice(&v.to_le_bytes());
            return;
        }
    }
    dump::put_string(out, s);
}

/// The consumer groups as `rdbSaveObject` writes them for `RDB_TYPE_STREAM_LISTPACKS_2`: per
/// group its name, last ID, entries-read, the PEL (raw ID, delivery time as 8 little-endian
/// bytes, delivery count), then per consumer its name, seen time and its PEL's raw IDs.
pub(super) fn put_groups(out: &mut Vec<u8>, groups: &BTreeMap<Vec<u8>, Group>) {
    dump::put_len(out, groups.len() as u64);
    for (name, g) in groups {
        put_rdb_string(out, name);
        dump::put_len(out, g.last_id.ms);
        dump::put_len(out, g.last_id.seq);
        // A long long saved as a length: -1 becomes 2^64 - 1, as in Redis.
        dump::put_len(out, g.entries_read as u64);
        dump::put_len(out, g.pending.len() as u64);
        for (id, p) in &g.pending {
            out.extend_from_slice(&id.key());
            out.extend_from_slice(&(p.delivery_time as i64).to_le_bytes());
            dump::put_len(out, p.delivery_count);
        }
        dump::put_len(out, g.consumers.len() as u64);
        for (cname, c) in &g.consumers {
            put_rdb_string(out, cname);
            out.extend_from_slice(&(c.seen_time as i64).to_le_bytes());
            let owned: Vec<StreamId> = g.pending_of(cname).collect();
            dump::put_len(out, owned.len() as u64);
            for id in owned {
                out.extend_from_slice(&id.key());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ParsedId;
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId::new(ms, seq)
    }

    fn stream_of(n: u64) -> Stream {
        let mut s = Stream::default();
        for ms in 1..=n {
            let p = ParsedId {
                id: id(ms, 0),
                seq_given: true,
            };
            s.add(Some(p), vec![(b"f".to_vec(), b"v".to_vec())], 0)
                .unwrap();
        }
        s
    }

    #[test]
    fn new_entries_are_delivered_once_and_counted() {
        let mut s = stream_of(5);
        assert!(s.create_group(b"g", StreamId::ZERO, NO_ENTRIES_READ));
        assert!(!s.create_group(b"g", StreamId::ZERO, 0));
        let got = s.read_new(b"g", b"a", 2, false, 100);
        assert_eq!(got.iter().map(|e| e.id.ms).collect::<Vec<_>>(), [1, 2]);
        let got = s.read_new(b"g", b"b", 0, false, 200);
        assert_eq!(got.iter().map(|e| e.id.ms).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(s.read_new(b"g", b"c", 0, false, 300).is_empty());
        let g = &s.groups[&b"g"[..]];
        assert!(
            !g.consumers.contains_key(&b"c"[..]),
            "not served: not created"
        );
        assert_eq!(g.entries_read, 5);
        assert_eq!(s.lag(g), Some(0));
        assert_eq!(g.pending_of(b"a").count(), 2);
        assert_eq!(s.ack(b"g", &[id(1, 0), id(1, 0), id(9, 0)]), 1);
        let history = s.read_history(b"g", b"a", StreamId::ZERO, 0, 400);
        assert_eq!(history.len(), 1);
        assert_eq!(s.groups[&b"g"[..]].pending[&id(2, 0)].delivery_count, 2);
    }

    #[test]
    fn autoclaim_drops_deleted_entries_and_returns_a_cursor() {
        let mut s = stream_of(4);
        s.create_group(b"g", StreamId::ZERO, NO_ENTRIES_READ);
        s.read_new(b"g", b"a", 0, false, 100);
        s.delete(&[id(2, 0)]);
        let r = s.auto_claim(b"g", b"b", (0, StreamId::ZERO, 2, true), 500);
        assert_eq!(r.deleted, [id(2, 0)]);
        assert_eq!(r.claimed, [(id(1, 0), None)]);
        assert_eq!(r.next, id(3, 0));
        let g = &s.groups[&b"g"[..]];
        assert_eq!(g.pending[&id(1, 0)].consumer, b"b");
        // JUSTID does not count a delivery.
        assert_eq!(g.pending[&id(1, 0)].delivery_count, 1);
    }

    #[test]
    fn names_that_read_as_integers_are_stored_as_integers() {
        let mut out = Vec::new();
        put_rdb_string(&mut out, b"-5");
        put_rdb_string(&mut out, b"300");
        put_rdb_string(&mut out, b"007");
        assert_eq!(out, [0xC0, 0xFB, 0xC1, 0x2C, 0x01, 3, b'0', b'0', b'7']);
    }
}
