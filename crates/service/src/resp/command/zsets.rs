//! Sorted-set commands: ZADD, ZINCRBY, ZREM, ZCARD, ZSCORE, ZMSCORE, ZRANK, ZREVRANK, ZCOUNT,
//! ZLEXCOUNT, ZRANGE, ZRANGEBYSCORE, ZREVRANGE, ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX,
//! ZPOPMIN, ZPOPMAX, ZMPOP, ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX, ZRANDMEMBER,
//! ZSCAN; the blocking pops are in `blocking.rs`.
//!
//! A sorted set is a versioned value like a list (docs/ARCHITECTURE.md, "Sorted sets"): read
//! whole, changed in `zset_ops`, written whole under the version read (compare-and-set,
//! retried), so every command costs O(set size). Arguments are checked in redis-server 7.0's
//! order: what it checks before looking the key up is checked here when parsing.

use super::zset_ops::{
    self, AddFlags, Aggregate, LexRange, Limit, Members, Outcome, ScoreRange, SetOp,
};
use super::{Access, Command, Flag, Spec, data, eq, int_arg, store_error, store_replacing};
use super::{
    ScanArgs, mpop_count, mpop_where, random_picks, read_typed, syntax_error, whole_scan,
    wrong_type,
};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::content::score_text;
use quorumd_core::quorum::Consistency;
use quorumd_replication::store::{
    StoreError, TypedChange, TypedFound, TypedValue, TypedWanted, VersionedStore,
};
use rand::Rng;

const READ: &[Flag] = &[Flag::ReadOnly, Flag::Fast];
const READ_SLOW: &[Flag] = &[Flag::ReadOnly];
const WRITE: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const WRITE_SLOW: &[Flag] = &[Flag::Write];

pub static SPECS: &[Spec] = &[
    Spec::keyed("zadd", -4, WRITE, (1, 1, 1), parse_zadd),
    Spec::keyed("zincrby", 4, WRITE, (1, 1, 1), |a| {
        let score = zset_ops::parse_score(&a[2]).ok_or_else(not_a_float)?;
        data(ZsetCmd::Add {
            key: a[1].clone(),
            flags: AddFlags {
                incr: true,
                ..AddFlags::default()
            },
            ch: false,
            pairs: vec![(score, a[3].clone())],
        })
    }),
    Spec::keyed("zrem", -3, &[Flag::Write, Flag::Fast], (1, 1, 1), |a| {
        data(ZsetCmd::Rem {
            key: a[1].clone(),
            members: a[2..].to_vec(),
        })
    }),
    Spec::keyed("zcard", 2, READ, (1, 1, 1), |a| {
        data(ZsetCmd::Card(a[1].clone()))
    }),
    Spec::keyed("zscore", 3, READ, (1, 1, 1), |a| {
        data(ZsetCmd::Score {
            key: a[1].clone(),
            members: vec![a[2].clone()],
            many: false,
        })
    }),
    Spec::keyed("zmscore", -3, READ, (1, 1, 1), |a| {
        data(ZsetCmd::Score {
            key: a[1].clone(),
            members: a[2..].to_vec(),
            many: true,
        })
    }),
    Spec::keyed("zrank", 3, READ, (1, 1, 1), |a| {
        data(ZsetCmd::Rank {
            key: a[1].clone(),
            member: a[2].clone(),
            reverse: false,
        })
    }),
    Spec::keyed("zrevrank", 3, READ, (1, 1, 1), |a| {
        data(ZsetCmd::Rank {
            key: a[1].clone(),
            member: a[2].clone(),
            reverse: true,
        })
    }),
    Spec::keyed("zcount", 4, READ, (1, 1, 1), |a| {
        data(ZsetCmd::Count {
            key: a[1].clone(),
            by: By::Score(score_range(&a[2], &a[3])?),
        })
    }),
    Spec::keyed("zlexcount", 4, READ, (1, 1, 1), |a| {
        data(ZsetCmd::Count {
            key: a[1].clone(),
            by: By::Lex(lex_range(&a[2], &a[3])?),
        })
    }),
    Spec::keyed("zrange", -4, READ_SLOW, (1, 1, 1), |a| {
        parse_range(a, None, None)
    }),
    Spec::keyed(
        "zrangestore",
        -5,
        &[Flag::Write, Flag::DenyOom],
        (1, 2, 1),
        |a| parse_range(a, None, None),
    ),
    // The keys follow numkeys (movable keys, as in Redis's table).
    Spec::keyless("zunion", -3, READ_SLOW, |a| {
        parse_combine(a, SetOp::Union, false)
    }),
    Spec::keyless("zinter", -3, READ_SLOW, |a| {
        parse_combine(a, SetOp::Inter, false)
    }),
    Spec::keyless("zdiff", -3, READ_SLOW, |a| {
        parse_combine(a, SetOp::Diff, false)
    }),
    Spec::keyless("zintercard", -3, READ_SLOW, |a| {
        parse_combine(a, SetOp::Inter, false)
    }),
    Spec::keyed(
        "zunionstore",
        -4,
        &[Flag::Write, Flag::DenyOom],
        (1, 1, 1),
        |a| parse_combine(a, SetOp::Union, true),
    ),
    Spec::keyed(
        "zinterstore",
        -4,
        &[Flag::Write, Flag::DenyOom],
        (1, 1, 1),
        |a| parse_combine(a, SetOp::Inter, true),
    ),
    Spec::keyed(
        "zdiffstore",
        -4,
        &[Flag::Write, Flag::DenyOom],
        (1, 1, 1),
        |a| parse_combine(a, SetOp::Diff, true),
    ),
    Spec::keyed("zrangebyscore", -4, READ_SLOW, (1, 1, 1), |a| {
        parse_range(a, Some(Kind::Score), Some(false))
    }),
    Spec::keyed("zrevrange", -4, READ_SLOW, (1, 1, 1), |a| {
        parse_range(a, Some(Kind::Rank), Some(true))
    }),
    Spec::keyed("zrevrangebyscore", -4, READ_SLOW, (1, 1, 1), |a| {
        parse_range(a, Some(Kind::Score), Some(true))
    }),
    Spec::keyed("zrangebylex", -4, READ_SLOW, (1, 1, 1), |a| {
        parse_range(a, Some(Kind::Lex), Some(false))
    }),
    Spec::keyed("zrevrangebylex", -4, READ_SLOW, (1, 1, 1), |a| {
        parse_range(a, Some(Kind::Lex), Some(true))
    }),
    Spec::keyed("zpopmin", -2, &[Flag::Write, Flag::Fast], (1, 1, 1), |a| {
        parse_pop(a, false)
    }),
    Spec::keyed("zpopmax", -2, &[Flag::Write, Flag::Fast], (1, 1, 1), |a| {
        parse_pop(a, true)
    }),
    Spec::keyed("zremrangebyrank", 4, WRITE_SLOW, (1, 1, 1), |a| {
        data(ZsetCmd::RemRange {
            key: a[1].clone(),
            by: By::Rank(int_arg(&a[2])?, int_arg(&a[3])?),
        })
    }),
    Spec::keyed("zremrangebyscore", 4, WRITE_SLOW, (1, 1, 1), |a| {
        data(ZsetCmd::RemRange {
            key: a[1].clone(),
            by: By::Score(score_range(&a[2], &a[3])?),
        })
    }),
    Spec::keyed("zremrangebylex", 4, WRITE_SLOW, (1, 1, 1), |a| {
        data(ZsetCmd::RemRange {
            key: a[1].clone(),
            by: By::Lex(lex_range(&a[2], &a[3])?),
        })
    }),
    Spec::keyed("zrandmember", -2, READ_SLOW, (1, 1, 1), parse_randmember),
    // Its keys follow numkeys, so, as in Redis's table, it declares none (movable keys).
    Spec::keyless("zmpop", -4, &[Flag::Write], parse_zmpop),
    Spec::keyed("zscan", -3, READ_SLOW, (1, 1, 1), |a| {
        data(ZsetCmd::Scan(a[1].clone(), ScanArgs::parse(a)))
    }),
];

fn not_a_float() -> Frame {
    Frame::error("ERR value is not a valid float")
}

fn score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, Frame> {
    ScoreRange::parse(min, max).ok_or_else(|| Frame::error("ERR min or max is not a float"))
}

fn lex_range(min: &[u8], max: &[u8]) -> Result<LexRange, Frame> {
    LexRange::parse(min, max)
        .ok_or_else(|| Frame::error("ERR min or max not valid string range item"))
}

/// `zaddGenericCommand`'s parsing: the options, then the pairs, then its checks in its order.
fn parse_zadd(a: &[Bytes]) -> Result<Command, Frame> {
    let (mut flags, mut ch) = (AddFlags::default(), false);
    let mut at = 2;
    while let Some(opt) = a.get(at) {
        let slot = if eq(opt, "nx") {
            &mut flags.nx
        } else if eq(opt, "xx") {
            &mut flags.xx
        } else if eq(opt, "ch") {
            &mut ch
        } else if eq(opt, "incr") {
            &mut flags.incr
        } else if eq(opt, "gt") {
            &mut flags.gt
        } else if eq(opt, "lt") {
            &mut flags.lt
        } else {
            break;
        };
        *slot = true;
        at += 1;
    }
    let rest = &a[at..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(syntax_error());
    }
    if flags.nx && flags.xx {
        return Err(Frame::error(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (flags.nx && (flags.gt || flags.lt)) || (flags.gt && flags.lt) {
        return Err(Frame::error(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if flags.incr && rest.len() > 2 {
        return Err(Frame::error(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let pairs = rest
        .chunks(2)
        .map(|p| {
            Ok((
                zset_ops::parse_score(&p[0]).ok_or_else(not_a_float)?,
                p[1].clone(),
            ))
        })
        .collect::<Result<_, Frame>>()?;
    data(ZsetCmd::Add {
        key: a[1].clone(),
        flags,
        ch,
        pairs,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rank,
    Score,
    Lex,
}

/// `zrangeGenericCommand`'s parsing: ZRANGE decides the kind and direction from its options,
/// the older commands fix them (and then refuse REV, BYSCORE and BYLEX as syntax errors).
fn parse_range(a: &[Bytes], kind: Option<Kind>, reverse: Option<bool>) -> Result<Command, Frame> {
    // ZRANGESTORE dst src ...: everything one argument further, and no WITHSCORES.
    let store = eq(&a[0], "zrangestore");
    let base = usize::from(store);
    let (mut kind, mut reverse) = (kind, reverse);
    let (mut withscores, mut limit) = (false, None);
    let mut j = 4 + base;
    while j < a.len() {
        let left = a.len() - j - 1;
        if !store && eq(&a[j], "withscores") {
            withscores = true;
        } else if eq(&a[j], "limit") && left >= 2 {
            limit = Some(Limit {
                offset: int_arg(&a[j + 1])?,
                count: int_arg(&a[j + 2])?,
            });
            j += 2;
        } else if reverse.is_none() && eq(&a[j], "rev") {
            reverse = Some(true);
        } else if kind.is_none() && eq(&a[j], "bylex") {
            kind = Some(Kind::Lex);
        } else if kind.is_none() && eq(&a[j], "byscore") {
            kind = Some(Kind::Score);
        } else {
            return Err(syntax_error());
        }
        j += 1;
    }
    let kind = kind.unwrap_or(Kind::Rank);
    let reverse = reverse.unwrap_or(false);
    // Redis tests `limit != -1`: LIMIT 0 -1 is the same as no LIMIT, even by rank.
    let limit = limit.unwrap_or_default();
    if limit.count != -1 && kind == Kind::Rank {
        return Err(Frame::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && kind == Kind::Lex {
        return Err(Frame::error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    // Reversed score and lex ranges are written max first.
    let (min, max) = if reverse && kind != Kind::Rank {
        (&a[3 + base], &a[2 + base])
    } else {
        (&a[2 + base], &a[3 + base])
    };
    let by = match kind {
        Kind::Rank => By::Rank(int_arg(min)?, int_arg(max)?),
        Kind::Score => By::Score(score_range(min, max)?),
        Kind::Lex => By::Lex(lex_range(min, max)?),
    };
    if store {
        return data(ZsetCmd::RangeStore {
            dst: a[1].clone(),
            src: a[2].clone(),
            by,
            reverse,
            limit,
        });
    }
    data(ZsetCmd::Range {
        key: a[1].clone(),
        by,
        reverse,
        limit,
        withscores,
    })
}

/// The options of ZUNION, ZINTER, ZDIFF, their STORE forms and ZINTERCARD.
#[derive(Debug, Clone, PartialEq)]
pub struct CombineOptions {
    weights: Vec<f64>,
    aggregate: Aggregate,
    withscores: bool,
    /// ZINTERCARD's LIMIT (0: none); `None` for the other commands.
    card_limit: Option<usize>,
}

/// `zunionInterDiffGenericCommand`'s parsing. numkeys is checked at once; the options only
/// after the keys are read (Redis looks the keys up first, so WRONGTYPE comes before an
/// option's error), hence the `Result` kept in the command.
fn parse_combine(a: &[Bytes], op: SetOp, store: bool) -> Result<Command, Frame> {
    let name = String::from_utf8_lossy(&a[0]).to_ascii_lowercase();
    let card = name == "zintercard";
    let at = 1 + usize::from(store);
    let setnum = int_arg(&a[at])?;
    if setnum < 1 {
        return Err(Frame::error(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let first = at + 1;
    let setnum = usize::try_from(setnum).unwrap_or(usize::MAX);
    if setnum > a.len() - first {
        return Err(syntax_error());
    }
    let keys = a[first..first + setnum].to_vec();
    let options = combine_options(&a[first + setnum..], setnum, op, store, card);
    data(ZsetCmd::Combine {
        op,
        dst: store.then(|| a[1].clone()),
        keys,
        options,
    })
}

fn combine_options(
    rest: &[Bytes],
    setnum: usize,
    op: SetOp,
    store: bool,
    card: bool,
) -> Result<CombineOptions, Frame> {
    let mut o = CombineOptions {
        weights: Vec::new(),
        aggregate: Aggregate::Sum,
        withscores: false,
        card_limit: card.then_some(0),
    };
    let algebra = op != SetOp::Diff && !card;
    let mut j = 0;
    while j < rest.len() {
        let remaining = rest.len() - j;
        if algebra && remaining > setnum && eq(&rest[j], "weights") {
            o.weights = rest[j + 1..=j + setnum]
                .iter()
                .map(|w| {
                    zset_ops::parse_score(w)
                        .ok_or_else(|| Frame::error("ERR weight value is not a float"))
                })
                .collect::<Result<_, _>>()?;
            j += 1 + setnum;
        } else if algebra && remaining >= 2 && eq(&rest[j], "aggregate") {
            o.aggregate = match &rest[j + 1] {
                v if eq(v, "sum") => Aggregate::Sum,
                v if eq(v, "min") => Aggregate::Min,
                v if eq(v, "max") => Aggregate::Max,
                _ => return Err(syntax_error()),
            };
            j += 2;
        } else if !store && !card && eq(&rest[j], "withscores") {
            o.withscores = true;
            j += 1;
        } else if card && remaining >= 2 && eq(&rest[j], "limit") {
            let n = int_arg(&rest[j + 1])
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| Frame::error("ERR LIMIT can't be negative"))?;
            o.card_limit = Some(n);
            j += 2;
        } else {
            return Err(syntax_error());
        }
    }
    Ok(o)
}

/// ZPOPMIN / ZPOPMAX: the count is checked before the key is read.
fn parse_pop(a: &[Bytes], highest: bool) -> Result<Command, Frame> {
    if a.len() > 3 {
        return Err(syntax_error());
    }
    let count = match a.get(2) {
        Some(c) => {
            // Redis gives this one text for a non-integer too.
            let n = int_arg(c)
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| Frame::error("ERR value is out of range, must be positive"))?;
            Some(n)
        }
        None => None,
    };
    data(ZsetCmd::Pop {
        key: a[1].clone(),
        count,
        highest,
    })
}

/// ZMPOP numkeys key... MIN|MAX [COUNT n], checked as LMPOP is.
fn parse_zmpop(a: &[Bytes]) -> Result<Command, Frame> {
    let where_at = mpop_where(a)?;
    let highest = if eq(&a[where_at], "min") {
        false
    } else if eq(&a[where_at], "max") {
        true
    } else {
        return Err(syntax_error());
    };
    let count = mpop_count(a, where_at + 1)?;
    data(ZsetCmd::MPop {
        keys: a[2..where_at].to_vec(),
        count,
        highest,
    })
}

fn parse_randmember(a: &[Bytes]) -> Result<Command, Frame> {
    let Some(count) = a.get(2) else {
        return data(ZsetCmd::RandMember {
            key: a[1].clone(),
            count: None,
            withscores: false,
        });
    };
    let count = int_arg(count)?;
    if count == i64::MIN {
        return Err(Frame::error(
            "ERR value is out of range, value must between -9223372036854775807 and \
             9223372036854775807",
        ));
    }
    if a.len() > 4 || (a.len() == 4 && !eq(&a[3], "withscores")) {
        return Err(syntax_error());
    }
    // Redis's bound on a reply of pairs.
    if a.len() == 4 && count.unsigned_abs() > (i64::MAX / 2) as u64 {
        return Err(Frame::error("ERR value is out of range"));
    }
    data(ZsetCmd::RandMember {
        key: a[1].clone(),
        count: Some(count),
        withscores: a.len() == 4,
    })
}

/// How a range command selects members.
pub enum By {
    /// Inclusive ranks, negative from the end.
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

pub enum ZsetCmd {
    /// ZADD, and ZINCRBY as ZADD INCR (which answers the new score, or nil when skipped).
    Add {
        key: Bytes,
        flags: AddFlags,
        ch: bool,
        pairs: Vec<(f64, Bytes)>,
    },
    Rem {
        key: Bytes,
        members: Vec<Bytes>,
    },
    Card(Bytes),
    /// ZSCORE (`many` false: one bulk) and ZMSCORE (an array).
    Score {
        key: Bytes,
        members: Vec<Bytes>,
        many: bool,
    },
    Rank {
        key: Bytes,
        member: Bytes,
        reverse: bool,
    },
    /// ZCOUNT (by score) and ZLEXCOUNT (by lex).
    Count {
        key: Bytes,
        by: By,
    },
    Range {
        key: Bytes,
        by: By,
        reverse: bool,
        limit: Limit,
        withscores: bool,
    },
    Pop {
        key: Bytes,
        /// `None`: no count given (the reply is the same flat array in RESP2).
        count: Option<usize>,
        highest: bool,
    },
    RemRange {
        key: Bytes,
        by: By,
    },
    RandMember {
        key: Bytes,
        count: Option<i64>,
        withscores: bool,
    },
    MPop {
        keys: Vec<Bytes>,
        count: usize,
        highest: bool,
    },
    RangeStore {
        dst: Bytes,
        src: Bytes,
        by: By,
        reverse: bool,
        limit: Limit,
    },
    /// ZUNION, ZINTER, ZDIFF, ZINTERCARD and, with `dst`, the STORE forms.
    Combine {
        op: SetOp,
        dst: Option<Bytes>,
        keys: Vec<Bytes>,
        options: Result<CombineOptions, Frame>,
    },
    Scan(Bytes, ScanArgs),
}

/// The sorted set a read found: `None` when absent, WRONGTYPE when the key holds another type.
pub(super) fn as_zset(found: Option<&TypedFound>) -> Result<Option<&Members>, Frame> {
    match found.map(|f| &f.value) {
        None => Ok(None),
        Some(TypedValue::SortedSet(members)) => Ok(Some(members)),
        Some(_) => Err(wrong_type()),
    }
}

/// A score: a bulk string in RESP2, a double after `HELLO 3`.
fn score_frame(score: f64) -> Frame {
    Frame::Score(score)
}

/// Members, each followed by its score with WITHSCORES: flat in RESP2, `[member, score]`
/// pairs after `HELLO 3`.
fn members_frame<'a>(items: impl IntoIterator<Item = &'a (Vec<u8>, f64)>, scores: bool) -> Frame {
    let flat = flat_members(items, scores, score_frame);
    if scores {
        Frame::Pairs(flat)
    } else {
        Frame::Array(flat)
    }
}

/// Members, each followed by its score printed by `score`, in one flat list.
fn flat_members<'a>(
    items: impl IntoIterator<Item = &'a (Vec<u8>, f64)>,
    scores: bool,
    score: fn(f64) -> Frame,
) -> Vec<Frame> {
    let mut out = Vec::new();
    for (m, s) in items {
        out.push(Frame::bulk(m.clone()));
        if scores {
            out.push(score(*s));
        }
    }
    out
}

/// The members `by` selects, in reply order.
fn select<'a>(set: &'a Members, by: &By, reverse: bool, limit: Limit) -> Vec<&'a (Vec<u8>, f64)> {
    match by {
        By::Rank(start, stop) => zset_ops::by_rank(set, *start, *stop, reverse),
        By::Score(r) => zset_ops::by_score(set, r, reverse, limit),
        By::Lex(r) => zset_ops::by_lex(set, r, reverse, limit),
    }
}

impl ZsetCmd {
    pub fn access(&self) -> Access<'_> {
        let key = match self {
            ZsetCmd::Add { key, .. }
            | ZsetCmd::Rem { key, .. }
            | ZsetCmd::Pop { key, .. }
            | ZsetCmd::RemRange { key, .. } => {
                return Access {
                    reads: vec![],
                    writes: vec![&key[..]],
                };
            }
            ZsetCmd::MPop { keys, .. } => {
                return Access {
                    reads: vec![],
                    writes: keys.iter().map(|k| &k[..]).collect(),
                };
            }
            ZsetCmd::RangeStore { dst, src, .. } => {
                return Access {
                    reads: vec![&src[..]],
                    writes: vec![&dst[..]],
                };
            }
            ZsetCmd::Combine { dst, keys, .. } => {
                return Access {
                    reads: keys.iter().map(|k| &k[..]).collect(),
                    writes: dst.iter().map(|k| &k[..]).collect(),
                };
            }
            ZsetCmd::Card(key)
            | ZsetCmd::Score { key, .. }
            | ZsetCmd::Rank { key, .. }
            | ZsetCmd::Count { key, .. }
            | ZsetCmd::Range { key, .. }
            | ZsetCmd::RandMember { key, .. }
            | ZsetCmd::Scan(key, _) => key,
        };
        Access {
            reads: vec![&key[..]],
            writes: vec![],
        }
    }

    pub async fn apply(self, store: &VersionedStore, level: Consistency) -> Frame {
        match self {
            ZsetCmd::Add {
                key,
                flags,
                ch,
                pairs,
            } => {
                modify(store, &key, level, |set| {
                    // XX on a missing key: nothing to do (INCR answers nil).
                    if set.is_none() && flags.xx {
                        return (
                            None,
                            if flags.incr {
                                Frame::Null
                            } else {
                                Frame::Integer(0)
                            },
                        );
                    }
                    let mut new = set.cloned().unwrap_or_default();
                    let (mut added, mut updated, mut last) = (0, 0, None);
                    for (score, member) in &pairs {
                        match zset_ops::add(&mut new, member, *score, flags) {
                            Err(e) => return (None, Frame::error(format!("ERR {e}"))),
                            Ok((Outcome::Added, s)) => (added, last) = (added + 1, Some(s)),
                            Ok((Outcome::Updated, s)) => (updated, last) = (updated + 1, Some(s)),
                            Ok((Outcome::Unchanged, s)) => last = Some(s),
                            Ok((Outcome::Skipped, _)) => {}
                        }
                    }
                    let answer = if flags.incr {
                        last.map_or(Frame::Null, score_frame)
                    } else {
                        Frame::Integer(if ch { added + updated } else { added })
                    };
                    zset_ops::sort(&mut new);
                    (Some(new), answer)
                })
                .await
            }
            ZsetCmd::Rem { key, members } => {
                modify(store, &key, level, |set| {
                    let Some(set) = set else {
                        return (None, Frame::Integer(0));
                    };
                    let mut new = set.clone();
                    let n = zset_ops::remove(&mut new, members.iter().map(|m| &m[..]));
                    (Some(new), Frame::Integer(n as i64))
                })
                .await
            }
            ZsetCmd::Card(key) => {
                read_typed(store, &key, level, as_zset, |set| {
                    Frame::Integer(set.map_or(0, |s| s.len() as i64))
                })
                .await
            }
            ZsetCmd::Score { key, members, many } => {
                read_typed(store, &key, level, as_zset, |set| {
                    let empty = Members::new();
                    let set = set.unwrap_or(&empty);
                    let mut scores = members
                        .iter()
                        .map(|m| zset_ops::score(set, m).map_or(Frame::Null, score_frame));
                    if many {
                        Frame::Array(scores.collect())
                    } else {
                        scores.next().unwrap_or(Frame::Null)
                    }
                })
                .await
            }
            ZsetCmd::Rank {
                key,
                member,
                reverse,
            } => {
                read_typed(store, &key, level, as_zset, |set| {
                    set.and_then(|s| zset_ops::rank(s, &member, reverse))
                        .map_or(Frame::Null, |r| Frame::Integer(r as i64))
                })
                .await
            }
            ZsetCmd::Count { key, by } => {
                read_typed(store, &key, level, as_zset, |set| {
                    let n = set.map_or(0, |s| select(s, &by, false, Limit::default()).len());
                    Frame::Integer(n as i64)
                })
                .await
            }
            ZsetCmd::Range {
                key,
                by,
                reverse,
                limit,
                withscores,
            } => {
                read_typed(store, &key, level, as_zset, |set| {
                    let Some(set) = set else {
                        return Frame::Array(vec![]);
                    };
                    members_frame(select(set, &by, reverse, limit), withscores)
                })
                .await
            }
            ZsetCmd::Pop {
                key,
                count,
                highest,
            } => {
                modify(store, &key, level, |set| {
                    let Some(set) = set else {
                        return (None, Frame::Array(vec![]));
                    };
                    let mut new = set.clone();
                    let popped = zset_ops::pop(&mut new, count.unwrap_or(1), highest);
                    // Without a count, one member and its score, flat in RESP3 too.
                    let answer = match count {
                        Some(_) => members_frame(&popped, true),
                        None => Frame::Array(flat_members(&popped, true, score_frame)),
                    };
                    (Some(new), answer)
                })
                .await
            }
            ZsetCmd::RemRange { key, by } => {
                modify(store, &key, level, |set| {
                    let Some(set) = set else {
                        return (None, Frame::Integer(0));
                    };
                    let doomed: Vec<&[u8]> = select(set, &by, false, Limit::default())
                        .into_iter()
                        .map(|(m, _)| m.as_slice())
                        .collect();
                    let mut new = set.clone();
                    let n = zset_ops::remove(&mut new, doomed);
                    (Some(new), Frame::Integer(n as i64))
                })
                .await
            }
            ZsetCmd::RandMember {
                key,
                count,
                withscores,
            } => {
                read_typed(store, &key, level, as_zset, |set| {
                    random_members(set, count, withscores)
                })
                .await
            }
            ZsetCmd::MPop {
                keys,
                count,
                highest,
            } => {
                for key in keys {
                    let answer = modify(store, &key, level, |set| {
                        let Some(set) = set else {
                            return (None, Frame::NullArray);
                        };
                        let mut new = set.clone();
                        let popped = zset_ops::pop(&mut new, count, highest);
                        // ZMPOP nests each member with its score, in RESP2 too.
                        let pairs = popped
                            .iter()
                            .map(|(m, s)| {
                                Frame::Array(vec![Frame::bulk(m.clone()), score_frame(*s)])
                            })
                            .collect();
                        (
                            Some(new),
                            Frame::Array(vec![Frame::bulk(key.clone()), Frame::Array(pairs)]),
                        )
                    })
                    .await;
                    // A missing key passes to the next; an error or a pop ends the command.
                    if answer != Frame::NullArray {
                        return answer;
                    }
                }
                Frame::NullArray
            }
            ZsetCmd::RangeStore {
                dst,
                src,
                by,
                reverse,
                limit,
            } => {
                let result = match read_sets(store, &[src], level, false).await {
                    Ok(sets) => sets.into_iter().next().flatten().map(|set| {
                        select(&set, &by, reverse, limit)
                            .into_iter()
                            .cloned()
                            .collect::<Members>()
                    }),
                    Err(e) => return e,
                };
                store_set(store, &dst, level, result.unwrap_or_default()).await
            }
            ZsetCmd::Combine {
                op,
                dst,
                keys,
                options,
            } => {
                let sets = match read_sets(store, &keys, level, true).await {
                    Ok(sets) => sets,
                    Err(e) => return e,
                };
                let o = match options {
                    Ok(o) => o,
                    Err(e) => return e,
                };
                let empty = Members::new();
                let inputs: Vec<&Members> =
                    sets.iter().map(|s| s.as_ref().unwrap_or(&empty)).collect();
                let result = zset_ops::combine(op, &inputs, &o.weights, o.aggregate);
                match (dst, o.card_limit) {
                    (Some(dst), _) => store_set(store, &dst, level, result).await,
                    (None, Some(limit)) => {
                        let n = if limit == 0 {
                            result.len()
                        } else {
                            result.len().min(limit)
                        };
                        Frame::Integer(n as i64)
                    }
                    (None, None) => members_frame(&result, o.withscores),
                }
            }
            ZsetCmd::Scan(key, args) => {
                if let Some(refusal) = args.bad_cursor() {
                    return refusal;
                }
                read_typed(store, &key, level, as_zset, |set| {
                    // ZSCAN's scores are strings in both protocols, as in Redis.
                    whole_scan(
                        set.map_or(&[][..], |s| &s[..]),
                        &args,
                        |(m, _)| m,
                        |(m, s)| vec![Frame::bulk(m.clone()), Frame::bulk(score_text(*s))],
                    )
                })
                .await
            }
        }
    }
}

/// ZRANDMEMBER: without a count one member (nil for a missing key); with a positive count
/// distinct members (the whole set, in order, when it asks for as many or more); with a
/// negative count that many picks, repeats allowed.
fn random_members(set: Option<&Members>, count: Option<i64>, withscores: bool) -> Frame {
    let mut rng = rand::rng();
    let Some(count) = count else {
        return match set {
            Some(s) if !s.is_empty() => Frame::bulk(s[rng.random_range(0..s.len())].0.clone()),
            _ => Frame::Null,
        };
    };
    let Some(set) = set.filter(|s| !s.is_empty()) else {
        return Frame::Array(vec![]);
    };
    match random_picks(set, count) {
        Ok(picks) => members_frame(picks, withscores),
        Err(refusal) => refusal,
    }
}

/// The sorted sets at `keys` (`None` for a missing key), read concurrently at the level;
/// the first key, in order, that holds another type or failed gives the error reply. With
/// `sets_too` (the algebra, as Redis's), a set counts as a sorted set whose members all
/// score 1. Not a snapshot across keys.
pub(super) async fn read_sets(
    store: &VersionedStore,
    keys: &[Bytes],
    level: Consistency,
    sets_too: bool,
) -> Result<Vec<Option<Members>>, Frame> {
    let reads = keys
        .iter()
        .map(|k| store.get_typed(k, level, TypedWanted::Full));
    let mut sets = Vec::with_capacity(keys.len());
    for found in futures::future::join_all(reads).await {
        let found = found.map_err(store_error)?;
        if let Some(TypedFound {
            value: TypedValue::Set(members),
            ..
        }) = &found
            && sets_too
        {
            let mut scored: Members = members.iter().map(|m| (m.clone(), 1.0)).collect();
            scored.sort_by(|a, b| a.0.cmp(&b.0));
            sets.push(Some(scored));
            continue;
        }
        sets.push(as_zset(found.as_ref())?.cloned());
    }
    Ok(sets)
}

/// The STORE forms: `dst` becomes `members` whatever it held, without a TTL (Redis's
/// `setKey`); an empty result deletes it. Answers the result's size.
pub(super) async fn store_set(
    store: &VersionedStore,
    dst: &[u8],
    level: Consistency,
    members: Members,
) -> Frame {
    let n = members.len();
    let value = TypedChange::PutSortedSet {
        members,
        expires_at_ms: None,
    };
    store_replacing(store, dst, level, n, value).await
}

/// A read-modify-write: `change` gets the set (`None` when absent) and gives the new set
/// (`None`: no write) and the answer. An unchanged set is not written; an emptied one is
/// deleted (Redis deletes empty sorted sets); the TTL is kept.
async fn modify(
    store: &VersionedStore,
    key: &[u8],
    level: Consistency,
    mut change: impl FnMut(Option<&Members>) -> (Option<Members>, Frame),
) -> Frame {
    let r: Result<Frame, StoreError> = store
        .read_modify_write_typed(key, level, |found| {
            let set = match as_zset(found) {
                Ok(s) => s,
                Err(e) => return (TypedChange::Keep, e),
            };
            let (new, answer) = change(set);
            let write = match (new, set) {
                (None, _) => TypedChange::Keep,
                (Some(new), Some(old)) if new == *old => TypedChange::Keep,
                (Some(new), None) if new.is_empty() => TypedChange::Keep,
                (Some(members), _) => TypedChange::PutSortedSet {
                    members,
                    expires_at_ms: found.and_then(|f| f.expires_at_ms),
                },
            };
            (write, answer)
        })
        .await;
    r.unwrap_or_else(store_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ').map(|s| Bytes::from(s.to_owned())).collect()
    }

    fn error(line: &str) -> Option<Frame> {
        let a = args(line);
        let spec = SPECS.iter().find(|s| eq(&a[0], s.name))?;
        (spec.parse)(&a).err()
    }

    #[test]
    fn zadd_option_conflicts_are_redis_7_0s() {
        let e = |t: &str| Some(Frame::error(t));
        assert_eq!(
            error("zadd k nx xx 1 a"),
            e("ERR XX and NX options at the same time are not compatible")
        );
        assert_eq!(
            error("zadd k gt lt 1 a"),
            e("ERR GT, LT, and/or NX options at the same time are not compatible")
        );
        assert_eq!(
            error("zadd k incr 1 a 2 b"),
            e("ERR INCR option supports a single increment-element pair")
        );
        assert_eq!(error("zadd k 1 a 2"), Some(syntax_error()));
        assert_eq!(error("zadd k 1 a x b"), e("ERR value is not a valid float"));
        assert_eq!(error("zadd k 1 a"), None);
    }

    #[test]
    fn zrange_options_follow_the_generic_parser() {
        let e = |t: &str| Some(Frame::error(t));
        assert_eq!(
            error("zrange k 0 1 limit 0 1"),
            e(
                "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
            )
        );
        assert_eq!(error("zrange k 0 1 limit 0 -1"), None);
        assert_eq!(
            error("zrange k - + bylex withscores"),
            e("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
        );
        assert_eq!(error("zrangebyscore k 0 1 rev"), Some(syntax_error()));
        assert_eq!(error("zrange k 0 1 byscore byscore"), Some(syntax_error()));
        assert_eq!(
            error("zrange k a 1 byscore"),
            e("ERR min or max is not a float")
        );
        assert_eq!(
            error("zrange k a 1 bylex"),
            e("ERR min or max not valid string range item")
        );
        assert_eq!(error("zrange k a 1"), Some(super::super::not_an_integer()));
    }
}
