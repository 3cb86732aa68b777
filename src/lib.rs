//! quorumd: keeps N independent Redis servers in sync without a leader.
//!
//! Layers, dependencies pointing down only:
//! pure parts (`hlc`, `digest`, `meta`, `quorum`, `checker`) → `pool` (the only module that
//! opens connections) → `fanout` → `store` → `api` → `app` → the binary.

pub mod api;
pub mod app;
pub mod checker;
pub mod config;
pub mod devcluster;
pub mod digest;
pub mod events;
pub mod exposition;
pub mod fanout;
pub mod hlc;
pub mod live;
pub mod meta;
pub mod pool;
pub mod quorum;
pub mod store;
pub mod sync;
pub mod telemetry;
