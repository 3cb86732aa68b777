//! LCS: the longest common subsequence of two strings, with Redis 7.0's options (LEN, IDX,
//! MINMATCHLEN, WITHMATCHLEN) and replies. The two values are read through the quorum like
//! GET; what is done with them here is pure.
//!
//! The match ranges IDX reports are those redis-server's backtracking finds (from the ends of
//! both strings towards their starts, preferring to shorten the second string on a tie), so
//! a client sees the same ranges as from Redis, not just an equally long subsequence.

use super::{eq, int_arg, syntax_error};
use crate::resp::frame::Frame;
use bytes::Bytes;

/// The largest DP table accepted, in cells (Redis's bound: `proto-max-bulk-len` in bytes of
/// 4-byte cells).
const MAX_CELLS: u64 = (super::strings::MAX_STRING_LEN / 4) as u64;

/// What LCS answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LcsOptions {
    len: bool,
    idx: bool,
    min_match_len: usize,
    with_match_len: bool,
}

/// Parses the options after the two keys. Redis reports these errors only after it found both
/// keys to be strings, so the caller keeps the error until then.
pub fn parse_options(args: &[Bytes]) -> Result<LcsOptions, Frame> {
    let mut o = LcsOptions::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if eq(a, "idx") {
            o.idx = true;
        } else if eq(a, "len") {
            o.len = true;
        } else if eq(a, "withmatchlen") {
            o.with_match_len = true;
        } else if eq(a, "minmatchlen") && i + 1 < args.len() {
            o.min_match_len = usize::try_from(int_arg(&args[i + 1])?).unwrap_or(0);
            i += 1;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    if o.idx && o.len {
        return Err(Frame::error(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    Ok(o)
}

/// LCS's reply for the strings `a` and `b`.
pub fn reply(a: &[u8], b: &[u8], o: LcsOptions) -> Frame {
    let (rows, cols) = (a.len() + 1, b.len() + 1);
    if (rows as u64).saturating_mul(cols as u64) > MAX_CELLS {
        return Frame::error(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        );
    }
    // table[i * cols + j]: the LCS length of a[..i] and b[..j].
    let mut table = vec![0u32; rows * cols];
    for i in 1..rows {
        for j in 1..cols {
            table[i * cols + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * cols + j - 1] + 1
            } else {
                table[(i - 1) * cols + j].max(table[i * cols + j - 1])
            };
        }
    }
    let at = |i: usize, j: usize| table[i * cols + j];
    let total = at(a.len(), b.len()) as usize;
    if o.len {
        return Frame::Integer(total as i64);
    }
    let mut common = vec![0u8; total];
    let mut matches = Vec::new();
    // The current range, as the start (inclusive) and end of its positions in a and in b.
    let mut range: Option<(usize, usize, usize, usize)> = None;
    let (mut i, mut j, mut k) = (a.len(), b.len(), total);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            common[k - 1] = a[i - 1];
            range = match range {
                None => Some((i - 1, i - 1, j - 1, j - 1)),
                // Backtracking on a match steps back in both strings: always contiguous.
                Some((a_start, a_end, b_start, b_end)) => {
                    Some((a_start - 1, a_end, b_start - 1, b_end))
                }
            };
            if range.is_some_and(|(a_start, _, b_start, _)| a_start == 0 || b_start == 0) {
                emit = true;
            }
            k -= 1;
            i -= 1;
            j -= 1;
        } else {
            if at(i - 1, j) > at(i, j - 1) {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = range.is_some();
        }
        if emit && let Some((a_start, a_end, b_start, b_end)) = range.take() {
            let len = a_end - a_start + 1;
            if o.min_match_len == 0 || len >= o.min_match_len {
                let pos = |s: usize, e: usize| {
                    Frame::Array(vec![Frame::Integer(s as i64), Frame::Integer(e as i64)])
                };
                let mut m = vec![pos(a_start, a_end), pos(b_start, b_end)];
                if o.with_match_len {
                    m.push(Frame::Integer(len as i64));
                }
                matches.push(Frame::Array(m));
            }
        }
    }
    if o.idx {
        Frame::Map(vec![
            (Frame::bulk("matches"), Frame::Array(matches)),
            (Frame::bulk("len"), Frame::Integer(total as i64)),
        ])
    } else {
        Frame::bulk(common)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> LcsOptions {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
        parse_options(&args).unwrap()
    }

    #[test]
    fn finds_the_subsequence_and_its_length() {
        assert_eq!(
            reply(b"ohmytext", b"mynewtext", opts(&[])),
            Frame::bulk("mytext")
        );
        assert_eq!(
            reply(b"ohmytext", b"mynewtext", opts(&["LEN"])),
            Frame::Integer(6)
        );
        assert_eq!(reply(b"", b"abc", opts(&[])), Frame::bulk(""));
    }

    #[test]
    fn idx_reports_redis_ranges() {
        // Redis's documented example: matches 4-7/5-8 and 2-3/0-1, length 6.
        let r = reply(b"ohmytext", b"mynewtext", opts(&["IDX", "WITHMATCHLEN"]));
        let range = |s, e| Frame::Array(vec![Frame::Integer(s), Frame::Integer(e)]);
        assert_eq!(
            r,
            Frame::Map(vec![
                (
                    Frame::bulk("matches"),
                    Frame::Array(vec![
                        Frame::Array(vec![range(4, 7), range(5, 8), Frame::Integer(4)]),
                        Frame::Array(vec![range(2, 3), range(0, 1), Frame::Integer(2)]),
                    ])
                ),
                (Frame::bulk("len"), Frame::Integer(6)),
            ])
        );
    }

    #[test]
    fn options_are_checked_as_redis_checks_them() {
        let parse = |args: &[&str]| {
            let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
            parse_options(&args)
        };
        assert!(parse(&["IDX", "LEN"]).is_err());
        assert!(parse(&["MINMATCHLEN"]).is_err());
        assert!(parse(&["MINMATCHLEN", "x"]).is_err());
        assert_eq!(parse(&["MINMATCHLEN", "-3"]).unwrap().min_match_len, 0);
    }
}
