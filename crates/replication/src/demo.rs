//! Deliberate damage for `quorumd demo`: wipe one node, or give one node writes the others
//! never saw, so the healing can be watched on the dashboard. Only the demo's HTTP endpoints
//! call this.

use crate::store::VersionedStore;
use quorumd_core::meta::Meta;
use quorumd_node::calls;
use quorumd_node::calls::store::NodeCondition;
use quorumd_node::pool::{NodeError, NodeId};

/// Key names the demo seeds and tampers with.
pub fn demo_key(i: u64) -> String {
    format!("demo:{i:06}")
}

/// `FLUSHALL` on one node: its data, metadata and digests are gone, as after a disk loss.
pub async fn wipe(store: &VersionedStore, node: NodeId) -> Result<(), NodeError> {
    let node = store.pool().node(node);
    calls::demo::flush_all(node).await
}

/// Writes a new version of `keys` demo keys (every `stride`-th of the seeded ones, starting at
/// `offset`) to one node only, as writes that reached just that node would. The exchange then
/// finds the others stale and copies these versions to them.
pub async fn diverge(
    store: &VersionedStore,
    node: NodeId,
    seeded: u64,
    keys: u64,
) -> Result<u64, NodeError> {
    let target = store.pool().node(node);
    let stride = (seeded / keys.max(1)).max(1);
    let offset = rand::random_range(0..stride);
    let mut written = 0;
    for i in (offset..seeded)
        .step_by(stride as usize)
        .take(keys as usize)
    {
        let key = demo_key(i);
        let Ok(loc) = store.locate(key.as_bytes()) else {
            continue;
        };
        let version = store.clock().tick();
        let value = format!("diverged on one node at {}", version.ms);
        let meta = Meta::for_string(key.as_bytes(), version, Some(value.as_bytes()), None);
        calls::store::write(target, &loc, &meta, value.as_bytes(), &NodeCondition::None).await?;
        written += 1;
    }
    Ok(written)
}

/// Writes `n` demo keys through the quorum, 64 at a time; returns how many were written.
pub async fn seed(store: &VersionedStore, n: u64) -> u64 {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .map(|i| async move {
            let key = demo_key(i);
            let value = format!("demo value {i}");
            store
                .put(
                    key.as_bytes(),
                    value.as_bytes(),
                    None,
                    quorumd_core::quorum::Consistency::Quorum,
                    crate::store::Precondition::None,
                )
                .await
                .is_ok()
        })
        .buffer_unordered(64)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await as u64
}
