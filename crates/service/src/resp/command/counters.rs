//! INCR, INCRBY, DECR, DECRBY on the PN-counter (docs/CRDTS.md): concurrent increments through
//! any instances are never lost. A key holding a plain string (written by SET) is not a
//! counter: INCR on it answers WRONGTYPE instead of parsing the string, because turning a
//! last-writer-wins value into a counter cannot be done safely while other instances may be
//! writing it.

use super::{Access, Command, Flag, Spec, crdt_error, data, int_arg};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::quorum::Consistency;
use quorumd_replication::crdt_store::CrdtStore;

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

    pub async fn apply(self, crdts: &CrdtStore, level: Consistency) -> Frame {
        match crdts.counter_add(&self.key, self.delta, level, None).await {
            Ok(receipt) => value_reply(receipt.value),
            Err(e) => crdt_error(e),
        }
    }
}
