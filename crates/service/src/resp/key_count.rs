//! The key count behind `DBSIZE` and `INFO keyspace`, shared by every connection.
//!
//! Counting means subtracting quorumd's own keys from each node's `DBSIZE`, and the metadata
//! hashes among them are found by reading every bucket's sub-digest hash: B × S fields per node
//! (65,536 with the defaults), too much to read on every call of a command that monitoring
//! polls and clients treat as O(1). There is no cheaper exact figure without a counter kept on
//! the write path (zero sub-digests stay as fields, so not even `HLEN` counts them). So the
//! count is cached: computed at most once per `MAX_AGE` by this front end, whatever the number
//! of callers and connections, and callers that arrive while it is being computed wait for
//! that computation instead of starting their own.

use quorumd_replication::store::{StoreError, VersionedStore};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How old a count `DBSIZE` may answer: writes show in it after this long at most.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// The last count and when it was computed.
#[derive(Debug, Default)]
pub struct KeyCount {
    /// Held across the computation: one at a time, the others wait and reuse it.
    last: Mutex<Option<(Instant, u64)>>,
    /// quorumd's keys outside the store's own (the shard leases), not counted.
    reserved: Vec<String>,
}

impl KeyCount {
    pub fn new(reserved: Vec<String>) -> KeyCount {
        KeyCount {
            last: Mutex::default(),
            reserved,
        }
    }

    /// The approximate number of user keys (see `VersionedStore::approximate_key_count`), at
    /// most `MAX_AGE` old. A failed count is not cached.
    pub async fn get(&self, store: &VersionedStore) -> Result<u64, StoreError> {
        let mut last = self.last.lock().await;
        if let Some((at, n)) = *last
            && at.elapsed() < MAX_AGE
        {
            return Ok(n);
        }
        let n = store.approximate_key_count(&self.reserved).await?;
        *last = Some((Instant::now(), n));
        Ok(n)
    }
}
