//! The Redis-protocol front end, the mini-redis way: `frame` (bytes ↔ RESP values),
//! `command` (RESP values → a typed command → applied on the versioned store), `connection`
//! (buffered reads and writes, pipelining) and `server` (the listener, the connection limit,
//! graceful shutdown). Like every surface, it reaches the nodes only through the store.

pub mod auth;
pub mod command;
pub mod connection;
pub mod events;
pub mod frame;
pub mod key_count;
pub mod pubsub;
pub mod server;
pub mod transaction;
pub mod wakes;

pub use server::{RespServer, RespSettings};

use crate::auth::Tokens;
use bytes::Bytes;
use frame::{Limits, Protocol};
use quorumd_core::quorum::Consistency;
use quorumd_replication::crdt_store::CrdtStore;
use quorumd_replication::pubsub::{Listener, PubSub};
use quorumd_replication::store::VersionedStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// State every connection shares: the store and the server-wide settings and counters.
pub struct Shared {
    pub store: Arc<VersionedStore>,
    /// Counters, hashes and sets (INCR, HSET, SADD...).
    pub crdts: Arc<CrdtStore>,
    /// PUBLISH and the subscriptions, across instances.
    pub pubsub: Arc<PubSub>,
    /// The password clients must AUTH with, if any.
    pub password: Option<String>,
    /// The HTTP API's bearer tokens, also accepted by AUTH when `[auth]` is enabled.
    pub tokens: Arc<Tokens>,
    pub default_level: Consistency,
    pub limits: Limits,
    pub max_connections: usize,
    /// Whether FLUSHDB and FLUSHALL may run (`resp.allow_flush`).
    pub allow_flush: bool,
    /// The address actually listened on.
    pub listen: SocketAddr,
    /// This instance's name, for INFO.
    pub instance: String,
    pub started: Instant,
    /// DBSIZE's count, computed at most once a second for all connections.
    pub key_count: key_count::KeyCount,
    /// "Key written" announcements for the blocking pops waiting in this instance.
    pub wakes: wakes::Wakes,
    connected: AtomicUsize,
    /// Requests decoded and not yet answered, over all connections.
    in_flight: AtomicUsize,
    next_id: AtomicU64,
}

impl Shared {
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// What one connection has negotiated.
pub struct Session {
    /// Unique per server, as `CLIENT ID` reports it.
    pub id: u64,
    pub peer: SocketAddr,
    pub protocol: Protocol,
    pub name: Option<Bytes>,
    /// The consistency level of this connection's reads and writes (`QUORUMD CONSISTENCY`).
    pub level: Consistency,
    pub authenticated: bool,
    /// Set when AUTH accepted a token: its scope limits the commands.
    pub grant: Option<auth::Grant>,
    /// Set by QUIT: close after the reply.
    pub closing: bool,
    /// The commands queued since MULTI, until EXEC or DISCARD.
    pub transaction: Option<transaction::Queued>,
    /// The keys WATCH recorded, with their versions, until EXEC, DISCARD or UNWATCH.
    pub watched: transaction::Watches,
    /// The connection's subscriptions; `Some` while it has any (the subscribed mode).
    pub listener: Option<Listener>,
    /// What `CLIENT REPLY` silenced.
    pub replies: Replies,
}

/// `CLIENT REPLY`'s state, as Redis 7.0 keeps it in a client's flags: a reply is dropped
/// while OFF is on, or SKIP applies to the command that produced it. Pushes (pub/sub
/// messages and confirmations) are never dropped (Redis 7.0.15 does not silence them).
#[derive(Debug, Default, Clone)]
pub struct Replies {
    off: bool,
    /// The command being run is the one after `CLIENT REPLY SKIP`.
    skip: bool,
    /// `CLIENT REPLY SKIP` ran: the next command's reply is dropped.
    skip_next: bool,
    /// The command just run answers nothing (`CLIENT REPLY OFF` and `SKIP` themselves).
    unanswered: bool,
}

impl Replies {
    /// Before each command the client sends (not those EXEC runs), as Redis's `resetClient`
    /// after the one before: a SKIP applies to this command only.
    pub fn begin_command(&mut self) {
        self.skip = std::mem::take(&mut self.skip_next);
        self.unanswered = false;
    }

    /// Whether the reply of the command just run is dropped. Asked once per reply, after the
    /// command ran (so that `CLIENT REPLY ON` answers +OK).
    pub fn silenced(&mut self) -> bool {
        self.off || self.skip || std::mem::take(&mut self.unanswered)
    }

    /// Whether something sent between commands (a protocol error) is dropped.
    pub fn silenced_between(&self) -> bool {
        self.off || self.skip_next
    }

    /// `CLIENT REPLY ON`; SKIP's effect on the next command stays, as in Redis.
    pub fn on(&mut self) {
        self.off = false;
        self.skip = false;
    }

    /// `CLIENT REPLY OFF`, which answers nothing.
    pub fn off(&mut self) {
        self.off = true;
        self.unanswered = true;
    }

    /// `CLIENT REPLY SKIP`, which answers nothing, and does nothing while OFF is on.
    pub fn skip(&mut self) {
        if !self.off {
            self.skip_next = true;
        }
        self.unanswered = true;
    }

    /// RESET, as Redis's `clearClientConnectionState`: OFF and a pending SKIP end.
    pub fn reset(&mut self) {
        self.off = false;
        self.skip_next = false;
    }
}

impl Session {
    pub fn new(shared: &Shared, peer: SocketAddr) -> Session {
        Session {
            id: shared.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            peer,
            protocol: Protocol::Resp2,
            name: None,
            level: shared.default_level,
            authenticated: shared.password.is_none() && !shared.tokens.enabled(),
            grant: None,
            closing: false,
            transaction: None,
            watched: Vec::new(),
            listener: None,
            replies: Replies::default(),
        }
    }
}
