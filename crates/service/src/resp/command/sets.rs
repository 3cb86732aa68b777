//! SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD, SINTER, SUNION, SDIFF, SPOP,
//! SRANDMEMBER on the add-wins OR-set (docs/CRDTS.md).
//!
//! SPOP reads the set, picks members at random and removes them (an SREM of what it picked):
//! two clients popping one set at once may both be answered the same member.
//!
//! SADD answers how many members were new in what a read quorum saw just before the add, and
//! SREM how many of the members that read saw; with concurrent writers these counts are a
//! best effort (two clients adding one member at once may both hear 1), the membership is not.

use super::{Access, Command, Flag, Spec, crdt_error, data, int_arg, syntax_error};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::quorum::Consistency;
use quorumd_replication::crdt_store::{CrdtError, CrdtStore};
use rand::Rng;
use std::collections::BTreeSet;

const READ: &[Flag] = &[Flag::ReadOnly, Flag::Fast];
const WRITE: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];

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
fn out_of_range(positive: bool) -> Frame {
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

/// At most this many repeated picks (SRANDMEMBER with a negative count) are built in memory.
const MAX_PICKS: usize = 1 << 20;

/// SRANDMEMBER's reply: one member (nil for an empty set) without a count; distinct members
/// for a positive count (the whole set when it asks for as many or more); that many picks,
/// repeats allowed, for a negative one.
fn random_members(set: &BTreeSet<Vec<u8>>, count: Option<i64>) -> Frame {
    let members: Vec<&Vec<u8>> = set.iter().collect();
    let mut rng = rand::rng();
    let Some(count) = count else {
        return match members.len() {
            0 => Frame::Null,
            n => Frame::bulk(members[rng.random_range(0..n)].clone()),
        };
    };
    if members.is_empty() {
        return Frame::Array(vec![]);
    }
    let n = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
    let picks: Vec<&Vec<u8>> = if count < 0 {
        if n > MAX_PICKS {
            return Frame::error(format!(
                "ERR quorumd answers at most {MAX_PICKS} repeated picks"
            ));
        }
        (0..n)
            .map(|_| members[rng.random_range(0..members.len())])
            .collect()
    } else if n >= members.len() {
        members
    } else {
        rand::seq::index::sample(&mut rng, members.len(), n)
            .into_iter()
            .map(|i| members[i])
            .collect()
    };
    Frame::Array(picks.into_iter().map(|m| Frame::bulk(m.clone())).collect())
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
            | SetCmd::RandMember(k, _) => vec![k],
            SetCmd::Combine(_, keys) => keys.iter().map(|k| &k[..]).collect(),
        }
    }

    pub fn access(&self) -> Access<'_> {
        let key = self.keys();
        match self {
            SetCmd::Add(..) | SetCmd::Rem(..) | SetCmd::Pop(..) => Access {
                reads: vec![],
                writes: key,
            },
            _ => Access {
                reads: key,
                writes: vec![],
            },
        }
    }

    pub async fn apply(self, crdts: &CrdtStore, level: Consistency) -> Frame {
        self.run(crdts, level).await.unwrap_or_else(crdt_error)
    }

    async fn run(self, crdts: &CrdtStore, level: Consistency) -> Result<Frame, CrdtError> {
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
            SetCmd::Members(key) => Frame::Set(
                crdts
                    .set_members(&key, level)
                    .await?
                    .into_iter()
                    .map(Frame::bulk)
                    .collect(),
            ),
            SetCmd::IsMember(key, member) => {
                let members = crdts.set_members(&key, level).await?;
                Frame::Integer(i64::from(members.contains(&member[..])))
            }
            SetCmd::MIsMember(key, asked) => {
                let members = crdts.set_members(&key, level).await?;
                Frame::Array(
                    asked
                        .iter()
                        .map(|m| Frame::Integer(i64::from(members.contains(&m[..]))))
                        .collect(),
                )
            }
            SetCmd::Card(key) => Frame::Integer(crdts.set_members(&key, level).await?.len() as i64),
            SetCmd::Pop(key, count) => {
                let members = crdts.set_members(&key, level).await?;
                let n = count.unwrap_or(1).min(members.len());
                let picked: Vec<Vec<u8>> = {
                    let all: Vec<&Vec<u8>> = members.iter().collect();
                    rand::seq::index::sample(&mut rand::rng(), all.len(), n)
                        .into_iter()
                        .map(|i| all[i].clone())
                        .collect()
                };
                if !picked.is_empty() {
                    crdts.set_remove(&key, &picked, level).await?;
                }
                match count {
                    None => picked.into_iter().next().map_or(Frame::Null, Frame::bulk),
                    Some(_) => Frame::Set(picked.into_iter().map(Frame::bulk).collect()),
                }
            }
            SetCmd::RandMember(key, count) => {
                random_members(&crdts.set_members(&key, level).await?, count)
            }
            SetCmd::Combine(algebra, keys) => {
                // Every key is read, and any of another type refuses the whole command (even
                // after an absent one), as Redis checks them all before combining.
                let reads = keys.iter().map(|k| crdts.set_members(k, level));
                let sets = futures::future::join_all(reads)
                    .await
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()?;
                Frame::Set(algebra.combine(sets).into_iter().map(Frame::bulk).collect())
            }
        })
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
