//! Wiring: builds the node pool, the store and the HTTP server from a validated configuration,
//! and shuts them down in order (stop accepting and stop the background workers, drain
//! requests, wait for the background tasks, close node connections).

use crate::api::{self, AppState, InstanceInfo};
use crate::events;
use crate::resp::{RespServer, RespSettings};
use quorumd_core::config::Validated;
use quorumd_core::hlc::Hlc;
use quorumd_node::pool::{NodePool, PoolError};
use quorumd_node::worker::StopPhase;
use quorumd_replication::store::{StoreSettings, VersionedStore};
use quorumd_replication::sync::Sweeper;
use quorumd_replication::sync::schedule::Schedule;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("http server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Sync(#[from] quorumd_replication::sync::SyncError),
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Layout(#[from] quorumd_replication::store::layout::LayoutError),
}

/// A running service.
pub struct App {
    http_addr: SocketAddr,
    store: Arc<VersionedStore>,
    sweeper: Arc<Sweeper>,
    schedule: Schedule,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    auth: Arc<crate::auth::Tokens>,
    drain_timeout: std::time::Duration,
    resp: Option<RespServer>,
    locks: Arc<quorumd_replication::locks::LockService>,
}

/// The writer id in versions: a stable part from the instance id (recognisable across restarts)
/// and a random part, so two processes never share an id even if misconfigured alike.
fn writer_id(instance_id: &str) -> u64 {
    let stable = xxhash_rust::xxh3::xxh3_64(instance_id.as_bytes()) & 0xffff_ffff_0000_0000;
    stable | u64::from(rand::random::<u32>())
}

/// The parts every mode of the binary needs (service, one-off sweep): the node pool, the
/// versioned store over it and the sweeper.
pub struct Core {
    pub store: Arc<VersionedStore>,
    pub sweeper: Arc<Sweeper>,
    pub writer: u64,
    /// This instance's name: the configured `instance_id`, or one derived from the writer id.
    pub instance: String,
}

/// Registers every series whose labels are known in advance at zero, once the nodes are known
/// (and before the store, so the batch counters it registers find their families described).
/// Prometheus' `rate()` and the alert rules need a series to exist to read 0: without this, a
/// fresh instance exported only the families something had already happened to. Each layer
/// registers its own families from its events module.
fn register_metrics_at_zero(pool: &NodePool, shards: u32) {
    use quorumd_replication::{crdt_store, fanout, locks, pubsub, queue, store, sync};
    let names: Vec<String> = pool.nodes().iter().map(|n| n.display.clone()).collect();
    quorumd_node::events::NodeMetricsRegistered {
        nodes: pool.nodes(),
    }
    .emit();
    fanout::events::FanoutMetricsRegistered.emit();
    store::events::StoreMetricsRegistered.emit();
    sync::events::SyncMetricsRegistered {
        nodes: &names,
        shards,
    }
    .emit();
    locks::events::LockMetricsRegistered.emit();
    queue::events::QueueMetricsRegistered.emit();
    crdt_store::events::CrdtMetricsRegistered.emit();
    let identities: Vec<(String, String)> = pool
        .nodes()
        .iter()
        .filter(|n| !n.is_cluster())
        .map(|n| (n.display.clone(), n.identity.clone()))
        .collect();
    pubsub::events::PubSubMetricsRegistered { nodes: &identities }.emit();
    events::ServiceMetricsRegistered.emit();
}

impl Core {
    /// Connects and checks the nodes' layout (see `store::layout`): a node of another layout
    /// is refused.
    pub async fn start(validated: &Validated) -> Result<Core, AppError> {
        let core = Core::open(validated).await?;
        core.store.check_layout().await?;
        Ok(core)
    }

    /// Connects without checking the layout: for `quorumd convert`, which changes it.
    pub async fn open(validated: &Validated) -> Result<Core, AppError> {
        let cfg = &validated.config;
        // Installed before anything is recorded; once per process.
        let _ = crate::exposition::handle();
        let pool = NodePool::start_with(
            &validated.nodes,
            &cfg.timeouts,
            &cfg.key_prefix,
            &cfg.tls,
            cfg.buckets,
        )
        .await?;
        register_metrics_at_zero(&pool, cfg.sync.shards);
        let writer = writer_id(&cfg.instance_id);
        let store = Arc::new(VersionedStore::new(
            pool,
            Hlc::new(writer),
            StoreSettings {
                layout: cfg.layout(),
                quorum: validated.quorum,
                request_timeout: cfg.timeouts.request(),
                batch: quorumd_replication::store::BatchSettings {
                    max_entries: cfg.quorum.batch_max_entries,
                    in_flight: cfg.quorum.batch_in_flight,
                },
                max_hints_per_node: cfg.sync.max_hints_per_node,
                stream_checksum: cfg.sync.stream_checksum,
                read_fanout: cfg.quorum.read_fanout,
                read_hedge: cfg.quorum.read_hedge(),
            },
        ));
        let instance = if cfg.instance_id.is_empty() {
            format!("quorumd-{writer:016x}")
        } else {
            cfg.instance_id.clone()
        };
        let sweeper = Sweeper::new(store.clone(), cfg.sync.clone(), instance.clone());
        Ok(Core {
            store,
            sweeper,
            instance,
            writer,
        })
    }
}

impl App {
    /// Starts the service. The HTTP listener is bound before this returns, so `http_addr` is
    /// ready for requests (port 0 in the configuration picks a free port).
    pub async fn start(validated: Validated) -> Result<App, AppError> {
        Self::start_inner(validated, None).await
    }

    /// Starts the service for `quorumd demo`: the demo endpoints (wipe or diverge a node) are
    /// routed, and `seeded` demo keys are assumed written.
    pub async fn start_demo(validated: Validated, seeded: u64) -> Result<App, AppError> {
        Self::start_inner(validated, Some(Arc::new(api::demo::DemoInfo { seeded }))).await
    }

    async fn start_inner(
        validated: Validated,
        demo: Option<Arc<api::demo::DemoInfo>>,
    ) -> Result<App, AppError> {
        let cfg = &validated.config;
        // Before anything starts: a tokens file that vanished since validation stops here.
        let auth = Arc::new(crate::auth::Tokens::from_config(&cfg.auth)?);
        let Core {
            store,
            sweeper,
            writer,
            instance: instance_id,
        } = Core::start(&validated).await?;
        let schedule = Schedule::start(sweeper.clone()).await?;
        let locks = quorumd_replication::locks::LockService::new(
            store.pool().clone(),
            cfg.locks.clone(),
            &store.settings().layout,
        );
        let lock_service = locks.clone();
        let state = AppState {
            crdts: Arc::new(quorumd_replication::crdt_store::CrdtStore::new(
                store.clone(),
            )),
            sweeper: sweeper.clone(),
            locks: locks.clone(),
            queues: quorumd_replication::queue::QueueService::new(
                store.clone(),
                locks,
                cfg.queues.clone(),
            ),
            store: store.clone(),
            http: cfg.http.clone(),
            default_consistency: cfg.quorum.default_consistency,
            instance: Arc::new(InstanceInfo {
                id: instance_id,
                writer_id: writer,
                started: Instant::now(),
            }),
            demo,
        };
        let listener =
            TcpListener::bind(cfg.http.listen)
                .await
                .map_err(|source| AppError::Bind {
                    addr: cfg.http.listen,
                    source,
                })?;
        let http_addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: cfg.http.listen,
            source,
        })?;
        events::RuntimeStarted {
            workers: tokio::runtime::Handle::current().metrics().num_workers(),
        }
        .emit();
        events::HttpListening { addr: http_addr }.emit();
        let resp = if cfg.resp.enabled {
            let settings = RespSettings {
                config: cfg.resp.clone(),
                default_level: cfg.quorum.default_consistency,
                instance: state.instance.id.clone(),
                reserved_keys: quorumd_replication::sync::lease::lease_keys(
                    &cfg.key_prefix,
                    cfg.sync.shards,
                ),
            };
            // One subscription per node, only when clients can subscribe (decision 40).
            let pubsub = quorumd_replication::pubsub::PubSub::new(
                store.pool().clone(),
                &cfg.key_prefix,
                writer,
                cfg.timeouts.request(),
            );
            pubsub.start();
            let server = RespServer::start(
                settings,
                store.clone(),
                state.crdts.clone(),
                pubsub,
                auth.clone(),
            )
            .await
            .map_err(|source| AppError::Bind {
                addr: cfg.resp.listen,
                source,
            })?;
            Some(server)
        } else {
            None
        };
        let (stop, mut stopped) = watch::channel(false);
        crate::reload::spawn_on_sighup(auth.clone(), store.pool().workers());
        let router = api::auth::protect(api::router(state), auth.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        Ok(App {
            http_addr,
            store,
            sweeper,
            schedule,
            stop,
            server,
            auth,
            drain_timeout: std::time::Duration::from_millis(cfg.http.drain_timeout_ms),
            resp,
            locks: lock_service,
        })
    }

    /// The bearer-token store, for other surfaces (the RESP front end's AUTH).
    pub fn auth(&self) -> &Arc<crate::auth::Tokens> {
        &self.auth
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The Redis-protocol listener's address, when it is enabled.
    pub fn resp_addr(&self) -> Option<SocketAddr> {
        self.resp.as_ref().map(RespServer::addr)
    }

    /// Pub/sub across instances, when the RESP front end is on.
    pub fn pubsub(&self) -> Option<&Arc<quorumd_replication::pubsub::PubSub>> {
        self.resp.as_ref().map(RespServer::pubsub)
    }

    pub fn store(&self) -> &Arc<VersionedStore> {
        &self.store
    }

    pub fn sweeper(&self) -> &Arc<Sweeper> {
        &self.sweeper
    }

    pub fn locks(&self) -> &Arc<quorumd_replication::locks::LockService> {
        &self.locks
    }

    /// Stops accepting and stops the background workers, lets in-flight requests and then
    /// the background tasks they started finish (one drain deadline for all), then closes
    /// node connections.
    pub async fn shutdown(self) -> Result<(), AppError> {
        let started = Instant::now();
        events::ShutdownProgress {
            phase: "draining http",
            elapsed: started.elapsed(),
        }
        .emit();
        let _ = self.stop.send(true);
        // Event streams never end on their own; end them so the drain can finish.
        self.store.pool().live().close();
        // One deadline for all: a stuck node must not hold the shutdown past it, whether
        // through a request in flight, a sweep pass, the lease release or a read repair.
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        let mut server = self.server;
        let resp = self.resp;
        let schedule = self.schedule;
        let workers = self.store.pool().workers();
        let (stopped, drained, resp_drained) = tokio::join!(
            async {
                // The sweep workers first: a pass still running could take shards again.
                let stopped = workers.stop(StopPhase::Background, deadline).await;
                let released = tokio::time::timeout_at(deadline, schedule.stop()).await;
                (stopped, released)
            },
            tokio::time::timeout_at(deadline, &mut server),
            tokio::time::timeout_at(deadline, async move {
                if let Some(resp) = resp {
                    resp.shutdown().await;
                }
            })
        );
        let (workers_stopped, leases_released) = stopped;
        if resp_drained.is_err() {
            events::ShutdownProgress {
                phase: "drain deadline passed, dropping the Redis-protocol commands still open",
                elapsed: started.elapsed(),
            }
            .emit();
        }
        if leases_released.is_err() {
            events::ShutdownProgress {
                phase: "drain deadline passed before the shard leases were handed back; they expire on their own",
                elapsed: started.elapsed(),
            }
            .emit();
        }
        let served = match drained {
            Ok(joined) => joined.map_err(|e| AppError::Serve(std::io::Error::other(e)))?,
            Err(_) => {
                events::ShutdownProgress {
                    phase: "drain deadline passed, dropping the requests still open",
                    elapsed: started.elapsed(),
                }
                .emit();
                server.abort();
                Ok(())
            }
        };
        // After the drain: the requests it let finish may have started repairs and hint writes.
        events::ShutdownProgress {
            phase: "waiting for background tasks",
            elapsed: started.elapsed(),
        }
        .emit();
        let tasks = workers.wait_for_tasks(deadline).await;
        events::ShutdownWaited {
            workers_stopped: &workers_stopped.stopped,
            workers_cut_off: &workers_stopped.cut_off,
            tasks_waited_for: tasks.waited_for,
            tasks_unfinished: tasks.unfinished,
            elapsed: started.elapsed(),
        }
        .emit();
        events::ShutdownProgress {
            phase: "closing node connections",
            elapsed: started.elapsed(),
        }
        .emit();
        self.store.pool().shutdown().await;
        events::ShutdownProgress {
            phase: "done",
            elapsed: started.elapsed(),
        }
        .emit();
        served.map_err(AppError::Serve)
    }

    /// Stops everything at once, as a crash would: no draining, no leases handed back. For
    /// tests of what the other instances do when one dies.
    pub async fn kill(self) {
        self.schedule.abort().await;
        self.server.abort();
        if let Some(resp) = self.resp {
            resp.kill();
        }
        self.store.pool().shutdown().await;
    }

    /// Serves until one of `signals` (installed earlier) arrives, then shuts down gracefully.
    pub async fn run_until(self, mut signals: StopSignals) -> Result<(), AppError> {
        signals.recv().await;
        self.shutdown().await
    }
}

/// SIGINT and SIGTERM listeners, installed when created: a signal that arrives between
/// `install` and `recv` is kept, not left to its default action (which would end the process
/// without a drain).
pub struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the first SIGINT (Ctrl-C) or SIGTERM since `install`.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// The async runtime of `quorumd run`: `worker_threads` workers (the configuration's field),
/// or one per CPU core when it is 0.
pub fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::runtime;

    #[test]
    fn the_runtime_has_the_configured_workers_or_one_per_core() {
        assert_eq!(runtime(1).unwrap().metrics().num_workers(), 1);
        assert_eq!(runtime(3).unwrap().metrics().num_workers(), 3);
        // Tokio's default, which its environment variable overrides.
        let default = std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        assert_eq!(runtime(0).unwrap().metrics().num_workers(), default);
    }
}
