//! Per-node read behind the keyspace commands (SCAN, KEYS, RANDOMKEY, FLUSHDB): the metadata
//! entries of a range of buckets, raw, as the node holds them. Deciding which keys are live
//! across nodes is the replication layer's job (`store::keyspace`).
//!
//! Also the read-only questions RESP's OBJECT, MEMORY USAGE and CONFIG GET put to one node
//! (`inspect`, `config_get`): the answers are that node's own, which the replication layer
//! picks among (`store::inspect`).

use crate::pool::{Node, NodeError};
use redis::{Script, Value};
use std::sync::LazyLock;

const META_ENTRIES_LUA: &str = include_str!("../../lua/keyspace/meta_entries.lua");

static META_ENTRIES: LazyLock<Script> = LazyLock::new(|| Script::new(META_ENTRIES_LUA));

/// One metadata hash's entries: (user key, encoded metadata).
pub type RawEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// The entries of every hash in `meta_keys`, in the same order (an empty or missing hash
/// answers none), read in one script call that sends back only the non-empty hashes. Client
/// traffic: a client command waits for it.
pub async fn meta_entries(node: &Node, meta_keys: &[String]) -> Result<Vec<RawEntries>, NodeError> {
    if meta_keys.is_empty() {
        return Ok(Vec::new());
    }
    node.per_slot(
        meta_keys,
        |k| k.as_str(),
        |group| async move {
            let mut inv = META_ENTRIES.prepare_invoke();
            for k in &group {
                inv.key(k);
            }
            let reply: Vec<Value> = node
                .run(|mut c| async move { inv.invoke_async(&mut c).await })
                .await?;
            parse(reply, group.len())
        },
    )
    .await
}

/// What OBJECT or MEMORY USAGE asks a node about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inspection {
    Encoding,
    RefCount,
    IdleTime,
    Freq,
    /// MEMORY USAGE, with SAMPLES if given (0: all, as in Redis).
    MemoryUsage {
        samples: Option<i64>,
    },
}

/// A node's answer about a key, as it sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspected {
    /// The node holds no such key.
    Nil,
    Integer(i64),
    Text(String),
    /// The node's error reply, in its words (e.g. OBJECT FREQ without an LFU policy): the node
    /// is fine, the question is not.
    Refused(String),
}

/// Asks one node OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ or MEMORY USAGE about `key`. Read
/// only; client traffic. An error reply is an answer (`Inspected::Refused`), not a failure.
pub async fn inspect(node: &Node, key: &[u8], what: Inspection) -> Result<Inspected, NodeError> {
    let mut cmd = match what {
        Inspection::MemoryUsage { .. } => redis::cmd("MEMORY"),
        _ => redis::cmd("OBJECT"),
    };
    cmd.arg(match what {
        Inspection::Encoding => "ENCODING",
        Inspection::RefCount => "REFCOUNT",
        Inspection::IdleTime => "IDLETIME",
        Inspection::Freq => "FREQ",
        Inspection::MemoryUsage { .. } => "USAGE",
    })
    .arg(key);
    if let Inspection::MemoryUsage {
        samples: Some(samples),
    } = what
    {
        cmd.arg("SAMPLES").arg(samples);
    }
    let reply = node
        .run(|mut c| async move {
            match cmd.query_async::<Value>(&mut c).await {
                Ok(v) => Ok(Ok(v)),
                Err(e) => refusal(&e).map(Err).ok_or(e),
            }
        })
        .await?;
    Ok(match reply {
        Err(text) => Inspected::Refused(text),
        Ok(Value::Nil) => Inspected::Nil,
        Ok(Value::Int(n)) => Inspected::Integer(n),
        Ok(Value::BulkString(b)) => Inspected::Text(String::from_utf8_lossy(&b).into_owned()),
        Ok(Value::SimpleString(s)) => Inspected::Text(s),
        Ok(other) => return Err(protocol(format!("inspect: unexpected {other:?}"))),
    })
}

/// The text of an error reply as the server wrote it (`ERR ...`), `None` for a failure that is
/// not an error reply (a connection lost, a timeout).
fn refusal(e: &redis::RedisError) -> Option<String> {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
        return None;
    }
    let code = e.code()?;
    Some(match e.detail() {
        Some(detail) => format!("{code} {detail}"),
        None => code.to_string(),
    })
}

/// A configuration parameter's name and value, as CONFIG GET answers them.
pub type ConfigEntry = (Vec<u8>, Vec<u8>);

/// CONFIG GET with these glob patterns on one node: its parameters and values, in its order.
/// Read only; client traffic.
pub async fn config_get(node: &Node, patterns: &[Vec<u8>]) -> Result<Vec<ConfigEntry>, NodeError> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET");
    for p in patterns {
        cmd.arg(&p[..]);
    }
    let reply: Value = node
        .run(|mut c| async move { cmd.query_async(&mut c).await })
        .await?;
    parse_config(reply)
}

fn parse_config(reply: Value) -> Result<Vec<ConfigEntry>, NodeError> {
    let text = |v: Value| match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        other => Err(protocol(format!(
            "config get: expected a string, got {other:?}"
        ))),
    };
    match reply {
        // RESP2: a flat array of names and values.
        Value::Array(flat) => {
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let Some(name) = flat.next() {
                let value = flat
                    .next()
                    .ok_or_else(|| protocol("config get: a name without a value".into()))?;
                out.push((text(name)?, text(value)?));
            }
            Ok(out)
        }
        // RESP3: a map.
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(n, v)| Ok((text(n)?, text(v)?)))
            .collect(),
        other => Err(protocol(format!("config get: unexpected {other:?}"))),
    }
}

fn protocol(what: String) -> NodeError {
    NodeError::Protocol(format!("keyspace meta_entries: {what}"))
}

fn parse(reply: Vec<Value>, hashes: usize) -> Result<Vec<RawEntries>, NodeError> {
    let mut out = vec![RawEntries::new(); hashes];
    let mut items = reply.into_iter();
    while let Some(position) = items.next() {
        let Value::Int(i) = position else {
            return Err(protocol(format!("expected a position, got {position:?}")));
        };
        let slot = usize::try_from(i - 1)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| protocol(format!("position {i} out of range")))?;
        let Some(Value::Array(flat)) = items.next() else {
            return Err(protocol("expected the entries of a hash".into()));
        };
        let mut flat = flat.into_iter();
        while let (Some(field), Some(value)) = (flat.next(), flat.next()) {
            match (field, value) {
                (Value::BulkString(f), Value::BulkString(v)) => slot.push((f, v)),
                other => return Err(protocol(format!("expected field and value, got {other:?}"))),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_non_empty_hashes_are_filled() {
        let reply = vec![
            Value::Int(2),
            Value::Array(vec![
                Value::BulkString(b"k".to_vec()),
                Value::BulkString(b"meta".to_vec()),
            ]),
        ];
        let got = parse(reply, 3).unwrap();
        assert_eq!(got[0], vec![]);
        assert_eq!(got[1], vec![(b"k".to_vec(), b"meta".to_vec())]);
        assert_eq!(got[2], vec![]);
        assert!(parse(vec![Value::Int(4), Value::Array(vec![])], 3).is_err());
    }

    #[test]
    fn config_replies_parse_in_both_protocols() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let want = vec![(b"maxmemory".to_vec(), b"0".to_vec())];
        assert_eq!(
            parse_config(Value::Array(vec![b("maxmemory"), b("0")])).unwrap(),
            want
        );
        assert_eq!(
            parse_config(Value::Map(vec![(b("maxmemory"), b("0"))])).unwrap(),
            want
        );
        assert!(parse_config(Value::Array(vec![b("maxmemory")])).is_err());
        assert!(parse_config(Value::Int(1)).is_err());
    }
}
