//! What the CRDT workload's history allows the converged state to be. Pure: a history and a
//! state in, the violations out.
//!
//! An operation's outcome is acknowledged (it took effect), or unknown (it may have taken
//! effect, or not). Its effect — a counter total written, a remove's read of the tags it
//! removes, a map write's version — happened after it was invoked and, when the client got a
//! reply (an acknowledgement or an error), before that reply. Without a reply, at any time
//! after the invocation.

use crate::crdt::workload::{CounterOp, CrdtHistory, MapOp, SetOp, Timing};
use quorumd::crdt::{Crdt, LwwMap, OrSet};
use std::collections::{BTreeMap, BTreeSet};

/// A CRDT's state as a node holds it: its state hash's fields.
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// The converged states of the workload's four keys.
pub struct Finals {
    pub plain: State,
    pub keyed: State,
    pub set: State,
    pub map: State,
}

pub fn check(history: &CrdtHistory, finals: &Finals) -> Vec<String> {
    let mut found: Vec<String> = history
        .unexpected
        .iter()
        .map(|u| format!("unexpected reply: {u}"))
        .collect();
    found.extend(check_counter(
        "plain counter",
        &history.plain,
        &finals.plain,
    ));
    found.extend(check_counter(
        "keyed counter",
        &history.keyed,
        &finals.keyed,
    ));
    found.extend(check_set(&history.set, &finals.set));
    found.extend(check_map(&history.map, &finals.map));
    found
}

/// Sums of the increments (P) and decrements (N) of a counter state, and how many request
/// actors (idempotency keys) it counts.
fn counter_totals(state: &State) -> Result<(u128, u128, usize), String> {
    let (mut p, mut n, mut requests) = (0u128, 0u128, 0usize);
    for (field, value) in state {
        let total: u128 = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("counter total {value:?} is not a number"))?;
        match field.get(..2) {
            Some(b"p:") => p += total,
            Some(b"n:") => n += total,
            _ => return Err(format!("unknown counter field {field:?}")),
        }
        if field.get(2) == Some(&b'r') && total > 0 {
            requests += 1;
        }
    }
    Ok((p, n, requests))
}

/// Each half of the PN-counter holds every acknowledged delta of its sign and at most the
/// unknown ones besides; a keyed counter counts each idempotency key at most once, and the
/// acknowledged ones exactly once.
pub fn check_counter(name: &str, ops: &[CounterOp], state: &State) -> Vec<String> {
    let (p, n, requests) = match counter_totals(state) {
        Ok(t) => t,
        Err(e) => return vec![format!("{name}: {e}")],
    };
    let sum = |acked: bool, positive: bool| -> u128 {
        ops.iter()
            .filter(|o| o.timing.acked == acked && (o.delta > 0) == positive)
            .map(|o| u128::from(o.delta.unsigned_abs()))
            .sum()
    };
    let mut found = Vec::new();
    for (half, got, positive) in [("increments", p, true), ("decrements", n, false)] {
        let (low, unknown) = (sum(true, positive), sum(false, positive));
        if got < low || got > low + unknown {
            found.push(format!(
                "{name}: {half} total {got}, allowed [{low}, {}] (acknowledged {low}, unknown outcome {unknown})",
                low + unknown
            ));
        }
    }
    let keyed: Vec<&CounterOp> = ops.iter().filter(|o| o.key.is_some()).collect();
    if !keyed.is_empty() {
        let acked = keyed.iter().filter(|o| o.timing.acked).count();
        if requests < acked || requests > keyed.len() {
            found.push(format!(
                "{name}: {requests} idempotency keys counted, allowed [{acked}, {}]",
                keyed.len()
            ));
        }
    }
    found
}

/// Add-wins OR-set, per member:
/// - present is allowed iff some add of it (acknowledged or unknown) may survive. An add is
///   certainly removed only when it was acknowledged before an acknowledged remove of the member
///   was invoked: that remove's quorum read saw its tag (R + W > N).
/// - absent is allowed iff every acknowledged add may have been removed: some remove
///   (acknowledged or unknown) could have read its tag, i.e. did not finish before the add was
///   invoked. Unknown adds may not have landed.
pub fn check_set(ops: &[SetOp], state: &State) -> Vec<String> {
    let set = match OrSet::from_fields(state.iter().map(|(f, v)| (&f[..], &v[..]))) {
        Ok(s) => s,
        Err(e) => return vec![format!("set: {e}")],
    };
    let present: BTreeSet<String> = set
        .members()
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m).into_owned())
        .collect();
    let members: BTreeSet<&str> = ops
        .iter()
        .map(|o| o.member.as_str())
        .chain(present.iter().map(String::as_str))
        .collect();
    let mut found = Vec::new();
    for m in members {
        let adds: Vec<&Timing> = ops
            .iter()
            .filter(|o| o.member == m && o.add)
            .map(|o| &o.timing)
            .collect();
        let removes: Vec<&Timing> = ops
            .iter()
            .filter(|o| o.member == m && !o.add)
            .map(|o| &o.timing)
            .collect();
        let certainly_removed =
            |a: &Timing| a.acked && removes.iter().any(|r| r.acked && a.acked_before(r.invoked));
        let may_be_removed = |a: &Timing| {
            removes
                .iter()
                .any(|r| r.decided.is_none_or(|d| d >= a.invoked))
        };
        let may_be_present = adds.iter().any(|a| !certainly_removed(a));
        let may_be_absent = adds.iter().filter(|a| a.acked).all(|a| may_be_removed(a));
        if present.contains(m) && !may_be_present {
            found.push(format!(
                "set: {m} is present, but every add of it was acknowledged before an acknowledged remove began ({} adds)",
                adds.len()
            ));
        }
        if !present.contains(m) && !may_be_absent {
            found.push(format!(
                "set: {m} is absent, but an acknowledged add of it was invoked after every remove of it ended"
            ));
        }
    }
    found
}

/// Map of LWW registers, per field: the final register is the write (acknowledged or unknown)
/// with the highest version. Versions are hybrid logical clocks over this machine's wall clock,
/// so a write invoked in a later millisecond than another was acknowledged has the higher
/// version; within one millisecond the order is open. So the final register may be any write
/// that no acknowledged write was certainly newer than; a field no write landed on (none
/// acknowledged) may also be absent.
pub fn check_map(ops: &[MapOp], state: &State) -> Vec<String> {
    let map = match LwwMap::from_fields(state.iter().map(|(f, v)| (&f[..], &v[..]))) {
        Ok(m) => m,
        Err(e) => return vec![format!("map: {e}")],
    };
    let live: BTreeMap<String, String> = map
        .entries()
        .into_iter()
        .map(|(f, v)| {
            (
                String::from_utf8_lossy(&f).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    let fields: BTreeSet<&str> = ops
        .iter()
        .map(|o| o.field.as_str())
        .chain(live.keys().map(String::as_str))
        .collect();
    let ms = |us: u64| us / 1000;
    let mut found = Vec::new();
    for f in fields {
        let writes: Vec<&MapOp> = ops.iter().filter(|o| o.field == f).collect();
        let superseded = |x: &MapOp| {
            x.timing.decided.is_some_and(|d| {
                writes
                    .iter()
                    .any(|y| y.timing.acked && ms(y.timing.invoked) > ms(d))
            })
        };
        let winners: Vec<&&MapOp> = writes.iter().filter(|x| !superseded(x)).collect();
        let got = live.get(f);
        let allowed = match got {
            Some(v) => winners.iter().any(|x| x.value.as_ref() == Some(v)),
            None => {
                winners.iter().any(|x| x.value.is_none()) || writes.iter().all(|x| !x.timing.acked)
            }
        };
        if !allowed {
            let options: Vec<String> = winners
                .iter()
                .map(|x| x.value.clone().unwrap_or_else(|| "<deleted>".into()))
                .collect();
            found.push(format!(
                "map: field {f} is {}, allowed only one of {options:?}",
                got.map_or("<absent>".into(), |v| format!("{v:?}"))
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    // The model is exercised by the suite and its negative controls; the cases below pin the
    // boundary rules with hand-made timings.
    use super::*;

    fn t(invoked: u64, decided: Option<u64>, acked: bool) -> Timing {
        Timing {
            invoked,
            decided,
            acked,
        }
    }

    fn set_state(members: &[&str]) -> State {
        let clock = quorumd::hlc::Hlc::new(1);
        let s = OrSet::add_delta(
            members
                .iter()
                .map(|m| (clock.tick(), m.as_bytes().to_vec())),
        );
        s.to_fields().into_iter().collect()
    }

    #[test]
    fn set_rules() {
        let add = |timing| SetOp {
            member: "m".into(),
            add: true,
            timing,
        };
        let remove = |timing| SetOp {
            member: "m".into(),
            add: false,
            timing,
        };
        // Added, then removed after the add was acknowledged: must be gone.
        let ops = [add(t(0, Some(10), true)), remove(t(20, Some(30), true))];
        assert!(check_set(&ops, &set_state(&[])).is_empty());
        assert_eq!(check_set(&ops, &set_state(&["m"])).len(), 1);
        // Concurrent remove: either way.
        let ops = [add(t(0, Some(10), true)), remove(t(5, Some(30), true))];
        assert!(check_set(&ops, &set_state(&[])).is_empty());
        assert!(check_set(&ops, &set_state(&["m"])).is_empty());
        // A remove that ended before the add began cannot remove it.
        let ops = [remove(t(0, Some(5), true)), add(t(10, Some(20), true))];
        assert_eq!(check_set(&ops, &set_state(&[])).len(), 1);
        // An unknown add may or may not have landed.
        let ops = [add(t(0, None, false))];
        assert!(check_set(&ops, &set_state(&[])).is_empty());
        assert!(check_set(&ops, &set_state(&["m"])).is_empty());
    }

    fn map_state(field: &str, value: Option<&str>) -> State {
        let clock = quorumd::hlc::Hlc::new(1);
        let mut m = LwwMap::default();
        m.set(
            field.as_bytes().to_vec(),
            clock.tick(),
            value.map(|v| v.as_bytes().to_vec()),
        );
        m.to_fields().into_iter().collect()
    }

    #[test]
    fn map_rules() {
        let write = |value: Option<&str>, timing| MapOp {
            field: "f".into(),
            value: value.map(str::to_string),
            timing,
        };
        // "b" invoked in a later millisecond than "a" was acknowledged: "b" has the newer version.
        let ops = [
            write(Some("a"), t(0, Some(1_000), true)),
            write(Some("b"), t(3_000, Some(4_000), true)),
        ];
        assert!(check_map(&ops, &map_state("f", Some("b"))).is_empty());
        assert_eq!(check_map(&ops, &map_state("f", Some("a"))).len(), 1);
        assert_eq!(check_map(&ops, &map_state("f", None)).len(), 1);
        // Within one millisecond the order is open.
        let ops = [
            write(Some("a"), t(0, Some(1_500), true)),
            write(Some("b"), t(1_900, Some(4_000), true)),
        ];
        assert!(check_map(&ops, &map_state("f", Some("a"))).is_empty());
        // A delete that may have won leaves the field absent; a write without a reply may win.
        let ops = [
            write(Some("a"), t(0, Some(1_000), true)),
            write(None, t(3_000, Some(4_000), false)),
            write(Some("c"), t(500, None, false)),
        ];
        assert!(check_map(&ops, &map_state("f", None)).is_empty());
        assert!(check_map(&ops, &map_state("f", Some("a"))).is_empty());
        assert!(check_map(&ops, &map_state("f", Some("c"))).is_empty());
        assert_eq!(check_map(&ops, &map_state("f", Some("zzz"))).len(), 1);
    }

    #[test]
    fn counter_rules() {
        let inc = |delta, acked| CounterOp {
            delta,
            key: None,
            timing: t(0, Some(1), acked),
        };
        let state = |p: u64, n: u64| -> State {
            [("p:wx", p), ("n:wx", n)]
                .into_iter()
                .map(|(f, v)| (f.as_bytes().to_vec(), format!("{v:020}").into_bytes()))
                .collect()
        };
        let ops = [inc(5, true), inc(-2, true), inc(3, false)];
        assert!(check_counter("c", &ops, &state(5, 2)).is_empty());
        assert!(check_counter("c", &ops, &state(8, 2)).is_empty());
        assert_eq!(check_counter("c", &ops, &state(4, 2)).len(), 1);
        assert_eq!(check_counter("c", &ops, &state(10, 2)).len(), 1);
        assert_eq!(check_counter("c", &ops, &state(5, 4)).len(), 1);
    }
}
