//! Direct connections to each master of a cluster replica, for the probe alone. The cluster
//! client cannot say whether one given master answers: a request it cannot send to a master
//! goes to another one, so `INFO` routed to a dead master's slot is answered all the same.
//! A connection of its own per master tells a dead shard from a live one.

use super::tls::{self, TlsConfig};
use quorumd_core::config::TimeoutConfig;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::sync::Mutex;

/// One connection per master address, opened on demand with the credentials and TLS of the
/// replica's first seed.
pub struct MasterLinks {
    /// The first seed's URL: each master's URL is it with the master's host and port.
    seed: url::Url,
    tls: TlsConfig,
    timeouts: TimeoutConfig,
    links: Mutex<HashMap<String, MultiplexedConnection>>,
}

impl MasterLinks {
    pub fn new(seed: &str, tls: &TlsConfig, timeouts: &TimeoutConfig) -> Result<Self, String> {
        Ok(MasterLinks {
            seed: url::Url::parse(seed).map_err(|e| e.to_string())?,
            tls: tls.clone(),
            timeouts: timeouts.clone(),
            links: Mutex::default(),
        })
    }

    /// `INFO server` of the master at `addr` (`host:port`), within the connect and node
    /// timeouts. A master that fails loses its connection: the next probe opens another.
    pub async fn info(&self, addr: &str) -> Result<redis::Value, String> {
        let mut conn = match self.cached(addr) {
            Some(c) => c,
            None => {
                let c = self.connect(addr).await?;
                self.lock().insert(addr.to_owned(), c.clone());
                c
            }
        };
        let mut info = redis::cmd("INFO");
        info.arg("server");
        match tokio::time::timeout(self.timeouts.node(), info.query_async(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            failed => {
                self.lock().remove(addr);
                Err(match failed {
                    Ok(Err(e)) => super::classify(&e).to_string(),
                    _ => format!("timed out after {} ms", self.timeouts.node_ms),
                })
            }
        }
    }

    /// Forgets the connections of masters no longer in the slot map.
    pub fn retain(&self, masters: &[String]) {
        self.lock().retain(|addr, _| masters.contains(addr));
    }

    fn cached(&self, addr: &str) -> Option<MultiplexedConnection> {
        self.lock().get(addr).cloned()
    }

    async fn connect(&self, addr: &str) -> Result<MultiplexedConnection, String> {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("master address {addr:?} is not host:port"))?;
        let mut url = self.seed.clone();
        url.set_host(Some(host)).map_err(|e| e.to_string())?;
        url.set_port(Some(port))
            .map_err(|()| format!("no port in {addr}"))?;
        let client = tls::client(&self.tls, url.as_str())?;
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect()))
            .set_response_timeout(Some(self.timeouts.node()));
        let limit = self.timeouts.connect() + self.timeouts.node();
        match tokio::time::timeout(
            limit,
            client.get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(super::classify(&e).to_string()),
            Err(_) => Err(format!(
                "connect timed out after {} ms",
                self.timeouts.connect_ms
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, MultiplexedConnection>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }
}
