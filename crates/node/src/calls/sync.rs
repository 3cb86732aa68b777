//! Per-node calls of the anti-entropy sweep: its reads, each one round trip (pipelined where it
//! covers many keys), the sentinel and the full sweep's SCAN checkpoints.

use super::store::KeyLocation;
use crate::pool::{Node, NodeError, Traffic};
use quorumd_core::digest::DIGEST_MODULUS;
use quorumd_core::hlc::wall_clock_ms;
use quorumd_core::layout::DigestKeys;
use quorumd_core::meta::Meta;
use std::collections::HashMap;

/// One unit's metadata as a node holds it: key → metadata.
pub type BucketMetas = HashMap<Vec<u8>, Meta>;

/// Keys per `MGET` of the slot digests: 16 commands for a server's 16,384, each short enough
/// (about 1,024 × 20 bytes of answer) not to hold the server up for long.
const DIGESTS_PER_MGET: usize = 1024;

/// All bucket digests of a node, given where they are ([`Layout::digest_keys`]): one
/// `HGETALL` of the hash that holds them all (`xxh3`), or the string of every slot (`slot`):
/// on a server a pipeline of `MGET`s of [`DIGESTS_PER_MGET`] keys each, on a Redis Cluster one
/// `GET` per slot (an `MGET` must stay in one slot there), which the node sends as one
/// pipeline per master. Missing buckets are empty (0).
///
/// [`Layout::digest_keys`]: quorumd_core::layout::Layout::digest_keys
pub async fn digests(node: &Node, keys: &DigestKeys) -> Result<HashMap<u32, u64>, NodeError> {
    fn bad(e: impl std::fmt::Display) -> NodeError {
        super::protocol(format!("bucket digests: {e}"))
    }
    let mut pipe = redis::pipe();
    match keys {
        DigestKeys::Hash { key, .. } => {
            pipe.cmd("HGETALL").arg(key);
        }
        DigestKeys::Strings(keys) if node.is_cluster() => {
            for k in keys {
                pipe.cmd("GET").arg(k);
            }
        }
        DigestKeys::Strings(keys) => {
            for chunk in keys.chunks(DIGESTS_PER_MGET) {
                pipe.cmd("MGET").arg(chunk);
            }
        }
    }
    let replies: Vec<redis::Value> = node
        .run_as(Traffic::Background, |mut c| async move {
            pipe.query_async(&mut c).await
        })
        .await?;
    let mut out = HashMap::new();
    match keys {
        DigestKeys::Hash { .. } => {
            for reply in replies {
                let all = redis::from_redis_value::<HashMap<u32, i64>>(reply).map_err(bad)?;
                out.extend(all.into_iter().map(|(b, d)| (b, reduced(d))));
            }
        }
        DigestKeys::Strings(keys) => {
            // One value per key, whether from the GETs or flattened from the MGETs.
            let values: Vec<redis::Value> = if node.is_cluster() {
                replies
            } else {
                let mut flat = Vec::with_capacity(keys.len());
                for reply in replies {
                    match reply {
                        redis::Value::Array(items) => flat.extend(items),
                        other => return Err(bad(format!("MGET answered {other:?}"))),
                    }
                }
                flat
            };
            if values.len() != keys.len() {
                return Err(bad(format!(
                    "{} answers for {} digests",
                    values.len(),
                    keys.len()
                )));
            }
            out.reserve(values.len());
            for (bucket, reply) in (0u32..).zip(values) {
                if let Some(d) = redis::from_redis_value::<Option<i64>>(reply).map_err(bad)? {
                    out.insert(bucket, reduced(d));
                }
            }
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

/// A digest's value as the node keeps it (an int64 that `add_digest` lets grow, see
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
        pipe.cmd("HGET").arg(&*l.meta_key).arg(&l.key[..]);
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
        pipe.cmd("HGET").arg(&*l.meta_key).arg(&l.key[..]);
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
