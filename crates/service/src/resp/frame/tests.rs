//! Decoder and encoder properties: arbitrary bytes never panic, encode → decode round-trips,
//! and splitting the input anywhere yields the same requests.

use super::*;
use proptest::prelude::*;

fn decode_all(input: &[u8], chunks: &[usize]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
    let mut dec = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut sizes = chunks.iter().copied().chain(std::iter::repeat(usize::MAX));
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(usize::MAX).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(args) = dec.decode(&mut buf)? {
            out.push(args);
        }
    }
    Ok(out)
}

fn request(args: &[Vec<u8>]) -> Vec<u8> {
    let items = args.iter().map(|a| Frame::bulk(a.clone())).collect();
    Frame::Array(items).to_bytes(Protocol::Resp2).to_vec()
}

fn resp2_leaf() -> impl Strategy<Value = Frame> {
    prop_oneof![
        "[a-zA-Z0-9 ]{0,12}".prop_map(Frame::Simple),
        "[a-zA-Z0-9 ]{0,12}".prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| Frame::Bulk(v.into())),
        Just(Frame::Null),
    ]
}

fn resp3_leaf() -> impl Strategy<Value = Frame> {
    prop_oneof![
        resp2_leaf(),
        any::<bool>().prop_map(Frame::Boolean),
        any::<f64>()
            .prop_filter("nan never equals itself", |d| !d.is_nan())
            .prop_map(Frame::Double),
        "-?[1-9][0-9]{0,30}".prop_map(Frame::BigNumber),
        ("[a-z]{3}", proptest::collection::vec(any::<u8>(), 0..20)).prop_map(|(f, t)| {
            Frame::Verbatim {
                format: f,
                text: t.into(),
            }
        }),
    ]
}

fn resp2_frame() -> impl Strategy<Value = Frame> {
    resp2_leaf().prop_recursive(3, 24, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(Frame::Array)
    })
}

fn resp3_frame() -> impl Strategy<Value = Frame> {
    resp3_leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Array),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512),
                                   chunks in proptest::collection::vec(1usize..64, 0..8)) {
        let _ = decode_all(&input, &chunks);
        let _ = parse_frame(&input, &Limits::default());
    }

    #[test]
    fn protocol_like_bytes_never_panic(parts in proptest::collection::vec(
        prop_oneof![Just(&b"*"[..]), Just(&b"$"[..]), Just(&b"\r\n"[..]), Just(&b"-1"[..]),
                    Just(&b"3"[..]), Just(&b"99999999999"[..]), Just(&b"\""[..]), Just(&b"x"[..]),
                    Just(&b"%"[..]), Just(&b"~"[..]), Just(&b"\n"[..]), Just(&b" "[..])], 0..64)) {
        let input: Vec<u8> = parts.concat();
        let _ = decode_all(&input, &[3, 1, 7]);
        let _ = parse_frame(&input, &Limits::default());
    }

    #[test]
    fn resp3_encode_then_parse_round_trips(frame in resp3_frame()) {
        let bytes = frame.to_bytes(Protocol::Resp3);
        let (parsed, used) = parse_frame(&bytes, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(parsed, frame);
    }

    #[test]
    fn resp2_encode_then_parse_round_trips(frame in resp2_frame()) {
        let bytes = frame.to_bytes(Protocol::Resp2);
        let (parsed, used) = parse_frame(&bytes, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(parsed, frame);
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete(frame in resp3_frame()) {
        let bytes = frame.to_bytes(Protocol::Resp3);
        for cut in 0..bytes.len() {
            prop_assert_eq!(parse_frame(&bytes[..cut], &Limits::default()).unwrap(), None);
        }
    }

    #[test]
    fn requests_split_anywhere_decode_the_same(
        reqs in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..5), 1..6),
        chunks in proptest::collection::vec(1usize..16, 0..32),
    ) {
        let input: Vec<u8> = reqs.iter().flat_map(|r| request(r)).collect();
        let whole = decode_all(&input, &[]).unwrap();
        let split = decode_all(&input, &chunks).unwrap();
        let expected: Vec<Vec<Bytes>> = reqs
            .iter()
            .map(|r| r.iter().map(|a| Bytes::from(a.clone())).collect())
            .collect();
        prop_assert_eq!(&whole, &expected);
        prop_assert_eq!(split, expected);
    }
}

#[test]
fn inline_commands_split_like_redis() {
    let got = decode_all(b"SET k \"a b\\x41\\n\" 'it\\'s'\r\nPING\n\r\n", &[]).unwrap();
    assert_eq!(
        got,
        vec![
            vec![
                Bytes::from("SET"),
                Bytes::from("k"),
                Bytes::from("a bA\n"),
                Bytes::from("it's")
            ],
            vec![Bytes::from("PING")],
        ]
    );
    assert_eq!(
        decode_all(b"SET \"a\"b\r\n", &[]).unwrap_err().to_string(),
        "ERR Protocol error: unbalanced quotes in request"
    );
}

/// The words `sdssplitargs` gives, as strings.
fn words(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    split_args(line)
}

#[test]
fn inline_words_split_as_sdssplitargs() {
    let w = |s: &[&[u8]]| Some(s.iter().map(|x| x.to_vec()).collect::<Vec<_>>());
    // Quotes may open inside a word, and their content joins it.
    assert_eq!(words(b"ECHO a\"b\""), w(&[b"ECHO", b"ab"]));
    assert_eq!(words(b"ECHO a\"b c\"d"), None);
    assert_eq!(words(b"ECHO a\"b c\" d"), w(&[b"ECHO", b"ab c", b"d"]));
    assert_eq!(words(b"ECHO x'it\\'s'"), w(&[b"ECHO", b"xit's"]));
    // A form feed or vertical tab separates words but does not end one.
    assert_eq!(words(b"ECHO a\x0cb"), w(&[b"ECHO", b"a\x0cb"]));
    assert_eq!(words(b"\x0bECHO\x0ba"), w(&[b"ECHO\x0ba"]));
    assert_eq!(words(b"ECHO \x0c\x0b a"), w(&[b"ECHO", b"a"]));
    // After a closing quote, any blank (isspace) may follow.
    assert_eq!(words(b"\"a\"\x0cb"), w(&[b"a", b"b"]));
    assert_eq!(words(b"'a'x"), None);
    // Every escape of a double-quoted word; an unknown one is the byte itself.
    assert_eq!(
        words(b"\"\\n\\r\\t\\b\\a\\\\\\\"\\x41\\xzz\\q\""),
        w(&[b"\n\r\t\x08\x07\\\"Axzzq"])
    );
    // Unbalanced, including a backslash that escapes the closing quote.
    assert_eq!(words(b"ECHO \"a"), None);
    assert_eq!(words(b"ECHO \"a\\\""), None);
    assert_eq!(words(b"ECHO 'a\\'"), None);
    // A NUL ends the line (C strings).
    assert_eq!(words(b"ECHO a\0b c"), w(&[b"ECHO", b"a"]));
    assert_eq!(words(b"ECHO \"a\0\""), None);
    assert_eq!(words(b"  \t "), w(&[]));
}

#[test]
fn an_inline_line_holding_a_nul_is_never_complete() {
    // Redis looks for the line's end with strchr, which stops at the NUL: no request, and
    // none after it, until the line is too big.
    assert_eq!(
        decode_all(b"ECHO a\0b\r\nPING\r\n", &[]).unwrap(),
        Vec::<Vec<Bytes>>::new()
    );
    let mut long = b"ECHO \0".to_vec();
    long.resize(70 * 1024, b'a');
    assert_eq!(
        decode_all(&long, &[]).unwrap_err().to_string(),
        "ERR Protocol error: too big inline request"
    );
}

#[test]
fn redis_error_texts_for_bad_lengths() {
    let err = |input: &[u8]| decode_all(input, &[]).unwrap_err().to_string();
    assert_eq!(
        err(b"*x\r\n"),
        "ERR Protocol error: invalid multibulk length"
    );
    assert_eq!(
        err(b"*1\r\n$-5\r\n"),
        "ERR Protocol error: invalid bulk length"
    );
    assert_eq!(
        err(b"*1\r\n$99999999999\r\n"),
        "ERR Protocol error: invalid bulk length"
    );
    assert_eq!(
        err(b"*1\r\n:1\r\n"),
        "ERR Protocol error: expected '$', got ':'"
    );
    assert_eq!(
        err(b"*99999999\r\n"),
        "ERR Protocol error: invalid multibulk length"
    );
    let small = Limits {
        max_request_bytes: 100,
        max_args: 3,
        max_bulk_bytes: 10,
    };
    let mut dec = RequestDecoder::new(small);
    let mut buf = BytesMut::from(&b"*4\r\n"[..]);
    assert!(dec.decode(&mut buf).is_err(), "too many arguments");
    let mut dec = RequestDecoder::new(small);
    let mut buf = BytesMut::from(&b"*1\r\n$11\r\n"[..]);
    assert!(dec.decode(&mut buf).is_err(), "bulk over the limit");
    let mut dec = RequestDecoder::new(Limits {
        max_request_bytes: 40,
        ..small
    });
    let mut buf = BytesMut::from(&b"*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n"[..]);
    assert!(dec.decode(&mut buf).is_err(), "request over the limit");
}

#[test]
fn empty_requests_are_skipped() {
    assert_eq!(
        decode_all(b"*0\r\n*-1\r\n\r\n  \r\n*1\r\n$4\r\nPING\r\n", &[]).unwrap(),
        vec![vec![Bytes::from("PING")]]
    );
}

#[test]
fn resp2_downgrades_resp3_types() {
    let map = Frame::Map(vec![(Frame::Simple("a".into()), Frame::Boolean(true))]);
    assert_eq!(&map.to_bytes(Protocol::Resp2)[..], b"*2\r\n+a\r\n:1\r\n");
    assert_eq!(&map.to_bytes(Protocol::Resp3)[..], b"%1\r\n+a\r\n#t\r\n");
    assert_eq!(&Frame::Null.to_bytes(Protocol::Resp2)[..], b"$-1\r\n");
    assert_eq!(&Frame::Null.to_bytes(Protocol::Resp3)[..], b"_\r\n");
    assert_eq!(
        &Frame::Integer(i64::MIN).to_bytes(Protocol::Resp2)[..],
        b":-9223372036854775808\r\n"
    );
}

#[test]
fn a_null_array_is_star_minus_one_in_resp2_and_null_in_resp3() {
    assert_eq!(&Frame::NullArray.to_bytes(Protocol::Resp2)[..], b"*-1\r\n");
    assert_eq!(&Frame::NullArray.to_bytes(Protocol::Resp3)[..], b"_\r\n");
}
