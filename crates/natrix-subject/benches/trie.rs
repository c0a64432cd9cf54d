//! Criterion benches for `SubjectTrie`: matching a published subject against tries of 10, 1K and
//! 100K subscriptions (mostly literal, some `*`/`>`, some queue groups), and insert/remove churn.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use natrix_subject::{MatchResult, SubjectTrie};

/// Subscriptions shaped like a service fleet: `orders.<region>.<id>` literals; every 20th a
/// `orders.<region>.*`, every 200th a `orders.*.<id>`; every 10th is in queue group `workers`;
/// plus one `orders.>` and one `>` monitor.
fn build(n: usize) -> SubjectTrie<Arc<u64>> {
    build_with(n, |i| Arc::new(i as u64))
}

fn build_with<T: Clone + PartialEq>(n: usize, handle: impl Fn(usize) -> T) -> SubjectTrie<T> {
    let mut trie = SubjectTrie::new();
    for i in 0..n {
        let region = i % 64;
        let subject = match i {
            _ if i % 200 == 1 => format!("orders.*.{}", i % 1000),
            _ if i % 20 == 1 => format!("orders.{region}.*"),
            _ => format!("orders.{region}.{i}"),
        };
        let queue = (i % 10 == 3).then_some(&b"workers"[..]);
        let _ = trie.insert(subject.as_bytes(), queue, handle(i));
    }
    let _ = trie.insert(b"orders.>", None, handle(usize::MAX));
    let _ = trie.insert(b">", None, handle(usize::MAX - 1));
    trie
}

fn bench_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("match");
    for n in [10usize, 1_000, 100_000] {
        let trie = build(n);
        // A literal that exists (id n/2 is a literal subscription), and one nobody subscribed to
        // except the full wildcards.
        let hit = format!("orders.{}.{}", (n / 2) % 64, n / 2);
        let miss = "orders.63.nobody".to_string();
        group.bench_with_input(BenchmarkId::new("hit", n), &hit, |b, s| {
            b.iter(|| black_box(trie.matches(black_box(s.as_bytes()))))
        });
        let mut reuse = MatchResult::new();
        group.bench_with_input(BenchmarkId::new("hit_into_reused", n), &hit, |b, s| {
            b.iter(|| {
                reuse.clear();
                trie.matches_into(black_box(s.as_bytes()), &mut reuse);
                black_box(reuse.plain.len())
            })
        });
        // The same trie with plain integer handles: the trie's own cost, without Arc refcounting.
        let int_trie = build_with(n, |i| i as u64);
        group.bench_with_input(BenchmarkId::new("hit_u64_handles", n), &hit, |b, s| {
            b.iter(|| black_box(int_trie.matches(black_box(s.as_bytes()))))
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &miss, |b, s| {
            b.iter(|| black_box(trie.matches(black_box(s.as_bytes()))))
        });
        group.bench_with_input(BenchmarkId::new("has_interest", n), &hit, |b, s| {
            b.iter(|| black_box(trie.has_interest(black_box(s.as_bytes()))))
        });
    }
    group.finish();
}

fn bench_churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("churn");
    for n in [10usize, 100_000] {
        let mut trie = build(n);
        let mut i = 0u64;
        let handle = Arc::new(0u64);
        // One insert plus one remove of a fresh `_INBOX.<id>` subject, as request/reply does.
        group.bench_function(BenchmarkId::new("insert_remove_inbox", n), |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let mut subject = *b"_INBOX.0000000000000000";
                let mut n = i;
                for byte in subject[7..].iter_mut().rev() {
                    *byte = b"0123456789abcdef"[(n & 15) as usize];
                    n >>= 4;
                }
                let _ = trie.insert(&subject, None, handle.clone());
                black_box(trie.remove(&subject, None, &handle))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_match, bench_churn);
criterion_main!(benches);
