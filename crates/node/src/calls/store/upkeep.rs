//! Keeping the metadata in order: purging entries no longer needed, rebuilding digests that
//! drifted, and counting the user keys.

use super::*;

/// Removes metadata entries that are exactly as expected (purged tombstones, long-expired
/// values), keeping both digest levels in step. KEYS, four per entry: the value key, its
/// sub-bucket metadata hash, its bucket's digest key and its sub-digest hash. ARGV, three per
/// entry: the bucket's digest field (as for `APPLY`), sub-bucket, the expected encoded metadata.
/// Last ARGV: the channel to announce the deleted values on (`own_writes_lua!`), `''` for none.
/// Returns how many entries were removed.
const PURGE_LUA: &str = concat!(
    "#!lua\n",
    digest_lua!(),
    entry_lua!(),
    own_writes_lua!(include_str!("../../../lua/store/purge.lua"))
);

/// Recomputes both digest levels of a batch of buckets from their metadata and fixes the
/// fields that drifted. KEYS: per bucket its digest key, its sub-digest hash and its S
/// sub-bucket metadata hashes. ARGV: S, then per bucket, in the same order, its number and its
/// digest field (`DigestField::arg`: empty when the digest key is a string).
/// Returns the buckets where the bucket digest or any sub-digest was wrong.
const REBUILD_DIGESTS_LUA: &str = concat!(
    "#!lua\n",
    digest_lua!(),
    entry_lua!(),
    include_str!("../../../lua/store/rebuild_digests.lua")
);

static PURGE: LazyLock<Script> = LazyLock::new(|| Script::new(PURGE_LUA));
static REBUILD_DIGESTS: LazyLock<Script> = LazyLock::new(|| Script::new(REBUILD_DIGESTS_LUA));

/// Removes metadata entries that still equal `expected`; returns how many were removed.
pub async fn purge(node: &Node, entries: &[(&KeyLocation, &Meta)]) -> Result<u64, NodeError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let purged = node
        .per_slot_groups(
            entries,
            |(loc, _)| &loc.key[..],
            |group| async move {
                let mut inv = PURGE.prepare_invoke();
                for (loc, meta) in &group {
                    inv.key(&loc.key[..])
                        .key(&*loc.meta_key)
                        .key(&*loc.digest_key)
                        .key(&*loc.sub_digest_key);
                    inv.arg(loc.digest_field.arg())
                        .arg(loc.sub)
                        .arg(meta.encode());
                }
                inv.arg(&*node.own_writes_channel(&group[0].0.key));
                node.run_as(Traffic::Background, |mut c| async move {
                    inv.invoke_async::<u64>(&mut c).await
                })
                .await
            },
        )
        .await?;
    Ok(purged.into_iter().sum())
}

/// Where one bucket's digests and metadata live on a node, for [`rebuild_digests`].
#[derive(Debug, Clone)]
pub struct BucketDigestKeys {
    pub bucket: u32,
    /// The key holding the bucket's digest, where `digest_field` says.
    pub digest_key: String,
    pub digest_field: DigestField,
    /// The bucket's sub-digest hash.
    pub sub_digest_key: String,
    /// Its S sub-bucket metadata hashes, in sub-bucket order.
    pub meta_keys: Vec<String>,
}

/// Recomputes both digest levels of `buckets` from their metadata; returns the buckets that
/// drifted. Every bucket has the same number of sub-buckets, `sub_buckets`.
pub async fn rebuild_digests(
    node: &Node,
    sub_buckets: u32,
    buckets: &[BucketDigestKeys],
) -> Result<Vec<u32>, NodeError> {
    let drifted = node
        .per_slot_groups(
            buckets,
            |b| b.digest_key.as_str(),
            |group| async move { rebuild_slot_digests(node, sub_buckets, &group).await },
        )
        .await?;
    Ok(drifted.into_iter().flatten().collect())
}

/// [`rebuild_digests`] for buckets that share a slot when the node is a cluster.
async fn rebuild_slot_digests(
    node: &Node,
    sub_buckets: u32,
    buckets: &[BucketDigestKeys],
) -> Result<Vec<u32>, NodeError> {
    let mut inv = REBUILD_DIGESTS.prepare_invoke();
    inv.arg(sub_buckets);
    for b in buckets {
        if b.meta_keys.len() != sub_buckets as usize {
            return Err(protocol(format!(
                "bucket {} given {} metadata hashes for {sub_buckets} sub-buckets",
                b.bucket,
                b.meta_keys.len()
            )));
        }
        inv.key(&*b.digest_key).key(&*b.sub_digest_key);
        for k in &b.meta_keys {
            inv.key(k);
        }
        inv.arg(b.bucket).arg(b.digest_field.arg());
    }
    node.run_as(Traffic::Background, |mut c| async move {
        inv.invoke_async(&mut c).await
    })
    .await
}

/// A node's key count less quorumd's own keys: the digest hashes, the sentinel and its
/// records, the layout marker, the live detection's probe key, each bucket's sub-digest hash
/// and its sub-bucket metadata hashes (one per sub-bucket with a non-zero digest). Leases,
/// hints and sweep checkpoints are few and not subtracted. O(B × S) field reads, which is what
/// an exact count of the metadata hashes costs without a counter on the write path.
const USER_KEYS_LUA: &str = include_str!("../../../lua/store/user_keys.lua");

static USER_KEYS: LazyLock<Script> = LazyLock::new(|| Script::new(USER_KEYS_LUA));

/// The number of user keys on one node (see `USER_KEYS_LUA`): `singles` are quorumd's keys
/// subtracted when they exist, `sub_digest_keys` every bucket's sub-digest hash.
pub async fn user_key_count(
    node: &Node,
    singles: &[String],
    sub_digest_keys: &[String],
) -> Result<i64, NodeError> {
    if !node.is_cluster() {
        let mut inv = USER_KEYS.prepare_invoke();
        for k in singles.iter().chain(sub_digest_keys) {
            inv.key(k);
        }
        inv.arg(singles.len());
        return node
            .run(|mut c| async move { inv.invoke_async::<i64>(&mut c).await })
            .await;
    }
    // A cluster: every master's DBSIZE, less quorumd's keys, counted as the script counts
    // them but from one pipeline per master (a script per slot would be 16,384 calls), so
    // not atomically: a write between the two reads can skew the count by its keys.
    let mut pipe = redis::pipe();
    for k in singles {
        pipe.cmd("EXISTS").arg(k);
    }
    for k in sub_digest_keys {
        pipe.cmd("HVALS").arg(k);
    }
    let (exist, subs): (Vec<i64>, Vec<Vec<Vec<u8>>>) = node
        .run(|mut c| async move {
            let answers: Vec<Value> = pipe.query_async(&mut c).await?;
            let (e, s) = answers.split_at(singles.len());
            Ok((
                redis::FromRedisValue::from_redis_value(Value::Array(e.to_vec()))?,
                redis::FromRedisValue::from_redis_value(Value::Array(s.to_vec()))?,
            ))
        })
        .await?;
    let own: i64 = exist.iter().sum::<i64>()
        + subs
            .iter()
            .map(|digests| {
                let hashes = digests.iter().filter(|d| d.as_slice() != b"0").count();
                i64::from(!digests.is_empty()) + hashes as i64
            })
            .sum::<i64>();
    let sizes = node
        .run(|mut c| async move { c.on_every_master(&redis::cmd("DBSIZE")).await })
        .await?;
    let mut total = -own;
    for (_, size) in sizes {
        total += <i64 as redis::FromRedisValue>::from_redis_value(size)
            .map_err(|e| protocol(e.to_string()))?;
    }
    Ok(total.max(0))
}
