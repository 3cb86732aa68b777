//! The server-side Lua scripts and the per-node calls that run them.
//!
//! Every mutation is one script that writes the value, the key's metadata and the bucket
//! digest atomically, and applies only if its version is newer than the stored one, so client
//! writes, read repair and (later) anti-entropy share one rule and a repeated repair is
//! harmless. Scripts run by EVALSHA; `redis::Script` reloads them on NOSCRIPT (e.g. after a
//! node restart or SCRIPT FLUSH).

use crate::meta::Meta;
use crate::pool::{Node, NodeError};
use redis::{Script, Value};
use std::sync::LazyLock;

/// Writes a value or a tombstone under a version.
///
/// KEYS: value key, bucket metadata hash, digest hash.
/// ARGV: bucket (digest field), encoded metadata, kind (`v`/`t`), value, absolute expiry in ms
/// (0 = none), precondition (`''` none, `-` the key must have no metadata, otherwise the stored
/// version must not be newer than it).
/// Returns `{1, ''}` applied, `{0, stored}` a newer or equal version is stored, `{2, stored}`
/// precondition failed.
/// The `#!lua` shebang (Redis 7+) makes Redis reject the whole script up front on OOM or on a
/// read-only replica, instead of failing halfway and leaving value and digest out of step.
const WRITE_LUA: &str = r#"#!lua
local meta = ARGV[2]
local version = string.sub(meta, 1, 34)
local new_hash = tonumber(string.match(meta, "|(%d+)$"))
local cur = redis.call('HGET', KEYS[2], KEYS[1])
local cur_hash = 0
if cur then
  local cur_version = string.sub(cur, 1, 34)
  -- The same version again is a retry or a repair that already landed.
  if cur_version == version then return {0, cur} end
  -- A conditional write that finds anything newer than it expected has lost, even when what
  -- it finds is older than itself: counting that as "superseded" would let two concurrent
  -- compare-and-sets both reach a quorum.
  if ARGV[6] == '-' or (ARGV[6] ~= '' and cur_version > ARGV[6]) then return {2, cur} end
  if cur_version > version then return {0, cur} end
  cur_hash = tonumber(string.match(cur, "|(%d+)$")) or 0
end
if ARGV[3] == 't' then
  redis.call('DEL', KEYS[1])
else
  local expiry = tonumber(ARGV[5])
  if expiry > 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if expiry <= now then
      redis.call('DEL', KEYS[1])
    else
      redis.call('SET', KEYS[1], ARGV[4], 'PXAT', ARGV[5])
    end
  else
    redis.call('SET', KEYS[1], ARGV[4])
  end
end
redis.call('HSET', KEYS[2], KEYS[1], meta)
local digest = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
digest = (digest - cur_hash + new_hash) % 281474976710656
redis.call('HSET', KEYS[3], ARGV[1], string.format('%.0f', digest))
return {1, ''}
"#;

/// Reads a key's metadata and string value together, atomically.
/// KEYS: value key, bucket metadata hash. Returns `{meta or false, value or false}`.
/// `no-writes` lets it run under OOM and on replicas.
const READ_LUA: &str = r#"#!lua flags=no-writes
return {redis.call('HGET', KEYS[2], KEYS[1]), redis.call('GET', KEYS[1])}
"#;

static WRITE: LazyLock<Script> = LazyLock::new(|| Script::new(WRITE_LUA));
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_LUA));

/// Where a key and its metadata live on every node.
#[derive(Debug, Clone)]
pub struct KeyLocation {
    pub key: Vec<u8>,
    pub meta_key: String,
    pub digest_key: String,
    pub bucket: u32,
}

/// Precondition of a write, checked atomically on each node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeCondition {
    None,
    /// The key must have no metadata at all.
    Absent,
    /// The stored version must not be newer than this one.
    NotNewerThan(crate::hlc::Version),
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

/// A node's answer to a versioned write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Applied,
    /// The node already holds this version or a newer one.
    Superseded(Meta),
    ConditionFailed(Meta),
}

impl WriteOutcome {
    /// The node now holds the written version or a newer one.
    pub fn holds_version(&self) -> bool {
        matches!(self, WriteOutcome::Applied | WriteOutcome::Superseded(_))
    }
}

/// A node's answer to a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRead {
    pub meta: Option<Meta>,
    pub value: Option<Vec<u8>>,
}

fn protocol(msg: impl Into<String>) -> NodeError {
    NodeError::Protocol(msg.into())
}

fn parse_meta(v: &Value) -> Result<Option<Meta>, NodeError> {
    match v {
        Value::Nil => Ok(None),
        Value::Int(0) | Value::Boolean(false) => Ok(None),
        Value::BulkString(b) => Meta::parse(b)
            .map(Some)
            .map_err(|e| protocol(e.to_string())),
        other => Err(protocol(format!("metadata of unexpected type {other:?}"))),
    }
}

/// Runs the versioned write script on one node.
pub async fn write(
    node: &Node,
    loc: &KeyLocation,
    meta: &Meta,
    value: &[u8],
    cond: &NodeCondition,
) -> Result<WriteOutcome, NodeError> {
    let mut inv = WRITE.prepare_invoke();
    inv.key(&loc.key[..])
        .key(&loc.meta_key)
        .key(&loc.digest_key)
        .arg(loc.bucket)
        .arg(meta.encode())
        .arg(meta.kind.code().to_string())
        .arg(value)
        .arg(meta.expires_at_ms.unwrap_or(0))
        .arg(cond.arg());
    let reply: Value = node
        .run(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    let Value::Array(items) = reply else {
        return Err(protocol(format!("write script returned {reply:?}")));
    };
    let code = match items.first() {
        Some(Value::Int(c)) => *c,
        other => return Err(protocol(format!("write script returned code {other:?}"))),
    };
    let stored = || -> Result<Meta, NodeError> {
        items
            .get(1)
            .map(parse_meta)
            .transpose()?
            .flatten()
            .ok_or_else(|| protocol("write script omitted stored metadata"))
    };
    match code {
        1 => Ok(WriteOutcome::Applied),
        0 => Ok(WriteOutcome::Superseded(stored()?)),
        2 => Ok(WriteOutcome::ConditionFailed(stored()?)),
        c => Err(protocol(format!("write script returned unknown code {c}"))),
    }
}

/// Reads metadata and value of a key from one node.
pub async fn read(node: &Node, loc: &KeyLocation) -> Result<NodeRead, NodeError> {
    let mut inv = READ.prepare_invoke();
    inv.key(&loc.key[..]).key(&loc.meta_key);
    let reply: Value = node
        .run(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    let Value::Array(items) = reply else {
        return Err(protocol(format!("read script returned {reply:?}")));
    };
    let meta = items.first().map(parse_meta).transpose()?.flatten();
    let value = match items.get(1) {
        Some(Value::BulkString(b)) => Some(b.clone()),
        Some(Value::Nil | Value::Int(0) | Value::Boolean(false)) | None => None,
        Some(other) => return Err(protocol(format!("value of unexpected type {other:?}"))),
    };
    Ok(NodeRead { meta, value })
}

/// Reads only the metadata of a key from one node (the first phase of a two-phase write).
pub async fn read_meta(node: &Node, loc: &KeyLocation) -> Result<Option<Meta>, NodeError> {
    let mut cmd = redis::cmd("HGET");
    cmd.arg(&loc.meta_key).arg(&loc.key[..]);
    let reply: Value = node
        .run(|mut c| async move { cmd.query_async(&mut c).await })
        .await?;
    parse_meta(&reply)
}
