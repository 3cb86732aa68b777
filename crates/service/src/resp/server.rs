//! The RESP listener: accepts connections up to the configured limit (more are told so and
//! closed, as Redis does), and on shutdown stops accepting, lets every connection finish the
//! batch of commands it is running, then returns.

use super::connection;
use super::frame::{Frame, Limits, Protocol};
use super::{Shared, command};
use crate::auth::Tokens;
use crate::resp::events;
use quorumd_core::config::RespConfig;
use quorumd_core::quorum::Consistency;
use quorumd_replication::crdt_store::CrdtStore;
use quorumd_replication::pubsub::PubSub;
use quorumd_replication::store::VersionedStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

/// What the listener needs besides the store.
#[derive(Debug, Clone)]
pub struct RespSettings {
    pub config: RespConfig,
    pub default_level: Consistency,
    /// This instance's name, shown by INFO.
    pub instance: String,
    /// quorumd's keys outside the store's own, left out of DBSIZE (the shard leases).
    pub reserved_keys: Vec<String>,
}

/// A running listener.
pub struct RespServer {
    addr: SocketAddr,
    pubsub: Arc<PubSub>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Counts a connection for INFO while it lives, even if its task panics.
struct Connected(Arc<Shared>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::Relaxed);
        events::RespConnectionCounted { delta: -1.0 }.emit();
    }
}

impl RespServer {
    /// Binds the listener (port 0 picks a free port) and starts accepting.
    pub async fn start(
        settings: RespSettings,
        store: Arc<VersionedStore>,
        crdts: Arc<CrdtStore>,
        pubsub: Arc<PubSub>,
        tokens: Arc<Tokens>,
    ) -> std::io::Result<RespServer> {
        let cfg = &settings.config;
        let listener = TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        // Table built now, not on the first command.
        let _ = command::spec("ping");
        events::register_resp_commands(
            command::all_specs().map(|s| s.name).chain([command::OTHER]),
        );
        let shared = Arc::new(Shared {
            store,
            crdts,
            pubsub: pubsub.clone(),
            tokens,
            password: cfg.password.as_ref().map(|p| p.0.clone()),
            default_level: settings.default_level,
            limits: Limits {
                max_request_bytes: cfg.max_request_bytes,
                max_args: cfg.max_args,
                max_bulk_bytes: cfg.max_bulk_bytes,
            },
            max_connections: cfg.max_connections,
            allow_flush: cfg.allow_flush,
            listen: addr,
            instance: settings.instance.clone(),
            started: Instant::now(),
            key_count: super::key_count::KeyCount::new(settings.reserved_keys.clone()),
            wakes: Default::default(),
            connected: Default::default(),
            in_flight: Default::default(),
            next_id: Default::default(),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared, stopped));
        events::RespListening { addr }.emit();
        Ok(RespServer {
            addr,
            pubsub,
            stop,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// This instance's pub/sub (its node subscriptions and local subscribers).
    pub fn pubsub(&self) -> &Arc<PubSub> {
        &self.pubsub
    }

    /// Stops accepting and waits until every connection has answered what it was running.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Drops every connection at once, as a crash would.
    pub fn kill(self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stopped: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(shared.max_connections));
    let mut connections = JoinSet::new();
    let mut stop = stopped.clone();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        events::RespAcceptFailed { error: &e.to_string() }.emit();
                        // Out of file descriptors, typically: give closing connections a moment.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    events::RespConnectionRefused { peer, limit: shared.max_connections }.emit();
                    connections.spawn(refuse(stream));
                    continue;
                };
                shared.connected.fetch_add(1, Ordering::Relaxed);
                events::RespConnectionCounted { delta: 1.0 }.emit();
                let guard = Connected(shared.clone());
                let shared = shared.clone();
                let stopped = stopped.clone();
                connections.spawn(async move {
                    let _slot = slot;
                    let _guard = guard;
                    if let Err(e) = connection::serve(stream, peer, shared, stopped).await {
                        events::RespConnectionFailed { peer, error: &e.to_string() }.emit();
                    }
                });
            }
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn refuse(mut stream: TcpStream) {
    let reply = Frame::error("ERR max number of clients reached").to_bytes(Protocol::Resp2);
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}
