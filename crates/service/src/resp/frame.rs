//! RESP frames: the RESP2 and RESP3 value types, an encoder that writes the dialect a connection
//! negotiated, a general frame parser (every RESP3 type, used for round trips and by clients),
//! and the limits and errors shared with the request decoder (`frame/request.rs`).

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt::Write as _;

/// The protocol a connection speaks: RESP2 until the client sends `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

impl Protocol {
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One RESP value. RESP3-only types are written in their RESP2 form on RESP2 connections.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    Null,
    /// The null of an array reply (LPOP with a count on a missing key): `*-1` in RESP2, where
    /// `Null` is `$-1`; the same `_` in RESP3.
    NullArray,
    Array(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
    Set(Vec<Frame>),
    Double(f64),
    Boolean(bool),
    BigNumber(String),
    /// A verbatim string: a three-letter format (`txt`, `mkd`) and the text.
    Verbatim {
        format: String,
        text: Bytes,
    },
    Push(Vec<Frame>),
    /// A sorted-set score, printed as C's `%.17g` (Redis 7.0's `addReplyDouble`): a bulk
    /// string in RESP2, a double in RESP3.
    Score(f64),
    /// A double already printed (Redis 7.0's `addReplyHumanLongDouble`, GEOPOS's coordinates):
    /// a bulk string in RESP2, a double in RESP3.
    DoubleText(String),
    /// Members each followed by its score (`[member, score, ...]`), as WITHSCORES answers:
    /// flat in RESP2, an array of `[member, score]` pairs in RESP3, as Redis 7.0 sends them.
    Pairs(Vec<Frame>),
    /// Keys each with its value, as XREAD answers: an array of `[key, value]` arrays in RESP2,
    /// a map in RESP3.
    KeyedArrays(Vec<(Frame, Frame)>),
}

impl Frame {
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    pub fn error(text: impl Into<String>) -> Frame {
        Frame::Error(text.into())
    }

    pub fn bulk(bytes: impl Into<Bytes>) -> Frame {
        Frame::Bulk(bytes.into())
    }

    /// Writes this frame in the given protocol.
    pub fn encode(&self, proto: Protocol, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => line(out, b'+', s),
            Frame::Error(s) => line(out, b'-', s),
            Frame::Integer(i) => header(out, b':', *i),
            Frame::Bulk(b) => bulk(out, b),
            Frame::Null => match proto {
                Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Frame::NullArray => match proto {
                Protocol::Resp2 => out.put_slice(b"*-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Frame::Array(items) => aggregate(out, b'*', items, proto),
            Frame::Set(items) => {
                let tag = if proto == Protocol::Resp3 { b'~' } else { b'*' };
                aggregate(out, tag, items, proto)
            }
            Frame::Push(items) => {
                let tag = if proto == Protocol::Resp3 { b'>' } else { b'*' };
                aggregate(out, tag, items, proto)
            }
            Frame::Score(score) => {
                let text = quorumd_core::content::score_text(*score);
                match proto {
                    Protocol::Resp3 => line(out, b',', &text),
                    Protocol::Resp2 => bulk(out, text.as_bytes()),
                }
            }
            Frame::DoubleText(text) => match proto {
                Protocol::Resp3 => line(out, b',', text),
                Protocol::Resp2 => bulk(out, text.as_bytes()),
            },
            Frame::Pairs(items) => match proto {
                Protocol::Resp2 => aggregate(out, b'*', items, proto),
                Protocol::Resp3 => {
                    header(out, b'*', items.len().div_ceil(2) as i64);
                    for pair in items.chunks(2) {
                        aggregate(out, b'*', pair, proto);
                    }
                }
            },
            Frame::KeyedArrays(pairs) => {
                match proto {
                    Protocol::Resp3 => header(out, b'%', pairs.len() as i64),
                    Protocol::Resp2 => header(out, b'*', pairs.len() as i64),
                }
                for (k, v) in pairs {
                    if proto == Protocol::Resp2 {
                        header(out, b'*', 2);
                    }
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Frame::Map(pairs) => {
                match proto {
                    Protocol::Resp3 => header(out, b'%', pairs.len() as i64),
                    Protocol::Resp2 => header(out, b'*', 2 * pairs.len() as i64),
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Frame::Double(d) => {
                let text = format_double(*d);
                match proto {
                    Protocol::Resp3 => line(out, b',', &text),
                    Protocol::Resp2 => bulk(out, text.as_bytes()),
                }
            }
            Frame::Boolean(b) => match proto {
                Protocol::Resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
                Protocol::Resp2 => header(out, b':', i64::from(*b)),
            },
            Frame::BigNumber(n) => match proto {
                Protocol::Resp3 => line(out, b'(', n),
                Protocol::Resp2 => bulk(out, n.as_bytes()),
            },
            Frame::Verbatim { format, text } => match proto {
                Protocol::Resp3 => {
                    header(out, b'=', (text.len() + 4) as i64);
                    // The format is exactly three bytes on the wire, whatever the caller gave.
                    let mut tag = [b' '; 3];
                    for (t, b) in tag.iter_mut().zip(format.bytes()) {
                        *t = b;
                    }
                    out.put_slice(&tag);
                    out.put_u8(b':');
                    out.put_slice(text);
                    out.put_slice(b"\r\n");
                }
                Protocol::Resp2 => bulk(out, text),
            },
        }
    }

    /// An array's header alone, for an array written element by element (EXEC's, whose
    /// elements `CLIENT REPLY` may drop after its header was written, as in Redis).
    pub fn encode_array_header(len: usize, out: &mut BytesMut) {
        header(out, b'*', len as i64);
    }

    /// Convenience for tests and logs: the frame as RESP bytes.
    pub fn to_bytes(&self, proto: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(proto, &mut out);
        out.freeze()
    }
}

fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d == f64::INFINITY {
        "inf".into()
    } else if d == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format!("{d}")
    }
}

fn header(out: &mut BytesMut, tag: u8, n: i64) {
    out.put_u8(tag);
    let mut num = itoa_buf(n);
    out.put_slice(num.as_bytes_mut());
    out.put_slice(b"\r\n");
}

/// A small stack buffer for integer formatting, so headers do not allocate.
struct NumBuf {
    buf: [u8; 20],
    start: usize,
}

impl NumBuf {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(n: i64) -> NumBuf {
    let mut buf = [0u8; 20];
    let mut pos = buf.len();
    let negative = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if negative {
        pos -= 1;
        buf[pos] = b'-';
    }
    NumBuf { buf, start: pos }
}

/// Simple strings and errors cannot carry line breaks; they are replaced rather than allowed
/// to break the stream.
fn line(out: &mut BytesMut, tag: u8, s: &str) {
    out.put_u8(tag);
    for b in s.bytes() {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, b: &[u8]) {
    header(out, b'$', b.len() as i64);
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

fn aggregate(out: &mut BytesMut, tag: u8, items: &[Frame], proto: Protocol) {
    header(out, tag, items.len() as i64);
    for item in items {
        item.encode(proto, out);
    }
}

/// Limits on what one request may declare. Checked as soon as a length is read, before any
/// payload is buffered.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest whole request (all arguments with their framing), in bytes.
    pub max_request_bytes: usize,
    /// Most arguments (array elements) in one request.
    pub max_args: usize,
    /// Largest single argument (bulk string), in bytes.
    pub max_bulk_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 64 * 1024 * 1024,
            max_args: 1024 * 1024,
            max_bulk_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Longest inline command or length line, as in Redis (`PROTO_INLINE_MAX_SIZE`).
const MAX_LINE: usize = 64 * 1024;
/// Deepest nesting the general frame parser follows.
const MAX_DEPTH: usize = 64;

/// A malformed request. The text is what Redis answers in the same case; after one, the server
/// replies with it and closes the connection, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ERR Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn perr(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

/// Finds `\r\n` from `from`; `Ok(None)` if it has not arrived yet, an error if the line is
/// already longer than `MAX_LINE`.
fn find_crlf(buf: &[u8], from: usize, what: &str) -> Result<Option<usize>, ProtocolError> {
    let window = &buf[from.min(buf.len())..];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(from + i)),
        None if window.len() > MAX_LINE => Err(perr(format!("too big {what} count string"))),
        None => Ok(None),
    }
}

/// Parses a length the way Redis's `string2ll` does: an optional minus sign and digits only.
fn parse_len(digits: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(digits).ok()?;
    if s.is_empty() || s.starts_with('+') || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// Parses one complete frame of any RESP2/RESP3 type from the start of `buf`: the frame and the
/// bytes it used, or `Ok(None)` if it has not fully arrived.
pub fn parse_frame(buf: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, ProtocolError> {
    parse_at(buf, 0, limits, 0)
}

fn parse_at(
    buf: &[u8],
    pos: usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<(Frame, usize)>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(perr("frame nested too deeply"));
    }
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(end) = find_crlf(buf, pos + 1, "line")? else {
        return Ok(None);
    };
    let body = &buf[pos + 1..end];
    let next = end + 2;
    let text = || String::from_utf8_lossy(body).into_owned();
    let number = |what: &str| parse_len(body).ok_or_else(|| perr(format!("invalid {what}")));
    let frame = match tag {
        b'+' => Frame::Simple(text()),
        b'-' => Frame::Error(text()),
        b':' => Frame::Integer(number("integer")?),
        b'_' if body.is_empty() => Frame::Null,
        b'#' => match body {
            b"t" => Frame::Boolean(true),
            b"f" => Frame::Boolean(false),
            _ => return Err(perr("invalid boolean")),
        },
        b',' => Frame::Double(parse_double(body).ok_or_else(|| perr("invalid double"))?),
        b'(' => Frame::BigNumber(text()),
        b'$' | b'=' | b'!' => {
            let len = number("bulk length")?;
            if len == -1 && tag == b'$' {
                return Ok(Some((Frame::Null, next)));
            }
            if len < 0 || len as usize > limits.max_bulk_bytes {
                return Err(perr("invalid bulk length"));
            }
            let stop = next + len as usize;
            if buf.len() < stop + 2 {
                return Ok(None);
            }
            if &buf[stop..stop + 2] != b"\r\n" {
                return Err(perr("bulk string not terminated by CRLF"));
            }
            let data = &buf[next..stop];
            let frame = match tag {
                b'$' => Frame::Bulk(Bytes::copy_from_slice(data)),
                b'!' => Frame::Error(String::from_utf8_lossy(data).into_owned()),
                _ => {
                    if data.len() < 4 || data[3] != b':' {
                        return Err(perr("invalid verbatim string"));
                    }
                    Frame::Verbatim {
                        format: String::from_utf8_lossy(&data[..3]).into_owned(),
                        text: Bytes::copy_from_slice(&data[4..]),
                    }
                }
            };
            return Ok(Some((frame, stop + 2)));
        }
        b'*' | b'~' | b'>' | b'%' => {
            let count = number("multibulk length")?;
            if count == -1 && tag == b'*' {
                return Ok(Some((Frame::Null, next)));
            }
            if count < 0 || count as usize > limits.max_args {
                return Err(perr("invalid multibulk length"));
            }
            let per = if tag == b'%' { 2 } else { 1 };
            let mut items = Vec::with_capacity((count as usize * per).min(64));
            let mut at = next;
            for _ in 0..count as usize * per {
                let Some((item, after)) = parse_at(buf, at, limits, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                at = after;
            }
            let frame = match tag {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                b'>' => Frame::Push(items),
                _ => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Frame::Map(pairs)
                }
            };
            return Ok(Some((frame, at)));
        }
        other => {
            let mut msg = String::new();
            let _ = write!(msg, "unexpected type byte 0x{other:02x}");
            return Err(perr(msg));
        }
    };
    Ok(Some((frame, next)))
}

fn parse_double(body: &[u8]) -> Option<f64> {
    match body {
        b"inf" => Some(f64::INFINITY),
        b"-inf" => Some(f64::NEG_INFINITY),
        b"nan" => Some(f64::NAN),
        _ => std::str::from_utf8(body).ok()?.parse().ok(),
    }
}

mod request;
pub use request::{RequestDecoder, split_args};

#[cfg(test)]
mod tests;
