//! Typed calls to one node: each function builds one Redis command, pipeline, transaction or
//! script invocation for a single node and parses the reply into Rust types. Deciding across
//! nodes (quorums, repairs) is the replication layer's job; nothing here looks at more than one
//! node.
//!
//! The Lua scripts are files under `crates/node/lua/`, compiled in with `include_str!`; Lua
//! shared by several scripts (`lua/shared/`) is spliced in with `concat!`. Scripts run by
//! EVALSHA; `redis::Script` reloads them on NOSCRIPT (after a node restart or a SCRIPT FLUSH).
//! The `#!lua` shebang (Redis 7+) makes Redis refuse a writing script up front under OOM or on
//! a read-only replica, instead of failing halfway through.
//!
//! One module per family: the versioned store (`store`), CRDT keys (`crdt`), the whole-bucket
//! copy (`bucket_copy`), the sweep's reads and checkpoints (`sync`), hinted handoff (`hints`), the keyspace commands' metadata reads (`keyspace`),
//! the layout marker and its conversion (`layout`), the sweep's shard leases (`lease`), locks (`locks`), queues (`queue`) and the demo's
//! deliberate damage (`demo`), keyspace notifications (`notify`) and pub/sub for RESP (`pubsub`).

pub mod bucket_copy;
pub mod crdt;
pub mod demo;
pub mod hints;
pub mod keyspace;
pub mod layout;
pub mod lease;
pub mod locks;
pub mod notify;
pub mod pubsub;
pub mod queue;
pub mod store;
pub mod sync;

use crate::pool::{Node, NodeError, Traffic};
use quorumd_core::meta::Meta;
use redis::{Cmd, ErrorKind, Script, ServerErrorKind, Value};

/// The source of `lua/shared/{file}`, by the crate's path so that a module at any depth can
/// splice it (`include_str!` resolves a relative path from the file that expands it).
macro_rules! shared_lua {
    ($file:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/lua/shared/", $file))
    };
}
pub(crate) use shared_lua;

/// Lua shared by every script that changes digests: the modulus and `add_digest(hash, field,
/// delta)`, which adds `delta` (any integer below 2^53 in magnitude) to a digest field mod 2^48
/// (a missing field is 0) with one `HINCRBY`. A field holds an int64 that only grows and is
/// folded back by 2^62 (a multiple of 2^48) before it could overflow, so its value mod 2^48 is
/// the digest: readers reduce it (`calls::sync::digests`). A macro, not a `const`, so that
/// `concat!` can splice it into each script's literal.
macro_rules! digest_lua {
    () => {
        $crate::calls::shared_lua!("digest.lua")
    };
}
pub(crate) use digest_lua;

/// Lua: the accessors of a metadata entry (format 3, `quorumd_core::meta`), the locale-free
/// version order `version_after(a, b)` and `entry_pack`, which builds an entry.
macro_rules! entry_lua {
    () => {
        $crate::calls::shared_lua!("entry.lua")
    };
}
pub(crate) use entry_lua;

/// Lua: `promise_key(mkey, key)`, where a node keeps a key's read-modify-write promise.
macro_rules! promise_lua {
    () => {
        $crate::calls::shared_lua!("promise.lua")
    };
}
pub(crate) use promise_lua;

/// Lua: `typed_read(key, mkey, full)`, a key's metadata and typed value.
macro_rules! typed_read_lua {
    () => {
        $crate::calls::shared_lua!("typed_read.lua")
    };
}
pub(crate) use typed_read_lua;

/// Lua: `clock()`, the node's time in ms (`TIME`), read at most once per script call.
macro_rules! clock_lua {
    () => {
        $crate::calls::shared_lua!("clock.lua")
    };
}
pub(crate) use clock_lua;

/// Lua: `content_of(key)`, the type letter and checksum of the value under `key` (or `-`), the
/// same function as `quorumd_core::content`.
macro_rules! content_lua {
    () => {
        $crate::calls::shared_lua!("content.lua")
    };
}
pub(crate) use content_lua;

/// Lua: `verify_entry(key, meta)`, whether a key's value is the one its metadata entry
/// records (needs `clock_lua!`, `content_lua!` and `entry_lua!` before it).
macro_rules! verify_entry_lua {
    () => {
        $crate::calls::shared_lua!("verify_entry.lua")
    };
}
pub(crate) use verify_entry_lua;

/// A CRDT key's entry hash by its terms (`crdt_field_hash`) and over a whole state
/// (`crdt_state_hash`): the merge keeps it, the scrub sums it again.
macro_rules! crdt_hash_lua {
    () => {
        $crate::calls::shared_lua!("crdt_hash.lua")
    };
}
pub(crate) use crdt_hash_lua;

/// A script whose body writes user keys, announcing those writes for the live detection
/// (`lua/shared/own.lua`): the body runs as a function, so that its `end` is published however
/// it ends, and it calls `own_begin()` before each write of a user key. The caller passes the
/// channel ([`crate::pool::Node::own_writes_channel`]) as the last argument.
macro_rules! own_writes_lua {
    ($($body:tt)*) => {
        concat!(
            $crate::calls::shared_lua!("own.lua"),
            "local function own_body()\n",
            $($body)*,
            "\nend\nreturn own_run(own_body)\n"
        )
    };
}
pub(crate) use own_writes_lua;

fn protocol(msg: impl Into<String>) -> NodeError {
    NodeError::Protocol(msg.into())
}

/// Stored metadata as a script returns it: nil, `false` or `''` when absent.
fn parse_meta(v: &Value) -> Result<Option<Meta>, NodeError> {
    match v {
        Value::Nil | Value::Int(0) | Value::Boolean(false) => Ok(None),
        Value::BulkString(b) if b.is_empty() => Ok(None),
        Value::BulkString(b) => Meta::parse(b)
            .map(Some)
            .map_err(|e| protocol(e.to_string())),
        other => Err(protocol(format!("metadata of unexpected type {other:?}"))),
    }
}

/// A version a script returned in its binary form (as metadata entries hold it).
fn parse_version(v: &Value) -> Result<quorumd_core::hlc::Version, NodeError> {
    match v {
        Value::BulkString(b) => quorumd_core::hlc::Version::from_bytes(b)
            .ok_or_else(|| protocol(format!("invalid version {b:02x?}"))),
        other => Err(protocol(format!("version of unexpected type {other:?}"))),
    }
}

fn parse_bytes(v: Option<&Value>) -> Result<Option<Vec<u8>>, NodeError> {
    match v {
        Some(Value::BulkString(b)) => Ok(Some(b.clone())),
        Some(Value::Nil | Value::Int(0) | Value::Boolean(false)) | None => Ok(None),
        Some(other) => Err(protocol(format!("value of unexpected type {other:?}"))),
    }
}

fn array(reply: Value, what: &str) -> Result<Vec<Value>, NodeError> {
    match reply {
        Value::Array(items) => Ok(items),
        other => Err(protocol(format!("{what} script returned {other:?}"))),
    }
}

/// An `EVALSHA` of `script` with `keys` keys, as one command to which the caller appends the
/// keys and then the arguments. `ScriptInvocation` would first collect every argument in an
/// allocation of its own and then copy them all into a command: on the request path that was
/// a fifth of the allocations of a write, and a heal's calls carry millions of arguments.
pub(crate) fn eval_cmd(script: &Script, keys: usize) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys);
    cmd
}

/// Runs a command built by [`eval_cmd`] as `traffic`, loading the script (whose source is
/// `code`) first if the node does not have it (a restart, `SCRIPT FLUSH`).
pub(crate) async fn run_eval(
    node: &Node,
    traffic: Traffic,
    code: &'static str,
    cmd: Cmd,
) -> Result<Value, NodeError> {
    node.run_as(traffic, |mut c| async move {
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
