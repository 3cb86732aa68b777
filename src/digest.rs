//! Key placement and the per-bucket digest arithmetic.
//!
//! Each key's metadata lives in bucket `xxh3_64(key) mod B`. Each node keeps, per bucket, the
//! sum modulo 2^48 of the entry hashes of that bucket. A sum is order-independent and can be
//! updated in O(1) by the write script (subtract the old entry hash, add the new one). 48 bits
//! keep every intermediate value exact in Lua's doubles (exact below 2^53).

use xxhash_rust::xxh3::xxh3_64;

/// Entry hashes and digests live in `[0, 2^48)`.
pub const DIGEST_MODULUS: u64 = 1 << 48;
const MASK: u64 = DIGEST_MODULUS - 1;

/// The bucket a key's metadata lives in. `buckets` is a power of two (checked by config).
pub fn bucket_of(key: &[u8], buckets: u32) -> u32 {
    (xxh3_64(key) & (u64::from(buckets) - 1)) as u32
}

/// Hash of one metadata entry (key plus its encoded metadata, without the hash itself).
pub fn entry_hash(key: &[u8], meta_body: &str) -> u64 {
    let mut buf = Vec::with_capacity(key.len() + 1 + meta_body.len());
    buf.extend_from_slice(key);
    buf.push(0);
    buf.extend_from_slice(meta_body.as_bytes());
    xxh3_64(&buf) & MASK
}

/// The digest after replacing an entry hash `old` (0 when the key was absent) by `new`.
/// This is the reference for what the Lua script computes.
pub fn replace(digest: u64, old: u64, new: u64) -> u64 {
    (digest + DIGEST_MODULUS - (old & MASK) + (new & MASK)) & MASK
}

/// Digest of a whole bucket from scratch.
pub fn combine<I: IntoIterator<Item = u64>>(entry_hashes: I) -> u64 {
    entry_hashes.into_iter().fold(0, |d, h| replace(d, 0, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift so the test needs no RNG crate and replays exactly.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// What Lua computes: doubles, floored modulo. Mirrors the script line
    /// `d = (d - old + new) % 2^48`, evaluated in f64 to prove exactness.
    fn lua_replace(d: u64, old: u64, new: u64) -> u64 {
        let m = DIGEST_MODULUS as f64;
        let x = d as f64 - old as f64 + new as f64;
        let r = x - (x / m).floor() * m;
        assert_eq!(r.fract(), 0.0);
        r as u64
    }

    #[test]
    fn lua_double_arithmetic_matches_reference_on_random_data() {
        let mut s = 0x9e37_79b9_7f4a_7c15;
        let mut d_ref = 0u64;
        let mut d_lua = 0u64;
        let mut live: Vec<u64> = Vec::new();
        for _ in 0..200_000 {
            let r = xorshift(&mut s);
            let new = xorshift(&mut s) & MASK;
            let old = if !live.is_empty() && !r.is_multiple_of(3) {
                let i = (r as usize / 3) % live.len();
                std::mem::replace(&mut live[i], new)
            } else {
                live.push(new);
                0
            };
            d_ref = replace(d_ref, old, new);
            d_lua = lua_replace(d_lua, old, new);
            assert_eq!(d_ref, d_lua);
        }
        assert_eq!(d_ref, combine(live.iter().copied()));
    }

    #[test]
    fn digest_is_order_independent() {
        let mut s = 42;
        let hashes: Vec<u64> = (0..1000).map(|_| xorshift(&mut s) & MASK).collect();
        let mut reversed = hashes.clone();
        reversed.reverse();
        assert_eq!(combine(hashes), combine(reversed));
    }

    #[test]
    fn removing_every_entry_returns_to_zero() {
        let mut s = 7;
        let hashes: Vec<u64> = (0..500).map(|_| xorshift(&mut s) & MASK).collect();
        let mut d = combine(hashes.iter().copied());
        for h in hashes {
            d = replace(d, h, 0);
        }
        assert_eq!(d, 0);
    }

    #[test]
    fn buckets_cover_the_range_and_spread_keys() {
        let mut counts = vec![0u32; 64];
        for i in 0..64_000u32 {
            let b = bucket_of(format!("key:{i}").as_bytes(), 64);
            counts[b as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (700..1300).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn entry_hash_depends_on_key_and_meta() {
        let a = entry_hash(b"k", "v1");
        assert_ne!(a, entry_hash(b"k2", "v1"));
        assert_ne!(a, entry_hash(b"k", "v2"));
        assert!(a < DIGEST_MODULUS);
    }
}
