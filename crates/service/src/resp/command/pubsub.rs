//! PUBLISH and PUBSUB, on the replication layer's pub/sub (`quorumd_replication::pubsub`), and
//! the table entries of SUBSCRIBE and its kin, which the connection runs itself
//! (`resp/pubsub.rs`): they change what the connection is, and answer with one push per
//! channel. Only inside MULTI does their parse here run, and it refuses them.

use super::{Command, Flag, SessionCmd, Spec, eq, unknown_subcommand};
use crate::resp::frame::Frame;
use crate::resp::{Session, Shared};
use bytes::Bytes;
use quorumd_replication::pubsub::PubSubError;

const SUBSCRIBING: &[Flag] = &[Flag::NoScript, Flag::Loading, Flag::Stale];

pub static SPECS: &[Spec] = &[
    Spec::keyless(
        "publish",
        3,
        &[Flag::Write, Flag::Loading, Flag::Stale, Flag::Fast],
        |a| {
            Ok(Command::Session(SessionCmd::PubSub(PubSubCmd::Publish {
                channel: a[1].clone(),
                message: a[2].clone(),
            })))
        },
    ),
    Spec::keyless("pubsub", -2, &[Flag::Loading, Flag::Stale], parse_pubsub),
    Spec::keyless("subscribe", -2, SUBSCRIBING, in_multi),
    Spec::keyless("unsubscribe", -1, SUBSCRIBING, in_multi),
    Spec::keyless("psubscribe", -2, SUBSCRIBING, in_multi),
    Spec::keyless("punsubscribe", -1, SUBSCRIBING, in_multi),
    Spec::keyless(
        "reset",
        1,
        &[
            Flag::NoScript,
            Flag::Loading,
            Flag::Stale,
            Flag::Fast,
            Flag::NoAuth,
        ],
        |_| Err(Frame::error("ERR RESET is run by the connection")),
    ),
];

/// Whether `name` is one of the commands the connection runs itself, outside MULTI, and a
/// transaction refuses while queueing (`in_multi`).
pub fn refused_in_multi(name: &str) -> bool {
    matches!(
        name,
        "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe"
    )
}

/// The connection runs these outside MULTI; queued in a transaction, EXEC would have to turn
/// the connection into a subscriber halfway through its replies.
fn in_multi(args: &[Bytes]) -> Result<Command, Frame> {
    Err(Frame::error(format!(
        "ERR {} inside MULTI is not supported by quorumd",
        String::from_utf8_lossy(&args[0]).to_uppercase()
    )))
}

pub enum PubSubCmd {
    Publish { channel: Bytes, message: Bytes },
    Channels(Option<Bytes>),
    NumSub(Vec<Bytes>),
    NumPat,
    Help,
}

fn parse_pubsub(args: &[Bytes]) -> Result<Command, Frame> {
    let sub = &args[1];
    let cmd = if eq(sub, "channels") && args.len() <= 3 {
        PubSubCmd::Channels(args.get(2).cloned())
    } else if eq(sub, "numsub") {
        PubSubCmd::NumSub(args[2..].to_vec())
    } else if eq(sub, "numpat") && args.len() == 2 {
        PubSubCmd::NumPat
    } else if eq(sub, "help") && args.len() == 2 {
        PubSubCmd::Help
    } else {
        return Err(unknown_subcommand(sub, "pubsub"));
    };
    Ok(Command::Session(SessionCmd::PubSub(cmd)))
}

impl PubSubCmd {
    /// This instance's view: PUBLISH answers how many of this instance's subscriptions match,
    /// and PUBSUB counts this instance's subscribers, as a Redis Cluster node counts its own.
    pub async fn apply(self, _session: &Session, shared: &Shared) -> Frame {
        let hub = &shared.pubsub;
        match self {
            PubSubCmd::Publish { channel, message } => {
                match hub.publish(&channel, &message).await {
                    Ok(n) => Frame::Integer(n as i64),
                    Err(PubSubError::NoNode(q)) => Frame::error(format!("QUORUM {q}")),
                    Err(e @ PubSubError::Timeout { .. }) => Frame::error(format!("TIMEOUT {e}")),
                }
            }
            PubSubCmd::Channels(pattern) => Frame::Array(
                hub.channels(pattern.as_deref())
                    .into_iter()
                    .map(Frame::Bulk)
                    .collect(),
            ),
            PubSubCmd::NumSub(channels) => Frame::Array(
                channels
                    .into_iter()
                    .flat_map(|c| {
                        let n = hub.numsub(&c) as i64;
                        [Frame::Bulk(c), Frame::Integer(n)]
                    })
                    .collect(),
            ),
            PubSubCmd::NumPat => Frame::Integer(hub.numpat() as i64),
            PubSubCmd::Help => Frame::Array(
                [
                    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "CHANNELS [<pattern>]",
                    "    Return the currently active channels matching a <pattern> (default: '*').",
                    "NUMPAT",
                    "    Return number of subscriptions to patterns.",
                    "NUMSUB [<channel> ...]",
                    "    Return the number of subscribers for the specified channels, excluding",
                    "    pattern subscriptions(default: no channels).",
                    "(quorumd: this instance's subscribers only)",
                ]
                .into_iter()
                .map(|l| Frame::Simple(l.into()))
                .collect(),
            ),
        }
    }
}
