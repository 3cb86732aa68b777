//! A bare Redis-protocol client for tests: it sends arrays of bulk strings (or raw bytes) and
//! reads whole frames with quorumd's own parser, so a test sees exactly what the server sent,
//! with nothing a client library would add or hide.

use bytes::BytesMut;
use quorumd_service::resp::frame::{Frame, Limits, Protocol, parse_frame};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long [`RespClient::read`] waits for a frame before failing the test.
const READ_LIMIT: Duration = Duration::from_secs(10);

pub struct RespClient {
    addr: SocketAddr,
    stream: TcpStream,
    buf: BytesMut,
}

impl RespClient {
    pub async fn connect(addr: SocketAddr) -> RespClient {
        RespClient {
            addr,
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
        }
    }

    /// The socket itself, for tests of the protocol: what is read from it bypasses the frames
    /// already buffered.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// A fresh connection to the same address, dropping anything unread.
    pub async fn reconnect(&mut self) {
        *self = RespClient::connect(self.addr).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends one command: its arguments as an array of bulk strings. (Byte slices, not a
    /// generic, so that byte-string literals of different lengths make one slice.)
    pub async fn send(&mut self, args: &[&[u8]]) {
        self.send_raw(&request(args)).await;
    }

    /// The next frame within `limit`; `None` if none came, or the server closed the connection.
    pub async fn read_within(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some((frame, used)) =
                parse_frame(&self.buf, &Limits::default()).expect("the server sent valid RESP")
            {
                let _ = self.buf.split_to(used);
                return Some(frame);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Err(_) => return None,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("read: {e}"),
            }
        }
    }

    /// The next frame, or `None` once the server has closed the connection; the test fails if
    /// neither happens within 10 s.
    pub async fn read_or_closed(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) =
                parse_frame(&self.buf, &Limits::default()).expect("the server sent valid RESP")
            {
                let _ = self.buf.split_to(used);
                return Some(frame);
            }
            let read = tokio::time::timeout(READ_LIMIT, self.stream.read_buf(&mut self.buf));
            if read
                .await
                .expect("a frame or a close within 10 s")
                .unwrap_or(0)
                == 0
            {
                return None;
            }
        }
    }

    /// The next frame; the test fails if none comes within 10 s.
    pub async fn read(&mut self) -> Frame {
        self.read_within(READ_LIMIT)
            .await
            .expect("a frame within 10 s")
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> Frame {
        self.send(args).await;
        self.read().await
    }

    /// [`RespClient::call`] of a line split on spaces (no quoting).
    pub async fn cmd(&mut self, line: &str) -> Frame {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        self.call(&args).await
    }

    /// A call that may fail, for tests that inject faults: the reply within `limit`, or `None`
    /// when the connection failed, closed or stayed silent. The connection is then replaced,
    /// so that a late reply is never taken for the next command's.
    pub async fn try_call(&mut self, args: &[&str], limit: Duration) -> Option<Frame> {
        let reply = tokio::time::timeout(limit, self.exchange(args))
            .await
            .ok()
            .flatten();
        if reply.is_none() {
            self.reconnect().await;
        }
        reply
    }

    async fn exchange(&mut self, args: &[&str]) -> Option<Frame> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.stream.write_all(&request(&args)).await.ok()?;
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf, &Limits::default()).ok()? {
                let _ = self.buf.split_to(used);
                return Some(frame);
            }
            if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }
}

/// One command as RESP2 bytes: an array of bulk strings.
pub fn request(args: &[&[u8]]) -> Vec<u8> {
    let items = args.iter().map(|a| Frame::bulk(a.to_vec()));
    Frame::Array(items.collect())
        .to_bytes(Protocol::Resp2)
        .to_vec()
}
