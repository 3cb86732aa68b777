//! Typed values on the versioned store: lists and sorted sets (issue 19), read whole and
//! written whole.
//!
//! A typed read runs `read_typed.lua` on each node, which answers the key's metadata and its
//! type, with the whole value of a string, a list or a sorted set where asked. The newest version among a
//! read quorum wins, as for strings. A typed write is a versioned write like any other: a list
//! is sent as a `DUMP` payload built in Rust (`quorumd_core::dump`) and stored by the write
//! script's `RESTORE … REPLACE ABSTTL` mode, with `Content::list` of the new value in its
//! metadata, so digests, hints, own-write markers and the scrub treat it as any versioned
//! value; a sorted set likewise, with `Content::sorted_set`. A command changes a list by a
//! read-modify-write of the whole list under a ballot
//! (`ballot.rs`, retried), so its cost is O(list size) per command.

use super::ballot::{Accept, Pending, live_value, retry_worthy, rewrite};
use super::repair::{self, ReadAnswer, Repair};
use super::rmw::{MAX_ATTEMPTS, back_off, lock_key};
use super::{Body, StoreError, VersionedStore, WriteReceipt, crdt_kind_among};
use crate::fanout::Gathered;
use quorumd_core::content::Content;
use quorumd_core::dump::{self, Collection};
use quorumd_core::hlc::Version;
use quorumd_core::meta::{EntryKind, Meta};
use quorumd_core::quorum::Consistency;
use quorumd_core::stream::Stream;
use quorumd_node::calls::store::{KeyLocation, NodeTypedRead};
use quorumd_node::pool::Node;
use std::sync::Arc;

pub use quorumd_node::calls::store::{TypedValue, TypedWanted};

/// A live value as a typed read found it.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedFound {
    pub value: TypedValue,
    pub version: Version,
    pub expires_at_ms: Option<u64>,
}

/// What a typed read-modify-write does with the key, decided from the value it read.
#[derive(Debug, Clone, PartialEq)]
pub enum TypedChange {
    Keep,
    /// Store this list, head first. An empty list deletes the key, as Redis deletes a list
    /// that becomes empty.
    PutList {
        items: Vec<Vec<u8>>,
        expires_at_ms: Option<u64>,
    },
    /// Store this sorted set (members with scores, in any order; no NaN). An empty one
    /// deletes the key, as Redis deletes an emptied sorted set.
    PutSortedSet {
        members: Vec<(Vec<u8>, f64)>,
        expires_at_ms: Option<u64>,
    },
    /// Store this hash (fields in the order to keep). An empty one deletes the key, as Redis
    /// deletes a hash whose last field is removed.
    PutHash {
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        expires_at_ms: Option<u64>,
    },
    /// Store this set. An empty one deletes the key, as Redis deletes an emptied set.
    PutSet {
        members: Vec<Vec<u8>>,
        expires_at_ms: Option<u64>,
    },
    /// Store this stream. An empty one stays, as Redis keeps a stream whose entries are all
    /// deleted.
    PutStream {
        stream: Stream,
        expires_at_ms: Option<u64>,
    },
    /// Store this string (EXPIRE or PERSIST of a key that turned out to hold a string).
    PutString {
        value: Vec<u8>,
        expires_at_ms: Option<u64>,
    },
    Delete,
}

impl TypedChange {
    /// The change that stores `value` again with `expires_at_ms` (a move, a copy, a new TTL);
    /// `None` for a value whose contents were not read.
    pub fn put(value: &TypedValue, expires_at_ms: Option<u64>) -> Option<TypedChange> {
        Some(match value {
            TypedValue::String(value) => TypedChange::PutString {
                value: value.clone(),
                expires_at_ms,
            },
            TypedValue::List(items) => TypedChange::PutList {
                items: items.clone(),
                expires_at_ms,
            },
            TypedValue::SortedSet(members) => TypedChange::PutSortedSet {
                members: members.clone(),
                expires_at_ms,
            },
            TypedValue::Hash(fields) => TypedChange::PutHash {
                fields: fields.clone(),
                expires_at_ms,
            },
            TypedValue::Set(members) => TypedChange::PutSet {
                members: members.clone(),
                expires_at_ms,
            },
            TypedValue::Stream(stream) => TypedChange::PutStream {
                stream: stream.clone(),
                expires_at_ms,
            },
            TypedValue::Only(_) => return None,
        })
    }
}

/// The two writes `transfer_typed` makes, and what the command answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer<R> {
    pub source: TypedChange,
    pub destination: TypedChange,
    pub result: R,
}

/// The newest answer among a typed read's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypedNewest {
    pub meta: Meta,
    pub value: Option<TypedValue>,
}

/// Picks the newest entry: highest version, then (among equal versions) an answer whose value
/// is the one its metadata records, then one with a value. A value without metadata counts as
/// version zero, below every versioned write.
pub(crate) fn newest_typed<'a>(
    key: &[u8],
    reads: impl IntoIterator<Item = &'a NodeTypedRead>,
) -> Option<TypedNewest> {
    let mut best: Option<((Version, bool, bool), TypedNewest)> = None;
    for r in reads {
        let meta = match (&r.meta, &r.value) {
            (Some(m), _) => m.clone(),
            (None, Some(v)) => {
                let content = v.content().unwrap_or(Content::Absent);
                Meta::new(key, Version::ZERO, EntryKind::Value, None, content)
            }
            (None, None) => continue,
        };
        let value = r.value.clone().filter(|_| meta.kind == EntryKind::Value);
        // A value read by type only cannot be checked, and is taken as intact.
        let intact = value
            .as_ref()
            .is_some_and(|v| v.matches(&meta.content).unwrap_or(true));
        let rank = (meta.version, intact, value.is_some());
        if best.as_ref().is_none_or(|(b, _)| rank > *b) {
            best = Some((rank, TypedNewest { meta, value }));
        }
    }
    best.map(|(_, n)| n)
}

/// The bytes that store `value` on a node, and whether they are a `DUMP` payload; `None` for a
/// value whose contents were not read.
fn stored_form(value: &TypedValue) -> Option<(Vec<u8>, bool)> {
    match value {
        TypedValue::String(v) => Some((v.clone(), false)),
        TypedValue::List(items) => dump::payload(&Collection::List(items))
            .ok()
            .map(|p| (p, true)),
        TypedValue::SortedSet(members) => dump::payload(&Collection::SortedSet(members))
            .ok()
            .map(|p| (p, true)),
        TypedValue::Hash(fields) => dump::payload(&Collection::Hash(fields))
            .ok()
            .map(|p| (p, true)),
        TypedValue::Set(members) => dump::payload(&Collection::Set(members))
            .ok()
            .map(|p| (p, true)),
        TypedValue::Stream(stream) => Some((stream.dump_payload(), true)),
        TypedValue::Only(_) => None,
    }
}

/// How the winner of a typed read is stored again (tombstones as an empty string); `None`
/// when its value was not read.
fn stored_entry(winner: &TypedNewest) -> Option<(Vec<u8>, bool)> {
    match (&winner.meta.kind, &winner.value) {
        (EntryKind::Value, Some(v)) => stored_form(v),
        (EntryKind::Tombstone, _) => Some((Vec::new(), false)),
        _ => None,
    }
}

impl VersionedStore {
    /// Reads `key` with its type: the whole string or list with `TypedWanted::Full`, the type
    /// alone with `TypeOnly`. `Ok(None)` when it is absent, deleted or expired; a CRDT key is
    /// `KindConflict`, as for `get`.
    #[tracing::instrument(level = "debug", name = "store.get_typed", skip_all, fields(level = %level))]
    pub async fn get_typed(
        &self,
        key: &[u8],
        level: Consistency,
        wanted: TypedWanted,
    ) -> Result<Option<TypedFound>, StoreError> {
        let loc = Arc::new(self.locate(key)?);
        self.within_deadline("read", self.get_typed_inner(loc, level, wanted))
            .await
    }

    async fn get_typed_inner(
        &self,
        loc: Arc<KeyLocation>,
        level: Consistency,
        wanted: TypedWanted,
    ) -> Result<Option<TypedFound>, StoreError> {
        // A linearizable read writes the value it returns back to a majority: it needs it.
        let wanted = if level == Consistency::Linearizable {
            TypedWanted::Full
        } else {
            wanted
        };
        let required = self.settings.quorum.read_quorum(level);
        let read = |node: Arc<Node>| self.batches.read_typed(node.id, loc.clone(), wanted);
        let gathered = self
            .read_quorum("read", required, Some(&loc.key), read)
            .await?;
        if let Some(holds) =
            crdt_kind_among(gathered.successes().filter_map(|(_, r)| r.meta.as_ref()))
        {
            return Err(StoreError::KindConflict { holds });
        }
        let winner = newest_typed(&loc.key, gathered.successes().map(|(_, r)| r));
        if let Some(w) = &winner
            && level == Consistency::Linearizable
        {
            self.write_back_typed(&loc, w, &gathered).await?;
        }
        let found = winner.and_then(live_value);
        self.spawn_typed_read_repair(loc, gathered);
        Ok(found)
    }

    /// ABD read phase two for a typed read (see `write_back`).
    pub(super) async fn write_back_typed<T: ReadAnswer>(
        &self,
        loc: &Arc<KeyLocation>,
        winner: &TypedNewest,
        g: &Gathered<T>,
    ) -> Result<(), StoreError> {
        // Unversioned data is the sweep's to adopt; a value that vanished under its metadata,
        // or of a type read by name only, is left to the sweep as well.
        match stored_entry(winner).filter(|_| winner.meta.version != Version::ZERO) {
            Some((bytes, restore)) => {
                self.write_back_entry(loc, &winner.meta, (&bytes, restore), g)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Read repair of a typed read, in the background: the nodes that answered an older
    /// version get the newest, a list as a `DUMP` payload.
    fn spawn_typed_read_repair(&self, loc: Arc<KeyLocation>, g: Gathered<NodeTypedRead>) {
        let key = loc.key.clone();
        repair::spawn_repair(
            self.pool.clone(),
            self.batches.clone(),
            loc,
            g,
            move |answered| {
                let winner = newest_typed(&key, answered.iter().map(|(_, r)| r))?;
                let stored = stored_entry(&winner)?;
                Some(Repair {
                    meta: winner.meta,
                    stored,
                })
            },
        );
    }

    /// Reads `key` whole (`TypedWanted::Full`), asks `decide` what to do given the live value
    /// (if any), and writes that under a ballot (`ballot.rs`), retrying from the read when a
    /// concurrent write wins: `read_modify_write` for lists and sorted sets. Takes its turn
    /// with this process's other writes of the key.
    #[tracing::instrument(level = "debug", name = "store.read_modify_write_typed", skip_all, fields(level = %level))]
    pub async fn read_modify_write_typed<R>(
        &self,
        key: &[u8],
        level: Consistency,
        decide: impl FnMut(Option<&TypedFound>) -> (TypedChange, R),
    ) -> Result<R, StoreError> {
        let loc = Arc::new(self.locate(key)?);
        self.within_deadline("read-modify-write", async {
            let _turn = lock_key(key).await;
            self.rmw_typed_in_turn(&loc, level, decide)
                .await
                .map(|(result, _)| result)
        })
        .await
    }

    /// The loop of `read_modify_write_typed`, for a caller that holds the key's turn: what
    /// `decide` answered, and the receipt of the write (`None` when nothing was written).
    pub(super) async fn rmw_typed_in_turn<R>(
        &self,
        loc: &Arc<KeyLocation>,
        level: Consistency,
        mut decide: impl FnMut(Option<&TypedFound>) -> (TypedChange, R),
    ) -> Result<(R, Option<WriteReceipt>), StoreError> {
        // This call's earlier writes that may have landed on some node.
        let mut pending = Pending::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let read = match self.prepare(loc, level).await {
                Err(e) if retry_worthy(&e) && attempt < MAX_ATTEMPTS => {
                    back_off(attempt).await;
                    continue;
                }
                read => read?,
            };
            let planned = match pending.settle(&read) {
                Ok(Some(own)) => Ok(own),
                Ok(None) => {
                    let (change, result) = decide(read.found.as_ref());
                    let answer = pending.answer(result);
                    match change {
                        // A stray earlier write must not win later over what this one answers.
                        TypedChange::Keep if !pending.is_empty() => {
                            rewrite(&read).map(|c| (c, answer))
                        }
                        change => Ok((change, answer)),
                    }
                }
                Err(e) => Err(e),
            };
            let (change, answer) = match planned {
                Ok(planned) => planned,
                Err(e) => {
                    self.release(loc, read.accept.ballot);
                    return Err(e);
                }
            };
            let ballot = read.accept.ballot;
            match self
                .apply_typed_change(loc, read.accept, change, level)
                .await
            {
                Ok(receipt) => return Ok((pending.take(answer), receipt)),
                Err(StoreError::Preempted { maybe_written, .. }) if attempt < MAX_ATTEMPTS => {
                    if maybe_written {
                        pending.wrote(ballot, answer);
                    }
                    back_off(attempt).await;
                }
                Err(StoreError::Preempted {
                    maybe_written: true,
                    ..
                }) => return Err(StoreError::OutcomeUnknown),
                Err(e) if !pending.is_empty() && retry_worthy(&e) => {
                    return Err(StoreError::OutcomeUnknown);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A change of two keys that must not lose what moves between them (LMOVE): both are read
    /// whole, `decide` plans both writes from what it saw, and the destination is written
    /// first, then the source, each under its own ballot. A destination
    /// that changed meanwhile sends the whole step back to the reads (nothing was written). A
    /// source that changed after the destination was written is read again and `redo_source`
    /// decides its write alone (LMOVE: pop the moved element if it is still at that end), so
    /// a failure between the two writes can leave an element in both lists, never in neither.
    /// Takes both keys' turns in this process, in a fixed order.
    #[tracing::instrument(level = "debug", name = "store.transfer_typed", skip_all, fields(level = %level))]
    pub async fn transfer_typed<R>(
        &self,
        (src, dst): (&[u8], &[u8]),
        level: Consistency,
        mut decide: impl FnMut(Option<&TypedFound>, Option<&TypedFound>) -> Transfer<R>,
        mut redo_source: impl FnMut(Option<&TypedFound>) -> TypedChange,
    ) -> Result<R, StoreError> {
        let src_loc = Arc::new(self.locate(src)?);
        let dst_loc = Arc::new(self.locate(dst)?);
        self.within_deadline("read-modify-write", async {
            let _turns = super::rmw::lock_keys(&[src, dst]).await;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let (s, d) = futures::future::join(
                    self.prepare(&src_loc, level),
                    self.prepare(&dst_loc, level),
                )
                .await;
                let both = match (s, d) {
                    (Ok(s), Ok(d)) => Ok((s, d)),
                    // The prepare that failed withdrew its own promises; the other's go too.
                    (Ok(s), Err(e)) => {
                        self.release(&src_loc, s.accept.ballot);
                        Err(e)
                    }
                    (Err(e), Ok(d)) => {
                        self.release(&dst_loc, d.accept.ballot);
                        Err(e)
                    }
                    (Err(e), Err(_)) => Err(e),
                };
                let (s, d) = match both {
                    Ok(both) => both,
                    Err(e) if retry_worthy(&e) && attempt < MAX_ATTEMPTS => {
                        back_off(attempt).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let plan = decide(s.found.as_ref(), d.found.as_ref());
                let destination = self
                    .apply_typed_change(&dst_loc, d.accept, plan.destination, level)
                    .await;
                if destination.is_err() {
                    self.release(&src_loc, s.accept.ballot);
                }
                match destination {
                    Ok(_) => {}
                    // Pushed on some node perhaps: another try could push it twice.
                    Err(StoreError::Preempted {
                        maybe_written: true,
                        ..
                    }) => return Err(StoreError::OutcomeUnknown),
                    Err(e) if retry_worthy(&e) && attempt < MAX_ATTEMPTS => {
                        back_off(attempt).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                match self
                    .apply_typed_change(&src_loc, s.accept, plan.source, level)
                    .await
                {
                    Ok(_) => return Ok(plan.result),
                    // In the destination, and perhaps taken off the source somewhere.
                    Err(StoreError::Preempted {
                        maybe_written: true,
                        ..
                    }) => return Err(StoreError::OutcomeUnknown),
                    Err(e) if retry_worthy(&e) => {
                        let redo = |f: Option<&TypedFound>| (redo_source(f), ());
                        self.rmw_typed_in_turn(&src_loc, level, redo).await?;
                        return Ok(plan.result);
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .await
    }

    /// Writes `change` as the accept of a read-modify-write's ballot (phase two); the
    /// receipt of the write, `None` for `Keep`.
    pub(super) async fn apply_typed_change(
        &self,
        loc: &Arc<KeyLocation>,
        accept: Accept,
        change: TypedChange,
        level: Consistency,
    ) -> Result<Option<WriteReceipt>, StoreError> {
        let (kind, bytes, content, restore, expires_at_ms) = match change {
            TypedChange::Keep => {
                self.release(loc, accept.ballot);
                return Ok(None);
            }
            TypedChange::PutList {
                items,
                expires_at_ms,
            } if !items.is_empty() => {
                let payload = dump::payload(&Collection::List(&items))?;
                let content = Content::list(items.iter().map(Vec::as_slice));
                (EntryKind::Value, payload, content, true, expires_at_ms)
            }
            TypedChange::PutSortedSet {
                members,
                expires_at_ms,
            } if !members.is_empty() => {
                let payload = dump::payload(&Collection::SortedSet(&members))?;
                let content = Content::sorted_set(members.iter().map(|(m, s)| (m.as_slice(), *s)));
                (EntryKind::Value, payload, content, true, expires_at_ms)
            }
            TypedChange::PutHash {
                fields,
                expires_at_ms,
            } if !fields.is_empty() => {
                let payload = dump::payload(&Collection::Hash(&fields))?;
                let content =
                    Content::hash(fields.iter().map(|(f, v)| (f.as_slice(), v.as_slice())));
                (EntryKind::Value, payload, content, true, expires_at_ms)
            }
            TypedChange::PutSet {
                members,
                expires_at_ms,
            } if !members.is_empty() => {
                let payload = dump::payload(&Collection::Set(&members))?;
                let content = Content::set(members.iter().map(Vec::as_slice));
                (EntryKind::Value, payload, content, true, expires_at_ms)
            }
            TypedChange::PutStream {
                stream,
                expires_at_ms,
            } => {
                let content = Content::stream_with(&stream, self.settings.stream_checksum);
                (
                    EntryKind::Value,
                    stream.dump_payload(),
                    content,
                    true,
                    expires_at_ms,
                )
            }
            TypedChange::PutString {
                value,
                expires_at_ms,
            } => {
                let content = Content::string(&value);
                (EntryKind::Value, value, content, false, expires_at_ms)
            }
            TypedChange::PutList { .. }
            | TypedChange::PutSortedSet { .. }
            | TypedChange::PutHash { .. }
            | TypedChange::PutSet { .. }
            | TypedChange::Delete => (
                EntryKind::Tombstone,
                Vec::new(),
                Content::Absent,
                false,
                None,
            ),
        };
        let body = Body {
            bytes: &bytes,
            content,
            restore,
        };
        let stamp = (accept.ballot, accept.condition());
        self.write_stamped(loc.clone(), kind, body, expires_at_ms, level, stamp)
            .await
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ms: u64) -> Version {
        Version::first_in_ms(ms, 1)
    }

    fn list(items: &[&str]) -> TypedValue {
        TypedValue::List(items.iter().map(|s| s.as_bytes().to_vec()).collect())
    }

    fn list_meta(version: Version, items: &[&str]) -> Meta {
        let c = Content::list(items.iter().map(|s| s.as_bytes()));
        Meta::new(b"k", version, EntryKind::Value, None, c)
    }

    fn read(meta: Option<Meta>, value: Option<TypedValue>) -> NodeTypedRead {
        NodeTypedRead { meta, value }
    }

    #[test]
    fn the_newest_version_wins_and_an_intact_copy_beats_a_changed_one() {
        let reads = [
            read(Some(list_meta(v(1), &["old"])), Some(list(&["old"]))),
            read(Some(list_meta(v(2), &["a", "b"])), Some(list(&["b", "a"]))),
            read(Some(list_meta(v(2), &["a", "b"])), Some(list(&["a", "b"]))),
        ];
        let n = newest_typed(b"k", &reads).unwrap();
        assert_eq!(n.meta.version, v(2));
        assert_eq!(n.value, Some(list(&["a", "b"])));
    }

    #[test]
    fn a_stream_is_checked_by_the_function_of_its_entrys_letter() {
        use quorumd_core::stream::{Group, Stream};
        let mut intact = Stream::default();
        intact
            .add(None, vec![(b"f".to_vec(), b"v".to_vec())], 1)
            .unwrap();
        intact
            .groups
            .insert(b"g".to_vec(), Group::new(intact.last_id, 1));
        // Changed on a node: a group added, the entries as they were.
        let mut changed = intact.clone();
        changed
            .groups
            .insert(b"h".to_vec(), Group::new(intact.last_id, 1));
        // Changed on a node: an entry added.
        let mut added = intact.clone();
        added
            .add(None, vec![(b"f".to_vec(), b"w".to_vec())], 2)
            .unwrap();
        for (content, changed, want) in [
            (Content::stream(&intact), &changed, &intact),
            // An entry of the entries-only checksum cannot tell a group apart: the first wins.
            (Content::stream_entries(&intact), &changed, &changed),
            (Content::stream_entries(&intact), &added, &intact),
        ] {
            let meta = Meta::new(b"k", v(2), EntryKind::Value, None, content);
            let reads = [
                read(
                    Some(meta.clone()),
                    Some(TypedValue::Stream(changed.clone())),
                ),
                read(Some(meta), Some(TypedValue::Stream(intact.clone()))),
            ];
            let got = newest_typed(b"k", &reads).unwrap().value;
            assert_eq!(got, Some(TypedValue::Stream(want.clone())), "{content}");
        }
    }

    #[test]
    fn a_tombstone_has_no_value_and_unversioned_values_lose() {
        let tomb = Meta::new(b"k", v(3), EntryKind::Tombstone, None, Content::Absent);
        let reads = [
            read(Some(tomb), Some(list(&["stale"]))),
            read(None, Some(list(&["direct"]))),
        ];
        let n = newest_typed(b"k", &reads).unwrap();
        assert_eq!(n.meta.kind, EntryKind::Tombstone);
        assert_eq!(n.value, None);
        let only_direct = [read(None, Some(list(&["direct"]))), read(None, None)];
        let n = newest_typed(b"k", &only_direct).unwrap();
        assert_eq!(n.meta.version, Version::ZERO);
        assert_eq!(n.value, Some(list(&["direct"])));
        assert!(newest_typed(b"k", &[read(None, None)]).is_none());
    }

    #[test]
    fn a_list_is_stored_as_a_dump_and_a_string_as_itself() {
        let (bytes, restore) = stored_form(&list(&["a"])).unwrap();
        assert!(restore);
        assert_eq!(bytes[0], 1, "RDB list type");
        assert_eq!(
            stored_form(&TypedValue::String(b"s".to_vec())),
            Some((b"s".to_vec(), false))
        );
        assert_eq!(stored_form(&TypedValue::Only("hash".into())), None);
        let zset = TypedValue::SortedSet(vec![(b"m".to_vec(), 1.5)]);
        let (bytes, restore) = stored_form(&zset).unwrap();
        assert!(restore);
        assert_eq!(bytes[0], 5, "RDB zset-2 type");
        // A stream, even an empty one (Redis keeps it), is a DUMP payload of its own type.
        let stream = TypedValue::Stream(Stream::default());
        let (bytes, restore) = stored_form(&stream).unwrap();
        assert!(restore);
        assert_eq!(bytes[0], 19, "RDB stream-listpacks-2 type");
        assert!(matches!(
            TypedChange::put(&stream, Some(7)),
            Some(TypedChange::PutStream {
                expires_at_ms: Some(7),
                ..
            })
        ));
    }
}
