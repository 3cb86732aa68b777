//! Streams' consumer groups: XGROUP, XREADGROUP (without BLOCK), XACK, XCLAIM and XAUTOCLAIM
//! here, and the commands of XPENDING, XINFO GROUPS, XINFO CONSUMERS and XINFO STREAM FULL
//! (their replies in `group_info`), with redis-server 7.0's replies and errors.
//!
//! The groups live in the stream value (`quorumd_core::stream::Group`), so every command that
//! changes one (XREADGROUP included, whose `>` advances the group and fills its pending list)
//! is one read-modify-write of the whole stream under the key's ballot: two quorumd processes
//! serving one group never hand the same entry out twice. Each command checks its arguments
//! against the value it found, in redis-server's order (which mixes argument checks with key
//! and group lookups), so most of the parsing happens there rather than up front.

use super::group_info::{info_consumers, info_full, info_groups, xpending};
use super::{
    StreamCmd, as_stream, block_refused, entry_frame, id_frame, interval_id, invalid_id,
    keys_and_ids, now_ms, put, reply, strict_id,
};
use crate::resp::command::{
    Access, Command, data, eq, int_arg, store_error, syntax_error, unknown_subcommand, wrong_arity,
};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::quorum::Consistency;
use quorumd_core::stream::{Claim, Entry, IdForm, NO_ENTRIES_READ, Stream, StreamId, parse_id};
use quorumd_replication::store::{TypedChange, TypedFound, TypedWanted, VersionedStore};

/// A consumer-group command, with the arguments it checks once the key is read.
pub enum GroupCmd {
    /// An XGROUP subcommand other than HELP (all the arguments).
    XGroup {
        key: Bytes,
        args: Vec<Bytes>,
    },
    ReadGroup {
        group: Bytes,
        consumer: Bytes,
        count: u64,
        noack: bool,
        keys: Vec<Bytes>,
        ids: Vec<Bytes>,
    },
    Keyed {
        what: Keyed,
        key: Bytes,
        args: Vec<Bytes>,
    },
    Pending {
        key: Bytes,
        group: Bytes,
        range: Option<PendingRange>,
    },
    InfoGroups(Bytes),
    InfoConsumers {
        key: Bytes,
        group: Bytes,
    },
    /// XINFO STREAM with options (FULL, COUNT): all the arguments.
    InfoFull {
        key: Bytes,
        args: Vec<Bytes>,
    },
}

/// The group commands whose arguments are all checked against the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    Ack,
    Claim,
    AutoClaim,
}

/// XPENDING's extended form.
pub struct PendingRange {
    pub(super) min_idle: i64,
    pub(super) start: StreamId,
    pub(super) end: StreamId,
    pub(super) count: u64,
    pub(super) consumer: Option<Bytes>,
}

/// What a command decided: the change to write and the reply.
type Decided = (TypedChange, Frame);

fn lossy(b: &[u8]) -> String {
    // Redis prints names with `%s`: a NUL ends them.
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or_default()).into_owned()
}

fn nogroup_key(key: &[u8], group: &[u8]) -> Frame {
    Frame::error(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        lossy(key),
        lossy(group)
    ))
}

fn nogroup_for_key(key: &[u8], group: &[u8]) -> Frame {
    Frame::error(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        lossy(group),
        lossy(key)
    ))
}

pub(super) fn subcommand_syntax(sub: &[u8], command: &str) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {command} HELP.",
        String::from_utf8_lossy(sub)
    ))
}

fn entries_read_arg(arg: &[u8]) -> Result<i64, Frame> {
    let n = int_arg(arg)?;
    if n < 0 && n != NO_ENTRIES_READ {
        return Err(Frame::error(
            "ERR value for ENTRIESREAD must be positive or -1",
        ));
    }
    Ok(n)
}

/// The change that writes `new` when it differs from what was found.
fn write_if_changed(old: Option<&Stream>, new: Stream, found: Option<&TypedFound>) -> TypedChange {
    if old == Some(&new) {
        TypedChange::Keep
    } else {
        put(new, found)
    }
}

pub(super) fn parse_xgroup(a: &[Bytes]) -> Result<Command, Frame> {
    let sub = &a[1];
    let arity_ok = |arity: i64| {
        let n = a.len() as i64;
        if arity >= 0 { n == arity } else { n >= -arity }
    };
    let arity = [
        ("create", -5),
        ("setid", -5),
        ("destroy", 4),
        ("createconsumer", 5),
        ("delconsumer", 5),
        ("help", 2),
    ]
    .into_iter()
    .find(|(name, _)| eq(sub, name));
    let Some((name, arity)) = arity else {
        return Err(unknown_subcommand(sub, "xgroup"));
    };
    if !arity_ok(arity) {
        return Err(wrong_arity(&format!("xgroup|{name}")));
    }
    if name == "help" {
        return Err(help(&[
            "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CREATE <key> <groupname> <id|$> [option]",
            "    Create a new consumer group. Options are:",
            "    * MKSTREAM",
            "      Create the empty stream if it does not exist.",
            "    * ENTRIESREAD entries_read",
            "      Set the group's entries_read counter (internal use).",
            "CREATECONSUMER <key> <groupname> <consumer>",
            "    Create a new consumer in the specified group.",
            "DELCONSUMER <key> <groupname> <consumer>",
            "    Remove the specified consumer.",
            "DESTROY <key> <groupname>",
            "    Remove the specified group.",
            "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
            "    Set the current group ID and entries_read counter.",
            "HELP",
            "    Prints this help.",
        ]));
    }
    data(StreamCmd::Group(GroupCmd::XGroup {
        key: a[2].clone(),
        args: a.to_vec(),
    }))
}

/// Redis's help text, status lines as `addReplyHelp` sends them (an "error" that is a reply).
fn help(lines: &[&str]) -> Frame {
    Frame::Array(lines.iter().map(|l| Frame::Simple((*l).into())).collect())
}

pub(super) fn keyed(a: &[Bytes], what: Keyed) -> Result<Command, Frame> {
    data(StreamCmd::Group(GroupCmd::Keyed {
        what,
        key: a[1].clone(),
        args: a.to_vec(),
    }))
}

pub(super) fn parse_xreadgroup(a: &[Bytes]) -> Result<Command, Frame> {
    let mut count = 0u64;
    let mut noack = false;
    let mut group: Option<(Bytes, Bytes)> = None;
    let mut streams: Option<(Vec<Bytes>, Vec<Bytes>)> = None;
    let mut i = 1;
    while i < a.len() {
        let more = a.len() - i - 1;
        let o = &a[i];
        if eq(o, "block") && more > 0 {
            return Err(block_refused("XREADGROUP"));
        } else if eq(o, "count") && more > 0 {
            count = int_arg(&a[i + 1])?.max(0) as u64;
            i += 1;
        } else if eq(o, "streams") && more > 0 {
            streams = Some(keys_and_ids(&a[i + 1..])?);
            break;
        } else if eq(o, "group") && more >= 2 {
            group = Some((a[i + 1].clone(), a[i + 2].clone()));
            i += 2;
        } else if eq(o, "noack") {
            noack = true;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    let Some((keys, ids)) = streams else {
        return Err(syntax_error());
    };
    let Some((group, consumer)) = group else {
        return Err(Frame::error("ERR Missing GROUP option for XREADGROUP"));
    };
    data(StreamCmd::Group(GroupCmd::ReadGroup {
        group,
        consumer,
        count,
        noack,
        keys,
        ids,
    }))
}

/// XPENDING checks its range before it looks the key up, as Redis does.
pub(super) fn parse_xpending(a: &[Bytes]) -> Result<Command, Frame> {
    let n = a.len();
    if n != 3 && !(6..=9).contains(&n) {
        return Err(syntax_error());
    }
    let mut range = None;
    if n >= 6 {
        let mut at = 3;
        let mut min_idle = 0;
        if eq(&a[3], "idle") {
            min_idle = int_arg(&a[4])?;
            if n < 8 {
                return Err(syntax_error());
            }
            at += 2;
        }
        let count = int_arg(&a[at + 2])?.max(0) as u64;
        let (mut start, ex) = interval_id(&a[at], 0)?;
        if ex {
            start = start
                .incr()
                .ok_or_else(|| Frame::error("ERR invalid start ID for the interval"))?;
        }
        let (mut end, ex) = interval_id(&a[at + 1], u64::MAX)?;
        if ex {
            end = end
                .decr()
                .ok_or_else(|| Frame::error("ERR invalid end ID for the interval"))?;
        }
        range = Some(PendingRange {
            min_idle,
            start,
            end,
            count,
            consumer: a.get(at + 3).cloned(),
        });
    }
    data(StreamCmd::Group(GroupCmd::Pending {
        key: a[1].clone(),
        group: a[2].clone(),
        range,
    }))
}

/// XGROUP's subcommands (`xgroupCommand`).
fn xgroup(a: &[Bytes], found: Option<&TypedFound>, now: u64) -> Decided {
    let keep = |f: Frame| (TypedChange::Keep, f);
    let sub = &a[1];
    let (create, setid) = (eq(sub, "create"), eq(sub, "setid"));
    let mut mkstream = false;
    let mut entries_read = NO_ENTRIES_READ;
    if create || setid {
        let mut i = 5;
        while i < a.len() {
            if create && eq(&a[i], "mkstream") {
                mkstream = true;
                i += 1;
            } else if eq(&a[i], "entriesread") && i + 1 < a.len() {
                entries_read = match entries_read_arg(&a[i + 1]) {
                    Ok(n) => n,
                    Err(e) => return keep(e),
                };
                i += 2;
            } else {
                return keep(subcommand_syntax(sub, "XGROUP"));
            }
        }
    }
    let s = match as_stream(found) {
        Ok(s) => s,
        Err(e) => return keep(e),
    };
    let (key, name) = (&a[2], &a[3]);
    if s.is_none() && !mkstream {
        return keep(Frame::error(
            "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may \
             want to use the MKSTREAM option to create an empty stream automatically.",
        ));
    }
    let group = s.and_then(|s| s.groups.get(&name[..]));
    let needs_group = setid || eq(sub, "createconsumer") || eq(sub, "delconsumer");
    if group.is_none() && needs_group {
        return keep(nogroup_for_key(key, name));
    }
    let mut new = s.cloned().unwrap_or_default();
    let n = a.len();
    let reply = if create && (5..=8).contains(&n) {
        let id = if &a[4][..] == b"$" {
            s.map_or(StreamId::ZERO, |s| s.last_id)
        } else {
            match strict_id(&a[4]) {
                Ok(id) => id,
                Err(e) => return keep(e),
            }
        };
        if !new.create_group(name, id, entries_read) {
            return keep(Frame::error("BUSYGROUP Consumer Group name already exists"));
        }
        Frame::ok()
    } else if setid && (n == 5 || n == 7) {
        let id = if &a[4][..] == b"$" {
            new.last_id
        } else {
            let form = IdForm {
                strict: false,
                ..IdForm::STRICT
            };
            match parse_id(&a[4], form) {
                Some(p) => p.id,
                None => return keep(invalid_id()),
            }
        };
        if let Some(g) = new.groups.get_mut(&name[..]) {
            g.last_id = id;
            g.entries_read = entries_read;
        }
        Frame::ok()
    } else if eq(sub, "destroy") && n == 4 {
        Frame::Integer(i64::from(new.groups.remove(&name[..]).is_some()))
    } else if eq(sub, "createconsumer") && n == 5 {
        match new.groups.get_mut(&name[..]) {
            Some(g) if !g.consumers.contains_key(&a[4][..]) => {
                g.consumers.entry(a[4].to_vec()).or_default().seen_time = now;
                Frame::Integer(1)
            }
            _ => Frame::Integer(0),
        }
    } else if eq(sub, "delconsumer") && n == 5 {
        let mut pending = 0;
        if let Some(g) = new.groups.get_mut(&name[..])
            && g.consumers.remove(&a[4][..]).is_some()
        {
            let before = g.pending.len();
            g.pending.retain(|_, p| p.consumer[..] != a[4][..]);
            pending = before - g.pending.len();
        }
        Frame::Integer(pending as i64)
    } else {
        return keep(subcommand_syntax(sub, "XGROUP"));
    };
    (write_if_changed(s, new, found), reply)
}

/// XACK: Redis answers 0 for a missing key or group before it checks the IDs.
fn xack(a: &[Bytes], found: Option<&TypedFound>) -> Decided {
    let keep = |f: Frame| (TypedChange::Keep, f);
    let s = match as_stream(found) {
        Ok(Some(s)) if s.groups.contains_key(&a[2][..]) => s,
        Ok(_) => return keep(Frame::Integer(0)),
        Err(e) => return keep(e),
    };
    let ids = match a[3..]
        .iter()
        .map(|i| strict_id(i))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(ids) => ids,
        Err(e) => return keep(e),
    };
    let mut new = s.clone();
    let acked = new.ack(&a[2], &ids);
    (
        write_if_changed(Some(s), new, found),
        Frame::Integer(acked as i64),
    )
}

fn claimed_frame(claimed: &[(StreamId, Option<Entry>)]) -> Frame {
    Frame::Array(
        claimed
            .iter()
            .map(|(id, e)| e.as_ref().map_or_else(|| id_frame(*id), entry_frame))
            .collect(),
    )
}

/// XCLAIM (`xclaimCommand`): the IDs run up to the first argument that is not one; the
/// options follow.
fn xclaim(a: &[Bytes], found: Option<&TypedFound>, now: u64) -> Decided {
    let keep = |f: Frame| (TypedChange::Keep, f);
    let s = match as_stream(found) {
        Ok(Some(s)) if s.groups.contains_key(&a[2][..]) => s,
        Ok(_) => return keep(nogroup_key(&a[1], &a[2])),
        Err(e) => return keep(e),
    };
    let invalid = |what: &str| Frame::error(format!("ERR Invalid {what} argument for XCLAIM"));
    let Ok(min_idle) = int_arg(&a[4]) else {
        return keep(invalid("min-idle-time"));
    };
    let mut j = 5;
    let mut ids = Vec::new();
    while j < a.len() {
        match parse_id(&a[j], IdForm::STRICT) {
            Some(p) => ids.push(p.id),
            None => break,
        }
        j += 1;
    }
    let mut opts = Claim {
        min_idle: min_idle.max(0) as u64,
        ..Claim::default()
    };
    let now_i = now as i64;
    while j < a.len() {
        let more = a.len() - 1 - j;
        let opt = &a[j];
        let int =
            |j: usize, what: &str| int_arg(&a[j]).map_err(|_| invalid(&format!("{what} option")));
        if eq(opt, "force") {
            opts.force = true;
        } else if eq(opt, "justid") {
            opts.justid = true;
        } else if eq(opt, "idle") && more > 0 {
            j += 1;
            match int(j, "IDLE") {
                Ok(idle) => opts.delivery_time = Some(now_i.wrapping_sub(idle)),
                Err(e) => return keep(e),
            }
        } else if eq(opt, "time") && more > 0 {
            j += 1;
            match int(j, "TIME") {
                Ok(t) => opts.delivery_time = Some(t),
                Err(e) => return keep(e),
            }
        } else if eq(opt, "retrycount") && more > 0 {
            j += 1;
            match int(j, "RETRYCOUNT") {
                // A negative count is as good as none.
                Ok(n) => opts.retry_count = u64::try_from(n).ok(),
                Err(e) => return keep(e),
            }
        } else if eq(opt, "lastid") && more > 0 {
            j += 1;
            match strict_id(&a[j]) {
                Ok(id) => opts.last_id = Some(id),
                Err(e) => return keep(e),
            }
        } else {
            return keep(Frame::error(format!(
                "ERR Unrecognized XCLAIM option '{}'",
                lossy(opt)
            )));
        }
        j += 1;
    }
    let mut new = s.clone();
    let claimed = new.claim(&a[2], &a[3], &ids, opts, now);
    (
        write_if_changed(Some(s), new, found),
        claimed_frame(&claimed),
    )
}

/// XAUTOCLAIM (`xautoclaimCommand`): its arguments are checked before the key's type and
/// the group are.
fn xautoclaim(a: &[Bytes], found: Option<&TypedFound>, now: u64) -> Decided {
    let keep = |f: Frame| (TypedChange::Keep, f);
    let Ok(min_idle) = int_arg(&a[4]) else {
        return keep(Frame::error(
            "ERR Invalid min-idle-time argument for XAUTOCLAIM",
        ));
    };
    let mut start = match interval_id(&a[5], 0) {
        Ok((id, false)) => id,
        Ok((id, true)) => match id.incr() {
            Some(id) => id,
            None => return keep(Frame::error("ERR invalid start ID for the interval")),
        },
        Err(e) => return keep(e),
    };
    let mut count = 100u64;
    let mut justid = false;
    let mut j = 6;
    while j < a.len() {
        let more = a.len() - 1 - j;
        if eq(&a[j], "count") && more > 0 {
            // Redis bounds it so that the attempts (count × 10) and the deleted IDs' buffer
            // (count × 16 bytes) fit.
            match int_arg(&a[j + 1]) {
                Ok(n) if (1..=i64::MAX / 16).contains(&n) => count = n as u64,
                _ => return keep(Frame::error("ERR COUNT must be > 0")),
            }
            j += 2;
        } else if eq(&a[j], "justid") {
            justid = true;
            j += 1;
        } else {
            return keep(syntax_error());
        }
    }
    let s = match as_stream(found) {
        Ok(s) => s,
        Err(e) => return keep(e),
    };
    let Some(s) = s.filter(|s| s.groups.contains_key(&a[2][..])) else {
        return keep(nogroup_key(&a[1], &a[2]));
    };
    let mut new = s.clone();
    let min_idle = min_idle.max(0) as u64;
    let done = new.auto_claim(&a[2], &a[3], (min_idle, start, count, justid), now);
    start = done.next;
    let reply = Frame::Array(vec![
        id_frame(start),
        claimed_frame(&done.claimed),
        Frame::Array(done.deleted.iter().map(|id| id_frame(*id)).collect()),
    ]);
    (write_if_changed(Some(s), new, found), reply)
}

/// What one XREADGROUP key asks: new entries (`>`) or the consumer's history after an ID.
#[derive(Clone, Copy)]
enum Want {
    New,
    After(StreamId),
}

/// XREADGROUP's checks of one key, in Redis's order: its type, the group, then the ID.
fn read_group_check<'a>(
    found: Option<&'a TypedFound>,
    key: &[u8],
    group: &[u8],
    id: &[u8],
) -> Result<(&'a Stream, Want), Frame> {
    let Some(s) = as_stream(found)?.filter(|s| s.groups.contains_key(group)) else {
        return Err(Frame::error(format!(
            "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
            lossy(key),
            lossy(group)
        )));
    };
    if id == b"$" {
        return Err(Frame::error(
            "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the \
             history of this consumer by specifying a proper ID, or use the > ID to get new \
             messages. The $ ID would just return an empty result set.",
        ));
    }
    if id == b">" {
        return Ok((s, Want::New));
    }
    // Redis marks `>` as the largest ID, so that ID given explicitly reads new entries too.
    match strict_id(id)? {
        StreamId::MAX => Ok((s, Want::New)),
        id => Ok((s, Want::After(id))),
    }
}

impl GroupCmd {
    pub fn access(&self) -> Access<'_> {
        match self {
            GroupCmd::XGroup { key, .. } | GroupCmd::Keyed { key, .. } => Access {
                reads: vec![],
                writes: vec![&key[..]],
            },
            GroupCmd::ReadGroup { keys, .. } => Access {
                reads: vec![],
                writes: keys.iter().map(|k| &k[..]).collect(),
            },
            GroupCmd::Pending { key, .. }
            | GroupCmd::InfoGroups(key)
            | GroupCmd::InfoConsumers { key, .. }
            | GroupCmd::InfoFull { key, .. } => Access {
                reads: vec![&key[..]],
                writes: vec![],
            },
        }
    }

    pub async fn apply(self, store: &VersionedStore, level: Consistency) -> Frame {
        let read = |key: Bytes| async move {
            store
                .get_typed(&key, level, TypedWanted::Full)
                .await
                .map_err(store_error)
        };
        // Redis reads the clock once per command.
        let now = now_ms();
        match self {
            GroupCmd::XGroup { key, args } => reply(
                store
                    .read_modify_write_typed(&key, level, |found| xgroup(&args, found, now))
                    .await,
            ),
            GroupCmd::Keyed { what, key, args } => reply(
                store
                    .read_modify_write_typed(&key, level, |found| match what {
                        Keyed::Ack => xack(&args, found),
                        Keyed::Claim => xclaim(&args, found, now),
                        Keyed::AutoClaim => xautoclaim(&args, found, now),
                    })
                    .await,
            ),
            GroupCmd::ReadGroup {
                group,
                consumer,
                count,
                noack,
                keys,
                ids,
            } => {
                read_group(
                    store,
                    level,
                    (&group, &consumer, count, noack),
                    &keys,
                    &ids,
                    now,
                )
                .await
            }
            GroupCmd::Pending { key, group, range } => match read(key.clone()).await {
                Err(e) => e,
                Ok(found) => match as_stream(found.as_ref()) {
                    Err(e) => e,
                    Ok(s) => match s.and_then(|s| s.groups.get(&group[..]).map(|g| (s, g))) {
                        None => nogroup_key(&key, &group),
                        Some((_, g)) => xpending(g, range.as_ref(), now),
                    },
                },
            },
            GroupCmd::InfoGroups(key) => match read(key).await {
                Err(e) => e,
                Ok(found) => match as_stream(found.as_ref()) {
                    Err(e) => e,
                    Ok(None) => Frame::error("ERR no such key"),
                    Ok(Some(s)) => info_groups(s),
                },
            },
            GroupCmd::InfoConsumers { key, group } => match read(key.clone()).await {
                Err(e) => e,
                Ok(found) => match as_stream(found.as_ref()) {
                    Err(e) => e,
                    Ok(None) => Frame::error("ERR no such key"),
                    Ok(Some(s)) => match s.groups.get(&group[..]) {
                        None => nogroup_for_key(&key, &group),
                        Some(g) => info_consumers(g, now),
                    },
                },
            },
            GroupCmd::InfoFull { key, args } => match read(key).await {
                Err(e) => e,
                Ok(found) => match as_stream(found.as_ref()) {
                    Err(e) => e,
                    Ok(None) => Frame::error("ERR no such key"),
                    Ok(Some(s)) => info_full(&args, s),
                },
            },
        }
    }
}

/// XREADGROUP: with several keys, every key is checked first (one read each), as Redis checks
/// them all before it serves any; then each key is served by its own read-modify-write, in
/// order, which checks it again. Keys are not changed atomically together (each one is, whole).
async fn read_group(
    store: &VersionedStore,
    level: Consistency,
    (group, consumer, count, noack): (&Bytes, &Bytes, u64, bool),
    keys: &[Bytes],
    ids: &[Bytes],
    now: u64,
) -> Frame {
    if keys.len() > 1 {
        let reads = futures::future::join_all(
            keys.iter()
                .map(|k| store.get_typed(k, level, TypedWanted::Full)),
        )
        .await;
        for ((found, key), id) in reads.into_iter().zip(keys).zip(ids) {
            let found = match found {
                Ok(f) => f,
                Err(e) => return store_error(e),
            };
            if let Err(e) = read_group_check(found.as_ref(), key, group, id) {
                return e;
            }
        }
    }
    let limit = usize::try_from(count).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for (key, id) in keys.iter().zip(ids) {
        let served = store
            .read_modify_write_typed(key, level, |found| {
                let (s, want) = match read_group_check(found, key, group, id) {
                    Ok(checked) => checked,
                    Err(e) => return (TypedChange::Keep, Err(e)),
                };
                let mut new = s.clone();
                let items = match want {
                    Want::New => {
                        let got = new.read_new(group, consumer, limit, noack, now);
                        if got.is_empty() {
                            return (TypedChange::Keep, Ok(None));
                        }
                        got.iter().map(entry_frame).collect()
                    }
                    Want::After(after) => new
                        .read_history(group, consumer, after, limit, now)
                        .into_iter()
                        .map(|(id, e)| match e {
                            Some(e) => entry_frame(&e),
                            None => Frame::Array(vec![id_frame(id), Frame::NullArray]),
                        })
                        .collect(),
                };
                (
                    write_if_changed(Some(s), new, found),
                    Ok(Some(Frame::Array(items))),
                )
            })
            .await;
        match served {
            Err(e) => return store_error(e),
            Ok(Err(e)) => return e,
            Ok(Ok(None)) => {}
            Ok(Ok(Some(items))) => out.push((Frame::bulk(key.clone()), items)),
        }
    }
    if out.is_empty() {
        Frame::NullArray
    } else {
        Frame::KeyedArrays(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{args, err};
    use super::*;

    #[test]
    fn xreadgroup_options_fail_in_redis_order() {
        assert_eq!(
            err(parse_xreadgroup(&args("xreadgroup count 1 streams s >"))),
            "ERR Missing GROUP option for XREADGROUP"
        );
        assert_eq!(
            err(parse_xreadgroup(&args(
                "xreadgroup group g c streams s s >"
            ))),
            "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be \
             specified."
        );
        assert!(
            err(parse_xreadgroup(&args(
                "xreadgroup group g c block 0 streams s >"
            )))
            .starts_with("ERR blocking stream reads are not supported by quorumd")
        );
        assert_eq!(
            err(parse_xreadgroup(&args(
                "xreadgroup group g c noack streams s >"
            ))),
            "ok"
        );
    }

    #[test]
    fn xgroup_and_xpending_check_arity_and_range_first() {
        assert_eq!(
            err(parse_xgroup(&args("xgroup create s g"))),
            "ERR wrong number of arguments for 'xgroup|create' command"
        );
        assert_eq!(
            err(parse_xgroup(&args("xgroup set s g 0"))),
            "ERR unknown subcommand 'set'. Try XGROUP HELP."
        );
        assert!(matches!(
            parse_xgroup(&args("xgroup help")),
            Err(Frame::Array(_))
        ));
        assert_eq!(
            err(parse_xpending(&args("xpending s g - +"))),
            "ERR syntax error"
        );
        assert_eq!(
            err(parse_xpending(&args("xpending s g idle 1 - +"))),
            "ERR syntax error"
        );
        assert_eq!(
            err(parse_xpending(&args(
                "xpending s g (18446744073709551615-18446744073709551615 + 1"
            ))),
            "ERR invalid start ID for the interval"
        );
        assert_eq!(
            err(parse_xpending(&args("xpending s g - + 5 c extra"))),
            "ok"
        );
    }
}
