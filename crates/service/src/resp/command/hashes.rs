//! HSET (and HMSET), HGET, HMGET, HGETALL, HLEN, HEXISTS, HSTRLEN, HKEYS, HVALS, HDEL, HINCRBY on the map of last-writer-wins registers
//! (docs/CRDTS.md): per field, the newest write wins.
//!
//! HSET and HDEL answer how many fields were new (or present) in what a read quorum saw just
//! before the write; with concurrent writers that count is a best effort, the fields' values
//! are not. HINCRBY is a read-modify-write of one register: concurrent HINCRBYs of one field
//! can lose an increment (use INCR on a counter for that).

use super::{Access, Command, Flag, Spec, crdt_error, data, int_arg, wrong_arity};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::quorum::Consistency;
use quorumd_replication::crdt_store::CrdtStore;
use std::collections::{BTreeMap, BTreeSet};

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
];

pub enum HashCmd {
    /// Field/value pairs, a field given twice keeping its last value (as Redis); `true` for
    /// HMSET, which answers OK instead of the count.
    Set(Bytes, BTreeMap<Vec<u8>, Vec<u8>>, bool),
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
}

fn parse_hset(args: &[Bytes], name: &str) -> Result<Command, Frame> {
    if !args.len().is_multiple_of(2) {
        return Err(wrong_arity(name));
    }
    let pairs = args[2..]
        .chunks(2)
        .map(|p| (p[0].to_vec(), p[1].to_vec()))
        .collect();
    data(HashCmd::Set(args[1].clone(), pairs, name == "hmset"))
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
            | HashCmd::IncrBy { key: k, .. } => k,
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
            | HashCmd::Vals(_) => Access {
                reads: key,
                writes: vec![],
            },
            _ => Access {
                reads: vec![],
                writes: key,
            },
        }
    }

    pub async fn apply(self, crdts: &CrdtStore, level: Consistency) -> Frame {
        self.run(crdts, level).await.unwrap_or_else(crdt_error)
    }

    async fn run(
        self,
        crdts: &CrdtStore,
        level: Consistency,
    ) -> Result<Frame, quorumd_replication::crdt_store::CrdtError> {
        Ok(match self {
            HashCmd::Set(key, pairs, hmset) => {
                let before = crdts.map_get(&key, level).await?;
                let added = pairs.keys().filter(|f| !before.contains_key(*f)).count();
                let fields = pairs.into_iter().map(|(f, v)| (f, Some(v))).collect();
                crdts.map_set(&key, fields, level).await?;
                if hmset {
                    Frame::ok()
                } else {
                    Frame::Integer(added as i64)
                }
            }
            HashCmd::Get(key, fields, many) => {
                let map = crdts.map_get(&key, level).await?;
                let mut values = fields.iter().map(|f| {
                    map.get(&f[..])
                        .map_or(Frame::Null, |v| Frame::bulk(v.clone()))
                });
                if many {
                    Frame::Array(values.collect())
                } else {
                    values.next().unwrap_or(Frame::Null)
                }
            }
            HashCmd::GetAll(key) => Frame::Map(
                crdts
                    .map_get(&key, level)
                    .await?
                    .into_iter()
                    .map(|(f, v)| (Frame::bulk(f), Frame::bulk(v)))
                    .collect(),
            ),
            HashCmd::Len(key) => Frame::Integer(crdts.map_get(&key, level).await?.len() as i64),
            HashCmd::Exists(key, field) => Frame::Integer(i64::from(
                crdts.map_get(&key, level).await?.contains_key(&field[..]),
            )),
            HashCmd::StrLen(key, field) => Frame::Integer(
                crdts
                    .map_get(&key, level)
                    .await?
                    .get(&field[..])
                    .map_or(0, |v| v.len() as i64),
            ),
            HashCmd::Keys(key) => Frame::Array(
                crdts
                    .map_get(&key, level)
                    .await?
                    .into_keys()
                    .map(Frame::bulk)
                    .collect(),
            ),
            HashCmd::Vals(key) => Frame::Array(
                crdts
                    .map_get(&key, level)
                    .await?
                    .into_values()
                    .map(Frame::bulk)
                    .collect(),
            ),
            HashCmd::Del(key, fields) => {
                let before = crdts.map_get(&key, level).await?;
                let present: BTreeSet<Vec<u8>> = fields
                    .iter()
                    .filter(|f| before.contains_key(&f[..]))
                    .map(|f| f.to_vec())
                    .collect();
                if !present.is_empty() {
                    let n = present.len();
                    let deletes = present.into_iter().map(|f| (f, None)).collect();
                    crdts.map_set(&key, deletes, level).await?;
                    Frame::Integer(n as i64)
                } else {
                    Frame::Integer(0)
                }
            }
            HashCmd::IncrBy { key, field, delta } => {
                Frame::Integer(crdts.map_incr_by(&key, &field, delta, level).await?)
            }
        })
    }
}
