//! Where quorumd's keys live on a node: the placement of a user key in a bucket and a
//! sub-bucket, and the names of the reserved keys (metadata, digests, CRDT state) of each bucket.
//!
//! Two placements exist:
//! - `xxh3`: the bucket is the low bits of `xxh3_64(key)` (any power of two up to 2^20), and
//!   every bucket digest lives in one hash, `{prefix}d`. It suits standalone servers only: one
//!   script touches keys of many hash slots.
//! - `slot`: the bucket is the key's Redis Cluster hash slot (16,384 buckets), and every
//!   reserved key of a bucket carries a hash tag that maps to that slot, so every key a script
//!   touches for one bucket lives in the same slot. It serves standalone servers and Redis
//!   Clusters alike; when a slot moves between masters its metadata and digests move with it.
//!
//! Both place the sub-bucket with bits of `xxh3_64(key)` the bucket does not use, so every
//! bucket splits evenly.

use crate::digest::Placement;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use xxhash_rust::xxh3::xxh3_64;

/// Hash slots of a Redis Cluster, and so buckets of the `slot` placement.
pub const SLOTS: u32 = 16384;

/// How user keys are placed in buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// `xxh3_64(key) mod buckets`; standalone servers only.
    #[default]
    Xxh3,
    /// The key's hash slot (CRC16 of the key or of its hash tag, mod 16,384); standalone
    /// servers and Redis Clusters.
    Slot,
}

impl Scheme {
    /// Sub-buckets per bucket when the configuration leaves them unset: 65,536 metadata hashes
    /// under either placement (4,096 × 16, 16,384 × 4), about 15 entries each at a million keys,
    /// well inside Redis's compact listpack encoding (at most 128 entries by default).
    pub fn default_sub_buckets(self) -> u32 {
        match self {
            Scheme::Xxh3 => 16,
            Scheme::Slot => 4,
        }
    }

    /// The name in the configuration and in the layout marker.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Xxh3 => "xxh3",
            Scheme::Slot => "slot",
        }
    }
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, what Redis Cluster hashes with.
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        let mut crc = crc ^ (u16::from(b) << 8);
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

/// The part of a key Redis Cluster hashes: the text between the first `{` and the first `}`
/// after it when that is not empty, else the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The hash slot of a key, as `CLUSTER KEYSLOT` computes it.
pub fn key_slot(key: &[u8]) -> u32 {
    u32::from(crc16(hash_tag(key))) % SLOTS
}

/// For every slot, the shortest tag (then the first in order of the numbers written in base 36)
/// that hashes to it. Reserved keys of a bucket embed `{tag}` so that they live in its slot.
/// This table is part of the layout on the nodes: the search must never change.
static SLOT_TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut tags = vec![String::new(); SLOTS as usize];
    let mut missing = SLOTS;
    let mut n: u64 = 0;
    while missing > 0 {
        let tag = base36(n);
        let slot = key_slot(tag.as_bytes()) as usize;
        if tags[slot].is_empty() {
            tags[slot] = tag;
            missing -= 1;
        }
        n += 1;
    }
    tags
});

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// The hash tag (without braces) whose slot is `slot`.
pub fn slot_tag(slot: u32) -> &'static str {
    &SLOT_TAGS[(slot % SLOTS) as usize]
}

/// Where a bucket's digest is stored in its digest key. Either way it is an int64 that grows
/// by the deltas of `add_digest` (crates/node/lua/shared/digest.lua), read mod 2^48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestField {
    /// Field `bucket` (decimal) of a hash that holds many buckets' digests (`xxh3`).
    Hash(u32),
    /// The key is a string holding this bucket's digest alone (`slot`): an idle exchange reads
    /// a standalone server's 16,384 of them with a few `MGET`s instead of one `HGET` each.
    String,
}

impl DigestField {
    /// The field as the Lua scripts take it (`add_digest`): the bucket in decimal, or empty
    /// for a string key.
    pub fn arg(self) -> String {
        match self {
            DigestField::Hash(bucket) => bucket.to_string(),
            DigestField::String => String::new(),
        }
    }
}

/// A node's bucket digest keys ([`Layout::digest_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestKeys {
    /// One hash holding the digests of buckets `0..buckets`, field = bucket (`xxh3`).
    Hash { key: String, buckets: u32 },
    /// One string per bucket, in bucket order (`slot`).
    Strings(Vec<String>),
}

impl DigestKeys {
    /// The keys themselves.
    pub fn keys(&self) -> Vec<String> {
        match self {
            DigestKeys::Hash { key, .. } => vec![key.clone()],
            DigestKeys::Strings(keys) => keys.clone(),
        }
    }
}

/// The layout of quorumd's keys on a node, resolved from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub prefix: String,
    pub scheme: Scheme,
    /// Buckets: a power of two for `xxh3`, 16,384 for `slot`.
    pub buckets: u32,
    /// Sub-buckets per bucket, a power of two.
    pub sub_buckets: u32,
}

impl Layout {
    /// The bucket and sub-bucket of a user key.
    pub fn place(&self, key: &[u8]) -> Placement {
        match self.scheme {
            Scheme::Xxh3 => crate::digest::placement(key, self.buckets, self.sub_buckets),
            Scheme::Slot => Placement {
                bucket: key_slot(key),
                sub: (xxh3_64(key) & (u64::from(self.sub_buckets) - 1)) as u32,
            },
        }
    }

    /// What goes between the prefix's letter and the rest of a bucket's reserved key names:
    /// `:{bucket}` under `xxh3`, `{tag}` under `slot`.
    fn bucket_part(&self, bucket: u32) -> String {
        match self.scheme {
            Scheme::Xxh3 => format!(":{bucket}"),
            Scheme::Slot => format!("{{{}}}", slot_tag(bucket)),
        }
    }

    /// The hash holding the metadata of one sub-bucket (field = user key).
    pub fn meta_key(&self, bucket: u32, sub: u32) -> String {
        format!("{}m{}:{sub}", self.prefix, self.bucket_part(bucket))
    }

    /// The S metadata hashes that together hold one bucket's metadata, in sub-bucket order.
    pub fn bucket_meta_keys(&self, bucket: u32) -> Vec<String> {
        (0..self.sub_buckets)
            .map(|sub| self.meta_key(bucket, sub))
            .collect()
    }

    /// The key holding the bucket's digest: under `xxh3` one hash for every bucket, the digest
    /// in field `bucket` (decimal); under `slot` one string per slot, the digest alone (see
    /// [`Layout::digest_field`]).
    pub fn digest_key(&self, bucket: u32) -> String {
        match self.scheme {
            Scheme::Xxh3 => format!("{}d", self.prefix),
            Scheme::Slot => format!("{}d{}", self.prefix, self.bucket_part(bucket)),
        }
    }

    /// Where in [`Layout::digest_key`] the bucket's digest is.
    pub fn digest_field(&self, bucket: u32) -> DigestField {
        match self.scheme {
            Scheme::Xxh3 => DigestField::Hash(bucket),
            Scheme::Slot => DigestField::String,
        }
    }

    /// Every bucket digest key of the node, with the buckets whose digests it holds.
    pub fn digest_keys(&self) -> DigestKeys {
        match self.scheme {
            Scheme::Xxh3 => DigestKeys::Hash {
                key: self.digest_key(0),
                buckets: self.buckets,
            },
            Scheme::Slot => {
                DigestKeys::Strings((0..self.buckets).map(|b| self.digest_key(b)).collect())
            }
        }
    }

    /// The hash holding the bucket's S sub-digests (field = sub-bucket, decimal).
    pub fn sub_digest_key(&self, bucket: u32) -> String {
        match self.scheme {
            Scheme::Xxh3 => format!("{}d:{bucket}", self.prefix),
            Scheme::Slot => format!("{}d{}:s", self.prefix, self.bucket_part(bucket)),
        }
    }

    /// What follows the reserved name of a group of quorumd's own keys that one script touches
    /// together (a lock and its fence; a queue's hashes and its items' fences): nothing under
    /// `xxh3`, the tag of `group`'s slot under `slot`, so that the group shares a slot.
    pub fn group_tag(&self, group: &str) -> String {
        match self.scheme {
            Scheme::Xxh3 => String::new(),
            Scheme::Slot => self.bucket_part(key_slot(group.as_bytes())),
        }
    }

    /// The hash holding a CRDT key's state. Under `slot` the tag comes before the user key, so
    /// the key's own braces cannot move the state to another slot.
    pub fn state_key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = match self.scheme {
            Scheme::Xxh3 => format!("{}c:", self.prefix),
            Scheme::Slot => format!(
                "{}c{}:",
                self.prefix,
                self.bucket_part(self.place(key).bucket)
            ),
        }
        .into_bytes();
        out.extend_from_slice(key);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_and_slots_match_redis() {
        // The check value of CRC16/XMODEM, and slots `CLUSTER KEYSLOT` answers.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{user1000}.followers"), key_slot(b"user1000"));
        // An empty tag hashes the whole key; only the first braces count.
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"no-close{"), b"no-close{");
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        for slot in 0..SLOTS {
            assert_eq!(key_slot(slot_tag(slot).as_bytes()), slot, "slot {slot}");
        }
        // Pinned: the table is part of the layout on the nodes.
        assert_eq!(slot_tag(key_slot(b"0")), "0");
        assert!(SLOT_TAGS.iter().all(|t| t.len() <= 4));
    }

    fn slot_layout() -> Layout {
        Layout {
            prefix: "qd:".into(),
            scheme: Scheme::Slot,
            buckets: SLOTS,
            sub_buckets: 16,
        }
    }

    #[test]
    fn slot_layout_keeps_every_reserved_key_of_a_bucket_in_its_slot() {
        let l = slot_layout();
        for key in [
            &b"plain"[..],
            b"{tagged}x",
            b"odd}{braces",
            b"",
            b"\xff\x00bin",
        ] {
            let p = l.place(key);
            assert_eq!(p.bucket, key_slot(key));
            assert!(p.sub < 16);
            for reserved in [
                l.meta_key(p.bucket, p.sub).into_bytes(),
                l.digest_key(p.bucket).into_bytes(),
                l.sub_digest_key(p.bucket).into_bytes(),
                l.state_key(key),
            ] {
                assert_eq!(
                    key_slot(&reserved),
                    p.bucket,
                    "{}",
                    String::from_utf8_lossy(&reserved)
                );
            }
        }
        let DigestKeys::Strings(keys) = l.digest_keys() else {
            panic!("slot digests are strings")
        };
        assert_eq!(keys.len(), SLOTS as usize);
        for b in [0, 1, 12182, SLOTS - 1] {
            assert_eq!(keys[b as usize], l.digest_key(b));
            assert_eq!(key_slot(keys[b as usize].as_bytes()), b);
            assert_eq!(l.digest_field(b), DigestField::String);
            assert_eq!(l.digest_field(b).arg(), "");
        }
        assert_eq!(l.digest_key(key_slot(b"0")), "qd:d{0}");
    }

    #[test]
    fn xxh3_layout_keeps_its_names() {
        let l = Layout {
            prefix: "qd:".into(),
            scheme: Scheme::Xxh3,
            buckets: 4096,
            sub_buckets: 16,
        };
        assert_eq!(l.meta_key(12, 3), "qd:m:12:3");
        assert_eq!(l.digest_key(12), "qd:d");
        assert_eq!(l.sub_digest_key(12), "qd:d:12");
        assert_eq!(l.state_key(b"k"), b"qd:c:k");
        assert_eq!(
            l.digest_keys(),
            DigestKeys::Hash {
                key: "qd:d".into(),
                buckets: 4096
            }
        );
        assert_eq!(l.digest_field(12), DigestField::Hash(12));
        assert_eq!(l.digest_field(12).arg(), "12");
        assert_eq!(l.place(b"k"), crate::digest::placement(b"k", 4096, 16));
    }

    /// `quorumd convert` merges sub-bucket i into i mod S' when S' is lower: true only because
    /// both placements take the sub-bucket from the low bits of the same hash.
    #[test]
    fn fewer_sub_buckets_are_the_low_bits_of_more() {
        for scheme in [Scheme::Xxh3, Scheme::Slot] {
            let buckets = if scheme == Scheme::Slot { SLOTS } else { 4096 };
            let layout = |sub_buckets| Layout {
                prefix: "qd:".into(),
                scheme,
                buckets,
                sub_buckets,
            };
            let (more, fewer) = (layout(16), layout(4));
            for i in 0..2_000u32 {
                let key = format!("k{i}");
                let (a, b) = (more.place(key.as_bytes()), fewer.place(key.as_bytes()));
                assert_eq!(a.bucket, b.bucket, "{key}");
                assert_eq!(a.sub % 4, b.sub, "{key} under {scheme:?}");
            }
        }
        assert_eq!(Scheme::Xxh3.default_sub_buckets() * 4096, 65_536);
        assert_eq!(Scheme::Slot.default_sub_buckets() * SLOTS, 65_536);
    }

    #[test]
    fn slot_sub_buckets_split_every_slot_evenly() {
        let l = Layout {
            sub_buckets: 4,
            ..slot_layout()
        };
        let mut counts = [0u32; 4];
        for i in 0..40_000u32 {
            let k = format!("{{same}}:{i}");
            counts[l.place(k.as_bytes()).sub as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }
}
