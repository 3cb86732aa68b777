//! Pub/sub events: messages published, copies received from the nodes, node subscriptions up
//! or down.

use quorumd_core::metric_names::*;

/// A message was published through this instance (`ok`: at least one node took it).
pub struct Published {
    pub ok: bool,
}

impl Published {
    pub fn emit(self) {
        let result = if self.ok { "ok" } else { "error" };
        metrics::counter!(PUBSUB_PUBLISHED, "result" => result).increment(1);
        tracing::debug!(result, "pub/sub message published");
    }
}

/// A node sent a copy of a message: delivered (its first copy), a duplicate, or malformed (a
/// payload quorumd did not write, on its namespace).
pub struct Received<'a> {
    pub node: &'a str,
    pub outcome: &'static str,
}

impl Received<'_> {
    pub fn emit(self) {
        metrics::counter!(PUBSUB_RECEIVED, "node" => self.node.to_owned(), "outcome" => self.outcome)
            .increment(1);
        if self.outcome == "malformed" {
            tracing::warn!(
                node = self.node,
                "a message on quorumd's pub/sub namespace without quorumd's id: dropped"
            );
        }
    }
}

/// This instance's subscription to a node's pub/sub came up or dropped.
pub struct SubscriptionChanged<'a> {
    pub node: &'a str,
    pub up: bool,
}

impl SubscriptionChanged<'_> {
    pub fn emit(self) {
        metrics::gauge!(PUBSUB_SUBSCRIPTIONS, "node" => self.node.to_owned()).set(if self.up {
            1.0
        } else {
            0.0
        });
        if self.up {
            tracing::info!(node = self.node, "pub/sub subscription up");
        } else {
            tracing::warn!(
                node = self.node,
                "pub/sub subscription dropped; subscribing again"
            );
        }
    }
}

/// The service is starting: the pub/sub families at zero, with each node's subscription down
/// until it is up, and the failures of each subscription worker.
pub struct PubSubMetricsRegistered<'a> {
    /// Each node's display name and identity (`host:port/db`).
    pub nodes: &'a [(String, String)],
}

impl PubSubMetricsRegistered<'_> {
    pub fn emit(self) {
        use quorumd_core::metric_labels as labels;
        for result in labels::PUBSUB_PUBLISH_RESULTS {
            metrics::counter!(PUBSUB_PUBLISHED, "result" => *result).increment(0);
        }
        for (node, identity) in self.nodes {
            metrics::counter!(WORKER_FAILURES, "worker" => labels::pubsub_worker(identity))
                .increment(0);
            for outcome in labels::PUBSUB_RECEIVED_OUTCOMES {
                metrics::counter!(PUBSUB_RECEIVED, "node" => node.clone(), "outcome" => *outcome)
                    .increment(0);
            }
            metrics::gauge!(PUBSUB_SUBSCRIPTIONS, "node" => node.clone()).set(0.0);
        }
        metrics::counter!(PUBSUB_SUBSCRIBERS_DROPPED).increment(0);
    }
}
