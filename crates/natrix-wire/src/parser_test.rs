//! Unit tests of the client parser: every op, every error, and the nats-server quirks recorded
//! in `PROTOCOL_NOTES.md`.

use super::*;

/// Feeds `input` at once; returns the ops, the error if any, and the unconsumed bytes.
fn parse_all_with(
    limits: ParserLimits,
    input: &[u8],
) -> (Vec<ClientOp>, Option<ParseError>, Vec<u8>) {
    let mut parser = ClientParser::new(limits);
    let mut buf = BytesMut::from(input);
    let mut ops = Vec::new();
    loop {
        match parser.next_op(&mut buf) {
            Ok(Some(op)) => ops.push(op),
            Ok(None) => return (ops, None, buf.to_vec()),
            Err(e) => return (ops, Some(e), buf.to_vec()),
        }
    }
}

fn parse_all(input: &[u8]) -> (Vec<ClientOp>, Option<ParseError>) {
    let (ops, err, _) = parse_all_with(ParserLimits::default(), input);
    (ops, err)
}

fn ops(input: &[u8]) -> Vec<ClientOp> {
    let (ops, err) = parse_all(input);
    assert_eq!(
        err,
        None,
        "unexpected error for {:?}",
        String::from_utf8_lossy(input)
    );
    ops
}

fn err(input: &[u8]) -> ParseError {
    let (_, err) = parse_all(input);
    err.unwrap_or_else(|| panic!("expected an error for {:?}", String::from_utf8_lossy(input)))
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn publish(subject: &str, reply: Option<&str>, payload: &str) -> ClientOp {
    ClientOp::Pub(Publish {
        subject: b(subject),
        reply: reply.map(b),
        headers: None,
        payload: b(payload),
    })
}

fn hpublish(subject: &str, reply: Option<&str>, headers: &str, payload: &str) -> ClientOp {
    ClientOp::Pub(Publish {
        subject: b(subject),
        reply: reply.map(b),
        headers: Some(b(headers)),
        payload: b(payload),
    })
}

fn sub(subject: &str, queue: Option<&str>, sid: &str) -> ClientOp {
    ClientOp::Sub {
        subject: b(subject),
        queue: queue.map(b),
        sid: b(sid),
    }
}

fn unsub(sid: &str, max: Option<u64>) -> ClientOp {
    ClientOp::Unsub { sid: b(sid), max }
}

#[test]
fn ping_and_pong_in_any_case_with_crlf_or_bare_lf() {
    assert_eq!(
        ops(b"PING\r\nping\r\nPiNg\npong\r\nPONG\n"),
        vec![
            ClientOp::Ping,
            ClientOp::Ping,
            ClientOp::Ping,
            ClientOp::Pong,
            ClientOp::Pong
        ]
    );
}

#[test]
fn anything_after_ping_pong_ok_up_to_newline_is_ignored() {
    assert_eq!(
        ops(b"PINGjunk\r\nPING \t\r\nPONGPING\n+OKxyz\r\n+ok\r\n"),
        vec![
            ClientOp::Ping,
            ClientOp::Ping,
            ClientOp::Pong,
            ClientOp::Ok,
            ClientOp::Ok
        ]
    );
}

#[test]
fn pub_with_and_without_reply() {
    assert_eq!(
        ops(b"PUB foo 5\r\nhello\r\nPUB foo bar 2\r\nhi\r\n"),
        vec![
            publish("foo", None, "hello"),
            publish("foo", Some("bar"), "hi")
        ]
    );
}

#[test]
fn pub_accepts_tabs_multiple_separators_trailing_whitespace_and_lower_case() {
    assert_eq!(
        ops(b"pub\tfoo\t\t5  \r\nhello\r\nPuB   foo  r  0\t\r\n\r\n"),
        vec![publish("foo", None, "hello"), publish("foo", Some("r"), "")]
    );
}

#[test]
fn pub_control_line_may_end_with_bare_lf_but_payload_needs_crlf() {
    assert_eq!(
        ops(b"PUB foo 5\nhello\r\n"),
        vec![publish("foo", None, "hello")]
    );
    assert_eq!(err(b"PUB foo 5\r\nhello\n"), ParseError::UnknownOperation);
}

#[test]
fn payload_may_contain_crlf_and_protocol_text() {
    assert_eq!(
        ops(b"PUB a 12\r\nPING\r\nPONG\r\n\r\n"),
        vec![publish("a", None, "PING\r\nPONG\r\n")]
    );
}

#[test]
fn wrong_payload_length_is_unknown_operation_as_soon_as_seen() {
    assert_eq!(err(b"PUB foo 5\r\nhelloX"), ParseError::UnknownOperation);
    assert_eq!(
        err(b"PUB foo 2\r\nhi\nPING\r\n"),
        ParseError::UnknownOperation
    );
    // Too short: the following op's bytes are taken as payload, then the terminator is wrong.
    assert_eq!(
        err(b"PUB foo 5\r\nhel\r\nPING\r\n"),
        ParseError::UnknownOperation
    );
}

#[test]
fn pub_waits_for_its_payload() {
    let (ops, err, rest) = parse_all_with(ParserLimits::default(), b"PUB foo 5\r\nhel");
    assert!(ops.is_empty());
    assert_eq!(err, None);
    assert_eq!(rest, b"PUB foo 5\r\nhel");
}

#[test]
fn pub_zero_length_and_leading_zero_sizes() {
    assert_eq!(
        ops(b"PUB a 0\r\n\r\nPUB a 00\r\n\r\nPUB a 000000002\r\nhi\r\n"),
        vec![
            publish("a", None, ""),
            publish("a", None, ""),
            publish("a", None, "hi")
        ]
    );
}

#[test]
fn pub_with_wrong_argument_count_is_a_silent_close() {
    for input in [
        &b"PUB foo\r\n"[..],
        b"PUB foo bar baz 5\r\n",
        b"PUB  \r\n",
        b"PUB \t\r\n",
    ] {
        let e = err(input);
        assert_eq!(
            e,
            ParseError::InvalidArguments(invalid::PUB_PARSE),
            "{input:?}"
        );
        assert_eq!(e.err_reply(), None);
    }
}

#[test]
fn pub_with_bad_size_is_a_silent_close() {
    for input in [
        &b"PUB foo abc\r\n"[..],
        b"PUB foo -1\r\n",
        b"PUB foo +2\r\n",
        b"PUB foo 0000000002\r\n",
    ] {
        assert_eq!(
            err(input),
            ParseError::InvalidArguments(invalid::PUB_SIZE),
            "{input:?}"
        );
    }
}

#[test]
fn pub_over_max_payload_is_rejected_from_the_control_line() {
    let e = err(b"PUB foo 2000000\r\n");
    assert_eq!(e, ParseError::MaxPayloadViolation);
    assert_eq!(e.err_reply(), Some("Maximum Payload Violation"));
    assert_eq!(
        err(b"HPUB foo 0 1048577\r\n"),
        ParseError::MaxPayloadViolation
    );
    let at_limit = ops(&[&b"PUB foo 1048576\r\n"[..], &vec![b'x'; 1 << 20], b"\r\n"].concat());
    assert_eq!(at_limit.len(), 1);
}

#[test]
fn verb_without_separator_is_unknown_operation() {
    for input in [
        &b"PUB\r\n"[..],
        b"SUB\r\n",
        b"UNSUB\r\n",
        b"HPUB\r\n",
        b"-ERR\r\n",
        b"PUBfoo 1\r\n",
    ] {
        assert_eq!(err(input), ParseError::UnknownOperation, "{input:?}");
    }
}

#[test]
fn unknown_verbs_empty_lines_and_leading_space_are_unknown_operation() {
    for input in [
        &b"FOO\r\n"[..],
        b"\r\n",
        b"\n",
        b" PING\r\n",
        b"MSG foo 1 1\r\nx\r\n",
        b"msg foo 1 1\r\n",
        b"PUX",
        b"\x0bOK\r\n",
        b"RS+ foo\r\n",
        b"LS+ foo\r\n",
        b"A+ foo\r\n",
    ] {
        let e = err(input);
        assert_eq!(e, ParseError::UnknownOperation, "{input:?}");
        assert_eq!(e.err_reply(), Some("Unknown Protocol Operation"));
    }
}

#[test]
fn a_wrong_verb_byte_fails_before_the_line_ends() {
    let (_, e, _) = parse_all_with(ParserLimits::default(), b"PIX");
    assert_eq!(e, Some(ParseError::UnknownOperation));
    let (_, e, rest) = parse_all_with(ParserLimits::default(), b"UNSU");
    assert_eq!(e, None);
    assert_eq!(rest, b"UNSU");
}

#[test]
fn hpub_splits_headers_from_payload() {
    assert_eq!(
        ops(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nhpub\tfoo\treply\t2\t3\r\n\r\nx\r\n"),
        vec![
            hpublish("foo", None, "NATS/1.0\r\n\r\n", "hi"),
            hpublish("foo", Some("reply"), "\r\n", "x")
        ]
    );
}

#[test]
fn hpub_header_block_is_not_validated() {
    assert_eq!(
        ops(b"HPUB foo 3 3\r\nabc\r\nHPUB foo r 0 0\r\n\r\n"),
        vec![
            hpublish("foo", None, "abc", ""),
            hpublish("foo", Some("r"), "", "")
        ]
    );
}

#[test]
fn hpub_argument_errors_are_silent_closes() {
    let cases: [(&[u8], &str); 6] = [
        (b"HPUB foo 3\r\n", invalid::HPUB_PARSE),
        (b"HPUB foo a b c d\r\n", invalid::HPUB_PARSE),
        (b"HPUB foo -1 3\r\n", invalid::HPUB_HDR_SIZE),
        (b"HPUB foo 1 x\r\n", invalid::HPUB_TOTAL_SIZE),
        (b"HPUB foo 14 12\r\n", invalid::HPUB_HDR_TOO_BIG),
        (b"HPUB foo r 0000000001 2\r\n", invalid::HPUB_HDR_SIZE),
    ];
    for (input, text) in cases {
        let e = err(input);
        assert_eq!(e, ParseError::InvalidArguments(text), "{input:?}");
        assert_eq!(e.err_reply(), None);
    }
}

#[test]
fn hpub_is_refused_when_the_client_did_not_ask_for_headers() {
    let mut parser = ClientParser::new(ParserLimits::default());
    parser.set_headers_supported(false);
    let mut buf = BytesMut::from(&b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"[..]);
    assert_eq!(
        parser.next_op(&mut buf),
        Err(ParseError::InvalidArguments(invalid::HPUB_NOT_SUPPORTED))
    );
}

#[test]
fn hmsg_from_a_client_is_ignored_when_followed_by_crlf() {
    assert_eq!(ops(b"HMSG foo 1 2\r\n\r\nPING\r\n"), vec![ClientOp::Ping]);
    assert_eq!(
        err(b"HMSG foo 1 2\r\nPING\r\n"),
        ParseError::UnknownOperation
    );
}

#[test]
fn sub_with_and_without_queue() {
    assert_eq!(
        ops(b"SUB foo 1\r\nsub\tfoo\t1\nSUB foo  q  1  \r\nSUB foo\r 1\r\n"),
        vec![
            sub("foo", None, "1"),
            sub("foo", None, "1"),
            sub("foo", Some("q"), "1"),
            sub("foo", None, "1")
        ]
    );
}

#[test]
fn sub_subjects_are_not_validated_by_the_parser() {
    assert_eq!(ops(b"SUB foo..bar 1\r\n"), vec![sub("foo..bar", None, "1")]);
}

#[test]
fn sub_with_wrong_argument_count_is_a_silent_close() {
    for input in [&b"SUB foo\r\n"[..], b"SUB foo q 1 x\r\n", b"SUB foo\r1\n"] {
        let e = err(input);
        if input == b"SUB foo\r1\n" {
            // The byte before `\n` is dropped because a `\r` was seen: "foo\r" is one token.
            assert_eq!(e, ParseError::InvalidArguments(invalid::SUB_PARSE));
            continue;
        }
        assert_eq!(
            e,
            ParseError::InvalidArguments(invalid::SUB_PARSE),
            "{input:?}"
        );
        assert_eq!(e.err_reply(), None);
    }
}

#[test]
fn unsub_with_and_without_max() {
    assert_eq!(
        ops(b"UNSUB 1\r\nUNSUB 1 2\r\nunsub\t1\t10\nUNSUB 1 0\r\nUNSUB 1 abc\r\nUNSUB 1 1234567890\r\n"),
        vec![
            unsub("1", None),
            unsub("1", Some(2)),
            unsub("1", Some(10)),
            unsub("1", None),
            unsub("1", None),
            unsub("1", None)
        ]
    );
}

#[test]
fn unsub_with_three_arguments_is_a_silent_close() {
    assert_eq!(
        err(b"UNSUB 1 2 3\r\n"),
        ParseError::InvalidArguments(invalid::UNSUB_PARSE)
    );
}

#[test]
fn connect_info_and_err_keep_their_raw_argument() {
    assert_eq!(
        ops(b"CONNECT {\"verbose\":false}\r\nconnect{}\r\nINFO {}\r\n-ERR 'oops'\r\n-err\tx y\n"),
        vec![
            ClientOp::Connect(b("{\"verbose\":false}")),
            ClientOp::Connect(b("{}")),
            ClientOp::Info(b("{}")),
            ClientOp::Err(b("'oops'")),
            ClientOp::Err(b("x y")),
        ]
    );
}

#[test]
fn connect_without_argument_takes_the_next_byte_as_argument() {
    // nats-server then fails to parse "\r" as JSON and closes the connection.
    assert_eq!(ops(b"CONNECT\r\n"), vec![ClientOp::Connect(b("\r"))]);
}

#[test]
fn a_line_feed_right_after_the_separators_starts_the_argument() {
    // nats-server takes the first non-blank byte as the argument's start, even `\n`.
    assert_eq!(
        ops(b"PUB \nfoo 1\r\nx\r\n"),
        vec![publish("\nfoo", None, "x")]
    );
}

#[test]
fn control_line_limit_applies_to_the_argument_of_complete_lines() {
    let limits = ParserLimits {
        max_control_line: 16,
        max_payload: 1024,
    };
    let at_limit = [&b"SUB "[..], &[b'a'; 14], b" 1\r\n"].concat();
    let (ops, e, _) = parse_all_with(limits, &at_limit);
    assert_eq!((ops.len(), e), (1, None));
    let over = [&b"SUB "[..], &[b'a'; 15], b" 1\r\n"].concat();
    let (_, e, _) = parse_all_with(limits, &over);
    assert_eq!(e, Some(ParseError::MaxControlLineExceeded));
    assert_eq!(
        e.and_then(|e| e.err_reply()),
        Some("maximum control line exceeded")
    );
}

#[test]
fn control_line_limit_is_checked_before_the_line_ends() {
    let limits = ParserLimits {
        max_control_line: 16,
        max_payload: 1024,
    };
    let (_, e, _) = parse_all_with(limits, &[&b"CONNECT {\""[..], &[b'x'; 20]].concat());
    assert_eq!(e, Some(ParseError::MaxControlLineExceeded));
    // 16 argument bytes plus the CR of CRLF are still within the limit.
    let (_, e, _) = parse_all_with(limits, &[&b"PUB "[..], &[b'a'; 14], b" 1\r"].concat());
    assert_eq!(e, None);
}

#[test]
fn control_line_limit_applies_to_every_argument_verb() {
    let limits = ParserLimits {
        max_control_line: 8,
        max_payload: 1024,
    };
    for verb in [
        "PUB ", "HPUB ", "SUB ", "UNSUB ", "CONNECT ", "INFO ", "-ERR ", "HMSG ",
    ] {
        let input = [verb.as_bytes(), &[b'a'; 9], b"\r\n"].concat();
        let (_, e, _) = parse_all_with(limits, &input);
        assert_eq!(e, Some(ParseError::MaxControlLineExceeded), "{verb}");
    }
}

#[test]
fn ping_pong_ok_lines_and_separators_are_not_limited_and_not_buffered() {
    let limits = ParserLimits {
        max_control_line: 8,
        max_payload: 1024,
    };
    let mut parser = ClientParser::new(limits);
    let mut buf = BytesMut::from(&[&b"PING"[..], &[b'x'; 100]].concat()[..]);
    assert_eq!(parser.next_op(&mut buf), Ok(None));
    assert!(buf.is_empty(), "junk after PING is dropped, not buffered");
    buf.extend_from_slice(b"\r\nPUB");
    assert_eq!(parser.next_op(&mut buf), Ok(Some(ClientOp::Ping)));
    buf.extend_from_slice(&[b' '; 100]);
    assert_eq!(parser.next_op(&mut buf), Ok(None));
    assert_eq!(buf.len(), 103, "a short run of blanks stays, with its verb");
    buf.extend_from_slice(&[b'\t'; 5000]);
    assert_eq!(parser.next_op(&mut buf), Ok(None));
    assert!(
        buf.is_empty(),
        "a long run of blanks is dropped, not buffered"
    );
    buf.extend_from_slice(b"foo 1\r\nx\r\n");
    assert_eq!(
        parser.next_op(&mut buf),
        Ok(Some(publish("foo", None, "x")))
    );
}

#[test]
fn errors_are_sticky() {
    let mut parser = ClientParser::new(ParserLimits::default());
    let mut buf = BytesMut::from(&b"FOO\r\n"[..]);
    assert_eq!(parser.next_op(&mut buf), Err(ParseError::UnknownOperation));
    buf.extend_from_slice(b"PING\r\n");
    assert_eq!(parser.next_op(&mut buf), Err(ParseError::UnknownOperation));
}

#[test]
fn client_texts_are_nats_server_texts() {
    assert_eq!(
        ParseError::UnknownOperation.client_text(),
        "Unknown Protocol Operation"
    );
    assert_eq!(
        ParseError::MaxControlLineExceeded.client_text(),
        "maximum control line exceeded"
    );
    assert_eq!(
        ParseError::MaxPayloadViolation.client_text(),
        "Maximum Payload Violation"
    );
}

#[test]
fn fields_are_slices_of_the_read_buffer() {
    let mut parser = ClientParser::new(ParserLimits::default());
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(b"PUB foo 5\r\nhello\r\n");
    let base = buf.as_ptr() as usize;
    let Ok(Some(ClientOp::Pub(p))) = parser.next_op(&mut buf) else {
        panic!("expected PUB")
    };
    assert_eq!(p.subject.as_ptr() as usize, base + 4);
    assert_eq!(p.payload.as_ptr() as usize, base + 11);
}

#[test]
fn a_stream_split_at_every_byte_boundary_gives_the_same_ops() {
    let stream: &[u8] = b"CONNECT {\"verbose\":false}\r\nPING\r\nSUB foo q 1\r\nPUB foo bar 5\r\nhello\r\n\
        HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nUNSUB 1 5\r\nPINGjunk\r\nPUB   x\t0\n\r\n+OK\r\nPONG\r\nHMSG a 1\r\n\r\n-ERR bad\r\n";
    let expected = ops(stream);
    assert_eq!(expected.len(), 11, "HMSG is dropped");
    for split in 0..=stream.len() {
        assert_eq!(
            parse_chunks(&[&stream[..split], &stream[split..]]),
            expected,
            "split at {split}"
        );
    }
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(parse_chunks(&bytewise), expected);
}

/// Feeds chunks one after another, calling the parser after each as the server does.
pub(crate) fn parse_chunks(chunks: &[&[u8]]) -> Vec<ClientOp> {
    let mut parser = ClientParser::new(ParserLimits::default());
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(op) = parser.next_op(&mut buf).expect("valid stream") {
            ops.push(op);
        }
    }
    ops
}

#[test]
fn a_zero_control_line_limit_rejects_any_argument_byte() {
    let limits = ParserLimits {
        max_control_line: 0,
        max_payload: 1024,
    };
    let (_, e, _) = parse_all_with(limits, b"SUB x");
    assert_eq!(e, Some(ParseError::MaxControlLineExceeded));
    let (ops, e, _) = parse_all_with(limits, b"PING\r\n");
    assert_eq!((ops, e), (vec![ClientOp::Ping], None));
}

#[test]
fn hpub_at_max_payload_is_accepted() {
    let limits = ParserLimits {
        max_control_line: 4096,
        max_payload: 16,
    };
    let input = b"HPUB s 12 16\r\nNATS/1.0\r\n\r\nbody\r\n";
    let (ops, e, rest) = parse_all_with(limits, input);
    assert_eq!(
        (ops, e, rest.len()),
        (
            vec![hpublish("s", None, "NATS/1.0\r\n\r\n", "body")],
            None,
            0
        )
    );
    let (_, e, _) = parse_all_with(limits, b"HPUB s 12 17\r\n");
    assert_eq!(e, Some(ParseError::MaxPayloadViolation));
}

#[test]
fn parser_is_idle_only_between_operations() {
    let mut parser = ClientParser::new(ParserLimits::default());
    assert!(parser.is_idle());
    let mut buf = BytesMut::from(&b"PUB a 1\r\n"[..]);
    assert_eq!(parser.next_op(&mut buf), Ok(None));
    assert!(!parser.is_idle());
    buf.extend_from_slice(b"x\r\n");
    assert!(matches!(
        parser.next_op(&mut buf),
        Ok(Some(ClientOp::Pub(_)))
    ));
    assert!(parser.is_idle());
}

#[test]
fn a_large_payload_arriving_in_many_reads_parses_to_one_publish() {
    let payload = vec![b'\n'; 100_000];
    let mut stream = b"PUB big 100000\r\n".to_vec();
    stream.extend_from_slice(&payload);
    stream.extend_from_slice(b"\r\nPING\r\n");
    let chunks: Vec<&[u8]> = stream.chunks(1000).collect();
    let ops = parse_chunks(&chunks);
    assert_eq!(ops.len(), 2);
    let ClientOp::Pub(p) = &ops[0] else {
        panic!("expected PUB")
    };
    assert_eq!(p.payload.len(), 100_000);
}

#[test]
fn an_incomplete_op_stays_at_the_front_of_the_buffer() {
    // The server checks the first byte of a pre-CONNECT op for 'C' (auth); it must still be there.
    for partial in [
        &b"CONN"[..],
        b"CONNECT ",
        b"CONNECT  \t",
        b"CONNECT {\"a\":",
        b"PUB a 5\r\nhe",
    ] {
        let mut parser = ClientParser::new(ParserLimits::default());
        let mut buf = BytesMut::from(partial);
        assert_eq!(parser.next_op(&mut buf), Ok(None));
        assert_eq!(&buf[..], partial);
    }
}
