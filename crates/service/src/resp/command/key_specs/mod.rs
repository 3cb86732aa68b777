//! Redis 7.0's key specs, for `COMMAND GETKEYS` and `COMMAND GETKEYSANDFLAGS`: where each
//! command (and each subcommand, `memory|usage`) finds its keys among its arguments, and with
//! what flags. `table.rs` is generated from redis-server's `COMMAND` reply
//! (`scripts/gen-key-specs.py`), so the keys found here are those Redis finds; the command
//! table's (first, last, step) cannot say where the keys of `ZUNIONSTORE`, `XREAD` or
//! `SORT ... STORE` are. quorumd answers only for the commands of its own table.
//!
//! The search follows Redis's `getKeysFromCommandWithSpecs`: the specs first, unless a spec's
//! flags depend on the arguments (`SET ... GET`, `BITFIELD`); when the specs cannot tell
//! (an unknown spec, a bad key count), the command's own key-finding function, as below.

mod table;

use super::{Spec, eq, spec, strict_i64};
use crate::resp::frame::Frame;
use bytes::Bytes;

/// A key's flags, as Redis's `CMD_KEY_*`.
pub mod flag {
    pub const RO: u16 = 1;
    pub const RW: u16 = 1 << 1;
    pub const OW: u16 = 1 << 2;
    pub const RM: u16 = 1 << 3;
    pub const ACCESS: u16 = 1 << 4;
    pub const UPDATE: u16 = 1 << 5;
    pub const INSERT: u16 = 1 << 6;
    pub const DELETE: u16 = 1 << 7;
    pub const NOT_KEY: u16 = 1 << 8;
    pub const INCOMPLETE: u16 = 1 << 9;
    pub const VARIABLE_FLAGS: u16 = 1 << 10;

    /// Their names, in the order Redis replies with them.
    pub const NAMES: [(u16, &str); 11] = [
        (RO, "RO"),
        (RW, "RW"),
        (OW, "OW"),
        (RM, "RM"),
        (ACCESS, "access"),
        (UPDATE, "update"),
        (INSERT, "insert"),
        (DELETE, "delete"),
        (NOT_KEY, "not_key"),
        (INCOMPLETE, "incomplete"),
        (VARIABLE_FLAGS, "variable_flags"),
    ];
}

/// Where the search for a spec's keys begins.
pub enum Begin {
    /// At this argument.
    Index(i64),
    /// After this keyword, searched from this argument (from the end when negative).
    Keyword(&'static str, i64),
    /// Only the command's own function knows (SORT's STORE).
    Unknown,
}

/// Which arguments, from where the search began, are keys.
pub enum Find {
    /// Up to `last` (from the end when negative; with a `limit`, 1/limit of what is left),
    /// every `step`.
    Range {
        last: i64,
        step: i64,
        limit: i64,
    },
    /// The argument at `index` counts the keys, which start at `first`, every `step`.
    Keynum {
        index: i64,
        first: i64,
        step: i64,
    },
    Unknown,
}

pub struct KeySpec {
    pub flags: u16,
    pub begin: Begin,
    pub find: Find,
}

/// A command or subcommand (`config|get`) as redis-server describes it.
pub struct Entry {
    pub name: &'static str,
    pub arity: i64,
    /// Finding no key is not an error (EVAL with no keys).
    pub no_mandatory_keys: bool,
    pub specs: &'static [KeySpec],
}

fn entry(name: &str) -> Option<&'static Entry> {
    table::TABLE
        .binary_search_by(|e| e.name.cmp(name))
        .ok()
        .map(|i| &table::TABLE[i])
}

/// Whether Redis gives the command subcommands (`name|...` entries follow `name`).
fn is_container(name: &str) -> bool {
    let prefix = format!("{name}|");
    let at = table::TABLE.partition_point(|e| e.name < prefix.as_str());
    table::TABLE
        .get(at)
        .is_some_and(|e| e.name.starts_with(&prefix))
}

/// One key: its argument's position and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub pos: usize,
    pub flags: u16,
}

/// `COMMAND GETKEYS` (`with_flags`: `GETKEYSANDFLAGS`) of `args`, a command and its
/// arguments, with Redis's replies and errors.
pub fn reply(args: &[Bytes], with_flags: bool) -> Frame {
    match keys(args) {
        Err(refusal) => refusal,
        Ok(keys) => Frame::Array(
            keys.iter()
                .map(|k| {
                    let key = Frame::Bulk(args[k.pos].clone());
                    if !with_flags {
                        return key;
                    }
                    let names = flag::NAMES
                        .iter()
                        .filter(|(f, _)| k.flags & f != 0)
                        .map(|(_, n)| Frame::Simple((*n).into()))
                        .collect();
                    Frame::Array(vec![key, Frame::Set(names)])
                })
                .collect(),
        ),
    }
}

/// The keys of `args`, or Redis's refusal (in Redis's order of checks).
pub fn keys(args: &[Bytes]) -> Result<Vec<Key>, Frame> {
    let invalid_command = || Frame::error("ERR Invalid command specified");
    let ours: &Spec = spec(&String::from_utf8_lossy(&args[0])).ok_or_else(invalid_command)?;
    let found = match args.get(1) {
        Some(sub) if is_container(ours.name) => {
            let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
            Some(entry(&format!("{}|{sub}", ours.name)).ok_or_else(invalid_command)?)
        }
        _ => entry(ours.name),
    };
    // quorumd's own commands (QUORUMD) have no key.
    let Some(found) = found.filter(|e| e.specs.iter().any(|s| s.flags & flag::NOT_KEY == 0)) else {
        return Err(Frame::error("ERR The command has no key arguments"));
    };
    if !super::arity_fits(found.arity, args.len()) {
        return Err(Frame::error(
            "ERR Invalid number of arguments specified for command",
        ));
    }
    let varies = found
        .specs
        .iter()
        .any(|s| s.flags & flag::VARIABLE_FLAGS != 0);
    let keys = match (!varies).then(|| from_specs(found, args)).flatten() {
        Some(keys) => keys,
        None => by_function(found.name, args),
    };
    if keys.is_empty() && !found.no_mandatory_keys {
        return Err(Frame::error("ERR Invalid arguments specified for command"));
    }
    Ok(keys)
}

/// Redis's `getKeysUsingKeySpecs`: `None` when a spec cannot tell (unknown, out of range, a
/// bad key count, or marked incomplete).
fn from_specs(e: &Entry, args: &[Bytes]) -> Option<Vec<Key>> {
    let argc = args.len() as i64;
    let mut keys = Vec::new();
    for s in e.specs {
        if s.flags & flag::NOT_KEY != 0 {
            continue;
        }
        let first = match s.begin {
            Begin::Index(i) => i,
            Begin::Keyword(word, from) => {
                let start = if from > 0 { from } else { argc + from };
                let end = if from > 0 { argc - 1 } else { 1 };
                let mut found = None;
                let mut i = start;
                // As Redis: the search stops before `end`, whichever way it goes.
                while i != end && (1..argc).contains(&i) {
                    if eq(&args[i as usize], word) {
                        found = Some(i + 1);
                        break;
                    }
                    i += if start <= end { 1 } else { -1 };
                }
                match found {
                    Some(f) => f,
                    // A keyword that is absent: no key from this spec.
                    None => continue,
                }
            }
            Begin::Unknown => return None,
        };
        let (first, last, step) = match s.find {
            Find::Range { last, step, limit } => {
                let last = if last >= 0 {
                    first + last
                } else if limit == 0 {
                    argc + last
                } else {
                    first + ((argc - first) / limit + last)
                };
                (first, last, step)
            }
            Find::Keynum {
                index,
                first: from,
                step,
            } => {
                let count = args.get(usize::try_from(first + index).ok()?)?;
                let n = strict_i64(count).filter(|n| *n >= 0)?;
                (first + from, first + from + n - 1, step)
            }
            Find::Unknown => return None,
        };
        if last >= argc || last < first || first >= argc {
            return None;
        }
        let mut i = first;
        while i <= last {
            keys.push(Key {
                pos: i as usize,
                flags: s.flags,
            });
            i += step.max(1);
        }
        if s.flags & flag::INCOMPLETE != 0 {
            return None;
        }
    }
    Some(keys)
}

/// The commands' own key-finding functions (Redis's `getkeys_proc`), for when the specs cannot
/// tell; nothing for a command that has none.
fn by_function(name: &str, a: &[Bytes]) -> Vec<Key> {
    use flag::*;
    let key = |pos: usize, flags: u16| Key { pos, flags };
    match name {
        // `setGetKeys`: GET reads the old value.
        "set" => {
            let get = a[3.min(a.len())..].iter().any(|x| eq(x, "get"));
            let flags = if get {
                RW | ACCESS | UPDATE
            } else {
                OW | UPDATE
            };
            vec![key(1, flags)]
        }
        // `bitfieldGetKeys`: read-only when every operation is a GET.
        "bitfield" => {
            let mut readonly = true;
            let mut i = 2;
            while i < a.len() {
                let left = a.len() - i - 1;
                if eq(&a[i], "get") && left >= 2 {
                    i += 3;
                } else if eq(&a[i], "overflow") && left >= 1 {
                    i += 2;
                } else {
                    readonly = false;
                    break;
                }
            }
            let flags = if readonly {
                RO | ACCESS
            } else {
                RW | ACCESS | UPDATE
            };
            vec![key(1, flags)]
        }
        // `sortGetKeys`: the key, and the last STORE's destination.
        "sort" => {
            let mut keys = vec![key(1, RO | ACCESS)];
            let mut store = None;
            let mut i = 2;
            while i < a.len() {
                if eq(&a[i], "limit") {
                    i += 2;
                } else if eq(&a[i], "get") || eq(&a[i], "by") {
                    i += 1;
                } else if eq(&a[i], "store") && i + 1 < a.len() {
                    store = Some(i + 1);
                }
                i += 1;
            }
            keys.extend(store.map(|s| key(s, OW | UPDATE)));
            keys
        }
        "xread" | "xreadgroup" => xread_keys(a),
        _ => match counted(name) {
            Some((store, count, first)) => counted_keys(a, store, count, first),
            None => Vec::new(),
        },
    }
}

/// `genericGetKeys`'s offsets (store key, key count, first key) for the commands that count
/// their keys.
fn counted(name: &str) -> Option<(usize, usize, usize)> {
    Some(match name {
        "zunion" | "zinter" | "zdiff" | "lmpop" | "zmpop" | "sintercard" | "zintercard" => {
            (0, 1, 2)
        }
        "zunionstore" | "zinterstore" | "zdiffstore" => (1, 2, 3),
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" | "blmpop"
        | "bzmpop" => (0, 2, 3),
        _ => return None,
    })
}

/// `genericGetKeys`: the count read as `atoi` reads it, the keys without flags, the store key
/// last.
fn counted_keys(a: &[Bytes], store: usize, count: usize, first: usize) -> Vec<Key> {
    let n = atoi(&a[count]);
    let room = a.len().saturating_sub(first) as i64;
    if n < 1 || n > room {
        return Vec::new();
    }
    let mut keys: Vec<Key> = (0..n as usize)
        .map(|i| Key {
            pos: first + i,
            flags: 0,
        })
        .collect();
    if store > 0 {
        keys.push(Key {
            pos: store,
            flags: 0,
        });
    }
    keys
}

/// C's `atoi`: leading blanks, a sign, digits up to the first other byte; 0 without digits.
fn atoi(s: &[u8]) -> i64 {
    let s = match s.iter().position(|b| !b" \t\n\r\x0b\x0c".contains(b)) {
        Some(i) => &s[i..],
        None => return 0,
    };
    let (negative, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for d in digits.iter().take_while(|b| b.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(i64::from(d - b'0'));
    }
    if negative { -n } else { n }
}

/// `xreadGetKeys`: the first half of what follows STREAMS, after the options.
fn xread_keys(a: &[Bytes]) -> Vec<Key> {
    let mut streams = None;
    let mut i = 1;
    while i < a.len() {
        if eq(&a[i], "block") || eq(&a[i], "count") {
            i += 2;
        } else if eq(&a[i], "group") {
            i += 3;
        } else if eq(&a[i], "noack") {
            i += 1;
        } else {
            if eq(&a[i], "streams") {
                streams = Some(i);
            }
            break;
        }
    }
    let Some(at) = streams else {
        return Vec::new();
    };
    let n = a.len() - at - 1;
    if n == 0 || !n.is_multiple_of(2) {
        return Vec::new();
    }
    (at + 1..at + 1 + n / 2)
        .map(|pos| Key {
            pos,
            flags: flag::RO | flag::ACCESS,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|w| Bytes::from(w.to_string()))
            .collect()
    }

    fn positions(line: &str) -> Result<Vec<usize>, Frame> {
        keys(&args(line)).map(|k| k.iter().map(|k| k.pos).collect())
    }

    #[test]
    fn the_table_is_sorted_for_binary_search() {
        assert!(table::TABLE.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn redis_arities_agree_with_the_command_table() {
        for s in super::super::all_specs() {
            if let Some(e) = entry(s.name) {
                assert_eq!(e.arity, s.arity, "{}", s.name);
            }
        }
    }

    #[test]
    fn keys_are_found_as_redis_finds_them() {
        assert_eq!(positions("get k"), Ok(vec![1]));
        assert_eq!(positions("mset a 1 b 2"), Ok(vec![1, 3]));
        assert_eq!(positions("zunionstore d 2 a b"), Ok(vec![1, 3, 4]));
        // The spec refuses `2x`; ZUNIONSTORE's own function reads it as 2, store key last.
        assert_eq!(positions("zunionstore d 2x a b"), Ok(vec![3, 4, 1]));
        assert_eq!(positions("xread count 2 streams a b 0 0"), Ok(vec![4, 5]));
        assert_eq!(positions("sort k limit 0 1 store d"), Ok(vec![1, 6]));
        assert_eq!(positions("georadius k 0 0 1 km store d"), Ok(vec![1, 7]));
        assert_eq!(positions("memory usage k"), Ok(vec![2]));
        assert_eq!(positions("eval s 0"), Ok(vec![]));
        let refusal = |text: &str| Err(Frame::error(text));
        assert_eq!(
            positions("zunionstore d 3 a b"),
            refusal("ERR Invalid arguments specified for command")
        );
        assert_eq!(
            positions("get a b"),
            refusal("ERR Invalid number of arguments specified for command")
        );
        assert_eq!(
            positions("ping x"),
            refusal("ERR The command has no key arguments")
        );
        assert_eq!(
            positions("memory nosuch k"),
            refusal("ERR Invalid command specified")
        );
        assert_eq!(
            positions("nosuch k"),
            refusal("ERR Invalid command specified")
        );
    }

    #[test]
    fn flags_follow_the_arguments_where_redis_says_they_vary() {
        let flags = |line: &str| keys(&args(line)).unwrap()[0].flags;
        assert_eq!(flags("set k v"), flag::OW | flag::UPDATE);
        assert_eq!(flags("set k v get"), flag::RW | flag::ACCESS | flag::UPDATE);
        assert_eq!(flags("bitfield k get u8 0"), flag::RO | flag::ACCESS);
        assert_eq!(
            flags("bitfield k set u8 0 1"),
            flag::RW | flag::ACCESS | flag::UPDATE
        );
    }

    #[test]
    fn atoi_reads_as_c_does() {
        assert_eq!(atoi(b"2abc"), 2);
        assert_eq!(atoi(b" -3"), -3);
        assert_eq!(atoi(b"x"), 0);
    }
}
