//! Whole-keyspace figures for the front ends (e.g. RESP `DBSIZE`), computed on the nodes.

use super::{StoreError, VersionedStore};
use crate::fanout::{QuorumError, fan_out};
use quorumd_core::quorum::Decision;
use quorumd_node::calls;
use quorumd_node::pool::sentinel_key;

impl VersionedStore {
    /// Approximate number of user keys: the largest count among the nodes that answer (the
    /// most complete replica) among the first read quorum of answers. Tombstoned keys are not
    /// counted, nor the store's own keys and `reserved` (keys other layers keep, such as the
    /// shard leases); keys of locks, queues, CRDTs and hints are.
    #[tracing::instrument(name = "store.approximate_key_count", skip_all)]
    pub async fn approximate_key_count(&self, reserved: &[String]) -> Result<u64, StoreError> {
        let layout = &self.settings.layout;
        let prefix = &layout.prefix;
        let singles: Vec<String> = [
            sentinel_key(prefix),
            quorumd_node::pool::sentinel_records_key(prefix),
            super::layout::layout_key(prefix),
            super::layout::probe_key(prefix),
        ]
        .into_iter()
        .chain(layout.digest_keys().keys())
        .chain(reserved.iter().cloned())
        .collect();
        let subs: Vec<String> = (0..layout.buckets)
            .map(|b| layout.sub_digest_key(b))
            .collect();
        let keys = std::sync::Arc::new((singles, subs));
        let required = self
            .settings
            .quorum
            .read_quorum(quorumd_core::quorum::Consistency::Quorum);
        let mut g = fan_out(
            &self.pool,
            self.pool.ids(),
            required,
            |_, _: &i64| true,
            |node| {
                let keys = keys.clone();
                async move {
                    // A cluster replica's sentinels are one per master, in slots of their own,
                    // each with its lock gate beside it (standalone: one of each).
                    let mut singles = keys.0.clone();
                    for (_, key) in node.sentinel_keys() {
                        for own in [quorumd_node::pool::lock_gate_key(&key), key] {
                            if !singles.contains(&own) {
                                singles.push(own);
                            }
                        }
                    }
                    calls::store::user_key_count(&node, &singles, &keys.1).await
                }
            },
        )
        .await;
        if g.decision != Decision::Reached {
            return Err(QuorumError::from_gathered(
                "key count",
                &self.pool,
                &mut g,
                |_, _| true,
                |_| String::new(),
            )
            .await
            .into());
        }
        let counts: Vec<i64> = g.successes().map(|(_, n)| *n).collect();
        Ok(counts.into_iter().max().unwrap_or(0).max(0) as u64)
    }
}
