//! MULTI, EXEC, DISCARD, WATCH and UNWATCH as the command table describes them (for COMMAND,
//! the arity checks and what they require). The connection runs them itself
//! (`resp::transaction`), before it looks a command up for parsing, so their parser is never
//! reached.

use super::{Command, Flag, Spec};
use crate::resp::frame::Frame;
use bytes::Bytes;

/// Redis 7.0's flags for MULTI, DISCARD, WATCH and UNWATCH.
const FAST: &[Flag] = &[
    Flag::NoScript,
    Flag::Loading,
    Flag::Stale,
    Flag::Fast,
    Flag::AllowBusy,
];

pub static SPECS: &[Spec] = &[
    Spec::keyless("multi", 1, FAST, run_by_the_connection),
    Spec::keyless(
        "exec",
        1,
        &[
            Flag::NoScript,
            Flag::Loading,
            Flag::Stale,
            Flag::SkipSlowlog,
        ],
        run_by_the_connection,
    ),
    Spec::keyless("discard", 1, FAST, run_by_the_connection),
    // Redis's (1, -1, 1): every argument is a key, read only for its version.
    Spec::keyed("watch", -2, FAST, (1, -1, 1), run_by_the_connection),
    Spec::keyless("unwatch", 1, FAST, run_by_the_connection),
];

fn run_by_the_connection(args: &[Bytes]) -> Result<Command, Frame> {
    Err(Frame::error(format!(
        "ERR {} is run by the connection, not parsed",
        String::from_utf8_lossy(&args[0]).to_uppercase()
    )))
}
