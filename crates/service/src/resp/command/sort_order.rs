//! SORT's pure part, with redis-server 7.0's rules (`sort.c`): the arguments, the patterns of
//! BY and GET, the conversion of a sort key to a score (`strtod`'s), the comparator (ties
//! broken by the elements' bytes) and the LIMIT window. Reading the keys is `sort.rs`'s.

use bytes::Bytes;
use std::cmp::Ordering;

/// Why SORT's arguments are refused, in Redis's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SortError {
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
}

/// SORT's options, as parsed (later ones override earlier ones, as in Redis).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SortArgs {
    pub by: Option<Bytes>,
    /// LIMIT's offset and count; Redis's defaults are 0 and -1 (all).
    pub limit: (i64, i64),
    pub gets: Vec<Bytes>,
    pub desc: bool,
    pub alpha: bool,
    pub store: Option<Bytes>,
}

fn word(arg: &[u8], w: &str) -> bool {
    arg.eq_ignore_ascii_case(w.as_bytes())
}

/// Redis's `string2ll`: strict, no `+`, no leading zero, no `-0`.
fn long(arg: &[u8]) -> Result<i64, SortError> {
    super::strict_i64(arg).ok_or(SortError::NotAnInteger)
}

/// The options after `SORT key`; `readonly` (SORT_RO) takes no STORE.
pub fn parse(options: &[Bytes], readonly: bool) -> Result<SortArgs, SortError> {
    let mut args = SortArgs {
        limit: (0, -1),
        ..SortArgs::default()
    };
    let mut j = 0;
    while j < options.len() {
        let left = options.len() - j - 1;
        let a = &options[j];
        if word(a, "asc") {
            args.desc = false;
        } else if word(a, "desc") {
            args.desc = true;
        } else if word(a, "alpha") {
            args.alpha = true;
        } else if word(a, "limit") && left >= 2 {
            args.limit = (long(&options[j + 1])?, long(&options[j + 2])?);
            j += 2;
        } else if !readonly && word(a, "store") && left >= 1 {
            args.store = Some(options[j + 1].clone());
            j += 1;
        } else if word(a, "by") && left >= 1 {
            args.by = Some(options[j + 1].clone());
            j += 1;
        } else if word(a, "get") && left >= 1 {
            args.gets.push(options[j + 1].clone());
            j += 1;
        } else {
            return Err(SortError::Syntax);
        }
        j += 1;
    }
    Ok(args)
}

/// Redis reads patterns as C strings: up to the first NUL byte.
fn c_str(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

/// Whether a BY pattern sorts at all: one without `*` (`nosort`, say) keeps the key's order.
pub fn by_sorts(by: &[u8]) -> bool {
    c_str(by).contains(&b'*')
}

/// What a BY or GET pattern reads for one element.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lookup {
    /// `#`: the element itself.
    Element,
    /// The string under this key.
    Key(Vec<u8>),
    /// This field of the hash under this key (`*->field`).
    Field(Vec<u8>, Vec<u8>),
    /// A pattern without `*` reads nothing (nil), as in Redis.
    Nothing,
}

/// `lookupKeyByPattern`: the first `*` is replaced by the element; a `->` after it, followed
/// by at least one byte, names a hash field.
pub fn lookup(pattern: &[u8], element: &[u8]) -> Lookup {
    let c = c_str(pattern);
    if c == b"#" {
        return Lookup::Element;
    }
    let Some(star) = c.iter().position(|&b| b == b'*') else {
        return Lookup::Nothing;
    };
    let arrow = c[star + 1..]
        .windows(2)
        .position(|w| w == b"->")
        .map(|i| star + 1 + i)
        .filter(|&f| f + 2 < c.len());
    let key_end = arrow.unwrap_or(pattern.len());
    let mut key = Vec::with_capacity(key_end + element.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(&pattern[star + 1..key_end]);
    match arrow {
        Some(f) => Lookup::Field(key, pattern[f + 2..].to_vec()),
        None => Lookup::Key(key),
    }
}

/// The score Redis sorts by, as its `strtod` check takes it: `None` when Redis answers "One or
/// more scores can't be converted into double" (trailing bytes, NaN, out of range). The text
/// ends at a NUL byte, as for `strtod`; an empty text is 0.
pub fn score(text: &[u8]) -> Option<f64> {
    let t = c_str(text);
    if t.is_empty() {
        return Some(0.0);
    }
    let s = t
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .map_or(&t[t.len()..], |i| &t[i..]);
    let s = std::str::from_utf8(s).ok()?;
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.starts_with(['+', '-']) {
        return None;
    }
    // Bytes, not `str` slicing: the third byte may be inside a character.
    let value = if body.len() > 2 && body.as_bytes()[..2].eq_ignore_ascii_case(b"0x") {
        hex_float(&body[2..])?
    } else {
        let lower = body.to_ascii_lowercase();
        if lower == "inf" || lower == "infinity" {
            f64::INFINITY
        } else {
            // Only digits, a point and an exponent: Rust's parser would take other words.
            if !body
                .bytes()
                .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
            {
                return None;
            }
            let v: f64 = body.parse().ok()?;
            let mantissa = body.split(['e', 'E']).next().unwrap_or("");
            let nonzero = mantissa.bytes().any(|c| (b'1'..=b'9').contains(&c));
            // glibc's ERANGE: an overflow, or an underflow to zero or a subnormal.
            if v.is_infinite() || (nonzero && v.abs() < f64::MIN_POSITIVE) {
                return None;
            }
            v
        }
    };
    Some(if negative { -value } else { value })
}

/// The digits of a C99 hexadecimal float after `0x`: `h[.h][p[+-]d]`.
fn hex_float(s: &str) -> Option<f64> {
    let (mantissa, exp) = match s.find(['p', 'P']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars() {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    if let Some(e) = exp {
        let e: i32 = e.parse().ok()?;
        v *= 2f64.powi(e);
    }
    (v.is_finite() && (v == 0.0 || v.abs() >= f64::MIN_POSITIVE)).then_some(v)
}

/// What one element is sorted by.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// A numeric sort: the score (0 for a BY key that is missing).
    Score(f64),
    /// An ALPHA sort by a BY pattern: the value read (`None`: missing, first).
    Text(Option<Vec<u8>>),
    /// An ALPHA sort of the elements themselves.
    Itself,
}

/// `strcoll` in the C locale: bytes up to the first NUL.
fn coll(a: &[u8], b: &[u8]) -> Ordering {
    c_str(a).cmp(c_str(b))
}

/// Redis's `sortCompare`. Equal scores compare the elements as binary strings; with STORE,
/// texts compare as binary strings, else as `strcoll` does.
pub fn compare(a: (&[u8], &Key), b: (&[u8], &Key), desc: bool, store: bool) -> Ordering {
    let text = |x: &[u8], y: &[u8]| if store { x.cmp(y) } else { coll(x, y) };
    let cmp = match (a.1, b.1) {
        (Key::Score(x), Key::Score(y)) => x
            .partial_cmp(y)
            .filter(|o| o.is_ne())
            .unwrap_or_else(|| a.0.cmp(b.0)),
        (Key::Text(x), Key::Text(y)) => match (x, y) {
            (Some(x), Some(y)) => text(x, y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        },
        _ => text(a.0, b.0),
    };
    if desc { cmp.reverse() } else { cmp }
}

/// Sorts the elements by their keys (a stable sort: elements Redis finds equal stay in the
/// key's order). The keys must hold no NaN (Redis refuses those before it answers).
pub fn sort(items: &mut [(Vec<u8>, Key)], desc: bool, store: bool) {
    items.sort_by(|a, b| compare((&a.0, &a.1), (&b.0, &b.1), desc, store));
}

/// The window LIMIT selects of `len` sorted elements, as Redis computes it (a negative offset
/// is 0, a negative count is all, a window past the end is empty).
pub fn window(len: usize, (offset, count): (i64, i64)) -> std::ops::Range<usize> {
    let n = i64::try_from(len).unwrap_or(i64::MAX);
    let mut start = offset.max(0);
    let mut end = if count < 0 {
        n - 1
    } else {
        start.saturating_add(count - 1)
    };
    if start >= n {
        start = n - 1;
        end = n - 2;
    }
    end = end.min(n - 1);
    if end < start {
        return 0..0;
    }
    // Both are within 0..n here.
    start as usize..end as usize + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(args: &[&str]) -> Vec<Bytes> {
        args.iter().map(|a| Bytes::from(a.to_string())).collect()
    }

    #[test]
    fn options_parse_as_redis_parses_them() {
        let a = parse(
            &b(&[
                "by", "w_*", "limit", "1", "2", "get", "#", "GET", "o_*", "desc", "alpha", "asc",
                "store", "d",
            ]),
            false,
        )
        .unwrap();
        assert_eq!(a.by.as_deref(), Some(&b"w_*"[..]));
        assert_eq!(a.limit, (1, 2));
        assert_eq!(a.gets, b(&["#", "o_*"]));
        assert!(!a.desc && a.alpha);
        assert_eq!(a.store.as_deref(), Some(&b"d"[..]));
        assert_eq!(parse(&b(&["store", "d"]), true), Err(SortError::Syntax));
        assert_eq!(parse(&b(&["limit", "1"]), false), Err(SortError::Syntax));
        assert_eq!(
            parse(&b(&["limit", "x", "1"]), false),
            Err(SortError::NotAnInteger)
        );
        assert_eq!(parse(&b(&["get"]), false), Err(SortError::Syntax));
        assert_eq!(parse(&b(&["foo"]), false), Err(SortError::Syntax));
        assert_eq!(parse(&[], false).unwrap().limit, (0, -1));
    }

    #[test]
    fn patterns_substitute_the_first_star_and_read_fields() {
        assert_eq!(lookup(b"#", b"e"), Lookup::Element);
        assert_eq!(lookup(b"w_*", b"e"), Lookup::Key(b"w_e".to_vec()));
        assert_eq!(lookup(b"a*b*", b"e"), Lookup::Key(b"aeb*".to_vec()));
        assert_eq!(
            lookup(b"h_*->f", b"e"),
            Lookup::Field(b"h_e".to_vec(), b"f".to_vec())
        );
        // A `->` with nothing after it is part of the key name.
        assert_eq!(lookup(b"h_*->", b"e"), Lookup::Key(b"h_e->".to_vec()));
        // A `->` before the star is part of the key name.
        assert_eq!(lookup(b"a->*", b"e"), Lookup::Key(b"a->e".to_vec()));
        assert_eq!(lookup(b"nosort", b"e"), Lookup::Nothing);
        assert_eq!(lookup(b"##", b"e"), Lookup::Nothing);
        assert!(by_sorts(b"w_*") && !by_sorts(b"nosort") && !by_sorts(b"x\0*"));
    }

    #[test]
    fn scores_convert_as_strtod_does() {
        assert_eq!(score(b"1.5"), Some(1.5));
        assert_eq!(score(b" 3"), Some(3.0));
        assert_eq!(score(b""), Some(0.0));
        assert_eq!(score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(score(b"0x10"), Some(16.0));
        assert_eq!(score(b"1e3"), Some(1000.0));
        assert_eq!(score(b".5"), Some(0.5));
        assert_eq!(score(b"5."), Some(5.0));
        assert_eq!(score(b"+2"), Some(2.0));
        assert_eq!(score(b"7\0x"), Some(7.0));
        for bad in [
            "a", "1 ", " ", "nan", "1e400", "1e-400", "1e", "0x", "1_0", "--1", "0é", "0xé",
        ] {
            assert_eq!(score(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn ties_compare_the_elements_bytes() {
        let mut items = vec![
            (b"b".to_vec(), Key::Score(1.0)),
            (b"a".to_vec(), Key::Score(1.0)),
            (b"c".to_vec(), Key::Score(0.0)),
            (b"-0".to_vec(), Key::Score(-0.0)),
        ];
        sort(&mut items, false, false);
        let order: Vec<&[u8]> = items.iter().map(|i| &i.0[..]).collect();
        assert_eq!(order, [&b"-0"[..], b"c", b"a", b"b"]);
        sort(&mut items, true, false);
        let order: Vec<&[u8]> = items.iter().map(|i| &i.0[..]).collect();
        assert_eq!(order, [&b"b"[..], b"a", b"c", b"-0"]);
        let mut texts = vec![
            (b"x".to_vec(), Key::Text(Some(b"b".to_vec()))),
            (b"y".to_vec(), Key::Text(None)),
            (b"z".to_vec(), Key::Text(Some(b"a".to_vec()))),
        ];
        sort(&mut texts, false, false);
        let order: Vec<&[u8]> = texts.iter().map(|i| &i.0[..]).collect();
        assert_eq!(order, [&b"y"[..], b"z", b"x"]);
    }

    #[test]
    fn the_window_is_redis_limit() {
        assert_eq!(window(5, (0, -1)), 0..5);
        assert_eq!(window(5, (1, 2)), 1..3);
        assert_eq!(window(5, (-3, 2)), 0..2);
        assert_eq!(window(5, (4, 10)), 4..5);
        assert_eq!(window(5, (5, 1)), 0..0);
        assert_eq!(window(5, (2, 0)), 0..0);
        assert_eq!(window(0, (0, -1)), 0..0);
        assert_eq!(window(5, (1, i64::MAX)), 1..5);
        assert_eq!(window(5, (i64::MAX, i64::MAX)), 0..0);
    }
}
