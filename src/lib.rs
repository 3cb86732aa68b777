//! quorumd: keeps N independent Redis servers in sync without a leader.
//!
//! Layers, dependencies pointing down only:
//! pure parts (`hlc`, `digest`, `meta`, `quorum`, `checker`) → `pool` (the only module that
//! opens connections) → `fanout` → `store` → `api` → `app` → the binary.

pub mod api;
pub mod app;
pub mod auth;
pub mod checker;
pub mod config;
pub mod crdt;
pub mod crdt_store;
pub mod devcluster;
pub mod digest;
pub mod events;
pub mod exposition;
pub mod fanout;
pub mod hlc;
pub mod live;
pub mod locks;
pub mod meta;
pub mod nemesis;
pub mod pool;
pub mod queue;
pub mod quorum;
pub mod reload;
pub mod resp;
pub mod sdnotify;
pub mod store;
pub mod sync;
pub mod telemetry;
