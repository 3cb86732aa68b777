//! SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD, SINTER, SUNION, SDIFF, SINTERCARD,
//! SINTERSTORE, SUNIONSTORE, SDIFFSTORE, SMOVE, SPOP, SRANDMEMBER, SSCAN.
//!
//! A set is a Redis set, a versioned value like a list (docs/RESP.md): read whole, changed
//! here, written whole under a ballot, so it can be deleted, expired, renamed and given
//! another type as in Redis, and two clients popping one set at once never get the same
//! member. A key that is an add-wins OR-set made by the HTTP API (docs/CRDTS.md) keeps its
//! merge semantics: the same commands read it and merge into it (there SPOP removes what it
//! picked from a read, and SADD/SREM count against a read: best efforts under concurrency).

use super::{
    Access, Command, Flag, ScanArgs, Spec, crdt_error, data, eq, int_arg, is_wrong_type,
    random_picks, store_error, store_replacing, syntax_error, whole_scan, wrong_type,
};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::crdt::CrdtKind;
use quorumd_core::quorum::Consistency;
use quorumd_replication::crdt_store::{CrdtError, CrdtStore};
use quorumd_replication::store::{
    StoreError, Transfer, TypedChange, TypedFound, TypedValue, TypedWanted, VersionedStore,
};
use rand::Rng;
use std::collections::BTreeSet;

const READ: &[Flag] = &[Flag::ReadOnly, Flag::Fast];
const WRITE: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const STORE: &[Flag] = &[Flag::Write, Flag::DenyOom];

pub static SPECS: &[Spec] = &[
    Spec::keyed("sadd", -3, WRITE, (1, 1, 1), |a| {
        data(SetCmd::Add(a[1].clone(), members(&a[2..])))
    }),
    Spec::keyed("srem", -3, &[Flag::Write, Flag::Fast], (1, 1, 1), |a| {
        data(SetCmd::Rem(a[1].clone(), members(&a[2..])))
    }),
    Spec::keyed("smembers", 2, &[Flag::ReadOnly], (1, 1, 1), |a| {
        data(SetCmd::Members(a[1].clone()))
    }),
    Spec::keyed("sismember", 3, READ, (1, 1, 1), |a| {
        data(SetCmd::IsMember(a[1].clone(), a[2].clone()))
    }),
    Spec::keyed("smismember", -3, READ, (1, 1, 1), |a| {
        data(SetCmd::MIsMember(a[1].clone(), a[2..].to_vec()))
    }),
    Spec::keyed("scard", 2, READ, (1, 1, 1), |a| {
        data(SetCmd::Card(a[1].clone()))
    }),
    Spec::keyed("sinter", -2, &[Flag::ReadOnly], (1, -1, 1), |a| {
        data(SetCmd::Combine(Algebra::Inter, a[1..].to_vec()))
    }),
    Spec::keyed("sunion", -2, &[Flag::ReadOnly], (1, -1, 1), |a| {
        data(SetCmd::Combine(Algebra::Union, a[1..].to_vec()))
    }),
    Spec::keyed("sdiff", -2, &[Flag::ReadOnly], (1, -1, 1), |a| {
        data(SetCmd::Combine(Algebra::Diff, a[1..].to_vec()))
    }),
    Spec::keyed("sinterstore", -3, STORE, (1, -1, 1), |a| {
        data(SetCmd::Store(Algebra::Inter, a[1].clone(), a[2..].to_vec()))
    }),
    Spec::keyed("sunionstore", -3, STORE, (1, -1, 1), |a| {
        data(SetCmd::Store(Algebra::Union, a[1].clone(), a[2..].to_vec()))
    }),
    Spec::keyed("sdiffstore", -3, STORE, (1, -1, 1), |a| {
        data(SetCmd::Store(Algebra::Diff, a[1].clone(), a[2..].to_vec()))
    }),
    // Its keys follow numkeys (movable keys, as in Redis's table).
    Spec::keyless("sintercard", -3, &[Flag::ReadOnly], parse_sintercard),
    Spec::keyed("smove", 4, &[Flag::Write, Flag::Fast], (1, 2, 1), |a| {
        data(SetCmd::Move {
            src: a[1].clone(),
            dst: a[2].clone(),
            member: a[3].clone(),
        })
    }),
    Spec::keyed("sscan", -3, &[Flag::ReadOnly], (1, 1, 1), |a| {
        data(SetCmd::Scan(a[1].clone(), ScanArgs::parse(a)))
    }),
    Spec::keyed(
        "spop",
        -2,
        &[Flag::Write, Flag::Fast],
        (1, 1, 1),
        parse_spop,
    ),
    Spec::keyed(
        "srandmember",
        -2,
        &[Flag::ReadOnly],
        (1, 1, 1),
        parse_srandmember,
    ),
];

/// Redis's texts for a count out of the range it takes (its grammar included).
pub(super) fn out_of_range(positive: bool) -> Frame {
    Frame::error(if positive {
        "ERR value is out of range, must be positive"
    } else {
        "ERR value is out of range, value must between -9223372036854775807 and \
         9223372036854775807"
    })
}

fn parse_spop(a: &[Bytes]) -> Result<Command, Frame> {
    let count = match a {
        [_, _] => None,
        // Redis answers the same for a count that is negative or not a number.
        [_, _, n] => Some(
            int_arg(n)
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| out_of_range(true))?,
        ),
        _ => return Err(syntax_error()),
    };
    data(SetCmd::Pop(a[1].clone(), count))
}

fn parse_srandmember(a: &[Bytes]) -> Result<Command, Frame> {
    let count = match a {
        [_, _] => None,
        [_, _, n] => Some(int_arg(n).and_then(|n| {
            // Redis takes -LONG_MAX..=LONG_MAX.
            if n == i64::MIN {
                Err(out_of_range(false))
            } else {
                Ok(n)
            }
        })?),
        _ => return Err(syntax_error()),
    };
    data(SetCmd::RandMember(a[1].clone(), count))
}

/// SINTERCARD numkeys key... [LIMIT n], checked as Redis 7.0 checks it: all of it before any
/// key is read.
fn parse_sintercard(a: &[Bytes]) -> Result<Command, Frame> {
    let numkeys = int_arg(&a[1])
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Frame::error("ERR numkeys should be greater than 0"))?;
    let numkeys = usize::try_from(numkeys).unwrap_or(usize::MAX);
    if numkeys > a.len() - 2 {
        return Err(Frame::error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let mut limit = 0;
    let mut j = 2 + numkeys;
    while j < a.len() {
        if eq(&a[j], "limit") && j + 1 < a.len() {
            limit = int_arg(&a[j + 1])
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| Frame::error("ERR LIMIT can't be negative"))?;
            j += 2;
        } else {
            return Err(syntax_error());
        }
    }
    data(SetCmd::InterCard(a[2..2 + numkeys].to_vec(), limit))
}

/// SRANDMEMBER's reply: one member (nil for an empty set) without a count, else `random_picks`.
fn random_members(set: &[Vec<u8>], count: Option<i64>) -> Frame {
    let Some(count) = count else {
        return match set.len() {
            0 => Frame::Null,
            n => Frame::bulk(set[rand::rng().random_range(0..n)].clone()),
        };
    };
    if set.is_empty() {
        return Frame::Array(vec![]);
    }
    match random_picks(set, count) {
        Ok(picks) => Frame::Array(picks.into_iter().map(|m| Frame::bulk(m.clone())).collect()),
        Err(refusal) => refusal,
    }
}

/// How SINTER, SUNION and SDIFF combine their sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algebra {
    Inter,
    Union,
    Diff,
}

impl Algebra {
    /// Combines the sets read under the command's keys, in key order (an absent key reads as
    /// the empty set, as in Redis).
    fn combine(self, sets: Vec<BTreeSet<Vec<u8>>>) -> BTreeSet<Vec<u8>> {
        let mut sets = sets.into_iter();
        let first = sets.next().unwrap_or_default();
        sets.fold(first, |acc, s| match self {
            Algebra::Inter => acc.intersection(&s).cloned().collect(),
            Algebra::Union => acc.union(&s).cloned().collect(),
            Algebra::Diff => acc.difference(&s).cloned().collect(),
        })
    }
}

fn members(args: &[Bytes]) -> Vec<Vec<u8>> {
    // Distinct, so `SADD s a a` counts one, as in Redis.
    let distinct: BTreeSet<Vec<u8>> = args.iter().map(|m| m.to_vec()).collect();
    distinct.into_iter().collect()
}

pub enum SetCmd {
    Add(Bytes, Vec<Vec<u8>>),
    Rem(Bytes, Vec<Vec<u8>>),
    Members(Bytes),
    IsMember(Bytes, Bytes),
    MIsMember(Bytes, Vec<Bytes>),
    Card(Bytes),
    Combine(Algebra, Vec<Bytes>),
    /// SPOP, with its count if given.
    Pop(Bytes, Option<usize>),
    /// SRANDMEMBER, with its count if given.
    RandMember(Bytes, Option<i64>),
    /// SINTERSTORE, SUNIONSTORE, SDIFFSTORE: the destination, then the sources.
    Store(Algebra, Bytes, Vec<Bytes>),
    /// SINTERCARD's keys and LIMIT (0: none).
    InterCard(Vec<Bytes>, usize),
    Move {
        src: Bytes,
        dst: Bytes,
        member: Bytes,
    },
    Scan(Bytes, ScanArgs),
}

impl SetCmd {
    fn keys(&self) -> Vec<&[u8]> {
        match self {
            SetCmd::Add(k, _)
            | SetCmd::Rem(k, _)
            | SetCmd::Members(k)
            | SetCmd::IsMember(k, _)
            | SetCmd::MIsMember(k, _)
            | SetCmd::Card(k)
            | SetCmd::Pop(k, _)
            | SetCmd::RandMember(k, _)
            | SetCmd::Scan(k, _) => vec![k],
            SetCmd::Combine(_, keys) | SetCmd::InterCard(keys, _) => {
                keys.iter().map(|k| &k[..]).collect()
            }
            SetCmd::Store(_, dst, keys) => {
                std::iter::once(dst).chain(keys).map(|k| &k[..]).collect()
            }
            SetCmd::Move { src, dst, .. } => vec![src, dst],
        }
    }

    pub fn access(&self) -> Access<'_> {
        let key = self.keys();
        match self {
            SetCmd::Add(..) | SetCmd::Rem(..) | SetCmd::Pop(..) | SetCmd::Move { .. } => Access {
                reads: vec![],
                writes: key,
            },
            SetCmd::Store(_, dst, sources) => Access {
                reads: sources.iter().map(|k| &k[..]).collect(),
                writes: vec![dst],
            },
            _ => Access {
                reads: key,
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
            SetCmd::Combine(algebra, keys) => {
                return match combine(store, crdts, algebra, &keys, level).await {
                    Ok(result) => Frame::Set(result.into_iter().map(Frame::bulk).collect()),
                    Err(refusal) => refusal,
                };
            }
            SetCmd::InterCard(keys, limit) => {
                return match combine(store, crdts, Algebra::Inter, &keys, level).await {
                    Ok(result) if limit > 0 => Frame::Integer(result.len().min(limit) as i64),
                    Ok(result) => Frame::Integer(result.len() as i64),
                    Err(refusal) => refusal,
                };
            }
            SetCmd::Store(algebra, dst, keys) => {
                return match combine(store, crdts, algebra, &keys, level).await {
                    Ok(result) => store_whole(store, &dst, result, level).await,
                    Err(refusal) => refusal,
                };
            }
            SetCmd::Move { src, dst, member } => {
                return smove(store, crdts, src, dst, member, level).await;
            }
            SetCmd::Scan(key, args) => {
                if let Some(refusal) = args.bad_cursor() {
                    return refusal;
                }
                return match read_set(store, crdts, &key, level).await {
                    Ok(members) => {
                        whole_scan(&members, &args, |m| m, |m| vec![Frame::bulk(m.clone())])
                    }
                    Err(refusal) => refusal,
                };
            }
            _ => {}
        }
        if self.access().writes.is_empty() {
            return match read_set(store, crdts, self.keys()[0], level).await {
                Ok(members) => self.answer(&members),
                Err(refusal) => refusal,
            };
        }
        match self.write_set(store, level).await {
            // An OR-set made by the HTTP API merges the change instead.
            Err(StoreError::KindConflict {
                holds: CrdtKind::Set,
            }) => self
                .write_or_set(crdts, level)
                .await
                .unwrap_or_else(crdt_error),
            Ok(reply) => reply,
            Err(e) => store_error(e),
        }
    }

    /// The reply of a read-only command of one key on these members.
    fn answer(&self, members: &[Vec<u8>]) -> Frame {
        let has = |m: &[u8]| members.iter().any(|x| x[..] == *m);
        match self {
            SetCmd::Members(_) => Frame::Set(members.iter().cloned().map(Frame::bulk).collect()),
            SetCmd::IsMember(_, m) => Frame::Integer(i64::from(has(m))),
            SetCmd::MIsMember(_, asked) => Frame::Array(
                asked
                    .iter()
                    .map(|m| Frame::Integer(i64::from(has(m))))
                    .collect(),
            ),
            SetCmd::Card(_) => Frame::Integer(members.len() as i64),
            SetCmd::RandMember(_, count) => random_members(members, *count),
            _ => Frame::error(
                "ERR internal: a set write or a command of several keys answered as a read",
            ),
        }
    }

    /// Applies a write command to these members, as Redis does to a set: the reply, and
    /// whether the members changed.
    fn change(&self, members: &mut Vec<Vec<u8>>) -> (Frame, bool) {
        match self {
            SetCmd::Add(_, asked) => {
                let before = members.len();
                for m in asked {
                    if !members.contains(m) {
                        members.push(m.clone());
                    }
                }
                let added = members.len() - before;
                (Frame::Integer(added as i64), added > 0)
            }
            SetCmd::Rem(_, asked) => {
                let before = members.len();
                members.retain(|m| !asked.contains(m));
                let removed = before - members.len();
                (Frame::Integer(removed as i64), removed > 0)
            }
            SetCmd::Pop(_, count) => {
                let n = count.unwrap_or(1).min(members.len());
                let mut picks =
                    rand::seq::index::sample(&mut rand::rng(), members.len(), n).into_vec();
                // Removed from the back, so the indexes left stay valid.
                picks.sort_unstable_by(|a, b| b.cmp(a));
                let picked: Vec<Vec<u8>> =
                    picks.into_iter().map(|i| members.swap_remove(i)).collect();
                let reply = match count {
                    None => picked.first().cloned().map_or(Frame::Null, Frame::bulk),
                    Some(_) => Frame::Set(picked.iter().cloned().map(Frame::bulk).collect()),
                };
                (reply, !picked.is_empty())
            }
            _ => (self.answer(members), false),
        }
    }

    /// A write command on a Redis set: one read-modify-write of the whole set, which keeps
    /// its time to live; a set left without members is deleted, as in Redis.
    async fn write_set(
        &self,
        store: &VersionedStore,
        level: Consistency,
    ) -> Result<Frame, StoreError> {
        store
            .read_modify_write_typed(self.keys()[0], level, |found| {
                let (mut members, expires_at_ms) = match set_and_ttl(found) {
                    Ok(set) => set,
                    Err(refusal) => return (TypedChange::Keep, refusal),
                };
                match self.change(&mut members) {
                    (reply, true) => (
                        TypedChange::PutSet {
                            members,
                            expires_at_ms,
                        },
                        reply,
                    ),
                    (reply, false) => (TypedChange::Keep, reply),
                }
            })
            .await
    }

    /// A write command on an OR-set made by the HTTP API: merged into the CRDT.
    async fn write_or_set(self, crdts: &CrdtStore, level: Consistency) -> Result<Frame, CrdtError> {
        Ok(match self {
            SetCmd::Add(key, members) => {
                let before = crdts.set_members(&key, level).await?;
                let new: Vec<Vec<u8>> = members
                    .into_iter()
                    .filter(|m| !before.contains(m))
                    .collect();
                if !new.is_empty() {
                    crdts.set_add(&key, &new, level).await?;
                }
                Frame::Integer(new.len() as i64)
            }
            SetCmd::Rem(key, members) => {
                Frame::Integer(crdts.set_remove(&key, &members, level).await?.0 as i64)
            }
            SetCmd::Pop(key, count) => {
                let all: Vec<Vec<u8>> = crdts.set_members(&key, level).await?.into_iter().collect();
                let mut left = all.clone();
                let (reply, _) = SetCmd::Pop(key.clone(), count).change(&mut left);
                let picked: Vec<Vec<u8>> = all.into_iter().filter(|m| !left.contains(m)).collect();
                if !picked.is_empty() {
                    crdts.set_remove(&key, &picked, level).await?;
                }
                reply
            }
            read => {
                let members: Vec<Vec<u8>> = crdts
                    .set_members(read.keys()[0], level)
                    .await?
                    .into_iter()
                    .collect();
                read.answer(&members)
            }
        })
    }
}

/// Combines the sets under `keys` (read concurrently, not a snapshot across keys). Any key of
/// another type refuses the whole command, even after an absent one, as Redis checks them all
/// before combining.
async fn combine(
    store: &VersionedStore,
    crdts: &CrdtStore,
    algebra: Algebra,
    keys: &[Bytes],
    level: Consistency,
) -> Result<BTreeSet<Vec<u8>>, Frame> {
    let reads = keys.iter().map(|k| read_set(store, crdts, k, level));
    let mut sets = Vec::with_capacity(keys.len());
    for read in futures::future::join_all(reads).await {
        sets.push(read?.into_iter().collect());
    }
    Ok(algebra.combine(sets))
}

/// The STORE forms' write: `members` replace whatever `dst` held, of any type, without a time
/// to live; an empty result deletes it. Answers the count, as Redis does.
async fn store_whole(
    store: &VersionedStore,
    dst: &[u8],
    members: BTreeSet<Vec<u8>>,
    level: Consistency,
) -> Frame {
    let n = members.len();
    let value = TypedChange::PutSet {
        members: members.into_iter().collect(),
        expires_at_ms: None,
    };
    store_replacing(store, dst, level, n, value).await
}

/// SMOVE: one transfer between the two Redis sets (`VersionedStore::transfer_typed`, as
/// LMOVE): both keys promised and read, Redis's checks, then the member added to `dst` and
/// only then removed from `src`. While the transfer holds both promises no other writer gets
/// either key, so concurrent SMOVEs cannot lose a member between them; a failure between the
/// two writes leaves it in both sets, never in neither.
async fn smove(
    store: &VersionedStore,
    crdts: &CrdtStore,
    src: Bytes,
    dst: Bytes,
    member: Bytes,
    level: Consistency,
) -> Frame {
    let holds = |members: &[Vec<u8>]| members.iter().any(|m| m[..] == member[..]);
    if src == dst {
        return match read_set(store, crdts, &src, level).await {
            Ok(members) => Frame::Integer(i64::from(holds(&members))),
            Err(refusal) => refusal,
        };
    }
    let decide = |s: Option<&TypedFound>, d: Option<&TypedFound>| {
        let keep = |result| Transfer {
            source: TypedChange::Keep,
            destination: TypedChange::Keep,
            result,
        };
        // A missing source answers 0 whatever the destination holds, as in Redis.
        let (from, s) = match s {
            None => return keep(Frame::Integer(0)),
            Some(
                f @ TypedFound {
                    value: TypedValue::Set(members),
                    ..
                },
            ) => (members, f),
            Some(_) => return keep(wrong_type()),
        };
        let (mut to, expires_at_ms) = match set_and_ttl(d) {
            Ok(set) => set,
            Err(refusal) => return keep(refusal),
        };
        if !holds(from) {
            return keep(Frame::Integer(0));
        }
        let destination = if holds(&to) {
            TypedChange::Keep
        } else {
            to.push(member.to_vec());
            TypedChange::PutSet {
                members: to,
                expires_at_ms,
            }
        };
        Transfer {
            source: without(from, &member, s.expires_at_ms),
            destination,
            result: Frame::Integer(1),
        }
    };
    // The source changed after the destination was written (its promise lapsed): the member
    // comes off it if it is still there.
    let redo_source = |s: Option<&TypedFound>| match s {
        Some(TypedFound {
            value: TypedValue::Set(members),
            expires_at_ms,
            ..
        }) if holds(members) => without(members, &member, *expires_at_ms),
        _ => TypedChange::Keep,
    };
    match store
        .transfer_typed((&src, &dst), level, decide, redo_source)
        .await
    {
        Ok(reply) => reply,
        // An OR-set made by the HTTP API on either side: its members merge rather than carry
        // versions, so the move is an add, then a remove.
        Err(StoreError::KindConflict {
            holds: CrdtKind::Set,
        }) => smove_or_set(store, crdts, src, dst, member, level).await,
        // Another CRDT at either end fails the reads before `decide` sees the source; Redis
        // looks at the source first, so a missing source answers 0.
        Err(e) if is_wrong_type(&e) => {
            match store.get_typed(&src, level, TypedWanted::TypeOnly).await {
                Ok(None) => Frame::Integer(0),
                Ok(Some(_)) => wrong_type(),
                Err(e) => store_error(e),
            }
        }
        Err(e) => store_error(e),
    }
}

/// A Redis set's members and expiry as a typed read found them (none for an absent key);
/// WRONGTYPE for another type.
fn set_and_ttl(found: Option<&TypedFound>) -> Result<(Vec<Vec<u8>>, Option<u64>), Frame> {
    match found {
        None => Ok((Vec::new(), None)),
        Some(TypedFound {
            value: TypedValue::Set(members),
            expires_at_ms,
            ..
        }) => Ok((members.clone(), *expires_at_ms)),
        Some(_) => Err(wrong_type()),
    }
}

/// The set `members` without `member`: deleted when that empties it, as Redis does.
fn without(members: &[Vec<u8>], member: &[u8], expires_at_ms: Option<u64>) -> TypedChange {
    let rest: Vec<Vec<u8>> = members
        .iter()
        .filter(|m| m[..] != member[..])
        .cloned()
        .collect();
    if rest.is_empty() {
        TypedChange::Delete
    } else {
        TypedChange::PutSet {
            members: rest,
            expires_at_ms,
        }
    }
}

/// SMOVE when either key is an OR-set made by the HTTP API: the member added to `dst`, then
/// removed from `src` (both merge, so a concurrent move may leave it in both sets).
async fn smove_or_set(
    store: &VersionedStore,
    crdts: &CrdtStore,
    src: Bytes,
    dst: Bytes,
    member: Bytes,
    level: Consistency,
) -> Frame {
    let from = match read_set(store, crdts, &src, level).await {
        // A missing source answers 0 whatever the destination holds, as in Redis.
        Ok(members) if members.is_empty() => return Frame::Integer(0),
        Ok(members) => members,
        Err(refusal) => return refusal,
    };
    if let Err(refusal) = read_set(store, crdts, &dst, level).await {
        return refusal;
    }
    let present = from.iter().any(|m| m[..] == member[..]);
    if !present || src == dst {
        return Frame::Integer(i64::from(present));
    }
    let add = SetCmd::Add(dst, vec![member.to_vec()]);
    if let reply @ Frame::Error(_) = Box::pin(add.apply(store, crdts, level)).await {
        return reply;
    }
    match Box::pin(SetCmd::Rem(src, vec![member.to_vec()]).apply(store, crdts, level)).await {
        reply @ Frame::Error(_) => reply,
        _ => Frame::Integer(1),
    }
}

/// The members of the set under `key`: a Redis set, or an OR-set made by the HTTP API; none
/// for an absent key. `Err`: the reply (WRONGTYPE for another type, or the store's failure).
async fn read_set(
    store: &VersionedStore,
    crdts: &CrdtStore,
    key: &[u8],
    level: Consistency,
) -> Result<Vec<Vec<u8>>, Frame> {
    match store.get_typed(key, level, TypedWanted::Full).await {
        Ok(None) => Ok(Vec::new()),
        Ok(Some(TypedFound {
            value: TypedValue::Set(members),
            ..
        })) => Ok(members),
        Ok(Some(_)) => Err(wrong_type()),
        Err(StoreError::KindConflict {
            holds: CrdtKind::Set,
        }) => match crdts.set_members(key, level).await {
            Ok(members) => Ok(members.into_iter().collect()),
            Err(e) => Err(crdt_error(e)),
        },
        Err(e) => Err(store_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(members: &[&str]) -> BTreeSet<Vec<u8>> {
        members.iter().map(|m| m.as_bytes().to_vec()).collect()
    }

    #[test]
    fn algebra_combines_in_key_order() {
        let sets = || vec![set(&["a", "b", "c"]), set(&["b", "c", "d"]), set(&["c"])];
        assert_eq!(Algebra::Inter.combine(sets()), set(&["c"]));
        assert_eq!(Algebra::Union.combine(sets()), set(&["a", "b", "c", "d"]));
        assert_eq!(Algebra::Diff.combine(sets()), set(&["a"]));
        assert_eq!(
            Algebra::Inter.combine(vec![set(&["a"]), set(&[])]),
            set(&[])
        );
    }
}
