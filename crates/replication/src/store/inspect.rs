//! Questions about what the nodes hold that only a node can answer: OBJECT and MEMORY USAGE
//! about one key, CONFIG GET about their settings (RESP's commands of those names). The
//! answers are the nodes' own; these methods only choose whose answer to give.

use super::typed::newest_typed;
use super::{StoreError, VersionedStore, crdt_kind_among};
use crate::fanout::{FailureCause, NodeFailure, QuorumError, fan_out};
use quorumd_core::quorum::{Consistency, Decision};
use quorumd_node::calls;
use quorumd_node::calls::keyspace::{Inspected, Inspection};
use quorumd_node::calls::store::TypedWanted;
use quorumd_node::pool::{Node, NodeError, NodeId};
use std::collections::HashMap;
use std::sync::Arc;

pub use quorumd_node::calls::keyspace::ConfigEntry;

impl VersionedStore {
    /// Asks about `key` one node that holds its current version: the key is read (its
    /// metadata and type) from a read quorum at `level`, and the nodes whose answer carries
    /// the newest version are asked in configured order until one answers. `Inspected::Nil`
    /// when the quorum finds no live key. A key the HTTP API's CRDTs keep has no one version:
    /// the first configured node that answers is asked. A reserved key is refused
    /// (`ReservedKey`).
    #[tracing::instrument(level = "debug", name = "store.inspect", skip_all, fields(level = %level))]
    pub async fn inspect(
        &self,
        key: &[u8],
        level: Consistency,
        what: Inspection,
    ) -> Result<Inspected, StoreError> {
        let loc = Arc::new(self.locate(key)?);
        self.within_deadline("inspect", async {
            let required = self.settings.quorum.read_quorum(level);
            let read = |node: Arc<Node>| {
                let loc = loc.clone();
                async move {
                    let mut answers =
                        calls::store::read_typed(&node, &[(&loc, TypedWanted::TypeOnly)]).await?;
                    answers
                        .pop()
                        .ok_or_else(|| NodeError::Protocol("typed read returned nothing".into()))
                }
            };
            let gathered = self
                .read_quorum("inspect", required, Some(&loc.key), read)
                .await?;
            let mut holders: Vec<NodeId> =
                if crdt_kind_among(gathered.successes().filter_map(|(_, r)| r.meta.as_ref()))
                    .is_some()
                {
                    self.pool.ids().collect()
                } else {
                    let Some(winner) = newest_typed(&loc.key, gathered.successes().map(|(_, r)| r))
                    else {
                        return Ok(Inspected::Nil);
                    };
                    let version = winner.meta.version;
                    if super::ballot::live_value(winner).is_none() {
                        return Ok(Inspected::Nil);
                    }
                    gathered
                        .successes()
                        .filter(|(_, r)| r.meta.as_ref().is_some_and(|m| m.version == version))
                        .map(|(n, _)| n)
                        .collect()
                };
            holders.sort_unstable();
            let mut failures = Vec::new();
            for id in holders {
                let node = self.pool.node(id);
                match calls::keyspace::inspect(node, &loc.key, what).await {
                    Ok(answer) => return Ok(answer),
                    Err(e) => failures.push(NodeFailure::new(
                        node.display.clone(),
                        FailureCause::Node(e),
                    )),
                }
            }
            Err(QuorumError {
                operation: "inspect",
                required: 1,
                succeeded: 0,
                failures,
            }
            .into())
        })
        .await
    }

    /// CONFIG GET on every node: each parameter with the value most of the nodes that
    /// answered hold (a tie: the first configured node's), in the order the first answering
    /// node lists them. Fails only when no node answers.
    #[tracing::instrument(level = "debug", name = "store.config_get", skip_all)]
    pub async fn config_get(&self, patterns: &[Vec<u8>]) -> Result<Vec<ConfigEntry>, StoreError> {
        let patterns = Arc::new(patterns.to_vec());
        self.within_deadline("config get", async {
            let mut g = fan_out(
                &self.pool,
                self.pool.ids(),
                1,
                |_, _: &Vec<ConfigEntry>| true,
                |node| {
                    let patterns = patterns.clone();
                    async move { calls::keyspace::config_get(&node, &patterns).await }
                },
            )
            .await;
            if g.decision != Decision::Reached {
                return Err(QuorumError::from_gathered(
                    "config get",
                    &self.pool,
                    &mut g,
                    |_, _| true,
                    |_| String::new(),
                )
                .await
                .into());
            }
            // Every node is asked; the answers after the first are waited for too.
            let late = g.collect_stragglers().await;
            let mut answers: Vec<(NodeId, Vec<ConfigEntry>)> = g
                .replies
                .into_iter()
                .chain(late)
                .filter_map(|r| r.result.ok().map(|v| (r.node, v)))
                .collect();
            answers.sort_by_key(|(n, _)| *n);
            Ok(majority_config(
                answers.into_iter().map(|(_, a)| a).collect(),
            ))
        })
        .await
    }
}

/// One value of a parameter: the value, how many answers hold it, and the index of the first
/// answer that does.
type Tally = (Vec<u8>, usize, usize);

/// The value most answers hold for each parameter (ties: the earliest answer's), answers in
/// configured order; parameters in the order the first answer that has them lists them.
pub fn majority_config(answers: Vec<Vec<ConfigEntry>>) -> Vec<ConfigEntry> {
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut tally: HashMap<Vec<u8>, Vec<Tally>> = HashMap::new();
    for (i, answer) in answers.into_iter().enumerate() {
        for (name, value) in answer {
            let values = tally.entry(name.clone()).or_insert_with(|| {
                order.push(name);
                Vec::new()
            });
            match values.iter_mut().find(|(v, _, _)| *v == value) {
                Some((_, count, _)) => *count += 1,
                None => values.push((value, 1, i)),
            }
        }
    }
    order
        .into_iter()
        .filter_map(|name| {
            let values = tally.remove(&name)?;
            let best = values
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))?;
            Some((name, best.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(pairs: &[(&str, &str)]) -> Vec<ConfigEntry> {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn the_majority_value_wins_and_ties_go_to_the_first_node() {
        let got = majority_config(vec![
            answer(&[("a", "1"), ("b", "x")]),
            answer(&[("a", "2"), ("b", "y"), ("c", "only")]),
            answer(&[("b", "y"), ("a", "2")]),
        ]);
        assert_eq!(got, answer(&[("a", "2"), ("b", "y"), ("c", "only")]));
        let tie = majority_config(vec![answer(&[("a", "1")]), answer(&[("a", "2")])]);
        assert_eq!(tie, answer(&[("a", "1")]));
        assert!(majority_config(vec![]).is_empty());
    }
}
