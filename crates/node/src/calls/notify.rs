//! Keyspace notifications: turning them on (`CONFIG SET notify-keyspace-events`) and
//! subscribing to the key events of the node's database, so that changes made on the node
//! outside quorumd are seen as they happen.

use crate::pool::{Node, NodeError, Traffic};
use futures::{Stream, StreamExt};

/// The event classes live detection needs: key events (`E`) of generic commands, strings,
/// lists, sets, hashes, sorted sets, streams, expiries and evictions (`g$lshzxte`).
const NEEDED: &str = "Eg$lshzxte";

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

/// Subscribes to every key event of the node's database. The stream ends when the connection
/// drops.
pub async fn subscribe(node: &Node) -> Result<impl Stream<Item = KeyEvent> + Send, NodeError> {
    let mut pubsub = node.subscriber().await?;
    let pattern = format!("__keyevent@{}__:*", node.db());
    pubsub
        .psubscribe(&pattern)
        .await
        .map_err(|e| NodeError::Connection(e.to_string()))?;
    Ok(pubsub.into_on_message().map(|msg| KeyEvent {
        event: msg
            .get_channel_name()
            .rsplit_once(':')
            .map(|(_, e)| e.to_owned())
            .unwrap_or_default(),
        key: msg.get_payload_bytes().to_vec(),
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
        assert_eq!(missing_flags("").as_deref(), Some("Eg$lshzxte"));
        assert_eq!(missing_flags("KEA"), None);
        assert_eq!(missing_flags("AE"), None);
        assert_eq!(missing_flags("Ex").as_deref(), Some("Exg$lshzte"));
        assert_eq!(missing_flags("KA").as_deref(), Some("KAE"));
    }
}
