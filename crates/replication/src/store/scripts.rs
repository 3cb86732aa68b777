//! The server-side Lua scripts and the per-node calls that run them.
//!
//! Every mutation goes through one script, `APPLY`, that writes values, metadata and bucket
//! digests atomically and applies an entry only if its version is newer than the stored one.
//! Client writes (one entry), read repair and the anti-entropy sweep (batches of entries) share
//! that one rule, so a repair can never overwrite a newer write and repeating one is harmless.
//! Scripts run by EVALSHA; `redis::Script` reloads them on NOSCRIPT (after a node restart or a
//! SCRIPT FLUSH). The `#!lua` shebang (Redis 7+) makes Redis refuse a writing script up front
//! under OOM or on a read-only replica, instead of failing halfway through.

use quorumd_core::hlc::Version;
use quorumd_core::meta::{EntryKind, Meta};
use quorumd_node::pool::{Node, NodeError, ServerError, Traffic};
use redis::{Script, Value};
use std::sync::LazyLock;

/// Lua shared by every script that changes digests: the modulus and `add_digest(hash, field,
/// delta)`, which adds `delta` (in (-2^48, 2^48)) to a digest field mod 2^48 (a missing field is
/// 0). Every intermediate value stays below 2^50, so doubles compute it exactly, and
/// `%.0f` prints it in full (`tostring` would round to 14 digits). A macro, not a `const`, so
/// that `concat!` can splice it into each script's literal.
macro_rules! digest_lua {
    () => {
        r#"
local M = 281474976710656
local function add_digest(hash, field, delta)
  local d = tonumber(redis.call('HGET', hash, field) or '0')
  redis.call('HSET', hash, field, string.format('%.0f', (d + delta) % M))
end
"#
    };
}
pub(crate) use digest_lua;

/// Lua: `clock()`, the node's time in ms (`TIME`), read at most once per script call.
macro_rules! clock_lua {
    () => {
        r#"
local now = nil
local function clock()
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end
"#
    };
}
pub(crate) use clock_lua;

/// Applies a batch of versioned entries.
///
/// KEYS: the bucket digest hash, then per entry the value key, its sub-bucket metadata hash and
/// its bucket's sub-digest hash.
/// ARGV, seven per entry: bucket (field of the digest hash), sub-bucket (field of the sub-digest
/// hash), encoded metadata, mode (`s` SET the payload as a string, `r` RESTORE the payload as a
/// DUMP, `t` tombstone), payload, absolute expiry in ms (0 = none), condition (`''` none, `-`
/// the key must have no metadata, otherwise a version the stored one must not be newer than).
/// Returns, per entry, a code and the stored metadata (or `''`): 1 applied; 0 the same or a
/// newer version is stored; 2 the condition failed; 3 the same version was stored but its value
/// had vanished, and was restored; 4 the key is a CRDT (its state merges, see
/// `store/crdt_scripts.rs`), which a versioned write must not overwrite. An entry whose value
/// command failed (e.g. a RESTORE of a corrupt DUMP) has `{error text}` in place of its code and
/// changed nothing; the other entries are unaffected.
const APPLY_LUA: &str = concat!(
    "#!lua\n",
    digest_lua!(),
    clock_lua!(),
    r#"
local out = {}
-- Digest deltas, accumulated per field and applied once: bucket -> delta, and
-- sub-digest hash -> sub-bucket -> delta.
local deltas, sub_deltas = {}, {}
local crdt_kinds = {C = true, S = true, M = true}
-- redis.pcall: a command that fails (a RESTORE of a bad payload) fails only its own entry,
-- whose error text, in a one-item array, takes the place of its code (a nested error reply
-- would fail the whole call on the client); the other entries of the batch still apply.
local function store_value(key, mode, payload, expiry)
  if mode == 't' or (mode == 'r' and payload == '') or (expiry > 0 and expiry <= clock()) then
    return redis.pcall('DEL', key)
  elseif mode == 'r' then
    return redis.pcall('RESTORE', key, expiry, payload, 'REPLACE', 'ABSTTL')
  elseif expiry > 0 then
    return redis.pcall('SET', key, payload, 'PXAT', expiry)
  else
    return redis.pcall('SET', key, payload)
  end
end
local function failed(reply)
  return type(reply) == 'table' and reply.err ~= nil
end
for i = 0, (#KEYS - 1) / 3 - 1 do
  local key, mkey, skey = KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i]
  local a = 7 * i
  local bucket, sub, meta, mode = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local payload, expiry, cond = ARGV[a + 5], tonumber(ARGV[a + 6]), ARGV[a + 7]
  local version = string.sub(meta, 1, 34)
  local cur = redis.call('HGET', mkey, key)
  local code, cur_hash = 1, 0
  if cur then
    local cur_version = string.sub(cur, 1, 34)
    if crdt_kinds[string.sub(cur, 36, 36)] then
      code = 4
    elseif cur_version == version then
      -- A retry, or a repair that already landed. A sweep may bring back a value that vanished
      -- under its metadata (evicted, deleted behind quorumd's back).
      code = 0
      if mode == 'r' and redis.call('EXISTS', key) == 0 and (expiry == 0 or expiry > clock()) then
        local reply = store_value(key, mode, payload, expiry)
        code = failed(reply) and reply or 3
      end
    elseif cond == '-' or (cond ~= '' and cur_version > cond) then
      -- A conditional write that finds anything newer than it expected has lost, even when
      -- that is older than itself: else two concurrent compare-and-sets could both win.
      code = 2
    elseif cur_version > version then
      code = 0
    else
      cur_hash = tonumber(string.match(cur, "|(%d+)$")) or 0
    end
  end
  if code == 1 then
    local reply = store_value(key, mode, payload, expiry)
    if failed(reply) then code = reply end
  end
  if code == 1 then
    redis.call('HSET', mkey, key, meta)
    local new_hash = tonumber(string.match(meta, "|(%d+)$"))
    -- Reduced at every step so the sum stays exact in a double.
    deltas[bucket] = ((deltas[bucket] or 0) - cur_hash + new_hash) % M
    local subs = sub_deltas[skey] or {}
    sub_deltas[skey] = subs
    subs[sub] = ((subs[sub] or 0) - cur_hash + new_hash) % M
    out[#out + 1] = 1
    out[#out + 1] = ''
  elseif failed(code) then
    out[#out + 1] = {code.err}
    out[#out + 1] = ''
  else
    out[#out + 1] = code
    out[#out + 1] = cur
  end
end
-- One digest update per bucket and per sub-bucket touched, not per entry.
for bucket, delta in pairs(deltas) do
  add_digest(KEYS[1], bucket, delta)
end
for skey, subs in pairs(sub_deltas) do
  for sub, delta in pairs(subs) do
    add_digest(skey, sub, delta)
  end
end
return out
"#
);

/// Reads metadata, and the string value where asked, for a batch of keys; each key's metadata
/// and value are consistent with each other.
/// KEYS: per key the value key and its bucket metadata hash. ARGV: per key `v` (metadata and
/// value) or `m` (metadata only). Returns `{meta or false, value or false}` per key.
/// `no-writes` lets it run under OOM and on replicas.
/// A CRDT key's value is not read: a set or map would answer WRONGTYPE. A key holding another
/// type has `{error text}` in its value's place (`redis.pcall`), failing that key only, not the
/// other keys of the batch (a nested error reply would fail the whole call on the client).
const READ_LUA: &str = r#"#!lua flags=no-writes
local out = {}
local crdt_kinds = {C = true, S = true, M = true}
for i = 1, #KEYS, 2 do
  local key = KEYS[i]
  local meta = redis.call('HGET', KEYS[i + 1], key)
  local value = false
  if ARGV[(i + 1) / 2] == 'v' and not (meta and crdt_kinds[string.sub(meta, 36, 36)]) then
    value = redis.pcall('GET', key)
    if type(value) == 'table' and value.err then value = {value.err} end
  end
  out[#out + 1] = meta
  out[#out + 1] = value
end
return out
"#;

/// Reads metadata and a DUMP of the value for a batch of keys, of any Redis type.
/// KEYS: per key the value key and its bucket metadata hash. Returns `{meta, dump}` per key,
/// each `false` when absent.
const DUMP_LUA: &str = r#"#!lua flags=no-writes
local out = {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = redis.call('HGET', KEYS[i + 1], KEYS[i])
  out[#out + 1] = redis.call('DUMP', KEYS[i])
end
return out
"#;

/// Removes metadata entries that are exactly as expected (purged tombstones, long-expired
/// values), keeping both digest levels in step. KEYS: the bucket digest hash, then per entry
/// the value key, its sub-bucket metadata hash and its bucket's sub-digest hash. ARGV, three
/// per entry: bucket, sub-bucket, the expected encoded metadata.
/// Returns how many entries were removed.
const PURGE_LUA: &str = concat!(
    "#!lua\n",
    digest_lua!(),
    r#"
local removed = 0
for i = 0, (#KEYS - 1) / 3 - 1 do
  local key, mkey, skey = KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i]
  local bucket, sub, expected = ARGV[1 + 3 * i], ARGV[2 + 3 * i], ARGV[3 + 3 * i]
  if redis.call('HGET', mkey, key) == expected then
    redis.call('HDEL', mkey, key)
    if string.sub(expected, 36, 36) == 'v' then redis.call('DEL', key) end
    local hash = tonumber(string.match(expected, "|(%d+)$"))
    add_digest(KEYS[1], bucket, -hash)
    add_digest(skey, sub, -hash)
    removed = removed + 1
  end
end
return removed
"#
);

/// Recomputes both digest levels of a batch of buckets from their metadata and fixes the
/// fields that drifted. KEYS: the bucket digest hash, then per bucket its sub-digest hash
/// followed by its S sub-bucket metadata hashes. ARGV: S, then the buckets, in the same order.
/// Returns the buckets where the bucket digest or any sub-digest was wrong.
const REBUILD_DIGESTS_LUA: &str = concat!(
    "#!lua\n",
    digest_lua!(),
    r#"
local S = tonumber(ARGV[1])
local fixed = {}
-- Writes `sum` into a digest field if it differs (a missing field is 0); true if it did.
local function fix(hash, field, sum)
  local new = string.format('%.0f', sum)
  if (redis.call('HGET', hash, field) or '0') == new then return false end
  redis.call('HSET', hash, field, new)
  return true
end
for i = 2, #ARGV do
  local bucket = ARGV[i]
  local k = 2 + (i - 2) * (S + 1)
  local skey = KEYS[k]
  local total, drifted = 0, false
  for sub = 0, S - 1 do
    local entries = redis.call('HGETALL', KEYS[k + 1 + sub])
    local sum = 0
    for j = 2, #entries, 2 do
      sum = (sum + (tonumber(string.match(entries[j], "|(%d+)$")) or 0)) % M
    end
    total = (total + sum) % M
    drifted = fix(skey, sub, sum) or drifted
  end
  drifted = fix(KEYS[1], bucket, total) or drifted
  if drifted then fixed[#fixed + 1] = bucket end
end
return fixed
"#
);

static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(APPLY_LUA));
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_LUA));
static DUMP: LazyLock<Script> = LazyLock::new(|| Script::new(DUMP_LUA));
static PURGE: LazyLock<Script> = LazyLock::new(|| Script::new(PURGE_LUA));
static REBUILD_DIGESTS: LazyLock<Script> = LazyLock::new(|| Script::new(REBUILD_DIGESTS_LUA));

/// Where a key, its metadata and its digests live on every node: the one place that says so
/// (built by `VersionedStore::locate`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyLocation {
    pub key: Vec<u8>,
    /// The metadata hash of the key's sub-bucket, `{prefix}m:{bucket}:{sub}`.
    pub meta_key: String,
    /// The bucket digest hash, `{prefix}d` (field = bucket).
    pub digest_key: String,
    /// The bucket's sub-digest hash, `{prefix}d:{bucket}` (field = sub-bucket).
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
}

impl NodeCondition {
    fn arg(&self) -> String {
        match self {
            NodeCondition::None => String::new(),
            NodeCondition::Absent => "-".into(),
            NodeCondition::NotNewerThan(v) => v.encode(),
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
}

impl WriteOutcome {
    /// The node now holds the written version or a newer one.
    pub fn holds_version(&self) -> bool {
        !matches!(
            self,
            WriteOutcome::ConditionFailed(_) | WriteOutcome::KindConflict(_)
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

pub(super) fn protocol(msg: impl Into<String>) -> NodeError {
    NodeError::Protocol(msg.into())
}

fn parse_meta(v: &Value) -> Result<Option<Meta>, NodeError> {
    match v {
        Value::Nil | Value::Int(0) | Value::Boolean(false) => Ok(None),
        Value::BulkString(b) if b.is_empty() => Ok(None),
        Value::BulkString(b) => Meta::parse(b)
            .map(Some)
            .map_err(|e| protocol(e.to_string())),
        other => Err(protocol(format!("metadata of unexpected type {other:?}"))),
    }
}

pub(super) fn parse_bytes(v: Option<&Value>) -> Result<Option<Vec<u8>>, NodeError> {
    match v {
        Some(Value::BulkString(b)) => Ok(Some(b.clone())),
        Some(Value::Nil | Value::Int(0) | Value::Boolean(false)) | None => Ok(None),
        Some(other) => Err(protocol(format!("value of unexpected type {other:?}"))),
    }
}

pub(super) fn array(reply: Value, what: &str) -> Result<Vec<Value>, NodeError> {
    match reply {
        Value::Array(items) => Ok(items),
        other => Err(protocol(format!("{what} script returned {other:?}"))),
    }
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
    digest_key: &str,
    entries: &[ApplyEntry<'_>],
) -> Result<Vec<WriteOutcome>, NodeError> {
    apply_as(node, Traffic::Client, digest_key, entries).await
}

/// `apply` for the given kind of traffic (sweep repairs are `Background`).
pub async fn apply_as(
    node: &Node,
    traffic: Traffic,
    digest_key: &str,
    entries: &[ApplyEntry<'_>],
) -> Result<Vec<WriteOutcome>, NodeError> {
    apply_each(node, traffic, digest_key, entries)
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
    digest_key: &str,
    entries: &[ApplyEntry<'_>],
) -> Result<Vec<Result<WriteOutcome, NodeError>>, NodeError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut inv = APPLY.prepare_invoke();
    inv.key(digest_key);
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
            .key(&e.loc.sub_digest_key);
        inv.arg(e.loc.bucket)
            .arg(e.loc.sub)
            .arg(e.meta.encode())
            .arg(mode)
            .arg(payload)
            .arg(e.meta.expires_at_ms.unwrap_or(0))
            .arg(e.cond.arg());
    }
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
                Value::Array(error) => Err(entry_failed(node, error)),
                other => return Err(protocol(format!("apply script returned code {other:?}"))),
            })
        })
        .collect()
}

/// The error a batch script reported for one entry, counted like a failed request.
fn entry_failed(node: &Node, error: &[Value]) -> NodeError {
    let err = entry_error(error);
    quorumd_node::events::NodeRequestFailed {
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
                Ok(Value::ServerError(e)) => quorumd_node::pool::classify(&e.into()),
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
    let mut outcomes = apply(node, &loc.digest_key, std::slice::from_ref(&entry)).await?;
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

/// Reads metadata and `DUMP` payloads of a batch of keys from one node.
pub async fn dump(node: &Node, locs: &[&KeyLocation]) -> Result<Vec<NodeDump>, NodeError> {
    if locs.is_empty() {
        return Ok(Vec::new());
    }
    let mut inv = DUMP.prepare_invoke();
    for l in locs {
        inv.key(&l.key[..]).key(&l.meta_key);
    }
    let reply: Value = node
        .run_as(Traffic::Background, |mut c| async move {
            inv.invoke_async(&mut c).await
        })
        .await?;
    let mut items = pairs(reply, "dump", locs.len())?.into_iter();
    let mut out = Vec::with_capacity(locs.len());
    while let (Some(meta), Some(dump)) = (items.next(), items.next()) {
        out.push(NodeDump {
            meta: parse_meta(&meta)?,
            // Moved, not copied: a sweep dumps millions of values.
            dump: match dump {
                Value::BulkString(b) => Some(b),
                other => parse_bytes(Some(&other))?,
            },
        });
    }
    Ok(out)
}

/// Removes metadata entries that still equal `expected`; returns how many were removed.
pub async fn purge(
    node: &Node,
    digest_key: &str,
    entries: &[(&KeyLocation, &Meta)],
) -> Result<u64, NodeError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let mut inv = PURGE.prepare_invoke();
    inv.key(digest_key);
    for (loc, meta) in entries {
        inv.key(&loc.key[..])
            .key(&loc.meta_key)
            .key(&loc.sub_digest_key);
        inv.arg(loc.bucket).arg(loc.sub).arg(meta.encode());
    }
    node.run_as(Traffic::Background, |mut c| async move {
        inv.invoke_async(&mut c).await
    })
    .await
}

/// Recomputes both digest levels of `buckets` from their metadata; returns the buckets that
/// drifted.
pub async fn rebuild_digests(
    node: &Node,
    settings: &super::StoreSettings,
    buckets: &[u32],
) -> Result<Vec<u32>, NodeError> {
    let prefix = &settings.key_prefix;
    let mut inv = REBUILD_DIGESTS.prepare_invoke();
    inv.key(super::digest_key(prefix));
    inv.arg(settings.sub_buckets);
    for b in buckets {
        inv.key(super::sub_digest_key(prefix, *b));
        for k in settings.bucket_meta_keys(*b) {
            inv.key(k);
        }
        inv.arg(*b);
    }
    node.run_as(Traffic::Background, |mut c| async move {
        inv.invoke_async(&mut c).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumd_node::pool::ServerErrorKind;

    #[test]
    fn an_entry_error_is_the_error_a_lone_call_would_get() {
        let text = "WRONGTYPE Operation against a key holding the wrong kind of value";
        let lone = match redis::parse_redis_value(format!("-{text}\r\n").as_bytes()) {
            Ok(Value::ServerError(e)) => quorumd_node::pool::classify(&e.into()),
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
