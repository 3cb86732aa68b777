//! Add-wins observed-remove set. Every add carries a unique tag (the HLC version of the write,
//! which includes the writer id); a remove records the tags it observed for the member. A member
//! is present while it has a tag that is not removed, so an add concurrent with a remove (its tag
//! unseen by the remove) wins, and a stale replica's old tags cannot bring back a removed member:
//! their removal travels with the state.

use super::{Crdt, CrdtKind, DecodeError, Fields, split_field, tagged};
use crate::hlc::Version;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrSet {
    /// Live tags → member. Removed tags are dropped from here.
    adds: BTreeMap<Version, Vec<u8>>,
    /// Tags removed so far (kept forever: they are what stops a stale add).
    removed: BTreeSet<Version>,
}

impl OrSet {
    pub fn members(&self) -> BTreeSet<Vec<u8>> {
        self.adds.values().cloned().collect()
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.adds.values().any(|m| m == member)
    }

    /// The state that adds `member` under the fresh tag `tag`.
    pub fn add_delta(members: impl IntoIterator<Item = (Version, Vec<u8>)>) -> OrSet {
        OrSet {
            adds: members.into_iter().collect(),
            removed: BTreeSet::new(),
        }
    }

    /// The state that removes `members` as observed here: only the tags seen now.
    pub fn remove_delta(&self, members: &BTreeSet<Vec<u8>>) -> OrSet {
        OrSet {
            adds: BTreeMap::new(),
            removed: self
                .adds
                .iter()
                .filter(|(_, m)| members.contains(*m))
                .map(|(t, _)| *t)
                .collect(),
        }
    }

    /// Number of removed tags kept (the state's garbage, which is never collected).
    pub fn removed_tags(&self) -> usize {
        self.removed.len()
    }

    fn add_tag(&mut self, tag: Version, member: &[u8]) {
        if self.removed.contains(&tag) {
            return;
        }
        // A tag names one add, so two members under one tag only come from forged input;
        // keeping the greater keeps the merge deterministic.
        match self.adds.get_mut(&tag) {
            Some(m) if m.as_slice() >= member => {}
            Some(m) => *m = member.to_vec(),
            None => {
                self.adds.insert(tag, member.to_vec());
            }
        }
    }

    fn remove_tag(&mut self, tag: Version) {
        self.adds.remove(&tag);
        self.removed.insert(tag);
    }
}

impl Crdt for OrSet {
    const KIND: CrdtKind = CrdtKind::Set;

    fn merge(&mut self, other: &Self) {
        for t in &other.removed {
            self.remove_tag(*t);
        }
        for (t, m) in &other.adds {
            self.add_tag(*t, m);
        }
    }

    fn to_fields(&self) -> Fields {
        let mut out: Fields = self
            .adds
            .iter()
            .map(|(t, m)| (tagged(b'a', t.encode().as_bytes()), m.clone()))
            .chain(
                self.removed
                    .iter()
                    .map(|t| (tagged(b'r', t.encode().as_bytes()), Vec::new())),
            )
            .collect();
        out.sort();
        out
    }

    fn from_fields<'a, I>(fields: I) -> Result<Self, DecodeError>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut s = OrSet::default();
        let mut adds = Vec::new();
        for (f, v) in fields {
            let bad = || DecodeError::new(CrdtKind::Set, f);
            let (tag, rest) = split_field(f).ok_or_else(bad)?;
            let version: Version = std::str::from_utf8(rest)
                .ok()
                .and_then(|r| r.parse().ok())
                .ok_or_else(bad)?;
            match tag {
                b'a' => adds.push((version, v)),
                b'r' if v.is_empty() => s.remove_tag(version),
                _ => return Err(bad()),
            }
        }
        for (t, m) in adds {
            s.add_tag(t, m);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(ms: u64, writer: u64) -> Version {
        Version::first_in_ms(ms, writer)
    }

    #[test]
    fn concurrent_add_wins_over_remove() {
        let base = OrSet::add_delta([(tag(1, 1), b"x".to_vec())]);
        let mut a = base.clone();
        let removal = a.remove_delta(&[b"x".to_vec()].into());
        a.merge(&removal);
        assert!(!a.contains(b"x"));
        let mut b = base.clone();
        b.merge(&OrSet::add_delta([(tag(2, 2), b"x".to_vec())]));
        a.merge(&b);
        assert!(a.contains(b"x"), "the add the remove did not see survives");
        assert_eq!(a.removed_tags(), 1);
    }

    #[test]
    fn fields_round_trip() {
        let mut s = OrSet::add_delta([
            (tag(1, 1), b"x".to_vec()),
            (tag(2, 1), b"y".to_vec()),
            (tag(3, 2), vec![0, 255]),
        ]);
        let r = s.remove_delta(&[b"y".to_vec()].into());
        s.merge(&r);
        let fields = s.to_fields();
        let back = OrSet::from_fields(fields.iter().map(|(f, v)| (&f[..], &v[..]))).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.members(), [b"x".to_vec(), vec![0, 255]].into());
        assert!(OrSet::from_fields([(&b"a:zz"[..], &b"m"[..])]).is_err());
        assert!(OrSet::from_fields([(&b"q:1"[..], &b""[..])]).is_err());
    }
}
