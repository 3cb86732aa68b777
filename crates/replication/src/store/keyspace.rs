//! Keyspace operations over the quorum: the SCAN cursor (and KEYS, RANDOMKEY, FLUSHDB built on
//! it), and RENAME / COPY as versioned writes.
//!
//! **The cursor walks buckets, not a node's hash table.** Every node files each key's metadata
//! under the key's bucket, a placement that is the same on every node and fixed for the life
//! of the cluster (B buckets). A scan step reads the metadata of the next buckets from a read
//! quorum, merges the answers key by key (the newest version wins, as for a read), and keeps
//! the keys whose winning entry is a live value or a non-empty CRDT; tombstones, expired
//! values and quorumd's own keys never show. The cursor is the next bucket number (0 once the
//! last bucket was read). So a cursor means the same on every node and on every quorumd
//! instance: a step may be answered by other nodes than the step before (a node died), and a
//! scan may continue through another instance.
//!
//! The guarantee: a key that holds a live value for the whole scan was acknowledged by W
//! nodes before its bucket was read, and that read heard R nodes that count for reads, with
//! R + W > N; at least one of them holds the key's newest version, which is live, so the key
//! is returned. A bucket is read in one step, so a key is returned at most once per scan
//! (Redis may return one twice; clients must accept both). A key written or deleted during
//! the scan may or may not be returned. Values written straight to a node without metadata are
//! not seen until the sweep adopts them.

use super::rmw::lock_keys;
use super::{Precondition, StoreError, VersionedStore};
use futures::StreamExt;
use quorumd_core::content::{Content, ValueType};
use quorumd_core::crdt::CrdtKind;
use quorumd_core::hlc::{Version, wall_clock_ms};
use quorumd_core::meta::{EntryKind, Meta};
use quorumd_core::quorum::Consistency;
use quorumd_node::calls;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

/// Most buckets one read of a scan step covers. A step reads chunks of 1, 2, 4... buckets
/// (up to this) until it has the keys asked for, so a sparse keyspace costs few steps and a
/// dense one small replies.
const MAX_CHUNK_BUCKETS: u32 = 256;

/// Keys a step of KEYS or FLUSHDB asks for.
const BULK_STEP_KEYS: usize = 10_000;

/// Tombstones of one FLUSHDB step in flight at once.
const FLUSH_CONCURRENCY: usize = 64;

/// Redis-style glob matching on raw bytes (`*`, `?`, `[a-z]`, `[^a]`, `\x`), for MATCH and KEYS:
/// redis-server 7.0's `stringmatchlen`, edge cases included (`sync/glob.rs`).
pub fn glob_matches(pattern: &[u8], key: &[u8]) -> bool {
    crate::sync::glob::matches(pattern, key)
}

/// The same ignoring ASCII case, as `COMMAND LIST FILTERBY PATTERN` matches command names.
pub fn glob_matches_nocase(pattern: &[u8], text: &[u8]) -> bool {
    crate::sync::glob::matches_nocase(pattern, text)
}

/// A key that a read quorum's metadata shows live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveKey {
    pub key: Vec<u8>,
    /// The type of its value (a counter is a string, a map a hash).
    pub ty: ValueType,
    /// Set for a counter, set or map key.
    pub crdt: Option<CrdtKind>,
    /// The winning version (CRDT keys carry none that orders writes).
    pub version: Version,
}

/// One step of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanStep {
    /// The cursor to continue with; 0 when the scan is complete.
    pub next: u64,
    pub keys: Vec<LiveKey>,
}

/// What a key's entries on the answering nodes say.
#[derive(Debug, Default)]
struct Seen {
    newest: Option<Meta>,
    crdt: Option<(CrdtKind, Content)>,
}

impl Seen {
    fn add(&mut self, meta: Meta) {
        if let EntryKind::Crdt(kind) = meta.kind {
            // A CRDT's state merges; its entry has no version that orders writes. It is live
            // when some node's materialised value is not empty.
            if !matches!(self.crdt, Some((_, Content::Value { .. }))) {
                self.crdt = Some((kind, meta.content));
            }
            return;
        }
        if self
            .newest
            .as_ref()
            .is_none_or(|m| meta.version > m.version)
        {
            self.newest = Some(meta);
        }
    }

    fn live(self, key: Vec<u8>, now_ms: u64) -> Option<LiveKey> {
        if let Some((kind, content)) = self.crdt {
            let Content::Value { ty, .. } = content else {
                // Emptied hash or set: TYPE answers `none` for it, so SCAN does not show it.
                return None;
            };
            return Some(LiveKey {
                key,
                ty,
                crdt: Some(kind),
                version: Version::ZERO,
            });
        }
        let meta = self.newest.filter(|m| m.is_live(now_ms))?;
        let ty = match meta.content {
            Content::Value { ty, .. } => ty,
            Content::Absent => ValueType::String,
        };
        Some(LiveKey {
            key,
            ty,
            crdt: None,
            version: meta.version,
        })
    }
}

/// How RENAME, RENAMENX and COPY move a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMode {
    /// RENAME (`nx: false`) or RENAMENX: write the destination, then tombstone the source.
    Rename { nx: bool },
    /// COPY, with or without REPLACE: write the destination only.
    Copy { replace: bool },
}

/// What a transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transferred {
    /// The source is absent, deleted or expired.
    NoSuchKey,
    /// RENAMENX or COPY without REPLACE found the destination live; nothing was written.
    DestinationExists,
    Done,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the source key holds a {0} (a CRDT, whose state merges on the nodes): only plain values can be renamed or copied"
    )]
    SourceIsCrdt(CrdtKind),
    #[error(
        "the destination key holds a {0} (a CRDT, whose state merges on the nodes): it cannot be overwritten"
    )]
    DestinationIsCrdt(CrdtKind),
}

/// What FLUSHDB did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Keys tombstoned.
    pub deleted: u64,
    /// Counter, set and map keys found and left in place (a CRDT has no delete).
    pub crdt_kept: u64,
}

impl VersionedStore {
    /// B, the number of buckets: the cursor's range. (The layout's three facts a scan relies
    /// on are read here only, so a change of the layout code touches these lines alone.)
    fn bucket_count(&self) -> u32 {
        self.settings.layout.buckets
    }

    /// The metadata hashes that together hold bucket `b` on every node.
    fn bucket_meta_hashes(&self, b: u32) -> Vec<String> {
        self.settings.layout.bucket_meta_keys(b)
    }

    /// quorumd's reserved key prefix: keys under it are never shown.
    fn reserved_prefix(&self) -> &str {
        &self.settings.layout.prefix
    }

    /// One scan step from bucket `cursor`: the live keys of the buckets read, at least `want`
    /// of them unless the keyspace ends first or the step read `max(want, MAX_CHUNK_BUCKETS)`
    /// buckets (COUNT bounds the work of a step, as in Redis: a COUNT above B reads the whole
    /// keyspace in one step). Each chunk of buckets is one read quorum, bounded by the request
    /// timeout.
    #[tracing::instrument(name = "store.scan_step", skip_all, fields(level = %level, cursor))]
    pub async fn scan_step(
        &self,
        cursor: u64,
        want: usize,
        level: Consistency,
    ) -> Result<ScanStep, StoreError> {
        let buckets = self.bucket_count();
        let Ok(mut at) = u32::try_from(cursor) else {
            return Ok(ScanStep::done());
        };
        if at >= buckets {
            return Ok(ScanStep::done());
        }
        // A step that wants many keys starts with big chunks; SCAN's default COUNT with one.
        let first = u32::try_from(want / 8)
            .unwrap_or(u32::MAX)
            .clamp(1, MAX_CHUNK_BUCKETS);
        let most = u32::try_from(want)
            .unwrap_or(u32::MAX)
            .max(MAX_CHUNK_BUCKETS);
        let (mut chunk, mut read, mut keys) = (first, 0u32, Vec::new());
        loop {
            let end = at.saturating_add(chunk).min(buckets);
            let found = self
                .within_deadline("scan", self.live_keys_in(at..end, level))
                .await?;
            keys.extend(found);
            read += end - at;
            at = end;
            if at == buckets {
                return Ok(ScanStep { next: 0, keys });
            }
            if keys.len() >= want || read >= most {
                return Ok(ScanStep {
                    next: u64::from(at),
                    keys,
                });
            }
            chunk = (chunk * 2).min(MAX_CHUNK_BUCKETS).min(most - read);
        }
    }

    /// The live keys of `buckets`, merged from a read quorum's metadata.
    async fn live_keys_in(
        &self,
        buckets: Range<u32>,
        level: Consistency,
    ) -> Result<Vec<LiveKey>, StoreError> {
        let meta_keys: Arc<Vec<String>> =
            Arc::new(buckets.flat_map(|b| self.bucket_meta_hashes(b)).collect());
        let required = self.settings.quorum.read_quorum(level);
        let gathered = self
            .read_quorum("scan", required, None, |node| {
                let meta_keys = meta_keys.clone();
                async move { calls::keyspace::meta_entries(&node, &meta_keys).await }
            })
            .await?;
        let prefix = self.reserved_prefix().as_bytes();
        let mut seen: BTreeMap<Vec<u8>, Seen> = BTreeMap::new();
        for (_, hashes) in gathered.successes() {
            for (key, raw) in hashes.iter().flatten() {
                if key.starts_with(prefix) {
                    continue;
                }
                // An entry that does not parse is the sweep's to report; it shows nothing.
                if let Ok(meta) = Meta::parse(raw) {
                    seen.entry(key.clone()).or_default().add(meta);
                }
            }
        }
        let now = wall_clock_ms();
        Ok(seen
            .into_iter()
            .filter_map(|(key, s)| s.live(key, now))
            .collect())
    }

    /// Every live key (KEYS): a whole scan, in steps, each bounded by the request timeout.
    #[tracing::instrument(name = "store.all_keys", skip_all, fields(level = %level))]
    pub async fn all_keys(&self, level: Consistency) -> Result<Vec<LiveKey>, StoreError> {
        let (mut cursor, mut keys) = (0, Vec::new());
        loop {
            let step = self.scan_step(cursor, BULK_STEP_KEYS, level).await?;
            keys.extend(step.keys);
            if step.next == 0 {
                return Ok(keys);
            }
            cursor = step.next;
        }
    }

    /// A live key chosen at random (RANDOMKEY): the scan starts at a random bucket and wraps
    /// around until a step finds keys, then one of those is picked. Not uniform over keys: a
    /// key alone in a run of empty buckets is picked more often.
    #[tracing::instrument(name = "store.random_key", skip_all, fields(level = %level))]
    pub async fn random_key(&self, level: Consistency) -> Result<Option<LiveKey>, StoreError> {
        let buckets = u64::from(self.bucket_count());
        let mut cursor = rand::random_range(0..buckets);
        let mut covered = 0;
        loop {
            let mut step = self.scan_step(cursor, 1, level).await?;
            let end = if step.next == 0 { buckets } else { step.next };
            covered += end - cursor;
            if !step.keys.is_empty() {
                let i = rand::random_range(0..step.keys.len());
                return Ok(Some(step.keys.swap_remove(i)));
            }
            if covered >= buckets {
                return Ok(None);
            }
            cursor = step.next;
        }
    }

    /// Moves or copies the value of `src` to `dst` (RENAME, RENAMENX, COPY), TTL included.
    ///
    /// The destination is written first (a versioned write above every version the nodes
    /// hold for it, or under "still absent" for RENAMENX and COPY without REPLACE); only then
    /// is the source tombstoned, on the condition that it still holds the version that was
    /// copied. So a failure midway leaves the value under both names, never under neither,
    /// and a write to the source that lands between the two steps survives (it is ordered
    /// after the rename). Within this process the writes of both keys take turns with their
    /// other writes.
    #[tracing::instrument(name = "store.transfer", skip_all, fields(level = %level, mode = ?mode))]
    pub async fn transfer(
        &self,
        src: &[u8],
        dst: &[u8],
        mode: TransferMode,
        level: Consistency,
    ) -> Result<Transferred, TransferError> {
        let src_loc = Arc::new(self.locate(src)?);
        let dst_loc = Arc::new(self.locate(dst)?);
        self.within_deadline("rename", async {
            let _turns = lock_keys(&[src, dst]).await;
            let found = match self.get_inner(src_loc.clone(), level).await {
                Ok(Some(found)) => found,
                Ok(None) => return Ok(Transferred::NoSuchKey),
                Err(StoreError::KindConflict { holds }) => {
                    return Err(TransferError::SourceIsCrdt(holds));
                }
                Err(e) => return Err(e.into()),
            };
            if src == dst {
                return Ok(match mode {
                    TransferMode::Rename { nx: false } => Transferred::Done,
                    _ => Transferred::DestinationExists,
                });
            }
            let guarded = matches!(
                mode,
                TransferMode::Rename { nx: true } | TransferMode::Copy { replace: false }
            );
            let precondition = if guarded {
                Precondition::IfAbsent
            } else {
                // Learn the destination's newest version first, so the write is above it even
                // if another instance's clock is ahead: a rename must not be silently lost to
                // an older write that happens to carry a higher version.
                match self
                    .read_versions(&dst_loc, level, Precondition::None)
                    .await
                {
                    Ok(_) => {}
                    Err(StoreError::KindConflict { holds }) => {
                        return Err(TransferError::DestinationIsCrdt(holds));
                    }
                    Err(e) => return Err(e.into()),
                }
                Precondition::None
            };
            let written = self
                .write_inner(
                    dst_loc,
                    EntryKind::Value,
                    &found.value,
                    found.expires_at_ms,
                    level,
                    precondition,
                )
                .await;
            match written {
                Ok(_) => {}
                Err(StoreError::PreconditionFailed { .. }) => {
                    return Ok(Transferred::DestinationExists);
                }
                // A counter, set or map exists: for NX it is simply a live destination.
                Err(StoreError::KindConflict { .. }) if guarded => {
                    return Ok(Transferred::DestinationExists);
                }
                Err(StoreError::KindConflict { holds }) => {
                    return Err(TransferError::DestinationIsCrdt(holds));
                }
                Err(e) => return Err(e.into()),
            }
            if let TransferMode::Copy { .. } = mode {
                return Ok(Transferred::Done);
            }
            let still = if found.version == Version::ZERO {
                Precondition::IfAbsent
            } else {
                Precondition::IfMatch(found.version)
            };
            let tombstone = self
                .write_inner(src_loc, EntryKind::Tombstone, &[], None, level, still)
                .await;
            match tombstone {
                // Refused: the source was written again after it was read; that write stays.
                Ok(_) | Err(StoreError::PreconditionFailed { .. }) => Ok(Transferred::Done),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Deletes every live key (FLUSHDB): a whole scan at `level`, and a tombstone for each
    /// plain key it finds, at a version above the one the scan saw, acknowledged by W nodes.
    /// The tombstones are ordinary versioned deletes, so a node that missed the flush (down,
    /// paused, partitioned) cannot bring the keys back: the sweep copies the newer tombstones
    /// to it. Keys written after their bucket was scanned survive. Counter, set and map keys
    /// have no delete and are left in place (counted in `crdt_kept`).
    #[tracing::instrument(name = "store.flush", skip_all, fields(level = %level))]
    pub async fn flush(&self, level: Consistency) -> Result<Flushed, StoreError> {
        let (mut cursor, mut out) = (0, Flushed::default());
        loop {
            let step = self.scan_step(cursor, BULK_STEP_KEYS, level).await?;
            let mut plain = Vec::new();
            for k in step.keys {
                if k.crdt.is_some() {
                    out.crdt_kept += 1;
                } else {
                    self.clock.observe(k.version);
                    plain.push(k.key);
                }
            }
            let deletes = futures::stream::iter(plain)
                .map(|key| async move {
                    let loc = Arc::new(self.locate(&key)?);
                    self.within_deadline(
                        "flush",
                        self.write_inner(
                            loc,
                            EntryKind::Tombstone,
                            &[],
                            None,
                            level,
                            Precondition::None,
                        ),
                    )
                    .await
                })
                .buffer_unordered(FLUSH_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            for d in deletes {
                d?;
                out.deleted += 1;
            }
            if step.next == 0 {
                return Ok(out);
            }
            cursor = step.next;
        }
    }
}

impl ScanStep {
    fn done() -> ScanStep {
        ScanStep {
            next: 0,
            keys: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ms: u64) -> Version {
        Version::first_in_ms(ms, 1)
    }

    #[test]
    fn the_newest_entry_decides_and_tombstones_hide_keys() {
        let key = b"k";
        let mut s = Seen::default();
        s.add(Meta::for_string(key, v(2), None, None));
        s.add(Meta::for_string(key, v(1), Some(b"old"), None));
        assert_eq!(s.live(key.to_vec(), 10), None, "a newer tombstone hides it");

        let mut s = Seen::default();
        s.add(Meta::for_string(key, v(1), None, None));
        s.add(Meta::for_string(key, v(2), Some(b"new"), None));
        let live = s.live(key.to_vec(), 10).expect("live");
        assert_eq!(
            (live.ty, live.version, live.crdt),
            (ValueType::String, v(2), None)
        );
    }

    #[test]
    fn expired_values_are_not_live() {
        let key = b"k";
        let mut s = Seen::default();
        s.add(Meta::for_string(key, v(1), Some(b"x"), Some(5)));
        assert_eq!(s.live(key.to_vec(), 5), None);
        let mut s = Seen::default();
        s.add(Meta::for_string(key, v(1), Some(b"x"), Some(6)));
        assert!(s.live(key.to_vec(), 5).is_some());
    }

    #[test]
    fn a_crdt_is_live_when_some_answer_is_not_empty() {
        let key = b"s".to_vec();
        let members = Content::set([&b"a"[..]]);
        let mut s = Seen::default();
        s.add(Meta::crdt(CrdtKind::Set, 7, Content::Absent));
        s.add(Meta::crdt(CrdtKind::Set, 8, members));
        s.add(Meta::crdt(CrdtKind::Set, 7, Content::Absent));
        let live = s.live(key.clone(), 0).expect("live");
        assert_eq!((live.ty, live.crdt), (ValueType::Set, Some(CrdtKind::Set)));

        let mut emptied = Seen::default();
        emptied.add(Meta::crdt(CrdtKind::Set, 7, Content::Absent));
        assert_eq!(emptied.live(key, 0), None);
    }

    #[test]
    fn glob_is_redis_match() {
        assert!(glob_matches(b"user:*", b"user:1"));
        assert!(!glob_matches(b"user:?", b"user:12"));
        assert!(glob_matches(b"*", b""));
    }
}
