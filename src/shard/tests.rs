//! The shard's inbox against a client that panics: the panic must not wedge the shard.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::overflow::OVERFLOW_MAX_MSGS;
use super::{ring, Client, Shard};
use crate::broker::topology::Topology;
use crate::broker::{Broker, CreditKey, Delivery, ShardMsg};
use crate::ids::{ConnRef, QueueRef};
use crate::message::Message;

/// A connection whose deliveries panic until `calm` is set; counts what it got.
struct Flaky {
    cref: ConnRef,
    calm: Cell<bool>,
    delivered: Cell<u32>,
}

impl Client for Flaky {
    fn cref(&self) -> ConnRef {
        self.cref
    }
    fn deliver(&self, _: Delivery) -> Option<(QueueRef, u64)> {
        assert!(self.calm.get(), "a bug in a delivery");
        self.delivered.set(self.delivered.get() + 1);
        None
    }
    fn confirmed(&self, _: u16, _: u64, _: bool) {}
    fn direct_reply(&self, _: u16, _: u128, _: &Message) {}
    fn consumer_cancelled(&self, _: u16, _: &Bytes) {}
    fn basic_return(&self, _: u16, _: &Message) {}
    fn publish_credit(&self, _: CreditKey, _: u32) {}
    fn alarm(&self, _: u8) {}
}

fn delivery(conn: ConnRef) -> ShardMsg {
    ShardMsg::Deliver(Delivery {
        conn,
        channel: 1,
        consumer_tag: Bytes::from_static(b"c"),
        consumer_id: 1,
        queue: QueueRef {
            shard: 0,
            key: 0,
            serial: 1,
        },
        seq: 1,
        redelivered: false,
        no_ack: true,
        msg: Message::new(
            Bytes::new(),
            Bytes::new(),
            Bytes::new(),
            Bytes::new(),
            false,
        ),
    })
}

#[test]
fn a_panic_while_flushing_does_not_wedge_the_inbox() {
    let endpoint = ring::mesh::<ShardMsg>(1, 16)
        .expect("a ring mesh")
        .remove(0);
    let shard = Shard::new(
        Arc::new(crate::config::Config::default()),
        Arc::default(),
        Arc::default(),
        endpoint,
        Broker::new(0),
        Topology::new(),
    );
    let flaky: Rc<Flaky> = shard.register(|cref| Flaky {
        cref,
        calm: Cell::new(false),
        delivered: Cell::new(0),
    });
    shard.send(0, delivery(flaky.cref));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.flush()));
    assert!(panicked.is_err(), "expected the flaky delivery to panic");
    flaky.calm.set(true);
    shard.send(0, delivery(flaky.cref));
    shard.flush();
    assert_eq!(
        flaky.delivered.get(),
        1,
        "expected the next flush to run the inbox again after a panic in the previous one"
    );
}

/// A delivery with manual ack for a connection shard 1 does not know: shard 1 bounces it
/// back to the queue on shard 0 with a `Settle`, one message out for each message in.
fn bounced_delivery() -> ShardMsg {
    let ShardMsg::Deliver(mut d) = delivery(ConnRef {
        shard: 1,
        key: 7,
        serial: 1,
    }) else {
        unreachable!("delivery() makes a Deliver")
    };
    d.no_ack = false;
    ShardMsg::Deliver(d)
}

#[test]
fn overflow_stays_under_its_bound_when_the_target_shard_is_slow() {
    let mut endpoints = ring::mesh::<ShardMsg>(2, 64).expect("a ring mesh");
    let shard = Shard::new(
        Arc::new(crate::config::Config::default()),
        Arc::default(),
        Arc::default(),
        endpoints.remove(1),
        Broker::new(1),
        Topology::new(),
    );
    let mut slow = endpoints.remove(0);
    let (mut batch, mut peak, mut answered) = (Vec::new(), 0, 0);
    for round in 0..2000 {
        while slow.try_push(1, bounced_delivery()).is_ok() {}
        slow.wake_pending();
        shard.drain_rings(&mut batch);
        peak = peak.max(shard.overflow.borrow().len(0));
        if round % 4 == 0 {
            answered += slow.drain(16, drop); // shard 0 is slow: 16 every 4 turns
        }
    }
    assert!(answered > 0, "expected the slow shard to get some answers");
    assert!(
        peak > 0,
        "expected the ring to shard 0 to overflow in this test"
    );
    assert!(
        peak <= OVERFLOW_MAX_MSGS,
        "expected at most {OVERFLOW_MAX_MSGS} messages held for the slow shard, saw {peak}"
    );
}

/// A shard on its own in a two-shard mesh, as shard 1, and the raw endpoint of shard 0.
fn shard_one_of_two() -> (Shard, ring::Endpoint<ShardMsg>) {
    let mut endpoints = ring::mesh::<ShardMsg>(2, 64).expect("a ring mesh");
    let shard = Shard::new(
        Arc::new(crate::config::Config::default()),
        Arc::default(),
        Arc::default(),
        endpoints.remove(1),
        Broker::new(1),
        Topology::new(),
    );
    (shard, endpoints.remove(0))
}

#[test]
fn a_queue_bind_reaches_the_topology_owner_behind_the_queue_shards_removal() {
    use crate::broker::topology::{BindingChange, Dest, TopologyChange};
    let (shard, mut owner) = shard_one_of_two();
    let queue = QueueRef {
        shard: 1,
        key: 3,
        serial: 2,
    };
    let name = Bytes::from_static(b"q");
    // queue.delete on shard 1 sent the owner the removal of the old queue's bindings...
    let removal = TopologyChange::RemoveQueue {
        queue,
        vhost: Bytes::from_static(b"/"),
        name: name.clone(),
        durable: true,
    };
    shard.send(
        0,
        ShardMsg::TopologyRequest {
            from: 1,
            id: 0,
            change: removal,
        },
    );
    // ...and the bind for the queue declared again goes through shard 1 too.
    let bind = TopologyChange::Bind(BindingChange {
        vhost: Bytes::from_static(b"/"),
        source: Bytes::from_static(b"x"),
        dest: Dest::Queue(QueueRef { serial: 3, ..queue }),
        dest_name: name,
        dest_durable: true,
        routing_key: Bytes::from_static(b"q"),
        arguments: Default::default(),
    });
    shard.send(
        1,
        ShardMsg::TopologyRequest {
            from: 1,
            id: 9,
            change: bind,
        },
    );
    shard.flush();
    let mut got = Vec::new();
    owner.drain(16, |m| {
        got.push(match m {
            ShardMsg::TopologyRequest { change, .. } => match change {
                TopologyChange::RemoveQueue { .. } => "request RemoveQueue",
                TopologyChange::Bind(_) => "request Bind",
                _ => "request other",
            },
            _ => "other",
        })
    });
    assert_eq!(
        got,
        vec!["request RemoveQueue", "request Bind"],
        "expected the bind passed on to the owner behind the removal, not applied on shard 1"
    );
}
