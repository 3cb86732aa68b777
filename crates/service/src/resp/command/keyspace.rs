//! Keyspace commands over the quorum: SCAN, KEYS and RANDOMKEY read every bucket's metadata
//! from a read quorum (`VersionedStore::scan_step`); RENAME, RENAMENX and COPY are versioned
//! writes (`VersionedStore::transfer`); FLUSHDB and FLUSHALL tombstone every live key
//! (`VersionedStore::flush`), only when `resp.allow_flush` is on.
//!
//! SCAN, KEYS, RANDOMKEY and the flushes name no key, so they run as session commands: after
//! every command pipelined before them has been answered, so `SET k v` then `SCAN 0` sees `k`.

use super::{
    Access, Command, Flag, SessionCmd, Spec, data, eq, int_arg, is_wrong_type, store_error,
    syntax_error, wrong_type,
};
use crate::resp::frame::Frame;
use crate::resp::{Session, Shared};
use bytes::Bytes;
use quorumd_core::content::ValueType;
use quorumd_core::quorum::Consistency;
use quorumd_replication::store::keyspace::{
    LiveKey, TransferError, TransferMode, Transferred, glob_matches,
};
use quorumd_replication::store::{Transfer, TypedChange, TypedFound, TypedWanted, VersionedStore};

/// The configuration switch that allows FLUSHDB and FLUSHALL.
pub const FLUSH_SWITCH: &str = "resp.allow_flush";

/// SCAN's COUNT when none is given, as Redis.
const DEFAULT_COUNT: usize = 10;

pub static SPECS: &[Spec] = &[
    Spec::keyless("scan", -2, &[Flag::ReadOnly], parse_scan),
    Spec::keyless("keys", 2, &[Flag::ReadOnly], |a| {
        session(KeyspaceCmd::Keys(a[1].clone()))
    }),
    Spec::keyless("randomkey", 1, &[Flag::ReadOnly], |_| {
        session(KeyspaceCmd::RandomKey)
    }),
    Spec::keyless("flushdb", -1, &[Flag::Write], |a| parse_flush(a, "FLUSHDB")),
    Spec::keyless("flushall", -1, &[Flag::Write], |a| {
        parse_flush(a, "FLUSHALL")
    }),
    Spec::keyed("rename", 3, &[Flag::Write], (1, 2, 1), |a| {
        transfer(a, TransferMode::Rename { nx: false })
    }),
    Spec::keyed("renamenx", 3, &[Flag::Write, Flag::Fast], (1, 2, 1), |a| {
        transfer(a, TransferMode::Rename { nx: true })
    }),
    Spec::keyed(
        "copy",
        -3,
        &[Flag::Write, Flag::DenyOom],
        (1, 2, 1),
        parse_copy,
    ),
];

/// The keyless keyspace commands (run in order with the session).
pub enum KeyspaceCmd {
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
        ty: Option<Bytes>,
    },
    Keys(Bytes),
    RandomKey,
    /// FLUSHDB or FLUSHALL (the name, for the error when flushing is off).
    Flush(&'static str),
}

/// RENAME, RENAMENX, COPY.
pub struct TransferCmd {
    src: Bytes,
    dst: Bytes,
    mode: TransferMode,
}

fn session(c: KeyspaceCmd) -> Result<Command, Frame> {
    Ok(Command::Session(SessionCmd::Keyspace(c)))
}

fn transfer(args: &[Bytes], mode: TransferMode) -> Result<Command, Frame> {
    data(TransferCmd {
        src: args[1].clone(),
        dst: args[2].clone(),
        mode,
    })
}

/// A cursor as Redis reads it (`strtoul`): an optional sign, digits, nothing else; a negative
/// one wraps around.
pub(super) fn parse_cursor(arg: &[u8]) -> Result<u64, Frame> {
    let invalid = || Frame::error("ERR invalid cursor");
    let s = std::str::from_utf8(arg).map_err(|_| invalid())?;
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    Ok(if negative { n.wrapping_neg() } else { n })
}

fn parse_scan(args: &[Bytes]) -> Result<Command, Frame> {
    let cursor = parse_cursor(&args[1])?;
    let (mut pattern, mut count, mut ty) = (None, DEFAULT_COUNT, None);
    let mut i = 2;
    while i < args.len() {
        let (opt, value) = (&args[i], args.get(i + 1));
        let Some(value) = value else {
            return Err(syntax_error());
        };
        if eq(opt, "match") {
            pattern = Some(value.clone());
        } else if eq(opt, "count") {
            let n = int_arg(value)?;
            if n < 1 {
                return Err(syntax_error());
            }
            count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if eq(opt, "type") {
            ty = Some(value.clone());
        } else {
            return Err(syntax_error());
        }
        i += 2;
    }
    session(KeyspaceCmd::Scan {
        cursor,
        pattern,
        count,
        ty,
    })
}

fn parse_flush(args: &[Bytes], name: &'static str) -> Result<Command, Frame> {
    match args {
        [_] => {}
        [_, mode] if eq(mode, "async") || eq(mode, "sync") => {}
        _ => return Err(syntax_error()),
    }
    session(KeyspaceCmd::Flush(name))
}

fn parse_copy(args: &[Bytes]) -> Result<Command, Frame> {
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        if eq(&args[i], "replace") {
            replace = true;
            i += 1;
        } else if eq(&args[i], "db") && i + 1 < args.len() {
            if int_arg(&args[i + 1])? != 0 {
                return Err(Frame::error(
                    "ERR DB index is out of range: quorumd serves database 0 only",
                ));
            }
            i += 2;
        } else {
            return Err(syntax_error());
        }
    }
    if args[1] == args[2] {
        return Err(Frame::error(
            "ERR source and destination objects are the same",
        ));
    }
    transfer(args, TransferMode::Copy { replace })
}

/// The name TYPE and SCAN's TYPE option use for a value type.
pub fn value_type_name(ty: ValueType) -> &'static str {
    match ty {
        ValueType::String => "string",
        ValueType::Hash => "hash",
        ValueType::List => "list",
        ValueType::Set => "set",
        ValueType::SortedSet => "zset",
        ValueType::Stream | ValueType::StreamEntries => "stream",
        // A module type's name is not recorded in the metadata.
        ValueType::Other => "module",
    }
}

fn keys_reply(keys: impl IntoIterator<Item = LiveKey>) -> Frame {
    Frame::Array(keys.into_iter().map(|k| Frame::bulk(k.key)).collect())
}

impl KeyspaceCmd {
    pub async fn apply(self, session: &Session, shared: &Shared) -> Frame {
        let (store, level) = (&*shared.store, session.level);
        match self {
            KeyspaceCmd::Scan {
                cursor,
                pattern,
                count,
                ty,
            } => match store.scan_step(cursor, count, level).await {
                Ok(step) => {
                    let shown = step.keys.into_iter().filter(|k| {
                        pattern.as_ref().is_none_or(|p| glob_matches(p, &k.key))
                            && ty.as_ref().is_none_or(|t| eq(t, value_type_name(k.ty)))
                    });
                    Frame::Array(vec![Frame::bulk(step.next.to_string()), keys_reply(shown)])
                }
                Err(e) => store_error(e),
            },
            KeyspaceCmd::Keys(pattern) => match store.all_keys(level).await {
                Ok(keys) => keys_reply(keys.into_iter().filter(|k| glob_matches(&pattern, &k.key))),
                Err(e) => store_error(e),
            },
            KeyspaceCmd::RandomKey => match store.random_key(level).await {
                Ok(Some(k)) => Frame::bulk(k.key),
                Ok(None) => Frame::Null,
                Err(e) => store_error(e),
            },
            KeyspaceCmd::Flush(name) => {
                if !shared.allow_flush {
                    return Frame::error(format!(
                        "ERR {name} is disabled: set {FLUSH_SWITCH} = true in quorumd's configuration to allow it (it deletes every key on every node)"
                    ));
                }
                flush(store, level, name).await
            }
        }
    }
}

async fn flush(store: &VersionedStore, level: Consistency, name: &str) -> Frame {
    match store.flush(level).await {
        Ok(done) if done.crdt_kept == 0 => Frame::Simple("OK".into()),
        Ok(done) => Frame::error(format!(
            "ERR {name} deleted {} keys but left {} counter, hash and set keys: quorumd cannot delete a CRDT key",
            done.deleted, done.crdt_kept
        )),
        Err(e) => store_error(e),
    }
}

impl TransferCmd {
    pub fn access(&self) -> Access<'_> {
        let writes = match self.mode {
            TransferMode::Rename { .. } => vec![&self.src[..], &self.dst[..]],
            TransferMode::Copy { .. } => vec![&self.dst[..]],
        };
        Access {
            reads: vec![&self.src[..]],
            writes,
        }
    }

    pub async fn apply(self, store: &VersionedStore, level: Consistency) -> Frame {
        let done = match store.transfer(&self.src, &self.dst, self.mode, level).await {
            // A list or sorted set at either end: the string transfer cannot read or replace
            // it, the typed one can.
            Err(TransferError::Store(e)) if is_wrong_type(&e) => {
                match self.transfer_typed(store, level).await {
                    Ok(done) => Ok(done),
                    Err(refusal) => return refusal,
                }
            }
            done => done,
        };
        let rename = matches!(self.mode, TransferMode::Rename { nx: false });
        match done {
            Ok(Transferred::NoSuchKey) if matches!(self.mode, TransferMode::Copy { .. }) => {
                Frame::Integer(0)
            }
            Ok(Transferred::NoSuchKey) => Frame::error("ERR no such key"),
            Ok(Transferred::Done) if rename => Frame::Simple("OK".into()),
            Ok(Transferred::Done) => Frame::Integer(1),
            // RENAME replaces the destination, so it never finds it in the way.
            Ok(Transferred::DestinationExists) if rename => Frame::Simple("OK".into()),
            Ok(Transferred::DestinationExists) => Frame::Integer(0),
            Err(TransferError::Store(e)) => store_error(e),
            Err(e) => Frame::error(format!("ERR {e}")),
        }
    }
}

impl TransferCmd {
    /// RENAME, RENAMENX and COPY through typed reads and writes (lists, sorted sets, and a
    /// string moved onto one): both keys read whole, the destination written with the
    /// source's value and expiry under compare-and-set, then (RENAME) the source deleted
    /// under compare-and-set; as `VersionedStore::transfer`, a failure between the two
    /// writes leaves the value under both names, never under neither, and a write to the
    /// source that lands between them stays.
    async fn transfer_typed(
        &self,
        store: &VersionedStore,
        level: Consistency,
    ) -> Result<Transferred, Frame> {
        let rename = matches!(self.mode, TransferMode::Rename { .. });
        let guarded = matches!(
            self.mode,
            TransferMode::Rename { nx: true } | TransferMode::Copy { replace: false }
        );
        if self.src == self.dst {
            // RENAME k k (COPY k k is refused when parsing): nothing moves.
            return match store
                .get_typed(&self.src, level, TypedWanted::TypeOnly)
                .await
            {
                Ok(None) => Ok(Transferred::NoSuchKey),
                Ok(Some(_)) if guarded => Ok(Transferred::DestinationExists),
                Ok(Some(_)) => Ok(Transferred::Done),
                Err(e) => Err(store_error(e)),
            };
        }
        let decide = |s: Option<&TypedFound>, d: Option<&TypedFound>| {
            let keep = |result| Transfer {
                source: TypedChange::Keep,
                destination: TypedChange::Keep,
                result,
            };
            let Some(s) = s else {
                return keep(Ok(Transferred::NoSuchKey));
            };
            if guarded && d.is_some() {
                return keep(Ok(Transferred::DestinationExists));
            }
            let expires_at_ms = s.expires_at_ms;
            // `None`: a raw value of a type quorumd does not read (adopted by the sweep).
            let Some(destination) = TypedChange::put(&s.value, expires_at_ms) else {
                return keep(Err(wrong_type()));
            };
            Transfer {
                source: if rename {
                    TypedChange::Delete
                } else {
                    TypedChange::Keep
                },
                destination,
                result: Ok(Transferred::Done),
            }
        };
        // The source was written after the destination: that write is ordered after the
        // rename and stays, as in `VersionedStore::transfer`.
        let redo_source = |_: Option<&TypedFound>| TypedChange::Keep;
        store
            .transfer_typed((&self.src, &self.dst), level, decide, redo_source)
            .await
            .unwrap_or_else(|e| Err(store_error(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_like_redis() {
        assert_eq!(parse_cursor(b"0"), Ok(0));
        assert_eq!(parse_cursor(b"+7"), Ok(7));
        assert_eq!(parse_cursor(b"-1"), Ok(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [&b"x"[..], b"", b" 0", b"1.5", b"99999999999999999999", b"-"] {
            assert_eq!(parse_cursor(bad), Err(Frame::error("ERR invalid cursor")));
        }
    }

    #[test]
    fn scan_options_follow_redis() {
        let args = |s: &str| {
            s.split(' ')
                .map(|w| Bytes::from(w.to_string()))
                .collect::<Vec<_>>()
        };
        assert!(matches!(
            parse_scan(&args("scan 0 COUNT 0")),
            Err(f) if f == syntax_error()
        ));
        assert!(matches!(parse_scan(&args("scan 0 MATCH")), Err(f) if f == syntax_error()));
        assert!(
            matches!(parse_scan(&args("scan 0 count x")), Err(f) if f == super::super::not_an_integer())
        );
        assert!(matches!(
            parse_scan(&args("scan 0 match a* count 5 type hash")),
            Ok(Command::Session(SessionCmd::Keyspace(KeyspaceCmd::Scan {
                count: 5,
                ..
            })))
        ));
    }
}
