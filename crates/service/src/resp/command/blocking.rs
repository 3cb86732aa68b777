//! The blocking pops: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP,
//! with redis-server 7.0's replies and argument checks.
//!
//! Each is its non-blocking form (LPOP, LMOVE, LMPOP, ZPOPMIN, ZMPOP...) tried over its keys in
//! order, which is a versioned read-modify-write under the key's ballot, so an element is
//! popped once however many connections and instances wait on it. When every key is empty the
//! connection waits and tries again, until it pops or the timeout passes (0: forever). It is
//! woken at once by a write of one of its keys through this instance (`resp::wakes`), and
//! otherwise tries again after a back-off of `FIRST_PAUSE` doubling up to `MAX_PAUSE`, which
//! bounds how late it sees a push through another instance. While it sleeps it holds nothing
//! on the nodes. In a transaction it tries once and answers nil, as Redis does.

use super::list_ops::End;
use super::lists::{ListCmd, end_arg};
use super::long_double::{self, Parsed};
use super::zsets::ZsetCmd;
use super::{Access, Command, Flag, Spec, data, eq, mpop_count, mpop_where, syntax_error};
use crate::resp::Shared;
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::quorum::Consistency;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The first wait before trying again without a wake.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest: the latency bound for a push through another instance.
const MAX_PAUSE: Duration = Duration::from_millis(100);

const BLOCKING: &[Flag] = &[Flag::Write];

pub static SPECS: &[Spec] = &[
    Spec::keyed("blpop", -3, BLOCKING, (1, -2, 1), |a| {
        pops(a, Pop::list(End::Left))
    }),
    Spec::keyed("brpop", -3, BLOCKING, (1, -2, 1), |a| {
        pops(a, Pop::list(End::Right))
    }),
    Spec::keyed("bzpopmin", -3, BLOCKING, (1, -2, 1), |a| {
        pops(a, Pop::zset(false))
    }),
    Spec::keyed("bzpopmax", -3, BLOCKING, (1, -2, 1), |a| {
        pops(a, Pop::zset(true))
    }),
    Spec::keyed("blmove", 6, BLOCKING, (1, 2, 1), |a| {
        let (from, to) = (end_arg(&a[3])?, end_arg(&a[4])?);
        blocking(Pop::Move(a[1].clone(), a[2].clone(), from, to), &a[5])
    }),
    Spec::keyed("brpoplpush", 4, BLOCKING, (1, 2, 1), |a| {
        let pop = Pop::Move(a[1].clone(), a[2].clone(), End::Right, End::Left);
        blocking(pop, &a[3])
    }),
    // Their keys follow numkeys, so, as in Redis's table, they declare none (movable keys).
    Spec::keyless("blmpop", -5, BLOCKING, |a| {
        mpops(a, |keys, w, count| {
            Ok(Pop::ListMany(keys, end_arg(w)?, count))
        })
    }),
    Spec::keyless("bzmpop", -5, BLOCKING, |a| {
        mpops(a, |keys, w, count| {
            let highest = if eq(w, "min") {
                false
            } else if eq(w, "max") {
                true
            } else {
                return Err(syntax_error());
            };
            Ok(Pop::ZsetMany(keys, highest, count))
        })
    }),
];

/// What a blocking command pops, as its non-blocking form would.
enum Pop {
    /// BLPOP/BRPOP: one element of the first non-empty list.
    List(Vec<Bytes>, End),
    /// BZPOPMIN/BZPOPMAX: one member of the first non-empty sorted set.
    Zset(Vec<Bytes>, bool),
    /// BLMOVE/BRPOPLPUSH: source, destination, ends.
    Move(Bytes, Bytes, End, End),
    /// BLMPOP: keys, end, count.
    ListMany(Vec<Bytes>, End, usize),
    /// BZMPOP: keys, whether the highest, count.
    ZsetMany(Vec<Bytes>, bool, usize),
}

impl Pop {
    fn list(end: End) -> impl Fn(Vec<Bytes>) -> Pop {
        move |keys| Pop::List(keys, end)
    }

    fn zset(highest: bool) -> impl Fn(Vec<Bytes>) -> Pop {
        move |keys| Pop::Zset(keys, highest)
    }

    /// The keys it pops from (waits on).
    fn sources(&self) -> &[Bytes] {
        match self {
            Pop::List(keys, _)
            | Pop::Zset(keys, _)
            | Pop::ListMany(keys, ..)
            | Pop::ZsetMany(keys, ..) => keys,
            Pop::Move(src, ..) => std::slice::from_ref(src),
        }
    }

    /// Redis's answer when every key is empty and the command does not wait (in a
    /// transaction): its non-blocking form's nil, a null bulk string for BLMOVE and
    /// BRPOPLPUSH (LMOVE's), a null array for the others.
    fn nil_at_once(&self) -> Frame {
        match self {
            Pop::Move(..) => Frame::Null,
            _ => Frame::NullArray,
        }
    }

    /// One try of the non-blocking form: `None` when every key is empty or absent.
    async fn once(&self, shared: &Shared, level: Consistency) -> Option<Frame> {
        let store = &shared.store;
        match self {
            Pop::List(keys, end) => {
                for key in keys {
                    let pop = ListCmd::Pop {
                        key: key.clone(),
                        end: *end,
                        count: None,
                    };
                    match pop.apply(store, level).await {
                        Frame::Null => continue,
                        e @ Frame::Error(_) => return Some(e),
                        item => return Some(Frame::Array(vec![Frame::bulk(key.clone()), item])),
                    }
                }
                None
            }
            Pop::Zset(keys, highest) => {
                for key in keys {
                    let pop = ZsetCmd::Pop {
                        key: key.clone(),
                        count: None,
                        highest: *highest,
                    };
                    match pop.apply(store, level).await {
                        Frame::Array(pair) if pair.is_empty() => continue,
                        Frame::Array(pair) => {
                            let mut reply = vec![Frame::bulk(key.clone())];
                            reply.extend(pair);
                            return Some(Frame::Array(reply));
                        }
                        other => return Some(other),
                    }
                }
                None
            }
            Pop::Move(src, dst, from, to) => {
                let cmd = ListCmd::Move {
                    src: src.clone(),
                    dst: dst.clone(),
                    from: *from,
                    to: *to,
                };
                Some(cmd.apply(store, level).await).filter(|f| *f != Frame::Null)
            }
            Pop::ListMany(keys, end, count) => {
                let cmd = ListCmd::MPop {
                    keys: keys.clone(),
                    end: *end,
                    count: *count,
                };
                Some(cmd.apply(store, level).await).filter(|f| *f != Frame::NullArray)
            }
            Pop::ZsetMany(keys, highest, count) => {
                let cmd = ZsetCmd::MPop {
                    keys: keys.clone(),
                    highest: *highest,
                    count: *count,
                };
                Some(cmd.apply(store, level).await).filter(|f| *f != Frame::NullArray)
            }
        }
    }
}

pub struct BlockingCmd {
    pop: Pop,
    /// `None`: wait forever (a timeout of 0).
    timeout: Option<Duration>,
    /// False in a transaction: try once and answer nil.
    waits: bool,
}

/// `NAME key... timeout`.
fn pops(a: &[Bytes], pop: impl Fn(Vec<Bytes>) -> Pop) -> Result<Command, Frame> {
    let last = a.len() - 1;
    blocking(pop(a[1..last].to_vec()), &a[last])
}

/// `NAME timeout numkeys key... WHERE [COUNT n]`: numkeys, WHERE and COUNT are checked before
/// the timeout, as redis-server 7.0 does.
fn mpops(
    a: &[Bytes],
    pop: impl Fn(Vec<Bytes>, &[u8], usize) -> Result<Pop, Frame>,
) -> Result<Command, Frame> {
    // From the timeout on, the arguments are LMPOP's and ZMPOP's from their numkeys on.
    let rest = &a[1..];
    let where_at = mpop_where(rest)?;
    let keys = rest[2..where_at].to_vec();
    // WHERE before COUNT, as Redis checks them.
    let pop = pop(keys, &rest[where_at], 1)?;
    let count = mpop_count(rest, where_at + 1)?;
    let pop = match pop {
        Pop::ListMany(k, e, _) => Pop::ListMany(k, e, count),
        Pop::ZsetMany(k, h, _) => Pop::ZsetMany(k, h, count),
        other => other,
    };
    blocking(pop, &a[1])
}

fn blocking(pop: Pop, timeout_arg: &[u8]) -> Result<Command, Frame> {
    data(BlockingCmd {
        pop,
        timeout: timeout(timeout_arg, now_ms())?,
        waits: true,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A timeout in seconds, read as redis-server 7.0 reads it (`getTimeoutFromObjectOrReply`): a
/// long double, times 1000, truncated to whole milliseconds (so below a millisecond it is 0,
/// forever). `None`: forever.
fn timeout(arg: &[u8], now_ms: i64) -> Result<Option<Duration>, Frame> {
    let negative = || Frame::error("ERR timeout is negative");
    let ms = match long_double::parse(arg) {
        None => return Err(Frame::error("ERR timeout is not a float or out of range")),
        // Redis casts to `long long`; on x86-64 a value out of its range becomes the most
        // negative one, so an infinity or a huge timeout is "negative" there too.
        Some(Parsed::Infinite) => return Err(negative()),
        Some(Parsed::Finite(v)) => v.to_f64() * 1000.0,
    };
    const RANGE: f64 = 9_223_372_036_854_775_808.0;
    if !(-RANGE..RANGE).contains(&ms) {
        return Err(negative());
    }
    let ms = ms.trunc() as i64;
    if ms < 0 {
        return Err(negative());
    }
    if ms == 0 {
        return Ok(None);
    }
    if ms > i64::MAX - now_ms {
        // Redis 7.0 adds the time without a check: the deadline wraps and it waits on.
        return Ok(None);
    }
    Ok(Some(Duration::from_millis(ms.unsigned_abs())))
}

impl BlockingCmd {
    pub fn access(&self) -> Access<'_> {
        let mut writes: Vec<&[u8]> = self.pop.sources().iter().map(|k| &k[..]).collect();
        if let Pop::Move(_, dst, ..) = &self.pop {
            writes.push(dst);
        }
        Access {
            reads: vec![],
            writes,
        }
    }

    /// As inside MULTI: the non-blocking form, nil when every key is empty.
    pub fn without_waiting(mut self) -> Self {
        self.waits = false;
        self
    }

    pub async fn apply(self, shared: &Shared, level: Consistency) -> Frame {
        if let Some(reply) = self.pop.once(shared, level).await {
            return reply;
        }
        if !self.waits {
            return self.pop.nil_at_once();
        }
        let deadline = self.timeout.and_then(|t| Instant::now().checked_add(t));
        // Registered before the next try, so a push after that try is announced to it.
        let registration = shared.wakes.register(self.pop.sources());
        let mut pause = FIRST_PAUSE;
        loop {
            if let Some(reply) = self.pop.once(shared, level).await {
                return reply;
            }
            let now = Instant::now();
            let nap = match deadline {
                // Redis 7.0's `replyToBlockedClientTimedOut` answers a null array for every
                // blocking command, BLMOVE and BRPOPLPUSH included (`*-1` in RESP2).
                Some(d) if d <= now => return Frame::NullArray,
                Some(d) => pause.min(d - now),
                None => pause,
            };
            tokio::select! {
                () = registration.woken() => {}
                () = tokio::time::sleep(nap) => pause = (pause * 2).min(MAX_PAUSE),
            }
        }
    }
}

/// Whether a request may wait (its connection then watches for the client leaving).
pub fn may_block(args: &[Bytes]) -> bool {
    args.first().is_some_and(|name| {
        SPECS
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s.name.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn err(arg: &str) -> String {
        match timeout(arg.as_bytes(), NOW) {
            Err(Frame::Error(e)) => e.to_string(),
            other => panic!("{arg}: {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn timeouts_read_as_redis_7_reads_them() {
        let ok = |arg: &str| timeout(arg.as_bytes(), NOW).ok().unwrap();
        assert_eq!(ok("0"), None);
        assert_eq!(ok("0.1"), Some(Duration::from_millis(100)));
        assert_eq!(ok("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(ok("0x10"), Some(Duration::from_secs(16)));
        // Below a millisecond, negative ones too, truncate to 0: forever, as in Redis 7.0.
        assert_eq!(ok("0.0001"), None);
        assert_eq!(ok("-0.0001"), None);
        assert_eq!(ok("1e-400"), None);
        assert_eq!(
            ok("9.2e15").map(|d| d.as_secs()),
            Some(9_200_000_000_000_000)
        );
        for bad in ["abc", "", " 1", "1 ", "nan"] {
            assert_eq!(
                err(bad),
                "ERR timeout is not a float or out of range",
                "{bad}"
            );
        }
        for negative in ["-1", "inf", "-inf", "1e16", "1e20"] {
            assert_eq!(err(negative), "ERR timeout is negative", "{negative}");
        }
        // Past the clock's range redis-server 7.0.15 waits (its deadline overflows).
        assert_eq!(ok("9223372036000000"), None);
    }

    #[test]
    fn blocking_names_are_recognised_in_any_case() {
        for name in [
            "blpop",
            "BRPOP",
            "BLMove",
            "brpoplpush",
            "blmpop",
            "bzpopmin",
            "BZMPOP",
        ] {
            assert!(may_block(&[Bytes::from(name)]), "{name}");
        }
        assert!(!may_block(&[Bytes::from("lpop")]));
        assert!(!may_block(&[]));
    }
}
