//! OBJECT, MEMORY USAGE and CONFIG GET: questions only the nodes can answer. OBJECT and
//! MEMORY USAGE give the answer of one node that holds the key's current version
//! (`VersionedStore::inspect`); CONFIG GET the value most nodes hold for each parameter
//! (`VersionedStore::config_get`). quorumd changes no node's settings: CONFIG SET, REWRITE
//! and RESETSTAT are refused, saying why, as are the MEMORY subcommands about a whole server.

use super::{Access, Command, DataCmd, Flag, Spec, eq, int_arg, store_error, syntax_error};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::quorum::Consistency;
use quorumd_node::calls::keyspace::{Inspected, Inspection};
use quorumd_replication::store::{StoreError, VersionedStore};

pub static SPECS: &[Spec] = &[
    // Container commands (their subcommands have their own arities), as in Redis's table.
    Spec::keyless("object", -2, &[Flag::ReadOnly], parse_object),
    Spec::keyless("memory", -2, &[Flag::ReadOnly], parse_memory),
    Spec::keyless("config", -2, &[Flag::ReadOnly], parse_config),
];

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

const MEMORY_HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
];

const CONFIG_HELP: &[&str] = &[
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Prints this help.",
];

fn help(lines: &[&str]) -> Frame {
    Frame::Array(lines.iter().map(|l| Frame::Simple(l.to_string())).collect())
}

/// Redis's arity check of a subcommand (`n` exactly, `-n` at least), in its words.
fn arity(a: &[Bytes], command: &str, sub: &str, n: i64) -> Result<(), Frame> {
    let len = a.len() as i64;
    if (n >= 0 && len != n) || (n < 0 && len < -n) {
        return Err(Frame::error(format!(
            "ERR wrong number of arguments for '{command}|{sub}' command"
        )));
    }
    Ok(())
}

fn reply(frame: Frame) -> Result<Command, Frame> {
    Ok(Command::Reply(frame))
}

fn inspect(key: &Bytes, what: Inspection) -> Result<Command, Frame> {
    Ok(Command::Data(DataCmd::Inspect(InspectCmd::Key(
        key.clone(),
        what,
    ))))
}

fn parse_object(a: &[Bytes]) -> Result<Command, Frame> {
    let sub = &a[1];
    let what = if eq(sub, "help") {
        arity(a, "object", "help", 2)?;
        return reply(help(OBJECT_HELP));
    } else if eq(sub, "encoding") {
        (Inspection::Encoding, "encoding")
    } else if eq(sub, "refcount") {
        (Inspection::RefCount, "refcount")
    } else if eq(sub, "idletime") {
        (Inspection::IdleTime, "idletime")
    } else if eq(sub, "freq") {
        (Inspection::Freq, "freq")
    } else {
        return Err(super::unknown_subcommand(sub, "object"));
    };
    arity(a, "object", what.1, 3)?;
    inspect(&a[2], what.0)
}

fn parse_memory(a: &[Bytes]) -> Result<Command, Frame> {
    let sub = &a[1];
    if eq(sub, "help") {
        arity(a, "memory", "help", 2)?;
        return reply(help(MEMORY_HELP));
    }
    if eq(sub, "usage") {
        arity(a, "memory", "usage", -3)?;
        // Redis checks the options before it looks the key up.
        let mut samples = None;
        let mut j = 3;
        while j < a.len() {
            if eq(&a[j], "samples") && j + 1 < a.len() {
                let n = int_arg(&a[j + 1])?;
                if n < 0 {
                    return Err(syntax_error());
                }
                samples = Some(n);
                j += 2;
            } else {
                return Err(syntax_error());
            }
        }
        return inspect(&a[2], Inspection::MemoryUsage { samples });
    }
    for whole in ["doctor", "stats", "malloc-stats", "purge"] {
        if eq(sub, whole) {
            arity(a, "memory", whole, 2)?;
            return Err(Frame::error(format!(
                "ERR MEMORY {} is not served: each node has its own memory, ask the nodes \
                 (quorumd's own is in its metrics); MEMORY USAGE answers for a key",
                whole.to_ascii_uppercase()
            )));
        }
    }
    Err(super::unknown_subcommand(sub, "memory"))
}

fn parse_config(a: &[Bytes]) -> Result<Command, Frame> {
    let sub = &a[1];
    if eq(sub, "help") {
        arity(a, "config", "help", 2)?;
        return reply(help(CONFIG_HELP));
    }
    if eq(sub, "get") {
        arity(a, "config", "get", -3)?;
        let patterns = a[2..].iter().map(|p| p.to_vec()).collect();
        return Ok(Command::Data(DataCmd::Inspect(InspectCmd::ConfigGet(
            patterns,
        ))));
    }
    for (refused, n) in [("set", -4), ("rewrite", 2), ("resetstat", 2)] {
        if eq(sub, refused) {
            arity(a, "config", refused, n)?;
            return Err(Frame::error(format!(
                "ERR CONFIG {} is refused: quorumd does not change its nodes' configuration; \
                 set it on each node",
                refused.to_ascii_uppercase()
            )));
        }
    }
    Err(super::unknown_subcommand(sub, "config"))
}

pub enum InspectCmd {
    /// OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ or MEMORY USAGE of a key.
    Key(Bytes, Inspection),
    /// CONFIG GET's patterns.
    ConfigGet(Vec<Vec<u8>>),
}

impl InspectCmd {
    pub fn access(&self) -> Access<'_> {
        Access {
            reads: match self {
                InspectCmd::Key(k, _) => vec![&k[..]],
                InspectCmd::ConfigGet(_) => vec![],
            },
            writes: vec![],
        }
    }

    pub async fn apply(self, store: &VersionedStore, level: Consistency) -> Frame {
        match self {
            InspectCmd::Key(key, what) => match store.inspect(&key, level, what).await {
                Ok(Inspected::Nil) => Frame::Null,
                Ok(Inspected::Integer(n)) => Frame::Integer(n),
                Ok(Inspected::Text(t)) => Frame::bulk(t),
                Ok(Inspected::Refused(text)) => Frame::error(text),
                Err(StoreError::ReservedKey { prefix }) => Frame::error(format!(
                    "ERR keys under '{prefix}' are quorumd's own: they cannot be inspected"
                )),
                Err(e) => store_error(e),
            },
            InspectCmd::ConfigGet(patterns) => match store.config_get(&patterns).await {
                // RESP2 writes a map as Redis's flat array of names and values.
                Ok(entries) => Frame::Map(
                    entries
                        .into_iter()
                        .map(|(n, v)| (Frame::bulk(n), Frame::bulk(v)))
                        .collect(),
                ),
                Err(e) => store_error(e),
            },
        }
    }
}
