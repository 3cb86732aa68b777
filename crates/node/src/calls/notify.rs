//! Keyspace notifications: turning them on (`CONFIG SET notify-keyspace-events`) and
//! subscribing to the keyspace channels of the node's database, so that changes made on the
//! node outside quorumd are seen as they happen.
//!
//! The subscription is to keyspace channels (`__keyspace@{db}__:{key}`, the event in the
//! message) rather than key-event channels, because their patterns can leave quorumd's own keys
//! out on the node: every write of quorumd changes three keys under the reserved prefix
//! (metadata and two digest levels) beside the value, and those events are not even sent.

use crate::pool::{Node, NodeError, Traffic};
use futures::{Stream, StreamExt};

/// The event classes live detection needs: keyspace events (`K`) of generic commands, strings,
/// lists, sets, hashes, sorted sets, streams, expiries and evictions (`g$lshzxte`).
const NEEDED: &str = "Kg$lshzxte";

/// The flags to set so that `current` also carries every class in [`NEEDED`]; `None` when it
/// already does. `A` in `current` stands for `g$lshzxet`.
pub fn missing_flags(current: &str) -> Option<String> {
    let has = |c: char| current.contains(c) || ("g$lshzxet".contains(c) && current.contains('A'));
    let missing: String = NEEDED.chars().filter(|c| !has(*c)).collect();
    (!missing.is_empty()).then(|| format!("{current}{missing}"))
}

/// Turns on the event classes live detection needs, keeping those already on. Returns whether
/// the configuration was changed. Fails when the node refuses `CONFIG` (renamed, or denied by
/// an ACL).
pub async fn enable(node: &Node) -> Result<bool, NodeError> {
    let mut get = redis::cmd("CONFIG");
    get.arg("GET").arg("notify-keyspace-events");
    let reply: Vec<String> = node
        .run_as(Traffic::Background, |mut c| async move {
            get.query_async(&mut c).await
        })
        .await?;
    let current = reply.get(1).cloned().unwrap_or_default();
    let Some(flags) = missing_flags(&current) else {
        return Ok(false);
    };
    let mut set = redis::cmd("CONFIG");
    set.arg("SET").arg("notify-keyspace-events").arg(flags);
    node.run_as(Traffic::Background, |mut c| async move {
        set.query_async::<()>(&mut c).await
    })
    .await?;
    Ok(true)
}

/// One key event: the event name (`set`, `del`, `expire`, ...) and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    pub event: String,
    pub key: Vec<u8>,
}

/// The channel patterns and exact channels that name every key of database `db` except those
/// under `prefix`: for each position i of the prefix, the keys that share its first i bytes and
/// differ at byte i, plus the proper prefixes themselves as whole keys.
pub fn channels_outside(db: i64, prefix: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let base = format!("__keyspace@{db}__:").into_bytes();
    let mut patterns = Vec::new();
    let mut exact = Vec::new();
    for i in 0..prefix.len() {
        let mut head = base.clone();
        head.extend(escape_glob(&prefix[..i]));
        exact.push([base.as_slice(), &prefix[..i]].concat());
        let mut pattern = head;
        pattern.extend_from_slice(b"[^");
        if matches!(prefix[i], b']' | b'\\' | b'^' | b'-') {
            pattern.push(b'\\');
        }
        pattern.push(prefix[i]);
        pattern.extend_from_slice(b"]*");
        patterns.push(pattern);
    }
    if prefix.is_empty() {
        patterns.push([base.as_slice(), b"*"].concat());
    }
    (patterns, exact)
}

fn escape_glob(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// Subscribes to the keyspace channels of every key of the node's database outside `prefix`,
/// and to that of `probe` (a key under the prefix whose events show that notifications
/// arrive). The stream ends when the connection drops.
pub async fn subscribe(
    node: &Node,
    prefix: &str,
    probe: &str,
) -> Result<impl Stream<Item = KeyEvent> + Send, NodeError> {
    let mut pubsub = node.subscriber().await?;
    let failed = |e: redis::RedisError| NodeError::Connection(e.to_string());
    let (patterns, mut exact) = channels_outside(node.db(), prefix.as_bytes());
    exact.push(format!("__keyspace@{}__:{probe}", node.db()).into_bytes());
    let base_len = format!("__keyspace@{}__:", node.db()).len();
    pubsub.psubscribe(patterns).await.map_err(failed)?;
    pubsub.subscribe(exact).await.map_err(failed)?;
    Ok(pubsub.into_on_message().map(move |msg| {
        let channel: Vec<u8> = msg.get_channel().unwrap_or_default();
        KeyEvent {
            event: String::from_utf8_lossy(msg.get_payload_bytes()).into_owned(),
            key: channel.get(base_len..).unwrap_or_default().to_vec(),
        }
    }))
}

/// Writes the probe key whose notification shows that events reach the subscriber.
pub async fn probe(node: &Node, key: &str, token: &str) -> Result<(), NodeError> {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(token).arg("PX").arg(60_000);
    node.run_as(Traffic::Background, |mut c| async move {
        cmd.query_async::<()>(&mut c).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_classes_are_added() {
        assert_eq!(missing_flags("").as_deref(), Some("Kg$lshzxte"));
        assert_eq!(missing_flags("KEA"), None);
        assert_eq!(missing_flags("AK"), None);
        assert_eq!(missing_flags("Kx").as_deref(), Some("Kxg$lshzte"));
        assert_eq!(missing_flags("EA").as_deref(), Some("EAK"));
    }

    #[test]
    fn the_channels_outside_a_prefix_leave_exactly_its_keys_out() {
        let (patterns, exact) = channels_outside(0, b"qd:");
        assert_eq!(
            patterns,
            [
                &b"__keyspace@0__:[^q]*"[..],
                b"__keyspace@0__:q[^d]*",
                b"__keyspace@0__:qd[^:]*"
            ]
        );
        assert_eq!(
            exact,
            [
                &b"__keyspace@0__:"[..],
                b"__keyspace@0__:q",
                b"__keyspace@0__:qd"
            ]
        );
        let (patterns, _) = channels_outside(3, b"a*]");
        assert_eq!(patterns[2], b"__keyspace@3__:a\\*[^\\]]*");
    }
}
