//! Stream commands: XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM, XREAD (without BLOCK), XSETID
//! and XINFO STREAM here, the consumer-group commands in `groups` (their read-only replies in
//! `group_info`), with redis-server 7.0's replies and errors. XREAD BLOCK and XREADGROUP BLOCK
//! are refused.
//!
//! A stream is a versioned value like a list (docs/ARCHITECTURE.md, "Streams"): a read takes it
//! whole, a write replaces it whole under the key's ballot (`read_modify_write_typed`), with
//! the new stream computed by `quorumd_core::stream`. So every command costs O(stream size).
//! Arguments are checked in redis-server's order: what it checks before looking the key up is
//! checked when parsing, the rest once the value is read.

mod group_info;
mod groups;

use super::{Access, Command, Flag, Spec, data, eq, int_arg, store_error};
use super::{syntax_error, wrong_arity, wrong_type};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::quorum::Consistency;
use quorumd_core::stream::{
    self, Entry, IdForm, ParsedId, Stream, StreamId, Trim, TrimArgs, parse_id,
};
use quorumd_replication::store::{
    StoreError, TypedChange, TypedFound, TypedValue, TypedWanted, VersionedStore,
};

const READ: &[Flag] = &[Flag::ReadOnly];
const WRITE: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];

pub static SPECS: &[Spec] = &[
    Spec::keyed("xadd", -5, WRITE, (1, 1, 1), parse_xadd),
    Spec::keyed("xlen", 2, &[Flag::ReadOnly, Flag::Fast], (1, 1, 1), |a| {
        data(StreamCmd::Len(a[1].clone()))
    }),
    Spec::keyed("xrange", -4, READ, (1, 1, 1), |a| parse_range(a, false)),
    Spec::keyed("xrevrange", -4, READ, (1, 1, 1), |a| parse_range(a, true)),
    Spec::keyed("xdel", -3, &[Flag::Write, Flag::Fast], (1, 1, 1), |a| {
        data(StreamCmd::Del {
            key: a[1].clone(),
            ids: a[2..].to_vec(),
        })
    }),
    Spec::keyed("xtrim", -4, &[Flag::Write], (1, 1, 1), parse_xtrim),
    // Its keys follow STREAMS, so, as in Redis's table, it declares none (movable keys).
    Spec::keyless("xread", -4, READ, parse_xread),
    Spec::keyed(
        "xsetid",
        -3,
        &[Flag::Write, Flag::DenyOom, Flag::Fast],
        (1, 1, 1),
        parse_xsetid,
    ),
    Spec::keyless("xinfo", -2, READ, parse_xinfo),
    // A container command: its key is the subcommand's (XGROUP HELP has none).
    Spec::keyless("xgroup", -2, &[Flag::Write], groups::parse_xgroup),
    Spec::keyless("xreadgroup", -7, &[Flag::Write], groups::parse_xreadgroup),
    Spec::keyed("xack", -4, &[Flag::Write, Flag::Fast], (1, 1, 1), |a| {
        groups::keyed(a, groups::Keyed::Ack)
    }),
    Spec::keyed("xclaim", -6, &[Flag::Write, Flag::Fast], (1, 1, 1), |a| {
        groups::keyed(a, groups::Keyed::Claim)
    }),
    Spec::keyed(
        "xautoclaim",
        -6,
        &[Flag::Write, Flag::Fast],
        (1, 1, 1),
        |a| groups::keyed(a, groups::Keyed::AutoClaim),
    ),
    Spec::keyed("xpending", -3, READ, (1, 1, 1), groups::parse_xpending),
];

pub enum StreamCmd {
    Add {
        key: Bytes,
        no_mkstream: bool,
        trim: Option<TrimArgs>,
        /// `None`: `*`.
        id: Option<ParsedId>,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Len(Bytes),
    Range {
        key: Bytes,
        start: StreamId,
        end: StreamId,
        rev: bool,
        /// `None`: no COUNT; a negative COUNT is 0, which answers a null array.
        count: Option<u64>,
    },
    Del {
        key: Bytes,
        /// Parsed once the key is found: Redis answers 0 for a missing key whatever they are.
        ids: Vec<Bytes>,
    },
    Trim {
        key: Bytes,
        trim: TrimArgs,
    },
    Read {
        count: u64,
        keys: Vec<Bytes>,
        /// One per key, parsed in turn once that key's type is checked, as Redis does.
        ids: Vec<Bytes>,
    },
    SetId {
        key: Bytes,
        id: StreamId,
        entries_added: Option<u64>,
        max_deleted: Option<StreamId>,
    },
    Info(Bytes),
    /// A consumer-group command (or XINFO on groups).
    Group(groups::GroupCmd),
}

pub(super) fn invalid_id() -> Frame {
    Frame::error("ERR Invalid stream ID specified as stream command argument")
}

pub(super) fn strict_id(arg: &[u8]) -> Result<StreamId, Frame> {
    parse_id(arg, IdForm::STRICT)
        .map(|p| p.id)
        .ok_or_else(invalid_id)
}

/// `streamParseAddOrTrimArgsOrReply`: the trim options (and, for XADD, NOMKSTREAM and the
/// ID); the index of the ID argument for XADD, with what it found.
struct AddOrTrim {
    trim: Option<TrimArgs>,
    no_mkstream: bool,
    id: Option<ParsedId>,
    next: usize,
}

fn parse_add_or_trim(a: &[Bytes], xadd: bool) -> Result<AddOrTrim, Frame> {
    let mut strategy: Option<Trim> = None;
    let mut approx = false;
    let mut limit: Option<i64> = None;
    let mut out = AddOrTrim {
        trim: None,
        no_mkstream: false,
        id: None,
        next: a.len(),
    };
    let both = || {
        Frame::error(
            "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
        )
    };
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let opt = &a[i];
        if xadd && &opt[..] == b"*" {
            out.next = i;
            break;
        } else if (eq(opt, "maxlen") || eq(opt, "minid")) && more > 0 {
            if strategy.is_some() {
                return Err(both());
            }
            approx = false;
            let next = &a[i + 1];
            if more >= 2 && &next[..] == b"~" {
                approx = true;
                i += 1;
            } else if more >= 2 && &next[..] == b"=" {
                i += 1;
            }
            let arg = a.get(i + 1).ok_or_else(syntax_error)?;
            strategy = Some(if eq(opt, "maxlen") {
                let max = int_arg(arg)?;
                if max < 0 {
                    return Err(Frame::error("ERR The MAXLEN argument must be >= 0."));
                }
                Trim::MaxLen(max as u64)
            } else {
                Trim::MinId(strict_id(arg)?)
            });
            i += 1;
        } else if eq(opt, "limit") && more > 0 {
            let n = int_arg(&a[i + 1])?;
            if n < 0 {
                return Err(Frame::error("ERR The LIMIT argument must be >= 0."));
            }
            limit = Some(n);
            i += 1;
        } else if xadd && eq(opt, "nomkstream") {
            out.no_mkstream = true;
        } else if xadd {
            let form = IdForm {
                partial: true,
                ..IdForm::STRICT
            };
            out.id = Some(parse_id(opt, form).ok_or_else(invalid_id)?);
            out.next = i;
            break;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    if limit.is_some_and(|n| n > 0) && strategy.is_none() {
        return Err(Frame::error(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && strategy.is_none() {
        return Err(Frame::error(
            "ERR syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    let limit = match limit {
        Some(_) if !approx => {
            return Err(Frame::error(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
        Some(n) => n as u64,
        // Redis's default: 100 times stream-node-max-entries for `~`, none for exact.
        None if approx => 100 * stream::NODE_MAX_ENTRIES as u64,
        None => 0,
    };
    out.trim = strategy.map(|trim| TrimArgs {
        trim,
        approx,
        limit,
    });
    Ok(out)
}

fn parse_xadd(a: &[Bytes]) -> Result<Command, Frame> {
    let parsed = parse_add_or_trim(a, true)?;
    let fields_at = parsed.next + 1;
    let rest = a.len().saturating_sub(fields_at);
    if fields_at > a.len() || rest < 2 || rest % 2 == 1 {
        return Err(wrong_arity("xadd"));
    }
    if parsed
        .id
        .is_some_and(|p| p.seq_given && p.id == StreamId::ZERO)
    {
        return Err(Frame::error(
            "ERR The ID specified in XADD must be greater than 0-0",
        ));
    }
    data(StreamCmd::Add {
        key: a[1].clone(),
        no_mkstream: parsed.no_mkstream,
        trim: parsed.trim,
        id: parsed.id,
        fields: a[fields_at..]
            .chunks(2)
            .map(|p| (p[0].to_vec(), p[1].to_vec()))
            .collect(),
    })
}

fn parse_xtrim(a: &[Bytes]) -> Result<Command, Frame> {
    let parsed = parse_add_or_trim(a, false)?;
    match parsed.trim {
        Some(trim) => data(StreamCmd::Trim {
            key: a[1].clone(),
            trim,
        }),
        None => Err(syntax_error()),
    }
}

/// `streamParseIntervalIDOrReply`: `(` makes the bound exclusive (strict form after it).
pub(super) fn interval_id(arg: &[u8], missing_seq: u64) -> Result<(StreamId, bool), Frame> {
    let exclusive = arg.len() > 1 && arg[0] == b'(';
    let form = IdForm {
        strict: exclusive,
        partial: false,
        missing_seq,
    };
    let text = if exclusive { &arg[1..] } else { arg };
    let id = parse_id(text, form).ok_or_else(invalid_id)?.id;
    Ok((id, exclusive))
}

fn parse_range(a: &[Bytes], rev: bool) -> Result<Command, Frame> {
    let (start_arg, end_arg) = if rev { (&a[3], &a[2]) } else { (&a[2], &a[3]) };
    let (mut start, ex) = interval_id(start_arg, 0)?;
    if ex {
        start = start
            .incr()
            .ok_or_else(|| Frame::error("ERR invalid start ID for the interval"))?;
    }
    let (mut end, ex) = interval_id(end_arg, u64::MAX)?;
    if ex {
        end = end
            .decr()
            .ok_or_else(|| Frame::error("ERR invalid end ID for the interval"))?;
    }
    let mut count = None;
    let mut j = 4;
    while j < a.len() {
        if eq(&a[j], "count") && j + 1 < a.len() {
            count = Some(int_arg(&a[j + 1])?.max(0) as u64);
            j += 2;
        } else {
            return Err(syntax_error());
        }
    }
    data(StreamCmd::Range {
        key: a[1].clone(),
        start,
        end,
        rev,
        count,
    })
}

/// `BLOCK` of XREAD or XREADGROUP, refused.
pub(super) fn block_refused(command: &str) -> Frame {
    Frame::error(format!(
        "ERR blocking stream reads are not supported by quorumd: {command} BLOCK would wait on \
         the nodes separately; poll with {command} without BLOCK instead"
    ))
}

/// The keys and IDs after `STREAMS`: as many IDs as keys.
pub(super) fn keys_and_ids(rest: &[Bytes]) -> Result<(Vec<Bytes>, Vec<Bytes>), Frame> {
    if !rest.len().is_multiple_of(2) {
        return Err(Frame::error(
            "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be \
             specified.",
        ));
    }
    let (keys, ids) = rest.split_at(rest.len() / 2);
    Ok((keys.to_vec(), ids.to_vec()))
}

fn parse_xread(a: &[Bytes]) -> Result<Command, Frame> {
    let mut count = 0u64;
    let mut i = 1;
    while i < a.len() {
        let more = a.len() - i - 1;
        let o = &a[i];
        if eq(o, "block") && more > 0 {
            return Err(block_refused("XREAD"));
        } else if eq(o, "count") && more > 0 {
            count = int_arg(&a[i + 1])?.max(0) as u64;
            i += 2;
        } else if eq(o, "streams") && more > 0 {
            let (keys, ids) = keys_and_ids(&a[i + 1..])?;
            return data(StreamCmd::Read { count, keys, ids });
        } else if eq(o, "group") && more >= 2 {
            return Err(Frame::error(
                "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
            ));
        } else if eq(o, "noack") {
            return Err(Frame::error(
                "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
            ));
        } else {
            return Err(syntax_error());
        }
    }
    Err(syntax_error())
}

fn parse_xsetid(a: &[Bytes]) -> Result<Command, Frame> {
    let id = strict_id(&a[2])?;
    let mut entries_added = None;
    let mut max_deleted = None;
    let mut i = 3;
    while i < a.len() {
        let more = a.len() - 1 - i;
        if eq(&a[i], "entriesadded") && more > 0 {
            let n = int_arg(&a[i + 1])?;
            if n < 0 {
                return Err(Frame::error("ERR entries_added must be positive"));
            }
            entries_added = Some(n as u64);
        } else if eq(&a[i], "maxdeletedid") && more > 0 {
            let m = strict_id(&a[i + 1])?;
            if id < m {
                return Err(Frame::error(
                    "ERR The ID specified in XSETID is smaller than the provided \
                     max_deleted_entry_id",
                ));
            }
            max_deleted = Some(m);
        } else {
            return Err(syntax_error());
        }
        i += 2;
    }
    data(StreamCmd::SetId {
        key: a[1].clone(),
        id,
        entries_added,
        max_deleted,
    })
}

fn parse_xinfo(a: &[Bytes]) -> Result<Command, Frame> {
    let sub = &a[1];
    if eq(sub, "stream") {
        match a.len() {
            2 => Err(wrong_arity("xinfo|stream")),
            3 => data(StreamCmd::Info(a[2].clone())),
            // Its options are checked once the key is found, as Redis does.
            _ => data(StreamCmd::Group(groups::GroupCmd::InfoFull {
                key: a[2].clone(),
                args: a.to_vec(),
            })),
        }
    } else if eq(sub, "groups") {
        match a.len() {
            3 => data(StreamCmd::Group(groups::GroupCmd::InfoGroups(a[2].clone()))),
            _ => Err(wrong_arity("xinfo|groups")),
        }
    } else if eq(sub, "consumers") {
        match a.len() {
            4 => data(StreamCmd::Group(groups::GroupCmd::InfoConsumers {
                key: a[2].clone(),
                group: a[3].clone(),
            })),
            _ => Err(wrong_arity("xinfo|consumers")),
        }
    } else if eq(sub, "help") && a.len() > 2 {
        Err(wrong_arity("xinfo|help"))
    } else if eq(sub, "help") {
        // Redis's own help text, status lines as `addReplyHelp` sends them.
        Err(Frame::Array(
            [
                "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CONSUMERS <key> <groupname>",
                "    Show consumers of <groupname>.",
                "GROUPS <key>",
                "    Show the stream consumer groups.",
                "STREAM <key> [FULL [COUNT <count>]",
                "    Show information about the stream.",
                "HELP",
                "    Prints this help.",
            ]
            .into_iter()
            .map(|l| Frame::Simple(l.into()))
            .collect(),
        ))
    } else {
        Err(Frame::error(format!(
            "ERR unknown subcommand '{}'. Try XINFO HELP.",
            String::from_utf8_lossy(sub)
        )))
    }
}

/// The stream a read found: `None` when the key is absent, `WRONGTYPE` for another type.
pub(super) fn as_stream(found: Option<&TypedFound>) -> Result<Option<&Stream>, Frame> {
    match found.map(|f| &f.value) {
        None => Ok(None),
        Some(TypedValue::Stream(s)) => Ok(Some(s)),
        Some(_) => Err(wrong_type()),
    }
}

pub(super) fn put(stream: Stream, found: Option<&TypedFound>) -> TypedChange {
    TypedChange::PutStream {
        stream,
        expires_at_ms: found.and_then(|f| f.expires_at_ms),
    }
}

pub(super) fn id_frame(id: StreamId) -> Frame {
    Frame::bulk(id.to_string())
}

pub(super) fn entry_frame(e: &Entry) -> Frame {
    let mut fields = Vec::with_capacity(e.fields.len() * 2);
    for (f, v) in &e.fields {
        fields.push(Frame::bulk(f.clone()));
        fields.push(Frame::bulk(v.clone()));
    }
    Frame::Array(vec![id_frame(e.id), Frame::Array(fields)])
}

fn entries_frame(entries: &[&Entry]) -> Frame {
    Frame::Array(entries.iter().map(|e| entry_frame(e)).collect())
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn reply(r: Result<Frame, StoreError>) -> Frame {
    r.unwrap_or_else(store_error)
}

/// XINFO STREAM's reply (without FULL), as redis-server 7.0 gives it.
fn info(s: &Stream) -> Frame {
    let mut fields = info_head(s);
    let text = |t: &str| Frame::bulk(t.to_string());
    let edge = |e: Option<&Entry>| e.map_or(Frame::Null, entry_frame);
    fields.extend([
        (text("groups"), Frame::Integer(s.groups.len() as i64)),
        (text("first-entry"), edge(s.entries.first())),
        (text("last-entry"), edge(s.entries.last())),
    ]);
    Frame::Map(fields)
}

/// The fields XINFO STREAM starts with, FULL or not.
pub(super) fn info_head(s: &Stream) -> Vec<(Frame, Frame)> {
    let text = |t: &str| Frame::bulk(t.to_string());
    vec![
        (text("length"), Frame::Integer(s.entries.len() as i64)),
        (
            text("radix-tree-keys"),
            Frame::Integer(s.nodes().len() as i64),
        ),
        (
            text("radix-tree-nodes"),
            Frame::Integer(s.radix_tree_nodes() as i64),
        ),
        (text("last-generated-id"), id_frame(s.last_id)),
        (text("max-deleted-entry-id"), id_frame(s.max_deleted)),
        (
            text("entries-added"),
            Frame::Integer(s.entries_added as i64),
        ),
        (text("recorded-first-entry-id"), id_frame(s.first_id())),
    ]
}

impl StreamCmd {
    pub fn access(&self) -> Access<'_> {
        match self {
            StreamCmd::Add { key, .. }
            | StreamCmd::Del { key, .. }
            | StreamCmd::Trim { key, .. }
            | StreamCmd::SetId { key, .. } => Access {
                reads: vec![],
                writes: vec![&key[..]],
            },
            StreamCmd::Len(key) | StreamCmd::Range { key, .. } | StreamCmd::Info(key) => Access {
                reads: vec![&key[..]],
                writes: vec![],
            },
            StreamCmd::Read { keys, .. } => Access {
                reads: keys.iter().map(|k| &k[..]).collect(),
                writes: vec![],
            },
            StreamCmd::Group(g) => g.access(),
        }
    }

    pub async fn apply(self, store: &VersionedStore, level: Consistency) -> Frame {
        let read = |key: Bytes| async move {
            store
                .get_typed(&key, level, TypedWanted::Full)
                .await
                .map_err(store_error)
        };
        match self {
            StreamCmd::Add {
                key,
                no_mkstream,
                trim,
                id,
                fields,
            } => {
                let now = now_ms();
                reply(
                    store
                        .read_modify_write_typed(&key, level, |found| {
                            let mut s = match as_stream(found) {
                                Err(e) => return (TypedChange::Keep, e),
                                Ok(None) if no_mkstream => {
                                    return (TypedChange::Keep, Frame::Null);
                                }
                                Ok(s) => s.cloned().unwrap_or_default(),
                            };
                            match s.add(id, fields.clone(), now) {
                                Ok(added) => {
                                    if let Some(t) = trim {
                                        s.trim(t);
                                    }
                                    (put(s, found), id_frame(added))
                                }
                                Err(e) => (TypedChange::Keep, Frame::error(format!("ERR {e}"))),
                            }
                        })
                        .await,
                )
            }
            StreamCmd::Len(key) => match read(key).await {
                Ok(found) => match as_stream(found.as_ref()) {
                    Ok(s) => Frame::Integer(s.map_or(0, |s| s.entries.len() as i64)),
                    Err(e) => e,
                },
                Err(e) => e,
            },
            StreamCmd::Range {
                key,
                start,
                end,
                rev,
                count,
            } => match read(key).await {
                Ok(found) => match as_stream(found.as_ref()) {
                    Err(e) => e,
                    Ok(None) => Frame::Array(vec![]),
                    Ok(Some(_)) if count == Some(0) => Frame::NullArray,
                    Ok(Some(s)) => {
                        let limit = count.map_or(0, |c| usize::try_from(c).unwrap_or(usize::MAX));
                        entries_frame(&s.range(start, end, rev, limit))
                    }
                },
                Err(e) => e,
            },
            StreamCmd::Del { key, ids } => reply(
                store
                    .read_modify_write_typed(&key, level, |found| {
                        let mut s = match as_stream(found) {
                            Err(e) => return (TypedChange::Keep, e),
                            Ok(None) => return (TypedChange::Keep, Frame::Integer(0)),
                            Ok(Some(s)) => s.clone(),
                        };
                        let ids = match ids
                            .iter()
                            .map(|i| strict_id(i))
                            .collect::<Result<Vec<_>, _>>()
                        {
                            Ok(ids) => ids,
                            Err(e) => return (TypedChange::Keep, e),
                        };
                        let deleted = s.delete(&ids);
                        if deleted == 0 {
                            return (TypedChange::Keep, Frame::Integer(0));
                        }
                        (put(s, found), Frame::Integer(deleted as i64))
                    })
                    .await,
            ),
            StreamCmd::Trim { key, trim } => reply(
                store
                    .read_modify_write_typed(&key, level, |found| {
                        let mut s = match as_stream(found) {
                            Err(e) => return (TypedChange::Keep, e),
                            Ok(None) => return (TypedChange::Keep, Frame::Integer(0)),
                            Ok(Some(s)) => s.clone(),
                        };
                        let removed = s.trim(trim);
                        if removed == 0 {
                            return (TypedChange::Keep, Frame::Integer(0));
                        }
                        (put(s, found), Frame::Integer(removed as i64))
                    })
                    .await,
            ),
            StreamCmd::Read { count, keys, ids } => {
                let reads = futures::future::join_all(keys.iter().cloned().map(read)).await;
                let mut streams = Vec::with_capacity(keys.len());
                for ((found, id), key) in reads.iter().zip(&ids).zip(&keys) {
                    let found = match found {
                        Ok(f) => f.as_ref(),
                        Err(e) => return e.clone(),
                    };
                    let s = match as_stream(found) {
                        Ok(s) => s,
                        Err(e) => return e,
                    };
                    let after = if &id[..] == b"$" {
                        s.map_or(StreamId::ZERO, |s| s.last_id)
                    } else if &id[..] == b">" {
                        return Frame::error(
                            "ERR The > ID can be specified only when calling XREADGROUP using \
                             the GROUP <group> <consumer> option.",
                        );
                    } else {
                        match strict_id(id) {
                            Ok(id) => id,
                            Err(e) => return e,
                        }
                    };
                    streams.push((key, s, after));
                }
                let limit = usize::try_from(count).unwrap_or(usize::MAX);
                let mut out = Vec::new();
                for (key, s, after) in streams {
                    let Some(s) = s else { continue };
                    // Served when there is an entry after the given ID.
                    let Some(start) = after.incr() else { continue };
                    let entries = s.range(start, StreamId::MAX, false, limit);
                    if !entries.is_empty() {
                        out.push((Frame::bulk(key.clone()), entries_frame(&entries)));
                    }
                }
                if out.is_empty() {
                    Frame::NullArray
                } else {
                    Frame::KeyedArrays(out)
                }
            }
            StreamCmd::SetId {
                key,
                id,
                entries_added,
                max_deleted,
            } => reply(
                store
                    .read_modify_write_typed(&key, level, |found| {
                        let mut s = match as_stream(found) {
                            Err(e) => return (TypedChange::Keep, e),
                            Ok(None) => {
                                return (TypedChange::Keep, Frame::error("ERR no such key"));
                            }
                            Ok(Some(s)) => s.clone(),
                        };
                        if let Some(top) = s.entries.last() {
                            if id < top.id {
                                let e = Frame::error(
                                    "ERR The ID specified in XSETID is smaller than the target \
                                     stream top item",
                                );
                                return (TypedChange::Keep, e);
                            }
                            if entries_added.is_some_and(|n| n < s.entries.len() as u64) {
                                let e = Frame::error(
                                    "ERR The entries_added specified in XSETID is smaller than \
                                     the target stream length",
                                );
                                return (TypedChange::Keep, e);
                            }
                        }
                        s.last_id = id;
                        if let Some(n) = entries_added {
                            s.entries_added = n;
                        }
                        // Redis keeps the current one when the given one is 0-0.
                        if let Some(m) = max_deleted.filter(|m| *m != StreamId::ZERO) {
                            s.max_deleted = m;
                        }
                        (put(s, found), Frame::ok())
                    })
                    .await,
            ),
            StreamCmd::Group(g) => g.apply(store, level).await,
            StreamCmd::Info(key) => match read(key).await {
                Ok(found) => match as_stream(found.as_ref()) {
                    Err(e) => e,
                    Ok(None) => Frame::error("ERR no such key"),
                    Ok(Some(s)) => info(s),
                },
                Err(e) => e,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command line split at spaces (shared with the group commands' tests).
    pub(super) fn args(s: &str) -> Vec<Bytes> {
        s.split(' ').map(|w| Bytes::from(w.to_string())).collect()
    }

    /// A parse's error text, `ok`, or `other` for another refusal.
    pub(super) fn err(r: Result<Command, Frame>) -> String {
        match r {
            Err(Frame::Error(e)) => e,
            Err(_) => "other".into(),
            Ok(_) => "ok".into(),
        }
    }

    #[test]
    fn xadd_options_fail_in_redis_order() {
        assert_eq!(
            err(parse_xadd(&args("xadd s maxlen 1 limit 5 * f v"))),
            "ERR syntax error, LIMIT cannot be used without the special ~ option"
        );
        assert_eq!(
            err(parse_xadd(&args("xadd s limit 5 * f v"))),
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
        );
        assert_eq!(
            err(parse_xadd(&args("xadd s maxlen 1 minid 1 * f v"))),
            "ERR syntax error, MAXLEN and MINID options at the same time are not compatible"
        );
        assert_eq!(
            err(parse_xadd(&args("xadd s 0-0 f v"))),
            "ERR The ID specified in XADD must be greater than 0-0"
        );
        assert_eq!(
            err(parse_xadd(&args("xadd s * f"))),
            "ERR wrong number of arguments for 'xadd' command"
        );
        assert_eq!(err(parse_xadd(&args("xadd s maxlen ~ 5 1-* f v"))), "ok");
    }

    #[test]
    fn ranges_refuse_bounds_past_the_ends() {
        assert_eq!(
            err(parse_range(
                &args("xrange s (18446744073709551615-18446744073709551615 +"),
                false
            )),
            "ERR invalid start ID for the interval"
        );
        assert_eq!(
            err(parse_range(&args("xrange s - (0-0"), false)),
            "ERR invalid end ID for the interval"
        );
        assert_eq!(
            err(parse_range(&args("xrange s - + count"), false)),
            "ERR syntax error"
        );
    }
}
