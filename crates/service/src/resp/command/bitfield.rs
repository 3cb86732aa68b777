//! BITFIELD and BITFIELD_RO with redis-server 7.0's replies, errors and order of checks
//! (`bitfieldGeneric` in bitops.c): every operation is parsed before the key is looked up; a
//! command with only GETs reads the string like GET, one with a SET or INCRBY is a string
//! read-modify-write (as SETBIT), which first grows the string with zero bytes up to the
//! farthest bit written, whether or not an OVERFLOW FAIL then skips the write.

use super::key_spec as spec;
use super::{Access, Command, Flag, Spec, data, eq, int_arg, store_error, syntax_error};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::quorum::Consistency;
use quorumd_replication::store::{Change, VersionedStore};

pub static SPECS: &[Spec] = &[
    spec("bitfield", -2, &[Flag::Write, Flag::DenyOom], 1, 1, |a| {
        parse(a, false)
    }),
    spec(
        "bitfield_ro",
        -2,
        &[Flag::ReadOnly, Flag::Fast],
        1,
        1,
        |a| parse(a, true),
    ),
];

/// The largest string Redis lets a client build, in bytes: offsets are bounded by it.
const MAX_BYTES: u64 = super::strings::MAX_STRING_LEN as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Get,
    Set(i64),
    IncrBy(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    kind: Kind,
    offset: u64,
    bits: u32,
    signed: bool,
    overflow: Overflow,
}

pub struct BitFieldCmd {
    key: Bytes,
    ops: Vec<Op>,
}

fn parse(a: &[Bytes], read_only: bool) -> Result<Command, Frame> {
    let ops = parse_ops(&a[2..])?;
    let writes = ops.iter().any(|o| o.kind != Kind::Get);
    // Checked once every operation is parsed, as Redis does.
    if writes && read_only {
        return Err(Frame::error(
            "ERR BITFIELD_RO only supports the GET subcommand",
        ));
    }
    data(BitFieldCmd {
        key: a[1].clone(),
        ops,
    })
}

/// The operations, in order, with Redis's checks: the subcommand (with enough arguments
/// left), then the type, the offset, and the value.
fn parse_ops(args: &[Bytes]) -> Result<Vec<Op>, Frame> {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 0;
    while let Some(sub) = args.get(j) {
        let left = args.len() - j - 1;
        let get = eq(sub, "get") && left >= 2;
        let set = eq(sub, "set") && left >= 3;
        let incr = eq(sub, "incrby") && left >= 3;
        if eq(sub, "overflow") && left >= 1 {
            let kind = &args[j + 1];
            overflow = if eq(kind, "wrap") {
                Overflow::Wrap
            } else if eq(kind, "sat") {
                Overflow::Sat
            } else if eq(kind, "fail") {
                Overflow::Fail
            } else {
                return Err(Frame::error("ERR Invalid OVERFLOW type specified"));
            };
            j += 2;
            continue;
        }
        if !(get || set || incr) {
            return Err(syntax_error());
        }
        let (signed, bits) = field_type(&args[j + 1])?;
        let offset = bit_offset(&args[j + 2], bits)?;
        let kind = if get {
            Kind::Get
        } else {
            let v = int_arg(&args[j + 3])?;
            if set { Kind::Set(v) } else { Kind::IncrBy(v) }
        };
        ops.push(Op {
            kind,
            offset,
            bits,
            signed,
            overflow,
        });
        j += if get { 3 } else { 4 };
    }
    Ok(ops)
}

/// `i1`..`i64` or `u1`..`u63` (case matters, as in Redis).
fn field_type(arg: &[u8]) -> Result<(bool, u32), Frame> {
    let err = || {
        Frame::error(
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not \
             supported but i64 is.",
        )
    };
    // Redis reads the argument as a C string: it ends at a NUL byte.
    let arg = arg.split(|&b| b == 0).next().unwrap_or_default();
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(err()),
    };
    let bits = int_arg(arg.get(1..).unwrap_or_default()).map_err(|_| err())?;
    let max = if signed { 64 } else { 63 };
    if !(1..=max).contains(&bits) {
        return Err(err());
    }
    Ok((signed, bits as u32))
}

/// An offset in bits, or `#n` for the n-th field of this width; within the largest string.
fn bit_offset(arg: &[u8], bits: u32) -> Result<u64, Frame> {
    let err = || Frame::error("ERR bit offset is not an integer or out of range");
    let (digits, times) = match arg.strip_prefix(b"#") {
        Some(rest) => (rest, i64::from(bits)),
        None => (arg, 1),
    };
    // Redis multiplies in 64 bits without a check: a huge `#n` wraps as it does there.
    let offset = int_arg(digits).map_err(|_| err())?.wrapping_mul(times);
    if offset < 0 || (offset >> 3) as u64 >= MAX_BYTES {
        return Err(err());
    }
    Ok(offset as u64)
}

/// The field's bits, most significant first, from bit `offset` (a byte past the end of
/// `value` reads as 0).
fn get_unsigned(value: &[u8], offset: u64, bits: u32) -> u64 {
    (0..u64::from(bits)).fold(0, |acc, j| {
        let at = offset + j;
        let byte = usize::try_from(at >> 3)
            .ok()
            .and_then(|i| value.get(i))
            .copied()
            .unwrap_or(0);
        (acc << 1) | u64::from((byte >> (7 - (at & 7))) & 1)
    })
}

fn get_signed(value: &[u8], offset: u64, bits: u32) -> i64 {
    let v = get_unsigned(value, offset, bits);
    if bits < 64 && v & (1 << (bits - 1)) != 0 {
        (v | (u64::MAX << bits)) as i64
    } else {
        v as i64
    }
}

/// Writes the field's low `bits` bits of `v`; `value` already covers them.
fn set_bits(value: &mut [u8], offset: u64, bits: u32, v: u64) {
    for j in 0..u64::from(bits) {
        let at = offset + j;
        let bit = (v >> (u64::from(bits) - 1 - j)) & 1;
        if let Some(byte) = usize::try_from(at >> 3).ok().and_then(|i| value.get_mut(i)) {
            let mask = 1u8 << (7 - (at & 7));
            *byte = (*byte & !mask) | (u8::from(bit == 1) << (7 - (at & 7)));
        }
    }
}

/// Redis's `checkUnsignedBitfieldOverflow`: whether `value + incr` leaves the field, and the
/// value WRAP or SAT gives then (none for FAIL).
fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> (bool, Option<u64>) {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = value.wrapping_neg() as i64;
    let wrapped = || value.wrapping_add(incr as u64) & !u64::MAX.checked_shl(bits).unwrap_or(0);
    let limit = if value > max || (incr > 0 && incr > max_incr) {
        max
    } else if incr < 0 && incr < min_incr {
        0
    } else {
        return (false, None);
    };
    match ow {
        Overflow::Wrap => (true, Some(wrapped())),
        Overflow::Sat => (true, Some(limit)),
        Overflow::Fail => (true, None),
    }
}

/// Redis's `checkSignedBitfieldOverflow`, its wrapping arithmetic included (so a SET of a
/// value far below the field's range saturates as Redis does).
fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> (bool, Option<i64>) {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let wrapped = || {
        let c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1 << (bits - 1)) != 0 {
                (c | mask) as i64
            } else {
                (c & !mask) as i64
            }
        } else {
            c as i64
        }
    };
    let limit = if value > max
        || (bits != 64 && incr > max_incr)
        || (value >= 0 && incr > 0 && incr > max_incr)
    {
        max
    } else if value < min
        || (bits != 64 && incr < min_incr)
        || (value < 0 && incr < 0 && incr < min_incr)
    {
        min
    } else {
        return (false, None);
    };
    match ow {
        Overflow::Wrap => (true, Some(wrapped())),
        Overflow::Sat => (true, Some(limit)),
        Overflow::Fail => (true, None),
    }
}

/// Runs one operation on `value` (grown to cover every write already): its reply.
fn run(value: &mut [u8], op: &Op) -> Frame {
    let (offset, bits) = (op.offset, op.bits);
    let (old, new, reply_new, overflowed, limit) = if op.signed {
        let old = get_signed(value, offset, bits);
        let (new, incr) = match op.kind {
            Kind::Get => return Frame::Integer(old),
            Kind::Set(v) => (v, 0),
            Kind::IncrBy(i) => (old, i),
        };
        let (over, limit) = signed_overflow(new, incr, bits, op.overflow);
        let plain = new.wrapping_add(incr) as u64;
        (
            old as u64,
            plain,
            matches!(op.kind, Kind::IncrBy(_)),
            over,
            limit.map(|l| l as u64),
        )
    } else {
        let old = get_unsigned(value, offset, bits);
        let (new, incr) = match op.kind {
            Kind::Get => return Frame::Integer(old as i64),
            Kind::Set(v) => (v as u64, 0),
            Kind::IncrBy(i) => (old, i),
        };
        let (over, limit) = unsigned_overflow(new, incr, bits, op.overflow);
        let plain = new.wrapping_add(incr as u64);
        (old, plain, matches!(op.kind, Kind::IncrBy(_)), over, limit)
    };
    let new = match (overflowed, limit) {
        (false, _) => new,
        (true, Some(l)) => l,
        // OVERFLOW FAIL: nothing is written.
        (true, None) => return Frame::Null,
    };
    set_bits(value, offset, bits, new);
    // SET answers the old value, INCRBY the new one (a signed one carried as its two's
    // complement bits, so the cast gives it back).
    let shown = if reply_new { new } else { old };
    Frame::Integer(shown as i64)
}

impl BitFieldCmd {
    pub fn access(&self) -> Access<'_> {
        if self.ops.iter().all(|o| o.kind == Kind::Get) {
            Access {
                reads: vec![&self.key],
                writes: vec![],
            }
        } else {
            Access {
                reads: vec![],
                writes: vec![&self.key],
            }
        }
    }

    pub async fn apply(self, store: &VersionedStore, level: Consistency) -> Frame {
        let ops = self.ops;
        let writes = ops.iter().filter(|o| o.kind != Kind::Get);
        let Some(last_bit) = writes.map(|o| o.offset + u64::from(o.bits) - 1).max() else {
            return match store.get(&self.key, level).await {
                Ok(found) => {
                    let mut value = found.map(|f| f.value).unwrap_or_default();
                    Frame::Array(ops.iter().map(|op| run(&mut value, op)).collect())
                }
                Err(e) => store_error(e),
            };
        };
        // Within the largest string (checked when parsed), so it fits in memory's addresses.
        let len = usize::try_from(last_bit / 8 + 1).unwrap_or(usize::MAX);
        store
            .read_modify_write(&self.key, level, |found| {
                let mut value = found.map(|f| f.value.clone()).unwrap_or_default();
                if value.len() < len {
                    value.resize(len, 0);
                }
                let replies = ops.iter().map(|op| run(&mut value, op)).collect();
                let change = if found.is_some_and(|f| f.value == value) {
                    Change::Keep
                } else {
                    Change::Put {
                        value,
                        expires_at_ms: found.and_then(|f| f.expires_at_ms),
                    }
                };
                (change, Frame::Array(replies))
            })
            .await
            .unwrap_or_else(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ').map(|w| Bytes::from(w.to_string())).collect()
    }

    fn op(kind: Kind, ty: &str, offset: u64, overflow: Overflow) -> Op {
        let (signed, bits) = field_type(ty.as_bytes()).unwrap();
        Op {
            kind,
            offset,
            bits,
            signed,
            overflow,
        }
    }

    #[test]
    fn operations_are_checked_in_redis_order() {
        let e = |s: &str| parse_ops(&args(s)).unwrap_err();
        assert_eq!(e("get u8"), syntax_error());
        assert_eq!(
            e("overflow foo get u8 0"),
            Frame::error("ERR Invalid OVERFLOW type specified")
        );
        assert!(
            matches!(e("get u64 0"), Frame::Error(t) if t.starts_with("ERR Invalid bitfield type"))
        );
        assert!(
            matches!(e("get U8 0"), Frame::Error(t) if t.starts_with("ERR Invalid bitfield type"))
        );
        assert_eq!(
            e("set i8 -1 x"),
            Frame::error("ERR bit offset is not an integer or out of range")
        );
        assert_eq!(
            e("set i8 #1 x"),
            Frame::error("ERR value is not an integer or out of range")
        );
        assert_eq!(
            e("get u8 4294967296"),
            Frame::error("ERR bit offset is not an integer or out of range")
        );
        let ops = parse_ops(&args("overflow sat incrby i5 #2 3 get u63 7")).unwrap();
        assert_eq!(ops[0], op(Kind::IncrBy(3), "i5", 10, Overflow::Sat));
        assert_eq!(ops[1], op(Kind::Get, "u63", 7, Overflow::Sat));
    }

    #[test]
    fn overflows_follow_redis() {
        let mut v = vec![0u8; 8];
        let incr = |v: &mut Vec<u8>, ty, by, ow| run(v, &op(Kind::IncrBy(by), ty, 0, ow));
        assert_eq!(incr(&mut v, "u2", 5, Overflow::Wrap), Frame::Integer(1));
        assert_eq!(incr(&mut v, "u2", 5, Overflow::Sat), Frame::Integer(3));
        assert_eq!(incr(&mut v, "u2", 1, Overflow::Fail), Frame::Null);
        assert_eq!(incr(&mut v, "u2", -4, Overflow::Sat), Frame::Integer(0));
        assert_eq!(incr(&mut v, "i8", 127, Overflow::Wrap), Frame::Integer(127));
        assert_eq!(incr(&mut v, "i8", 1, Overflow::Wrap), Frame::Integer(-128));
        assert_eq!(incr(&mut v, "i8", -1, Overflow::Sat), Frame::Integer(-128));
        let set = |v: &mut Vec<u8>, ty, x, ow| run(v, &op(Kind::Set(x), ty, 0, ow));
        // A value far below the field's range saturates up (Redis's wrapping arithmetic).
        assert_eq!(
            set(&mut v, "i8", i64::MIN, Overflow::Sat),
            Frame::Integer(-128)
        );
        assert_eq!(
            run(&mut v, &op(Kind::Get, "i8", 0, Overflow::Wrap)),
            Frame::Integer(127)
        );
        assert_eq!(set(&mut v, "u8", -1, Overflow::Wrap), Frame::Integer(127));
        assert_eq!(
            run(&mut v, &op(Kind::Get, "u8", 0, Overflow::Wrap)),
            Frame::Integer(255)
        );
        assert_eq!(
            set(&mut v, "i64", i64::MIN, Overflow::Fail),
            Frame::Integer(-1 << 56)
        );
        assert_eq!(incr(&mut v, "i64", -1, Overflow::Fail), Frame::Null);
        assert_eq!(
            incr(&mut v, "i64", -1, Overflow::Wrap),
            Frame::Integer(i64::MAX)
        );
        assert_eq!(get_unsigned(b"\xff", 4, 8), 0xf0);
    }
}
