//! Typed reads: a key's metadata with its whole value of any type (strings, lists, hashes,
//! sets, sorted sets, streams), as read-modify-writes and typed commands need it.

use super::*;
use quorumd_core::stream::{Consumer, Entry, Group, NO_ENTRIES_READ, Pending, Stream, StreamId};

/// Reads metadata and the typed value (type, and the whole string or list where asked) for a
/// batch of keys; see `read_typed.lua`. `no-writes`, as READ.
const READ_TYPED_LUA: &str = concat!(
    "#!lua flags=no-writes\n",
    entry_lua!(),
    typed_read_lua!(),
    include_str!("../../../lua/store/read_typed.lua")
);

static READ_TYPED: LazyLock<Script> = LazyLock::new(|| Script::new(READ_TYPED_LUA));

/// A value as a typed read returns it. Not `Eq`: sorted-set scores are floats (never NaN).
#[derive(Debug, Clone, PartialEq)]
pub enum TypedValue {
    String(Vec<u8>),
    /// A list, head first.
    List(Vec<Vec<u8>>),
    /// A sorted set's members with their scores, in Redis's order (score, then member bytes).
    SortedSet(Vec<(Vec<u8>, f64)>),
    /// A hash's fields with their values, in the node's order.
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    /// A set's members, in the node's order.
    Set(Vec<Vec<u8>>),
    /// A stream: its entries with the IDs and counters it keeps beside them.
    Stream(Stream),
    /// A value whose contents were not read: another type, or any type in a type-only read.
    /// Holds the name `TYPE` answers.
    Only(String),
}

impl TypedValue {
    /// The name `TYPE` answers for this value.
    pub fn type_name(&self) -> &str {
        match self {
            TypedValue::String(_) => "string",
            TypedValue::List(_) => "list",
            TypedValue::SortedSet(_) => "zset",
            TypedValue::Hash(_) => "hash",
            TypedValue::Set(_) => "set",
            TypedValue::Stream(_) => "stream",
            TypedValue::Only(t) => t,
        }
    }

    /// The content checksum of a value whose contents were read.
    pub fn content(&self) -> Option<Content> {
        match self {
            TypedValue::String(v) => Some(Content::string(v)),
            TypedValue::List(items) => Some(Content::list(items.iter().map(Vec::as_slice))),
            TypedValue::Hash(fields) => Some(Content::hash(
                fields.iter().map(|(f, v)| (f.as_slice(), v.as_slice())),
            )),
            TypedValue::Set(members) => Some(Content::set(members.iter().map(Vec::as_slice))),
            TypedValue::SortedSet(members) => Some(Content::sorted_set(
                members.iter().map(|(m, s)| (m.as_slice(), *s)),
            )),
            TypedValue::Stream(stream) => Some(Content::stream(stream)),
            TypedValue::Only(_) => None,
        }
    }

    /// Whether this value is the one `content` records (a stream by the function of its
    /// letter); `None` for a value read by type only.
    pub fn matches(&self, content: &Content) -> Option<bool> {
        match self {
            TypedValue::Stream(stream) => Some(content.matches_stream(stream)),
            _ => self.content().map(|c| c == *content),
        }
    }
}

/// What a typed read asks of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypedWanted {
    /// The whole value of a string, a list (`LRANGE 0 -1`) or a sorted set (`ZRANGE 0 -1
    /// WITHSCORES`); other types by name only.
    Full,
    /// The type's name only (TYPE, EXISTS, TTL of a list): O(1) on the node.
    TypeOnly,
}

/// A node's answer to a typed read.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTypedRead {
    pub meta: Option<Meta>,
    pub value: Option<TypedValue>,
}

/// Reads metadata and typed values of a batch of keys from one node (`read_typed.lua`).
pub async fn read_typed(
    node: &Node,
    reads: &[(&KeyLocation, TypedWanted)],
) -> Result<Vec<NodeTypedRead>, NodeError> {
    if reads.is_empty() {
        return Ok(Vec::new());
    }
    let answers = node
        .per_slot(
            reads,
            |(loc, _)| &loc.key[..],
            |group| async move {
                let mut inv = READ_TYPED.prepare_invoke();
                for (loc, wanted) in &group {
                    inv.key(&loc.key[..]).key(&*loc.meta_key);
                    inv.arg(match wanted {
                        TypedWanted::Full => "f",
                        TypedWanted::TypeOnly => "y",
                    });
                }
                let reply: Value = node
                    .run(|mut c| async move { inv.invoke_async(&mut c).await })
                    .await?;
                let items = pairs(reply, "typed read", group.len())?;
                Ok(items
                    .chunks(2)
                    .map(|pair| {
                        Ok(NodeTypedRead {
                            meta: parse_meta(&pair[0])?,
                            value: parse_typed(&pair[1])?,
                        })
                    })
                    .collect())
            },
        )
        .await?;
    answers.into_iter().collect()
}

/// One value of `read_typed.lua`'s reply: false, or {type, contents...}.
pub(super) fn parse_typed(v: &Value) -> Result<Option<TypedValue>, NodeError> {
    let bad = || protocol(format!("typed read returned the value {v:?}"));
    let items = match v {
        Value::Nil | Value::Boolean(false) | Value::Int(0) => return Ok(None),
        Value::Array(items) => items,
        _ => return Err(bad()),
    };
    let bytes = |v: &Value| match v {
        Value::BulkString(b) => Ok(b.clone()),
        _ => Err(bad()),
    };
    let (first, rest) = items.split_first().ok_or_else(bad)?;
    let name = String::from_utf8(bytes(first)?).map_err(|_| bad())?;
    Ok(Some(match (name.as_str(), rest) {
        ("string", [value]) => TypedValue::String(bytes(value)?),
        ("list", elements) if !elements.is_empty() => {
            TypedValue::List(elements.iter().map(bytes).collect::<Result<_, _>>()?)
        }
        ("zset", pairs) if !pairs.is_empty() && pairs.len().is_multiple_of(2) => {
            TypedValue::SortedSet(
                pairs
                    .chunks(2)
                    .map(|p| Ok((bytes(&p[0])?, parse_score(&bytes(&p[1])?).ok_or_else(bad)?)))
                    .collect::<Result<_, _>>()?,
            )
        }
        ("hash", pairs) if !pairs.is_empty() && pairs.len().is_multiple_of(2) => TypedValue::Hash(
            pairs
                .chunks(2)
                .map(|p| Ok((bytes(&p[0])?, bytes(&p[1])?)))
                .collect::<Result<_, _>>()?,
        ),
        ("set", members) if !members.is_empty() => {
            TypedValue::Set(members.iter().map(bytes).collect::<Result<_, _>>()?)
        }
        ("stream", [last, max_deleted, added, entries @ ..]) => {
            let id = |v: &Value| StreamId::parse_plain(&bytes(v)?).ok_or_else(bad);
            let number = |v: &Value| {
                std::str::from_utf8(&bytes(v)?)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or_else(bad)
            };
            // Past 2^53 the counter reaches Lua as a double: read back rounded, and no higher
            // than Redis's `long long` can hold, so that the stream stays readable.
            let added = std::str::from_utf8(&bytes(added)?)
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|f| *f >= 0.0)
                .ok_or_else(bad)?;
            let mut stream = Stream {
                entries: Vec::new(),
                last_id: id(last)?,
                max_deleted: id(max_deleted)?,
                entries_added: (added as u64).min(i64::MAX as u64),
                groups: Default::default(),
            };
            let (groups, entries) = parse_groups(entries, &bytes).map_err(|()| bad())?;
            stream.groups = groups;
            let mut rest = entries;
            while let [entry_id, n, more @ ..] = rest {
                let n = usize::try_from(number(n)?).map_err(|_| bad())?;
                let pairs = more.get(..n.saturating_mul(2)).ok_or_else(bad)?;
                stream.entries.push(Entry {
                    id: id(entry_id)?,
                    fields: pairs
                        .chunks(2)
                        .map(|p| Ok((bytes(&p[0])?, bytes(&p[1])?)))
                        .collect::<Result<_, NodeError>>()?,
                });
                rest = &more[pairs.len()..];
            }
            if !rest.is_empty() {
                return Err(bad());
            }
            TypedValue::Stream(stream)
        }
        (_, []) => TypedValue::Only(name),
        _ => return Err(bad()),
    }))
}

/// The consumer groups of a typed read's stream (`typed_read.lua` describes the layout), and
/// what follows them (the entries).
#[allow(clippy::type_complexity)]
fn parse_groups<'a>(
    items: &'a [Value],
    bytes: &dyn Fn(&Value) -> Result<Vec<u8>, NodeError>,
) -> Result<(BTreeMap<Vec<u8>, Group>, &'a [Value]), ()> {
    let text = |v: &Value| bytes(v).map_err(|_| ());
    let number = |v: &Value| {
        let t = text(v)?;
        std::str::from_utf8(&t)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or(())
    };
    // Counters past 2^53 reach Lua as doubles: read back rounded (saturating at i64's ends),
    // not refused, so that the stream stays readable.
    let signed = |v: &Value| {
        let t = text(v)?;
        let t = std::str::from_utf8(&t).map_err(|_| ())?;
        t.parse::<i64>()
            .ok()
            .or_else(|| t.parse::<f64>().ok().map(|f| f as i64))
            .ok_or(())
    };
    let id = |v: &Value| StreamId::parse_plain(&text(v)?).ok_or(());
    let (count, mut rest) = items.split_first().ok_or(())?;
    let mut groups = BTreeMap::new();
    for _ in 0..number(count)? {
        let [name, last, read, pel, more @ ..] = rest else {
            return Err(());
        };
        let entries_read = if text(read)?.is_empty() {
            NO_ENTRIES_READ
        } else {
            signed(read)?
        };
        let mut g = Group::new(id(last)?, entries_read);
        rest = more;
        for _ in 0..number(pel)? {
            let [pid, consumer, time, deliveries, more @ ..] = rest else {
                return Err(());
            };
            g.pending.insert(
                id(pid)?,
                Pending {
                    consumer: text(consumer)?,
                    delivery_time: number(time)?,
                    // XINFO prints the count signed: past 2^63 it reads negative.
                    delivery_count: signed(deliveries)? as u64,
                },
            );
            rest = more;
        }
        let (consumers, more) = rest.split_first().ok_or(())?;
        rest = more;
        for _ in 0..number(consumers)? {
            let [cname, seen, more @ ..] = rest else {
                return Err(());
            };
            g.consumers.insert(
                text(cname)?,
                Consumer {
                    seen_time: number(seen)?,
                },
            );
            rest = more;
        }
        groups.insert(text(name)?, g);
    }
    Ok((groups, rest))
}

/// A score as the node printed it (`%.17g`, `inf`, `-inf`): that text parses back to the
/// exact double. NaN never comes from Redis and is refused.
fn parse_score(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|s| !s.is_nan())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_reads_back_with_its_entries_and_counters() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            b("stream"),
            b("9-9"),
            b("2-1"),
            b("12"),
            // One group: unknown entries-read, one pending entry, one consumer.
            b("1"),
            b("g"),
            b("1-1"),
            b(""),
            b("1"),
            b("1-1"),
            b("alice"),
            b("1700000000000"),
            b("2"),
            b("1"),
            b("alice"),
            b("1700000000001"),
            b("1-1"),
            b("2"),
            b("a"),
            b("1"),
            b("b"),
            b(""),
            b("3-1"),
            b("1"),
            b("c"),
            b("x"),
        ]);
        let Some(TypedValue::Stream(s)) = parse_typed(&reply).unwrap() else {
            panic!("not a stream");
        };
        assert_eq!(s.last_id, StreamId::new(9, 9));
        assert_eq!(s.max_deleted, StreamId::new(2, 1));
        assert_eq!(s.entries_added, 12);
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries[0].fields[1], (b"b".to_vec(), Vec::new()));
        let g = &s.groups[&b"g"[..]];
        assert_eq!(g.entries_read, NO_ENTRIES_READ);
        assert_eq!(g.pending[&StreamId::new(1, 1)].delivery_count, 2);
        assert_eq!(g.pending_of(b"alice").count(), 1);
        assert_eq!(g.consumers[&b"alice"[..]].seen_time, 1_700_000_000_001);
        // A type-only read names the type; a cut-short entry is refused, not a panic.
        let only = Value::Array(vec![b("stream")]);
        assert_eq!(
            parse_typed(&only).unwrap(),
            Some(TypedValue::Only("stream".into()))
        );
        let short = Value::Array(vec![
            b("stream"),
            b("1-1"),
            b("0-0"),
            b("1"),
            b("0"),
            b("1-1"),
            b("3"),
            b("a"),
        ]);
        assert!(parse_typed(&short).is_err());
        let bad = Value::Array(vec![b("stream"), b("x"), b("0-0"), b("1")]);
        assert!(parse_typed(&bad).is_err());
    }
}
