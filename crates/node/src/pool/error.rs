//! What went wrong on one node, as typed data: callers decide by kind (a WRONGTYPE refusal, a
//! read-only replica, a timeout), never by searching the message text.

use redis::RedisError;
use std::error::Error as _;
use std::fmt;
use std::sync::Arc;

/// Why one node did not answer an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// No connection to the node (down, or still connecting): it was not asked.
    #[error("not connected: {0}")]
    Unavailable(String),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("connection error: {0}")]
    Connection(String),
    /// The node answered with an error (WRONGTYPE, OOM, READONLY, ...): it is alive.
    #[error("server error: {0}")]
    Server(ServerError),
    /// The node answered something quorumd did not expect (e.g. corrupt metadata).
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

impl NodeError {
    /// A timeout as the limit that ran out, in the configured figure the operator knows: the
    /// `redis` crate's own connect and response timeouts say nothing of their length, so
    /// `classify` cannot.
    pub fn within(self, limit_ms: u64) -> NodeError {
        match self {
            NodeError::Timeout(_) => NodeError::Timeout(limit_ms),
            other => other,
        }
    }

    /// The kind of error reply, when the node answered with one.
    pub fn server_kind(&self) -> Option<&ServerErrorKind> {
        match self {
            NodeError::Server(e) => Some(&e.kind),
            _ => None,
        }
    }

    /// A short label for metrics and logs.
    pub fn kind_label(&self) -> &'static str {
        match self {
            NodeError::Unavailable(_) => "unavailable",
            NodeError::Timeout(_) => "timeout",
            NodeError::Connection(_) => "connection",
            NodeError::Server(_) => "server",
            NodeError::Protocol(_) => "protocol",
        }
    }
}

/// An error reply from a Redis server: its kind, read from the reply's code, and the text as
/// the server (or the client library) said it, shown to users unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub kind: ServerErrorKind,
    pub message: String,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ServerError {
    pub fn new(code: &str, message: impl Into<String>) -> ServerError {
        ServerError {
            kind: ServerErrorKind::from_code(code),
            message: message.into(),
        }
    }

    /// An error reply's raw text (`WRONGTYPE Operation against ...`): the code is its first
    /// word.
    pub fn from_reply_text(text: &str) -> ServerError {
        let code = text.split_ascii_whitespace().next().unwrap_or("");
        ServerError::new(code, text)
    }
}

/// The error reply codes quorumd acts on; every other code is kept as `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerErrorKind {
    /// The key holds a value of another type.
    WrongType,
    /// `maxmemory` reached: the node refuses writes.
    OutOfMemory,
    /// The script is not in the node's script cache.
    NoScript,
    /// The node is a read-only replica.
    ReadOnly,
    /// A script or function is running too long, or the node is loading its data set.
    Busy,
    /// The connection's ACL user may not run the command (NOPERM).
    NoPermission,
    /// The connection is not authenticated, or the password was wrong (NOAUTH, WRONGPASS).
    Auth,
    /// Any other code (`ERR`, `EXECABORT`, a module's own ...), as the server sent it.
    Other(String),
}

impl ServerErrorKind {
    /// Whether the node refuses requests like this one whatever the key (its state, not the
    /// data's): what `/v1/status` shows as `last_refusal`.
    pub fn refuses_the_node(&self) -> bool {
        matches!(
            self,
            ServerErrorKind::OutOfMemory
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::Busy
                | ServerErrorKind::NoPermission
                | ServerErrorKind::Auth
        )
    }

    pub fn from_code(code: &str) -> ServerErrorKind {
        match code.to_ascii_uppercase().as_str() {
            "WRONGTYPE" => ServerErrorKind::WrongType,
            "OOM" => ServerErrorKind::OutOfMemory,
            "NOSCRIPT" => ServerErrorKind::NoScript,
            "READONLY" => ServerErrorKind::ReadOnly,
            "BUSY" | "LOADING" => ServerErrorKind::Busy,
            "NOPERM" => ServerErrorKind::NoPermission,
            "NOAUTH" | "WRONGPASS" => ServerErrorKind::Auth,
            _ => ServerErrorKind::Other(code.to_owned()),
        }
    }
}

/// Sorts a Redis error into what it means for the quorum.
pub fn classify(e: &RedisError) -> NodeError {
    // Redis error texts never carry the connection URL, so there is nothing to mask here.
    let text = e.to_string();
    if e.kind() == redis::ErrorKind::Client && text.starts_with(super::conn::SHARD_DOWN) {
        // Refused before sending: the replica cannot answer for this slot, as when down.
        NodeError::Unavailable(e.detail().unwrap_or(&text).to_owned())
    } else if e.is_timeout() {
        // Its length is the caller's to tell (`NodeError::within`).
        NodeError::Timeout(0)
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
        // Checked before the connection errors, which it also counts as (it needs a reconnect).
        NodeError::Server(ServerError {
            kind: ServerErrorKind::Auth,
            message: text,
        })
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
        NodeError::Connection(text)
    } else if let Some(code) = e.code() {
        NodeError::Server(ServerError::new(code, text))
    } else {
        NodeError::Protocol(text)
    }
}

/// The TLS error behind a failed connection attempt, if that is what it was. The client
/// library wraps it in an I/O error behind a shared pointer, so each layer is unwrapped.
pub fn tls_cause(e: &RedisError) -> Option<&rustls::Error> {
    let mut next = e.source();
    while let Some(err) = next {
        if let Some(tls) = unwrap_tls(err) {
            return Some(tls);
        }
        next = err.source();
    }
    None
}

fn unwrap_tls<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(shared) = err.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
        return unwrap_tls(shared.as_ref());
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        return io.get_ref().and_then(|inner| unwrap_tls(inner));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error_from_wire(text: &str) -> NodeError {
        let reply = format!("-{text}\r\n");
        match redis::parse_redis_value(reply.as_bytes()) {
            Ok(redis::Value::ServerError(e)) => classify(&e.into()),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn error_replies_are_sorted_by_code() {
        let cases = [
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                ServerErrorKind::WrongType,
            ),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                ServerErrorKind::OutOfMemory,
            ),
            (
                "NOSCRIPT No matching script. Please use EVAL.",
                ServerErrorKind::NoScript,
            ),
            (
                "READONLY You can't write against a read only replica.",
                ServerErrorKind::ReadOnly,
            ),
            (
                "BUSY Redis is busy running a script.",
                ServerErrorKind::Busy,
            ),
            (
                "LOADING Redis is loading the dataset in memory",
                ServerErrorKind::Busy,
            ),
            (
                "NOPERM this user has no permissions to run the 'set' command",
                ServerErrorKind::NoPermission,
            ),
            ("NOAUTH Authentication required.", ServerErrorKind::Auth),
            (
                "WRONGPASS invalid username-password pair",
                ServerErrorKind::Auth,
            ),
            (
                "ERR unknown command 'x'",
                ServerErrorKind::Other("ERR".into()),
            ),
            (
                "MYMODULE something odd",
                ServerErrorKind::Other("MYMODULE".into()),
            ),
        ];
        for (text, kind) in cases {
            let e = server_error_from_wire(text);
            assert_eq!(e.server_kind(), Some(&kind), "{text}");
            assert_eq!(ServerError::from_reply_text(text).kind, kind, "{text}");
        }
    }

    #[test]
    fn messages_keep_the_servers_words() {
        let e = server_error_from_wire("OOM command not allowed when used memory > 'maxmemory'.");
        let shown = e.to_string();
        assert!(shown.starts_with("server error: "), "{shown}");
        assert!(shown.contains("maxmemory"), "{shown}");
        let raw = ServerError::from_reply_text("READONLY You can't write");
        assert_eq!(raw.to_string(), "READONLY You can't write");
    }

    #[test]
    fn codes_are_matched_without_case() {
        assert_eq!(
            ServerErrorKind::from_code("wrongtype"),
            ServerErrorKind::WrongType
        );
        assert_eq!(
            ServerError::from_reply_text("").kind,
            ServerErrorKind::Other(String::new())
        );
    }

    #[test]
    fn other_failures_are_not_server_errors() {
        let io: RedisError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        assert!(matches!(classify(&io), NodeError::Connection(_)));
        assert_eq!(NodeError::Timeout(5).server_kind(), None);
        assert_eq!(NodeError::Timeout(5).kind_label(), "timeout");
    }

    #[test]
    fn a_timeout_is_told_as_the_limit_that_ran_out() {
        let timed_out: RedisError = std::io::Error::from(std::io::ErrorKind::TimedOut).into();
        assert!(matches!(classify(&timed_out), NodeError::Timeout(_)));
        assert_eq!(
            classify(&timed_out).within(1000).to_string(),
            "timed out after 1000 ms"
        );
        let refused = NodeError::Connection("refused".into());
        assert_eq!(refused.clone().within(1000), refused);
    }

    #[test]
    fn tls_errors_are_found_behind_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls.clone());
        let e: RedisError = io.into();
        assert_eq!(tls_cause(&e), Some(&tls));
        let plain: RedisError = std::io::Error::from(std::io::ErrorKind::BrokenPipe).into();
        assert_eq!(tls_cause(&plain), None);
    }
}
