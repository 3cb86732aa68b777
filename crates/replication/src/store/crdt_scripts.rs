//! The node-side scripts of CRDT keys: merge an incoming state into the stored one, and read a
//! state with its metadata.
//!
//! A CRDT key has three parts on a node, all touched by one atomic script:
//! - its state, in the hash `{prefix}c:{key}`: the fields of `quorumd_core::crdt` (per-actor counter
//!   totals, set add/remove tags, map registers);
//! - its metadata entry in the sub-bucket hash, with kind `C`, `S` or `M` and, as entry hash, a
//!   function of the key and the state: the sum mod 2^48 of a 48-bit SHA-1 prefix per field
//!   (plus one for the kind), maintained field by field;
//! - the user key, the materialised value in a natural Redis type: a string integer for a
//!   counter, a set of members, a hash of the live fields of a map.
//!
//! Merging is per field: counter totals and map registers take the byte-wise maximum (totals
//! are fixed-width decimals, registers start with their version); a set add-tag is kept unless
//! its removal is known, and a removal drops the add. So a repeated or stale state changes
//! nothing, and nodes that merged the same states hold equal states and equal entry hashes.

use super::scripts::KeyLocation;
use quorumd_core::crdt::{CrdtKind, Fields};
use quorumd_core::meta::Meta;
use quorumd_node::pool::{Node, NodeError};
use redis::{Script, Value};
use std::sync::LazyLock;

/// KEYS: the bucket digest hash, the value key, its sub-bucket metadata hash, its state hash,
/// its bucket's sub-digest hash.
/// ARGV: bucket, sub-bucket, kind code, `1` to return the merged state (else `0`), then
/// field/value pairs.
/// Returns `{code, metadata or false, state or {}}`: code 1 changed, 0 unchanged, 4 the key
/// holds another kind of entry (then nothing is written).
const MERGE_LUA: &str = concat!(
    "#!lua\n",
    super::scripts::digest_lua!(),
    r#"
local key, mkey, skey = KEYS[2], KEYS[3], KEYS[4]
local bucket, sub, kind, want = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cur = redis.call('HGET', mkey, key)
if cur and string.sub(cur, 36, 36) ~= kind then
  return {4, cur, {}}
end
-- Lengths make the hashed string unambiguous; the key is in it so that two keys with equal
-- states do not cancel out in the bucket digest.
local kp = #key .. ':' .. key
local function fh(f, v)
  return tonumber(string.sub(redis.sha1hex(kp .. #f .. ':' .. f .. v), 1, 12), 16)
end
-- Byte-wise order: Lua's own string comparison follows the server's locale.
local function greater(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
local old_hash = 0
local hash = fh('', kind)
if cur then
  old_hash = tonumber(string.match(cur, '|(%d+)$'))
  hash = old_hash
end
local changed = false
local function put(f, old, v)
  if old then hash = (hash - fh(f, old)) % M end
  redis.call('HSET', skey, f, v)
  hash = (hash + fh(f, v)) % M
  changed = true
end
local function drop(f)
  local old = redis.call('HGET', skey, f)
  if old then
    redis.call('HDEL', skey, f)
    hash = (hash - fh(f, old)) % M
    changed = true
  end
end
for i = 5, #ARGV - 1, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', skey, f)
  if kind == 'S' then
    local tag = string.sub(f, 3)
    if string.sub(f, 1, 1) == 'r' then
      if not old then
        put(f, nil, v)
        drop('a:' .. tag)
      end
    elseif redis.call('HEXISTS', skey, 'r:' .. tag) == 0 and (not old or greater(v, old)) then
      put(f, old, v)
    end
  elseif not old or greater(v, old) then
    put(f, old, v)
  end
end
if not changed then
  if not cur then return {0, false, {}} end
  if want == '1' then return {0, cur, redis.call('HGETALL', skey)} end
  return {0, cur, {}}
end
local state = redis.call('HGETALL', skey)
redis.call('DEL', key)
if kind == 'C' then
  -- Exact sums of 20-digit totals, digit column by digit column: doubles cannot hold them.
  local function sums(letter)
    local acc = {}
    for j = 1, 20 do acc[j] = 0 end
    for i = 1, #state, 2 do
      if string.sub(state[i], 1, 1) == letter then
        local v = state[i + 1]
        for j = 1, 20 do acc[j] = acc[j] + string.byte(v, 21 - j) - 48 end
      end
    end
    local carry, j = 0, 1
    while j <= #acc or carry > 0 do
      local t = (acc[j] or 0) + carry
      acc[j] = t % 10
      carry = math.floor(t / 10)
      j = j + 1
    end
    return acc
  end
  local function cmp(a, b)
    for j = math.max(#a, #b), 1, -1 do
      local x, y = a[j] or 0, b[j] or 0
      if x ~= y then return x > y and 1 or -1 end
    end
    return 0
  end
  local function minus(a, b)
    local out, borrow = {}, 0
    for j = 1, #a do
      local t = a[j] - (b[j] or 0) - borrow
      if t < 0 then t, borrow = t + 10, 1 else borrow = 0 end
      out[j] = t
    end
    local top = #out
    while top > 1 and out[top] == 0 do top = top - 1 end
    local s = {}
    for j = top, 1, -1 do s[#s + 1] = string.char(48 + out[j]) end
    return table.concat(s)
  end
  local p, n = sums('p'), sums('n')
  local value
  if cmp(p, n) >= 0 then value = minus(p, n) else value = '-' .. minus(n, p) end
  redis.call('SET', key, value)
else
  -- Sets and maps are rebuilt from the state, which also restores a value deleted behind
  -- quorumd's back.
  local args = {}
  for i = 1, #state, 2 do
    local f, v = state[i], state[i + 1]
    if kind == 'S' and string.sub(f, 1, 1) == 'a' then
      args[#args + 1] = v
    elseif kind == 'M' and string.sub(v, 35, 35) == '=' then
      args[#args + 1] = string.sub(f, 3)
      args[#args + 1] = string.sub(v, 36)
    end
    if #args >= 512 then
      redis.call(kind == 'S' and 'SADD' or 'HSET', key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call(kind == 'S' and 'SADD' or 'HSET', key, unpack(args)) end
end
local hex = string.format('%06x%06x', math.floor(hash / 16777216), hash % 16777216)
local meta = string.rep('0', 22) .. hex .. '|' .. kind .. '|0|' .. string.format('%.0f', hash)
redis.call('HSET', mkey, key, meta)
add_digest(KEYS[1], bucket, hash - old_hash)
add_digest(KEYS[5], sub, hash - old_hash)
if want == '1' then return {1, meta, state} end
return {1, meta, {}}
"#
);

/// KEYS: the value key, its bucket metadata hash, its state hash.
/// Returns `{metadata or false, state}`.
const READ_STATE_LUA: &str = r#"#!lua flags=no-writes
return {redis.call('HGET', KEYS[2], KEYS[1]), redis.call('HGETALL', KEYS[3])}
"#;

static MERGE: LazyLock<Script> = LazyLock::new(|| Script::new(MERGE_LUA));
static READ_STATE: LazyLock<Script> = LazyLock::new(|| Script::new(READ_STATE_LUA));

/// The hash holding a CRDT key's state.
pub fn state_key(prefix: &str, key: &[u8]) -> Vec<u8> {
    let mut k = format!("{prefix}c:").into_bytes();
    k.extend_from_slice(key);
    k
}

/// What a merge did on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeCode {
    Changed,
    Unchanged,
    /// The key holds another kind of entry (a key-value entry or another CRDT).
    KindConflict,
}

/// A node's answer to a merge.
#[derive(Debug, Clone)]
pub struct MergeReply {
    pub code: MergeCode,
    /// The stored metadata after the merge (or, for a conflict, the entry in the way).
    pub meta: Option<Meta>,
    /// The merged state, when asked for.
    pub state: Fields,
}

/// A node's CRDT state and metadata.
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    pub meta: Option<Meta>,
    pub state: Fields,
}

fn protocol(msg: impl Into<String>) -> NodeError {
    NodeError::Protocol(msg.into())
}

fn parse_meta(v: &Value) -> Result<Option<Meta>, NodeError> {
    match v {
        Value::Nil | Value::Boolean(false) | Value::Int(0) => Ok(None),
        Value::BulkString(b) => Meta::parse(b)
            .map(Some)
            .map_err(|e| protocol(e.to_string())),
        other => Err(protocol(format!("metadata of unexpected type {other:?}"))),
    }
}

fn parse_fields(v: &Value) -> Result<Fields, NodeError> {
    let Value::Array(items) = v else {
        return Err(protocol(format!("state of unexpected type {v:?}")));
    };
    let bytes = |v: &Value| match v {
        Value::BulkString(b) => Ok(b.clone()),
        other => Err(protocol(format!("state item of unexpected type {other:?}"))),
    };
    items
        .chunks(2)
        .map(|pair| match pair {
            [f, v] => Ok((bytes(f)?, bytes(v)?)),
            _ => Err(protocol("state with an odd number of items")),
        })
        .collect()
}

/// Merges `fields` (a state of `kind`) into the key's state on one node.
pub async fn merge(
    node: &Node,
    loc: &KeyLocation,
    state_key: &[u8],
    kind: CrdtKind,
    fields: &Fields,
    want_state: bool,
) -> Result<MergeReply, NodeError> {
    let mut inv = MERGE.prepare_invoke();
    inv.key(&loc.digest_key)
        .key(&loc.key[..])
        .key(&loc.meta_key)
        .key(state_key)
        .key(&loc.sub_digest_key);
    inv.arg(loc.bucket)
        .arg(loc.sub)
        .arg(kind.code().to_string())
        .arg(if want_state { "1" } else { "0" });
    for (f, v) in fields {
        inv.arg(&f[..]).arg(&v[..]);
    }
    let reply: Value = node
        .run(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    let Value::Array(items) = reply else {
        return Err(protocol(format!("merge script returned {reply:?}")));
    };
    let [code, meta, state] = items.as_slice() else {
        return Err(protocol(format!(
            "merge script returned {} items",
            items.len()
        )));
    };
    let code = match code {
        Value::Int(1) => MergeCode::Changed,
        Value::Int(0) => MergeCode::Unchanged,
        Value::Int(4) => MergeCode::KindConflict,
        other => return Err(protocol(format!("merge script returned code {other:?}"))),
    };
    Ok(MergeReply {
        code,
        meta: parse_meta(meta)?,
        state: parse_fields(state)?,
    })
}

/// Reads a CRDT key's metadata and state from one node.
pub async fn read_state(
    node: &Node,
    loc: &KeyLocation,
    state_key: &[u8],
) -> Result<NodeState, NodeError> {
    let mut inv = READ_STATE.prepare_invoke();
    inv.key(&loc.key[..]).key(&loc.meta_key).key(state_key);
    let reply: Value = node
        .run(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    match reply {
        Value::Array(items) if items.len() == 2 => Ok(NodeState {
            meta: parse_meta(&items[0])?,
            state: parse_fields(&items[1])?,
        }),
        other => Err(protocol(format!("read-state script returned {other:?}"))),
    }
}
