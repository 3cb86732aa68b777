//! Node access: the only layer that opens connections to Redis.
//!
//! The connection pool with per-node health, probes, reconnects and the sentinel (`pool`),
//! the live feed the dashboard reads (`live`), the background workers' registry (`worker`),
//! this layer's typed events (`events`), local `redis-server` processes for `quorumd demo`,
//! tests and benchmarks (`devcluster`), and the typed one-node calls with their Lua scripts
//! (`calls`, scripts under `lua/`).

pub mod calls;
pub mod devcluster;
pub mod events;
pub mod live;
pub mod pool;
pub mod worker;
