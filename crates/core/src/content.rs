//! Content checksums: what a metadata entry records about the value its version wrote, so
//! that a value changed on a node under an unchanged version (by a client talking to the node
//! directly, a restore from an old dump, an operator's `redis-cli`) can be told from the
//! value quorumd wrote.
//!
//! A checksum is the value's Redis type and a 48-bit sum. Each element of the value is hashed
//! with [`h48`] (the first 48 bits of its SHA-1, which Lua computes with `redis.sha1hex`), and
//! the hashes are added modulo 2^48, so unordered types (hashes, sets, sorted sets) have one
//! checksum whatever their internal order or encoding. Ordered types hash each element with its
//! position. The nodes compute the same function in `crates/node/lua/shared/content.lua`; a
//! test runs both on the same values.
//!
//! | Type | Elements hashed |
//! |---|---|
//! | string | the value |
//! | hash | `len(field) ":" field value`, per field |
//! | set | the member, per member |
//! | sorted set | `len(member) ":" member score`, the score as C's `%.17g` prints it ([`score_text`]) |
//! | list | `index ":" element`, per element (index from 0) |
//! | stream (`y`) | each entry as for `x`; `"stream:" last-id " " entries-added " " max-deleted-id`; per group `"group:" len(name) ":" name last-delivered-id " " entries-read` (`-` when unknown); per pending entry `"pending:" len(group) ":" group id " " len(consumer) ":" consumer delivery-time " " delivery-count`; per consumer `"consumer:" len(group) ":" group len(name) ":" name seen-time` |
//! | stream (`x`, before 2026-12-07) | `len(id) ":" id` then `len(f) ":" f len(v) ":" v` per field, per entry |
//! | other (modules) | the value's `DUMP` |
//!
//! Streams have two functions. `x` covers the entries only, so a change of a stream's last ID
//! (`XSETID`) or of its consumer groups made on one node was not seen; `y` covers them too. An
//! entry keeps the letter it was written with and is checked with that letter's function, so
//! the `x` entries written before `y` existed stay intact; [`StreamChecksum`] says which one
//! new writes use (an instance that does not know `y` cannot read such an entry).
//! Times and counters are printed as Lua prints the number Redis gave it (`%.0f` of a double),
//! so both sides agree even above 2^53, where the value itself is rounded.

use crate::digest::DIGEST_MODULUS;
use crate::stream::{NO_ENTRIES_READ, Stream};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The Redis type of a value, as its metadata entry records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    String,
    Hash,
    List,
    Set,
    SortedSet,
    /// A stream, checksummed with its metadata and consumer groups (letter `y`).
    Stream,
    /// A stream whose entry was written with the checksum of its entries only (letter `x`):
    /// the same Redis type as [`ValueType::Stream`], another function.
    StreamEntries,
    /// A module type, checksummed by its `DUMP`.
    Other,
}

impl ValueType {
    pub const ALL: [ValueType; 8] = [
        ValueType::String,
        ValueType::Hash,
        ValueType::List,
        ValueType::Set,
        ValueType::SortedSet,
        ValueType::Stream,
        ValueType::StreamEntries,
        ValueType::Other,
    ];

    /// The letter in the encoded entry (also in `content.lua`).
    pub fn code(self) -> char {
        match self {
            ValueType::String => 's',
            ValueType::Hash => 'h',
            ValueType::List => 'l',
            ValueType::Set => 'e',
            ValueType::SortedSet => 'z',
            ValueType::Stream => 'y',
            ValueType::StreamEntries => 'x',
            ValueType::Other => 'o',
        }
    }

    pub fn from_code(c: char) -> Option<ValueType> {
        ValueType::ALL.into_iter().find(|t| t.code() == c)
    }

    /// The name `TYPE` answers.
    pub fn redis_name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Hash => "hash",
            ValueType::List => "list",
            ValueType::Set => "set",
            ValueType::SortedSet => "zset",
            ValueType::Stream | ValueType::StreamEntries => "stream",
            ValueType::Other => "other",
        }
    }
}

/// Which function new stream entries are checksummed with (`sync.stream_checksum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StreamChecksum {
    /// Letter `y`: entries, metadata and consumer groups.
    #[default]
    Full,
    /// Letter `x`: the entries only, the function of instances older than `y`, which cannot
    /// read a `y` entry; for a rolling upgrade from them.
    Entries,
}

impl StreamChecksum {
    /// The letter `content.lua` is given for it.
    pub fn code(self) -> char {
        match self {
            StreamChecksum::Full => ValueType::Stream.code(),
            StreamChecksum::Entries => ValueType::StreamEntries.code(),
        }
    }
}

/// What a version wrote: no value (a tombstone), or a value of a type with a checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Content {
    Absent,
    Value { ty: ValueType, sum: u64 },
}

impl Content {
    /// The content of a string value.
    pub fn string(value: &[u8]) -> Content {
        Content::Value {
            ty: ValueType::String,
            sum: h48(value),
        }
    }

    /// The content of a hash holding `fields` (in any order).
    pub fn hash<'a>(fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Content {
        Content::Value {
            ty: ValueType::Hash,
            sum: sum(fields.into_iter().map(|(f, v)| h48(&length_prefixed(f, v)))),
        }
    }

    /// The content of a set holding `members` (in any order).
    pub fn set<'a>(members: impl IntoIterator<Item = &'a [u8]>) -> Content {
        Content::Value {
            ty: ValueType::Set,
            sum: sum(members.into_iter().map(h48)),
        }
    }

    /// The content of a list holding `items` in this order.
    pub fn list<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Content {
        Content::Value {
            ty: ValueType::List,
            sum: sum(items.into_iter().enumerate().map(|(i, item)| {
                let mut bytes = format!("{i}:").into_bytes();
                bytes.extend_from_slice(item);
                h48(&bytes)
            })),
        }
    }

    /// The content of a stream by the function `checksum` names.
    pub fn stream_with(stream: &Stream, checksum: StreamChecksum) -> Content {
        match checksum {
            StreamChecksum::Full => Content::stream(stream),
            StreamChecksum::Entries => Content::stream_entries(stream),
        }
    }

    /// The content of a stream (letter `y`): its entries as [`Content::stream_entries`] hashes
    /// them, its last ID, entries-added and max-deleted ID, and its consumer groups whole (see
    /// the module's table). Not covered: what Redis derives from these (length, first and
    /// last entry, lag, PEL counts, idle times) and the radix tree's layout, which two nodes
    /// holding the same stream may differ in.
    pub fn stream(stream: &Stream) -> Content {
        let state = format!(
            "stream:{} {} {}",
            stream.last_id,
            lua_int(stream.entries_added),
            stream.max_deleted
        );
        let mut hashes = vec![h48(state.as_bytes())];
        for (name, g) in &stream.groups {
            let read = if g.entries_read == NO_ENTRIES_READ {
                "-".to_owned()
            } else {
                lua_int(g.entries_read)
            };
            let mut bytes = b"group:".to_vec();
            push_prefixed(&mut bytes, name);
            bytes.extend_from_slice(format!("{} {read}", g.last_id).as_bytes());
            hashes.push(h48(&bytes));
            for (id, p) in &g.pending {
                let mut bytes = b"pending:".to_vec();
                push_prefixed(&mut bytes, name);
                bytes.extend_from_slice(format!("{id} ").as_bytes());
                push_prefixed(&mut bytes, &p.consumer);
                bytes.extend_from_slice(
                    format!("{} {}", lua_int(p.delivery_time), lua_int(p.delivery_count))
                        .as_bytes(),
                );
                hashes.push(h48(&bytes));
            }
            for (consumer, c) in &g.consumers {
                let mut bytes = b"consumer:".to_vec();
                push_prefixed(&mut bytes, name);
                push_prefixed(&mut bytes, consumer);
                bytes.extend_from_slice(lua_int(c.seen_time).as_bytes());
                hashes.push(h48(&bytes));
            }
        }
        let Content::Value { sum: entries, .. } = Content::stream_entries(stream) else {
            unreachable!("a stream's entries always have a checksum")
        };
        Content::Value {
            ty: ValueType::Stream,
            sum: sum(hashes.into_iter().chain([entries])),
        }
    }

    /// The content of a stream by the function before `y` (letter `x`): each entry's ID (as
    /// Redis prints it) and its fields with their values, each length-prefixed, as
    /// `content.lua` hashes `XRANGE - +`.
    pub fn stream_entries(stream: &Stream) -> Content {
        Content::Value {
            ty: ValueType::StreamEntries,
            sum: sum(stream.entries.iter().map(|e| {
                let id = e.id.to_string();
                let mut bytes = format!("{}:{id}", id.len()).into_bytes();
                for (f, v) in &e.fields {
                    for part in [f, v] {
                        bytes.extend_from_slice(format!("{}:", part.len()).as_bytes());
                        bytes.extend_from_slice(part);
                    }
                }
                h48(&bytes)
            })),
        }
    }

    /// True when `stream` is the value this content records, by the function of its letter.
    pub fn matches_stream(&self, stream: &Stream) -> bool {
        match self {
            Content::Value {
                ty: ValueType::StreamEntries,
                ..
            } => *self == Content::stream_entries(stream),
            _ => *self == Content::stream(stream),
        }
    }

    /// The content of a sorted set holding `members` with their scores (in any order).
    pub fn sorted_set<'a>(members: impl IntoIterator<Item = (&'a [u8], f64)>) -> Content {
        Content::Value {
            ty: ValueType::SortedSet,
            sum: sum(members
                .into_iter()
                .map(|(m, score)| h48(&length_prefixed(m, score_text(score).as_bytes())))),
        }
    }

    /// True when a string value is the one this content records.
    pub fn matches_string(&self, value: &[u8]) -> bool {
        *self == Content::string(value)
    }

    /// Parses the encoded form: `-`, or the type letter and the sum in decimal.
    pub fn parse(text: &str) -> Option<Content> {
        if text == "-" {
            return Some(Content::Absent);
        }
        let mut chars = text.chars();
        let ty = ValueType::from_code(chars.next()?)?;
        let digits = chars.as_str();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let sum: u64 = digits.parse().ok()?;
        (sum < DIGEST_MODULUS).then_some(Content::Value { ty, sum })
    }
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::Absent => f.write_str("-"),
            Content::Value { ty, sum } => write!(f, "{}{sum}", ty.code()),
        }
    }
}

/// The first 48 bits of the SHA-1 of `bytes`: exact in a Lua double, and what
/// `tonumber(string.sub(redis.sha1hex(s), 1, 12), 16)` computes on a node.
pub fn h48(bytes: &[u8]) -> u64 {
    let d = sha1_smol::Sha1::from(bytes).digest().bytes();
    d[..6].iter().fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

fn sum(hashes: impl Iterator<Item = u64>) -> u64 {
    hashes.fold(0, |acc, h| (acc + h) % DIGEST_MODULUS)
}

/// A score as redis-server 7.0 prints it (C's `%.17g`), which is also how `content.lua`
/// formats it, so the checksum does not depend on the server's own reply format.
pub fn score_text(score: f64) -> String {
    if score.is_infinite() {
        return if score > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if score == 0.0 {
        return if score.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // 17 significant digits, rounded once; %g then picks fixed or exponent form by the
    // exponent of that rounded value, and drops trailing zeros.
    let sci = format!("{score:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..17).contains(&exp) {
        let fixed = format!("{score:.*}", (16 - exp) as usize);
        trim_fraction(&fixed).to_owned()
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_fraction(mantissa), exp.abs())
    }
}

/// Drops trailing zeros after a decimal point, and the point if nothing follows it.
fn trim_fraction(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

/// An integer as `content.lua` prints it: Redis hands it to Lua as a double, which
/// `%.0f` prints exactly (so above 2^53 both sides print the same rounded value).
fn lua_int<T: Into<i128>>(n: T) -> String {
    format!("{:.0}", n.into() as f64)
}

fn push_prefixed(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(format!("{}:", part.len()).as_bytes());
    out.extend_from_slice(part);
}

fn length_prefixed(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", name.len()).into_bytes();
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h48_is_the_start_of_sha1() {
        // SHA-1("abc") = a9993e364706816aba3e25717850c26c9cd0d89d
        assert_eq!(h48(b"abc"), 0xa9993e364706);
        assert!(h48(b"") < DIGEST_MODULUS);
    }

    #[test]
    fn unordered_types_do_not_depend_on_order() {
        let a = Content::hash([(&b"f1"[..], &b"x"[..]), (b"f2", b"y")]);
        let b = Content::hash([(&b"f2"[..], &b"y"[..]), (b"f1", b"x")]);
        assert_eq!(a, b);
        assert_ne!(a, Content::hash([(&b"f1"[..], &b"y"[..]), (b"f2", b"x")]));
        assert_eq!(
            Content::set([&b"a"[..], b"b", b"c"]),
            Content::set([&b"c"[..], b"a", b"b"])
        );
        // The length prefix keeps field/value boundaries apart.
        assert_ne!(
            Content::hash([(&b"ab"[..], &b"c"[..])]),
            Content::hash([(&b"a"[..], &b"bc"[..])])
        );
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        for c in [
            Content::Absent,
            Content::string(b"hello"),
            Content::set([&b"m"[..]]),
            Content::Value {
                ty: ValueType::Stream,
                sum: DIGEST_MODULUS - 1,
            },
        ] {
            assert_eq!(Content::parse(&c.to_string()), Some(c));
        }
        for bad in [
            "",
            "s",
            "q12",
            "s-1",
            "s12a",
            "--",
            &format!("s{DIGEST_MODULUS}"),
        ] {
            assert_eq!(Content::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_changed_string_no_longer_matches() {
        let c = Content::string(b"abc");
        assert!(c.matches_string(b"abc"));
        assert!(!c.matches_string(b"tampered"));
        assert!(!Content::Absent.matches_string(b""));
    }

    #[test]
    fn scores_print_as_redis_7_0_prints_them() {
        for (score, text) in [
            (1.5, "1.5"),
            (3.0, "3"),
            (-0.1, "-0.10000000000000001"),
            (1e20, "1e+20"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (123_456_789_012_345_678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (2.5e-300, "2.5e-300"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.0 / 3.0, "0.33333333333333331"),
            (-1.2345678e-7, "-1.2345677999999999e-07"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (0.0, "0"),
        ] {
            assert_eq!(score_text(score), text, "{score:e}");
        }
    }

    #[test]
    fn list_content_depends_on_order_and_sorted_set_content_does_not() {
        let (a, b) = (&b"a"[..], &b"b"[..]);
        assert_ne!(Content::list([a, b]), Content::list([b, a]));
        assert_eq!(
            Content::sorted_set([(a, 1.0), (b, 2.5)]),
            Content::sorted_set([(b, 2.5), (a, 1.0)])
        );
        assert_ne!(
            Content::sorted_set([(a, 1.0)]),
            Content::sorted_set([(a, 1.5)])
        );
    }

    #[test]
    fn the_stream_checksum_covers_its_figures_and_groups_and_the_old_one_does_not() {
        use crate::stream::{Consumer, Entry, Group, Pending, StreamId};
        let mut base = Stream {
            entries: vec![Entry {
                id: StreamId::new(1, 1),
                fields: vec![(b"f".to_vec(), b"v".to_vec())],
            }],
            last_id: StreamId::new(1, 1),
            max_deleted: StreamId::ZERO,
            entries_added: 1,
            ..Stream::default()
        };
        let mut g = Group::new(StreamId::new(1, 1), 1);
        g.pending.insert(
            StreamId::new(1, 1),
            Pending {
                consumer: b"alice".to_vec(),
                delivery_time: 1_700_000_000_000,
                delivery_count: 1,
            },
        );
        g.consumers.insert(
            b"alice".to_vec(),
            Consumer {
                seen_time: 1_700_000_000_000,
            },
        );
        base.groups.insert(b"g".to_vec(), g);
        type Change = (&'static str, fn(&mut Stream));
        let changes: Vec<Change> = vec![
            ("last id", |s| s.last_id = StreamId::new(9, 0)),
            ("entries-added", |s| s.entries_added = 7),
            ("max-deleted", |s| s.max_deleted = StreamId::new(1, 0)),
            ("new group", |s| {
                s.groups
                    .insert(b"g2".to_vec(), Group::new(StreamId::ZERO, 0));
            }),
            ("group id", |s| {
                s.groups.get_mut(&b"g"[..]).unwrap().last_id = StreamId::new(1, 0)
            }),
            ("entries-read", |s| {
                s.groups.get_mut(&b"g"[..]).unwrap().entries_read = NO_ENTRIES_READ
            }),
            ("acked", |s| {
                s.groups.get_mut(&b"g"[..]).unwrap().pending.clear()
            }),
            ("owner", |s| {
                let g = s.groups.get_mut(&b"g"[..]).unwrap();
                g.pending
                    .values_mut()
                    .for_each(|p| p.consumer = b"bob".to_vec());
            }),
            ("delivery count", |s| {
                let g = s.groups.get_mut(&b"g"[..]).unwrap();
                g.pending.values_mut().for_each(|p| p.delivery_count = 2);
            }),
            ("delivery time", |s| {
                let g = s.groups.get_mut(&b"g"[..]).unwrap();
                g.pending.values_mut().for_each(|p| p.delivery_time += 1);
            }),
            ("seen time", |s| {
                let g = s.groups.get_mut(&b"g"[..]).unwrap();
                g.consumers.values_mut().for_each(|c| c.seen_time += 1);
            }),
            ("new consumer", |s| {
                let g = s.groups.get_mut(&b"g"[..]).unwrap();
                g.consumers.insert(b"carol".to_vec(), Consumer::default());
            }),
            ("group renamed", |s| {
                let g = s.groups.remove(&b"g"[..]).unwrap();
                s.groups.insert(b"h".to_vec(), g);
            }),
        ];
        let full = Content::stream(&base);
        let entries = Content::stream_entries(&base);
        assert!(full.matches_stream(&base) && entries.matches_stream(&base));
        assert_eq!(full.to_string().chars().next(), Some('y'));
        assert_eq!(entries.to_string().chars().next(), Some('x'));
        for (what, change) in changes {
            let mut s = base.clone();
            change(&mut s);
            assert_ne!(Content::stream(&s), full, "{what}");
            assert!(!full.matches_stream(&s), "{what}");
            assert_eq!(Content::stream_entries(&s), entries, "{what}: entries only");
            assert!(entries.matches_stream(&s), "{what}");
        }
        // A new entry changes both.
        let mut s = base.clone();
        s.add(None, vec![(b"f".to_vec(), b"w".to_vec())], 5)
            .unwrap();
        assert!(!full.matches_stream(&s) && !entries.matches_stream(&s));
        for c in [full, entries] {
            assert_eq!(Content::parse(&c.to_string()), Some(c));
        }
        assert_eq!(
            Content::stream_with(&base, StreamChecksum::Entries),
            entries
        );
        assert_eq!(Content::stream_with(&base, StreamChecksum::Full), full);
    }

    #[test]
    fn integers_print_as_lua_prints_the_double_redis_gave_it() {
        assert_eq!(lua_int(0u64), "0");
        assert_eq!(lua_int(-1i64), "-1");
        assert_eq!(lua_int(1_700_000_000_123u64), "1700000000123");
        // 2^53 + 1 is not a double: Lua has 2^53.
        assert_eq!(lua_int((1u64 << 53) + 1), "9007199254740992");
        assert_eq!(lua_int(u64::MAX), "18446744073709551616");
    }
}
