//! HyperLogLog values as redis-server 7.0 stores them, byte for byte: a 16-byte header
//! ("HYLL", the encoding, three unused bytes, the cached cardinality in 8 little-endian bytes
//! whose top bit marks it stale), then 16384 six-bit registers, either dense (12288 bytes) or
//! sparse (ZERO, XZERO and VAL run-length opcodes). Pure: the commands in `hyperloglog.rs`
//! read and write these bytes through the store.
//!
//! Written from the behaviour of Redis's hyperloglog.c (its opcodes, its promotion rule, the
//! order in which it edits and merges opcodes, and Ertl's estimator of 7.0's `hllCount`), so
//! that a client reading the key sees the bytes redis-server would hold.

/// Registers are addressed by the hash's low 14 bits.
const P: u32 = 14;
pub const REGISTERS: usize = 1 << P;
/// The bits of the hash left for the run of zeros (its count is at most Q + 1).
const Q: u32 = 64 - P;
const HEADER: usize = 16;
/// A dense value: the header, then 16384 registers of 6 bits.
pub const DENSE_SIZE: usize = HEADER + (REGISTERS * 6).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
/// `hll-sparse-max-bytes`'s default: a sparse value that would grow past it turns dense.
const SPARSE_MAX_BYTES: usize = 3000;
const VAL_MAX_VALUE: u8 = 32;
const VAL_MAX_LEN: usize = 4;
const ZERO_MAX_LEN: usize = 64;
const XZERO_MAX_LEN: usize = 16384;

/// Why a value cannot be used as a HyperLogLog, each answered with Redis's own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not an HLL at all: "WRONGTYPE Key is not a valid HyperLogLog string value."
    NotHll,
    /// The header is right but the registers are not: "INVALIDOBJ Corrupted HLL object
    /// detected".
    Corrupt,
}

/// MurmurHash64A, as Redis uses it (little-endian blocks, whatever the machine).
pub fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut blocks = data.chunks_exact(8);
    for block in &mut blocks {
        let mut word = [0u8; 8];
        word.copy_from_slice(block);
        let mut k = u64::from_le_bytes(word).wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^ (h >> R)
}

/// The register an element falls in and the count it offers (the position of the first set
/// bit of the rest of its hash, 1 to Q + 1).
pub fn register_and_count(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    // A sentinel bit bounds the run, as Redis does.
    let rest = (hash >> P) | (1 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// A new, empty HLL: sparse, one XZERO opcode covering every register, cardinality 0.
pub fn empty() -> Vec<u8> {
    let mut v = header(SPARSE);
    // 16384 registers fit one XZERO opcode exactly.
    let run = REGISTERS.min(XZERO_MAX_LEN) - 1;
    v.extend_from_slice(&[0x40 | (run >> 8) as u8, (run & 0xff) as u8]);
    v
}

fn header(encoding: u8) -> Vec<u8> {
    let mut v = b"HYLL".to_vec();
    v.extend_from_slice(&[encoding, 0, 0, 0]);
    v.extend_from_slice(&[0; 8]);
    v
}

/// Redis's `isHLLObjectOrReply`: long enough for the header, the magic, a known encoding,
/// and a dense value of the exact size.
pub fn check(value: &[u8]) -> Result<(), Invalid> {
    let ok = value.len() >= HEADER
        && value.starts_with(b"HYLL")
        && match value.get(4) {
            Some(&DENSE) => value.len() == DENSE_SIZE,
            Some(&SPARSE) => true,
            _ => false,
        };
    if ok { Ok(()) } else { Err(Invalid::NotHll) }
}

pub fn is_sparse(value: &[u8]) -> bool {
    value.get(4) == Some(&SPARSE)
}

/// The cached cardinality, when it is not stale.
pub fn cached_count(value: &[u8]) -> Option<u64> {
    let card: [u8; 8] = value.get(8..16)?.try_into().ok()?;
    (card[7] & 0x80 == 0).then(|| u64::from_le_bytes(card))
}

fn set_cached_count(value: &mut [u8], count: u64) {
    if let Some(card) = value.get_mut(8..16) {
        card.copy_from_slice(&count.to_le_bytes());
    }
}

pub fn invalidate_cache(value: &mut [u8]) {
    if let Some(b) = value.get_mut(15) {
        *b |= 0x80;
    }
}

/// A dense register: 6 bits, least significant first, possibly across two bytes (a byte past
/// the end reads as 0, as Redis's trailing NUL does).
fn dense_get(regs: &[u8], i: usize) -> u8 {
    let (byte, fb) = (i * 6 / 8, (i * 6) & 7);
    let b0 = u16::from(regs.get(byte).copied().unwrap_or(0));
    let b1 = u16::from(regs.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> fb) | (b1 << (8 - fb))) & 63) as u8
}

fn dense_set(regs: &mut [u8], i: usize, v: u8) {
    let (byte, fb) = (i * 6 / 8, (i * 6) & 7);
    let v = u16::from(v & 63);
    if let Some(b) = regs.get_mut(byte) {
        *b = ((u16::from(*b) & !(63 << fb)) | (v << fb)) as u8;
    }
    // Only when the register crosses into the next byte.
    if fb > 2
        && let Some(b) = regs.get_mut(byte + 1)
    {
        *b = ((u16::from(*b) & !(63 >> (8 - fb))) | (v >> (8 - fb))) as u8;
    }
}

/// One sparse opcode: a run of `len` registers holding `value` (0 for ZERO and XZERO), and
/// how many bytes it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Op {
    value: u8,
    len: usize,
    bytes: usize,
}

/// The opcode at `p`; an XZERO cut short by the end of the value reads its missing byte as 0
/// (Redis's trailing NUL).
fn op_at(s: &[u8], p: usize) -> Op {
    let b = s.get(p).copied().unwrap_or(0);
    match b & 0xc0 {
        0x00 => Op {
            value: 0,
            len: usize::from(b & 0x3f) + 1,
            bytes: 1,
        },
        0x40 => Op {
            value: 0,
            len: ((usize::from(b & 0x3f) << 8) | usize::from(s.get(p + 1).copied().unwrap_or(0)))
                + 1,
            bytes: 2,
        },
        _ => Op {
            value: ((b >> 2) & 0x1f) + 1,
            len: usize::from(b & 3) + 1,
            bytes: 1,
        },
    }
}

fn push_zeros(out: &mut Vec<u8>, len: usize) {
    if len > ZERO_MAX_LEN {
        let l = len - 1;
        out.extend_from_slice(&[0x40 | ((l >> 8) & 0x3f) as u8, (l & 0xff) as u8]);
    } else {
        out.push((len - 1) as u8);
    }
}

fn val_byte(value: u8, len: usize) -> u8 {
    0x80 | ((value - 1) << 2) | (len - 1) as u8
}

/// Every register of a sparse value, or `None` when its runs do not cover exactly 16384
/// registers (what redis-server 7.0.15's `hllSparseToDense` and `hllMerge` refuse: a VAL run
/// past the end, or runs whose total is not 16384).
fn sparse_registers(value: &[u8]) -> Option<Vec<u8>> {
    let mut regs = vec![0u8; REGISTERS];
    let (mut p, mut idx) = (HEADER, 0usize);
    while p < value.len() {
        let op = op_at(value, p);
        if op.value > 0 {
            regs.get_mut(idx..idx + op.len)?.fill(op.value);
        }
        idx += op.len;
        p += op.bytes;
    }
    (idx == REGISTERS).then_some(regs)
}

/// Every register of a checked HLL value.
pub fn registers(value: &[u8]) -> Result<Vec<u8>, Invalid> {
    if is_sparse(value) {
        sparse_registers(value).ok_or(Invalid::Corrupt)
    } else {
        let regs = value.get(HEADER..).unwrap_or_default();
        Ok((0..REGISTERS).map(|i| dense_get(regs, i)).collect())
    }
}

/// `hllSparseToDense`: the same header (cached cardinality included) with the dense encoding.
/// A dense value is returned as it is.
pub fn to_dense(value: &[u8]) -> Result<Vec<u8>, Invalid> {
    if !is_sparse(value) {
        return Ok(value.to_vec());
    }
    let regs = sparse_registers(value).ok_or(Invalid::Corrupt)?;
    let mut dense = value.get(..HEADER).unwrap_or_default().to_vec();
    if let Some(e) = dense.get_mut(4) {
        *e = DENSE;
    }
    dense.resize(DENSE_SIZE, 0);
    let body = dense.get_mut(HEADER..).unwrap_or_default();
    for (i, &r) in regs.iter().enumerate() {
        dense_set(body, i, r);
    }
    Ok(dense)
}

/// Raises register `index` to `count` in a checked HLL value: whether it changed. A sparse
/// value is edited as Redis's `hllSparseSet` edits it, and turns dense when the count does
/// not fit a VAL opcode or the value would grow past `SPARSE_MAX_BYTES`.
pub fn set(value: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Invalid> {
    if !is_sparse(value) {
        let regs = value.get_mut(HEADER..).unwrap_or_default();
        if count > dense_get(regs, index) {
            dense_set(regs, index, count);
            return Ok(true);
        }
        return Ok(false);
    }
    if count > VAL_MAX_VALUE {
        return promote(value, index, count);
    }
    // The opcode covering the register, the one before it, and its first register.
    let (mut p, mut prev, mut first) = (HEADER, None, 0usize);
    let mut op = None;
    while p < value.len() {
        let o = op_at(value, p);
        if index < first + o.len {
            op = Some(o);
            break;
        }
        prev = Some(p);
        p += o.bytes;
        first += o.len;
    }
    let Some(op) = op else {
        return Err(Invalid::Corrupt);
    };
    // In place when the opcode covers this register alone (or is a lower VAL of one).
    if op.value > 0 && op.value >= count {
        return Ok(false);
    }
    if op.len == 1 && op.bytes == 1 {
        if let Some(b) = value.get_mut(p) {
            *b = val_byte(count, 1);
        }
    } else {
        // Split the run: what comes before the register, the register, what comes after.
        let last = first + op.len - 1;
        let mut seq = Vec::with_capacity(5);
        if op.value == 0 {
            if index != first {
                push_zeros(&mut seq, index - first);
            }
            seq.push(val_byte(count, 1));
            if index != last {
                push_zeros(&mut seq, last - index);
            }
        } else {
            if index != first {
                seq.push(val_byte(op.value, index - first));
            }
            seq.push(val_byte(count, 1));
            if index != last {
                seq.push(val_byte(op.value, last - index));
            }
        }
        if seq.len() > op.bytes && value.len() + seq.len() - op.bytes > SPARSE_MAX_BYTES {
            return promote(value, index, count);
        }
        let end = (p + op.bytes).min(value.len());
        value.splice(p..end, seq);
    }
    merge_adjacent(value, prev.unwrap_or(HEADER));
    invalidate_cache(value);
    Ok(true)
}

/// Joins equal neighbouring VAL opcodes, scanning at most five opcodes from `p` as Redis
/// does after an edit (so its bytes, not only its registers, stay the same as Redis's).
fn merge_adjacent(value: &mut Vec<u8>, mut p: usize) {
    let mut scan = 5;
    while p < value.len() && scan > 0 {
        scan -= 1;
        let o = op_at(value, p);
        if o.value == 0 {
            p += o.bytes;
            continue;
        }
        if let Some(&next) = value.get(p + 1)
            && next & 0x80 != 0
        {
            let n = op_at(value, p + 1);
            if n.value == o.value && o.len + n.len <= VAL_MAX_LEN {
                value[p + 1] = val_byte(o.value, o.len + n.len);
                value.remove(p);
                continue;
            }
        }
        p += 1;
    }
}

fn promote(value: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Invalid> {
    *value = to_dense(value)?;
    set(value, index, count)
}

/// PFADD of one element: whether a register changed.
pub fn add(value: &mut Vec<u8>, element: &[u8]) -> Result<bool, Invalid> {
    let (index, count) = register_and_count(element);
    set(value, index, count)
}

/// The registers' maximum with those of a checked HLL value (Redis's `hllMerge`).
pub fn merge_into(max: &mut [u8], value: &[u8]) -> Result<(), Invalid> {
    for (m, r) in max.iter_mut().zip(registers(value)?) {
        *m = (*m).max(r);
    }
    Ok(())
}

/// PFMERGE's destination: `dest` (a checked HLL, or `empty()`), dense if `dense` (some
/// source was), then raised register by register to `max` as Redis does, the cache stale.
pub fn merged(mut dest: Vec<u8>, max: &[u8], dense: bool) -> Result<Vec<u8>, Invalid> {
    if dense {
        dest = to_dense(&dest)?;
    }
    for (i, &m) in max.iter().enumerate() {
        // Redis ignores a failure here: the destination was checked as a source already.
        if m > 0 {
            let _ = set(&mut dest, i, m);
        }
    }
    invalidate_cache(&mut dest);
    Ok(dest)
}

/// The cardinality of a checked HLL value from its registers, and the value with the count
/// cached (what PFCOUNT of one key stores). A sparse value whose runs do not cover the
/// registers is corrupt.
pub fn count_and_cache(value: &[u8]) -> Result<(u64, Vec<u8>), Invalid> {
    let mut histogram = [0u64; 64];
    if is_sparse(value) {
        let (mut p, mut idx) = (HEADER, 0usize);
        while p < value.len() {
            let op = op_at(value, p);
            idx += op.len;
            histogram[usize::from(op.value & 63)] += op.len as u64;
            p += op.bytes;
        }
        if idx != REGISTERS {
            return Err(Invalid::Corrupt);
        }
    } else {
        let regs = value.get(HEADER..).unwrap_or_default();
        for i in 0..REGISTERS {
            histogram[usize::from(dense_get(regs, i))] += 1;
        }
    }
    let count = estimate(&histogram);
    let mut cached = value.to_vec();
    set_cached_count(&mut cached, count);
    Ok((count, cached))
}

/// The cardinality of registers given one per byte (PFCOUNT of several keys).
pub fn count_registers(regs: &[u8]) -> u64 {
    let mut histogram = [0u64; 64];
    for &r in regs {
        histogram[usize::from(r & 63)] += 1;
    }
    estimate(&histogram)
}

/// Ertl's estimator ("New cardinality estimation algorithms for HyperLogLog sketches",
/// arXiv:1702.01284) as 7.0's `hllCount` computes it, in doubles, rounded half away from 0.
fn estimate(histogram: &[u64; 64]) -> u64 {
    let m = REGISTERS as f64;
    let q = Q as usize;
    let mut z = m * tau((m - histogram[q + 1] as f64) / m);
    for j in (1..=q).rev() {
        z += histogram[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(histogram[0] as f64 / m);
    const ALPHA_INF: f64 = 0.721_347_520_444_481_7;
    let e = ALPHA_INF * m * m / z;
    // Redis's llroundl gives LLONG_MIN for an infinite estimate (every register at 51 or
    // more, which no hash gives), 2^63 once cast back to unsigned on x86-64.
    if e.is_finite() && e.abs() < 9.2e18 {
        e.round() as u64
    } else {
        1 << 63
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if before == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        // `powf`, as C's pow(…, 2): the libm call, not a multiplication, for the same bits.
        z -= (1.0 - x).powf(2.0) * y;
        if before == z {
            return z / 3.0;
        }
    }
}

/// PFDEBUG DECODE: a sparse value's opcodes as Redis prints them.
pub fn decode(value: &[u8]) -> String {
    let mut out = Vec::new();
    let mut p = HEADER;
    while p < value.len() {
        let b = value.get(p).copied().unwrap_or(0);
        let op = op_at(value, p);
        out.push(match b & 0xc0 {
            // Redis's letters: z for ZERO, Z for XZERO.
            0x00 => format!("z:{}", op.len),
            0x40 => format!("Z:{}", op.len),
            _ => format!("v:{},{}", op.value, op.len),
        });
        p += op.bytes;
    }
    out.join(" ")
}

/// A dense value's registers, one per element (PFDEBUG GETREG after its conversion).
pub fn dense_registers(value: &[u8]) -> Vec<u8> {
    let regs = value.get(HEADER..).unwrap_or_default();
    (0..REGISTERS).map(|i| dense_get(regs, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur_and_registers_match_redis() {
        // `PFADD h a b c` on redis-server 7.0.15: registers 8436 (1), 12711 (2), 15780 (1).
        let mut h = empty();
        for e in [&b"a"[..], b"b", b"c"] {
            assert!(add(&mut h, e).unwrap());
        }
        assert_eq!(decode(&h), "Z:8436 v:1,1 Z:4274 v:2,1 Z:3068 v:1,1 Z:603");
        assert!(!add(&mut h, b"a").unwrap());
        // The cache is stale after a change: the top bit of the last header byte.
        assert_eq!(cached_count(&h), None);
        let (n, cached) = count_and_cache(&h).unwrap();
        assert_eq!(n, 3);
        assert_eq!(cached_count(&cached), Some(3));
        let mut blocks = b"0123456789abcdefXYZ".to_vec();
        assert_ne!(murmur64a(&blocks, 0), murmur64a(&blocks[..18], 0));
        blocks.clear();
        assert_eq!(count_registers(&[0; REGISTERS]), 0);
        // Registers no hash gives: Redis answers LLONG_MIN, read back as 2^63.
        assert_eq!(count_registers(&[63; REGISTERS]), 1 << 63);
    }

    #[test]
    fn dense_registers_round_trip() {
        let mut d = vec![0u8; DENSE_SIZE - HEADER];
        for i in 0..REGISTERS {
            dense_set(&mut d, i, (i % 64) as u8);
        }
        for i in 0..REGISTERS {
            assert_eq!(dense_get(&d, i), (i % 64) as u8, "{i}");
        }
    }

    #[test]
    fn sparse_turns_dense_past_its_limit_and_counts_agree() {
        let mut h = empty();
        let mut seen_dense = false;
        for i in 0..5000u32 {
            add(&mut h, format!("e{i}").as_bytes()).unwrap();
            if !is_sparse(&h) {
                seen_dense = true;
                assert_eq!(h.len(), DENSE_SIZE);
            } else {
                assert!(h.len() <= SPARSE_MAX_BYTES);
            }
        }
        assert!(seen_dense);
        let (n, _) = count_and_cache(&h).unwrap();
        assert!((4800..5200).contains(&n), "{n}");
        let mut max = vec![0; REGISTERS];
        merge_into(&mut max, &h).unwrap();
        assert_eq!(count_registers(&max), n);
    }

    #[test]
    fn invalid_values_are_refused() {
        assert_eq!(check(b"HYLL"), Err(Invalid::NotHll));
        assert_eq!(check(b"hello world, not an hll"), Err(Invalid::NotHll));
        let mut bad = empty();
        bad[4] = 2;
        assert_eq!(check(&bad), Err(Invalid::NotHll));
        bad[4] = DENSE;
        assert_eq!(check(&bad), Err(Invalid::NotHll));
        // A sparse value whose runs stop short: corrupt, and no panic anywhere.
        let mut short = header(SPARSE);
        short.push(0x3f);
        assert_eq!(check(&short), Ok(()));
        assert_eq!(count_and_cache(&short), Err(Invalid::Corrupt));
        assert_eq!(to_dense(&short), Err(Invalid::Corrupt));
        let mut s = short.clone();
        assert_eq!(set(&mut s, 100, 3), Err(Invalid::Corrupt));
        // A truncated XZERO reads its missing byte as 0.
        let mut cut = header(SPARSE);
        cut.push(0x7f);
        assert!(count_and_cache(&cut).is_err());
    }
}
