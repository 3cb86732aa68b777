//! Pub/sub on one node, for the RESP front end's PUBLISH and SUBSCRIBE across instances: a
//! `PUBLISH` of one message, and a subscription of its own (a dedicated connection) to every
//! channel under a reserved namespace. What a message carries and how copies from several
//! nodes become one delivery is the replication layer's (`pubsub`); this module only talks to
//! one node.

use crate::pool::{Node, NodeError, Traffic};
use futures::{Stream, StreamExt, future};

/// `PUBLISH channel payload` on the node: how many of the node's subscribers received it. On a
/// Redis Cluster replica it goes to one master, and the cluster's bus carries it to every
/// other node of that cluster.
pub async fn publish(node: &Node, channel: &[u8], payload: &[u8]) -> Result<i64, NodeError> {
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(channel).arg(payload);
    node.run_as(Traffic::Client, |mut c| async move {
        cmd.query_async(&mut c).await
    })
    .await
}

/// One message a subscription received: the node's channel and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub channel: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Subscribes a connection of its own to every channel that starts with `namespace` (a
/// pattern subscription; glob characters in the namespace are escaped). The stream ends when
/// the connection drops; the caller subscribes again. On a Redis Cluster replica the
/// subscription is on one master that is up: every node of a cluster receives every message
/// published on any of them.
pub async fn subscribe(
    node: &Node,
    namespace: &[u8],
) -> Result<impl Stream<Item = Received> + Send + use<>, NodeError> {
    let source = node.event_sources().into_iter().next().ok_or_else(|| {
        NodeError::Unavailable("no master of the cluster is known to be up".into())
    })?;
    let mut pubsub = node.subscriber(&source).await?;
    let mut pattern = super::notify::escape_glob(namespace);
    pattern.push(b'*');
    pubsub
        .psubscribe(pattern)
        .await
        .map_err(|e| NodeError::Connection(e.to_string()))?;
    Ok(pubsub.into_on_message().filter_map(|msg| {
        future::ready(Some(Received {
            channel: msg.get_channel().unwrap_or_default(),
            payload: msg.get_payload_bytes().to_vec(),
        }))
    }))
}
