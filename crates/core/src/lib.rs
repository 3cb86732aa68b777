//! quorumd's pure core: what every other layer builds on, with no I/O.
//!
//! Versions and the hybrid logical clock (`hlc`), the CRDT types (`crdt`), bucket placement
//! and digest arithmetic (`digest`), the metadata entry (`meta`), quorum sizes and tracking
//! (`quorum`), the configuration types and their validation (`config`), every metric name
//! (`metric_names`) and the label values known in advance (`metric_labels`). Each part is
//! unit-tested beside its code.

pub mod config;
pub mod content;
pub mod crdt;
pub mod digest;
pub mod dump;
pub mod hlc;
pub mod layout;
pub mod meta;
pub mod metric_labels;
pub mod metric_names;
pub mod quorum;
pub mod redact;
pub mod stream;
