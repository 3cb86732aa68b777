//! `MULTI`/`EXEC`/`DISCARD`/`WATCH`/`UNWATCH`: a connection's queued commands, run in order at
//! `EXEC`, on the condition that the keys it watched kept their versions.
//!
//! What a client relies on most is that a transaction it sees refused applied nothing, so a
//! command refused while queueing (unknown, wrong arity, not permitted) marks the
//! transaction, and `EXEC` then discards all of it with `EXECABORT`, as Redis does. The
//! transaction commands' own arity is checked first, as Redis checks it: `EXEC x` discards
//! the transaction, `DISCARD x` or `MULTI x` marks it. QUIT is not queued: the connection
//! closes and the transaction ends unapplied, as in Redis 7.0. `EXEC`
//! runs the queued commands one after another, each through the quorum like any command; a
//! command that fails at run time does not undo the others (Redis does not roll back either).
//! Unlike Redis, another client's command may run between two of them: quorumd has no
//! isolation across keys and instances (docs/RESP.md).
//!
//! `WATCH` records each key's version as a quorum read sees it. `EXEC` then runs through the
//! store's `exec_watched`, which checks the versions again and conditions the transaction's
//! writes of watched keys on them (the store's `watch` module says how far that goes); a
//! changed key makes `EXEC` answer a null array, as Redis does, having run nothing.

use super::auth;
use super::command::{self, Command};
use super::frame::Frame;
use super::{Session, Shared};
use bytes::Bytes;
use quorumd_replication::store::{WatchOutcome, WatchedState, watch_broken};
use std::sync::Arc;

/// A transaction being queued on a connection.
#[derive(Debug, Clone, Default)]
pub struct Queued {
    commands: Vec<Vec<Bytes>>,
    /// A command was refused while queueing: `EXEC` must apply none.
    aborted: bool,
}

/// What the connection does with a request, as far as transactions are concerned.
pub enum Step {
    /// Not a transaction matter: run it as usual.
    Pass,
    /// Answer this, running nothing. Counted under the transaction command it answers (`None`
    /// for a queued command, which is counted when EXEC runs it).
    Reply(Option<&'static str>, Frame),
    /// A command refused while queueing (unknown, wrong arity, not permitted), or a
    /// transaction command of the wrong arity in or out of a transaction: answered with its
    /// refusal and counted as rejected, as outside a transaction.
    Refused(&'static str, Frame),
    /// `EXEC` of a valid transaction: run these in order, if the watched keys kept these
    /// versions.
    Exec(Vec<Vec<Bytes>>, Vec<(Bytes, WatchedState)>),
    /// `WATCH` of these keys: read their versions.
    Watch(Vec<Bytes>),
}

/// Watched keys, as WATCH read them, until EXEC, DISCARD or UNWATCH.
pub type Watches = Vec<(Bytes, WatchedState)>;

/// The transaction commands, which this module runs (the command table describes them).
const COMMANDS: &[&str] = &["multi", "exec", "discard", "watch", "unwatch"];

/// The transaction command `word` names, in any case, with its spec in the command table.
pub fn command_named(word: &[u8]) -> Option<&'static command::Spec> {
    let spec = command::spec(std::str::from_utf8(word).ok()?)?;
    COMMANDS.contains(&spec.name).then_some(spec)
}

/// Redis's answer to an EXEC it refuses before running it (wrong arity, the subscribed
/// mode): `execCommandAbort` wraps the refusal's text and, in or out of a transaction,
/// discards it and forgets the watches, so nothing queued can run afterwards.
pub fn refuse_exec(session: &mut Session, refusal: Frame) -> Frame {
    session.transaction = None;
    session.watched.clear();
    let Frame::Error(text) = refusal else {
        return refusal;
    };
    // Redis drops the leading `-` of the refusal; its own texts (arity, the subscribed mode)
    // come without the `ERR ` code.
    let text = text.strip_prefix("ERR ").unwrap_or(&text);
    Frame::error(format!(
        "EXECABORT Transaction discarded because of: {text}"
    ))
}

/// Decides what `args` means given the connection's transaction state.
pub fn step(args: &[Bytes], session: &mut Session, shared: &Shared) -> Step {
    let Some(name) = args.first() else {
        return Step::Pass;
    };
    let Some(spec) = command_named(name) else {
        return match session.transaction.as_mut() {
            None => Step::Pass,
            Some(_) if name.eq_ignore_ascii_case(b"quit") => {
                // Redis 7.0 runs QUIT at once rather than queue it: the connection closes
                // after its +OK, and the transaction ends with it, nothing of it applied.
                session.transaction = None;
                session.watched.clear();
                Step::Pass
            }
            Some(_) => queue(args, session, shared),
        };
    };
    let word = spec.name;
    // Redis checks the arity before anything else, in a transaction or not, and the
    // permission next: `EXEC x` must not run the transaction, and inside one any refusal
    // marks it, so EXEC then applies nothing (a client that sent `DISCARD x` believes its
    // transaction is still queued).
    let refusal = if !command::arity_fits(spec.arity, args.len()) {
        Some(command::wrong_arity(word))
    } else {
        auth::permit(session, shared, &spec.requirement()).err()
    };
    if let Some(refusal) = refusal {
        if word == "exec" {
            return Step::Refused(word, refuse_exec(session, refusal));
        }
        if let Some(queued) = session.transaction.as_mut() {
            queued.aborted = true;
        }
        return Step::Refused(word, refusal);
    }
    let Some(queued) = session.transaction.as_mut() else {
        return match word {
            "multi" => {
                session.transaction = Some(Queued::default());
                Step::Reply(Some("multi"), Frame::ok())
            }
            "exec" => Step::Reply(Some("exec"), Frame::error("ERR EXEC without MULTI")),
            "discard" => Step::Reply(Some("discard"), Frame::error("ERR DISCARD without MULTI")),
            "watch" => Step::Watch(args[1..].to_vec()),
            _ => {
                session.watched.clear();
                Step::Reply(Some("unwatch"), Frame::ok())
            }
        };
    };
    match word {
        "exec" => {
            let queued = std::mem::take(queued);
            session.transaction = None;
            // Every ending of a transaction forgets the watches, as in Redis.
            let watched = std::mem::take(&mut session.watched);
            if queued.aborted {
                Step::Reply(
                    Some("exec"),
                    Frame::error("EXECABORT Transaction discarded because of previous errors."),
                )
            } else {
                Step::Exec(queued.commands, watched)
            }
        }
        "discard" => {
            session.transaction = None;
            session.watched.clear();
            Step::Reply(Some("discard"), Frame::ok())
        }
        // Answered, not queued, and (as redis-server 7 does) without aborting the transaction.
        "multi" => Step::Reply(
            Some("multi"),
            Frame::error("ERR MULTI calls can not be nested"),
        ),
        "watch" => Step::Reply(
            Some("watch"),
            Frame::error("ERR WATCH inside MULTI is not allowed"),
        ),
        _ => {
            // UNWATCH is queued as Redis queues it; EXEC forgets the watches anyway.
            queued.commands.push(args.to_vec());
            Step::Reply(None, Frame::Simple("QUEUED".into()))
        }
    }
}

/// A command other than the transaction commands, sent inside MULTI.
fn queue(args: &[Bytes], session: &mut Session, shared: &Shared) -> Step {
    // Checked now as far as Redis checks (the command, its permission, its arity), so that a
    // refused command discards the transaction before anything of it runs. Its arguments are
    // parsed at EXEC, as Redis does: `SET k v EX x` is QUEUED, and its error is its entry in
    // EXEC's array while the other commands run.
    let checked = command::check(args, session, shared);
    let queued = session.transaction.get_or_insert_default();
    match checked {
        Err((name, refusal)) => {
            queued.aborted = true;
            Step::Refused(name, refusal)
        }
        Ok(_) => {
            queued.commands.push(args.to_vec());
            Step::Reply(None, Frame::Simple("QUEUED".into()))
        }
    }
}

/// Reads the versions of `keys` and adds them to the session's watches; a key watched
/// already keeps the version it was first watched at, so a change since then still counts.
pub async fn watch(keys: Vec<Bytes>, session: &mut Session, shared: &Arc<Shared>) -> Frame {
    let fresh: Vec<Bytes> = keys
        .into_iter()
        .filter(|k| !session.watched.iter().any(|(w, _)| w == k))
        .collect();
    let read = futures::future::try_join_all(
        fresh
            .iter()
            .map(|k| shared.store.read_watched(k, session.level)),
    )
    .await;
    match read {
        Ok(states) => {
            for (key, state) in fresh.into_iter().zip(states) {
                if !session.watched.iter().any(|(w, _)| *w == key) {
                    session.watched.push((key, state));
                }
            }
            Frame::ok()
        }
        Err(e) => command::store_error(e),
    }
}

/// Why a command of a watched transaction was not run.
const NOT_RUN: &str = "EXECABORT the command was not run: a watched key changed while the \
                       transaction ran, and the commands before this one stay applied";

/// One command EXEC ran.
pub struct Ran {
    pub name: &'static str,
    pub reply: Frame,
    /// Whether its reply is written: `CLIENT REPLY` in the transaction may silence the
    /// replies after it, as in Redis, whose EXEC array then holds fewer replies than its
    /// header counts.
    pub heard: bool,
}

/// Runs a transaction: the commands it ran, and `EXEC`'s reply when it is not the array of
/// their replies (a null array when a watched key changed before anything of the
/// transaction was written, or an error).
pub async fn exec(
    commands: Vec<Vec<Bytes>>,
    watched: Watches,
    session: &mut Session,
    shared: &Arc<Shared>,
) -> (Vec<Ran>, Option<Frame>) {
    if watched.is_empty() {
        return (
            run(commands, session, shared).await.unwrap_or_default(),
            None,
        );
    }
    // The keys the commands write: their turns are taken with the watched keys', before any
    // runs (see `exec_watched`).
    let mut writes: Vec<Vec<u8>> = Vec::new();
    for args in &commands {
        if let (_, Command::Data(cmd)) = command::parse(args, session, shared) {
            writes.extend(cmd.access().writes.iter().map(|k| k.to_vec()));
        }
    }
    let writes: Vec<&[u8]> = writes.iter().map(Vec::as_slice).collect();
    let watched: Vec<(Vec<u8>, WatchedState)> =
        watched.into_iter().map(|(k, s)| (k.to_vec(), s)).collect();
    let store = shared.store.clone();
    let level = session.level;
    let outcome = store
        .exec_watched(&watched, &writes, level, run(commands, session, shared))
        .await;
    match outcome {
        Ok(WatchOutcome::Ran(Some(ran))) => (ran, None),
        Ok(WatchOutcome::Ran(None)) | Ok(WatchOutcome::Changed) => {
            (Vec::new(), Some(Frame::NullArray))
        }
        Err(e) => (Vec::new(), Some(command::store_error(e))),
    }
}

/// Runs the commands in order. Inside a watched transaction, a write of a watched key that
/// finds it changed stops the transaction: `None` when that write was the first of the
/// transaction and wrote one key (nothing of it was written: `EXEC` answers null), otherwise
/// the replies so far and `NOT_RUN` for each command left.
async fn run(
    commands: Vec<Vec<Bytes>>,
    session: &mut Session,
    shared: &Arc<Shared>,
) -> Option<Vec<Ran>> {
    let mut replies = Vec::with_capacity(commands.len());
    let mut wrote = false;
    let mut commands = commands.into_iter();
    for args in commands.by_ref() {
        if args.len() == 1 && args[0].eq_ignore_ascii_case(b"unwatch") {
            let heard = !session.replies.silenced();
            replies.push(Ran {
                name: "unwatch",
                reply: Frame::ok(),
                heard,
            });
            continue;
        }
        let (name, command) = command::parse(&args, session, shared);
        let (reply, writes) = match command {
            Command::Reply(frame) => (frame, 0),
            Command::Session(cmd) => (cmd.apply(session, shared).await, 0),
            Command::Data(cmd) => {
                let writes = cmd.access().writes.len();
                // A blocking pop does not wait inside a transaction, as in Redis.
                let cmd = cmd.without_waiting();
                (cmd.apply(shared.clone(), session.level).await, writes)
            }
        };
        let heard = !session.replies.silenced();
        if watch_broken() {
            if !wrote && writes == 1 {
                return None;
            }
            replies.push(Ran { name, reply, heard });
            break;
        }
        wrote |= writes > 0;
        replies.push(Ran { name, reply, heard });
    }
    for args in commands {
        let name = command::parse(&args, session, shared).0;
        let heard = !session.replies.silenced();
        replies.push(Ran {
            name,
            reply: Frame::error(NOT_RUN),
            heard,
        });
    }
    Some(replies)
}
