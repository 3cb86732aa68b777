//! `MULTI`/`EXEC`/`DISCARD`: a connection's queued commands, run in order at `EXEC`.
//!
//! What a client relies on most is that a transaction it sees refused applied nothing, so a
//! command refused while queueing (unknown, wrong arity, not permitted) marks the
//! transaction, and `EXEC` then discards all of it with `EXECABORT`, as Redis does. `EXEC`
//! runs the queued commands one after another, each through the quorum like any command; a
//! command that fails at run time does not undo the others (Redis does not roll back either).
//! Unlike Redis, another client's command may run between two of them: quorumd has no
//! isolation across keys and instances (docs/RESP.md). `WATCH` is refused rather than accepted
//! and ignored, so optimistic-locking clients fail loudly instead of losing updates.

use super::command::{self, Command};
use super::frame::Frame;
use super::{Session, Shared};
use bytes::Bytes;
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
    /// A command refused while queueing (unknown, wrong arity, not permitted): answered with
    /// its refusal and counted as rejected, as outside a transaction.
    Refused(&'static str, Frame),
    /// `EXEC` of a valid transaction: run these in order.
    Exec(Vec<Vec<Bytes>>),
}

const WATCH_REFUSED: &str = "ERR WATCH is not supported by quorumd: a transaction cannot be \
                             made conditional on keys staying unchanged";

/// Decides what `args` means given the connection's transaction state.
pub fn step(args: &[Bytes], session: &mut Session, shared: &Shared) -> Step {
    let Some(name) = args.first() else {
        return Step::Pass;
    };
    let is = |word: &str| name.eq_ignore_ascii_case(word.as_bytes());
    let Some(queued) = session.transaction.as_mut() else {
        return if is("multi") {
            match args.len() {
                1 => {
                    session.transaction = Some(Queued::default());
                    Step::Reply(Some("multi"), Frame::ok())
                }
                _ => Step::Reply(Some("multi"), command::wrong_arity("multi")),
            }
        } else if is("exec") {
            Step::Reply(Some("exec"), Frame::error("ERR EXEC without MULTI"))
        } else if is("discard") {
            Step::Reply(Some("discard"), Frame::error("ERR DISCARD without MULTI"))
        } else if is("watch") {
            Step::Reply(Some("watch"), Frame::error(WATCH_REFUSED))
        } else if is("unwatch") {
            // Nothing can be watched, so there is nothing to forget.
            Step::Reply(Some("unwatch"), Frame::ok())
        } else {
            Step::Pass
        };
    };
    if is("exec") {
        let queued = std::mem::take(queued);
        session.transaction = None;
        return if queued.aborted {
            Step::Reply(
                Some("exec"),
                Frame::error("EXECABORT Transaction discarded because of previous errors."),
            )
        } else {
            Step::Exec(queued.commands)
        };
    }
    if is("discard") {
        session.transaction = None;
        return Step::Reply(Some("discard"), Frame::ok());
    }
    if is("multi") {
        return Step::Reply(
            Some("multi"),
            Frame::error("ERR MULTI calls can not be nested"),
        );
    }
    if is("watch") {
        queued.aborted = true;
        return Step::Reply(
            Some("watch"),
            Frame::error("ERR WATCH inside MULTI is not allowed"),
        );
    }
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

/// Runs a transaction's commands in order and answers with the array of their replies.
pub async fn exec(
    commands: Vec<Vec<Bytes>>,
    session: &mut Session,
    shared: &Arc<Shared>,
) -> Vec<(&'static str, Frame)> {
    let mut replies = Vec::with_capacity(commands.len());
    for args in commands {
        let (name, command) = command::parse(&args, session, shared);
        let reply = match command {
            Command::Reply(frame) => frame,
            Command::Session(cmd) => cmd.apply(session, shared).await,
            Command::Data(cmd) => cmd.apply(shared.clone(), session.level).await,
        };
        replies.push((name, reply));
    }
    replies
}
