//! Dispatch: fair round-robin among consumers with credit, at a cost per message that does
//! not grow with the consumers that have none.

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::Queue;
use crate::broker::envelope::{CreditKey, Outbox, ShardMsg};
use crate::broker::ops::{ConsumerSpec, SettleKind};
use crate::broker::Shared;
use crate::ids::{ConnRef, QueueRef};
use crate::message::Message;
use crate::protocol::FieldTable;

const CONN: ConnRef = ConnRef {
    shard: 0,
    key: 1,
    serial: 1,
};

fn shared() -> Shared {
    Shared {
        channel_in_flight: FxHashMap::default(),
        store: None,
        resident: 0,
        budget: u64::MAX,
        grants: FxHashMap::default(),
        grants_due: false,
        page_in: Vec::new(),
        scratch: Vec::new(),
        dead_letters: Vec::new(),
    }
}

fn queue() -> Queue {
    let id = QueueRef {
        shard: 0,
        key: 0,
        serial: 1,
    };
    let name = Bytes::from_static(b"q");
    Queue::new(
        id,
        1,
        Bytes::from_static(b"/"),
        name,
        false,
        None,
        false,
        FieldTable::default(),
    )
}

fn consumer(id: u64, prefetch_count: u16) -> ConsumerSpec {
    ConsumerSpec {
        id,
        conn: CONN,
        channel: 1,
        tag: Bytes::from(format!("c{id}")),
        no_ack: false,
        exclusive: false,
        prefetch_count,
        channel_prefetch_count: 0,
        priority: 0,
    }
}

fn publish(q: &mut Queue, sh: &mut Shared) {
    let msg = Message::new(
        Bytes::new(),
        Bytes::new(),
        Bytes::new(),
        Bytes::new(),
        false,
    );
    q.push(msg, (CONN, CreditKey::Queue(q.id)), sh);
}

/// (consumer id, queue seq) of each delivery in `out`, which is emptied.
fn delivered(out: &mut Outbox) -> Vec<(u64, u64)> {
    out.drain(..)
        .filter_map(|(_, m)| match m {
            ShardMsg::Deliver(d) => Some((d.consumer_id, d.seq)),
            _ => None,
        })
        .collect()
}

#[test]
fn dispatch_is_round_robin_among_consumers_with_credit() {
    let (mut q, mut sh, mut out) = (queue(), shared(), Outbox::new());
    for id in 1..=3 {
        q.add_consumer(consumer(id, 0)).expect("a consumer");
    }
    for _ in 0..6 {
        publish(&mut q, &mut sh);
    }
    q.dispatch(&mut sh, &mut out);
    let order: Vec<u64> = delivered(&mut out).iter().map(|d| d.0).collect();
    assert_eq!(order, vec![1, 2, 3, 1, 2, 3], "expected round-robin order");
    assert!(q.check_invariants());
}

#[test]
fn a_consumer_that_gets_its_credit_back_is_served_again() {
    let (mut q, mut sh, mut out) = (queue(), shared(), Outbox::new());
    q.add_consumer(consumer(1, 1)).expect("a consumer");
    q.add_consumer(consumer(2, 1)).expect("a consumer");
    for _ in 0..4 {
        publish(&mut q, &mut sh);
    }
    q.dispatch(&mut sh, &mut out);
    let first = delivered(&mut out);
    assert_eq!(
        first.len(),
        2,
        "expected one delivery per prefetch slot, got {first:?}"
    );
    let (_, seq_of_2) = *first.iter().find(|d| d.0 == 2).expect("consumer 2 served");
    q.settle(SettleKind::Ack, &[seq_of_2], &mut sh);
    q.dispatch(&mut sh, &mut out);
    let second: Vec<u64> = delivered(&mut out).iter().map(|d| d.0).collect();
    assert_eq!(
        second,
        vec![2],
        "expected only consumer 2, which acked, to get more"
    );
    assert!(q.check_invariants());
}

#[test]
fn dispatch_does_not_scan_consumers_without_credit() {
    const CONSUMERS: u64 = 1000;
    let (mut q, mut sh, mut out) = (queue(), shared(), Outbox::new());
    for id in 1..=CONSUMERS {
        q.add_consumer(consumer(id, 1)).expect("a consumer");
    }
    for _ in 0..CONSUMERS {
        publish(&mut q, &mut sh);
    }
    q.dispatch(&mut sh, &mut out); // every consumer now holds its one unacked message
    let mut held: Vec<(u64, u64)> = delivered(&mut out);
    assert_eq!(held.len(), CONSUMERS as usize);
    q.examined = 0;
    // One consumer acks and takes the next message, a thousand times over.
    for _ in 0..CONSUMERS {
        let (consumer_id, seq) = held.pop().expect("a delivery");
        q.credit(consumer_id, 1); // its connection wrote it
        q.settle(SettleKind::Ack, &[seq], &mut sh);
        publish(&mut q, &mut sh);
        q.dispatch(&mut sh, &mut out);
        let next = delivered(&mut out);
        assert_eq!(next.len(), 1, "expected the freed slot to be used");
        assert_eq!(next[0].0, consumer_id, "expected the consumer that acked");
        held.push(next[0]);
    }
    assert!(
        q.examined <= 4 * CONSUMERS as usize,
        "expected dispatch to look at a few consumers per message, it looked at {} for {CONSUMERS} messages",
        q.examined
    );
}
