//! Conflict-free replicated data types: PN-counter, add-wins OR-set, map of last-writer-wins
//! registers. Pure: no I/O.
//!
//! Every state is a set of `(field, value)` pairs, the same pairs that a node keeps in the
//! CRDT's state hash (see docs/CRDTS.md). The merge of two states works field by field, so a
//! node can merge an incoming state into its own with a short script, and a state's canonical
//! encoding is its fields in byte order.

mod counter;
mod lwwmap;
mod orset;

#[cfg(test)]
mod laws;

pub use counter::{Actor, CounterError, PnCounter};
pub use lwwmap::{LwwMap, Register};
pub use orset::OrSet;

use xxhash_rust::xxh3::xxh3_64;

/// A state as field/value pairs, sorted by field: the canonical form.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Which CRDT a key holds. The code is what the key's metadata entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrdtKind {
    Counter,
    Set,
    Map,
}

impl CrdtKind {
    pub const ALL: [CrdtKind; 3] = [CrdtKind::Counter, CrdtKind::Set, CrdtKind::Map];

    pub fn code(self) -> char {
        match self {
            CrdtKind::Counter => 'C',
            CrdtKind::Set => 'S',
            CrdtKind::Map => 'M',
        }
    }

    pub fn from_code(c: char) -> Option<CrdtKind> {
        Self::ALL.into_iter().find(|k| k.code() == c)
    }

    pub fn name(self) -> &'static str {
        match self {
            CrdtKind::Counter => "counter",
            CrdtKind::Set => "set",
            CrdtKind::Map => "map",
        }
    }
}

impl std::fmt::Display for CrdtKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A field that does not belong to the state it was read into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {kind} state field {field:?}")]
pub struct DecodeError {
    pub kind: CrdtKind,
    pub field: String,
}

impl DecodeError {
    fn new(kind: CrdtKind, field: &[u8]) -> Self {
        DecodeError {
            kind,
            field: String::from_utf8_lossy(&field[..field.len().min(80)]).into_owned(),
        }
    }
}

/// The operations every CRDT here has.
pub trait Crdt: Default + Clone + PartialEq + std::fmt::Debug {
    const KIND: CrdtKind;

    /// Joins `other` into `self`: commutative, associative and idempotent.
    fn merge(&mut self, other: &Self);

    /// The state as sorted field/value pairs.
    fn to_fields(&self) -> Fields;

    /// Reads a state from field/value pairs in any order. The pairs of several replicas may be
    /// concatenated: the result is their merge.
    fn from_fields<'a, I>(fields: I) -> Result<Self, DecodeError>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>;

    /// Deterministic bytes: equal states give equal bytes.
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(Self::KIND.code() as u8);
        for (f, v) in self.to_fields() {
            for part in [&f, &v] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part);
            }
        }
        out
    }

    /// Hash of the canonical bytes.
    fn state_hash(&self) -> u64 {
        xxh3_64(&self.canonical_bytes())
    }
}

/// A state of any kind, for code that handles whatever a key holds (the sweep).
#[derive(Debug, Clone, PartialEq)]
pub enum AnyCrdt {
    Counter(PnCounter),
    Set(OrSet),
    Map(LwwMap),
}

impl AnyCrdt {
    pub fn empty(kind: CrdtKind) -> AnyCrdt {
        match kind {
            CrdtKind::Counter => AnyCrdt::Counter(PnCounter::default()),
            CrdtKind::Set => AnyCrdt::Set(OrSet::default()),
            CrdtKind::Map => AnyCrdt::Map(LwwMap::default()),
        }
    }

    pub fn kind(&self) -> CrdtKind {
        match self {
            AnyCrdt::Counter(_) => CrdtKind::Counter,
            AnyCrdt::Set(_) => CrdtKind::Set,
            AnyCrdt::Map(_) => CrdtKind::Map,
        }
    }

    pub fn from_fields<'a, I>(kind: CrdtKind, fields: I) -> Result<AnyCrdt, DecodeError>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        Ok(match kind {
            CrdtKind::Counter => AnyCrdt::Counter(PnCounter::from_fields(fields)?),
            CrdtKind::Set => AnyCrdt::Set(OrSet::from_fields(fields)?),
            CrdtKind::Map => AnyCrdt::Map(LwwMap::from_fields(fields)?),
        })
    }

    /// Merges `other` in; `false` (and no change) when the kinds differ.
    pub fn merge(&mut self, other: &AnyCrdt) -> bool {
        match (self, other) {
            (AnyCrdt::Counter(a), AnyCrdt::Counter(b)) => a.merge(b),
            (AnyCrdt::Set(a), AnyCrdt::Set(b)) => a.merge(b),
            (AnyCrdt::Map(a), AnyCrdt::Map(b)) => a.merge(b),
            _ => return false,
        }
        true
    }

    pub fn to_fields(&self) -> Fields {
        match self {
            AnyCrdt::Counter(c) => c.to_fields(),
            AnyCrdt::Set(s) => s.to_fields(),
            AnyCrdt::Map(m) => m.to_fields(),
        }
    }

    pub fn state_hash(&self) -> u64 {
        match self {
            AnyCrdt::Counter(c) => c.state_hash(),
            AnyCrdt::Set(s) => s.state_hash(),
            AnyCrdt::Map(m) => m.state_hash(),
        }
    }
}

/// Splits `field` at its two-byte tag (`p:`, `a:`, ...): (tag letter, rest).
fn split_field(field: &[u8]) -> Option<(u8, &[u8])> {
    match field {
        [tag, b':', rest @ ..] => Some((*tag, rest)),
        _ => None,
    }
}

fn tagged(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(rest.len() + 2);
    f.push(tag);
    f.push(b':');
    f.extend_from_slice(rest);
    f
}
