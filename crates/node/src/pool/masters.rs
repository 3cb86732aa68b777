//! Direct connections to each master of a cluster replica, for the probe, live detection and
//! the batched calls of a heal (`Node::per_master`).
//! The cluster client cannot say whether one given master answers: a request it cannot send to a master
//! goes to another one, so `INFO` routed to a dead master's slot is answered all the same.
//! A connection of its own per master tells a dead shard from a live one.

use super::NodeError;
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
        let mut info = redis::cmd("INFO");
        info.arg("server");
        self.query(addr, &info).await.map_err(|e| e.to_string())
    }

    /// Sends `cmd` to the master at `addr` on its own connection (not routed by slot), within
    /// the connect and node timeouts. A master that fails loses its connection.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        addr: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, NodeError> {
        self.on_link(
            addr,
            |mut conn| async move { cmd.query_async(&mut conn).await },
        )
        .await
    }

    /// Sends the plain pipeline `pipe` to the master at `addr` on its own connection: one
    /// answer per command, an error reply (MOVED for a slot it no longer owns) in its place,
    /// never followed. Within the connect and node timeouts.
    pub async fn pipeline(
        &self,
        addr: &str,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<redis::Value>, NodeError> {
        use redis::aio::ConnectionLike;
        self.on_link(addr, |mut conn| async move {
            conn.req_packed_commands(pipe, 0, pipe.len()).await
        })
        .await
    }

    /// Runs `op` on the connection to the master at `addr`, opened on demand.
    async fn on_link<T, F, Fut>(&self, addr: &str, op: F) -> Result<T, NodeError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = match self.cached(addr) {
            Some(c) => c,
            None => {
                let c = self.connect(addr).await.map_err(NodeError::Connection)?;
                self.lock().insert(addr.to_owned(), c.clone());
                c
            }
        };
        match tokio::time::timeout(self.timeouts.node(), op(conn)).await {
            Ok(Ok(v)) => Ok(v),
            failed => {
                let error = match failed {
                    Ok(Err(e)) => super::classify(&e).within(self.timeouts.node_ms),
                    _ => NodeError::Timeout(self.timeouts.node_ms),
                };
                // An error reply (CONFIG refused) says the connection works.
                if error.server_kind().is_none() {
                    self.lock().remove(addr);
                }
                Err(error)
            }
        }
    }

    /// A pub/sub connection to the master at `addr`: keyspace notifications are local to the
    /// master whose keys change, so live detection subscribes to every master.
    pub async fn subscriber(&self, addr: &str) -> Result<redis::aio::PubSub, NodeError> {
        let client = self.client_for(addr).map_err(NodeError::Connection)?;
        let limit = self.timeouts.connect() + self.timeouts.node();
        match tokio::time::timeout(limit, client.get_async_pubsub()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(super::classify(&e).within(self.timeouts.connect_ms)),
            Err(_) => Err(NodeError::Timeout(self.timeouts.connect_ms)),
        }
    }

    /// Forgets the connections of masters no longer in the slot map.
    pub fn retain(&self, masters: &[String]) {
        self.lock().retain(|addr, _| masters.contains(addr));
    }

    fn cached(&self, addr: &str) -> Option<MultiplexedConnection> {
        self.lock().get(addr).cloned()
    }

    /// A client for the master at `addr` (`host:port`): the first seed's URL, credentials and
    /// TLS with the master's host and port.
    fn client_for(&self, addr: &str) -> Result<redis::Client, String> {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("master address {addr:?} is not host:port"))?;
        let mut url = self.seed.clone();
        url.set_host(Some(host)).map_err(|e| e.to_string())?;
        url.set_port(Some(port))
            .map_err(|()| format!("no port in {addr}"))?;
        tls::client(&self.tls, url.as_str())
    }

    async fn connect(&self, addr: &str) -> Result<MultiplexedConnection, String> {
        let client = self.client_for(addr)?;
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
            Ok(Err(e)) => Err(super::classify(&e)
                .within(self.timeouts.connect_ms)
                .to_string()),
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
