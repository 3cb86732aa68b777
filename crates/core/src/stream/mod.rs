//! Redis streams as values computed in pure code: entry IDs (parsing as redis-server 7.0 does,
//! ordering), the stream model (entries, last-generated ID, entries-added, max-deleted ID, and
//! the consumer groups of `groups`), trimming with `~` emulated on Redis's node layout, range
//! selection, and the `DUMP` payload (`RDB_TYPE_STREAM_LISTPACKS_2`, as 7.0 writes it, groups
//! included) that stores a stream on a node.
//!
//! A stream is read whole from a node (`XRANGE - +` and `XINFO STREAM`, or `XINFO STREAM FULL`
//! when it has groups) and written whole as a
//! `RESTORE` payload, so the node layout Redis would have (listpack nodes of at most
//! `stream-node-max-entries` 100 entries and `stream-node-max-bytes` 4096 bytes, the defaults)
//! is rebuilt from the live entries: [`Stream::nodes`] appends them one by one as `XADD` would.
//! Entries deleted by XDEL leave holes in Redis's nodes that a rebuilt stream does not have,
//! so after an XDEL a `~` trim may remove other whole nodes than redis-server would.

use crate::dump;
use std::collections::BTreeMap;
use std::fmt;

mod groups;
pub use groups::{AutoClaim, Claim, Consumer, Group, NO_ENTRIES_READ, Pending};

/// Redis's defaults for the node size; the nodes are assumed to keep them.
pub const NODE_MAX_ENTRIES: usize = 100;
pub const NODE_MAX_BYTES: usize = 4096;

/// An entry ID: milliseconds and sequence, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The next ID (`streamIncrID`); `None` past the last possible one.
    pub fn incr(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    /// The previous ID (`streamDecrID`); `None` before 0-0.
    pub fn decr(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    /// Parses `ms-seq` as redis-server prints it (the typed read's form).
    pub fn parse_plain(text: &[u8]) -> Option<StreamId> {
        let text = std::str::from_utf8(text).ok()?;
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId::new(ms.parse().ok()?, seq.parse().ok()?))
    }

    /// The 16 bytes of a radix-tree key: both halves big-endian.
    pub(crate) fn key(self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.ms.to_be_bytes());
        k[8..].copy_from_slice(&self.seq.to_be_bytes());
        k
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An ID argument as `streamGenericParseIDOrReply` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedId {
    pub id: StreamId,
    /// False for the `ms-*` form (XADD's partial ID), whose sequence is to be generated.
    pub seq_given: bool,
}

/// How an ID argument may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdForm {
    /// Refuses `-` and `+` (every ID but XRANGE's bounds).
    pub strict: bool,
    /// Accepts `ms-*` (XADD).
    pub partial: bool,
    /// The sequence of an ID given as `ms` alone.
    pub missing_seq: u64,
}

impl IdForm {
    pub const STRICT: IdForm = IdForm {
        strict: true,
        partial: false,
        missing_seq: 0,
    };
}

/// Parses an ID argument exactly as redis-server 7.0 does (`None`: "Invalid stream ID").
pub fn parse_id(arg: &[u8], form: IdForm) -> Option<ParsedId> {
    if arg.len() > 127 {
        return None;
    }
    // Redis copies the argument into a C string: an embedded NUL ends it.
    let arg = arg.split(|b| *b == 0).next().unwrap_or_default();
    let given = |id| {
        Some(ParsedId {
            id,
            seq_given: true,
        })
    };
    if arg == b"-" || arg == b"+" {
        if form.strict {
            return None;
        }
        return given(if arg == b"-" {
            StreamId::ZERO
        } else {
            StreamId::MAX
        });
    }
    let (ms, seq) = match arg.iter().position(|b| *b == b'-') {
        Some(at) => (&arg[..at], Some(&arg[at + 1..])),
        None => (arg, None),
    };
    let ms = string2ull(ms)?;
    match seq {
        Some(b"*") if form.partial => Some(ParsedId {
            id: StreamId::new(ms, 0),
            seq_given: false,
        }),
        Some(seq) => given(StreamId::new(ms, string2ull(seq)?)),
        None => given(StreamId::new(ms, form.missing_seq)),
    }
}

/// Redis's `string2ll`: an optional `-`, no leading zero, no other character, in range.
pub fn string2ll(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits {
        [b'0'] if !neg => return Some(0),
        [b'1'..=b'9', rest @ ..] if rest.iter().all(u8::is_ascii_digit) => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        if v > 1 << 63 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Redis's `string2ull`: `string2ll` when it applies (negative refused), else C's `strtoull`
/// (leading spaces, a sign, leading zeros; a `-` wraps around as C's does).
fn string2ull(s: &[u8]) -> Option<u64> {
    if let Some(v) = string2ll(s) {
        return u64::try_from(v).ok();
    }
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))?;
    let s = &s[start..];
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// One entry: its ID and its fields with their values, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: StreamId,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A whole stream, as quorumd reads and writes it, its consumer groups included.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stream {
    /// Live entries in ID order.
    pub entries: Vec<Entry>,
    pub last_id: StreamId,
    pub max_deleted: StreamId,
    pub entries_added: u64,
    /// The consumer groups by name, in byte order (the order of Redis's radix tree).
    pub groups: BTreeMap<Vec<u8>, Group>,
}

/// Why an XADD did not add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    #[error("The ID specified in XADD is equal or smaller than the target stream top item")]
    TooSmall,
    #[error("The stream has exhausted the last possible ID, unable to add more items")]
    Exhausted,
    #[error("Elements are too large to be stored")]
    TooLarge,
}

/// A trimming strategy with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

/// A trim as XADD and XTRIM take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrimArgs {
    pub trim: Trim,
    /// `~`: whole nodes only.
    pub approx: bool,
    /// At most this many entries (0: no limit), with `~` only.
    pub limit: u64,
}

impl Stream {
    /// The next ID `*` would give at `now_ms` (`streamNextID`).
    fn next_id(&self, now_ms: u64) -> Option<StreamId> {
        if now_ms > self.last_id.ms {
            Some(StreamId::new(now_ms, 0))
        } else {
            self.last_id.incr()
        }
    }

    /// Appends an entry as XADD does: `id` `None` is `*`, a partial ID has `seq_given` false.
    pub fn add(
        &mut self,
        id: Option<ParsedId>,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        now_ms: u64,
    ) -> Result<StreamId, AddError> {
        if self.last_id == StreamId::MAX {
            return Err(AddError::Exhausted);
        }
        let id = match id {
            None => self.next_id(now_ms).ok_or(AddError::Exhausted)?,
            Some(p) if p.seq_given => p.id,
            Some(p) if p.id.ms == self.last_id.ms => {
                if self.last_id.seq == u64::MAX {
                    return Err(AddError::TooSmall);
                }
                StreamId::new(p.id.ms, self.last_id.seq + 1)
            }
            Some(p) => p.id,
        };
        if id <= self.last_id {
            return Err(AddError::TooSmall);
        }
        let total: usize = fields.iter().map(|(f, v)| f.len() + v.len()).sum();
        if total > u32::MAX as usize {
            return Err(AddError::TooLarge);
        }
        self.entries.push(Entry { id, fields });
        self.last_id = id;
        self.entries_added += 1;
        Ok(id)
    }

    /// Deletes the entries with these IDs (XDEL); how many there were.
    pub fn delete(&mut self, ids: &[StreamId]) -> u64 {
        let mut deleted = 0;
        for id in ids {
            if let Ok(at) = self.entries.binary_search_by(|e| e.id.cmp(id)) {
                self.entries.remove(at);
                deleted += 1;
                self.max_deleted = self.max_deleted.max(*id);
            }
        }
        deleted
    }

    /// Trims as `streamTrim` does; how many entries it removed. With `approx`, only whole
    /// nodes of [`Stream::nodes`] go, and the first node that cannot go whole stops it.
    pub fn trim(&mut self, args: TrimArgs) -> u64 {
        let keep =
            |s: &Stream, removed: usize, node_last: StreamId, node_len: usize| match args.trim {
                Trim::MaxLen(max) => (s.entries.len() - removed - node_len) as u64 >= max,
                Trim::MinId(min) => node_last < min,
            };
        let mut removed = 0usize;
        if args.approx {
            for len in self.nodes() {
                if let Trim::MaxLen(max) = args.trim
                    && (self.entries.len() - removed) as u64 <= max
                {
                    break;
                }
                if args.limit > 0 && (removed + len) as u64 > args.limit {
                    break;
                }
                let last = self.entries[removed + len - 1].id;
                if !keep(self, removed, last, len) {
                    break;
                }
                removed += len;
            }
        } else {
            removed = match args.trim {
                Trim::MaxLen(max) => self.entries.len().saturating_sub(max as usize),
                Trim::MinId(min) => self.entries.partition_point(|e| e.id < min),
            };
        }
        self.entries.drain(..removed);
        removed as u64
    }

    /// The sizes of the listpack nodes Redis builds when the live entries are added one by
    /// one with the default node limits (`streamAppendItem`).
    pub fn nodes(&self) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut bytes = 0usize;
        let mut master: &[(Vec<u8>, Vec<u8>)] = &[];
        let mut master_id = StreamId::ZERO;
        for e in &self.entries {
            let total: usize = e.fields.iter().map(|(f, v)| f.len() + v.len()).sum();
            let full = match sizes.last() {
                None => true,
                Some(n) => bytes + total >= NODE_MAX_BYTES || *n >= NODE_MAX_ENTRIES,
            };
            if full {
                sizes.push(0);
                master = &e.fields;
                master_id = e.id;
                bytes = LP_HEADER + 1 + master_size(master);
            }
            bytes += entry_elements(e, master, master_id)
                .iter()
                .map(Element::size)
                .sum::<usize>();
            if let Some(n) = sizes.last_mut() {
                *n += 1;
            }
        }
        sizes
    }

    /// The entries from `start` to `end` (inclusive), ascending, or descending with `rev`,
    /// at most `count` of them (0: all).
    pub fn range(&self, start: StreamId, end: StreamId, rev: bool, count: usize) -> Vec<&Entry> {
        let from = self.entries.partition_point(|e| e.id < start);
        let to = self.entries.partition_point(|e| e.id <= end);
        let slice = if from < to {
            &self.entries[from..to]
        } else {
            &[][..]
        };
        let limit = if count == 0 { usize::MAX } else { count };
        if rev {
            slice.iter().rev().take(limit).collect()
        } else {
            slice.iter().take(limit).collect()
        }
    }

    /// The ID of the first entry, 0-0 when empty (XINFO's `recorded-first-entry-id`).
    pub fn first_id(&self) -> StreamId {
        self.entries.first().map_or(StreamId::ZERO, |e| e.id)
    }

    /// How many nodes the radix tree of [`Stream::nodes`] has once loaded (`rax->numnodes`).
    pub fn radix_tree_nodes(&self) -> usize {
        let mut keys = Vec::new();
        let mut at = 0;
        for n in self.nodes() {
            keys.push(self.entries[at].id.key());
            at += n;
        }
        rax_nodes(&keys)
    }

    /// The `RESTORE` payload of the stream, its consumer groups included.
    pub fn dump_payload(&self) -> Vec<u8> {
        let nodes = self.nodes();
        let mut out = vec![TYPE_STREAM_LISTPACKS_2];
        dump::put_len(&mut out, nodes.len() as u64);
        let mut at = 0;
        for n in nodes {
            let entries = &self.entries[at..at + n];
            at += n;
            dump::put_string(&mut out, &entries[0].id.key());
            dump::put_string(&mut out, &listpack(entries));
        }
        let first = self.first_id();
        for v in [
            self.entries.len() as u64,
            self.last_id.ms,
            self.last_id.seq,
            first.ms,
            first.seq,
            self.max_deleted.ms,
            self.max_deleted.seq,
            self.entries_added,
        ] {
            dump::put_len(&mut out, v);
        }
        groups::put_groups(&mut out, &self.groups);
        dump::finish(&mut out, STREAM_RDB_VERSION);
        out
    }
}

/// The RDB type and version Redis 7.0 writes streams with.
const TYPE_STREAM_LISTPACKS_2: u8 = 19;
const STREAM_RDB_VERSION: u16 = 10;
const LP_HEADER: usize = 6;
const FLAG_SAMEFIELDS: i64 = 2;

/// A listpack element: an integer or a string (strings that read as integers are stored as
/// integers, as `lpAppend` does).
enum Element<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl Element<'_> {
    fn of(s: &[u8]) -> Element<'_> {
        match string2ll(s) {
            Some(v) => Element::Int(v),
            None => Element::Str(s),
        }
    }

    /// The encoding and data, without the back-length.
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Element::Int(v) if (0..=127).contains(&v) => out.push(v as u8),
            Element::Int(v) if (-4096..=4095).contains(&v) => {
                let u = (v as u16) & 0x1fff;
                out.push(0xC0 | (u >> 8) as u8);
                out.push(u as u8);
            }
            Element::Int(v) if i16::try_from(v).is_ok() => {
                out.push(0xF1);
                out.extend_from_slice(&(v as i16).to_le_bytes());
            }
            Element::Int(v) if (-(1 << 23)..(1 << 23)).contains(&v) => {
                out.push(0xF2);
                out.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            Element::Int(v) if i32::try_from(v).is_ok() => {
                out.push(0xF3);
                out.extend_from_slice(&(v as i32).to_le_bytes());
            }
            Element::Int(v) => {
                out.push(0xF4);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Element::Str(s) if s.len() < 64 => {
                out.push(0x80 | s.len() as u8);
                out.extend_from_slice(s);
            }
            Element::Str(s) if s.len() < 4096 => {
                out.push(0xE0 | (s.len() >> 8) as u8);
                out.push(s.len() as u8);
                out.extend_from_slice(s);
            }
            Element::Str(s) => {
                out.push(0xF0);
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s);
            }
        }
    }

    fn encoded_len(&self) -> usize {
        match *self {
            Element::Int(v) if (0..=127).contains(&v) => 1,
            Element::Int(v) if (-4096..=4095).contains(&v) => 2,
            Element::Int(v) if i16::try_from(v).is_ok() => 3,
            Element::Int(v) if (-(1 << 23)..(1 << 23)).contains(&v) => 4,
            Element::Int(v) if i32::try_from(v).is_ok() => 5,
            Element::Int(_) => 9,
            Element::Str(s) if s.len() < 64 => 1 + s.len(),
            Element::Str(s) if s.len() < 4096 => 2 + s.len(),
            Element::Str(s) => 5 + s.len(),
        }
    }

    /// The whole element's size in the listpack, back-length included.
    fn size(&self) -> usize {
        let l = self.encoded_len();
        l + backlen_size(l)
    }
}

fn backlen_size(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..16383 => 2,
        16383..2097151 => 3,
        2097151..268435455 => 4,
        _ => 5,
    }
}

/// `lpEncodeBacklen`: the element's length, 7 bits a byte, read from the right.
fn put_backlen(out: &mut Vec<u8>, l: usize) {
    let n = backlen_size(l);
    for i in (0..n).rev() {
        let b = ((l >> (7 * i)) & 127) as u8;
        out.push(if i == n - 1 { b } else { b | 128 });
    }
}

/// The master entry's elements: count, deleted, field count, the fields, then 0.
fn master_elements(count: usize, fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<Element<'_>> {
    let mut els = vec![
        Element::Int(count as i64),
        Element::Int(0),
        Element::Int(fields.len() as i64),
    ];
    els.extend(fields.iter().map(|(f, _)| Element::of(f)));
    els.push(Element::Int(0));
    els
}

fn master_size(fields: &[(Vec<u8>, Vec<u8>)]) -> usize {
    // The count stays below 128 with 100 entries a node: one byte whatever its value.
    master_elements(1, fields).iter().map(Element::size).sum()
}

/// An entry's elements: flags, ID deltas from the master, the fields (omitted when they are
/// the master's), the values, and the element count (`lp-count`).
fn entry_elements<'a>(
    e: &'a Entry,
    master: &[(Vec<u8>, Vec<u8>)],
    master_id: StreamId,
) -> Vec<Element<'a>> {
    let same = e.fields.len() == master.len()
        && e.fields.iter().zip(master).all(|((a, _), (b, _))| a == b);
    let mut els = vec![
        Element::Int(if same { FLAG_SAMEFIELDS } else { 0 }),
        Element::Int(e.id.ms.wrapping_sub(master_id.ms) as i64),
        Element::Int(e.id.seq.wrapping_sub(master_id.seq) as i64),
    ];
    let n = e.fields.len() as i64;
    if same {
        els.extend(e.fields.iter().map(|(_, v)| Element::of(v)));
        els.push(Element::Int(n + 3));
    } else {
        els.push(Element::Int(n));
        for (f, v) in &e.fields {
            els.push(Element::of(f));
            els.push(Element::of(v));
        }
        els.push(Element::Int(n * 2 + 4));
    }
    els
}

/// One node's listpack: the master entry (the first entry's fields), then every entry.
fn listpack(entries: &[Entry]) -> Vec<u8> {
    let master = &entries[0].fields;
    let master_id = entries[0].id;
    let mut els = master_elements(entries.len(), master);
    for e in entries {
        els.extend(entry_elements(e, master, master_id));
    }
    let mut out = vec![0u8; LP_HEADER];
    for el in &els {
        let before = out.len();
        el.encode(&mut out);
        let len = out.len() - before;
        put_backlen(&mut out, len);
    }
    out.push(0xFF);
    let total = out.len() as u32;
    out[..4].copy_from_slice(&total.to_le_bytes());
    let count = u16::try_from(els.len()).unwrap_or(u16::MAX);
    out[4..6].copy_from_slice(&count.to_le_bytes());
    out
}

/// The node count of a radix tree (Redis's `rax`) holding these distinct, equally long keys,
/// as inserting them builds it: one node per branching point and per leaf, one compressed node
/// per run of bytes below a branch (a whole run from the root is the root itself).
fn rax_nodes(keys: &[[u8; 16]]) -> usize {
    // The nodes from a node boundary down: a leaf; a compressed node for a common run; or a
    // branching node, then each child's subtree below its first byte.
    fn count(keys: &[&[u8]]) -> usize {
        let first = keys[0];
        if first.is_empty() {
            return 1;
        }
        let common = (0..first.len())
            .find(|&i| keys.iter().any(|k| k[i] != first[i]))
            .unwrap_or(first.len());
        if common > 0 {
            let rest: Vec<&[u8]> = keys.iter().map(|k| &k[common..]).collect();
            return 1 + count(&rest);
        }
        let mut n = 1;
        let mut i = 0;
        while i < keys.len() {
            let b = keys[i][0];
            let j = i + keys[i..].iter().take_while(|k| k[0] == b).count();
            let rest: Vec<&[u8]> = keys[i..j].iter().map(|k| &k[1..]).collect();
            n += count(&rest);
            i = j;
        }
        n
    }
    if keys.is_empty() {
        return 1;
    }
    let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    count(&refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId::new(ms, seq)
    }

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn entry(ms: u64, seq: u64) -> (Option<ParsedId>, Fields) {
        (
            Some(ParsedId {
                id: id(ms, seq),
                seq_given: true,
            }),
            vec![(b"f".to_vec(), b"v".to_vec())],
        )
    }

    #[test]
    fn ids_parse_as_redis_parses_them() {
        let strict = IdForm::STRICT;
        let p = |s: &str, f| parse_id(s.as_bytes(), f).map(|p| (p.id, p.seq_given));
        assert_eq!(p("1-2", strict), Some((id(1, 2), true)));
        assert_eq!(p("5", strict), Some((id(5, 0), true)));
        assert_eq!(p("-", strict), None);
        let range = IdForm {
            strict: false,
            partial: false,
            missing_seq: u64::MAX,
        };
        assert_eq!(p("-", range), Some((StreamId::ZERO, true)));
        assert_eq!(p("+", range), Some((StreamId::MAX, true)));
        assert_eq!(p("7", range), Some((id(7, u64::MAX), true)));
        let add = IdForm {
            partial: true,
            ..strict
        };
        assert_eq!(p("7-*", add), Some((id(7, 0), false)));
        assert_eq!(p("7-*", strict), None);
        // strtoull's leniency, which Redis inherits.
        assert_eq!(p("+5-01", strict), Some((id(5, 1), true)));
        assert_eq!(p("-1", strict), None);
        assert_eq!(p("18446744073709551616", strict), None);
        assert_eq!(p("1-2-3", strict), None);
        assert_eq!(p("", strict), None);
        assert_eq!(p("a", strict), None);
    }

    #[test]
    fn add_refuses_ids_not_above_the_last() {
        let mut s = Stream::default();
        let (i, f) = entry(5, 0);
        assert_eq!(s.add(i, f.clone(), 0), Ok(id(5, 0)));
        assert_eq!(s.add(i, f.clone(), 0), Err(AddError::TooSmall));
        let partial = ParsedId {
            id: id(5, 0),
            seq_given: false,
        };
        assert_eq!(s.add(Some(partial), f.clone(), 0), Ok(id(5, 1)));
        assert_eq!(s.add(None, f.clone(), 3), Ok(id(5, 2)));
        assert_eq!(s.add(None, f.clone(), 9), Ok(id(9, 0)));
        assert_eq!(s.entries_added, 4);
        assert_eq!(s.delete(&[id(5, 1), id(6, 0)]), 1);
        assert_eq!(s.max_deleted, id(5, 1));
        assert_eq!(s.entries.len(), 3);
    }

    #[test]
    fn approximate_trims_take_whole_nodes() {
        let mut s = Stream::default();
        for ms in 1..=250 {
            let (i, f) = entry(ms, 0);
            s.add(i, f, 0).unwrap();
        }
        assert_eq!(s.nodes(), vec![100, 100, 50]);
        let approx = |trim| TrimArgs {
            trim,
            approx: true,
            limit: 0,
        };
        let mut t = s.clone();
        assert_eq!(t.trim(approx(Trim::MaxLen(160))), 0);
        assert_eq!(t.trim(approx(Trim::MaxLen(150))), 100);
        let mut t = s.clone();
        assert_eq!(t.trim(approx(Trim::MinId(id(201, 0)))), 200);
        let mut t = s.clone();
        let exact = TrimArgs {
            trim: Trim::MaxLen(3),
            approx: false,
            limit: 0,
        };
        assert_eq!(t.trim(exact), 247);
        assert_eq!(t.entries[0].id, id(248, 0));
        let mut t = s.clone();
        let limited = TrimArgs {
            limit: 150,
            ..approx(Trim::MaxLen(0))
        };
        assert_eq!(t.trim(limited), 100);
    }

    #[test]
    fn nodes_split_on_bytes_too() {
        let mut s = Stream::default();
        for ms in 1..=10 {
            s.add(
                Some(ParsedId {
                    id: id(ms, 0),
                    seq_given: true,
                }),
                vec![(b"f".to_vec(), vec![b'x'; 1000])],
                0,
            )
            .unwrap();
        }
        // Four 1000-byte values reach 4096 bytes with the headers.
        assert_eq!(s.nodes(), vec![4, 4, 2]);
    }

    #[test]
    fn ranges_select_inclusive_bounds() {
        let mut s = Stream::default();
        for ms in 1..=5 {
            let (i, f) = entry(ms, 0);
            s.add(i, f, 0).unwrap();
        }
        let ids = |v: Vec<&Entry>| v.iter().map(|e| e.id.ms).collect::<Vec<_>>();
        assert_eq!(ids(s.range(id(2, 0), id(4, 0), false, 0)), [2, 3, 4]);
        assert_eq!(ids(s.range(id(2, 0), id(4, 0), true, 2)), [4, 3]);
        assert_eq!(
            ids(s.range(id(4, 0), id(2, 0), false, 0)),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn integers_encode_in_the_smallest_listpack_form() {
        for (v, len) in [
            (5, 1),
            (-1, 2),
            (4095, 2),
            (4096, 3),
            (1 << 20, 4),
            (1 << 30, 5),
        ] {
            let mut out = Vec::new();
            Element::Int(v).encode(&mut out);
            assert_eq!(out.len(), len, "{v}");
            assert_eq!(Element::Int(v).encoded_len(), len);
        }
        assert!(matches!(Element::of(b"007"), Element::Str(_)));
        assert!(matches!(Element::of(b"-7"), Element::Int(-7)));
    }

    #[test]
    fn radix_tree_nodes_count_branches_and_runs() {
        assert_eq!(rax_nodes(&[]), 1);
        assert_eq!(rax_nodes(&[id(1, 0).key()]), 2);
        // Two keys differing in the last byte: root run, branch, two leaves.
        assert_eq!(rax_nodes(&[id(1, 0).key(), id(1, 1).key()]), 4);
    }
}
