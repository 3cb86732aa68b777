//! Splitting background sweep work between several quorumd instances. Buckets are grouped in
//! shards; each instance holds leases on about its share of them (a majority of nodes must
//! grant a lease) and its scheduled exchanges look only at buckets in its shards. An instance
//! that dies stops renewing; its leases expire and the others pick its shards up.
//!
//! Leases only divide work: two instances repairing the same bucket at once would still be
//! correct, because every repair is a versioned write.

use quorumd_core::quorum::majority;
use quorumd_node::calls;
use quorumd_node::calls::lease::LeaseMode;
use quorumd_node::pool::NodePool;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// Shards this instance works on, and how many instances share the work.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeaseStatus {
    pub instance: String,
    pub shards: u32,
    pub owned: Vec<u32>,
    pub live_instances: usize,
}

pub struct ShardLeases {
    me: String,
    prefix: String,
    shards: u32,
    lease_ms: u64,
    owned: Mutex<BTreeSet<u32>>,
    live: Mutex<usize>,
}

/// Which shard a bucket belongs to.
pub fn shard_of(bucket: u32, shards: u32) -> u32 {
    bucket % shards
}

/// Every key the shard leases keep on the nodes: one per shard, and the instances' heartbeats.
pub fn lease_keys(prefix: &str, shards: u32) -> Vec<String> {
    (0..shards)
        .map(|s| s.to_string())
        .chain(["members".to_string()])
        .map(|name| lease_key(prefix, &name))
        .collect()
}

fn lease_key(prefix: &str, name: &str) -> String {
    format!("{prefix}lease:{name}")
}

/// The number of shards one of `live` instances should hold.
pub fn fair_share(shards: u32, live: usize) -> usize {
    (shards as usize).div_ceil(live.max(1))
}

impl ShardLeases {
    pub fn new(me: String, prefix: &str, shards: u32, lease_ms: u64) -> Self {
        ShardLeases {
            me,
            prefix: prefix.to_string(),
            shards,
            lease_ms,
            owned: Mutex::default(),
            live: Mutex::new(1),
        }
    }

    fn key(&self, name: &str) -> String {
        lease_key(&self.prefix, name)
    }

    pub fn owns(&self, bucket: u32) -> bool {
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&shard_of(bucket, self.shards))
    }

    pub fn status(&self) -> LeaseStatus {
        LeaseStatus {
            instance: self.me.clone(),
            shards: self.shards,
            owned: self
                .owned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .copied()
                .collect(),
            live_instances: *self.live.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Runs the lease script for `names` on every node; returns, per name, whether a majority
    /// of the configured nodes granted it.
    async fn on_majority(&self, pool: &NodePool, names: &[String], mode: LeaseMode) -> Vec<bool> {
        if names.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = names.iter().map(|n| self.key(n)).collect();
        let answers = futures::future::join_all(
            pool.nodes()
                .iter()
                .map(|node| calls::lease::leases(node, &keys, &self.me, self.lease_ms, mode)),
        )
        .await;
        let need = majority(pool.len());
        (0..names.len())
            .map(|i| {
                answers
                    .iter()
                    .filter(|a| a.as_ref().is_ok_and(|v| v.get(i) == Some(&true)))
                    .count()
                    >= need
            })
            .collect()
    }

    /// Announces this instance and counts the live ones (seen within a lease period).
    async fn heartbeat(&self, pool: &NodePool) -> usize {
        let now = quorumd_core::hlc::wall_clock_ms();
        let members = self.key("members");
        let counts = futures::future::join_all(
            pool.nodes()
                .iter()
                .map(|node| calls::lease::heartbeat(node, &members, &self.me, now, self.lease_ms)),
        )
        .await;
        counts.into_iter().filter_map(Result::ok).max().unwrap_or(1)
    }

    /// Renews held shards, gives back shards beyond the fair share, and takes free shards up to
    /// it. Returns the shards held afterwards.
    pub async fn rebalance(&self, pool: &NodePool) -> BTreeSet<u32> {
        let live = self.heartbeat(pool).await;
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = live;
        let share = fair_share(self.shards, live);
        let mut owned = self.renew_held(pool).await;
        if owned.len() > share {
            let extra: Vec<u32> = owned
                .iter()
                .rev()
                .take(owned.len() - share)
                .copied()
                .collect();
            let names: Vec<String> = extra.iter().map(u32::to_string).collect();
            self.on_majority(pool, &names, LeaseMode::Release).await;
            for s in extra {
                owned.remove(&s);
            }
        } else if owned.len() < share {
            // Start at an instance-specific shard so instances do not all race for shard 0.
            let offset = xxhash_rust::xxh3::xxh3_64(self.me.as_bytes()) as u32 % self.shards;
            let free: Vec<u32> = (0..self.shards)
                .map(|i| (i + offset) % self.shards)
                .filter(|s| !owned.contains(s))
                .collect();
            let names: Vec<String> = free.iter().map(u32::to_string).collect();
            let granted = self.on_majority(pool, &names, LeaseMode::Acquire).await;
            let mut surplus = Vec::new();
            for (s, ok) in free.into_iter().zip(granted) {
                if ok && owned.len() < share {
                    owned.insert(s);
                } else if ok {
                    surplus.push(s.to_string());
                }
            }
            // Taken in the same round trip beyond the share, or only on a minority: give back.
            self.on_majority(pool, &surplus, LeaseMode::Release).await;
        }
        *self.owned.lock().unwrap_or_else(|p| p.into_inner()) = owned.clone();
        super::events::ShardsHeld {
            held: owned.len(),
            shards: self.shards,
        }
        .emit();
        owned
    }

    /// Renews the held shards every third of a lease, for as long as it is polled (beside an
    /// exchange): an exchange longer than the lease, as the catch-up of a node far behind under
    /// the repair throttle is, would otherwise let its shards expire under it, and another
    /// instance would take them and do the same work.
    pub async fn keep_renewed(&self, pool: &NodePool) {
        let period = std::time::Duration::from_millis((self.lease_ms / 3).max(1));
        loop {
            tokio::time::sleep(period).await;
            self.renew_held(pool).await;
        }
    }

    /// Renews every shard held; a shard a majority did not renew is no longer held. Returns
    /// the shards still held.
    async fn renew_held(&self, pool: &NodePool) -> BTreeSet<u32> {
        let held: Vec<u32> = self
            .owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        let names: Vec<String> = held.iter().map(u32::to_string).collect();
        let renewed = self.on_majority(pool, &names, LeaseMode::Renew).await;
        let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        for (shard, ok) in held.into_iter().zip(renewed) {
            if !ok {
                owned.remove(&shard);
            }
        }
        owned.clone()
    }

    /// Takes or keeps the lease that lets one instance run the scheduled full sweep.
    pub async fn full_sweep_turn(&self, pool: &NodePool) -> bool {
        self.on_majority(pool, &["full".to_string()], LeaseMode::Acquire)
            .await
            .first()
            .copied()
            .unwrap_or(false)
    }

    /// Gives every lease back, so the others take over at once (graceful shutdown).
    pub async fn release_all(&self, pool: &NodePool) {
        let held: Vec<String> = self
            .owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(u32::to_string)
            .collect();
        let mut names = held;
        names.push("full".into());
        self.on_majority(pool, &names, LeaseMode::Release).await;
        super::events::ShardsHeld {
            held: 0,
            shards: self.shards,
        }
        .emit();
        let members = self.key("members");
        for node in pool.nodes() {
            let _ = calls::lease::leave(node, &members, &self.me).await;
        }
        self.owned.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_all_shards() {
        assert_eq!(fair_share(64, 1), 64);
        assert_eq!(fair_share(64, 2), 32);
        assert_eq!(fair_share(64, 3), 22);
        assert!(fair_share(64, 3) * 3 >= 64);
        assert_eq!(fair_share(64, 0), 64);
        assert_eq!(shard_of(130, 64), 2);
    }
}
