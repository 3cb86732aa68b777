//! The metadata entry stored for every key in its bucket hash on every node.
//!
//! Entry format 3 is binary, fixed-width fields read by position (the Lua reads them with
//! `lua/shared/entry.lua`; this module and that file are the only places that know the layout):
//!
//! | bytes | field |
//! |---|---|
//! | 17 | version (`Version::to_bytes`: ms, counter, writer id, big-endian) |
//! | 1 | kind: `v` value, `t` tombstone, `C`/`S`/`M` a CRDT |
//! | 6 | entry hash, big-endian |
//! | 1 | content letter: `-` none, else the value's type (`content`) |
//! | 6 | the content checksum, big-endian; only when the letter is not `-` |
//! | 8 | the absolute expiry in ms, big-endian; only when the entry has one |
//!
//! 25 to 39 bytes, so a sub-bucket's hash of a few dozen entries stays in Redis's compact
//! listpack encoding (values up to 64 bytes by default), where entry format 2's text (about 80
//! bytes) made it a hash table: about a third of the memory per key (decision 44).
//!
//! The entry hash covers version, kind and expiry but not the content, and is computed over
//! their text form, `{version hex}|{kind}|{expiry or 0}` (entry format 2's first three fields):
//! one version writes one value, so the content adds nothing to what two nodes' digests
//! compare, and keeping the text form kept every digest valid through the conversions from
//! formats 1 and 2.
//!
//! A CRDT key's entry has kind `C`, `S` or `M` and no version of its own (its state merges):
//! its version field holds its entry hash, which the node computes from the state, so two
//! nodes' entries are equal exactly when their states are.

use crate::content::Content;
use crate::content::ValueType;
use crate::crdt::CrdtKind;
use crate::digest;
use crate::hlc::{VERSION_BYTES, Version};

/// What a metadata entry says about the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A live value (it may still have expired by its TTL).
    Value,
    /// A delete marker; the value is gone.
    Tombstone,
    /// A CRDT: the state merges (see `crdt_store`), the value is its materialised form.
    Crdt(CrdtKind),
}

impl EntryKind {
    pub fn code(self) -> char {
        match self {
            EntryKind::Value => 'v',
            EntryKind::Tombstone => 't',
            EntryKind::Crdt(k) => k.code(),
        }
    }

    pub fn crdt(self) -> Option<CrdtKind> {
        match self {
            EntryKind::Crdt(k) => Some(k),
            _ => None,
        }
    }
}

/// One key's metadata as stored on a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Meta {
    pub version: Version,
    pub kind: EntryKind,
    /// Absolute expiry in ms since the epoch; `None` for no TTL.
    pub expires_at_ms: Option<u64>,
    /// What the version wrote: the value's type and checksum, or `Absent`.
    pub content: Content,
    pub entry_hash: u64,
}

/// An entry's size without its checksum and expiry: version, kind, entry hash, letter.
const ENTRY_MIN_BYTES: usize = VERSION_BYTES + 8;
/// An entry's size with both.
const ENTRY_MAX_BYTES: usize = ENTRY_MIN_BYTES + 6 + 8;
// Redis keeps a hash compact (listpack) while its values are at most `hash-max-listpack-value`
// (64 by default) bytes long; that is what this format is for.
const _: () = assert!(ENTRY_MAX_BYTES <= 64);

/// The low 48 bits, big-endian.
fn u48(n: u64) -> [u8; 6] {
    let b = n.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// A big-endian unsigned integer of at most 8 bytes.
fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed metadata entry (bytes {0})")]
pub struct MetaParseError(pub String);

impl Meta {
    /// Builds the metadata for `key`, computing its entry hash.
    pub fn new(
        key: &[u8],
        version: Version,
        kind: EntryKind,
        expires_at_ms: Option<u64>,
        content: Content,
    ) -> Meta {
        let body = Self::body(version, kind, expires_at_ms);
        Meta {
            version,
            kind,
            expires_at_ms,
            content,
            entry_hash: digest::entry_hash(key, &body),
        }
    }

    /// The entry of a string write: a value with its checksum, or a tombstone.
    pub fn for_string(
        key: &[u8],
        version: Version,
        value: Option<&[u8]>,
        expires_at_ms: Option<u64>,
    ) -> Meta {
        match value {
            Some(v) => Meta::new(
                key,
                version,
                EntryKind::Value,
                expires_at_ms,
                Content::string(v),
            ),
            None => Meta::new(key, version, EntryKind::Tombstone, None, Content::Absent),
        }
    }

    /// The entry of a CRDT key whose state hashes to `entry_hash` and whose materialised value
    /// has `content` (both computed by the node).
    pub fn crdt(kind: CrdtKind, entry_hash: u64, content: Content) -> Meta {
        Meta {
            version: Version {
                ms: 0,
                counter: 0,
                writer: entry_hash,
            },
            kind: EntryKind::Crdt(kind),
            expires_at_ms: None,
            content,
            entry_hash,
        }
    }

    fn body(version: Version, kind: EntryKind, expires_at_ms: Option<u64>) -> String {
        format!(
            "{}|{}|{}",
            version.encode(),
            kind.code(),
            expires_at_ms.unwrap_or(0)
        )
    }

    /// The binary entry (format 3, see the module comment).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_MAX_BYTES);
        out.extend_from_slice(&self.version.to_bytes());
        out.push(self.kind.code() as u8);
        out.extend_from_slice(&u48(self.entry_hash));
        match self.content {
            Content::Absent => out.push(b'-'),
            Content::Value { ty, sum } => {
                out.push(ty.code() as u8);
                out.extend_from_slice(&u48(sum));
            }
        }
        if let Some(at) = self.expires_at_ms {
            out.extend_from_slice(&at.to_be_bytes());
        }
        out
    }

    pub fn parse(raw: &[u8]) -> Result<Meta, MetaParseError> {
        let bad = || MetaParseError(format!("{:02x?}", &raw[..raw.len().min(40)]));
        if raw.len() < ENTRY_MIN_BYTES {
            return Err(bad());
        }
        let version = Version::from_bytes(&raw[..VERSION_BYTES]).ok_or_else(bad)?;
        let kind = match raw[VERSION_BYTES] {
            b'v' => EntryKind::Value,
            b't' => EntryKind::Tombstone,
            other => EntryKind::Crdt(CrdtKind::from_code(other as char).ok_or_else(bad)?),
        };
        let entry_hash = be(&raw[VERSION_BYTES + 1..VERSION_BYTES + 7]);
        let letter = raw[VERSION_BYTES + 7];
        let mut rest = &raw[ENTRY_MIN_BYTES..];
        let content = if letter == b'-' {
            Content::Absent
        } else {
            let ty = ValueType::from_code(letter as char).ok_or_else(bad)?;
            let sum = rest.get(..6).ok_or_else(bad)?;
            rest = &rest[6..];
            Content::Value { ty, sum: be(sum) }
        };
        let expires_at_ms = match rest.len() {
            0 => None,
            8 => Some(be(rest)).filter(|at| *at > 0),
            _ => return Err(bad()),
        };
        Ok(Meta {
            version,
            kind,
            expires_at_ms,
            content,
            entry_hash,
        })
    }

    /// True when the entry is a value whose TTL has passed at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// True when a reader should see a value.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.kind == EntryKind::Value && !self.is_expired(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = Version {
            ms: 1_700_000_000_123,
            counter: 9,
            writer: 0xabc,
        };
        for (kind, exp) in [
            (EntryKind::Value, None),
            (EntryKind::Value, Some(5)),
            (EntryKind::Tombstone, None),
        ] {
            let m = Meta::new(b"some key", v, kind, exp, Content::string(b"x"));
            let encoded = m.encode();
            assert!(encoded.len() <= ENTRY_MAX_BYTES);
            assert_eq!(Meta::parse(&encoded).unwrap(), m);
        }
    }

    #[test]
    fn hash_changes_with_expiry_and_kind() {
        let v = Version {
            ms: 1,
            counter: 0,
            writer: 1,
        };
        let a = Meta::for_string(b"k", v, Some(b"x"), None);
        assert_ne!(
            a.entry_hash,
            Meta::for_string(b"k", v, Some(b"x"), Some(9)).entry_hash
        );
        assert_ne!(
            a.entry_hash,
            Meta::for_string(b"k", v, None, None).entry_hash
        );
        // The content is not in the entry hash (see the module comment).
        assert_eq!(
            a.entry_hash,
            Meta::for_string(b"k", v, Some(b"y"), None).entry_hash
        );
    }

    #[test]
    fn crdt_entries_round_trip_and_carry_their_hash_as_version() {
        for kind in CrdtKind::ALL {
            let m = Meta::crdt(kind, 0xabc_def, Content::set([&b"m"[..]]));
            let encoded = m.encode();
            assert_eq!(
                Version::from_bytes(&encoded[..VERSION_BYTES])
                    .unwrap()
                    .writer,
                0xabc_def
            );
            assert_eq!(Meta::parse(&encoded).unwrap(), m);
            assert!(
                !m.is_live(0),
                "a key-value read does not see a CRDT as a value"
            );
        }
        let mut two_letters = Meta::crdt(CrdtKind::ALL[0], 1, Content::Absent).encode();
        two_letters[VERSION_BYTES] = b'Q';
        assert!(Meta::parse(&two_letters).is_err());
    }

    #[test]
    fn rejects_garbage() {
        let good = Meta::for_string(b"k", Version::ZERO, Some(b"x"), Some(7)).encode();
        let mut unknown_letter = good.clone();
        unknown_letter[VERSION_BYTES + 7] = b'q';
        let mut unknown_kind = good.clone();
        unknown_kind[VERSION_BYTES] = b'q';
        for raw in [
            &b""[..],
            &good[..ENTRY_MIN_BYTES - 1],
            // A checksum cut short, and an expiry of the wrong width.
            &good[..ENTRY_MIN_BYTES + 3],
            &good[..good.len() - 1],
            &[good.as_slice(), b"x"].concat(),
            &unknown_letter,
            &unknown_kind,
            // Entry format 2's text is not read as format 3.
            b"0000000000000000000000000000000000|v|0|-|1",
        ] {
            assert!(Meta::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn entries_stay_within_the_listpack_value_limit() {
        // Redis keeps a hash compact (listpack) while its values are at most
        // `hash-max-listpack-value` (64 by default) bytes long.
        let v = Version {
            ms: u64::from(u32::MAX) << 16,
            counter: 0xff_ffff,
            writer: u64::MAX,
        };
        let longest = Meta::new(
            b"k",
            v,
            EntryKind::Value,
            Some(u64::MAX),
            Content::string(b"x"),
        );
        assert_eq!(longest.encode().len(), ENTRY_MAX_BYTES);
    }

    #[test]
    fn expiry() {
        let m = Meta::for_string(b"k", Version::ZERO, Some(b"x"), Some(100));
        assert!(m.is_live(99));
        assert!(!m.is_live(100));
        assert!(!Meta::for_string(b"k", Version::ZERO, None, None).is_live(0));
    }
}
