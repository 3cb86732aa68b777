//! BITPOS and BITOP: strings read through the quorum like GET; what is done with them here is
//! pure, with redis-server 7.0's rules (its ranges, clamping and order of checks).

use super::key_spec as spec;
use super::{Access, Command, Flag, Spec, data, eq, int_arg, store_error, syntax_error};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::quorum::Consistency;
use quorumd_replication::store::{Precondition, StoreError, VersionedStore};

pub static SPECS: &[Spec] = &[
    spec("bitpos", -3, &[Flag::ReadOnly], 1, 1, parse_bitpos),
    spec(
        "bitop",
        -4,
        &[Flag::Write, Flag::DenyOom],
        -1,
        1,
        parse_bitop,
    ),
];

/// BITPOS's range: the start, the end if given, and whether they count bits (else bytes).
type BitRange = (i64, Option<i64>, bool);

pub enum BitCmd {
    /// The key, the bit looked for, and the range or the error its arguments earn, answered
    /// only when the key holds a string: Redis 7.0 looks the key up first.
    Pos(Bytes, bool, Result<Option<BitRange>, Frame>),
    /// The operation, the destination, then the sources.
    Op(Op, Bytes, Vec<Bytes>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    And,
    Or,
    Xor,
    Not,
}

fn parse_bitpos(a: &[Bytes]) -> Result<Command, Frame> {
    let bit = match int_arg(&a[2])? {
        0 => false,
        1 => true,
        _ => return Err(Frame::error("ERR The bit argument must be 1 or 0.")),
    };
    data(BitCmd::Pos(a[1].clone(), bit, parse_range(&a[3..])))
}

/// BITPOS's optional `start [end [BYTE|BIT]]`, in Redis's order of checks: the start, the
/// unit, then the end.
fn parse_range(args: &[Bytes]) -> Result<Option<BitRange>, Frame> {
    if args.is_empty() {
        return Ok(None);
    }
    if args.len() > 3 {
        return Err(syntax_error());
    }
    let start = int_arg(&args[0])?;
    let bits = match args.get(2) {
        None => false,
        Some(u) if eq(u, "bit") => true,
        Some(u) if eq(u, "byte") => false,
        Some(_) => return Err(syntax_error()),
    };
    let end = args.get(1).map(|e| int_arg(e)).transpose()?;
    Ok(Some((start, end, bits)))
}

fn parse_bitop(a: &[Bytes]) -> Result<Command, Frame> {
    let op = [
        ("and", Op::And),
        ("or", Op::Or),
        ("xor", Op::Xor),
        ("not", Op::Not),
    ]
    .into_iter()
    .find(|(name, _)| eq(&a[1], name))
    .map(|(_, op)| op)
    .ok_or_else(syntax_error)?;
    if op == Op::Not && a.len() != 4 {
        return Err(Frame::error(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    data(BitCmd::Op(op, a[2].clone(), a[3..].to_vec()))
}

/// The bit at `offset` (the most significant bit of the first byte is 0).
fn bit_at(value: &[u8], offset: i64) -> bool {
    value[(offset / 8) as usize] & (1 << (7 - offset % 8)) != 0
}

/// The position of the first `bit` in `range` of `value`, as Redis 7.0's `bitposCommand`
/// answers it: -1 for an empty range or no set bit; for a clear bit not found, the bit just
/// past the string, unless the end was given (then -1).
fn bit_pos(value: &[u8], bit: bool, range: Option<BitRange>) -> i64 {
    let bytes = value.len() as i64;
    let (first, last, end_given) = match range {
        None => (0, bytes * 8 - 1, false),
        Some((start, end, bits)) => {
            let total = if bits { bytes * 8 } else { bytes };
            let end_value = end.unwrap_or(if bits { bytes * 8 + 7 } else { bytes - 1 });
            let from_end = |i: i64| if i < 0 { (total + i).max(0) } else { i };
            let (start, end_value) = (from_end(start), from_end(end_value).min(total - 1));
            if start > end_value {
                return -1;
            }
            if bits {
                (start, end_value, end.is_some())
            } else {
                (start * 8, end_value * 8 + 7, end.is_some())
            }
        }
    };
    if first > last {
        return -1;
    }
    match (first..=last).find(|&i| bit_at(value, i) == bit) {
        Some(i) => i,
        None if bit || end_given => -1,
        // Past the end the string reads as zeros: the first one is after its last byte.
        None => (last / 8 + 1) * 8,
    }
}

/// BITOP's result: as long as the longest source, a shorter one read as zeros.
fn bit_op(op: Op, sources: &[Vec<u8>]) -> Vec<u8> {
    let len = sources.iter().map(Vec::len).max().unwrap_or(0);
    (0..len)
        .map(|j| {
            let byte = |s: &Vec<u8>| s.get(j).copied().unwrap_or(0);
            let first = byte(&sources[0]);
            match op {
                Op::Not => !first,
                Op::And => sources[1..].iter().fold(first, |acc, s| acc & byte(s)),
                Op::Or => sources[1..].iter().fold(first, |acc, s| acc | byte(s)),
                Op::Xor => sources[1..].iter().fold(first, |acc, s| acc ^ byte(s)),
            }
        })
        .collect()
}

impl BitCmd {
    pub fn access(&self) -> Access<'_> {
        match self {
            BitCmd::Pos(key, ..) => Access {
                reads: vec![key],
                writes: vec![],
            },
            BitCmd::Op(_, dst, sources) => Access {
                reads: sources.iter().map(|k| &k[..]).collect(),
                writes: vec![dst],
            },
        }
    }

    pub async fn apply(self, store: &VersionedStore, level: Consistency) -> Frame {
        let get = |key: Bytes| async move {
            store
                .get(&key, level)
                .await
                .map(|found| found.map(|f| f.value))
        };
        match self {
            BitCmd::Pos(key, bit, range) => match get(key).await {
                // A missing key is an endless run of zeros.
                Ok(None) => Frame::Integer(if bit { -1 } else { 0 }),
                Ok(Some(value)) => match range {
                    Ok(range) => Frame::Integer(bit_pos(&value, bit, range)),
                    Err(refusal) => refusal,
                },
                Err(e) => store_error(e),
            },
            BitCmd::Op(op, dst, sources) => {
                // Read concurrently, not a snapshot across keys; any source of another type
                // refuses the command, a missing one reads as empty.
                let reads = futures::future::join_all(sources.into_iter().map(get)).await;
                let values = match reads.into_iter().collect::<Result<Vec<_>, StoreError>>() {
                    Ok(values) => values,
                    Err(e) => return store_error(e),
                };
                let values: Vec<Vec<u8>> =
                    values.into_iter().map(Option::unwrap_or_default).collect();
                let result = bit_op(op, &values);
                let len = result.len() as i64;
                // The destination is replaced whatever it held, without a time to live; an
                // empty result deletes it.
                let written = if result.is_empty() {
                    store.delete_existing(&dst, level).await.map(|_| ())
                } else {
                    store
                        .put_at(&dst, &result, None, level, Precondition::None)
                        .await
                        .map(|_| ())
                };
                match written {
                    Ok(()) => Frame::Integer(len),
                    Err(e) => store_error(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitpos_follows_redis_examples_and_edges() {
        // Redis's documentation: "\xff\xf0\x00" and "\x00\xff\xf0" and "\x00\x00\x00".
        assert_eq!(bit_pos(b"\xff\xf0\x00", false, None), 12);
        assert_eq!(bit_pos(b"\x00\xff\xf0", true, Some((0, None, false))), 8);
        assert_eq!(bit_pos(b"\x00\xff\xf0", true, Some((2, None, false))), 16);
        assert_eq!(
            bit_pos(b"\x00\xff\xf0", true, Some((2, Some(-1), false))),
            16
        );
        assert_eq!(bit_pos(b"\x00\xff\xf0", true, Some((7, Some(15), true))), 8);
        assert_eq!(bit_pos(b"\x00\x00\x00", true, None), -1);
        // A clear bit past the string without an end, -1 with one.
        assert_eq!(bit_pos(b"\xff", false, None), 8);
        assert_eq!(bit_pos(b"\xff", false, Some((0, Some(-1), false))), -1);
        assert_eq!(bit_pos(b"\xff", false, Some((2, None, true))), 8);
        // Empty ranges and an empty string.
        assert_eq!(bit_pos(b"\x00", false, Some((1, Some(0), false))), -1);
        assert_eq!(bit_pos(b"", false, None), -1);
        assert_eq!(bit_pos(b"\x0f", true, Some((-4, None, true))), 4);
    }

    #[test]
    fn bitop_reads_shorter_sources_as_zeros() {
        let v = |s: &[u8]| s.to_vec();
        assert_eq!(bit_op(Op::And, &[v(b"\xff\x0f"), v(b"\x0f")]), b"\x0f\x00");
        assert_eq!(bit_op(Op::Or, &[v(b"\xf0"), v(b"\x0f\x01")]), b"\xff\x01");
        assert_eq!(bit_op(Op::Xor, &[v(b"\xff"), v(b"\x0f"), v(b"")]), b"\xf0");
        assert_eq!(bit_op(Op::Not, &[v(b"\x0f")]), b"\xf0");
        assert!(bit_op(Op::And, &[v(b""), v(b"")]).is_empty());
    }

    #[test]
    fn bitpos_arguments_are_checked_in_redis_order() {
        let args = |a: &[&str]| {
            a.iter()
                .map(|s| Bytes::from(s.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(parse_range(&args(&[])), Ok(None));
        assert_eq!(parse_range(&args(&["1", "x", "WORD"])), Err(syntax_error()));
        assert!(parse_range(&args(&["x", "1"])).is_err());
        assert_eq!(
            parse_range(&args(&["1", "2", "BIT"])),
            Ok(Some((1, Some(2), true)))
        );
        assert_eq!(
            parse_range(&args(&["1", "2", "BIT", "x"])),
            Err(syntax_error())
        );
    }
}
