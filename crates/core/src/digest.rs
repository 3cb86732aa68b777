//! Key placement and the two-level digest arithmetic.
//!
//! Each key's metadata lives in bucket `xxh3_64(key) mod B` and, within it, in one of S
//! sub-buckets chosen by the next bits of the same hash. Each node keeps, per sub-bucket, the
//! sum modulo 2^48 of the entry hashes of that sub-bucket, and per bucket the sum of its entry
//! hashes (which is also the sum of its sub-digests). A sum is order-independent and can be
//! updated in O(1) by the write script (subtract the old entry hash, add the new one) on both
//! levels at once. 48 bits keep every delta exact in Lua's doubles (exact below 2^53). A node
//! stores each digest as an int64 field that one `HINCRBY` per update moves (the delta taken
//! mod 2^48, so the field only grows, and folded back by 2^62 before it could overflow): the
//! field's value mod 2^48 is the digest.

use xxhash_rust::xxh3::xxh3_64;

/// Entry hashes and digests live in `[0, 2^48)`.
pub const DIGEST_MODULUS: u64 = 1 << 48;
const MASK: u64 = DIGEST_MODULUS - 1;

/// Where a key's metadata lives: its bucket, and its sub-bucket within that bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Placement {
    pub bucket: u32,
    pub sub: u32,
}

/// The bucket and sub-bucket of a key. `buckets` and `sub_buckets` are powers of two (checked
/// by config). The bucket takes the low log2(B) bits of `xxh3_64(key)` and the sub-bucket the
/// next log2(S) bits, so the sub-bucket is independent of the bucket (every bucket splits
/// evenly) and the bucket of a key does not depend on S.
pub fn placement(key: &[u8], buckets: u32, sub_buckets: u32) -> Placement {
    let h = xxh3_64(key);
    Placement {
        bucket: (h & (u64::from(buckets) - 1)) as u32,
        sub: ((h >> buckets.trailing_zeros()) & (u64::from(sub_buckets) - 1)) as u32,
    }
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

    /// What `add_digest` (crates/node/lua/shared/digest.lua) does to a node's digest field:
    /// the delta reduced with Lua's floored modulo in doubles, added by `HINCRBY` in int64,
    /// and 2^62 taken off once the field reaches it. Returns the field and whether it folded.
    fn lua_add(field: i64, old: u64, new: u64) -> (i64, bool) {
        const FOLD: i64 = 1 << 62;
        let m = DIGEST_MODULUS as f64;
        let x = new as f64 - old as f64;
        let delta = x - (x / m).floor() * m;
        assert_eq!(delta.fract(), 0.0);
        assert!((0.0..m).contains(&delta));
        let field = field.checked_add(delta as i64).expect("HINCRBY overflow");
        if field >= FOLD {
            (field - FOLD, true)
        } else {
            (field, false)
        }
    }

    #[test]
    fn lua_field_arithmetic_matches_reference_on_random_data() {
        let mut s = 0x9e37_79b9_7f4a_7c15;
        let mut d_ref = 0u64;
        let mut field = 0i64;
        let mut folds = 0;
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
            let folded;
            (field, folded) = lua_add(field, old, new);
            folds += usize::from(folded);
            assert_eq!(field.rem_euclid(DIGEST_MODULUS as i64) as u64, d_ref);
        }
        assert_eq!(d_ref, combine(live.iter().copied()));
        // The run is long enough to cross 2^62, so the fold is checked too.
        assert!(folds > 0);
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
            let b = placement(format!("key:{i}").as_bytes(), 64, 16).bucket;
            counts[b as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (700..1300).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn sub_buckets_split_every_bucket_evenly() {
        // 4 buckets × 16 sub-buckets: every (bucket, sub) cell gets about 1000 of 64,000 keys.
        // A sub-bucket taken from the bucket's own bits would leave most cells empty.
        let mut counts = vec![0u32; 64];
        for i in 0..64_000u32 {
            let p = placement(format!("key:{i}").as_bytes(), 4, 16);
            assert!(p.bucket < 4 && p.sub < 16, "{p:?}");
            counts[(p.bucket * 16 + p.sub) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (700..1300).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn the_bucket_does_not_depend_on_the_sub_bucket_count() {
        for i in 0..2000u32 {
            let key = format!("k{i}");
            let one = placement(key.as_bytes(), 4096, 1);
            assert_eq!(one.sub, 0);
            for s in [2, 16, 1024] {
                assert_eq!(placement(key.as_bytes(), 4096, s).bucket, one.bucket);
            }
            assert_eq!(
                u64::from(one.bucket),
                xxh3_64(key.as_bytes()) % 4096,
                "bucket = xxh3_64 mod B"
            );
        }
    }

    /// What the write script computes for one batch, in doubles: deltas accumulated per
    /// digest field (`delta = (delta - old + new) % 2^48`), then one update per field
    /// (`d = (d + delta) % 2^48`), on the bucket level and the sub-bucket level alike.
    fn lua_batch(digests: &mut [u64], updates: &[(usize, u64, u64)]) {
        let m = DIGEST_MODULUS as f64;
        let modulo = |x: f64| {
            let r = x - (x / m).floor() * m;
            assert_eq!(r.fract(), 0.0);
            assert!(
                x.abs() < (1u64 << 50) as f64,
                "intermediate {x} is not exact"
            );
            r
        };
        let mut deltas: std::collections::HashMap<usize, f64> = Default::default();
        for &(field, old, new) in updates {
            let d = deltas.entry(field).or_insert(0.0);
            *d = modulo(*d - old as f64 + new as f64);
        }
        for (field, delta) in deltas {
            digests[field] = modulo(digests[field] as f64 + delta) as u64;
        }
    }

    #[test]
    fn both_digest_levels_match_the_reference_and_each_other() {
        const B: u32 = 4;
        const S: u32 = 8;
        let mut s = 0x2545_f491_4f6c_dd1d;
        // Live entries: key index → (placement, entry hash).
        let mut live: Vec<(Placement, u64)> = Vec::new();
        let mut buckets = vec![0u64; B as usize];
        let mut subs = vec![0u64; (B * S) as usize];
        for _ in 0..20_000 {
            // A batch of up to 8 writes, as APPLY takes them.
            let mut bucket_updates = Vec::new();
            let mut sub_updates = Vec::new();
            for _ in 0..(xorshift(&mut s) % 8 + 1) {
                let r = xorshift(&mut s);
                let new = xorshift(&mut s) & MASK;
                let (p, old) = if !live.is_empty() && !r.is_multiple_of(3) {
                    let i = (r as usize / 3) % live.len();
                    (live[i].0, std::mem::replace(&mut live[i].1, new))
                } else {
                    let p = placement(&r.to_le_bytes(), B, S);
                    live.push((p, new));
                    (p, 0)
                };
                bucket_updates.push((p.bucket as usize, old, new));
                sub_updates.push(((p.bucket * S + p.sub) as usize, old, new));
            }
            lua_batch(&mut buckets, &bucket_updates);
            lua_batch(&mut subs, &sub_updates);
        }
        for b in 0..B {
            let in_bucket = || live.iter().filter(move |(p, _)| p.bucket == b);
            assert_eq!(buckets[b as usize], combine(in_bucket().map(|(_, h)| *h)));
            let sub_digests = &subs[(b * S) as usize..((b + 1) * S) as usize];
            assert_eq!(
                buckets[b as usize],
                combine(sub_digests.iter().copied()),
                "a bucket digest is the sum of its sub-digests"
            );
            for (sub, d) in sub_digests.iter().enumerate() {
                let hashes = in_bucket()
                    .filter(|(p, _)| p.sub == sub as u32)
                    .map(|(_, h)| *h);
                assert_eq!(*d, combine(hashes), "bucket {b} sub {sub}");
            }
        }
    }

    #[test]
    fn entry_hash_depends_on_key_and_meta() {
        let a = entry_hash(b"k", "v1");
        assert_ne!(a, entry_hash(b"k2", "v1"));
        assert_ne!(a, entry_hash(b"k", "v2"));
        assert!(a < DIGEST_MODULUS);
    }
}
