//! Exchange routing cost per message, for the budget of ~1 µs per message per
//! core at 1 M msg/s.
//!
//! Topic: half the bindings are `stock.<sym>.*`, half `logs.<app>.#.<sev>`,
//! one queue each. The published keys cycle through 1000 keys of which 1%
//! match a binding (the rest name unknown symbols or unbound severities, which
//! still walk the `#` nodes), so the figure is the mean over that mix.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use smallvec::SmallVec;
use warren::protocol::table::{FieldTable, FieldValue};
use warren::routing::{Bindings, ExchangeKind};

const SEVERITIES: [&str; 5] = ["debug", "info", "warn", "error", "fatal"];

fn topic_bindings(count: u32) -> Bindings<u32> {
    let mut bindings = Bindings::new(ExchangeKind::Topic);
    let no_arguments = FieldTable::default();
    for queue in 0..count {
        let pattern = if queue.is_multiple_of(2) {
            format!("stock.s{queue}.*")
        } else {
            format!(
                "logs.app{queue}.#.{}",
                SEVERITIES[queue as usize % SEVERITIES.len()]
            )
        };
        bindings.bind(queue, pattern.as_bytes(), &no_arguments);
    }
    bindings
}

/// 1000 keys, every hundredth one matching exactly one binding.
fn topic_keys(count: u32) -> Vec<Vec<u8>> {
    (0..1000u32)
        .map(|i| {
            let queue = (i * 7919) % count;
            let matching = i.is_multiple_of(100);
            let key = match (queue.is_multiple_of(2), matching) {
                (true, true) => format!("stock.s{queue}.nyse"),
                (true, false) => format!("stock.unknown{queue}.nyse"),
                (false, true) => format!(
                    "logs.app{queue}.web.eu.{}",
                    SEVERITIES[queue as usize % SEVERITIES.len()]
                ),
                (false, false) => format!("logs.app{queue}.web.eu.trace"),
            };
            key.into_bytes()
        })
        .collect()
}

fn bench_topic(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic");
    for count in [10_000u32, 100_000] {
        let bindings = topic_bindings(count);
        let keys = topic_keys(count);
        let mut routed = 0;
        let mut out: SmallVec<[u32; 8]> = SmallVec::new();
        for key in &keys {
            out.clear();
            bindings.route(key, None, &mut out);
            routed += out.len();
        }
        assert_eq!(
            routed, 10,
            "expected 1% of 1000 keys to match one binding each"
        );
        group.bench_with_input(
            BenchmarkId::new("mixed_1pct_match", count),
            &keys,
            |b, keys| {
                let mut out: SmallVec<[u32; 8]> = SmallVec::new();
                let mut next = 0;
                b.iter(|| {
                    out.clear();
                    bindings.route(black_box(&keys[next]), None, &mut out);
                    next = (next + 1) % keys.len();
                    out.len()
                })
            },
        );
        let hit = format!("logs.app1.web.eu.{}", SEVERITIES[1]).into_bytes();
        group.bench_with_input(
            BenchmarkId::new("hash_pattern_hit", count),
            &hit,
            |b, key| {
                let mut out: SmallVec<[u32; 8]> = SmallVec::new();
                b.iter(|| {
                    out.clear();
                    bindings.route(black_box(key), None, &mut out);
                    out.len()
                })
            },
        );
    }
    group.finish();
}

fn bench_direct(c: &mut Criterion) {
    let mut bindings = Bindings::new(ExchangeKind::Direct);
    let no_arguments = FieldTable::default();
    for queue in 0..100_000u32 {
        bindings.bind(queue, format!("orders.{queue}").as_bytes(), &no_arguments);
    }
    let mut group = c.benchmark_group("direct_100k");
    for (name, key) in [
        ("hit", b"orders.4242".as_slice()),
        ("miss", b"orders.x4242".as_slice()),
    ] {
        group.bench_function(name, |b| {
            let mut out: SmallVec<[u32; 8]> = SmallVec::new();
            b.iter(|| {
                out.clear();
                bindings.route(black_box(key), None, &mut out);
                out.len()
            })
        });
    }
    group.finish();
}

fn bench_fanout(c: &mut Criterion) {
    let mut bindings = Bindings::new(ExchangeKind::Fanout);
    for queue in 0..8u32 {
        bindings.bind(queue, b"", &FieldTable::default());
    }
    c.bench_function("fanout_8", |b| {
        let mut out: SmallVec<[u32; 8]> = SmallVec::new();
        b.iter(|| {
            out.clear();
            bindings.route(black_box(b"any"), None, &mut out);
            out.len()
        })
    });
}

fn text(value: String) -> FieldValue {
    FieldValue::LongStr(Bytes::from(value))
}

fn bench_headers(c: &mut Criterion) {
    let mut bindings = Bindings::new(ExchangeKind::Headers);
    for queue in 0..100u32 {
        let mut arguments = FieldTable::default();
        let rule = if queue.is_multiple_of(2) {
            "all"
        } else {
            "any"
        };
        arguments.insert("x-match", text(rule.to_string()));
        arguments.insert("region", text(format!("r{}", queue % 10)));
        arguments.insert("kind", text(format!("k{queue}")));
        bindings.bind(queue, b"", &arguments);
    }
    let mut headers = FieldTable::default();
    headers.insert("kind", text("k42".to_string()));
    headers.insert("region", text("r2".to_string()));
    headers.insert("content-source", text("billing".to_string()));
    headers.insert("attempt", FieldValue::I32(1));
    let mut out: SmallVec<[u32; 8]> = SmallVec::new();
    bindings.route(b"", Some(&headers), &mut out);
    // Only queue 42 (all: region r2 and kind k42); the "any" queues are odd,
    // so none of them has region r2 or kind k42.
    assert_eq!(
        out.as_slice(),
        &[42],
        "expected one matching headers binding"
    );
    c.bench_function("headers_100", |b| {
        let mut out: SmallVec<[u32; 8]> = SmallVec::new();
        b.iter(|| {
            out.clear();
            bindings.route(b"", black_box(Some(&headers)), &mut out);
            out.len()
        })
    });
}

criterion_group!(
    benches,
    bench_topic,
    bench_direct,
    bench_fanout,
    bench_headers
);
criterion_main!(benches);
