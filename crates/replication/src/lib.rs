//! Replication over the node pool: everything that decides across nodes.
//!
//! Fan-out with quorum decisions (`fanout`), the versioned store with read repair and hints
//! (`store`), the CRDT store (`crdt_store`), anti-entropy (`sync`), distributed locks
//! (`locks`) and locking queues (`queue`), each with its own typed events. `demo` holds the
//! deliberate damage `quorumd demo` offers on its dashboard.
//!
//! No Redis command is built here: every call to one node (commands, pipelines, transactions
//! and the Lua scripts) is a typed function of `quorumd_node::calls`.

pub mod crdt_store;
pub mod demo;
pub mod fanout;
pub mod locks;
pub mod pubsub;
pub mod queue;
pub mod store;
pub mod sync;
