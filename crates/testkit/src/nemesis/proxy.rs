//! A fault-injecting TCP proxy placed between quorumd and one node.
//!
//! Faults model the network, not a broken byte stream: a blackholed or cut direction stops
//! being *read* (TCP back-pressure holds the bytes, as a partition shorter than the TCP timeout
//! would), so when it heals the stream resumes intact. Latency delays every chunk by the same
//! amount and keeps order. Resets and slow closes act on the connections open at that moment.
//!
//! A proxy started with [`FaultProxy::start_counting`] also counts a marker in the requests, so
//! a test can see them on the wire; [`LinkFault::HoldToNode`] keeps reading (and counting)
//! requests while holding them back from the node.

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// The standing condition of the link; one at a time, replaced by [`FaultProxy::set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    /// Bytes flow both ways.
    Healthy,
    /// Every chunk arrives this much later, in order.
    Latency(Duration),
    /// Nothing flows either way; new connections are accepted but hang.
    Blackhole,
    /// Requests (quorumd → node) are held; replies still flow.
    CutToNode,
    /// Replies (node → quorumd) are held; requests still reach the node.
    CutFromNode,
    /// Requests (quorumd → node) are read, and counted, but held in the proxy until it heals;
    /// replies still flow. Unlike [`LinkFault::CutToNode`], what is held has been seen.
    HoldToNode,
    /// New connections are reset at once (as if the port refused them); open ones keep going.
    Refuse,
}

impl LinkFault {
    fn holds(self, direction: Direction) -> bool {
        matches!(
            (self, direction),
            (LinkFault::Blackhole, _)
                | (LinkFault::CutToNode, Direction::ToNode)
                | (LinkFault::CutFromNode, Direction::FromNode)
        )
    }

    /// Whether chunks already read in `direction` wait in the proxy.
    fn defers(self, direction: Direction) -> bool {
        matches!(
            (self, direction),
            (LinkFault::HoldToNode, Direction::ToNode)
        )
    }

    fn delay(self) -> Duration {
        match self {
            LinkFault::Latency(d) => d,
            _ => Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToNode,
    FromNode,
}

/// One-shot actions on the connections open when they are issued.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Close with RST (SO_LINGER 0) at once.
    Reset,
    /// Stop forwarding, then close with FIN after the given time.
    SlowClose(Duration),
}

/// Counts a marker in what quorumd sends to the node.
struct Tally {
    marker: Vec<u8>,
    seen: AtomicUsize,
}

impl Tally {
    /// Counts the markers that end in `chunk`; `carry` keeps the tail of the previous chunks
    /// so that a marker split between reads counts once.
    fn count(&self, carry: &mut Vec<u8>, chunk: &[u8]) {
        carry.extend_from_slice(chunk);
        let hits = carry
            .windows(self.marker.len())
            .filter(|w| *w == self.marker)
            .count();
        self.seen.fetch_add(hits, Ordering::SeqCst);
        let keep = carry.len().min(self.marker.len() - 1);
        carry.drain(..carry.len() - keep);
    }
}

/// What the proxy's handle shares with its accept loop.
#[derive(Clone)]
struct Controls {
    fault: watch::Sender<LinkFault>,
    kills: broadcast::Sender<Kill>,
    accepted: Arc<AtomicU64>,
    tally: Option<Arc<Tally>>,
}

/// A running proxy; stops (and drops every proxied connection) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    controls: Controls,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<FaultProxy> {
        Self::start_with(target, None).await
    }

    /// [`FaultProxy::start`], also counting `marker` in the bytes sent to the node (see
    /// [`FaultProxy::seen`]).
    pub async fn start_counting(target: SocketAddr, marker: &[u8]) -> std::io::Result<FaultProxy> {
        assert!(!marker.is_empty(), "an empty marker");
        let tally = Tally {
            marker: marker.to_vec(),
            seen: AtomicUsize::new(0),
        };
        Self::start_with(target, Some(Arc::new(tally))).await
    }

    async fn start_with(
        target: SocketAddr,
        tally: Option<Arc<Tally>>,
    ) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let controls = Controls {
            fault: watch::channel(LinkFault::Healthy).0,
            kills: broadcast::channel(16).0,
            accepted: Arc::new(AtomicU64::new(0)),
            tally,
        };
        let task = tokio::spawn(accept_loop(listener, target, controls.clone()));
        Ok(FaultProxy {
            addr,
            target,
            controls,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node behind the proxy.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// A `redis://` URL through the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.controls.accepted.load(Ordering::Relaxed)
    }

    /// How many markers have been sent to the node since the start or the last
    /// [`FaultProxy::reset_seen`], held ones included; 0 when not counting.
    pub fn seen(&self) -> usize {
        self.controls
            .tally
            .as_ref()
            .map_or(0, |t| t.seen.load(Ordering::SeqCst))
    }

    pub fn reset_seen(&self) {
        if let Some(t) = &self.controls.tally {
            t.seen.store(0, Ordering::SeqCst);
        }
    }

    pub fn fault(&self) -> LinkFault {
        *self.controls.fault.borrow()
    }

    /// Replaces the standing fault; held bytes flow again when the new one allows.
    pub fn set(&self, fault: LinkFault) {
        self.controls.fault.send_replace(fault);
    }

    pub fn heal(&self) {
        self.set(LinkFault::Healthy);
    }

    /// Resets every open connection (RST), as a crashed middlebox would.
    pub fn reset_connections(&self) {
        let _ = self.controls.kills.send(Kill::Reset);
    }

    /// Every open connection stops forwarding and is closed (FIN) after `after`.
    pub fn slow_close(&self, after: Duration) {
        let _ = self.controls.kills.send(Kill::SlowClose(after));
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, controls: Controls) {
    let Controls {
        fault,
        kills,
        accepted,
        tally,
    } = controls;
    // Owned here so that aborting this task drops every connection task too.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            incoming = listener.accept() => {
                let Ok((client, _)) = incoming else { continue };
                accepted.fetch_add(1, Ordering::Relaxed);
                if *fault.borrow() == LinkFault::Refuse {
                    reset(&client);
                    continue;
                }
                conns.spawn(proxy_connection(
                    client,
                    target,
                    fault.subscribe(),
                    kills.subscribe(),
                    tally.clone(),
                ));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// RST instead of FIN on close.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn proxy_connection(
    mut client: TcpStream,
    target: SocketAddr,
    mut fault: watch::Receiver<LinkFault>,
    mut kills: broadcast::Receiver<Kill>,
    tally: Option<Arc<Tally>>,
) {
    // A blackholed link does not even complete the node-side connect until it heals.
    let outcome = tokio::select! {
        healed = fault.wait_for(|f| *f != LinkFault::Blackhole) => Ok(healed.is_ok()),
        k = next_kill(&mut kills) => Err(k),
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => return,
        Err(kill) => return finish(kill, &client, None).await,
    }
    let Ok(mut node) = TcpStream::connect(target).await else {
        reset(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = node.set_nodelay(true);
    let kill = {
        let (client_read, client_write) = client.split();
        let (node_read, node_write) = node.split();
        let both = async {
            tokio::join!(
                forward(
                    client_read,
                    node_write,
                    Direction::ToNode,
                    fault.clone(),
                    tally
                ),
                forward(
                    node_read,
                    client_write,
                    Direction::FromNode,
                    fault.clone(),
                    None
                ),
            )
        };
        tokio::select! {
            _ = both => None,
            k = next_kill(&mut kills) => k,
        }
    };
    finish(kill, &client, Some(&node)).await;
}

/// The next one-shot action, or `None` once the proxy is gone.
async fn next_kill(kills: &mut broadcast::Receiver<Kill>) -> Option<Kill> {
    loop {
        match kills.recv().await {
            Ok(k) => return Some(k),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// Ends a connection the way `kill` asks; the sockets close when the caller drops them.
async fn finish(kill: Option<Kill>, client: &TcpStream, node: Option<&TcpStream>) {
    match kill {
        Some(Kill::Reset) => {
            reset(client);
            if let Some(node) = node {
                reset(node);
            }
        }
        Some(Kill::SlowClose(after)) => tokio::time::sleep(after).await,
        None => {}
    }
}

/// Copies one direction, holding it while the standing fault says so and delaying each chunk
/// by the latency in force when it was read; chunks read while it defers them wait in the
/// proxy. `tally` counts its marker in what is read.
async fn forward(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    direction: Direction,
    mut fault: watch::Receiver<LinkFault>,
    tally: Option<Arc<Tally>>,
) {
    let mut write_fault = fault.clone();
    // Bounded: a slow (delayed) writer pushes back on the reader, so memory stays bounded.
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(64);
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut carry = Vec::new();
        loop {
            if fault.wait_for(|f| !f.holds(direction)).await.is_err() {
                return;
            }
            // Re-check the fault whenever it changes, even in the middle of waiting for bytes
            // (reading a TCP stream is cancel-safe).
            let n = tokio::select! {
                read = from.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                _ = fault.changed() => continue,
            };
            if let Some(tally) = &tally {
                tally.count(&mut carry, &buf[..n]);
            }
            let due = Instant::now() + fault.borrow().delay();
            if tx
                .send((due, Bytes::copy_from_slice(&buf[..n])))
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if write_fault
                .wait_for(|f| !f.defers(direction))
                .await
                .is_err()
            {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // The source closed: pass the half-close on.
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_split_between_reads_counts_once() {
        let tally = Tally {
            marker: b"marker-".to_vec(),
            seen: AtomicUsize::new(0),
        };
        let mut carry = Vec::new();
        for chunk in [
            &b"SET a mar"[..],
            b"ker-1 marker-2",
            b"\r\nmarker",
            b"-3",
            b"marke",
        ] {
            tally.count(&mut carry, chunk);
        }
        assert_eq!(tally.seen.load(Ordering::SeqCst), 3);
    }
}
