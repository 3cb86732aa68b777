//! The versioned store's scripts and the per-node calls that run them.
//!
//! Every mutation goes through one script, `APPLY`, that writes values, metadata and bucket
//! digests atomically and applies an entry only if its version is newer than the stored one.
//! Client writes (one entry), read repair and the anti-entropy sweep (batches of entries) share
//! that one rule, so a repair can never overwrite a newer write and repeating one is harmless.

use super::{
    array, clock_lua, content_lua, digest_lua, entry_lua, own_writes_lua, parse_bytes, parse_meta,
    parse_version, promise_lua, protocol, typed_read_lua, verify_entry_lua,
};
use crate::pool::{Node, NodeError, ServerError, Traffic};
use quorumd_core::content::{Content, StreamChecksum};
use quorumd_core::hlc::Version;
use quorumd_core::layout::DigestField;
use quorumd_core::meta::{EntryKind, Meta};
use quorumd_core::stream::{Consumer, Entry, Group, NO_ENTRIES_READ, Pending, Stream, StreamId};
use redis::{Script, Value};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Applies a batch of versioned entries.
///
/// KEYS, four per entry: the value key, its sub-bucket metadata hash, its bucket's digest key
/// and its bucket's sub-digest hash.
/// ARGV, seven per entry: the bucket's digest field (`DigestField::arg`: the bucket, or empty
/// when the digest key is a string), sub-bucket (field of the sub-digest hash), encoded metadata, mode (`s` SET the payload as a string, `r` RESTORE the payload as a
/// DUMP, `t` tombstone), payload, absolute expiry in ms (0 = none), condition (`''` none, `-`
/// the key must have no metadata, otherwise a version the stored one must not be newer than;
/// after a `#`, the entry is the accept of a read-modify-write's ballot, see PREPARE).
/// Returns, per entry, a code and the stored metadata (or `''`): 1 applied; 0 the same or a
/// newer version is stored; 2 the condition failed; 3 the same version was stored but its value
/// had vanished, and was restored; 4 the key is a CRDT (its state merges, see
/// `calls/crdt.rs`), which a versioned write must not overwrite; 5 (a `#` entry) the node
/// promised a higher ballot, which takes the place of the metadata. An entry whose value
/// command failed (e.g. a RESTORE of a corrupt DUMP) has `{error text}` in place of its code and
/// changed nothing; the other entries are unaffected.
/// Last ARGV: the channel to announce the writes on (`own_writes_lua!`), `''` for none.
const APPLY_LUA: &str = concat!(
    "#!lua\n",
    digest_lua!(),
    clock_lua!(),
    content_lua!(),
    entry_lua!(),
    promise_lua!(),
    own_writes_lua!(include_str!("../../lua/store/apply.lua"))
);

/// Checks, on the node alone, whether each key's value is the one its metadata records (the
/// scrub and the live detection of changes made outside quorumd; see `verify.lua`).
const VERIFY_LUA: &str = concat!(
    "#!lua flags=no-writes\n",
    clock_lua!(),
    content_lua!(),
    entry_lua!(),
    verify_entry_lua!(),
    include_str!("../../lua/store/verify.lua")
);

/// The scrub's check: every entry of whole metadata hashes verified as `VERIFY` verifies one
/// key, answering only for the entries that are not intact (see `verify_hashes.lua`).
const VERIFY_HASHES_LUA: &str = concat!(
    "#!lua flags=no-writes\n",
    clock_lua!(),
    content_lua!(),
    entry_lua!(),
    verify_entry_lua!(),
    include_str!("../../lua/store/verify_hashes.lua")
);

/// Reads, per key, its metadata, a DUMP, the content and the absolute expiry of the value as it
/// stands: what adopting a change made outside quorumd needs.
const CAPTURE_LUA: &str = concat!(
    "#!lua flags=no-writes\n",
    content_lua!(),
    include_str!("../../lua/store/capture.lua")
);

/// Reads metadata, and the string value where asked, for a batch of keys; each key's metadata
/// and value are consistent with each other.
/// KEYS: per key the value key and its bucket metadata hash. ARGV: per key `v` (metadata and
/// value) or `m` (metadata only). Returns `{meta or false, value or false}` per key.
/// `no-writes` lets it run under OOM and on replicas.
/// A CRDT key's value is not read: a set or map would answer WRONGTYPE. A key holding another
/// type has `{error text}` in its value's place (`redis.pcall`), failing that key only, not the
/// other keys of the batch (a nested error reply would fail the whole call on the client).
const READ_LUA: &str = concat!(
    "#!lua flags=no-writes\n",
    entry_lua!(),
    include_str!("../../lua/store/read.lua")
);

/// Reads metadata and the typed value (type, and the whole string or list where asked) for a
/// batch of keys; see `read_typed.lua`. `no-writes`, as READ.
const READ_TYPED_LUA: &str = concat!(
    "#!lua flags=no-writes\n",
    entry_lua!(),
    typed_read_lua!(),
    include_str!("../../lua/store/read_typed.lua")
);

/// Phase one of a read-modify-write: promises a ballot for one key and reads it whole; see
/// `prepare.lua`. Writes (the promise), so it runs on masters only.
const PREPARE_LUA: &str = concat!(
    "#!lua\n",
    entry_lua!(),
    promise_lua!(),
    typed_read_lua!(),
    include_str!("../../lua/store/prepare.lua")
);

/// Withdraws a read-modify-write's promise that no write will follow; see
/// `release_promise.lua`.
const RELEASE_PROMISE_LUA: &str = concat!(
    "#!lua\n",
    promise_lua!(),
    include_str!("../../lua/store/release_promise.lua")
);

/// Reads metadata and a DUMP of the value for a batch of keys, of any Redis type.
/// KEYS: per key the value key and its bucket metadata hash. Returns `{meta, dump}` per key,
/// each `false` when absent.
const DUMP_LUA: &str = include_str!("../../lua/store/dump.lua");

/// Removes metadata entries that are exactly as expected (purged tombstones, long-expired
/// values), keeping both digest levels in step. KEYS, four per entry: the value key, its
/// sub-bucket metadata hash, its bucket's digest key and its sub-digest hash. ARGV, three per
/// entry: the bucket's digest field (as for `APPLY`), sub-bucket, the expected encoded metadata.
/// Last ARGV: the channel to announce the deleted values on (`own_writes_lua!`), `''` for none.
/// Returns how many entries were removed.
const PURGE_LUA: &str = concat!(
    "#!lua\n",
    digest_lua!(),
    entry_lua!(),
    own_writes_lua!(include_str!("../../lua/store/purge.lua"))
);

/// Recomputes both digest levels of a batch of buckets from their metadata and fixes the
/// fields that drifted. KEYS: per bucket its digest key, its sub-digest hash and its S
/// sub-bucket metadata hashes. ARGV: S, then per bucket, in the same order, its number and its
/// digest field (`DigestField::arg`: empty when the digest key is a string).
/// Returns the buckets where the bucket digest or any sub-digest was wrong.
const REBUILD_DIGESTS_LUA: &str = concat!(
    "#!lua\n",
    digest_lua!(),
    entry_lua!(),
    include_str!("../../lua/store/rebuild_digests.lua")
);

static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(APPLY_LUA));
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_LUA));
static READ_TYPED: LazyLock<Script> = LazyLock::new(|| Script::new(READ_TYPED_LUA));
static PREPARE: LazyLock<Script> = LazyLock::new(|| Script::new(PREPARE_LUA));
static RELEASE_PROMISE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_PROMISE_LUA));
static DUMP: LazyLock<Script> = LazyLock::new(|| Script::new(DUMP_LUA));
static VERIFY: LazyLock<Script> = LazyLock::new(|| Script::new(VERIFY_LUA));
static VERIFY_HASHES: LazyLock<Script> = LazyLock::new(|| Script::new(VERIFY_HASHES_LUA));
static CAPTURE: LazyLock<Script> = LazyLock::new(|| Script::new(CAPTURE_LUA));
static PURGE: LazyLock<Script> = LazyLock::new(|| Script::new(PURGE_LUA));
static REBUILD_DIGESTS: LazyLock<Script> = LazyLock::new(|| Script::new(REBUILD_DIGESTS_LUA));

/// Where a key, its metadata and its digests live on every node: the one place that says so
/// (built by `VersionedStore::locate`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyLocation {
    pub key: Vec<u8>,
    /// The metadata hash of the key's sub-bucket.
    pub meta_key: String,
    /// The key holding the bucket's digest, where `digest_field` says.
    pub digest_key: String,
    pub digest_field: DigestField,
    /// The bucket's sub-digest hash (field = sub-bucket).
    pub sub_digest_key: String,
    pub bucket: u32,
    pub sub: u32,
}

/// Precondition of a write, checked atomically on each node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeCondition {
    None,
    /// The key must have no metadata at all.
    Absent,
    /// The stored version must not be newer than this one.
    NotNewerThan(Version),
    /// The accept of a read-modify-write: the entry's version is a ballot `prepare` promised,
    /// refused where a higher one was promised since; and the stored version must not be newer
    /// than the one read (`None`: the key had no metadata).
    Ballot(Option<Version>),
}

impl NodeCondition {
    /// The condition as APPLY reads it: `''`, `-`, a binary version, or either of the last
    /// two after a `#`.
    fn arg(&self) -> Vec<u8> {
        match self {
            NodeCondition::None => Vec::new(),
            NodeCondition::Absent => b"-".to_vec(),
            NodeCondition::NotNewerThan(v) => v.to_bytes().to_vec(),
            NodeCondition::Ballot(None) => b"#-".to_vec(),
            NodeCondition::Ballot(Some(v)) => [&b"#"[..], &v.to_bytes()].concat(),
        }
    }
}

/// How an entry's payload is to be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// A string value (client writes).
    String(&'a [u8]),
    /// A `DUMP` of a value of any type (repairs).
    Dump(&'a [u8]),
    /// No value: the entry is a tombstone.
    None,
}

/// One entry of an `APPLY` batch.
#[derive(Debug, Clone)]
pub struct ApplyEntry<'a> {
    pub loc: &'a KeyLocation,
    pub meta: &'a Meta,
    pub payload: Payload<'a>,
    pub cond: NodeCondition,
}

/// A node's answer for one applied entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Applied,
    /// The node already holds this version or a newer one.
    Superseded(Meta),
    ConditionFailed(Meta),
    /// The node held this version but had lost the value; the value was put back.
    ValueRestored,
    /// The key is a CRDT on this node; nothing was written.
    KindConflict(Meta),
    /// The node promised a higher ballot (this one) to another read-modify-write of the key
    /// since this entry's was promised; nothing was written.
    Preempted(Version),
}

impl WriteOutcome {
    /// The node now holds the written version or a newer one.
    pub fn holds_version(&self) -> bool {
        !matches!(
            self,
            WriteOutcome::ConditionFailed(_)
                | WriteOutcome::KindConflict(_)
                | WriteOutcome::Preempted(_)
        )
    }

    /// The node's state changed.
    pub fn changed(&self) -> bool {
        matches!(self, WriteOutcome::Applied | WriteOutcome::ValueRestored)
    }
}

/// A node's answer to a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRead {
    pub meta: Option<Meta>,
    pub value: Option<Vec<u8>>,
}

/// A node's metadata and `DUMP` of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDump {
    pub meta: Option<Meta>,
    pub dump: Option<Vec<u8>>,
}

/// A batch script's reply: two items per input, in order.
fn pairs(reply: Value, what: &str, inputs: usize) -> Result<Vec<Value>, NodeError> {
    let items = array(reply, what)?;
    if items.len() != inputs * 2 {
        return Err(protocol(format!(
            "{what} script returned {} items for {inputs} inputs",
            items.len()
        )));
    }
    Ok(items)
}

/// Runs `APPLY` for a batch of entries on one node; one outcome per entry, in order. An entry
/// that failed on the node fails the whole call, as the sweep expects of its repair batches.
pub async fn apply(
    node: &Node,
    entries: &[ApplyEntry<'_>],
) -> Result<Vec<WriteOutcome>, NodeError> {
    apply_as(node, Traffic::Client, entries).await
}

/// `apply` for the given kind of traffic (sweep repairs are `Background`).
pub async fn apply_as(
    node: &Node,
    traffic: Traffic,
    entries: &[ApplyEntry<'_>],
) -> Result<Vec<WriteOutcome>, NodeError> {
    apply_each(node, traffic, entries)
        .await?
        .into_iter()
        .collect()
}

/// Runs `APPLY` for a batch of entries on one node. The outer error is a failure of the whole
/// call (timeout, connection, OOM or READONLY refusal); otherwise each entry has its own
/// outcome, or its own error when the node refused that entry alone.
pub async fn apply_each(
    node: &Node,
    traffic: Traffic,
    entries: &[ApplyEntry<'_>],
) -> Result<Vec<Result<WriteOutcome, NodeError>>, NodeError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    node.per_slot_each(
        entries,
        |e| &e.loc.key[..],
        |group| async move { apply_slot(node, traffic, &group).await },
    )
    .await
}

/// [`apply_each`] for entries that share a slot when the node is a cluster.
async fn apply_slot(
    node: &Node,
    traffic: Traffic,
    entries: &[ApplyEntry<'_>],
) -> Result<Vec<Result<WriteOutcome, NodeError>>, NodeError> {
    let mut inv = APPLY.prepare_invoke();
    for e in entries {
        let (mode, payload): (&str, &[u8]) = match (e.meta.kind, e.payload) {
            (EntryKind::Crdt(k), _) => {
                return Err(protocol(format!(
                    "a {k} entry is merged by the CRDT script, not applied"
                )));
            }
            (EntryKind::Tombstone, _) | (_, Payload::None) => ("t", b""),
            (EntryKind::Value, Payload::String(p)) => ("s", p),
            (EntryKind::Value, Payload::Dump(p)) => ("r", p),
        };
        inv.key(&e.loc.key[..])
            .key(&e.loc.meta_key)
            .key(&e.loc.digest_key)
            .key(&e.loc.sub_digest_key);
        inv.arg(e.loc.digest_field.arg())
            .arg(e.loc.sub)
            .arg(e.meta.encode())
            .arg(mode)
            .arg(payload)
            .arg(e.meta.expires_at_ms.unwrap_or(0))
            .arg(e.cond.arg());
    }
    inv.arg(&*node.own_writes_channel(&entries[0].loc.key));
    let reply: Value = node
        .run_as(
            traffic,
            |mut c| async move { inv.invoke_async(&mut c).await },
        )
        .await?;
    let items = pairs(reply, "apply", entries.len())?;
    items
        .chunks(2)
        .map(|pair| {
            let stored = || {
                parse_meta(&pair[1])?
                    .ok_or_else(|| protocol("apply script omitted stored metadata"))
            };
            Ok(match &pair[0] {
                Value::Int(1) => Ok(WriteOutcome::Applied),
                Value::Int(0) => stored().map(WriteOutcome::Superseded),
                Value::Int(2) => stored().map(WriteOutcome::ConditionFailed),
                Value::Int(3) => Ok(WriteOutcome::ValueRestored),
                Value::Int(4) => stored().map(WriteOutcome::KindConflict),
                Value::Int(5) => parse_version(&pair[1]).map(WriteOutcome::Preempted),
                Value::Array(error) => Err(entry_failed(node, error)),
                other => return Err(protocol(format!("apply script returned code {other:?}"))),
            })
        })
        .collect()
}

/// The error a batch script reported for one entry, counted like a failed request.
fn entry_failed(node: &Node, error: &[Value]) -> NodeError {
    let err = entry_error(error);
    crate::events::NodeRequestFailed {
        node: &node.display,
        error: &err,
    }
    .emit();
    err
}

/// Reads the `{error text}` a batch script puts in an entry's place: the same `NodeError` the
/// entry would have met alone, because the text is parsed as the error reply it was.
fn entry_error(error: &[Value]) -> NodeError {
    match error {
        [Value::BulkString(text)] => {
            let reply = [b"-", text.as_slice(), b"\r\n"].concat();
            match redis::parse_redis_value(&reply) {
                Ok(Value::ServerError(e)) => crate::pool::classify(&e.into()),
                _ => {
                    NodeError::Server(ServerError::from_reply_text(&String::from_utf8_lossy(text)))
                }
            }
        }
        other => protocol(format!("batch script returned the error {other:?}")),
    }
}

/// Writes one string value or tombstone (a client write or a read repair).
pub async fn write(
    node: &Node,
    loc: &KeyLocation,
    meta: &Meta,
    value: &[u8],
    cond: &NodeCondition,
) -> Result<WriteOutcome, NodeError> {
    let entry = ApplyEntry {
        loc,
        meta,
        payload: Payload::String(value),
        cond: cond.clone(),
    };
    let mut outcomes = apply(node, std::slice::from_ref(&entry)).await?;
    outcomes
        .pop()
        .ok_or_else(|| protocol("apply script returned nothing"))
}

/// What a read asks of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadWanted {
    /// Metadata and string value (a client read).
    MetaAndValue,
    /// Metadata only (the version read of a two-phase write).
    MetaOnly,
}

/// Reads a batch of keys from one node. The outer error is a failure of the whole call;
/// otherwise each key has its answer, or its own error (WRONGTYPE: the key holds another type
/// on this node).
pub async fn read_each(
    node: &Node,
    reads: &[(&KeyLocation, ReadWanted)],
) -> Result<Vec<Result<NodeRead, NodeError>>, NodeError> {
    if reads.is_empty() {
        return Ok(Vec::new());
    }
    node.per_slot_each(
        reads,
        |(loc, _)| &loc.key[..],
        |group| async move { read_slot(node, &group).await },
    )
    .await
}

/// [`read_each`] for keys that share a slot when the node is a cluster.
async fn read_slot(
    node: &Node,
    reads: &[(&KeyLocation, ReadWanted)],
) -> Result<Vec<Result<NodeRead, NodeError>>, NodeError> {
    let mut inv = READ.prepare_invoke();
    for (loc, wanted) in reads {
        inv.key(&loc.key[..]).key(&loc.meta_key);
        inv.arg(match wanted {
            ReadWanted::MetaAndValue => "v",
            ReadWanted::MetaOnly => "m",
        });
    }
    let reply: Value = node
        .run(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    let items = pairs(reply, "read", reads.len())?;
    Ok(items
        .chunks(2)
        .map(|pair| match &pair[1] {
            Value::Array(error) => Err(entry_failed(node, error)),
            value => Ok(NodeRead {
                meta: parse_meta(&pair[0])?,
                value: parse_bytes(Some(value))?,
            }),
        })
        .collect())
}

/// A value as a typed read returns it. Not `Eq`: sorted-set scores are floats (never NaN).
#[derive(Debug, Clone, PartialEq)]
pub enum TypedValue {
    String(Vec<u8>),
    /// A list, head first.
    List(Vec<Vec<u8>>),
    /// A sorted set's members with their scores, in Redis's order (score, then member bytes).
    SortedSet(Vec<(Vec<u8>, f64)>),
    /// A hash's fields with their values, in the node's order.
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    /// A set's members, in the node's order.
    Set(Vec<Vec<u8>>),
    /// A stream: its entries with the IDs and counters it keeps beside them.
    Stream(Stream),
    /// A value whose contents were not read: another type, or any type in a type-only read.
    /// Holds the name `TYPE` answers.
    Only(String),
}

impl TypedValue {
    /// The name `TYPE` answers for this value.
    pub fn type_name(&self) -> &str {
        match self {
            TypedValue::String(_) => "string",
            TypedValue::List(_) => "list",
            TypedValue::SortedSet(_) => "zset",
            TypedValue::Hash(_) => "hash",
            TypedValue::Set(_) => "set",
            TypedValue::Stream(_) => "stream",
            TypedValue::Only(t) => t,
        }
    }

    /// The content checksum of a value whose contents were read.
    pub fn content(&self) -> Option<Content> {
        match self {
            TypedValue::String(v) => Some(Content::string(v)),
            TypedValue::List(items) => Some(Content::list(items.iter().map(Vec::as_slice))),
            TypedValue::Hash(fields) => Some(Content::hash(
                fields.iter().map(|(f, v)| (f.as_slice(), v.as_slice())),
            )),
            TypedValue::Set(members) => Some(Content::set(members.iter().map(Vec::as_slice))),
            TypedValue::SortedSet(members) => Some(Content::sorted_set(
                members.iter().map(|(m, s)| (m.as_slice(), *s)),
            )),
            TypedValue::Stream(stream) => Some(Content::stream(stream)),
            TypedValue::Only(_) => None,
        }
    }

    /// Whether this value is the one `content` records (a stream by the function of its
    /// letter); `None` for a value read by type only.
    pub fn matches(&self, content: &Content) -> Option<bool> {
        match self {
            TypedValue::Stream(stream) => Some(content.matches_stream(stream)),
            _ => self.content().map(|c| c == *content),
        }
    }
}

/// What a typed read asks of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypedWanted {
    /// The whole value of a string, a list (`LRANGE 0 -1`) or a sorted set (`ZRANGE 0 -1
    /// WITHSCORES`); other types by name only.
    Full,
    /// The type's name only (TYPE, EXISTS, TTL of a list): O(1) on the node.
    TypeOnly,
}

/// A node's answer to a typed read.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTypedRead {
    pub meta: Option<Meta>,
    pub value: Option<TypedValue>,
}

/// Reads metadata and typed values of a batch of keys from one node (`read_typed.lua`).
pub async fn read_typed(
    node: &Node,
    reads: &[(&KeyLocation, TypedWanted)],
) -> Result<Vec<NodeTypedRead>, NodeError> {
    if reads.is_empty() {
        return Ok(Vec::new());
    }
    let answers = node
        .per_slot(
            reads,
            |(loc, _)| &loc.key[..],
            |group| async move {
                let mut inv = READ_TYPED.prepare_invoke();
                for (loc, wanted) in &group {
                    inv.key(&loc.key[..]).key(&loc.meta_key);
                    inv.arg(match wanted {
                        TypedWanted::Full => "f",
                        TypedWanted::TypeOnly => "y",
                    });
                }
                let reply: Value = node
                    .run(|mut c| async move { inv.invoke_async(&mut c).await })
                    .await?;
                let items = pairs(reply, "typed read", group.len())?;
                Ok(items
                    .chunks(2)
                    .map(|pair| {
                        Ok(NodeTypedRead {
                            meta: parse_meta(&pair[0])?,
                            value: parse_typed(&pair[1])?,
                        })
                    })
                    .collect())
            },
        )
        .await?;
    answers.into_iter().collect()
}

/// A node's answer to a read-modify-write's prepare.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// The ballot is promised; the key as it stands.
    Promised(NodeTypedRead),
    /// The node had promised this ballot to another writer (or a higher one): it refused.
    Refused(Version),
}

/// Phase one of a read-modify-write of `loc`'s key on one node (`prepare.lua`): promises
/// `ballot` for `ttl_ms` unless a higher ballot was promised, and reads the key whole.
pub async fn prepare(
    node: &Node,
    loc: &KeyLocation,
    ballot: Version,
    ttl_ms: u64,
) -> Result<Prepared, NodeError> {
    let mut inv = PREPARE.prepare_invoke();
    inv.key(&loc.key[..])
        .key(&loc.meta_key)
        .arg(&ballot.to_bytes()[..])
        .arg(ttl_ms.max(1));
    let reply: Value = node
        .run(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    match &array(reply, "prepare")?[..] {
        [_, _, higher @ Value::BulkString(_)] => Ok(Prepared::Refused(parse_version(higher)?)),
        [meta, value, _] => Ok(Prepared::Promised(NodeTypedRead {
            meta: parse_meta(meta)?,
            value: parse_typed(value)?,
        })),
        other => Err(protocol(format!("prepare script returned {other:?}"))),
    }
}

/// Withdraws this node's promise of `ballot` for `loc`'s key, if it still holds it.
pub async fn release_promise(
    node: &Node,
    loc: &KeyLocation,
    ballot: Version,
) -> Result<(), NodeError> {
    let mut inv = RELEASE_PROMISE.prepare_invoke();
    inv.key(&loc.key[..])
        .key(&loc.meta_key)
        .arg(&ballot.to_bytes()[..]);
    let _: Value = node
        .run(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    Ok(())
}

/// One value of `read_typed.lua`'s reply: false, or {type, contents...}.
fn parse_typed(v: &Value) -> Result<Option<TypedValue>, NodeError> {
    let bad = || protocol(format!("typed read returned the value {v:?}"));
    let items = match v {
        Value::Nil | Value::Boolean(false) | Value::Int(0) => return Ok(None),
        Value::Array(items) => items,
        _ => return Err(bad()),
    };
    let bytes = |v: &Value| match v {
        Value::BulkString(b) => Ok(b.clone()),
        _ => Err(bad()),
    };
    let (first, rest) = items.split_first().ok_or_else(bad)?;
    let name = String::from_utf8(bytes(first)?).map_err(|_| bad())?;
    Ok(Some(match (name.as_str(), rest) {
        ("string", [value]) => TypedValue::String(bytes(value)?),
        ("list", elements) if !elements.is_empty() => {
            TypedValue::List(elements.iter().map(bytes).collect::<Result<_, _>>()?)
        }
        ("zset", pairs) if !pairs.is_empty() && pairs.len().is_multiple_of(2) => {
            TypedValue::SortedSet(
                pairs
                    .chunks(2)
                    .map(|p| Ok((bytes(&p[0])?, parse_score(&bytes(&p[1])?).ok_or_else(bad)?)))
                    .collect::<Result<_, _>>()?,
            )
        }
        ("hash", pairs) if !pairs.is_empty() && pairs.len().is_multiple_of(2) => TypedValue::Hash(
            pairs
                .chunks(2)
                .map(|p| Ok((bytes(&p[0])?, bytes(&p[1])?)))
                .collect::<Result<_, _>>()?,
        ),
        ("set", members) if !members.is_empty() => {
            TypedValue::Set(members.iter().map(bytes).collect::<Result<_, _>>()?)
        }
        ("stream", [last, max_deleted, added, entries @ ..]) => {
            let id = |v: &Value| StreamId::parse_plain(&bytes(v)?).ok_or_else(bad);
            let number = |v: &Value| {
                std::str::from_utf8(&bytes(v)?)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or_else(bad)
            };
            // Past 2^53 the counter reaches Lua as a double: read back rounded, and no higher
            // than Redis's `long long` can hold, so that the stream stays readable.
            let added = std::str::from_utf8(&bytes(added)?)
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|f| *f >= 0.0)
                .ok_or_else(bad)?;
            let mut stream = Stream {
                entries: Vec::new(),
                last_id: id(last)?,
                max_deleted: id(max_deleted)?,
                entries_added: (added as u64).min(i64::MAX as u64),
                groups: Default::default(),
            };
            let (groups, entries) = parse_groups(entries, &bytes).map_err(|()| bad())?;
            stream.groups = groups;
            let mut rest = entries;
            while let [entry_id, n, more @ ..] = rest {
                let n = usize::try_from(number(n)?).map_err(|_| bad())?;
                let pairs = more.get(..n.saturating_mul(2)).ok_or_else(bad)?;
                stream.entries.push(Entry {
                    id: id(entry_id)?,
                    fields: pairs
                        .chunks(2)
                        .map(|p| Ok((bytes(&p[0])?, bytes(&p[1])?)))
                        .collect::<Result<_, NodeError>>()?,
                });
                rest = &more[pairs.len()..];
            }
            if !rest.is_empty() {
                return Err(bad());
            }
            TypedValue::Stream(stream)
        }
        (_, []) => TypedValue::Only(name),
        _ => return Err(bad()),
    }))
}

/// The consumer groups of a typed read's stream (`typed_read.lua` describes the layout), and
/// what follows them (the entries).
#[allow(clippy::type_complexity)]
fn parse_groups<'a>(
    items: &'a [Value],
    bytes: &dyn Fn(&Value) -> Result<Vec<u8>, NodeError>,
) -> Result<(BTreeMap<Vec<u8>, Group>, &'a [Value]), ()> {
    let text = |v: &Value| bytes(v).map_err(|_| ());
    let number = |v: &Value| {
        let t = text(v)?;
        std::str::from_utf8(&t)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or(())
    };
    // Counters past 2^53 reach Lua as doubles: read back rounded (saturating at i64's ends),
    // not refused, so that the stream stays readable.
    let signed = |v: &Value| {
        let t = text(v)?;
        let t = std::str::from_utf8(&t).map_err(|_| ())?;
        t.parse::<i64>()
            .ok()
            .or_else(|| t.parse::<f64>().ok().map(|f| f as i64))
            .ok_or(())
    };
    let id = |v: &Value| StreamId::parse_plain(&text(v)?).ok_or(());
    let (count, mut rest) = items.split_first().ok_or(())?;
    let mut groups = BTreeMap::new();
    for _ in 0..number(count)? {
        let [name, last, read, pel, more @ ..] = rest else {
            return Err(());
        };
        let entries_read = if text(read)?.is_empty() {
            NO_ENTRIES_READ
        } else {
            signed(read)?
        };
        let mut g = Group::new(id(last)?, entries_read);
        rest = more;
        for _ in 0..number(pel)? {
            let [pid, consumer, time, deliveries, more @ ..] = rest else {
                return Err(());
            };
            g.pending.insert(
                id(pid)?,
                Pending {
                    consumer: text(consumer)?,
                    delivery_time: number(time)?,
                    // XINFO prints the count signed: past 2^63 it reads negative.
                    delivery_count: signed(deliveries)? as u64,
                },
            );
            rest = more;
        }
        let (consumers, more) = rest.split_first().ok_or(())?;
        rest = more;
        for _ in 0..number(consumers)? {
            let [cname, seen, more @ ..] = rest else {
                return Err(());
            };
            g.consumers.insert(
                text(cname)?,
                Consumer {
                    seen_time: number(seen)?,
                },
            );
            rest = more;
        }
        groups.insert(text(name)?, g);
    }
    Ok((groups, rest))
}

/// A score as the node printed it (`%.17g`, `inf`, `-inf`): that text parses back to the
/// exact double. NaN never comes from Redis and is refused.
fn parse_score(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|s| !s.is_nan())
}

/// Runs a script whose KEYS are, per key, the value key and its metadata hash, and whose
/// reply holds `width` items per key: those items, one `Vec` per key, in the order of `locs`.
async fn per_key(
    node: &Node,
    traffic: Traffic,
    (script, what): (&Script, &str),
    locs: &[&KeyLocation],
    width: usize,
    args: &[&str],
) -> Result<Vec<Vec<Value>>, NodeError> {
    node.per_slot(
        locs,
        |l| &l.key[..],
        |group| async move {
            let mut inv = script.prepare_invoke();
            for l in &group {
                inv.key(&l.key[..]).key(&l.meta_key);
            }
            for a in args {
                inv.arg(*a);
            }
            let reply = node
                .run_as(
                    traffic,
                    |mut c| async move { inv.invoke_async(&mut c).await },
                )
                .await?;
            let items = array(reply, what)?;
            if items.len() != group.len() * width {
                return Err(protocol(format!(
                    "{what} script returned {} items for {} keys",
                    items.len(),
                    group.len()
                )));
            }
            let mut items = items.into_iter();
            // Moved, not copied: a sweep dumps millions of values.
            Ok((0..group.len())
                .map(|_| items.by_ref().take(width).collect())
                .collect())
        },
    )
    .await
}

/// Reads metadata and `DUMP` payloads of a batch of keys from one node.
pub async fn dump(node: &Node, locs: &[&KeyLocation]) -> Result<Vec<NodeDump>, NodeError> {
    if locs.is_empty() {
        return Ok(Vec::new());
    }
    per_key(node, Traffic::Background, (&DUMP, "dump"), locs, 2, &[])
        .await?
        .into_iter()
        .map(|pair| {
            let [meta, dump] = <[Value; 2]>::try_from(pair).expect("two items per key");
            Ok(NodeDump {
                meta: parse_meta(&meta)?,
                dump: match dump {
                    Value::BulkString(b) => Some(b),
                    other => parse_bytes(Some(&other))?,
                },
            })
        })
        .collect()
}

/// How a node's value differs from what its own metadata records (see [`verify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mismatch {
    /// Another value of the same type, or a value written over a tombstone.
    Changed,
    /// The value is gone though its metadata says it is live.
    Deleted,
    /// The value is intact but its expiry is not the recorded one.
    Ttl,
    /// The key holds another Redis type.
    Type,
    /// A value without metadata: created outside quorumd.
    Unversioned,
    /// A CRDT key's state hash is not the state its entry hash sums (found by the scrub's
    /// `calls::crdt::verify_states`, not by [`verify`]).
    State,
}

impl Mismatch {
    pub const ALL: [Mismatch; 6] = [
        Mismatch::Changed,
        Mismatch::Deleted,
        Mismatch::Ttl,
        Mismatch::Type,
        Mismatch::Unversioned,
        Mismatch::State,
    ];

    /// The label in metrics, reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mismatch::Changed => "changed",
            Mismatch::Deleted => "deleted",
            Mismatch::Ttl => "ttl",
            Mismatch::Type => "type",
            Mismatch::Unversioned => "unversioned",
            Mismatch::State => "state",
        }
    }
}

/// One key's verdict from [`verify`]: `None` when the value is the one recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub mismatch: Option<Mismatch>,
    pub meta: Option<Meta>,
}

/// Checks each key's value against the node's own metadata, on the node: only key names cross
/// the wire.
pub async fn verify(
    node: &Node,
    traffic: Traffic,
    locs: &[&KeyLocation],
) -> Result<Vec<Verified>, NodeError> {
    if locs.is_empty() {
        return Ok(Vec::new());
    }
    per_key(node, traffic, (&VERIFY, "verify"), locs, 2, &[])
        .await?
        .iter()
        .map(|pair| {
            Ok(Verified {
                mismatch: verify_code(&pair[0])?,
                meta: parse_meta(&pair[1])?,
            })
        })
        .collect()
}

/// A verdict code of `verify_entry` (lua/shared/verify_entry.lua).
fn verify_code(code: &Value) -> Result<Option<Mismatch>, NodeError> {
    Ok(match code {
        Value::Int(0) => None,
        Value::Int(1) => Some(Mismatch::Changed),
        Value::Int(2) => Some(Mismatch::Deleted),
        Value::Int(3) => Some(Mismatch::Ttl),
        Value::Int(4) => Some(Mismatch::Type),
        Value::Int(5) => Some(Mismatch::Unversioned),
        other => return Err(protocol(format!("verify script returned code {other:?}"))),
    })
}

/// An entry [`verify_hashes`] found not intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotIntact {
    pub key: Vec<u8>,
    pub mismatch: Mismatch,
    pub meta: Meta,
}

/// The scrub's check of whole metadata hashes on one node: every entry's value against the
/// entry, as [`verify`] checks one key, with only the hashes' names sent and only what is not
/// intact answered. Returns those entries and how many were checked. On a Redis Cluster, one
/// call per slot (a bucket's hashes and keys share its slot).
pub async fn verify_hashes(
    node: &Node,
    meta_keys: &[String],
) -> Result<(Vec<NotIntact>, u64), NodeError> {
    if meta_keys.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let answers = node
        .per_slot_groups(
            meta_keys,
            |k| k.as_str(),
            |group| async move {
                let mut inv = VERIFY_HASHES.prepare_invoke();
                for k in &group {
                    inv.key(k);
                }
                let reply = node
                    .run_as(Traffic::Background, |mut c| async move {
                        inv.invoke_async(&mut c).await
                    })
                    .await?;
                parse_not_intact(array(reply, "verify_hashes")?)
            },
        )
        .await?;
    let mut found = Vec::new();
    let mut checked = 0;
    for (f, n) in answers {
        found.extend(f);
        checked += n;
    }
    Ok((found, checked))
}

/// `{key, code, entry}` per entry not intact, then the count checked.
fn parse_not_intact(mut items: Vec<Value>) -> Result<(Vec<NotIntact>, u64), NodeError> {
    let checked = match items.pop() {
        Some(Value::Int(n)) if n >= 0 && items.len().is_multiple_of(3) => n as u64,
        other => {
            return Err(protocol(format!(
                "verify_hashes script ended with {other:?} after {} items",
                items.len()
            )));
        }
    };
    let mut found = Vec::with_capacity(items.len() / 3);
    let mut items = items.into_iter();
    while let (Some(key), Some(code), Some(meta)) = (items.next(), items.next(), items.next()) {
        let mismatch = verify_code(&code)?
            .ok_or_else(|| protocol("verify_hashes script answered an intact entry"))?;
        let meta =
            parse_meta(&meta)?.ok_or_else(|| protocol("verify_hashes script answered no entry"))?;
        found.push(NotIntact {
            key: parse_bytes(Some(&key))?
                .ok_or_else(|| protocol("verify_hashes script answered no key"))?,
            mismatch,
            meta,
        });
    }
    Ok((found, checked))
}

/// A value as it stands on one node, with what adopting it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub meta: Option<Meta>,
    /// `None` when the key holds no value.
    pub dump: Option<Vec<u8>>,
    pub content: Content,
    pub expires_at_ms: Option<u64>,
}

/// Reads each key's metadata, DUMP, content and expiry from one node, atomically per key; a
/// stream's content by the function `stream` names (what a new entry for it records).
pub async fn capture(
    node: &Node,
    locs: &[&KeyLocation],
    stream: StreamChecksum,
) -> Result<Vec<Captured>, NodeError> {
    if locs.is_empty() {
        return Ok(Vec::new());
    }
    let code = stream.code().to_string();
    per_key(
        node,
        Traffic::Background,
        (&CAPTURE, "capture"),
        locs,
        4,
        &[&code],
    )
    .await?
    .iter()
    .map(|c| {
        let content = match &c[2] {
            Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(Content::parse),
            _ => None,
        }
        .ok_or_else(|| protocol(format!("capture script returned content {:?}", c[2])))?;
        let expiry = match &c[3] {
            Value::Int(ms) => u64::try_from(*ms).unwrap_or(0),
            other => {
                return Err(protocol(format!(
                    "capture script returned expiry {other:?}"
                )));
            }
        };
        Ok(Captured {
            meta: parse_meta(&c[0])?,
            dump: parse_bytes(Some(&c[1]))?,
            content,
            expires_at_ms: (expiry > 0).then_some(expiry),
        })
    })
    .collect()
}

/// Removes metadata entries that still equal `expected`; returns how many were removed.
pub async fn purge(node: &Node, entries: &[(&KeyLocation, &Meta)]) -> Result<u64, NodeError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let purged = node
        .per_slot_groups(
            entries,
            |(loc, _)| &loc.key[..],
            |group| async move {
                let mut inv = PURGE.prepare_invoke();
                for (loc, meta) in &group {
                    inv.key(&loc.key[..])
                        .key(&loc.meta_key)
                        .key(&loc.digest_key)
                        .key(&loc.sub_digest_key);
                    inv.arg(loc.digest_field.arg())
                        .arg(loc.sub)
                        .arg(meta.encode());
                }
                inv.arg(&*node.own_writes_channel(&group[0].0.key));
                node.run_as(Traffic::Background, |mut c| async move {
                    inv.invoke_async::<u64>(&mut c).await
                })
                .await
            },
        )
        .await?;
    Ok(purged.into_iter().sum())
}

/// Where one bucket's digests and metadata live on a node, for [`rebuild_digests`].
#[derive(Debug, Clone)]
pub struct BucketDigestKeys {
    pub bucket: u32,
    /// The key holding the bucket's digest, where `digest_field` says.
    pub digest_key: String,
    pub digest_field: DigestField,
    /// The bucket's sub-digest hash.
    pub sub_digest_key: String,
    /// Its S sub-bucket metadata hashes, in sub-bucket order.
    pub meta_keys: Vec<String>,
}

/// Recomputes both digest levels of `buckets` from their metadata; returns the buckets that
/// drifted. Every bucket has the same number of sub-buckets, `sub_buckets`.
pub async fn rebuild_digests(
    node: &Node,
    sub_buckets: u32,
    buckets: &[BucketDigestKeys],
) -> Result<Vec<u32>, NodeError> {
    let drifted = node
        .per_slot_groups(
            buckets,
            |b| b.digest_key.as_str(),
            |group| async move { rebuild_slot_digests(node, sub_buckets, &group).await },
        )
        .await?;
    Ok(drifted.into_iter().flatten().collect())
}

/// [`rebuild_digests`] for buckets that share a slot when the node is a cluster.
async fn rebuild_slot_digests(
    node: &Node,
    sub_buckets: u32,
    buckets: &[BucketDigestKeys],
) -> Result<Vec<u32>, NodeError> {
    let mut inv = REBUILD_DIGESTS.prepare_invoke();
    inv.arg(sub_buckets);
    for b in buckets {
        if b.meta_keys.len() != sub_buckets as usize {
            return Err(protocol(format!(
                "bucket {} given {} metadata hashes for {sub_buckets} sub-buckets",
                b.bucket,
                b.meta_keys.len()
            )));
        }
        inv.key(&b.digest_key).key(&b.sub_digest_key);
        for k in &b.meta_keys {
            inv.key(k);
        }
        inv.arg(b.bucket).arg(b.digest_field.arg());
    }
    node.run_as(Traffic::Background, |mut c| async move {
        inv.invoke_async(&mut c).await
    })
    .await
}

/// A node's key count less quorumd's own keys: the digest hashes, the sentinel and its
/// records, the layout marker, the live detection's probe key, each bucket's sub-digest hash
/// and its sub-bucket metadata hashes (one per sub-bucket with a non-zero digest). Leases,
/// hints and sweep checkpoints are few and not subtracted. O(B × S) field reads, which is what
/// an exact count of the metadata hashes costs without a counter on the write path.
const USER_KEYS_LUA: &str = include_str!("../../lua/store/user_keys.lua");

static USER_KEYS: LazyLock<Script> = LazyLock::new(|| Script::new(USER_KEYS_LUA));

/// The number of user keys on one node (see `USER_KEYS_LUA`): `singles` are quorumd's keys
/// subtracted when they exist, `sub_digest_keys` every bucket's sub-digest hash.
pub async fn user_key_count(
    node: &Node,
    singles: &[String],
    sub_digest_keys: &[String],
) -> Result<i64, NodeError> {
    if !node.is_cluster() {
        let mut inv = USER_KEYS.prepare_invoke();
        for k in singles.iter().chain(sub_digest_keys) {
            inv.key(k);
        }
        inv.arg(singles.len());
        return node
            .run(|mut c| async move { inv.invoke_async::<i64>(&mut c).await })
            .await;
    }
    // A cluster: every master's DBSIZE, less quorumd's keys, counted as the script counts
    // them but from one pipeline per master (a script per slot would be 16,384 calls), so
    // not atomically: a write between the two reads can skew the count by its keys.
    let mut pipe = redis::pipe();
    for k in singles {
        pipe.cmd("EXISTS").arg(k);
    }
    for k in sub_digest_keys {
        pipe.cmd("HVALS").arg(k);
    }
    let (exist, subs): (Vec<i64>, Vec<Vec<Vec<u8>>>) = node
        .run(|mut c| async move {
            let answers: Vec<Value> = pipe.query_async(&mut c).await?;
            let (e, s) = answers.split_at(singles.len());
            Ok((
                redis::FromRedisValue::from_redis_value(Value::Array(e.to_vec()))?,
                redis::FromRedisValue::from_redis_value(Value::Array(s.to_vec()))?,
            ))
        })
        .await?;
    let own: i64 = exist.iter().sum::<i64>()
        + subs
            .iter()
            .map(|digests| {
                let hashes = digests.iter().filter(|d| d.as_slice() != b"0").count();
                i64::from(!digests.is_empty()) + hashes as i64
            })
            .sum::<i64>();
    let sizes = node
        .run(|mut c| async move { c.on_every_master(&redis::cmd("DBSIZE")).await })
        .await?;
    let mut total = -own;
    for (_, size) in sizes {
        total += <i64 as redis::FromRedisValue>::from_redis_value(size)
            .map_err(|e| protocol(e.to_string()))?;
    }
    Ok(total.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::ServerErrorKind;

    #[test]
    fn a_stream_reads_back_with_its_entries_and_counters() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            b("stream"),
            b("9-9"),
            b("2-1"),
            b("12"),
            // One group: unknown entries-read, one pending entry, one consumer.
            b("1"),
            b("g"),
            b("1-1"),
            b(""),
            b("1"),
            b("1-1"),
            b("alice"),
            b("1700000000000"),
            b("2"),
            b("1"),
            b("alice"),
            b("1700000000001"),
            b("1-1"),
            b("2"),
            b("a"),
            b("1"),
            b("b"),
            b(""),
            b("3-1"),
            b("1"),
            b("c"),
            b("x"),
        ]);
        let Some(TypedValue::Stream(s)) = parse_typed(&reply).unwrap() else {
            panic!("not a stream");
        };
        assert_eq!(s.last_id, StreamId::new(9, 9));
        assert_eq!(s.max_deleted, StreamId::new(2, 1));
        assert_eq!(s.entries_added, 12);
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries[0].fields[1], (b"b".to_vec(), Vec::new()));
        let g = &s.groups[&b"g"[..]];
        assert_eq!(g.entries_read, NO_ENTRIES_READ);
        assert_eq!(g.pending[&StreamId::new(1, 1)].delivery_count, 2);
        assert_eq!(g.pending_of(b"alice").count(), 1);
        assert_eq!(g.consumers[&b"alice"[..]].seen_time, 1_700_000_000_001);
        // A type-only read names the type; a cut-short entry is refused, not a panic.
        let only = Value::Array(vec![b("stream")]);
        assert_eq!(
            parse_typed(&only).unwrap(),
            Some(TypedValue::Only("stream".into()))
        );
        let short = Value::Array(vec![
            b("stream"),
            b("1-1"),
            b("0-0"),
            b("1"),
            b("0"),
            b("1-1"),
            b("3"),
            b("a"),
        ]);
        assert!(parse_typed(&short).is_err());
        let bad = Value::Array(vec![b("stream"), b("x"), b("0-0"), b("1")]);
        assert!(parse_typed(&bad).is_err());
    }

    #[test]
    fn an_entry_error_is_the_error_a_lone_call_would_get() {
        let text = "WRONGTYPE Operation against a key holding the wrong kind of value";
        let lone = match redis::parse_redis_value(format!("-{text}\r\n").as_bytes()) {
            Ok(Value::ServerError(e)) => crate::pool::classify(&e.into()),
            other => panic!("{other:?}"),
        };
        assert_eq!(lone.server_kind(), Some(&ServerErrorKind::WrongType));
        let entry = entry_error(&[Value::BulkString(text.as_bytes().to_vec())]);
        assert_eq!(entry, lone);
        assert!(matches!(
            entry_error(&[Value::Int(1), Value::Int(2)]),
            NodeError::Protocol(_)
        ));
    }
}
