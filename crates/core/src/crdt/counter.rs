//! PN-counter: per actor, the total of its increments (P) and of its decrements (N). Merge takes
//! the per-actor maximum of each, so an increment counted once is never counted twice and never
//! lost, whatever order states meet in.

use super::{Crdt, CrdtKind, DecodeError, Fields, split_field, tagged};
use std::collections::BTreeMap;
use xxhash_rust::xxh3::xxh3_128;

/// Who contributed to a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Actor {
    /// A quorumd process (its writer id): its totals grow with every increment it makes.
    Writer(u64),
    /// One client request (the hash of its idempotency key): a single, fixed increment, so a
    /// retry of the request writes the same entry again instead of adding twice.
    Request(u128),
}

impl Actor {
    /// The actor of a request carrying `idempotency_key`.
    pub fn request(idempotency_key: &[u8]) -> Actor {
        Actor::Request(xxh3_128(idempotency_key))
    }

    fn encode(self) -> String {
        match self {
            Actor::Writer(w) => format!("w{w:016x}"),
            Actor::Request(r) => format!("r{r:032x}"),
        }
    }

    fn parse(raw: &[u8]) -> Option<Actor> {
        fn hex(s: &[u8], len: usize) -> Option<&str> {
            let valid = s.len() == len && s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            valid.then(|| std::str::from_utf8(s).ok()).flatten()
        }
        match raw.split_first()? {
            (b'w', rest) => u64::from_str_radix(hex(rest, 16)?, 16)
                .ok()
                .map(Actor::Writer),
            (b'r', rest) => u128::from_str_radix(hex(rest, 32)?, 16)
                .ok()
                .map(Actor::Request),
            _ => None,
        }
    }
}

/// Totals are stored as 20 zero-padded decimal digits, so the node's script compares them as
/// strings (Lua numbers are doubles and could not hold them).
const TOTAL_WIDTH: usize = 20;

fn encode_total(t: u64) -> Vec<u8> {
    format!("{t:0TOTAL_WIDTH$}").into_bytes()
}

fn parse_total(raw: &[u8]) -> Option<u64> {
    if raw.len() != TOTAL_WIDTH || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    #[error("increment or decrement would overflow: the value is {value} and the delta {delta}")]
    Overflow { value: i128, delta: i64 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PnCounter {
    p: BTreeMap<Actor, u64>,
    n: BTreeMap<Actor, u64>,
}

impl PnCounter {
    /// Sum of all increments minus all decrements. Wider than i64: increments by several
    /// actors that each stayed in range can together leave it.
    pub fn value(&self) -> i128 {
        let sum = |m: &BTreeMap<Actor, u64>| m.values().map(|&v| i128::from(v)).sum::<i128>();
        sum(&self.p) - sum(&self.n)
    }

    /// An actor's (increments, decrements) totals.
    pub fn entry(&self, actor: Actor) -> (u64, u64) {
        (
            self.p.get(&actor).copied().unwrap_or(0),
            self.n.get(&actor).copied().unwrap_or(0),
        )
    }

    /// Sets an actor's totals (they only grow: lower ones are ignored, as a merge would).
    pub fn set_entry(&mut self, actor: Actor, (p, n): (u64, u64)) {
        for (map, t) in [(&mut self.p, p), (&mut self.n, n)] {
            if t > 0 {
                let e = map.entry(actor).or_insert(0);
                *e = (*e).max(t);
            }
        }
    }

    /// Adds `delta` to `actor`'s totals, refusing a result outside i64 (Redis's INCRBY rule).
    pub fn increment(&mut self, actor: Actor, delta: i64) -> Result<(), CounterError> {
        let overflow = CounterError::Overflow {
            value: self.value(),
            delta,
        };
        let next = self.value() + i128::from(delta);
        if next > i128::from(i64::MAX) || next < i128::from(i64::MIN) {
            return Err(overflow);
        }
        let (map, amount) = if delta >= 0 {
            (&mut self.p, delta.unsigned_abs())
        } else {
            (&mut self.n, delta.unsigned_abs())
        };
        let total = map.entry(actor).or_insert(0);
        *total = total.checked_add(amount).ok_or(overflow)?;
        Ok(())
    }

    /// Number of actors that ever contributed (the state grows with it).
    pub fn actors(&self) -> usize {
        self.p
            .keys()
            .chain(self.n.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    }
}

impl Crdt for PnCounter {
    const KIND: CrdtKind = CrdtKind::Counter;

    fn merge(&mut self, other: &Self) {
        for (mine, theirs) in [(&mut self.p, &other.p), (&mut self.n, &other.n)] {
            for (actor, &t) in theirs {
                let e = mine.entry(*actor).or_insert(0);
                *e = (*e).max(t);
            }
        }
    }

    fn to_fields(&self) -> Fields {
        // 'n' sorts before 'p', and encoded actors sort like actors: already canonical order.
        let mut out = Fields::new();
        for (tag, map) in [(b'n', &self.n), (b'p', &self.p)] {
            for (actor, &t) in map {
                out.push((tagged(tag, actor.encode().as_bytes()), encode_total(t)));
            }
        }
        out.sort();
        out
    }

    fn from_fields<'a, I>(fields: I) -> Result<Self, DecodeError>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut c = PnCounter::default();
        for (f, v) in fields {
            let bad = || DecodeError::new(CrdtKind::Counter, f);
            let (tag, rest) = split_field(f).ok_or_else(bad)?;
            let actor = Actor::parse(rest).ok_or_else(bad)?;
            let total = parse_total(v).ok_or_else(bad)?;
            let map = match tag {
                b'p' => &mut c.p,
                b'n' => &mut c.n,
                _ => return Err(bad()),
            };
            let e = map.entry(actor).or_insert(0);
            *e = (*e).max(total);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_are_fixed_width() {
        let mut c = PnCounter::default();
        c.increment(Actor::Writer(7), 5).unwrap();
        c.increment(Actor::Writer(7), -2).unwrap();
        c.increment(Actor::request(b"req-1"), 40).unwrap();
        let fields = c.to_fields();
        assert!(fields.iter().all(|(_, v)| v.len() == TOTAL_WIDTH));
        let back = PnCounter::from_fields(fields.iter().map(|(f, v)| (&f[..], &v[..]))).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.value(), 43);
    }

    #[test]
    fn overflow_is_refused_like_redis() {
        let mut c = PnCounter::default();
        c.increment(Actor::Writer(1), i64::MAX).unwrap();
        assert!(matches!(
            c.increment(Actor::Writer(2), 1),
            Err(CounterError::Overflow { .. })
        ));
        c.increment(Actor::Writer(2), i64::MIN).unwrap();
        assert_eq!(c.value(), -1);
        c.increment(Actor::Writer(3), -i64::MAX).unwrap();
        assert!(c.increment(Actor::Writer(2), -1).is_err());
        assert_eq!(c.value(), i128::from(i64::MIN));
    }

    #[test]
    fn malformed_fields_are_rejected() {
        for (f, v) in [
            (&b"p:w0000000000000001"[..], &b"1"[..]),
            (b"x:w0000000000000001", b"00000000000000000001"),
            (b"p:wzz00000000000001", b"00000000000000000001"),
            (b"p:w0000000000000001", b"99999999999999999999"),
            (b"p", b"00000000000000000001"),
        ] {
            assert!(PnCounter::from_fields([(f, v)]).is_err(), "{f:?}");
        }
    }
}
