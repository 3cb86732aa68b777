//! The Redis-protocol front end against real nodes: every command compared with a real
//! redis-server 7, the `redis` crate and `redis-cli` as clients, pipelining, RESP3, AUTH, node
//! faults, malformed input and graceful shutdown. One module per group of commands; the helpers
//! here are those more than one module uses.

use quorumd_testkit::cluster as common;

use common::{TestCluster, wait_until};
use quorumd::devcluster::DevCluster;
use quorumd::resp::frame::{Frame, Protocol};
use quorumd_testkit::resp::{RespClient, request};
use quorumd_testkit::tools::QuorumdProcess;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod clients_and_faults;
mod hashes_and_sets;
mod lists;
mod server;
mod sorted_sets;
mod streams;
mod strings;
mod transactions;

fn bulk(s: &str) -> Frame {
    Frame::bulk(s.to_string())
}

fn error_text(f: &Frame) -> &str {
    match f {
        Frame::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Runs each line on both connections, in order, and checks that quorumd answered what the
/// redis-server answered.
async fn answers_as_reference(ours: &mut RespClient, theirs: &mut RespClient, lines: &[&str]) {
    for line in lines {
        let expected = theirs.cmd(line).await;
        let got = ours.cmd(line).await;
        assert_eq!(got, expected, "{line}");
    }
}

/// The reply to `line` as the bytes on the wire, for replies the parser reads alike (`$-1`
/// and `*-1` are both a null to it). The client must have no reply left unread.
async fn wire_reply(c: &mut RespClient, line: &str) -> Vec<u8> {
    let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    c.send(&args).await;
    let mut raw = Vec::new();
    loop {
        let limits = quorumd::resp::frame::Limits::default();
        if let Some((_, used)) = quorumd::resp::frame::parse_frame(&raw, &limits).unwrap() {
            assert_eq!(used, raw.len(), "{line}: one reply");
            return raw;
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(10), c.socket().read(&mut chunk));
        let n = read.await.expect("a reply within 10 s").expect("read");
        assert!(n > 0, "{line}: the connection closed");
        raw.extend_from_slice(&chunk[..n]);
    }
}

/// What the server writes for `payload` (raw requests), as bytes: everything up to the reply
/// of an `ECHO end-of-case` sent after it (behind `CLIENT REPLY ON`), or up to the close.
/// Raw, because `CLIENT REPLY` inside MULTI leaves EXEC's array short, as in Redis.
async fn raw_replies(c: &mut RespClient, payload: &[u8]) -> Vec<u8> {
    let mut bytes = payload.to_vec();
    bytes.extend(request(&[b"CLIENT", b"REPLY", b"ON"]));
    bytes.extend(request(&[b"ECHO", b"end-of-case"]));
    c.send_raw(&bytes).await;
    let end = b"$11\r\nend-of-case\r\n";
    let mut raw = Vec::new();
    while !raw.ends_with(end) {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(10), c.socket().read(&mut chunk));
        let Ok(n) = read.await else {
            panic!(
                "the end of the case within 10 s; got {}",
                String::from_utf8_lossy(&raw)
            )
        };
        let n = n.unwrap_or(0);
        if n == 0 {
            return raw;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    raw.truncate(raw.len() - end.len());
    raw
}

/// Sends each payload on a fresh connection to both servers and checks that quorumd wrote
/// the same bytes as the redis-server.
async fn writes_as_reference(ours: &mut RespClient, theirs: &mut RespClient, cases: &[&[u8]]) {
    for payload in cases {
        ours.reconnect().await;
        theirs.reconnect().await;
        let expected = raw_replies(theirs, payload).await;
        let got = raw_replies(ours, payload).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
}

fn resp_addr(tc: &TestCluster) -> SocketAddr {
    tc.app().resp_addr().expect("resp enabled")
}

async fn start_reference() -> DevCluster {
    tokio::task::spawn_blocking(|| DevCluster::start(1))
        .await
        .unwrap()
        .expect("reference redis-server")
}

/// quorumd on 3 nodes and a reference redis-server, with a raw connection to each: (quorumd,
/// the reference, ours, theirs).
async fn beside_a_reference() -> (TestCluster, DevCluster, RespClient, RespClient) {
    let tc = TestCluster::start(3).await;
    let reference = start_reference().await;
    let ours = RespClient::connect(resp_addr(&tc)).await;
    let theirs = RespClient::connect(reference.nodes[0].addr()).await;
    (tc, reference, ours, theirs)
}

/// What lists and sorted sets share beyond the compared tables: `COPY` and `RENAME` move
/// `key` (of type `kind`) whole, as in Redis (tests/resp_differential.rs compares them with
/// redis-server), and `SCAN … TYPE kind` finds `key` but not `other`, a key of another type,
/// from their metadata.
async fn typed_key_is_moved_and_scanned_by_type(
    ours: &mut RespClient,
    key: &str,
    kind: &str,
    other: &str,
) {
    let whole = format!("ZRANGE {key} 0 -1 WITHSCORES");
    let whole = if kind == "list" {
        format!("LRANGE {key} 0 -1")
    } else {
        whole
    };
    let before = ours.cmd(&whole).await;
    assert_eq!(
        ours.cmd(&format!("COPY {key} {key}2")).await,
        Frame::Integer(1)
    );
    assert_eq!(
        ours.cmd(&format!("RENAME {key}2 {key}3")).await,
        Frame::Simple("OK".into())
    );
    assert_eq!(ours.cmd(&format!("EXISTS {key}2")).await, Frame::Integer(0));
    assert_eq!(
        ours.cmd(&whole.replacen(key, &format!("{key}3"), 1)).await,
        before
    );
    let Frame::Array(scan) = ours.cmd(&format!("SCAN 0 TYPE {kind} COUNT 100000")).await else {
        panic!("SCAN")
    };
    let Frame::Array(keys) = &scan[1] else {
        panic!("{scan:?}")
    };
    assert!(
        keys.contains(&bulk(key)) && !keys.contains(&bulk(other)),
        "{keys:?}"
    );
}

/// Waits until every node holds `len` items in list `key`: a write at `one` is acknowledged by
/// one node and reaches the others in the background, and a read at `one` may ask any of them.
async fn list_settled(tc: &TestCluster, key: &str, len: i64) {
    settled(tc, key, "LLEN", len).await
}

/// Waits until every node answers `len` to `count key` (`LLEN`, `ZCARD`).
async fn settled(tc: &TestCluster, key: &str, count: &str, len: i64) {
    let what = format!("{count} {key} = {len} on every node");
    wait_until(Duration::from_secs(5), &what, || async {
        for i in 0..3 {
            let mut c = tc.direct(i).await;
            let n: i64 = redis::cmd(count)
                .arg(key)
                .query_async(&mut c)
                .await
                .unwrap();
            if n != len {
                return false;
            }
        }
        true
    })
    .await;
}
