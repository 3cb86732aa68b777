//! Redis-style glob matching (`*`, `?`, `[abc]`, `[a-z]`, `[^a]`, `\x`) on raw bytes: the
//! full sweep's include and exclude patterns, the direct-write rules, pub/sub patterns and the
//! RESP front end's KEYS and MATCH. Pure.
//!
//! It follows redis-server 7.0's `stringmatchlen` (util.c) exactly, edge cases included,
//! because KEYS and SCAN must list what a Redis server would:
//!
//! - a class is one character; `]` right after `[` or `[^` closes it at once, so `[]]` never
//!   matches and `[^]` matches any character;
//! - a class without its `]` runs to the end of the pattern: `[a` is the class `{a}`;
//! - `x-y` is a range wherever three characters remain, even when `y` is the closing `]`:
//!   `[a-]` is the unterminated class of `]`..`a`; a reversed range is swapped;
//! - range ends compare as C's signed `char`, so bytes from 0x80 sort below `\0`;
//! - a `\` escapes the next character, in and out of classes; a trailing one is literal;
//! - an empty string matches only the empty pattern.
//!
//! One departure, on purpose: a lone `*` matches every string, the empty one included, as
//! KEYS, SCAN and the sweep's patterns take it (Redis's KEYS and SCAN skip the match for it).
//! Only PSUBSCRIBE `*` differs from Redis, on a PUBLISH to the empty channel.

/// True when `key` matches `pattern`, case-sensitively.
pub fn matches(pattern: &[u8], key: &[u8]) -> bool {
    pattern == b"*" || string_match(pattern, key, false)
}

/// `stringmatchlen` with `nocase` set (ASCII letters only, as C's `tolower`), as `COMMAND
/// LIST FILTERBY PATTERN` matches command names. No lone-`*` shortcut: Redis has none there.
pub fn matches_nocase(pattern: &[u8], text: &[u8]) -> bool {
    string_match(pattern, text, true)
}

fn string_match(pattern: &[u8], key: &[u8], nocase: bool) -> bool {
    if key.is_empty() {
        // `stringmatchlen` never enters its loop: only the empty pattern matches.
        return pattern.is_empty();
    }
    let fold = |c: u8| if nocase { c.to_ascii_lowercase() } else { c };
    let same = |a: u8, b: u8| fold(a) == fold(b);
    let (mut p, mut k) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, key index it has eaten to).
    // Every other element matches exactly one character, so backtracking to the last star
    // alone finds a match whenever Redis's recursion does.
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        if p < pattern.len() {
            let step = match pattern[p] {
                b'*' => {
                    star = Some((p + 1, k));
                    p += 1;
                    continue;
                }
                b'?' => Some(p + 1),
                b'[' => {
                    let (matched, next) = class(pattern, p, key[k], nocase);
                    matched.then_some(next)
                }
                b'\\' if p + 1 < pattern.len() => same(pattern[p + 1], key[k]).then_some(p + 2),
                c => same(c, key[k]).then_some(p + 1),
            };
            if let Some(next) = step {
                p = next;
                k += 1;
                continue;
            }
        }
        match star {
            Some((sp, sk)) => {
                star = Some((sp, sk + 1));
                p = sp;
                k = sk + 1;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class at `pattern[start] == b'['`, as `stringmatchlen`'s `[` case
/// walks it: whether it matched, and the index after the class (the pattern's end when it
/// has no `]`).
fn class(pattern: &[u8], start: usize, c: u8, nocase: bool) -> (bool, usize) {
    let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    let mut i = start + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    loop {
        let left = pattern.len() - i;
        if left >= 2 && pattern[i] == b'\\' {
            i += 1;
            matched |= fold(pattern[i]) == fold(c);
        } else if left >= 1 && pattern[i] == b']' {
            break;
        } else if left == 0 {
            // Unterminated: Redis steps back onto the last character, which the step after
            // the class then passes, ending the pattern.
            i -= 1;
            break;
        } else if left >= 3 && pattern[i + 1] == b'-' {
            // `int start = pattern[0]` of a `char`: signed, as on x86-64 and arm64 Linux
            // builds of Redis. The ends are swapped before they are folded, as Redis does.
            let (mut lo, mut hi) = (pattern[i] as i8, pattern[i + 2] as i8);
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            let signed = |b: i8| fold(b as u8) as i8;
            let (lo, hi, c) = (signed(lo), signed(hi), signed(c as i8));
            matched |= lo <= c && c <= hi;
            i += 2;
        } else {
            matched |= fold(pattern[i]) == fold(c);
        }
        i += 1;
    }
    (matched != negate, i + 1)
}

#[cfg(test)]
mod tests {
    use super::{matches, matches_nocase};

    #[test]
    fn redis_glob_semantics() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("user:*:cart", "user:42:cart", true),
            ("user:*:cart", "user:42:carts", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("session:*", "session:", true),
        ];
        for (p, k, want) in cases {
            assert_eq!(matches(p.as_bytes(), k.as_bytes()), *want, "{p:?} vs {k:?}");
        }
    }

    /// Each pattern against the keys `gl:` + each of `KEYS`, with the keys redis-server
    /// 7.0.15 listed for it (`KEYS <pattern>` over exactly these keys).
    #[test]
    fn bracket_edge_cases_as_redis_7_0_lists_them() {
        const KEYS: &[&str] = &[
            "", "a", "-", "]", "[", "^", "_", "`", "b", "\\", "ab", "[a", "x",
        ];
        let cases: &[(&str, &[&str])] = &[
            ("gl:[a", &["a"]),
            ("gl:[a-]", &["`", "_", "]", "^", "a"]),
            (
                "gl:[^]",
                &["`", "[", "b", "_", "]", "-", "^", "\\", "x", "a"],
            ),
            ("gl:[]]", &[]),
            ("gl:[]", &[]),
            ("gl:[", &[]),
            (
                "gl:[^",
                &["`", "[", "b", "_", "]", "-", "^", "\\", "x", "a"],
            ),
            ("gl:[]a]", &[]),
            ("gl:[\\]", &["]"]),
            ("gl:[\\", &["\\"]),
            ("gl:\\", &["\\"]),
            ("gl:[a-]x", &["`", "_", "]", "^", "x", "a"]),
            ("gl:[^]]", &[]),
            ("gl:[!a]", &["a"]),
            ("gl:[z-a]", &["b", "x", "a"]),
            ("gl:[a-", &["-", "a"]),
            ("gl:[-a]", &["-", "a"]),
            ("gl:[a-b-]", &["b", "-", "a"]),
            ("gl:*[", &[]),
            ("gl:[*", &[]),
            ("gl:[a]*", &["ab", "a"]),
            ("gl:\\[a", &["[a"]),
            ("gl:*", KEYS),
        ];
        for (pattern, want) in cases {
            let got: std::collections::BTreeSet<&str> = KEYS
                .iter()
                .copied()
                .filter(|k| matches(pattern.as_bytes(), format!("gl:{k}").as_bytes()))
                .collect();
            let want: std::collections::BTreeSet<&str> = want.iter().copied().collect();
            assert_eq!(got, want, "KEYS {pattern}");
        }
    }

    #[test]
    fn empty_strings_match_only_the_empty_pattern_but_a_lone_star_matches_all() {
        assert!(matches(b"*", b""));
        assert!(
            !matches(b"**", b""),
            "redis-server 7.0 lists no empty key for KEYS **"
        );
        assert!(!matches(b"?", b""));
        assert!(!matches(b"[^]", b""));
        assert!(matches(b"", b""));
        assert!(!matches(b"", b"a"));
        assert!(matches(b"a*", b"a"), "trailing stars match nothing");
        assert!(matches(b"a**", b"a"));
    }

    #[test]
    fn range_ends_compare_as_signed_chars() {
        // redis-server 7.0.15: `[a-\xff]` is the range -1..=97, so it holds `\xff`, `[` and
        // `-` but not `b`; `[\x01-\xff]` holds `\xff`, `\0` and `\x01` only.
        assert!(matches(b"[a-\xff]", b"\xff"));
        assert!(matches(b"[a-\xff]", b"["));
        assert!(!matches(b"[a-\xff]", b"b"));
        assert!(matches(b"[\x01-\xff]", b"\xff"));
        assert!(matches(b"[\x01-\xff]", b"\x00"));
        assert!(!matches(b"[\x01-\xff]", b"a"));
        assert!(matches(b"[\x80-b]", b"b"));
        assert!(!matches(b"[\x80-b]", b"c"));
    }

    #[test]
    fn nocase_folds_ascii_letters_after_swapping_range_ends() {
        assert!(matches_nocase(b"XA*", b"xadd"));
        assert!(matches_nocase(b"x[A-C]k", b"xbk"));
        assert!(!matches(b"XA*", b"xadd"));
        // `[Z-a]`: 90..=97 is kept in that order, then folded to 122..=97, empty (redis-server
        // 7.0.15 lists no command for `COMMAND LIST FILTERBY PATTERN [Z-a]*`).
        assert!(!matches_nocase(b"[Z-a]*", b"zadd"));
        assert!(!matches_nocase(b"[Z-a]*", b"append"));
        assert!(!matches_nocase(b"*", b""), "no lone-star shortcut here");
    }

    #[test]
    fn binary_keys() {
        assert!(matches(b"*\x00*", b"a\x00b"));
        assert!(!matches(b"\xff?", b"\xff"));
    }
}
