//! The consumer-group replies that only read: XPENDING's two forms, XINFO GROUPS, XINFO
//! CONSUMERS and XINFO STREAM FULL, as redis-server 7.0 answers them. Idle times are
//! quorumd's clock minus the times stored in the groups.

use super::groups::{PendingRange, subcommand_syntax};
use super::{entry_frame, id_frame, info_head};
use crate::resp::command::{eq, int_arg};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::stream::{Group, NO_ENTRIES_READ, Stream, StreamId};

fn text(t: &str) -> Frame {
    Frame::bulk(t.to_string())
}

/// XPENDING's two forms, on a stream read.
pub(super) fn xpending(group: &Group, range: Option<&PendingRange>, now: u64) -> Frame {
    let Some(r) = range else {
        let (Some((first, _)), Some((last, _))) = (
            group.pending.first_key_value(),
            group.pending.last_key_value(),
        ) else {
            return Frame::Array(vec![
                Frame::Integer(0),
                Frame::Null,
                Frame::Null,
                Frame::NullArray,
            ]);
        };
        let owners = group
            .consumers
            .keys()
            .filter_map(|name| {
                let n = group.pending_of(name).count();
                (n > 0).then(|| Frame::Array(vec![Frame::bulk(name.clone()), text(&n.to_string())]))
            })
            .collect();
        return Frame::Array(vec![
            Frame::Integer(group.pending.len() as i64),
            id_frame(*first),
            id_frame(*last),
            Frame::Array(owners),
        ]);
    };
    if let Some(c) = &r.consumer
        && !group.consumers.contains_key(&c[..])
    {
        return Frame::Array(vec![]);
    }
    let mut out = Vec::new();
    if r.start <= r.end {
        for (id, p) in group.pending.range(r.start..=r.end) {
            if out.len() as u64 >= r.count {
                break;
            }
            if r.consumer.as_ref().is_some_and(|c| c[..] != p.consumer[..]) {
                continue;
            }
            let idle = (now as i64 - p.delivery_time as i64).max(0);
            if r.min_idle != 0 && idle < r.min_idle {
                continue;
            }
            out.push(Frame::Array(vec![
                id_frame(*id),
                Frame::bulk(p.consumer.clone()),
                Frame::Integer(idle),
                Frame::Integer(p.delivery_count as i64),
            ]));
        }
    }
    Frame::Array(out)
}

pub(super) fn info_groups(s: &Stream) -> Frame {
    Frame::Array(
        s.groups
            .iter()
            .map(|(name, g)| {
                Frame::Map(vec![
                    (text("name"), Frame::bulk(name.clone())),
                    (text("consumers"), Frame::Integer(g.consumers.len() as i64)),
                    (text("pending"), Frame::Integer(g.pending.len() as i64)),
                    (text("last-delivered-id"), id_frame(g.last_id)),
                    (text("entries-read"), entries_read_frame(g)),
                    (text("lag"), s.lag(g).map_or(Frame::Null, Frame::Integer)),
                ])
            })
            .collect(),
    )
}

fn entries_read_frame(g: &Group) -> Frame {
    if g.entries_read == NO_ENTRIES_READ {
        Frame::Null
    } else {
        Frame::Integer(g.entries_read)
    }
}

pub(super) fn info_consumers(g: &Group, now: u64) -> Frame {
    Frame::Array(
        g.consumers
            .iter()
            .map(|(name, c)| {
                Frame::Map(vec![
                    (text("name"), Frame::bulk(name.clone())),
                    (
                        text("pending"),
                        Frame::Integer(g.pending_of(name).count() as i64),
                    ),
                    (
                        text("idle"),
                        Frame::Integer(now as i64 - c.seen_time as i64),
                    ),
                ])
            })
            .collect(),
    )
}

/// XINFO STREAM key FULL [COUNT n], the options checked after the key (`xinfoReplyWithStreamInfo`).
pub(super) fn info_full(a: &[Bytes], s: &Stream) -> Frame {
    let opts = &a[3..];
    let syntax = || subcommand_syntax(&a[1], "XINFO");
    if (opts.len() != 1 && opts.len() != 3) || !eq(&opts[0], "full") {
        return syntax();
    }
    let mut count = 10i64;
    if opts.len() == 3 {
        if !eq(&opts[1], "count") {
            return syntax();
        }
        count = match int_arg(&opts[2]) {
            Ok(n) if n < 0 => 10,
            Ok(n) => n,
            Err(e) => return e,
        };
    }
    let limit = if count == 0 {
        usize::MAX
    } else {
        usize::try_from(count).unwrap_or(usize::MAX)
    };
    let mut fields = info_head(s);
    fields.push((
        text("entries"),
        Frame::Array(s.entries.iter().take(limit).map(entry_frame).collect()),
    ));
    let groups = s
        .groups
        .iter()
        .map(|(name, g)| {
            let pel = g
                .pending
                .iter()
                .take(limit)
                .map(|(id, p)| {
                    Frame::Array(vec![
                        id_frame(*id),
                        Frame::bulk(p.consumer.clone()),
                        Frame::Integer(p.delivery_time as i64),
                        Frame::Integer(p.delivery_count as i64),
                    ])
                })
                .collect();
            let consumers = g
                .consumers
                .iter()
                .map(|(cname, c)| {
                    let own: Vec<StreamId> = g.pending_of(cname).collect();
                    let pending = own
                        .iter()
                        .take(limit)
                        .map(|id| {
                            let p = &g.pending[id];
                            Frame::Array(vec![
                                id_frame(*id),
                                Frame::Integer(p.delivery_time as i64),
                                Frame::Integer(p.delivery_count as i64),
                            ])
                        })
                        .collect();
                    Frame::Map(vec![
                        (text("name"), Frame::bulk(cname.clone())),
                        (text("seen-time"), Frame::Integer(c.seen_time as i64)),
                        (text("pel-count"), Frame::Integer(own.len() as i64)),
                        (text("pending"), Frame::Array(pending)),
                    ])
                })
                .collect();
            Frame::Map(vec![
                (text("name"), Frame::bulk(name.clone())),
                (text("last-delivered-id"), id_frame(g.last_id)),
                (text("entries-read"), entries_read_frame(g)),
                (text("lag"), s.lag(g).map_or(Frame::Null, Frame::Integer)),
                (text("pel-count"), Frame::Integer(g.pending.len() as i64)),
                (text("pending"), Frame::Array(pel)),
                (text("consumers"), Frame::Array(consumers)),
            ])
        })
        .collect();
    fields.push((text("groups"), Frame::Array(groups)));
    Frame::Map(fields)
}
