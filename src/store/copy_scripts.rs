//! The scripts of the whole-bucket copy (`sync::bulk`): read a bucket atomically on a node
//! that holds it, and write it onto a node that holds none of it.
//!
//! A heal moves millions of values, so both sides keep the per-key work small. Strings, the
//! common case, travel as they are: one `MGET` per 1,000 keys on the holder and one `MSET`
//! per 1,000 on the empty node, where a `DUMP`/`RESTORE` pair would cost a serialisation, a CRC
//! and an LZF attempt per key on each side. Other types travel as a `DUMP`. The calls are built
//! as one command each, every argument written once (see [`bulk_eval`]).

use super::scripts::{array, clock_lua, parse_bytes, protocol};
use crate::pool::{Node, NodeError, Traffic};
use redis::{Cmd, ErrorKind, Script, ServerErrorKind, Value};
use std::sync::LazyLock;

/// Reads whole buckets for a copy, atomically, so the metadata and the values copied belong
/// together: per bucket a `DUMP` and an `HGETALL` of each metadata hash, a `DUMP` of each
/// state key (bucket-level keys that go with the metadata), then the values: a string of one
/// kind letter per value key (`s` a string, `d` a `DUMP` of another type, `n` no value),
/// followed by one item per value key (the string, the `DUMP`, or `''`).
///
/// ARGV: per bucket the number of metadata hashes, of state keys and of value keys.
/// KEYS: per bucket its metadata hashes, its state keys, then its value keys.
/// Returns the items in that order, flat; absent metadata hashes and state keys are nil.
const DUMP_BUCKETS_LUA: &str = r#"#!lua flags=no-writes
-- Keys per MGET/MSET: unpack puts every argument on Lua's stack, which holds about 8,000.
local KEYS_PER_COMMAND = 1000
local out, k = {}, 1
for a = 1, #ARGV, 3 do
  local m, s, v = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  for i = k, k + m - 1 do
    out[#out + 1] = redis.call('DUMP', KEYS[i])
    out[#out + 1] = redis.call('HGETALL', KEYS[i])
  end
  for i = k + m, k + m + s - 1 do
    out[#out + 1] = redis.call('DUMP', KEYS[i])
  end
  local first, last = k + m + s, k + m + s + v - 1
  local kinds_at = #out + 1
  out[kinds_at] = ''
  local kinds = {}
  for c = first, last, KEYS_PER_COMMAND do
    -- MGET answers nil for a key of another type as for a missing one; DUMP tells them apart.
    local got = redis.call('MGET', unpack(KEYS, c, math.min(c + KEYS_PER_COMMAND - 1, last)))
    for j = 1, #got do
      if got[j] then
        kinds[#kinds + 1] = 's'
        out[#out + 1] = got[j]
      else
        local dump = redis.call('DUMP', KEYS[c + j - 1])
        kinds[#kinds + 1] = dump and 'd' or 'n'
        out[#out + 1] = dump or ''
      end
    end
  end
  out[kinds_at] = table.concat(kinds)
  k = last + 1
end
return out
"#;

/// Copies whole buckets onto a node that holds nothing of them (a wiped or new node), far
/// cheaper per key than `APPLY`: strings without expiry in one `MSET` per 1,000, other
/// values one `SET PXAT` or `RESTORE` each, one `RESTORE` per metadata hash, the digest set
/// once.
///
/// KEYS: the digest hash, then per bucket its metadata hashes, its state keys and its value
/// keys. ARGV: per bucket its number, its digest, the three counts and the kind letters of its
/// values (`s` a string, `d` a `DUMP`, `n` no value: delete the key; `S` and `D` as `s` and `d`
/// with an expiry); then a `DUMP` per metadata hash and state key (`''`: absent); then per
/// value key its payload (`''` for `n`), followed by its absolute expiry in ms for `S` and
/// `D`.
/// A bucket with any of its metadata hashes present on the node is left alone (a client write
/// landed since the digests were read): its answer is 0 and the caller repairs it key by key
/// with `APPLY`, which compares versions. Otherwise it is copied and its answer is 1. The check
/// and the copy are one atomic step, so no write can fall between them.
const RESTORE_BUCKETS_LUA: &str = concat!(
    "#!lua\n",
    clock_lua!(),
    r#"
-- Keys per MGET/MSET: unpack puts every argument on Lua's stack, which holds about 8,000.
local KEYS_PER_COMMAND = 1000
local out = {}
local mset = {}
local function flush()
  if #mset > 0 then
    redis.call('MSET', unpack(mset))
    mset = {}
  end
end
local k, a = 2, 1
while a <= #ARGV do
  local bucket, digest = ARGV[a], ARGV[a + 1]
  local m, s, v = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local kinds = ARGV[a + 5]
  local _, timed = string.gsub(kinds, '[SD]', '')
  a = a + 6
  local empty = true
  for i = k, k + m - 1 do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      empty = false
      break
    end
  end
  if empty then
    -- Values first: if a command fails the script stops before any metadata names them.
    local at = a + m + s
    for j = 0, v - 1 do
      local key, kind, payload = KEYS[k + m + s + j], string.byte(kinds, j + 1), ARGV[at]
      local expiry = 0
      at = at + 1
      if kind == 83 or kind == 68 then -- 'S', 'D': an expiry follows
        expiry = tonumber(ARGV[at])
        at = at + 1
      end
      if kind == 110 or (expiry ~= 0 and expiry <= clock()) then -- 'n'
        redis.call('DEL', key)
      elseif kind == 115 then -- 's'
        mset[#mset + 1] = key
        mset[#mset + 1] = payload
        if #mset >= 2 * KEYS_PER_COMMAND then
          flush()
        end
      elseif kind == 83 then
        redis.call('SET', key, payload, 'PXAT', expiry)
      else
        redis.call('RESTORE', key, expiry, payload, 'REPLACE', 'ABSTTL')
      end
    end
    flush()
    for i = 0, m + s - 1 do
      if ARGV[a + i] ~= '' then
        redis.call('RESTORE', KEYS[k + i], 0, ARGV[a + i], 'REPLACE')
      else
        redis.call('DEL', KEYS[k + i])
      end
    end
    redis.call('HSET', KEYS[1], bucket, digest)
  end
  out[#out + 1] = empty and 1 or 0
  k, a = k + m + s + v, a + m + s + v + timed
end
return out
"#
);

static DUMP_BUCKETS: LazyLock<Script> = LazyLock::new(|| Script::new(DUMP_BUCKETS_LUA));
static RESTORE_BUCKETS: LazyLock<Script> = LazyLock::new(|| Script::new(RESTORE_BUCKETS_LUA));

/// The keys of one bucket to read for a copy.
#[derive(Debug, Clone)]
pub struct BucketKeys {
    /// The hashes that hold the bucket's metadata.
    pub meta_keys: Vec<String>,
    /// Bucket-level keys that belong with the metadata (copied verbatim).
    pub state_keys: Vec<String>,
    /// The value keys named in the metadata (as last seen).
    pub value_keys: Vec<Vec<u8>>,
}

/// The entries of a hash as read: (field, value).
pub type HashEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// A value as the copy moves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopiedValue {
    /// A string, as `GET` returns it.
    String(Vec<u8>),
    /// A value of another type, as `DUMP` returns it.
    Dump(Vec<u8>),
}

impl CopiedValue {
    /// The letter `RESTORE_BUCKETS` reads for a value with that absolute expiry (0 = none).
    fn kind(value: Option<&CopiedValue>, expiry: u64) -> u8 {
        match (value, expiry) {
            (Some(CopiedValue::String(_)), 0) => b's',
            (Some(CopiedValue::String(_)), _) => b'S',
            (Some(CopiedValue::Dump(_)), 0) => b'd',
            (Some(CopiedValue::Dump(_)), _) => b'D',
            (None, _) => b'n',
        }
    }

    fn payload(value: Option<&CopiedValue>) -> &[u8] {
        match value {
            Some(CopiedValue::String(b) | CopiedValue::Dump(b)) => b,
            None => b"",
        }
    }
}

/// One bucket as `DUMP_BUCKETS` read it.
#[derive(Debug, Clone)]
pub struct BucketDump {
    /// Per metadata hash: its `DUMP` and its entries (key, raw metadata).
    pub meta: Vec<(Option<Vec<u8>>, HashEntries)>,
    /// Per state key: its `DUMP`.
    pub state: Vec<Option<Vec<u8>>>,
    /// Per value key: its value (`None`: the node holds none).
    pub values: Vec<Option<CopiedValue>>,
}

/// A bucket to copy whole onto a node that holds none of it.
#[derive(Debug, Clone)]
pub struct BucketCopy {
    pub bucket: u32,
    /// The bucket's digest: the sum of the copied entries' hashes.
    pub digest: u64,
    /// How many metadata entries the copy holds.
    pub entries: usize,
    /// The metadata hashes with their `DUMP`s (`None`: absent).
    pub meta: Vec<(String, Option<Vec<u8>>)>,
    /// The state keys with their `DUMP`s.
    pub state: Vec<(String, Option<Vec<u8>>)>,
    /// Per value key: its value (`None`: delete it) and absolute expiry (0 = none).
    pub values: Vec<(Vec<u8>, Option<CopiedValue>, u64)>,
}

/// An `EVALSHA` of `script` with `keys` keys, as one command to which the caller appends the
/// keys and then the arguments. `ScriptInvocation` would first collect every argument in an
/// allocation of its own and then copy them all into a command; a heal's calls carry millions.
fn bulk_eval(script: &Script, keys: usize) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys);
    cmd
}

/// Runs a command built by [`bulk_eval`], loading the script first if the node lost it.
async fn run_bulk_eval(node: &Node, code: &'static str, cmd: Cmd) -> Result<Value, NodeError> {
    node.run_as(Traffic::Background, |mut c| async move {
        match cmd.query_async::<Value>(&mut c).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(code)
                    .query_async::<String>(&mut c)
                    .await?;
                cmd.query_async(&mut c).await
            }
            other => other,
        }
    })
    .await
}

/// Reads whole buckets, metadata and values together (`DUMP_BUCKETS`).
pub async fn dump_buckets(
    node: &Node,
    buckets: &[BucketKeys],
) -> Result<Vec<BucketDump>, NodeError> {
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    let keys: usize = buckets
        .iter()
        .map(|b| b.meta_keys.len() + b.state_keys.len() + b.value_keys.len())
        .sum();
    let mut cmd = bulk_eval(&DUMP_BUCKETS, keys);
    for b in buckets {
        cmd.arg(&b.meta_keys).arg(&b.state_keys).arg(&b.value_keys);
    }
    for b in buckets {
        cmd.arg(b.meta_keys.len())
            .arg(b.state_keys.len())
            .arg(b.value_keys.len());
    }
    let reply = run_bulk_eval(node, DUMP_BUCKETS_LUA, cmd).await?;
    let expected: usize = buckets
        .iter()
        .map(|b| 2 * b.meta_keys.len() + b.state_keys.len() + 1 + b.value_keys.len())
        .sum();
    let items = array(reply, "dump buckets")?;
    if items.len() != expected {
        return Err(protocol(format!(
            "dump buckets script returned {} items, expected {expected}",
            items.len()
        )));
    }
    let mut items = items.into_iter();
    let mut out = Vec::with_capacity(buckets.len());
    for b in buckets {
        let mut meta = Vec::with_capacity(b.meta_keys.len());
        for _ in &b.meta_keys {
            let dump = next_bytes(&mut items)?;
            meta.push((dump, next_entries(&mut items)?.unwrap_or_default()));
        }
        let state = (0..b.state_keys.len())
            .map(|_| next_bytes(&mut items))
            .collect::<Result<_, _>>()?;
        let kinds = next_bytes(&mut items)?.unwrap_or_default();
        if kinds.len() != b.value_keys.len() {
            return Err(protocol(format!(
                "dump buckets script returned {} kinds for {} values",
                kinds.len(),
                b.value_keys.len()
            )));
        }
        let values = kinds
            .iter()
            .map(|kind| {
                let payload = next_bytes(&mut items)?.unwrap_or_default();
                match kind {
                    b's' => Ok(Some(CopiedValue::String(payload))),
                    b'd' => Ok(Some(CopiedValue::Dump(payload))),
                    b'n' => Ok(None),
                    other => Err(protocol(format!(
                        "dump buckets script returned the kind {:?}",
                        char::from(*other)
                    ))),
                }
            })
            .collect::<Result<_, _>>()?;
        out.push(BucketDump {
            meta,
            state,
            values,
        });
    }
    Ok(out)
}

/// The next reply item as bytes, moved out of the reply: a heal reads millions of values.
fn next_bytes(items: &mut impl Iterator<Item = Value>) -> Result<Option<Vec<u8>>, NodeError> {
    match items.next() {
        Some(Value::BulkString(b)) => Ok(Some(b)),
        other => parse_bytes(other.as_ref()),
    }
}

/// The next reply item as hash entries (an `HGETALL` answer).
fn next_entries(items: &mut impl Iterator<Item = Value>) -> Result<Option<HashEntries>, NodeError> {
    match items.next() {
        Some(Value::Array(flat)) => {
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(Value::BulkString(k)), Some(Value::BulkString(v))) =
                (flat.next(), flat.next())
            {
                out.push((k, v));
            }
            Ok(Some(out))
        }
        Some(Value::Map(pairs)) => Ok(Some(
            pairs
                .into_iter()
                .filter_map(|p| match p {
                    (Value::BulkString(k), Value::BulkString(v)) => Some((k, v)),
                    _ => None,
                })
                .collect(),
        )),
        Some(Value::Nil) | None => Ok(None),
        Some(other) => Err(protocol(format!(
            "hash entries of unexpected type {other:?}"
        ))),
    }
}

/// Copies whole buckets onto a node with `RESTORE_BUCKETS`; per bucket, whether it was copied
/// (`false`: the node holds metadata of that bucket by now, repair it key by key).
pub async fn restore_buckets(
    node: &Node,
    digest_key: &str,
    buckets: &[&BucketCopy],
) -> Result<Vec<bool>, NodeError> {
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    let keys: usize = 1 + buckets
        .iter()
        .map(|b| b.meta.len() + b.state.len() + b.values.len())
        .sum::<usize>();
    let mut cmd = bulk_eval(&RESTORE_BUCKETS, keys);
    cmd.arg(digest_key);
    for b in buckets {
        for (key, _) in b.meta.iter().chain(&b.state) {
            cmd.arg(key);
        }
        for (key, _, _) in &b.values {
            cmd.arg(&key[..]);
        }
    }
    for b in buckets {
        let kinds: Vec<u8> = b
            .values
            .iter()
            .map(|(_, v, expiry)| CopiedValue::kind(v.as_ref(), *expiry))
            .collect();
        cmd.arg(b.bucket)
            .arg(b.digest)
            .arg(b.meta.len())
            .arg(b.state.len())
            .arg(b.values.len())
            .arg(&kinds);
        for (_, dump) in b.meta.iter().chain(&b.state) {
            cmd.arg(dump.as_deref().unwrap_or(b""));
        }
        for ((_, value, expiry), kind) in b.values.iter().zip(&kinds) {
            cmd.arg(CopiedValue::payload(value.as_ref()));
            if matches!(kind, b'S' | b'D') {
                cmd.arg(*expiry);
            }
        }
    }
    let reply = run_bulk_eval(node, RESTORE_BUCKETS_LUA, cmd).await?;
    let items = array(reply, "restore buckets")?;
    if items.len() != buckets.len() {
        return Err(protocol(format!(
            "restore buckets script returned {} answers for {} buckets",
            items.len(),
            buckets.len()
        )));
    }
    items
        .iter()
        .map(|v| match v {
            Value::Int(1) => Ok(true),
            Value::Int(0) => Ok(false),
            other => Err(protocol(format!(
                "restore buckets script returned {other:?}"
            ))),
        })
        .collect()
}
