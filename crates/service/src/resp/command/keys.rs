//! Key commands on the versioned store: DEL, UNLINK, EXISTS, EXPIRE, PEXPIRE, EXPIREAT,
//! PEXPIREAT, TTL, PTTL, EXPIRETIME, PEXPIRETIME, PERSIST, TYPE.

use super::key_spec as spec;
use super::wrong_type;
use super::{Access, Command, Flag, Spec, crdt_error, data, eq, int_arg, store_error, type_name};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::crdt::CrdtKind;
use quorumd_core::hlc::wall_clock_ms;
use quorumd_core::quorum::Consistency;
use quorumd_node::pool::ServerErrorKind;
use quorumd_replication::crdt_store::CrdtStore;
use quorumd_replication::store::{Change, Found, StoreError, VersionedStore};
use quorumd_replication::store::{TypedChange, TypedFound, TypedWanted};

/// The string read failed because a node holds another Redis type (a list): the key is read
/// again through the typed read. Strings, the common case, keep their one read. Any node's
/// WRONGTYPE counts, so that a list key still answers with one node down.
fn holds_other_type(e: &StoreError) -> bool {
    match e {
        StoreError::NoQuorum(q) => q.any_refused_with(&ServerErrorKind::WrongType),
        StoreError::WrongType => true,
        _ => false,
    }
}

/// A key's presence and expiry, of any type, as a `Found` without a value: what EXISTS, the
/// TTL commands and MSETNX look at. Read by type only, never the value: EXISTS on a string of
/// many megabytes used to read it whole from every node asked, and could time out.
pub(super) async fn get_any(
    store: &VersionedStore,
    key: &[u8],
    level: Consistency,
) -> Result<Option<Found>, StoreError> {
    Ok(store
        .get_typed(key, level, TypedWanted::TypeOnly)
        .await?
        .map(|f| Found {
            value: Vec::new(),
            version: f.version,
            expires_at_ms: f.expires_at_ms,
        }))
}

/// EXPIRE and PERSIST of a key holding another type: the value is written again, whole, with
/// its new expiry (`new_expiry` gives it from the current one, `None` to leave the key as it
/// is). A type whose value quorumd does not read (a raw hash) answers WRONGTYPE.
async fn retime_typed(
    store: &VersionedStore,
    key: &[u8],
    level: Consistency,
    new_expiry: impl Fn(&TypedFound) -> Option<Option<i64>>,
) -> Frame {
    let now = wall_clock_ms() as i64;
    store
        .read_modify_write_typed(key, level, |found| {
            let Some(f) = found else {
                return (TypedChange::Keep, Frame::Integer(0));
            };
            let Some(at) = new_expiry(f) else {
                return (TypedChange::Keep, Frame::Integer(0));
            };
            if at.is_some_and(|at| at <= now) {
                return (TypedChange::Delete, Frame::Integer(1));
            }
            let expires_at_ms = at.map(|at| at as u64);
            let change = match TypedChange::put(&f.value, expires_at_ms) {
                Some(change) => change,
                None => return (TypedChange::Keep, wrong_type()),
            };
            (change, Frame::Integer(1))
        })
        .await
        .unwrap_or_else(store_error)
}

const READ: &[Flag] = &[Flag::ReadOnly, Flag::Fast];
const WRITE: &[Flag] = &[Flag::Write, Flag::Fast];

pub static SPECS: &[Spec] = &[
    spec("del", -2, &[Flag::Write], -1, 1, |a| {
        data(KeyCmd::Del(a[1..].to_vec()))
    }),
    spec("unlink", -2, WRITE, -1, 1, |a| {
        data(KeyCmd::Del(a[1..].to_vec()))
    }),
    spec("exists", -2, READ, -1, 1, |a| {
        data(KeyCmd::Exists(a[1..].to_vec()))
    }),
    // quorumd keeps no access time, so TOUCH only counts the keys that exist, as it answers.
    spec("touch", -2, READ, -1, 1, |a| {
        data(KeyCmd::Exists(a[1..].to_vec()))
    }),
    spec("expire", -3, WRITE, 1, 1, |a| {
        parse_expire(a, 1000, true, "expire")
    }),
    spec("pexpire", -3, WRITE, 1, 1, |a| {
        parse_expire(a, 1, true, "pexpire")
    }),
    spec("expireat", -3, WRITE, 1, 1, |a| {
        parse_expire(a, 1000, false, "expireat")
    }),
    spec("pexpireat", -3, WRITE, 1, 1, |a| {
        parse_expire(a, 1, false, "pexpireat")
    }),
    spec("ttl", 2, READ, 1, 1, |a| ttl(a, false, false)),
    spec("pttl", 2, READ, 1, 1, |a| ttl(a, true, false)),
    spec("expiretime", 2, READ, 1, 1, |a| ttl(a, false, true)),
    spec("pexpiretime", 2, READ, 1, 1, |a| ttl(a, true, true)),
    spec("persist", 2, WRITE, 1, 1, |a| {
        data(KeyCmd::Persist(a[1].clone()))
    }),
    spec("type", 2, READ, 1, 1, |a| data(KeyCmd::Type(a[1].clone()))),
];

/// TYPE of a CRDT key: a set or hash whose members were all removed answers `none`, as Redis
/// (which deletes empty sets and hashes); that costs one more read, for those keys only.
async fn crdt_type(crdts: &CrdtStore, key: &[u8], holds: CrdtKind, level: Consistency) -> Frame {
    let empty = match holds {
        CrdtKind::Counter => Ok(false),
        CrdtKind::Set => crdts.set_members(key, level).await.map(|m| m.is_empty()),
        CrdtKind::Map => crdts.map_get(key, level).await.map(|m| m.is_empty()),
    };
    match empty {
        Ok(true) => Frame::Simple("none".into()),
        Ok(false) => Frame::Simple(type_name(holds).into()),
        Err(e) => crdt_error(e),
    }
}

/// EXPIRE's NX / XX / GT / LT options (XX combines with GT or LT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireIf {
    /// Only when the key has no TTL.
    nx: bool,
    /// Only when the key has a TTL.
    xx: bool,
    /// Only when the new expiry is later (no TTL counts as infinitely late).
    gt: bool,
    /// Only when the new expiry is earlier.
    lt: bool,
}

pub enum KeyCmd {
    Del(Vec<Bytes>),
    Exists(Vec<Bytes>),
    Expire {
        key: Bytes,
        /// Absolute expiry, ms since the epoch; may be in the past (then the key is deleted).
        at_ms: i64,
        condition: ExpireIf,
    },
    /// TTL, PTTL (time left), EXPIRETIME, PEXPIRETIME (`absolute`: the expiry itself).
    Ttl {
        key: Bytes,
        millis: bool,
        absolute: bool,
    },
    Persist(Bytes),
    Type(Bytes),
}

fn ttl(args: &[Bytes], millis: bool, absolute: bool) -> Result<Command, Frame> {
    data(KeyCmd::Ttl {
        key: args[1].clone(),
        millis,
        absolute,
    })
}

fn parse_expire(args: &[Bytes], unit: i64, relative: bool, name: &str) -> Result<Command, Frame> {
    let mut condition = ExpireIf::default();
    for opt in &args[3..] {
        let flag = if eq(opt, "nx") {
            &mut condition.nx
        } else if eq(opt, "xx") {
            &mut condition.xx
        } else if eq(opt, "gt") {
            &mut condition.gt
        } else if eq(opt, "lt") {
            &mut condition.lt
        } else {
            return Err(Frame::error(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(opt)
            )));
        };
        *flag = true;
    }
    if condition.nx && (condition.xx || condition.gt || condition.lt) {
        return Err(Frame::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if condition.gt && condition.lt {
        return Err(Frame::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let v = int_arg(&args[2])?;
    let invalid = || Frame::error(format!("ERR invalid expire time in '{name}' command"));
    let ms = v.checked_mul(unit).ok_or_else(invalid)?;
    let at_ms = if relative {
        ms.checked_add(wall_clock_ms() as i64).ok_or_else(invalid)?
    } else {
        ms
    };
    data(KeyCmd::Expire {
        key: args[1].clone(),
        at_ms,
        condition,
    })
}

/// Whether EXPIRE's options let it change a TTL of `current` into `new_at`.
fn expire_allowed(c: ExpireIf, current: Option<u64>, new_at: i64) -> bool {
    let later = current.is_some_and(|at| new_at > at as i64);
    let earlier = current.is_none_or(|at| new_at < at as i64);
    !(c.nx && current.is_some() || c.xx && current.is_none() || c.gt && !later || c.lt && !earlier)
}

/// TTL's answer: -2 absent, -1 no expiry, else the time left, or with `absolute` the expiry
/// itself. In seconds both are rounded to the nearest, as redis-server 7.0's
/// `ttlGenericCommand` computes them: `(ms + 500) / 1000`.
fn ttl_reply(found: Option<&Found>, millis: bool, absolute: bool, now: u64) -> i64 {
    if absolute
        && let Some(Found {
            expires_at_ms: Some(at),
            ..
        }) = found
    {
        let at = i64::try_from(*at).unwrap_or(i64::MAX);
        // In 128 bits: near i64::MAX Redis's `long long` sum overflows, yet 7.0.15 answers
        // this quotient there (checked with PEXPIREAT 9223372036854775807).
        return if millis {
            at
        } else {
            ((i128::from(at) + 500) / 1000) as i64
        };
    }
    match found {
        None => -2,
        Some(Found {
            expires_at_ms: None,
            ..
        }) => -1,
        Some(Found {
            expires_at_ms: Some(at),
            ..
        }) => {
            let left = at.saturating_sub(now) as i64;
            if millis { left } else { (left + 500) / 1000 }
        }
    }
}

impl KeyCmd {
    pub fn access(&self) -> Access<'_> {
        match self {
            KeyCmd::Del(keys) => Access {
                reads: vec![],
                writes: keys.iter().map(|k| &k[..]).collect(),
            },
            KeyCmd::Exists(keys) => Access {
                reads: keys.iter().map(|k| &k[..]).collect(),
                writes: vec![],
            },
            KeyCmd::Expire { key, .. } | KeyCmd::Persist(key) => Access {
                reads: vec![],
                writes: vec![&key[..]],
            },
            KeyCmd::Ttl { key, .. } | KeyCmd::Type(key) => Access {
                reads: vec![&key[..]],
                writes: vec![],
            },
        }
    }

    pub async fn apply(
        self,
        store: &VersionedStore,
        crdts: &CrdtStore,
        level: Consistency,
    ) -> Frame {
        match self {
            KeyCmd::Del(keys) => {
                let deletes = keys.iter().map(|k| store.delete_existing(k, level));
                let mut removed = 0;
                for r in futures::future::join_all(deletes).await {
                    match r {
                        Ok(existed) => removed += i64::from(existed),
                        Err(e) => return store_error(e),
                    }
                }
                Frame::Integer(removed)
            }
            KeyCmd::Exists(keys) => {
                let reads = keys.iter().map(|k| get_any(store, k, level));
                let mut present = 0;
                for r in futures::future::join_all(reads).await {
                    match r {
                        Ok(f) => present += i64::from(f.is_some()),
                        // A counter, set or hash exists (it may be empty: see docs/RESP.md).
                        Err(StoreError::KindConflict { .. }) => present += 1,
                        Err(e) => return store_error(e),
                    }
                }
                Frame::Integer(present)
            }
            KeyCmd::Expire {
                key,
                at_ms,
                condition,
            } => match store
                .read_modify_write(&key, level, |found| {
                    let Some(f) = found else {
                        return (Change::Keep, 0);
                    };
                    if !expire_allowed(condition, f.expires_at_ms, at_ms) {
                        return (Change::Keep, 0);
                    }
                    if at_ms <= wall_clock_ms() as i64 {
                        return (Change::Delete, 1);
                    }
                    let change = Change::Put {
                        value: f.value.clone(),
                        expires_at_ms: Some(at_ms as u64),
                    };
                    (change, 1)
                })
                .await
            {
                Ok(n) => Frame::Integer(n),
                Err(e) if holds_other_type(&e) => {
                    retime_typed(store, &key, level, |f| {
                        expire_allowed(condition, f.expires_at_ms, at_ms).then_some(Some(at_ms))
                    })
                    .await
                }
                Err(e) => store_error(e),
            },
            KeyCmd::Ttl {
                key,
                millis,
                absolute,
            } => match get_any(store, &key, level).await {
                Ok(f) => Frame::Integer(ttl_reply(f.as_ref(), millis, absolute, wall_clock_ms())),
                // A counter, hash or set never expires: -1, as Redis answers for a key without
                // a TTL, or -2 for an emptied one, which TYPE calls `none` too.
                Err(StoreError::KindConflict { holds }) => {
                    match crdt_type(crdts, &key, holds, level).await {
                        Frame::Simple(t) if t == "none" => Frame::Integer(-2),
                        Frame::Simple(_) => Frame::Integer(-1),
                        refusal => refusal,
                    }
                }
                Err(e) => store_error(e),
            },
            KeyCmd::Persist(key) => match store
                .read_modify_write(&key, level, |found| match found {
                    Some(f) if f.expires_at_ms.is_some() => (
                        Change::Put {
                            value: f.value.clone(),
                            expires_at_ms: None,
                        },
                        1,
                    ),
                    _ => (Change::Keep, 0),
                })
                .await
            {
                Ok(n) => Frame::Integer(n),
                Err(e) if holds_other_type(&e) => {
                    retime_typed(store, &key, level, |f| {
                        f.expires_at_ms.is_some().then_some(None)
                    })
                    .await
                }
                Err(e) => store_error(e),
            },
            // By type only, as `get_any`: never the value.
            KeyCmd::Type(key) => match store.get_typed(&key, level, TypedWanted::TypeOnly).await {
                Ok(f) => {
                    Frame::Simple(f.map_or("none".to_owned(), |f| f.value.type_name().to_owned()))
                }
                Err(StoreError::KindConflict { holds }) => {
                    crdt_type(crdts, &key, holds, level).await
                }
                Err(e) => store_error(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumd_core::hlc::Version;

    #[test]
    fn expire_options_follow_redis() {
        let nx = ExpireIf {
            nx: true,
            ..ExpireIf::default()
        };
        let xx = ExpireIf {
            xx: true,
            ..ExpireIf::default()
        };
        let gt = ExpireIf {
            gt: true,
            ..ExpireIf::default()
        };
        let lt = ExpireIf {
            lt: true,
            ..ExpireIf::default()
        };
        assert!(expire_allowed(ExpireIf::default(), None, 5));
        assert!(expire_allowed(nx, None, 5));
        assert!(!expire_allowed(nx, Some(1), 5));
        assert!(!expire_allowed(xx, None, 5));
        assert!(!expire_allowed(gt, None, 5));
        assert!(expire_allowed(gt, Some(4), 5));
        assert!(!expire_allowed(gt, Some(5), 5));
        assert!(expire_allowed(lt, None, 5));
        assert!(!expire_allowed(lt, Some(4), 5));
        let xx_lt = ExpireIf {
            xx: true,
            lt: true,
            ..ExpireIf::default()
        };
        assert!(
            !expire_allowed(xx_lt, None, 5),
            "XX wins over LT's 'no TTL is later'"
        );
    }

    #[test]
    fn ttl_rounds_like_redis() {
        let f = |at| Found {
            value: vec![],
            version: Version::ZERO,
            expires_at_ms: at,
        };
        assert_eq!(ttl_reply(None, false, false, 0), -2);
        assert_eq!(ttl_reply(Some(&f(None)), false, false, 0), -1);
        assert_eq!(ttl_reply(Some(&f(Some(10_499))), false, false, 0), 10);
        assert_eq!(ttl_reply(Some(&f(Some(10_500))), false, false, 0), 11);
        assert_eq!(ttl_reply(Some(&f(Some(10_500))), true, false, 500), 10_000);
    }

    #[test]
    fn expiretime_rounds_like_redis() {
        let f = |at| Found {
            value: vec![],
            version: Version::ZERO,
            expires_at_ms: Some(at),
        };
        let t = 1_796_688_179_000;
        assert_eq!(ttl_reply(Some(&f(t + 499)), false, true, 0), 1_796_688_179);
        assert_eq!(ttl_reply(Some(&f(t + 500)), false, true, 0), 1_796_688_180);
        assert_eq!(ttl_reply(Some(&f(t + 500)), true, true, 0), t as i64 + 500);
        // redis-server 7.0.15's answers at the top of the range.
        let top = i64::MAX as u64;
        assert_eq!(
            ttl_reply(Some(&f(top)), false, true, 0),
            9_223_372_036_854_776
        );
        assert_eq!(
            ttl_reply(Some(&f(top - 499)), false, true, 0),
            9_223_372_036_854_775
        );
    }
}
