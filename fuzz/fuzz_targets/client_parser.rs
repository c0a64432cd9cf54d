//! Fuzzes the client parser: arbitrary bytes, fed in arbitrary chunks with small limits, must
//! never panic, never consume more than was fed, give the same ops and error however they are
//! chunked, and give ops that re-encode to a stream parsing back to the same ops.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use natrix_wire::{ClientOp, ClientParser, ParseError, ParserLimits, write_client_op};

const LIMITS: ParserLimits = ParserLimits { max_control_line: 64, max_payload: 256 };

/// Parses `chunks` in order, calling the parser after each like the server's read loop.
fn parse(chunks: &[&[u8]]) -> (Vec<ClientOp>, Option<ParseError>) {
    let mut parser = ClientParser::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    let mut fed = 0usize;
    let mut consumed = 0usize;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            let before = buf.len();
            let result = parser.next_op(&mut buf);
            assert!(buf.len() <= before, "parser grew the buffer");
            consumed += before - buf.len();
            assert!(consumed <= fed, "consumed more than fed");
            match result {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => break,
                Err(e) => return (ops, Some(e)),
            }
        }
    }
    (ops, None)
}

fuzz_target!(|data: &[u8]| {
    // The first byte seeds the chunking; the rest is the client's stream.
    let Some((&seed, stream)) = data.split_first() else { return };
    let mut chunks = Vec::new();
    let mut rest = stream;
    let mut state = u32::from(seed) | 1;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = 1 + (state >> 16) as usize % 16;
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }

    let whole = parse(&[stream]);
    let chunked = parse(&chunks);
    assert_eq!(whole, chunked, "chunking changed the result");

    let (ops, _) = whole;
    let mut encoded = BytesMut::new();
    for op in &ops {
        write_client_op(&mut encoded, op);
    }
    let (reparsed, err) = parse(&[&encoded]);
    assert_eq!(err, None, "re-encoded ops failed to parse: {encoded:?}");
    assert_eq!(reparsed, ops, "re-encoded ops parse differently: {encoded:?}");
});
