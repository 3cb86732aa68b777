//! Map of last-writer-wins registers: per field, the write with the highest HLC version wins;
//! a delete is a write of "deleted" (a field tombstone), so it orders against concurrent sets.

use super::{Crdt, CrdtKind, DecodeError, Fields, split_field, tagged};
use crate::hlc::{VERSION_LEN, Version};
use std::collections::BTreeMap;

/// One field's register: the version of its last write and the value, `None` when deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub version: Version,
    pub value: Option<Vec<u8>>,
}

impl Register {
    /// `{version}{'=' value | '-'}`: byte order of encodings is version order first, so the
    /// node's script takes the maximum by comparing strings.
    fn encode(&self) -> Vec<u8> {
        let mut out = self.version.encode().into_bytes();
        match &self.value {
            Some(v) => {
                out.push(b'=');
                out.extend_from_slice(v);
            }
            None => out.push(b'-'),
        }
        out
    }

    fn parse(raw: &[u8]) -> Option<Register> {
        if raw.len() < VERSION_LEN + 1 {
            return None;
        }
        let version = std::str::from_utf8(&raw[..VERSION_LEN])
            .ok()?
            .parse()
            .ok()?;
        let value = match (raw[VERSION_LEN], &raw[VERSION_LEN + 1..]) {
            (b'=', v) => Some(v.to_vec()),
            (b'-', []) => None,
            _ => return None,
        };
        Some(Register { version, value })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LwwMap {
    fields: BTreeMap<Vec<u8>, Register>,
}

impl LwwMap {
    /// Live fields and their values.
    pub fn entries(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.fields
            .iter()
            .filter_map(|(k, r)| r.value.clone().map(|v| (k.clone(), v)))
            .collect()
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        self.fields.get(field)?.value.as_deref()
    }

    pub fn register(&self, field: &[u8]) -> Option<&Register> {
        self.fields.get(field)
    }

    /// Writes `value` (`None`: deletes) to `field` at `version`, if newer than what is there.
    pub fn set(&mut self, field: Vec<u8>, version: Version, value: Option<Vec<u8>>) {
        self.put(field, Register { version, value });
    }

    fn put(&mut self, field: Vec<u8>, reg: Register) {
        match self.fields.get_mut(&field) {
            Some(cur) if cur.encode() >= reg.encode() => {}
            Some(cur) => *cur = reg,
            None => {
                self.fields.insert(field, reg);
            }
        }
    }
}

impl Crdt for LwwMap {
    const KIND: CrdtKind = CrdtKind::Map;

    fn merge(&mut self, other: &Self) {
        for (f, r) in &other.fields {
            self.put(f.clone(), r.clone());
        }
    }

    fn to_fields(&self) -> Fields {
        // Prefixing keeps byte order: already sorted.
        self.fields
            .iter()
            .map(|(f, r)| (tagged(b'f', f), r.encode()))
            .collect()
    }

    fn from_fields<'a, I>(fields: I) -> Result<Self, DecodeError>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut m = LwwMap::default();
        for (f, v) in fields {
            let bad = || DecodeError::new(CrdtKind::Map, f);
            match split_field(f) {
                Some((b'f', name)) => m.put(name.to_vec(), Register::parse(v).ok_or_else(bad)?),
                _ => return Err(bad()),
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ms: u64) -> Version {
        Version::first_in_ms(ms, 1)
    }

    #[test]
    fn newest_write_wins_and_deletes_order_with_sets() {
        let mut a = LwwMap::default();
        a.set(b"f".to_vec(), v(2), Some(b"new".to_vec()));
        a.set(b"f".to_vec(), v(1), Some(b"old".to_vec()));
        assert_eq!(a.get(b"f"), Some(&b"new"[..]));
        a.set(b"f".to_vec(), v(3), None);
        assert_eq!(a.get(b"f"), None);
        let mut stale = LwwMap::default();
        stale.set(b"f".to_vec(), v(2), Some(b"new".to_vec()));
        a.merge(&stale);
        assert_eq!(
            a.get(b"f"),
            None,
            "a stale set does not undo a newer delete"
        );
    }

    #[test]
    fn fields_round_trip() {
        let mut a = LwwMap::default();
        a.set(b"x".to_vec(), v(2), Some(vec![]));
        a.set(b"y".to_vec(), v(3), None);
        a.set(vec![0, 1], v(4), Some(b"a=b".to_vec()));
        let fields = a.to_fields();
        let back = LwwMap::from_fields(fields.iter().map(|(f, v)| (&f[..], &v[..]))).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.entries().len(), 2);
        assert!(LwwMap::from_fields([(&b"f:x"[..], &b"short"[..])]).is_err());
        assert!(LwwMap::from_fields([(&b"g:x"[..], &b""[..])]).is_err());
    }
}
