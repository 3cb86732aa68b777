//! The queue scripts and the per-node calls that run them.
//!
//! Per queue, every node holds: `{prefix}q:{name}:rec` (hash id → record, see `record.rs`),
//! `{prefix}q:{name}:pay` (hash id → payload), `{prefix}q:{name}:ready` (sorted set of items
//! that may be claimed, score −priority, member id: Redis orders equal scores by member, and
//! ids are HLC versions, so that is FIFO within a priority) and `{prefix}q:{name}:gone`
//! (sorted set: acknowledged id → when its tombstone was written).

use quorumd_node::pool::{Node, NodeError};
use redis::Script;
use std::sync::LazyLock;

/// KEYS: rec, pay, ready, gone, the item's fence key. ARGV: id, record, payload (`''` =
/// none), now ms, tombstone ttl ms.
/// Merges the record into the stored one (the same join as `Record::merge`), keeps the ready
/// index and payload in step with the result, and drops a few tombstones past their time.
/// Returns the stored record.
const MERGE_LUA: &str = r#"#!lua
local function parse(r)
  local s, f, st, d, nb, p = string.match(r, '^(%a)|(%d+)|(%x*)|(%d+)|(%d+)|(%-?%d+)$')
  if not s then return nil end
  return {s = s, f = tonumber(f), st = st, d = tonumber(d), nb = nb, p = p}
end
local rank = {r = 0, l = 0, x = 1, a = 2}
local function less(a, b)
  if rank[a.s] ~= rank[b.s] then return rank[a.s] < rank[b.s] end
  if a.f ~= b.f then return a.f < b.f end
  return a.st < b.st
end
local id = ARGV[1]
local out = parse(ARGV[2])
if not out then return redis.error_reply('malformed queue record') end
local cur_raw = redis.call('HGET', KEYS[1], id)
local cur = cur_raw and parse(cur_raw)
if cur then
  local d = math.max(out.d, cur.d)
  if less(out, cur) then out = cur end
  out = {s = out.s, f = out.f, st = out.st, d = d, nb = out.nb, p = out.p}
end
local enc = out.s .. '|' .. string.format('%.0f', out.f) .. '|' .. out.st .. '|' ..
  string.format('%.0f', out.d) .. '|' .. out.nb .. '|' .. out.p
redis.call('HSET', KEYS[1], id, enc)
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
if out.s == 'a' then
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZADD', KEYS[4], 'NX', now, id)
  redis.call('PEXPIRE', KEYS[5], ttl)
else
  if out.s == 'x' then
    redis.call('ZREM', KEYS[3], id)
  else
    redis.call('ZADD', KEYS[3], -tonumber(out.p), id)
  end
  if ARGV[3] ~= '' and redis.call('HEXISTS', KEYS[2], id) == 0 then
    redis.call('HSET', KEYS[2], id, ARGV[3])
  end
end
local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - ttl, 'LIMIT', 0, 16)
for _, o in ipairs(old) do
  local r = redis.call('HGET', KEYS[1], o)
  if r and string.sub(r, 1, 1) == 'a' then redis.call('HDEL', KEYS[1], o) end
  redis.call('ZREM', KEYS[4], o)
end
return enc
"#;

/// KEYS: rec, ready. ARGV: now ms, how many, most index entries to look at.
/// Returns `[id, score, ...]`: the first claimable items in priority order.
const CANDIDATES_LUA: &str = r#"#!lua flags=no-writes
local out = {}
local now, want, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local start = 0
while #out < 2 * want and start < limit do
  local ids = redis.call('ZRANGE', KEYS[2], start, start + 63, 'WITHSCORES')
  if #ids == 0 then break end
  for i = 1, #ids, 2 do
    local r = redis.call('HGET', KEYS[1], ids[i])
    if r then
      local s, nb = string.match(r, '^(%a)|%d+|%x*|%d+|(%d+)|')
      if (s == 'r' or s == 'l') and tonumber(nb) <= now then
        out[#out + 1] = ids[i]
        out[#out + 1] = ids[i + 1]
        if #out >= 2 * want then break end
      end
    end
  end
  start = start + 64
end
return out
"#;

/// KEYS: rec, pay. ARGV: id. Returns `{record or '', payload or ''}`.
const READ_LUA: &str = r#"#!lua flags=no-writes
return {redis.call('HGET', KEYS[1], ARGV[1]) or '', redis.call('HGET', KEYS[2], ARGV[1]) or ''}
"#;

/// KEYS: rec, pay, ready, gone, the item's fence key. ARGV: id.
/// Removes every trace of an acknowledged item (once every node holds its tombstone).
const PURGE_LUA: &str = r#"#!lua
local r = redis.call('HGET', KEYS[1], ARGV[1])
if not r or string.sub(r, 1, 1) ~= 'a' then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[5])
return 1
"#;

static MERGE: LazyLock<Script> = LazyLock::new(|| Script::new(MERGE_LUA));
static CANDIDATES: LazyLock<Script> = LazyLock::new(|| Script::new(CANDIDATES_LUA));
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_LUA));
static PURGE: LazyLock<Script> = LazyLock::new(|| Script::new(PURGE_LUA));

/// The keys of one queue on every node.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub rec: String,
    pub pay: String,
    pub ready: String,
    pub gone: String,
}

impl QueueKeys {
    pub fn new(prefix: &str, name: &str) -> QueueKeys {
        let base = format!("{prefix}q:{name}:");
        QueueKeys {
            rec: format!("{base}rec"),
            pay: format!("{base}pay"),
            ready: format!("{base}ready"),
            gone: format!("{base}gone"),
        }
    }
}

/// One merge on one node.
pub struct MergeArgs<'a> {
    pub id: &'a str,
    pub record: &'a str,
    pub payload: &'a str,
    pub now_ms: u64,
    pub tombstone_ttl_ms: u64,
}

async fn invoke<T: redis::FromRedisValue + Send + 'static>(
    node: &Node,
    inv: redis::ScriptInvocation<'static>,
) -> Result<T, NodeError> {
    node.run(|mut c| async move { inv.invoke_async::<T>(&mut c).await })
        .await
}

pub async fn merge(
    node: &Node,
    keys: &QueueKeys,
    fence_key: &str,
    a: &MergeArgs<'_>,
) -> Result<String, NodeError> {
    let mut inv = MERGE.prepare_invoke();
    inv.key(&keys.rec)
        .key(&keys.pay)
        .key(&keys.ready)
        .key(&keys.gone)
        .key(fence_key)
        .arg(a.id)
        .arg(a.record)
        .arg(a.payload)
        .arg(a.now_ms)
        .arg(a.tombstone_ttl_ms);
    invoke(node, inv).await
}

/// Claimable ids with their priority, best first, as this node sees them.
pub async fn candidates(
    node: &Node,
    keys: &QueueKeys,
    now_ms: u64,
    want: usize,
) -> Result<Vec<(String, i64)>, NodeError> {
    let mut inv = CANDIDATES.prepare_invoke();
    inv.key(&keys.rec)
        .key(&keys.ready)
        .arg(now_ms)
        .arg(want)
        .arg(want * 64);
    let flat: Vec<String> = invoke(node, inv).await?;
    flat.chunks(2)
        .map(|p| {
            let score: f64 = p
                .get(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| NodeError::Protocol(format!("bad candidate {p:?}")))?;
            Ok((p[0].clone(), -score as i64))
        })
        .collect()
}

/// The record and payload of one item on one node (`None` where absent).
pub async fn read(
    node: &Node,
    keys: &QueueKeys,
    id: &str,
) -> Result<(Option<String>, Option<String>), NodeError> {
    let mut inv = READ.prepare_invoke();
    inv.key(&keys.rec).key(&keys.pay).arg(id);
    let (rec, pay): (String, String) = invoke(node, inv).await?;
    Ok((
        (!rec.is_empty()).then_some(rec),
        (!pay.is_empty()).then_some(pay),
    ))
}

/// Every record of a queue on one node.
pub async fn all_records(
    node: &Node,
    keys: &QueueKeys,
) -> Result<std::collections::HashMap<String, String>, NodeError> {
    let key = keys.rec.clone();
    node.run(|mut c| async move { redis::cmd("HGETALL").arg(&key).query_async(&mut c).await })
        .await
}

pub async fn purge(
    node: &Node,
    keys: &QueueKeys,
    fence_key: &str,
    id: &str,
) -> Result<bool, NodeError> {
    let mut inv = PURGE.prepare_invoke();
    inv.key(&keys.rec)
        .key(&keys.pay)
        .key(&keys.ready)
        .key(&keys.gone)
        .key(fence_key)
        .arg(id);
    let n: i64 = invoke(node, inv).await?;
    Ok(n == 1)
}
