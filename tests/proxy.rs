//! The fault-injecting proxy, checked against a real redis-server: each fault does what it
//! says to the bytes, and healing restores the link.

use quorumd::devcluster::DevCluster;
use quorumd_testkit::cluster::wait_until;
use quorumd_testkit::nemesis::proxy::{FaultProxy, LinkFault};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

async fn node() -> DevCluster {
    tokio::task::spawn_blocking(|| DevCluster::start(1))
        .await
        .unwrap()
        .expect("redis-server")
}

async fn setup() -> (DevCluster, FaultProxy) {
    let cluster = node().await;
    let proxy = FaultProxy::start(cluster.nodes[0].addr()).await.unwrap();
    (cluster, proxy)
}

/// A connection through the proxy that has answered a PING.
async fn pinged(proxy: &FaultProxy) -> TcpStream {
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ask(&mut c, "PING").await.unwrap(), "+PONG");
    c
}

/// Sends one inline command and reads one line of reply.
async fn ask(conn: &mut TcpStream, command: &str) -> std::io::Result<String> {
    conn.write_all(format!("{command}\r\n").as_bytes()).await?;
    read_line(conn).await
}

async fn read_line(conn: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if conn.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// Fails if a line arrives on `conn` within `ms` milliseconds.
async fn assert_no_reply(conn: &mut TcpStream, ms: u64, what: &str) {
    let line = timeout(Duration::from_millis(ms), read_line(conn)).await;
    assert!(line.is_err(), "{what}: {line:?}");
}

/// The value of `key` read straight from the node, bypassing the proxy.
async fn direct_get(cluster: &DevCluster, key: &str) -> String {
    let mut c = TcpStream::connect(cluster.nodes[0].addr()).await.unwrap();
    let first = ask(&mut c, &format!("GET {key}")).await.unwrap();
    if first == "$-1" {
        return "(nil)".into();
    }
    read_line(&mut c).await.unwrap()
}

async fn poll_direct(cluster: &DevCluster, key: &str, want: &str) {
    wait_until(
        Duration::from_secs(5),
        &format!("{key} to become {want}"),
        || async { direct_get(cluster, key).await == want },
    )
    .await;
}

#[tokio::test]
async fn healthy_link_forwards_both_ways() {
    let (_cluster, proxy) = setup().await;
    let mut c = pinged(&proxy).await;
    assert_eq!(ask(&mut c, "SET k v").await.unwrap(), "+OK");
    assert_eq!(proxy.accepted(), 1);
}

#[tokio::test]
async fn blackhole_holds_bytes_until_healed_then_delivers_them_intact() {
    let (cluster, proxy) = setup().await;
    let mut c = pinged(&proxy).await;
    proxy.set(LinkFault::Blackhole);
    c.write_all(b"SET held 1\r\n").await.unwrap();
    assert_no_reply(&mut c, 300, "a reply crossed a blackhole").await;
    assert_eq!(direct_get(&cluster, "held").await, "(nil)");
    // New connections hang too.
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    fresh.write_all(b"PING\r\n").await.unwrap();
    assert_no_reply(&mut fresh, 200, "a reply arrived").await;
    proxy.heal();
    assert_eq!(read_line(&mut c).await.unwrap(), "+OK");
    assert_eq!(read_line(&mut fresh).await.unwrap(), "+PONG");
    assert_eq!(direct_get(&cluster, "held").await, "1");
}

#[tokio::test]
async fn latency_delays_every_reply_by_at_least_the_setting() {
    let (_cluster, proxy) = setup().await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.set(LinkFault::Latency(Duration::from_millis(120)));
    let t = Instant::now();
    assert_eq!(ask(&mut c, "PING").await.unwrap(), "+PONG");
    // Delayed once on the way in and once on the way out.
    assert!(
        t.elapsed() >= Duration::from_millis(240),
        "{:?}",
        t.elapsed()
    );
    proxy.heal();
    assert_eq!(ask(&mut c, "PING").await.unwrap(), "+PONG");
}

#[tokio::test]
async fn cut_to_node_holds_requests_while_replies_still_flow() {
    let (cluster, proxy) = setup().await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    // A reply already on its way when the cut starts still arrives.
    c.write_all(b"SET before 1\r\n").await.unwrap();
    poll_direct(&cluster, "before", "1").await;
    proxy.set(LinkFault::CutToNode);
    assert_eq!(read_line(&mut c).await.unwrap(), "+OK");
    c.write_all(b"SET during 1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(direct_get(&cluster, "during").await, "(nil)");
    proxy.heal();
    assert_eq!(read_line(&mut c).await.unwrap(), "+OK");
    assert_eq!(direct_get(&cluster, "during").await, "1");
}

#[tokio::test]
async fn hold_to_node_counts_requests_and_holds_them_while_replies_still_flow() {
    let cluster = node().await;
    let proxy = FaultProxy::start_counting(cluster.nodes[0].addr(), b"marker-")
        .await
        .unwrap();
    let mut c = pinged(&proxy).await;
    // A reply already on its way when the hold starts still arrives.
    c.write_all(b"SET before marker-1\r\n").await.unwrap();
    poll_direct(&cluster, "before", "marker-1").await;
    proxy.set(LinkFault::HoldToNode);
    assert_eq!(read_line(&mut c).await.unwrap(), "+OK");
    c.write_all(b"SET during marker-2\r\n").await.unwrap();
    wait_until(
        Duration::from_secs(5),
        "the held request counted",
        || async { proxy.seen() == 2 },
    )
    .await;
    assert_eq!(direct_get(&cluster, "during").await, "(nil)");
    proxy.heal();
    assert_eq!(read_line(&mut c).await.unwrap(), "+OK");
    assert_eq!(direct_get(&cluster, "during").await, "marker-2");
    proxy.reset_seen();
    assert_eq!(ask(&mut c, "SET after marker-3").await.unwrap(), "+OK");
    assert_eq!(proxy.seen(), 1);
}

#[tokio::test]
async fn cut_from_node_lets_writes_land_but_holds_their_replies() {
    let (cluster, proxy) = setup().await;
    let mut c = pinged(&proxy).await;
    proxy.set(LinkFault::CutFromNode);
    c.write_all(b"SET landed 1\r\n").await.unwrap();
    poll_direct(&cluster, "landed", "1").await;
    assert_no_reply(&mut c, 200, "a reply crossed a cut").await;
    proxy.heal();
    assert_eq!(read_line(&mut c).await.unwrap(), "+OK");
}

#[tokio::test]
async fn reset_kills_open_connections_and_refuse_rejects_new_ones() {
    let (_cluster, proxy) = setup().await;
    let mut c = pinged(&proxy).await;
    proxy.set(LinkFault::Refuse);
    proxy.reset_connections();
    let err = ask(&mut c, "PING")
        .await
        .expect_err("connection survived a reset");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        ),
        "{err:?}"
    );
    let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(ask(&mut refused, "PING").await.is_err());
    proxy.heal();
    pinged(&proxy).await;
}

#[tokio::test]
async fn slow_close_hangs_then_closes() {
    let (_cluster, proxy) = setup().await;
    let mut c = pinged(&proxy).await;
    let t = Instant::now();
    proxy.slow_close(Duration::from_millis(300));
    c.write_all(b"PING\r\n").await.unwrap();
    let err = read_line(&mut c)
        .await
        .expect_err("a reply crossed a closing link");
    // FIN, or RST when the proxy closes with our unread PING in its buffer.
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "{err:?}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    // The proxy itself keeps serving new connections.
    pinged(&proxy).await;
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let (_cluster, proxy) = setup().await;
    let mut c = pinged(&proxy).await;
    drop(proxy);
    let outcome = timeout(Duration::from_secs(5), ask(&mut c, "PING")).await;
    assert!(matches!(outcome, Ok(Err(_))), "{outcome:?}");
}
