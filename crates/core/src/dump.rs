//! `DUMP` payloads built in Rust, so that a list, set, sorted set or hash that quorumd computes
//! (a list push, a sorted-set increment) can be written whole, with its version, through the
//! write script's `RESTORE … REPLACE ABSTTL` mode, like a value copied from another node.
//!
//! A payload is one RDB object, then the RDB version (2 bytes, little-endian), then the CRC-64
//! of all of that (8 bytes, little-endian), which `RESTORE` checks. The objects use RDB's
//! plain encodings (list 1, set 2, hash 4, sorted set 5), which every Redis since 4.0 and
//! Valkey load and re-encode into their compact forms. The RDB version written is 9 (Redis
//! 5.0), the oldest that knows all four types, so every supported server accepts it.

/// The RDB version written in the footer.
const RDB_VERSION: u16 = 9;

const TYPE_LIST: u8 = 1;
const TYPE_SET: u8 = 2;
const TYPE_HASH: u8 = 4;
const TYPE_ZSET_2: u8 = 5;

/// A collection to write whole. Redis holds no empty collection, so neither does a payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Collection<'a> {
    List(&'a [Vec<u8>]),
    Set(&'a [Vec<u8>]),
    Hash(&'a [(Vec<u8>, Vec<u8>)]),
    /// Members with their scores (not NaN: Redis refuses it).
    SortedSet(&'a [(Vec<u8>, f64)]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    #[error("an empty collection has no DUMP payload: Redis deletes a key that becomes empty")]
    Empty,
    #[error("a sorted-set score is NaN")]
    NanScore,
}

/// The `RESTORE` payload of `value`.
pub fn payload(value: &Collection<'_>) -> Result<Vec<u8>, DumpError> {
    let mut out = Vec::new();
    match value {
        Collection::List(items) | Collection::Set(items) => {
            let ty = if matches!(value, Collection::List(_)) {
                TYPE_LIST
            } else {
                TYPE_SET
            };
            start(&mut out, ty, items.len())?;
            for item in *items {
                put_string(&mut out, item);
            }
        }
        Collection::Hash(fields) => {
            start(&mut out, TYPE_HASH, fields.len())?;
            for (field, value) in *fields {
                put_string(&mut out, field);
                put_string(&mut out, value);
            }
        }
        Collection::SortedSet(members) => {
            if members.iter().any(|(_, score)| score.is_nan()) {
                return Err(DumpError::NanScore);
            }
            start(&mut out, TYPE_ZSET_2, members.len())?;
            for (member, score) in *members {
                put_string(&mut out, member);
                out.extend_from_slice(&score.to_le_bytes());
            }
        }
    }
    finish(&mut out, RDB_VERSION);
    Ok(out)
}

/// The footer: the RDB version, then the CRC-64 of everything before it.
pub(crate) fn finish(out: &mut Vec<u8>, version: u16) {
    out.extend_from_slice(&version.to_le_bytes());
    let crc = crc64(0, out);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn start(out: &mut Vec<u8>, ty: u8, len: usize) -> Result<(), DumpError> {
    if len == 0 {
        return Err(DumpError::Empty);
    }
    out.push(ty);
    put_len(out, len as u64);
    Ok(())
}

/// RDB's length encoding: 6 bits, 14 bits, or a marker byte and 32 or 64 bits big-endian.
pub(crate) fn put_len(out: &mut Vec<u8>, len: u64) {
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.push(0x40 | (len >> 8) as u8);
        out.push(len as u8);
    } else if len <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

pub(crate) fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// CRC-64/Jones as Redis computes it (reflected polynomial 0x95ac9329ac4bc9b5, initial value
/// 0, no final xor): bit by bit, since payloads are built once per write.
fn crc64(mut crc: u64, bytes: &[u8]) -> u64 {
    const POLY: u64 = 0x95ac_9329_ac4b_c9b5;
    for b in bytes {
        crc ^= u64::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_matches_redis_check_value() {
        // Redis's own crc64 test: crc64(0, "123456789") = 0xe9c6d914c4b8d9ca.
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn lengths_use_the_shortest_encoding() {
        let enc = |n| {
            let mut v = Vec::new();
            put_len(&mut v, n);
            v
        };
        assert_eq!(enc(5), [5]);
        assert_eq!(enc(63), [63]);
        assert_eq!(enc(64), [0x40, 64]);
        assert_eq!(enc(16_383), [0x7f, 0xff]);
        assert_eq!(enc(16_384), [0x80, 0, 0, 0x40, 0]);
        assert_eq!(enc(1 << 32), [0x81, 0, 0, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn a_list_payload_is_type_length_items_version_and_checksum() {
        let items = [b"a".to_vec(), b"bc".to_vec()];
        let p = payload(&Collection::List(&items)).unwrap();
        assert_eq!(&p[..8], &[1, 2, 1, b'a', 2, b'b', b'c', 9]);
        assert_eq!(p[8], 0);
        let crc = u64::from_le_bytes(p[9..].try_into().unwrap());
        assert_eq!(crc, crc64(0, &p[..9]));
    }

    #[test]
    fn empty_collections_and_nan_scores_are_refused() {
        assert_eq!(payload(&Collection::Set(&[])), Err(DumpError::Empty));
        let nan = [(b"m".to_vec(), f64::NAN)];
        assert_eq!(
            payload(&Collection::SortedSet(&nan)),
            Err(DumpError::NanScore)
        );
    }
}
