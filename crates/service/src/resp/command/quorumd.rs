//! `QUORUMD CONSISTENCY [one|quorum|all|linearizable]`: this connection's consistency level.

use super::{Command, Flag, SessionCmd, Spec, eq, unknown_subcommand, wrong_arity};
use crate::resp::Session;
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::quorum::Consistency;

pub static SPECS: &[Spec] = &[Spec::keyless(
    "quorumd",
    -2,
    &[Flag::Fast, Flag::Stale],
    parse_quorumd,
)];

pub enum QuorumdCmd {
    /// Set the level, or report it when `None`.
    Consistency(Option<Consistency>),
    Help,
}

fn parse_quorumd(args: &[Bytes]) -> Result<Command, Frame> {
    let sub = &args[1];
    let cmd = if eq(sub, "consistency") {
        match args.len() {
            2 => QuorumdCmd::Consistency(None),
            3 => {
                let level = String::from_utf8_lossy(&args[2])
                    .parse()
                    .map_err(|e: String| Frame::error(format!("ERR {e}")))?;
                QuorumdCmd::Consistency(Some(level))
            }
            _ => return Err(wrong_arity("quorumd|consistency")),
        }
    } else if eq(sub, "help") {
        QuorumdCmd::Help
    } else {
        return Err(unknown_subcommand(sub, "quorumd"));
    };
    Ok(Command::Session(SessionCmd::Quorumd(cmd)))
}

impl QuorumdCmd {
    pub fn apply(self, session: &mut Session) -> Frame {
        match self {
            QuorumdCmd::Consistency(None) => Frame::bulk(session.level.as_str()),
            QuorumdCmd::Consistency(Some(level)) => {
                session.level = level;
                Frame::ok()
            }
            QuorumdCmd::Help => Frame::Array(vec![
                Frame::Simple("QUORUMD <subcommand> [<arg> ...]. Subcommands are:".into()),
                Frame::Simple("CONSISTENCY [one|quorum|all|linearizable]".into()),
                Frame::Simple(
                    "    Set (or show) the consistency level of this connection's commands.".into(),
                ),
            ]),
        }
    }
}
