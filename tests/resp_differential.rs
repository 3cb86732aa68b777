//! Differential test of the Redis-protocol front end (issue 19): seeded random sequences of
//! supported commands, every group, error cases and edge values included, are sent to one
//! plain redis-server and to quorumd over three nodes, one client at a time, through the
//! `redis` crate's raw command interface. Every reply must be the same (values, types, error
//! texts), and so must every key's type, value and TTL at the end of each sequence.
//!
//! The few replies that may differ are listed in [`LEGIT`], with the reason, and nowhere else.
//!
//! A mismatch names the seed and the command's position; `DIFF_SEED=<seed>` replays that one
//! sequence (`DIFF_SEQUENCES=<n>` runs seeds `0..n`, `DIFF_COMMANDS=<n>` sets their length).

use quorumd::devcluster::DevCluster;
use quorumd_testkit::cluster::{TestCluster, direct};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use redis::aio::MultiplexedConnection;
use std::fmt;
use std::time::Instant;

/// Sequences per run and commands per sequence: 40 × 200 = 8,000 commands, 25 to 32 s in a
/// debug build on the 2-core test machine (200 sequences, 2 minutes, found two defects the
/// first 20 did not: run more with DIFF_SEQUENCES after changing a command).
const SEQUENCES: u64 = 40;
const COMMANDS: usize = 200;

// ---------------------------------------------------------------------------------------------
// The replies that legitimately differ, in one place.
// ---------------------------------------------------------------------------------------------

/// How the differ treats one class of replies that may legitimately differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// Compared as a multiset: Redis promises no order.
    Unordered,
    /// HGETALL: compared as a set of field-value pairs.
    UnorderedPairs,
    /// SSCAN and HSCAN: the same cursor, and the items (or field-value pairs) as a multiset.
    UnorderedScan { pairs: bool },
    /// A time to live or an expiry time: the same class (-2, -1, or a time), and times within
    /// the tolerance (the two servers compute "now" a few milliseconds apart).
    Ttl { tolerance: i64 },
    /// Server-side randomness: only the reply's shape is compared (nil, a bulk string, an
    /// array of the same length, the same error).
    Shape,
    /// Replies that carry times read from each server's clock: those fields are zeroed on
    /// both sides (see `without_times`), everything else is compared as it is.
    Times,
    /// Not generated: the command (or this use of it) would make the keyspaces diverge for
    /// a reason the table gives, so the generator never sends it.
    NotGenerated,
}

struct Legit {
    /// The commands (upper case) or the situation.
    what: &'static str,
    how: How,
    why: &'static str,
}

const LEGIT: &[Legit] = &[
    Legit {
        what: "SMEMBERS SINTER SUNION SDIFF HKEYS HVALS KEYS",
        how: How::Unordered,
        why: "Redis promises no order (quorumd answers in byte order, Redis in its encoding's)",
    },
    Legit {
        what: "HGETALL",
        how: How::UnorderedPairs,
        why: "Redis promises no order of the fields",
    },
    Legit {
        what: "SSCAN",
        how: How::UnorderedScan { pairs: false },
        why: "Redis promises no order of the members a step returns (both answer a small set \
              in one step, cursor 0)",
    },
    Legit {
        what: "HSCAN",
        how: How::UnorderedScan { pairs: true },
        why: "Redis promises no order of the fields a step returns",
    },
    Legit {
        what: "TTL EXPIRETIME",
        how: How::Ttl { tolerance: 2 },
        why: "the countdown: each server reads its clock at its own moment (seconds, rounded)",
    },
    Legit {
        what: "PTTL PEXPIRETIME",
        how: How::Ttl { tolerance: 2_000 },
        why: "the countdown, in milliseconds; quorumd's command takes a few ms more",
    },
    Legit {
        what: "XPENDING XINFO",
        how: How::Times,
        why: "consumer groups' times: XPENDING's idle times, XINFO CONSUMERS' idle times, XINFO \
              STREAM FULL's delivery and seen times are each server's clock; minimum idle \
              times sent are 0 or an hour and IDLE sets two hours (or an edge value), so which \
              entries qualify does not depend on when each server runs the command",
    },
    Legit {
        what: "ZRANDMEMBER SRANDMEMBER HRANDFIELD",
        how: How::Shape,
        why: "server-side randomness",
    },
    Legit {
        what: "GEO-UNSORTED",
        how: How::Unordered,
        why: "GEOSEARCH, GEORADIUS and their kin without ASC or DESC, or with ANY: Redis \
              promises no order (quorumd answers in redis-server's, area by area, but only \
              the members found are promised); see `compared_as`",
    },
    Legit {
        what: "SORT-UNORDERED",
        how: How::Unordered,
        why: "SORT and SORT_RO in an order Redis leaves to its encoding: `BY nosort` on a set \
              (its hash order; quorumd answers the nodes' order), or ALPHA by a pattern whose \
              values tie (those keep the order they were read in, a set's hash order). Never \
              with LIMIT or STORE (the generator sends neither there); see `compared_as`",
    },
    Legit {
        what: "SPOP",
        how: How::Unordered,
        why: "server-side randomness: only counts that pop the whole set (or fail) are sent, \
              so the members popped are known, not their order",
    },
    Legit {
        what: "SPOP without a count or with a count below the set's size, RANDOMKEY SCAN DBSIZE \
               INFO TIME HELLO CLIENT",
        how: How::NotGenerated,
        why: "randomness, a cursor or a server detail (SCAN's cursor, DBSIZE is approximate \
              and up to a second old in quorumd, INFO and HELLO describe the server); \
              covered by tests/resp/ and tests/resp_keyspace.rs",
    },
    Legit {
        what: "SSCAN and HSCAN with a cursor other than 0",
        how: How::NotGenerated,
        why: "a cursor is the server's own: a client sends back only what it answered, and \
              quorumd answers 0 at once (the whole set) where redis-server 7.0 walks a set's \
              hash table by its seeded hash",
    },
    Legit {
        what: "XADD with the ID `*`",
        how: How::NotGenerated,
        why: "each server takes the ID from its own clock; tests/resp/ checks such IDs by \
              shape and order",
    },
    Legit {
        what: "BLPOP BRPOP BLMOVE BZPOPMIN... (blocking)",
        how: How::NotGenerated,
        why: "a pop on an empty key waits (forever with a 0 timeout), so the generator emits \
              none; tests/resp/ compares their replies with redis-server's",
    },
    Legit {
        what: "expiry times between 1 ms and 100 s from now",
        how: How::NotGenerated,
        why: "the key would expire on one server and not yet on the other between two \
              commands; expiries are in the past (immediate) or at least 100,000 s away",
    },
];

fn legit_how(name: &str) -> Option<How> {
    LEGIT
        .iter()
        .find(|l| l.how != How::NotGenerated && l.what.split(' ').any(|w| w == name))
        .map(|l| l.how)
}

/// The name a command's reply is compared under: its own, but `GEO-UNSORTED` for a geo
/// search whose order Redis leaves unspecified (neither ASC nor DESC, or ANY).
fn compared_as(cmd: &Cmd) -> String {
    let name = cmd.name();
    let search = [
        "GEOSEARCH",
        "GEORADIUS",
        "GEORADIUS_RO",
        "GEORADIUSBYMEMBER",
        "GEORADIUSBYMEMBER_RO",
    ];
    let has = |word: &str| {
        cmd.args[1..]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    };
    if search.contains(&name.as_str()) && (has("any") || !(has("asc") || has("desc"))) {
        return "GEO-UNSORTED".into();
    }
    if name == "SORT" || name == "SORT_RO" {
        let by = cmd
            .args
            .windows(2)
            .rfind(|w| w[0].eq_ignore_ascii_case(b"by"))
            .map(|w| w[1].contains(&b'*'));
        let own_order = by == Some(false) && !has("store") || by == Some(true) && has("alpha");
        if own_order {
            return "SORT-UNORDERED".into();
        }
    }
    name
}

// ---------------------------------------------------------------------------------------------
// Replies.
// ---------------------------------------------------------------------------------------------

/// A reply in a comparable form (RESP2: the connections never switch to RESP3).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Reply {
    Nil,
    Int(i64),
    Bulk(Vec<u8>),
    Status(String),
    Error(String),
    Array(Vec<Reply>),
    /// RESP3 only: a double (as the crate parsed it), a map (its pairs, flat).
    Double(String),
    Map(Vec<Reply>),
    /// Anything else the crate returns.
    Other(String),
}

impl Reply {
    fn from_value(v: redis::Value) -> Reply {
        use redis::Value as V;
        match v {
            V::Nil => Reply::Nil,
            V::Int(i) => Reply::Int(i),
            V::BulkString(b) => Reply::Bulk(b),
            V::SimpleString(s) => Reply::Status(s),
            V::Okay => Reply::Status("OK".into()),
            V::Array(items) | V::Set(items) => {
                Reply::Array(items.into_iter().map(Reply::from_value).collect())
            }
            V::ServerError(e) => Reply::Error(error_text(e.code(), e.details())),
            V::Double(d) => Reply::Double(d.to_string()),
            V::Map(pairs) => Reply::Map(
                pairs
                    .into_iter()
                    .flat_map(|(k, v)| [Reply::from_value(k), Reply::from_value(v)])
                    .collect(),
            ),
            other => Reply::Other(format!("{other:?}")),
        }
    }

    fn from_result(r: redis::RedisResult<redis::Value>) -> Reply {
        match r {
            Ok(v) => Reply::from_value(v),
            Err(e) => match e.code() {
                Some(code) => Reply::Error(error_text(code, e.detail())),
                None => Reply::Other(format!("client error: {e}")),
            },
        }
    }
}

fn error_text(code: &str, detail: Option<&str>) -> String {
    match detail {
        Some(d) => format!("{code} {d}"),
        None => code.to_string(),
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Nil => write!(f, "(nil)"),
            Reply::Int(i) => write!(f, "(integer) {i}"),
            Reply::Bulk(b) => write!(f, "\"{}\"", b.escape_ascii()),
            Reply::Status(s) => write!(f, "+{s}"),
            Reply::Error(e) => write!(f, "-{e}"),
            Reply::Array(items) => f.debug_list().entries(items).finish(),
            Reply::Double(d) => write!(f, "(double) {d}"),
            Reply::Map(items) => write!(f, "(map) {items:?}"),
            Reply::Other(s) => write!(f, "?{s}"),
        }
    }
}

/// Whether `ours` and `theirs` agree for command `name`, applying [`LEGIT`].
fn same(name: &str, ours: &Reply, theirs: &Reply) -> bool {
    match (legit_how(name), ours, theirs) {
        (Some(How::Unordered), Reply::Array(a), Reply::Array(b)) => sorted(a) == sorted(b),
        (
            Some(How::UnorderedPairs),
            Reply::Array(a) | Reply::Map(a),
            Reply::Array(b) | Reply::Map(b),
        ) if std::mem::discriminant(ours) == std::mem::discriminant(theirs) => {
            let pairs = |v: &[Reply]| {
                let mut p: Vec<Vec<Reply>> = v.chunks(2).map(<[Reply]>::to_vec).collect();
                p.sort();
                p
            };
            pairs(a) == pairs(b)
        }
        (Some(How::UnorderedScan { pairs }), Reply::Array(a), Reply::Array(b)) => {
            match (&a[..], &b[..]) {
                ([c1, Reply::Array(x)], [c2, Reply::Array(y)]) if c1 == c2 => {
                    let items = |v: &[Reply]| {
                        let mut p: Vec<Vec<Reply>> = v
                            .chunks(if pairs { 2 } else { 1 })
                            .map(<[Reply]>::to_vec)
                            .collect();
                        p.sort();
                        p
                    };
                    items(x) == items(y)
                }
                _ => a == b,
            }
        }
        (Some(How::Ttl { tolerance }), Reply::Int(a), Reply::Int(b)) => {
            a == b || (*a >= 0 && *b >= 0 && (a - b).abs() <= tolerance)
        }
        (Some(How::Times), a, b) => without_times(name, a) == without_times(name, b),
        (Some(How::Shape), a, b) => match (a, b) {
            (Reply::Bulk(_), Reply::Bulk(_)) => true,
            (Reply::Array(x), Reply::Array(y)) => x.len() == y.len(),
            (a, b) => a == b,
        },
        (_, a, b) => a == b,
    }
}

/// A reply with its time fields zeroed: XPENDING's idle times ([id, consumer, idle, count]
/// entries), and in XINFO replies (flat in RESP2, maps in RESP3, at any depth) the values of
/// `idle` and `seen-time` and the times in `pending` lists ([id, consumer, delivery-time,
/// count] for a group, [id, delivery-time, count] for a consumer).
fn without_times(name: &str, r: &Reply) -> Reply {
    let zero_at = |v: &[Reply], at: usize| {
        let mut v = v.to_vec();
        v[at] = Reply::Int(0);
        Reply::Array(v)
    };
    match r {
        Reply::Array(items) if name == "XPENDING" => Reply::Array(
            items
                .iter()
                .map(|e| match e {
                    Reply::Array(v) if v.len() == 4 && matches!(v[2], Reply::Int(_)) => {
                        zero_at(v, 2)
                    }
                    other => other.clone(),
                })
                .collect(),
        ),
        Reply::Array(items) | Reply::Map(items) if name == "XINFO" => {
            let mut out = Vec::with_capacity(items.len());
            let mut field = None;
            for item in items {
                let zeroed = match (field.take(), item) {
                    (Some("idle" | "seen-time"), Reply::Int(_)) => Reply::Int(0),
                    (Some("pending"), Reply::Array(entries)) => Reply::Array(
                        entries
                            .iter()
                            .map(|e| match e {
                                Reply::Array(p) if p.len() == 4 => zero_at(p, 2),
                                Reply::Array(p) if p.len() == 3 => zero_at(p, 1),
                                other => other.clone(),
                            })
                            .collect(),
                    ),
                    (_, other) => without_times(name, other),
                };
                field = match item {
                    Reply::Bulk(b) if b == b"idle" => Some("idle"),
                    Reply::Bulk(b) if b == b"seen-time" => Some("seen-time"),
                    Reply::Bulk(b) if b == b"pending" => Some("pending"),
                    _ => None,
                };
                out.push(zeroed);
            }
            match r {
                Reply::Map(_) => Reply::Map(out),
                _ => Reply::Array(out),
            }
        }
        other => other.clone(),
    }
}

fn sorted(v: &[Reply]) -> Vec<Reply> {
    let mut v = v.to_vec();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Commands and their generator.
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Cmd {
    args: Vec<Vec<u8>>,
    /// The keys it names, for the generator's model of the reference's key types.
    keys: Vec<Vec<u8>>,
}

impl Cmd {
    fn new(name: &str) -> Cmd {
        Cmd {
            args: vec![name.as_bytes().to_vec()],
            keys: vec![],
        }
    }
    fn key(mut self, k: &[u8]) -> Cmd {
        self.args.push(k.to_vec());
        self.keys.push(k.to_vec());
        self
    }
    fn arg(mut self, a: impl AsRef<[u8]>) -> Cmd {
        self.args.push(a.as_ref().to_vec());
        self
    }
    fn name(&self) -> String {
        String::from_utf8_lossy(&self.args[0]).to_ascii_uppercase()
    }
    fn redis(&self) -> redis::Cmd {
        let mut c = redis::cmd(&String::from_utf8_lossy(&self.args[0]));
        for a in &self.args[1..] {
            c.arg(&a[..]);
        }
        c
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                let s = a.escape_ascii().to_string();
                if s.is_empty() || s.contains(' ') {
                    format!("\"{s}\"")
                } else {
                    s
                }
            })
            .collect();
        write!(f, "{}", words.join(" "))
    }
}

/// What a command does to the key it is given, which decides the keys it may be given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Reads or changes a string, list or sorted set without being able to replace or delete
    /// another type (a WRONGTYPE on a hash or set).
    Plain,
    /// May replace, delete, expire or move whatever the key holds.
    Replace,
    /// A hash command.
    Hash,
    /// A set command.
    Set,
    /// A geo command (its keys are sorted sets).
    Geo,
    /// A stream command.
    Stream,
    /// A HyperLogLog command (its keys are strings in Redis's HLL encoding).
    Hll,
    /// Asks about the key itself (EXISTS, TYPE, TTL...).
    Meta,
}

/// Generates commands from a seed, keeping a model of the type each key holds on the
/// reference, so that it never sends what [`LEGIT`] lists as not generated.
struct Gen {
    rng: StdRng,
    /// Keys for any type.
    general: Vec<Vec<u8>>,
    /// Keys hash (`h*`), set (`s*`), geo (`g*`), HyperLogLog (`p*`) and stream (`x*`)
    /// commands favour; any
    /// type may end up there too.
    collections: Vec<Vec<u8>>,
}

const INTS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "5",
    "17",
    "-3",
    "100",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "x",
    "1.5",
    "",
    " 1",
    "+1",
    "01",
];
const VALUES: &[&[u8]] = &[
    b"",
    b"a",
    b"hello",
    b"10",
    b"-3",
    b"0",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775806",
    b"abc",
    b"\x00\xff\r\n",
    b"3.5",
    b"hello world",
    b"12",
];
/// INCRBYFLOAT's increments: Redis's `long double` rounding and printing, hexadecimal
/// floats, infinities (refused), range limits, and what is not a float.
const FLOATS: &[&str] = &[
    "0.1",
    "-0.1",
    "1",
    "2.5",
    "-3",
    "1e2",
    "3.0e3",
    "0x1p-2",
    "1e-20",
    "0.000003814697265625",
    "1.18e4932",
    "-1.18e4932",
    "1e-4951",
    "inf",
    "-inf",
    "nan",
    "abc",
    "",
    " 1",
    "1e5000",
    "9223372036854775807",
];
const BIT_OFFSETS: &[&str] = &["0", "1", "7", "8", "13", "100", "-1", "x", "4294967296"];
const SCORES: &[&str] = &[
    "0", "1", "2", "2.5", "-1", "10", "-inf", "+inf", "1e2", "x", "(1", "(2.5", "3", "-0.5",
];
const LEX: &[&str] = &["-", "+", "[a", "(a", "[m", "(z", "a", "[", "[\x00"];
/// Relative expiries in seconds: immediate, far, or invalid (never between 1 ms and 100 s).
const SECONDS: &[&str] = &[
    "100000",
    "360000",
    "0",
    "-1",
    "9223372036854775807",
    "9223372036854775",
    "92233720368547758",
    "x",
    "1.5",
];
const MILLIS: &[&str] = &[
    "100000000",
    "0",
    "-5",
    "9223372036854775807",
    "9223372036854770000",
    "x",
];
const UNIX_SECONDS: &[&str] = &["1", "4102444800", "9223372036854775807", "0", "-1", "x"];
const UNIX_MILLIS: &[&str] = &[
    "1",
    "4102444800123",
    "9223372036854770000",
    "9223372036854775807",
    "x",
];

impl Gen {
    fn new(seed: u64, prefix: &str) -> Gen {
        let p = |s: &str| format!("{prefix}{s}").into_bytes();
        let mut binary = p("b");
        binary.extend_from_slice(b"\x00\xff\r\n");
        Gen {
            rng: StdRng::seed_from_u64(seed),
            general: vec![p("k0"), p("k1"), p("k2"), p("k3"), Vec::new(), binary],
            collections: vec![
                p("h0"),
                p("h1"),
                p("s0"),
                p("s1"),
                p("g0"),
                p("g1"),
                p("p0"),
                p("p1"),
                p("x0"),
                p("x1"),
            ],
        }
    }

    fn all_keys(&self) -> Vec<Vec<u8>> {
        self.general
            .iter()
            .chain(&self.collections)
            .cloned()
            .collect()
    }

    /// A key a command of this use may be given: any key, since quorumd answers as Redis
    /// whatever it holds; hash, set and geo commands favour their own keys, so that hashes, sets and geo sets
    /// grow.
    fn key(&mut self, u: Use) -> Vec<u8> {
        let own = match u {
            Use::Hash => Some(b'h'),
            Use::Set => Some(b's'),
            Use::Geo => Some(b'g'),
            Use::Hll => Some(b'p'),
            Use::Stream => Some(b'x'),
            Use::Plain | Use::Replace | Use::Meta => None,
        };
        if let Some(own) = own.filter(|_| self.rng.random_range(0..3) > 0) {
            let mine: Vec<&Vec<u8>> = self
                .collections
                .iter()
                .filter(|k| k.len() >= 2 && k[k.len() - 2] == own)
                .collect();
            return (*mine.choose(&mut self.rng).expect("a key")).clone();
        }
        self.all_keys()
            .choose(&mut self.rng)
            .expect("a key")
            .clone()
    }

    fn int(&mut self) -> &'static str {
        // Mostly small valid numbers, sometimes an edge or invalid one.
        if self.rng.random_bool(0.7) {
            ["0", "1", "2", "-1", "3", "5", "-2"]
                .choose(&mut self.rng)
                .unwrap()
        } else {
            INTS.choose(&mut self.rng).unwrap()
        }
    }

    fn value(&mut self) -> &'static [u8] {
        VALUES.choose(&mut self.rng).unwrap()
    }

    fn member(&mut self) -> &'static str {
        ["a", "b", "c", "d", "e", "", "m\x00"]
            .choose(&mut self.rng)
            .unwrap()
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        *from.choose(&mut self.rng).unwrap()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// The next command, or a transaction's worth of them.
    fn next(&mut self) -> Vec<Cmd> {
        let roll = self.rng.random_range(0..100);
        if roll < 4 {
            return self.transaction();
        }
        let mut cmd = match roll {
            4..=25 => self.string(),
            26 | 27 => self.stream(),
            28..=42 => self.keyspace(),
            43..=54 => self.hash(),
            55..=65 => self.set(),
            66..=80 => self.list(),
            81..=91 => self.zset(),
            92..=94 => self.geo(),
            95 => self.hll(),
            96 => self.bitfield(),
            97 => self.sort(),
            _ => self.stream(),
        };
        // Arity errors: the same command cut short or given one argument too many.
        if self.chance(0.04) {
            // `SPOP key` is whole and pops a random member: cut it to its name only.
            let most = if cmd.args[0] == b"SPOP" { 1 } else { 2 };
            let keep = self.rng.random_range(1..=cmd.args.len().min(most));
            cmd.args.truncate(keep);
            cmd.keys.clear();
        } else if self.chance(0.01) {
            cmd = Cmd::new(self.pick(&["NOSUCHCMD", "get2", "SETT"])).arg("a");
        }
        vec![cmd]
    }

    fn transaction(&mut self) -> Vec<Cmd> {
        let mut out = vec![Cmd::new("MULTI")];
        for _ in 0..self.rng.random_range(1..=4) {
            let mut c = self.next_plain();
            if self.chance(0.1) {
                // Refused while queueing: EXEC must then answer EXECABORT and apply nothing.
                c.args.truncate(1);
            }
            out.push(c);
        }
        out.push(Cmd::new(if self.chance(0.1) { "DISCARD" } else { "EXEC" }));
        out
    }

    fn next_plain(&mut self) -> Cmd {
        match self.rng.random_range(0..11) {
            0 => self.string(),
            1 => self.keyspace(),
            2 => self.hash(),
            3 => self.set(),
            4 => self.list(),
            5 => self.zset(),
            6 => self.hll(),
            7 => self.bitfield(),
            8 => self.sort(),
            9 => self.stream(),
            _ => self.geo(),
        }
    }

    fn expiry_option(&mut self, c: Cmd) -> Cmd {
        match self.rng.random_range(0..7) {
            0 => c.arg("EX").arg(self.pick(SECONDS)),
            1 => c.arg("PX").arg(self.pick(MILLIS)),
            2 => c.arg("EXAT").arg(self.pick(UNIX_SECONDS)),
            3 => c.arg("PXAT").arg(self.pick(UNIX_MILLIS)),
            4 => c.arg("KEEPTTL"),
            5 => c.arg("EX"),
            _ => c.arg("PERSIST"),
        }
    }

    fn string(&mut self) -> Cmd {
        match self.rng.random_range(0..30) {
            0 | 1 => Cmd::new("GET").key(&self.key(Use::Plain)),
            2..=4 => {
                let mut c = Cmd::new("SET")
                    .key(&self.key(Use::Replace))
                    .arg(self.value());
                for _ in 0..self.rng.random_range(0..3) {
                    c = match self.rng.random_range(0..5) {
                        0 => c.arg("NX"),
                        1 => c.arg("XX"),
                        2 => c.arg("GET"),
                        3 => c.arg(self.pick(&["FOO", "ex"])),
                        _ => self.expiry_option(c),
                    };
                }
                c
            }
            5 => Cmd::new("SETNX")
                .key(&self.key(Use::Replace))
                .arg(self.value()),
            6 => Cmd::new(self.pick(&["SETEX", "PSETEX"]))
                .key(&self.key(Use::Replace))
                .arg(self.pick(&["100000000", "0", "-1", "x", "9223372036854775807"]))
                .arg(self.value()),
            7 => Cmd::new(self.pick(&["GETDEL", "STRLEN"])).key(&self.key(Use::Replace)),
            8 => Cmd::new("GETSET")
                .key(&self.key(Use::Replace))
                .arg(self.value()),
            9 => {
                let c = Cmd::new("GETEX").key(&self.key(Use::Replace));
                match self.rng.random_range(0..4) {
                    0 => c,
                    // Two options: the same one again is allowed, another is not.
                    1 => {
                        let c = self.expiry_option(c);
                        self.expiry_option(c)
                    }
                    _ => self.expiry_option(c),
                }
            }
            10 => {
                let mut c = Cmd::new("MGET");
                for _ in 0..self.rng.random_range(1..4) {
                    c = c.key(&self.key(Use::Plain));
                }
                c
            }
            11 => {
                let mut c = Cmd::new("MSET");
                for _ in 0..self.rng.random_range(1..3) {
                    c = c.key(&self.key(Use::Replace)).arg(self.value());
                }
                c
            }
            12 | 13 => Cmd::new("APPEND")
                .key(&self.key(Use::Plain))
                .arg(self.value()),
            14 => Cmd::new(self.pick(&["GETRANGE", "GETRANGE", "SUBSTR"]))
                .key(&self.key(Use::Plain))
                .arg(self.int())
                .arg(self.int()),
            15 => Cmd::new("SETRANGE")
                .key(&self.key(Use::Plain))
                // 536870912 is past Redis's 512 MB limit (an error); an offset just below it would make
                // every server allocate 512 MB.
                .arg(self.pick(&["0", "1", "3", "-1", "x", "536870912", "1000"]))
                .arg(self.value()),
            16 | 17 => Cmd::new(self.pick(&["INCR", "DECR"])).key(&self.key(Use::Plain)),
            18 | 19 => Cmd::new(self.pick(&["INCRBY", "DECRBY"]))
                .key(&self.key(Use::Plain))
                .arg(self.int()),
            20 => {
                let c = Cmd::new("LCS")
                    .key(&self.key(Use::Plain))
                    .key(&self.key(Use::Plain));
                match self.rng.random_range(0..4) {
                    0 => c.arg("LEN"),
                    1 => c.arg("IDX").arg("WITHMATCHLEN"),
                    2 => c.arg("IDX").arg("MINMATCHLEN").arg(self.int()),
                    _ => c,
                }
            }
            // Bits. 4294967296 is past the largest string (an error); an offset just below
            // it would make every server allocate 512 MB.
            22 => Cmd::new("GETBIT")
                .key(&self.key(Use::Plain))
                .arg(self.pick(BIT_OFFSETS)),
            23 => Cmd::new("SETBIT")
                .key(&self.key(Use::Plain))
                .arg(self.pick(BIT_OFFSETS))
                .arg(self.pick(&["0", "1", "1", "2", "x", "-1"])),
            24 => {
                let c = Cmd::new("BITCOUNT").key(&self.key(Use::Plain));
                self.bit_range(c)
            }
            27 | 28 => {
                let c = Cmd::new("BITPOS")
                    .key(&self.key(Use::Plain))
                    .arg(self.pick(&["0", "1", "1", "2", "x"]));
                self.bit_range(c)
            }
            29 => {
                let op = self.pick(&["AND", "OR", "XOR", "NOT", "not", "NAND"]);
                let mut c = Cmd::new("BITOP").arg(op).key(&self.key(Use::Replace));
                for _ in 0..self.rng.random_range(1..4) {
                    c = c.key(&self.key(Use::Plain));
                }
                c
            }
            25 => Cmd::new("INCRBYFLOAT")
                .key(&self.key(Use::Plain))
                .arg(self.pick(FLOATS)),
            26 => {
                let mut c = Cmd::new("MSETNX");
                let mut keys = Vec::new();
                for _ in 0..self.rng.random_range(1..4) {
                    // Now and then a key again (Redis keeps its last value).
                    let k = match keys.last() {
                        Some(k) if self.chance(0.2) => Vec::clone(k),
                        _ => self.key(Use::Plain),
                    };
                    c = c.key(&k).arg(self.value());
                    keys.push(k);
                }
                if self.chance(0.05) {
                    // A key without its value: wrong arity.
                    c = c.key(&self.key(Use::Plain));
                }
                c
            }
            _ => {
                // A numeric edge: set an i64 bound, then count past it.
                let k = self.key(Use::Replace);
                Cmd::new("SET").key(&k).arg(self.pick(&[
                    "9223372036854775807",
                    "-9223372036854775808",
                    "9223372036854775806",
                    "-9223372036854775807",
                ]))
            }
        }
    }

    fn keyspace(&mut self) -> Cmd {
        match self.rng.random_range(0..16) {
            0 => {
                let mut c = Cmd::new(self.pick(&["DEL", "UNLINK"]));
                for _ in 0..self.rng.random_range(1..3) {
                    c = c.key(&self.key(Use::Replace));
                }
                c
            }
            1 => {
                let mut c = Cmd::new(self.pick(&["EXISTS", "EXISTS", "TOUCH"]));
                for _ in 0..self.rng.random_range(1..4) {
                    let k = self.key(Use::Meta);
                    c = c.key(&k);
                }
                c
            }
            2 | 3 => {
                let name = self.pick(&["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"]);
                let when = match name {
                    "EXPIRE" => self.pick(SECONDS),
                    "PEXPIRE" => self.pick(MILLIS),
                    "EXPIREAT" => self.pick(UNIX_SECONDS),
                    _ => self.pick(UNIX_MILLIS),
                };
                let c = Cmd::new(name).key(&self.key(Use::Replace)).arg(when);
                if self.chance(0.3) {
                    c.arg(self.pick(&["NX", "XX", "GT", "LT", "FOO"]))
                } else {
                    c
                }
            }
            4..=6 => Cmd::new(self.pick(&["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"]))
                .key(&self.key(Use::Meta)),
            7 => Cmd::new("PERSIST").key(&self.key(Use::Replace)),
            8 | 9 => Cmd::new("TYPE").key(&self.key(Use::Meta)),
            10 | 11 => Cmd::new(self.pick(&["RENAME", "RENAMENX"]))
                .key(&self.key(Use::Replace))
                .key(&self.key(Use::Replace)),
            12 | 13 => {
                let c = Cmd::new("COPY")
                    .key(&self.key(Use::Replace))
                    .key(&self.key(Use::Replace));
                match self.rng.random_range(0..4) {
                    0 => c.arg("REPLACE"),
                    1 => c.arg("DB").arg("0"),
                    2 => c.arg("FOO"),
                    _ => c,
                }
            }
            _ => {
                let k = self.key(Use::Replace);
                Cmd::new("SET")
                    .key(&k)
                    .arg(self.value())
                    .arg("EX")
                    .arg("100000")
            }
        }
    }

    fn field(&mut self) -> &'static str {
        self.pick(&["f", "g", "h", "", "n"])
    }

    fn hash(&mut self) -> Cmd {
        let k = self.key(Use::Hash);
        match self.rng.random_range(0..16) {
            0..=2 => {
                let mut c = Cmd::new(self.pick(&["HSET", "HSET", "HMSET"])).key(&k);
                for _ in 0..self.rng.random_range(1..3) {
                    c = c.arg(self.field()).arg(self.value());
                }
                if self.chance(0.05) {
                    c = c.arg("odd");
                }
                c
            }
            3 => Cmd::new("HGET").key(&k).arg(self.field()),
            4 => Cmd::new("HMGET")
                .key(&k)
                .arg(self.field())
                .arg(self.field()),
            5 => Cmd::new("HGETALL").key(&k),
            6 => {
                let mut c = Cmd::new("HDEL").key(&k);
                for _ in 0..self.rng.random_range(1..3) {
                    c = c.arg(self.field());
                }
                c
            }
            7 => Cmd::new(self.pick(&["HLEN", "HKEYS", "HVALS"])).key(&k),
            8 => Cmd::new(self.pick(&["HEXISTS", "HSTRLEN"]))
                .key(&k)
                .arg(self.field()),
            9 | 10 => Cmd::new("HINCRBY")
                .key(&k)
                .arg(self.field())
                .arg(self.int()),
            11 => Cmd::new("HSETNX")
                .key(&k)
                .arg(self.field())
                .arg(self.value()),
            12 => Cmd::new("HINCRBYFLOAT")
                .key(&k)
                .arg(self.field())
                .arg(self.pick(FLOATS)),
            13 => {
                let c = Cmd::new("HRANDFIELD").key(&k);
                match self.rng.random_range(0..5) {
                    0 => c,
                    1 => c.arg(self.pick(&["100", "-3", "0", "x", "1"])),
                    2 => c.arg(self.pick(&["-2", "5"])).arg("WITHVALUES"),
                    3 => c.arg("1").arg(self.pick(&["WITHVALUE", "2"])),
                    _ => c.arg("-9223372036854775808"),
                }
            }
            _ => self.scan("HSCAN", k),
        }
    }

    /// BITCOUNT's or BITPOS's optional `start [end [BYTE|BIT]]`, now and then malformed.
    fn bit_range(&mut self, c: Cmd) -> Cmd {
        match self.rng.random_range(0..6) {
            0 => c,
            1 => c.arg(self.int()),
            2 => c.arg(self.int()).arg(self.int()),
            3 => c
                .arg(self.int())
                .arg(self.int())
                .arg(self.pick(&["BIT", "BYTE", "bit", "WORD"])),
            4 => c.arg(self.int()).arg("x").arg("WORD"),
            _ => c.arg("0").arg("-1").arg("BIT").arg("x"),
        }
    }

    /// SSCAN or HSCAN of `k` with a cursor and options, some of them wrong.
    fn scan(&mut self, name: &str, k: Vec<u8>) -> Cmd {
        let mut c = Cmd::new(name).key(&k).arg(self.pick(&["0", "0", "0", "x"]));
        for _ in 0..self.rng.random_range(0..3) {
            c = match self.rng.random_range(0..4) {
                0 => c.arg("MATCH").arg(self.pick(&["*", "a*", "[fg]", "?"])),
                1 => c.arg("COUNT").arg(self.pick(&["10", "0", "x"])),
                2 => c.arg("MATCH"),
                _ => c.arg("FOO").arg("1"),
            };
        }
        c
    }

    fn set(&mut self) -> Cmd {
        let k = self.key(Use::Set);
        match self.rng.random_range(0..14) {
            0..=2 => {
                let mut c = Cmd::new("SADD").key(&k);
                for _ in 0..self.rng.random_range(1..4) {
                    c = c.arg(self.member());
                }
                c
            }
            3 | 4 => {
                let mut c = Cmd::new("SREM").key(&k);
                for _ in 0..self.rng.random_range(1..3) {
                    c = c.arg(self.member());
                }
                c
            }
            5 => Cmd::new(self.pick(&["SMEMBERS", "SCARD"])).key(&k),
            6 if self.chance(0.3) => {
                let c = Cmd::new("SRANDMEMBER").key(&k);
                match self.rng.random_range(0..4) {
                    0 => c,
                    1 => c.arg(self.pick(&["100", "-3", "0", "x", "1"])),
                    2 => c.arg("1").arg("2"),
                    _ => c.arg("-9223372036854775808"),
                }
            }
            7 if self.chance(0.3) => Cmd::new("SPOP")
                .key(&k)
                .arg(self.pick(&["100", "0", "-1", "x"])),
            6 => Cmd::new("SISMEMBER").key(&k).arg(self.member()),
            7 => Cmd::new("SMISMEMBER")
                .key(&k)
                .arg(self.member())
                .arg(self.member()),
            8 => {
                let other = self.key(Use::Set);
                let c = Cmd::new("SINTERCARD")
                    .arg(self.pick(&["2", "2", "2", "0", "3", "x"]))
                    .key(&k)
                    .key(&other);
                match self.rng.random_range(0..5) {
                    0 => c.arg("LIMIT").arg(self.pick(&["1", "0", "-1", "x"])),
                    1 => c.arg("LIMIT"),
                    2 => c.arg("FOO").arg("1"),
                    _ => c,
                }
            }
            9 => {
                let (dst, other) = (self.key(Use::Replace), self.key(Use::Set));
                Cmd::new(self.pick(&["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]))
                    .key(&dst)
                    .key(&k)
                    .key(&other)
            }
            10 => {
                let dst = if self.chance(0.3) {
                    self.key(Use::Replace)
                } else {
                    self.key(Use::Set)
                };
                Cmd::new("SMOVE").key(&k).key(&dst).arg(self.member())
            }
            11 => self.scan("SSCAN", k),
            _ => {
                let other = self.key(Use::Set);
                Cmd::new(self.pick(&["SINTER", "SUNION", "SDIFF"]))
                    .key(&k)
                    .key(&other)
            }
        }
    }

    fn list(&mut self) -> Cmd {
        match self.rng.random_range(0..22) {
            0..=3 => {
                let mut c = Cmd::new(self.pick(&["LPUSH", "RPUSH", "LPUSHX", "RPUSHX"]))
                    .key(&self.key(Use::Plain));
                for _ in 0..self.rng.random_range(1..4) {
                    c = c.arg(self.member());
                }
                c
            }
            4 | 5 => {
                let c = Cmd::new(self.pick(&["LPOP", "RPOP"])).key(&self.key(Use::Plain));
                if self.chance(0.4) {
                    c.arg(self.int())
                } else {
                    c
                }
            }
            6 => Cmd::new("LLEN").key(&self.key(Use::Plain)),
            7 | 8 => Cmd::new("LRANGE")
                .key(&self.key(Use::Plain))
                .arg(self.int())
                .arg(self.pick(&["-1", "0", "2", "100", "-2", "x"])),
            9 => Cmd::new("LINDEX")
                .key(&self.key(Use::Plain))
                .arg(self.int()),
            10 => Cmd::new("LSET")
                .key(&self.key(Use::Plain))
                .arg(self.int())
                .arg(self.member()),
            11 => Cmd::new("LREM")
                .key(&self.key(Use::Plain))
                .arg(self.int())
                .arg(self.member()),
            12 => Cmd::new("LTRIM")
                .key(&self.key(Use::Plain))
                .arg(self.int())
                .arg(self.int()),
            13 => Cmd::new("LINSERT")
                .key(&self.key(Use::Plain))
                .arg(self.pick(&["BEFORE", "AFTER", "MIDDLE"]))
                .arg(self.member())
                .arg(self.member()),
            14 => {
                let mut c = Cmd::new("LPOS")
                    .key(&self.key(Use::Plain))
                    .arg(self.member());
                for _ in 0..self.rng.random_range(0..2) {
                    c = c
                        .arg(self.pick(&["RANK", "COUNT", "MAXLEN", "FOO"]))
                        .arg(self.int());
                }
                c
            }
            15 | 16 => Cmd::new("LMOVE")
                .key(&self.key(Use::Plain))
                .key(&self.key(Use::Plain))
                .arg(self.pick(&["LEFT", "RIGHT", "UP"]))
                .arg(self.pick(&["LEFT", "RIGHT"])),
            17 => Cmd::new("RPOPLPUSH")
                .key(&self.key(Use::Plain))
                .key(&self.key(Use::Plain)),
            18 => {
                let n = self.rng.random_range(1..3);
                let mut c = Cmd::new("LMPOP").arg(self.pick(&["1", "2", "0", "3", "x"]));
                for _ in 0..n {
                    c = c.key(&self.key(Use::Plain));
                }
                let c = c.arg(self.pick(&["LEFT", "RIGHT", "MIDDLE"]));
                if self.chance(0.4) {
                    c.arg("COUNT").arg(self.int())
                } else {
                    c
                }
            }
            _ => {
                let k = self.key(Use::Replace);
                Cmd::new("RPUSH")
                    .key(&k)
                    .arg("a")
                    .arg("b")
                    .arg("c")
                    .arg("a")
            }
        }
    }

    /// A longitude: mostly near a point, so that searches find members, sometimes anywhere,
    /// on the edge, or invalid.
    fn longitude(&mut self) -> String {
        match self.rng.random_range(0..12) {
            0 => self
                .pick(&["180", "-180", "180.0001", "x", "inf", "", "1e400"])
                .into(),
            1 => format!("{:.5}", self.rng.random_range(-180.0..=180.0)),
            _ => format!("{:.5}", self.rng.random_range(12.0..14.0)),
        }
    }

    fn latitude(&mut self) -> String {
        match self.rng.random_range(0..12) {
            0 => self
                .pick(&["85.05112878", "-85.05112878", "85.06", "-90", "x", "nan"])
                .into(),
            1 => format!("{:.5}", self.rng.random_range(-85.05..=85.05)),
            _ => format!("{:.5}", self.rng.random_range(37.0..39.0)),
        }
    }

    fn geo_unit(&mut self) -> &'static str {
        self.pick(&["m", "km", "km", "km", "ft", "mi", "KM", "yd"])
    }

    fn geo_size(&mut self) -> &'static str {
        self.pick(&[
            "0", "1", "50", "100", "150", "300", "20000", "-1", "x", "1e3",
        ])
    }

    /// A search's shape: BYRADIUS or BYBOX (now and then none, both, or cut short).
    fn geo_shape(&mut self, c: Cmd) -> Cmd {
        match self.rng.random_range(0..12) {
            0 => c,
            1 => c.arg("BYRADIUS").arg("1"),
            2 => {
                let c = c.arg("BYRADIUS").arg(self.geo_size()).arg(self.geo_unit());
                c.arg("BYBOX").arg("1").arg("1").arg("km")
            }
            3..=6 => c
                .arg("BYBOX")
                .arg(self.geo_size())
                .arg(self.geo_size())
                .arg(self.geo_unit()),
            _ => c.arg("BYRADIUS").arg(self.geo_size()).arg(self.geo_unit()),
        }
    }

    /// The options every search shares: order, COUNT [ANY], WITH*, in any order.
    fn geo_options(&mut self, mut c: Cmd, with: bool) -> Cmd {
        for _ in 0..self.rng.random_range(0..4) {
            c = match self.rng.random_range(0..9) {
                0 => c.arg("ASC"),
                1 => c.arg("DESC"),
                2 => c
                    .arg("COUNT")
                    .arg(self.pick(&["1", "2", "3", "10", "0", "-1", "x"])),
                3 => c.arg("COUNT").arg(self.pick(&["1", "2"])).arg("ANY"),
                4 => c.arg("ANY"),
                5 if with => c.arg("WITHDIST"),
                6 if with => c.arg("WITHCOORD"),
                7 if with => c.arg("WITHHASH"),
                _ => c.arg(self.pick(&["ASC", "FOO", "WITHDIST"])),
            };
        }
        c
    }

    fn geo(&mut self) -> Cmd {
        let k = self.key(Use::Geo);
        match self.rng.random_range(0..20) {
            0..=5 => {
                let mut c = Cmd::new("GEOADD").key(&k);
                for _ in 0..self.rng.random_range(0..2) {
                    c = c.arg(self.pick(&["NX", "XX", "CH", "CH", "GT"]));
                }
                for _ in 0..self.rng.random_range(1..4) {
                    c = c
                        .arg(self.longitude())
                        .arg(self.latitude())
                        .arg(self.member());
                }
                c
            }
            6 => {
                let mut c = Cmd::new(self.pick(&["GEOPOS", "GEOHASH"])).key(&k);
                for _ in 0..self.rng.random_range(1..4) {
                    c = c.arg(self.member());
                }
                c
            }
            7 | 8 => {
                let c = Cmd::new("GEODIST")
                    .key(&k)
                    .arg(self.member())
                    .arg(self.member());
                match self.rng.random_range(0..4) {
                    0 => c,
                    1 => c.arg(self.geo_unit()).arg("x"),
                    _ => c.arg(self.geo_unit()),
                }
            }
            9..=13 => {
                let store = self.chance(0.3);
                let mut c = if store {
                    Cmd::new("GEOSEARCHSTORE")
                        .key(&self.key(Use::Replace))
                        .key(&k)
                } else {
                    Cmd::new("GEOSEARCH").key(&k)
                };
                c = match self.rng.random_range(0..10) {
                    0 => c,
                    1 => c
                        .arg("FROMMEMBER")
                        .arg(self.member())
                        .arg("FROMLONLAT")
                        .arg("13")
                        .arg("38"),
                    2..=5 => c.arg("FROMMEMBER").arg(self.member()),
                    _ => c
                        .arg("FROMLONLAT")
                        .arg(self.longitude())
                        .arg(self.latitude()),
                };
                c = self.geo_shape(c);
                let with = !store || self.chance(0.1);
                c = self.geo_options(c, with);
                if store && self.chance(0.4) {
                    c = c.arg("STOREDIST");
                }
                c
            }
            14..=16 => {
                let ro = self.chance(0.3);
                let c = Cmd::new(if ro { "GEORADIUS_RO" } else { "GEORADIUS" })
                    .key(&k)
                    .arg(self.longitude())
                    .arg(self.latitude())
                    .arg(self.geo_size())
                    .arg(self.geo_unit());
                self.geo_radius_options(c)
            }
            _ => {
                let ro = self.chance(0.3);
                let name = if ro {
                    "GEORADIUSBYMEMBER_RO"
                } else {
                    "GEORADIUSBYMEMBER"
                };
                let c = Cmd::new(name)
                    .key(&k)
                    .arg(self.member())
                    .arg(self.geo_size())
                    .arg(self.geo_unit());
                self.geo_radius_options(c)
            }
        }
    }

    /// GEORADIUS's options, STORE or STOREDIST now and then (refused by the _RO forms).
    fn geo_radius_options(&mut self, c: Cmd) -> Cmd {
        let store = self.chance(0.3);
        let with = !store || self.chance(0.1);
        let c = self.geo_options(c, with);
        if store {
            let dst = self.key(Use::Replace);
            c.arg(self.pick(&["STORE", "STOREDIST"])).key(&dst)
        } else {
            c
        }
    }

    /// PFADD, PFCOUNT, PFMERGE and PFDEBUG, mostly on the HLL keys (p0, p1), which other
    /// commands (BITFIELD, SETRANGE, APPEND) may also corrupt; elements from a small pool so
    /// that registers repeat, and now and then a batch large enough to turn a value dense.
    fn hll(&mut self) -> Cmd {
        let k = self.key(Use::Hll);
        match self.rng.random_range(0..12) {
            0..=4 => {
                let mut c = Cmd::new("PFADD").key(&k);
                let n = if self.chance(0.05) {
                    self.rng.random_range(500..1500)
                } else {
                    self.rng.random_range(0..5)
                };
                for _ in 0..n {
                    let e = self.rng.random_range(0..3000u32);
                    c = c.arg(format!("e{e}"));
                }
                c
            }
            5..=7 => {
                let mut c = Cmd::new("PFCOUNT").key(&k);
                for _ in 0..self.rng.random_range(0..3) {
                    let other = self.key(Use::Hll);
                    c = c.key(&other);
                }
                c
            }
            8 | 9 => {
                let mut c = Cmd::new("PFMERGE").key(&k);
                for _ in 0..self.rng.random_range(0..3) {
                    let other = self.key(Use::Hll);
                    c = c.key(&other);
                }
                c
            }
            _ => {
                let sub = self.pick(&["ENCODING", "DECODE", "TODENSE", "ENCODING", "FOO"]);
                let sub = if self.chance(0.05) { "GETREG" } else { sub };
                Cmd::new("PFDEBUG").arg(sub).key(&k)
            }
        }
    }

    /// A stream ID: small explicit ones (so that IDs too small, partial `ms-*` and exclusive
    /// bounds meet), range ends, and invalid ones. Never `*`, which differs between servers.
    fn stream_id(&mut self) -> String {
        match self.rng.random_range(0..10) {
            0..=5 => format!(
                "{}-{}",
                self.rng.random_range(0..8),
                self.rng.random_range(0..3)
            ),
            6 => self.rng.random_range(0..8).to_string(),
            7 => self
                .pick(&[
                    "0-0",
                    "18446744073709551615-18446744073709551615",
                    "x",
                    "-1",
                    "",
                ])
                .to_string(),
            _ => format!("{}-*", self.rng.random_range(0..8)),
        }
    }

    fn stream_trim(&mut self, c: Cmd) -> Cmd {
        let c = if self.chance(0.5) {
            c.arg("MAXLEN")
        } else {
            c.arg("MINID")
        };
        let maxlen = c.args.last().is_some_and(|a| a == b"MAXLEN");
        let c = match self.rng.random_range(0..3) {
            0 => c.arg("="),
            1 => c.arg("~"),
            _ => c,
        };
        let c = if maxlen {
            c.arg(self.int())
        } else {
            c.arg(self.stream_id())
        };
        if self.chance(0.15) {
            c.arg("LIMIT").arg(self.int())
        } else {
            c
        }
    }

    /// XADD (explicit IDs), XLEN, XRANGE, XREVRANGE, XDEL, XTRIM, XREAD without BLOCK, XSETID
    /// and XINFO STREAM, and the consumer-group commands, mostly on the stream keys (x0, x1).
    fn stream(&mut self) -> Cmd {
        let k = self.key(Use::Stream);
        if self.chance(0.45) {
            return self.stream_group(&k);
        }
        match self.rng.random_range(0..16) {
            0..=5 => {
                let mut c = Cmd::new("XADD").key(&k);
                if self.chance(0.1) {
                    c = c.arg("NOMKSTREAM");
                }
                if self.chance(0.2) {
                    c = self.stream_trim(c);
                }
                c = c.arg(self.stream_id());
                for _ in 0..self.rng.random_range(1..3) {
                    c = c.arg(self.member()).arg(self.value());
                }
                c
            }
            6 => Cmd::new("XLEN").key(&k),
            7 | 8 => {
                let rev = self.chance(0.3);
                let mut ends = [self.stream_id(), self.stream_id()];
                for e in &mut ends {
                    if self.chance(0.2) {
                        *e = self.pick(&["-", "+"]).to_string();
                    } else if self.chance(0.2) {
                        e.insert(0, '(');
                    }
                }
                let c = Cmd::new(if rev { "XREVRANGE" } else { "XRANGE" })
                    .key(&k)
                    .arg(&ends[0])
                    .arg(&ends[1]);
                if self.chance(0.3) {
                    c.arg("COUNT").arg(self.int())
                } else {
                    c
                }
            }
            9 => {
                let mut c = Cmd::new("XDEL").key(&k);
                for _ in 0..self.rng.random_range(1..3) {
                    c = c.arg(self.stream_id());
                }
                c
            }
            10 => {
                let c = Cmd::new("XTRIM").key(&k);
                self.stream_trim(c)
            }
            11 | 12 => {
                let mut c = Cmd::new("XREAD");
                if self.chance(0.3) {
                    c = c.arg("COUNT").arg(self.int());
                }
                let other = self.key(Use::Stream);
                let ids = [self.stream_id(), self.stream_id()];
                c = c.arg("STREAMS").key(&k);
                if self.chance(0.4) {
                    c = c.key(&other).arg(&ids[0]).arg(&ids[1]);
                } else {
                    let id = if self.chance(0.2) {
                        "$".to_string()
                    } else {
                        ids[0].clone()
                    };
                    c = c.arg(id);
                }
                c
            }
            13 => {
                let mut c = Cmd::new("XSETID").key(&k).arg(self.stream_id());
                if self.chance(0.3) {
                    c = c.arg("ENTRIESADDED").arg(self.int());
                }
                if self.chance(0.3) {
                    c = c.arg("MAXDELETEDID").arg(self.stream_id());
                }
                c
            }
            _ => Cmd::new("XINFO").arg("STREAM").key(&k),
        }
    }

    /// A consumer-group command on `k`: two groups, two consumers, IDs from `stream_id` (valid
    /// or not), minimum idle times of 0 or an hour (see [`LEGIT`], "XPENDING XINFO").
    fn stream_group(&mut self, k: &[u8]) -> Cmd {
        let g = self.pick(&["g1", "g2"]);
        let c = self.pick(&["c1", "c2"]);
        let idle = self.pick(&["0", "0", "3600000", "3600000", "x", "-5"]);
        let start = |s: &mut Gen| {
            if s.chance(0.3) {
                "$".to_string()
            } else {
                s.stream_id()
            }
        };
        match self.rng.random_range(0..17) {
            0 | 1 => {
                let id = start(self);
                let mut cmd = Cmd::new("XGROUP").arg("CREATE").key(k).arg(g).arg(id);
                if self.chance(0.6) {
                    cmd = cmd.arg("MKSTREAM");
                }
                if self.chance(0.2) {
                    cmd = cmd.arg("ENTRIESREAD").arg(self.int());
                }
                cmd
            }
            2 => {
                let id = start(self);
                let cmd = Cmd::new("XGROUP").arg("SETID").key(k).arg(g).arg(id);
                if self.chance(0.3) {
                    cmd.arg("ENTRIESREAD").arg(self.int())
                } else {
                    cmd
                }
            }
            3 => Cmd::new("XGROUP").arg("DESTROY").key(k).arg(g),
            4 => Cmd::new("XGROUP")
                .arg("CREATECONSUMER")
                .key(k)
                .arg(g)
                .arg(c),
            5 => Cmd::new("XGROUP").arg("DELCONSUMER").key(k).arg(g).arg(c),
            6..=8 => {
                let mut cmd = Cmd::new("XREADGROUP").arg("GROUP").arg(g).arg(c);
                if self.chance(0.5) {
                    cmd = cmd.arg("COUNT").arg(self.int());
                }
                if self.chance(0.15) {
                    cmd = cmd.arg("NOACK");
                }
                let id = |s: &mut Gen| {
                    if s.chance(0.6) {
                        ">".to_string()
                    } else if s.chance(0.1) {
                        "$".to_string()
                    } else {
                        s.stream_id()
                    }
                };
                cmd = cmd.arg("STREAMS").key(k);
                if self.chance(0.2) {
                    let other = self.key(Use::Stream);
                    let (a, b) = (id(self), id(self));
                    cmd.key(&other).arg(a).arg(b)
                } else {
                    let a = id(self);
                    cmd.arg(a)
                }
            }
            9 => {
                let (a, b) = (self.stream_id(), self.stream_id());
                Cmd::new("XACK").key(k).arg(g).arg(a).arg(b)
            }
            10 => {
                let (a, b) = (self.stream_id(), self.stream_id());
                let mut cmd = Cmd::new("XCLAIM")
                    .key(k)
                    .arg(g)
                    .arg(c)
                    .arg(idle)
                    .arg(a)
                    .arg(b);
                for _ in 0..self.rng.random_range(0..3) {
                    cmd = match self.rng.random_range(0..7) {
                        0 => cmd.arg("FORCE"),
                        1 => cmd.arg("JUSTID"),
                        2 => cmd.arg("IDLE").arg(self.pick(&["7200000", "7200000", "x"])),
                        3 => cmd.arg("TIME").arg(self.pick(&["1000", "-1", "x"])),
                        4 => cmd.arg("RETRYCOUNT").arg(self.int()),
                        5 => {
                            let id = self.stream_id();
                            cmd.arg("LASTID").arg(id)
                        }
                        _ => cmd.arg("NOSUCHOPTION"),
                    };
                }
                cmd
            }
            11 => {
                let from = if self.chance(0.2) {
                    "-".to_string()
                } else {
                    self.stream_id()
                };
                let mut cmd = Cmd::new("XAUTOCLAIM")
                    .key(k)
                    .arg(g)
                    .arg(c)
                    .arg(idle)
                    .arg(from);
                if self.chance(0.5) {
                    cmd = cmd.arg("COUNT").arg(self.int());
                }
                if self.chance(0.3) {
                    cmd = cmd.arg("JUSTID");
                }
                cmd
            }
            12 => Cmd::new("XPENDING").key(k).arg(g),
            13 => {
                let mut cmd = Cmd::new("XPENDING").key(k).arg(g);
                if self.chance(0.3) {
                    cmd = cmd.arg("IDLE").arg(idle);
                }
                let (a, b) = if self.chance(0.5) {
                    ("-".to_string(), "+".to_string())
                } else {
                    (self.stream_id(), self.stream_id())
                };
                cmd = cmd.arg(a).arg(b).arg(self.int());
                if self.chance(0.4) {
                    cmd = cmd.arg(c);
                }
                cmd
            }
            14 => Cmd::new("XINFO").arg("GROUPS").key(k),
            15 => Cmd::new("XINFO").arg("CONSUMERS").key(k).arg(g),
            _ => {
                let cmd = Cmd::new("XINFO").arg("STREAM").key(k).arg("FULL");
                if self.chance(0.5) {
                    cmd.arg("COUNT").arg(self.int())
                } else {
                    cmd
                }
            }
        }
    }

    /// BITFIELD and BITFIELD_RO: a few operations of any width at small offsets (plain or
    /// `#`), edge values, every OVERFLOW mode, and now and then a malformed one.
    fn bitfield(&mut self) -> Cmd {
        let k = if self.chance(0.3) {
            self.key(Use::Hll)
        } else {
            self.key(Use::Plain)
        };
        let ro = self.chance(0.2);
        let mut c = Cmd::new(if ro { "BITFIELD_RO" } else { "BITFIELD" }).key(&k);
        for _ in 0..self.rng.random_range(0..4) {
            if self.chance(0.2) {
                c = c
                    .arg("OVERFLOW")
                    .arg(self.pick(&["WRAP", "SAT", "FAIL", "fail", "BAD"]));
            }
            let signed = self.chance(0.5);
            let bits = self.rng.random_range(if signed { 1..=64 } else { 1..=63 });
            let ty = if self.chance(0.03) {
                self.pick(&["u64", "i0", "x8", "I8", "u"]).to_string()
            } else {
                format!("{}{bits}", if signed { 'i' } else { 'u' })
            };
            let offset = match self.rng.random_range(0..10) {
                0..=2 => format!("#{}", self.rng.random_range(0..4)),
                3 => self.pick(&["-1", "x", "#-1", "4294967296"]).to_string(),
                _ => self.rng.random_range(0..80).to_string(),
            };
            let value = if self.chance(0.5) {
                self.int().to_string()
            } else {
                self.rng.random_range(-300i64..300).to_string()
            };
            c = match self.rng.random_range(0..if ro { 6 } else { 3 }) {
                0 => c.arg("SET").arg(ty).arg(offset).arg(value),
                1 => c.arg("INCRBY").arg(ty).arg(offset).arg(value),
                _ => c.arg("GET").arg(ty).arg(offset),
            };
        }
        if self.chance(0.03) {
            c = c.arg(self.pick(&["GET", "FOO", "SET"]));
        }
        c
    }

    /// SORT or SORT_RO on any key, with every option now and then. The patterns name this
    /// sequence's keys (`k*` reads `k0`..`k3` for elements `0`..`3`, `h*->a` the hashes'
    /// fields). Where Redis's order is its own (a set kept in its hash order by `BY nosort`,
    /// ALPHA ties by a pattern in the order read), no LIMIT or STORE is sent and the reply is
    /// compared as a multiset (`SORT-UNORDERED`, see `compared_as`).
    fn sort(&mut self) -> Cmd {
        let prefix = {
            let k0 = &self.general[0];
            String::from_utf8_lossy(&k0[..k0.len() - 2]).into_owned()
        };
        let ro = self.chance(0.3);
        let mut c = Cmd::new(if ro { "SORT_RO" } else { "SORT" }).key(&self.key(Use::Plain));
        let by = match self.rng.random_range(0..5) {
            0 | 1 => None,
            2 => Some("nosort".to_string()),
            3 => Some(format!("{prefix}k*")),
            _ => Some(format!("{prefix}h*->a")),
        };
        let alpha = self.chance(0.4);
        let by_star = by.as_ref().is_some_and(|b| b.contains('*'));
        let own_order = (by.is_some() && !by_star) || (alpha && by_star);
        let store = !(ro || alpha && by_star) && self.chance(0.25);
        if let Some(by) = &by {
            c = c.arg("BY").arg(by);
        }
        if (!own_order || store && !by_star) && self.chance(0.4) {
            c = c.arg("LIMIT").arg(self.int()).arg(self.int());
        }
        for _ in 0..self.rng.random_range(0..3) {
            let get = match self.rng.random_range(0..4) {
                0 => "#".to_string(),
                1 => format!("{prefix}k*"),
                2 => format!("{prefix}h*->a"),
                _ => "nostar".to_string(),
            };
            c = c.arg("GET").arg(get);
        }
        if self.chance(0.4) {
            c = c.arg(self.pick(&["ASC", "DESC"]));
        }
        if alpha {
            c = c.arg("ALPHA");
        }
        if store {
            c = c.arg("STORE").key(&self.key(Use::Replace));
        }
        if self.chance(0.03) {
            // A syntax error: an unknown word, or STORE on SORT_RO.
            c = c.arg(self.pick(&["FOO", "STORE"]));
        }
        c
    }

    fn zset(&mut self) -> Cmd {
        let k = self.key(Use::Plain);
        match self.rng.random_range(0..30) {
            0..=4 => {
                let mut c = Cmd::new("ZADD").key(&k);
                for _ in 0..self.rng.random_range(0..2) {
                    c = c.arg(self.pick(&["NX", "XX", "GT", "LT", "CH", "INCR"]));
                }
                for _ in 0..self.rng.random_range(1..3) {
                    c = c.arg(self.pick(SCORES)).arg(self.member());
                }
                c
            }
            5 => Cmd::new("ZINCRBY")
                .key(&k)
                .arg(self.pick(SCORES))
                .arg(self.member()),
            6 => Cmd::new("ZREM")
                .key(&k)
                .arg(self.member())
                .arg(self.member()),
            7 => Cmd::new("ZCARD").key(&k),
            8 => Cmd::new("ZSCORE").key(&k).arg(self.member()),
            9 => Cmd::new("ZMSCORE")
                .key(&k)
                .arg(self.member())
                .arg(self.member()),
            10 => {
                let c = Cmd::new(self.pick(&["ZRANK", "ZREVRANK"]))
                    .key(&k)
                    .arg(self.member());
                if self.chance(0.2) {
                    c.arg("WITHSCORE")
                } else {
                    c
                }
            }
            11 => Cmd::new("ZCOUNT")
                .key(&k)
                .arg(self.pick(SCORES))
                .arg(self.pick(SCORES)),
            12 => Cmd::new("ZLEXCOUNT")
                .key(&k)
                .arg(self.pick(LEX))
                .arg(self.pick(LEX)),
            13 | 14 => {
                let by = self.rng.random_range(0..3);
                let (a, b) = match by {
                    0 => (self.int(), self.int()),
                    1 => (self.pick(SCORES), self.pick(SCORES)),
                    _ => (self.pick(LEX), self.pick(LEX)),
                };
                let mut c = Cmd::new("ZRANGE").key(&k).arg(a).arg(b);
                if by == 1 {
                    c = c.arg("BYSCORE");
                } else if by == 2 {
                    c = c.arg("BYLEX");
                }
                if self.chance(0.3) {
                    c = c.arg("REV");
                }
                if self.chance(0.3) {
                    c = c.arg("LIMIT").arg(self.int()).arg(self.int());
                }
                if self.chance(0.4) {
                    c = c.arg("WITHSCORES");
                }
                c
            }
            15 => {
                let name = self.pick(&["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"]);
                let c = Cmd::new(name)
                    .key(&k)
                    .arg(self.pick(SCORES))
                    .arg(self.pick(SCORES));
                if self.chance(0.5) {
                    c.arg("WITHSCORES")
                } else {
                    c
                }
            }
            16 => Cmd::new(self.pick(&["ZRANGEBYLEX", "ZREVRANGEBYLEX"]))
                .key(&k)
                .arg(self.pick(LEX))
                .arg(self.pick(LEX)),
            17 => Cmd::new("ZREVRANGE")
                .key(&k)
                .arg(self.int())
                .arg(self.int())
                .arg("WITHSCORES"),
            18 => {
                let c = Cmd::new(self.pick(&["ZPOPMIN", "ZPOPMAX"])).key(&k);
                if self.chance(0.5) {
                    c.arg(self.int())
                } else {
                    c
                }
            }
            19 => {
                let c = Cmd::new("ZMPOP")
                    .arg(self.pick(&["1", "2", "0"]))
                    .key(&k)
                    .key(&self.key(Use::Plain))
                    .arg(self.pick(&["MIN", "MAX", "MID"]));
                if self.chance(0.4) {
                    c.arg("COUNT").arg(self.int())
                } else {
                    c
                }
            }
            20 => Cmd::new("ZREMRANGEBYRANK")
                .key(&k)
                .arg(self.int())
                .arg(self.int()),
            21 => Cmd::new("ZREMRANGEBYSCORE")
                .key(&k)
                .arg(self.pick(SCORES))
                .arg(self.pick(SCORES)),
            22 => Cmd::new("ZREMRANGEBYLEX")
                .key(&k)
                .arg(self.pick(LEX))
                .arg(self.pick(LEX)),
            23 => Cmd::new("ZRANDMEMBER").key(&k),
            24 => Cmd::new("ZSCAN").key(&k).arg("0"),
            25 | 26 => {
                let name = self.pick(&["ZUNION", "ZINTER", "ZDIFF", "ZINTERCARD"]);
                let other = self.key(Use::Replace);
                let k = self.key(Use::Replace);
                let c = Cmd::new(name).arg("2").key(&k).key(&other);
                match (name, self.rng.random_range(0..3)) {
                    ("ZINTERCARD", 0) => c.arg("LIMIT").arg(self.int()),
                    ("ZDIFF" | "ZINTERCARD", _) => c,
                    (_, 0) => c.arg("WEIGHTS").arg("2").arg("3"),
                    (_, 1) => c.arg("AGGREGATE").arg(self.pick(&["MIN", "MAX", "SUM"])),
                    _ => c.arg("WITHSCORES"),
                }
            }
            27 | 28 => {
                let name = self.pick(&["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"]);
                let dest = self.key(Use::Replace);
                let a = self.key(Use::Replace);
                let b = self.key(Use::Replace);
                Cmd::new(name).key(&dest).arg("2").key(&a).key(&b)
            }
            _ => {
                let dest = self.key(Use::Replace);
                let src = self.key(Use::Plain);
                Cmd::new("ZRANGESTORE")
                    .key(&dest)
                    .key(&src)
                    .arg(self.int())
                    .arg(self.int())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The differ.
// ---------------------------------------------------------------------------------------------

/// Where the two servers first disagreed.
#[derive(Debug, thiserror::Error)]
enum Mismatch {
    #[error(
        "seed {seed}, command #{index} `{command}`: quorumd answered {ours:?}, redis-server \
         {theirs:?} (rerun: DIFF_SEED={seed} cargo test -p quorumd --test resp_differential)"
    )]
    Reply {
        seed: u64,
        index: usize,
        command: String,
        ours: Reply,
        theirs: Reply,
    },
    #[error(
        "seed {seed}, end state of key \"{key}\", `{command}`: quorumd {ours:?}, \
         redis-server {theirs:?} (rerun: DIFF_SEED={seed} cargo test -p quorumd --test \
         resp_differential)"
    )]
    State {
        seed: u64,
        key: String,
        command: String,
        ours: Reply,
        theirs: Reply,
    },
}

/// A change made behind the sequence's back, for the negative controls.
#[derive(Clone, Copy)]
enum Plant {
    None,
    /// The reply of command `index` from "ours" is replaced.
    Reply {
        index: usize,
    },
    /// After command `index`, a key is changed straight on the server behind "ours".
    Key {
        index: usize,
    },
}

struct Target {
    conn: MultiplexedConnection,
}

impl Target {
    async fn connect(addr: std::net::SocketAddr) -> Target {
        Target {
            conn: direct(&format!("redis://{addr}")).await,
        }
    }

    /// A connection that sends `HELLO 3` first: replies in RESP3's types.
    async fn connect_resp3(addr: std::net::SocketAddr) -> Target {
        Target {
            conn: direct(&format!("redis://{addr}/?protocol=resp3")).await,
        }
    }

    async fn run(&mut self, c: &Cmd) -> Reply {
        // The raw request: `query_async` would turn an error inside EXEC's array into an
        // error for the whole reply.
        let cmd = c.redis();
        let reply = redis::aio::ConnectionLike::req_packed_command(&mut self.conn, &cmd).await;
        Reply::from_result(reply)
    }
}

/// Runs one sequence on both targets, comparing every reply and then every key's state.
/// `tamper` is a connection to the server behind `ours` that bypasses it (negative controls).
async fn run_sequence(
    seed: u64,
    commands: usize,
    ours: &mut Target,
    theirs: &mut Target,
    plant: Plant,
    tamper: Option<&mut Target>,
) -> Result<usize, Mismatch> {
    let prefix = format!("d{seed}:");
    let mut g = Gen::new(seed, &prefix);
    // The empty key is shared by all sequences (it cannot carry the prefix): start it afresh.
    for t in [&mut *ours, &mut *theirs] {
        t.run(&Cmd::new("DEL").key(b"")).await;
    }
    let mut tamper = tamper;
    // DIFF_TRACE=1 prints every command with redis-server's reply.
    let trace = std::env::var_os("DIFF_TRACE").is_some();
    let mut index = 0;
    // The names of the commands queued in the open transaction.
    let mut queued: Vec<String> = vec![];
    while index < commands {
        for cmd in g.next() {
            let theirs_reply = theirs.run(&cmd).await;
            let mut ours_reply = ours.run(&cmd).await;
            if matches!(plant, Plant::Reply { index: i } if i == index) {
                ours_reply = Reply::Status("planted".into());
            }
            let name = compared_as(&cmd);
            if trace {
                println!("#{index} {cmd} -> {theirs_reply:?}");
            }
            let agree = match (name.as_str(), &ours_reply, &theirs_reply) {
                // EXEC's array: each reply compared as its command's.
                ("EXEC", Reply::Array(a), Reply::Array(b)) if a.len() == queued.len() => {
                    a.len() == b.len()
                        && queued
                            .iter()
                            .zip(a.iter().zip(b))
                            .all(|(n, (a, b))| same(n, a, b))
                }
                _ => same(&name, &ours_reply, &theirs_reply),
            };
            if !agree {
                return Err(Mismatch::Reply {
                    seed,
                    index,
                    command: cmd.to_string(),
                    ours: ours_reply,
                    theirs: theirs_reply,
                });
            }
            match name.as_str() {
                "EXEC" | "DISCARD" => queued.clear(),
                _ if theirs_reply == Reply::Status("QUEUED".into()) => queued.push(name.clone()),
                _ => {}
            }
            if let (Plant::Key { index: i }, Some(t)) = (plant, tamper.as_deref_mut())
                && i == index
            {
                t.run(&Cmd::new("SET").key(&g.general[0]).arg("planted"))
                    .await;
            }
            index += 1;
        }
    }
    compare_state(seed, &g, ours, theirs).await?;
    Ok(index)
}

/// Every key's type, value and TTL, read through both, and the key list.
async fn compare_state(
    seed: u64,
    g: &Gen,
    ours: &mut Target,
    theirs: &mut Target,
) -> Result<(), Mismatch> {
    let mut reads = vec![];
    for k in g.all_keys() {
        let t = theirs.run(&Cmd::new("TYPE").key(&k)).await;
        reads.push(Cmd::new("TYPE").key(&k));
        reads.push(Cmd::new("PTTL").key(&k));
        let read = match &t {
            Reply::Status(s) if s == "string" => Cmd::new("GET").key(&k),
            Reply::Status(s) if s == "list" => Cmd::new("LRANGE").key(&k).arg("0").arg("-1"),
            Reply::Status(s) if s == "zset" => Cmd::new("ZRANGE")
                .key(&k)
                .arg("0")
                .arg("-1")
                .arg("WITHSCORES"),
            Reply::Status(s) if s == "hash" => Cmd::new("HGETALL").key(&k),
            Reply::Status(s) if s == "set" => Cmd::new("SMEMBERS").key(&k),
            Reply::Status(s) if s == "stream" => {
                // The consumer groups too, with their pending entries and consumers.
                reads.push(Cmd::new("XRANGE").key(&k).arg("-").arg("+"));
                Cmd::new("XINFO")
                    .arg("STREAM")
                    .key(&k)
                    .arg("FULL")
                    .arg("COUNT")
                    .arg("0")
            }
            // Absent on the reference: quorumd must agree.
            _ => Cmd::new("GET").key(&k),
        };
        reads.push(read);
    }
    reads.push(Cmd::new("KEYS").arg(format!("d{seed}:*")));
    for cmd in reads {
        let (a, b) = (ours.run(&cmd).await, theirs.run(&cmd).await);
        if !same(&cmd.name(), &a, &b) {
            return Err(Mismatch::State {
                seed,
                key: cmd
                    .keys
                    .first()
                    .map(|k| k.escape_ascii().to_string())
                    .unwrap_or_default(),
                command: cmd.to_string(),
                ours: a,
                theirs: b,
            });
        }
    }
    Ok(())
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
    })
}

async fn start_redis(n: usize) -> DevCluster {
    tokio::task::spawn_blocking(move || DevCluster::start(n))
        .await
        .unwrap()
        .expect("redis-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sequences_answer_as_redis_server() {
    // No node fails here: generous timeouts keep a loaded 2-core machine from turning a slow
    // KEYS (a whole scan) into a QUORUM error.
    let tc = TestCluster::start_with(3, |cfg| {
        cfg.timeouts.node_ms = 10_000;
        cfg.timeouts.request_ms = 30_000;
    })
    .await;
    let reference = start_redis(1).await;
    let quorumd_addr = tc.app().resp_addr().expect("resp enabled");
    let mut ours = Target::connect(quorumd_addr).await;
    let mut theirs = Target::connect(reference.nodes[0].addr()).await;
    // Odd seeds run over RESP3 (HELLO 3), the protocol redis-py 8 speaks by default.
    let mut ours3 = Target::connect_resp3(quorumd_addr).await;
    let mut theirs3 = Target::connect_resp3(reference.nodes[0].addr()).await;
    let commands = env_number("DIFF_COMMANDS").map_or(COMMANDS, |n| n as usize);
    let seeds: Vec<u64> = match env_number("DIFF_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_number("DIFF_SEQUENCES").unwrap_or(SEQUENCES)).collect(),
    };
    for l in LEGIT {
        println!("legit difference: {} ({:?}): {}", l.what, l.how, l.why);
    }
    let started = Instant::now();
    let mut sent = 0;
    let mut failed = vec![];
    for &seed in &seeds {
        let (ours, theirs) = if seed % 2 == 1 {
            (&mut ours3, &mut theirs3)
        } else {
            (&mut ours, &mut theirs)
        };
        match run_sequence(seed, commands, ours, theirs, Plant::None, None).await {
            Ok(n) => sent += n,
            Err(m) => {
                println!("{m}");
                failed.push(m);
            }
        }
    }
    // Every sequence runs, so that one run shows the first mismatch of each.
    if let Some(first) = failed.first() {
        panic!(
            "{} of {} sequences differ; the first: {first}",
            failed.len(),
            seeds.len()
        );
    }
    println!(
        "{} sequences, {sent} commands, identical, in {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    tc.shutdown().await;
}

/// Negative controls: two plain redis-servers agree (the differ has no false alarm), and a
/// planted difference, in a reply or in a key changed behind the sequence's back, is found at
/// its position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_differ_catches_a_planted_difference() {
    let servers = start_redis(2).await;
    let mut a = Target::connect(servers.nodes[0].addr()).await;
    let mut b = Target::connect(servers.nodes[1].addr()).await;
    let mut behind_a = Target::connect(servers.nodes[0].addr()).await;
    for seed in 100..103 {
        run_sequence(seed, COMMANDS, &mut a, &mut b, Plant::None, None)
            .await
            .unwrap_or_else(|m| panic!("two redis-servers must agree: {m}"));
    }

    let planted = 37;
    match run_sequence(
        200,
        COMMANDS,
        &mut a,
        &mut b,
        Plant::Reply { index: planted },
        None,
    )
    .await
    {
        Err(Mismatch::Reply { seed, index, .. }) => assert_eq!((seed, index), (200, planted)),
        other => panic!("the planted reply must be reported at #{planted}: {other:?}"),
    }

    // The key is changed after the last command, so only the end-state comparison can see it.
    let last = COMMANDS - 1;
    let found = run_sequence(
        201,
        COMMANDS,
        &mut a,
        &mut b,
        Plant::Key { index: last },
        Some(&mut behind_a),
    )
    .await;
    let want_key = "d201:k0";
    match found {
        Err(Mismatch::State { seed, key, .. }) => assert_eq!((seed, key.as_str()), (201, want_key)),
        // A transaction may run past the last index: the plant then lands before its end.
        Err(Mismatch::Reply { seed, index, .. }) => {
            assert!(seed == 201 && index >= last, "reported at #{index}")
        }
        Ok(_) => panic!("a key changed behind the sequence's back must be found"),
    }
}
