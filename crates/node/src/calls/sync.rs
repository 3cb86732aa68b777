//! Per-node calls of the anti-entropy sweep: its reads, each one round trip (pipelined where it
//! covers many keys), the sentinel and the full sweep's SCAN checkpoints.

use super::store::KeyLocation;
use crate::pool::{Node, NodeError, Traffic};
use quorumd_core::digest::DIGEST_MODULUS;
use quorumd_core::hlc::wall_clock_ms;
use quorumd_core::meta::Meta;
use std::collections::HashMap;
use std::ops::Range;

/// One unit's metadata as a node holds it: key → metadata.
pub type BucketMetas = HashMap<Vec<u8>, Meta>;

/// All bucket digests of a node, given the hashes that hold them, each with the buckets whose
/// digest it holds: one `HGETALL` for a hash of many buckets, one `HGET` for a hash of one
/// (one per hash slot), all in one pipeline. Missing buckets are empty (0).
pub async fn digests(
    node: &Node,
    digest_keys: &[(String, Range<u32>)],
) -> Result<HashMap<u32, u64>, NodeError> {
    let mut pipe = redis::pipe();
    for (key, buckets) in digest_keys {
        if buckets.len() == 1 {
            pipe.cmd("HGET").arg(key).arg(buckets.start);
        } else {
            pipe.cmd("HGETALL").arg(key);
        }
    }
    let replies: Vec<redis::Value> = node
        .run_as(Traffic::Background, |mut c| async move {
            pipe.query_async(&mut c).await
        })
        .await?;
    let bad = |e| super::protocol(format!("bucket digests: {e}"));
    let mut out = HashMap::new();
    for ((_, buckets), reply) in digest_keys.iter().zip(replies) {
        if buckets.len() == 1 {
            if let Some(d) = redis::from_redis_value::<Option<i64>>(reply).map_err(bad)? {
                out.insert(buckets.start, reduced(d));
            }
        } else {
            let all = redis::from_redis_value::<HashMap<u32, i64>>(reply).map_err(bad)?;
            out.extend(all.into_iter().map(|(b, d)| (b, reduced(d))));
        }
    }
    Ok(out)
}

/// The sub-bucket digests of several buckets, one map (sub-bucket → digest) per sub-digest
/// hash given (HGETALL each, pipelined). Missing sub-buckets are empty (0).
pub async fn sub_digests(
    node: &Node,
    sub_digest_keys: &[String],
) -> Result<Vec<HashMap<u32, u64>>, NodeError> {
    let mut pipe = redis::pipe();
    for k in sub_digest_keys {
        pipe.cmd("HGETALL").arg(k);
    }
    let raw: Vec<HashMap<u32, i64>> = node
        .run(|mut c| async move { pipe.query_async(&mut c).await })
        .await?;
    Ok(raw
        .into_iter()
        .map(|subs| subs.into_iter().map(|(s, d)| (s, reduced(d))).collect())
        .collect())
}

/// A digest field's value as the node keeps it (an int64 that `add_digest` lets grow, see
/// `digest_lua!`) reduced to the digest itself.
fn reduced(field: i64) -> u64 {
    field.rem_euclid(DIGEST_MODULUS as i64) as u64
}

/// The metadata of several units (HGETALL of every hash, in one pipeline), each unit the
/// union of its metadata hashes: one sub-bucket hash for the exchange, a bucket's S hashes for
/// the full sweep. Entries that do not parse are returned as errors beside the good ones, so
/// one corrupt entry does not hide a bucket.
pub async fn bucket_metas<U: AsRef<[String]>>(
    node: &Node,
    units: &[U],
) -> Result<(Vec<BucketMetas>, Vec<String>), NodeError> {
    let mut pipe = redis::pipe();
    for k in units.iter().flat_map(|u| u.as_ref()) {
        pipe.cmd("HGETALL").arg(k);
    }
    let raw: Vec<Vec<(Vec<u8>, Vec<u8>)>> = node
        .run(|mut c| async move { pipe.query_async(&mut c).await })
        .await?;
    let mut raw = raw.into_iter();
    let mut bad = Vec::new();
    let parsed = units
        .iter()
        .map(|unit| {
            let mut metas = BucketMetas::new();
            for (meta_key, entries) in unit.as_ref().iter().zip(raw.by_ref()) {
                for (key, raw_meta) in entries {
                    match Meta::parse(&raw_meta) {
                        Ok(m) => {
                            metas.insert(key, m);
                        }
                        Err(e) => bad.push(format!("{}: {meta_key}: {e}", node.display)),
                    }
                }
            }
            metas
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

/// Writes the sentinel keys that mark a node as holding the cluster's data (one per master of
/// a Redis Cluster replica, each in a slot of its own: one `SET` each).
pub async fn set_sentinels(node: &Node, keys: &[String]) -> Result<(), NodeError> {
    for key in keys {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(wall_clock_ms());
        node.run_as(Traffic::Background, |mut c| async move {
            cmd.query_async::<()>(&mut c).await
        })
        .await?;
    }
    Ok(())
}

/// Adds sentinel marks to a node's sentinel records (`HSET`, each field valued with the
/// wall-clock ms it was recorded at): these sentinels were given.
pub async fn record_sentinels(
    node: &Node,
    records_key: &str,
    marks: &[String],
) -> Result<(), NodeError> {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(records_key);
    let now = wall_clock_ms();
    for mark in marks {
        cmd.arg(mark).arg(now);
    }
    node.run_as(Traffic::Background, |mut c| async move {
        cmd.query_async::<()>(&mut c).await
    })
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

/// One SCAN step: the next cursor and the keys it returned.
pub async fn scan(
    node: &Node,
    cursor: u64,
    count: usize,
) -> Result<(u64, Vec<Vec<u8>>), NodeError> {
    node.run_as(Traffic::Background, |mut c| async move {
        c.scan(cursor, None, count).await
    })
    .await
}

/// A full sweep's saved SCAN position on a node: the cursor and the `run_id` of the server it
/// was taken on (each `None` when not saved).
pub async fn load_checkpoint(
    node: &Node,
    key: &str,
) -> Result<(Option<u64>, Option<String>), NodeError> {
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(key).arg("cursor").arg("run_id");
    node.run(|mut c| async move { cmd.query_async(&mut c).await })
        .await
}

/// Saves a full sweep's SCAN position on a node, with the server's `run_id`; cursor 0 (the
/// scan finished) deletes it.
pub async fn save_checkpoint(
    node: &Node,
    key: &str,
    cursor: u64,
    run_id: &str,
) -> Result<(), NodeError> {
    let mut cmd = if cursor == 0 {
        redis::cmd("DEL")
    } else {
        redis::cmd("HSET")
    };
    cmd.arg(key);
    if cursor != 0 {
        cmd.arg("cursor")
            .arg(cursor)
            .arg("run_id")
            .arg(run_id)
            .arg("at_ms")
            .arg(wall_clock_ms());
    }
    node.run_as(Traffic::Background, |mut c| async move {
        cmd.query_async::<()>(&mut c).await
    })
    .await
}

/// The full sweep's saved bucket position (its second phase) on a node: the next bucket to
/// check, or `None` when none is saved.
pub async fn load_bucket_checkpoint(node: &Node, key: &str) -> Result<Option<u32>, NodeError> {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    node.run_as(Traffic::Background, |mut c| async move {
        cmd.query_async(&mut c).await
    })
    .await
}

/// Saves the next bucket the full sweep's second phase will check; `None` (the phase
/// finished) deletes it.
pub async fn save_bucket_checkpoint(
    node: &Node,
    key: &str,
    next: Option<u32>,
) -> Result<(), NodeError> {
    let cmd = match next {
        Some(b) => {
            let mut c = redis::cmd("SET");
            c.arg(key).arg(b);
            c
        }
        None => {
            let mut c = redis::cmd("DEL");
            c.arg(key);
            c
        }
    };
    node.run_as(Traffic::Background, |mut c| async move {
        cmd.query_async::<()>(&mut c).await
    })
    .await
}
