//! The node-side scripts of CRDT keys: merge an incoming state into the stored one, and read a
//! state with its metadata.
//!
//! A CRDT key has three parts on a node, all touched by one atomic script:
//! - its state, in the hash `{prefix}c:{key}` (`Layout::state_key`): the fields of `quorumd_core::crdt` (per-actor counter
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

use super::store::KeyLocation;
use super::{content_lua, crdt_hash_lua, digest_lua, entry_lua, own_writes_lua, protocol};
use crate::pool::{Node, NodeError, Traffic};
use quorumd_core::crdt::{CrdtKind, Fields};
use quorumd_core::meta::Meta;
use redis::{Script, Value};
use std::sync::LazyLock;

/// KEYS: the bucket digest key, the value key, its sub-bucket metadata hash, its state hash,
/// its bucket's sub-digest hash.
/// ARGV: the bucket's digest field (`DigestField::arg`), sub-bucket, kind code, `1` to return the merged state (else `0`), then
/// field/value pairs, then the channel to announce the value's rewrite on (`own_writes_lua!`,
/// `''` for none).
/// Returns `{code, metadata or false, state or {}}`: code 1 changed, 0 unchanged, 4 the key
/// holds another kind of entry (then nothing is written).
const MERGE_LUA: &str = concat!(
    "#!lua\n",
    digest_lua!(),
    content_lua!(),
    entry_lua!(),
    crdt_hash_lua!(),
    own_writes_lua!(include_str!("../../lua/crdt/merge.lua"))
);

/// KEYS: the value key, its bucket metadata hash, its state hash.
/// Returns `{metadata or false, state}`.
const READ_STATE_LUA: &str = include_str!("../../lua/crdt/read_state.lua");

/// KEYS, three per key: the value key, its metadata hash, its state hash. Returns per key 1
/// when its entry is a CRDT's whose hash is not the sum of the state's fields (the state was
/// changed outside quorumd), else 0. `no-writes`: the scrub runs it on every CRDT entry.
const VERIFY_STATE_LUA: &str = concat!(
    "#!lua flags=no-writes\n",
    entry_lua!(),
    crdt_hash_lua!(),
    include_str!("../../lua/crdt/verify_state.lua")
);

static MERGE: LazyLock<Script> = LazyLock::new(|| Script::new(MERGE_LUA));
static READ_STATE: LazyLock<Script> = LazyLock::new(|| Script::new(READ_STATE_LUA));
static VERIFY_STATE: LazyLock<Script> = LazyLock::new(|| Script::new(VERIFY_STATE_LUA));

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

/// Stored metadata; unlike `super::parse_meta`, an empty string is malformed, not absent: these
/// scripts answer `false` for a missing entry.
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
    merge_as(
        node,
        loc,
        state_key,
        kind,
        fields,
        if want_state { "1" } else { "0" },
    )
    .await
}

/// Rewrites a CRDT key's materialised value from its state on one node (a value changed
/// outside quorumd): the merge script with nothing to merge and a forced rebuild. `Changed`
/// when the key holds a CRDT of `kind` there.
pub async fn rebuild(
    node: &Node,
    loc: &KeyLocation,
    state_key: &[u8],
    kind: CrdtKind,
) -> Result<MergeReply, NodeError> {
    merge_as(node, loc, state_key, kind, &Fields::new(), "r").await
}

/// Recomputes a CRDT key's entry hash from its state as it stands on one node, rewriting its
/// metadata, digests and value (a state changed outside quorumd): the merge script with
/// nothing to merge and a rehash. The digests then differ from the other nodes', and the
/// sweep merges the states as for any CRDT key.
pub async fn rehash(
    node: &Node,
    loc: &KeyLocation,
    state_key: &[u8],
    kind: CrdtKind,
) -> Result<MergeReply, NodeError> {
    merge_as(node, loc, state_key, kind, &Fields::new(), "h").await
}

/// Checks, on one node, whether each CRDT key's state is the one its entry hash sums; one
/// answer per `(location, state key)`, `true` when the state was changed. Keys that are not
/// CRDT keys there answer `false`.
pub async fn verify_states(
    node: &Node,
    keys: &[(&KeyLocation, &[u8])],
) -> Result<Vec<bool>, NodeError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    node.per_slot(
        keys,
        |(l, _)| &l.key[..],
        |group| async move {
            let mut inv = VERIFY_STATE.prepare_invoke();
            for (l, state_key) in &group {
                inv.key(&l.key[..]).key(&*l.meta_key).key(*state_key);
            }
            let reply: Value = node
                .run_as(Traffic::Background, |mut c| async move {
                    inv.invoke_async(&mut c).await
                })
                .await?;
            let Value::Array(items) = reply else {
                return Err(protocol(format!("verify_state script returned {reply:?}")));
            };
            if items.len() != group.len() {
                return Err(protocol(format!(
                    "verify_state script returned {} items for {} keys",
                    items.len(),
                    group.len()
                )));
            }
            items
                .iter()
                .map(|v| match v {
                    Value::Int(code) => Ok(*code == 1),
                    other => Err(protocol(format!("verify_state code {other:?}"))),
                })
                .collect()
        },
    )
    .await
}

async fn merge_as(
    node: &Node,
    loc: &KeyLocation,
    state_key: &[u8],
    kind: CrdtKind,
    fields: &Fields,
    want: &str,
) -> Result<MergeReply, NodeError> {
    let mut inv = MERGE.prepare_invoke();
    inv.key(&*loc.digest_key)
        .key(&loc.key[..])
        .key(&*loc.meta_key)
        .key(state_key)
        .key(&*loc.sub_digest_key);
    inv.arg(loc.digest_field.arg())
        .arg(loc.sub)
        .arg(kind.code().to_string())
        .arg(want);
    for (f, v) in fields {
        inv.arg(&f[..]).arg(&v[..]);
    }
    inv.arg(&*node.own_writes_channel(&loc.key));
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
    inv.key(&loc.key[..]).key(&*loc.meta_key).key(state_key);
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
