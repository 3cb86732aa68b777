//! SORT and SORT_RO: the list, set or sorted set under the key read through the quorum like
//! LRANGE or SMEMBERS; the strings and hash fields its BY and GET patterns name read at the
//! request's level, all at once (strings through the per-node read batches, as MGET; hashes
//! concurrently, as SINTER reads its sets); the sorting itself is pure (`sort_order`); STORE
//! writes the result as a list through the versioned write path, as the STORE forms of the
//! set and sorted-set commands do.

use super::sort_order::{self, Key, Lookup, SortArgs, SortError};
use super::{
    Access, Command, Flag, Spec, data, is_wrong_type, store_error, store_replacing, wrong_type,
};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::crdt::CrdtKind;
use quorumd_core::quorum::Consistency;
use quorumd_replication::crdt_store::CrdtStore;
use quorumd_replication::store::{
    StoreError, TypedChange, TypedFound, TypedValue, TypedWanted, VersionedStore,
};
use std::collections::HashMap;

pub static SPECS: &[Spec] = &[
    Spec::keyed("sort", -2, &[Flag::Write, Flag::DenyOom], (1, 1, 1), |a| {
        parse(a, false)
    }),
    Spec::keyed("sort_ro", -2, &[Flag::ReadOnly], (1, 1, 1), |a| {
        parse(a, true)
    }),
];

fn parse(a: &[Bytes], readonly: bool) -> Result<Command, Frame> {
    // Redis answers a syntax error before it looks the key up.
    let args = sort_order::parse(&a[2..], readonly).map_err(Frame::from)?;
    data(SortCmd {
        key: a[1].clone(),
        args,
    })
}

pub struct SortCmd {
    key: Bytes,
    args: SortArgs,
}

/// What the key to sort holds, and so how a `BY nosort` keeps its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A list or a sorted set: kept in its order (reversed by DESC).
    Ordered,
    /// A set: kept in the nodes' order, DESC ignored, as Redis keeps a set's own order.
    Unordered,
}

/// The value a pattern read for one element (`None`: nil).
type Looked = HashMap<Lookup, Option<Vec<u8>>>;

impl SortCmd {
    pub fn access(&self) -> Access<'_> {
        // The keys the patterns name are known only once the elements are read; they are read
        // at the request's level like the key itself.
        Access {
            reads: vec![&self.key],
            writes: self.args.store.iter().map(|k| &k[..]).collect(),
        }
    }

    /// Whether BY or GET name other keys (a pattern with `*`).
    pub fn reads_patterns(&self) -> bool {
        let args = &self.args;
        args.by.as_deref().is_some_and(sort_order::by_sorts)
            || args.gets.iter().any(|g| sort_order::by_sorts(g))
    }

    pub async fn apply(
        self,
        store: &VersionedStore,
        crdts: &CrdtStore,
        level: Consistency,
    ) -> Frame {
        match self.run(store, crdts, level).await {
            Ok(reply) | Err(reply) => reply,
        }
    }

    async fn run(
        self,
        store: &VersionedStore,
        crdts: &CrdtStore,
        level: Consistency,
    ) -> Result<Frame, Frame> {
        let (elements, shape) = read_elements(store, crdts, &self.key, level).await?;
        let args = &self.args;
        let mut sorting = args.by.as_deref().is_none_or(sort_order::by_sorts);
        let (mut alpha, mut by) = (args.alpha, args.by.clone());
        if !sorting && shape == Shape::Unordered && args.store.is_some() {
            // Redis sorts a set it stores even under `BY nosort`, so the result is the same on
            // every replica: by the members' bytes.
            (sorting, alpha, by) = (true, true, None);
        }
        let window = sort_order::window(elements.len(), args.limit);
        let chosen: Vec<Vec<u8>> = if sorting {
            let by_values = match &by {
                Some(pattern) => {
                    let lookups: Vec<Lookup> = elements
                        .iter()
                        .map(|e| sort_order::lookup(pattern, e))
                        .collect();
                    Some(read_lookups(store, level, lookups).await?)
                }
                None => None,
            };
            let mut keyed = Vec::with_capacity(elements.len());
            let mut convertible = true;
            for e in elements {
                let read = match (&by, &by_values) {
                    (Some(p), Some(v)) => looked_up(v, &sort_order::lookup(p, &e), &e),
                    _ => None,
                };
                let key = match (alpha, read) {
                    (true, Some(v)) => Key::Text(v),
                    (true, None) => Key::Itself,
                    // A BY key that is missing scores 0, without a conversion error.
                    (false, Some(None)) => Key::Score(0.0),
                    (false, Some(Some(v))) => score(&v, &mut convertible),
                    (false, None) => score(&e, &mut convertible),
                };
                keyed.push((e, key));
            }
            if !convertible {
                return Err(Frame::error(
                    "ERR One or more scores can't be converted into double",
                ));
            }
            sort_order::sort(&mut keyed, args.desc, args.store.is_some());
            keyed
                .into_iter()
                .skip(window.start)
                .take(window.len())
                .map(|(e, _)| e)
                .collect()
        } else {
            let mut elements = elements;
            if shape == Shape::Ordered && args.desc {
                elements.reverse();
            }
            elements
                .into_iter()
                .skip(window.start)
                .take(window.len())
                .collect()
        };
        let out: Vec<Option<Vec<u8>>> = if args.gets.is_empty() {
            chosen.into_iter().map(Some).collect()
        } else {
            let mut lookups = Vec::with_capacity(chosen.len() * args.gets.len());
            for e in &chosen {
                for g in &args.gets {
                    lookups.push(sort_order::lookup(g, e));
                }
            }
            let n = lookups.len();
            let values = read_lookups(store, level, lookups).await?;
            let mut out = Vec::with_capacity(n);
            for e in &chosen {
                for g in &args.gets {
                    out.push(looked_up(&values, &sort_order::lookup(g, e), e).flatten());
                }
            }
            out
        };
        match &args.store {
            None => Ok(Frame::Array(
                out.into_iter()
                    .map(|v| v.map_or(Frame::Null, Frame::bulk))
                    .collect(),
            )),
            // A nil stored is an empty string, as in Redis.
            Some(dst) => Ok(store_list(
                store,
                dst,
                out.into_iter().map(Option::unwrap_or_default).collect(),
                level,
            )
            .await),
        }
    }
}

fn score(text: &[u8], convertible: &mut bool) -> Key {
    match sort_order::score(text) {
        Some(s) => Key::Score(s),
        None => {
            *convertible = false;
            Key::Score(0.0)
        }
    }
}

/// The value a lookup read: `Some(None)` for nil.
fn looked_up(values: &Looked, lookup: &Lookup, element: &[u8]) -> Option<Option<Vec<u8>>> {
    match lookup {
        Lookup::Element => Some(Some(element.to_vec())),
        Lookup::Nothing => Some(None),
        other => Some(values.get(other).cloned().flatten()),
    }
}

/// The elements of the list, set or sorted set under `key` (none when it is absent), in its
/// order: a list head first, a sorted set by score, a set in the nodes' order.
async fn read_elements(
    store: &VersionedStore,
    crdts: &CrdtStore,
    key: &[u8],
    level: Consistency,
) -> Result<(Vec<Vec<u8>>, Shape), Frame> {
    match store.get_typed(key, level, TypedWanted::Full).await {
        Ok(None) => Ok((Vec::new(), Shape::Ordered)),
        Ok(Some(TypedFound { value, .. })) => match value {
            TypedValue::List(items) => Ok((items, Shape::Ordered)),
            TypedValue::SortedSet(members) => Ok((
                members.into_iter().map(|(m, _)| m).collect(),
                Shape::Ordered,
            )),
            TypedValue::Set(members) => Ok((members, Shape::Unordered)),
            _ => Err(wrong_type()),
        },
        // An OR-set made by the HTTP API sorts as a set.
        Err(StoreError::KindConflict {
            holds: CrdtKind::Set,
        }) => match crdts.set_members(key, level).await {
            Ok(members) => Ok((members.into_iter().collect(), Shape::Unordered)),
            Err(e) => Err(super::crdt_error(e)),
        },
        Err(e) => Err(store_error(e)),
    }
}

/// Reads what `lookups` name, each key once, all at once. A key of another type, a CRDT key
/// or a reserved key reads as nil (Redis's rule for a key of another type); a store failure
/// fails the command.
async fn read_lookups(
    store: &VersionedStore,
    level: Consistency,
    lookups: Vec<Lookup>,
) -> Result<Looked, Frame> {
    let mut strings = std::collections::BTreeSet::new();
    let mut hashes = std::collections::BTreeSet::new();
    let mut wanted = std::collections::BTreeSet::new();
    for l in lookups {
        match &l {
            Lookup::Key(k) => {
                strings.insert(k.clone());
            }
            Lookup::Field(k, _) => {
                hashes.insert(k.clone());
            }
            Lookup::Element | Lookup::Nothing => continue,
        }
        wanted.insert(l);
    }
    let string_reads = futures::future::join_all(strings.iter().map(|k| store.get(k, level)));
    let hash_reads = futures::future::join_all(
        hashes
            .iter()
            .map(|k| store.get_typed(k, level, TypedWanted::Full)),
    );
    let (string_reads, hash_reads) = futures::future::join(string_reads, hash_reads).await;
    let mut string_values = HashMap::new();
    for (k, r) in strings.into_iter().zip(string_reads) {
        let v = match r {
            Ok(found) => found.map(|f| f.value),
            Err(e) if unreadable(&e) => None,
            Err(e) => return Err(store_error(e)),
        };
        string_values.insert(k, v);
    }
    let mut hash_values = HashMap::new();
    for (k, r) in hashes.into_iter().zip(hash_reads) {
        let fields = match r {
            Ok(Some(TypedFound {
                value: TypedValue::Hash(fields),
                ..
            })) => fields,
            Ok(_) => Vec::new(),
            Err(e) if unreadable(&e) => Vec::new(),
            Err(e) => return Err(store_error(e)),
        };
        hash_values.insert(k, fields);
    }
    Ok(wanted
        .into_iter()
        .map(|l| {
            let v = match &l {
                Lookup::Key(k) => string_values.get(k).cloned().flatten(),
                Lookup::Field(k, f) => hash_values
                    .get(k)
                    .and_then(|fields| fields.iter().find(|(name, _)| name == f))
                    .map(|(_, v)| v.clone()),
                _ => None,
            };
            (l, v)
        })
        .collect())
}

/// A failure that means the key holds nothing a pattern can read.
fn unreadable(e: &StoreError) -> bool {
    is_wrong_type(e) || matches!(e, StoreError::ReservedKey { .. })
}

/// STORE: the result replaces whatever `dst` held, of any type, as a list without a time to
/// live; an empty result deletes it. Answers the count.
async fn store_list(
    store: &VersionedStore,
    dst: &[u8],
    items: Vec<Vec<u8>>,
    level: Consistency,
) -> Frame {
    let n = items.len();
    let value = TypedChange::PutList {
        items,
        expires_at_ms: None,
    };
    store_replacing(store, dst, level, n, value).await
}

impl From<SortError> for Frame {
    fn from(e: SortError) -> Frame {
        Frame::error(e.to_string())
    }
}
