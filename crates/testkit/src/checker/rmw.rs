//! Read-modify-write commands of the Redis protocol (`INCR`/`INCRBY`, `ZINCRBY`, `APPEND`,
//! `RPUSH`/`LPOP`, `MULTI`/`EXEC`, `XADD`/`XREADGROUP`): a checker of what the clients saw against the final state
//! (pure, no I/O).
//!
//! An operation is **acknowledged** when its reply came and was not an error; otherwise its
//! outcome is **unknown**: a refused compare-and-set may have landed on a minority and win
//! later by version, and a request without a reply may have been applied. So an unknown
//! operation may count once or not at all, an acknowledged one exactly once.

use std::collections::{BTreeMap, BTreeSet};

/// `INCRBY key delta` (or `ZINCRBY key delta member`, with `member`): `reply` is the new value
/// the command answered, when acknowledged. Deltas are positive, so acknowledged replies of one
/// counter are distinct under exactly-once (two equal replies mean one update was lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incr {
    pub key: String,
    /// The sorted-set member for `ZINCRBY`; `None` for a string counter.
    pub member: Option<String>,
    pub delta: i64,
    pub reply: Option<i64>,
}

/// `APPEND key token`, with a token no other append uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    pub key: String,
    pub token: String,
    pub acked: bool,
}

/// `RPUSH key item`, with an item no other push uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub key: String,
    pub item: String,
    pub acked: bool,
}

/// `LPOP key`, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pop {
    /// The item it popped.
    Item(String),
    /// Acknowledged with a null: the list was empty.
    Empty,
    /// No reply, or an error: it may have removed an item nobody saw.
    Unknown,
}

/// `MULTI; INCR counter; RPUSH log item; EXEC`. Acknowledged when `EXEC` answered both
/// commands' replies without an error; `reply` is then the INCR's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tx {
    pub counter: String,
    pub log: String,
    pub item: String,
    pub reply: Option<i64>,
}

/// Everything the clients did.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub incrs: Vec<Incr>,
    pub appends: Vec<Append>,
    pub pushes: Vec<Push>,
    /// Per list key, every pop of it.
    pub pops: BTreeMap<String, Vec<Pop>>,
    pub txs: Vec<Tx>,
    /// `XADD key * i item`, each with an item no other add uses.
    pub stream_adds: Vec<Push>,
    /// Per stream key, every `XREADGROUP ... COUNT 1 STREAMS key >` of its one group: the item
    /// it delivered, a null (nothing new), or no reply.
    pub deliveries: BTreeMap<String, Vec<Pop>>,
}

impl History {
    pub fn operations(&self) -> usize {
        self.incrs.len()
            + self.appends.len()
            + self.pushes.len()
            + self.pops.values().map(Vec::len).sum::<usize>()
            + self.txs.len()
            + self.stream_adds.len()
            + self.deliveries.values().map(Vec::len).sum::<usize>()
    }
}

/// The state after the heal, read once everything converged.
#[derive(Debug, Default, Clone)]
pub struct Finals {
    /// Per (key, member): a string counter's value (`member` `None`) or a member's score. A
    /// key or member missing counts as 0.
    pub counters: BTreeMap<(String, Option<String>), i64>,
    /// Per appended key, its string.
    pub strings: BTreeMap<String, String>,
    /// Per list key (pushed, popped or a transaction log), its elements.
    pub lists: BTreeMap<String, Vec<String>>,
    /// Per stream key, its items in ID order and those its group has pending (delivered and
    /// never acknowledged: the workload sends no `XACK`), in ID order.
    pub streams: BTreeMap<String, StreamFinal>,
}

/// A stream's final state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamFinal {
    pub items: Vec<String>,
    pub pending: Vec<String>,
}

/// Appended tokens are framed so that the final string splits back into them.
pub fn framed(token: &str) -> String {
    format!("[{token}]")
}

/// A guarantee broken on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key {}: {}", self.key, self.what)
    }
}

/// Every violation: the exactly-once rules of each command family, per key.
pub fn check(h: &History, finals: &Finals) -> Vec<Violation> {
    let mut found = Vec::new();
    counters(h, finals, &mut found);
    appends(h, finals, &mut found);
    lists(h, finals, &mut found);
    transactions(h, finals, &mut found);
    streams(h, finals, &mut found);
    found
}

fn counters(h: &History, finals: &Finals, found: &mut Vec<Violation>) {
    // A transaction's INCR is a counter increment like any other.
    let txs = h.txs.iter().map(|t| Incr {
        key: t.counter.clone(),
        member: None,
        delta: 1,
        reply: t.reply,
    });
    let mut by: BTreeMap<(String, Option<String>), Vec<Incr>> = BTreeMap::new();
    for i in h.incrs.iter().cloned().chain(txs) {
        by.entry((i.key.clone(), i.member.clone()))
            .or_default()
            .push(i);
    }
    for ((key, member), incrs) in by {
        let name = match &member {
            Some(m) => format!("{key} member {m}"),
            None => key.clone(),
        };
        let acked: i64 = incrs
            .iter()
            .filter(|i| i.reply.is_some())
            .map(|i| i.delta)
            .sum();
        let attempted: i64 = incrs.iter().map(|i| i.delta).sum();
        let last = finals.counters.get(&(key, member)).copied().unwrap_or(0);
        if last < acked {
            found.push(Violation {
                key: name.clone(),
                what: format!(
                    "final {last} below the {acked} acknowledged: {} of an acknowledged increment lost",
                    acked - last
                ),
            });
        }
        if last > attempted {
            found.push(Violation {
                key: name.clone(),
                what: format!(
                    "final {last} above the {attempted} attempted: an increment counted twice"
                ),
            });
        }
        let mut replies: BTreeMap<i64, usize> = BTreeMap::new();
        for r in incrs.iter().filter_map(|i| i.reply) {
            *replies.entry(r).or_default() += 1;
        }
        for (value, n) in replies {
            if n > 1 {
                found.push(Violation {
                    key: name.clone(),
                    what: format!(
                        "{n} acknowledged increments answered {value}: they updated the same value, one was lost"
                    ),
                });
            }
            if value > last {
                found.push(Violation {
                    key: name.clone(),
                    what: format!(
                        "an increment answered {value}, above the final {last}: acknowledged and later undone"
                    ),
                });
            }
        }
    }
}

fn appends(h: &History, finals: &Finals, found: &mut Vec<Violation>) {
    let mut by: BTreeMap<&str, Vec<&Append>> = BTreeMap::new();
    for a in &h.appends {
        by.entry(&a.key).or_default().push(a);
    }
    for (key, appends) in by {
        let text = finals.strings.get(key).map(String::as_str).unwrap_or("");
        let (tokens, rest) = split_tokens(text);
        if !rest.is_empty() {
            found.push(Violation {
                key: key.into(),
                what: format!("text outside any appended token: {rest:?}"),
            });
        }
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &tokens {
            *count.entry(t).or_default() += 1;
        }
        let attempted: BTreeSet<&str> = appends.iter().map(|a| a.token.as_str()).collect();
        for a in &appends {
            let n = count.get(a.token.as_str()).copied().unwrap_or(0);
            if a.acked && n == 0 {
                found.push(Violation {
                    key: key.into(),
                    what: format!("acknowledged append {:?} lost", a.token),
                });
            }
            if n > 1 {
                found.push(Violation {
                    key: key.into(),
                    what: format!("append {:?} present {n} times", a.token),
                });
            }
        }
        for t in count.keys().filter(|t| !attempted.contains(*t)) {
            found.push(Violation {
                key: key.into(),
                what: format!("token {t:?} that no client appended"),
            });
        }
    }
}

/// The framed tokens of `text`, and whatever did not parse as one.
fn split_tokens(text: &str) -> (Vec<&str>, String) {
    let (mut tokens, mut rest) = (Vec::new(), String::new());
    let mut s = text;
    while !s.is_empty() {
        match (s.strip_prefix('['), s.find(']')) {
            (Some(inner), Some(end)) if !inner[..end - 1].contains('[') => {
                tokens.push(&inner[..end - 1]);
                s = &s[end + 1..];
            }
            _ => {
                let mut chars = s.chars();
                rest.push(chars.next().expect("not empty"));
                s = chars.as_str();
            }
        }
    }
    (tokens, rest)
}

fn lists(h: &History, finals: &Finals, found: &mut Vec<Violation>) {
    let mut by: BTreeMap<&str, Vec<&Push>> = BTreeMap::new();
    for p in &h.pushes {
        by.entry(&p.key).or_default().push(p);
    }
    let keys: BTreeSet<&str> = by
        .keys()
        .copied()
        .chain(h.pops.keys().map(String::as_str))
        .collect();
    for key in keys {
        let pushes = by.get(key).cloned().unwrap_or_default();
        let pops = h.pops.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let remaining = finals.lists.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for p in pops {
            if let Pop::Item(item) = p {
                seen.entry(item).or_default().push("popped");
            }
        }
        for item in remaining {
            seen.entry(item).or_default().push("left in the list");
        }
        for (item, places) in &seen {
            if places.len() > 1 {
                found.push(Violation {
                    key: key.into(),
                    what: format!(
                        "item {item:?} seen {} times: {}",
                        places.len(),
                        places.join(", ")
                    ),
                });
            }
        }
        let attempted: BTreeSet<&str> = pushes.iter().map(|p| p.item.as_str()).collect();
        for item in seen.keys().filter(|i| !attempted.contains(*i)) {
            found.push(Violation {
                key: key.into(),
                what: format!("item {item:?} that no client pushed"),
            });
        }
        // A pop without a reply may have taken an item nobody saw: that many acknowledged
        // pushes may be missing, no more.
        let unknown_pops = pops.iter().filter(|p| **p == Pop::Unknown).count();
        let missing: Vec<&str> = pushes
            .iter()
            .filter(|p| p.acked && !seen.contains_key(p.item.as_str()))
            .map(|p| p.item.as_str())
            .collect();
        if missing.len() > unknown_pops {
            found.push(Violation {
                key: key.into(),
                what: format!(
                    "{} acknowledged push(es) neither popped nor left, with {unknown_pops} pop(s) of unknown outcome: {missing:?}",
                    missing.len()
                ),
            });
        }
    }
}

fn transactions(h: &History, finals: &Finals, found: &mut Vec<Violation>) {
    // Transaction logs are only pushed to, never popped: every acknowledged EXEC's item is
    // there exactly once, any other at most once (its counter side is in `counters`).
    for t in &h.txs {
        let log = finals.lists.get(&t.log).map(Vec::as_slice).unwrap_or(&[]);
        let n = log.iter().filter(|i| **i == t.item).count();
        if t.reply.is_some() && n != 1 {
            found.push(Violation {
                key: t.log.clone(),
                what: format!(
                    "acknowledged EXEC's push {:?} present {n} times (INCR {} in the same EXEC)",
                    t.item, t.counter
                ),
            });
        } else if n > 1 {
            found.push(Violation {
                key: t.log.clone(),
                what: format!("EXEC's push {:?} present {n} times", t.item),
            });
        }
    }
    let attempted: BTreeSet<(&str, &str)> = h
        .txs
        .iter()
        .map(|t| (t.log.as_str(), t.item.as_str()))
        .collect();
    let logs: BTreeSet<&str> = h.txs.iter().map(|t| t.log.as_str()).collect();
    for log in logs {
        for item in finals.lists.get(log).into_iter().flatten() {
            if !attempted.contains(&(log, item.as_str())) {
                found.push(Violation {
                    key: log.into(),
                    what: format!("item {item:?} that no EXEC pushed"),
                });
            }
        }
    }
}

/// A stream and its consumer group: every acknowledged add is there once, no entry is
/// delivered twice, and the group delivered a prefix of the stream (`XADD *` appends under the
/// key's ballot, after every ID the group may have passed), every entry of which went to a
/// delivery that was heard, or to one without a reply.
fn streams(h: &History, finals: &Finals, found: &mut Vec<Violation>) {
    let keys: BTreeSet<&str> = h
        .stream_adds
        .iter()
        .map(|a| a.key.as_str())
        .chain(h.deliveries.keys().map(String::as_str))
        .collect();
    let empty = StreamFinal::default();
    for key in keys {
        let mut flag = |what: String| {
            found.push(Violation {
                key: key.into(),
                what,
            })
        };
        let fin = finals.streams.get(key).unwrap_or(&empty);
        let adds: Vec<&Push> = h.stream_adds.iter().filter(|a| a.key == key).collect();
        let mut times: BTreeMap<&str, usize> = BTreeMap::new();
        for item in &fin.items {
            *times.entry(item).or_default() += 1;
        }
        for (item, n) in &times {
            if *n > 1 {
                flag(format!("entry {item:?} present {n} times"));
            }
            if !adds.iter().any(|a| a.item == *item) {
                flag(format!("entry {item:?} that no client added"));
            }
        }
        for a in adds
            .iter()
            .filter(|a| a.acked && !times.contains_key(a.item.as_str()))
        {
            flag(format!("acknowledged XADD {:?} lost", a.item));
        }
        let delivered = h.deliveries.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let mut heard: BTreeMap<&str, usize> = BTreeMap::new();
        for d in delivered {
            if let Pop::Item(item) = d {
                *heard.entry(item).or_default() += 1;
            }
        }
        for (item, n) in &heard {
            if *n > 1 {
                flag(format!("entry {item:?} delivered {n} times"));
            }
            if !fin.pending.iter().any(|p| p == item) {
                flag(format!("delivered entry {item:?} not pending in the group"));
            }
        }
        if !fin.items.starts_with(&fin.pending) {
            flag(format!(
                "the group's pending entries {:?} are not the stream's first entries {:?}",
                fin.pending, fin.items
            ));
        }
        let unknown = delivered.iter().filter(|d| **d == Pop::Unknown).count();
        let unheard: Vec<&String> = fin
            .pending
            .iter()
            .filter(|p| !heard.contains_key(p.as_str()))
            .collect();
        if unheard.len() > unknown {
            flag(format!(
                "{} pending entries no client heard delivered, with {unknown} XREADGROUP(s) of unknown outcome: {unheard:?}",
                unheard.len()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(key: &str, delta: i64, reply: Option<i64>) -> Incr {
        Incr {
            key: key.into(),
            member: None,
            delta,
            reply,
        }
    }

    fn push(item: &str, acked: bool) -> Push {
        Push {
            key: "l".into(),
            item: item.into(),
            acked,
        }
    }

    fn append(token: &str, acked: bool) -> Append {
        Append {
            key: "s".into(),
            token: token.into(),
            acked,
        }
    }

    fn stream_add(item: &str, acked: bool) -> Push {
        Push {
            key: "xs".into(),
            item: item.into(),
            acked,
        }
    }

    fn tx(item: &str, reply: Option<i64>) -> Tx {
        Tx {
            counter: "txa".into(),
            log: "txlog".into(),
            item: item.into(),
            reply,
        }
    }

    /// A history where every rule holds: acknowledged and unknown operations of each family.
    fn clean() -> (History, Finals) {
        let h = History {
            incrs: vec![
                incr("c", 1, Some(1)),
                incr("c", 5, Some(6)),
                incr("c", 2, None), // unknown, and it landed
                incr("c", 3, None), // unknown, and it did not
                Incr {
                    key: "z".into(),
                    member: Some("m".into()),
                    delta: 2,
                    reply: Some(2),
                },
            ],
            appends: vec![append("a1", true), append("a2", false), append("a3", false)],
            pushes: vec![
                push("p1", true),
                push("p2", true),
                push("p3", false),
                push("p4", true),
            ],
            pops: BTreeMap::from([(
                "l".to_string(),
                vec![Pop::Item("p1".into()), Pop::Unknown, Pop::Empty],
            )]),
            txs: vec![tx("t1", Some(1)), tx("t2", None)],
            stream_adds: vec![
                stream_add("x1", true),
                stream_add("x2", true),
                stream_add("x3", false), // unknown, and it landed
                stream_add("x4", false), // unknown, and it did not
                stream_add("x5", true),
            ],
            // x1 heard; x2 delivered to the call without a reply; x3 and x5 not delivered yet.
            deliveries: BTreeMap::from([(
                "xs".to_string(),
                vec![Pop::Item("x1".into()), Pop::Unknown, Pop::Empty],
            )]),
        };
        let finals = Finals {
            counters: BTreeMap::from([
                (("c".into(), None), 8),
                (("z".into(), Some("m".into())), 2),
                (("txa".into(), None), 1),
            ]),
            strings: BTreeMap::from([("s".into(), format!("{}{}", framed("a1"), framed("a2")))]),
            // p2 was taken by the pop of unknown outcome; p3 (unknown) never landed.
            lists: BTreeMap::from([
                ("l".into(), vec!["p4".into()]),
                ("txlog".into(), vec!["t1".into()]),
            ]),
            streams: BTreeMap::from([(
                "xs".into(),
                StreamFinal {
                    items: ["x1", "x2", "x3", "x5"].map(String::from).to_vec(),
                    pending: vec!["x1".into(), "x2".into()],
                },
            )]),
        };
        (h, finals)
    }

    fn expect(found: &[Violation], needle: &str) {
        assert!(
            found.iter().any(|v| v.to_string().contains(needle)),
            "{needle:?} not reported: {found:?}"
        );
    }

    #[test]
    fn a_clean_history_passes() {
        let (h, f) = clean();
        assert_eq!(check(&h, &f), vec![]);
        assert_eq!(h.operations(), 5 + 3 + 4 + 3 + 2 + 5 + 3);
    }

    #[test]
    fn a_lost_acknowledged_increment_is_caught() {
        let (h, mut f) = clean();
        f.counters.insert(("c".into(), None), 5);
        expect(&check(&h, &f), "below the 6 acknowledged");
    }

    #[test]
    fn an_increment_counted_twice_is_caught() {
        let (h, mut f) = clean();
        f.counters.insert(("c".into(), None), 12);
        expect(&check(&h, &f), "counted twice");
    }

    #[test]
    fn two_increments_answering_the_same_value_are_caught() {
        // Two writers read 0 and both wrote their own +1: the total may still look in range
        // when an unknown increment landed too.
        let (mut h, f) = clean();
        h.incrs = vec![
            incr("c", 1, Some(1)),
            incr("c", 1, Some(1)),
            incr("c", 6, None),
        ];
        expect(&check(&h, &f), "2 acknowledged increments answered 1");
    }

    #[test]
    fn a_lost_sorted_set_increment_is_caught() {
        let (h, mut f) = clean();
        f.counters.remove(&("z".into(), Some("m".into())));
        expect(
            &check(&h, &f),
            "z member m: final 0 below the 2 acknowledged",
        );
    }

    #[test]
    fn append_violations_are_caught() {
        let (h, mut f) = clean();
        f.strings.insert("s".into(), framed("a2"));
        expect(&check(&h, &f), "acknowledged append \"a1\" lost");
        f.strings.insert(
            "s".into(),
            format!("{}{}{}", framed("a1"), framed("a3"), framed("a3")),
        );
        expect(&check(&h, &f), "append \"a3\" present 2 times");
        f.strings.insert("s".into(), format!("{}[a", framed("a1")));
        expect(&check(&h, &f), "text outside any appended token");
        f.strings
            .insert("s".into(), format!("{}{}", framed("a1"), framed("zz")));
        expect(&check(&h, &f), "token \"zz\" that no client appended");
    }

    #[test]
    fn an_item_popped_twice_is_caught() {
        let (mut h, f) = clean();
        h.pops.get_mut("l").unwrap().push(Pop::Item("p1".into()));
        expect(&check(&h, &f), "item \"p1\" seen 2 times");
        let (mut h, f) = clean();
        h.pops.get_mut("l").unwrap().push(Pop::Item("p4".into()));
        expect(&check(&h, &f), "popped, left in the list");
    }

    #[test]
    fn a_lost_acknowledged_push_is_caught() {
        // Without the pop of unknown outcome, p2's absence cannot be explained.
        let (mut h, f) = clean();
        h.pops.get_mut("l").unwrap().retain(|p| *p != Pop::Unknown);
        expect(
            &check(&h, &f),
            "1 acknowledged push(es) neither popped nor left",
        );
    }

    #[test]
    fn a_half_applied_acknowledged_transaction_is_caught() {
        let (h, mut f) = clean();
        f.lists.insert("txlog".into(), vec![]);
        expect(
            &check(&h, &f),
            "acknowledged EXEC's push \"t1\" present 0 times",
        );
        let (h, mut f) = clean();
        f.counters.insert(("txa".into(), None), 0);
        expect(&check(&h, &f), "key txa: final 0 below the 1 acknowledged");
        let (h, mut f) = clean();
        f.lists
            .insert("txlog".into(), vec!["t1".into(), "t2".into(), "t2".into()]);
        expect(&check(&h, &f), "EXEC's push \"t2\" present 2 times");
    }

    #[test]
    fn stream_violations_are_caught() {
        let with = |change: &dyn Fn(&mut StreamFinal)| {
            let (h, mut f) = clean();
            change(f.streams.get_mut("xs").unwrap());
            check(&h, &f)
        };
        expect(
            &with(&|s| s.items.retain(|i| i != "x5")),
            "acknowledged XADD \"x5\" lost",
        );
        expect(
            &with(&|s| s.items.push("x5".into())),
            "entry \"x5\" present 2 times",
        );
        expect(
            &with(&|s| s.items.push("zz".into())),
            "that no client added",
        );
        // An entry the group skipped: pending is no longer the stream's head.
        expect(
            &with(&|s| s.pending = vec!["x1".into(), "x3".into()]),
            "are not the stream's first entries",
        );
        // Delivered and heard, but the group forgot it.
        expect(
            &with(&|s| s.pending = vec![]),
            "delivered entry \"x1\" not pending",
        );
        // Two entries handed out with only one reply missing.
        expect(
            &with(&|s| s.pending = ["x1", "x2", "x3"].map(String::from).to_vec()),
            "2 pending entries no client heard delivered, with 1 XREADGROUP(s) of unknown outcome",
        );
        let (mut h, f) = clean();
        h.deliveries
            .get_mut("xs")
            .unwrap()
            .push(Pop::Item("x1".into()));
        expect(&check(&h, &f), "entry \"x1\" delivered 2 times");
    }
}
