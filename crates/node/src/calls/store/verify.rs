//! Checking values against their own metadata on the node (the scrub and live detection of
//! changes made outside quorumd), and capturing a changed value to adopt it.

use super::*;

/// Checks, on the node alone, whether each key's value is the one its metadata records (the
/// scrub and the live detection of changes made outside quorumd; see `verify.lua`).
const VERIFY_LUA: &str = concat!(
    "#!lua flags=no-writes\n",
    clock_lua!(),
    content_lua!(),
    entry_lua!(),
    verify_entry_lua!(),
    include_str!("../../../lua/store/verify.lua")
);

/// The scrub's check: every entry of whole metadata hashes verified as `VERIFY` verifies one
/// key, answering only for the entries that are not intact (see `verify_hashes.lua`).
const VERIFY_HASHES_LUA: &str = concat!(
    "#!lua flags=no-writes\n",
    clock_lua!(),
    content_lua!(),
    entry_lua!(),
    verify_entry_lua!(),
    include_str!("../../../lua/store/verify_hashes.lua")
);

/// Reads, per key, its metadata, a DUMP, the content and the absolute expiry of the value as it
/// stands: what adopting a change made outside quorumd needs.
const CAPTURE_LUA: &str = concat!(
    "#!lua flags=no-writes\n",
    content_lua!(),
    include_str!("../../../lua/store/capture.lua")
);

static VERIFY: LazyLock<Script> = LazyLock::new(|| Script::new(VERIFY_LUA));
static VERIFY_HASHES: LazyLock<Script> = LazyLock::new(|| Script::new(VERIFY_HASHES_LUA));
static CAPTURE: LazyLock<Script> = LazyLock::new(|| Script::new(CAPTURE_LUA));

/// How a node's value differs from what its own metadata records (see [`verify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mismatch {
    /// Another value of the same type, or a value written over a tombstone.
    Changed,
    /// The value is gone though its metadata says it is live.
    Deleted,
    /// The value is intact but its expiry is not the recorded one.
    Ttl,
    /// The key holds another Redis type.
    Type,
    /// A value without metadata: created outside quorumd.
    Unversioned,
    /// A CRDT key's state hash is not the state its entry hash sums (found by the scrub's
    /// `calls::crdt::verify_states`, not by [`verify`]).
    State,
}

impl Mismatch {
    pub const ALL: [Mismatch; 6] = [
        Mismatch::Changed,
        Mismatch::Deleted,
        Mismatch::Ttl,
        Mismatch::Type,
        Mismatch::Unversioned,
        Mismatch::State,
    ];

    /// The label in metrics, reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mismatch::Changed => "changed",
            Mismatch::Deleted => "deleted",
            Mismatch::Ttl => "ttl",
            Mismatch::Type => "type",
            Mismatch::Unversioned => "unversioned",
            Mismatch::State => "state",
        }
    }
}

/// One key's verdict from [`verify`]: `None` when the value is the one recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub mismatch: Option<Mismatch>,
    pub meta: Option<Meta>,
}

/// Checks each key's value against the node's own metadata, on the node: only key names cross
/// the wire.
pub async fn verify(
    node: &Node,
    traffic: Traffic,
    locs: &[&KeyLocation],
) -> Result<Vec<Verified>, NodeError> {
    if locs.is_empty() {
        return Ok(Vec::new());
    }
    per_key(node, traffic, (&VERIFY, "verify"), locs, 2, &[])
        .await?
        .iter()
        .map(|pair| {
            Ok(Verified {
                mismatch: verify_code(&pair[0])?,
                meta: parse_meta(&pair[1])?,
            })
        })
        .collect()
}

/// A verdict code of `verify_entry` (lua/shared/verify_entry.lua).
fn verify_code(code: &Value) -> Result<Option<Mismatch>, NodeError> {
    Ok(match code {
        Value::Int(0) => None,
        Value::Int(1) => Some(Mismatch::Changed),
        Value::Int(2) => Some(Mismatch::Deleted),
        Value::Int(3) => Some(Mismatch::Ttl),
        Value::Int(4) => Some(Mismatch::Type),
        Value::Int(5) => Some(Mismatch::Unversioned),
        other => return Err(protocol(format!("verify script returned code {other:?}"))),
    })
}

/// An entry [`verify_hashes`] found not intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotIntact {
    pub key: Vec<u8>,
    pub mismatch: Mismatch,
    pub meta: Meta,
}

/// The scrub's check of whole metadata hashes on one node: every entry's value against the
/// entry, as [`verify`] checks one key, with only the hashes' names sent and only what is not
/// intact answered. Returns those entries and how many were checked. On a Redis Cluster, one
/// call per slot (a bucket's hashes and keys share its slot).
pub async fn verify_hashes(
    node: &Node,
    meta_keys: &[String],
) -> Result<(Vec<NotIntact>, u64), NodeError> {
    if meta_keys.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let answers = node
        .per_slot_groups(
            meta_keys,
            |k| k.as_str(),
            |group| async move {
                let mut inv = VERIFY_HASHES.prepare_invoke();
                for k in &group {
                    inv.key(k);
                }
                let reply = node
                    .run_as(Traffic::Background, |mut c| async move {
                        inv.invoke_async(&mut c).await
                    })
                    .await?;
                parse_not_intact(array(reply, "verify_hashes")?)
            },
        )
        .await?;
    let mut found = Vec::new();
    let mut checked = 0;
    for (f, n) in answers {
        found.extend(f);
        checked += n;
    }
    Ok((found, checked))
}

/// `{key, code, entry}` per entry not intact, then the count checked.
fn parse_not_intact(mut items: Vec<Value>) -> Result<(Vec<NotIntact>, u64), NodeError> {
    let checked = match items.pop() {
        Some(Value::Int(n)) if n >= 0 && items.len().is_multiple_of(3) => n as u64,
        other => {
            return Err(protocol(format!(
                "verify_hashes script ended with {other:?} after {} items",
                items.len()
            )));
        }
    };
    let mut found = Vec::with_capacity(items.len() / 3);
    let mut items = items.into_iter();
    while let (Some(key), Some(code), Some(meta)) = (items.next(), items.next(), items.next()) {
        let mismatch = verify_code(&code)?
            .ok_or_else(|| protocol("verify_hashes script answered an intact entry"))?;
        let meta =
            parse_meta(&meta)?.ok_or_else(|| protocol("verify_hashes script answered no entry"))?;
        found.push(NotIntact {
            key: parse_bytes(Some(&key))?
                .ok_or_else(|| protocol("verify_hashes script answered no key"))?,
            mismatch,
            meta,
        });
    }
    Ok((found, checked))
}

/// A value as it stands on one node, with what adopting it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub meta: Option<Meta>,
    /// `None` when the key holds no value.
    pub dump: Option<Vec<u8>>,
    pub content: Content,
    pub expires_at_ms: Option<u64>,
}

/// Reads each key's metadata, DUMP, content and expiry from one node, atomically per key; a
/// stream's content by the function `stream` names (what a new entry for it records).
pub async fn capture(
    node: &Node,
    locs: &[&KeyLocation],
    stream: StreamChecksum,
) -> Result<Vec<Captured>, NodeError> {
    if locs.is_empty() {
        return Ok(Vec::new());
    }
    let code = stream.code().to_string();
    per_key(
        node,
        Traffic::Background,
        (&CAPTURE, "capture"),
        locs,
        4,
        &[&code],
    )
    .await?
    .iter()
    .map(|c| {
        let content = match &c[2] {
            Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(Content::parse),
            _ => None,
        }
        .ok_or_else(|| protocol(format!("capture script returned content {:?}", c[2])))?;
        let expiry = match &c[3] {
            Value::Int(ms) => u64::try_from(*ms).unwrap_or(0),
            other => {
                return Err(protocol(format!(
                    "capture script returned expiry {other:?}"
                )));
            }
        };
        Ok(Captured {
            meta: parse_meta(&c[0])?,
            dump: parse_bytes(Some(&c[1]))?,
            content,
            expires_at_ms: (expiry > 0).then_some(expiry),
        })
    })
    .collect()
}
