//! The versioned store's scripts and the per-node calls that run them.
//!
//! Every mutation goes through one script, `APPLY`, that writes values, metadata and bucket
//! digests atomically and applies an entry only if its version is newer than the stored one.
//! Client writes (one entry), read repair and the anti-entropy sweep (batches of entries) share
//! that one rule, so a repair can never overwrite a newer write and repeating one is harmless.

use super::{
    array, clock_lua, content_lua, digest_lua, entry_lua, eval_cmd, own_writes_lua, parse_bytes,
    parse_meta, parse_version, promise_lua, protocol, run_eval, typed_read_lua, verify_entry_lua,
};
use crate::pool::{Node, NodeError, ServerError, Traffic};
use quorumd_core::content::{Content, StreamChecksum};
use quorumd_core::hlc::Version;
use quorumd_core::layout::DigestField;
use quorumd_core::meta::{EntryKind, Meta};
use redis::{Script, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

mod typed;
mod upkeep;
mod verify;

pub use typed::*;
pub use upkeep::*;
pub use verify::*;

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
    own_writes_lua!(include_str!("../../../lua/store/apply.lua"))
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
    include_str!("../../../lua/store/read.lua")
);

/// Phase one of a read-modify-write: promises a ballot for one key and reads it whole; see
/// `prepare.lua`. Writes (the promise), so it runs on masters only.
const PREPARE_LUA: &str = concat!(
    "#!lua\n",
    entry_lua!(),
    promise_lua!(),
    typed_read_lua!(),
    include_str!("../../../lua/store/prepare.lua")
);

/// Withdraws a read-modify-write's promise that no write will follow; see
/// `release_promise.lua`.
const RELEASE_PROMISE_LUA: &str = concat!(
    "#!lua\n",
    promise_lua!(),
    include_str!("../../../lua/store/release_promise.lua")
);

/// Reads metadata and a DUMP of the value for a batch of keys, of any Redis type.
/// KEYS: per key the value key and its bucket metadata hash. Returns `{meta, dump}` per key,
/// each `false` when absent.
const DUMP_LUA: &str = include_str!("../../../lua/store/dump.lua");

static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(APPLY_LUA));
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_LUA));
static PREPARE: LazyLock<Script> = LazyLock::new(|| Script::new(PREPARE_LUA));
static RELEASE_PROMISE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_PROMISE_LUA));
static DUMP: LazyLock<Script> = LazyLock::new(|| Script::new(DUMP_LUA));

/// Where a key, its metadata and its digests live on every node: the one place that says so
/// (built by `VersionedStore::locate`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyLocation {
    pub key: Vec<u8>,
    /// The metadata hash of the key's sub-bucket. The names are shared (`Arc`): a request
    /// takes them from the store's table instead of formatting its own.
    pub meta_key: Arc<str>,
    /// The key holding the bucket's digest, where `digest_field` says.
    pub digest_key: Arc<str>,
    pub digest_field: DigestField,
    /// The bucket's sub-digest hash (field = sub-bucket).
    pub sub_digest_key: Arc<str>,
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
    let mut cmd = eval_cmd(&APPLY, 4 * entries.len());
    let mut modes: Vec<(&str, &[u8])> = Vec::with_capacity(entries.len());
    for e in entries {
        modes.push(match (e.meta.kind, e.payload) {
            (EntryKind::Crdt(k), _) => {
                return Err(protocol(format!(
                    "a {k} entry is merged by the CRDT script, not applied"
                )));
            }
            (EntryKind::Tombstone, _) | (_, Payload::None) => ("t", b""),
            (EntryKind::Value, Payload::String(p)) => ("s", p),
            (EntryKind::Value, Payload::Dump(p)) => ("r", p),
        });
        cmd.arg(&e.loc.key[..])
            .arg(&*e.loc.meta_key)
            .arg(&*e.loc.digest_key)
            .arg(&*e.loc.sub_digest_key);
    }
    for (e, (mode, payload)) in entries.iter().zip(modes) {
        cmd.arg(e.loc.digest_field.arg())
            .arg(e.loc.sub)
            .arg(e.meta.encode())
            .arg(mode)
            .arg(payload)
            .arg(e.meta.expires_at_ms.unwrap_or(0))
            .arg(e.cond.arg());
    }
    cmd.arg(&*node.own_writes_channel(&entries[0].loc.key));
    let reply = run_eval(node, traffic, APPLY_LUA, cmd).await?;
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
    let mut cmd = eval_cmd(&READ, 2 * reads.len());
    for (loc, _) in reads {
        cmd.arg(&loc.key[..]).arg(&*loc.meta_key);
    }
    for (_, wanted) in reads {
        cmd.arg(match wanted {
            ReadWanted::MetaAndValue => "v",
            ReadWanted::MetaOnly => "m",
        });
    }
    let reply = run_eval(node, Traffic::Client, READ_LUA, cmd).await?;
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
        .key(&*loc.meta_key)
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
        .key(&*loc.meta_key)
        .arg(&ballot.to_bytes()[..]);
    let _: Value = node
        .run(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    Ok(())
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
                inv.key(&l.key[..]).key(&*l.meta_key);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::ServerErrorKind;

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
