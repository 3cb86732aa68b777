//! String commands on the versioned store: GET, SET (EX/PX/EXAT/PXAT/NX/XX/KEEPTTL/GET), SETNX,
//! SETEX, PSETEX, GETSET, GETEX, GETDEL, MGET, MSET, MSETNX, STRLEN, APPEND, GETRANGE, SETRANGE, LCS.
//!
//! Every command that changes part of a value, or only its TTL (APPEND, SETRANGE, GETEX with
//! an option), is a read-modify-write under the key's version, so a concurrent writer's bytes
//! are never lost (see `store::rmw`).

use super::key_spec as spec;
use super::{
    Access, Command, Flag, Spec, crdt_error, data, eq, int_arg, is_wrong_type, store_error,
    syntax_error,
};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::crdt::CrdtKind;
use quorumd_core::hlc::wall_clock_ms;
use quorumd_core::quorum::Consistency;
use quorumd_replication::crdt_store::CrdtStore;
use quorumd_replication::store::{Change, Precondition, StoreError, TypedChange, VersionedStore};

const READ: &[Flag] = &[Flag::ReadOnly, Flag::Fast];
const WRITE: &[Flag] = &[Flag::Write, Flag::DenyOom];

pub static SPECS: &[Spec] = &[
    spec("get", 2, READ, 1, 1, |a| data(StringCmd::Get(a[1].clone()))),
    spec("set", -3, WRITE, 1, 1, parse_set),
    spec("setnx", 3, WRITE, 1, 1, |a| {
        data(StringCmd::Set(Set {
            key: a[1].clone(),
            value: a[2].clone(),
            condition: Condition::IfAbsent,
            ..Set::plain(Reply::Integer)
        }))
    }),
    spec("setex", 4, WRITE, 1, 1, |a| parse_setex(a, 1000, "setex")),
    spec("psetex", 4, WRITE, 1, 1, |a| parse_setex(a, 1, "psetex")),
    spec("getdel", 2, &[Flag::Write, Flag::Fast], 1, 1, |a| {
        data(StringCmd::GetDel(a[1].clone()))
    }),
    spec("mget", -2, READ, -1, 1, |a| {
        data(StringCmd::MGet(a[1..].to_vec()))
    }),
    spec("mset", -3, WRITE, -1, 2, |a| {
        data(StringCmd::MSet(pairs(a, "mset")?))
    }),
    spec("msetnx", -3, WRITE, -1, 2, |a| {
        data(StringCmd::MSetNx(pairs(a, "msetnx")?))
    }),
    spec("strlen", 2, READ, 1, 1, |a| {
        data(StringCmd::Strlen(a[1].clone()))
    }),
    spec("append", 3, WRITE, 1, 1, |a| {
        data(StringCmd::Append(a[1].clone(), a[2].clone()))
    }),
    spec("getset", 3, WRITE, 1, 1, |a| {
        // SET ... GET without KEEPTTL: the TTL is cleared, as GETSET does in Redis.
        data(StringCmd::Set(Set {
            key: a[1].clone(),
            value: a[2].clone(),
            ..Set::plain(Reply::OldValue)
        }))
    }),
    spec("lcs", -3, &[Flag::ReadOnly], 2, 1, |a| {
        data(StringCmd::Lcs(
            a[1].clone(),
            a[2].clone(),
            super::lcs::parse_options(&a[3..]),
        ))
    }),
    spec("getex", -2, &[Flag::Write, Flag::Fast], 1, 1, parse_getex),
    spec("getrange", 4, READ, 1, 1, parse_getrange),
    // GETRANGE's old name, still served by Redis 7.0.
    spec("substr", 4, READ, 1, 1, parse_getrange),
    spec("getbit", 3, READ, 1, 1, |a| {
        data(StringCmd::GetBit(a[1].clone(), bit_offset(&a[2])?))
    }),
    spec("setbit", 4, WRITE, 1, 1, |a| {
        let offset = bit_offset(&a[2])?;
        let bit = match &a[3][..] {
            b"0" => false,
            b"1" => true,
            _ => return Err(Frame::error("ERR bit is not an integer or out of range")),
        };
        data(StringCmd::SetBit(a[1].clone(), offset, bit))
    }),
    spec("bitcount", -2, READ, 1, 1, |a| {
        data(StringCmd::BitCount(a[1].clone(), parse_bit_range(&a[2..])))
    }),
    spec("setrange", 4, WRITE, 1, 1, |a| {
        let offset = int_arg(&a[2])?;
        let offset =
            usize::try_from(offset).map_err(|_| Frame::error("ERR offset is out of range"))?;
        data(StringCmd::SetRange(a[1].clone(), offset, a[3].clone()))
    }),
];

/// The largest string Redis lets a client build (`proto-max-bulk-len`'s default).
pub(super) const MAX_STRING_LEN: usize = 512 * 1024 * 1024;

pub enum StringCmd {
    Get(Bytes),
    Set(Set),
    GetDel(Bytes),
    MGet(Vec<Bytes>),
    MSet(Vec<(Bytes, Bytes)>),
    MSetNx(Vec<(Bytes, Bytes)>),
    Strlen(Bytes),
    Append(Bytes, Bytes),
    /// GETEX with an option: the key, and the expiry to set (`Expiry::Never` for PERSIST), or
    /// the error its value earns, answered only when the key holds a string: Redis looks the
    /// key up before it checks the number (`GETEX absent EX x` answers nil).
    GetEx(Bytes, Result<Expiry, Frame>),
    GetRange(Bytes, i64, i64),
    SetRange(Bytes, usize, Bytes),
    GetBit(Bytes, usize),
    SetBit(Bytes, usize, bool),
    /// BITCOUNT's range (start, end, counted in bits), or the error its arguments earn,
    /// answered only when the key holds a string: Redis 7.0 looks the key up first.
    BitCount(Bytes, Result<Option<(i64, i64, bool)>, Frame>),
    /// The two keys, and the options or the error they earn once both keys are read.
    Lcs(Bytes, Bytes, Result<super::lcs::LcsOptions, Frame>),
}

/// When a written value expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    KeepTtl,
    /// Milliseconds from now.
    In(i64),
    /// Milliseconds since the epoch.
    At(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Always,
    IfAbsent,
    IfExists,
}

/// What a SET-like command answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `OK`, or nil when the condition failed (SET, SETEX).
    Ok,
    /// 1 or 0 (SETNX).
    Integer,
    /// The old value (SET ... GET).
    OldValue,
}

pub struct Set {
    key: Bytes,
    value: Bytes,
    expiry: Expiry,
    condition: Condition,
    reply: Reply,
}

impl Set {
    fn plain(reply: Reply) -> Set {
        Set {
            key: Bytes::new(),
            value: Bytes::new(),
            expiry: Expiry::Never,
            condition: Condition::Always,
            reply,
        }
    }
}

fn invalid_expire(command: &str) -> Frame {
    Frame::error(format!("ERR invalid expire time in '{command}' command"))
}

/// A relative or absolute expiry argument as milliseconds, with Redis's range checks.
/// An expiry option's value in ms, checked as Redis checks it: positive, no overflow in the
/// unit, and for a relative one (EX, PX) no overflow once added to the current time; an
/// absolute one (EXAT, PXAT) may be as late as i64 allows.
fn expire_ms(arg: &[u8], unit_ms: i64, relative: bool, command: &str) -> Result<i64, Frame> {
    let v = int_arg(arg)?;
    if v <= 0 {
        return Err(invalid_expire(command));
    }
    v.checked_mul(unit_ms)
        .filter(|ms| !relative || ms.checked_add(wall_clock_ms() as i64).is_some())
        .ok_or_else(|| invalid_expire(command))
}

fn parse_set(args: &[Bytes]) -> Result<Command, Frame> {
    let mut set = Set {
        key: args[1].clone(),
        value: args[2].clone(),
        ..Set::plain(Reply::Ok)
    };
    let mut keep_ttl = false;
    // (value, unit in ms, relative): validated after all options, as Redis does, so a syntax
    // error is reported before a bad number.
    let mut timed: Option<(&Bytes, i64, bool)> = None;
    let mut i = 3;
    while i < args.len() {
        let a = &args[i];
        let unit = expiry_option(a);
        if eq(a, "nx") && set.condition != Condition::IfExists {
            set.condition = Condition::IfAbsent;
        } else if eq(a, "xx") && set.condition != Condition::IfAbsent {
            set.condition = Condition::IfExists;
        } else if eq(a, "get") {
            set.reply = Reply::OldValue;
        } else if eq(a, "keepttl") && timed.is_none() {
            keep_ttl = true;
        } else if let (Some((_, unit, relative)), Some(v), false) =
            (unit, args.get(i + 1), keep_ttl)
            // The same option may come again (the last one counts), as in Redis; another
            // one is a syntax error.
            && timed.is_none_or(|(_, u, r)| (u, r) == (unit, relative))
        {
            timed = Some((v, unit, relative));
            i += 1;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    set.expiry = match timed {
        Some((v, unit, true)) => Expiry::In(expire_ms(v, unit, true, "set")?),
        Some((v, unit, false)) => Expiry::At(expire_ms(v, unit, false, "set")?),
        None if keep_ttl => Expiry::KeepTtl,
        None => Expiry::Never,
    };
    data(StringCmd::Set(set))
}

/// SET's and GETEX's expiry options: (name, ms per unit, relative).
fn expiry_option(a: &Bytes) -> Option<(&'static str, i64, bool)> {
    [
        ("ex", 1000, true),
        ("px", 1, true),
        ("exat", 1000, false),
        ("pxat", 1, false),
    ]
    .into_iter()
    .find(|(name, _, _)| eq(a, name))
}

fn parse_getrange(a: &[Bytes]) -> Result<Command, Frame> {
    data(StringCmd::GetRange(
        a[1].clone(),
        int_arg(&a[2])?,
        int_arg(&a[3])?,
    ))
}

fn parse_getex(args: &[Bytes]) -> Result<Command, Frame> {
    // Without an option GETEX is GET (a counter made over HTTP reads as its value too).
    if args.len() == 2 {
        return data(StringCmd::Get(args[1].clone()));
    }
    // As SET's options: one of EX/PX/EXAT/PXAT (the same one may repeat, the last counts) or
    // PERSIST; the value is checked after the key is read.
    let (mut persist, mut timed): (bool, Option<(&Bytes, i64, bool)>) = (false, None);
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        let unit = expiry_option(a);
        if eq(a, "persist") && timed.is_none() {
            persist = true;
        } else if let (Some((_, unit, relative)), Some(v), false) = (unit, args.get(i + 1), persist)
            && timed.is_none_or(|(_, u, r)| (u, r) == (unit, relative))
        {
            timed = Some((v, unit, relative));
            i += 1;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    let expiry = match timed {
        Some((v, unit, true)) => expire_ms(v, unit, true, "getex").map(Expiry::In),
        Some((v, unit, false)) => expire_ms(v, unit, false, "getex").map(Expiry::At),
        None => Ok(Expiry::Never),
    };
    data(StringCmd::GetEx(args[1].clone(), expiry))
}

/// GETRANGE's bytes of `value`: inclusive offsets, negative ones from the end, clamped to
/// the string, exactly as Redis computes them.
fn byte_range(value: &[u8], start: i64, end: i64) -> &[u8] {
    let len = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return &[];
    }
    let from_end = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (from_end(start), from_end(end).min(len - 1));
    if len == 0 || start > end {
        return &[];
    }
    &value[start as usize..=end as usize]
}

/// A bit offset as Redis takes it: a non-negative integer within the largest string.
fn bit_offset(arg: &[u8]) -> Result<usize, Frame> {
    int_arg(arg)
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| n / 8 < MAX_STRING_LEN)
        .ok_or_else(|| Frame::error("ERR bit offset is not an integer or out of range"))
}

/// The bit at `offset` (the most significant bit of the first byte is 0); 0 past the end.
fn bit_at(value: &[u8], offset: usize) -> bool {
    value
        .get(offset / 8)
        .is_some_and(|b| b & (1 << (7 - offset % 8)) != 0)
}

/// BITCOUNT's optional `start end [BYTE|BIT]`.
fn parse_bit_range(args: &[Bytes]) -> Result<Option<(i64, i64, bool)>, Frame> {
    match args {
        [] => Ok(None),
        [start, end, unit @ ..] if unit.len() <= 1 => {
            let (start, end) = (int_arg(start)?, int_arg(end)?);
            // Redis answers an empty negative range before it looks at the unit.
            if start < 0 && end < 0 && start > end {
                return Ok(Some((start, end, false)));
            }
            let bits = match unit {
                [] => false,
                [u] if eq(u, "byte") => false,
                [u] if eq(u, "bit") => true,
                _ => return Err(syntax_error()),
            };
            Ok(Some((start, end, bits)))
        }
        _ => Err(syntax_error()),
    }
}

/// The set bits of `value` in `range` (inclusive, negative counted from the end, in bytes or
/// bits), clamped as Redis 7.0's `bitcountCommand` clamps it.
fn bit_count(value: &[u8], range: Option<(i64, i64, bool)>) -> u64 {
    let Some((start, end, bits)) = range else {
        return value.iter().map(|b| u64::from(b.count_ones())).sum();
    };
    let total = value.len() as i64 * if bits { 8 } else { 1 };
    if start < 0 && end < 0 && start > end {
        return 0;
    }
    let from_end = |i: i64| if i < 0 { (total + i).max(0) } else { i };
    let (start, end) = (from_end(start), from_end(end).min(total - 1));
    if start > end {
        return 0;
    }
    if bits {
        (start..=end).filter(|&i| bit_at(value, i as usize)).count() as u64
    } else {
        value[start as usize..=end as usize]
            .iter()
            .map(|b| u64::from(b.count_ones()))
            .sum()
    }
}

/// SETRANGE's new value: `patch` written at `offset`, zero bytes filling any gap.
fn patched(mut value: Vec<u8>, offset: usize, patch: &[u8]) -> Vec<u8> {
    let end = offset + patch.len();
    if value.len() < end {
        value.resize(end, 0);
    }
    value[offset..end].copy_from_slice(patch);
    value
}

fn parse_setex(args: &[Bytes], unit: i64, name: &str) -> Result<Command, Frame> {
    let ms = expire_ms(&args[2], unit, true, name)?;
    data(StringCmd::Set(Set {
        key: args[1].clone(),
        value: args[3].clone(),
        expiry: Expiry::In(ms),
        ..Set::plain(Reply::Ok)
    }))
}

/// MSET's and MSETNX's `key value [key value ...]`.
fn pairs(args: &[Bytes], name: &str) -> Result<Vec<(Bytes, Bytes)>, Frame> {
    if args.len().is_multiple_of(2) {
        return Err(super::wrong_arity(name));
    }
    Ok(args[1..]
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect())
}

fn absolute(expiry: Expiry, current: Option<u64>) -> Option<u64> {
    match expiry {
        Expiry::Never => None,
        Expiry::KeepTtl => current,
        Expiry::In(ms) => Some(wall_clock_ms().saturating_add(ms.max(0) as u64)),
        // An absolute time in the past stores a value that is already gone, as in Redis.
        Expiry::At(ms) => Some(ms.max(1) as u64),
    }
}

/// Reads one key; a key holding another type reads as nil (MGET's rule).
fn nil_if_wrong_type(r: Result<Option<Bytes>, StoreError>) -> Result<Frame, Frame> {
    match r {
        Ok(v) => Ok(v.map_or(Frame::Null, Frame::Bulk)),
        Err(e) if is_wrong_type(&e) => Ok(Frame::Null),
        Err(e) => Err(store_error(e)),
    }
}

impl StringCmd {
    pub fn access(&self) -> Access<'_> {
        fn one(k: &Bytes) -> Vec<&[u8]> {
            vec![&k[..]]
        }
        match self {
            StringCmd::Get(k)
            | StringCmd::Strlen(k)
            | StringCmd::GetRange(k, ..)
            | StringCmd::GetBit(k, _)
            | StringCmd::BitCount(k, _) => Access {
                reads: one(k),
                writes: vec![],
            },
            StringCmd::Lcs(a, b, _) => Access {
                reads: vec![&a[..], &b[..]],
                writes: vec![],
            },
            StringCmd::MGet(keys) => Access {
                reads: keys.iter().map(|k| &k[..]).collect(),
                writes: vec![],
            },
            StringCmd::Set(s) => Access {
                reads: vec![],
                writes: one(&s.key),
            },
            StringCmd::GetDel(k)
            | StringCmd::Append(k, _)
            | StringCmd::SetRange(k, ..)
            | StringCmd::SetBit(k, ..)
            | StringCmd::GetEx(k, _) => Access {
                reads: vec![],
                writes: one(k),
            },
            StringCmd::MSet(pairs) | StringCmd::MSetNx(pairs) => Access {
                reads: vec![],
                writes: pairs.iter().map(|(k, _)| &k[..]).collect(),
            },
        }
    }

    pub async fn apply(
        self,
        store: &VersionedStore,
        crdts: &CrdtStore,
        level: Consistency,
    ) -> Frame {
        let get = |key: Bytes| async move {
            store
                .get(&key, level)
                .await
                .map(|f| f.map(|f| Bytes::from(f.value)))
        };
        match self {
            StringCmd::Get(key) => match get(key.clone()).await {
                Ok(v) => v.map_or(Frame::Null, Frame::Bulk),
                // A counter reads as the string of its value, as a Redis integer would.
                Err(StoreError::KindConflict {
                    holds: CrdtKind::Counter,
                }) => match crdts.counter_get(&key, level).await {
                    Ok(v) => Frame::bulk(v.to_string()),
                    Err(e) => crdt_error(e),
                },
                Err(e) => store_error(e),
            },
            StringCmd::Strlen(key) => match get(key).await {
                Ok(v) => Frame::Integer(v.map_or(0, |v| v.len() as i64)),
                Err(e) => store_error(e),
            },
            StringCmd::MGet(keys) => {
                let reads = futures::future::join_all(keys.into_iter().map(get)).await;
                reads
                    .into_iter()
                    .map(nil_if_wrong_type)
                    .collect::<Result<Vec<_>, _>>()
                    .map_or_else(|e| e, Frame::Array)
            }
            StringCmd::Set(set) => apply_set(set, store, level).await,
            StringCmd::MSet(pairs) => {
                let writes = pairs
                    .iter()
                    .map(|(k, v)| store.put_at(k, v, None, level, Precondition::None));
                let results = futures::future::join_all(writes).await;
                match results.into_iter().find_map(Result::err) {
                    Some(e) => store_error(e),
                    None => Frame::ok(),
                }
            }
            StringCmd::MSetNx(pairs) => apply_msetnx(pairs, store, level).await,
            StringCmd::GetDel(key) => store
                .read_modify_write(&key, level, |found| match found {
                    Some(f) => (Change::Delete, Frame::bulk(f.value.clone())),
                    None => (Change::Keep, Frame::Null),
                })
                .await
                .unwrap_or_else(store_error),
            StringCmd::Append(key, suffix) => store
                .read_modify_write(&key, level, |found| {
                    let mut value = found.map(|f| f.value.clone()).unwrap_or_default();
                    value.extend_from_slice(&suffix);
                    let len = value.len() as i64;
                    let expires_at_ms = found.and_then(|f| f.expires_at_ms);
                    (
                        Change::Put {
                            value,
                            expires_at_ms,
                        },
                        Frame::Integer(len),
                    )
                })
                .await
                .unwrap_or_else(store_error),
            StringCmd::GetRange(key, start, end) => match get(key).await {
                Ok(v) => Frame::bulk(byte_range(&v.unwrap_or_default(), start, end).to_vec()),
                Err(e) => store_error(e),
            },
            StringCmd::GetBit(key, offset) => match get(key).await {
                Ok(v) => Frame::Integer(i64::from(bit_at(&v.unwrap_or_default(), offset))),
                Err(e) => store_error(e),
            },
            StringCmd::BitCount(key, range) => match get(key).await {
                Ok(None) => Frame::Integer(0),
                Ok(Some(v)) => match range {
                    Ok(range) => Frame::Integer(bit_count(&v, range) as i64),
                    Err(refusal) => refusal,
                },
                Err(e) => store_error(e),
            },
            StringCmd::SetBit(key, offset, bit) => store
                .read_modify_write(&key, level, |found| {
                    let mut value = found.map(|f| f.value.clone()).unwrap_or_default();
                    let old = bit_at(&value, offset);
                    if value.len() <= offset / 8 {
                        value.resize(offset / 8 + 1, 0);
                    }
                    let mask = 1u8 << (7 - offset % 8);
                    if bit {
                        value[offset / 8] |= mask;
                    } else {
                        value[offset / 8] &= !mask;
                    }
                    let expires_at_ms = found.and_then(|f| f.expires_at_ms);
                    let change = Change::Put {
                        value,
                        expires_at_ms,
                    };
                    (change, Frame::Integer(i64::from(old)))
                })
                .await
                .unwrap_or_else(store_error),
            StringCmd::Lcs(a, b, options) => {
                let (a, b) = futures::future::join(get(a), get(b)).await;
                match (a, b) {
                    (Ok(a), Ok(b)) => match options {
                        Ok(o) => {
                            super::lcs::reply(&a.unwrap_or_default(), &b.unwrap_or_default(), o)
                        }
                        Err(refusal) => refusal,
                    },
                    (Err(e), _) | (_, Err(e)) if is_wrong_type(&e) => {
                        Frame::error("ERR The specified keys must contain string values")
                    }
                    (Err(e), _) | (_, Err(e)) => store_error(e),
                }
            }
            StringCmd::GetEx(key, expiry) => store
                .read_modify_write(&key, level, |found| match (found, &expiry) {
                    (Some(f), Ok(expiry)) => (
                        Change::Put {
                            value: f.value.clone(),
                            expires_at_ms: absolute(*expiry, None),
                        },
                        Frame::bulk(f.value.clone()),
                    ),
                    (Some(_), Err(refusal)) => (Change::Keep, refusal.clone()),
                    (None, _) => (Change::Keep, Frame::Null),
                })
                .await
                .unwrap_or_else(store_error),
            StringCmd::SetRange(key, offset, patch) => store
                .read_modify_write(&key, level, |found| {
                    let len = found.map_or(0, |f| f.value.len());
                    // Writing nothing changes nothing, not even an absent key into "".
                    if patch.is_empty() {
                        return (Change::Keep, Ok(len));
                    }
                    if offset.saturating_add(patch.len()) > MAX_STRING_LEN {
                        return (Change::Keep, Err(()));
                    }
                    let value = patched(
                        found.map(|f| f.value.clone()).unwrap_or_default(),
                        offset,
                        &patch,
                    );
                    let len = value.len();
                    let expires_at_ms = found.and_then(|f| f.expires_at_ms);
                    (
                        Change::Put {
                            value,
                            expires_at_ms,
                        },
                        Ok(len),
                    )
                })
                .await
                .map_or_else(store_error, |r| match r {
                    Ok(len) => Frame::Integer(len as i64),
                    Err(()) => {
                        Frame::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
                    }
                }),
        }
    }
}

/// MSETNX: every key read at the level (a key of any type counts, as in Redis); if none
/// exists, each is written on the condition that it is still absent. Not atomic across keys:
/// a key another client creates between the read and its write keeps that client's value
/// while the others are written, and the reply is 1 when at least one key was written, 0 when
/// none was (docs/RESP.md).
async fn apply_msetnx(
    pairs: Vec<(Bytes, Bytes)>,
    store: &VersionedStore,
    level: Consistency,
) -> Frame {
    // Redis sets the pairs in order, so a key given twice ends with its last value; written
    // twice here, the second IfAbsent write would find the first.
    let mut last: Vec<(Bytes, Bytes)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        match last.iter_mut().find(|(seen, _)| *seen == k) {
            Some(pair) => pair.1 = v,
            None => last.push((k, v)),
        }
    }
    let reads = last
        .iter()
        .map(|(k, _)| super::keys::get_any(store, k, level));
    for r in futures::future::join_all(reads).await {
        match r {
            Ok(None) => {}
            Ok(Some(_)) => return Frame::Integer(0),
            // A counter, set or hash, or a raw value of another type, exists too.
            Err(e) if is_wrong_type(&e) => return Frame::Integer(0),
            Err(e) => return store_error(e),
        }
    }
    let writes = last
        .iter()
        .map(|(k, v)| store.put_at(k, v, None, level, Precondition::IfAbsent));
    let mut written = false;
    let mut failure = None;
    for r in futures::future::join_all(writes).await {
        match r {
            Ok(_) => written = true,
            // The key appeared since the read (of any type): it keeps the other writer's value.
            Err(StoreError::PreconditionFailed { .. }) => {}
            Err(e) if is_wrong_type(&e) => {}
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    // As MSET: an error when a write's outcome is not known, whatever the others did.
    match failure {
        Some(e) => store_error(e),
        None => Frame::Integer(i64::from(written)),
    }
}

async fn apply_set(set: Set, store: &VersionedStore, level: Consistency) -> Frame {
    let refused = match set.reply {
        Reply::Integer => Frame::Integer(0),
        _ => Frame::Null,
    };
    let done = match set.reply {
        Reply::Integer => Frame::Integer(1),
        _ => Frame::ok(),
    };
    if set.reply != Reply::OldValue && set.expiry != Expiry::KeepTtl {
        // A blind write: one round trip (two with NX/XX, whose check runs on the nodes).
        let precondition = match set.condition {
            Condition::Always => Precondition::None,
            Condition::IfAbsent => Precondition::IfAbsent,
            Condition::IfExists => Precondition::IfExists,
        };
        let at = absolute(set.expiry, None);
        return match store
            .put_at(&set.key, &set.value, at, level, precondition)
            .await
        {
            Ok(_) => done,
            Err(StoreError::PreconditionFailed { .. }) if precondition != Precondition::None => {
                refused
            }
            Err(e) => store_error(e),
        };
    }
    let value = set.value.to_vec();
    let done_typed = done.clone();
    let refused_typed = refused.clone();
    let result = store
        .read_modify_write(&set.key, level, |found| {
            let old = match (set.reply, found) {
                (Reply::OldValue, Some(f)) => Frame::bulk(f.value.clone()),
                (Reply::OldValue, None) => Frame::Null,
                _ => done.clone(),
            };
            let allowed = match set.condition {
                Condition::Always => true,
                Condition::IfAbsent => found.is_none(),
                Condition::IfExists => found.is_some(),
            };
            if !allowed {
                let answer = if set.reply == Reply::OldValue {
                    old
                } else {
                    refused.clone()
                };
                return (Change::Keep, answer);
            }
            let expires_at_ms = absolute(set.expiry, found.and_then(|f| f.expires_at_ms));
            (
                Change::Put {
                    value: value.clone(),
                    expires_at_ms,
                },
                old,
            )
        })
        .await;
    match result {
        // A list or sorted set: SET replaces it as in Redis (KEEPTTL keeping its TTL), and NX
        // finds the key there. SET GET stays WRONGTYPE, as in Redis.
        Err(e) if is_wrong_type(&e) && set.reply != Reply::OldValue => store
            .read_modify_write_typed(&set.key, level, |found| {
                let allowed = match set.condition {
                    Condition::Always => true,
                    Condition::IfAbsent => found.is_none(),
                    Condition::IfExists => found.is_some(),
                };
                if !allowed {
                    return (TypedChange::Keep, refused_typed.clone());
                }
                let expires_at_ms = absolute(set.expiry, found.and_then(|f| f.expires_at_ms));
                let put = TypedChange::PutString {
                    value: value.clone(),
                    expires_at_ms,
                };
                (put, done_typed.clone())
            })
            .await
            .unwrap_or_else(store_error),
        result => result.unwrap_or_else(store_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_counted_as_redis_counts_them() {
        // Redis's BITCOUNT examples on "foobar": 26 in all, 4 in byte 0, 6 in byte 1, 17 in bits 5..=30.
        let v = b"foobar";
        assert_eq!(bit_count(v, None), 26);
        assert_eq!(bit_count(v, Some((1, 1, false))), 6);
        assert_eq!(bit_count(v, Some((0, 0, false))), 4);
        assert_eq!(bit_count(v, Some((5, 30, true))), 17);
        assert_eq!(bit_count(v, Some((-1, -2, false))), 0);
        assert_eq!(bit_count(b"", Some((0, -1, true))), 0);
        // An empty negative range is 0 whatever the unit, as in Redis 7.0.
        let word = [Bytes::from("-1"), Bytes::from("-2"), Bytes::from("WORD")];
        assert_eq!(parse_bit_range(&word), Ok(Some((-1, -2, false))));
        let word = [Bytes::from("1"), Bytes::from("2"), Bytes::from("WORD")];
        assert!(parse_bit_range(&word).is_err());
        assert!(bit_at(b"\x80", 0) && !bit_at(b"\x80", 1) && !bit_at(b"\x80", 100));
        assert!(bit_offset(b"4294967296").is_err() && bit_offset(b"-1").is_err());
        assert_eq!(bit_offset(b"4294967295"), Ok(4_294_967_295));
    }

    #[test]
    fn byte_range_follows_redis_offsets() {
        let v = b"This is a string";
        assert_eq!(byte_range(v, 0, 3), b"This");
        assert_eq!(byte_range(v, -3, -1), b"ing");
        assert_eq!(byte_range(v, 0, -1), v);
        assert_eq!(byte_range(v, 10, 100), b"string");
        assert_eq!(byte_range(v, 5, 3), b"");
        assert_eq!(byte_range(v, -1, -5), b"");
        assert_eq!(byte_range(v, -100, 2), b"Thi");
        assert_eq!(byte_range(b"", 0, -1), b"");
    }

    #[test]
    fn patched_pads_with_zero_bytes() {
        assert_eq!(
            patched(b"Hello World".to_vec(), 6, b"Redis"),
            b"Hello Redis"
        );
        assert_eq!(patched(Vec::new(), 3, b"ab"), b"\0\0\0ab");
        assert_eq!(patched(b"abcdef".to_vec(), 1, b"X"), b"aXcdef");
    }
}
