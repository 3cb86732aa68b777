//! The layout marker (`{prefix}layout`): which entry format and placement a node's metadata
//! uses, so that quorumd never reads metadata of another layout as its own, and the in-place
//! conversions: entry formats 1 and 2, and sub-buckets merged into fewer.

use super::{content_lua, digest_lua, entry_lua, protocol};
use crate::pool::{Node, NodeError, Traffic};
use quorumd_core::content::StreamChecksum;
use redis::{Script, Value};
use std::collections::HashMap;
use std::sync::LazyLock;

/// Rewrites entries of formats 1 and 2 as format 3 (see `convert.lua`). KEYS: metadata hashes.
const CONVERT_LUA: &str = concat!(
    "#!lua\n",
    content_lua!(),
    entry_lua!(),
    include_str!("../../lua/store/convert.lua")
);

static CONVERT: LazyLock<Script> = LazyLock::new(|| Script::new(CONVERT_LUA));

/// Turns the slot placement's bucket digests from one-field hashes into strings in place (see
/// `convert_slot_digests.lua`). KEYS: digest keys.
const CONVERT_SLOT_DIGESTS_LUA: &str = include_str!("../../lua/store/convert_slot_digests.lua");

static CONVERT_SLOT_DIGESTS: LazyLock<Script> =
    LazyLock::new(|| Script::new(CONVERT_SLOT_DIGESTS_LUA));

/// Merges buckets' sub-bucket metadata hashes into fewer (see `merge_sub_buckets.lua`).
const MERGE_SUB_BUCKETS_LUA: &str = concat!(
    "#!lua\n",
    digest_lua!(),
    entry_lua!(),
    include_str!("../../lua/store/merge_sub_buckets.lua")
);

static MERGE_SUB_BUCKETS: LazyLock<Script> = LazyLock::new(|| Script::new(MERGE_SUB_BUCKETS_LUA));

/// What a node says about its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeLayout {
    /// No quorumd metadata at all: any layout may be written.
    Empty,
    /// Metadata without a layout marker: entry format 1, from before content checksums.
    Unmarked,
    /// The marker's fields (`format`, `placement`, `buckets`, `sub_buckets`).
    Marked(HashMap<String, String>),
}

/// Reads the layout marker, and whether metadata exists (the bucket digest hash is written by
/// every change of metadata, so it exists exactly when some metadata does).
pub async fn read(
    node: &Node,
    layout_key: &str,
    digest_key: &str,
) -> Result<NodeLayout, NodeError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HGETALL")
        .arg(layout_key)
        .cmd("EXISTS")
        .arg(digest_key);
    let (fields, has_metadata): (HashMap<String, String>, bool) = node
        .run_as(Traffic::Background, |mut c| async move {
            pipe.query_async(&mut c).await
        })
        .await?;
    Ok(if !fields.is_empty() {
        NodeLayout::Marked(fields)
    } else if has_metadata {
        NodeLayout::Unmarked
    } else {
        NodeLayout::Empty
    })
}

/// Writes the layout marker.
pub async fn write(
    node: &Node,
    layout_key: &str,
    fields: &[(&str, String)],
) -> Result<(), NodeError> {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(layout_key);
    for (f, v) in fields {
        cmd.arg(*f).arg(v);
    }
    node.run_as(Traffic::Background, |mut c| async move {
        cmd.query_async::<i64>(&mut c).await
    })
    .await
    .map(drop)
}

/// Some of a node's metadata, to tell whose it is without reading it all: up to `hashes`
/// metadata hashes whose names start with `meta_prefix`, found by at most `steps` `SCAN`
/// calls, each with up to `per_hash` of its entries (`HRANDFIELD … WITHVALUES`) as (field,
/// entry) pairs.
pub async fn sample_metadata(
    node: &Node,
    meta_prefix: &str,
    hashes: usize,
    per_hash: usize,
    steps: usize,
) -> Result<Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>, NodeError> {
    let pattern = [
        super::notify::escape_glob(meta_prefix.as_bytes()),
        b"*".to_vec(),
    ]
    .concat();
    let pattern = String::from_utf8_lossy(&pattern).into_owned();
    let mut found: Vec<String> = Vec::new();
    let mut cursor = 0;
    for _ in 0..steps {
        let pattern = pattern.as_str();
        let (next, keys) = node
            .run_as(Traffic::Background, |mut c| async move {
                c.scan(cursor, Some(pattern), 1000).await
            })
            .await?;
        found.extend(keys.into_iter().filter_map(|k| String::from_utf8(k).ok()));
        cursor = next;
        if cursor == 0 || found.len() >= hashes {
            break;
        }
    }
    found.truncate(hashes);
    let mut sample = Vec::with_capacity(found.len());
    for key in found {
        let mut cmd = redis::cmd("HRANDFIELD");
        cmd.arg(&key).arg(per_hash).arg("WITHVALUES");
        let flat: Vec<Vec<u8>> = node
            .run_as(Traffic::Background, |mut c| async move {
                cmd.query_async(&mut c).await
            })
            .await?;
        let mut pairs = flat.into_iter();
        let mut entries = Vec::new();
        while let (Some(field), Some(entry)) = (pairs.next(), pairs.next()) {
            entries.push((field, entry));
        }
        sample.push((key, entries));
    }
    Ok(sample)
}

/// Converts the format-1 entries of `meta_keys` in place, a stream's content by the function
/// `stream` names; returns how many were converted.
pub async fn convert(
    node: &Node,
    meta_keys: &[String],
    stream: StreamChecksum,
) -> Result<u64, NodeError> {
    if meta_keys.is_empty() {
        return Ok(0);
    }
    let mut inv = CONVERT.prepare_invoke();
    for k in meta_keys {
        inv.key(k);
    }
    inv.arg(stream.code().to_string());
    let reply: Value = node
        .run_as(Traffic::Background, |mut c| async move {
            inv.invoke_async(&mut c).await
        })
        .await?;
    match reply {
        Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
        other => Err(protocol(format!("convert script returned {other:?}"))),
    }
}

/// Converts the slot placement's bucket digests `keys` (`Layout::digest_keys`) stored as
/// one-field hashes, the form before 2026-12-07, into the strings this build reads and writes,
/// keeping each value; returns how many were converted. Keys already strings, or absent, are
/// left alone, so it is safe to run again. On a Redis Cluster, one call per slot.
pub async fn convert_slot_digests(node: &Node, keys: &[String]) -> Result<u64, NodeError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let counts = node
        .per_slot_groups(
            keys,
            |k| k.as_str(),
            |group| async move {
                let mut inv = CONVERT_SLOT_DIGESTS.prepare_invoke();
                for k in &group {
                    inv.key(k);
                }
                node.run_as(Traffic::Background, |mut c| async move {
                    inv.invoke_async::<u64>(&mut c).await
                })
                .await
            },
        )
        .await?;
    Ok(counts.into_iter().sum())
}

/// One bucket's keys for [`merge_sub_buckets`].
#[derive(Debug, Clone)]
pub struct BucketSubKeys {
    /// The bucket's sub-digest hash.
    pub sub_digest_key: String,
    /// Its metadata hashes under the node's present sub-bucket count, in sub-bucket order.
    pub meta_keys: Vec<String>,
}

/// Merges each bucket's metadata hashes into `target` sub-buckets (a power of two below their
/// present count, the same for every bucket) in place, with the sub-digests summed again;
/// returns the entries moved. On a Redis Cluster, one call per slot.
pub async fn merge_sub_buckets(
    node: &Node,
    buckets: &[BucketSubKeys],
    target: u32,
) -> Result<u64, NodeError> {
    let Some(from) = buckets.first().map(|b| b.meta_keys.len()) else {
        return Ok(0);
    };
    if !target.is_power_of_two() || target as usize >= from {
        return Err(protocol(format!(
            "cannot merge {from} sub-buckets into {target}"
        )));
    }
    if let Some(b) = buckets.iter().find(|b| b.meta_keys.len() != from) {
        return Err(protocol(format!(
            "{} given {} metadata hashes, the others {from}",
            b.sub_digest_key,
            b.meta_keys.len()
        )));
    }
    let moved = node
        .per_slot_groups(
            buckets,
            |b| b.sub_digest_key.as_str(),
            |group| async move {
                let mut inv = MERGE_SUB_BUCKETS.prepare_invoke();
                for b in &group {
                    inv.key(&*b.sub_digest_key);
                    for k in &b.meta_keys {
                        inv.key(k);
                    }
                }
                inv.arg(target).arg(from);
                node.run_as(Traffic::Background, |mut c| async move {
                    inv.invoke_async::<u64>(&mut c).await
                })
                .await
            },
        )
        .await?;
    Ok(moved.into_iter().sum())
}
