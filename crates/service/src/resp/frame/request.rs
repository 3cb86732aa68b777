//! The incremental request decoder. It accepts what Redis accepts from clients: arrays of bulk
//! strings, and inline commands (a line of words, as typed into telnet). It enforces the
//! configured limits before buffering anything, so a declared length can never make the server
//! allocate more than the limits allow, and it keeps its progress between reads, so a request
//! arriving in many small pieces is scanned once, not once per piece.

use super::{Limits, MAX_LINE, ProtocolError, find_crlf, parse_len, perr};
use bytes::{Bytes, BytesMut};

/// Progress through a multibulk request, kept between reads. Offsets are into the connection
/// buffer, which is not consumed until the request is complete.
#[derive(Debug, Default)]
struct Partial {
    /// Arguments the request declared.
    expected: usize,
    /// Where each complete argument's bytes are.
    args: Vec<(usize, usize)>,
    /// Where the next argument's header starts.
    pos: usize,
}

/// Reads client requests out of a connection buffer, one at a time.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    partial: Option<Partial>,
    /// The buffer must hold at least this many bytes before parsing can progress.
    need: usize,
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            partial: None,
            need: 0,
        }
    }

    /// The next complete request's arguments, removed from `buf`; `Ok(None)` until one has
    /// fully arrived. Empty requests (a blank line, `*0`) are skipped, as Redis does.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if buf.len() < self.need || buf.is_empty() {
                return Ok(None);
            }
            let step = if self.partial.is_some() || buf[0] == b'*' {
                self.multibulk(buf)?
            } else {
                inline(buf, &self.limits)?
            };
            match step {
                Step::Incomplete => return Ok(None),
                Step::Skip(n) => {
                    let _ = buf.split_to(n);
                    self.need = 0;
                }
                Step::Done(args) => {
                    self.need = 0;
                    return Ok(Some(args));
                }
            }
        }
    }

    fn multibulk(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        let limits = self.limits;
        if self.partial.is_none() {
            let Some(end) = find_crlf(buf, 1, "mbulk")? else {
                return Ok(Step::Incomplete);
            };
            let count = parse_len(&buf[1..end]).ok_or_else(|| perr("invalid multibulk length"))?;
            if count > limits.max_args as i64 {
                return Err(perr("invalid multibulk length"));
            }
            if count <= 0 {
                return Ok(Step::Skip(end + 2));
            }
            self.partial = Some(Partial {
                expected: count as usize,
                // Capacity grows with what actually arrives, not with what was declared.
                args: Vec::with_capacity((count as usize).min(64)),
                pos: end + 2,
            });
        }
        let p = self.partial.as_mut().expect("partial set above");
        while p.args.len() < p.expected {
            if p.pos >= buf.len() {
                self.need = p.pos + 1;
                return Ok(Step::Incomplete);
            }
            if buf[p.pos] != b'$' {
                return Err(perr(format!(
                    "expected '$', got '{}'",
                    char::from(buf[p.pos])
                )));
            }
            let Some(end) = find_crlf(buf, p.pos + 1, "bulk")? else {
                return Ok(Step::Incomplete);
            };
            let len = parse_len(&buf[p.pos + 1..end])
                .filter(|l| *l >= 0 && *l as usize <= limits.max_bulk_bytes)
                .ok_or_else(|| perr("invalid bulk length"))? as usize;
            let start = end + 2;
            let stop = start + len;
            if stop + 2 > limits.max_request_bytes {
                return Err(perr(format!(
                    "request larger than {} bytes",
                    limits.max_request_bytes
                )));
            }
            if buf.len() < stop + 2 {
                self.need = stop + 2;
                return Ok(Step::Incomplete);
            }
            if &buf[stop..stop + 2] != b"\r\n" {
                return Err(perr("bulk string not terminated by CRLF"));
            }
            p.args.push((start, stop));
            p.pos = stop + 2;
        }
        let p = self.partial.take().expect("partial set above");
        let whole = buf.split_to(p.pos).freeze();
        Ok(Step::Done(
            p.args.into_iter().map(|(s, e)| whole.slice(s..e)).collect(),
        ))
    }
}

enum Step {
    Incomplete,
    /// An empty request of this many bytes.
    Skip(usize),
    Done(Vec<Bytes>),
}

/// An inline command: one line, words split like Redis's `sdssplitargs` (double quotes with
/// escapes, single quotes).
fn inline(buf: &mut BytesMut, limits: &Limits) -> Result<Step, ProtocolError> {
    // Redis finds the line's end with `strchr`, which stops at a NUL: a line holding one is
    // never complete, and waits until it is too big, as in Redis.
    let end = buf.iter().position(|b| *b == b'\n' || *b == 0);
    let Some(nl) = end.filter(|&e| buf[e] == b'\n') else {
        if buf.len() > MAX_LINE.min(limits.max_request_bytes) {
            return Err(perr("too big inline request"));
        }
        return Ok(Step::Incomplete);
    };
    if nl > MAX_LINE.min(limits.max_request_bytes) {
        return Err(perr("too big inline request"));
    }
    let line = buf.split_to(nl + 1);
    let text = line[..nl].strip_suffix(b"\r").unwrap_or(&line[..nl]);
    let args = split_args(text).ok_or_else(|| perr("unbalanced quotes in request"))?;
    if args.len() > limits.max_args {
        return Err(perr("invalid multibulk length"));
    }
    if args.is_empty() {
        return Ok(Step::Skip(0));
    }
    Ok(Step::Done(args.into_iter().map(Bytes::from).collect()))
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The byte a double-quoted word holds at `i`, and how many input bytes it takes: `\xHH`, a
/// backslash escape, or the byte itself.
fn double_quoted(line: &[u8], i: usize) -> (u8, usize) {
    let c = line[i];
    if c == b'\\'
        && i + 3 < line.len()
        && line[i + 1] == b'x'
        && let (Some(h), Some(l)) = (hex(line[i + 2]), hex(line[i + 3]))
    {
        return (h * 16 + l, 4);
    }
    if c == b'\\' && i + 1 < line.len() {
        let byte = match line[i + 1] {
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'b' => 8,
            b'a' => 7,
            other => other,
        };
        return (byte, 2);
    }
    (c, 1)
}

/// The byte a single-quoted word holds at `i`, and how many input bytes it takes: only `\'`
/// is an escape there.
fn single_quoted(line: &[u8], i: usize) -> (u8, usize) {
    if line[i] == b'\\' && line.get(i + 1) == Some(&b'\'') {
        (b'\'', 2)
    } else {
        (line[i], 1)
    }
}

/// C's `isspace`: what separates words (`\v` and form feed included).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits an inline command into words as Redis's `sdssplitargs` does; `None` for unbalanced
/// quotes. Words are separated by blanks (`isspace`), but a word ends only at a space, tab,
/// CR, LF or the end: a form feed inside a word is kept. Quotes may start inside a word
/// (`a"b c"` is `ab c`); a closing quote must end the word.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    // sdssplitargs reads a C string: a NUL ends the line.
    let line = &line[..line.iter().position(|b| *b == 0).unwrap_or(line.len())];
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut word = Vec::new();
        let mut quote = None;
        loop {
            let Some(q) = quote else {
                match line.get(i) {
                    None | Some(b' ' | b'\n' | b'\r' | b'\t') => break,
                    Some(&q @ (b'"' | b'\'')) => quote = Some(q),
                    Some(&c) => word.push(c),
                }
                i += 1;
                continue;
            };
            // The end of the line inside quotes: unbalanced.
            let c = *line.get(i)?;
            if c == q {
                if line.get(i + 1).is_some_and(|n| !is_space(*n)) {
                    return None;
                }
                i += 1;
                break;
            }
            let (byte, taken) = if q == b'"' {
                double_quoted(line, i)
            } else {
                single_quoted(line, i)
            };
            word.push(byte);
            i += taken;
        }
        args.push(word);
    }
}
