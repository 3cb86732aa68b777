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
//! | sorted set | `len(member) ":" member score`, score as Redis prints it |
//! | list | `index ":" element`, per element (index from 0) |
//! | stream | `len(id) ":" id` then `len(f) ":" f len(v) ":" v` per field, per entry |
//! | other (modules) | the value's `DUMP` |

use crate::digest::DIGEST_MODULUS;
use std::fmt;

/// The Redis type of a value, as its metadata entry records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    String,
    Hash,
    List,
    Set,
    SortedSet,
    Stream,
    /// A module type, checksummed by its `DUMP`.
    Other,
}

impl ValueType {
    pub const ALL: [ValueType; 7] = [
        ValueType::String,
        ValueType::Hash,
        ValueType::List,
        ValueType::Set,
        ValueType::SortedSet,
        ValueType::Stream,
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
            ValueType::Stream => 'x',
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
            ValueType::Stream => "stream",
            ValueType::Other => "other",
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
}
