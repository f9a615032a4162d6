//! The queue data path of one shard, per message, without I/O: what `Broker::enqueue`,
//! dispatch, `credit` and `settle` cost on the queue's owner shard.
//!
//! Each message is a clone of one template whose parts are slices of a single shared buffer,
//! as a published message is slices of the read buffer it arrived in. The deliveries the
//! broker pushes to its outbox stand in for the consumer's connection: the bench takes their
//! `seq`s, and every 50 deliveries of a consumer it credits 50 (the connection wrote them)
//! and acks them with one `settle` (basic.ack multiple=true, split into seqs per queue as the
//! channel does).
//!
//! - `backlog`: no consumer; every message waits, so it is compacted into its own allocation.
//!   The queue is purged (outside the timing) every `BACKLOG_MAX` messages.
//! - `one_consumer`: prefetch 100, ack every 50: each enqueue dispatches at once.
//! - `round_robin_8_consumers`: one queue, 8 such consumers served in turn.
//! - `fanout_8_queues`: one publish enqueued to 8 queues by reference (as a fanout exchange
//!   routes), one consumer each; the figure is per publish, i.e. 8 deliveries.
//!
//! Budget: at 1 M msg/s a core has 1 µs per message for everything (socket, parse, route,
//! queue, encode); the queue should take a small part of it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use warren::broker::{
    Broker, ConnRef, ConsumerSpec, Message, OpOk, Outbox, QueueOp, QueueRef, SettleKind,
};
use warren::broker::{QueueTarget, ShardMsg};
use warren::protocol::{BasicProperties, FieldTable};

const BODY: &[u8; 16] = b"0123456789abcdef";
const PREFETCH_COUNT: u16 = 100;
const ACK_EVERY: usize = 50;
const BACKLOG_MAX: u64 = 100_000;
const CONN: ConnRef = ConnRef {
    shard: 0,
    key: 1,
    serial: 1,
};

/// A 16-byte transient message published to the default exchange with key `queue`.
fn template(queue: &str) -> Message {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(queue.as_bytes());
    BasicProperties::default().encode(&mut buf);
    let properties_at = queue.len();
    let body_at = buf.len();
    buf.extend_from_slice(BODY);
    let frame = buf.freeze();
    Message::new(
        Bytes::new(),
        frame.slice(..properties_at),
        frame.slice(properties_at..body_at),
        frame.slice(body_at..),
        false,
    )
}

fn declare(broker: &mut Broker, name: &str) -> QueueRef {
    let mut out = Outbox::new();
    let op = QueueOp::Declare {
        vhost: Bytes::from_static(b"/"),
        name: Bytes::copy_from_slice(name.as_bytes()),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments: FieldTable::default(),
        owner: CONN,
    };
    match broker.apply(op, &mut out) {
        Ok(OpOk::Declared { queue, .. }) => queue,
        other => panic!("queue.declare {name}: expected Declared, got {other:?}"),
    }
}

/// The consumer side of one channel: deliveries not yet acked.
struct Consumer {
    queue: QueueRef,
    id: u64,
    unacked: Vec<u64>,
}

fn consume(broker: &mut Broker, name: &str, queue: QueueRef, id: u64) -> Consumer {
    let mut out = Outbox::new();
    let spec = ConsumerSpec {
        id,
        conn: CONN,
        channel: id as u16,
        tag: Bytes::from(format!("amq.ctag-bench-{id}")),
        no_ack: false,
        exclusive: false,
        prefetch_count: PREFETCH_COUNT,
        channel_prefetch_count: 0,
        priority: 0,
    };
    let op = QueueOp::Consume {
        vhost: Bytes::from_static(b"/"),
        name: Bytes::copy_from_slice(name.as_bytes()),
        spec,
    };
    match broker.apply(op, &mut out) {
        Ok(OpOk::Consuming(_)) => {}
        other => panic!("basic.consume on {name}: expected Consuming, got {other:?}"),
    }
    assert!(out.is_empty(), "an empty queue delivered on consume");
    Consumer {
        queue,
        id,
        unacked: Vec::with_capacity(PREFETCH_COUNT as usize),
    }
}

/// Plays the consumers' connections until the outbox stays empty: takes each delivery's seq
/// and, per consumer, credits and acks every `ACK_EVERY` deliveries.
fn settle_deliveries(broker: &mut Broker, consumers: &mut [Consumer], out: &mut Outbox) {
    while !out.is_empty() {
        for (_, msg) in out.drain(..) {
            let delivery = match msg {
                ShardMsg::Deliver(delivery) => delivery,
                ShardMsg::PublishCredit { .. } => continue,
                msg => panic!("expected only deliveries and credit in the outbox, got {msg:?}"),
            };
            // Consumer ids are 1..=n.
            consumers[delivery.consumer_id as usize - 1]
                .unacked
                .push(delivery.seq);
        }
        for consumer in consumers.iter_mut() {
            if consumer.unacked.len() >= ACK_EVERY {
                broker.credit(consumer.queue, consumer.id, ACK_EVERY as u32, out);
                broker.settle(
                    consumer.queue,
                    SettleKind::Ack,
                    &consumer.unacked[..ACK_EVERY],
                    out,
                );
                consumer.unacked.drain(..ACK_EVERY);
            }
        }
    }
}

/// The connection the benches publish from.
const PUBLISHER: ConnRef = ConnRef {
    shard: 0,
    key: 1,
    serial: 1,
};

/// Enqueues as a publish does, including the publisher credit the shard sends once a turn.
fn enqueue(broker: &mut Broker, target: QueueTarget, msg: Message, out: &mut Outbox) {
    if broker.enqueue(target, msg, PUBLISHER, out).is_err() {
        panic!("enqueue: the queue does not exist");
    }
    broker.drain_grants(true, out);
}

fn backlog(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(1));
    let mut broker = Broker::new(0);
    let name = Bytes::from_static(b"backlog");
    declare(&mut broker, "backlog");
    let msg = template("backlog");
    let mut out = Outbox::new();
    let mut queued: u64 = 0;
    group.bench_function("backlog", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BACKLOG_MAX - queued);
                let start = Instant::now();
                for _ in 0..n {
                    enqueue(
                        &mut broker,
                        QueueTarget::Name {
                            vhost: Bytes::from_static(b"/"),
                            name: name.clone(),
                        },
                        msg.clone(),
                        &mut out,
                    );
                }
                elapsed += start.elapsed();
                assert!(out.is_empty(), "a queue without consumers delivered");
                left -= n;
                queued += n;
                if queued == BACKLOG_MAX {
                    let purge = QueueOp::Purge {
                        vhost: Bytes::from_static(b"/"),
                        name: name.clone(),
                        owner: CONN,
                    };
                    match broker.apply(purge, &mut out) {
                        Ok(OpOk::Count(n)) => assert_eq!(n as u64, BACKLOG_MAX, "purged count"),
                        other => panic!("queue.purge: expected Count, got {other:?}"),
                    }
                    queued = 0;
                }
            }
            elapsed
        })
    });
    group.finish();
}

fn dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(1));

    for (bench, consumer_count) in [("one_consumer", 1u64), ("round_robin_8_consumers", 8)] {
        let mut broker = Broker::new(0);
        let queue = declare(&mut broker, bench);
        let mut consumers: Vec<Consumer> = (1..=consumer_count)
            .map(|id| consume(&mut broker, bench, queue, id))
            .collect();
        let name = Bytes::copy_from_slice(bench.as_bytes());
        let msg = template(bench);
        let mut out = Outbox::new();
        group.bench_function(bench, |b| {
            b.iter(|| {
                enqueue(
                    &mut broker,
                    QueueTarget::Name {
                        vhost: Bytes::from_static(b"/"),
                        name: name.clone(),
                    },
                    msg.clone(),
                    &mut out,
                );
                assert_eq!(out.len(), 1, "{bench}: expected one delivery per enqueue");
                settle_deliveries(&mut broker, &mut consumers, &mut out);
            })
        });
        black_box(&consumers);
    }

    // A fanout exchange routes to queue references; 8 deliveries per publish.
    let mut broker = Broker::new(0);
    let mut consumers = Vec::new();
    for id in 1..=8 {
        let name = format!("fanout-{id}");
        let queue = declare(&mut broker, &name);
        consumers.push(consume(&mut broker, &name, queue, id));
    }
    let queues: Vec<QueueRef> = consumers.iter().map(|c| c.queue).collect();
    let msg = template("");
    let mut out = Outbox::new();
    group.throughput(Throughput::Elements(queues.len() as u64));
    group.bench_function("fanout_8_queues", |b| {
        b.iter(|| {
            for &queue in &queues {
                enqueue(&mut broker, QueueTarget::Ref(queue), msg.clone(), &mut out);
            }
            assert_eq!(out.len(), queues.len(), "expected one delivery per queue");
            settle_deliveries(&mut broker, &mut consumers, &mut out);
        })
    });
    group.finish();
}

criterion_group!(benches, backlog, dispatch);
criterion_main!(benches);
