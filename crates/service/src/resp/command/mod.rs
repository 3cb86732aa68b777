//! Commands: a table of every supported command (name, arity, flags, key positions, parser),
//! assembled from one table per family, and the typed commands the parsers produce.
//!
//! Adding a family (e.g. the CRDT counters behind INCR) means: a module with its `SPECS`
//! table, a command type with `keys()` and `apply()`, a `DataCmd` variant for it, and one line
//! in `FAMILIES`. Nothing else in the connection or the server changes.

mod bitfield;
mod bits;
pub mod blocking;
mod conn;
mod counters;
mod geo;
mod geohash;
mod hashes;
mod hll;
mod hyperloglog;
mod inspect;
mod key_specs;
mod keys;
mod keyspace;
mod lcs;
mod list_ops;
mod lists;
mod long_double;
pub mod pubsub;
mod quorumd;
mod server;
mod sets;
mod sort;
mod sort_order;
mod streams;
mod strings;
mod transactions;
mod zset_ops;
mod zsets;

use super::auth::{Requirement, permit};
use super::frame::Frame;
use super::{Session, Shared};
use crate::auth::Scope;
use bytes::Bytes;
use quorumd_core::crdt::CrdtKind;
use quorumd_core::quorum::Consistency;
use quorumd_node::pool::ServerErrorKind;
use quorumd_replication::crdt_store::CrdtError;
use quorumd_replication::store::{
    StoreError, TypedChange, TypedFound, TypedWanted, VersionedStore,
};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// A command flag as `COMMAND` shows it. Typed so that a misspelt flag does not compile: the
/// `write` flag is what keeps a command from read-only tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Changes data: needs a token of scope `write`.
    Write,
    ReadOnly,
    DenyOom,
    Fast,
    Stale,
    Loading,
    NoScript,
    /// Allowed before AUTH when authentication is on.
    NoAuth,
    /// Shown as Redis shows it (AUTH, MULTI...); nothing in quorumd reads it.
    AllowBusy,
    /// Shown as Redis shows it (EXEC); quorumd has no slow log.
    SkipSlowlog,
}

impl Flag {
    pub fn name(self) -> &'static str {
        match self {
            Flag::Write => "write",
            Flag::ReadOnly => "readonly",
            Flag::DenyOom => "denyoom",
            Flag::Fast => "fast",
            Flag::Stale => "stale",
            Flag::Loading => "loading",
            Flag::NoScript => "noscript",
            Flag::NoAuth => "no_auth",
            Flag::AllowBusy => "allow_busy",
            Flag::SkipSlowlog => "skip_slowlog",
        }
    }
}

/// One command as `COMMAND` describes it, with the function that parses its arguments.
pub struct Spec {
    /// Lowercase name.
    pub name: &'static str,
    /// Redis's convention: `n` exactly n arguments (the name included), `-n` at least n.
    pub arity: i64,
    pub flags: &'static [Flag],
    pub first_key: i64,
    pub last_key: i64,
    pub step: i64,
    /// Parses the whole argument list (the name first); an error reply when it is invalid.
    pub parse: Parser,
}

type Parser = fn(&[Bytes]) -> Result<Command, Frame>;

/// A command whose first argument is a key, up to `last_key` (negative: counted from the end)
/// every `step`.
pub(super) const fn key_spec(
    name: &'static str,
    arity: i64,
    flags: &'static [Flag],
    last_key: i64,
    step: i64,
    parse: Parser,
) -> Spec {
    Spec::keyed(name, arity, flags, (1, last_key, step), parse)
}

impl Spec {
    /// A command without key arguments.
    pub const fn keyless(
        name: &'static str,
        arity: i64,
        flags: &'static [Flag],
        parse: Parser,
    ) -> Spec {
        Spec::keyed(name, arity, flags, (0, 0, 0), parse)
    }

    /// A command whose keys are the arguments `first..=last` (negative: counted from the end),
    /// every `step`.
    pub const fn keyed(
        name: &'static str,
        arity: i64,
        flags: &'static [Flag],
        (first_key, last_key, step): (i64, i64, i64),
        parse: Parser,
    ) -> Spec {
        Spec {
            name,
            arity,
            flags,
            first_key,
            last_key,
            step,
            parse,
        }
    }

    fn has(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }

    /// What a session must hold to run this command, read from its flags.
    pub fn requirement(&self) -> Requirement {
        Requirement {
            command: self.name,
            scope: if self.has(Flag::Write) {
                Scope::Write
            } else {
                Scope::Read
            },
            before_auth: self.has(Flag::NoAuth),
        }
    }
}

/// Every family's table; the dispatch and `COMMAND` read only this.
pub static FAMILIES: &[&[Spec]] = &[
    conn::SPECS,
    server::SPECS,
    quorumd::SPECS,
    strings::SPECS,
    bits::SPECS,
    bitfield::SPECS,
    keys::SPECS,
    keyspace::SPECS,
    counters::SPECS,
    hashes::SPECS,
    sets::SPECS,
    lists::SPECS,
    zsets::SPECS,
    blocking::SPECS,
    geo::SPECS,
    hyperloglog::SPECS,
    sort::SPECS,
    inspect::SPECS,
    streams::SPECS,
    pubsub::SPECS,
    transactions::SPECS,
];

static BY_NAME: LazyLock<HashMap<&'static str, &'static Spec>> = LazyLock::new(|| {
    FAMILIES
        .iter()
        .flat_map(|f| f.iter())
        .map(|s| (s.name, s))
        .collect()
});

pub fn all_specs() -> impl Iterator<Item = &'static Spec> {
    FAMILIES.iter().flat_map(|f| f.iter())
}

pub fn spec(name: &str) -> Option<&'static Spec> {
    // Command names are short: lowercase them on the stack, not in a new String per request.
    let mut buf = [0u8; 32];
    let lower = buf.get_mut(..name.len())?;
    lower.copy_from_slice(name.as_bytes());
    lower.make_ascii_lowercase();
    BY_NAME.get(std::str::from_utf8(lower).ok()?).copied()
}

/// A parsed request.
pub enum Command {
    /// About the connection or the server: runs alone, in order, with the session.
    Session(SessionCmd),
    /// Reads or writes keys through the store; consecutive ones on unrelated keys may run
    /// concurrently.
    Data(DataCmd),
    /// Answered without running anything (an invalid request).
    Reply(Frame),
}

pub enum SessionCmd {
    Conn(conn::ConnCmd),
    Server(server::ServerCmd),
    Quorumd(quorumd::QuorumdCmd),
    Keyspace(keyspace::KeyspaceCmd),
    PubSub(pubsub::PubSubCmd),
}

pub enum DataCmd {
    String(strings::StringCmd),
    Bits(bits::BitCmd),
    BitField(bitfield::BitFieldCmd),
    Key(keys::KeyCmd),
    Counter(counters::CounterCmd),
    Float(counters::FloatCmd),
    Hash(hashes::HashCmd),
    Set(sets::SetCmd),
    List(lists::ListCmd),
    Zset(zsets::ZsetCmd),
    Geo(geo::GeoCmd),
    Hll(hyperloglog::HllCmd),
    Sort(sort::SortCmd),
    Inspect(inspect::InspectCmd),
    Stream(streams::StreamCmd),
    Transfer(keyspace::TransferCmd),
    Blocking(blocking::BlockingCmd),
}

/// The keys a data command reads and writes, for ordering pipelined commands.
#[derive(Debug, Default)]
pub struct Access<'a> {
    pub reads: Vec<&'a [u8]>,
    pub writes: Vec<&'a [u8]>,
}

impl DataCmd {
    pub fn access(&self) -> Access<'_> {
        match self {
            DataCmd::String(c) => c.access(),
            DataCmd::Bits(c) => c.access(),
            DataCmd::BitField(c) => c.access(),
            DataCmd::Key(c) => c.access(),
            DataCmd::Counter(c) => c.access(),
            DataCmd::Float(c) => c.access(),
            DataCmd::Hash(c) => c.access(),
            DataCmd::Set(c) => c.access(),
            DataCmd::List(c) => c.access(),
            DataCmd::Zset(c) => c.access(),
            DataCmd::Geo(c) => c.access(),
            DataCmd::Hll(c) => c.access(),
            DataCmd::Sort(c) => c.access(),
            DataCmd::Inspect(c) => c.access(),
            DataCmd::Stream(c) => c.access(),
            DataCmd::Transfer(c) => c.access(),
            DataCmd::Blocking(c) => c.access(),
        }
    }

    /// Whether it reads keys `access()` does not name (SORT's BY and GET patterns name keys
    /// only once the elements are read): the connection then runs it alone, in order.
    pub fn reads_unnamed_keys(&self) -> bool {
        matches!(self, DataCmd::Sort(c) if c.reads_patterns())
    }

    /// Whether the connection runs it alone, after everything before it and before anything
    /// after it: a blocking pop, as in Redis, holds up the commands pipelined after it.
    pub fn runs_alone(&self) -> bool {
        self.reads_unnamed_keys() || matches!(self, DataCmd::Blocking(_))
    }

    /// As inside MULTI: a blocking pop tries once, as its non-blocking form (Redis answers
    /// nil there rather than block).
    pub fn without_waiting(self) -> Self {
        match self {
            DataCmd::Blocking(c) => DataCmd::Blocking(c.without_waiting()),
            other => other,
        }
    }

    /// Whether a write of it may add list or sorted-set elements a blocking pop waits for.
    fn may_feed_a_pop(&self) -> bool {
        matches!(
            self,
            DataCmd::List(_)
                | DataCmd::Zset(_)
                | DataCmd::Geo(_)
                | DataCmd::Sort(_)
                | DataCmd::Key(_)
                | DataCmd::Transfer(_)
                | DataCmd::Blocking(_)
        )
    }

    /// Runs it, then announces its written keys to the blocking pops waiting on them in this
    /// instance (`resp::wakes`), unless it failed or popped nothing.
    pub async fn apply(self, shared: Arc<Shared>, level: Consistency) -> Frame {
        let written: Vec<Bytes> = if self.may_feed_a_pop() {
            let access = self.access();
            access
                .writes
                .iter()
                .map(|k| Bytes::copy_from_slice(k))
                .collect()
        } else {
            Vec::new()
        };
        let reply = self.run(&shared, level).await;
        if !written.is_empty() && !matches!(reply, Frame::Error(_) | Frame::Null | Frame::NullArray)
        {
            shared.wakes.announce(&written);
        }
        reply
    }

    async fn run(self, shared: &Shared, level: Consistency) -> Frame {
        let (store, crdts) = (&shared.store, &shared.crdts);
        match self {
            DataCmd::String(c) => c.apply(store, crdts, level).await,
            DataCmd::Bits(c) => c.apply(store, level).await,
            DataCmd::BitField(c) => c.apply(store, level).await,
            DataCmd::Key(c) => c.apply(store, crdts, level).await,
            DataCmd::Counter(c) => c.apply(store, crdts, level).await,
            DataCmd::Float(c) => c.apply(store, level).await,
            DataCmd::Hash(c) => c.apply(store, crdts, level).await,
            DataCmd::Set(c) => c.apply(store, crdts, level).await,
            DataCmd::List(c) => c.apply(store, level).await,
            DataCmd::Zset(c) => c.apply(store, level).await,
            DataCmd::Geo(c) => c.apply(store, level).await,
            DataCmd::Hll(c) => c.apply(store, level).await,
            DataCmd::Sort(c) => c.apply(store, crdts, level).await,
            DataCmd::Inspect(c) => c.apply(store, level).await,
            DataCmd::Stream(c) => c.apply(store, level).await,
            DataCmd::Transfer(c) => c.apply(store, level).await,
            DataCmd::Blocking(c) => c.apply(shared, level).await,
        }
    }
}

impl SessionCmd {
    pub async fn apply(self, session: &mut Session, shared: &Shared) -> Frame {
        match self {
            SessionCmd::Conn(c) => c.apply(session, shared),
            SessionCmd::Server(c) => c.apply(session, shared).await,
            SessionCmd::Quorumd(c) => c.apply(session),
            SessionCmd::Keyspace(c) => c.apply(session, shared).await,
            SessionCmd::PubSub(c) => c.apply(session, shared).await,
        }
    }
}

/// The command's name for metrics when it is not a supported command.
pub const OTHER: &str = "other";

/// Looks the command up, checks arity and authentication, and parses its arguments. Also
/// returns the command's name from the table (`OTHER` when unknown), a bounded metric label.
pub fn parse(args: &[Bytes], session: &mut Session, shared: &Shared) -> (&'static str, Command) {
    match check(args, session, shared) {
        Ok(spec) => (spec.name, (spec.parse)(args).unwrap_or_else(Command::Reply)),
        Err((name, refusal)) => (name, Command::Reply(refusal)),
    }
}

/// What Redis checks before it queues a command in a transaction: that the command exists,
/// its arity, and that the connection may run it. Argument errors (syntax, a number that is
/// not one) are found only when the command runs, so in a transaction they are answered in
/// `EXEC`'s array and do not discard it. quorumd also refuses SUBSCRIBE and its kin here
/// (`pubsub::refused_in_multi`).
pub fn check(
    args: &[Bytes],
    session: &mut Session,
    shared: &Shared,
) -> Result<&'static Spec, (&'static str, Frame)> {
    let Some(first) = args.first() else {
        return Err((OTHER, Frame::error("ERR empty command")));
    };
    let name = String::from_utf8_lossy(first);
    let Some(spec) = spec(&name) else {
        return Err((OTHER, unknown_command(&name, &args[1..])));
    };
    // Redis's order: the arity before the permission, so a client that is not logged in
    // learns of a malformed request (and of an unknown command) first.
    if !arity_fits(spec.arity, args.len()) {
        return Err((spec.name, wrong_arity(spec.name)));
    }
    if let Err(refused) = permit(session, shared, &spec.requirement()) {
        return Err((spec.name, refused));
    }
    if pubsub::refused_in_multi(spec.name)
        && let Err(refusal) = (spec.parse)(args)
    {
        return Err((spec.name, refusal));
    }
    Ok(spec)
}

/// LMPOP's and ZMPOP's `numkeys key...`: the index of the argument after the keys (LEFT|RIGHT,
/// MIN|MAX), with Redis's errors.
fn mpop_where(a: &[Bytes]) -> Result<usize, Frame> {
    let numkeys = int_arg(&a[1])
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| Frame::error("ERR numkeys should be greater than 0"))?;
    numkeys
        .checked_add(2)
        .filter(|&w| w < a.len())
        .ok_or_else(syntax_error)
}

/// LMPOP's and ZMPOP's optional `COUNT n` from `a[from..]` (1 without it), with Redis's errors.
fn mpop_count(a: &[Bytes], from: usize) -> Result<usize, Frame> {
    let mut count = None;
    let mut i = from;
    while i < a.len() {
        if count.is_none() && eq(&a[i], "count") && i + 1 < a.len() {
            let c = int_arg(&a[i + 1]).ok().filter(|&c| c > 0);
            let c = c.ok_or_else(|| Frame::error("ERR count should be greater than 0"))?;
            count = Some(usize::try_from(c).unwrap_or(usize::MAX));
            i += 2;
        } else {
            return Err(syntax_error());
        }
    }
    Ok(count.unwrap_or(1))
}

/// Redis's text, quoting arguments until 128 characters have been shown.
fn unknown_command(name: &str, rest: &[Bytes]) -> Frame {
    let mut shown = String::new();
    for a in rest {
        if shown.len() >= 128 {
            break;
        }
        let room = 128 - shown.len();
        let arg = String::from_utf8_lossy(a);
        let arg: String = arg.chars().take(room).collect();
        shown.push_str(&format!("'{arg}' "));
    }
    let name: String = name.chars().take(128).collect();
    Frame::error(format!(
        "ERR unknown command '{name}', with args beginning with: {shown}"
    ))
}

/// The MATCH and COUNT of ZSCAN, SSCAN and HSCAN, which answer a whole value in one step
/// (COUNT is checked and otherwise unused).
fn scan_pattern(options: &[Bytes]) -> Result<Option<Bytes>, Frame> {
    let mut pattern = None;
    let mut i = 0;
    while i < options.len() {
        let value = options.get(i + 1).ok_or_else(syntax_error)?;
        if eq(&options[i], "count") {
            if int_arg(value)? < 1 {
                return Err(syntax_error());
            }
        } else if eq(&options[i], "match") {
            pattern = Some(value.clone());
        } else {
            return Err(syntax_error());
        }
        i += 2;
    }
    Ok(pattern)
}

/// At most this many repeated picks (a negative count) are built in memory; Redis would build
/// a reply of any size.
const MAX_PICKS: usize = 1 << 20;

/// The picks of SRANDMEMBER, ZRANDMEMBER and HRANDFIELD with a count, from items that are not
/// empty: distinct items for a positive count (all of them, in order, when it asks for as many
/// or more), that many picks, repeats allowed, for a negative one.
pub(super) fn random_picks<T>(items: &[T], count: i64) -> Result<Vec<&T>, Frame> {
    use rand::Rng;
    let mut rng = rand::rng();
    let n = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
    if count < 0 {
        if n > MAX_PICKS {
            return Err(Frame::error(format!(
                "ERR quorumd answers at most {MAX_PICKS} repeated picks"
            )));
        }
        return Ok((0..n)
            .map(|_| &items[rng.random_range(0..items.len())])
            .collect());
    }
    if n >= items.len() {
        return Ok(items.iter().collect());
    }
    Ok(rand::seq::index::sample(&mut rng, items.len(), n)
        .into_iter()
        .map(|i| &items[i])
        .collect())
}

/// The cursor and options of ZSCAN, SSCAN and HSCAN, as parsed: the cursor is answered
/// before the key is read, the options after (Redis's order).
pub struct ScanArgs {
    cursor_ok: Result<(), Frame>,
    options: Vec<Bytes>,
}

impl ScanArgs {
    /// From `NAME key cursor [options...]`.
    pub(super) fn parse(a: &[Bytes]) -> ScanArgs {
        ScanArgs {
            cursor_ok: keyspace::parse_cursor(&a[2]).map(|_| ()),
            options: a[3..].to_vec(),
        }
    }

    /// The refusal of a malformed cursor, to answer before the key is read.
    pub(super) fn bad_cursor(&self) -> Option<Frame> {
        self.cursor_ok.clone().err()
    }
}

/// ZSCAN, SSCAN and HSCAN: the whole value in one step, cursor 0 (what Redis answers for a
/// small value, and a complete iteration for any size). An absent value answers nothing
/// whatever the options, as Redis answers a missing key before it reads them; else the items
/// whose name (member, field) matches MATCH, each as `frames` gives it.
pub(super) fn whole_scan<'a, T>(
    items: &'a [T],
    args: &ScanArgs,
    name: impl Fn(&T) -> &[u8],
    frames: impl Fn(&'a T) -> Vec<Frame>,
) -> Frame {
    let step = |found: Vec<Frame>| Frame::Array(vec![Frame::bulk("0"), Frame::Array(found)]);
    if items.is_empty() {
        return step(vec![]);
    }
    match scan_pattern(&args.options) {
        Ok(pattern) => step(
            items
                .iter()
                .filter(|i| {
                    pattern.as_ref().is_none_or(|p| {
                        quorumd_replication::store::keyspace::glob_matches(p, name(i))
                    })
                })
                .flat_map(frames)
                .collect(),
        ),
        Err(refusal) => refusal,
    }
}

/// Whether `n` arguments (the name included) fit `arity`, in the table's convention: `n`
/// exactly n, `-n` at least n.
pub fn arity_fits(arity: i64, n: usize) -> bool {
    let n = n as i64;
    if arity >= 0 { n == arity } else { n >= -arity }
}

pub fn wrong_arity(name: &str) -> Frame {
    Frame::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

pub fn syntax_error() -> Frame {
    Frame::error("ERR syntax error")
}

pub fn not_an_integer() -> Frame {
    Frame::error("ERR value is not an integer or out of range")
}

pub fn unknown_subcommand(sub: &[u8], command: &str) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        String::from_utf8_lossy(sub),
        command.to_ascii_uppercase()
    ))
}

/// An integer argument, parsed as strictly as Redis does (`string2ll`): no sign but `-`, no
/// leading zero, and no `-0`.
pub fn int_arg(arg: &[u8]) -> Result<i64, Frame> {
    strict_i64(arg).ok_or_else(not_an_integer)
}

/// Redis's `string2ll`: `None` for anything it refuses.
pub fn strict_i64(arg: &[u8]) -> Option<i64> {
    quorumd_core::stream::string2ll(arg)
}

pub fn eq(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Redis's reply for a command on a key holding another type.
pub(super) fn wrong_type() -> Frame {
    Frame::error("WRONGTYPE Operation against a key holding the wrong kind of value")
}

/// Whether the store failed because of what the key holds: the nodes refused with WRONGTYPE,
/// or a counter, set or map (CRDT) key was used as a string.
pub fn is_wrong_type(e: &StoreError) -> bool {
    match e {
        StoreError::NoQuorum(q) => q.all_refused_with(&ServerErrorKind::WrongType),
        StoreError::KindConflict { .. } | StoreError::WrongType => true,
        _ => false,
    }
}

/// The STORE forms' write: `value` (a `Put*` change of `count` elements) replaces whatever
/// `dst` held, of any type, without a time to live; an empty result deletes it. Answers the
/// count, as Redis does.
pub(super) async fn store_replacing(
    store: &VersionedStore,
    dst: &[u8],
    level: Consistency,
    count: usize,
    value: TypedChange,
) -> Frame {
    store
        .read_modify_write_typed(dst, level, |found| {
            let change = match (count, found) {
                (0, None) => TypedChange::Keep,
                (0, Some(_)) => TypedChange::Delete,
                _ => value.clone(),
            };
            (change, Frame::Integer(count as i64))
        })
        .await
        .unwrap_or_else(store_error)
}

/// A read-only command on a list or a sorted set: reads the key whole, takes its value as the
/// command's type with `as_type` (WRONGTYPE for another), and gives it to `answer` (`None`
/// when the key is absent).
pub(super) async fn read_typed<T: ?Sized>(
    store: &VersionedStore,
    key: &[u8],
    level: Consistency,
    as_type: impl FnOnce(Option<&TypedFound>) -> Result<Option<&T>, Frame>,
    answer: impl FnOnce(Option<&T>) -> Frame,
) -> Frame {
    match store.get_typed(key, level, TypedWanted::Full).await {
        Ok(found) => match as_type(found.as_ref()) {
            Ok(value) => answer(value),
            Err(e) => e,
        },
        Err(e) => store_error(e),
    }
}

/// The reply for a store failure. A quorum failure names every node that failed and why; when
/// the nodes refused because the key holds another type, the reply is Redis's WRONGTYPE.
pub fn store_error(e: StoreError) -> Frame {
    if is_wrong_type(&e) {
        return wrong_type();
    }
    match e {
        StoreError::NoQuorum(q) => Frame::error(format!("QUORUM {q}")),
        StoreError::Timeout { .. } => Frame::error(format!("TIMEOUT {e}")),
        StoreError::PreconditionFailed { .. } | StoreError::Preempted { .. } => Frame::error(
            format!("ERR the key kept changing under concurrent writes: {e}"),
        ),
        StoreError::ReservedKey { .. } | StoreError::Encoding(_) | StoreError::OutcomeUnknown => {
            Frame::error(format!("ERR {e}"))
        }
        StoreError::KindConflict { .. } | StoreError::WrongType => wrong_type(),
        StoreError::WatchedKeyChanged { .. } => Frame::error(format!("EXECABORT {e}")),
    }
}

/// The reply for a failed CRDT operation (counters, hashes, sets), in Redis's words where
/// Redis has them.
pub fn crdt_error(e: CrdtError) -> Frame {
    match e {
        CrdtError::Store(e) => store_error(e),
        CrdtError::KindConflict { .. } => wrong_type(),
        CrdtError::Overflow(_) => Frame::error("ERR increment or decrement would overflow"),
        CrdtError::NotAnInteger => Frame::error("ERR hash value is not an integer"),
        e @ (CrdtError::IdempotencyConflict { .. } | CrdtError::Corrupt(_)) => {
            Frame::error(format!("ERR {e}"))
        }
    }
}

/// The RESP type name of what a key holds, for TYPE.
pub fn type_name(kind: CrdtKind) -> &'static str {
    match kind {
        CrdtKind::Counter => "string",
        CrdtKind::Set => "set",
        CrdtKind::Map => "hash",
    }
}

/// Shorthand for parsers: a data command.
fn data(cmd: impl Into<DataCmd>) -> Result<Command, Frame> {
    Ok(Command::Data(cmd.into()))
}

impl From<strings::StringCmd> for DataCmd {
    fn from(c: strings::StringCmd) -> Self {
        DataCmd::String(c)
    }
}

impl From<keys::KeyCmd> for DataCmd {
    fn from(c: keys::KeyCmd) -> Self {
        DataCmd::Key(c)
    }
}

impl From<counters::CounterCmd> for DataCmd {
    fn from(c: counters::CounterCmd) -> Self {
        DataCmd::Counter(c)
    }
}

impl From<bits::BitCmd> for DataCmd {
    fn from(c: bits::BitCmd) -> Self {
        DataCmd::Bits(c)
    }
}

impl From<counters::FloatCmd> for DataCmd {
    fn from(c: counters::FloatCmd) -> Self {
        DataCmd::Float(c)
    }
}

impl From<hashes::HashCmd> for DataCmd {
    fn from(c: hashes::HashCmd) -> Self {
        DataCmd::Hash(c)
    }
}

impl From<keyspace::TransferCmd> for DataCmd {
    fn from(c: keyspace::TransferCmd) -> Self {
        DataCmd::Transfer(c)
    }
}

impl From<lists::ListCmd> for DataCmd {
    fn from(c: lists::ListCmd) -> Self {
        DataCmd::List(c)
    }
}

impl From<zsets::ZsetCmd> for DataCmd {
    fn from(c: zsets::ZsetCmd) -> Self {
        DataCmd::Zset(c)
    }
}

impl From<geo::GeoCmd> for DataCmd {
    fn from(c: geo::GeoCmd) -> Self {
        DataCmd::Geo(c)
    }
}

impl From<bitfield::BitFieldCmd> for DataCmd {
    fn from(c: bitfield::BitFieldCmd) -> Self {
        DataCmd::BitField(c)
    }
}

impl From<streams::StreamCmd> for DataCmd {
    fn from(c: streams::StreamCmd) -> Self {
        DataCmd::Stream(c)
    }
}

impl From<hyperloglog::HllCmd> for DataCmd {
    fn from(c: hyperloglog::HllCmd) -> Self {
        DataCmd::Hll(c)
    }
}

impl From<sort::SortCmd> for DataCmd {
    fn from(c: sort::SortCmd) -> Self {
        DataCmd::Sort(c)
    }
}

impl From<blocking::BlockingCmd> for DataCmd {
    fn from(c: blocking::BlockingCmd) -> Self {
        DataCmd::Blocking(c)
    }
}

impl From<sets::SetCmd> for DataCmd {
    fn from(c: sets::SetCmd) -> Self {
        DataCmd::Set(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_command_text_matches_redis() {
        let args = [Bytes::from("a"), Bytes::from("b c")];
        assert_eq!(
            unknown_command("foo", &args),
            Frame::error("ERR unknown command 'foo', with args beginning with: 'a' 'b c' ")
        );
        assert_eq!(
            unknown_command("foo", &[]),
            Frame::error("ERR unknown command 'foo', with args beginning with: ")
        );
    }

    #[test]
    fn table_names_are_lowercase_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for s in all_specs() {
            assert_eq!(s.name, s.name.to_ascii_lowercase());
            assert!(seen.insert(s.name), "{} twice", s.name);
        }
        assert!(spec("GeT").is_some());
    }

    #[test]
    fn every_command_on_keys_says_whether_it_writes() {
        // WATCH reads no value, only versions: Redis gives it neither flag either.
        for s in all_specs().filter(|s| s.first_key > 0 && s.name != "watch") {
            assert!(
                s.has(Flag::Write) != s.has(Flag::ReadOnly),
                "{} must be exactly one of write and readonly",
                s.name
            );
        }
    }

    #[test]
    fn the_required_scope_follows_the_write_flag() {
        let need = |name| spec(name).unwrap().requirement();
        assert_eq!(need("set").scope, Scope::Write);
        assert_eq!(need("hdel").scope, Scope::Write);
        assert_eq!(need("get").scope, Scope::Read);
        assert_eq!(need("ping").scope, Scope::Read);
        assert!(need("auth").before_auth && need("hello").before_auth && need("quit").before_auth);
        assert!(!need("get").before_auth);
    }

    #[test]
    fn integers_are_parsed_strictly() {
        assert_eq!(int_arg(b"-12"), Ok(-12));
        assert!(int_arg(b"+1").is_err());
        assert!(int_arg(b"01").is_err());
        assert!(int_arg(b"-0").is_err());
        assert!(int_arg(b"-01").is_err());
        assert_eq!(int_arg(b"0"), Ok(0));
        assert!(int_arg(b"1.5").is_err());
        assert!(int_arg(b"99999999999999999999").is_err());
    }
}
