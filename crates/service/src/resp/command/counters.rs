//! INCR, INCRBY, DECR, DECRBY, as Redis does them: on a string holding an integer (written by
//! SET or by an earlier INCR), a read-modify-write under the key's version, retried when
//! another instance's write got in between, so no acknowledged increment is lost and the key
//! stays a plain string (SET, DEL, EXPIRE and APPEND apply to it). A key that is a PN-counter
//! (made by the HTTP API's CRDT calls, docs/CRDTS.md) keeps its merge semantics: the increment
//! is added to the counter.
//!
//! INCRBYFLOAT is the same read-modify-write on the string, in Redis's `long double`
//! arithmetic (`long_double.rs`); a PN-counter holds integers only, so it refuses those.

use super::long_double::{self, LongDouble, Parsed};
use super::{Access, Command, Flag, Spec, crdt_error, data, int_arg, store_error};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::crdt::CrdtKind;
use quorumd_core::quorum::Consistency;
use quorumd_replication::crdt_store::CrdtStore;
use quorumd_replication::store::{Change, StoreError, VersionedStore};

const WRITE: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];

pub static SPECS: &[Spec] = &[
    Spec::keyed("incr", 2, WRITE, (1, 1, 1), |a| incr(a, 1)),
    Spec::keyed("decr", 2, WRITE, (1, 1, 1), |a| incr(a, -1)),
    Spec::keyed("incrby", 3, WRITE, (1, 1, 1), |a| incr(a, int_arg(&a[2])?)),
    Spec::keyed("decrby", 3, WRITE, (1, 1, 1), |a| {
        let by = int_arg(&a[2])?;
        // -i64::MIN does not exist; Redis refuses it with this text.
        let delta = by
            .checked_neg()
            .ok_or_else(|| Frame::error("ERR decrement would overflow"))?;
        incr(a, delta)
    }),
    Spec::keyed("incrbyfloat", 3, WRITE, (1, 1, 1), |a| {
        // The increment is checked once the key is read: Redis answers WRONGTYPE, and a bad
        // stored value, before a bad increment.
        data(FloatCmd {
            key: a[1].clone(),
            increment: a[2].clone(),
        })
    }),
];

pub struct CounterCmd {
    key: Bytes,
    delta: i64,
}

fn incr(args: &[Bytes], delta: i64) -> Result<Command, Frame> {
    data(CounterCmd {
        key: args[1].clone(),
        delta,
    })
}

/// A counter's value as a reply: an integer, as Redis answers INCR.
pub fn value_reply(value: i128) -> Frame {
    match i64::try_from(value) {
        Ok(v) => Frame::Integer(v),
        // Increments through different instances, each within range, can sum beyond it.
        Err(_) => Frame::error(format!(
            "ERR the counter's value {value} is outside the 64-bit range"
        )),
    }
}

impl CounterCmd {
    pub fn access(&self) -> Access<'_> {
        Access {
            reads: vec![],
            writes: vec![&self.key[..]],
        }
    }

    pub async fn apply(
        self,
        store: &VersionedStore,
        crdts: &CrdtStore,
        level: Consistency,
    ) -> Frame {
        let delta = self.delta;
        let written = store
            .read_modify_write(&self.key, level, |found| {
                let current = match found {
                    None => 0,
                    Some(f) => match parse_integer(&f.value) {
                        Some(n) => n,
                        None => return (Change::Keep, Err(not_an_integer())),
                    },
                };
                let Some(next) = current.checked_add(delta) else {
                    return (Change::Keep, Err(overflow()));
                };
                let change = Change::Put {
                    value: next.to_string().into_bytes(),
                    // INCR keeps the key's time to live, as in Redis.
                    expires_at_ms: found.and_then(|f| f.expires_at_ms),
                };
                (change, Ok(next))
            })
            .await;
        match written {
            Ok(Ok(n)) => Frame::Integer(n),
            Ok(Err(refusal)) => refusal,
            Err(StoreError::KindConflict {
                holds: CrdtKind::Counter,
            }) => match crdts.counter_add(&self.key, delta, level, None).await {
                Ok(receipt) => value_reply(receipt.value),
                Err(e) => crdt_error(e),
            },
            Err(e) => store_error(e),
        }
    }
}

/// INCRBYFLOAT: the increment as the client sent it.
pub struct FloatCmd {
    key: Bytes,
    increment: Bytes,
}

impl FloatCmd {
    pub fn access(&self) -> Access<'_> {
        Access {
            reads: vec![],
            writes: vec![&self.key[..]],
        }
    }

    pub async fn apply(self, store: &VersionedStore, level: Consistency) -> Frame {
        let written = store
            .read_modify_write(&self.key, level, |found| {
                // An absent key counts as 0, as in Redis.
                let current = match found {
                    None => Some(Parsed::Finite(LongDouble::ZERO)),
                    Some(f) => long_double::parse(&f.value),
                };
                let (Some(current), Some(by)) = (current, long_double::parse(&self.increment))
                else {
                    return (Change::Keep, Err(not_a_float()));
                };
                let Some(sum) = long_double::add(current, by) else {
                    return (
                        Change::Keep,
                        Err(Frame::error("ERR increment would produce NaN or Infinity")),
                    );
                };
                let text = long_double::human(sum);
                let change = Change::Put {
                    value: text.clone().into_bytes(),
                    // Kept, as Redis keeps it (it replicates INCRBYFLOAT as SET ... KEEPTTL).
                    expires_at_ms: found.and_then(|f| f.expires_at_ms),
                };
                (change, Ok(text))
            })
            .await;
        match written {
            Ok(Ok(text)) => Frame::bulk(text),
            Ok(Err(refusal)) => refusal,
            // A PN-counter merges integer deltas only: a fraction has no place in it.
            Err(StoreError::KindConflict {
                holds: CrdtKind::Counter,
            }) => Frame::error(
                "WRONGTYPE the key is a PN-counter, which holds integers only: use INCRBY",
            ),
            Err(e) => store_error(e),
        }
    }
}

fn not_a_float() -> Frame {
    Frame::error("ERR value is not a valid float")
}

/// A string Redis takes as an integer: an optional minus sign and digits, no leading zeros,
/// no sign on zero, no spaces, within 64 bits. INCR's reading of a value, which HINCRBY
/// shares (Redis reads both with `string2ll`).
pub(super) fn parse_integer(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let n: i64 = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

fn not_an_integer() -> Frame {
    Frame::error("ERR value is not an integer or out of range")
}

fn overflow() -> Frame {
    Frame::error("ERR increment or decrement would overflow")
}

#[cfg(test)]
mod tests {
    use super::parse_integer;

    #[test]
    fn integers_are_read_as_redis_reads_them() {
        assert_eq!(parse_integer(b"10"), Some(10));
        assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b"01"[..],
            b"+1",
            b" 1",
            b"1 ",
            b"1.5",
            b"",
            b"-0",
            b"9223372036854775808",
            b"abc",
        ] {
            assert_eq!(parse_integer(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
