//! Ring handoff between two shards, per message.
//!
//! `handoff`: a producer thread (shard 0) pushes batches into shard 1's ring and calls
//! `wake_pending` once per batch, as `Shard::flush` does; a consumer thread (shard 1) drains up
//! to `DRAIN_BATCH` messages at a time and, when it finds none, parks on its eventfd exactly as
//! the mailbox task does (`prepare_park`, blocking read, `unpark`). So batch 1 pays a wake-up
//! (an eventfd write and a futex wake) almost every message, and large batches show what the
//! ring itself costs. The messages are real `ShardMsg`s (the `Credit` variant, which owns
//! nothing to free), so every slot is as large as in the broker.
//!
//! `wake_pending`: what a source pays per batch when the target is busy (not parked): one
//! SeqCst fence and a read of the target's `parked` flag. Single-threaded, so the figure is the
//! difference between `push_wake_drain` and `push_drain`.
//!
//! Budget: at 1 M msg/s a core has 1 µs per message for everything; a handoff should cost a
//! few percent of that once batched.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use warren::broker::QueueRef;
use warren::broker::ShardMsg;
use warren::shard::ring::{mesh, Endpoint};
use warren::shard::RING_CAPACITY;

/// As the mailbox task's `DRAIN_BATCH` (private in `warren::shard`).
const DRAIN_BATCH: usize = 4096;
const SOURCE: usize = 0;
const TARGET: usize = 1;
/// A consumer id no real message carries: tells the consumer thread to stop.
const STOP_ID: u64 = u64::MAX;

fn credit(consumer_id: u64) -> ShardMsg {
    ShardMsg::Credit {
        queue: QueueRef {
            shard: TARGET as u16,
            key: 0,
            serial: 1,
        },
        consumer_id,
        n: 1,
    }
}

/// Pushes `msg`, waiting for the consumer while the ring is full (wakes it first, or it may
/// sleep on a full ring forever).
fn push(source: &mut Endpoint<ShardMsg>, mut msg: ShardMsg) {
    loop {
        match source.try_push(TARGET, msg) {
            Ok(()) => return,
            Err(back) => {
                msg = back;
                source.wake_pending();
                thread::yield_now();
            }
        }
    }
}

/// The target shard's mailbox loop, minus the handling: drain, and park when empty.
fn consume(mut target: Endpoint<ShardMsg>, received: Arc<AtomicU64>) {
    let eventfd = target.eventfd();
    let mut counter = [0u8; 8];
    loop {
        let mut stop = false;
        let drained = target.drain(DRAIN_BATCH, |msg| {
            if let ShardMsg::Credit { consumer_id, .. } = &msg {
                stop |= *consumer_id == STOP_ID;
            }
            black_box(msg);
        });
        if drained > 0 {
            // Release: the producer's Acquire load sees every message counted here as popped.
            received.fetch_add(drained as u64, Ordering::Release);
        }
        if stop {
            return;
        }
        if drained == 0 && target.prepare_park() {
            // SAFETY: eventfd is the endpoint's open eventfd, valid for the process lifetime;
            // an eventfd read takes exactly 8 bytes into a valid buffer.
            let n = unsafe { libc::read(eventfd, counter.as_mut_ptr().cast(), 8) };
            assert_eq!(n, 8, "eventfd read: expected 8 bytes, got {n}");
            target.unpark();
        }
    }
}

fn handoff(c: &mut Criterion) {
    eprintln!(
        "ShardMsg is {} bytes; a ring of {RING_CAPACITY} slots spans {} KiB",
        std::mem::size_of::<ShardMsg>(),
        std::mem::size_of::<ShardMsg>() * RING_CAPACITY / 1024
    );
    let mut endpoints = mesh::<ShardMsg>(2, RING_CAPACITY).expect("eventfd for the ring mesh");
    let target = endpoints.pop().expect("endpoint of shard 1");
    let mut source = endpoints.pop().expect("endpoint of shard 0");
    let received = Arc::new(AtomicU64::new(0));
    let consumer = {
        let received = received.clone();
        thread::Builder::new()
            .name("rings-target".into())
            .spawn(move || consume(target, received))
            .expect("spawn the consumer thread")
    };
    let mut sent: u64 = 0;

    let mut group = c.benchmark_group("ring_handoff");
    for batch in [1u64, 64, 1024] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    for i in 0..batch {
                        push(&mut source, credit(i));
                    }
                    source.wake_pending();
                }
                sent += iters * batch;
                let deadline = start + Duration::from_secs(30);
                while received.load(Ordering::Acquire) < sent {
                    assert!(
                        Instant::now() < deadline,
                        "consumer drained {} of {sent} messages in 30 s",
                        received.load(Ordering::Acquire)
                    );
                    thread::yield_now();
                }
                start.elapsed()
            })
        });
    }
    group.finish();

    push(&mut source, credit(STOP_ID));
    source.wake_pending();
    consumer.join().expect("consumer thread panicked");
}

fn wake_pending(c: &mut Criterion) {
    let mut endpoints = mesh::<ShardMsg>(2, RING_CAPACITY).expect("eventfd for the ring mesh");
    let (sources, targets) = endpoints.split_at_mut(TARGET);
    let source = &mut sources[SOURCE];
    let target = &mut targets[0];

    let mut group = c.benchmark_group("wake_pending");
    group.throughput(Throughput::Elements(1));
    group.bench_function("push_drain", |b| {
        b.iter(|| {
            push(source, credit(1));
            target.drain(1, |msg| {
                black_box(msg);
            })
        })
    });
    group.bench_function("push_wake_drain", |b| {
        b.iter(|| {
            push(source, credit(1));
            // Target busy: `parked` is false, so this is the fence and the flag read only.
            source.wake_pending();
            target.drain(1, |msg| {
                black_box(msg);
            })
        })
    });
    group.bench_function("nothing_pushed", |b| b.iter(|| source.wake_pending()));
    group.finish();
}

criterion_group!(benches, handoff, wake_pending);
criterion_main!(benches);
