//! The metadata entry stored for every key in its bucket hash on every node.
//!
//! Encoded as `{version}|{kind}|{expires_at_ms}|{content}|{entry_hash}` (entry format 2): the
//! Lua scripts read the version as the first 34 bytes, the kind at byte 36 and the entry hash
//! after the last `|`, so the layout is fixed here and in the node crate's Lua
//! (`crates/node/lua/`) only. `content` is the type and checksum of the value the version wrote
//! (see `content`), or `-` for none.
//!
//! The entry hash covers version, kind and expiry but not the content: one version writes one
//! value, so the content adds nothing to what two nodes' digests compare, and leaving it out
//! kept every digest of entry format 1 valid through the in-place conversion.
//!
//! A CRDT key's entry has kind `C`, `S` or `M` and no version of its own (its state merges):
//! its version field holds its entry hash, which the node computes from the state, so two
//! nodes' entries are equal exactly when their states are.

use crate::content::Content;
use crate::crdt::CrdtKind;
use crate::digest;
use crate::hlc::{VERSION_LEN, Version};

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed metadata entry {0:?}")]
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

    pub fn encode(&self) -> String {
        format!(
            "{}|{}|{}",
            Self::body(self.version, self.kind, self.expires_at_ms),
            self.content,
            self.entry_hash
        )
    }

    pub fn parse(raw: &[u8]) -> Result<Meta, MetaParseError> {
        let bad =
            || MetaParseError(String::from_utf8_lossy(&raw[..raw.len().min(80)]).into_owned());
        let text = std::str::from_utf8(raw).map_err(|_| bad())?;
        let mut parts = text.split('|');
        let (Some(version), Some(kind), Some(expiry), Some(content), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        if version.len() != VERSION_LEN {
            return Err(bad());
        }
        let version: Version = version.parse().map_err(|_| bad())?;
        let kind = match kind {
            "v" => EntryKind::Value,
            "t" => EntryKind::Tombstone,
            other => match other.chars().next().and_then(CrdtKind::from_code) {
                Some(k) if other.len() == 1 => EntryKind::Crdt(k),
                _ => return Err(bad()),
            },
        };
        let expiry: u64 = expiry.parse().map_err(|_| bad())?;
        let content = Content::parse(content).ok_or_else(bad)?;
        let entry_hash: u64 = hash.parse().map_err(|_| bad())?;
        if entry_hash >= digest::DIGEST_MODULUS {
            return Err(bad());
        }
        Ok(Meta {
            version,
            kind,
            expires_at_ms: (expiry > 0).then_some(expiry),
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
            assert_eq!(Meta::parse(m.encode().as_bytes()).unwrap(), m);
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
            assert_eq!(&encoded[..34], format!("{:034x}", 0xabc_def));
            assert_eq!(Meta::parse(encoded.as_bytes()).unwrap(), m);
            assert!(
                !m.is_live(0),
                "a key-value read does not see a CRDT as a value"
            );
        }
        assert!(Meta::parse(format!("{}|CS|0|-|1", Version::ZERO).as_bytes()).is_err());
    }

    #[test]
    fn rejects_garbage() {
        for raw in [
            &b""[..],
            b"x|v|0|-|1",
            b"|||||",
            &[0xff, 0xfe],
            b"0000000000000000000000000000000000|q|0|-|1",
            // Entry format 1 (no content field) is not read as format 2.
            b"0000000000000000000000000000000000|v|0|1",
            b"0000000000000000000000000000000000|v|0|s12x|1",
        ] {
            assert!(Meta::parse(raw).is_err());
        }
        let v = Version::ZERO.encode();
        assert!(Meta::parse(format!("{v}|v|0|-|{}", u64::MAX).as_bytes()).is_err());
        assert!(Meta::parse(format!("{v}|v|0|-|1|extra").as_bytes()).is_err());
    }

    #[test]
    fn expiry() {
        let m = Meta::for_string(b"k", Version::ZERO, Some(b"x"), Some(100));
        assert!(m.is_live(99));
        assert!(!m.is_live(100));
        assert!(!Meta::for_string(b"k", Version::ZERO, None, None).is_live(0));
    }
}
