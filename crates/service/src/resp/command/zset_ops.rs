//! The sorted-set algebra of the Z commands, without I/O: each command reads the whole set,
//! computes here, and writes the set whole (see `zsets.rs`). Semantics follow redis-server
//! 7.0 (`t_zset.c`): members ordered by score, then by member bytes; `zsetAdd`'s flags; the
//! range parsers `zslParseRange` and `zslParseLexRange`; `strtod`'s rules for scores.

use std::cmp::Ordering;

/// Members with their scores, kept in Redis's order (score, then member bytes). No NaN.
pub type Members = Vec<(Vec<u8>, f64)>;

/// Redis's order: by score, then by member bytes (`-0` and `0` are equal scores).
pub fn order(a: &(Vec<u8>, f64), b: &(Vec<u8>, f64)) -> Ordering {
    a.1.partial_cmp(&b.1)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.0.cmp(&b.0))
}

/// Puts `set` back in Redis's order after changes.
pub fn sort(set: &mut Members) {
    set.sort_by(order);
}

/// A score argument as `getDoubleFromObject` takes it (ZADD, ZINCRBY): the whole text is a
/// number, no leading space, no NaN, and no overflow to infinity nor underflow to zero
/// (`strtod`'s ERANGE); `inf`/`-inf` spelt out are accepted. Hexadecimal floats, which C's
/// `strtod` also reads, are not.
pub fn parse_score(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    let value: f64 = text.parse().ok()?;
    if value.is_nan() {
        return None;
    }
    let unsigned = text.trim_start_matches(['+', '-']);
    if value.is_infinite() && !unsigned.get(..3)?.eq_ignore_ascii_case("inf") {
        return None;
    }
    let mantissa = unsigned.split(['e', 'E']).next().unwrap_or("");
    if value == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return None;
    }
    Some(value)
}

/// A bound of a score range as `zslParseRange` reads it: `strtod` up to the end of the text,
/// leading spaces skipped, overflow to infinity allowed, the empty text taken as 0.
fn range_number(text: &[u8]) -> Option<f64> {
    if text.is_empty() {
        return Some(0.0);
    }
    let text = std::str::from_utf8(text).ok()?;
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    if trimmed.len() != text.len() && trimmed.is_empty() {
        return None;
    }
    trimmed.parse::<f64>().ok().filter(|v| !v.is_nan())
}

/// One end of a score range; `exclusive` for a `(` prefix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreBound {
    pub value: f64,
    pub exclusive: bool,
}

impl ScoreBound {
    fn parse(arg: &[u8]) -> Option<ScoreBound> {
        match arg.strip_prefix(b"(") {
            Some(rest) => range_number(rest).map(|value| ScoreBound {
                value,
                exclusive: true,
            }),
            None => range_number(arg).map(|value| ScoreBound {
                value,
                exclusive: false,
            }),
        }
    }
}

/// A score range `min..max`, each end inclusive or not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRange {
    pub min: ScoreBound,
    pub max: ScoreBound,
}

impl ScoreRange {
    /// `None` when either end is not a number: Redis's "min or max is not a float".
    pub fn parse(min: &[u8], max: &[u8]) -> Option<ScoreRange> {
        Some(ScoreRange {
            min: ScoreBound::parse(min)?,
            max: ScoreBound::parse(max)?,
        })
    }

    pub fn contains(&self, score: f64) -> bool {
        let above = if self.min.exclusive {
            score > self.min.value
        } else {
            score >= self.min.value
        };
        let below = if self.max.exclusive {
            score < self.max.value
        } else {
            score <= self.max.value
        };
        above && below
    }
}

/// One end of a lex range: `-`, `+`, `[member` or `(member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexBound {
    Lowest,
    Highest,
    Inclusive(Vec<u8>),
    Exclusive(Vec<u8>),
}

impl LexBound {
    fn parse(arg: &[u8]) -> Option<LexBound> {
        match arg.split_first()? {
            (b'-', []) => Some(LexBound::Lowest),
            (b'+', []) => Some(LexBound::Highest),
            (b'[', rest) => Some(LexBound::Inclusive(rest.to_vec())),
            (b'(', rest) => Some(LexBound::Exclusive(rest.to_vec())),
            _ => None,
        }
    }
}

/// A lex range over member bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexRange {
    pub min: LexBound,
    pub max: LexBound,
}

impl LexRange {
    /// `None` when either end is malformed: Redis's "min or max not valid string range item".
    pub fn parse(min: &[u8], max: &[u8]) -> Option<LexRange> {
        Some(LexRange {
            min: LexBound::parse(min)?,
            max: LexBound::parse(max)?,
        })
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.above_min(member) && self.below_max(member)
    }

    fn above_min(&self, member: &[u8]) -> bool {
        match &self.min {
            LexBound::Lowest => true,
            LexBound::Highest => false,
            LexBound::Inclusive(m) => member >= m.as_slice(),
            LexBound::Exclusive(m) => member > m.as_slice(),
        }
    }

    fn below_max(&self, member: &[u8]) -> bool {
        match &self.max {
            LexBound::Lowest => false,
            LexBound::Highest => true,
            LexBound::Inclusive(m) => member <= m.as_slice(),
            LexBound::Exclusive(m) => member < m.as_slice(),
        }
    }
}

/// ZADD's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddFlags {
    pub nx: bool,
    pub xx: bool,
    pub gt: bool,
    pub lt: bool,
    pub incr: bool,
}

/// What `add` did to one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Added,
    Updated,
    /// Nothing changed, though the member may have been looked at (same score).
    Unchanged,
    /// Refused by NX, XX, GT or LT: nothing to report, even for INCR.
    Skipped,
}

/// The result of an INCR or ZINCRBY is NaN (`inf` + `-inf`): Redis refuses the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("resulting score is not a number (NaN)")]
pub struct NotANumber;

/// `zsetAdd`: adds `member` with `score` (or adds `score` to its score with INCR) under the
/// flags, and returns what happened with the member's score afterwards. Leaves `set` out of
/// order when it adds or updates: call `sort` once after a batch.
pub fn add(
    set: &mut Members,
    member: &[u8],
    score: f64,
    flags: AddFlags,
) -> Result<(Outcome, f64), NotANumber> {
    if score.is_nan() {
        return Err(NotANumber);
    }
    match set.iter().position(|(m, _)| m == member) {
        Some(at) => {
            if flags.nx {
                return Ok((Outcome::Skipped, set[at].1));
            }
            let current = set[at].1;
            let new = if flags.incr { score + current } else { score };
            if new.is_nan() {
                return Err(NotANumber);
            }
            if (flags.lt && new >= current) || (flags.gt && new <= current) {
                return Ok((Outcome::Skipped, current));
            }
            if new == current {
                return Ok((Outcome::Unchanged, current));
            }
            set[at].1 = new;
            Ok((Outcome::Updated, new))
        }
        None if flags.xx => Ok((Outcome::Skipped, score)),
        None => {
            set.push((member.to_vec(), score));
            Ok((Outcome::Added, score))
        }
    }
}

/// ZREM and the ZREMRANGEBY commands: removes the members present; returns how many were.
/// One pass over the set, however many members go.
pub fn remove<'a>(set: &mut Members, members: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let doomed: std::collections::HashSet<&[u8]> = members.into_iter().collect();
    let before = set.len();
    set.retain(|(m, _)| !doomed.contains(m.as_slice()));
    before - set.len()
}

pub fn score(set: &Members, member: &[u8]) -> Option<f64> {
    set.iter().find(|(m, _)| m == member).map(|(_, s)| *s)
}

/// ZRANK / ZREVRANK.
pub fn rank(set: &Members, member: &[u8], reverse: bool) -> Option<usize> {
    let at = set.iter().position(|(m, _)| m == member)?;
    Some(if reverse { set.len() - 1 - at } else { at })
}

/// ZRANGE by rank (and ZREMRANGEBYRANK): the clamped inclusive range of ranks, counted from
/// the highest score when `reverse`, in reply order.
pub fn by_rank(set: &Members, start: i64, stop: i64, reverse: bool) -> Vec<&(Vec<u8>, f64)> {
    match super::list_ops::range(set.len(), start, stop) {
        None => Vec::new(),
        Some((a, b)) if reverse => set.iter().rev().skip(a).take(b - a + 1).collect(),
        Some((a, b)) => set[a..=b].iter().collect(),
    }
}

/// ZRANGE BYSCORE / BYLEX's LIMIT: a negative offset gives nothing, a negative count no limit
/// (as `t_zset.c`'s `while (offset--)` / `while (limit--)` behave).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub offset: i64,
    pub count: i64,
}

impl Default for Limit {
    fn default() -> Self {
        Limit {
            offset: 0,
            count: -1,
        }
    }
}

fn limited<'a>(
    matching: impl Iterator<Item = &'a (Vec<u8>, f64)>,
    limit: Limit,
) -> Vec<&'a (Vec<u8>, f64)> {
    let Ok(offset) = usize::try_from(limit.offset) else {
        return Vec::new();
    };
    let count = usize::try_from(limit.count).unwrap_or(usize::MAX);
    matching.skip(offset).take(count).collect()
}

/// The members whose score is in `range`, highest first when `reverse`, then LIMIT.
pub fn by_score<'a>(
    set: &'a Members,
    range: &ScoreRange,
    reverse: bool,
    limit: Limit,
) -> Vec<&'a (Vec<u8>, f64)> {
    let matching = |e: &&(Vec<u8>, f64)| range.contains(e.1);
    if reverse {
        limited(set.iter().rev().filter(matching), limit)
    } else {
        limited(set.iter().filter(matching), limit)
    }
}

/// The members in the lex `range`, walked as Redis walks a small (listpack) sorted set in
/// score order, so that sets whose scores differ (where Redis leaves the result unspecified)
/// answer as on one server: the run starts at the first member (the last when `reverse`) past
/// the near bound, LIMIT's offset skips members whatever they hold, and the run stops at the
/// first member past the far bound.
pub fn by_lex<'a>(
    set: &'a Members,
    range: &LexRange,
    reverse: bool,
    limit: Limit,
) -> Vec<&'a (Vec<u8>, f64)> {
    let (Some(first), Some(last)) = (set.first(), set.last()) else {
        return Vec::new();
    };
    // `zzlIsInLexRange`: the whole set is out of range unless it reaches both bounds.
    if !range.above_min(&last.0) || !range.below_max(&first.0) {
        return Vec::new();
    }
    let Ok(offset) = usize::try_from(limit.offset) else {
        return Vec::new();
    };
    let count = usize::try_from(limit.count).unwrap_or(usize::MAX);
    if reverse {
        let Some(start) = set.iter().rposition(|e| range.below_max(&e.0)) else {
            return Vec::new();
        };
        if !range.above_min(&set[start].0) {
            return Vec::new();
        }
        set[..=start]
            .iter()
            .rev()
            .skip(offset)
            .take(count)
            .take_while(|e| range.above_min(&e.0))
            .collect()
    } else {
        let Some(start) = set.iter().position(|e| range.above_min(&e.0)) else {
            return Vec::new();
        };
        if !range.below_max(&set[start].0) {
            return Vec::new();
        }
        set[start..]
            .iter()
            .skip(offset)
            .take(count)
            .take_while(|e| range.below_max(&e.0))
            .collect()
    }
}

/// ZPOPMIN / ZPOPMAX: up to `count` members from the lowest (or highest) score, in the order
/// they are popped.
pub fn pop(set: &mut Members, count: usize, highest: bool) -> Members {
    let n = count.min(set.len());
    if highest {
        let mut popped = set.split_off(set.len() - n);
        popped.reverse();
        popped
    } else {
        set.drain(..n).collect()
    }
}

/// ZUNION, ZINTER and ZDIFF (and their STORE forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    Union,
    Inter,
    Diff,
}

/// How ZUNION and ZINTER combine the weighted scores of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregate {
    #[default]
    Sum,
    Min,
    Max,
}

impl Aggregate {
    /// As `zunionInterAggregate`: a sum that is NaN (`inf` + `-inf`) counts as 0.
    fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            Aggregate::Sum => {
                let sum = a + b;
                if sum.is_nan() { 0.0 } else { sum }
            }
            Aggregate::Min => a.min(b),
            Aggregate::Max => a.max(b),
        }
    }
}

/// The result of `op` over `inputs` (a missing key is an empty set), each input's scores
/// multiplied by its weight (a NaN product, `inf` * 0, counts as 0, as in Redis), in Redis's
/// order. ZDIFF keeps the first input's scores and ignores weights.
pub fn combine(op: SetOp, inputs: &[&Members], weights: &[f64], aggregate: Aggregate) -> Members {
    let weighted = |i: usize, score: f64| {
        let w = weights.get(i).copied().unwrap_or(1.0);
        let v = score * w;
        if v.is_nan() { 0.0 } else { v }
    };
    let maps: Vec<std::collections::HashMap<&[u8], f64>> = inputs
        .iter()
        .map(|set| set.iter().map(|(m, s)| (m.as_slice(), *s)).collect())
        .collect();
    let mut out: Members = Vec::new();
    match op {
        SetOp::Union => {
            let mut acc: std::collections::HashMap<&[u8], f64> = std::collections::HashMap::new();
            for (i, set) in inputs.iter().enumerate() {
                for (m, s) in set.iter() {
                    let v = weighted(i, *s);
                    acc.entry(m.as_slice())
                        .and_modify(|t| *t = aggregate.apply(*t, v))
                        .or_insert(v);
                }
            }
            out.extend(acc.into_iter().map(|(m, s)| (m.to_vec(), s)));
        }
        SetOp::Inter => {
            let Some(first) = inputs.first() else {
                return out;
            };
            'members: for (m, s) in first.iter() {
                let mut total = weighted(0, *s);
                for (j, map) in maps.iter().enumerate().skip(1) {
                    let Some(s) = map.get(m.as_slice()) else {
                        continue 'members;
                    };
                    total = aggregate.apply(total, weighted(j, *s));
                }
                out.push((m.clone(), total));
            }
        }
        SetOp::Diff => {
            let Some(first) = inputs.first() else {
                return out;
            };
            out.extend(
                first
                    .iter()
                    .filter(|(m, _)| maps[1..].iter().all(|map| !map.contains_key(m.as_slice())))
                    .cloned(),
            );
        }
    }
    sort(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[(&str, f64)]) -> Members {
        let mut s: Members = items
            .iter()
            .map(|(m, s)| (m.as_bytes().to_vec(), *s))
            .collect();
        sort(&mut s);
        s
    }

    fn names(items: Vec<&(Vec<u8>, f64)>) -> Vec<String> {
        items
            .into_iter()
            .map(|(m, _)| String::from_utf8_lossy(m).into_owned())
            .collect()
    }

    #[test]
    fn scores_parse_as_strtod_with_redis_checks() {
        assert_eq!(parse_score(b"1.5"), Some(1.5));
        assert_eq!(parse_score(b"+2"), Some(2.0));
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score(b"+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_score(b".5"), Some(0.5));
        assert_eq!(parse_score(b"1e3"), Some(1000.0));
        assert_eq!(parse_score(b"0"), Some(0.0));
        assert_eq!(parse_score(b"0e5"), Some(0.0));
        for bad in [
            "", " 1", "1 ", "nan", "abc", "1e400", "1e-400", "1,5", "--1",
        ] {
            assert_eq!(parse_score(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn score_ranges_take_exclusive_bounds_and_infinities() {
        let r = ScoreRange::parse(b"(1", b"+inf").unwrap();
        assert!(!r.contains(1.0) && r.contains(1.5) && r.contains(f64::INFINITY));
        let r = ScoreRange::parse(b"-inf", b"(2").unwrap();
        assert!(r.contains(f64::NEG_INFINITY) && !r.contains(2.0));
        assert_eq!(ScoreRange::parse(b"(", b"0").unwrap().min.value, 0.0);
        assert!(ScoreRange::parse(b"x", b"1").is_none());
        assert!(ScoreRange::parse(b"1", b"nan").is_none());
        assert!(ScoreRange::parse(b"1", b"1 ").is_none());
    }

    #[test]
    fn lex_ranges_follow_redis_items() {
        let r = LexRange::parse(b"[b", b"(d").unwrap();
        assert!(r.contains(b"b") && r.contains(b"c") && !r.contains(b"d") && !r.contains(b"a"));
        let all = LexRange::parse(b"-", b"+").unwrap();
        assert!(all.contains(b"") && all.contains(b"\xff"));
        // Mixed scores: Redis walks in score order and stops at the first member past a bound.
        let set: Members = vec![
            (b"b".to_vec(), 1.0),
            (b"a".to_vec(), 2.0),
            (b"c".to_vec(), 3.0),
        ];
        let names = |v: Vec<&(Vec<u8>, f64)>| v.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
        let a = LexRange::parse(b"[a", b"[a").unwrap();
        assert!(by_lex(&set, &a, false, Limit::default()).is_empty());
        let ab = LexRange::parse(b"[a", b"[b").unwrap();
        assert_eq!(
            names(by_lex(&set, &ab, false, Limit::default())),
            [b"b".to_vec(), b"a".to_vec()]
        );
        assert_eq!(
            names(by_lex(&set, &ab, true, Limit::default())),
            [b"a".to_vec(), b"b".to_vec()]
        );
        let skip_one = Limit {
            offset: 1,
            count: 5,
        };
        assert_eq!(names(by_lex(&set, &ab, false, skip_one)), [b"a".to_vec()]);
        let upto_a = LexRange::parse(b"-", b"[a").unwrap();
        assert!(by_lex(&set, &upto_a, false, Limit::default()).is_empty());
        assert!(!LexRange::parse(b"+", b"-").unwrap().contains(b"a"));
        assert!(LexRange::parse(b"b", b"+").is_none());
        assert!(LexRange::parse(b"-x", b"+").is_none());
        assert!(LexRange::parse(b"", b"+").is_none());
    }

    #[test]
    fn members_are_ordered_by_score_then_bytes() {
        let s = set(&[
            ("b", 1.0),
            ("a", 1.0),
            ("c", -1.0),
            ("z", f64::NEG_INFINITY),
        ]);
        let order: Vec<&[u8]> = s.iter().map(|(m, _)| m.as_slice()).collect();
        assert_eq!(order, [&b"z"[..], b"c", b"a", b"b"]);
        assert_eq!(rank(&s, b"a", false), Some(2));
        assert_eq!(rank(&s, b"a", true), Some(1));
        assert_eq!(rank(&s, b"x", false), None);
    }

    #[test]
    fn add_follows_zset_add_flags() {
        let mut s = set(&[("a", 1.0)]);
        let f = AddFlags::default();
        assert_eq!(add(&mut s, b"a", 1.0, f), Ok((Outcome::Unchanged, 1.0)));
        assert_eq!(add(&mut s, b"a", 2.0, f), Ok((Outcome::Updated, 2.0)));
        assert_eq!(add(&mut s, b"b", 0.0, f), Ok((Outcome::Added, 0.0)));
        let nx = AddFlags { nx: true, ..f };
        assert_eq!(add(&mut s, b"a", 5.0, nx).unwrap().0, Outcome::Skipped);
        let xx = AddFlags { xx: true, ..f };
        assert_eq!(add(&mut s, b"c", 5.0, xx).unwrap().0, Outcome::Skipped);
        let gt = AddFlags { gt: true, ..f };
        assert_eq!(add(&mut s, b"a", 1.0, gt).unwrap().0, Outcome::Skipped);
        assert_eq!(add(&mut s, b"a", 3.0, gt), Ok((Outcome::Updated, 3.0)));
        let lt_incr = AddFlags {
            lt: true,
            incr: true,
            ..f
        };
        assert_eq!(add(&mut s, b"a", 1.0, lt_incr).unwrap().0, Outcome::Skipped);
        assert_eq!(
            add(&mut s, b"a", -1.0, lt_incr),
            Ok((Outcome::Updated, 2.0))
        );
        let incr = AddFlags { incr: true, ..f };
        assert_eq!(
            add(&mut s, b"i", f64::INFINITY, incr).unwrap().1,
            f64::INFINITY
        );
        assert_eq!(add(&mut s, b"i", f64::NEG_INFINITY, incr), Err(NotANumber));
        assert_eq!(score(&s, b"i"), Some(f64::INFINITY));
        sort(&mut s);
        assert_eq!(s[0].0, b"b");
    }

    #[test]
    fn ranges_by_rank_score_and_lex_with_limits() {
        let s = set(&[("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0)]);
        assert_eq!(names(by_rank(&s, 1, -2, false)), ["b", "c"]);
        assert_eq!(names(by_rank(&s, 0, 0, true)), ["d"]);
        assert!(by_rank(&s, 5, 9, false).is_empty());
        let r = ScoreRange::parse(b"(1", b"4").unwrap();
        assert_eq!(
            names(by_score(&s, &r, false, Limit::default())),
            ["b", "c", "d"]
        );
        let lim = Limit {
            offset: 1,
            count: 1,
        };
        assert_eq!(names(by_score(&s, &r, true, lim)), ["c"]);
        let neg = Limit {
            offset: -1,
            count: 5,
        };
        assert!(by_score(&s, &r, false, neg).is_empty());
        let flat = set(&[("a", 0.0), ("b", 0.0), ("c", 0.0)]);
        let l = LexRange::parse(b"(a", b"+").unwrap();
        assert_eq!(names(by_lex(&flat, &l, true, Limit::default())), ["c", "b"]);
    }

    #[test]
    fn union_inter_and_diff_with_weights_and_aggregates() {
        let a = set(&[("x", 1.0), ("y", 2.0), ("i", f64::INFINITY)]);
        let b = set(&[("y", 3.0), ("z", 4.0), ("i", f64::NEG_INFINITY)]);
        let u = combine(SetOp::Union, &[&a, &b], &[], Aggregate::Sum);
        assert_eq!(u, set(&[("x", 1.0), ("y", 5.0), ("z", 4.0), ("i", 0.0)]));
        let i = combine(SetOp::Inter, &[&a, &b], &[2.0, 1.0], Aggregate::Max);
        assert_eq!(i, set(&[("y", 4.0), ("i", f64::INFINITY)]));
        let zero = combine(SetOp::Union, &[&a], &[0.0], Aggregate::Sum);
        assert_eq!(score(&zero, b"i"), Some(0.0));
        let d = combine(SetOp::Diff, &[&a, &b], &[], Aggregate::Sum);
        assert_eq!(d, set(&[("x", 1.0)]));
        assert!(combine(SetOp::Inter, &[&a, &Members::new()], &[], Aggregate::Min).is_empty());
    }

    #[test]
    fn pops_and_removals() {
        let mut s = set(&[("a", 1.0), ("b", 2.0), ("c", 3.0)]);
        assert_eq!(
            pop(&mut s, 2, true),
            set(&[("c", 3.0), ("b", 2.0)])
                .into_iter()
                .rev()
                .collect::<Members>()
        );
        assert_eq!(pop(&mut s, 5, false), set(&[("a", 1.0)]));
        let mut s = set(&[("a", 1.0), ("b", 2.0), ("c", 3.0)]);
        assert_eq!(remove(&mut s, [&b"a"[..], b"x", b"a"]), 1);
        assert_eq!(remove(&mut s, [&b"b"[..]]), 1);
        assert_eq!(s, set(&[("c", 3.0)]));
    }
}
