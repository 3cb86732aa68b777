//! HSET (and HMSET), HSETNX, HGET, HMGET, HGETALL, HLEN, HEXISTS, HSTRLEN, HKEYS, HVALS, HDEL,
//! HINCRBY, HINCRBYFLOAT, HRANDFIELD, HSCAN.
//!
//! A hash is a Redis hash, a versioned value like a list (docs/RESP.md): read whole, changed
//! here, written whole under a ballot, so it can be deleted, expired, renamed and given another
//! type as in Redis, and concurrent writers through any instances lose nothing. A key that is
//! a map made by the HTTP API (docs/CRDTS.md) keeps its merge semantics: the same commands
//! read it and merge into it (per field, the newest write wins).

use super::counters;
use super::long_double::{self, LongDouble, Parsed};
use super::{
    Access, Command, Flag, ScanArgs, Spec, crdt_error, data, eq, int_arg, random_picks,
    store_error, syntax_error, whole_scan, wrong_arity, wrong_type,
};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::crdt::CrdtKind;
use quorumd_core::quorum::Consistency;
use quorumd_replication::crdt_store::{CrdtError, CrdtStore};
use quorumd_replication::store::{
    StoreError, TypedChange, TypedFound, TypedValue, TypedWanted, VersionedStore,
};
use std::collections::{BTreeSet, HashMap};

/// A hash's fields and values, in the order they are kept.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

const READ: &[Flag] = &[Flag::ReadOnly, Flag::Fast];
const WRITE: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];

pub static SPECS: &[Spec] = &[
    Spec::keyed("hset", -4, WRITE, (1, 1, 1), |a| parse_hset(a, "hset")),
    // Deprecated in Redis but still sent by older clients: HSET answering OK.
    Spec::keyed("hmset", -4, WRITE, (1, 1, 1), |a| parse_hset(a, "hmset")),
    Spec::keyed("hget", 3, READ, (1, 1, 1), |a| {
        data(HashCmd::Get(a[1].clone(), vec![a[2].clone()], false))
    }),
    Spec::keyed("hmget", -3, READ, (1, 1, 1), |a| {
        data(HashCmd::Get(a[1].clone(), a[2..].to_vec(), true))
    }),
    Spec::keyed("hgetall", 2, READ, (1, 1, 1), |a| {
        data(HashCmd::GetAll(a[1].clone()))
    }),
    Spec::keyed("hdel", -3, &[Flag::Write, Flag::Fast], (1, 1, 1), |a| {
        data(HashCmd::Del(a[1].clone(), a[2..].to_vec()))
    }),
    Spec::keyed("hlen", 2, READ, (1, 1, 1), |a| {
        data(HashCmd::Len(a[1].clone()))
    }),
    Spec::keyed("hexists", 3, READ, (1, 1, 1), |a| {
        data(HashCmd::Exists(a[1].clone(), a[2].clone()))
    }),
    Spec::keyed("hstrlen", 3, READ, (1, 1, 1), |a| {
        data(HashCmd::StrLen(a[1].clone(), a[2].clone()))
    }),
    Spec::keyed("hkeys", 2, &[Flag::ReadOnly], (1, 1, 1), |a| {
        data(HashCmd::Keys(a[1].clone()))
    }),
    Spec::keyed("hvals", 2, &[Flag::ReadOnly], (1, 1, 1), |a| {
        data(HashCmd::Vals(a[1].clone()))
    }),
    Spec::keyed("hincrby", 4, WRITE, (1, 1, 1), |a| {
        data(HashCmd::IncrBy {
            key: a[1].clone(),
            field: a[2].clone(),
            delta: int_arg(&a[3])?,
        })
    }),
    Spec::keyed("hsetnx", 4, WRITE, (1, 1, 1), |a| {
        data(HashCmd::SetNx(a[1].clone(), a[2].clone(), a[3].clone()))
    }),
    Spec::keyed("hincrbyfloat", 4, WRITE, (1, 1, 1), |a| {
        // Checked before the key is read, as Redis does.
        let increment = match long_double::parse(&a[3]) {
            None => return Err(Frame::error("ERR value is not a valid float")),
            Some(Parsed::Infinite) => return Err(Frame::error("ERR value is NaN or Infinity")),
            Some(finite) => finite,
        };
        data(HashCmd::IncrByFloat {
            key: a[1].clone(),
            field: a[2].clone(),
            increment,
        })
    }),
    Spec::keyed(
        "hrandfield",
        -2,
        &[Flag::ReadOnly],
        (1, 1, 1),
        parse_hrandfield,
    ),
    Spec::keyed("hscan", -3, &[Flag::ReadOnly], (1, 1, 1), |a| {
        data(HashCmd::Scan(a[1].clone(), ScanArgs::parse(a)))
    }),
];

/// HRANDFIELD key [count [WITHVALUES]], checked as Redis 7.0 checks it.
fn parse_hrandfield(a: &[Bytes]) -> Result<Command, Frame> {
    let key = a[1].clone();
    let Some(count) = a.get(2) else {
        return data(HashCmd::RandField {
            key,
            count: None,
            withvalues: false,
        });
    };
    let count = int_arg(count)?;
    if count == i64::MIN {
        return Err(super::sets::out_of_range(false));
    }
    if a.len() > 4 || (a.len() == 4 && !eq(&a[3], "withvalues")) {
        return Err(syntax_error());
    }
    let withvalues = a.len() == 4;
    // Redis's bound on a reply of pairs.
    if withvalues && count.unsigned_abs() > (i64::MAX / 2) as u64 {
        return Err(Frame::error("ERR value is out of range"));
    }
    data(HashCmd::RandField {
        key,
        count: Some(count),
        withvalues,
    })
}

pub enum HashCmd {
    /// Field/value pairs in argument order, each field once, at its first place with its last
    /// value (Redis sets them one after the other, so new fields go last in that order);
    /// `true` for HMSET, which answers OK instead of the count.
    Set(Bytes, Fields, bool),
    /// HGET (one field, a bulk reply) or HMGET (an array).
    Get(Bytes, Vec<Bytes>, bool),
    GetAll(Bytes),
    Len(Bytes),
    Exists(Bytes, Bytes),
    StrLen(Bytes, Bytes),
    Keys(Bytes),
    Vals(Bytes),
    Del(Bytes, Vec<Bytes>),
    IncrBy {
        key: Bytes,
        field: Bytes,
        delta: i64,
    },
    SetNx(Bytes, Bytes, Bytes),
    IncrByFloat {
        key: Bytes,
        field: Bytes,
        increment: Parsed,
    },
    RandField {
        key: Bytes,
        count: Option<i64>,
        withvalues: bool,
    },
    Scan(Bytes, ScanArgs),
}

fn parse_hset(args: &[Bytes], name: &str) -> Result<Command, Frame> {
    if !args.len().is_multiple_of(2) {
        return Err(wrong_arity(name));
    }
    data(HashCmd::Set(
        args[1].clone(),
        distinct_pairs(&args[2..]),
        name == "hmset",
    ))
}

/// HSET's field/value arguments, each field once, at its first place with its last value.
fn distinct_pairs(args: &[Bytes]) -> Fields {
    let mut pairs: Fields = Vec::with_capacity(args.len() / 2);
    let mut at: HashMap<&[u8], usize> = HashMap::with_capacity(args.len() / 2);
    for p in args.chunks(2) {
        match at.get(&p[0][..]) {
            Some(&i) => pairs[i].1 = p[1].to_vec(),
            None => {
                at.insert(&p[0][..], pairs.len());
                pairs.push((p[0].to_vec(), p[1].to_vec()));
            }
        }
    }
    pairs
}

impl HashCmd {
    fn key(&self) -> &[u8] {
        match self {
            HashCmd::Set(k, _, _)
            | HashCmd::Get(k, _, _)
            | HashCmd::GetAll(k)
            | HashCmd::Len(k)
            | HashCmd::Exists(k, _)
            | HashCmd::StrLen(k, _)
            | HashCmd::Keys(k)
            | HashCmd::Vals(k)
            | HashCmd::Del(k, _)
            | HashCmd::IncrBy { key: k, .. }
            | HashCmd::SetNx(k, _, _)
            | HashCmd::IncrByFloat { key: k, .. }
            | HashCmd::RandField { key: k, .. }
            | HashCmd::Scan(k, _) => k,
        }
    }

    pub fn access(&self) -> Access<'_> {
        let key = vec![self.key()];
        match self {
            HashCmd::Get(..)
            | HashCmd::GetAll(_)
            | HashCmd::Len(_)
            | HashCmd::Exists(..)
            | HashCmd::StrLen(..)
            | HashCmd::Keys(_)
            | HashCmd::Vals(_)
            | HashCmd::RandField { .. }
            | HashCmd::Scan(..) => Access {
                reads: key,
                writes: vec![],
            },
            _ => Access {
                reads: vec![],
                writes: key,
            },
        }
    }

    pub async fn apply(
        self,
        store: &VersionedStore,
        crdts: &CrdtStore,
        level: Consistency,
    ) -> Frame {
        let bad_cursor = match &self {
            HashCmd::Scan(_, args) => args.bad_cursor(),
            _ => None,
        };
        if let Some(refusal) = bad_cursor {
            return refusal;
        }
        if self.access().writes.is_empty() {
            return match read_hash(store, crdts, self.key(), level).await {
                Ok(fields) => self.answer(&fields),
                Err(refusal) => refusal,
            };
        }
        match self.write_hash(store, level).await {
            // A map made by the HTTP API merges the change instead.
            Err(StoreError::KindConflict {
                holds: CrdtKind::Map,
            }) => self
                .write_map(crdts, level)
                .await
                .unwrap_or_else(crdt_error),
            Ok(reply) => reply,
            Err(e) => store_error(e),
        }
    }

    /// The reply of a read-only command on these fields.
    fn answer(&self, fields: &[(Vec<u8>, Vec<u8>)]) -> Frame {
        let value = |f: &[u8]| fields.iter().find(|(k, _)| k == f).map(|(_, v)| v);
        match self {
            HashCmd::Get(_, asked, many) => {
                let mut values = asked
                    .iter()
                    .map(|f| value(f).map_or(Frame::Null, |v| Frame::bulk(v.clone())));
                if *many {
                    Frame::Array(values.collect())
                } else {
                    values.next().unwrap_or(Frame::Null)
                }
            }
            HashCmd::GetAll(_) => Frame::Map(
                fields
                    .iter()
                    .map(|(f, v)| (Frame::bulk(f.clone()), Frame::bulk(v.clone())))
                    .collect(),
            ),
            HashCmd::Len(_) => Frame::Integer(fields.len() as i64),
            HashCmd::Exists(_, f) => Frame::Integer(i64::from(value(f).is_some())),
            HashCmd::StrLen(_, f) => Frame::Integer(value(f).map_or(0, |v| v.len() as i64)),
            HashCmd::Keys(_) => {
                Frame::Array(fields.iter().map(|(f, _)| Frame::bulk(f.clone())).collect())
            }
            HashCmd::Vals(_) => {
                Frame::Array(fields.iter().map(|(_, v)| Frame::bulk(v.clone())).collect())
            }
            HashCmd::RandField {
                count, withvalues, ..
            } => random_fields(fields, *count, *withvalues),
            HashCmd::Scan(_, args) => whole_scan(
                fields,
                args,
                |(f, _)| f,
                |(f, v)| vec![Frame::bulk(f.clone()), Frame::bulk(v.clone())],
            ),
            HashCmd::Set(..)
            | HashCmd::Del(..)
            | HashCmd::IncrBy { .. }
            | HashCmd::SetNx(..)
            | HashCmd::IncrByFloat { .. } => {
                Frame::error("ERR internal: a hash write answered as a read")
            }
        }
    }

    /// Applies a write command to these fields, as Redis does to a hash: the reply, and
    /// whether the fields changed. `Err`: Redis's refusal, nothing changes.
    fn change(&self, fields: &mut Fields) -> Result<(Frame, bool), Frame> {
        let position = |fields: &Fields, f: &[u8]| fields.iter().position(|(k, _)| k == f);
        match self {
            HashCmd::Set(_, pairs, hmset) => {
                let mut added = 0;
                for (f, v) in pairs {
                    match position(fields, f) {
                        Some(i) => fields[i].1 = v.clone(),
                        None => {
                            fields.push((f.clone(), v.clone()));
                            added += 1;
                        }
                    }
                }
                let reply = if *hmset {
                    Frame::ok()
                } else {
                    Frame::Integer(added)
                };
                Ok((reply, true))
            }
            HashCmd::Del(_, asked) => {
                let before = fields.len();
                fields.retain(|(k, _)| !asked.iter().any(|a| a[..] == k[..]));
                let removed = before - fields.len();
                Ok((Frame::Integer(removed as i64), removed > 0))
            }
            HashCmd::IncrBy { field, delta, .. } => {
                let at = position(fields, field);
                let current = match at {
                    None => 0,
                    // As INCR reads a string: `01`, `+1` or `-0` are not integers to Redis.
                    Some(i) => counters::parse_integer(&fields[i].1)
                        .ok_or_else(|| Frame::error("ERR hash value is not an integer"))?,
                };
                let next = current
                    .checked_add(*delta)
                    .ok_or_else(|| Frame::error("ERR increment or decrement would overflow"))?;
                let text = next.to_string().into_bytes();
                match at {
                    Some(i) => fields[i].1 = text,
                    None => fields.push((field.to_vec(), text)),
                }
                Ok((Frame::Integer(next), true))
            }
            HashCmd::SetNx(_, field, value) => {
                if position(fields, field).is_some() {
                    return Ok((Frame::Integer(0), false));
                }
                fields.push((field.to_vec(), value.to_vec()));
                Ok((Frame::Integer(1), true))
            }
            HashCmd::IncrByFloat {
                field, increment, ..
            } => {
                let at = position(fields, field);
                let text = float_sum(at.map(|i| &fields[i].1[..]), *increment)?;
                match at {
                    Some(i) => fields[i].1 = text.clone().into_bytes(),
                    None => fields.push((field.to_vec(), text.clone().into_bytes())),
                }
                Ok((Frame::bulk(text), true))
            }
            _ => Ok((self.answer(fields), false)),
        }
    }

    /// A write command on a Redis hash: one read-modify-write of the whole hash, which keeps
    /// its time to live; a hash left without fields is deleted, as in Redis.
    async fn write_hash(
        &self,
        store: &VersionedStore,
        level: Consistency,
    ) -> Result<Frame, StoreError> {
        store
            .read_modify_write_typed(self.key(), level, |found| {
                let (mut fields, expires_at_ms) = match found {
                    None => (Vec::new(), None),
                    Some(TypedFound {
                        value: TypedValue::Hash(fields),
                        expires_at_ms,
                        ..
                    }) => (fields.clone(), *expires_at_ms),
                    Some(_) => return (TypedChange::Keep, wrong_type()),
                };
                match self.change(&mut fields) {
                    Ok((reply, true)) => (
                        TypedChange::PutHash {
                            fields,
                            expires_at_ms,
                        },
                        reply,
                    ),
                    Ok((reply, false)) => (TypedChange::Keep, reply),
                    Err(refusal) => (TypedChange::Keep, refusal),
                }
            })
            .await
    }

    /// A write command on a map made by the HTTP API: merged into the CRDT. The counts
    /// answered are computed against a quorum read just before; HINCRBY is a read-modify-write
    /// of one register, which concurrent writers can lose (docs/CRDTS.md).
    async fn write_map(self, crdts: &CrdtStore, level: Consistency) -> Result<Frame, CrdtError> {
        Ok(match self {
            HashCmd::Set(key, pairs, hmset) => {
                let before = crdts.map_get(&key, level).await?;
                let added = pairs
                    .iter()
                    .filter(|(f, _)| !before.contains_key(f))
                    .count();
                let fields = pairs.into_iter().map(|(f, v)| (f, Some(v))).collect();
                crdts.map_set(&key, fields, level).await?;
                if hmset {
                    Frame::ok()
                } else {
                    Frame::Integer(added as i64)
                }
            }
            HashCmd::Del(key, fields) => {
                let before = crdts.map_get(&key, level).await?;
                let present: BTreeSet<Vec<u8>> = fields
                    .iter()
                    .filter(|f| before.contains_key(&f[..]))
                    .map(|f| f.to_vec())
                    .collect();
                let n = present.len();
                if n > 0 {
                    let deletes = present.into_iter().map(|f| (f, None)).collect();
                    crdts.map_set(&key, deletes, level).await?;
                }
                Frame::Integer(n as i64)
            }
            HashCmd::IncrBy { key, field, delta } => {
                Frame::Integer(crdts.map_incr_by(&key, &field, delta, level).await?)
            }
            // A read, then one register written: last writer wins, as HINCRBY on a map.
            HashCmd::SetNx(key, field, value) => {
                if crdts.map_get(&key, level).await?.contains_key(&field[..]) {
                    Frame::Integer(0)
                } else {
                    let set = vec![(field.to_vec(), Some(value.to_vec()))];
                    crdts.map_set(&key, set, level).await?;
                    Frame::Integer(1)
                }
            }
            HashCmd::IncrByFloat {
                key,
                field,
                increment,
            } => {
                let before = crdts.map_get(&key, level).await?;
                match float_sum(before.get(&field[..]).map(|v| &v[..]), increment) {
                    Ok(text) => {
                        let set = vec![(field.to_vec(), Some(text.clone().into_bytes()))];
                        crdts.map_set(&key, set, level).await?;
                        Frame::bulk(text)
                    }
                    Err(refusal) => refusal,
                }
            }
            read => {
                let fields: Fields = crdts
                    .map_get(read.key(), level)
                    .await?
                    .into_iter()
                    .collect();
                read.answer(&fields)
            }
        })
    }
}

/// HINCRBYFLOAT's new value: the field's (0 when absent) plus `increment`, in Redis's x87
/// `long double` arithmetic (as INCRBYFLOAT), printed as Redis prints it.
fn float_sum(current: Option<&[u8]>, increment: Parsed) -> Result<String, Frame> {
    let current = match current {
        None => Parsed::Finite(LongDouble::ZERO),
        Some(v) => {
            long_double::parse(v).ok_or_else(|| Frame::error("ERR hash value is not a float"))?
        }
    };
    long_double::add(current, increment)
        .map(long_double::human)
        .ok_or_else(|| Frame::error("ERR increment would produce NaN or Infinity"))
}

/// HRANDFIELD's reply: one field (nil for a missing key) without a count, else `random_picks`
/// with their values after each when asked (pairs in RESP3).
fn random_fields(fields: &[(Vec<u8>, Vec<u8>)], count: Option<i64>, withvalues: bool) -> Frame {
    use rand::Rng;
    let Some(count) = count else {
        return match fields.len() {
            0 => Frame::Null,
            n => Frame::bulk(fields[rand::rng().random_range(0..n)].0.clone()),
        };
    };
    if fields.is_empty() {
        return Frame::Array(vec![]);
    }
    let picks = match random_picks(fields, count) {
        Ok(picks) => picks,
        Err(refusal) => return refusal,
    };
    if !withvalues {
        return Frame::Array(picks.iter().map(|(f, _)| Frame::bulk(f.clone())).collect());
    }
    Frame::Pairs(
        picks
            .iter()
            .flat_map(|(f, v)| [Frame::bulk(f.clone()), Frame::bulk(v.clone())])
            .collect(),
    )
}

/// The fields of the hash under `key`: a Redis hash, or a map made by the HTTP API; none for
/// an absent key. `Err`: the reply (WRONGTYPE for another type, or the store's failure).
async fn read_hash(
    store: &VersionedStore,
    crdts: &CrdtStore,
    key: &[u8],
    level: Consistency,
) -> Result<Fields, Frame> {
    match store.get_typed(key, level, TypedWanted::Full).await {
        Ok(None) => Ok(Vec::new()),
        Ok(Some(TypedFound {
            value: TypedValue::Hash(fields),
            ..
        })) => Ok(fields),
        Ok(Some(_)) => Err(wrong_type()),
        Err(StoreError::KindConflict {
            holds: CrdtKind::Map,
        }) => match crdts.map_get(key, level).await {
            Ok(map) => Ok(map.into_iter().collect()),
            Err(e) => Err(crdt_error(e)),
        },
        Err(e) => Err(store_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hset_adds_new_fields_last_in_argument_order() {
        let args: Vec<Bytes> = ["b", "1", "a", "2", "b", "3", "c", "4"]
            .into_iter()
            .map(Bytes::from)
            .collect();
        let pairs = distinct_pairs(&args);
        let v = |f: &str, x: &str| (f.as_bytes().to_vec(), x.as_bytes().to_vec());
        assert_eq!(pairs, vec![v("b", "3"), v("a", "2"), v("c", "4")]);
        let mut fields = vec![v("z", "0")];
        let (reply, changed) = HashCmd::Set(Bytes::from("k"), pairs, false)
            .change(&mut fields)
            .unwrap();
        assert_eq!((reply, changed), (Frame::Integer(3), true));
        assert_eq!(
            fields,
            vec![v("z", "0"), v("b", "3"), v("a", "2"), v("c", "4")]
        );
    }
}
