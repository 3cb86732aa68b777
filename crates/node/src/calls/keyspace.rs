//! Per-node read behind the keyspace commands (SCAN, KEYS, RANDOMKEY, FLUSHDB): the metadata
//! entries of a range of buckets, raw, as the node holds them. Deciding which keys are live
//! across nodes is the replication layer's job (`store::keyspace`).

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
}
