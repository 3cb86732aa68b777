//! One client connection: buffered reads, every complete request in the buffer decoded and
//! applied in order, the replies written in the same order with one write per batch.
//!
//! Pipelined data commands that touch unrelated keys run concurrently (a read never overtakes
//! an earlier write of the same key, and writes of one key never overlap), so a pipeline of
//! sixteen GETs costs about one quorum round trip instead of sixteen. Commands about the
//! session (HELLO, AUTH, QUORUMD CONSISTENCY...) wait for everything before them.

use super::command::{self, Command};
use super::frame::{Frame, RequestDecoder};
use super::pubsub;
use super::transaction::{self, Step};
use super::{Session, Shared};
use crate::resp::events;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::watch;

/// Most requests decoded before their replies are written: bounds the reply buffer.
const MAX_BATCH: usize = 1024;
/// Most data commands in flight at once for one connection.
const MAX_CONCURRENT: usize = 64;
/// Bytes read per system call.
const READ_CHUNK: usize = 64 * 1024;
/// Most bytes read ahead while a blocking pop waits.
const MAX_BUFFERED: usize = 16 * READ_CHUNK;

/// Serves one client until it disconnects, sends QUIT, sends a malformed request, or the
/// server stops (after the batch in progress has been answered).
#[tracing::instrument(name = "resp.connection", skip_all, fields(peer = %peer))]
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::with_capacity(READ_CHUNK);
    let mut decoder = RequestDecoder::new(shared.limits);
    let mut session = Session::new(&shared, peer);
    loop {
        let mut batch = Vec::new();
        let mut malformed = None;
        while batch.len() < MAX_BATCH {
            match decoder.decode(&mut input) {
                Ok(Some(args)) => batch.push(args),
                Ok(None) => break,
                Err(e) => {
                    malformed = Some(e);
                    break;
                }
            }
        }
        let full = batch.len() == MAX_BATCH;
        let size = batch.len();
        shared.in_flight.fetch_add(size, Ordering::Relaxed);
        let waits = batch.iter().any(|args| command::blocking::may_block(args));
        let ran = {
            let run = run_batch(batch, &mut session, &shared, &mut output);
            if waits {
                until_gone(run, &mut reader, &mut input, &mut stop).await
            } else {
                run.await;
                Ok(Some(false))
            }
        };
        shared.in_flight.fetch_sub(size, Ordering::Relaxed);
        // The client left or the server stops while a blocking pop waited: dropping the batch
        // ended the wait, with nothing left running to pop later.
        let Some(read_ahead) = ran? else {
            return Ok(());
        };
        if let Some(e) = &malformed {
            events::RespProtocolError {
                peer,
                error: &e.to_string(),
            }
            .emit();
            // Silenced too, as Redis drops it under `CLIENT REPLY OFF` or a pending SKIP.
            if !session.replies.silenced_between() {
                Frame::error(e.to_string()).encode(session.protocol, &mut output);
            }
        }
        if !output.is_empty() {
            writer.write_all(&output).await?;
            output.clear();
        }
        if malformed.is_some() || session.closing || *stop.borrow() {
            return Ok(());
        }
        if full || read_ahead {
            // Requests are already buffered: serve them before reading again.
            continue;
        }
        input.reserve(READ_CHUNK);
        tokio::select! {
            read = reader.read_buf(&mut input) => {
                if read? == 0 {
                    return Ok(());
                }
            }
            delivered = pubsub::next(&mut session.listener) => match delivered {
                Ok(deliveries) => {
                    for d in deliveries {
                        pubsub::delivery_frame(d).encode(session.protocol, &mut output);
                    }
                    writer.write_all(&output).await?;
                    output.clear();
                }
                Err(lagged) => {
                    // As Redis closes a subscriber past its output buffer limit: the client
                    // sees the connection end rather than silently missing messages.
                    events::RespSubscriberDropped { peer, missed: lagged.0 }.emit();
                    return Ok(());
                }
            },
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Runs a batch that may block until it ends (`Some`: whether it read more requests), or until
/// the client disconnects or the server stops (`None`, the batch dropped). What the client
/// pipelines meanwhile is read into `input` (at most `MAX_BUFFERED`), for after the batch.
async fn until_gone(
    run: impl Future<Output = ()>,
    reader: &mut OwnedReadHalf,
    input: &mut BytesMut,
    stop: &mut watch::Receiver<bool>,
) -> std::io::Result<Option<bool>> {
    tokio::pin!(run);
    let (mut open, mut read_any) = (true, false);
    loop {
        if *stop.borrow() {
            return Ok(None);
        }
        tokio::select! {
            () = &mut run => return Ok(Some(read_any)),
            read = reader.read_buf(input), if open && input.len() < MAX_BUFFERED => {
                match read {
                    Ok(0) => return Ok(None),
                    Ok(_) => read_any = true,
                    // Reported by the next read, once the batch is answered.
                    Err(_) => open = false,
                }
            }
            changed = stop.changed() => {
                if changed.is_err() {
                    return Ok(None);
                }
            }
        }
    }
}

/// Keys touched by the data commands currently running together.
#[derive(Default)]
struct Footprint {
    reads: HashSet<Bytes>,
    writes: HashSet<Bytes>,
}

impl Footprint {
    /// Whether a command with this access must wait for the running ones.
    fn conflicts(&self, access: &command::Access<'_>) -> bool {
        access.reads.iter().any(|k| self.writes.contains(*k))
            || access
                .writes
                .iter()
                .any(|k| self.writes.contains(*k) || self.reads.contains(*k))
    }

    fn add(&mut self, access: &command::Access<'_>) {
        self.reads
            .extend(access.reads.iter().map(|k| Bytes::copy_from_slice(k)));
        self.writes
            .extend(access.writes.iter().map(|k| Bytes::copy_from_slice(k)));
    }
}

/// Applies a batch of requests in order and encodes their replies in order into `out`, but
/// those `CLIENT REPLY` silences (decided in order, as each command is dispatched: only a
/// session command, which runs alone, can change what is silenced).
async fn run_batch(
    batch: Vec<Vec<Bytes>>,
    session: &mut Session,
    shared: &Arc<Shared>,
    out: &mut BytesMut,
) {
    let mut running: FuturesOrdered<BoxFuture<'static, Option<Frame>>> = FuturesOrdered::new();
    let mut footprint = Footprint::default();
    // A lone request (no pipelining) has nothing to be ordered against: it is awaited in place.
    let alone = batch.len() == 1;
    for args in batch {
        if session.closing {
            break;
        }
        session.replies.begin_command();
        if let pubsub::Step::Replies(name, frames) = pubsub::step(&args, session, shared) {
            // Changes the session: after everything before it.
            drain(&mut running, session, out).await;
            footprint = Footprint::default();
            // Counted once per command, however many channels it named.
            served(name, frames.first().map_or("ok", result_of));
            let silenced = session.replies.silenced();
            for frame in frames {
                // Pushes (the confirmations) are never silenced, as in Redis 7.0.15.
                if !silenced || matches!(frame, Frame::Push(_)) {
                    frame.encode(session.protocol, out);
                }
            }
            continue;
        }
        match transaction::step(&args, session, shared) {
            Step::Pass => {}
            Step::Reply(name, frame) => {
                if let Some(name) = name {
                    served(name, result_of(&frame));
                }
                let heard = !session.replies.silenced();
                running.push_back(Box::pin(async move { heard.then_some(frame) }));
                continue;
            }
            Step::Refused(name, frame) => {
                served(name, "rejected");
                let heard = !session.replies.silenced();
                running.push_back(Box::pin(async move { heard.then_some(frame) }));
                continue;
            }
            Step::Exec(commands, watched) => {
                // The queued commands run after everything before EXEC, and alone.
                drain(&mut running, session, out).await;
                footprint = Footprint::default();
                // Redis writes the array's header before it runs the commands, so a silenced
                // EXEC may still write the replies of those after a `CLIENT REPLY ON`.
                let header_heard = !session.replies.silenced();
                let (ran, refusal) = transaction::exec(commands, watched, session, shared).await;
                for r in &ran {
                    served(r.name, result_of(&r.reply));
                }
                match refusal {
                    Some(reply) => {
                        served("exec", result_of(&reply));
                        if header_heard {
                            reply.encode(session.protocol, out);
                        }
                    }
                    None => {
                        served("exec", "ok");
                        if header_heard {
                            Frame::encode_array_header(ran.len(), out);
                        }
                        for r in ran.into_iter().filter(|r| r.heard) {
                            r.reply.encode(session.protocol, out);
                        }
                    }
                }
                continue;
            }
            Step::Watch(keys) => {
                // Reads the versions after every write before it in the pipeline.
                drain(&mut running, session, out).await;
                footprint = Footprint::default();
                let reply = transaction::watch(keys, session, shared).await;
                served("watch", result_of(&reply));
                if !session.replies.silenced() {
                    reply.encode(session.protocol, out);
                }
                continue;
            }
        }
        let (name, command) = command::parse(&args, session, shared);
        match command {
            Command::Reply(frame) => {
                served(name, "rejected");
                let heard = !session.replies.silenced();
                running.push_back(Box::pin(async move { heard.then_some(frame) }))
            }
            Command::Session(cmd) => {
                drain(&mut running, session, out).await;
                footprint = Footprint::default();
                let reply = cmd.apply(session, shared).await;
                served(name, result_of(&reply));
                // Asked after the command ran: `CLIENT REPLY ON` answers, OFF and SKIP do not.
                if !session.replies.silenced() {
                    reply.encode(session.protocol, out);
                }
            }
            Command::Data(cmd) if alone || cmd.runs_alone() => {
                // Its access cannot name the keys it reads (SORT's patterns), or it may block:
                // it runs after every command before it and before any after it, as a session
                // command does. A lone request (no pipelining) is awaited here too: no boxed
                // future to allocate and move, nothing to order it against.
                drain(&mut running, session, out).await;
                footprint = Footprint::default();
                let reply = cmd.apply(shared.clone(), session.level).await;
                served(name, result_of(&reply));
                if !session.replies.silenced() {
                    reply.encode(session.protocol, out);
                }
            }
            Command::Data(cmd) => {
                let access = cmd.access();
                if running.len() >= MAX_CONCURRENT || footprint.conflicts(&access) {
                    drain(&mut running, session, out).await;
                    footprint = Footprint::default();
                }
                footprint.add(&access);
                let heard = !session.replies.silenced();
                let apply = cmd.apply(shared.clone(), session.level);
                let apply = async move {
                    let reply = apply.await;
                    served(name, result_of(&reply));
                    heard.then_some(reply)
                };
                // Polled inside `serve`, so within this connection's span already: store spans
                // nest under it with no span of their own to enter at every poll.
                running.push_back(Box::pin(apply));
            }
        }
    }
    drain(&mut running, session, out).await;
}

async fn drain(
    running: &mut FuturesOrdered<BoxFuture<'static, Option<Frame>>>,
    session: &Session,
    out: &mut BytesMut,
) {
    while let Some(reply) = running.next().await {
        if let Some(reply) = reply {
            reply.encode(session.protocol, out);
        }
    }
}

fn served(command: &'static str, result: &'static str) {
    events::RespCommandServed { command, result }.emit();
}

fn result_of(reply: &Frame) -> &'static str {
    match reply {
        Frame::Error(_) => "error",
        _ => "ok",
    }
}
