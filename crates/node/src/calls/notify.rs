//! Keyspace notifications: turning them on (`CONFIG SET notify-keyspace-events`) and
//! subscribing to the keyspace channels of the node's database, so that changes made on the
//! node outside quorumd are seen as they happen.
//!
//! The subscription is to keyspace channels (`__keyspace@{db}__:{key}`, the event in the
//! message) rather than key-event channels, because their patterns can leave quorumd's own keys
//! out on the node: every write of quorumd changes three keys under the reserved prefix
//! (metadata and two digest levels) beside the value, and those events are not even sent.
//!
//! The same connection subscribes to the channel on which quorumd's writing scripts announce
//! their writes of user keys (`begin` before the first, `end` after the last; `lua/shared/
//! own.lua`). A script runs atomically and one connection's messages arrive in the order the
//! node sent them, so the key events between a `begin` and its `end` were caused by quorumd
//! and need no verification ([`OwnWrites`]).

use crate::pool::{EventSource, Node, NodeError, Traffic};
use futures::{Stream, StreamExt, future};

/// The event classes live detection needs: keyspace events (`K`) of generic commands, strings,
/// lists, sets, hashes, sorted sets, streams, expiries and evictions (`g$lshzxte`).
const NEEDED: &str = "Kg$lshzxte";

/// The flags to set so that `current` also carries every class in [`NEEDED`]; `None` when it
/// already does. `A` in `current` stands for `g$lshzxet`.
pub fn missing_flags(current: &str) -> Option<String> {
    let has = |c: char| current.contains(c) || ("g$lshzxet".contains(c) && current.contains('A'));
    let missing: String = NEEDED.chars().filter(|c| !has(*c)).collect();
    (!missing.is_empty()).then(|| format!("{current}{missing}"))
}

/// Turns on the event classes live detection needs, keeping those already on. Returns whether
/// the configuration was changed. Fails when the node refuses `CONFIG` (renamed, or denied by
/// an ACL).
pub async fn enable(node: &Node, source: &EventSource) -> Result<bool, NodeError> {
    let mut get = redis::cmd("CONFIG");
    get.arg("GET").arg("notify-keyspace-events");
    let reply: Vec<String> = node.query_source(source, get).await?;
    let current = reply.get(1).cloned().unwrap_or_default();
    let Some(flags) = missing_flags(&current) else {
        return Ok(false);
    };
    let mut set = redis::cmd("CONFIG");
    set.arg("SET").arg("notify-keyspace-events").arg(flags);
    node.query_source::<()>(source, set).await?;
    Ok(true)
}

/// One key event: the event name (`set`, `del`, `expire`, ...) and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    pub event: String,
    pub key: Vec<u8>,
}

/// What a subscription delivers: a key event, or a mark of a script's writes of user keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Key(KeyEvent),
    /// A script of quorumd is about to write user keys: the key events up to its `OwnEnd` are
    /// its own.
    OwnBegin,
    /// That script has written its last user key.
    OwnEnd,
}

/// What [`OwnWrites::hear`] made of a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A mark: nothing to verify.
    Mark,
    /// A key event inside a `begin`/`end` pair: a write of quorumd's (any instance).
    Own(KeyEvent),
    /// A key event outside any pair: maybe a direct change, to be verified.
    Unmarked(KeyEvent),
}

/// Tells quorumd's own writes from others in one subscription's notices, in their order.
/// Start a new one for every subscription: a connection that dropped between a `begin` and its
/// `end` must not leave the next one inside a pair. Correctness never depends on the marks:
/// an unmarked event of quorumd's is only verified for nothing.
#[derive(Debug, Default)]
pub struct OwnWrites {
    inside: bool,
}

impl OwnWrites {
    pub fn new() -> OwnWrites {
        OwnWrites::default()
    }

    pub fn hear(&mut self, notice: Notice) -> Heard {
        match notice {
            Notice::OwnBegin => {
                self.inside = true;
                Heard::Mark
            }
            // An `end` without its `begin` (subscribed in between) closes nothing: fine.
            Notice::OwnEnd => {
                self.inside = false;
                Heard::Mark
            }
            Notice::Key(e) if self.inside => Heard::Own(e),
            Notice::Key(e) => Heard::Unmarked(e),
        }
    }
}

/// The channel patterns and exact channels that name every key of database `db` except those
/// under `prefix`: for each position i of the prefix, the keys that share its first i bytes and
/// differ at byte i, plus the proper prefixes themselves as whole keys.
pub fn channels_outside(db: i64, prefix: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let base = format!("__keyspace@{db}__:").into_bytes();
    let mut patterns = Vec::new();
    let mut exact = Vec::new();
    for i in 0..prefix.len() {
        let mut head = base.clone();
        head.extend(escape_glob(&prefix[..i]));
        exact.push([base.as_slice(), &prefix[..i]].concat());
        let mut pattern = head;
        pattern.extend_from_slice(b"[^");
        if matches!(prefix[i], b']' | b'\\' | b'^' | b'-') {
            pattern.push(b'\\');
        }
        pattern.push(prefix[i]);
        pattern.extend_from_slice(b"]*");
        patterns.push(pattern);
    }
    if prefix.is_empty() {
        patterns.push([base.as_slice(), b"*"].concat());
    }
    (patterns, exact)
}

pub(crate) fn escape_glob(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// Subscribes, on `source`, to the keyspace channels of every key of the node's database
/// outside `prefix`, to that of `probe` (a key under the prefix whose events show that
/// notifications arrive), and to `own` (where quorumd's scripts announce their writes; `""`:
/// not). The stream ends when the connection drops.
pub async fn subscribe(
    node: &Node,
    source: &EventSource,
    prefix: &str,
    probe: &str,
    own: &str,
) -> Result<impl Stream<Item = Notice> + Send + use<>, NodeError> {
    let mut pubsub = node.subscriber(source).await?;
    let failed = |e: redis::RedisError| NodeError::Connection(e.to_string());
    let (mut patterns, mut exact) = channels_outside(node.db(), prefix.as_bytes());
    exact.push(format!("__keyspace@{}__:{probe}", node.db()).into_bytes());
    // On a cluster's master the announcements carry their slot's tag (`own{tag}`), one
    // channel per slot: a pattern takes them all, and `announcement` keeps this master's.
    let own_pattern = !own.is_empty() && matches!(source, EventSource::Master { .. });
    if own_pattern {
        patterns.push([escape_glob(own.as_bytes()), b"{*}".to_vec()].concat());
    } else if !own.is_empty() {
        exact.push(own.as_bytes().to_vec());
    }
    let base_len = format!("__keyspace@{}__:", node.db()).len();
    let own = own.as_bytes().to_vec();
    let source = source.clone();
    pubsub.psubscribe(patterns).await.map_err(failed)?;
    pubsub.subscribe(exact).await.map_err(failed)?;
    Ok(pubsub.into_on_message().filter_map(move |msg| {
        let channel: Vec<u8> = msg.get_channel().unwrap_or_default();
        let payload = msg.get_payload_bytes();
        let announced = if own_pattern {
            msg.from_pattern() && channel.starts_with(&own) && channel.get(own.len()) == Some(&b'{')
        } else {
            !own.is_empty() && !msg.from_pattern() && channel == own
        };
        let notice = if announced {
            announcement(&source, &channel, payload)
        } else {
            Some(Notice::Key(KeyEvent {
                event: String::from_utf8_lossy(payload).into_owned(),
                key: channel.get(base_len..).unwrap_or_default().to_vec(),
            }))
        };
        future::ready(notice)
    }))
}

/// An announcement heard by `source` on `channel`: a mark if it came from `source`'s own
/// scripts, `None` otherwise (another master's, relayed over the cluster bus, out of order with
/// this master's key events; or not a mark at all).
fn announcement(source: &EventSource, channel: &[u8], payload: &[u8]) -> Option<Notice> {
    // On a cluster the channel's tag names the slot.
    if matches!(source, EventSource::Master { .. })
        && !source.owns(quorumd_core::layout::key_slot(channel) as u16)
    {
        return None;
    }
    match payload {
        b"begin" => Some(Notice::OwnBegin),
        b"end" => Some(Notice::OwnEnd),
        _ => None,
    }
}

/// Writes the probe key whose notification shows that events reach the subscriber.
pub async fn probe(node: &Node, key: &str, token: &str) -> Result<(), NodeError> {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(token).arg("PX").arg(60_000);
    node.run_as(Traffic::Background, |mut c| async move {
        cmd.query_async::<()>(&mut c).await
    })
    .await
}

/// Deletes the probe key once its event arrived: on a cluster there is one per master, and
/// `DBSIZE` would count them while they last.
pub async fn clear_probe(node: &Node, key: &str) -> Result<(), NodeError> {
    let mut cmd = redis::cmd("DEL");
    cmd.arg(key);
    node.run_as(Traffic::Background, |mut c| async move {
        cmd.query_async::<()>(&mut c).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_classes_are_added() {
        assert_eq!(missing_flags("").as_deref(), Some("Kg$lshzxte"));
        assert_eq!(missing_flags("KEA"), None);
        assert_eq!(missing_flags("AK"), None);
        assert_eq!(missing_flags("Kx").as_deref(), Some("Kxg$lshzte"));
        assert_eq!(missing_flags("EA").as_deref(), Some("EAK"));
    }

    fn key(k: &str) -> Notice {
        Notice::Key(KeyEvent {
            event: "set".into(),
            key: k.as_bytes().to_vec(),
        })
    }

    /// Which of `notices` a subscriber would verify.
    fn unmarked(notices: Vec<Notice>) -> Vec<Vec<u8>> {
        let mut own = OwnWrites::new();
        notices
            .into_iter()
            .filter_map(|n| match own.hear(n) {
                Heard::Unmarked(e) => Some(e.key),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn only_the_events_between_a_begin_and_its_end_are_quorumds_own() {
        let heard = unmarked(vec![
            key("before"),
            Notice::OwnBegin,
            key("own1"),
            key("own2"),
            Notice::OwnEnd,
            key("direct"),
            Notice::OwnBegin,
            Notice::OwnEnd,
            key("after"),
        ]);
        assert_eq!(heard, [&b"before"[..], b"direct", b"after"]);
    }

    /// The negative control: a burst of quorumd's writes without marks is all verified, which
    /// is what the marks save (and what `tests/direct.rs` measures with the marks ignored).
    #[test]
    fn without_marks_every_event_is_verified() {
        let burst: Vec<Notice> = (0..100).map(|i| key(&format!("k{i}"))).collect();
        assert_eq!(unmarked(burst.clone()).len(), 100);
        let mut marked = Vec::new();
        for n in burst {
            marked.extend([Notice::OwnBegin, n, Notice::OwnEnd]);
        }
        assert!(unmarked(marked).is_empty());
    }

    #[test]
    fn a_new_subscription_starts_outside_any_pair() {
        let mut dropped = OwnWrites::new();
        // The connection dropped after a `begin`: its `end` never comes.
        assert_eq!(dropped.hear(Notice::OwnBegin), Heard::Mark);
        assert!(matches!(dropped.hear(key("own")), Heard::Own(_)));
        // The next subscription's state is a new one, and an `end` whose `begin` it missed
        // (it subscribed in between) leaves it outside.
        assert_eq!(
            unmarked(vec![key("a"), Notice::OwnEnd, key("b")]),
            [&b"a"[..], b"b"]
        );
    }

    #[test]
    fn a_master_heeds_only_the_announcements_of_its_own_slots() {
        let tag = |slot: u32| format!("qd:own{{{}}}", quorumd_core::layout::slot_tag(slot));
        let master = EventSource::Master {
            addr: "m:1".into(),
            slots: vec![(0, 99), (200, 299)],
        };
        for slot in [0, 99, 250] {
            let heard = announcement(&master, tag(slot).as_bytes(), b"begin");
            assert_eq!(heard, Some(Notice::OwnBegin), "slot {slot}");
        }
        // Another master's, relayed by the cluster bus: ignored, else its `begin` would make
        // this master's direct writes look like quorumd's own.
        for slot in [100, 199, 300, 16383] {
            assert_eq!(announcement(&master, tag(slot).as_bytes(), b"begin"), None);
        }
        assert_eq!(announcement(&master, tag(5).as_bytes(), b"other"), None);
        // A server has one channel and heeds everything on it.
        assert_eq!(
            announcement(&EventSource::Server, b"qd:own", b"end"),
            Some(Notice::OwnEnd)
        );
    }

    #[test]
    fn the_channels_outside_a_prefix_leave_exactly_its_keys_out() {
        let (patterns, exact) = channels_outside(0, b"qd:");
        assert_eq!(
            patterns,
            [
                &b"__keyspace@0__:[^q]*"[..],
                b"__keyspace@0__:q[^d]*",
                b"__keyspace@0__:qd[^:]*"
            ]
        );
        assert_eq!(
            exact,
            [
                &b"__keyspace@0__:"[..],
                b"__keyspace@0__:q",
                b"__keyspace@0__:qd"
            ]
        );
        let (patterns, _) = channels_outside(3, b"a*]");
        assert_eq!(patterns[2], b"__keyspace@3__:a\\*[^\\]]*");
    }
}
