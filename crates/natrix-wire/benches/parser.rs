//! Throughput of the hot paths: parsing many small PUBs and HPUBs from one read buffer (as a
//! busy publisher's socket delivers them), and encoding MSG frames for subscribers.
//!
//! `cargo bench -p natrix-wire --bench parser`. On the 2-core dev box (2026-11-26, load ~1-2):
//! PUB 16 B ~64 ns/op (15.7 M ops/s, ~690 MB/s), HPUB 16 B + 30 B headers ~94 ns/op
//! (10.6 M ops/s), MSG encode ~15 ns/op (68 M ops/s). About 25 ns of a PUB is `Bytes`
//! reference counting (split + slice + two drops), the floor for two zero-copy fields.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use natrix_wire::{ClientParser, ParserLimits, write_hpub, write_msg, write_pub};

const OPS: usize = 10_000;
const PAYLOAD: &[u8] = b"0123456789abcdef";
const HEADERS: &[u8] = b"NATS/1.0\r\nNats-Msg-Id: 42\r\n\r\n";

fn stream(f: impl Fn(&mut BytesMut)) -> BytesMut {
    let mut out = BytesMut::new();
    for _ in 0..OPS {
        f(&mut out);
    }
    out
}

/// Parses `data` fed in `read`-sized chunks, as the server's read loop does.
fn parse_in_reads(data: &[u8], read: usize) -> usize {
    let mut parser = ClientParser::new(ParserLimits::default());
    let mut buf = BytesMut::with_capacity(read * 2);
    let mut n = 0;
    for chunk in data.chunks(read) {
        buf.extend_from_slice(chunk);
        while let Ok(Some(op)) = parser.next_op(&mut buf) {
            black_box(&op);
            n += 1;
        }
    }
    n
}

fn parse(c: &mut Criterion) {
    let pubs = stream(|o| write_pub(o, b"bench.subject.foo", None, PAYLOAD));
    let hpubs = stream(|o| {
        write_hpub(
            o,
            b"bench.subject.foo",
            Some(b"_INBOX.abcdef.1"),
            HEADERS,
            PAYLOAD,
        )
    });

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(OPS as u64));
    for (name, data) in [("pub_16b", &pubs), ("hpub_16b", &hpubs)] {
        group.bench_function(format!("{name}/one_buffer"), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&data[..]),
                |buf| {
                    let mut parser = ClientParser::new(ParserLimits::default());
                    let mut n = 0;
                    while let Ok(Some(op)) = parser.next_op(buf) {
                        black_box(&op);
                        n += 1;
                    }
                    assert_eq!(n, OPS);
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_function(format!("{name}/64k_reads"), |b| {
            b.iter(|| assert_eq!(parse_in_reads(data, 64 * 1024), OPS))
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(OPS as u64));
    let mut out = BytesMut::with_capacity(OPS * 64);
    group.bench_function("msg_16b", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..OPS {
                write_msg(
                    &mut out,
                    b"bench.subject.foo",
                    b"12",
                    None,
                    black_box(PAYLOAD),
                );
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, parse, encode);
criterion_main!(benches);
