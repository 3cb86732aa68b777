//! Per-node reads the sweep needs, each one round trip (pipelined where it covers many keys).

use super::diff::BucketMetas;
use crate::meta::Meta;
use crate::pool::{Node, NodeError};
use crate::store::scripts::KeyLocation;
use std::collections::HashMap;

/// All bucket digests of a node (one HGETALL). Missing buckets are empty (0).
pub async fn digests(node: &Node, digest_key: &str) -> Result<HashMap<u32, u64>, NodeError> {
    let mut cmd = redis::cmd("HGETALL");
    cmd.arg(digest_key);
    node.run(|mut c| async move { cmd.query_async(&mut c).await })
        .await
}

/// The metadata of several buckets (HGETALL each, pipelined). Entries that do not parse are
/// returned as errors beside the good ones, so one corrupt entry does not hide a bucket.
pub async fn bucket_metas(
    node: &Node,
    meta_keys: &[String],
) -> Result<(Vec<BucketMetas>, Vec<String>), NodeError> {
    let mut pipe = redis::pipe();
    for k in meta_keys {
        pipe.cmd("HGETALL").arg(k);
    }
    let raw: Vec<Vec<(Vec<u8>, Vec<u8>)>> = node
        .run(|mut c| async move { pipe.query_async(&mut c).await })
        .await?;
    let mut bad = Vec::new();
    let parsed = raw
        .into_iter()
        .zip(meta_keys)
        .map(|(entries, meta_key)| {
            entries
                .into_iter()
                .filter_map(|(key, raw_meta)| match Meta::parse(&raw_meta) {
                    Ok(m) => Some((key, m)),
                    Err(e) => {
                        bad.push(format!("{}: {meta_key}: {e}", node.display));
                        None
                    }
                })
                .collect()
        })
        .collect();
    Ok((parsed, bad))
}

/// The metadata of individual keys (HGET each, pipelined).
pub async fn key_metas(node: &Node, locs: &[KeyLocation]) -> Result<Vec<Option<Meta>>, NodeError> {
    let mut pipe = redis::pipe();
    for l in locs {
        pipe.cmd("HGET").arg(&l.meta_key).arg(&l.key[..]);
    }
    let raw: Vec<Option<Vec<u8>>> = node
        .run(|mut c| async move { pipe.query_async(&mut c).await })
        .await?;
    raw.into_iter()
        .map(|r| {
            r.map(|b| Meta::parse(&b).map_err(|e| NodeError::Protocol(e.to_string())))
                .transpose()
        })
        .collect()
}

/// Writes the sentinel key that marks a node as holding the cluster's data.
pub async fn set_sentinel(node: &Node, key: &str) -> Result<(), NodeError> {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(crate::hlc::wall_clock_ms());
    node.run(|mut c| async move { cmd.query_async::<()>(&mut c).await })
        .await
}

/// A key's metadata on a node, and whether its value exists there.
pub type KeyState = (Option<Meta>, bool);

/// Per key: its metadata and whether the value key exists (HGET + EXISTS, pipelined).
pub async fn key_states(node: &Node, locs: &[KeyLocation]) -> Result<Vec<KeyState>, NodeError> {
    let mut pipe = redis::pipe();
    for l in locs {
        pipe.cmd("HGET").arg(&l.meta_key).arg(&l.key[..]);
        pipe.cmd("EXISTS").arg(&l.key[..]);
    }
    let raw: Vec<redis::Value> = node
        .run(|mut c| async move { pipe.query_async(&mut c).await })
        .await?;
    raw.chunks(2)
        .map(|pair| {
            let meta = match &pair[0] {
                redis::Value::BulkString(b) => {
                    Some(Meta::parse(b).map_err(|e| NodeError::Protocol(e.to_string()))?)
                }
                _ => None,
            };
            Ok((meta, matches!(pair.get(1), Some(redis::Value::Int(1)))))
        })
        .collect()
}

/// Absolute expiries of keys in ms, `None` for no TTL (PEXPIRETIME, pipelined).
pub async fn expiries_ms(node: &Node, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, NodeError> {
    let mut pipe = redis::pipe();
    for k in keys {
        pipe.cmd("PEXPIRETIME").arg(*k);
    }
    let at: Vec<i64> = node
        .run(|mut c| async move { pipe.query_async(&mut c).await })
        .await?;
    Ok(at
        .into_iter()
        .map(|a| (a > 0).then_some(a as u64))
        .collect())
}

/// One SCAN step: the next cursor and the keys it returned.
pub async fn scan(
    node: &Node,
    cursor: u64,
    count: usize,
) -> Result<(u64, Vec<Vec<u8>>), NodeError> {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor).arg("COUNT").arg(count);
    node.run(|mut c| async move { cmd.query_async(&mut c).await })
        .await
}

/// Sub-buckets per bucket: a mismatched bucket is narrowed to the sixteenths that differ
/// before its entries are read, so the cost of a divergent key is ~1/16 of its bucket.
pub const SUB_BUCKETS: u32 = 16;

/// Per bucket, the digests of its sub-buckets (entries grouped by entry hash mod 16).
/// KEYS: bucket metadata hashes; ARGV[1]: the number of sub-buckets.
const SUB_DIGESTS_LUA: &str = r#"#!lua flags=no-writes
local f = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local entries = redis.call('HGETALL', KEYS[i])
  local sums = {}
  for s = 1, f do sums[s] = 0 end
  for j = 2, #entries, 2 do
    local h = tonumber(string.match(entries[j], "|(%d+)$")) or 0
    local s = h % f + 1
    sums[s] = (sums[s] + h) % 281474976710656
  end
  local row = {}
  for s = 1, f do row[s] = string.format('%.0f', sums[s]) end
  out[i] = row
end
return out
"#;

/// Per bucket, the entries of the sub-buckets selected by a bit mask.
/// KEYS: bucket metadata hashes; ARGV[1]: number of sub-buckets; ARGV[1 + i]: mask of bucket i.
const READ_SUB_LUA: &str = r#"#!lua flags=no-writes
local f = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local mask = tonumber(ARGV[i + 1])
  local entries = redis.call('HGETALL', KEYS[i])
  local picked = {}
  for j = 1, #entries, 2 do
    local h = tonumber(string.match(entries[j + 1], "|(%d+)$")) or 0
    if bit.band(mask, bit.lshift(1, h % f)) ~= 0 then
      picked[#picked + 1] = entries[j]
      picked[#picked + 1] = entries[j + 1]
    end
  end
  out[i] = picked
end
return out
"#;

static SUB_DIGESTS: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(SUB_DIGESTS_LUA));
static READ_SUB: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(READ_SUB_LUA));

/// The sub-bucket digests of several buckets, one row per bucket.
pub async fn sub_digests(node: &Node, meta_keys: &[String]) -> Result<Vec<Vec<u64>>, NodeError> {
    let mut inv = SUB_DIGESTS.prepare_invoke();
    for k in meta_keys {
        inv.key(k);
    }
    inv.arg(SUB_BUCKETS);
    let rows: Vec<Vec<String>> = node
        .run(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    rows.into_iter()
        .map(|row| {
            row.iter()
                .map(|d| {
                    d.parse::<u64>().map_err(|_| {
                        NodeError::Protocol(format!("sub-digest {d:?} is not a number"))
                    })
                })
                .collect()
        })
        .collect()
}

/// The entries of the sub-buckets selected by `masks` (one per bucket), parsed; entries that
/// do not parse are returned as errors beside the good ones.
pub async fn sub_bucket_metas(
    node: &Node,
    meta_keys: &[String],
    masks: &[u32],
) -> Result<(Vec<BucketMetas>, Vec<String>), NodeError> {
    let mut inv = READ_SUB.prepare_invoke();
    for k in meta_keys {
        inv.key(k);
    }
    inv.arg(SUB_BUCKETS);
    for m in masks {
        inv.arg(*m);
    }
    let raw: Vec<Vec<Vec<u8>>> = node
        .run(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    let mut bad = Vec::new();
    let parsed = raw
        .into_iter()
        .zip(meta_keys)
        .map(|(flat, meta_key)| {
            flat.chunks(2)
                .filter_map(
                    |pair| match (pair.first(), pair.get(1).map(|m| Meta::parse(m))) {
                        (Some(key), Some(Ok(m))) => Some((key.clone(), m)),
                        (_, Some(Err(e))) => {
                            bad.push(format!("{}: {meta_key}: {e}", node.display));
                            None
                        }
                        _ => None,
                    },
                )
                .collect()
        })
        .collect();
    Ok((parsed, bad))
}
