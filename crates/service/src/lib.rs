//! The service: the surfaces and the wiring.
//!
//! The HTTP API with the dashboard (`api`), the Redis-protocol front end (`resp`), bearer
//! tokens (`auth`), configuration loading (`settings`), app start-up and graceful shutdown
//! (`app`), the Prometheus exposition, SIGHUP reload, systemd notification and logging. A
//! surface never talks to Redis directly: it calls the replication layer.

pub mod api;
pub mod app;
pub mod auth;
pub mod events;
pub mod exposition;
pub mod reload;
pub mod resp;
pub mod sdnotify;
pub mod settings;
pub mod telemetry;
