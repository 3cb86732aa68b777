//! Keys that may have been changed on a node outside quorumd, as a client read or a keyspace
//! notification saw them, on their way to `sync::direct`, which verifies and handles them.

use quorumd_node::pool::NodeId;
use std::sync::OnceLock;
use tokio::sync::mpsc;

/// How a direct change was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Path {
    /// A keyspace notification from the node.
    Live,
    /// The full sweep's scrub.
    Scrub,
    /// A client read that met the changed value.
    Read,
}

impl Path {
    pub const ALL: [Path; 3] = [Path::Live, Path::Scrub, Path::Read];

    pub fn as_str(self) -> &'static str {
        match self {
            Path::Live => "live",
            Path::Scrub => "scrub",
            Path::Read => "read",
        }
    }
}

/// A key to verify on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspect {
    pub node: NodeId,
    pub key: Vec<u8>,
    pub path: Path,
}

/// Where suspects go; nowhere until the sync layer connects its verifier. Bounded: when the
/// verifier falls behind, suspects are dropped, and the next scrub finds what they were.
#[derive(Default)]
pub struct SuspectSink(OnceLock<mpsc::Sender<Suspect>>);

impl SuspectSink {
    /// Connects the verifier; later calls change nothing.
    pub fn connect(&self, tx: mpsc::Sender<Suspect>) {
        let _ = self.0.set(tx);
    }

    /// Hands a suspect on; false when it was dropped (no verifier, or the queue is full).
    pub fn report(&self, suspect: Suspect) -> bool {
        self.0.get().is_some_and(|tx| tx.try_send(suspect).is_ok())
    }
}
