//! A connection's subscriptions: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, the
//! subscribed mode's restrictions and replies, and RESET. The messages themselves come from
//! the connection's [`Listener`] (the replication layer's pub/sub), which `connection.rs`
//! polls beside the socket.
//!
//! As in Redis, a RESP2 connection with a subscription accepts only the subscription commands,
//! PING (answered `["pong", msg]`), QUIT and RESET; after `HELLO 3` every command runs, and
//! messages arrive as push frames between the replies.

use super::auth;
use super::command;
use super::frame::{Frame, Protocol};
use super::transaction;
use super::{Session, Shared};
use bytes::Bytes;
use quorumd_replication::pubsub::{Delivery, Listener};

/// What the connection does with a request, as far as pub/sub is concerned.
pub enum Step {
    /// Not a pub/sub matter: run it as usual.
    Pass,
    /// Answered with these frames, counted under this command.
    Replies(&'static str, Vec<Frame>),
}

const ALLOWED: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "ping",
    "quit",
    "reset",
];

/// Commands whose name Redis shows with the subcommand (`pubsub|numsub`) in the subscribed
/// mode's refusal.
const CONTAINERS: &[&str] = &["pubsub", "client", "command", "quorumd", "config", "object"];

pub fn step(args: &[Bytes], session: &mut Session, shared: &Shared) -> Step {
    let Some(first) = args.first() else {
        return Step::Pass;
    };
    if transaction::command_named(first).is_some() {
        return refuse_transaction_word(args, session);
    }
    let word = String::from_utf8_lossy(first);
    let Some(spec) = command::spec(&word) else {
        return Step::Pass;
    };
    let name = spec.name;
    // With arguments RESET is refused by the arity check like any command (inside MULTI,
    // marking the transaction), not run.
    if name == "reset" && args.len() == 1 {
        return Step::Replies(name, vec![reset(session, shared)]);
    }
    // Inside MULTI the transaction decides (the table refuses subscribing there).
    if session.transaction.is_some() {
        return Step::Pass;
    }
    let subscribing = matches!(
        name,
        "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe"
    );
    let restricted = session.listener.is_some() && session.protocol == Protocol::Resp2;
    // QUIT runs as usual in any mode.
    let checked = restricted && name != "quit";
    if !subscribing && !checked {
        return Step::Pass;
    }
    // Redis checks arity and permission before the subscribed mode.
    if !command::arity_fits(spec.arity, args.len()) {
        return Step::Replies(name, vec![command::wrong_arity(name)]);
    }
    if let Err(refused) = auth::permit(session, shared, &spec.requirement()) {
        return Step::Replies(name, vec![refused]);
    }
    if restricted && !ALLOWED.contains(&name) {
        let shown = match args.get(1) {
            Some(sub) if CONTAINERS.contains(&name) => {
                format!("{name}|{}", String::from_utf8_lossy(sub).to_lowercase())
            }
            _ => name.to_string(),
        };
        return Step::Replies(name, vec![not_allowed(&shown)]);
    }
    if name == "ping" {
        if args.len() > 2 {
            return Step::Replies(name, vec![command::wrong_arity(name)]);
        }
        let msg = args.get(1).cloned().unwrap_or_default();
        return Step::Replies(
            name,
            vec![Frame::Array(vec![Frame::bulk("pong"), Frame::Bulk(msg)])],
        );
    }
    let targets = &args[1..];
    let frames = match name {
        "subscribe" => subscribe(session, shared, targets, false),
        "psubscribe" => subscribe(session, shared, targets, true),
        "unsubscribe" => unsubscribe(session, targets, false),
        _ => unsubscribe(session, targets, true),
    };
    Step::Replies(name, frames)
}

/// The transaction commands (`transaction.rs` runs them): in the subscribed mode they are
/// refused like the others, after their arity check. Redis answers a refused EXEC with
/// `EXECABORT`, wrapping the refusal (`transaction::refuse_exec`).
fn refuse_transaction_word(args: &[Bytes], session: &mut Session) -> Step {
    let Some(spec) = transaction::command_named(&args[0]) else {
        return Step::Pass;
    };
    if session.listener.is_none() || session.protocol != Protocol::Resp2 {
        return Step::Pass;
    }
    let name = spec.name;
    let refusal = if command::arity_fits(spec.arity, args.len()) {
        not_allowed(name)
    } else {
        command::wrong_arity(name)
    };
    let refusal = if name == "exec" {
        transaction::refuse_exec(session, refusal)
    } else {
        refusal
    };
    Step::Replies(name, vec![refusal])
}

fn not_allowed(shown: &str) -> Frame {
    Frame::error(format!(
        "ERR Can't execute '{shown}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    ))
}

fn push(kind: &str, name: Frame, count: usize) -> Frame {
    Frame::Push(vec![
        Frame::bulk(kind.to_string()),
        name,
        Frame::Integer(count as i64),
    ])
}

fn subscribe(
    session: &mut Session,
    shared: &Shared,
    names: &[Bytes],
    patterns: bool,
) -> Vec<Frame> {
    let listener = session
        .listener
        .get_or_insert_with(|| shared.pubsub.listener());
    names
        .iter()
        .map(|n| {
            if patterns {
                listener.psubscribe(n.clone());
            } else {
                listener.subscribe(n.clone());
            }
            let kind = if patterns { "psubscribe" } else { "subscribe" };
            push(kind, Frame::Bulk(n.clone()), listener.count())
        })
        .collect()
}

/// Unsubscribes from `names`, or from every channel (pattern) when there are none. Leaving
/// the last subscription leaves the subscribed mode.
fn unsubscribe(session: &mut Session, names: &[Bytes], patterns: bool) -> Vec<Frame> {
    let kind = if patterns {
        "punsubscribe"
    } else {
        "unsubscribe"
    };
    let Some(listener) = session.listener.as_mut() else {
        if names.is_empty() {
            return vec![push(kind, Frame::Null, 0)];
        }
        return names
            .iter()
            .map(|n| push(kind, Frame::Bulk(n.clone()), 0))
            .collect();
    };
    let names: Vec<Bytes> = if !names.is_empty() {
        names.to_vec()
    } else if patterns {
        listener.patterns().to_vec()
    } else {
        listener.channels().to_vec()
    };
    let mut frames: Vec<Frame> = names
        .into_iter()
        .map(|n| {
            if patterns {
                listener.punsubscribe(&n);
            } else {
                listener.unsubscribe(&n);
            }
            push(kind, Frame::Bulk(n), listener.count())
        })
        .collect();
    if frames.is_empty() {
        frames.push(push(kind, Frame::Null, listener.count()));
    }
    if listener.count() == 0 {
        session.listener = None;
    }
    frames
}

/// RESET: the connection as it was when it connected (no transaction, watches or
/// subscriptions, RESP2, no name, the default level, logged out if authentication is on).
fn reset(session: &mut Session, shared: &Shared) -> Frame {
    let fresh = Session::new(shared, session.peer);
    session.protocol = fresh.protocol;
    session.name = None;
    session.level = fresh.level;
    session.authenticated = fresh.authenticated;
    session.grant = None;
    session.transaction = None;
    session.watched.clear();
    session.listener = None;
    session.replies.reset();
    Frame::Simple("RESET".into())
}

/// The frame of one delivery: Redis's `message` or `pmessage` push.
pub fn delivery_frame(d: Delivery) -> Frame {
    match d {
        Delivery::Message { channel, payload } => Frame::Push(vec![
            Frame::bulk("message"),
            Frame::Bulk(channel),
            Frame::Bulk(payload),
        ]),
        Delivery::PMessage {
            pattern,
            channel,
            payload,
        } => Frame::Push(vec![
            Frame::bulk("pmessage"),
            Frame::Bulk(pattern),
            Frame::Bulk(channel),
            Frame::Bulk(payload),
        ]),
    }
}

/// The next deliveries for the connection's subscriptions; pends while it has none.
pub async fn next(
    listener: &mut Option<Listener>,
) -> Result<Vec<Delivery>, quorumd_replication::pubsub::Lagged> {
    match listener {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}
