//! Reads and writes of the whole-bucket copy (`sync::bulk`): read a bucket on a node that
//! holds it, and write it onto a node that holds none of it.
//!
//! A heal moves millions of values, so every process keeps its per-key work small. Plain
//! commands in `MULTI`/`EXEC` transactions do the bulk of it: a script would first turn every
//! argument and reply item into a Lua string and back, which was about half of each node's CPU
//! in the heal. On the holder, one transaction reads a bucket's metadata and digest, later ones
//! read its values (one `MGET` per bucket, a `DUMP` only for keys of other types) each with the
//! digest again, to prove the bucket unchanged in between. On the empty node, a `WATCH`ed
//! transaction writes strings by `MSET` and hashes by `HSET`. Only the rarer cases go through
//! the `RESTORE_BUCKETS` script: a bucket holding other types, or one that a client wrote to
//! while the transaction was being prepared.

use super::{array, clock_lua, eval_cmd, own_writes_lua, parse_bytes, protocol, run_eval};
use crate::pool::{Node, NodeError, SlotRequest, Traffic};
use quorumd_core::layout::DigestField;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisResult, Script, Value};
use std::sync::LazyLock;

/// Copies whole buckets onto a node that holds nothing of them (a wiped or new node), far
/// cheaper per key than `APPLY`: strings without expiry in one `MSET` per 1,000, other
/// values one `SET PXAT` or `RESTORE` each, one `HSET` per metadata hash, the digest set
/// once.
///
/// KEYS: per bucket its digest key, its metadata hashes, its state keys and its value keys.
/// ARGV: per bucket its digest field (`DigestField::arg`: the bucket, or empty when the digest
/// key is a string), its digest, the three counts and the kind letters of its
/// values (`s` a string, `d` a `DUMP`, `n` no value: delete the key; `S` and `D` as `s` and `d`
/// with an expiry); then per metadata hash and state key (both hashes) its number of fields
/// followed by its fields and values (0 fields: absent); then per value key its payload (`''`
/// for `n`), followed by its absolute expiry in ms for `S` and `D`.
/// A bucket with any of its metadata hashes present on the node is left alone (a client write
/// landed since the digests were read): its answer is 0 and the caller repairs it key by key
/// with `APPLY`, which compares versions. Otherwise it is copied and its answer is 1. The check
/// and the copy are one atomic step, so no write can fall between them.
const RESTORE_BUCKETS_LUA: &str = concat!(
    "#!lua\n",
    clock_lua!(),
    own_writes_lua!(include_str!("../../lua/bucket_copy/restore_buckets.lua"))
);

static RESTORE_BUCKETS: LazyLock<Script> = LazyLock::new(|| Script::new(RESTORE_BUCKETS_LUA));

/// Where one bucket lives on a node.
#[derive(Debug, Clone)]
pub struct BucketLayout {
    pub bucket: u32,
    /// The key holding the bucket's digest, where `digest_field` says.
    pub digest_key: String,
    pub digest_field: DigestField,
    /// The hashes that hold the bucket's metadata.
    pub meta_keys: Vec<String>,
    /// Bucket-level keys that belong with the metadata (copied verbatim).
    pub state_keys: Vec<String>,
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

/// One bucket's metadata as read for a copy, with the bucket's digest read in the same
/// transaction.
#[derive(Debug, Clone)]
pub struct MetaRead {
    /// The bucket's digest, as stored.
    pub digest: Option<Vec<u8>>,
    /// Per metadata hash: its entries (key, raw metadata).
    pub meta: Vec<HashEntries>,
    /// Per state key: its entries.
    pub state: Vec<HashEntries>,
}

/// Some values of one bucket, read in one transaction with the bucket's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuesRead {
    /// The bucket's digest, as stored.
    pub digest: Option<Vec<u8>>,
    /// Per key asked for: what the read returned (`None`: nil).
    pub values: Vec<Option<Vec<u8>>>,
}

/// How [`read_values`] reads a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAs {
    /// `MGET`: strings; nil for a missing key and for a key of another type.
    Strings,
    /// `DUMP`: any type; nil for a missing key.
    Dumps,
}

/// A bucket to copy whole onto a node that holds none of it.
#[derive(Debug, Clone)]
pub struct BucketCopy {
    pub bucket: u32,
    /// The key holding the bucket's digest, where `digest_field` says.
    pub digest_key: String,
    pub digest_field: DigestField,
    /// The bucket's digest: the sum of the copied entries' hashes.
    pub digest: u64,
    /// How many metadata entries the copy holds.
    pub entries: usize,
    /// The metadata hashes with their entries (none: absent).
    pub meta: Vec<(String, HashEntries)>,
    /// The state keys (hashes too) with their entries.
    pub state: Vec<(String, HashEntries)>,
    /// Per value key: its value (`None`: delete it) and absolute expiry (0 = none).
    pub values: Vec<(Vec<u8>, Option<CopiedValue>, u64)>,
}

impl BucketCopy {
    /// Every hash the copy writes, metadata hashes first, then state keys: (key, entries).
    fn hashes(&self) -> impl Iterator<Item = &(String, HashEntries)> {
        self.meta.iter().chain(&self.state)
    }

    /// Whether every value it restores is a string (or a deletion).
    pub fn strings_only(&self) -> bool {
        self.values
            .iter()
            .all(|(_, v, _)| !matches!(v, Some(CopiedValue::Dump(_))))
    }
}

/// Runs `pipe` (in atomic mode) on `c`: the replies, one per command, or `None` when the
/// transaction was discarded because a `WATCH`ed key changed.
async fn transaction(
    c: &mut crate::pool::NodeConn,
    pipe: &Pipeline,
) -> RedisResult<Option<Vec<Value>>> {
    match pipe.query_async::<Value>(c).await? {
        Value::Nil => Ok(None),
        Value::Array(items) => Ok(Some(items)),
        other => Err(RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "transaction answered",
            format!("{other:?}"),
        ))),
    }
}

/// Runs a read-only transaction on `node`'s shared connection: the replies of its commands.
async fn read_transaction(
    node: &Node,
    pipe: Pipeline,
    what: &str,
) -> Result<Vec<Value>, NodeError> {
    let expected = pipe.len();
    let items = node
        .run_as(Traffic::Background, |mut c| async move {
            transaction(&mut c, &pipe).await
        })
        .await?
        .ok_or_else(|| protocol(format!("{what}: transaction discarded without WATCH")))?;
    exec_items(Value::Array(items), what, expected)
}

/// The replies of a read-only transaction's `expected` commands, from `EXEC`'s answer.
fn exec_items(reply: Value, what: &str, expected: usize) -> Result<Vec<Value>, NodeError> {
    match reply {
        Value::Array(items) if items.len() == expected => Ok(items),
        Value::Array(items) => Err(protocol(format!(
            "{what}: {} replies for {expected} commands",
            items.len()
        ))),
        other => Err(protocol(format!("{what}: EXEC answered {other:?}"))),
    }
}

/// Reads the metadata of whole buckets for a copy, in one transaction: per bucket its digest
/// and an `HGETALL` of each metadata hash and state key (a `DUMP` as well would cost the
/// holder a serialisation with CRC and compression attempt per hash, and `RESTORE` checks it
/// again, where an `HSET` of the entries costs the target less). The values
/// follow in separate reads ([`read_values`]), each with the digest again: a digest unchanged
/// since this read says no write changed the bucket in between (every write through quorumd
/// changes an entry's version, so its hash, so the digest), so values and metadata belong
/// together without one long atomic read blocking the node.
pub async fn read_meta(node: &Node, buckets: &[BucketLayout]) -> Result<Vec<MetaRead>, NodeError> {
    const WHAT: &str = "bucket metadata read";
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    node.per_master(
        buckets,
        |b| b.digest_key.as_str(),
        |group| SlotRequest::Transaction(meta_transaction(group)),
        |group, reply| meta_answer(group, exec_items(reply, WHAT, meta_commands(group))?),
        |group| async move {
            let items = read_transaction(node, meta_transaction(&group), WHAT).await?;
            meta_answer(&group, items)
        },
    )
    .await
}

/// The transaction of [`read_meta`] for buckets that share a slot when the node is a cluster.
fn meta_transaction(buckets: &[BucketLayout]) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for b in buckets {
        read_digest(&mut pipe, &b.digest_key, b.digest_field);
        for k in b.meta_keys.iter().chain(&b.state_keys) {
            pipe.cmd("HGETALL").arg(k);
        }
    }
    pipe
}

fn meta_commands(buckets: &[BucketLayout]) -> usize {
    buckets
        .iter()
        .map(|b| 1 + b.meta_keys.len() + b.state_keys.len())
        .sum()
}

/// Adds the read of a bucket's digest to `pipe`: its field of the digest hash, or the digest
/// key itself when that is a string.
fn read_digest(pipe: &mut Pipeline, key: &str, field: DigestField) {
    match field {
        DigestField::Hash(bucket) => pipe.cmd("HGET").arg(key).arg(bucket),
        DigestField::String => pipe.cmd("GET").arg(key),
    };
}

/// Reads the replies of [`meta_transaction`].
fn meta_answer(buckets: &[BucketLayout], items: Vec<Value>) -> Result<Vec<MetaRead>, NodeError> {
    let mut items = items.into_iter();
    let mut out = Vec::with_capacity(buckets.len());
    for b in buckets {
        let digest = next_bytes(&mut items)?;
        let mut hashes = |n: usize| -> Result<Vec<HashEntries>, NodeError> {
            (0..n)
                .map(|_| Ok(next_entries(&mut items)?.unwrap_or_default()))
                .collect()
        };
        let meta = hashes(b.meta_keys.len())?;
        let state = hashes(b.state_keys.len())?;
        out.push(MetaRead {
            digest,
            meta,
            state,
        });
    }
    Ok(out)
}

/// Reads keys of several buckets, in one transaction with each bucket's digest: per bucket
/// (the copy being prepared, keys), what each key holds, read `how`.
pub async fn read_values(
    node: &Node,
    buckets: &[(&BucketCopy, Vec<&[u8]>)],
    how: ReadAs,
) -> Result<Vec<ValuesRead>, NodeError> {
    const WHAT: &str = "bucket value read";
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    node.per_master(
        buckets,
        |(b, _)| b.digest_key.as_str(),
        |group| SlotRequest::Transaction(values_transaction(group, how)),
        |group, reply| {
            let items = exec_items(reply, WHAT, values_commands(group, how))?;
            values_answer(group, how, items)
        },
        |group| async move {
            let items = read_transaction(node, values_transaction(&group, how), WHAT).await?;
            values_answer(&group, how, items)
        },
    )
    .await
}

/// The transaction of [`read_values`] for buckets that share a slot when the node is a
/// cluster.
fn values_transaction(buckets: &[(&BucketCopy, Vec<&[u8]>)], how: ReadAs) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (b, keys) in buckets {
        read_digest(&mut pipe, &b.digest_key, b.digest_field);
        match how {
            ReadAs::Strings if !keys.is_empty() => {
                pipe.cmd("MGET").arg(keys);
            }
            ReadAs::Strings => {}
            ReadAs::Dumps => {
                for k in keys {
                    pipe.cmd("DUMP").arg(*k);
                }
            }
        }
    }
    pipe
}

fn values_commands(buckets: &[(&BucketCopy, Vec<&[u8]>)], how: ReadAs) -> usize {
    buckets
        .iter()
        .map(|(_, keys)| match how {
            ReadAs::Strings => 1 + usize::from(!keys.is_empty()),
            ReadAs::Dumps => 1 + keys.len(),
        })
        .sum()
}

/// Reads the replies of [`values_transaction`].
fn values_answer(
    buckets: &[(&BucketCopy, Vec<&[u8]>)],
    how: ReadAs,
    items: Vec<Value>,
) -> Result<Vec<ValuesRead>, NodeError> {
    let mut items = items.into_iter();
    let mut out = Vec::with_capacity(buckets.len());
    for (_, keys) in buckets {
        let digest = next_bytes(&mut items)?;
        let values = match how {
            ReadAs::Strings if keys.is_empty() => Vec::new(),
            ReadAs::Strings => match items.next() {
                Some(Value::Array(got)) if got.len() == keys.len() => {
                    let mut got = got.into_iter();
                    (0..keys.len())
                        .map(|_| next_bytes(&mut got))
                        .collect::<Result<_, _>>()?
                }
                other => return Err(protocol(format!("MGET answered {other:?}"))),
            },
            ReadAs::Dumps => (0..keys.len())
                .map(|_| next_bytes(&mut items))
                .collect::<Result<_, _>>()?,
        };
        out.push(ValuesRead { digest, values });
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
        // An item of another kind is an error, never skipped: the copy would lose the entry.
        Some(Value::Array(flat)) if flat.len() % 2 == 0 => {
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                out.push(entry(k, v)?);
            }
            Ok(Some(out))
        }
        Some(Value::Map(pairs)) => pairs
            .into_iter()
            .map(|(k, v)| entry(k, v))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(Value::Nil) | None => Ok(None),
        Some(other) => Err(protocol(format!(
            "hash entries of unexpected type {other:?}"
        ))),
    }
}

fn entry(field: Value, value: Value) -> Result<(Vec<u8>, Vec<u8>), NodeError> {
    match (field, value) {
        (Value::BulkString(f), Value::BulkString(v)) => Ok((f, v)),
        other => Err(protocol(format!("hash entry of unexpected type {other:?}"))),
    }
}

/// Copies whole buckets of strings onto a node with plain commands in one transaction, so the
/// node pays for the commands alone (a script first turns every argument into a Lua string and
/// back): `WATCH` on every metadata hash and state key of the buckets, `EXISTS` to find the
/// buckets it holds metadata of by now (not copied: `false`, as `RESTORE_BUCKETS` answers),
/// then the copies between `MULTI` and `EXEC`. A client write to any of these buckets after the
/// `WATCH` discards the transaction: `None`, nothing written, and the caller falls back to
/// [`restore_buckets`], which decides bucket by bucket. Only for buckets whose values are all
/// strings ([`BucketCopy::strings_only`]): a `RESTORE` can fail inside a transaction, and the
/// metadata after it would land without its value.
pub async fn restore_buckets_watched(
    node: &Node,
    buckets: &[&BucketCopy],
) -> Result<Option<Vec<bool>>, NodeError> {
    /// Keys per `MSET`: one command blocks the node for its whole length.
    const KEYS_PER_MSET: usize = 1000;
    if node.is_cluster() {
        // A transaction must stay in one slot there, and one per bucket saves nothing over
        // the script: the caller takes the script path.
        return Ok(None);
    }
    if buckets.iter().any(|b| !b.strings_only()) {
        return Err(protocol("a transactional copy holds strings only"));
    }
    let mut check = redis::pipe();
    let watched = buckets.iter().flat_map(|b| b.hashes().map(|(k, _)| k));
    check.cmd("WATCH").arg(watched.collect::<Vec<_>>()).ignore();
    for b in buckets {
        let keys: Vec<&String> = b.hashes().map(|(k, _)| k).collect();
        check.cmd("EXISTS").arg(keys);
    }
    let mut tx = redis::pipe();
    tx.atomic();
    // The transaction's writes of user keys are announced as a script's are: `EXEC` runs its
    // commands in order, none between them, and runs the last even when one before it failed.
    let own = node.own_writes_channel(buckets[0].digest_key.as_bytes());
    node.run_exclusive(|mut c| async move {
        let held: Vec<u64> = check.query_async(&mut c).await?;
        let empty: Vec<bool> = held.iter().map(|n| *n == 0).collect();
        if !empty.contains(&true) {
            redis::cmd("UNWATCH").exec_async(&mut c).await?;
            return Ok(Some(empty));
        }
        let copied = || {
            buckets
                .iter()
                .zip(&empty)
                .filter(|(_, e)| **e)
                .map(|(b, _)| b)
        };
        if !own.is_empty() {
            tx.cmd("PUBLISH").arg(&*own).arg("begin").ignore();
        }
        // Values first, metadata last, in the order `RESTORE_BUCKETS` writes them.
        let mut mset = redis::cmd("MSET");
        let mut in_mset = 0;
        for b in copied() {
            for (key, value, expiry) in &b.values {
                match (value, expiry) {
                    (Some(CopiedValue::String(v)), 0) => {
                        mset.arg(&key[..]).arg(&v[..]);
                        in_mset += 1;
                        if in_mset == KEYS_PER_MSET {
                            tx.add_command(std::mem::replace(&mut mset, redis::cmd("MSET")));
                            in_mset = 0;
                        }
                    }
                    // An expiry already past deletes the key (`SET` checks it).
                    (Some(CopiedValue::String(v)), at) => {
                        tx.cmd("SET").arg(&key[..]).arg(&v[..]).arg("PXAT").arg(*at);
                    }
                    _ => {
                        tx.cmd("DEL").arg(&key[..]);
                    }
                }
            }
        }
        if in_mset > 0 {
            tx.add_command(mset);
        }
        if !own.is_empty() {
            tx.cmd("PUBLISH").arg(&*own).arg("end").ignore();
        }
        for b in copied() {
            // `EXISTS` found none of these hashes, and `WATCH` holds that until `EXEC`.
            for (key, entries) in b.hashes() {
                if !entries.is_empty() {
                    let hset = tx.cmd("HSET").arg(key);
                    for (field, value) in entries {
                        hset.arg(&field[..]).arg(&value[..]);
                    }
                }
            }
            match b.digest_field {
                DigestField::Hash(field) => tx.cmd("HSET").arg(&*b.digest_key).arg(field),
                DigestField::String => tx.cmd("SET").arg(&*b.digest_key),
            }
            .arg(b.digest);
        }
        Ok(transaction(&mut c, &tx).await?.map(|_| empty))
    })
    .await
}

/// Copies whole buckets onto a node with `RESTORE_BUCKETS`; per bucket, whether it was copied
/// (`false`: the node holds metadata of that bucket by now, repair it key by key). The script
/// is safe to send twice, as [`Node::per_master`] may: a bucket copied the first time has its
/// metadata, so the second answers `false` for it.
pub async fn restore_buckets(node: &Node, buckets: &[&BucketCopy]) -> Result<Vec<bool>, NodeError> {
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    node.per_master(
        buckets,
        |b| b.digest_key.as_str(),
        |group| SlotRequest::Script {
            eval: restore_command(node, group),
            code: RESTORE_BUCKETS_LUA,
        },
        restore_answer,
        |group| async move {
            let cmd = restore_command(node, &group);
            restore_answer(
                &group,
                run_eval(node, Traffic::Background, RESTORE_BUCKETS_LUA, cmd).await?,
            )
        },
    )
    .await
}

/// The `RESTORE_BUCKETS` call for buckets that share a slot when the node is a cluster.
fn restore_command(node: &Node, buckets: &[&BucketCopy]) -> Cmd {
    let keys: usize = buckets
        .iter()
        .map(|b| 1 + b.meta.len() + b.state.len() + b.values.len())
        .sum::<usize>();
    let mut cmd = eval_cmd(&RESTORE_BUCKETS, keys);
    for b in buckets {
        cmd.arg(&*b.digest_key);
        for (key, _) in b.hashes() {
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
        cmd.arg(b.digest_field.arg())
            .arg(b.digest)
            .arg(b.meta.len())
            .arg(b.state.len())
            .arg(b.values.len())
            .arg(&kinds);
        for (_, entries) in b.hashes() {
            cmd.arg(entries.len());
            for (field, value) in entries {
                cmd.arg(&field[..]).arg(&value[..]);
            }
        }
        for ((_, value, expiry), kind) in b.values.iter().zip(&kinds) {
            cmd.arg(CopiedValue::payload(value.as_ref()));
            if matches!(kind, b'S' | b'D') {
                cmd.arg(*expiry);
            }
        }
    }
    cmd.arg(&*node.own_writes_channel(buckets[0].digest_key.as_bytes()));
    cmd
}

/// Reads the answer of [`restore_command`]: per bucket, whether it was copied.
fn restore_answer(buckets: &[&BucketCopy], reply: Value) -> Result<Vec<bool>, NodeError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn hash_entries_are_read_whole_or_refused() {
        let pair = |f: &str, v: &str| (f.as_bytes().to_vec(), v.as_bytes().to_vec());
        let flat = Value::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")]);
        assert_eq!(
            next_entries(&mut std::iter::once(flat)).unwrap(),
            Some(vec![pair("a", "1"), pair("b", "2")])
        );
        let map = Value::Map(vec![(bulk("a"), bulk("1"))]);
        assert_eq!(
            next_entries(&mut std::iter::once(map)).unwrap(),
            Some(vec![pair("a", "1")])
        );
        assert_eq!(
            next_entries(&mut std::iter::once(Value::Nil)).unwrap(),
            None
        );
        // An entry that is not two strings, or a field without its value, is not skipped.
        for bad in [
            Value::Array(vec![bulk("a"), Value::Int(1), bulk("b"), bulk("2")]),
            Value::Array(vec![bulk("a"), bulk("1"), bulk("b")]),
            Value::Map(vec![(bulk("a"), Value::Nil)]),
        ] {
            assert!(next_entries(&mut std::iter::once(bad)).is_err());
        }
    }
}
