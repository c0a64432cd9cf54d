//! No input can make the bytes a connection keeps buffered for the parser grow without bound:
//! whatever arrives, after the parser has taken what it can, the read buffer holds at most one
//! incomplete operation, which is at most `max_control_line` of arguments, `max_payload` of
//! payload, a run of blanks after the verb (up to 4096 bytes are kept) and the chunk that just
//! arrived. The server's read loop relies on this for its per-connection memory bound.

use bytes::BytesMut;
use natrix_wire::{ClientParser, ParserLimits};
use proptest::prelude::*;

const LIMITS: ParserLimits = ParserLimits {
    max_control_line: 64,
    max_payload: 256,
};
/// Blanks after a verb that the parser keeps before it drops them.
const KEPT_SEPARATORS: usize = 4096;
/// The longest verb with its CR LF slack.
const VERB_AND_SLACK: usize = 16;

fn bound(chunk: usize) -> usize {
    LIMITS.max_control_line as usize
        + LIMITS.max_payload as usize
        + KEPT_SEPARATORS
        + chunk
        + VERB_AND_SLACK
}

/// One operation as a hostile client might send it: a verb, any run of blanks, an argument that
/// may be long, may end or not, and may be followed by (part of) a payload.
fn hostile_op() -> impl Strategy<Value = Vec<u8>> {
    let verb = prop::sample::select(vec![
        &b"PUB"[..],
        b"HPUB",
        b"SUB",
        b"UNSUB",
        b"CONNECT",
        b"INFO",
        b"-ERR",
        b"HMSG",
        b"PING",
        b"PONG",
        b"+OK",
    ]);
    let blanks = (prop::sample::select(vec![b' ', b'\t']), 0..6000usize);
    let argument = prop_oneof![
        Just(b"foo 256".to_vec()),
        Just(b"foo 12 256".to_vec()),
        Just(b"foo 999999999".to_vec()),
        Just(b"foo 1".to_vec()),
        (
            prop::sample::select(vec![b'x', b'1', b' ', b'\r']),
            0..200usize
        )
            .prop_map(|(byte, n)| vec![byte; n]),
    ];
    let end = prop::sample::select(vec![&b""[..], b"\r\n", b"\n", b"\r"]);
    let payload = (prop::sample::select(vec![b'p', b'\r', b'\n']), 0..400usize);
    (verb, blanks, argument, end, payload).prop_map(|(verb, (blank, n), arg, end, (p, m))| {
        let mut op = verb.to_vec();
        op.extend(std::iter::repeat_n(blank, n));
        op.extend_from_slice(&arg);
        op.extend_from_slice(end);
        op.extend(std::iter::repeat_n(p, m));
        op
    })
}

/// Hostile streams: hostile operations, protocol fragments, long runs of one byte, random bytes.
fn hostile_stream() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        3 => hostile_op(),
        1 => prop::sample::select(vec![
            &b"PUB foo 3\r\nabc\r\n"[..],
            b"SUB foo 1\r\n",
            b"PING\r\n",
            b"\r\n",
            b"\n",
        ])
        .prop_map(|f| f.to_vec()),
        1 => (prop::sample::select(vec![b' ', b'\t', b'x', b'\r', b'0']), 1..6000usize)
            .prop_map(|(byte, n)| vec![byte; n]),
        1 => prop::collection::vec(any::<u8>(), 1..64),
    ];
    prop::collection::vec(fragment, 1..12).prop_map(|v| v.concat())
}

/// Feeds `stream` in chunks of `chunk` bytes; returns the most bytes left buffered after the
/// parser returned "need more", and whether it stopped on an error.
fn most_buffered(stream: &[u8], chunk: usize) -> (usize, bool) {
    let mut parser = ClientParser::new(LIMITS);
    parser.set_headers_supported(true);
    let mut buf = BytesMut::new();
    let mut most = 0;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match parser.next_op(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return (most, true),
            }
        }
        most = most.max(buf.len());
    }
    (most, false)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn buffered_bytes_stay_within_one_operation_and_one_chunk(
        stream in hostile_stream(),
        chunk in 1..2048usize,
    ) {
        let (most, _) = most_buffered(&stream, chunk);
        prop_assert!(most <= bound(chunk), "{most} bytes buffered with chunks of {chunk}");
    }
}

#[test]
fn an_endless_run_of_blanks_after_a_verb_is_not_kept() {
    let mut stream = b"PUB".to_vec();
    stream.extend(std::iter::repeat_n(b' ', 1 << 20));
    let (most, failed) = most_buffered(&stream, 4096);
    assert!(!failed, "blanks after a verb are allowed");
    assert!(most <= bound(4096), "{most} bytes buffered");
}

#[test]
fn an_argument_that_never_ends_fails_at_the_control_line_limit() {
    let mut stream = b"SUB ".to_vec();
    stream.extend(std::iter::repeat_n(b'a', 1 << 20));
    let (most, failed) = most_buffered(&stream, 16);
    assert!(failed, "cut off at max_control_line");
    assert!(most <= LIMITS.max_control_line as usize + VERB_AND_SLACK);
}

#[test]
fn junk_after_ping_is_dropped_as_it_arrives() {
    let mut stream = b"PING".to_vec();
    stream.extend(std::iter::repeat_n(b'j', 1 << 20));
    let (most, failed) = most_buffered(&stream, 4096);
    assert!(!failed);
    assert!(most <= 4096, "{most} bytes buffered");
}

#[test]
fn a_payload_that_never_ends_is_held_only_up_to_its_announced_size() {
    let mut stream = format!("PUB foo {}\r\n", LIMITS.max_payload).into_bytes();
    stream.extend(std::iter::repeat_n(b'p', 1 << 20));
    // The bytes past the announced size are not CR LF: an error, not more buffering.
    let (most, failed) = most_buffered(&stream, 64);
    assert!(failed);
    assert!(most <= bound(64), "{most} bytes buffered");
}

#[test]
fn an_operation_at_every_limit_is_kept_whole_until_it_completes() {
    // The bound is not loose: blanks, arguments and payload at their limits are all held.
    let mut stream = b"PUB".to_vec();
    stream.extend(std::iter::repeat_n(b' ', 4000));
    stream.extend_from_slice(format!("foo{} 256\r\n", "o".repeat(56)).as_bytes());
    stream.extend(std::iter::repeat_n(b'p', 255));
    let (most, failed) = most_buffered(&stream, 512);
    assert!(!failed);
    assert_eq!(most, stream.len(), "everything is still needed");
    assert!(most <= bound(512));
    stream.extend_from_slice(b"p\r\n");
    let mut parser = ClientParser::new(LIMITS);
    let mut buf = BytesMut::from(&stream[..]);
    assert!(matches!(parser.next_op(&mut buf), Ok(Some(_))));
    assert!(buf.is_empty());
}
