//! List commands: LPUSH, RPUSH, LPUSHX, RPUSHX, LPOP, RPOP, LLEN, LRANGE, LINDEX, LSET, LREM,
//! LTRIM, LINSERT, LPOS, LMOVE, RPOPLPUSH, LMPOP; the blocking ones are in `blocking.rs`.
//!
//! A list is a versioned value like a string (docs/ARCHITECTURE.md, "Lists"): a read returns
//! it whole, a write replaces it whole under the version it read (`read_modify_write_typed`,
//! compare-and-set, retried), with the new list computed by `list_ops`. So every command costs
//! O(list size); within one process no acknowledged push is lost to a concurrent one (across
//! processes one can be: docs/ARCHITECTURE.md, "Lists"). Arguments are checked
//! in redis-server 7.0's order: those it checks before looking the key up are checked here
//! when parsing, the others once the value is read.

use super::list_ops::{self, End, List};
use super::{Access, Command, Flag, Spec, data, eq, int_arg, is_wrong_type, store_error};
use super::{mpop_count, mpop_where, read_typed, syntax_error, wrong_arity, wrong_type};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::quorum::Consistency;
use quorumd_replication::store::{
    StoreError, Transfer, TypedChange, TypedFound, TypedValue, TypedWanted, VersionedStore,
};
use std::sync::Mutex;

const READ: &[Flag] = &[Flag::ReadOnly, Flag::Fast];
const WRITE: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];

pub static SPECS: &[Spec] = &[
    Spec::keyed("lpush", -3, WRITE, (1, 1, 1), |a| push(a, End::Left, false)),
    Spec::keyed("rpush", -3, WRITE, (1, 1, 1), |a| {
        push(a, End::Right, false)
    }),
    Spec::keyed("lpushx", -3, WRITE, (1, 1, 1), |a| push(a, End::Left, true)),
    Spec::keyed("rpushx", -3, WRITE, (1, 1, 1), |a| {
        push(a, End::Right, true)
    }),
    Spec::keyed("lpop", -2, &[Flag::Write, Flag::Fast], (1, 1, 1), |a| {
        pop(a, End::Left, "lpop")
    }),
    Spec::keyed("rpop", -2, &[Flag::Write, Flag::Fast], (1, 1, 1), |a| {
        pop(a, End::Right, "rpop")
    }),
    Spec::keyed("llen", 2, READ, (1, 1, 1), |a| {
        data(ListCmd::Len(a[1].clone()))
    }),
    Spec::keyed("lrange", 4, &[Flag::ReadOnly], (1, 1, 1), |a| {
        data(ListCmd::Range {
            key: a[1].clone(),
            start: int_arg(&a[2])?,
            stop: int_arg(&a[3])?,
        })
    }),
    Spec::keyed("lindex", 3, &[Flag::ReadOnly], (1, 1, 1), |a| {
        data(ListCmd::Index {
            key: a[1].clone(),
            index: a[2].clone(),
        })
    }),
    Spec::keyed("lset", 4, &[Flag::Write, Flag::DenyOom], (1, 1, 1), |a| {
        data(ListCmd::Set {
            key: a[1].clone(),
            index: a[2].clone(),
            element: a[3].clone(),
        })
    }),
    Spec::keyed("lrem", 4, &[Flag::Write], (1, 1, 1), |a| {
        data(ListCmd::Rem {
            key: a[1].clone(),
            count: int_arg(&a[2])?,
            element: a[3].clone(),
        })
    }),
    Spec::keyed("ltrim", 4, &[Flag::Write], (1, 1, 1), |a| {
        data(ListCmd::Trim {
            key: a[1].clone(),
            start: int_arg(&a[2])?,
            stop: int_arg(&a[3])?,
        })
    }),
    Spec::keyed(
        "linsert",
        5,
        &[Flag::Write, Flag::DenyOom],
        (1, 1, 1),
        |a| {
            let before = if eq(&a[2], "before") {
                true
            } else if eq(&a[2], "after") {
                false
            } else {
                return Err(syntax_error());
            };
            data(ListCmd::Insert {
                key: a[1].clone(),
                before,
                pivot: a[3].clone(),
                element: a[4].clone(),
            })
        },
    ),
    Spec::keyed("lpos", -3, &[Flag::ReadOnly], (1, 1, 1), parse_lpos),
    Spec::keyed("lmove", 5, &[Flag::Write, Flag::DenyOom], (1, 2, 1), |a| {
        data(ListCmd::Move {
            src: a[1].clone(),
            dst: a[2].clone(),
            from: end_arg(&a[3])?,
            to: end_arg(&a[4])?,
        })
    }),
    Spec::keyed(
        "rpoplpush",
        3,
        &[Flag::Write, Flag::DenyOom],
        (1, 2, 1),
        |a| {
            data(ListCmd::Move {
                src: a[1].clone(),
                dst: a[2].clone(),
                from: End::Right,
                to: End::Left,
            })
        },
    ),
    // Its keys follow numkeys, so, as in Redis's table, it declares none (movable keys).
    Spec::keyless("lmpop", -4, &[Flag::Write], parse_lmpop),
];

fn push(a: &[Bytes], end: End, only_existing: bool) -> Result<Command, Frame> {
    data(ListCmd::Push {
        key: a[1].clone(),
        end,
        items: a[2..].to_vec(),
        only_existing,
    })
}

/// LPOP/RPOP: the count, when given, is checked before the key is read.
fn pop(a: &[Bytes], end: End, name: &str) -> Result<Command, Frame> {
    if a.len() > 3 {
        return Err(wrong_arity(name));
    }
    let count = match a.get(2) {
        Some(c) => Some(positive(c, "value is out of range, must be positive")?),
        None => None,
    };
    data(ListCmd::Pop {
        key: a[1].clone(),
        end,
        count,
    })
}

/// A non-negative integer, or Redis's `ERR <message>` for anything else.
fn positive(arg: &[u8], message: &str) -> Result<usize, Frame> {
    int_arg(arg)
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| Frame::error(format!("ERR {message}")))
}

/// LEFT or RIGHT, any case.
pub(super) fn end_arg(arg: &[u8]) -> Result<End, Frame> {
    if eq(arg, "left") {
        Ok(End::Left)
    } else if eq(arg, "right") {
        Ok(End::Right)
    } else {
        Err(syntax_error())
    }
}

fn parse_lpos(a: &[Bytes]) -> Result<Command, Frame> {
    let (mut rank, mut count, mut maxlen) = (1, None, 0);
    let mut i = 3;
    while i < a.len() {
        let more = i + 1 < a.len();
        if more && eq(&a[i], "rank") {
            rank = int_arg(&a[i + 1])?;
            if rank == 0 {
                return Err(Frame::error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the \
                     second ... or use negative to start from the end of the list",
                ));
            }
        } else if more && eq(&a[i], "count") {
            count = Some(positive(&a[i + 1], "COUNT can't be negative")?);
        } else if more && eq(&a[i], "maxlen") {
            maxlen = positive(&a[i + 1], "MAXLEN can't be negative")?;
        } else {
            return Err(syntax_error());
        }
        i += 2;
    }
    data(ListCmd::Pos {
        key: a[1].clone(),
        element: a[2].clone(),
        rank,
        count,
        maxlen,
    })
}

fn parse_lmpop(a: &[Bytes]) -> Result<Command, Frame> {
    let where_at = mpop_where(a)?;
    let end = end_arg(&a[where_at])?;
    let count = mpop_count(a, where_at + 1)?;
    data(ListCmd::MPop {
        keys: a[2..where_at].to_vec(),
        end,
        count,
    })
}

pub enum ListCmd {
    Push {
        key: Bytes,
        end: End,
        items: Vec<Bytes>,
        /// LPUSHX / RPUSHX: only onto an existing list.
        only_existing: bool,
    },
    Pop {
        key: Bytes,
        end: End,
        /// `None`: one element, answered as a bulk string; `Some`: an array.
        count: Option<usize>,
    },
    Len(Bytes),
    Range {
        key: Bytes,
        start: i64,
        stop: i64,
    },
    /// The index is parsed after the key is read, as Redis does.
    Index {
        key: Bytes,
        index: Bytes,
    },
    Set {
        key: Bytes,
        index: Bytes,
        element: Bytes,
    },
    Rem {
        key: Bytes,
        count: i64,
        element: Bytes,
    },
    Trim {
        key: Bytes,
        start: i64,
        stop: i64,
    },
    Insert {
        key: Bytes,
        before: bool,
        pivot: Bytes,
        element: Bytes,
    },
    Pos {
        key: Bytes,
        element: Bytes,
        rank: i64,
        /// `None`: the first match or nil; `Some(0)`: every match.
        count: Option<usize>,
        maxlen: usize,
    },
    Move {
        src: Bytes,
        dst: Bytes,
        from: End,
        to: End,
    },
    MPop {
        keys: Vec<Bytes>,
        end: End,
        count: usize,
    },
}

/// The list a read found: `None` when the key is absent, `WRONGTYPE` when it holds another
/// type.
fn as_list(found: Option<&TypedFound>) -> Result<Option<&List>, Frame> {
    match found.map(|f| &f.value) {
        None => Ok(None),
        Some(TypedValue::List(items)) => Ok(Some(items)),
        Some(_) => Err(wrong_type()),
    }
}

fn bulks(items: impl IntoIterator<Item = Vec<u8>>) -> Frame {
    Frame::Array(items.into_iter().map(Frame::bulk).collect())
}

/// The write of `list`, keeping the key's TTL as Redis does (an emptied list is deleted).
fn put(list: List, found: &TypedFound) -> TypedChange {
    TypedChange::PutList {
        items: list,
        expires_at_ms: found.expires_at_ms,
    }
}

fn owned(items: &[Bytes]) -> impl Iterator<Item = Vec<u8>> + '_ {
    items.iter().map(|b| b.to_vec())
}

/// The reply of a read-modify-write whose decision is the reply itself.
fn reply(r: Result<Frame, StoreError>) -> Frame {
    r.unwrap_or_else(store_error)
}

impl ListCmd {
    pub fn access(&self) -> Access<'_> {
        fn write(k: &Bytes) -> Access<'_> {
            Access {
                reads: vec![],
                writes: vec![&k[..]],
            }
        }
        fn read(k: &Bytes) -> Access<'_> {
            Access {
                reads: vec![&k[..]],
                writes: vec![],
            }
        }
        match self {
            ListCmd::Push { key, .. }
            | ListCmd::Pop { key, .. }
            | ListCmd::Set { key, .. }
            | ListCmd::Rem { key, .. }
            | ListCmd::Trim { key, .. }
            | ListCmd::Insert { key, .. } => write(key),
            ListCmd::Len(key)
            | ListCmd::Range { key, .. }
            | ListCmd::Index { key, .. }
            | ListCmd::Pos { key, .. } => read(key),
            ListCmd::Move { src, dst, .. } => Access {
                reads: vec![],
                writes: vec![&src[..], &dst[..]],
            },
            ListCmd::MPop { keys, .. } => Access {
                reads: vec![],
                writes: keys.iter().map(|k| &k[..]).collect(),
            },
        }
    }

    pub async fn apply(self, store: &VersionedStore, level: Consistency) -> Frame {
        match self {
            ListCmd::Push {
                key,
                end,
                items,
                only_existing,
            } => reply(
                store
                    .read_modify_write_typed(&key, level, |found| {
                        let mut list = match as_list(found) {
                            Err(e) => return (TypedChange::Keep, e),
                            Ok(None) if only_existing => {
                                return (TypedChange::Keep, Frame::Integer(0));
                            }
                            Ok(l) => l.cloned().unwrap_or_default(),
                        };
                        list_ops::push(&mut list, end, owned(&items));
                        let len = Frame::Integer(list.len() as i64);
                        let change = TypedChange::PutList {
                            items: list,
                            expires_at_ms: found.and_then(|f| f.expires_at_ms),
                        };
                        (change, len)
                    })
                    .await,
            ),
            ListCmd::Pop { key, end, count } => reply(
                store
                    .read_modify_write_typed(&key, level, |found| {
                        let (list, found) = match (as_list(found), found) {
                            (Err(e), _) => return (TypedChange::Keep, e),
                            (Ok(Some(l)), Some(f)) => (l, f),
                            _ if count.is_some() => return (TypedChange::Keep, Frame::NullArray),
                            _ => return (TypedChange::Keep, Frame::Null),
                        };
                        if count == Some(0) {
                            return (TypedChange::Keep, Frame::Array(vec![]));
                        }
                        let mut list = list.clone();
                        let popped = list_ops::pop(&mut list, end, count.unwrap_or(1));
                        let answer = match count {
                            Some(_) => bulks(popped),
                            None => popped.into_iter().next().map_or(Frame::Null, Frame::bulk),
                        };
                        (put(list, found), answer)
                    })
                    .await,
            ),
            ListCmd::Len(key) => {
                read_typed(store, &key, level, as_list, |list| {
                    Frame::Integer(list.map_or(0, |l| l.len() as i64))
                })
                .await
            }
            ListCmd::Range { key, start, stop } => {
                read_typed(store, &key, level, as_list, |list| {
                    let list = list.map(Vec::as_slice).unwrap_or_default();
                    match list_ops::range(list.len(), start, stop) {
                        Some((a, b)) => bulks(list[a..=b].iter().cloned()),
                        None => Frame::Array(vec![]),
                    }
                })
                .await
            }
            ListCmd::Index { key, index } => {
                read_typed(store, &key, level, as_list, |list| {
                    let Some(list) = list else {
                        return Frame::Null;
                    };
                    match int_arg(&index) {
                        Ok(i) => list_ops::index(list.len(), i)
                            .map_or(Frame::Null, |i| Frame::bulk(list[i].clone())),
                        Err(e) => e,
                    }
                })
                .await
            }
            ListCmd::Set {
                key,
                index,
                element,
            } => reply(
                store
                    .read_modify_write_typed(&key, level, |found| {
                        let (list, found) = match (as_list(found), found) {
                            (Err(e), _) => return (TypedChange::Keep, e),
                            (Ok(Some(l)), Some(f)) => (l, f),
                            _ => return (TypedChange::Keep, Frame::error("ERR no such key")),
                        };
                        let i = match int_arg(&index) {
                            Ok(i) => i,
                            Err(e) => return (TypedChange::Keep, e),
                        };
                        let Some(i) = list_ops::index(list.len(), i) else {
                            return (TypedChange::Keep, Frame::error("ERR index out of range"));
                        };
                        let mut list = list.clone();
                        list[i] = element.to_vec();
                        (put(list, found), Frame::ok())
                    })
                    .await,
            ),
            ListCmd::Rem {
                key,
                count,
                element,
            } => {
                modify(store, &key, level, Frame::Integer(0), |list| {
                    Frame::Integer(list_ops::remove(list, count, &element) as i64)
                })
                .await
            }
            ListCmd::Trim { key, start, stop } => {
                modify(store, &key, level, Frame::ok(), |list| {
                    list_ops::trim(list, start, stop);
                    Frame::ok()
                })
                .await
            }
            ListCmd::Insert {
                key,
                before,
                pivot,
                element,
            } => {
                modify(store, &key, level, Frame::Integer(0), |list| {
                    if list_ops::insert(list, before, &pivot, element.to_vec()) {
                        Frame::Integer(list.len() as i64)
                    } else {
                        Frame::Integer(-1)
                    }
                })
                .await
            }
            ListCmd::Pos {
                key,
                element,
                rank,
                count,
                maxlen,
            } => {
                read_typed(store, &key, level, as_list, |list| {
                    let Some(list) = list else {
                        return if count.is_some() {
                            Frame::Array(vec![])
                        } else {
                            Frame::Null
                        };
                    };
                    let found =
                        list_ops::positions(list, &element, rank, count.unwrap_or(1), maxlen);
                    let ints = found.into_iter().map(|i| Frame::Integer(i as i64));
                    match count {
                        Some(_) => Frame::Array(ints.collect()),
                        None => ints.into_iter().next().unwrap_or(Frame::Null),
                    }
                })
                .await
            }
            ListCmd::Move { src, dst, from, to } => {
                list_move(store, &src, &dst, from, to, level).await
            }
            ListCmd::MPop { keys, end, count } => {
                for key in keys {
                    let popped = store
                        .read_modify_write_typed(&key, level, |found| {
                            let (list, found) = match (as_list(found), found) {
                                (Err(e), _) => return (TypedChange::Keep, Some(e)),
                                (Ok(Some(l)), Some(f)) => (l, f),
                                _ => return (TypedChange::Keep, None),
                            };
                            let mut list = list.clone();
                            let popped = list_ops::pop(&mut list, end, count);
                            let answer =
                                Frame::Array(vec![Frame::bulk(key.clone()), bulks(popped)]);
                            (put(list, found), Some(answer))
                        })
                        .await;
                    match popped {
                        Ok(None) => continue,
                        Ok(Some(answer)) => return answer,
                        Err(e) => return store_error(e),
                    }
                }
                Frame::NullArray
            }
        }
    }
}

/// A command that changes an existing list in place (LREM, LTRIM, LINSERT): `absent` is the
/// answer for a missing key; `change` edits the list and gives the answer. An unchanged list
/// is not written.
async fn modify(
    store: &VersionedStore,
    key: &[u8],
    level: Consistency,
    absent: Frame,
    change: impl Fn(&mut List) -> Frame,
) -> Frame {
    reply(
        store
            .read_modify_write_typed(key, level, |found| {
                let (list, found) = match (as_list(found), found) {
                    (Err(e), _) => return (TypedChange::Keep, e),
                    (Ok(Some(l)), Some(f)) => (l, f),
                    _ => return (TypedChange::Keep, absent.clone()),
                };
                let mut new = list.clone();
                let answer = change(&mut new);
                if new == *list {
                    (TypedChange::Keep, answer)
                } else {
                    (put(new, found), answer)
                }
            })
            .await,
    )
}

/// LMOVE and RPOPLPUSH. One key: a rotation, one read-modify-write. Two keys: see
/// `VersionedStore::move_list_element`.
async fn list_move(
    store: &VersionedStore,
    src: &[u8],
    dst: &[u8],
    from: End,
    to: End,
    level: Consistency,
) -> Frame {
    if src == dst {
        return reply(
            store
                .read_modify_write_typed(src, level, |found| {
                    let (list, found) = match (as_list(found), found) {
                        (Err(e), _) => return (TypedChange::Keep, e),
                        (Ok(Some(l)), Some(f)) => (l, f),
                        _ => return (TypedChange::Keep, Frame::Null),
                    };
                    let mut list = list.clone();
                    let moved = list_ops::pop(&mut list, from, 1);
                    let answer = moved.first().cloned().map_or(Frame::Null, Frame::bulk);
                    list_ops::push(&mut list, to, moved);
                    (put(list, found), answer)
                })
                .await,
        );
    }
    // What moved, for `redo_source` (both closures see it; Mutex keeps the future Send).
    let moved: Mutex<Option<Vec<u8>>> = Mutex::new(None);
    let remember = |element: Option<Vec<u8>>| {
        *moved.lock().unwrap_or_else(|p| p.into_inner()) = element;
    };
    let decide = |s: Option<&TypedFound>, d: Option<&TypedFound>| {
        let keep = |result| Transfer {
            source: TypedChange::Keep,
            destination: TypedChange::Keep,
            result,
        };
        // Redis looks at the source first: an absent source answers nil whatever the
        // destination holds.
        let (list, s) = match (as_list(s), s) {
            (Err(e), _) => return keep(e),
            (Ok(Some(l)), Some(f)) => (l, f),
            _ => return keep(Frame::Null),
        };
        let target = match as_list(d) {
            Err(e) => return keep(e),
            Ok(t) => t.cloned().unwrap_or_default(),
        };
        let mut list = list.clone();
        let popped = list_ops::pop(&mut list, from, 1);
        let Some(element) = popped.first().cloned() else {
            return keep(Frame::Null);
        };
        remember(Some(element.clone()));
        let mut target = target;
        list_ops::push(&mut target, to, popped);
        Transfer {
            source: put(list, s),
            destination: TypedChange::PutList {
                items: target,
                expires_at_ms: d.and_then(|d| d.expires_at_ms),
            },
            result: Frame::bulk(element),
        }
    };
    // The source changed after the destination was written: take the element off the source
    // if it is still at its end; if another client took it meanwhile, it is in both places.
    let redo_source = |s: Option<&TypedFound>| {
        let element = moved.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match (as_list(s), s, element) {
            (Ok(Some(list)), Some(f), Some(element)) => {
                let mut list = list.clone();
                let end = match from {
                    End::Left => list.first(),
                    End::Right => list.last(),
                };
                if end != Some(&element) {
                    return TypedChange::Keep;
                }
                list_ops::pop(&mut list, from, 1);
                put(list, f)
            }
            _ => TypedChange::Keep,
        }
    };
    match store
        .transfer_typed((src, dst), level, decide, redo_source)
        .await
    {
        // A counter, hash or set at either end fails the typed reads before `decide` sees
        // the source; Redis looks at the source first, so an absent source answers nil.
        Err(e) if is_wrong_type(&e) => {
            match store.get_typed(src, level, TypedWanted::TypeOnly).await {
                Ok(None) => Frame::Null,
                Ok(Some(_)) => wrong_type(),
                Err(e) => store_error(e),
            }
        }
        r => reply(r),
    }
}
