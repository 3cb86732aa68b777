//! Whole-keyspace figures for the front ends (e.g. RESP `DBSIZE`), computed on the nodes.

use super::{StoreError, VersionedStore, digest_key, sub_digest_key};
use crate::fanout::{QuorumError, fan_out};
use quorumd_core::quorum::Decision;
use quorumd_node::pool::sentinel_key;
use redis::Script;
use std::sync::LazyLock;

/// A node's key count less quorumd's own keys: the digest hash, the sentinel, each bucket's
/// sub-digest hash and its sub-bucket metadata hashes (one per sub-bucket with a non-zero
/// digest). Leases, hints and sweep checkpoints are few and not subtracted. KEYS: the digest
/// hash, the sentinel, then every bucket's sub-digest hash. O(B × S) field reads, which is what
/// an exact count of the metadata hashes costs without a counter on the write path.
const USER_KEYS_LUA: &str = r#"#!lua flags=no-writes
local n = redis.call('DBSIZE') - redis.call('EXISTS', KEYS[1], KEYS[2])
for i = 3, #KEYS do
  local subs = redis.call('HVALS', KEYS[i])
  if #subs > 0 then n = n - 1 end
  for _, d in ipairs(subs) do
    if d ~= '0' then n = n - 1 end
  end
end
if n < 0 then n = 0 end
return n
"#;

static USER_KEYS: LazyLock<Script> = LazyLock::new(|| Script::new(USER_KEYS_LUA));

impl VersionedStore {
    /// Approximate number of user keys: the largest count among the nodes that answer (the
    /// most complete replica) among the first read quorum of answers. Tombstoned keys are not
    /// counted; a few reserved keys may be.
    #[tracing::instrument(name = "store.approximate_key_count", skip_all)]
    pub async fn approximate_key_count(&self) -> Result<u64, StoreError> {
        let prefix = &self.settings.key_prefix;
        let keys: std::sync::Arc<Vec<String>> = std::sync::Arc::new(
            [digest_key(prefix), sentinel_key(prefix)]
                .into_iter()
                .chain((0..self.settings.buckets).map(|b| sub_digest_key(prefix, b)))
                .collect(),
        );
        let required = self
            .settings
            .quorum
            .read_quorum(quorumd_core::quorum::Consistency::Quorum);
        let g = fan_out(
            &self.pool,
            self.all_nodes(),
            required,
            |_, _: &i64| true,
            |node| {
                let keys = keys.clone();
                async move {
                    let mut inv = USER_KEYS.prepare_invoke();
                    for k in keys.iter() {
                        inv.key(k);
                    }
                    node.run(|mut c| async move { inv.invoke_async::<i64>(&mut c).await })
                        .await
                }
            },
        )
        .await;
        if g.decision != Decision::Reached {
            return Err(QuorumError::from_gathered(
                "key count",
                &self.pool,
                &g,
                |_, _| true,
                |_| String::new(),
            )
            .into());
        }
        let counts: Vec<i64> = g.successes().map(|(_, n)| *n).collect();
        Ok(counts.into_iter().max().unwrap_or(0).max(0) as u64)
    }
}
