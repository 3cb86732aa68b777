//! Server commands: COMMAND (what redis-cli and client libraries ask at startup), INFO and
//! DBSIZE.

use super::{
    Command, Flag, SessionCmd, Spec, all_specs, eq, key_specs, spec, store_error, syntax_error,
    unknown_subcommand, wrong_arity,
};
use crate::resp::frame::Frame;
use crate::resp::{Session, Shared};
use bytes::Bytes;
use quorumd_node::pool::Health;
use quorumd_replication::store::keyspace::glob_matches_nocase;
use std::fmt::Write as _;

pub static SPECS: &[Spec] = &[
    Spec::keyless("command", -1, &[Flag::Loading, Flag::Stale], parse_command),
    Spec::keyless("info", -1, &[Flag::Loading, Flag::Stale], |args| {
        server(ServerCmd::Info(args[1..].to_vec()))
    }),
    Spec::keyless("dbsize", 1, &[Flag::ReadOnly, Flag::Fast], |_| {
        server(ServerCmd::DbSize)
    }),
    Spec::keyless("time", 1, &[Flag::Loading, Flag::Stale, Flag::Fast], |_| {
        server(ServerCmd::Time)
    }),
    Spec::keyless("eval", -3, &[Flag::NoScript], refuse_scripts),
    Spec::keyless("evalsha", -3, &[Flag::NoScript], refuse_scripts),
    Spec::keyless("eval_ro", -3, &[Flag::NoScript], refuse_scripts),
    Spec::keyless("evalsha_ro", -3, &[Flag::NoScript], refuse_scripts),
    Spec::keyless("fcall", -3, &[Flag::NoScript], refuse_scripts),
    Spec::keyless("fcall_ro", -3, &[Flag::NoScript], refuse_scripts),
    Spec::keyless("script", -2, &[Flag::NoScript], refuse_scripts),
    Spec::keyless("function", -2, &[Flag::NoScript], refuse_scripts),
];

/// Scripts and functions are refused, saying why: each node would run them on its own, outside
/// the quorum, so what they wrote would carry no version, could differ between nodes, and would
/// be taken for a change made outside quorumd.
fn refuse_scripts(args: &[Bytes]) -> Result<Command, Frame> {
    Err(Frame::error(format!(
        "ERR {} is not supported by quorumd: a script or function would run on each node separately, outside the quorum, so its writes would not be versioned or kept in sync; send the commands themselves (MULTI/EXEC for a group)",
        String::from_utf8_lossy(&args[0]).to_uppercase()
    )))
}

/// `COMMAND LIST FILTERBY`'s filters that quorumd applies (ACLCAT is refused at parse time:
/// the table has no ACL categories).
pub enum ListFilter {
    /// Names matching a glob, ignoring case, as Redis matches them.
    Pattern(Bytes),
    /// Commands of a module: quorumd loads none, so none.
    Module,
}

pub enum ServerCmd {
    /// The whole table (`COMMAND`), or `COMMAND INFO name...`.
    Table(Option<Vec<Bytes>>),
    Count,
    /// `COMMAND LIST`, all names or those a `FILTERBY` keeps.
    List(Option<ListFilter>),
    /// `COMMAND GETKEYS` (`true`: `GETKEYSANDFLAGS`) of a command and its arguments.
    GetKeys(Vec<Bytes>, bool),
    /// `COMMAND DOCS`: quorumd ships no documentation strings, so the answer is an empty map.
    Docs,
    Help,
    Info(Vec<Bytes>),
    DbSize,
    /// This instance's clock: quorumd answers for itself, as a server does.
    Time,
}

fn server(c: ServerCmd) -> Result<Command, Frame> {
    Ok(Command::Session(SessionCmd::Server(c)))
}

fn parse_command(args: &[Bytes]) -> Result<Command, Frame> {
    let Some(sub) = args.get(1) else {
        return server(ServerCmd::Table(None));
    };
    if eq(sub, "count") && args.len() == 2 {
        server(ServerCmd::Count)
    } else if eq(sub, "list") {
        parse_list(&args[2..])
    } else if eq(sub, "info") {
        server(ServerCmd::Table(Some(args[2..].to_vec())))
    } else if eq(sub, "getkeys") || eq(sub, "getkeysandflags") {
        let with_flags = eq(sub, "getkeysandflags");
        if args.len() < 4 {
            let name = if with_flags {
                "getkeysandflags"
            } else {
                "getkeys"
            };
            return Err(wrong_arity(&format!("command|{name}")));
        }
        server(ServerCmd::GetKeys(args[2..].to_vec(), with_flags))
    } else if eq(sub, "docs") {
        server(ServerCmd::Docs)
    } else if eq(sub, "help") {
        server(ServerCmd::Help)
    } else {
        Err(unknown_subcommand(sub, "command"))
    }
}

/// `COMMAND LIST [FILTERBY MODULE name|ACLCAT category|PATTERN pattern]`, with Redis 7.0's
/// syntax errors: anything but nothing or exactly one filter.
fn parse_list(rest: &[Bytes]) -> Result<Command, Frame> {
    let filter = match rest {
        [] => None,
        [by, kind, arg] if eq(by, "filterby") => {
            if eq(kind, "pattern") {
                Some(ListFilter::Pattern(arg.clone()))
            } else if eq(kind, "module") {
                Some(ListFilter::Module)
            } else if eq(kind, "aclcat") {
                // An empty list would claim the category holds no command.
                return Err(Frame::error(
                    "ERR COMMAND LIST FILTERBY ACLCAT is not supported by quorumd: its command \
                     table has no ACL categories",
                ));
            } else {
                return Err(syntax_error());
            }
        }
        _ => return Err(syntax_error()),
    };
    server(ServerCmd::List(filter))
}

fn describe(s: &Spec) -> Frame {
    let words = |w: &[Flag]| Frame::Set(w.iter().map(|f| Frame::Simple(f.name().into())).collect());
    Frame::Array(vec![
        Frame::bulk(s.name),
        Frame::Integer(s.arity),
        words(s.flags),
        Frame::Integer(s.first_key),
        Frame::Integer(s.last_key),
        Frame::Integer(s.step),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
    ])
}

impl ServerCmd {
    pub async fn apply(self, session: &Session, shared: &Shared) -> Frame {
        match self {
            ServerCmd::Table(None) => Frame::Array(all_specs().map(describe).collect()),
            ServerCmd::Table(Some(names)) => Frame::Array(
                names
                    .iter()
                    .map(|n| spec(&String::from_utf8_lossy(n)).map_or(Frame::Null, describe))
                    .collect(),
            ),
            ServerCmd::Count => Frame::Integer(all_specs().count() as i64),
            ServerCmd::List(filter) => Frame::Array(
                all_specs()
                    .filter(|s| match &filter {
                        None => true,
                        Some(ListFilter::Pattern(p)) => glob_matches_nocase(p, s.name.as_bytes()),
                        Some(ListFilter::Module) => false,
                    })
                    .map(|s| Frame::bulk(s.name))
                    .collect(),
            ),
            ServerCmd::GetKeys(args, with_flags) => key_specs::reply(&args, with_flags),
            ServerCmd::Docs => Frame::Map(Vec::new()),
            ServerCmd::Help => Frame::Array(
                [
                    "COMMAND <subcommand> [<arg> ...]. Subcommands are:",
                    "(no subcommand)",
                    "    Return details about all commands.",
                    "COUNT",
                    "    Return the total number of commands.",
                    "DOCS",
                    "    Return documentation (none in quorumd).",
                    "GETKEYS <full-command>",
                    "    Return the keys from a full Redis command.",
                    "GETKEYSANDFLAGS <full-command>",
                    "    Return the keys and the access flags from a full Redis command.",
                    "INFO <command-name> [<command-name> ...]",
                    "    Return details about the given commands.",
                    "LIST [FILTERBY (MODULE <module-name>|PATTERN <pattern>)]",
                    "    Return the names of all commands, or of those the filter keeps.",
                ]
                .iter()
                .map(|l| Frame::Simple((*l).into()))
                .collect(),
            ),
            ServerCmd::Info(sections) => Frame::Verbatim {
                format: "txt".into(),
                text: info(&sections, session, shared).await.into(),
            },
            ServerCmd::Time => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                Frame::Array(vec![
                    Frame::bulk(now.as_secs().to_string()),
                    Frame::bulk(now.subsec_micros().to_string()),
                ])
            }
            ServerCmd::DbSize => match shared.key_count.get(&shared.store).await {
                Ok(n) => Frame::Integer(n as i64),
                Err(e) => store_error(e),
            },
        }
    }
}

/// The INFO text for the requested sections (all of them when none is named).
async fn info(sections: &[Bytes], session: &Session, shared: &Shared) -> String {
    let wants = |name: &str| {
        sections.is_empty()
            || sections
                .iter()
                .any(|s| eq(s, name) || eq(s, "all") || eq(s, "everything") || eq(s, "default"))
    };
    let mut out = String::new();
    if wants("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:{}\r\nquorumd_version:{}\r\nredis_mode:standalone\r\n\
             instance:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\
             default_consistency:{}\r\n\r\n",
            super::conn::COMPAT_VERSION,
            env!("CARGO_PKG_VERSION"),
            shared.instance,
            std::process::id(),
            shared.listen.port(),
            shared.started.elapsed().as_secs(),
            shared.default_level,
        );
    }
    if wants("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\ncommands_in_flight:{}\r\nmaxclients:{}\r\n\
             client_id:{}\r\nclient_consistency:{}\r\n\r\n",
            shared.connected(),
            shared.in_flight(),
            shared.max_connections,
            session.id,
            session.level,
        );
    }
    if wants("nodes") || sections.iter().any(|s| eq(s, "replication")) {
        out.push_str(&nodes_section(shared));
    }
    if wants("keyspace") {
        out.push_str("# Keyspace\r\n");
        if let Ok(n) = shared.key_count.get(&shared.store).await {
            let _ = write!(out, "db0:keys={n},expires=0,avg_ttl=0\r\n");
        }
        out.push_str("\r\n");
    }
    out
}

/// Like Redis's replication section, but about the nodes quorumd keeps in sync.
fn nodes_section(shared: &Shared) -> String {
    let pool = shared.store.pool();
    let statuses = pool.status();
    let sizes = shared.store.settings().quorum;
    let up = statuses.iter().filter(|s| s.health == Health::Up).count();
    let mut out = format!(
        "# Nodes\r\nrole:master\r\nnodes:{}\r\nnodes_up:{up}\r\nread_quorum:{}\r\nwrite_quorum:{}\r\n",
        statuses.len(),
        sizes.read,
        sizes.write,
    );
    for s in &statuses {
        let _ = write!(
            out,
            "node{}:address={},health={},latency_ms={},run_id={},last_error={}\r\n",
            s.id,
            info_value(&s.address),
            s.health,
            s.latency_ms.map_or("-".into(), |l| format!("{l:.3}")),
            info_value(s.run_id.as_deref().unwrap_or("-")),
            info_value(s.last_error.as_deref().unwrap_or("-")),
        );
    }
    out.push_str("\r\n");
    out
}

/// A value of one `key=value,...` line of `INFO nodes`: a comma or a line break would split it
/// (a cluster replica's address lists its seeds, its run id its masters').
fn info_value(v: &str) -> String {
    v.replace([',', '\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::info_value;

    #[test]
    fn an_info_value_never_splits_its_line() {
        let seeds = "cluster redis://10.0.0.1:7000,redis://10.0.0.2:7000";
        assert!(!info_value(seeds).contains(','));
        assert_eq!(info_value("a\r\nb,c"), "a  b c");
    }
}
