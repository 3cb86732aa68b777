//! quorumd: keeps N independent Redis servers in sync without a leader.
//!
//! This crate is the binary and a facade over the layers, which live in their own crates so
//! that the build enforces their order (see docs/CONTRIBUTING.md):
//! `quorumd-core` (pure) → `quorumd-node` (the only layer that talks to Redis) →
//! `quorumd-replication` (fan-out, store, sync, locks, queue, CRDT store) →
//! `quorumd-service` (HTTP, RESP, app). Tests and benches add `quorumd-testkit`.

pub use quorumd_core::{
    config, content, crdt, digest, dump, hlc, layout, meta, metric_labels, metric_names, quorum,
    redact, stream,
};
pub use quorumd_node::{calls, devcluster, live, pool, worker};
pub use quorumd_replication::{crdt_store, demo, fanout, locks, pubsub, queue, store, sync};
pub use quorumd_service::{
    api, app, auth, exposition, reload, resp, sdnotify, settings, telemetry,
};
