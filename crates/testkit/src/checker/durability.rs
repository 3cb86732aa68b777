//! What the `quorum` level promises, checked on a recorded history (pure, no I/O):
//!
//! - **No lost write**: after the faults heal and a sweep runs, every node holds the same
//!   entry for a key, its version is at least that of every acknowledged write, and its value
//!   is the one written with that version (or, for a version no acknowledgement named, the
//!   value of some write whose outcome was unknown).
//! - **No stale read**: a successful read returns a version at least as new as every write
//!   acknowledged before the read was sent (R + W > N, and recovering nodes not counted).
//!
//! Versions are compared as strings: quorumd's versions sort as text in version order.

use std::collections::BTreeMap;

/// One write of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub key: String,
    pub value: Vec<u8>,
    /// The version the service acknowledged (its ETag); `None` when the outcome is unknown.
    pub acked: Option<String>,
    pub invoked: u64,
    /// When the acknowledgement arrived; `None` when the outcome is unknown.
    pub completed: Option<u64>,
}

/// One successful read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub key: String,
    /// The version returned; `None` when the key was reported absent.
    pub version: Option<String>,
    pub invoked: u64,
    pub completed: u64,
}

/// A node's entry for a key after the heal: `None` when it holds nothing.
pub type Entry = Option<(String, Vec<u8>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Nodes disagree after the heal.
    Diverged { key: String, entries: Vec<Entry> },
    /// An acknowledged write is older than what survives, or nothing survives.
    Lost {
        key: String,
        acked: String,
        surviving: Option<String>,
    },
    /// The surviving value is not the one written with its version.
    WrongValue { key: String, version: String },
    /// A read returned something older than a write acknowledged before it began.
    Stale {
        key: String,
        read: Option<String>,
        acked_before: String,
        invoked: u64,
    },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Diverged { key, entries } => {
                let versions: Vec<_> = entries
                    .iter()
                    .map(|e| e.as_ref().map_or("-", |(v, _)| v.as_str()))
                    .collect();
                write!(f, "key {key}: nodes diverge after the heal: {versions:?}")
            }
            Violation::Lost {
                key,
                acked,
                surviving,
            } => write!(
                f,
                "key {key}: acknowledged write {acked} lost (surviving: {})",
                surviving.as_deref().unwrap_or("nothing")
            ),
            Violation::WrongValue { key, version } => {
                write!(f, "key {key}: value at {version} is not the one written")
            }
            Violation::Stale {
                key,
                read,
                acked_before,
                invoked,
            } => write!(
                f,
                "key {key}: read sent at {invoked} returned {} though {acked_before} was acknowledged before",
                read.as_deref().unwrap_or("nothing")
            ),
        }
    }
}

/// Checks the state of every key after the heal. `finals` holds, per key written, each node's
/// entry.
pub fn lost_writes(writes: &[Write], finals: &BTreeMap<String, Vec<Entry>>) -> Vec<Violation> {
    let mut by_key: BTreeMap<&str, Vec<&Write>> = BTreeMap::new();
    for w in writes {
        by_key.entry(&w.key).or_default().push(w);
    }
    let mut found = Vec::new();
    for (key, writes) in by_key {
        let entries = finals.get(key).cloned().unwrap_or_default();
        if entries.windows(2).any(|p| p[0] != p[1]) {
            found.push(Violation::Diverged {
                key: key.to_string(),
                entries,
            });
            continue;
        }
        let surviving = entries.first().cloned().flatten();
        if let Some(newest) = writes.iter().filter_map(|w| w.acked.as_ref()).max() {
            let survived = surviving.as_ref().is_some_and(|(v, _)| v >= newest);
            if !survived {
                found.push(Violation::Lost {
                    key: key.to_string(),
                    acked: newest.clone(),
                    surviving: surviving.as_ref().map(|(v, _)| v.clone()),
                });
                continue;
            }
        }
        if let Some((version, value)) = surviving {
            let matches = match writes.iter().find(|w| w.acked.as_ref() == Some(&version)) {
                Some(w) => w.value == value,
                None => writes.iter().any(|w| w.acked.is_none() && w.value == value),
            };
            if !matches {
                found.push(Violation::WrongValue {
                    key: key.to_string(),
                    version,
                });
            }
        }
    }
    found
}

/// Checks every read against the writes acknowledged before it was sent.
pub fn stale_reads(writes: &[Write], reads: &[Read]) -> Vec<Violation> {
    let mut acked: BTreeMap<&str, Vec<(u64, &String)>> = BTreeMap::new();
    for w in writes {
        if let (Some(v), Some(done)) = (&w.acked, w.completed) {
            acked.entry(&w.key).or_default().push((done, v));
        }
    }
    reads
        .iter()
        .filter_map(|r| {
            let newest_before = acked
                .get(r.key.as_str())?
                .iter()
                .filter(|(done, _)| *done < r.invoked)
                .map(|(_, v)| *v)
                .max()?;
            let fresh = r.version.as_ref().is_some_and(|v| v >= newest_before);
            (!fresh).then(|| Violation::Stale {
                key: r.key.clone(),
                read: r.version.clone(),
                acked_before: newest_before.clone(),
                invoked: r.invoked,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(
        key: &str,
        value: &str,
        acked: Option<&str>,
        invoked: u64,
        done: Option<u64>,
    ) -> Write {
        Write {
            key: key.into(),
            value: value.into(),
            acked: acked.map(Into::into),
            invoked,
            completed: done,
        }
    }

    fn entry(version: &str, value: &str) -> Entry {
        Some((version.into(), value.into()))
    }

    fn finals(key: &str, entries: Vec<Entry>) -> BTreeMap<String, Vec<Entry>> {
        BTreeMap::from([(key.to_string(), entries)])
    }

    #[test]
    fn newest_acknowledged_write_everywhere_passes() {
        let w = [
            write("k", "a", Some("v1"), 0, Some(5)),
            write("k", "b", Some("v2"), 6, Some(9)),
        ];
        let f = finals("k", vec![entry("v2", "b"); 3]);
        assert_eq!(lost_writes(&w, &f), vec![]);
    }

    #[test]
    fn an_unacknowledged_write_may_win() {
        let w = [
            write("k", "a", Some("v1"), 0, Some(5)),
            write("k", "b", None, 6, None),
        ];
        let f = finals("k", vec![entry("v9", "b"); 3]);
        assert_eq!(lost_writes(&w, &f), vec![]);
    }

    #[test]
    fn older_survivor_or_nothing_is_a_lost_write() {
        let w = [
            write("k", "a", Some("v1"), 0, Some(5)),
            write("k", "b", Some("v2"), 6, Some(9)),
        ];
        let lost = lost_writes(&w, &finals("k", vec![entry("v1", "a"); 3]));
        assert!(matches!(&lost[..], [Violation::Lost { acked, .. }] if acked == "v2"));
        let lost = lost_writes(&w, &finals("k", vec![None; 3]));
        assert!(matches!(
            &lost[..],
            [Violation::Lost {
                surviving: None,
                ..
            }]
        ));
        // A key never read back at all counts as nothing surviving.
        assert_eq!(lost_writes(&w, &BTreeMap::new()).len(), 1);
    }

    #[test]
    fn divergence_and_wrong_values_are_reported() {
        let w = [write("k", "a", Some("v1"), 0, Some(5))];
        let d = lost_writes(
            &w,
            &finals("k", vec![entry("v1", "a"), None, entry("v1", "a")]),
        );
        assert!(matches!(&d[..], [Violation::Diverged { .. }]));
        let d = lost_writes(&w, &finals("k", vec![entry("v1", "x"); 3]));
        assert!(matches!(&d[..], [Violation::WrongValue { .. }]));
        // A version nobody acknowledged must carry a value some unknown write sent.
        let d = lost_writes(&w, &finals("k", vec![entry("v7", "zzz"); 3]));
        assert!(matches!(&d[..], [Violation::WrongValue { .. }]));
    }

    #[test]
    fn reads_after_an_acknowledgement_must_see_it() {
        let w = [
            write("k", "a", Some("v1"), 0, Some(10)),
            write("k", "b", Some("v2"), 20, Some(30)),
        ];
        let read = |version: Option<&str>, invoked| Read {
            key: "k".into(),
            version: version.map(Into::into),
            invoked,
            completed: invoked + 1,
        };
        // Concurrent with the second write: either answer is fine.
        assert!(stale_reads(&w, &[read(Some("v1"), 25), read(Some("v2"), 25)]).is_empty());
        // Before anything was acknowledged: even "absent" is fine.
        assert!(stale_reads(&w, &[read(None, 5)]).is_empty());
        // After the second acknowledgement: v1 or absent is stale.
        let stale = stale_reads(
            &w,
            &[read(Some("v1"), 31), read(None, 40), read(Some("v2"), 41)],
        );
        assert_eq!(stale.len(), 2, "{stale:?}");
        assert!(
            stale
                .iter()
                .all(|v| v.to_string().contains("v2 was acknowledged"))
        );
    }
}
