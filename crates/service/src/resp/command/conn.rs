//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, CLIENT.

use super::{Command, Flag, SessionCmd, Spec, eq, int_arg, unknown_subcommand, wrong_arity};
use crate::resp::frame::{Frame, Protocol};
use crate::resp::{Session, Shared, auth};
use bytes::Bytes;

/// The Redis version quorumd reports, so clients enable the features it implements.
pub const COMPAT_VERSION: &str = "7.0.0";

const FAST: &[Flag] = &[Flag::Fast, Flag::Stale];
const NO_AUTH: &[Flag] = &[
    Flag::NoScript,
    Flag::Loading,
    Flag::Stale,
    Flag::Fast,
    Flag::NoAuth,
    Flag::AllowBusy,
];

pub static SPECS: &[Spec] = &[
    Spec::keyless("ping", -1, FAST, parse_ping),
    Spec::keyless("echo", 2, FAST, parse_echo),
    Spec::keyless("hello", -1, NO_AUTH, parse_hello),
    Spec::keyless("auth", -2, NO_AUTH, parse_auth),
    Spec::keyless("select", 2, FAST, parse_select),
    Spec::keyless("quit", -1, NO_AUTH, |_| conn(ConnCmd::Quit)),
    Spec::keyless(
        "client",
        -2,
        &[Flag::NoScript, Flag::Loading, Flag::Stale],
        parse_client,
    ),
];

pub enum ConnCmd {
    Ping(Option<Bytes>),
    Echo(Bytes),
    Hello {
        protocol: Option<Protocol>,
        auth: Option<(Bytes, Bytes)>,
        name: Option<Bytes>,
    },
    Auth {
        user: Option<Bytes>,
        password: Bytes,
    },
    Select,
    Quit,
    SetName(Bytes),
    GetName,
    Id,
    Info,
    /// `CLIENT REPLY ON|OFF|SKIP`.
    Reply(ReplyMode),
    /// Accepted and ignored: CLIENT SETINFO (client library name and version) and CLIENT
    /// NO-EVICT.
    Ignored,
    Help,
}

pub enum ReplyMode {
    On,
    Off,
    Skip,
}

fn conn(c: ConnCmd) -> Result<Command, Frame> {
    Ok(Command::Session(SessionCmd::Conn(c)))
}

fn parse_ping(args: &[Bytes]) -> Result<Command, Frame> {
    if args.len() > 2 {
        return Err(wrong_arity("ping"));
    }
    conn(ConnCmd::Ping(args.get(1).cloned()))
}

fn parse_echo(args: &[Bytes]) -> Result<Command, Frame> {
    conn(ConnCmd::Echo(args[1].clone()))
}

fn parse_hello(args: &[Bytes]) -> Result<Command, Frame> {
    let mut protocol = None;
    let mut auth = None;
    let mut name = None;
    if let Some(v) = args.get(1) {
        let v = int_arg(v)
            .map_err(|_| Frame::error("ERR Protocol version is not an integer or out of range"))?;
        protocol = Some(match v {
            2 => Protocol::Resp2,
            3 => Protocol::Resp3,
            _ => return Err(Frame::error("NOPROTO unsupported protocol version")),
        });
    }
    let mut i = 2;
    while i < args.len() {
        let left = args.len() - i - 1;
        if eq(&args[i], "auth") && left >= 2 {
            auth = Some((args[i + 1].clone(), args[i + 2].clone()));
            i += 3;
        } else if eq(&args[i], "setname") && left >= 1 {
            validate_name(&args[i + 1])?;
            name = Some(args[i + 1].clone());
            i += 2;
        } else {
            return Err(Frame::error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[i])
            )));
        }
    }
    conn(ConnCmd::Hello {
        protocol,
        auth,
        name,
    })
}

fn parse_auth(args: &[Bytes]) -> Result<Command, Frame> {
    match args.len() {
        2 => conn(ConnCmd::Auth {
            user: None,
            password: args[1].clone(),
        }),
        3 => conn(ConnCmd::Auth {
            user: Some(args[1].clone()),
            password: args[2].clone(),
        }),
        _ => Err(super::syntax_error()),
    }
}

fn parse_select(args: &[Bytes]) -> Result<Command, Frame> {
    match int_arg(&args[1])? {
        0 => conn(ConnCmd::Select),
        _ => Err(Frame::error("ERR DB index is out of range")),
    }
}

fn parse_client(args: &[Bytes]) -> Result<Command, Frame> {
    let sub = &args[1];
    let exact = |n: usize, name: &str| {
        if args.len() == n {
            Ok(())
        } else {
            Err(wrong_arity(&format!("client|{name}")))
        }
    };
    if eq(sub, "setname") {
        exact(3, "setname")?;
        validate_name(&args[2])?;
        conn(ConnCmd::SetName(args[2].clone()))
    } else if eq(sub, "getname") {
        exact(2, "getname")?;
        conn(ConnCmd::GetName)
    } else if eq(sub, "id") {
        exact(2, "id")?;
        conn(ConnCmd::Id)
    } else if eq(sub, "info") {
        exact(2, "info")?;
        conn(ConnCmd::Info)
    } else if eq(sub, "setinfo") {
        exact(4, "setinfo")?;
        conn(ConnCmd::Ignored)
    } else if eq(sub, "no-evict") {
        exact(3, "no-evict")?;
        // quorumd never evicts a client for memory (Redis's `maxmemory-clients`), so either
        // setting already holds: accepted, with Redis's syntax check.
        if eq(&args[2], "on") || eq(&args[2], "off") {
            conn(ConnCmd::Ignored)
        } else {
            Err(super::syntax_error())
        }
    } else if eq(sub, "reply") {
        exact(3, "reply")?;
        let mode = &args[2];
        if eq(mode, "on") {
            conn(ConnCmd::Reply(ReplyMode::On))
        } else if eq(mode, "off") {
            conn(ConnCmd::Reply(ReplyMode::Off))
        } else if eq(mode, "skip") {
            conn(ConnCmd::Reply(ReplyMode::Skip))
        } else {
            Err(super::syntax_error())
        }
    } else if eq(sub, "help") {
        conn(ConnCmd::Help)
    } else {
        Err(unknown_subcommand(sub, "client"))
    }
}

fn validate_name(name: &[u8]) -> Result<(), Frame> {
    if name.iter().any(|b| *b < b'!' || *b > b'~') {
        return Err(Frame::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

fn client_info(session: &Session) -> String {
    let name = session
        .name
        .as_ref()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default();
    format!(
        "id={} addr={} name={} db=0 resp={} consistency={}\n",
        session.id,
        session.peer,
        name,
        session.protocol.version(),
        session.level
    )
}

impl ConnCmd {
    pub fn apply(self, session: &mut Session, shared: &Shared) -> Frame {
        match self {
            ConnCmd::Ping(None) => Frame::Simple("PONG".into()),
            ConnCmd::Ping(Some(msg)) | ConnCmd::Echo(msg) => Frame::Bulk(msg),
            ConnCmd::Hello {
                protocol,
                auth,
                name,
            } => {
                if let Some((user, password)) = &auth
                    && let Err(e) = auth::login(session, shared, Some(user), password)
                {
                    return e;
                }
                if !session.authenticated {
                    return Frame::error(
                        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
                    );
                }
                if let Some(p) = protocol {
                    session.protocol = p;
                }
                if let Some(n) = name {
                    session.name = Some(n);
                }
                let text = |s: &str| Frame::bulk(s.to_string());
                Frame::Map(vec![
                    (text("server"), text("redis")),
                    (text("version"), text(COMPAT_VERSION)),
                    (text("proto"), Frame::Integer(session.protocol.version())),
                    (text("id"), Frame::Integer(session.id as i64)),
                    (text("mode"), text("standalone")),
                    (text("role"), text("master")),
                    (text("modules"), Frame::Array(Vec::new())),
                ])
            }
            ConnCmd::Auth { user, password } => {
                match auth::login(session, shared, user.as_deref(), &password) {
                    Ok(()) => Frame::ok(),
                    Err(e) => e,
                }
            }
            ConnCmd::Select => Frame::ok(),
            ConnCmd::Quit => {
                session.closing = true;
                Frame::ok()
            }
            ConnCmd::SetName(name) => {
                session.name = (!name.is_empty()).then_some(name);
                Frame::ok()
            }
            ConnCmd::GetName => session.name.clone().map_or(Frame::Null, Frame::Bulk),
            ConnCmd::Id => Frame::Integer(session.id as i64),
            ConnCmd::Info => Frame::Verbatim {
                format: "txt".into(),
                text: client_info(session).into(),
            },
            ConnCmd::Reply(mode) => {
                // OFF and SKIP answer nothing: `Replies` drops their +OK.
                match mode {
                    ReplyMode::On => session.replies.on(),
                    ReplyMode::Off => session.replies.off(),
                    ReplyMode::Skip => session.replies.skip(),
                }
                Frame::ok()
            }
            ConnCmd::Ignored => Frame::ok(),
            ConnCmd::Help => Frame::Array(
                [
                    "CLIENT <subcommand> [<arg> ...]. Subcommands are:",
                    "GETNAME",
                    "    Return the name of the current connection.",
                    "ID",
                    "    Return the ID of the current connection.",
                    "INFO",
                    "    Return information about the current client connection.",
                    "NO-EVICT (ON|OFF)",
                    "    Accepted: quorumd never evicts a client for memory.",
                    "REPLY (ON|OFF|SKIP)",
                    "    Control the replies sent to the current connection.",
                    "SETNAME <name>",
                    "    Assign the name <name> to the current connection.",
                ]
                .iter()
                .map(|l| Frame::Simple((*l).into()))
                .collect(),
            ),
        }
    }
}
